"""Secrets never leak, hostile volumes are refused.

A unique token is put in a Secret volume (a ``SecretStr`` field and a plain ``str`` field
read from it) and in a ``SecretStr`` annotation; the settings then go through rotations and
rejected versions (a validator whose message quotes the value, a malformed annotation
line, JSON that does not parse, a file over the size cap). Everything canaryconf can show
is collected: log records of every logger at DEBUG with their tracebacks, reprs, diffs,
exceptions with their ``__cause__``/``__context__`` chains, the CLI's output, the Flask
and FastAPI endpoints and the Prometheus exposition. None may hold a token, or a piece of
one.

Volumes: a symlink out of the volume is refused, and a file over the cap is refused
without being read (a sparse 1 GiB file, a file whose size lies, a device node).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import queue
import signal
import stat
import subprocess
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field, SecretStr, field_validator

import canaryconf.volume
from canaryconf import (
    CanaryConfError,
    CanaryConfigDict,
    CanarySettings,
    Change,
    DownwardAPIFormatError,
    LiveSettings,
    ReloadResult,
    SettingsValidationError,
    UnsafePathError,
    VolumeError,
    VolumeTooLargeError,
    annotation,
    configmap,
    live,
    read_volume,
    redacted_dump,
    secret,
    signals,
)
from canaryconf._status import error_text, reload_body, status_body
from canaryconf.testing import KubeletWriter, pod_files
from conftest import make_wait_until

PREFIX = "secure.example.com/"
SIZE_CAP = 64 * 1024
DEADLINE = 10.0

SETTINGS_MODULE = f'''
from pydantic import SecretStr, field_validator, model_validator
from canaryconf import CanaryConfigDict, CanarySettings, annotation, secret


class Settings(CanarySettings):
    model_config = CanaryConfigDict(
        downward_api_dir="/nonexistent/podinfo",
        annotation_prefix="{PREFIX}",
        max_file_bytes={SIZE_CAP},
    )

    color: str = annotation("color", default="blue")
    signing_key: SecretStr = annotation("signing-key", default=SecretStr(""))
    vault: dict[str, str] = annotation("vault", default_factory=dict, secret=True)
    api_key: SecretStr = secret("api-key", default=SecretStr(""))
    db_password: str = secret("db-password", default="")

    @field_validator("signing_key", "api_key")
    @classmethod
    def _not_revoked(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value().startswith("revoked-"):
            raise ValueError(f"key {{value.get_secret_value()}} is revoked")
        return value

    @model_validator(mode="after")
    def _password_is_not_the_key(self) -> "Settings":
        if self.db_password and self.db_password == self.api_key.get_secret_value():
            raise ValueError(f"password {{self.db_password}} reuses the api key")
        return self
'''


wait_until = make_wait_until(DEADLINE)


def new_token() -> str:
    return f"tok-{uuid.uuid4().hex}"


@dataclass
class Secrets:
    """The tokens of one test, and what must not contain any of them."""

    tokens: list[str] = field(default_factory=list)

    def new(self) -> str:
        token = new_token()
        self.tokens.append(token)
        return token

    def leaks(self, text: str) -> list[str]:
        """Each token, or a 12-character piece of one (a truncated repr), found in
        ``text``."""
        found = []
        for token in self.tokens:
            pieces = {token, token[4:16], token[-12:]}
            found += [piece for piece in pieces if piece in text]
        return found


@dataclass
class Pod:
    """A podinfo and a Secret volume, written the way the kubelet writes them."""

    podinfo: KubeletWriter
    secrets: KubeletWriter
    settings_file: Path

    def write(
        self,
        *,
        color: str = "red",
        signing_key: str = "",
        vault: str = "{}",
        api_key: str = "",
        db_password: str = "",
        raw_line: str | None = None,
        big: bool = False,
    ) -> None:
        files = pod_files(
            annotations={
                f"{PREFIX}color": color,
                f"{PREFIX}signing-key": signing_key,
                f"{PREFIX}vault": vault,
            }
        )
        if raw_line is not None:
            files["annotations"] = f"{files['annotations']}\n{raw_line}"
        self.podinfo.write(files)
        secret_files: dict[str, str | bytes] = {"api-key": api_key, "db-password": db_password}
        if big:
            secret_files["huge"] = "x" * (SIZE_CAP + 1)
        self.secrets.write(secret_files)

    def settings_class(self) -> type[CanarySettings]:
        namespace: dict[str, Any] = {}
        exec(compile(self.settings_file.read_text(), str(self.settings_file), "exec"), namespace)
        base: type[CanarySettings] = namespace["Settings"]
        config = CanaryConfigDict(
            **{
                **base.model_config,
                "downward_api_dir": str(self.podinfo.path),
                "secrets_dirs": [str(self.secrets.path)],
            }
        )
        return type("Settings", (base,), {"model_config": config, "__module__": __name__})


@pytest.fixture
def pod(tmp_path: Path) -> Pod:
    settings_file = tmp_path / "secure_settings.py"
    settings_file.write_text(SETTINGS_MODULE)
    return Pod(
        KubeletWriter(tmp_path / "podinfo", seed=1),
        KubeletWriter(tmp_path / "secrets", seed=2),
        settings_file,
    )


def exception_texts(error: BaseException | None) -> list[str]:
    """Everything an exception can show: str, repr, args, attributes and the traceback
    (``format_exception`` follows ``__cause__`` and ``__context__``), for it and for each
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
        problems = getattr(exc, "problems", ())
        texts += [repr(p) for p in problems]
        stack += [exc.__cause__, exc.__context__]
    return texts


