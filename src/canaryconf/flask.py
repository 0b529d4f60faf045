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

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

try:
    from flask import Blueprint, Flask, Response, current_app, has_request_context, jsonify, request
    from werkzeug.local import LocalProxy
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("canaryconf.flask needs Flask: pip install 'canaryconf[flask]'") from exc

from canaryconf import CanarySettings, LiveSettings, PinnedSettings, _web

__all__ = ["EXTENSION_KEY", "CanaryConf", "blueprint", "in_reloader_child", "settings"]

S = TypeVar("S", bound=CanarySettings)

#: The key of the extension's state in ``app.extensions``.
EXTENSION_KEY = "canaryconf"


@dataclass(eq=False)
class _AppState:
    """What ``app.extensions["canaryconf"]`` holds for one app."""

    live: LiveSettings[Any]
    mirror: dict[str, str]
    watch: bool


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
        self.mirror = _web.mirror_keys(mirror)
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
        state = _AppState(live_settings, dict(self.mirror), self.watch)
        _web.mirror(live_settings, state.mirror, app.config.__setitem__, where="app.config")
        if self.endpoints:
            app.register_blueprint(blueprint)
        app.before_request(_pin_request)
        # First in line, so that no other hook of the app reads settings before the pin.
        hooks = app.before_request_funcs[None]
        hooks.insert(0, hooks.pop())
        app.extensions[EXTENSION_KEY] = state
        if state.watch and in_reloader_child():
            _web.ensure_started(live_settings)

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
    if state.watch:
        _web.ensure_started(state.live)  # a look-up once started
    return _web.pin(request.environ, state.live)


def _pin_request() -> None:
    _request_pin()


def _current_snapshot() -> CanarySettings:
    return _request_pin().settings


#: The snapshot the current request is pinned to, as a proxy (like ``flask.request``).
#: Outside a request, using it raises RuntimeError. It is typed as Flask types its own
#: proxies (``request: Request``): as what every attribute read reaches, a
#: :class:`~canaryconf.CanarySettings`. Which subclass depends on the app the request
#: belongs to, so the fields of yours are not known here: for them, typed, read
#: :attr:`CanaryConf.snapshot`.
settings: CanarySettings = cast(CanarySettings, LocalProxy(_current_snapshot))


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
    return _json(_web.status_response(live_settings, _request_pin()))


@blueprint.post("/reload")
def reload_settings() -> Response:
    live_settings = _state(current_app).live
    return _json(_web.reload_response(live_settings, live_settings.reload()))


def _json(answer: _web.Response) -> Response:
    body, status_code, headers = answer
    response = jsonify(body)
    response.status_code = status_code
    response.headers.update(headers)
    return response
