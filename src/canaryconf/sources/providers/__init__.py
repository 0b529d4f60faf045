"""One pydantic-settings source per kind of volume content, registered in precedence order.

This list is the one place the order is written: highest precedence first. A new kind is
one module here and one line below (or :func:`~canaryconf.sources.base.register_source`
from anywhere).
"""

from canaryconf.sources.base import register_source
from canaryconf.sources.providers.annotations import AnnotationsSource
from canaryconf.sources.providers.configmaps import ConfigMapSource
from canaryconf.sources.providers.labels import LabelsSource
from canaryconf.sources.providers.pod_fields import PodFieldsSource
from canaryconf.sources.providers.projected import ProjectedSource
from canaryconf.sources.providers.secrets import SecretsSource

__all__ = [
    "AnnotationsSource",
    "ConfigMapSource",
    "LabelsSource",
    "PodFieldsSource",
    "ProjectedSource",
    "SecretsSource",
]

for _source in (
    AnnotationsSource,
    LabelsSource,
    PodFieldsSource,
    ProjectedSource,
    ConfigMapSource,
    SecretsSource,
):
    register_source(_source)
