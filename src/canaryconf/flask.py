"""Flask integration: one settings snapshot per request, one watcher per serving process.

Needs the ``flask`` extra (``pip install canaryconf[flask]``); ``import canaryconf`` alone
never imports Flask.

>>> from flask import Flask
>>> from canaryconf import CanarySettings, annotation, live
>>> from canaryconf.flask import CanaryConf
>>> class Settings(CanarySettings):
...     db_url: str = annotation("db-url", default="postgres://stable-db/app")
>>> app = Flask(__name__)
>>> canary = CanaryConf(app, live(Settings))
>>> @app.get("/")
... def index():
...     snap = canary.snapshot          # the same snapshot for the whole request
...     return {"db_url": snap.db_url, "generation": canary.generation}
>>> app.test_client().get("/").json["db_url"]
'postgres://stable-db/app'

Each request is pinned, when it starts, to the snapshot current at that moment: a reload
that lands while the request runs is seen by the next request, never half-way through this
one. Read the pinned snapshot through :attr:`CanaryConf.snapshot` (typed) or the proxy
:data:`canaryconf.flask.settings`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

try:
    from flask import Blueprint, Flask, Response, current_app, has_request_context, jsonify, request
    from werkzeug.local import LocalProxy
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("canaryconf.flask needs Flask: pip install 'canaryconf[flask]'") from exc

from canaryconf import CanarySettings, Change, LiveSettings, PinnedSettings
from canaryconf._status import NO_STORE, reload_body, reload_status_code, status_body

__all__ = ["EXTENSION_KEY", "CanaryConf", "blueprint", "in_reloader_child", "settings"]

logger = logging.getLogger("canaryconf")

S = TypeVar("S", bound=CanarySettings)

#: The key of the extension's state in ``app.extensions``.
EXTENSION_KEY = "canaryconf"
_ENVIRON_KEY = "canaryconf.pinned"


@dataclass(eq=False)
class _AppState:
    """What ``app.extensions["canaryconf"]`` holds for one app."""

    live: LiveSettings[Any]
    mirror: dict[str, str]
    watch: bool
    started_pid: int | None = None


class CanaryConf(Generic[S]):
    """The Flask extension: pins a snapshot per request and keeps ``settings`` live.

    ``settings`` is a :class:`~canaryconf.LiveSettings`. Options:

    - ``endpoints``: register :data:`blueprint` (``GET /-/canaryconf``,
      ``POST /-/canaryconf/reload``). Off by default: the routes are unauthenticated.
    - ``mirror``: field names (or ``{field: config_key}``) copied into ``app.config``,
      under the upper-cased name by default, and updated on each change. Flask means
      ``app.config`` to be set up before the app serves: a mirrored value changes under
      running requests, and two mirrored values can belong to two versions for a moment.
      Mirror only for code that reads nothing but ``app.config``; read the pinned snapshot
      everywhere else.
    - ``watch``: start the background watcher (default True). It starts in the process
      that serves, never in one that only forks or supervises: at ``init_app`` in
      Werkzeug's reloader child (see :func:`in_reloader_child`), otherwise lazily at the
      first request of each process, which covers gunicorn workers with and without
      ``--preload`` (the master serves no request) and the reloader's parent (it serves
      nothing). Starting in a process also reloads once, so a worker forked from a master
      that loaded the settings long ago serves fresh values from its first request.
      ``watch=False`` leaves starting to you (``live.start()``).

    The state lives in ``app.extensions["canaryconf"]`` (``canary.live`` is just the
    settings given to the constructor), so one extension object can serve several apps
    (the app-factory pattern):

    >>> canary = CanaryConf(settings=live_settings, endpoints=True)   # doctest: +SKIP
    >>> def create_app():                                            # doctest: +SKIP
    ...     app = Flask(__name__)
    ...     canary.init_app(app)
    ...     return app
    """

    def __init__(
        self,
        app: Flask | None = None,
        settings: LiveSettings[S] | None = None,
        *,
        endpoints: bool = False,
        mirror: Iterable[str] | Mapping[str, str] = (),
        watch: bool = True,
    ) -> None:
        self.live = settings
        self.endpoints = endpoints
        self.mirror = _mirror_keys(mirror)
        self.watch = watch
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, settings: LiveSettings[S] | None = None) -> None:
        """Set the extension up on ``app``, with ``settings`` or the constructor's."""
        live_settings = settings if settings is not None else self.live
        if live_settings is None:
            raise TypeError(
                "CanaryConf needs the live settings: CanaryConf(app, settings=live(Settings))"
                " or canary.init_app(app, settings=...)"
            )
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(f"canaryconf is already set up on Flask app {app.name!r}")
        fields = live_settings.settings_class.model_fields
        unknown = sorted(set(self.mirror) - set(fields))
        if unknown:
            raise ValueError(
                f"cannot mirror into app.config: {live_settings.settings_class.__name__}"
                f" has no field(s) {', '.join(unknown)}"
            )
        state = _AppState(live_settings, dict(self.mirror), self.watch)
        if self.endpoints:
            app.register_blueprint(blueprint)
        app.before_request(_pin_request)
        # First in line, so that no other hook of the app reads settings before the pin.
        hooks = app.before_request_funcs[None]
        hooks.insert(0, hooks.pop())
        if state.mirror:
            live_settings.on_change(*state.mirror)(_config_mirror(app, state.mirror))
            current = live_settings.current  # after connecting: no change can fall between
            for name, key in state.mirror.items():
                app.config[key] = getattr(current, name)
        app.extensions[EXTENSION_KEY] = state
        if state.watch and in_reloader_child():
            _start_watcher(state)

    @property
    def snapshot(self) -> S:
        """The snapshot the current request is pinned to."""
        return cast(S, _request_pin().settings)

    @property
    def generation(self) -> str | None:
        """The generation of the volume the current request's snapshot came from."""
        return _request_pin().generation

    @property
    def digest(self) -> str:
        """The content digest of the volumes the current request's snapshot came from."""
        return _request_pin().digest

    @property
    def rollout_role(self) -> str | None:
        """The rollout role of the current request's snapshot (None without a
        :class:`~canaryconf.RolloutInfo` field)."""
        return _request_pin().rollout_role


