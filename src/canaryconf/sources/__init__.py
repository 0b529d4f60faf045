"""pydantic-settings sources that read Kubernetes volumes (see :mod:`.providers`)."""

from canaryconf.sources.base import BuildContext, Origin, VolumeSource
from canaryconf.sources.providers import (
    AnnotationsSource,
    ConfigMapSource,
    LabelsSource,
    PodFieldsSource,
    SecretsSource,
)

__all__ = [
    "AnnotationsSource",
    "BuildContext",
    "ConfigMapSource",
    "LabelsSource",
    "Origin",
    "PodFieldsSource",
    "SecretsSource",
    "VolumeSource",
]
