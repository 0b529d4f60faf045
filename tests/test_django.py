"""canaryconf.django: the app starts one watcher where requests are served, the middleware
pins a snapshot per request, mirrored fields follow in django.conf.settings, the Django
signal fires, and ``manage.py canaryconf show/validate`` report without leaking values.

Django's configuration is process-global, so every test that sets Django up runs it in a
subprocess of its own (a script built from :data:`PRELUDE` and the test's body); the pure
decision functions are tested here directly.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.core.exceptions import ImproperlyConfigured

from canaryconf.django._runtime import management_command, watch_decision
from canaryconf.django.conf import Config
from canaryconf.settings import REDACTED
from canaryconf.testing import KubeletWriter, pod_files
from e2e._support import fetch_json, free_port, inotify_fds, poll_until, start_server

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "django"
PREFIX = "checkout.example.com/"
RUN_TIMEOUT = 60

#: The settings module the subprocesses import (written next to each test's script).
SHOPCONF = """
import os
from pydantic import SecretStr
from canaryconf import CanaryConfigDict, CanarySettings, RolloutInfo, annotation, live

class Settings(CanarySettings):
    model_config = CanaryConfigDict(
        downward_api_dir=os.environ["PODINFO_DIR"], annotation_prefix="checkout.example.com/"
    )
    db_url: str = annotation("db-url", default="postgres://stable-db/checkout")
    new_checkout: bool = annotation("new-checkout", default=False)
    payments_token: SecretStr = annotation("payments-token", default=SecretStr(""))
    rollout: RolloutInfo = RolloutInfo()
"""
SHOPLIVE = """
from canaryconf import live
from shopconf import Settings
settings = live(Settings)
"""
SHOPURLS = """
from django.http import JsonResponse
from django.urls import include, path

def checkout(request):
    s = request.canaryconf
    return JsonResponse({"generation": s.generation, "db_url": s.db_url})

from canaryconf.django.urls import canaryconf_urls

urlpatterns = [
    path("checkout", checkout),
    path("-/canaryconf/", include("canaryconf.django.urls")),
    *canaryconf_urls("-/ops"),
]
"""

#: What every subprocess runs first: configure Django from the JSON in argv[1], pretend
#: to be the command line it names, set Django up. The body then fills ``result``.
PRELUDE = """
import json, os, sys, threading, time
CONFIG = json.loads(sys.argv[1])
sys.argv = CONFIG["argv"]
from django.conf import settings
settings.configure(**CONFIG["settings"])
import django
from canaryconf.testing import KubeletWriter, pod_files

PREFIX = "checkout.example.com/"
writer = KubeletWriter(os.environ["PODINFO_DIR"])

def watcher_threads():
    return sum(t.name == "canaryconf-watcher" for t in threading.enumerate())

def inotify_fds():
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify"
        except OSError:
            pass
    return count

def wait_for(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.005)

def in_event_loop():
    import asyncio
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True

def select_one():  # a query on this thread's connection: Django refuses it in a loop
    from django.db import connection
    with connection.cursor() as cursor:
        cursor.execute("select 1")
        return cursor.fetchone()[0]

def version(db_url, new_checkout="false", role="canary", **annotations):
    return pod_files(
        labels={"role": role},
        annotations={PREFIX + "db-url": db_url, PREFIX + "new-checkout": new_checkout,
                     **{PREFIX + k: v for k, v in annotations.items()}},
    )

result = {}
"""
EPILOGUE = "\nprint('RESULT=' + json.dumps(result, default=str), flush=True)\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory with the test's settings modules and a volume at ``podinfo``."""
    (tmp_path / "shopconf.py").write_text(SHOPCONF)
    (tmp_path / "shoplive.py").write_text(SHOPLIVE)
    (tmp_path / "shopurls.py").write_text(SHOPURLS)
    KubeletWriter(tmp_path / "podinfo").write(
        pod_files(
            labels={"role": "canary"},
            annotations={f"{PREFIX}db-url": "postgres://canary-db/checkout"},
        )
    )
    return tmp_path


