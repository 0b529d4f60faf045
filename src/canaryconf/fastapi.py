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
each worker imports the app, runs the lifespan and watches the volume itself. The
lifespan, the per-request pin and the endpoint bodies are those of
:mod:`canaryconf.starlette` (FastAPI is built on Starlette); this module adds FastAPI's
dependency-injection shape.

Importing ``canaryconf`` never imports FastAPI; only ``canaryconf.fastapi`` does.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the signature of the
# dependency objects below at runtime, and older FastAPI releases cannot resolve string
# annotations on a callable instance.

from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

try:
    from fastapi import APIRouter
    from fastapi.requests import HTTPConnection
    from fastapi.responses import JSONResponse
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "canaryconf.fastapi needs FastAPI: pip install 'canaryconf[fastapi]'"
    ) from exc

from canaryconf import CanarySettings, LiveSettings, PinnedSettings, _web
from canaryconf.starlette import canaryconf_lifespan, pinned

__all__ = [
    "PinnedSettings",
    "canaryconf_lifespan",
    "canaryconf_router",
    "current_settings",
    "pinned_settings",
]

S = TypeVar("S", bound=CanarySettings)

#: The ASGI scope key under which each request keeps the snapshots it pinned.
SCOPE_KEY = _web.PIN_KEY


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
        return pinned(connection, self.live).settings


class _PinnedSettings(_Dependency[S]):
    async def __call__(self, connection: HTTPConnection) -> PinnedSettings[S]:
        return pinned(connection, self.live)


def current_settings(live: LiveSettings[S]) -> Callable[[HTTPConnection], Awaitable[S]]:
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


def pinned_settings(
    live: LiveSettings[S],
) -> Callable[[HTTPConnection], Awaitable[PinnedSettings[S]]]:
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
        body, code, headers = _web.status_response(live, pinned(connection, live))
        return JSONResponse(body, status_code=code, headers=headers)

    router.add_api_route("", canaryconf_status, methods=["GET"])

    if reload:

        async def canaryconf_reload() -> JSONResponse:
            body, code, headers = _web.reload_response(live, await live.areload())
            return JSONResponse(body, status_code=code, headers=headers)

        router.add_api_route("/reload", canaryconf_reload, methods=["POST"])

    return router
