"""canaryconf: typed settings that follow a Kubernetes canary release without a restart.

>>> from canaryconf import CanarySettings, annotation, label
"""

from canaryconf._errors import (
    CanaryConfError,
    DownwardAPIFormatError,
    FieldProblem,
    NotAVolumeError,
    SettingsValidationError,
    UnsafePathError,
    VolumeBusyError,
    VolumeError,
    VolumeNotFoundError,
    VolumePermissionError,
    VolumeTooLargeError,
)
from canaryconf._fields import (
    annotation,
    configmap,
    label,
    pod_field,
    resource,
    restart_required,
    secret,
)
from canaryconf._live import LiveSettings, PinnedSettings, live
from canaryconf.change import Change, ReloadResult
from canaryconf.downward import format_map, parse_map
from canaryconf.rollout import RolloutInfo
from canaryconf.settings import CanaryConfigDict, CanarySettings, redacted_dump
from canaryconf.volume import VolumeSnapshot, read_volume

__version__ = "0.1.0"

__all__ = [
    "CanaryConfError",
    "CanaryConfigDict",
    "CanarySettings",
    "Change",
    "DownwardAPIFormatError",
    "FieldProblem",
    "LiveSettings",
    "NotAVolumeError",
    "PinnedSettings",
    "ReloadResult",
    "RolloutInfo",
    "SettingsValidationError",
    "UnsafePathError",
    "VolumeBusyError",
    "VolumeError",
    "VolumeNotFoundError",
    "VolumePermissionError",
    "VolumeSnapshot",
    "VolumeTooLargeError",
    "annotation",
    "configmap",
    "format_map",
    "label",
    "live",
    "parse_map",
    "pod_field",
    "read_volume",
    "redacted_dump",
    "resource",
    "restart_required",
    "secret",
]