def django_settings(**overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "INSTALLED_APPS": ["canaryconf.django"],
        "MIDDLEWARE": ["canaryconf.django.middleware.CanaryConfMiddleware"],
        "ROOT_URLCONF": "shopurls",
        "ALLOWED_HOSTS": ["testserver", "127.0.0.1"],
        "DATABASES": {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        "CANARYCONF": {"SETTINGS": "shopconf.Settings"},
        "LOGGING_CONFIG": None,
    }
    settings.update(overrides)
    return settings


def run_django(
    project: Path,
    body: str,
    *,
    settings: Mapping[str, Any] | None = None,
    argv: tuple[str, ...] = ("/venv/bin/gunicorn", "shop.wsgi"),
    env: Mapping[str, str] | None = None,
    expect_ok: bool = True,
) -> Any:
    """Run ``body`` after Django setup in a fresh interpreter; return its ``result``
    (or the CompletedProcess when ``expect_ok`` is False)."""
    script = project / f"script_{uuid.uuid4().hex[:8]}.py"
    script.write_text(PRELUDE + textwrap.dedent(body) + EPILOGUE)
    config = {"argv": list(argv), "settings": dict(settings or django_settings())}
    full_env = {k: v for k, v in os.environ.items() if k != "RUN_MAIN"}
    full_env.update(PODINFO_DIR=str(project / "podinfo"), PYTHONPATH=str(project), **(env or {}))
    proc = subprocess.run(
        [sys.executable, str(script), json.dumps(config)],
        check=False,
        cwd=project,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    if not expect_ok:
        return proc
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT="))
    return json.loads(line.removeprefix("RESULT="))


# -- import hygiene ------------------------------------------------------------------------


def test_import_canaryconf_never_imports_django() -> None:
    code = (
        "import sys, canaryconf, canaryconf.testing, canaryconf.signals, canaryconf.volume;"
        "assert not [m for m in sys.modules if m == 'django' or m.startswith('django.')],"
        " sorted(m for m in sys.modules if m.startswith('django'))"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=RUN_TIMEOUT)


# -- where the watcher runs: the pure decision -----------------------------------------------


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["manage.py", "runserver"], "runserver"),
        (["/srv/app/manage.py", "migrate", "--noinput"], "migrate"),
        (["/venv/bin/django-admin", "canaryconf", "show"], "canaryconf"),
        (["/venv/lib/python3.11/site-packages/django/__main__.py", "shell"], "shell"),
        (["manage.py"], "help"),
        (["/venv/bin/gunicorn", "checkout.wsgi"], None),
        (["/venv/lib/python3.11/site-packages/gunicorn/__main__.py", "-w", "2"], None),
        (["/venv/bin/uvicorn", "checkout.asgi:application"], None),
        ([], None),
    ],
)
def test_management_command_is_read_from_argv(argv: list[str], command: str | None) -> None:
    assert management_command(argv) == command


@pytest.mark.parametrize(
    ("argv", "environ", "config", "watch"),
    [
        (["gunicorn", "checkout.wsgi"], {}, {}, True),
        (["manage.py", "runserver"], {}, {}, False),  # the autoreloader's parent
        (["manage.py", "runserver"], {"RUN_MAIN": "true"}, {}, True),  # its child
        (["manage.py", "runserver", "--noreload"], {}, {}, True),
        (["manage.py", "runserver", "0:8000"], {"RUN_MAIN": "false"}, {}, False),
        (["manage.py", "testserver", "fixture.json"], {}, {}, True),
        (["manage.py", "migrate"], {}, {}, False),
        (["manage.py", "migrate"], {"RUN_MAIN": "true"}, {}, False),
        (["manage.py", "canaryconf", "show"], {}, {}, False),
        (["gunicorn", "checkout.wsgi"], {}, {"WATCH": False}, False),
        (["gunicorn", "checkout.wsgi"], {}, {"WATCH": "lazy"}, True),
        (["manage.py", "migrate"], {}, {"WATCH": "lazy"}, False),
        (["manage.py", "runserver"], {"RUN_MAIN": "true"}, {"WATCH": False}, False),
        (["manage.py", "rqworker"], {}, {"SERVER_COMMANDS": ["rqworker"]}, True),
        (["manage.py", "testserver"], {}, {"SERVER_COMMANDS": ["rqworker"]}, False),
    ],
)
def test_watch_decision(
    argv: list[str], environ: dict[str, str], config: dict[str, Any], watch: bool
) -> None:
    decided, reason = watch_decision(
        argv, environ, Config.from_mapping({"SETTINGS": "x.S", **config})
    )
    assert decided is watch, reason
    assert reason


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "must be a dict"),
        ({}, "exactly one of"),
        ({"SETTINGS": "a.S", "LIVE": "a.s"}, "exactly one of"),
        ({"SETTINGS": "a.S", "MIROR": {}}, "unknown key(s) 'MIROR'"),
        ({"SETTINGS": "a.S", "MIRROR": {"db_url": "db_url"}}, "UPPER_CASE"),
        ({"SETTINGS": "a.S", "MIRROR": ["db_url"]}, '"MIRROR" must be a dict'),
        ({"SETTINGS": "a.S", "WATCH": "yes"}, '"WATCH" must be True, "lazy" or False'),
        ({"SETTINGS": "a.S", "SERVER_COMMANDS": "runserver"}, "list of command names"),
        ({"LIVE": "a.s", "OPTIONS": {"debounce": 0.1}}, '"OPTIONS" applies to "SETTINGS"'),
        ({"SETTINGS": 42}, "dotted path"),
    ],
)
def test_config_errors_say_what_is_wrong(raw: Any, message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=re.escape(message)):
        Config.from_mapping(raw)


