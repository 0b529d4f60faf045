"""canaryconf.fastapi: the lifespan watches in the app's loop, each request pins one snapshot,
and the optional endpoints show (redacted) and reload the settings.

No ``from __future__ import annotations`` here: FastAPI must resolve the annotations of
endpoints defined inside test functions, which name local aliases.
"""

import doctest
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import SecretStr

import canaryconf.fastapi
from canaryconf import CanaryConfigDict, CanarySettings, LiveSettings, RolloutInfo, annotation, live
from canaryconf._watch import active_watches
from canaryconf.fastapi import (
    PinnedSettings,
    canaryconf_lifespan,
    canaryconf_router,
    current_settings,
    pinned_settings,
)
from canaryconf.settings import REDACTED, redacted_digest
from canaryconf.testing import KubeletWriter, pod_files

DB_URL = "example.com/db-url"
NEW_CHECKOUT = "example.com/new-checkout"
API_TOKEN = "example.com/api-token"
SWAP_DEADLINE = 2.0


def settings_class(volume: Path) -> type[CanarySettings]:
    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=str(volume))
        db_url: str = annotation(DB_URL, default="postgres://stable-db/app")
        new_checkout: bool = annotation(NEW_CHECKOUT, default=False)
        api_token: SecretStr = annotation(API_TOKEN, default=SecretStr("x" * 16))
        rollout: RolloutInfo = RolloutInfo()

    return Settings


def version(
    writer: KubeletWriter,
    db_url: str,
    *,
    role: str = "canary",
    new_checkout: str = "true",
    token: str | None = None,
) -> None:
    annotations = {DB_URL: db_url, NEW_CHECKOUT: new_checkout}
    if token is not None:
        annotations[API_TOKEN] = token
    writer.write(pod_files(labels={"app": "shop", "role": role}, annotations=annotations))


@pytest.fixture
def settings(podinfo: KubeletWriter) -> LiveSettings[Any]:
    version(podinfo, "postgres://canary-db/app")
    return live(settings_class(podinfo.path))


def watched(volume: Path) -> list[Any]:
    return [w for w in active_watches() if w.path == str(volume)]


def wait_for(probe: Callable[[], bool], deadline: float = SWAP_DEADLINE) -> float:
    """Poll ``probe`` until true; returns how long it took (fails after ``deadline``)."""
    started = time.monotonic()
    while not probe():
        assert time.monotonic() - started < deadline, "timed out"
        time.sleep(0.005)
    return time.monotonic() - started


def checkout_app(settings: LiveSettings[Any], **kwargs: Any) -> FastAPI:
    app = FastAPI(**kwargs)
    settings_dep = Annotated[CanarySettings, Depends(current_settings(settings))]

    @app.get("/checkout")
    async def checkout(s: settings_dep) -> dict[str, Any]:
        return {"db_url": s.db_url}

    return app


# --------------------------------------------------------------------------------------------
# Import


