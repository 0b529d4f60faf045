"""Starlette integration: a lifespan that watches, a middleware that pins one snapshot per
request, and optional operator routes. Any ASGI framework built on Starlette works with
it; :mod:`canaryconf.fastapi` is a thin layer over it.

>>> from starlette.applications import Starlette
>>> from starlette.middleware import Middleware
>>> from starlette.responses import JSONResponse
>>> from starlette.routing import Mount, Route
>>> from starlette.testclient import TestClient
>>> from canaryconf import CanarySettings, live
>>> from canaryconf.starlette import CanaryConfMiddleware, canaryconf_lifespan, canaryconf_routes
>>> class Settings(CanarySettings):
...     new_checkout: bool = False
>>> settings = live(Settings)
>>> async def checkout(request):
...     snap = request.state.canaryconf        # one pinned snapshot for the whole request
...     return JSONResponse({"new_checkout": snap.new_checkout})
>>> app = Starlette(
...     routes=[Route("/checkout", checkout),
...             Mount("/-/canaryconf", routes=canaryconf_routes(settings))],  # opt-in
...     middleware=[Middleware(CanaryConfMiddleware, settings=settings)],
...     lifespan=canaryconf_lifespan(settings),
... )
>>> with TestClient(app) as client:
...     client.get("/checkout").json()
{'new_checkout': False}

The watcher runs in the server's event loop (no thread): under ``uvicorn --workers N``
each worker imports the app, runs the lifespan and watches the volume itself.

Needs Starlette (``pip install "canaryconf[starlette]"``, or the ``fastapi`` extra);
``import canaryconf`` alone never imports it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

try:
    from starlette.requests import HTTPConnection, Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.types import ASGIApp, Receive, Scope, Send
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "canaryconf.starlette needs Starlette: pip install 'canaryconf[starlette]'"
    ) from exc

from canaryconf import _web
from canaryconf._live import LiveSettings, PinnedSettings
from canaryconf.settings import CanarySettings

__all__ = [
    "STATE_KEY",
    "CanaryConfMiddleware",
    "PinnedSettings",
    "canaryconf_lifespan",
    "canaryconf_routes",
    "pinned",
]

S = TypeVar("S", bound=CanarySettings)
AppT = TypeVar("AppT")

#: The name under which :class:`CanaryConfMiddleware` sets the request's pinned snapshot:
#: ``request.state.canaryconf``.
STATE_KEY = "canaryconf"


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
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: AppT) -> AsyncIterator[Any]:
        async with live.watching():
            if app_lifespan is None:
                yield None
            else:
                async with app_lifespan(app) as state:
                    yield state

    return lifespan


class CanaryConfMiddleware:
    """ASGI middleware that pins the snapshot of ``settings`` current when a request (or
    WebSocket) arrives: ``request.state.canaryconf`` is a :class:`PinnedSettings`, and
    every read in the request sees that one version, even if a reload lands meanwhile.

    It also makes sure the watcher runs in the serving process when no lifespan started
    one (a server run without lifespan events).
    """

    def __init__(self, app: ASGIApp, settings: LiveSettings[Any]) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            _web.ensure_started(self.settings)
            scope.setdefault("state", {})[STATE_KEY] = _web.pin(scope, self.settings)
        await self.app(scope, receive, send)


def pinned(connection: HTTPConnection, live: LiveSettings[S]) -> PinnedSettings[S]:
    """The request's pinned snapshot of ``live`` (taken now if nothing pinned it yet)."""
    return _web.pin(connection.scope, live)


def canaryconf_routes(live: LiveSettings[Any], *, reload: bool = True) -> list[Route]:
    """Operator routes, to mount where you like (``Mount("/-/canaryconf", routes=...)``):

    - ``GET /``: the request's snapshot with secrets redacted, its generation, digest
      and rollout role, the last reload error as text, whether this process watches,
      and its pid;
    - ``POST /reload`` (unless ``reload=False``): reload now, in the worker that got
      the request; 422 when the new version was rejected.

    Nothing here is meant for the public: protect the mount with your own middleware.
    """

    async def status(request: Request) -> JSONResponse:
        body, code, headers = _web.status_response(live, pinned(request, live))
        return JSONResponse(body, status_code=code, headers=headers)

    async def reload_now(request: Request) -> JSONResponse:
        body, code, headers = _web.reload_response(live, await live.areload())
        return JSONResponse(body, status_code=code, headers=headers)

    routes = [Route("/", status, methods=["GET"], name="canaryconf-status")]
    if reload:
        routes.append(Route("/reload", reload_now, methods=["POST"], name="canaryconf-reload"))
    return routes
