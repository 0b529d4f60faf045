"""The ``canaryconf`` command, run as a subprocess against real volumes written the way the
kubelet writes them, a real HTTP receiver and a real process to signal."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import pytest

from canaryconf import parse_map, read_volume
from canaryconf.testing import File, KubeletWriter, format_map, pod_files

#: A value that must never be printed: each test puts it in a Secret (or secret field).
TOKEN = "tok-5ecr3t-9f1c7a"
PREFIX = "canary.example.com/"
COMMANDS = ["show", "validate", "diff", "watch", "export", "sidecar", "simulate", "demo"]

SETTINGS_MODULE = """
from pydantic import SecretStr
from canaryconf import (
    CanaryConfigDict, CanarySettings, RolloutInfo, annotation, label, resource, secret,
)


class Settings(CanarySettings):
    model_config = CanaryConfigDict(
        downward_api_dir="/nonexistent/podinfo",
        annotation_prefix="canary.example.com/",
        env_prefix="APP_",
    )

    db_url: str = annotation("db-url", default="postgres://stable-db/app")
    ratio: float = annotation("ratio", default=0.0, ge=0, le=1)
    flags: dict[str, bool] = annotation("flags", default_factory=dict)
    api_token: str = annotation("api-token", default="", secret=True)
    tier: str = label("tier", default="web")
    cpu: int = resource("limits.cpu", default=1)
    rollout: RolloutInfo = RolloutInfo()
    db_password: SecretStr = secret("db-password", default=SecretStr(""))
    workers: int = annotation("workers", default=4, restart_required=True)
