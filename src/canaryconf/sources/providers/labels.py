"""Pod labels (the ``metadata.labels`` file of a downwardAPI volume) and rollout identity."""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Any, Union, get_args, get_origin

from pydantic.fields import FieldInfo

from canaryconf._fields import FieldMapping, field_mapping, is_secret_field
from canaryconf.rollout import POD_TEMPLATE_HASH_LABEL, RolloutInfo
from canaryconf.sources.base import (
    BuildContext,
    Fetch,
    Origin,
    VolumeSource,
    config_value,
    dashed,
    downward_dirs,
    map_fetch,
    map_files_needed,
)

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings
from canaryconf.sources.providers.annotations import full_key

__all__ = ["LabelsSource", "is_rollout_field"]


def is_rollout_field(field: FieldInfo) -> bool:
    """True for a field typed :class:`RolloutInfo` (or ``RolloutInfo | None``)."""
    annotation = field.annotation
    union = get_origin(annotation) in (Union, types.UnionType)
    candidates = get_args(annotation) if union else (annotation,)
    return any(_is_rollout_class(c) for c in candidates)


def _is_rollout_class(candidate: object) -> bool:
    # On Python 3.10 a parametrised builtin such as ``dict[str, int]`` passes
    # ``isinstance(..., type)``, and then ``issubclass`` raises TypeError.
    return (
        isinstance(candidate, type)
        and not get_args(candidate)
        and issubclass(candidate, RolloutInfo)
    )


class LabelsSource(VolumeSource):
    """Fields declared with ``label(key)``; plain fields too when ``label_prefix`` is set;
    and every :class:`RolloutInfo` field, from the role label and
    ``rollouts-pod-template-hash``."""

    kind = "label"
    config_key = "downward_api_dir"
    default_dirs = "/etc/podinfo"
    selective = True

    @classmethod
    def field_keys(
        cls, settings_cls: type[BaseSettings], field_name: str, field: FieldInfo
    ) -> list[str]:
        mapping = field_mapping(field)
        prefix = config_value(settings_cls, "label_prefix")
        if is_rollout_field(field):
            return [config_value(settings_cls, "role_label"), POD_TEMPLATE_HASH_LABEL]
        if mapping.source == "label" or (mapping.source is None and prefix is not None):
            names = [mapping.key] if mapping.key else [dashed(field_name)]
            return [full_key(n, prefix) for n in names]
        return []

    @classmethod
    def files_needed(cls, settings_cls: type[BaseSettings]) -> dict[str, set[str] | None]:
        return map_files_needed(cls, settings_cls, config_value(settings_cls, "labels_file"))

    @classmethod
    def dirs(cls, settings_cls: type[BaseSettings]) -> list[str]:
        return downward_dirs(settings_cls)

    @classmethod
    def serves(cls, settings_cls: type[BaseSettings], field_name: str, field: FieldInfo) -> bool:
        source = field_mapping(field).source
        plain = source is None and config_value(settings_cls, "label_prefix") is not None
        return (
            is_rollout_field(field) or source == "label" or (plain and not is_secret_field(field))
        )

    @classmethod
    def fetcher(
        cls,
        settings_cls: type[BaseSettings],
        field_name: str,
        field: FieldInfo,
        mapping: FieldMapping,
    ) -> Fetch:
        file: str = config_value(settings_cls, "labels_file")
        if is_rollout_field(field):
            role_label: str = config_value(settings_cls, "role_label")

            def fetch_rollout(context: BuildContext) -> tuple[Any, Origin] | None:
                found = context.downward_map(file)
                if found is None:
                    return None
                values, path, text = found
                info = {
                    "role": values.get(role_label),
                    "pod_template_hash": values.get(POD_TEMPLATE_HASH_LABEL),
                }
                return info, Origin(path, role_label, map_text=text)

            return fetch_rollout
        [key] = cls.field_keys(settings_cls, field_name, field)
        return map_fetch(file, key)
