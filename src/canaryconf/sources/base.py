"""What every canaryconf settings source shares: volume reads and provenance.

A :class:`BuildContext` lives for the construction of one settings snapshot. It reads each
volume once (or uses the snapshots a :class:`~canaryconf.LiveSettings` already read, so the
digest it reports is the content it validated), parses each label/annotation file once, and
records where each field's value came from, so a validation error can name the file, line
and key without showing the value.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from types import MappingProxyType, UnionType
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, Union, get_args, get_origin

from pydantic import AliasChoices
from pydantic.fields import FieldInfo
from pydantic_settings import PydanticBaseSettingsSource

from canaryconf._errors import FieldProblem, VolumeError, VolumeNotFoundError
from canaryconf._fields import FieldMapping, field_mapping
from canaryconf.downward import parse_map
from canaryconf.volume import GenerationCache, VolumeSnapshot

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings

__all__ = [
    "BuildContext",
    "Fetch",
    "Origin",
    "StaticValues",
    "TrackedSource",
    "VolumeSource",
    "as_dirs",
    "canaryconf_order",
    "class_memo",
    "config_value",
    "current_context",
    "dashed",
    "field_names",
    "field_names_by_key",
    "input_key",
    "map_fetch",
    "map_files_needed",
    "places_own_sources",
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


T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class _ClassMemo:
    __slots__ = ("config", "registry", "values")

    def __init__(self, config: object, registry: int) -> None:
        self.config = config
        self.registry = registry
        self.values: dict[object, Any] = {}


#: Where a class keeps its memo: in its own ``__dict__`` (never inherited: a subclass is
#: another declaration), so it lives and dies with the class and is found without a weak
#: reference made per look-up.
_MEMO_ATTRIBUTE = "__canaryconf_memo__"


def class_memo(settings_cls: type[BaseSettings], key: object, compute: Callable[[], T]) -> T:
    """``compute()``, computed once per settings class: for what follows from the class's
    declaration alone (its fields, its ``model_config``, the source registry), such as the
    directories it reads or the files each field may read. A reload re-reads files, never
    the class. A new ``model_config`` object or a change to the registry starts afresh;
    like pydantic, canaryconf reads ``model_config`` as it is when the class is used, and
    does not notice it being mutated in place afterwards."""
    memo: _ClassMemo | None = settings_cls.__dict__.get(_MEMO_ATTRIBUTE)
    if (
        memo is None
        or memo.config is not settings_cls.model_config
        or memo.registry != _registry_version
    ):
        memo = _ClassMemo(settings_cls.model_config, _registry_version)
        type.__setattr__(settings_cls, _MEMO_ATTRIBUTE, memo)
    try:
        return memo.values[key]  # type: ignore[no-any-return]
    except KeyError:
        value = memo.values[key] = compute()
        return value


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


@dataclass(frozen=True, init=False)
class Origin:
    """Where one field's value came from: a file (and key in it), or a named source.

    ``map_text`` is the content of the label/annotation file the key is in (as read, or
    decoded), kept to find :attr:`line` only when an error needs it.
    """

    source: str
    key: str | None = None
    secret: bool = False
    map_text: str | bytes | None = dataclass_field(default=None, repr=False, compare=False)

    def __init__(
        self,
        source: str,
        key: str | None = None,
        secret: bool = False,
        map_text: str | bytes | None = None,
    ) -> None:
        # A reload makes one per field: filled in directly, a third of what the frozen
        # dataclass's generated ``__init__`` (a ``object.__setattr__`` per field) costs.
        values = self.__dict__
        values["source"] = source
        values["key"] = key
        values["secret"] = secret
        values["map_text"] = map_text

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
        static: StaticValues | None = None,
    ) -> None:
        self.settings_cls = settings_cls
        self.volumes: dict[str, VolumeSnapshot | None] = dict(volumes or {})
        self.origins: dict[str, Origin] = {}
        self.problems: list[FieldProblem] = []
        #: What the sources that cannot change gave in an earlier build: when set, the
        #: build reads only the volume sources (see :class:`StaticValues`).
        self.static = static
        #: What each of pydantic-settings' own sources gave in this build, by origin name.
        self.captured: dict[str, dict[str, Any]] = {}
        self._maps: dict[str, tuple[dict[str, str], str, bytes] | None] = {}

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
            if file in snapshot.directories or any(
                name.startswith(nested) for name in snapshot.files
            ):
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
        if file in self._maps:
            return self._maps[file]  # every field of the file asks: found once per build
        found = self.downward_file(file)
        if found is None:
            self._maps[file] = None
            return None
        snapshot, data = found
        path = snapshot.file_path(file)
        # Parsed once per generation, whoever reads it (the snapshot is shared).
        # (What a snapshot derived is keyed by whoever derived it: here, parse_map's.)
        parsed: dict[str, str] | None = snapshot.derived.get((parse_map, file))  # type: ignore[assignment]
        if parsed is None:
            parsed = snapshot.derived[(parse_map, file)] = parse_map(data, source=path)
        # The content stays bytes: decoding 256 KiB costs more than the rest of a lookup, and
        # only an error message (Origin.line) ever needs it.
        result = self._maps[file] = (parsed, path, data)
        return result

    def record(self, name: str, origin: Origin) -> None:
        """Note where ``name`` came from, unless a higher-priority source already did."""
        self.origins.setdefault(name, origin)

    def record_static(self, source: str, data: Mapping[str, Any]) -> None:
        """Note the fields that pydantic-settings' source ``source`` gave (its keys)."""
        names = field_names_by_key(self.settings_cls)
        for key in data:
            self.record(names.get(key, key), Origin(source=source, key=key))


