"""What every canaryconf settings source shares: volume reads and provenance.

A :class:`BuildContext` lives for the construction of one settings snapshot. It reads each
volume once (or uses the snapshots a :class:`~canaryconf.LiveSettings` already read, so the
digest it reports is the content it validated), parses each label/annotation file once, and
records where each field's value came from, so a validation error can name the file, line
and key without showing the value.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from types import UnionType
from typing import TYPE_CHECKING, Any, ClassVar, Union, get_args, get_origin

from pydantic import AliasChoices
from pydantic.fields import FieldInfo
from pydantic_settings import PydanticBaseSettingsSource

from canaryconf._errors import FieldProblem, VolumeError, VolumeNotFoundError
from canaryconf._fields import FieldMapping, field_mapping
from canaryconf.downward import parse_map
from canaryconf.volume import VolumeSnapshot, read_volume, read_volume_files

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings

__all__ = [
    "BuildContext",
    "Origin",
    "TrackedSource",
    "VolumeSource",
    "as_dirs",
    "config_value",
    "current_context",
    "dashed",
    "field_names_by_key",
    "input_key",
    "register_source",
    "registered_sources",
    "unregister_source",
]

logger = logging.getLogger("canaryconf")

#: Defaults of the settings that are not a source kind's own (those are declared by each
#: kind: :attr:`VolumeSource.config_key` with :attr:`VolumeSource.default_dirs`, and
#: :attr:`VolumeSource.secret_keys_key`, empty by default).
CONFIG_DEFAULTS: dict[str, Any] = {
    "labels_file": "labels",
    "annotations_file": "annotations",
    "annotation_prefix": "",
    "label_prefix": None,
    "role_label": "role",
    "require_volumes": False,
    "max_file_bytes": 1024 * 1024,
    "max_volume_bytes": 4 * 1024 * 1024,
}


def config_value(settings_cls: type[BaseSettings], name: str) -> Any:
    """``model_config[name]`` of the settings class, or canaryconf's default (for a source
    kind's directories, the default its provider declares; for its secret keys, none)."""
    if name in settings_cls.model_config:
        return settings_cls.model_config.get(name)
    for source in _REGISTRY:
        if source.config_key == name:
            return source.default_dirs
        if source.secret_keys_key == name:
            return ()
    return CONFIG_DEFAULTS[name]


def as_dirs(value: Any) -> list[str]:
    """ "One directory or a list" as a list of paths: the one place it is normalised.

    >>> as_dirs("/etc/podinfo"), as_dirs(None), as_dirs(["/a", "/b"])
    (['/etc/podinfo'], [], ['/a', '/b'])
    """
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [os.fspath(value)]
    return [os.fspath(v) for v in value]


def dashed(name: str) -> str:
    """``db_url`` -> ``db-url``: how a field name becomes an annotation key or file name."""
    return name.replace("_", "-")


@dataclass(frozen=True)
class Origin:
    """Where one field's value came from: a file (and key in it), or a named source.

    ``map_text`` is the content of the label/annotation file the key is in (as read, or
    decoded), kept to find :attr:`line` only when an error needs it.
    """

    source: str
    key: str | None = None
    secret: bool = False
    map_text: str | bytes | None = dataclass_field(default=None, repr=False, compare=False)

    @property
    def line(self) -> int | None:
        """The 1-based line of ``key`` in a label/annotation file."""
        if self.map_text is None or self.key is None:
            return None
        needle = f"{self.key}=".encode("utf-8", errors="surrogateescape")
        data = self.map_text
        if isinstance(data, str):
            data = data.encode("utf-8", errors="surrogateescape")
        data = data.removeprefix(b"\xef\xbb\xbf")  # a byte order mark is not part of a key
        for number, text in enumerate(data.split(b"\n"), start=1):
            if text.startswith(needle):
                return number
        return None


_BUILD: ContextVar[BuildContext | None] = ContextVar("canaryconf_build", default=None)


