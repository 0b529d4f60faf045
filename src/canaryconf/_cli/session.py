"""What a command works on, opened once: the settings class (imported from
``--settings``), the directories it reads, the volumes as read, the snapshot built from
them, or a :class:`~canaryconf.LiveSettings` following them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from canaryconf._cli.common import (
    EXIT_USAGE,
    CliError,
    Redaction,
    as_cli_error,
    error_lines,
    load_settings,
    retarget,
    settings_dirs,
)
from canaryconf._cli.content import VolumeView, content_class, read_view
from canaryconf._cli.options import VolumeOptions, WatchOptions
from canaryconf._errors import CanaryConfError, VolumeError, VolumeNotFoundError
from canaryconf._live import LiveSettings, live
from canaryconf.settings import CanarySettings
from canaryconf.sources.base import config_value
from canaryconf.volume import read_volume

__all__ = ["Reading", "Session"]


@dataclass
class Reading:
    """The volumes a command looks at, raw, and the settings built from them."""

    cls: type[CanarySettings] | None
    downward: VolumeView | None
    configmaps: list[VolumeView] = field(default_factory=list)
    secrets: list[VolumeView] = field(default_factory=list)
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
        return [*first, *self.configmaps, *self.secrets]

    @property
    def where(self) -> str:
        """The directory (or directories) read, for messages."""
        if self.downward is not None:
            return self.downward.path
        return ", ".join(v.path for v in self.views)


class Session:
    """The settings class and the directories of ``options``, resolved once: the class's
    own directories unless the options name others.

    ``generic`` is the class to follow when no ``--settings`` is given (``watch`` follows
    every key of the volumes, ``sidecar`` the digests of its directories)."""

    def __init__(self, options: VolumeOptions) -> None:
        self.options = options
        self.cls = load_settings(options.settings) if options.settings else None
        downward, configmaps, secrets = (
            (None, [], []) if self.cls is None else settings_dirs(self.cls)
        )
        self.downward: str | None = options.dir if options.dir is not None else downward
        self.configmaps: list[str] = list(options.configmap_dirs) or configmaps
        self.secrets: list[str] = list(options.secrets_dirs) or secrets

    def require_volume(self) -> None:
        if self.downward is None and self.cls is None:
            raise CliError(EXIT_USAGE, "give a volume directory, or --settings module:Class")

    def target(self) -> type[CanarySettings]:
        """The settings class pointed at this session's directories."""
        assert self.cls is not None
        return retarget(
            self.cls,
            downward=self.downward,
            configmaps=self.configmaps,
            secrets=self.secrets,
            dirs=self.options.dirs,
        )

    # -- reading once ---------------------------------------------------------------------

    def read(self, *, build: bool = True) -> Reading:
        """Read the podinfo, ConfigMap and Secret directories and, with a settings class,
        build a snapshot from them."""
        self.require_volume()
        cls = self.cls
        reading = Reading(cls=cls, downward=None, redaction=Redaction(cls, self.secrets))
        if self.downward is not None:
            explicit = self.options.dir is not None
            reading.downward = self._view(self.downward, explicit, True, reading)
        for directories, explicit, into in (
            (self.configmaps, bool(self.options.configmap_dirs), reading.configmaps),
            (self.secrets, bool(self.options.secrets_dirs), reading.secrets),
        ):
            for directory in directories:
                view = self._view(directory, explicit, False, reading)
                if view is not None:
                    into.append(view)
        if cls is not None and build:
            try:
                reading.snapshot = self.target()()
            except VolumeError:
                raise
            except CanaryConfError as exc:
                reading.error = exc
        return reading

    def _view(
        self, path: str, explicit: bool, parse_maps: bool, reading: Reading
    ) -> VolumeView | None:
        cls = self.cls
        try:
            return read_view(
                path,
                labels_file=config_value(cls, "labels_file") if cls else "labels",
                annotations_file=config_value(cls, "annotations_file") if cls else "annotations",
                parse_maps=parse_maps,
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
        ``generic()``, by default every key of the volumes), each directory checked first
        so a missing one is a clear error."""
        options = self.options
        given = [options.dir, *options.configmap_dirs, *options.secrets_dirs, *extra_dirs]
        for directory in [d for d in given if d is not None]:
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
            target = content_class(self.downward, self.configmaps, self.secrets)
        try:
            return live(target, force_polling=watch.poll, poll_interval=watch.poll_interval)
        except CanaryConfError as exc:
            raise as_cli_error(exc, f"{target.__name__} does not load") from None
