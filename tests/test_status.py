"""canaryconf._status: the operator endpoints of every adapter answer with one definition
of the status and reload bodies (Django's are checked in test_django: it runs in a
subprocess of its own)."""

from __future__ import annotations

import doctest
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("flask")
pytest.importorskip("fastapi")

from fastapi import FastAPI
from fastapi.testclient import TestClient
from flask import Flask
from pydantic import SecretStr

import canaryconf._status
from canaryconf import (
    CanaryConfigDict,
    CanarySettings,
    DownwardAPIFormatError,
    RolloutInfo,
    annotation,
    live,
)
from canaryconf.fastapi import canaryconf_router
from canaryconf.flask import CanaryConf
from canaryconf.settings import REDACTED, redacted_digest
from canaryconf.testing import KubeletWriter, pod_files

PREFIX = "example.com/"


def _version(writer: KubeletWriter, db_url: str, *, new_checkout: str = "false") -> None:
    writer.write(
        pod_files(
            labels={"role": "canary"},
            annotations={
                f"{PREFIX}db-url": db_url,
                f"{PREFIX}new-checkout": new_checkout,
                f"{PREFIX}api-token": "tok-status-5ecr3t",
            },
        )
    )


def _settings_class(volume: Path) -> type[CanarySettings]:
    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=str(volume), annotation_prefix=PREFIX)
        db_url: str = annotation("db-url", default="postgres://stable-db/app")
        new_checkout: bool = annotation("new-checkout", default=False)
        api_token: SecretStr = annotation("api-token", default=SecretStr(""))
        rollout: RolloutInfo = RolloutInfo()

    return Settings


def test_doctests() -> None:
    result = doctest.testmod(canaryconf._status, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_error_text_shows_canaryconf_errors_and_withholds_others() -> None:
    error_text = canaryconf._status.error_text
    assert error_text(None) is None
    malformed = DownwardAPIFormatError("missing '='", source="/podinfo/annotations", line=3)
    assert (
        error_text(malformed) == "DownwardAPIFormatError: /podinfo/annotations, line 3: missing '='"
    )
    # Any other error (a hook's, a settings class's) can quote a value: only its type shows.
    assert error_text(KeyError("tok-1234")) == "KeyError (message withheld: it may quote a value)"


def test_flask_and_fastapi_endpoints_answer_alike(podinfo: KubeletWriter) -> None:
    _version(podinfo, "postgres://canary-db/app")
    settings = live(_settings_class(podinfo.path))
    flask_app = Flask(__name__)
    CanaryConf(flask_app, settings, endpoints=True, watch=False)
    flask_client = flask_app.test_client()
    fastapi_app = FastAPI()
    fastapi_app.include_router(canaryconf_router(settings))
    fastapi_client = TestClient(fastapi_app)

    def both(method: str, path: str) -> tuple[int, Any]:
        """Ask both apps; check that they answer alike, uncached; return the answer."""
        from_flask = flask_client.open(path, method=method)
        from_fastapi = fastapi_client.request(method, path)
        for response in (from_flask, from_fastapi):
            assert response.headers["Cache-Control"] == "no-store"
        answer = (from_flask.status_code, from_flask.get_json())
        assert (from_fastapi.status_code, from_fastapi.json()) == answer
        return answer

    code, status = both("GET", "/-/canaryconf")
    assert code == 200
    assert status["settings"]["api_token"] == REDACTED
    assert (status["generation"], status["digest"]) == (
        podinfo.generation,
        redacted_digest(settings.current),
    )
    assert (status["rollout_role"], status["last_error"], status["watching"]) == (
        "canary",
        None,
        False,
    )
    assert set(status) == {
        "settings",
        "generation",
        "digest",
        "rollout_role",
        "last_error",
        "watching",
        "pid",
    }

    good = podinfo.generation
    _version(podinfo, "postgres://broken/app", new_checkout="maybe")
    # Flask's reload rejects the new version, FastAPI's finds the same rejected content:
    # both answer 422 with the same error.
    code, failed = both("POST", "/-/canaryconf/reload")
    assert code == 422
    assert failed["status"] == "failed"
    assert failed["generation"] == good
    assert failed["error"] == failed["last_error"]
    assert failed["error"].startswith("SettingsValidationError: ")
    assert "maybe" not in failed["error"]

    _version(podinfo, "postgres://canary-db-2/app")
    flask_reload = flask_client.post("/-/canaryconf/reload")
    assert (flask_reload.status_code, flask_reload.json["status"]) == (200, "applied")
    assert flask_reload.json["changed"] == ["db_url"]
    assert flask_reload.json["restart_required"] == []
    assert flask_reload.json["last_error"] is None
    code, unchanged = both("POST", "/-/canaryconf/reload")
    assert (code, unchanged["status"], unchanged["changed"]) == (200, "unchanged", [])
    assert set(unchanged) == {
        "status",
        "generation",
        "digest",
        "changed",
        "restart_required",
        "error",
        "last_error",
        "pid",
    }
