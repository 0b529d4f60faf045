"""No secret leaves through any door.

Unique tokens are planted in every secret source: a Secret key file read into a
``SecretStr`` field and into a plain ``str`` field declared secret, a JSON Secret file (as
dict keys and as values), a secret annotation, and a secret annotation holding JSON (dict
keys and list values). hypothesis chooses where each token sits; every failure mode is
then driven as a rotation from a good version to a bad one: a malformed annotations file,
values of the wrong type, a custom validator raising each kind of exception with the value
in its message, a file over the size cap (what cannot be read), pathological JSON. Every
channel is searched: log records of every logger at DEBUG with their tracebacks, ``repr``
and ``str`` of each public object, exceptions with their ``__cause__``/``__context__``
chains, ``Change.diff()`` and ``Change.lines()``, the endpoint bodies of Flask, FastAPI and
Django, the metrics exposition, and the output of every CLI command in every format.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from canaryconf import Change, LiveSettings, ReloadResult, live, redacted_dump
from canaryconf._status import error_text, reload_body, status_body
from canaryconf.settings import CanarySettings
from canaryconf.testing import KubeletWriter, pod_files

PREFIX = "vault.example.com/"
SIZE_CAP = 64 * 1024
DEADLINE = 30.0

#: The settings class, as a module: imported here and by the CLI and Django subprocesses.
#: A value starting with ``raise-<Type>`` makes the validator raise that type, quoting it.
SETTINGS_MODULE = f'''
import os
from pydantic import SecretStr, field_validator
from pydantic_core import PydanticCustomError
from canaryconf import CanaryConfigDict, CanarySettings, annotation, secret


class Settings(CanarySettings):
    model_config = CanaryConfigDict(
        downward_api_dir=os.environ.get("CHANNELS_PODINFO", "/nonexistent/podinfo"),
        secrets_dirs=[os.environ.get("CHANNELS_SECRETS", "/nonexistent/secrets")],
        annotation_prefix="{PREFIX}",
        max_file_bytes={SIZE_CAP},
    )

    color: str = annotation("color", default="blue")
    signing_key: SecretStr = annotation("signing-key", default=SecretStr(""))
    vault: dict[str, list[str]] = annotation("vault", default_factory=dict, secret=True)
    api_key: SecretStr = secret("api-key", default=SecretStr(""))
    db_password: str = secret("db-password", default="")
    tokens: dict[str, str] = secret("tokens", default_factory=dict)

    @field_validator("api_key", "signing_key")
    @classmethod
    def _check(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value()
        if text.startswith("raise-"):
            kind = text.split("-")[1]
            if kind == "PydanticCustomError":
                raise PydanticCustomError("bad_key", "bad key {{key}}", {{"key": text}})
            raise {{
                "ValueError": ValueError,
                "KeyError": KeyError,
                "TypeError": TypeError,
                "AssertionError": AssertionError,
                "RuntimeError": RuntimeError,
                "LookupError": LookupError,
            }}[kind](f"refused {{text}}")
        return value
'''

FAILURES = (
    "malformed annotations",
    "unterminated annotation",
    "wrong type in a secret annotation",
    "wrong type in a Secret file",
    "validator",
    "file over the cap",
    "deeply nested JSON",
    "huge integer in JSON",
    "JSON that does not parse",
)
EXCEPTIONS = (
    "ValueError",
    "KeyError",
    "TypeError",
    "AssertionError",
    "RuntimeError",
    "LookupError",
    "PydanticCustomError",
)


def new_token() -> str:
    return f"tok{uuid.uuid4().hex}"


@dataclass
class Tokens:
    """The tokens of one example, and what must not contain any of them."""

    all: list[str] = field(default_factory=list)
    #: Those in Secret volumes: secret even to a command given no settings class.
    in_secret_volumes: list[str] = field(default_factory=list)

    def new(self) -> str:
        token = new_token()
        self.all.append(token)
        return token

    def leaks(self, text: str, *, only_secret_volumes: bool = False) -> list[str]:
        """Each token, or a 12-character piece of one (a truncated repr), in ``text``."""
        found = []
        for token in self.in_secret_volumes if only_secret_volumes else self.all:
            found += [p for p in {token, token[3:15], token[-12:]} if p in text]
        return found


@dataclass(frozen=True)
class Placement:
    """Where a version's tokens sit: the whole value or inside it; JSON keys or values."""

    embedded: bool
    vault_in: str  # "key", "value" or "both"
    tokens_in: str  # "key" or "value"


placements = st.builds(
    Placement,
    embedded=st.booleans(),
    vault_in=st.sampled_from(("key", "value", "both")),
    tokens_in=st.sampled_from(("key", "value")),
)