# -- ready(): once per process, only where requests are served -------------------------------


def test_ready_twice_starts_one_watcher(project: Path) -> None:
    result = run_django(
        project,
        """
        django.setup()
        from django.apps import apps
        from canaryconf.django import get_live_settings
        config = apps.get_app_config("canaryconf")
        config.ready()
        config.ready()
        live = get_live_settings()
        result.update(running=live.running, threads=watcher_threads(), fds=inotify_fds(),
                      label=config.label, generation=live.generation)
        """,
    )
    assert result["running"] is True
    assert result["threads"] == 1
    assert result["fds"] == 1
    assert result["label"] == "canaryconf"
    assert result["generation"] == KubeletWriter(project / "podinfo").generation


@pytest.mark.parametrize(
    ("argv", "env", "watching"),
    [
        (("manage.py", "runserver"), {}, False),
        (("manage.py", "runserver"), {"RUN_MAIN": "true"}, True),
        (("manage.py", "runserver", "--noreload"), {}, True),
        (("manage.py", "migrate"), {}, False),
        (("manage.py", "shell"), {}, False),
        (("manage.py", "canaryconf", "show"), {}, False),
    ],
    ids=["runserver-parent", "runserver-child", "runserver-noreload", "migrate", "shell", "show"],
)
def test_ready_watches_only_where_requests_are_served(
    project: Path, argv: tuple[str, ...], env: dict[str, str], watching: bool
) -> None:
    result = run_django(
        project,
        """
        django.setup()
        from canaryconf.django import get_live_settings
        live = get_live_settings()
        result.update(running=live.running, threads=watcher_threads(), fds=inotify_fds(),
                      db_url=live.db_url)
        """,
        argv=argv,
        env=env,
    )
    assert result == {
        "running": watching,
        "threads": int(watching),
        "fds": int(watching),
        "db_url": "postgres://canary-db/checkout",  # loaded everywhere, watched or not
    }


def test_live_setting_uses_an_existing_live_settings(project: Path) -> None:
    result = run_django(
        project,
        """
        django.setup()
        import shoplive
        from canaryconf.django import get_live_settings
        live = get_live_settings()
        result.update(same=live is shoplive.settings, running=live.running,
                      threads=watcher_threads())
        """,
        settings=django_settings(CANARYCONF={"LIVE": "shoplive.settings"}),
    )
    assert result == {"same": True, "running": True, "threads": 1}


def test_a_version_written_before_the_watcher_started_is_not_missed(project: Path) -> None:
    result = run_django(
        project,
        """
        import shoplive   # LiveSettings made at import, long before ready()
        writer.write(version("postgres://written-meanwhile/checkout"))
        django.setup()
        result["db_url"] = shoplive.settings.db_url   # no waiting: ready() reloaded
        """,
        settings=django_settings(CANARYCONF={"LIVE": "shoplive.settings"}),
    )
    assert result["db_url"] == "postgres://written-meanwhile/checkout"


def test_lazy_watch_starts_at_the_first_request_of_each_process(project: Path) -> None:
    result = run_django(
        project,
        """
        django.setup()
        from django.test import RequestFactory
        from canaryconf.django import get_live_settings
        from canaryconf.django.middleware import CanaryConfMiddleware
        live = get_live_settings()
        middleware = CanaryConfMiddleware(lambda request: request.canaryconf)
        result["ready"] = [live.running, watcher_threads(), inotify_fds()]
        writer.write(version("postgres://before-first-request/checkout"))
        pid = os.fork()
        if pid == 0:
            forked = [live.running, watcher_threads(), inotify_fds()]
            db_url = middleware(RequestFactory().get("/")).db_url
            middleware(RequestFactory().get("/"))
            served = [live.running, watcher_threads(), inotify_fds()]
            ok = (forked, served, db_url) == (
                [False, 0, 0], [True, 1, 1], "postgres://before-first-request/checkout")
            os._exit(0 if ok else 1)
        result["child_status"] = os.waitpid(pid, 0)[1]
        result["parent"] = [live.running, watcher_threads(), inotify_fds()]
        """,
        settings=django_settings(CANARYCONF={"SETTINGS": "shopconf.Settings", "WATCH": "lazy"}),
    )
    assert result == {"ready": [False, 0, 0], "child_status": 0, "parent": [False, 0, 0]}


