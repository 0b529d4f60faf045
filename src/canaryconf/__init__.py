"""canaryconf: typed settings that follow a Kubernetes canary release without a restart.

>>> from canaryconf import CanarySettings, annotation, label
"""

import logging

from pydantic import BaseModel as _BaseModel

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

__version__ = "0.1.0"  # the one place: pyproject.toml reads it at build time

# A library's convention: no output unless the application configures logging. Records
# still propagate to the application's handlers (warnings of rejected versions included).
logging.getLogger(__name__).addHandler(logging.NullHandler())

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


def _public_module() -> None:
    """Name ``canaryconf`` as the module of what it exports from private modules, so
    tracebacks and reprs say ``canaryconf.VolumeError``, not ``canaryconf._errors...``.
    pydantic models keep theirs: pydantic resolves their annotations through it."""
    for name in __all__:
        obj = globals()[name]
        module = getattr(obj, "__module__", "")
        if not module.startswith("canaryconf._"):
            continue
        if isinstance(obj, type) and issubclass(obj, _BaseModel):
            continue
        obj.__module__ = __name__


_public_module()