#: The generations read in this process: every LiveSettings of a volume shares one read.
GENERATIONS = GenerationCache()


def read_settings_volume(
    settings_cls: type[BaseSettings],
    directory: str,
    *,
    shared: bool = False,
    data_target: str | None = None,
) -> VolumeSnapshot | None:
    """Read one volume with the caps of ``settings_cls``; None for a missing directory
    unless ``require_volumes`` is set.

    A directory some source kind reads selectively (a projected volume) gives only the
    files the class's fields can read, all from one generation: a file the class never
    needs (a 0400 Secret item owned by another user) is never opened. ``shared`` takes the
    generation another reader in this process read already, if ``..data`` still names it
    (:class:`~canaryconf.volume.GenerationCache`); otherwise the files are read.
    ``data_target`` is what ``..data`` named when the caller just looked (not read again)."""
    try:
        return GENERATIONS.read(
            directory,
            _files_needed_memo(settings_cls).get(directory, None),
            max_file_bytes=config_value(settings_cls, "max_file_bytes"),
            max_volume_bytes=config_value(settings_cls, "max_volume_bytes"),
            fresh=not shared,
            data_target=data_target,
        )
    except VolumeNotFoundError:
        if config_value(settings_cls, "require_volumes"):
            raise
        logger.debug("volume %s does not exist; it contributes nothing", directory)
        return None


def downward_dirs(settings_cls: type[BaseSettings]) -> list[str]:
    """Where downward files are looked for: ``downward_api_dir``, then the directories of
    the kinds whose volumes can hold downward items (``projected_dirs``)."""

    def compute() -> tuple[str, ...]:
        dirs = as_dirs(config_value(settings_cls, "downward_api_dir"))
        for source in _REGISTRY:
            if source.holds_downward_items:
                dirs.extend(source.dirs(settings_cls))
        return tuple(dict.fromkeys(dirs))

    return list(class_memo(settings_cls, downward_dirs, compute))


def map_fetch(file: str, key: str, *, secret: bool = False) -> Fetch:
    """The fetch of a field that is ``key`` of the label/annotation file ``file``."""

    def fetch(context: BuildContext) -> tuple[Any, Origin] | None:
        found = context.downward_map(file)
        if found is None:
            return None
        values, path, text = found
        if key not in values:
            return None
        return values[key], Origin(path, key, secret=secret, map_text=text)

    return fetch


