"""FastAPI integration: a lifespan that watches, a per-request snapshot, optional endpoints.

>>> from typing import Annotated
>>> from fastapi import Depends, FastAPI
>>> from canaryconf import CanarySettings, live
>>> from canaryconf.fastapi import canaryconf_lifespan, canaryconf_router, current_settings
>>> class Settings(CanarySettings):
...     new_checkout: bool = False
>>> settings = live(Settings)
>>> app = FastAPI(lifespan=canaryconf_lifespan(settings))
>>> @app.get("/checkout")
... async def checkout(s: Annotated[Settings, Depends(current_settings(settings))]):
...     return {"new_checkout": s.new_checkout}
>>> app.include_router(canaryconf_router(settings))  # opt-in: GET /-/canaryconf, POST .../reload

The watcher runs in the server's event loop (no thread): under ``uvicorn --workers N``
each worker imports the app, runs the lifespan and watches the volume itself.

Importing ``canaryconf`` never imports FastAPI; only ``canaryconf.fastapi`` does.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the signature of the
# dependency objects below at runtime, and older FastAPI releases cannot resolve string
# annotations on a callable instance.

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, TypeVar

try:
    from fastapi import APIRouter
    from fastapi.requests import HTTPConnection
    from fastapi.responses import JSONResponse
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "canaryconf.fastapi needs FastAPI: pip install 'canaryconf[fastapi]'"
    ) from exc

from canaryconf import CanarySettings, LiveSettings, PinnedSettings
from canaryconf._status import NO_STORE, reload_body, reload_status_code, status_body

__all__ = [
    "PinnedSettings",
    "canaryconf_lifespan",
    "canaryconf_router",
    "current_settings",
    "pinned_settings",
]

S = TypeVar("S", bound=CanarySettings)
AppT = TypeVar("AppT")

#: The ASGI scope key under which each request keeps the snapshots it pinned.
SCOPE_KEY = "canaryconf.pinned"

# id(LiveSettings) -> how many lifespans watch it in this process, for the status endpoint.
_lifespans: Counter[int] = Counter()


def canaryconf_lifespan(
    live: LiveSettings[Any],
    app_lifespan: Callable[[AppT], AbstractAsyncContextManager[Any]] | None = None,
) -> Callable[[AppT], AbstractAsyncContextManager[Any]]:
    """A lifespan that watches ``live``'s volumes while the app runs, around ``app_lifespan``.

    Startup puts the watches in place in the server's event loop, then enters
    ``app_lifespan`` (so it already sees live settings); shutdown leaves ``app_lifespan``
    first, then stops the watcher. Whatever state ``app_lifespan`` yields is passed on.
    The result is itself a lifespan, so several settings nest:
    ``canaryconf_lifespan(a, canaryconf_lifespan(b, app_lifespan))``.

    >>> from contextlib import asynccontextmanager
    >>> from fastapi import FastAPI
    >>> from fastapi.testclient import TestClient
    >>> from canaryconf import CanarySettings, live
    >>> class Settings(CanarySettings):
    ...     db_url: str = "postgres://stable-db/app"
    >>> settings = live(Settings)
    >>> @asynccontextmanager
    ... async def app_lifespan(app):
    ...     print("open pool:", settings.db_url)   # the watcher already runs
    ...     yield {"pool": "..."}
    ...     print("close pool")
    >>> app = FastAPI(lifespan=canaryconf_lifespan(settings, app_lifespan))
    >>> with TestClient(app):                       # startup ... shutdown
    ...     pass
    open pool: postgres://stable-db/app
    close pool
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: AppT) -> AsyncIterator[Any]:
        async with live.watching():
            _lifespans[id(live)] += 1
            try:
                if app_lifespan is None:
                    yield None
                else:
                    async with app_lifespan(app) as state:
                        yield state
            finally:
                _lifespans[id(live)] -= 1
                if _lifespans[id(live)] <= 0:
                    del _lifespans[id(live)]

    return lifespan


class _Dependency(Generic[S]):
    """A FastAPI dependency bound to one LiveSettings. Two of them for the same
    LiveSettings compare equal, so ``current_settings(live)`` written in several places is
    one dependency for FastAPI's per-request cache and for ``app.dependency_overrides``."""

    def __init__(self, live: LiveSettings[S]) -> None:
        self.live = live

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, _Dependency) and type(other) is type(self) and other.live is self.live
        )

    def __hash__(self) -> int:
        return hash((type(self), id(self.live)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.live.settings_class.__name__})"


class _CurrentSettings(_Dependency[S]):
    async def __call__(self, connection: HTTPConnection) -> S:
        return _pin(connection, self.live).settings


class _PinnedSettings(_Dependency[S]):
    async def __call__(self, connection: HTTPConnection) -> PinnedSettings[S]:
        return _pin(connection, self.live)