def test_settings_that_do_not_validate_stop_a_server_at_startup(project: Path) -> None:
    token = f"tok-{uuid.uuid4().hex}"
    KubeletWriter(project / "podinfo").write(
        pod_files(annotations={f"{PREFIX}new-checkout": f"maybe-{token}"})
    )
    proc = run_django(project, "django.setup()", expect_ok=False)
    assert proc.returncode != 0
    assert "ImproperlyConfigured: settings.CANARYCONF: shopconf.Settings does not load" in (
        proc.stderr
    )
    assert f"key '{PREFIX}new-checkout'" in proc.stderr
    assert token not in proc.stderr + proc.stdout


def test_a_forked_worker_runs_exactly_one_watcher(project: Path) -> None:
    """gunicorn --preload: ready() ran in the master; each forked worker must watch once,
    whether LiveSettings restarted the watcher at fork or the middleware does it."""
    result = run_django(
        project,
        """
        django.setup()
        from django.test import RequestFactory
        from canaryconf.django import get_live_settings
        from canaryconf.django.middleware import CanaryConfMiddleware
        live = get_live_settings()
        middleware = CanaryConfMiddleware(lambda request: request.canaryconf)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            child = {}
            try:
                # LiveSettings restarts the watcher after fork (on a thread of its own,
                # once fork() returned); requests start no second one.
                child["running_at_once"] = live.running
                wait_for(lambda: watcher_threads() == 1 and inotify_fds() == 1)
                child["after_fork"] = [live.running, watcher_threads(), inotify_fds()]
                middleware(RequestFactory().get("/"))
                child["after_request"] = [live.running, watcher_threads(), inotify_fds()]
                writer.write(version("postgres://after-fork/checkout"))
                wait_for(lambda: middleware(RequestFactory().get("/")).db_url
                         == "postgres://after-fork/checkout")
                # Had that restart not happened, the first request would start it.
                grandchild = os.fork()
                if grandchild == 0:
                    live.stop()
                    stopped = [live.running, watcher_threads(), inotify_fds()]
                    middleware(RequestFactory().get("/"))
                    middleware(RequestFactory().get("/"))
                    started = [live.running, watcher_threads(), inotify_fds()]
                    os._exit(0 if (stopped, started) == ([False, 0, 0], [True, 1, 1]) else 1)
                child["fallback_status"] = os.waitpid(grandchild, 0)[1]
            except BaseException as exc:
                child["error"] = repr(exc)
            os.write(write, json.dumps(child).encode())
            os._exit(0)
        os.close(write)
        _, status = os.waitpid(pid, 0)
        result["child"] = json.loads(os.read(read, 65536) or b"{}")
        result["status"] = status
        result["parent"] = [live.running, watcher_threads(), inotify_fds()]
        """,
    )
    assert result["status"] == 0
    assert result["child"] == {
        "running_at_once": True,
        "after_fork": [True, 1, 1],
        "after_request": [True, 1, 1],
        "fallback_status": 0,
    }
    assert result["parent"] == [True, 1, 1]


# -- the middleware ----------------------------------------------------------------------------


def test_middleware_pins_one_snapshot_for_the_whole_request(project: Path) -> None:
    result = run_django(
        project,
        """
        django.setup()
        import asyncio
        from django.test import RequestFactory
        import canaryconf
        from canaryconf.django import PinnedSettings, get_live_settings, pin
        from canaryconf.django.middleware import CanaryConfMiddleware
        live = get_live_settings()
        live.stop()  # reload by hand: the swap must land exactly mid-request

        def view(request):
            before = request.canaryconf
            writer.write(version("postgres://canary-db-2/checkout", new_checkout="true"))
            live.reload()
            after = request.canaryconf
            return {
                "same": before is after,
                "pinned": [after.generation, after.db_url, after.new_checkout,
                           after.rollout.role, after.rollout_role],
                "live": [live.generation, live.db_url, live.new_checkout],
                "type": type(after).__name__,
                "core_type": type(after) is PinnedSettings is canaryconf.PinnedSettings,
                "alias": pin(live) == live.pin(),
                "settings_type": type(after.settings).__name__,
            }

        result["sync"] = CanaryConfMiddleware(view)(RequestFactory().get("/"))
        result["next"] = CanaryConfMiddleware(lambda r: [r.canaryconf.generation,
                                                         r.canaryconf.db_url])(
            RequestFactory().get("/"))

        async def async_view(request):
            before = request.canaryconf
            writer.write(version("postgres://canary-db-3/checkout"))
            await live.areload()
            return [before is request.canaryconf, request.canaryconf.db_url, live.db_url]

        middleware = CanaryConfMiddleware(async_view)
        result["async_capable"] = asyncio.iscoroutinefunction(middleware)
        result["async"] = asyncio.run(middleware(RequestFactory().get("/")))
        """,
    )
    generation_1 = result["sync"]["pinned"][0]
    assert result["sync"]["same"] is True
    assert result["sync"]["pinned"][1:] == [
        "postgres://canary-db/checkout",
        False,
        "canary",
        "canary",
    ]
    assert result["sync"]["live"][1:] == ["postgres://canary-db-2/checkout", True]
    assert result["sync"]["live"][0] != generation_1
    assert result["sync"]["type"] == "PinnedSettings"
    assert result["sync"]["core_type"] is True  # canaryconf.django.PinnedSettings is the core's
    assert result["sync"]["alias"] is True
    assert result["sync"]["settings_type"] == "Settings"
    assert result["next"] == [result["sync"]["live"][0], "postgres://canary-db-2/checkout"]
    assert result["async_capable"] is True
    assert result["async"] == [
        True,
        "postgres://canary-db-2/checkout",
        "postgres://canary-db-3/checkout",
    ]


