"""The shared reading of key-per-file volumes (ConfigMaps and Secrets)."""

from __future__ import annotations

import os
from typing import Any

from pydantic.fields import FieldInfo

from canaryconf._errors import FieldProblem
from canaryconf._fields import FieldMapping
from canaryconf.sources.base import Origin, VolumeSource, config_value, dashed


class KeyPerFileSource(VolumeSource):
    """A field maps to the file named by its helper, else to a file named like the field
    (``db_url``) or dashed (``db-url``); the first directory listed that has it wins. One
    trailing newline (``kubectl create --from-file`` keeps it) is dropped."""

    kind: str = ""
    dirs_setting: str = ""
    secret: bool = False

    def lookup(
        self, field_name: str, field: FieldInfo, mapping: FieldMapping
    ) -> tuple[Any, Origin] | None:
        if mapping.source not in (None, self.kind):
            return None
        keys = [mapping.key] if mapping.key else [field_name, dashed(field_name)]
        if field.alias and not mapping.key:
            keys.insert(0, field.alias)
        dirs = config_value(self.settings_cls, self.dirs_setting)
        if isinstance(dirs, (str, os.PathLike)):
            dirs = (dirs,)
        for directory in dirs:
            snapshot = self.context.volume(os.fspath(directory))
            if snapshot is None:
                continue
            for key in keys:
                data = snapshot.files.get(key)
                if data is None:
                    continue
                origin = Origin(snapshot.file_path(key), key, secret=self.secret or mapping.secret)
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    self.context.problems.append(
                        FieldProblem(field_name, "file is not valid UTF-8 text", origin.source, key)
                    )
                    return None
                return _drop_one_newline(text), origin
        return None


def _drop_one_newline(text: str) -> str:
    r"""``value\n`` and ``value\r\n`` give ``value``; a lone trailing ``\r`` is data."""
    if text.endswith("\r\n"):
        return text[:-2]
    return text.removesuffix("\n")
