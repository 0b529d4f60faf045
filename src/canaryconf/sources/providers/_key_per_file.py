"""The shared reading of key-per-file volumes (ConfigMaps, Secrets, projected volumes)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic.fields import FieldInfo

from canaryconf._errors import FieldProblem
from canaryconf._fields import FieldMapping, field_mapping
from canaryconf.sources.base import Origin, VolumeSource, class_memo, dashed

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings


class KeyPerFileSource(VolumeSource):
    """A field maps to the file named by its helper, else to a file named like the field
    (``db_url``) or dashed (``db-url``); the first directory listed that has it wins. One
    trailing newline (``kubectl create --from-file`` keeps it) is dropped."""

    #: The helper kinds (``configmap("k")``, ``secret("k")``) this source serves.
    accepts: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def field_keys(
        cls, settings_cls: type[BaseSettings], field_name: str, field: FieldInfo
    ) -> list[str]:
        mapping = field_mapping(field)
        if mapping.source not in (None, *cls.accepts):
            return []
        keys = [mapping.key] if mapping.key else [field_name, dashed(field_name)]
        if field.alias and not mapping.key:
            keys.insert(0, field.alias)
        return keys

    @classmethod
    def files_needed(cls, settings_cls: type[BaseSettings]) -> dict[str, set[str] | None]:
        keys = {
            key
            for name, field in settings_cls.model_fields.items()
            for key in cls.field_keys(settings_cls, name, field)
        }
        return {directory: set(keys) for directory in cls.dirs(settings_cls)}

    @classmethod
    def serves(cls, settings_cls: type[BaseSettings], field_name: str, field: FieldInfo) -> bool:
        return bool(cls.dirs(settings_cls)) and bool(
            cls.field_keys(settings_cls, field_name, field)
        )

    def is_secret_key(self, key: str, mapping: FieldMapping) -> bool:
        """Whether the value of file ``key`` is secret: its field says so, or the kind
        does (:meth:`~canaryconf.sources.base.VolumeSource.secret_files`)."""
        files = self.secret_files(self.settings_cls)
        return mapping.secret or files is None or key in files

    def lookup(
        self, field_name: str, field: FieldInfo, mapping: FieldMapping
    ) -> tuple[Any, Origin] | None:
        cls = type(self)
        keys = class_memo(
            self.settings_cls,
            (cls.field_keys, field_name),
            lambda: cls.field_keys(self.settings_cls, field_name, field),
        )
        if not keys:
            return None
        for directory in self.dirs(self.settings_cls):
            snapshot = self.context.volume(directory)
            if snapshot is None:
                continue
            for key in keys:
                data = snapshot.files.get(key)
                if data is None:
                    continue
                origin = Origin(
                    snapshot.file_path(key), key, secret=self.is_secret_key(key, mapping)
                )
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
