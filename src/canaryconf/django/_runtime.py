"""The process's one canaryconf runtime: loaded by ``AppConfig.ready()``, used by the
middleware, the management command and :func:`canaryconf.django.get_live_settings`."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, overload

from django.conf import settings as django_settings  # type: ignore[import-untyped]
from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped]
from django.core.signals import setting_changed  # type: ignore[import-untyped]
from django.db import connections  # type: ignore[import-untyped]
from django.utils import autoreload  # type: ignore[import-untyped]

from canaryconf import _web
from canaryconf import signals as canaryconf_signals
from canaryconf._errors import CanaryConfError
from canaryconf._live import LiveSettings, PinnedSettings
from canaryconf.change import Change
from canaryconf.django import signals
from canaryconf.django.conf import SETTING_NAME, Config
from canaryconf.settings import CanarySettings

__all__ = [
    "Runtime",
    "get_live_settings",
    "management_command",
    "pin",
    "runtime",
    "setup",
    "watch_decision",
]

logger = logging.getLogger("canaryconf")

S = TypeVar("S", bound=CanarySettings)

#: The name of this app's management command (it must work when the settings do not load).
COMMAND = "canaryconf"
_MANAGE_SCRIPTS = frozenset({"manage.py", "django-admin", "django-admin.py"})


def pin(live: LiveSettings[S]) -> PinnedSettings[S]:
    """``live.pin()``: the snapshot of ``live`` with its generation, digest and rollout role,
    all of one version (what the middleware sets as ``request.canaryconf``)."""
    return live.pin()


@dataclass
class Runtime:
    """What ``ready()`` set up in this process."""

    config: Config
    live: LiveSettings[Any] | None
    #: Why the settings did not load (only kept for the ``canaryconf`` command).
    error: Exception | None
    #: Whether processes like this one watch (now, or at their first request).
    watch: bool
    reason: str


_runtime: Runtime | None = None
_lock = threading.Lock()


def runtime() -> Runtime:
    """This process's runtime; ``ImproperlyConfigured`` before the app is ready."""
    current = _runtime
    if current is None:
        raise ImproperlyConfigured(
            "canaryconf.django is not ready: add 'canaryconf.django' to INSTALLED_APPS"
        )
    return current


@overload
def get_live_settings() -> LiveSettings[Any]: ...
@overload
def get_live_settings(settings_class: type[S]) -> LiveSettings[S]: ...


def get_live_settings(settings_class: type[S] | None = None) -> LiveSettings[Any]:
    """The :class:`~canaryconf.LiveSettings` that ``CANARYCONF`` configured; pass your
    settings class to have it typed (and checked: ``TypeError`` if it is another).

    >>> from canaryconf.django import get_live_settings   # doctest: +SKIP
    >>> get_live_settings(CheckoutSettings).db_url        # doctest: +SKIP
    'postgres://canary-db/checkout'
    """
    current = runtime()
    if current.live is None and current.error is None:
        _load_now(current)
    if current.live is None:
        raise ImproperlyConfigured(
            f"settings.{SETTING_NAME} ({current.config.source}) did not load: {current.error}"
        )
    configured = current.live.settings_class
    if settings_class is not None and not issubclass(configured, settings_class):
        raise TypeError(
            f"settings.{SETTING_NAME} configured {configured.__qualname__},"
            f" not {settings_class.__qualname__}"
        )
    return current.live


def setup() -> Runtime:
    """Load the settings, connect mirroring and signals, and start the watcher where this
    process serves requests. Runs once per process: a second ``ready()`` is a no-op."""
    global _runtime
    with _lock:
        if _runtime is not None:
            return _runtime
        config = Config.from_django(django_settings)
        argv = list(sys.argv)
        watch, reason = watch_decision(argv, os.environ, config)
        command = management_command(argv)
        if command is not None and not watch and command != COMMAND:
            # ``migrate``, ``shell``, ``check``...: no volume read, no thread here; the
            # settings load on first use (get_live_settings()), and ``manage.py check``
            # reports volume problems as warnings (see canaryconf.django.checks).
            _runtime = Runtime(config, None, None, False, reason)
            logger.debug("canaryconf: %s not loaded at ready(): %s", config.source, reason)
            return _runtime
        try:
            instance = config.load()
        except CanaryConfError as exc:
            if management_command(argv) != COMMAND:
                raise ImproperlyConfigured(
                    f"settings.{SETTING_NAME}: {config.source} does not load: {exc}"
                ) from exc
            # Kept for `manage.py canaryconf validate/show`, which report it line by line.
            _runtime = Runtime(config, None, exc, False, "the settings did not load")
            return _runtime
        _connect(instance, config)
        _runtime = Runtime(config, instance, None, watch, reason)
        now = watch and config.watch != "lazy"
        if now:
            instance.start()
        logger.log(
            logging.INFO if now else logging.DEBUG,
            "canaryconf: %s loaded (generation %s); watcher %s: %s",
            config.source,
            instance.generation,
            "started" if now else "at the first request" if watch else "not started",
            reason,
        )
        return _runtime


def _load_now(current: Runtime) -> None:
    """Load the settings of a process that did not at ``ready()`` (no watcher here)."""
    with _lock:
        if current.live is not None or current.error is not None:
            return
        try:
            instance = current.config.load()
        except CanaryConfError as exc:
            current.error = exc
            return
        _connect(instance, current.config)
        current.live = instance


