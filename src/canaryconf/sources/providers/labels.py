"""Pod labels (the ``metadata.labels`` file of a downwardAPI volume) and rollout identity."""

from __future__ import annotations

import types
from typing import Any, Union, get_args, get_origin

from pydantic.fields import FieldInfo

from canaryconf._fields import FieldMapping, is_secret_field
from canaryconf.rollout import POD_TEMPLATE_HASH_LABEL, RolloutInfo
from canaryconf.sources.base import Origin, VolumeSource, config_value, dashed
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

    def lookup(
        self, field_name: str, field: FieldInfo, mapping: FieldMapping
    ) -> tuple[Any, Origin] | None:
        rollout = is_rollout_field(field)
        prefix = config_value(self.settings_cls, "label_prefix")
        if not rollout and not (
            mapping.source == "label"
            or (mapping.source is None and prefix is not None and not is_secret_field(field))
        ):
            return None
        found = self.context.downward_map(config_value(self.settings_cls, "labels_file"))
        if found is None:
            return None
        values, path, text = found
        if rollout:
            role_label = config_value(self.settings_cls, "role_label")
            info = {
                "role": values.get(role_label),
                "pod_template_hash": values.get(POD_TEMPLATE_HASH_LABEL),
            }
            return info, Origin(path, role_label, map_text=text)
        key = full_key(mapping.key or dashed(field_name), prefix)
        if key not in values:
            return None
        return values[key], Origin(path, key, map_text=text)