class BuildContext:
    """Reads and provenance for the construction of one snapshot of ``settings_cls``."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        volumes: Mapping[str, VolumeSnapshot | None] | None = None,
    ) -> None:
        self.settings_cls = settings_cls
        self.volumes: dict[str, VolumeSnapshot | None] = dict(volumes or {})
        self.origins: dict[str, Origin] = {}
        self.problems: list[FieldProblem] = []
        self._maps: dict[str, dict[str, str]] = {}

    def volume(self, directory: str) -> VolumeSnapshot | None:
        """The snapshot of ``directory`` (read once), or None when it does not exist."""
        if directory not in self.volumes:
            self.volumes[directory] = read_settings_volume(self.settings_cls, directory)
        return self.volumes[directory]

    def downward_file(self, file: str) -> tuple[VolumeSnapshot, bytes] | None:
        """The downward file ``file`` and the snapshot it is in: from ``downward_api_dir``,
        else from the first projected volume that has it (downward items of a projected
        volume); None when no such file exists."""
        for directory in downward_dirs(self.settings_cls):
            snapshot = self.volume(directory)
            if snapshot is None:
                continue
            if file in snapshot.files:
                return snapshot, snapshot.files[file]
            nested = file + "/"
            if any(name.startswith(nested) for name in snapshot.files):
                # Not "no annotations": a version whose map file is a directory is broken,
                # and taking the defaults for it would apply settings nobody wrote.
                raise VolumeError(
                    snapshot.file_path(file),
                    "is a directory, not the label/annotation file the kubelet writes",
                )
        return None

    def downward_map(self, file: str) -> tuple[dict[str, str], str, bytes] | None:
        """The parsed label/annotation file ``file`` of the downward volume, its path and
        its content; None when there is no such volume or file."""
        found = self.downward_file(file)
        if found is None:
            return None
        snapshot, data = found
        path = snapshot.file_path(file)
        if path not in self._maps:
            self._maps[path] = parse_map(data, source=path)
        # The content stays bytes: decoding 256 KiB costs more than the rest of a lookup, and
        # only an error message (Origin.line) ever needs it.
        return self._maps[path], path, data

    def record(self, name: str, origin: Origin) -> None:
        """Note where ``name`` came from, unless a higher-priority source already did."""
        self.origins.setdefault(name, origin)


def read_settings_volume(settings_cls: type[BaseSettings], directory: str) -> VolumeSnapshot | None:
    """Read one volume with the caps of ``settings_cls``; None for a missing directory
    unless ``require_volumes`` is set.

    A directory some source kind reads selectively (a projected volume) gives only the
    files the class's fields can read, all from one generation: a file the class never
    needs (a 0400 Secret item owned by another user) is never opened."""
    wanted = files_needed(settings_cls).get(directory, None)
    try:
        if wanted is not None:
            return read_volume_files(
                directory,
                wanted,
                max_file_bytes=config_value(settings_cls, "max_file_bytes"),
                max_volume_bytes=config_value(settings_cls, "max_volume_bytes"),
            )
        return read_volume(
            directory,
            max_file_bytes=config_value(settings_cls, "max_file_bytes"),
            max_volume_bytes=config_value(settings_cls, "max_volume_bytes"),
        )
    except VolumeNotFoundError:
        if config_value(settings_cls, "require_volumes"):
            raise
        logger.debug("volume %s does not exist; it contributes nothing", directory)
        return None


def downward_dirs(settings_cls: type[BaseSettings]) -> list[str]:
    """Where downward files are looked for: ``downward_api_dir``, then the directories of
    the selective kinds (``projected_dirs``: a projected volume can hold downward items)."""
    dirs = as_dirs(config_value(settings_cls, "downward_api_dir"))
    for source in _REGISTRY:
        if source.selective:
            dirs.extend(source.dirs(settings_cls))
    return list(dict.fromkeys(dirs))


def files_needed(settings_cls: type[BaseSettings]) -> dict[str, frozenset[str] | None]:
    """For each directory the class reads: the files its fields can read there, or None
    for "every file". A directory is read selectively only when every source kind that
    reads it can say which files it needs (:meth:`VolumeSource.files_needed`) and at least
    one kind asks for that (:attr:`VolumeSource.selective`)."""
    needed: dict[str, set[str] | None] = {}
    selective: set[str] = set()
    for source in _REGISTRY:
        for directory, files in source.files_needed(settings_cls).items():
            if source.selective:
                selective.add(directory)
            if directory not in needed:
                needed[directory] = None if files is None else set(files)
            elif needed[directory] is not None:
                current = needed[directory]
                needed[directory] = None if files is None or current is None else current | files
    return {
        d: (frozenset(f) if f is not None and d in selective else None) for d, f in needed.items()
    }


def volume_dirs(settings_cls: type[BaseSettings]) -> list[str]:
    """Every volume directory the settings class reads, in precedence order: those of each
    registered source kind, in the registry's order (see :func:`registered_sources`)."""
    dirs: list[str] = []
    for source in _REGISTRY:
        dirs.extend(source.dirs(settings_cls))
    return list(dict.fromkeys(dirs))