class Volumes:
    """A podinfo and a Secret volume written the way the kubelet writes them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.podinfo = KubeletWriter(root / "podinfo", seed=11)
        self.secrets = KubeletWriter(root / "secrets", seed=12)
        self.module = root / "channels_settings.py"
        self.module.write_text(SETTINGS_MODULE)

    @property
    def env(self) -> dict[str, str]:
        return {
            "CHANNELS_PODINFO": str(self.podinfo.path),
            "CHANNELS_SECRETS": str(self.secrets.path),
        }

    def settings_class(self) -> type[CanarySettings]:
        os.environ.update(self.env)
        namespace: dict[str, Any] = {"__name__": "channels_settings"}
        code = compile(self.module.read_text(), str(self.module), "exec", dont_inherit=True)
        exec(code, namespace)
        cls: type[CanarySettings] = namespace["Settings"]
        return cls

    def write(
        self, tokens: Tokens, where: Placement, failure: str | None, exception: str = ""
    ) -> None:
        """A version with fresh tokens everywhere; broken as ``failure`` says."""

        def value() -> str:
            token = tokens.new()
            return f"x-{token}-y" if where.embedded else token

        vault_key = value() if where.vault_in in ("key", "both") else "k"
        vault_value: Any = [value()] if where.vault_in in ("value", "both") else ["v"]
        tokens_map = {value(): "v"} if where.tokens_in == "key" else {"k": value()}
        annotations = {
            f"{PREFIX}color": "red",
            f"{PREFIX}signing-key": value(),
            f"{PREFIX}vault": json.dumps({vault_key: vault_value}),
        }
        secret_files: dict[str, str | bytes] = {
            "api-key": value(),
            "db-password": value(),
            "tokens": json.dumps(tokens_map),
        }
        raw_line = None
        if failure == "malformed annotations":
            raw_line = f"{value()} no equals sign"
        elif failure == "unterminated annotation":
            raw_line = f'{PREFIX}color="{value()}'
        elif failure == "wrong type in a secret annotation":
            annotations[f"{PREFIX}vault"] = json.dumps({value(): [1, {"a": value()}]})
        elif failure == "wrong type in a Secret file":
            secret_files["tokens"] = json.dumps({value(): [value()]})
        elif failure == "validator":
            annotations[f"{PREFIX}signing-key"] = f"raise-{exception}-{value()}"
            secret_files["api-key"] = f"raise-{exception}-{value()}"
        elif failure == "file over the cap":
            secret_files["api-key"] = value() * (SIZE_CAP // 30)
        elif failure == "deeply nested JSON":
            annotations[f"{PREFIX}vault"] = '{"' + value() + '": ' + "[" * 100_000
        elif failure == "huge integer in JSON":
            annotations[f"{PREFIX}vault"] = '{"' + value() + '": [' + "7" * 5000 + "]}"
        elif failure == "JSON that does not parse":
            annotations[f"{PREFIX}vault"] = '{"' + value() + '": [' + value()
        tokens.in_secret_volumes += [
            t for t in tokens.all if any(t in v for v in map(str, secret_files.values()))
        ]
        files = pod_files(annotations=annotations)
        if raw_line is not None:
            files["annotations"] = f"{files['annotations']}\n{raw_line}"
        self.podinfo.write(files)
        self.secrets.write(secret_files)


def exception_texts(error: BaseException | None) -> list[str]:
    """str, repr, args, attributes and the formatted traceback of ``error`` and of every
    exception it chains to."""
    texts: list[str] = []
    seen: set[int] = set()
    stack = [error]
    while stack:
        exc = stack.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        texts += [str(exc), repr(exc), repr(exc.args), repr(getattr(exc, "__dict__", {}))]
        texts += traceback.format_exception(exc)
        texts += [repr(p) for p in getattr(exc, "problems", ())]
        stack += [exc.__cause__, exc.__context__]
    return texts


class Records(logging.Handler):
    """Every log record of every logger, at DEBUG."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def texts(self) -> list[str]:
        formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        texts = []
        for record in self.records:
            texts += [formatter.format(record), repr(record.args), record.stack_info or ""]
            if record.exc_info and record.exc_info[1] is not None:
                texts += exception_texts(record.exc_info[1])
        return texts


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(old_level)