"""


# -- helpers ------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["COLUMNS"] = "120"
    return env


#: How the tests start the command: as ``python -m canaryconf`` does.
CANARYCONF = (sys.executable, "-m", "canaryconf")


def run(
    *args: str | Path,
    timeout: float = 30,
    cwd: Path | None = None,
    command: Sequence[str] = CANARYCONF,
) -> subprocess.CompletedProcess[str]:
    """``canaryconf ARGS`` in a subprocess; killed if it runs over ``timeout``."""
    return subprocess.run(
        [*command, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
        cwd=cwd,
        check=False,
    )


class Background:
    """A long-running ``canaryconf`` subprocess whose output is read line by line."""

    def __init__(
        self, *args: str | Path, stream: str = "stdout", command: Sequence[str] = CANARYCONF
    ) -> None:
        self.proc = subprocess.Popen(
            [*command, *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        self.lines: list[str] = []
        self.other: list[str] = []
        self._cond = threading.Condition()
        main, other = (
            (self.proc.stdout, self.proc.stderr)
            if stream == "stdout"
            else (self.proc.stderr, self.proc.stdout)
        )
        self._threads = [
            threading.Thread(target=self._pump, args=(main, self.lines), daemon=True),
            threading.Thread(target=self._pump, args=(other, self.other), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _pump(self, pipe: IO[str] | None, into: list[str]) -> None:
        assert pipe is not None
        for line in pipe:
            with self._cond:
                into.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait_for(self, text: str, timeout: float = 15, count: int = 1) -> None:
        """Wait until ``count`` lines contain ``text``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while sum(text in line for line in self.lines) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self._pending()):
                    raise AssertionError(
                        f"{text!r} not seen {count}x; output:\n"
                        + "\n".join(self.lines + self.other)
                    )
                self._cond.wait(min(remaining, 0.1))

    def _pending(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def finish(self, timeout: float = 15) -> int:
        code = self.proc.wait(timeout=timeout)
        for thread in self._threads:
            thread.join(timeout=5)
        return code

    @property
    def output(self) -> str:
        return "\n".join(self.lines + self.other)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@contextlib.contextmanager
def background(
    *args: str | Path, stream: str = "stdout", command: Sequence[str] = CANARYCONF
) -> Iterator[Background]:
    proc = Background(*args, stream=stream, command=command)
    try:
        yield proc
    finally:
        proc.kill()


@pytest.fixture
def settings_file(tmp_path: Path) -> str:
    path = tmp_path / "appsettings.py"
    path.write_text(SETTINGS_MODULE)
    return f"{path}:Settings"


@pytest.fixture
def volumes(tmp_path: Path) -> tuple[KubeletWriter, KubeletWriter]:
    """A podinfo volume with canary metadata and a Secret volume holding :data:`TOKEN`."""
    podinfo = KubeletWriter(tmp_path / "podinfo", seed=1)
    secrets = KubeletWriter(tmp_path / "secrets", seed=2)
    podinfo.write(canary_pod())
    secrets.write({"db-password": TOKEN})
    return podinfo, secrets


def canary_pod(**annotations: str) -> dict[str, str | bytes]:
    return pod_files(
        labels={"app": "shop", "role": "canary", "rollouts-pod-template-hash": "7f9c4d2e1"},
        annotations={
            f"{PREFIX}db-url": "postgres://canary-db/app",
            f"{PREFIX}flags": '{"new_checkout": true}',
            f"{PREFIX}api-token": TOKEN + "-annotation",
            **annotations,
        },
        resources={"limits.cpu": 2},
    )


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert TOKEN not in text


# -- help, usage, exit codes ----------------------------------------------------------------


def test_every_command_has_help_and_the_exit_codes_are_listed_once() -> None:
    # One exit-code block, in the top-level help; each command points at it (a deliberate
    # change: each subcommand used to repeat the block).
    from canaryconf.cli import build_parser

    parser = build_parser()
    subparsers = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert sorted(subparsers) == sorted(COMMANDS)
    for command, subparser in subparsers.items():
        text = subparser.format_help()
        assert f"usage: canaryconf {command}" in text
        assert "exit codes: see 'canaryconf --help'" in text
        assert "3  a volume directory" not in text
    result = run("sidecar", "--help")  # and as a user runs it
    assert result.returncode == 0, result.stderr
    assert "--webhook-retries N" in result.stdout
    assert "--webhook-timeout SECONDS" in result.stdout
    assert "3  a volume directory is missing or unreadable" in run("--help").stdout


def test_format_help_says_what_each_format_is() -> None:
    for command in ("show", "validate", "diff", "watch", "export"):
        text = " ".join(run(command, "--help").stdout.split())
        assert "--format" in text and "output format (default" in text, command


def test_metavars_are_the_same_in_every_command() -> None:
    from canaryconf.cli import build_parser

    parser = build_parser()
    subparsers = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    metavars: dict[str, set[str]] = {}
    for subparser in subparsers.values():
        for action in subparser._actions:
            for option in action.option_strings:
                if action.metavar is not None:
                    metavars.setdefault(option, set()).add(str(action.metavar))
            if any(
                o.endswith(("-seconds", "-timeout", "-interval", "-backoff"))
                for o in action.option_strings
            ):
                assert action.metavar == "SECONDS", action.option_strings
    assert {option: names for option, names in metavars.items() if len(names) > 1} == {}


@pytest.mark.parametrize("layout", ["empty", "wrong files"])
def test_validate_says_when_no_label_or_annotation_file_is_found(
    tmp_path: Path, settings_file: str, layout: str
) -> None:
    directory = tmp_path / "not-podinfo"
    directory.mkdir()
    if layout == "wrong files":
        (directory / "app.conf").write_text("a=1")
    result = run("validate", directory)
    assert result.returncode == 1
    assert "no label or annotation file found" in result.stdout
    as_json = json.loads(run("validate", directory, "--format", "json").stdout)
    assert as_json["valid"] is False
    with_settings = run("validate", directory, "--settings", settings_file)
    assert with_settings.returncode == 0, with_settings.stdout
    assert "warning: " in with_settings.stderr
    assert "no label or annotation file found" in with_settings.stderr


def test_top_level_help_lists_the_commands() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout
    assert "2  usage error" in result.stdout


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run().returncode == 2
    assert run("show", "--bogus").returncode == 2
    result = run("show")
    assert result.returncode == 2
    assert "give a volume directory" in result.stderr
    result = run("validate", tmp_path, "--settings", "no_such_module_xyz:Settings")
    assert result.returncode == 2
    assert "No module named" in result.stderr
    assert run("sidecar", tmp_path).returncode == 2  # nothing to notify


@pytest.mark.parametrize(
    "args",
    [
        ["show", "{missing}"],
        ["validate", "{missing}"],
        ["export", "{missing}"],
        ["diff", "{missing}", "{missing}"],
        ["watch", "{missing}", "--timeout", "1"],
        ["sidecar", "{missing}", "--pid", "1"],
    ],
)
def test_missing_volume_exits_3(tmp_path: Path, args: list[str]) -> None:
    missing = str(tmp_path / "nope")
    result = run(*[a.format(missing=missing) for a in args])
    assert result.returncode == 3, result.stderr
    assert "no such directory" in result.stderr
    assert "Traceback" not in result.stderr


# -- show -----------------------------------------------------------------------------------


def test_show_without_settings_parses_labels_and_annotations(
    volumes: tuple[KubeletWriter, KubeletWriter], tmp_path: Path
) -> None:
    podinfo, _ = volumes
    config = KubeletWriter(tmp_path / "config")
    config.write({"log-level": "debug"})
    result = run(
        "show", podinfo.path, "--secrets-dir", tmp_path / "secrets", "--configmap-dir", config.path
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"configmap volume {config.path}" in out  # the kind, as the registry names it
    assert "log-level  debug" in out
    assert f"generation {podinfo.generation}" in out
    assert "role                        canary" in out
    assert "postgres://canary-db/app" in out
    assert "rollout: role=canary pod-template-hash=7f9c4d2e1" in out
    assert "limits.cpu  2" in out
    assert "db-password  **********" in out
    assert_no_secret(out.replace(TOKEN + "-annotation", ""))  # no settings: not known secret


def test_show_with_settings_types_validates_and_redacts(
    volumes: tuple[KubeletWriter, KubeletWriter], tmp_path: Path, settings_file: str
) -> None:
    podinfo, _ = volumes
    args = (
        "show",
        podinfo.path,
        "--settings",
        settings_file,
        "--secrets-dir",
        tmp_path / "secrets",
    )
    table = run(*args)
    assert table.returncode == 0, table.stderr
    assert "settings Settings: valid" in table.stdout
    assert "api_token    **********" in table.stdout
    assert f"{PREFIX}api-token  **********" in table.stdout  # its annotation, too
    assert_no_secret(table.stdout, table.stderr)

    as_json = run(*args, "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    assert_no_secret(as_json.stdout)
    data = json.loads(as_json.stdout)
    values = data["settings"]["values"]
    assert values["db_url"] == "postgres://canary-db/app"
    assert values["flags"] == {"new_checkout": True}
    assert values["cpu"] == 2
    assert values["rollout"] == {"role": "canary", "pod_template_hash": "7f9c4d2e1"}
    assert values["db_password"] == values["api_token"] == "**********"
    assert data["settings"]["origins"]["db_url"]["key"] == f"{PREFIX}db-url"
    assert data["downward_api"]["labels"]["role"] == "canary"
    [secret_volume] = data["volumes"]
    assert secret_volume["kind"] == "secret"
    assert secret_volume["files"] == {"db-password": "**********"}
    assert "digest" not in secret_volume  # a digest of a weak secret can be brute-forced

    env = run(*args, "--format", "env")
    assert env.returncode == 0
    assert "export APP_DB_URL=postgres://canary-db/app" in env.stdout
    assert_no_secret(env.stdout)


def test_show_reports_invalid_settings_with_exit_1(tmp_path: Path, settings_file: str) -> None:
    writer = KubeletWriter(tmp_path / "podinfo")
    writer.write(canary_pod(**{f"{PREFIX}ratio": "1.5"}))
    result = run("show", writer.path, "--settings", settings_file)
    assert result.returncode == 1
    assert "settings Settings: INVALID" in result.stdout
    assert f"key '{PREFIX}ratio'" in result.stdout


# -- validate -------------------------------------------------------------------------------


def test_validate_accepts_a_valid_volume(
    volumes: tuple[KubeletWriter, KubeletWriter], settings_file: str
) -> None:
    podinfo, _ = volumes
    result = run("validate", podinfo.path, "--settings", settings_file)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"valid: Settings from {podinfo.path}")


def test_validate_names_each_failing_field_without_values(
    tmp_path: Path, settings_file: str
) -> None:
    writer = KubeletWriter(tmp_path / "podinfo")
    writer.write(
        canary_pod(**{f"{PREFIX}ratio": TOKEN, f"{PREFIX}workers": "many", f"{PREFIX}flags": "{"})
    )
    result = run("validate", writer.path, "--settings", settings_file)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0] == f"invalid: Settings from {writer.path}: 3 problems"
    problems = lines[1:]
    assert len(problems) == 3
    annotations = f"{writer.path}/annotations"
    for field, key in (("ratio", "ratio"), ("workers", "workers"), ("flags", "flags")):
        (line,) = [p for p in problems if p.strip().startswith(f"{field} ")]
        assert annotations in line
        assert f"key '{PREFIX}{key}'" in line
        assert "line " in line
    assert "invalid JSON" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert_no_secret(result.stdout, result.stderr)

    as_json = json.loads(
        run("validate", writer.path, "--settings", settings_file, "--format", "json").stdout
    )
    assert as_json["valid"] is False
    assert {p["field"] for p in as_json["problems"]} == {"ratio", "workers", "flags"}


def test_validate_reports_a_malformed_annotation_file(tmp_path: Path, settings_file: str) -> None:
    writer = KubeletWriter(tmp_path / "podinfo")
    writer.write({"labels": 'role="canary"', "annotations": f'a="1"\n{PREFIX}db-url=unquoted'})
    for extra in ([], ["--settings", settings_file]):
        result = run("validate", writer.path, *extra)
        assert result.returncode == 1
        assert f"{writer.path}/annotations, line 2, key '{PREFIX}db-url'" in result.stdout
        assert "unquoted" not in result.stdout
        assert "Traceback" not in result.stderr


# -- diff -----------------------------------------------------------------------------------


def test_diff_key_by_key_with_typed_settings(tmp_path: Path, settings_file: str) -> None:
    a = KubeletWriter(tmp_path / "a")
    b = KubeletWriter(tmp_path / "b")
    a.write(canary_pod())
    promoted = canary_pod()
    labels = parse_map(promoted["labels"])
    labels["role"] = "stable"
    annotations = parse_map(promoted["annotations"])
    del annotations[f"{PREFIX}db-url"]
    annotations[f"{PREFIX}api-token"] = TOKEN + "-rotated"
    annotations[f"{PREFIX}workers"] = "8"
    b.write(pod_files(labels=labels, annotations=annotations, resources={"limits.cpu": 2}))

    result = run("diff", a.path, b.path, "--settings", settings_file)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "~ role: canary -> stable" in out
    assert f"- {PREFIX}db-url: postgres://canary-db/app" in out
    assert f"~ {PREFIX}api-token: changed (**********)" in out
    assert "~ db_url: postgres://canary-db/app -> postgres://stable-db/app" in out
    assert "~ api_token: changed (**********)" in out
    assert "~ workers: 4 -> 8 (needs a restart: not applied live)" in out
    assert_no_secret(out, result.stderr)

    assert run("diff", a.path, b.path, "--exit-code").returncode == 1
    same = run("diff", a.path, a.path, "--exit-code")
    assert same.returncode == 0
    assert "no differences" in same.stdout


def test_diff_of_secret_volumes_hides_values(tmp_path: Path) -> None:
    a = KubeletWriter(tmp_path / "a")
    b = KubeletWriter(tmp_path / "b")
    a.write({"db-password": TOKEN, "user": "app"})
    b.write({"db-password": TOKEN + "-new", "user": "app", "added": TOKEN})
    result = run("diff", a.path, b.path, "--secret", "--format", "json")
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert data["sections"]["files"] == [
        "+ added: **********",
        "~ db-password: changed (**********)",
    ]
    assert_no_secret(result.stdout)


def test_diff_says_when_the_new_version_would_be_rejected(
    tmp_path: Path, settings_file: str
) -> None:
    a = KubeletWriter(tmp_path / "a")
    b = KubeletWriter(tmp_path / "b")
    a.write(canary_pod())
    b.write(canary_pod(**{f"{PREFIX}ratio": "2"}))
    result = run("diff", a.path, b.path, "--settings", settings_file)
    assert result.returncode == 1
    assert "B does not validate: a running app would keep A's settings" in result.stdout
    assert f"key '{PREFIX}ratio'" in result.stdout


# -- export ---------------------------------------------------------------------------------


def test_export_env_round_trips_through_a_shell(
    volumes: tuple[KubeletWriter, KubeletWriter], tmp_path: Path, settings_file: str
) -> None:
    podinfo, _ = volumes
    tricky = 'it\'s "quoted" $HOME `date` \\ \n second line; rm -rf /'
    podinfo.write(canary_pod(**{f"{PREFIX}db-url": tricky}))
    out = tmp_path / "config" / "app.env"
    out.parent.mkdir()
    result = run(
        "export",
        podinfo.path,
        "--settings",
        settings_file,
        "--secrets-dir",
        tmp_path / "secrets",
        "-o",
        out,
    )
    assert result.returncode == 0, result.stderr
    assert "left out secret value(s)" in result.stderr
    assert "APP_DB_PASSWORD" in result.stderr
    text = out.read_text()
    assert_no_secret(text, result.stdout, result.stderr)
    assert oct(out.stat().st_mode & 0o777) == oct(0o644)
    assert [p.name for p in out.parent.iterdir()] == ["app.env"]  # no temporary file left
    shell = subprocess.run(
        ["sh", "-c", f'. "{out}" && printf "%s" "$APP_DB_URL"'],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    assert shell.stdout == tricky
    env = subprocess.run(
        ["sh", "-c", f'. "{out}" && env'], capture_output=True, text=True, timeout=10, check=True
    )
    assert 'APP_FLAGS={"new_checkout":true}' in env.stdout
    assert "APP_ROLLOUT=" in env.stdout

    secret = run(
        "export",
        podinfo.path,
        "--settings",
        settings_file,
        "--secrets-dir",
        tmp_path / "secrets",
        "--include-secrets",
        "-o",
        out,
    )
    assert secret.returncode == 0
    assert f"export APP_DB_PASSWORD={TOKEN}" in out.read_text()
    assert oct(out.stat().st_mode & 0o777) == oct(0o600)


def test_export_json_and_raw_volume(
    volumes: tuple[KubeletWriter, KubeletWriter], tmp_path: Path, settings_file: str
) -> None:
    podinfo, _ = volumes
    result = run("export", podinfo.path, "--settings", settings_file, "--format", "json")
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert data["db_url"] == "postgres://canary-db/app"
    assert "api_token" not in data
    raw = run("export", podinfo.path)
    assert raw.returncode == 0
    assert "export LABEL_ROLE=canary" in raw.stdout
    assert "export ANNOTATION_CANARY_EXAMPLE_COM_DB_URL=postgres://canary-db/app" in raw.stdout
    assert "export LIMITS_CPU=2" in raw.stdout


def test_export_keeps_a_plain_value_that_looks_redacted(tmp_path: Path, settings_file: str) -> None:
    # Redaction is a type, not a text: a plain setting whose value is ten asterisks is
    # neither dropped nor called secret; the secret one still is.
    writer = KubeletWriter(tmp_path / "podinfo")
    writer.write(canary_pod(**{f"{PREFIX}db-url": "**********", f"{PREFIX}api-token": TOKEN}))
    result = run("export", writer.path, "--settings", settings_file)
    assert result.returncode == 0, result.stderr
    assert "export APP_DB_URL='**********'" in result.stdout
    assert "APP_API_TOKEN" not in result.stdout
    assert "left out secret value(s)" in result.stderr and "APP_API_TOKEN" in result.stderr
    assert "APP_DB_URL" not in result.stderr
    assert TOKEN not in result.stdout + result.stderr


def test_export_refuses_an_invalid_volume(tmp_path: Path, settings_file: str) -> None:
    writer = KubeletWriter(tmp_path / "podinfo")
    writer.write(canary_pod(**{f"{PREFIX}ratio": "7"}))
    out = tmp_path / "app.env"
    result = run("export", writer.path, "--settings", settings_file, "-o", out)
    assert result.returncode == 1
    assert not out.exists()
    assert f"key '{PREFIX}ratio'" in result.stderr


# -- watch ----------------------------------------------------------------------------------


def test_watch_prints_each_change_with_a_timestamp(
    volumes: tuple[KubeletWriter, KubeletWriter], tmp_path: Path, settings_file: str
) -> None:
    podinfo, secrets = volumes
    with background(
        "watch",
        podinfo.path,
        "--settings",
        settings_file,
        "--secrets-dir",
        secrets.path,
        "--count",
        "4",
        "--timeout",
        "30",
    ) as watch:
        watch.wait_for("watching")
        podinfo.write(canary_pod(**{f"{PREFIX}db-url": "postgres://other/app"}))
        watch.wait_for("applied")
        podinfo.write(canary_pod(**{f"{PREFIX}ratio": TOKEN}))
        watch.wait_for("rejected")
        podinfo.write(
            canary_pod(**{f"{PREFIX}db-url": "postgres://other/app", f"{PREFIX}workers": "9"})
        )
        watch.wait_for("restart")
        secrets.write({"db-password": TOKEN + "-rotated"})
        assert watch.finish() == 0
    out = "\n".join(watch.lines)
    assert "~ db_url: postgres://canary-db/app -> postgres://other/app" in out
    assert "the last good settings stay" in out
    assert f"key '{PREFIX}ratio'" in out
    assert "~ db_password: changed (**********)" in out
    assert "restart required (not applied live): workers" in out
    stamps = [line.split()[0] for line in watch.lines if line and not line.startswith(" ")]
    assert all(s.endswith("Z") and s[:4].isdigit() and "T" in s for s in stamps)
    assert_no_secret(watch.output)


def test_watch_without_settings_follows_every_key(tmp_path: Path) -> None:
    writer = KubeletWriter(tmp_path / "podinfo")
    writer.write(canary_pod())
    with background(
        "watch", writer.path, "--format", "json", "--count", "1", "--timeout", "30"
    ) as watch:
        watch.wait_for('"watching"')
        labels = {"app": "shop", "role": "stable", "rollouts-pod-template-hash": "7f9c4d2e1"}
        writer.write({**canary_pod(), "labels": pod_files(labels=labels)["labels"]})
        assert watch.finish() == 0
    events = [json.loads(line) for line in watch.lines]
    assert events[0]["status"] == "watching"
    assert events[1]["status"] == "applied"
    assert events[1]["changes"] == ["~ labels role: canary -> stable"]


def test_watch_without_settings_reports_a_malformed_file_with_file_line_and_key(
    tmp_path: Path,
) -> None:
    # canaryconf's own errors hold no value: shown whole, not "message withheld" and never
    # an internal function name.
    writer = KubeletWriter(tmp_path / "podinfo")
    writer.write(canary_pod())
    with background(
        "watch", writer.path, "--format", "json", "--count", "1", "--timeout", "30"
    ) as watch:
        watch.wait_for('"watching"')
        files = canary_pod()
        writer.write({**files, "annotations": files["annotations"] + '\nbroken="unterminated'})
        assert watch.finish() == 0
    event = json.loads(watch.lines[1])
    assert event["status"] == "rejected"
    [problem] = event["problems"]
    assert f"{writer.path / 'annotations'}, line " in problem
    assert "key 'broken'" in problem and "unterminated" in problem
    assert "withheld" not in problem and "_parse" not in problem


def test_watch_timeout_and_sigterm(tmp_path: Path) -> None:
    writer = KubeletWriter(tmp_path / "podinfo")
    writer.write(canary_pod())
    timed_out = run("watch", writer.path, "--count", "1", "--timeout", "0.5")
    assert timed_out.returncode == 1
    assert "timed out after 0.5s with 0 of 1 changes" in timed_out.stderr
    with background("watch", writer.path) as watch:
        watch.wait_for("watching")
        watch.proc.send_signal(signal.SIGTERM)
        assert watch.finish() == 0


# -- sidecar --------------------------------------------------------------------------------


class Receiver:
    """A webhook receiver on 127.0.0.1 that answers 500 to the first POST."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, str | None]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                receiver.posts.append((self.path, self.headers.get("Authorization")))
                self.send_response(500 if len(receiver.posts) == 1 else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/-/reload"

    def wait_posts(self, count: int, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while len(self.posts) < count:
            assert time.monotonic() < deadline, f"{len(self.posts)} POSTs, wanted {count}"
            time.sleep(0.02)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_sidecar_webhook_retries_and_metrics(tmp_path: Path, receiver: Receiver) -> None:
    pytest.importorskip("prometheus_client")
    writer = KubeletWriter(tmp_path / "config")
    writer.write({"app.conf": "a=1"})
    url = receiver.url.replace("http://", "http://user:pa55@") + "?token=" + TOKEN
    with background(
        "sidecar",
        writer.path,
        "--webhook",
        url,
        "--webhook-backoff",
        "0.05",
        "--webhook-retries",
        "2",
        "--metrics-port",
        "0",
        "--metrics-address",
        "127.0.0.1",
        stream="stderr",
    ) as sidecar:
        sidecar.wait_for("notifying")
        metrics_line = next(line for line in sidecar.lines if "metrics on " in line)
        metrics_url = metrics_line.split("metrics on ")[1].strip()
        assert receiver.posts == []  # nothing at start
        writer.write({"app.conf": "a=2"})
        receiver.wait_posts(2)  # the first answered 500: retried
        sidecar.wait_for(": notified")
        samples = _scrape(metrics_url)
        target = (("target", receiver.url),)
        assert samples[("canaryconf_sidecar_changes_total", ())] == 1
        assert (
            samples[("canaryconf_sidecar_requests_total", (("status_code", "500"), *target))] == 1
        )
        assert (
            samples[("canaryconf_sidecar_requests_total", (("status_code", "200"), *target))] == 1
        )
        assert (
            samples[("canaryconf_sidecar_notifications_total", (("result", "success"), *target))]
            == 1
        )
        assert samples[("canaryconf_sidecar_last_notification_error", target)] == 0
        sidecar.proc.send_signal(signal.SIGTERM)
        assert sidecar.finish() == 0
    assert len(receiver.posts) == 2
    path, auth = receiver.posts[0]
    assert path == f"/-/reload?token={TOKEN}"
    assert auth == "Basic dXNlcjpwYTU1"
    assert "stopped: 1 notification(s) delivered" in sidecar.output
    assert_no_secret(sidecar.output)  # the token is in the URL's query: never logged


SIGHUP_CHILD = """
import signal, sys, time
marker = sys.argv[1]
def on_hup(signum, frame):
    with open(marker, "a") as handle:
        handle.write("HUP\\n")
signal.signal(signal.SIGHUP, on_hup)
print("ready", flush=True)
while True:
    time.sleep(0.05)
"""


def test_sidecar_signals_a_process_on_each_validated_change(
    tmp_path: Path, settings_file: str
) -> None:
    marker = tmp_path / "hups"
    child = subprocess.Popen(
        [sys.executable, "-c", SIGHUP_CHILD, str(marker)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        pid_file = tmp_path / "app.pid"
        pid_file.write_text(f"{child.pid}\n")
        writer = KubeletWriter(tmp_path / "podinfo")
        writer.write(canary_pod())
        with background(
            "sidecar",
            writer.path,
            "--settings",
            settings_file,
            "--signal",
            "HUP",
            "--pid-file",
            pid_file,
            stream="stderr",
        ) as sidecar:
            sidecar.wait_for("notifying")
            writer.write(canary_pod(**{f"{PREFIX}ratio": "5"}))  # invalid: not announced
            sidecar.wait_for("new version rejected, not announced")
            writer.write(canary_pod(**{f"{PREFIX}ratio": "0.5"}))
            sidecar.wait_for(": notified")
            # The file exists as soon as the child opens it: wait for what it writes.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not (
                marker.exists() and marker.read_text().endswith("\n")
            ):
                time.sleep(0.02)
            assert marker.read_text() == "HUP\n"
            sidecar.proc.send_signal(signal.SIGTERM)
            assert sidecar.finish() == 0
        assert "signal SIGHUP to pid-file" in sidecar.output
        assert_no_secret(sidecar.output)
    finally:
        child.kill()
        child.wait(timeout=10)


def test_sidecar_pid_gone_is_retried_then_given_up(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=10)
    writer = KubeletWriter(tmp_path / "config")
    writer.write({"k": "1"})
    with background(
        "sidecar",
        writer.path,
        "--pid",
        str(gone.pid),
        "--webhook-retries",
        "1",
        "--webhook-backoff",
        "0.05",
        stream="stderr",
    ) as sidecar:
        sidecar.wait_for("notifying")
        writer.write({"k": "2"})
        sidecar.wait_for("giving up on this change")
        assert "attempt 2 of 2 failed: no process" in sidecar.output
        sidecar.proc.send_signal(signal.SIGTERM)
        assert sidecar.finish() == 0


# -- the volumes of every registered source kind ------------------------------------------

PROJECTED_SETTINGS = """
from canaryconf import CanaryConfigDict, CanarySettings, label


class Settings(CanarySettings):
    model_config = CanaryConfigDict(
        downward_api_dir=None,
        projected_dirs=["/nonexistent/app"],
        projected_secret_keys=["db-password"],
    )

    role: str = label("role", default="stable")
    db_url: str = "postgres://stable-db/app"
    db_password: str = ""  # a plain field, fed by a Secret item
"""


def projected_items(db_url: str = "postgres://canary-db/app") -> dict[str, str | bytes | File]:
    """What the kubelet writes for a projected volume of a labels item, a ConfigMap key
    and a Secret key (``mode: 0400``)."""
    return {
        "labels": format_map({"app": "shop", "role": "canary"}),
        "db-url": db_url,
        "db-password": File(TOKEN, mode=0o400),
    }


@pytest.fixture
def projected(tmp_path: Path) -> KubeletWriter:
    writer = KubeletWriter(tmp_path / "app", seed=3)
    writer.write(projected_items())
    return writer


def test_show_lists_a_projected_volume_with_its_secret_items_redacted(
    tmp_path: Path, projected: KubeletWriter
) -> None:
    settings = tmp_path / "projected_settings.py"
    settings.write_text(PROJECTED_SETTINGS)
    args = ("show", "--settings", f"{settings}:Settings", "--projected-dir", projected.path)
    table = run(*args)
    assert table.returncode == 0, table.stderr
    assert f"projected volume {projected.path} (generation {projected.generation})" in table.stdout
    assert "role  canary" in table.stdout  # its downward item, parsed
    assert "db-url       postgres://canary-db/app" in table.stdout
    assert "db-password  **********" in table.stdout
    assert_no_secret(table.stdout, table.stderr)

    as_json = run(*args, "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    assert_no_secret(as_json.stdout)
    [volume] = json.loads(as_json.stdout)["volumes"]
    assert (volume["kind"], volume["path"]) == ("projected", str(projected.path))
    assert volume["labels"] == {"app": "shop", "role": "canary"}
    assert volume["files"] == {"db-password": "**********", "db-url": "postgres://canary-db/app"}
    assert "digest" not in volume  # it holds a secret

    # Without a class, nothing says which items are Secret items: no value is shown.
    podinfo = KubeletWriter(tmp_path / "podinfo")
    podinfo.write(pod_files(labels={"app": "shop", "role": "canary"}))
    bare = run("show", podinfo.path, "--projected-dir", projected.path)
    assert bare.returncode == 0, bare.stderr
    assert f"projected volume {projected.path}" in bare.stdout
    assert "(no value shown: the class's projected_secret_keys says which" in bare.stdout
    assert "db-url       **********" in bare.stdout
    assert "canary-db" not in bare.stdout
    assert_no_secret(bare.stdout, bare.stderr)


def test_export_writes_a_projected_volume_secret_items_only_when_asked(
    tmp_path: Path, projected: KubeletWriter
) -> None:
    podinfo = KubeletWriter(tmp_path / "podinfo")
    podinfo.write(pod_files(labels={"app": "shop", "role": "canary"}))
    args = ("export", podinfo.path, "--projected-dir", projected.path)
    plain = run(*args)
    assert plain.returncode == 0, plain.stderr
    assert "export LABEL_ROLE=canary" in plain.stdout
    assert "DB_URL" not in plain.stdout and "DB_PASSWORD" not in plain.stdout
    assert "left out secret value(s)" in plain.stderr and "DB_URL, LABELS" in plain.stderr
    assert_no_secret(plain.stdout, plain.stderr)

    everything = run(*args, "--include-secrets")
    assert everything.returncode == 0, everything.stderr
    assert "export DB_URL=postgres://canary-db/app" in everything.stdout
    assert f"export DB_PASSWORD={TOKEN}" in everything.stdout

    as_json = run(*args, "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["volumes"] == [
        {"kind": "projected", "path": str(projected.path), "files": {}}
    ]
    assert_no_secret(as_json.stdout, as_json.stderr)

    settings = tmp_path / "projected_settings.py"
    settings.write_text(PROJECTED_SETTINGS)
    typed = run("export", "--settings", f"{settings}:Settings", "--projected-dir", projected.path)
    assert typed.returncode == 0, typed.stderr
    assert "export DB_URL=postgres://canary-db/app" in typed.stdout
    assert "DB_PASSWORD" in typed.stderr and "DB_PASSWORD" not in typed.stdout
    assert_no_secret(typed.stdout, typed.stderr)


def test_watch_without_settings_follows_the_volumes_of_each_kind_given(
    tmp_path: Path, projected: KubeletWriter
) -> None:
    podinfo = KubeletWriter(tmp_path / "podinfo")
    podinfo.write(pod_files(labels={"app": "shop", "role": "canary"}))
    config = KubeletWriter(tmp_path / "config")
    config.write({"log-level": "debug"})
    with background(
        "watch",
        podinfo.path,
        "--projected-dir",
        projected.path,
        "--configmap-dir",
        config.path,
        "--format",
        "json",
        "--count",
        "2",
        "--timeout",
        "30",
    ) as watch:
        watch.wait_for('"watching"')
        projected.write(projected_items(db_url="postgres://other-db/app"))
        watch.wait_for('"applied"')
        config.write({"log-level": "info"})
        assert watch.finish() == 0, watch.output
    events = [json.loads(line) for line in watch.lines]
    assert str(projected.path) in events[0]["volumes"]
    assert events[1]["changes"] == [f"~ secrets {projected.path}/db-url: changed (**********)"]
    assert events[2]["changes"] == [f"~ volumes {config.path}/log-level: debug -> info"]
    assert_no_secret(watch.output)


def test_sidecar_notifies_on_a_change_of_a_volume_given_by_its_kind_option(
    tmp_path: Path, projected: KubeletWriter, receiver: Receiver
) -> None:
    with background(
        "sidecar",
        "--projected-dir",
        projected.path,
        "--webhook",
        receiver.url,
        "--webhook-backoff",
        "0.05",
        stream="stderr",
    ) as sidecar:
        sidecar.wait_for("notifying")
        assert f"watching {projected.path};" in sidecar.output
        projected.write(projected_items(db_url="postgres://other-db/app"))
        receiver.wait_posts(2)  # the first answered 500: retried
        sidecar.wait_for(": notified")
        sidecar.proc.send_signal(signal.SIGTERM)
        assert sidecar.finish() == 0
    assert f"changed: {projected.path}/db-url (modified)" in sidecar.output
    assert_no_secret(sidecar.output)


#: A source kind canaryconf does not ship, registered by the program that runs the
#: command: files a config agent renders, some of them secret (listed in the settings).
RENDERED_KIND = """
from typing import Any, ClassVar

from canaryconf.sources.base import register_source
from canaryconf.sources.providers._key_per_file import KeyPerFileSource


class RenderedSource(KeyPerFileSource):
    kind = "rendered"
    accepts = ("rendered",)
    config_key = "rendered_dirs"
    default_dirs: ClassVar[Any] = ()
    secret_keys_key = "rendered_secret_keys"
    cli_flag = "--rendered-dir"
    cli_help = "a directory a config agent renders files into"


register_source(RenderedSource, before="secret")
"""

RENDERED_SETTINGS = """
from canaryconf import CanarySettings


class Settings(CanarySettings):
    model_config = {
        "downward_api_dir": None,
        "rendered_dirs": ["/nonexistent/rendered"],
        "rendered_secret_keys": ["api-key"],
    }

    log_format: str = "text"
    api_key: str = ""
"""

#: ``python -c`` code: registers the kind of the module in ``argv[1]``'s directory, then
#: runs the command with the rest of the arguments.
WITH_KIND = """
import sys
sys.path.insert(0, sys.argv.pop(1))
import rendered_kind
from canaryconf.cli import main
main(sys.argv[1:])
"""


@pytest.fixture
def rendered(tmp_path: Path) -> tuple[Sequence[str], KubeletWriter, str]:
    """How to run the command with the ``rendered`` kind registered, a volume of that
    kind, and a settings class reading it."""
    kind_dir = tmp_path / "kind"
    kind_dir.mkdir()
    (kind_dir / "rendered_kind.py").write_text(RENDERED_KIND)
    (tmp_path / "rendered_settings.py").write_text(RENDERED_SETTINGS)
    writer = KubeletWriter(tmp_path / "rendered", seed=5)
    writer.write({"log-format": "json", "api-key": TOKEN})
    command = (sys.executable, "-c", WITH_KIND, str(kind_dir))
    return command, writer, f"{tmp_path / 'rendered_settings.py'}:Settings"


def test_a_registered_kind_is_shown_and_exported_redacted_by_its_declaration(
    rendered: tuple[Sequence[str], KubeletWriter, str],
) -> None:
    command, volume, settings = rendered
    typed = ("--settings", settings, "--rendered-dir", volume.path)
    table = run("show", *typed, command=command)
    assert table.returncode == 0, table.stderr
    assert f"rendered volume {volume.path} (generation {volume.generation})" in table.stdout
    assert "log-format  json" in table.stdout
    assert "api-key     **********" in table.stdout
    assert "api_key     **********" in table.stdout  # the field it feeds, too
    assert_no_secret(table.stdout, table.stderr)

    bare = run("show", "--rendered-dir", volume.path, command=command)
    assert bare.returncode == 0, bare.stderr
    assert "the class's rendered_secret_keys says which are secret" in bare.stdout
    assert "log-format  **********" in bare.stdout
    assert_no_secret(bare.stdout, bare.stderr)

    exported = run("export", *typed, command=command)
    assert exported.returncode == 0, exported.stderr
    assert "export LOG_FORMAT=json" in exported.stdout
    assert "API_KEY" not in exported.stdout and "API_KEY" in exported.stderr
    assert_no_secret(exported.stdout, exported.stderr)


def test_a_registered_kind_is_watched_and_followed_by_the_sidecar(
    rendered: tuple[Sequence[str], KubeletWriter, str], receiver: Receiver
) -> None:
    command, volume, _ = rendered
    with background(
        "watch",
        "--rendered-dir",
        volume.path,
        "--format",
        "json",
        "--count",
        "1",
        "--timeout",
        "30",
        command=command,
    ) as watch:
        watch.wait_for('"watching"')
        volume.write({"log-format": "json", "api-key": TOKEN + "-rotated"})
        assert watch.finish() == 0, watch.output
    event = json.loads(watch.lines[1])
    assert event["changes"] == [f"~ secrets {volume.path}/api-key: changed (**********)"]
    assert_no_secret(watch.output)

    with background(
        "sidecar",
        "--rendered-dir",
        volume.path,
        "--webhook",
        receiver.url,
        "--webhook-backoff",
        "0.05",
        stream="stderr",
        command=command,
    ) as sidecar:
        sidecar.wait_for("notifying")
        volume.write({"log-format": "text", "api-key": TOKEN})
        receiver.wait_posts(2)
        sidecar.wait_for(": notified")
        sidecar.proc.send_signal(signal.SIGTERM)
        assert sidecar.finish() == 0
    assert f"changed: {volume.path}/api-key (modified), {volume.path}/log-format" in (
        sidecar.output
    )
    assert_no_secret(sidecar.output)


# -- simulate and demo -----------------------------------------------------------------------


def test_simulate_plays_a_canary_then_promotes_in_place(tmp_path: Path) -> None:
    result = run(
        "simulate",
        tmp_path / "podinfo",
        "--secrets-dir",
        tmp_path / "secrets",
        "--step-seconds",
        "0",
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for text in ("setWeight: 20", "setWeight: 50", "setWeight: 80", "promoted"):
        assert text in out
    assert "demo-password" not in out
    final = read_volume(tmp_path / "podinfo")
    labels = parse_map(final.files["labels"])
    assert labels["role"] == "stable"
    assert labels["rollouts-pod-template-hash"] == "7f9c4d2e1"  # revision B stays
    assert f"{PREFIX}db-url" not in parse_map(final.files["annotations"])


def test_simulate_abort_goes_back_to_revision_a(tmp_path: Path) -> None:
    result = run("simulate", tmp_path / "podinfo", "--abort", "--step-seconds", "0")
    assert result.returncode == 0
    assert "aborted" in result.stdout
    labels = parse_map(read_volume(tmp_path / "podinfo").files["labels"])
    assert labels == {"app": "shop", "role": "stable", "rollouts-pod-template-hash": "6d8f7c9b5"}


def _columns(out: str) -> tuple[str, str, str]:
    """The rollout, stable-pod and canary-pod columns of the demo's output, each as one
    string without white space (a column wraps words anywhere)."""
    columns: list[list[str]] = [[], [], []]
    for line in out.splitlines():
        cells = re.split(r" \|(?: |$)", line[8:])
        if len(cells) > 1 and not line.startswith("-"):
            for index, cell in enumerate(cells[:3]):
                columns[index].append(cell)
    rollout, stable, canary = ("".join("".join(c).split()) for c in columns)
    return rollout, stable, canary


def _has(column: str, text: str) -> bool:
    return "".join(text.split()) in column


def test_demo_shows_a_stable_pod_and_a_canary_pod() -> None:
    # A running pod never changes revision: the canary revision arrives as a new pod, and
    # only the canary pod sees the canaryMetadata edits and the promotion.
    started = time.monotonic()
    result = run("demo", "--fast", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert time.monotonic() - started < 60
    out = result.stdout
    assert "STABLE POD (revision 6d8f7c9b5)" in out
    assert "CANARY POD (revision 7f9c4d2e1)" in out
    rollout, stable, canary = _columns(out)
    for text in ("setWeight: 20", "setWeight: 50", "setWeight: 80", "promoted"):
        assert _has(rollout, text)
    assert _has(stable, "pod shop-6d8f7c9b5-x7k2p starts")
    assert _has(canary, "pod shop-7f9c4d2e1-q4w8z starts")
    assert _has(canary, "rollout: role=canary, hash=7f9c4d2e1")
    for text in (
        "REJECTED the new version",
        "key 'canary.example.com/flags'): invalid JSON",
        "restart required for workers",
        "rollout.role: canary -> stable",
        "hook rebuild_pool(): new connections go to postgres://stable-db:5432/shop",
        "PROMOTED: this pod is now stable (revision 7f9c4d2e1)",
    ):
        assert _has(canary, text), text
        assert not _has(stable, text), text
    # The Secret reaches every pod; no pod ever shows another revision's hash.
    assert _has(stable, "db_password: changed (secret, value hidden)")
    assert _has(canary, "db_password: changed (secret, value hidden)")
    assert "7f9c4d2e1" not in stable and "hash=6d8f7c9b5" not in canary
    assert _has(stable, "pod terminated (scaled down)")
    assert "demo-password" not in out + result.stderr
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("demo finished in ")
    assert summary.endswith("all as expected")


def test_demo_abort_ends_the_canary_pod_and_leaves_the_stable_pod_unchanged() -> None:
    result = run("demo", "--step-seconds", "0.05", "--abort", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    rollout, stable, canary = _columns(result.stdout)
    assert _has(rollout, "rollout aborted")
    assert _has(canary, "pod terminated (scaled down)")
    assert not _has(stable, "pod terminated")
    assert not _has(stable, "REJECTED") and not _has(stable, "restart required")
    assert _has(stable, "rollout: role=stable, hash=6d8f7c9b5")
    assert "the stable pod never changed; all as expected" in result.stdout


#: ``python -c`` code: the demo with one change to its release: the canary pod starts with
#: a database URL of ten asterisks (a plain value that looks like a redacted one), which
#: the fixed canaryMetadata then replaces.
DEMO_LOOKALIKE = """
import dataclasses
import sys

import canaryconf._cli.demo as demo
from canaryconf._cli import simulate


def scenario(*, abort=False):
    steps = simulate.scenario(abort=abort)
    for index, step in enumerate(steps):
        if step.name == "canary":
            url = {f"{simulate.PREFIX}db-url": "**********"}
            pod = dataclasses.replace(step.pod, annotations={**step.pod.annotations, **url})
            steps[index] = dataclasses.replace(step, pod=pod)
    return steps


demo.scenario = scenario
from canaryconf.cli import main
main(sys.argv[1:])
"""


def test_demo_tells_a_plain_value_that_looks_redacted_from_a_secret() -> None:
    # Redaction is a type: a changed setting whose old value is ten asterisks is shown with
    # its values; only the secret one is "value hidden".
    result = run("demo", "--fast", timeout=60, command=(sys.executable, "-c", DEMO_LOOKALIKE))
    assert result.returncode == 0, result.stdout + result.stderr
    _, _, canary = _columns(result.stdout)
    assert _has(canary, "db_url: ********** -> postgres://canary-db:5432/shop")
    assert not _has(canary, "db_url: changed (secret, value hidden)")
    assert _has(canary, "db_password: changed (secret, value hidden)")
    assert "demo-password" not in result.stdout + result.stderr


def test_console_script_is_the_same_command() -> None:
    script = Path(sys.executable).parent / "canaryconf"
    if not script.exists():
        pytest.skip("console script not installed (pip install -e .)")
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0
    assert result.stdout.startswith("canaryconf ")
