"""The shared reading of key-per-file volumes (ConfigMaps, Secrets, projected volumes)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic.fields import FieldInfo

from canaryconf._errors import FieldProblem
from canaryconf._fields import FieldMapping, field_mapping
from canaryconf.sources.base import BuildContext, Fetch, Origin, VolumeSource, dashed

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

    @classmethod
    def fetcher(
        cls,
        settings_cls: type[BaseSettings],
        field_name: str,
        field: FieldInfo,
        mapping: FieldMapping,
    ) -> Fetch:
        keys = cls.field_keys(settings_cls, field_name, field)
        dirs = cls.dirs(settings_cls)
        # Whether the value of file ``key`` is secret: its field says so, or the kind does
        # (:meth:`~canaryconf.sources.base.VolumeSource.secret_files`).
        files = cls.secret_files(settings_cls)
        secret = {key: mapping.secret or files is None or key in files for key in keys}

        def fetch(context: BuildContext) -> tuple[Any, Origin] | None:
            for directory in dirs:
                snapshot = context.volume(directory)
                if snapshot is None:
                    continue
                for key in keys:
                    data = snapshot.files.get(key)
                    if data is None:
                        continue
                    origin = Origin(snapshot.file_path(key), key, secret=secret[key])
                    try:
                        text = data.decode("utf-8")
                    except UnicodeDecodeError:
                        context.problems.append(
                            FieldProblem(
                                field_name, "file is not valid UTF-8 text", origin.source, key
                            )
                        )
                        return None
                    return _drop_one_newline(text), origin
            return None

        return fetch


def _drop_one_newline(text: str) -> str:
    r"""``value\n`` and ``value\r\n`` give ``value``; a lone trailing ``\r`` is data."""
    if text.endswith("\r\n"):
        return text[:-2]
    return text.removesuffix("\n")