def ensure_watching() -> None:
    """Make sure the watcher runs in this process; called by the middleware on every
    request, it costs a look-up once done.

    The first request of a process that ``ready()`` did not run in (a worker forked from
    a gunicorn ``--preload`` master, when LiveSettings' own restart after fork is turned
    off), or of any process with ``WATCH: "lazy"``, starts the watcher. Starting catches
    up with the volumes (a reload) before it returns, so that the request is served from
    their current version.
    """
    current = _runtime
    if current is None or not current.watch or current.live is None:
        return
    _web.ensure_started(current.live)


# -- where to watch ------------------------------------------------------------------------


def management_command(argv: Sequence[str]) -> str | None:
    """The subcommand when this process runs ``manage.py``/``django-admin``/``python -m
    django``, else None (a WSGI/ASGI server, a worker, a script)."""
    if not argv:
        return None
    script = Path(argv[0])
    if script.name in _MANAGE_SCRIPTS or (
        script.name == "__main__.py" and script.parent.name == "django"
    ):
        return argv[1] if len(argv) > 1 else "help"
    return None


def watch_decision(
    argv: Sequence[str], environ: Mapping[str, str], config: Config
) -> tuple[bool, str]:
    """Whether this process should watch, and why.

    - ``WATCH: False`` -> never (``"lazy"`` decides the same as True; it only moves the
      start to the first request);
    - a server that imported the project (gunicorn, uwsgi, daphne, celery...) -> yes;
    - ``manage.py runserver`` -> only in the autoreloader's child (``RUN_MAIN=true``), or
      in the one process of ``--noreload``; the parent only restarts the child;
    - other ``SERVER_COMMANDS`` -> yes; any other management command -> no.
    """
    if config.watch is False:
        return False, "WATCH is False"
    command = management_command(argv)
    if command is None:
        return True, "server process"
    if command not in config.server_commands:
        return False, f"management command {command!r}"
    if command == "runserver" and "--noreload" not in argv:
        if environ.get(autoreload.DJANGO_AUTORELOAD_ENV) != "true":
            return False, "runserver's autoreloader parent"
        return True, "runserver's autoreloaded child"
    return True, f"management command {command!r}"


# -- mirroring, signals, autoreloader ------------------------------------------------------


def _connect(live: LiveSettings[Any], config: Config) -> None:
    _web.mirror(live, dict(config.mirror), _set_setting, where="django.conf.settings")

    def on_change(sender: LiveSettings[Any], *, change: Change[Any], **kwargs: Any) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            # The watcher's thread (outside its loop), or a thread that called reload(): no loop.
            _send_django_signal(sender, change)
            return None
        # reload()/areload() called in async code (an async view): Django receivers (ORM
        # calls, async_to_sync) must not run in the loop's thread; canaryconf awaits this.
        return asyncio.to_thread(_send_django_signal, sender, change)

    canaryconf_signals.settings_changed.connect(on_change, sender=live, weak=False)
    autoreload.file_changed.connect(
        _volume_file_changed, weak=False, dispatch_uid="canaryconf-volume-not-a-source"
    )
    setting_changed.connect(_canaryconf_overridden, dispatch_uid="canaryconf-setting-changed")


def _set_setting(name: str, value: Any) -> None:
    # LazySettings caches each setting read in its __dict__, and its own __setattr__ drops
    # the cached value *before* writing the new one, so a request thread reading in between
    # caches the old value for good. Write first, then drop the cache: a reader then
    # always finds the new value. Reading it back caches it again, so that readers take
    # the cached path, with no window at all, at the next change.
    setattr(django_settings._wrapped, name, value)
    django_settings.__dict__.pop(name, None)
    getattr(django_settings, name)


def _send_django_signal(sender: LiveSettings[Any], change: Change[Any]) -> None:
    """Send the Django signal in this thread, then close the database connections its
    receivers opened here, as Django does at the end of a request: this thread may serve
    no request (canaryconf's watcher thread, a worker thread) and would keep them forever.
    A connection the thread had before (a request's that reloads by hand) is left open."""
    already_open = _open_connections()
    try:
        for receiver, outcome in signals.settings_changed.send_robust(sender, change=change):
            if isinstance(outcome, Exception):
                logger.error(
                    "canaryconf: Django receiver %r of settings_changed raised",
                    receiver,
                    exc_info=outcome,
                )
    finally:
        try:
            for conn in connections.all(initialized_only=True):
                if conn.connection is not None and conn.alias not in already_open:
                    conn.close()
        except Exception:
            logger.debug("canaryconf: closing database connections failed", exc_info=True)


def _open_connections() -> set[str]:
    """The aliases of this thread's open database connections."""
    return {
        conn.alias for conn in connections.all(initialized_only=True) if conn.connection is not None
    }


def _volume_dirs() -> list[str]:
    current = _runtime
    if current is None or current.live is None:
        return []
    dirs = []
    for directory in current.live.volume_dirs:
        dirs.append(os.path.abspath(directory))
        dirs.append(os.path.realpath(directory))
    return dirs


def _volume_file_changed(sender: Any, file_path: Path, **kwargs: Any) -> bool:
    """Django's autoreloader asks receivers before restarting: True means "handled".
    A volume file is settings, not source code; a change is a reload, never a restart."""
    candidates = {os.path.abspath(file_path), os.path.realpath(file_path)}
    return any(
        path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)
        for directory in _volume_dirs()
        for path in candidates
    )


def _canaryconf_overridden(setting: str, **kwargs: Any) -> None:
    if setting == SETTING_NAME:
        logger.warning(
            "canaryconf: settings.%s is read once when the app is ready; overriding it"
            " changes nothing",
            SETTING_NAME,
        )