def test_import_canaryconf_does_not_import_fastapi() -> None:
    code = (
        "import sys, canaryconf, canaryconf.testing\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'starlette'))\n"
        "print(loaded)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert out.stdout.strip() == "[]"


def test_doctests() -> None:
    result = doctest.testmod(canaryconf.fastapi, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_pinned_settings_is_the_core_one() -> None:
    assert PinnedSettings is canaryconf.PinnedSettings


# --------------------------------------------------------------------------------------------
# Lifespan


def test_lifespan_watches_while_the_app_runs(
    settings: LiveSettings[Any], podinfo: KubeletWriter
) -> None:
    app = checkout_app(settings, lifespan=canaryconf_lifespan(settings))
    before = active_watches()  # another test's leftovers would not be ours to judge
    assert watched(podinfo.path) == []

    # Without the lifespan (no ``with``) nothing watches: a swap is not seen (a witness
    # watching the same volume proves it was there to be seen).
    idle = TestClient(app)
    witness = live(settings.settings_class)
    with witness:
        version(podinfo, "postgres://unwatched/app")
        wait_for(lambda: witness.db_url == "postgres://unwatched/app")
    assert idle.get("/checkout").json() == {"db_url": "postgres://canary-db/app"}

    with TestClient(app) as client:
        assert len(watched(podinfo.path)) == 1
        # The first event the watcher handles re-reads what changed before it started.
        wait_for(lambda: client.get("/checkout").json()["db_url"] == "postgres://unwatched/app")
        for n in range(3):
            url = f"postgres://canary-db-{n}/app"
            version(podinfo, url)
            wait_for(lambda url=url: client.get("/checkout").json()["db_url"] == url)
        assert settings.generation == podinfo.generation

    assert watched(podinfo.path) == []
    assert active_watches() == before
    witness = live(settings.settings_class)
    with witness:
        version(podinfo, "postgres://after-shutdown/app")
        wait_for(lambda: witness.db_url == "postgres://after-shutdown/app")
    assert settings.db_url == "postgres://canary-db-2/app"


def test_lifespan_composes_with_the_app_lifespan(
    settings: LiveSettings[Any], podinfo: KubeletWriter
) -> None:
    events: list[tuple[str, int]] = []
    pool = object()

    @asynccontextmanager
    async def app_lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        events.append(("app startup", len(watched(podinfo.path))))
        yield {"pool": pool}
        events.append(("app shutdown", len(watched(podinfo.path))))

    app = FastAPI(lifespan=canaryconf_lifespan(settings, app_lifespan))

    @app.get("/pool")
    async def get_pool(request: Request) -> dict[str, bool]:
        return {"same": request.state.pool is pool}

    with TestClient(app) as client:
        assert client.get("/pool").json() == {"same": True}
        version(podinfo, "postgres://canary-db-2/app")
        wait_for(lambda: settings.db_url == "postgres://canary-db-2/app")

    # The watcher starts before the app's startup and stops after its shutdown.
    assert events == [("app startup", 1), ("app shutdown", 1)]
    assert watched(podinfo.path) == []


def test_lifespans_nest_for_several_settings(tmp_path: Path) -> None:
    writers = [KubeletWriter(tmp_path / name, seed=2) for name in ("a", "b")]
    for writer in writers:
        version(writer, "postgres://one/app")
    first, second = (live(settings_class(w.path)) for w in writers)
    order: list[str] = []

    @asynccontextmanager
    async def app_lifespan(app: FastAPI) -> AsyncIterator[None]:
        order.append(f"app sees {sum(len(watched(w.path)) for w in writers)} watches")
        yield
        order.append("app shutdown")

    app = FastAPI(lifespan=canaryconf_lifespan(first, canaryconf_lifespan(second, app_lifespan)))
    with TestClient(app):
        for writer in writers:
            version(writer, "postgres://two/app")
        wait_for(lambda: first.db_url == second.db_url == "postgres://two/app")

    assert order == ["app sees 2 watches", "app shutdown"]
    assert [watched(w.path) for w in writers] == [[], []]


# --------------------------------------------------------------------------------------------
# Per-request snapshot


def test_dependency_is_one_snapshot_per_request(
    settings: LiveSettings[Any], podinfo: KubeletWriter
) -> None:
    app = FastAPI()
    SettingsDep = Annotated[CanarySettings, Depends(current_settings(settings))]
    FreshDep = Annotated[CanarySettings, Depends(current_settings(settings), use_cache=False)]
    PinnedDep = Annotated[PinnedSettings[Any], Depends(pinned_settings(settings))]
    seen: list[CanarySettings] = []

    async def first_read(s: SettingsDep) -> str:
        return str(s.db_url)

    async def swap_in_between() -> str:
        version(podinfo, "postgres://mid-request/app")
        return (await settings.areload()).status

    async def later_read(s: FreshDep) -> CanarySettings:
        return s

    @app.get("/pinned")
    async def pinned(
        request: Request,
        *,
        db_url: Annotated[str, Depends(first_read)],
        status: Annotated[str, Depends(swap_in_between)],
        s: SettingsDep,
        again: Annotated[CanarySettings, Depends(later_read)],
        info: PinnedDep,
    ) -> dict[str, Any]:
        before = s.db_url
        version(podinfo, "postgres://in-endpoint/app")
        reloaded = (await settings.areload()).status
        by_hand = await current_settings(settings)(request)
        seen.append(s)
        return {
            "first_read": db_url,
            "reloads": [status, reloaded],
            "before": before,
            "after": s.db_url,
            "same_object": s is again is info.settings is by_hand,
            "generation": info.generation,
            "live_now": settings.db_url,
        }

    client = TestClient(app)
    generation = podinfo.generation
    body = client.get("/pinned").json()
    assert body == {
        "first_read": "postgres://canary-db/app",
        "reloads": ["applied", "applied"],
        "before": "postgres://canary-db/app",
        "after": "postgres://canary-db/app",
        "same_object": True,
        "generation": generation,
        "live_now": "postgres://in-endpoint/app",
    }

    # Not cached forever: the next request pins the version current when it starts.
    body = client.get("/pinned").json()
    assert body["first_read"] == body["after"] == "postgres://in-endpoint/app"
    assert seen[0] is not seen[1]


def test_dependency_is_the_same_for_every_call(
    settings: LiveSettings[Any], podinfo: KubeletWriter
) -> None:
    other = live(settings_class(podinfo.path))
    assert current_settings(settings) == current_settings(settings)
    assert hash(current_settings(settings)) == hash(current_settings(settings))
    assert current_settings(settings) != current_settings(other)
    assert current_settings(settings) != pinned_settings(settings)
    assert pinned_settings(settings) == pinned_settings(settings)
    assert "Settings" in repr(current_settings(settings))

    app = checkout_app(settings)
    fake = settings.settings_class(db_url="postgres://fake/app")
    app.dependency_overrides[current_settings(settings)] = lambda: fake
    assert TestClient(app).get("/checkout").json() == {"db_url": "postgres://fake/app"}


def test_pinned_settings_carry_generation_digest_and_role(
    settings: LiveSettings[Any], podinfo: KubeletWriter
) -> None:
    app = FastAPI()

    @app.get("/info")
    async def info(
        pinned: Annotated[PinnedSettings[Any], Depends(pinned_settings(settings))],
    ) -> dict[str, Any]:
        return {
            "generation": pinned.generation,
            "digest": pinned.digest,
            "role": pinned.rollout_role,
            "field_role": pinned.settings.rollout.role,
            "delegated": pinned.db_url == pinned.settings.db_url,
        }

    client = TestClient(app)
    assert client.get("/info").json() == {
        "generation": podinfo.generation,
        "digest": settings.digest,
        "role": "canary",
        "field_role": "canary",
        "delegated": True,
    }
    version(podinfo, "postgres://canary-db/app", role="stable")
    assert settings.reload().status == "applied"
    assert client.get("/info").json() == {
        "generation": podinfo.generation,
        "digest": settings.digest,
        "role": "stable",
        "field_role": "stable",
        "delegated": True,
    }


# --------------------------------------------------------------------------------------------
# Endpoints


def test_router_is_off_unless_included(settings: LiveSettings[Any]) -> None:
    app = checkout_app(settings, lifespan=canaryconf_lifespan(settings))
    with TestClient(app) as client:
        assert client.get("/-/canaryconf").status_code == 404
        assert client.post("/-/canaryconf/reload").status_code == 404


def test_status_endpoint(settings: LiveSettings[Any], podinfo: KubeletWriter) -> None:
    app = FastAPI()
    app.include_router(canaryconf_router(settings))
    response = TestClient(app).get("/-/canaryconf")

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {
        "settings": {
            "db_url": "postgres://canary-db/app",
            "new_checkout": True,
            "api_token": REDACTED,
            "rollout": {"role": "canary", "pod_template_hash": None},
        },
        "generation": podinfo.generation,
        "digest": redacted_digest(settings.current),
        "rollout_role": "canary",
        "last_error": None,
        "watching": False,
        "pid": os.getpid(),
    }


def test_status_says_whether_this_process_watches(settings: LiveSettings[Any]) -> None:
    app = FastAPI(lifespan=canaryconf_lifespan(settings))
    app.include_router(canaryconf_router(settings))
    with TestClient(app) as client:
        assert client.get("/-/canaryconf").json()["watching"] is True
    assert TestClient(app).get("/-/canaryconf").json()["watching"] is False


def test_reload_endpoint_applies_rejects_and_recovers(
    settings: LiveSettings[Any], podinfo: KubeletWriter
) -> None:
    app = checkout_app(settings)
    app.include_router(canaryconf_router(settings))
    client = TestClient(app)
    good = podinfo.generation

    assert client.post("/-/canaryconf/reload").json()["status"] == "unchanged"

    version(podinfo, "postgres://canary-db/app", new_checkout="not-a-bool")
    response = client.post("/-/canaryconf/reload")
    assert response.status_code == 422
    body = response.json()
    assert body["status"] == "failed"
    assert body["generation"] == good
    assert body["error"].startswith("SettingsValidationError: ")
    assert "new_checkout" in body["error"]
    assert "not-a-bool" not in body["error"]

    status = client.get("/-/canaryconf").json()
    assert status["last_error"] == body["error"]
    assert status["generation"] == good
    assert status["settings"]["new_checkout"] is True
    assert client.get("/checkout").json() == {"db_url": "postgres://canary-db/app"}

    version(podinfo, "postgres://canary2-db/app", new_checkout="false")
    response = client.post("/-/canaryconf/reload")
    assert response.status_code == 200
    assert response.json() == {
        "status": "applied",
        "generation": podinfo.generation,
        "digest": redacted_digest(settings.current),
        "changed": ["db_url", "new_checkout"],
        "restart_required": [],
        "error": None,
        "last_error": None,
        "pid": os.getpid(),
    }
    status = client.get("/-/canaryconf").json()
    assert status["last_error"] is None
    assert status["generation"] == podinfo.generation
    assert client.get("/checkout").json() == {"db_url": "postgres://canary2-db/app"}


def test_router_options(settings: LiveSettings[Any]) -> None:
    app = FastAPI()
    app.include_router(canaryconf_router(settings, prefix="/ops/config", reload=False))
    client = TestClient(app)
    assert client.get("/ops/config").json()["rollout_role"] == "canary"
    assert client.post("/ops/config/reload").status_code in (404, 405)
    assert client.get("/-/canaryconf").status_code == 404
    assert app.openapi()["paths"] == {}

    documented = FastAPI()
    documented.include_router(canaryconf_router(settings, include_in_schema=True))
    assert set(documented.openapi()["paths"]) == {"/-/canaryconf", "/-/canaryconf/reload"}


def test_router_accepts_protecting_dependencies(settings: LiveSettings[Any]) -> None:
    async def operator(request: Request) -> None:
        from fastapi import HTTPException

        if request.headers.get("x-operator") != "yes":
            raise HTTPException(403)

    app = FastAPI()
    app.include_router(canaryconf_router(settings), dependencies=[Depends(operator)])
    client = TestClient(app)
    assert client.get("/-/canaryconf").status_code == 403
    assert client.post("/-/canaryconf/reload").status_code == 403
    assert client.get("/-/canaryconf", headers={"x-operator": "yes"}).status_code == 200


def test_no_secret_in_endpoint_output(podinfo: KubeletWriter) -> None:
    token = f"tok-{uuid.uuid4().hex}"
    version(podinfo, "postgres://canary-db/app", token=token)

    class Long(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=str(podinfo.path))
        api_token: SecretStr = annotation(API_TOKEN, min_length=30)

    settings = live(settings_class(podinfo.path))
    long_settings = live(Long)
    app = FastAPI()
    app.include_router(canaryconf_router(settings))
    app.include_router(canaryconf_router(long_settings, prefix="/-/long"))
    client = TestClient(app)
    texts = [client.get("/-/canaryconf").text]
    assert json.loads(texts[0])["settings"]["api_token"] == REDACTED

    new_token = f"tok-{uuid.uuid4().hex}"
    version(podinfo, "postgres://canary-db/app", token=new_token)
    response = client.post("/-/canaryconf/reload")
    assert response.json()["changed"] == ["api_token"]
    texts += [response.text, client.get("/-/canaryconf").text]

    # A rejected secret: the error names the field and source, never the value.
    short = "s-" + uuid.uuid4().hex[:8]
    version(podinfo, "postgres://canary-db/app", token=short)
    response = client.post("/-/long/reload")
    assert response.status_code == 422
    assert "api_token" in response.json()["error"]
    texts += [response.text, client.get("/-/long").text]

    for text in texts:
        for secret in (token, new_token, short):
            assert secret not in text