def map_files_needed(
    kind: type[VolumeSource], settings_cls: type[BaseSettings], file: str
) -> dict[str, set[str] | None]:
    """What the label or annotation kind reads: its map ``file`` in the downwardAPI
    volume, whatever the fields (every LiveSettings of the volume then asks for the same
    files and shares one read), and in a projected volume only if a field reads it (an
    item there may be one this user cannot read)."""
    reads = any(kind.serves(settings_cls, n, f) for n, f in settings_cls.model_fields.items())
    own = set(as_dirs(config_value(settings_cls, "downward_api_dir")))
    return {d: ({file} if reads or d in own else set()) for d in downward_dirs(settings_cls)}


def files_needed(settings_cls: type[BaseSettings]) -> dict[str, frozenset[str] | None]:
    """For each directory the class reads: the files its fields can read there, or None
    for "every file". A directory is read selectively only when every source kind that
    reads it can say which files it needs (:meth:`VolumeSource.files_needed`) and at least
    one kind asks for that (:attr:`VolumeSource.selective`): a projected volume (whose
    items may have modes that keep this user out), and the downwardAPI volume (which holds
    only what the pod spec lists: the label, annotation and pod-field kinds read their
    files and no others) unless the class places its sources itself."""
    return dict(_files_needed_memo(settings_cls))


def _files_needed_memo(settings_cls: type[BaseSettings]) -> Mapping[str, frozenset[str] | None]:
    return class_memo(
        settings_cls, files_needed, lambda: MappingProxyType(_files_needed(settings_cls))
    )


def _files_needed(settings_cls: type[BaseSettings]) -> dict[str, frozenset[str] | None]:
    needed: dict[str, set[str] | None] = {}
    selective: set[str] = set()
    # A class that places its sources itself may read any file of the downwardAPI volume
    # (through sources no kind describes): that volume is read whole for it.
    whole = set(as_dirs(config_value(settings_cls, "downward_api_dir")))
    if not places_own_sources(settings_cls):
        whole.clear()
    for source in _REGISTRY:
        for directory, files in source.files_needed(settings_cls).items():
            if source.selective and directory not in whole:
                selective.add(directory)
            if directory not in needed:
                needed[directory] = None if files is None else set(files)
            elif needed[directory] is not None:
                current = needed[directory]
                needed[directory] = None if files is None or current is None else current | files
    return {
        d: (frozenset(f) if f is not None and d in selective else None) for d, f in needed.items()
    }


def canaryconf_order(fn: F) -> F:
    """Mark ``fn`` as canaryconf's own ``settings_customise_sources`` or
    ``volume_sources``: a class whose method is not marked overrides it (see
    :func:`places_own_sources`)."""
    setattr(fn, "_canaryconf_order", True)  # noqa: B010  (a function's attribute)
    return fn


def _keeps_order(settings_cls: type[BaseSettings], method: str) -> bool:
    """Whether ``settings_cls.<method>`` is canaryconf's own (marked with
    :func:`canaryconf_order`), not an override."""
    return getattr(getattr(settings_cls, method, None), "_canaryconf_order", False) is True


def places_own_sources(settings_cls: type[BaseSettings]) -> bool:
    """Whether the class overrides canaryconf's ``settings_customise_sources``: its
    sources are then not (only) the registered kinds in canaryconf's order."""
    return not _keeps_order(settings_cls, "settings_customise_sources")


