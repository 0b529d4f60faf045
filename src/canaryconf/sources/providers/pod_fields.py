"""Single-value downward files: ``metadata.name``/``namespace``/``uid``, one label or
annotation by key, and ``resourceFieldRef`` files such as a cpu or memory limit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic.fields import FieldInfo

from canaryconf._fields import FieldMapping, field_mapping
from canaryconf.downward import decode_text
from canaryconf.sources.base import BuildContext, Fetch, Origin, VolumeSource, downward_dirs

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings

__all__ = ["PodFieldsSource"]


class PodFieldsSource(VolumeSource):
    """Fields declared with ``pod_field(...)`` or ``resource(...)``: the file content exactly
    as the kubelet wrote it (no newline is added, so none is removed: a PEM annotation keeps
    its final ``\\n``), decoded as Go does (one U+FFFD per invalid byte).

    An empty file means "absent": the kubelet writes one for a
    ``metadata.labels['k']``/``metadata.annotations['k']`` item whose key the pod lacks, so
    the field keeps its default. A label or annotation explicitly set to ``""`` cannot be
    told apart from a missing one, and also gives the default.
    """

    kind = "pod_field"
    config_key = "downward_api_dir"
    default_dirs = "/etc/podinfo"
    selective = True

    @classmethod
    def field_keys(
        cls, settings_cls: type[BaseSettings], field_name: str, field: FieldInfo
    ) -> list[str]:
        mapping = field_mapping(field)
        if mapping.source in ("pod_field", "resource") and mapping.key is not None:
            return [mapping.key]
        return []

    @classmethod
    def files_needed(cls, settings_cls: type[BaseSettings]) -> dict[str, set[str] | None]:
        files = {
            key
            for name, field in settings_cls.model_fields.items()
            for key in cls.field_keys(settings_cls, name, field)
        }
        return {d: set(files) for d in downward_dirs(settings_cls)}

    @classmethod
    def dirs(cls, settings_cls: type[BaseSettings]) -> list[str]:
        return downward_dirs(settings_cls)

    @classmethod
    def serves(cls, settings_cls: type[BaseSettings], field_name: str, field: FieldInfo) -> bool:
        return bool(cls.field_keys(settings_cls, field_name, field))

    @classmethod
    def fetcher(
        cls,
        settings_cls: type[BaseSettings],
        field_name: str,
        field: FieldInfo,
        mapping: FieldMapping,
    ) -> Fetch:
        [key] = cls.field_keys(settings_cls, field_name, field)  # (served: it has one)

        def fetch(context: BuildContext) -> tuple[Any, Origin] | None:
            found = context.downward_file(key)
            if found is None or not found[1]:
                return None
            snapshot, data = found
            return decode_text(data), Origin(snapshot.file_path(key), key)

        return fetch
