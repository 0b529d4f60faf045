"""One pydantic-settings source per kind of volume content."""

from canaryconf.sources.providers.annotations import AnnotationsSource
from canaryconf.sources.providers.configmaps import ConfigMapSource
from canaryconf.sources.providers.labels import LabelsSource
from canaryconf.sources.providers.pod_fields import PodFieldsSource
from canaryconf.sources.providers.secrets import SecretsSource

__all__ = [
    "AnnotationsSource",
    "ConfigMapSource",
    "LabelsSource",
    "PodFieldsSource",
    "SecretsSource",
]