def log_texts(records: list[logging.LogRecord]) -> list[str]:
    texts = []
    for record in records:
        texts.append(record.getMessage())
        texts.append(repr(record.args))
        if record.exc_info and record.exc_info[1] is not None:
            texts += exception_texts(record.exc_info[1])
        texts += [record.exc_text or "", record.stack_info or ""]
    return texts


def pydantic_errors_in(error: BaseException | None) -> list[str]:
    """Names of pydantic ValidationErrors chained to ``error`` (they carry inputs)."""
    names, stack, seen = [], [error], set()
    while stack:
        exc = stack.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        if type(exc).__module__.startswith("pydantic"):
            names.append(type(exc).__name__)
        stack += [exc.__cause__, exc.__context__]
    return names


# -- the core: logs, reprs, diffs, exceptions -------------------------------------------


def test_secrets_never_appear_in_logs_reprs_diffs_or_exceptions(
    pod: Pod, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, every level
    logging.getLogger("canaryconf").setLevel(logging.DEBUG)
    secrets = Secrets()
    pod.write(
        signing_key=secrets.new(),
        vault=json.dumps({"token": secrets.new()}),
        api_key=secrets.new(),
        db_password=secrets.new(),
    )
    cls = pod.settings_class()
    settings = live(cls)
    changes: list[Change[Any]] = []
    errors: list[Exception] = []
    results: list[ReloadResult[Any]] = []
    settings.on_change(changes.append)
    settings.on_reload_failed(errors.append)

    def on_reloaded(_sender: Any, result: ReloadResult[Any], **_: Any) -> None:
        results.append(result)

    signals.reloaded.connect(on_reloaded, sender=settings)
    shown: list[str] = [repr(settings), str(settings.current), repr(settings.current)]
    try:
        good = dict(
            signing_key=secrets.new(),
            vault=json.dumps({"token": secrets.new()}),
            api_key=secrets.new(),
            db_password=secrets.new(),
        )
        versions: list[dict[str, Any]] = [
            {**good, "color": "green"},  # a rotation of every secret
            {**good, "signing_key": f"revoked-{secrets.new()}"},  # validator quotes it
            {**good, "api_key": f"revoked-{secrets.new()}"},  # ...from a Secret file
            {**good, "db_password": good["api_key"]},  # the model validator quotes it
            {**good, "vault": '{"token": "' + secrets.new()},  # JSON that does not parse
            {**good, "raw_line": f'{PREFIX}signing-key="{secrets.new()}\\q"'},  # bad escape
            {**good, "raw_line": f"{PREFIX}vault={secrets.new()}"},  # unquoted
            {**good, "big": True, "api_key": secrets.new()},  # over the size cap
            {**good, "color": "yellow"},
        ]
        for version in versions:
            pod.write(**version)
            result = settings.reload()
            shown += [repr(result), repr(result.change), repr(settings), str(settings.current)]
            shown += exception_texts(result.error) + exception_texts(settings.last_error)
            assert pydantic_errors_in(result.error) == []
        with settings:  # and once more through the watcher thread
            pod.write(**{**good, "signing_key": secrets.new(), "color": "white"})
            assert wait_until(lambda: settings.color == "white")
            shown.append(repr(settings))
        if hasattr(settings, "pin"):
            shown.append(repr(settings.pin()))
        # Loading a class whose first version is invalid raises at once.
        pod.write(**{**good, "signing_key": f"revoked-{secrets.new()}"})
        with pytest.raises(CanaryConfError) as raised:
            live(cls)
        shown += exception_texts(raised.value)
    finally:
        signals.reloaded.disconnect(on_reloaded, sender=settings)

    assert [r.status for r in results[:9]] == ["applied"] + ["failed"] * 7 + ["applied"]
    assert len(errors) == 7
    assert settings.current.signing_key.get_secret_value() in secrets.tokens, "still usable"
    shown += [repr(c) for c in changes] + [repr(c.diff()) for c in changes]
    shown += [repr(redacted_dump(c.new)) for c in changes]
    shown += [repr(r) for r in results] + [repr(settings.current.origins)]
    for error in errors:
        shown += exception_texts(error)
    shown += log_texts(caplog.records)
    shown.append(caplog.text)
    everything = "\n".join(shown)
    assert "signing_key" in everything and "api_key" in everything, "failures were reported"
    assert secrets.leaks(everything) == []


def test_a_validator_error_of_another_type_does_not_leak(
    pod: Pod, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = new_token()
    tenants = {"key-of-tenant-a": "a"}

    class Strict(CanarySettings):
        model_config = CanaryConfigDict(
            downward_api_dir=str(pod.podinfo.path), annotation_prefix=PREFIX
        )
        signing_key: SecretStr = annotation("signing-key", default=SecretStr(""))

        @field_validator("signing_key")
        @classmethod
        def _known_tenant(cls, value: SecretStr) -> SecretStr:
            if value.get_secret_value():
                tenants[value.get_secret_value()]  # KeyError(<the key>) when unknown
            return value

    pod.write(signing_key="key-of-tenant-a")
    settings = live(Strict)
    pod.write(signing_key=token)
    result = settings.reload()

    assert result.failed
    assert settings.signing_key.get_secret_value() == "key-of-tenant-a"
    texts = exception_texts(result.error) + log_texts(caplog.records)
    assert Secrets([token]).leaks("\n".join(texts)) == []
    # It names the user's function that raised, never canaryconf's or pydantic's frames.
    assert isinstance(result.error, SettingsValidationError)
    [problem] = result.error.problems
    assert problem.reason.startswith("a validator raised KeyError in _known_tenant (")
    assert "test_security.py:" in problem.reason


# -- the CLI ----------------------------------------------------------------------------


def cli(*args: str | Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "canaryconf", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
        check=False,
    )


class Lines:
    """The output lines of a process, read by a thread (select() cannot see what a text
    stream has already buffered)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        self.queue: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.seen: list[str] = []
        stdout = process.stdout
        threading.Thread(
            target=lambda: [self.queue.put(line) for line in stdout], daemon=True
        ).start()

    def until(self, needle: str) -> None:
        """Wait for a line holding ``needle`` (fails after DEADLINE)."""
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            try:
                line = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.seen.append(line)
            if needle in line:
                return
        raise AssertionError(f"{needle!r} never came; got {''.join(self.seen)!r}")


@pytest.mark.slow
def test_secrets_never_appear_in_cli_output(pod: Pod, tmp_path: Path) -> None:
    secrets = Secrets()
    pod.write(
        signing_key=secrets.new(),
        vault=json.dumps({"token": secrets.new()}),
        api_key=secrets.new(),
        db_password=secrets.new(),
    )
    spec = f"{pod.settings_file}:Settings"
    volumes = [pod.podinfo.path, "--settings", spec, "--secrets-dir", pod.secrets.path]
    other = KubeletWriter(tmp_path / "podinfo-b")
    other.write(
        pod_files(
            annotations={f"{PREFIX}signing-key": secrets.new(), f"{PREFIX}vault": '{"a": "b"}'}
        )
    )
    other_secrets = KubeletWriter(tmp_path / "secrets-b")
    other_secrets.write({"api-key": secrets.new(), "db-password": secrets.new()})
    plain = KubeletWriter(tmp_path / "podinfo-plain")
    plain.write(pod_files(labels={"app": "shop"}))
    env_file, json_file = tmp_path / "out.env", tmp_path / "out.json"
    runs = {
        "show": cli("show", *volumes),
        "show json": cli("show", *volumes, "--format", "json"),
        "show env": cli("show", *volumes, "--format", "env"),
        # Without --settings only Secret volumes are known to be secret.
        "show raw": cli("show", plain.path, "--secrets-dir", pod.secrets.path),
        "validate": cli("validate", *volumes),
        "diff": cli("diff", pod.podinfo.path, other.path, "--settings", spec),
        "diff json": cli(
            "diff", pod.podinfo.path, other.path, "--settings", spec, "--format", "json"
        ),
        "diff secrets": cli("diff", pod.secrets.path, other_secrets.path, "--secret"),
        "export env": cli("export", *volumes, "--format", "env"),
        "export json": cli("export", *volumes, "--format", "json"),
        "export env -o": cli("export", *volumes, "-o", env_file),
        "export json -o": cli("export", *volumes, "--format", "json", "-o", json_file),
    }
    # A rejected version: the validator's message quotes the value.
    pod.write(signing_key=f"revoked-{secrets.new()}", api_key=f"revoked-{secrets.new()}")
    runs["validate rejected"] = cli("validate", *volumes)
    runs["show rejected"] = cli("show", *volumes)
    runs["export rejected"] = cli("export", *volumes)

    pod.write(signing_key=secrets.new(), api_key=secrets.new())  # a good version to start
    watch = subprocess.Popen(
        [sys.executable, "-m", "canaryconf", "watch", *map(str, volumes)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines = Lines(watch)
    try:
        lines.until("watching")
        pod.write(signing_key=secrets.new(), api_key=secrets.new(), color="green")  # rotation
        lines.until("api_key: changed")
        pod.write(signing_key=f"revoked-{secrets.new()}", color="green")
        lines.until("rejected")
        lines.until("signing_key")
    finally:
        watch.send_signal(signal.SIGTERM)
        _out, err = watch.communicate(timeout=DEADLINE)
    printed = "".join(lines.seen)
    runs["watch"] = subprocess.CompletedProcess(watch.args, watch.returncode, printed, err)

    assert runs["validate"].returncode == 0, runs["validate"].stderr
    assert runs["validate rejected"].returncode == 1
    assert runs["watch"].returncode == 0, runs["watch"].stderr
    assert "**********" in runs["show"].stdout
    for name, run in runs.items():
        assert secrets.leaks(run.stdout + run.stderr) == [], name
    for written in (env_file, json_file):
        assert secrets.leaks(written.read_text()) == [], written.name


# -- adapters and metrics ---------------------------------------------------------------


@pytest.fixture
def secret_live(pod: Pod) -> tuple[LiveSettings[Any], Secrets]:
    secrets = Secrets()
    pod.write(
        signing_key=secrets.new(),
        vault=json.dumps({"token": secrets.new()}),
        api_key=secrets.new(),
        db_password=secrets.new(),
    )
    return live(pod.settings_class()), secrets


def rotate(pod: Pod, secrets: Secrets) -> None:
    """A new version: every secret rotated."""
    pod.write(signing_key=secrets.new(), api_key=secrets.new(), db_password=secrets.new())


def reject(pod: Pod, secrets: Secrets) -> None:
    """A new version the validator rejects, quoting the value in its message."""
    pod.write(signing_key=f"revoked-{secrets.new()}", api_key=secrets.new())


def assert_endpoints_keep_secrets(client: Any, pod: Pod, secrets: Secrets) -> None:
    """None of what the ``/-/canaryconf`` endpoints answer ``client`` (a Flask or FastAPI
    test client) before and after a rotation and a rejected version holds a secret; the
    reload of the rejected version fails with 422, naming the field."""
    texts = [client.get("/-/canaryconf").text]
    rotate(pod, secrets)
    texts += [client.post("/-/canaryconf/reload").text, client.get("/-/canaryconf").text]
    reject(pod, secrets)
    rejected = client.post("/-/canaryconf/reload")
    texts += [rejected.text, client.get("/-/canaryconf").text]

    assert rejected.status_code == 422
    assert "signing_key" in rejected.text
    for text in texts:
        assert secrets.leaks(text) == []


def test_secrets_never_appear_in_the_flask_endpoints(
    pod: Pod, secret_live: tuple[LiveSettings[Any], Secrets]
) -> None:
    from flask import Flask

    from canaryconf.flask import CanaryConf

    settings, secrets = secret_live
    app = Flask(__name__)
    CanaryConf(app, settings, endpoints=True, watch=False)
    client = app.test_client()
    assert_endpoints_keep_secrets(client, pod, secrets)


def test_secrets_never_appear_in_the_fastapi_endpoints(
    pod: Pod, secret_live: tuple[LiveSettings[Any], Secrets]
) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from canaryconf.fastapi import canaryconf_router

    settings, secrets = secret_live
    app = FastAPI()
    app.include_router(canaryconf_router(settings))
    client = TestClient(app)
    assert_endpoints_keep_secrets(client, pod, secrets)


def test_secrets_never_appear_in_metrics(
    pod: Pod, secret_live: tuple[LiveSettings[Any], Secrets]
) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from canaryconf.metrics import instrument

    settings, secrets = secret_live
    registry = CollectorRegistry()
    instrumentation = instrument(settings, registry)

    @settings.on_change
    def handler_that_fails(change: Change[Any]) -> None:
        raise RuntimeError("boom")

    try:
        texts = [generate_latest(registry).decode()]
        for step in (rotate, reject, rotate):
            step(pod, secrets)
            settings.reload()
            texts.append(generate_latest(registry).decode())
    finally:
        instrumentation.close()
    assert 'canaryconf_reloads_total{result="failed"} 1.0' in texts[-1]
    assert "handler_that_fails" in texts[-1]
    for text in texts:
        assert secrets.leaks(text) == []


# -- hostile volumes --------------------------------------------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file outside every volume, holding a secret of the host."""
    directory = tmp_path / "host"
    directory.mkdir()
    target = directory / "shadow"
    target.write_text(f"root-{new_token()}")
    return target


def _symlink_in_generation(writer: KubeletWriter, name: str, target: str) -> None:
    """A symlink placed inside the current generation, as a compromised writer could."""
    generation = writer.path / str(writer.generation)
    os.symlink(target, generation / name)
    link = writer.path / name
    if not os.path.lexists(link):
        os.symlink(f"..data/{name}", link)


@pytest.mark.parametrize(
    "attack",
    [
        "absolute symlink in the generation",
        "relative symlink in the generation",
        "symlinked directory in the generation",
        "..data pointing outside",
        "generation symlinked outside",
        "symlink in a plain directory",
    ],
)
def test_a_symlink_out_of_the_volume_is_refused(
    tmp_path: Path, outside: Path, attack: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    writer = KubeletWriter(tmp_path / "secrets", seed=4)
    writer.write({"api-key": "good-key"})

    class Keyed(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=None, secrets_dirs=[str(writer.path)])
        api_key: SecretStr = secret("api-key")
        leaked: str = secret("leak", default="")

    settings = live(Keyed)
    if attack == "absolute symlink in the generation":
        _symlink_in_generation(writer, "leak", str(outside))
    elif attack == "relative symlink in the generation":
        _symlink_in_generation(writer, "leak", f"../../{outside.parent.name}/{outside.name}")
    elif attack == "symlinked directory in the generation":
        _symlink_in_generation(writer, "nested", str(outside.parent))
    elif attack == "..data pointing outside":
        os.symlink(str(outside.parent), writer.path / "..data_tmp")
        os.rename(writer.path / "..data_tmp", writer.path / "..data")
    elif attack == "generation symlinked outside":
        # A name that looks like a generation, but a symlink to a directory of the host.
        (outside.parent / "api-key").write_text(outside.read_text())
        os.symlink(str(outside.parent), writer.path / "..2026_01_01_00_00_00.1")
        os.symlink("..2026_01_01_00_00_00.1", writer.path / "..data_tmp")
        os.rename(writer.path / "..data_tmp", writer.path / "..data")
    else:
        plain = tmp_path / "plain"
        plain.mkdir()
        (plain / "api-key").write_text("plain-key")
        (plain / "leak").symlink_to(outside)
        with pytest.raises(UnsafePathError) as refused:
            read_volume(plain)
        assert outside.read_text() not in "".join(exception_texts(refused.value))
        return

    with pytest.raises(UnsafePathError) as refused:
        read_volume(writer.path)
    result = settings.reload()
    assert result.failed
    assert isinstance(result.error, UnsafePathError)
    assert settings.api_key.get_secret_value() == "good-key", "the last good one stays"
    assert settings.leaked == ""
    texts = exception_texts(refused.value) + exception_texts(result.error)
    texts += [*log_texts(caplog.records), repr(settings)]
    assert outside.read_text() not in "\n".join(texts)


@pytest.fixture
def counted_reads(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Bytes ``os.read`` returned to canaryconf.volume, by file descriptor path."""
    counts: dict[str, int] = {}
    real_read = os.read

    def read(fd: int, size: int) -> bytes:
        data = real_read(fd, size)
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            path = str(fd)
        counts[path] = counts.get(path, 0) + len(data)
        return data

    monkeypatch.setattr(canaryconf.volume.os, "read", read)
    return counts


def test_a_huge_sparse_file_is_refused_without_reading_it(
    tmp_path: Path, counted_reads: dict[str, int]
) -> None:
    writer = KubeletWriter(tmp_path / "secrets")
    writer.write({"api-key": "k"})
    huge = writer.path / str(writer.generation) / "huge"
    with open(huge, "wb") as handle:
        handle.truncate(1 << 30)  # 1 GiB, no block on disk
    (writer.path / "huge").symlink_to("..data/huge")

    with pytest.raises(VolumeTooLargeError, match="over"):
        read_volume(writer.path, max_file_bytes=SIZE_CAP)
    assert counted_reads.get(str(huge), 0) == 0
    assert sum(counted_reads.values()) <= 1


def test_a_file_that_lies_about_its_size_is_read_no_further_than_the_cap(
    tmp_path: Path, counted_reads: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that grows after fstat (simulated: fstat says 10 bytes, 8 MiB are there)."""
    writer = KubeletWriter(tmp_path / "secrets")
    writer.write({"api-key": "k", "grows": "x" * (8 << 20)})
    grows = os.path.realpath(writer.path / "grows")
    real_fstat = os.fstat

    def fstat(fd: int) -> Any:
        st = real_fstat(fd)
        if os.readlink(f"/proc/self/fd/{fd}") == grows:
            values = list(st)
            values[stat.ST_SIZE] = 10
            return os.stat_result(values)
        return st

    monkeypatch.setattr(canaryconf.volume.os, "fstat", fstat)
    with pytest.raises(VolumeTooLargeError):
        read_volume(writer.path, max_file_bytes=SIZE_CAP)
    assert 0 < counted_reads[grows] <= SIZE_CAP + 1


def test_a_device_node_is_refused_without_reading_it(
    tmp_path: Path, counted_reads: dict[str, int]
) -> None:
    writer = KubeletWriter(tmp_path / "secrets")
    writer.write({"api-key": "k"})
    zero = writer.path / str(writer.generation) / "zero"
    try:
        os.mknod(zero, 0o644 | stat.S_IFCHR, os.makedev(1, 5))  # like /dev/zero: endless
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EACCES):
            pytest.skip("mknod is not permitted here")
        raise
    (writer.path / "zero").symlink_to("..data/zero")
    with pytest.raises(VolumeError, match="not a regular file"):
        read_volume(writer.path)
    assert counted_reads.get(str(zero), 0) == 0


# -- errors: locations, pathological JSON, canaryconf's own errors ----------------------


class _Card(BaseModel):
    kind: Literal["card"]


class _Wire(BaseModel):
    kind: Literal["wire"]


def test_error_locations_and_messages_below_a_secret_field_are_withheld(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = Secrets()
    vol = KubeletWriter(tmp_path / "secrets")
    good = {
        "api-tokens": '{"t": ["read"]}',
        "payment": '{"kind": "card"}',
        "tenant": str(uuid.uuid4()),
    }
    vol.write(good)

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=None, secrets_dirs=[str(vol.path)])
        api_tokens: dict[str, list[str]] = secret("api-tokens")
        payment: Annotated[_Card | _Wire, Field(discriminator="kind")] = secret("payment")
        tenant: uuid.UUID = secret("tenant")
        workers: dict[str, int] = {"a": 1}

    settings = live(Settings)
    vol.write(
        {
            # a token as a dict key, with a value of the wrong type
            "api-tokens": json.dumps({secrets.new(): [1]}),
            # a token as a tagged union's tag: pydantic's message quotes it
            "payment": json.dumps({"kind": secrets.new()}),
            # a token in a UUID: pydantic's message quotes the bad character
            "tenant": f"{secrets.new()}-zz",
        }
    )
    with pytest.raises(SettingsValidationError) as raised:
        Settings()
    result = settings.reload()

    assert result.failed and settings.last_error is result.error
    assert {p.field for p in raised.value.problems} == {"api_tokens", "payment", "tenant"}
    texts = exception_texts(raised.value) + exception_texts(result.error)
    texts += [*log_texts(caplog.records), caplog.text]
    texts += [json.dumps(reload_body(settings, result)), str(error_text(settings.last_error))]
    everything = "\n".join(texts)
    assert str(vol.path / "api-tokens") in everything, "the file is named"
    assert secrets.leaks(everything) == []


def test_error_locations_below_a_plain_field_are_kept(tmp_path: Path) -> None:
    vol = KubeletWriter(tmp_path / "config")
    vol.write({"workers": '{"web": "many"}'})

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=None, configmap_dirs=[str(vol.path)])
        workers: dict[str, int] = configmap("workers")
        api_key: SecretStr = SecretStr("")

    with pytest.raises(SettingsValidationError) as raised:
        Settings()
    [problem] = raised.value.problems
    assert problem.field == "workers.web"
    assert "valid integer" in problem.reason


@pytest.mark.parametrize(
    ("annotation_type", "value", "reason"),
    [
        (list[Any], "[" * 100_000, "nested too deeply"),
        (list[int], "[" + "7" * 5000 + "]", "too many digits"),
    ],
)
def test_pathological_json_is_a_format_error_naming_file_line_and_key(
    tmp_path: Path, annotation_type: Any, value: str, reason: str
) -> None:
    podinfo = KubeletWriter(tmp_path / "podinfo")
    podinfo.write(pod_files(annotations={f"{PREFIX}color": "red", f"{PREFIX}odd": value}))

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(
            downward_api_dir=str(podinfo.path), annotation_prefix=PREFIX
        )
        odd: annotation_type = annotation("odd", default_factory=list)  # type: ignore[valid-type]
        signing_key: SecretStr = SecretStr("")

    with pytest.raises(SettingsValidationError) as raised:
        Settings()
    [problem] = raised.value.problems
    assert problem.field == "odd"
    assert (problem.source, problem.key) == (str(podinfo.path / "annotations"), f"{PREFIX}odd")
    lines = (podinfo.path / "annotations").read_text().split("\n")
    assert problem.line == 1 + next(
        i for i, ln in enumerate(lines) if ln.startswith(f"{PREFIX}odd=")
    )
    assert reason in problem.reason
    module = tmp_path / "odd_settings.py"
    module.write_text(
        "import typing\nfrom typing import Any\n"
        "from canaryconf import CanarySettings, CanaryConfigDict, annotation\n"
        "class Settings(CanarySettings):\n"
        f"    model_config = CanaryConfigDict(annotation_prefix={PREFIX!r})\n"
        f"    odd: {annotation_type!r} = annotation('odd', default_factory=list)\n"
    )
    for command in ("validate", "show"):
        run = cli(command, podinfo.path, "--settings", f"{module}:Settings")
        assert run.returncode == 1, run.stderr
        assert "Traceback" not in run.stdout + run.stderr
        assert f"key '{PREFIX}odd'" in run.stdout + run.stderr


def test_canaryconf_errors_pass_through_when_the_class_has_secrets(pod: Pod) -> None:
    pod.write(raw_line="not a key=value line")
    with pytest.raises(DownwardAPIFormatError) as raised:
        pod.settings_class()()
    text = str(raised.value)
    assert str(pod.podinfo.path / "annotations") in text and "line" in text
    assert "withheld" not in text and "_parse" not in text and ".py:" not in text


def test_show_never_dumps_a_malformed_map_file(pod: Pod) -> None:
    secrets = Secrets()
    pod.write(signing_key=secrets.new(), raw_line=f"broken {secrets.new()}")
    volumes = [pod.podinfo.path, "--settings", f"{pod.settings_file}:Settings"]
    for fmt in ("table", "json", "env"):
        run = cli("show", *volumes, "--format", fmt)
        assert run.returncode == 1, run.stderr
        assert secrets.leaks(run.stdout + run.stderr) == [], fmt
        if fmt != "env":
            assert str(pod.podinfo.path / "annotations") in run.stdout, fmt
    run = cli("show", pod.podinfo.path)
    assert secrets.leaks(run.stdout + run.stderr) == []
    lines = (pod.podinfo.path / "annotations").read_text().split("\n")
    assert f"annotations, line {lines.index(f'broken {secrets.tokens[1]}') + 1}:" in run.stdout


def test_endpoint_digest_does_not_hash_secret_bytes(
    secret_live: tuple[LiveSettings[Any], Secrets], pod: Pod
) -> None:
    settings, secrets = secret_live
    before = status_body(settings, settings.pin(), watching=False)["digest"]
    assert before != settings.digest
    rotate(pod, secrets)
    result = settings.reload()
    assert result.applied
    body = reload_body(settings, result)
    after = status_body(settings, settings.pin(), watching=False)["digest"]
    assert body["digest"] == after == before, "a rotation of secrets alone does not move it"
    assert settings.digest not in json.dumps(body)


def test_show_prints_no_digest_of_a_volume_holding_a_secret(pod: Pod) -> None:
    # A 6-digit secret annotation: a digest over the annotations file would let anyone who
    # sees the output try the million candidates offline.
    pod.write(signing_key="493027")
    volumes = [pod.podinfo.path, "--settings", f"{pod.settings_file}:Settings"]
    table = cli("show", *volumes)
    as_json = json.loads(cli("show", *volumes, "--format", "json").stdout)
    digest = read_volume(pod.podinfo.path).digest
    assert ", digest " not in table.stdout.splitlines()[0]
    assert "digest" not in as_json["downward_api"]
    assert digest[:12] not in table.stdout + json.dumps(as_json)
    plain = cli("show", pod.podinfo.path)  # without settings nothing is known secret
    assert f"digest {digest[:12]}" in plain.stdout