def test_status_and_reload_endpoints(project: Path) -> None:
    token = f"tok-{uuid.uuid4().hex}"
    KubeletWriter(project / "podinfo").write(
        pod_files(
            labels={"role": "canary"},
            annotations={f"{PREFIX}db-url": "postgres://a/b", f"{PREFIX}payments-token": token},
        )
    )
    result = run_django(
        project,
        """
        django.setup()
        from django.test import Client
        client = Client()
        status = client.get("/-/canaryconf/")
        result["status"] = [status.status_code, status.json(), status["Cache-Control"]]
        result["get_reload"] = client.get("/-/canaryconf/reload").status_code
        result["ops"] = [
            client.get("/-/ops").status_code,
            client.get("/-/ops/").status_code,
            client.post("/-/ops/reload").status_code,
            client.post("/-/ops/reload/").status_code,
        ]
        from canaryconf.django import get_live_settings
        get_live_settings().stop()  # this test's reloads must be the ones that see changes
        writer.write(version("postgres://c/d", new_checkout="nope"))
        bad = Client(enforce_csrf_checks=True).post("/-/canaryconf/reload")
        result["bad"] = [bad.status_code, bad.json()]
        result["after_bad"] = client.get("/-/canaryconf/").json()
        writer.write(version("postgres://c/d"))
        good = client.post("/-/canaryconf/reload")
        result["good"] = [good.status_code, good.json()]
        result["checkout"] = client.get("/checkout").json()
        """,
    )
    code, body, cache = result["status"]
    assert (code, cache) == (200, "no-store")
    assert body["settings"]["payments_token"] == REDACTED
    assert body["settings"]["db_url"] == "postgres://a/b"
    assert body["rollout_role"] == "canary"
    assert body["watching"] is True
    assert body["last_error"] is None
    assert isinstance(body["pid"], int)
    assert token not in json.dumps(result)
    assert result["get_reload"] == 405
    assert result["ops"] == [200, 200, 200, 200], "with and without the trailing slash"
    code, bad = result["bad"]
    assert code == 422
    assert bad["status"] == "failed"
    assert "new_checkout" in bad["error"]
    assert "nope" not in bad["error"]
    assert result["after_bad"]["settings"]["db_url"] == "postgres://a/b"
    assert "new_checkout" in result["after_bad"]["last_error"]
    code, good = result["good"]
    assert code == 200
    assert good["status"] == "applied"
    assert good["changed"] == ["db_url", "payments_token"]  # the token left the volume
    assert result["checkout"]["db_url"] == "postgres://c/d"
    assert result["checkout"]["generation"] == good["generation"]


# -- mirroring and the Django signal -----------------------------------------------------------


