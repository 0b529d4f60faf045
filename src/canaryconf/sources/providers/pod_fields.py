"""Single-value downward files: ``metadata.name``/``namespace``/``uid``, one label or
annotation by key, and ``resourceFieldRef`` files such as a cpu or memory limit."""

from __future__ import annotations

import os
from typing import Any

from pydantic.fields import FieldInfo

from canaryconf._fields import FieldMapping
from canaryconf.downward import decode_text
from canaryconf.sources.base import Origin, VolumeSource, config_value

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

    def lookup(
        self, field_name: str, field: FieldInfo, mapping: FieldMapping
    ) -> tuple[Any, Origin] | None:
        if mapping.source not in ("pod_field", "resource") or mapping.key is None:
            return None
        directory = config_value(self.settings_cls, "downward_api_dir")
        if directory is None:
            return None
        snapshot = self.context.volume(os.fspath(directory))
        data = None if snapshot is None else snapshot.files.get(mapping.key)
        if snapshot is None or not data:
            return None
        return decode_text(data), Origin(snapshot.file_path(mapping.key), mapping.key)
