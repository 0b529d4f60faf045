"""What the subcommands share: exit codes, loading a settings class, pointing it at the
directories given on the command line, redaction, rendering and atomic writes."""

from __future__ import annotations

import contextlib
import datetime
import importlib
import importlib.util
import json
import os
import re
import shlex
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from canaryconf._errors import (
    CanaryConfError,
    DownwardAPIFormatError,
    SettingsValidationError,
    VolumeError,
    safe_message,
)
from canaryconf._fields import field_mapping
from canaryconf._live import LiveSettings
from canaryconf.change import ABSENT, change_line, display
from canaryconf.settings import REDACTED, CanarySettings, Redacted, secret_fields
from canaryconf.sources.base import (
    VolumeSource,
    config_value,
    dashed,
    registered_sources,
)
from canaryconf.sources.providers.annotations import full_key

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "EXIT_VOLUME",
    "REDACTED",
    "CliError",
    "Redacted",
    "Redaction",
    "atomic_write",
    "display",
    "env_file",
    "env_name",
    "env_value",
    "error_lines",
    "explicit_dirs",
    "load_settings",
    "map_diff",
    "now_iso",
    "retarget",
    "source_options",
    "volume_kinds",
]

S = TypeVar("S", bound=CanarySettings)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_VOLUME = 3