def test_mirrored_fields_follow_in_django_settings(project: Path) -> None:
    result = run_django(
        project,
        """
        django.setup()
        from django.conf import settings as dj
        from canaryconf.django import get_live_settings
        live = get_live_settings()
        result["initial"] = [dj.CHECKOUT_DB_URL, dj.CHECKOUT_NEW_FLOW, dj.UNTOUCHED]
        writer.write(version("postgres://canary-db-2/checkout", new_checkout="true"))
        wait_for(lambda: dj.CHECKOUT_NEW_FLOW is True)   # applied by the watcher
        result["watched"] = [dj.CHECKOUT_DB_URL, dj.CHECKOUT_NEW_FLOW, dj.UNTOUCHED]
        live.stop()
        writer.write(version("postgres://canary-db-3/checkout", new_checkout="true"))
        live.reload()
        result["reloaded"] = [dj.CHECKOUT_DB_URL, dj.CHECKOUT_NEW_FLOW]
        writer.write(version("postgres://broken/checkout", new_checkout="nope"))
        live.reload()
        result["rejected"] = [dj.CHECKOUT_DB_URL, dj.CHECKOUT_NEW_FLOW]
        """,
        settings=django_settings(
            UNTOUCHED="x",
            CANARYCONF={
                "SETTINGS": "shopconf.Settings",
                "MIRROR": {"db_url": "CHECKOUT_DB_URL", "new_checkout": "CHECKOUT_NEW_FLOW"},
            },
        ),
    )
    assert result == {
        "initial": ["postgres://canary-db/checkout", False, "x"],
        "watched": ["postgres://canary-db-2/checkout", True, "x"],
        "reloaded": ["postgres://canary-db-3/checkout", True],
        "rejected": ["postgres://canary-db-3/checkout", True],
    }


def test_mirror_of_an_unknown_field_is_improperly_configured(project: Path) -> None:
    proc = run_django(
        project,
        "django.setup()",
        settings=django_settings(
            CANARYCONF={"SETTINGS": "shopconf.Settings", "MIRROR": {"db_uri": "DB_URI"}}
        ),
        expect_ok=False,
    )
    assert proc.returncode != 0
    assert '"MIRROR" names field(s) db_uri that Settings does not have' in proc.stderr


def test_django_signal_fires_after_mirroring_outside_the_event_loop(project: Path) -> None:
    result = run_django(
        project,
        """
        django.setup()
        import logging
        from django.conf import settings as dj
        from django.db import connection
        from django.dispatch import receiver
        from canaryconf.django import get_live_settings
        from canaryconf.django.signals import settings_changed
        logging.getLogger("canaryconf").addHandler(logging.NullHandler())
        logging.getLogger("canaryconf").propagate = False
        live = get_live_settings()
        seen = []

        @receiver(settings_changed)
        def broken(sender, **kwargs):
            raise RuntimeError("a receiver that raises")

        @receiver(settings_changed)
        def record(sender, change, **kwargs):
            seen.append({
                "sender_is_live": sender is live,
                "fields": sorted(change.fields),
                "mirrored": dj.CHECKOUT_DB_URL,
                "in_loop": in_event_loop(),
                "orm": select_one(),  # the ORM works here
                "thread": threading.current_thread().name,
            })

        writer.write(version("postgres://canary-db-2/checkout"))
        wait_for(lambda: len(seen) == 1)
        live.stop()
        def request_thread():   # a gthread worker's request that reloads by hand
            connection.ensure_connection()
            writer.write(version("postgres://canary-db-2/checkout", role="stable"))
            live.reload()
            result["connection_kept"] = connection.connection is not None

        thread = threading.Thread(target=request_thread, name="request")
        thread.start()
        thread.join()
        writer.write(version("postgres://canary-db-2/checkout", role="stable"))
        live.reload()  # unchanged: no signal
        writer.write(version("postgres://broken/checkout", new_checkout="nope"))
        live.reload()  # rejected: no signal
        result["seen"] = seen
        """,
        settings=django_settings(
            CANARYCONF={"SETTINGS": "shopconf.Settings", "MIRROR": {"db_url": "CHECKOUT_DB_URL"}},
            DATABASES=file_database(project),
        ),
    )
    watched, reloaded = result["seen"]
    assert result["connection_kept"] is True  # the request's own connection stays open
    assert watched["thread"] == "canaryconf-watcher"  # outside the watcher's loop
    assert reloaded["thread"] == "request"
    for seen in (watched, reloaded):
        assert seen["sender_is_live"] is True
        assert seen["mirrored"] == "postgres://canary-db-2/checkout"
        assert seen["in_loop"] is False
        assert seen["orm"] == 1
    assert watched["fields"] == ["db_url"]
    assert reloaded["fields"] == ["rollout"]


def file_database(project: Path) -> dict[str, Any]:
    """A SQLite file database (closing an in-memory one does nothing)."""
    return {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(project / "db")}}