def volume_dirs(settings_cls: type[BaseSettings]) -> list[str]:
    """Every volume directory the settings class reads, in precedence order: those of each
    registered source kind, in the registry's order (see :func:`registered_sources`)."""

    def compute() -> tuple[str, ...]:
        dirs: list[str] = []
        for source in _REGISTRY:
            dirs.extend(source.dirs(settings_cls))
        return tuple(dict.fromkeys(dirs))

    return list(class_memo(settings_cls, volume_dirs, compute))


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
    """Base of the volume-backed sources: subclasses implement :meth:`fetcher` (or
    :meth:`lookup`).

    ``lookup`` returns the raw text of a field and its :class:`Origin`, or None. Complex
    fields (dict, list, models) are decoded from JSON here, with an error that names the
    file and key, never the value.

    Each subclass also describes itself, so that :func:`volume_dirs`, the CLI's flags and
    redaction, and selective reads all follow from one declaration: its ``kind`` (the name
    field helpers use), the ``config_key`` of ``model_config`` that names its directories
    and that key's ``default_dirs``, whether everything it reads is ``secret`` or only the
    files listed under the ``secret_keys_key`` of ``model_config`` (the Secret items of a
    projected volume), the ``cli_flag`` that points it elsewhere, whether it reads only
    the files fields need (``selective``), whether its volumes can hold downward items
    (``holds_downward_items``: the label, annotation and pod-field kinds look there too),
    and, through :meth:`field_keys`, which files or keys a field reads. Register it with
    :func:`register_source` to add it to every :class:`CanarySettings`.
    """

    kind: ClassVar[str] = ""
    config_key: ClassVar[str | None] = None
    default_dirs: ClassVar[Any] = ()
    secret: ClassVar[bool] = False
    secret_keys_key: ClassVar[str | None] = None
    cli_flag: ClassVar[str | None] = None
    cli_help: ClassVar[str | None] = None
    selective: ClassVar[bool] = False
    holds_downward_items: ClassVar[bool] = False

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

    @classmethod
    def serves(cls, settings_cls: type[BaseSettings], field_name: str, field: FieldInfo) -> bool:
        """Whether this kind can ever give ``field`` a value (default: yes). Asked once
        per class: a reload looks up only the fields each kind serves, so a kind need not
        check in :meth:`lookup` what its declaration already says."""
        return True

    def __init__(self, settings_cls: type[BaseSettings], context: BuildContext | None = None):
        super().__init__(settings_cls)
        self.context = context or current_context(settings_cls)

    @classmethod
    def fetcher(
        cls,
        settings_cls: type[BaseSettings],
        field_name: str,
        field: FieldInfo,
        mapping: FieldMapping,
    ) -> Fetch:
        """How this kind finds ``field``'s value, worked out once per class: what follows
        from the declaration (the file, the key, a prefix, secrecy) is settled here, and
        the function returned only looks in the files of one build. Asked only for the
        fields this kind :meth:`serves`, and never for a kind that defines :meth:`lookup`."""
        raise NotImplementedError(f"{cls.__name__} defines neither fetcher nor lookup")

    def lookup(
        self, field_name: str, field: FieldInfo, mapping: FieldMapping
    ) -> tuple[Any, Origin] | None:
        """The raw value of ``field`` and its origin, or None. Asked only for the fields
        this kind :meth:`serves`. The built-in kinds define :meth:`fetcher` instead, and
        this asks it; a kind of your own may define either."""
        return _fetch_of(type(self), self.settings_cls, field_name, field, mapping)(self.context)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if not type(self).serves(self.settings_cls, field_name, field):
            return None, field_name, False
        found = self.lookup(field_name, field, field_mapping(field))
        return (found[0] if found else None), field_name, False

    def __call__(self) -> dict[str, Any]:
        return _collect(_served(self), self.context, self)


def _collect(
    served: tuple[_Served, ...], context: BuildContext, source: VolumeSource | None
) -> dict[str, Any]:
    """What one kind gives in one build: each served field's value (JSON text decoded),
    by input key; origins and problems go to ``context``. ``source`` answers the fields
    that have no fetch (a kind that defines :meth:`VolumeSource.lookup`)."""
    data: dict[str, Any] = {}
    origins = context.origins
    for field_name, field, mapping, key, fetch, complex_, may_stay_text in served:
        if fetch is not None:
            found = fetch(context)
        else:
            assert source is not None  # (a served field without a fetch has a source)
            found = source.lookup(field_name, field, mapping)
        if found is None:
            continue
        value, origin = found
        if complex_ and isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                if not may_stay_text:
                    context.problems.append(_json_problem(field_name, exc, origin))
                    continue
            except (RecursionError, ValueError) as exc:
                # Valid JSON Python will not decode: nesting deeper than the stack, an
                # integer over the int-from-text digit limit. Its message holds no value.
                context.problems.append(_json_limit_problem(field_name, exc, origin))
                continue
        data[key] = value
        origins.setdefault(field_name, origin)  # (BuildContext.record, inline)
    return data