def endpoint_texts(settings: LiveSettings[Any]) -> tuple[list[str], Any]:
    """GET and POST the operator endpoints of a Flask and a FastAPI app over ``settings``;
    the bodies, and the FastAPI reload response."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from flask import Flask

    from canaryconf.fastapi import canaryconf_router
    from canaryconf.flask import CanaryConf

    flask_app = Flask(__name__)
    CanaryConf(flask_app, settings, endpoints=True, watch=False)
    fastapi_app = FastAPI()
    fastapi_app.include_router(canaryconf_router(settings))
    flask_client, fastapi_client = flask_app.test_client(), TestClient(fastapi_app)
    texts = [
        flask_client.post("/-/canaryconf/reload").get_data(as_text=True),
        flask_client.get("/-/canaryconf").get_data(as_text=True),
    ]
    reloaded = fastapi_client.post("/-/canaryconf/reload")
    texts += [reloaded.text, fastapi_client.get("/-/canaryconf").text]
    return texts, reloaded


def metrics_text(settings: LiveSettings[Any]) -> str:
    from prometheus_client import CollectorRegistry, generate_latest

    from canaryconf.metrics import instrument

    registry = CollectorRegistry()
    instrumentation = instrument(settings, registry)
    try:
        settings.reload()
        return generate_latest(registry).decode()
    finally:
        instrumentation.close()


@hypothesis_settings(
    max_examples=18,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    where=placements,
    failure=st.sampled_from(FAILURES),
    exception=st.sampled_from(EXCEPTIONS),
)
def test_no_token_in_any_in_process_channel(
    records: Records, where: Placement, failure: str, exception: str
) -> None:
    records.records.clear()
    tokens = Tokens()
    with tempfile.TemporaryDirectory() as root:
        volumes = Volumes(Path(root))
        volumes.write(tokens, where, None)
        settings = live(volumes.settings_class())
        changes: list[Change[Any]] = []
        settings.on_change(changes.append)

        volumes.write(tokens, where, None)  # a rotation: every secret changes
        rotated = settings.reload()
        volumes.write(tokens, where, failure, exception)  # then a version that is refused
        refused = settings.reload()
        direct: BaseException | None = None
        try:
            settings.settings_class()
        except Exception as exc:
            direct = exc
        bodies, reloaded = endpoint_texts(settings)
        exposition = metrics_text(settings)

        assert rotated.applied, rotated.error
        assert refused.failed, f"{failure} was not refused"
        assert reloaded.status_code == 422
        assert settings.current.color == "red", "the last good settings stay"
        shown = [*exception_texts(refused.error), *exception_texts(direct)]
        shown += [*exception_texts(settings.last_error), str(error_text(settings.last_error))]
        for result in (rotated, refused):
            shown += [repr(result), str(result), json.dumps(reload_body(settings, result))]
        for change in changes:
            shown += [repr(change), str(change), repr(change.diff()), *change.lines()]
            shown += [repr(redacted_dump(change.new)), repr(change.new), str(change.new)]
        shown += [repr(settings), str(settings), repr(settings.current), str(settings.current)]
        shown += [repr(settings.pin()), repr(settings.current.origins)]
        shown += [json.dumps(status_body(settings, settings.pin(), watching=False))]
        shown += [*bodies, exposition, *records.texts()]
        assert changes and isinstance(rotated, ReloadResult)
        assert tokens.leaks("\n".join(shown)) == []


# -- the command line -------------------------------------------------------------------


def cli(volumes: Volumes, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "canaryconf", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        env={**os.environ, **volumes.env, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
        cwd=volumes.root,
        check=False,
    )


def follow(volumes: Volumes, args: list[str], change: Any, wait_for: str) -> str:
    """Run a following command (watch, sidecar) until it prints ``wait_for`` after
    ``change()`` is made; its whole output."""
    process = subprocess.Popen(
        [sys.executable, "-m", "canaryconf", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **volumes.env, "PYTHONUNBUFFERED": "1"},
        cwd=volumes.root,
    )
    seen: list[str] = []
    try:
        assert process.stdout is not None
        lines = iter(process.stdout)
        for line in lines:
            seen.append(line)
            if "watching" in line:
                break
        change()
        for line in lines:
            seen.append(line)
            if wait_for in line:
                break
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=DEADLINE)
        seen.append(rest)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=DEADLINE)
    output = "".join(seen)
    assert wait_for in output, output
    return output


@pytest.mark.parametrize("failure", FAILURES)
def test_no_token_in_any_command_output(tmp_path: Path, failure: str) -> None:
    tokens = Tokens()
    where = Placement(embedded=False, vault_in="both", tokens_in="key")
    volumes = Volumes(tmp_path)
    volumes.write(tokens, where, None)
    other = Volumes(tmp_path / "other")
    other.write(tokens, where, failure, "KeyError")
    spec = f"{volumes.module}:Settings"
    outputs: dict[str, str] = {}

    def keep(name: str, run: subprocess.CompletedProcess[str]) -> None:
        outputs[name] = run.stdout + run.stderr

    keep("diff", cli(volumes, "diff", volumes.podinfo.path, other.podinfo.path, "--settings", spec))
    keep(
        "diff json",
        cli(
            volumes,
            "diff",
            volumes.podinfo.path,
            other.podinfo.path,
            "--format",
            "json",
            "--settings",
            spec,
        ),
    )
    keep(
        "diff secrets",
        cli(volumes, "diff", volumes.secrets.path, other.secrets.path, "--secret"),
    )
    for stage in ("good", "bad"):
        if stage == "bad":
            volumes.write(tokens, where, failure, "KeyError")
        for fmt in ("table", "json", "env"):
            keep(f"show {fmt} {stage}", cli(volumes, "show", "--settings", spec, "--format", fmt))
            keep(
                f"show raw {fmt} {stage}",
                cli(
                    volumes,
                    "show",
                    volumes.podinfo.path,
                    "--secrets-dir",
                    volumes.secrets.path,
                    "--format",
                    fmt,
                ),
            )
        for fmt in ("text", "json"):
            keep(
                f"validate {fmt} {stage}",
                cli(volumes, "validate", "--settings", spec, "--format", fmt),
            )
        for fmt in ("env", "json"):
            keep(
                f"export {fmt} {stage}", cli(volumes, "export", "--settings", spec, "--format", fmt)
            )

    volumes.write(tokens, where, None)
    for fmt in ("text", "json"):
        outputs[f"watch {fmt}"] = follow(
            volumes,
            ["watch", "--settings", spec, "--format", fmt],
            lambda: volumes.write(tokens, where, failure, "KeyError"),
            "rejected",
        )
        volumes.write(tokens, where, None)
    outputs["sidecar"] = follow(
        volumes,
        ["sidecar", "--settings", spec, "--pid", str(os.getpid()), "--signal", "CONT"],
        lambda: volumes.write(tokens, where, failure, "KeyError"),
        "rejected",
    )

    assert "**********" in outputs["show table good"]
    assert "invalid" in outputs["validate text bad"] or "error" in outputs["validate text bad"]
    for name, text in outputs.items():
        # Without a settings class only Secret volumes are known to be secret (a documented
        # limit: an annotation is secret because a settings class says so).
        raw = "raw" in name or name == "diff secrets"
        assert tokens.leaks(text, only_secret_volumes=raw) == [], f"{name}: {text}"


# -- Django --------------------------------------------------------------------------------

DJANGO_SCRIPT = """
import json, os, sys
from django.conf import settings
settings.configure(
    INSTALLED_APPS=["canaryconf.django"],
    MIDDLEWARE=["canaryconf.django.middleware.CanaryConfMiddleware"],
    ROOT_URLCONF="channels_urls",
    ALLOWED_HOSTS=["testserver"],
    DATABASES={},
    CANARYCONF={"SETTINGS": "channels_settings.Settings", "WATCH": False},
    LOGGING_CONFIG=None,
)
import django
django.setup()
from django.test import Client
client = Client()
bodies = [client.get("/-/canaryconf/").content.decode()]
print("ready", flush=True)
sys.stdin.readline()  # the test writes the refused version, then a line
reloaded = client.post("/-/canaryconf/reload")
bodies += [reloaded.content.decode(), client.get("/-/canaryconf/").content.decode()]
print(json.dumps({"status": reloaded.status_code, "bodies": bodies}), flush=True)
"""


def test_no_token_in_the_django_endpoints(tmp_path: Path) -> None:
    pytest.importorskip("django")
    tokens = Tokens()
    where = Placement(embedded=True, vault_in="key", tokens_in="key")
    volumes = Volumes(tmp_path)
    volumes.write(tokens, where, None)
    (tmp_path / "channels_urls.py").write_text(
        textwrap.dedent(
            """
            from django.urls import include, path
            urlpatterns = [path("-/canaryconf/", include("canaryconf.django.urls"))]
            """
        )
    )
    script = tmp_path / "django_channels.py"
    script.write_text(DJANGO_SCRIPT)
    for failure in ("wrong type in a Secret file", "validator", "malformed annotations"):
        process = subprocess.Popen(
            [sys.executable, str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env={**os.environ, **volumes.env, "PYTHONPATH": str(tmp_path)},
        )
        assert process.stdout is not None
        ready = process.stdout.readline()  # bounded: the process exits on any failure
        assert ready == "ready\n", ready + process.communicate(timeout=DEADLINE)[1]
        volumes.write(tokens, where, failure, "RuntimeError")
        out, err = process.communicate("go\n", timeout=DEADLINE)
        assert process.returncode == 0, err
        answer = json.loads(out.splitlines()[-1])
        assert answer["status"] == 422, answer
        assert tokens.leaks(out + err) == [], failure
        volumes.write(tokens, where, None)