def test_django_receivers_run_off_the_loop_and_their_connections_are_closed(
    project: Path,
) -> None:
    """Wherever the reload came from (the watcher, ``areload()`` or ``reload()`` in async
    code), Django receivers run in a thread with no event loop, may use the ORM, and the
    connections they opened are closed once they have run."""
    result = run_django(
        project,
        """
        django.setup()
        import asyncio
        from django.db import connection
        from django.dispatch import receiver
        from canaryconf.django import get_live_settings
        from canaryconf.django.signals import settings_changed
        live = get_live_settings()
        seen, raw = [], []

        @receiver(settings_changed)
        def record(sender, change, **kwargs):
            seen.append([threading.current_thread().name, in_event_loop(), select_one()])
            raw.append(connection.connection)

        def closed(sqlite_connection):
            try:
                sqlite_connection.execute("select 1")
            except Exception as exc:  # sqlite3.ProgrammingError: closed database
                return type(exc).__name__
            return "open"

        writer.write(version("postgres://watched/checkout"))
        wait_for(lambda: len(seen) == 1)
        live.stop()

        async def async_view_areload():
            writer.write(version("postgres://areload/checkout"))
            await live.areload()
            return connection.connection is None  # nothing opened in the loop's thread

        async def async_view_reload():
            writer.write(version("postgres://reload/checkout"))
            live.reload()  # the sync API in async code: the signal follows in a task
            deadline = time.monotonic() + 2
            while len(seen) < 3 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            return connection.connection is None

        result["loop_thread_untouched"] = [
            asyncio.run(async_view_areload()), asyncio.run(async_view_reload())
        ]
        deadline = time.monotonic() + 2  # the watcher's receiver closes after it returned
        while any(closed(c) == "open" for c in raw) and time.monotonic() < deadline:
            time.sleep(0.005)
        result["seen"] = seen
        result["closed"] = [closed(c) for c in raw]
        """,
        settings=django_settings(DATABASES=file_database(project)),
    )
    watched, areloaded, reloaded = result["seen"]
    assert watched == ["canaryconf-watcher", False, 1]
    for thread, in_loop, orm in (areloaded, reloaded):
        assert (in_loop, orm) == (False, 1)
        assert thread not in ("MainThread", "canaryconf-watcher")
    assert result["loop_thread_untouched"] == [True, True]
    assert result["closed"] == ["ProgrammingError"] * 3


def test_overriding_canaryconf_warns_that_it_changes_nothing(project: Path) -> None:
    result = run_django(
        project,
        """
        django.setup()
        import logging
        from django.test import override_settings
        records = []
        handler = logging.Handler()
        handler.emit = records.append
        logging.getLogger("canaryconf").addHandler(handler)
        with override_settings(CANARYCONF={"SETTINGS": "elsewhere.Settings"}):
            pass
        with override_settings(OTHER=1):
            pass
        result["messages"] = [r.getMessage() for r in records]
        """,
    )
    assert len(result["messages"]) == 2  # entering and leaving the override
    assert "settings.CANARYCONF is read once" in result["messages"][0]


# -- runserver and its autoreloader ------------------------------------------------------------


def test_volume_files_never_restart_runserver(project: Path) -> None:
    """Even when a project makes Django's autoreloader watch a directory holding the
    volume, a volume change is a reload, never a restart."""
    result = run_django(
        project,
        """
        django.setup()
        from pathlib import Path
        from django.utils import autoreload
        reloads = []
        autoreload.trigger_reload = lambda filename: reloads.append(str(filename))
        reloader = autoreload.StatReloader()
        autoreload.autoreload_started.send(sender=reloader)
        volume = Path(os.environ["PODINFO_DIR"])
        reloader.watch_dir(volume.parent, "**/*")  # a project watching too much
        result["volume_watched"] = sorted(
            str(p) for p in reloader.watched_files() if str(p).startswith(str(volume)))
        reloader.notify_file_changed(volume / "annotations")
        reloader.notify_file_changed(volume / "..data" / "labels")
        reloader.notify_file_changed(volume.resolve() / os.readlink(volume / "..data") / "labels")
        reloader.notify_file_changed(volume.parent / "shopconf.py")
        result["reloads"] = reloads
        """,
        argv=("manage.py", "runserver"),
        env={"RUN_MAIN": "true"},
    )
    assert result["volume_watched"], "the test should make the reloader see the volume"
    assert result["reloads"] == [str(project / "shopconf.py")]