def in_reloader_child(environ: Mapping[str, str] | None = None) -> bool:
    """True in the process that Werkzeug's reloader started to serve the app
    (``flask run --debug``, ``app.run(debug=True)``): it has ``WERKZEUG_RUN_MAIN=true``.

    The reloader's parent process imports the app too but only watches source files and
    restarts the child, so it must not watch volumes. It cannot tell itself apart from a
    process that runs with no reloader at all, which is why :class:`CanaryConf` starts the
    watcher at ``init_app`` only here and otherwise at the first request.

    >>> in_reloader_child({"WERKZEUG_RUN_MAIN": "true"}), in_reloader_child({})
    (True, False)
    """
    env = os.environ if environ is None else environ
    return env.get("WERKZEUG_RUN_MAIN") == "true"


# -- per request --------------------------------------------------------------------------


def _state(app: Flask) -> _AppState:
    state = app.extensions.get(EXTENSION_KEY)
    if not isinstance(state, _AppState):
        raise RuntimeError(
            f"canaryconf is not set up on Flask app {app.name!r}:"
            " call CanaryConf(app, settings) or canary.init_app(app)"
        )
    return state


def _request_pin() -> PinnedSettings[CanarySettings]:
    if not has_request_context():
        raise RuntimeError(
            "canaryconf.flask: no request is being handled here. The settings snapshot is"
            " pinned per request; outside a request read the LiveSettings instead"
            " (live.current)."
        )
    state = _state(current_app)
    pins: dict[int, PinnedSettings[CanarySettings]] = request.environ.setdefault(_ENVIRON_KEY, {})
    pinned = pins.get(id(state))
    if pinned is None:
        _start_watcher(state)
        pinned = pins[id(state)] = state.live.pin()
    return pinned


def _pin_request() -> None:
    _request_pin()


def _current_snapshot() -> CanarySettings:
    return _request_pin().settings


#: The snapshot the current request is pinned to, as a proxy (like ``flask.request``).
#: Outside a request, using it raises RuntimeError.
settings: LocalProxy[CanarySettings] = LocalProxy(_current_snapshot)


# -- the watcher --------------------------------------------------------------------------

_start_lock = threading.Lock()


def _start_watcher(state: _AppState) -> None:
    """Start the watcher once in this process. ``start()`` returns once the watcher has
    caught up with the volumes (a reload), so the snapshot is fresh when the caller pins."""
    pid = os.getpid()
    if not state.watch or state.started_pid == pid:
        return
    with _start_lock:
        if state.started_pid == pid:
            return
        state.started_pid = pid
        try:
            state.live.start()
        except Exception:
            logger.exception("canaryconf: could not start the watcher in process %d", pid)


def _new_start_lock() -> None:
    # A lock held by another thread at fork time would stay locked in the child forever.
    global _start_lock
    _start_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_start_lock)


# -- app.config mirroring -----------------------------------------------------------------


def _mirror_keys(mirror: Iterable[str] | Mapping[str, str]) -> dict[str, str]:
    if isinstance(mirror, str):
        mirror = [mirror]
    if isinstance(mirror, Mapping):
        return {str(name): str(key) for name, key in mirror.items()}
    return {name: name.upper() for name in mirror}


def _config_mirror(app: Flask, keys: Mapping[str, str]) -> Callable[[Change[Any]], None]:
    def mirror_into_config(change: Change[Any]) -> None:
        for name in change.fields & keys.keys():
            app.config[keys[name]] = getattr(change.new, name)

    return mirror_into_config


# -- endpoints ----------------------------------------------------------------------------

#: ``GET /-/canaryconf`` (the request's snapshot, redacted, with its generation, digest,
#: rollout role and the last reload error) and ``POST /-/canaryconf/reload`` (reload now,
#: in the process that got the request; status 200, or 422 when the new version is
#: rejected). Registered by ``CanaryConf(..., endpoints=True)``
#: or ``app.register_blueprint(blueprint)``; add your own access control in front.
blueprint = Blueprint("canaryconf", __name__, url_prefix="/-/canaryconf")


@blueprint.get("")
def status() -> Response:
    live_settings = _state(current_app).live
    body = status_body(live_settings, _request_pin(), watching=live_settings.running)
    return _json(body, 200)


@blueprint.post("/reload")
def reload_settings() -> Response:
    live_settings = _state(current_app).live
    result = live_settings.reload()
    return _json(reload_body(live_settings, result), reload_status_code(result))


def _json(body: dict[str, Any], status_code: int) -> Response:
    response = jsonify(body)
    response.status_code = status_code
    response.headers.update(NO_STORE)
    return response