def volume_values(settings_cls: type[BaseSettings], context: BuildContext) -> list[dict[str, Any]]:
    """What each volume source gives in one build, highest precedence first: what
    ``[source() for source in settings_cls.volume_sources(settings_cls)]`` gives, without
    making a source object per kind and build. A kind that defines its own ``lookup`` or
    ``__call__`` is still made and called; so is every source of a class that overrides
    ``volume_sources``."""

    def compute() -> tuple[tuple[type[VolumeSource], tuple[_Served, ...] | None], ...] | None:
        if not _keeps_order(settings_cls, "volume_sources"):
            return None
        plan = []
        for kind in registered_sources():
            own = (
                kind.lookup is not VolumeSource.lookup or kind.__call__ is not VolumeSource.__call__
            )
            plan.append((kind, None if own else _served(kind(settings_cls, context))))
        return tuple(plan)

    plan = class_memo(settings_cls, volume_values, compute)
    if plan is None:
        return [source() for source in settings_cls.volume_sources(settings_cls)]  # type: ignore[attr-defined]
    layers = []
    for kind, served in plan:
        if served is None:
            layers.append(kind(settings_cls, context)())
        else:
            layers.append(_collect(served, context, None))
    return layers


#: One field's look-up in one build (see :meth:`VolumeSource.fetcher`).
Fetch = Callable[[BuildContext], "tuple[Any, Origin] | None"]


def _fetch_of(
    kind: type[VolumeSource],
    settings_cls: type[BaseSettings],
    field_name: str,
    field: FieldInfo,
    mapping: FieldMapping,
) -> Fetch:
    """``kind.fetcher(...)`` for one field, once per class."""
    return class_memo(
        settings_cls,
        (VolumeSource.fetcher, kind, field_name),
        lambda: kind.fetcher(settings_cls, field_name, field, mapping),
    )


_Served = tuple[str, FieldInfo, FieldMapping, str, "Fetch | None", bool, bool]


def _served(source: VolumeSource) -> tuple[_Served, ...]:
    """What a build asks the kind of ``source``, once per settings class: each field the
    kind serves, with its mapping, input key and fetch, and whether its text is JSON (and
    may stay text when it is not)."""
    kind, settings_cls = type(source), source.settings_cls
    # A kind that defines its own lookup (a subclass of a built-in kind too) is asked that.
    own_lookup = kind.lookup is not VolumeSource.lookup

    def compute() -> tuple[_Served, ...]:
        served = []
        for name, field, mapping, key in _field_plan(settings_cls):
            if kind.serves(settings_cls, name, field):
                fetch = None if own_lookup else _fetch_of(kind, settings_cls, name, field, mapping)
                served.append((name, field, mapping, key, fetch, *_complexity(source, field)))
        return tuple(served)

    return class_memo(settings_cls, (VolumeSource.serves, kind), compute)


def _complexity(source: VolumeSource, field: FieldInfo) -> tuple[bool, bool]:
    """Whether a text value of ``field`` is JSON, and whether text that is not JSON may
    still be given to pydantic (``list[str] | str``). ``dict | None`` is JSON."""
    if source.field_is_complex(field):
        return True, False
    members = [m for m in get_args(field.annotation) if m is not type(None)]
    if get_origin(field.annotation) not in (Union, UnionType) or not members:
        return False, False
    complex_ = [source.field_is_complex(FieldInfo(annotation=m)) for m in members]
    return any(complex_), not all(complex_)


def _field_plan(
    settings_cls: type[BaseSettings],
) -> tuple[tuple[str, FieldInfo, FieldMapping, str], ...]:
    """Each field's name, info, :class:`FieldMapping` and :func:`input_key`, once per class."""
    return class_memo(
        settings_cls,
        _field_plan,
        lambda: tuple(
            (name, field, field_mapping(field), input_key(name, field))
            for name, field in settings_cls.model_fields.items()
        ),
    )


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


def field_names(settings_cls: type[BaseSettings]) -> tuple[str, ...]:
    """The names of the fields of ``settings_cls``, in order, once per class."""
    return class_memo(settings_cls, field_names, lambda: tuple(settings_cls.model_fields))