def test_runserver_watches_in_the_child_only_and_never_restarts_for_the_volume(
    podinfo: KubeletWriter,
) -> None:
    podinfo.write(pod_files(labels={"role": "canary"}))
    port = free_port()
    cmd = [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}"]
    env = {"PODINFO_DIR": str(podinfo.path), "RUN_MAIN": ""}
    with start_server(cmd, port=port, env=env, cwd=EXAMPLE, timeout=20) as server:
        url = f"{server.base_url}/checkout"
        first = poll_until(lambda: fetch_json(url), 5.0, ignore=(httpx.HTTPError,))
        child = first["pid"]
        assert server.children() == [child]
        assert inotify_fds(server.pid) == 0  # the autoreloader's parent does not watch
        assert inotify_fds(child) == 1  # its child watches the volume, once

        podinfo.write(
            pod_files(
                labels={"role": "stable"},
                annotations={f"{PREFIX}db-url": "postgres://stable-db-2/checkout"},
            )
        )
        body = poll_until(
            lambda: (b := fetch_json(url))["db_url"] == "postgres://stable-db-2/checkout" and b,
            2.0,
        )
        assert (body["role"], body["generation"]) == ("stable", podinfo.generation)
        time.sleep(1.5)  # longer than StatReloader's one-second tick: a restart would show
        assert fetch_json(url)["pid"] == child
        assert server.children() == [child]
        assert "changed, reloading" not in server.output()
        assert server.stop() == 0


# -- manage.py canaryconf show / validate ------------------------------------------------------


def manage(volume: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PODINFO_DIR": str(volume)}
    env.pop("RUN_MAIN", None)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        check=False,
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )


@pytest.fixture
def token() -> str:
    return f"tok-{uuid.uuid4().hex}"


def test_show_redacts_secrets(podinfo: KubeletWriter, token: str) -> None:
    podinfo.write(
        pod_files(
            labels={"role": "canary", "rollouts-pod-template-hash": "6d8f7c9b5"},
            annotations={
                f"{PREFIX}db-url": "postgres://canary-db/checkout",
                f"{PREFIX}payments-token": token,
            },
        )
    )
    shown = manage(podinfo.path, "canaryconf", "show")
    assert shown.returncode == 0, shown.stderr
    assert f"generation:   {podinfo.generation}" in shown.stdout
    assert "rollout_role: canary" in shown.stdout
    assert "last_error:   -" in shown.stdout
    assert 'db_url = "postgres://canary-db/checkout"' in shown.stdout
    assert f'payments_token = "{REDACTED}"' in shown.stdout

    as_json = manage(podinfo.path, "canaryconf", "show", "--json")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["generation"] == podinfo.generation
    assert report["settings"] == "checkout.config.CheckoutSettings"
    assert report["last_error"] is None
    assert report["values"]["payments_token"] == REDACTED
    assert report["values"]["rollout"] == {"role": "canary", "pod_template_hash": "6d8f7c9b5"}
    for proc in (shown, as_json):
        assert token not in proc.stdout + proc.stderr


def test_validate_accepts_a_good_volume(podinfo: KubeletWriter, token: str) -> None:
    podinfo.write(pod_files(annotations={f"{PREFIX}payments-token": token}))
    validated = manage(podinfo.path, "canaryconf", "validate")
    assert validated.returncode == 0, validated.stderr
    assert validated.stdout.strip() == "ok: checkout.config.CheckoutSettings validates"
    assert token not in validated.stdout + validated.stderr


def test_validate_and_show_report_a_bad_volume_in_one_line_per_field(
    podinfo: KubeletWriter, token: str
) -> None:
    podinfo.write(
        pod_files(
            annotations={
                f"{PREFIX}new-checkout": f"maybe-{token}",
                f"{PREFIX}payments-token": token,
            }
        )
    )
    for action in ("validate", "show"):
        proc = manage(podinfo.path, "canaryconf", action)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr
        assert token not in proc.stdout + proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("new_checkout (")
        assert f"line 1, key '{PREFIX}new-checkout'" in lines[0]
        assert "valid boolean" in lines[0]


def test_a_bad_volume_is_a_check_warning_that_stops_no_other_command(
    podinfo: KubeletWriter, token: str
) -> None:
    podinfo.write(pod_files(annotations={f"{PREFIX}new-checkout": f"maybe-{token}"}))
    check = manage(podinfo.path, "check")
    output = check.stdout + check.stderr
    assert check.returncode == 0, output
    assert "canaryconf.W001" in output
    assert "checkout.config.CheckoutSettings does not load from its volumes now" in output
    assert f"line 1, key '{PREFIX}new-checkout'" in output
    assert token not in output
    strict = manage(podinfo.path, "check", "--fail-level", "WARNING")
    assert strict.returncode == 1, strict.stdout + strict.stderr
    # Any other command runs: ready() reads no volume and starts no thread there.
    shell = manage(
        podinfo.path,
        "shell",
        "-c",
        "import threading; from canaryconf.django import _runtime;"
        " print(_runtime.runtime().live is None,"
        " [t.name for t in threading.enumerate() if t.name.startswith('canaryconf')])",
    )
    # (Django 5.2's shell first says how many objects it imported.)
    assert (shell.returncode, shell.stdout.strip().splitlines()[-1]) == (0, "True []")
