"""canaryconf.flask with Flask's test client, real volumes and real watchers."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, current_app, g

import canaryconf.flask as cf
from canaryconf import (
    CanaryConfigDict,
    CanarySettings,
    LiveSettings,
    RolloutInfo,
    annotation,
    live,
)
from canaryconf._runtime import runtime
from canaryconf.flask import CanaryConf, blueprint, in_reloader_child
from canaryconf.settings import redacted_digest
from canaryconf.testing import KubeletWriter
from conftest import ForkedChild, rollout_pod, wait_until

PREFIX = "checkout.example.com/"


class Watched:
    """Every LiveSettings a test makes, stopped at its end."""

    def __init__(self, volume: Path) -> None:
        self.volume = volume
        self.made: list[LiveSettings[Any]] = []

    def __call__(self) -> LiveSettings[Any]:
        made = live(settings_for(self.volume))
        self.made.append(made)
        return made


def settings_for(volume: Path) -> type[CanarySettings]:
    class CheckoutSettings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=str(volume), annotation_prefix=PREFIX)

        db_url: str = annotation("db-url", default="postgres://stable-db/checkout")
        new_checkout: bool = annotation("new-checkout", default=False)
        api_key: str = annotation("api-key", default="", secret=True)
        rollout: RolloutInfo = RolloutInfo()

    return CheckoutSettings


def version(
    db: str, *, new_checkout: str = "false", role: str = "canary", api_key: str = "s3cr3t"
) -> dict[str, str | bytes]:
    return rollout_pod(
        {"db-url": db, "new-checkout": new_checkout, "api-key": api_key},
        app="checkout",
        role=role,
        prefix=PREFIX,
    )


@pytest.fixture
def make_live(podinfo: KubeletWriter) -> Iterator[Watched]:
    podinfo.write(version("postgres://v1/checkout"))
    watched = Watched(podinfo.path)
    yield watched
    for made in watched.made:
        made.stop()
    leaked = [instance for instance in runtime().instances() if instance.running]
    for instance in leaked:
        instance.stop()
    assert not leaked, "a test left a watcher running"


@pytest.fixture
def settings(make_live: Watched) -> LiveSettings[Any]:
    return make_live()


def new_app() -> Flask:
    app = Flask(__name__)
    app.testing = True
    return app


# -- set-up -------------------------------------------------------------------------------


def test_import_canaryconf_does_not_import_flask() -> None:
    code = (
        "import sys, canaryconf, canaryconf.testing\n"
        "assert 'flask' not in sys.modules and 'werkzeug' not in sys.modules, sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def test_state_lives_in_app_extensions(settings: LiveSettings[Any]) -> None:
    canary = CanaryConf(settings=settings, watch=False)
    first, second = new_app(), new_app()
    canary.init_app(first)
    canary.init_app(second)
    assert not hasattr(canary, "app")
    assert first.extensions[cf.EXTENSION_KEY].live is settings
    assert second.extensions[cf.EXTENSION_KEY] is not first.extensions[cf.EXTENSION_KEY]
    with pytest.raises(RuntimeError, match="already set up"):
        canary.init_app(first)


def test_settings_can_come_with_init_app(make_live: Watched) -> None:
    canary: CanaryConf[Any] = CanaryConf(watch=False)
    with pytest.raises(TypeError, match="needs the live settings"):
        canary.init_app(new_app())
    first, second = new_app(), new_app()
    a, b = make_live(), make_live()
    canary.init_app(first, settings=a)
    canary.init_app(second, settings=b)
    app_for = {id(first): a, id(second): b}

    def same() -> dict[str, bool]:
        return {"same": canary.snapshot is app_for[id(current_app._get_current_object())].current}

    for app in (first, second):
        app.get("/")(same)
        assert app.test_client().get("/").json == {"same": True}


# -- one snapshot per request -------------------------------------------------------------


def test_a_request_keeps_its_snapshot_across_a_reload(
    podinfo: KubeletWriter, settings: LiveSettings[Any]
) -> None:
    app = new_app()
    canary = CanaryConf(app, settings, watch=False)

    @app.get("/checkout")
    def checkout() -> dict[str, Any]:
        before = (canary.snapshot.db_url, cf.settings.db_url, canary.generation, canary.digest)
        podinfo.write(version("postgres://v2/checkout", new_checkout="true", role="stable"))
        result = settings.reload()
        after = (canary.snapshot.db_url, cf.settings.db_url, canary.generation, canary.digest)
        return {
            "status": result.status,
            "before": before,
            "after": after,
            "same_object": cf.settings._get_current_object() is canary.snapshot,
            "role": canary.rollout_role,
            "flag": canary.snapshot.new_checkout,
            "live_now": settings.db_url,
        }

    @app.get("/again")
    def again() -> dict[str, Any]:
        return {"db": cf.settings.db_url, "generation": canary.generation}

    client = app.test_client()
    body = client.get("/checkout").json
    assert body["status"] == "applied"
    assert body["before"] == body["after"]
    assert body["before"][0] == "postgres://v1/checkout"
    assert (body["role"], body["flag"]) == ("canary", False)
    assert body["same_object"]
    assert body["live_now"] == "postgres://v2/checkout"

    assert client.get("/again").json == {
        "db": "postgres://v2/checkout",
        "generation": podinfo.generation,
    }


def test_a_pin_never_pairs_a_snapshot_with_another_versions_generation(
    podinfo: KubeletWriter, settings: LiveSettings[Any]
) -> None:
    app = new_app()
    canary = CanaryConf(app, settings, watch=False)
    written = {podinfo.generation: "postgres://v1/checkout"}
    stop = threading.Event()

    def swap() -> None:
        for n in range(1, 41):
            if stop.is_set():
                return
            db = f"postgres://v{n}/checkout"
            podinfo.write(version(db))
            written[podinfo.generation] = db
            settings.reload()

    swapper = threading.Thread(target=swap)
    swapper.start()
    pins = []
    try:
        deadline = time.monotonic() + 20.0
        while swapper.is_alive() and time.monotonic() < deadline:
            with app.test_request_context():
                pins.append((canary.generation, canary.snapshot.db_url))
    finally:
        stop.set()
        swapper.join(5.0)
    assert len(set(pins)) > 2, "no swap happened while pinning"
    assert [p for p in pins if written.get(p[0]) != p[1]] == []


def test_the_pin_is_taken_before_the_apps_own_hooks(
    podinfo: KubeletWriter, settings: LiveSettings[Any]
) -> None:
    app = new_app()

    @app.before_request
    def swap_early() -> None:
        podinfo.write(version("postgres://v2/checkout"))
        settings.reload()

    canary = CanaryConf(app, settings, watch=False)
    generation = podinfo.generation
    app.get("/")(lambda: {"db": canary.snapshot.db_url, "generation": canary.generation})
    assert app.test_client().get("/").json == {
        "db": "postgres://v1/checkout",
        "generation": generation,
    }


def test_requests_inside_one_app_context_are_pinned_one_by_one(
    podinfo: KubeletWriter, settings: LiveSettings[Any]
) -> None:
    app = new_app()
    canary = CanaryConf(app, settings, watch=False)
    app.get("/")(lambda: {"db": canary.snapshot.db_url})
    client = app.test_client()
    with app.app_context():  # Flask reuses this context (and g) for each request
        g.marker = True
        assert client.get("/").json == {"db": "postgres://v1/checkout"}
        podinfo.write(version("postgres://v2/checkout"))
        settings.reload()
        assert client.get("/").json == {"db": "postgres://v2/checkout"}


def test_the_proxy_outside_a_request_says_why_it_fails(settings: LiveSettings[Any]) -> None:
    app = new_app()
    canary = CanaryConf(app, settings, watch=False)
    with pytest.raises(RuntimeError, match="no request is being handled"):
        _ = cf.settings.db_url
    with app.app_context(), pytest.raises(RuntimeError, match=r"live\.current"):
        _ = canary.snapshot
    bare = new_app()
    with bare.test_request_context(), pytest.raises(RuntimeError, match="not set up"):
        _ = cf.settings.db_url
    with app.test_request_context():  # no dispatch: the first read pins
        assert cf.settings.db_url == "postgres://v1/checkout"


def test_the_proxy_is_what_its_type_says(settings: LiveSettings[Any]) -> None:
    # Typed CanarySettings (as Flask types flask.request: Request): every read reaches the
    # request's snapshot, an instance of the app's class, and isinstance agrees.
    app = new_app()
    canary = CanaryConf(app, settings, watch=False)
    with app.test_request_context():
        assert isinstance(cf.settings, CanarySettings)
        assert isinstance(cf.settings, type(canary.snapshot))
        assert cf.settings.origins == canary.snapshot.origins
        assert cf.settings.model_dump() == canary.snapshot.model_dump()


# -- app.config ---------------------------------------------------------------------------


def test_mirrored_fields_follow_each_change(
    podinfo: KubeletWriter, settings: LiveSettings[Any]
) -> None:
    app = new_app()
    CanaryConf(app, settings, mirror=["db_url", "new_checkout"], watch=False)
    other = new_app()
    CanaryConf(other, settings, mirror={"db_url": "SQLALCHEMY_DATABASE_URI"}, watch=False)
    assert (app.config["DB_URL"], app.config["NEW_CHECKOUT"]) == ("postgres://v1/checkout", False)
    assert other.config["SQLALCHEMY_DATABASE_URI"] == "postgres://v1/checkout"

    podinfo.write(version("postgres://v2/checkout", new_checkout="true"))
    assert settings.reload().applied
    assert (app.config["DB_URL"], app.config["NEW_CHECKOUT"]) == ("postgres://v2/checkout", True)
    assert other.config["SQLALCHEMY_DATABASE_URI"] == "postgres://v2/checkout"
    assert "NEW_CHECKOUT" not in other.config


def test_mirroring_an_unknown_field_fails_at_set_up(settings: LiveSettings[Any]) -> None:
    app = new_app()
    with pytest.raises(ValueError, match="no field"):
        CanaryConf(app, settings, mirror=["db_uri"], watch=False)
    assert "canaryconf" not in app.extensions


# -- endpoints ----------------------------------------------------------------------------


def test_endpoints_are_off_by_default(settings: LiveSettings[Any]) -> None:
    app = new_app()
    CanaryConf(app, settings, watch=False)
    client = app.test_client()
    assert client.get("/-/canaryconf").status_code == 404
    assert client.post("/-/canaryconf/reload").status_code == 404


def test_status_and_reload_endpoints(podinfo: KubeletWriter, settings: LiveSettings[Any]) -> None:
    app = new_app()
    CanaryConf(app, settings, endpoints=True, watch=False)
    client = app.test_client()

    status = client.get("/-/canaryconf").json
    assert status["settings"] == {
        "db_url": "postgres://v1/checkout",
        "new_checkout": False,
        "api_key": "**********",
        "rollout": {"role": "canary", "pod_template_hash": None},
    }
    assert status["generation"] == podinfo.generation
    assert status["digest"] == redacted_digest(settings.current)
    assert (status["rollout_role"], status["last_error"]) == ("canary", None)
    assert status["pid"] == os.getpid()
    assert "s3cr3t" not in client.get("/-/canaryconf").text

    podinfo.write(version("postgres://v2/checkout", role="stable"))
    reload = client.post("/-/canaryconf/reload")
    assert reload.status_code == 200
    assert reload.json["status"] == "applied"
    assert reload.json["changed"] == ["db_url", "rollout"]
    assert reload.json["generation"] == podinfo.generation
    assert client.get("/-/canaryconf").json["rollout_role"] == "stable"

    good = podinfo.generation
    podinfo.write(version("postgres://v3/checkout", new_checkout="maybe"))
    failed = client.post("/-/canaryconf/reload")
    assert failed.status_code == 422
    assert failed.json["status"] == "failed"
    assert "new_checkout" in failed.json["error"]
    again = client.post("/-/canaryconf/reload")  # the same bad content: still failing
    assert (again.status_code, again.json["status"]) == (422, "failed")
    assert again.json["last_error"] == failed.json["error"]
    status = client.get("/-/canaryconf").json
    assert status["generation"] == good
    assert status["settings"]["db_url"] == "postgres://v2/checkout"
    assert status["last_error"].startswith("SettingsValidationError: ")
    assert "maybe" not in status["last_error"]
    assert client.get("/-/canaryconf/reload").status_code == 405


def test_the_blueprint_can_be_registered_by_hand(settings: LiveSettings[Any]) -> None:
    app = new_app()
    CanaryConf(app, settings, watch=False)
    app.register_blueprint(blueprint, url_prefix="/internal/config")
    assert app.test_client().get("/internal/config").json["last_error"] is None


def test_the_blueprint_without_the_extension_says_so() -> None:
    app = new_app()
    app.register_blueprint(blueprint)
    with pytest.raises(RuntimeError, match="not set up on Flask app"):
        app.test_client().get("/-/canaryconf")


# -- where the watcher runs ---------------------------------------------------------------


def test_in_reloader_child_reads_werkzeug_run_main(monkeypatch: pytest.MonkeyPatch) -> None:
    assert in_reloader_child({"WERKZEUG_RUN_MAIN": "true"})
    assert not in_reloader_child({})
    assert not in_reloader_child({"WERKZEUG_RUN_MAIN": "false"})
    monkeypatch.delenv("WERKZEUG_RUN_MAIN", raising=False)
    assert not in_reloader_child()
    monkeypatch.setenv("WERKZEUG_RUN_MAIN", "true")
    assert in_reloader_child()


def test_the_reloader_child_watches_from_init_app(
    monkeypatch: pytest.MonkeyPatch, settings: LiveSettings[Any]
) -> None:
    monkeypatch.setenv("WERKZEUG_RUN_MAIN", "true")
    app = new_app()
    app.debug = True
    CanaryConf(app, settings)
    assert settings.running


def test_without_the_reloader_child_the_watcher_waits_for_a_request(
    monkeypatch: pytest.MonkeyPatch, podinfo: KubeletWriter, settings: LiveSettings[Any]
) -> None:
    # The reloader's parent looks like this (debug, no WERKZEUG_RUN_MAIN) and never serves.
    monkeypatch.delenv("WERKZEUG_RUN_MAIN", raising=False)
    app = new_app()
    app.debug = True
    canary = CanaryConf(app, settings)
    assert not settings.running
    app.get("/")(lambda: {"db": canary.snapshot.db_url})
    client = app.test_client()
    podinfo.write(version("postgres://v2/checkout"))  # before any watcher runs
    assert client.get("/").json == {"db": "postgres://v2/checkout"}  # start reloads
    assert settings.running
    podinfo.write(version("postgres://v3/checkout"))
    assert wait_until(lambda: client.get("/").json == {"db": "postgres://v3/checkout"})


def test_watch_false_never_starts_the_watcher(
    monkeypatch: pytest.MonkeyPatch, settings: LiveSettings[Any]
) -> None:
    monkeypatch.setenv("WERKZEUG_RUN_MAIN", "true")
    app = new_app()
    CanaryConf(app, settings, watch=False)
    app.get("/")(lambda: "ok")
    app.test_client().get("/")
    assert not settings.running


def test_concurrent_first_requests_start_one_watcher(settings: LiveSettings[Any]) -> None:
    app = new_app()
    canary = CanaryConf(app, settings)
    app.get("/")(lambda: {"db": canary.snapshot.db_url})
    barrier = threading.Barrier(8)
    answers: list[Any] = []

    def hit() -> None:
        barrier.wait(5.0)
        answers.append(app.test_client().get("/").json)

    threads = [threading.Thread(target=hit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10.0)
    assert answers == [{"db": "postgres://v1/checkout"}] * 8
    assert [t.name for t in threading.enumerate()].count("canaryconf-watcher") == 1


def test_a_forked_worker_starts_its_own_watcher_on_a_fresh_snapshot(
    podinfo: KubeletWriter, settings: LiveSettings[Any]
) -> None:
    """gunicorn --preload in miniature: set up in the parent, serve in a forked child."""
    app = new_app()
    canary = CanaryConf(app, settings)
    app.get("/")(lambda: {"db": canary.snapshot.db_url, "watching": settings.running})
    assert not settings.running
    podinfo.write(version("postgres://v2/checkout"))  # after the parent loaded v1

    def serve(out: int, go: int) -> int:  # pragma: no cover - runs in the child
        client = app.test_client()
        first = client.get("/").json
        podinfo.write(version("postgres://v3/checkout"))
        seen = wait_until(lambda: client.get("/").json["db"] == "postgres://v3/checkout")
        os.write(out, f"{first['db']} {first['watching']} {seen}\n".encode())
        settings.stop()
        return 0

    with ForkedChild(serve) as child:
        report = child.read_line(15.0)
        code = child.reap(5.0)
    assert (code, report) == (0, "postgres://v2/checkout True True")
    assert not settings.running, "the parent never served, so it never watched"
