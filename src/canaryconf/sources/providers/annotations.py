"""Pod annotations (the ``metadata.annotations`` file of a downwardAPI volume)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic.fields import FieldInfo

from canaryconf._fields import FieldMapping, field_mapping, is_secret_field
from canaryconf.sources.base import (
    Fetch,
    VolumeSource,
    config_value,
    dashed,
    downward_dirs,
    map_fetch,
    map_files_needed,
)

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings

__all__ = ["AnnotationsSource", "full_key"]


def full_key(key: str, prefix: str | None) -> str:
    """A key with a ``/`` is complete; any other key takes the prefix."""
    return key if "/" in key or not prefix else f"{prefix}{key}"


class AnnotationsSource(VolumeSource):
    """Fields declared with ``annotation(key)``, and plain fields, whose key is
    ``<annotation_prefix><field-name-with-dashes>``; plain secret fields (``SecretStr``)
    never come from annotations, which anyone who can read the pod can read. Other
    annotations (the kubelet's ``kubernetes.io/config.*`` among them) are never looked at."""

    kind = "annotation"
    config_key = "downward_api_dir"
    default_dirs = "/etc/podinfo"
    selective = True

    @classmethod
    def field_keys(
        cls, settings_cls: type[BaseSettings], field_name: str, field: FieldInfo
    ) -> list[str]:
        mapping = field_mapping(field)
        if mapping.source not in (None, "annotation"):
            return []
        prefix = config_value(settings_cls, "annotation_prefix")
        names = [mapping.key] if mapping.key else [field_name, dashed(field_name)]
        if field.alias and not mapping.key:
            names.append(field.alias)
        return list(dict.fromkeys(full_key(n, prefix) for n in names))

    @classmethod
    def files_needed(cls, settings_cls: type[BaseSettings]) -> dict[str, set[str] | None]:
        return map_files_needed(cls, settings_cls, config_value(settings_cls, "annotations_file"))

    @classmethod
    def dirs(cls, settings_cls: type[BaseSettings]) -> list[str]:
        return downward_dirs(settings_cls)

    @classmethod
    def serves(cls, settings_cls: type[BaseSettings], field_name: str, field: FieldInfo) -> bool:
        # A plain secret field never comes from annotations: anyone who can read the pod
        # can read them.
        source = field_mapping(field).source
        return source == "annotation" or (source is None and not is_secret_field(field))

    @classmethod
    def fetcher(
        cls,
        settings_cls: type[BaseSettings],
        field_name: str,
        field: FieldInfo,
        mapping: FieldMapping,
    ) -> Fetch:
        file: str = config_value(settings_cls, "annotations_file")
        key = full_key(
            mapping.key or dashed(field_name), config_value(settings_cls, "annotation_prefix")
        )
        return map_fetch(file, key, secret=mapping.secret)