def field_names_by_key(settings_cls: type[BaseSettings]) -> Mapping[str, str]:
    """Field names by every key that can stand for them in pydantic's data and errors
    (names, aliases, validation aliases)."""
    return class_memo(settings_cls, field_names_by_key, lambda: _names_by_key(settings_cls))


def _names_by_key(settings_cls: type[BaseSettings]) -> Mapping[str, str]:
    names: dict[str, str] = {}
    for name, field in settings_cls.model_fields.items():
        keys = [name, field.alias, field.validation_alias]
        if isinstance(field.validation_alias, AliasChoices):
            keys.extend(field.validation_alias.choices)
        for key in keys:
            if isinstance(key, str):
                names.setdefault(key, name)
    return MappingProxyType(names)


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


@dataclass(frozen=True)
class StaticValues:
    """What the sources that cannot change while a process runs gave, read once.

    Init kwargs are fixed when a :class:`~canaryconf.LiveSettings` is made, environment
    variables when the process starts, and a dotenv file or pydantic's ``secrets_dir`` are
    part of the image, not of a volume the kubelet updates. A reload reads only the volume
    sources and merges their values with these, as pydantic-settings would
    (``reload(everything=True)`` reads them all again).
    """

    init: Mapping[str, Any]
    #: What each source below the volume ones gave, by origin name, highest precedence
    #: first (:attr:`BELOW_VOLUMES`).
    below_volumes: tuple[tuple[str, Mapping[str, Any]], ...]

    #: The origin names of the sources below the volume ones, highest precedence first.
    BELOW_VOLUMES: ClassVar[tuple[str, ...]] = ("environment", "dotenv", "secrets_dir")

    @functools.cached_property
    def merged_below(self) -> dict[str, Any]:
        """The sources below the volume ones merged as pydantic-settings merges them (the
        lowest first, a dict merged into a dict key by key): where a build's merge starts
        from. Give validation a deep copy: a validator may change its input in place."""
        merged: dict[str, Any] = {}
        for _name, data in reversed(self.below_volumes):
            merged = deep_update(merged, data)
        return merged

    @classmethod
    def captured(cls, context: BuildContext) -> StaticValues | None:
        """The values a full build in ``context`` captured (None: it did not capture all:
        the class arranges its sources itself)."""
        found = context.captured
        if not all(name in found for name in ("init", *cls.BELOW_VOLUMES)):
            return None
        return cls(
            init=dict(found["init"]),
            below_volumes=tuple((name, dict(found[name])) for name in cls.BELOW_VOLUMES),
        )


def deep_update(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` merged in, the way pydantic-settings merges one source's
    values into a lower one's: a dict into a dict key by key, anything else replaces."""
    return merge_into(dict(base), update)


def merge_into(merged: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`deep_update` into ``merged`` itself (a dict the caller owns; the dicts in
    it are not changed, a merge below the top level copies); returns ``merged``."""
    for key, value in update.items():
        below = merged.get(key)
        if isinstance(below, dict) and isinstance(value, dict):
            merged[key] = deep_update(below, value)
        else:
            merged[key] = value
    return merged


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
        # A copy: validation may change the data it is given in place (a "before"
        # validator), and a reload merges what the source gave, not what was made of it.
        self.context.captured[self.origin] = copy.deepcopy(data) if data else {}
        self.context.record_static(self.origin, data)
        return data

    def __repr__(self) -> str:
        return f"TrackedSource({self.inner!r})"


# --------------------------------------------------------------------------------------------
# The registry: one ordered list of source kinds, highest precedence first.

_REGISTRY: list[type[VolumeSource]] = []
#: Bumped at each change of the registry: what :func:`class_memo` computed is then stale.
_registry_version = 0


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
    _registry_changed()


def unregister_source(kind: str) -> None:
    """Remove the source kind ``kind`` (for tests that registered one)."""
    _REGISTRY[:] = [s for s in _REGISTRY if s.kind != kind]
    _registry_changed()


def _registry_changed() -> None:
    global _registry_version
    _registry_version += 1


def registered_sources() -> tuple[type[VolumeSource], ...]:
    """The registered source kinds in precedence order, highest first."""
    return tuple(_REGISTRY)
