"""What a command works on, opened once: the settings class (imported from
``--settings``), the directories it reads (the downwardAPI volume, and those of every
registered source kind: :func:`~canaryconf._cli.common.volume_kinds`), the volumes as
read, the snapshot built from them, or a :class:`~canaryconf.LiveSettings` following
them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from canaryconf._cli.common import (
    DOWNWARD_KEY,
    EXIT_USAGE,
    CliError,
    Redaction,
    as_cli_error,
    error_lines,
    load_settings,
    retarget,
    volume_kinds,
)
from canaryconf._cli.content import VolumeView, content_class, read_view
from canaryconf._cli.options import VolumeOptions, WatchOptions
from canaryconf._errors import CanaryConfError, VolumeError, VolumeNotFoundError
from canaryconf._live import LiveSettings, live
from canaryconf.settings import CanarySettings
from canaryconf.sources.base import VolumeSource, as_dirs, config_value, downward_dirs
from canaryconf.volume import read_volume

__all__ = ["Reading", "Session"]


@dataclass(frozen=True)
class KindDirs:
    """The directories of one source kind a command reads: those given with the kind's
    ``--<kind>-dir`` option, else the settings class's own."""

    source: type[VolumeSource]
    dirs: list[str]
    given: bool


@dataclass
class Reading:
    """The volumes a command looks at, raw, and the settings built from them."""

    cls: type[CanarySettings] | None
    downward: VolumeView | None
    #: The volumes of the other source kinds, in the registry's (precedence) order; each
    #: view's ``kind`` names its kind.
    volumes: list[VolumeView] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    snapshot: CanarySettings | None = None
    error: CanaryConfError | None = None
    redaction: Redaction = field(default_factory=Redaction)

    @property
    def problems(self) -> list[str]:
        lines: list[str] = []
        for view in self.views:
            lines.extend(str(e) for e in view.errors)
        if self.error is not None:
            for line in error_lines(self.error):
                if line not in lines:
                    lines.append(line)
        return lines

    @property
    def views(self) -> list[VolumeView]:
        first = [self.downward] if self.downward is not None else []
        return [*first, *self.volumes]

    @property
    def where(self) -> str:
        """The directory (or directories) read, for messages."""
        if self.downward is not None:
            return self.downward.path
        return ", ".join(v.path for v in self.views)


class Session:
    """The settings class and the directories of ``options``, resolved once: for the
    downwardAPI volume and each registered source kind, the class's own directories
    unless the options name others.

    ``generic`` is the class to follow when no ``--settings`` is given (``watch`` follows
    every key of the volumes, ``sidecar`` the digests of its directories)."""

    def __init__(self, options: VolumeOptions) -> None:
        self.options = options
        cls = self.cls = load_settings(options.settings) if options.settings else None
        self.downward: str | None = options.dir
        if self.downward is None and cls is not None:
            self.downward = next(iter(as_dirs(config_value(cls, DOWNWARD_KEY))), None)
        self.kinds: list[KindDirs] = []
        for source in volume_kinds():
            assert source.config_key is not None
            given = list(options.dirs.get(source.config_key, ()))
            own = source.dirs(cls) if cls is not None else []
            self.kinds.append(KindDirs(source, given or own, bool(given)))

    @property
    def other_dirs(self) -> list[str]:
        """Every directory of the source kinds, in precedence order."""
        return list(dict.fromkeys(d for entry in self.kinds for d in entry.dirs))

    def require_volume(self) -> None:
        if self.downward is None and self.cls is None and not self.other_dirs:
            raise CliError(EXIT_USAGE, "give a volume directory, or --settings module:Class")

    def target(self) -> type[CanarySettings]:
        """The settings class pointed at this session's directories."""
        assert self.cls is not None
        return retarget(self.cls, downward=self.downward, dirs=self.options.dirs)

    # -- reading once ---------------------------------------------------------------------

    def read(self, *, build: bool = True) -> Reading:
        """Read the podinfo directory and those of every source kind and, with a settings
        class, build a snapshot from them."""
        self.require_volume()
        cls = self.cls
        secret_dirs = [
            d for entry in self.kinds if entry.source.secret_files(cls) is None for d in entry.dirs
        ]
        reading = Reading(cls=cls, downward=None, redaction=Redaction(cls, secret_dirs))
        target = self.target() if cls is not None else None
        # Label and annotation files are parsed where the class looks for them (a projected
        # volume's downward items); without a class, only in DIR.
        map_dirs = set(downward_dirs(target)) if target is not None else set()
        if self.downward is not None:
            explicit = self.options.dir is not None
            reading.downward = self._view(self.downward, explicit, True, reading)
        for entry in self.kinds:
            for directory in entry.dirs:
                parse_maps = directory in map_dirs and directory != self.downward
                view = self._view(directory, entry.given, parse_maps, reading, entry.source.kind)
                if view is not None:
                    reading.volumes.append(view)
        if target is not None and build:
            try:
                reading.snapshot = target()
            except VolumeError:
                raise
            except CanaryConfError as exc:
                reading.error = exc
        return reading

    def _view(
        self,
        path: str,
        explicit: bool,
        parse_maps: bool,
        reading: Reading,
        kind: str = "downwardAPI",
    ) -> VolumeView | None:
        cls = self.cls
        try:
            return read_view(
                path,
                labels_file=config_value(cls, "labels_file") if cls else "labels",
                annotations_file=config_value(cls, "annotations_file") if cls else "annotations",
                parse_maps=parse_maps,
                kind=kind,
            )
        except VolumeNotFoundError:
            if explicit or (cls is not None and config_value(cls, "require_volumes")):
                raise
            reading.missing.append(path)
            return None

    # -- following --------------------------------------------------------------------------

    def follow(
        self,
        watch: WatchOptions,
        generic: Callable[[], type[CanarySettings]] | None = None,
        extra_dirs: Sequence[str] = (),
    ) -> LiveSettings[CanarySettings]:
        """A :class:`~canaryconf.LiveSettings` of the settings class (else of
        ``generic()``, by default every key of the volumes: the downwardAPI one and those
        of each source kind given), each directory given checked first so a missing one
        is a clear error."""
        for directory in dict.fromkeys([*self.options.given_dirs, *extra_dirs]):
            try:
                read_volume(directory)
            except CanaryConfError as exc:
                raise as_cli_error(exc, directory) from None
        target: type[CanarySettings]
        if self.cls is not None:
            target = self.target()
        elif generic is not None:
            target = generic()
        else:
            self.require_volume()
            target = content_class(
                self.downward,
                [(d, entry.source.secret_files(None)) for entry in self.kinds for d in entry.dirs],
            )
        try:
            return live(target, force_polling=watch.poll, poll_interval=watch.poll_interval)
        except CanaryConfError as exc:
            raise as_cli_error(exc, f"{target.__name__} does not load") from None