def current_settings(live: LiveSettings[S]) -> Callable[..., Any]:
    """A dependency giving the request's snapshot of ``live``: the settings current when
    the request first asked for them, the same object for the rest of the request.

    >>> from typing import Annotated
    >>> from fastapi import Depends, FastAPI
    >>> from fastapi.testclient import TestClient
    >>> from canaryconf import CanarySettings, live
    >>> class Settings(CanarySettings):
    ...     db_url: str = "postgres://stable-db/app"
    >>> settings = live(Settings)
    >>> app = FastAPI()
    >>> @app.get("/checkout")
    ... async def checkout(s: Annotated[Settings, Depends(current_settings(settings))]):
    ...     return {"db_url": s.db_url}   # every read in this request: one version
    >>> TestClient(app).get("/checkout").json()
    {'db_url': 'postgres://stable-db/app'}

    Unlike the ``lru_cache`` pattern, a new version reaches the next request. The pin is
    kept in the request scope, so it holds in sub-dependencies, with ``use_cache=False``
    and across an ``await live.areload()`` inside the endpoint. (A WebSocket keeps the
    snapshot of its handshake; read ``live.current`` for later versions.) Every
    ``current_settings(live)`` is the same dependency, so tests can override it with
    ``app.dependency_overrides[current_settings(live)] = ...``.
    """
    return _CurrentSettings(live)


def pinned_settings(live: LiveSettings[S]) -> Callable[..., Any]:
    """A dependency giving the request's :class:`PinnedSettings`: the same snapshot as
    :func:`current_settings`, with its generation, digest and rollout role.

    >>> from typing import Annotated
    >>> from fastapi import Depends, FastAPI
    >>> from fastapi.testclient import TestClient
    >>> from canaryconf import CanarySettings, live
    >>> class Settings(CanarySettings):
    ...     db_url: str = "postgres://stable-db/app"
    >>> settings = live(Settings)
    >>> app = FastAPI()
    >>> @app.get("/version")
    ... async def version(
    ...     pinned: Annotated[PinnedSettings[Settings], Depends(pinned_settings(settings))],
    ...     s: Annotated[Settings, Depends(current_settings(settings))],
    ... ):
    ...     return {"same": pinned.settings is s, "generation": pinned.generation}
    >>> TestClient(app).get("/version").json()
    {'same': True, 'generation': None}
    """
    return _PinnedSettings(live)


def canaryconf_router(
    live: LiveSettings[Any],
    *,
    prefix: str = "/-/canaryconf",
    reload: bool = True,
    include_in_schema: bool = False,
) -> APIRouter:
    """Optional endpoints for operators; include them explicitly.

    - ``GET {prefix}``: the request's snapshot with secrets redacted
      (:func:`~canaryconf.redacted_dump`), its generation, digest and rollout role, the
      last reload error as text (null when the last reload succeeded), whether this
      process watches the volumes, and its pid;
    - ``POST {prefix}/reload`` (unless ``reload=False``): reload now, in the worker that
      got the request, and return the result; 422 when the new version was rejected.

    Nothing here is meant for the public: protect it with dependencies of your own,
    ``app.include_router(canaryconf_router(live), dependencies=[Depends(operator)])``.

    >>> from fastapi import FastAPI
    >>> from fastapi.testclient import TestClient
    >>> from canaryconf import CanarySettings, live
    >>> class Settings(CanarySettings):
    ...     new_checkout: bool = False
    >>> app = FastAPI()
    >>> app.include_router(canaryconf_router(live(Settings)))
    >>> client = TestClient(app)
    >>> client.get("/-/canaryconf").json()["settings"]
    {'new_checkout': False}
    >>> client.post("/-/canaryconf/reload").json()["status"]
    'unchanged'
    """
    router = APIRouter(prefix=prefix, tags=["canaryconf"], include_in_schema=include_in_schema)

    async def canaryconf_status(connection: HTTPConnection) -> JSONResponse:
        watching = live.running or id(live) in _lifespans
        body = status_body(live, _pin(connection, live), watching=watching)
        return JSONResponse(body, headers=NO_STORE)

    router.add_api_route("", canaryconf_status, methods=["GET"])

    if reload:

        async def canaryconf_reload() -> JSONResponse:
            result = await live.areload()
            return JSONResponse(
                reload_body(live, result), status_code=reload_status_code(result), headers=NO_STORE
            )

        router.add_api_route("/reload", canaryconf_reload, methods=["POST"])

    return router


def _pin(connection: HTTPConnection, live: LiveSettings[S]) -> PinnedSettings[S]:
    """The request's pinned snapshot of ``live``, taken on first use."""
    pins: dict[int, PinnedSettings[Any]] = connection.scope.setdefault(SCOPE_KEY, {})
    pinned = pins.get(id(live))
    if pinned is None:
        pinned = pins[id(live)] = live.pin()
    return pinned