class CliError(Exception):
    """Ends the command with ``code``; ``lines`` are printed to stderr, one per line."""

    def __init__(self, code: int, message: str, lines: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.lines = tuple(lines)


def error_lines(exc: BaseException) -> list[str]:
    """One readable line per problem of a canaryconf error: never a value, never a
    traceback."""
    if isinstance(exc, SettingsValidationError):
        return [str(problem) for problem in exc.problems]
    return [safe_message(exc)]


def as_cli_error(exc: CanaryConfError, what: str) -> CliError:
    """The :class:`CliError` for an error raised while reading or validating."""
    if isinstance(exc, VolumeError):
        return CliError(EXIT_VOLUME, str(exc))
    if isinstance(exc, SettingsValidationError):
        count = len(exc.problems)
        noun = "problem" if count == 1 else "problems"
        return CliError(EXIT_FAILED, f"{what}: {count} {noun}", error_lines(exc))
    if isinstance(exc, DownwardAPIFormatError):
        return CliError(EXIT_FAILED, f"{what}: malformed file", error_lines(exc))
    return CliError(EXIT_FAILED, f"{what}: {exc}")


# -- settings classes -----------------------------------------------------------------------


def load_settings(spec: str) -> type[CanarySettings]:
    """Import ``module:Class`` (or ``path/to/file.py:Class``). A :class:`LiveSettings`
    object stands for its class, so ``myapp.config:settings`` works too."""
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise CliError(EXIT_USAGE, f"--settings {spec!r}: expected module:Class")
    if module_name.endswith(".py") or os.sep in module_name:
        path = os.path.abspath(module_name)
        if not os.path.isfile(path):
            raise CliError(EXIT_USAGE, f"--settings {spec!r}: no such file {path}")
        name = "_canaryconf_settings_" + re.sub(r"\W", "_", os.path.basename(path)[:-3])
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise CliError(EXIT_USAGE, f"--settings {spec!r}: cannot load {path}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        loader = module_spec.loader
        _import_user_code(spec, lambda: loader.exec_module(module))
    else:
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())
        module = _import_user_code(spec, lambda: importlib.import_module(module_name))
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CliError(
                EXIT_USAGE, f"--settings {spec!r}: {module_name} has no attribute {attr!r}"
            ) from None
    if isinstance(obj, LiveSettings):
        obj = obj.settings_class
    if not (isinstance(obj, type) and issubclass(obj, CanarySettings)):
        raise CliError(EXIT_USAGE, f"--settings {spec!r}: not a CanarySettings subclass")
    return obj


def _import_user_code(spec: str, load: Any) -> Any:
    try:
        return load()
    except ModuleNotFoundError as exc:
        raise CliError(EXIT_USAGE, f"--settings {spec!r}: {exc}") from None
    except CanaryConfError as exc:
        raise as_cli_error(exc, f"--settings {spec!r}: importing it failed") from None
    except Exception as exc:
        raise CliError(
            EXIT_FAILED, f"--settings {spec!r}: importing it raised {type(exc).__name__}: {exc}"
        ) from None


#: The ``model_config`` key of the downwardAPI volume: the ``DIR`` argument of a command.
DOWNWARD_KEY = "downward_api_dir"


def volume_kinds() -> list[type[VolumeSource]]:
    """The registered source kinds that read volumes of their own (not the downwardAPI
    volume of ``DIR``), one per config key, in precedence order: what the commands list,
    export and watch besides ``DIR``."""
    seen = {DOWNWARD_KEY}
    kinds = []
    for source in registered_sources():
        if source.config_key is not None and source.config_key not in seen:
            seen.add(source.config_key)
            kinds.append(source)
    return kinds


def source_options(parser: Any) -> None:
    """One repeatable ``--<kind>-dir`` option per registered source kind that has one."""
    for source in registered_sources():
        if source.cli_flag and source.config_key:
            parser.add_argument(
                source.cli_flag,
                metavar="DIR",
                action="append",
                dest=_dest(source.cli_flag),
                help=source.cli_help,
            )


def explicit_dirs(args: Any) -> dict[str, list[str]]:
    """The directories given with the options of :func:`source_options`, by config key."""
    found: dict[str, list[str]] = {}
    for source in registered_sources():
        if source.cli_flag and source.config_key:
            given = getattr(args, _dest(source.cli_flag), None)
            if given:
                found[source.config_key] = list(given)
    return found


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def retarget(
    cls: type[S],
    *,
    downward: str | None = None,
    dirs: Mapping[str, Sequence[str]] | None = None,
) -> type[S]:
    """A subclass of ``cls`` reading the directories given (None keeps the class's own);
    ``dirs`` maps any source kind's config key to its directories."""
    config: dict[str, Any] = dict(cls.model_config)
    if downward is not None:
        config[DOWNWARD_KEY] = downward
    for key, given in (dirs or {}).items():
        if given:
            config[key] = list(given)
    namespace = {"model_config": config, "__module__": cls.__module__, "__doc__": cls.__doc__}
    return type(cls.__name__, (cls,), namespace)


class Redaction:
    """What must never be shown: whole directories (those given, and the class's of each
    kind whose every file is secret), the secret files a kind's declaration lists
    (:meth:`~canaryconf.sources.base.VolumeSource.secret_files`: the Secret items of a
    projected volume), and the label, annotation and file keys that feed a secret field
    of the settings class, as each registered source kind declares them.

    Every value it hides comes back as :data:`REDACTED`, a
    :class:`~canaryconf.settings.Redacted`: renderers test the type, never the text."""

    def __init__(
        self, cls: type[CanarySettings] | None = None, secret_dirs: Iterable[str] = ()
    ) -> None:
        self.secret_dirs = {os.path.realpath(d) for d in secret_dirs}
        self.annotation_keys: set[str] = set()
        self.label_keys: set[str] = set()
        self.file_names: set[str] = set()
        if cls is not None:
            self._from_class(cls)

    def _from_class(self, cls: type[CanarySettings]) -> None:
        annotation_prefix = config_value(cls, "annotation_prefix")
        label_prefix = config_value(cls, "label_prefix")
        for source in registered_sources():
            files = source.secret_files(cls)
            if files is None:
                self.secret_dirs.update(os.path.realpath(d) for d in source.dirs(cls))
            else:
                self.file_names.update(files)
        for name in secret_fields(cls):
            field = cls.model_fields[name]
            mapping = field_mapping(field)
            names = [n for n in (mapping.key, name, dashed(name), field.alias) if n]
            self.file_names.update(names)
            # Stricter than what the sources read: any map key named like the field.
            if mapping.source in (None, "annotation"):
                self.annotation_keys.update(full_key(n, annotation_prefix) for n in names)
            if mapping.source in (None, "label"):
                self.label_keys.update(full_key(n, label_prefix) for n in names)
            for source in registered_sources():
                keys = source.field_keys(cls, name, field)
                if source.kind == "annotation":
                    self.annotation_keys.update(keys)
                elif source.kind == "label":
                    self.label_keys.update(keys)
                else:
                    self.file_names.update(keys)

    def is_secret_dir(self, path: str) -> bool:
        return os.path.realpath(path) in self.secret_dirs

    def is_secret_file(self, directory: str, name: str) -> bool:
        return self.is_secret_dir(directory) or name in self.file_names

    def annotation(self, key: str, value: str) -> str:
        return REDACTED if key in self.annotation_keys else value

    def label(self, key: str, value: str) -> str:
        return REDACTED if key in self.label_keys else value

    def file(self, directory: str, name: str, value: str) -> str:
        return REDACTED if self.is_secret_file(directory, name) else value


# -- rendering ------------------------------------------------------------------------------


def text_of(data: bytes) -> str | None:
    """A file's content as text, or None when it is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def map_diff(
    old: Mapping[str, str] | None,
    new: Mapping[str, str] | None,
    redact: Callable[[str, str], str],
) -> list[str]:
    """A :func:`~canaryconf.change.change_line` per key added, removed or changed;
    ``redact(key, value)`` returns :data:`REDACTED` for what must not be shown."""
    old = old or {}
    new = new or {}
    lines = []
    for key in sorted(set(old) | set(new)):
        if key in old and key in new and old[key] == new[key]:
            continue
        before = redact(key, old[key]) if key in old else ABSENT
        after = redact(key, new[key]) if key in new else ABSENT
        lines.append(change_line(key, before, after))
    return lines


_ENV_UNSAFE = re.compile(r"[^A-Z0-9_]")


def env_name(key: str, prefix: str = "") -> str:
    """A shell variable name for ``key``: upper case, other characters as ``_``."""
    name = _ENV_UNSAFE.sub("_", f"{prefix}{key}".upper())
    return f"_{name}" if name[:1].isdigit() or not name else name


def env_value(value: Any) -> str | None:
    """How a value is written to an environment variable (what pydantic-settings reads
    back): text as is, booleans as ``true``/``false``, numbers as digits, anything else
    as JSON; None is left out."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def env_file(
    variables: Mapping[str, str], *, header: Sequence[str] = (), export: bool = True
) -> str:
    """A file for ``. FILE`` in a POSIX shell: one ``export NAME='value'`` per line."""
    lines = [f"# {line}" for line in header]
    keyword = "export " if export else ""
    lines.extend(f"{keyword}{name}={shlex.quote(value)}" for name, value in variables.items())
    return "\n".join(lines) + "\n"


def check_env_names(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """``{variable: key}``; raises when two keys map to one variable name."""
    seen: dict[str, str] = {}
    clashes = []
    for name, key in pairs:
        if name in seen and seen[name] != key:
            clashes.append(f"{seen[name]!r} and {key!r} both become {name}")
        seen.setdefault(name, key)
    if clashes:
        raise CliError(EXIT_FAILED, "variable names clash", clashes)
    return seen


def now_iso() -> str:
    """The current UTC time, ISO 8601 with milliseconds: ``2026-11-26T10:00:00.123Z``."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def atomic_write(path: str, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``path`` so a reader sees the old content or the new, never a part: a
    temporary file in the same directory, fsync, chmod, then rename over ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
