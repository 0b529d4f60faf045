"""What every web adapter does, defined once: Flask, Starlette (and FastAPI over it) and
Django are thin layers over these functions.

- :func:`pin`: the snapshot a request sees, taken once per request and kept in the
  request's own storage (a WSGI environ, an ASGI scope, a Django request);
- :func:`ensure_started`: make sure the watcher runs in the process that serves, on
  every request (cheap once started; fork-aware through the runtime);
- :func:`mirror`: copy fields into a framework's own configuration on each change;
- :func:`status_response` / :func:`reload_response`: the operator endpoints' bodies,
  status codes and headers (the bodies themselves are defined in ``_status``).

A new framework adapter is one module that calls these.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any, TypeVar

from canaryconf._live import LiveSettings, PinnedSettings
from canaryconf._status import NO_STORE, reload_body, reload_status_code, status_body
from canaryconf.change import Change, ReloadResult
from canaryconf.settings import CanarySettings

__all__ = [
    "PIN_KEY",
    "Response",
    "ensure_started",
    "mirror",
    "mirror_keys",
    "pin",
    "reload_response",
    "status_response",
]

logger = logging.getLogger("canaryconf")

S = TypeVar("S", bound=CanarySettings)

#: The key under which a request's storage keeps the snapshots it pinned (one per
#: LiveSettings, by identity).
PIN_KEY = "canaryconf.pinned"

#: A JSON body, a status code and headers.
Response = tuple[dict[str, Any], int, dict[str, str]]

# LiveSettings -> the process in which ensure_started() ran for it: it acts once per
# process, so a watcher stopped on purpose stays stopped and a broken volume does not log
# a traceback on every request.
_ensured_in: weakref.WeakKeyDictionary[LiveSettings[Any], int] = weakref.WeakKeyDictionary()


def pin(storage: MutableMapping[str, Any], live: LiveSettings[S]) -> PinnedSettings[S]:
    """The snapshot of ``live`` pinned for the request whose storage is ``storage``,
    taken on first use: every later read in the request sees the same version.

    >>> from canaryconf import CanarySettings, live
    >>> class Settings(CanarySettings):
    ...     flag: bool = False
    >>> settings, environ = live(Settings), {}
    >>> pin(environ, settings) is pin(environ, settings)
    True
    """
    pins: dict[int, PinnedSettings[Any]] = storage.setdefault(PIN_KEY, {})
    pinned = pins.get(id(live))
    if pinned is None:
        pinned = pins[id(live)] = live.pin()
    return pinned


def ensure_started(live: LiveSettings[Any]) -> None:
    """Start ``live``'s watcher in this process unless it runs: what an adapter calls on
    each request (a look-up after the first). It acts once per process: a watcher that
    was stopped on purpose is not started again, a failure is logged once and requests
    are served from the last good settings. A forked child is a new process: its first
    request starts the watcher there if the restart after fork did not."""
    pid = os.getpid()
    if _ensured_in.get(live) == pid:
        return
    _ensured_in[live] = pid
    if live.running:
        return
    try:
        live.start()
    except Exception:
        logger.exception("canaryconf: could not start the watcher in process %d", pid)


def mirror_keys(fields: Iterable[str] | Mapping[str, str]) -> dict[str, str]:
    """``{field: key}``: a mapping as given, or each field name to its upper-cased name."""
    if isinstance(fields, str):
        fields = [fields]
    if isinstance(fields, Mapping):
        return {str(name): str(key) for name, key in fields.items()}
    return {name: name.upper() for name in fields}


def mirror(
    live: LiveSettings[Any],
    keys: Mapping[str, str],
    write: Callable[[str, Any], None],
    *,
    where: str,
) -> None:
    """Copy each field of ``keys`` into a framework's configuration with
    ``write(key, value)``: now, and after each change of that field. ``where`` names the
    configuration in the error for a field that does not exist."""
    if not keys:
        return
    unknown = sorted(set(keys) - set(live.settings_class.model_fields))
    if unknown:
        raise ValueError(
            f"cannot mirror into {where}: {live.settings_class.__name__}"
            f" has no field(s) {', '.join(unknown)}"
        )

    def mirror_into_config(change: Change[Any]) -> None:
        for name in change.fields & keys.keys():
            write(keys[name], getattr(change.new, name))

    live.on_change(*keys)(mirror_into_config)
    current = live.current  # after connecting: no change can fall in between
    for name, key in keys.items():
        write(key, getattr(current, name))


def status_response(live: LiveSettings[Any], pinned: PinnedSettings[Any]) -> Response:
    """``GET -/canaryconf``: the request's snapshot (redacted) and this process's state."""
    return status_body(live, pinned, watching=live.running), 200, dict(NO_STORE)


def reload_response(live: LiveSettings[Any], result: ReloadResult[Any]) -> Response:
    """``POST -/canaryconf/reload``: what the reload did; 422 when it was rejected."""
    return reload_body(live, result), reload_status_code(result), dict(NO_STORE)
