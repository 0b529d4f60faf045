"""canaryconf.starlette with Starlette's TestClient: the middleware's per-request pin, the
lifespan's watcher, the operator routes. Under a real uvicorn with two workers:
``tests/e2e/test_fastapi_uvicorn.py`` (it serves ``examples.starlette.app`` too)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from canaryconf import CanaryConfigDict, CanarySettings, LiveSettings, annotation, live
from canaryconf.starlette import (
    CanaryConfMiddleware,
    PinnedSettings,
    canaryconf_lifespan,
    canaryconf_routes,
    pinned,
)
from canaryconf.testing import KubeletWriter, pod_files
from conftest import wait_until

pytestmark = pytest.mark.usefixtures("no_watcher_left")


def version(color: str) -> dict[str, str | bytes]:
    return pod_files(annotations={"color": color})


@pytest.fixture
def settings(podinfo: KubeletWriter) -> LiveSettings[Any]:
    podinfo.write(version("blue"))

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=str(podinfo.path))
        color: str = annotation("color", default="none")

    return live(Settings)


def make_app(settings: LiveSettings[Any], podinfo: KubeletWriter, *, lifespan: bool) -> Starlette:
    async def color(request: Request) -> JSONResponse:
        first = request.state.canaryconf
        if request.query_params.get("swap"):
            podinfo.write(version(request.query_params["swap"]))
            await settings.areload()  # applied now, but not to this request
        again = pinned(request, settings)
        return JSONResponse(
            {
                "first": first.color,
                "again": again.color,
                "same": first is again,
                "live": settings.color,
                "generation": first.generation,
            }
        )

    async def socket(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"color": websocket.state.canaryconf.color})
        await websocket.close()

    return Starlette(
        routes=[
            Route("/color", color),
            WebSocketRoute("/ws", socket),
            Mount("/-/canaryconf", routes=canaryconf_routes(settings)),
        ],
        middleware=[Middleware(CanaryConfMiddleware, settings=settings)],
        lifespan=canaryconf_lifespan(settings) if lifespan else None,
    )


def test_a_request_keeps_the_snapshot_it_started_with(
    settings: LiveSettings[Any], podinfo: KubeletWriter
) -> None:
    with TestClient(make_app(settings, podinfo, lifespan=True)) as client:
        body = client.get("/color", params={"swap": "red"}).json()
        assert body == {
            "first": "blue",
            "again": "blue",
            "same": True,
            "live": "red",
            "generation": body["generation"],
        }
        assert client.get("/color").json()["first"] == "red"
        with client.websocket_connect("/ws") as websocket:
            assert websocket.receive_json() == {"color": "red"}


def test_the_lifespan_watches_while_the_app_runs(
    settings: LiveSettings[Any], podinfo: KubeletWriter
) -> None:
    with TestClient(make_app(settings, podinfo, lifespan=True)) as client:
        assert settings.running
        podinfo.write(version("green"))
        assert wait_until(lambda: client.get("/color").json()["first"] == "green")
        status = client.get("/-/canaryconf/").json()
        assert (status["watching"], status["settings"]) == (True, {"color": "green"})
    assert not settings.running


def test_without_a_lifespan_the_middleware_starts_the_watcher(
    settings: LiveSettings[Any], podinfo: KubeletWriter
) -> None:
    client = TestClient(make_app(settings, podinfo, lifespan=False))
    try:
        assert not settings.running
        assert client.get("/color").json()["first"] == "blue"
        assert settings.running, "started by the first request"
        podinfo.write(version("green"))
        assert wait_until(lambda: client.get("/color").json()["first"] == "green")
    finally:
        settings.stop()


def test_the_reload_route_answers_like_the_other_adapters(
    settings: LiveSettings[Any], podinfo: KubeletWriter
) -> None:
    with TestClient(make_app(settings, podinfo, lifespan=False)) as client:
        assert client.get("/color").status_code == 200  # starts the watcher...
        settings.stop()  # ...stopped: this test's reloads must be the ones that see changes
        podinfo.write(version("red"))
        response = client.post("/-/canaryconf/reload")
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        assert (response.json()["status"], response.json()["changed"]) == ("applied", ["color"])
        assert client.get("/-/canaryconf/reload").status_code == 405


def test_nested_lifespans_pass_the_app_state_on(
    settings: LiveSettings[Any], podinfo: KubeletWriter
) -> None:
    from contextlib import asynccontextmanager

    seen: list[Any] = []

    @asynccontextmanager
    async def app_lifespan(app: Starlette) -> Any:
        seen.append(settings.running)
        yield {"pool": "opened"}
        seen.append("closed")

    async def pool(request: Request) -> JSONResponse:
        return JSONResponse({"pool": request.state.pool})

    app = Starlette(
        routes=[Route("/pool", pool)],
        lifespan=canaryconf_lifespan(settings, app_lifespan),
    )
    with TestClient(app) as client:
        assert client.get("/pool").json() == {"pool": "opened"}
    assert seen == [True, "closed"]


def test_pinned_is_the_core_type() -> None:
    import canaryconf

    assert PinnedSettings is canaryconf.PinnedSettings
    assert asyncio.iscoroutinefunction(CanaryConfMiddleware.__call__)


@pytest.mark.parametrize("module", ["canaryconf.starlette", "canaryconf._web"])
def test_doctests(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
