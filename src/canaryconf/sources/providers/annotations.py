"""Pod annotations (the ``metadata.annotations`` file of a downwardAPI volume)."""

from __future__ import annotations

from typing import Any

from pydantic.fields import FieldInfo

from canaryconf._fields import FieldMapping, is_secret_field
from canaryconf.sources.base import Origin, VolumeSource, config_value, dashed

__all__ = ["AnnotationsSource", "full_key"]


def full_key(key: str, prefix: str | None) -> str:
    """A key with a ``/`` is complete; any other key takes the prefix."""
    return key if "/" in key or not prefix else f"{prefix}{key}"


class AnnotationsSource(VolumeSource):
    """Fields declared with ``annotation(key)``, and plain fields, whose key is
    ``<annotation_prefix><field-name-with-dashes>``; plain secret fields (``SecretStr``)
    never come from annotations, which anyone who can read the pod can read. Other
    annotations (the kubelet's ``kubernetes.io/config.*`` among them) are never looked at."""

    def lookup(
        self, field_name: str, field: FieldInfo, mapping: FieldMapping
    ) -> tuple[Any, Origin] | None:
        if mapping.source not in (None, "annotation"):
            return None
        if mapping.source is None and is_secret_field(field):
            return None  # annotations are readable by anyone who can read the pod
        found = self.context.downward_map(config_value(self.settings_cls, "annotations_file"))
        if found is None:
            return None
        values, path, text = found
        prefix = config_value(self.settings_cls, "annotation_prefix")
        key = full_key(mapping.key or dashed(field_name), prefix)
        if key not in values:
            return None
        return values[key], Origin(path, key, secret=mapping.secret, map_text=text)