def current_context(settings_cls: type[BaseSettings]) -> BuildContext:
    """The context of the snapshot being built now (a fresh one outside a build)."""
    ctx = _BUILD.get()
    if ctx is None or ctx.settings_cls is not settings_cls:
        return BuildContext(settings_cls)
    return ctx


def enter_context(ctx: BuildContext) -> Any:
    """Make ``ctx`` the current build context; returns a token for :func:`exit_context`."""
    return _BUILD.set(ctx)


def exit_context(token: Any) -> None:
    """Undo :func:`enter_context`."""
    _BUILD.reset(token)


class VolumeSource(PydanticBaseSettingsSource):
    """Base of the volume-backed sources: subclasses implement :meth:`lookup`.

    ``lookup`` returns the raw text of a field and its :class:`Origin`, or None. Complex
    fields (dict, list, models) are decoded from JSON here, with an error that names the
    file and key, never the value.

    Each subclass also describes itself, so that :func:`volume_dirs`, the CLI's flags and
    redaction, and selective reads all follow from one declaration: its ``kind`` (the name
    field helpers use), the ``config_key`` of ``model_config`` that names its directories
    and that key's ``default_dirs``, whether everything it reads is ``secret`` or only the
    files listed under the ``secret_keys_key`` of ``model_config`` (the Secret items of a
    projected volume), the ``cli_flag`` that points it elsewhere, whether it reads only
    the files fields need (``selective``), and, through :meth:`field_keys`, which files or
    keys a field reads. Register it with :func:`register_source` to add it to every
    :class:`CanarySettings`.
    """

    kind: ClassVar[str] = ""
    config_key: ClassVar[str | None] = None
    default_dirs: ClassVar[Any] = ()
    secret: ClassVar[bool] = False
    secret_keys_key: ClassVar[str | None] = None
    cli_flag: ClassVar[str | None] = None
    cli_help: ClassVar[str | None] = None
    selective: ClassVar[bool] = False

    @classmethod
    def dirs(cls, settings_cls: type[BaseSettings]) -> list[str]:
        """The directories this kind reads for ``settings_cls``."""
        if cls.config_key is None:
            return []
        return as_dirs(config_value(settings_cls, cls.config_key))

    @classmethod
    def secret_files(cls, settings_cls: type[BaseSettings] | None) -> frozenset[str] | None:
        """The files of this kind's volumes whose content is secret; None for every file.

        Every file of a ``secret`` kind is; for a kind with a ``secret_keys_key``, the
        files the settings class lists there, and every file when there is no class to
        say which (a command given only a directory); for other kinds, none.

        >>> from canaryconf.sources.providers import ConfigMapSource, ProjectedSource
        >>> ConfigMapSource.secret_files(None), ProjectedSource.secret_files(None)
        (frozenset(), None)
        """
        if cls.secret:
            return None
        if cls.secret_keys_key is None:
            return frozenset()
        if settings_cls is None:
            return None
        return frozenset(as_dirs(config_value(settings_cls, cls.secret_keys_key)))

    @classmethod
    def field_keys(
        cls, settings_cls: type[BaseSettings], field_name: str, field: FieldInfo
    ) -> list[str]:
        """The files (or map keys) of this kind ``field`` may read, in lookup order."""
        return []

    @classmethod
    def files_needed(cls, settings_cls: type[BaseSettings]) -> dict[str, set[str] | None]:
        """The files this kind reads in each of its directories (None: it cannot tell)."""
        return dict.fromkeys(cls.dirs(settings_cls))

    def __init__(self, settings_cls: type[BaseSettings], context: BuildContext | None = None):
        super().__init__(settings_cls)
        self.context = context or current_context(settings_cls)

    def lookup(
        self, field_name: str, field: FieldInfo, mapping: FieldMapping
    ) -> tuple[Any, Origin] | None:
        raise NotImplementedError

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        found = self.lookup(field_name, field, field_mapping(field))
        return (found[0] if found else None), field_name, False

    def __call__(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for field_name, field in self.settings_cls.model_fields.items():
            found = self.lookup(field_name, field, field_mapping(field))
            if found is None:
                continue
            value, origin = found
            if isinstance(value, str):
                complex_, may_stay_text = self._complexity(field)
                try:
                    value = json.loads(value) if complex_ else value
                except json.JSONDecodeError as exc:
                    if not may_stay_text:
                        self.context.problems.append(_json_problem(field_name, exc, origin))
                        continue
                except (RecursionError, ValueError) as exc:
                    # Valid JSON Python will not decode: nesting deeper than the stack, an
                    # integer over the int-from-text digit limit. Its message holds no value.
                    self.context.problems.append(_json_limit_problem(field_name, exc, origin))
                    continue
            data[input_key(field_name, field)] = value
            self.context.record(field_name, origin)
        return data

    def _complexity(self, field: FieldInfo) -> tuple[bool, bool]:
        """Whether a text value of ``field`` is JSON, and whether text that is not JSON may
        still be given to pydantic (``list[str] | str``). ``dict | None`` is JSON."""
        if self.field_is_complex(field):
            return True, False
        members = [m for m in get_args(field.annotation) if m is not type(None)]
        if get_origin(field.annotation) not in (Union, UnionType) or not members:
            return False, False
        complex_ = [self.field_is_complex(FieldInfo(annotation=m)) for m in members]
        return any(complex_), not all(complex_)


def input_key(field_name: str, field: FieldInfo) -> str:
    """The key under which a source hands ``field``'s value to pydantic: one its validation
    accepts (``validation_alias``, else ``alias``, else the name)."""
    alias = field.validation_alias
    if isinstance(alias, str):
        return alias
    if isinstance(alias, AliasChoices):
        for choice in alias.choices:
            if isinstance(choice, str):
                return choice
    return field.alias or field_name


def field_names_by_key(settings_cls: type[BaseSettings]) -> dict[str, str]:
    """Field names by every key that can stand for them in pydantic's data and errors
    (names, aliases, validation aliases)."""
    names: dict[str, str] = {}
    for name, field in settings_cls.model_fields.items():
        keys = [name, field.alias, field.validation_alias]
        if isinstance(field.validation_alias, AliasChoices):
            keys.extend(field.validation_alias.choices)
        for key in keys:
            if isinstance(key, str):
                names.setdefault(key, name)
    return names


def _json_problem(field_name: str, exc: json.JSONDecodeError, origin: Origin) -> FieldProblem:
    return FieldProblem(
        field=field_name,
        reason=f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno} of the value)",
        source=origin.source,
        key=origin.key,
        line=origin.line,
    )


