"""Single-value downward files: ``metadata.name``/``namespace``/``uid``, one label or
annotation by key, and ``resourceFieldRef`` files such as a cpu or memory limit."""

from __future__ import annotations

import os
from typing import Any

from pydantic.fields import FieldInfo

from canaryconf._fields import FieldMapping
from canaryconf.sources.base import Origin, VolumeSource, config_value

__all__ = ["PodFieldsSource"]


class PodFieldsSource(VolumeSource):
    """Fields declared with ``pod_field(...)`` or ``resource(...)``: the raw file content
    (the kubelet writes no newline; one written by hand is dropped)."""

    def lookup(
        self, field_name: str, field: FieldInfo, mapping: FieldMapping
    ) -> tuple[Any, Origin] | None:
        if mapping.source not in ("pod_field", "resource") or mapping.key is None:
            return None
        directory = config_value(self.settings_cls, "downward_api_dir")
        if directory is None:
            return None
        snapshot = self.context.volume(os.fspath(directory))
        if snapshot is None or mapping.key not in snapshot.files:
            return None
        text = snapshot.files[mapping.key].decode("utf-8", errors="replace")
        return text.removesuffix("\n"), Origin(snapshot.file_path(mapping.key), mapping.key)