def _json_limit_problem(field_name: str, exc: Exception, origin: Origin) -> FieldProblem:
    if isinstance(exc, RecursionError):
        what = "nested too deeply"
    else:
        what = "a number with too many digits"
    return FieldProblem(
        field=field_name,
        reason=f"invalid JSON: {what} to decode",
        source=origin.source,
        key=origin.key,
        line=origin.line,
    )


class TrackedSource(PydanticBaseSettingsSource):
    """Wraps one of pydantic-settings' own sources to record which fields it provided."""

    def __init__(self, inner: PydanticBaseSettingsSource, origin: str, context: BuildContext):
        super().__init__(inner.settings_cls)
        self.inner = inner
        self.origin = origin
        self.context = context

    def _set_current_state(self, state: dict[str, Any]) -> None:
        super()._set_current_state(state)
        self.inner._set_current_state(state)

    def _set_settings_sources_data(self, states: dict[str, dict[str, Any]]) -> None:
        super()._set_settings_sources_data(states)
        self.inner._set_settings_sources_data(states)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.inner.get_field_value(field, field_name)

    def __call__(self) -> dict[str, Any]:
        data = self.inner()
        names = field_names_by_key(self.settings_cls)
        for key in data:
            self.context.record(names.get(key, key), Origin(source=self.origin, key=key))
        return data

    def __repr__(self) -> str:
        return f"TrackedSource({self.inner!r})"


# --------------------------------------------------------------------------------------------
# The registry: one ordered list of source kinds, highest precedence first.

_REGISTRY: list[type[VolumeSource]] = []


def register_source(source: type[VolumeSource], *, before: str | None = None) -> None:
    """Add a source kind to every :class:`~canaryconf.CanarySettings`: its volumes are read,
    watched and shown by the CLI. It goes last, or just before the kind named ``before``.

    >>> from canaryconf.sources.base import registered_sources
    >>> [s.kind for s in registered_sources()]
    ['annotation', 'label', 'pod_field', 'projected', 'configmap', 'secret']
    """
    if any(s.kind == source.kind for s in _REGISTRY):
        raise ValueError(f"a source of kind {source.kind!r} is already registered")
    index = len(_REGISTRY)
    if before is not None:
        index = next(i for i, s in enumerate(_REGISTRY) if s.kind == before)
    _REGISTRY.insert(index, source)


def unregister_source(kind: str) -> None:
    """Remove the source kind ``kind`` (for tests that registered one)."""
    _REGISTRY[:] = [s for s in _REGISTRY if s.kind != kind]


def registered_sources() -> tuple[type[VolumeSource], ...]:
    """The registered source kinds in precedence order, highest first."""
    return tuple(_REGISTRY)
