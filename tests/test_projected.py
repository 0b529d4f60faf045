"""Projected volumes: downwardAPI, ConfigMap and Secret items in one directory, written by
one AtomicWriter with per-item modes, and read by an application user that may not read
every item."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from canaryconf import (
    CanaryConfigDict,
    CanarySettings,
    label,
    live,
    pod_field,
    redacted_dump,
    secret,
)
from canaryconf._cli.common import Redaction
from canaryconf.settings import secret_fields
from canaryconf.sources.base import read_settings_volume
from canaryconf.testing import File, KubeletWriter, format_map
from conftest import read_child_line

NOBODY = 65534
SECRET_VALUE = "hunter2-5ecr3t"


def _payload(password: str = SECRET_VALUE, db_url: str = "postgres://canary-db/app") -> dict:
    """What the kubelet writes for a projected volume of a labels item, a metadata.name
    item, a ConfigMap key and a Secret key with ``mode: 0400``."""
    return {
        "labels": format_map({"app": "shop", "role": "canary"}),
        "name": "shop-7f9c4d2e1-abcde",
        "db-url": db_url,
        "db-password": File(password, mode=0o400),
    }


@pytest.fixture
def projected() -> Iterator[KubeletWriter]:
    # Not tmp_path: pytest's base directory is 0700, so another user could not reach it.
    base = Path(tempfile.mkdtemp(prefix="canaryconf-projected-"))
    os.chmod(base, 0o755)
    try:
        writer = KubeletWriter(base / "app")
        writer.write(_payload())
        yield writer
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _settings_source(volume: Path) -> str:
    return textwrap.dedent(
        f"""
        from canaryconf import CanaryConfigDict, CanarySettings, label, pod_field, secret

        CONFIG = CanaryConfigDict(
            downward_api_dir=None,
            projected_dirs=[{str(volume)!r}],
            projected_secret_keys=["db-password"],
        )

        class Public(CanarySettings):
            model_config = CONFIG
            role: str = label("role", default="stable")
            pod_name: str = pod_field("metadata.name", default="")
            db_url: str = "postgres://stable-db/app"

        class NeedsSecret(Public):
            db_password: str = secret("db-password", default="")
        """
    )


def _run_as_nobody(volume: Path, body: str) -> subprocess.CompletedProcess[str]:
    script = _settings_source(volume) + textwrap.dedent(body)
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(
        [sys.executable, "-c", script],
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def as_nobody(projected: KubeletWriter) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run the reader as another user (nobody)")
    try:
        probe = _run_as_nobody(projected.path, "print('ok')")
    except OSError as exc:  # the interpreter lies under a directory nobody cannot enter
        pytest.skip(f"user nobody cannot run {sys.executable}: {exc}")
    if probe.returncode != 0:
        pytest.skip(f"the interpreter or canaryconf is not reachable by nobody: {probe.stderr}")


def test_unreadable_secret_item_does_not_block_a_class_that_does_not_need_it(
    projected: KubeletWriter, as_nobody: None
) -> None:
    result = _run_as_nobody(
        projected.path,
        """
        import json
        from canaryconf import live
        s = Public()
        print(json.dumps([s.role, s.pod_name, s.db_url, live(Public).db_url]))
        """,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        "canary",
        "shop-7f9c4d2e1-abcde",
        "postgres://canary-db/app",
        "postgres://canary-db/app",
    ]


def test_a_class_that_needs_the_unreadable_item_names_its_stable_path(
    projected: KubeletWriter, as_nobody: None
) -> None:
    result = _run_as_nobody(
        projected.path,
        """
        import sys
        from canaryconf import VolumePermissionError
        try:
            NeedsSecret()
        except VolumePermissionError as exc:
            print(exc.path)
            print(exc)
            sys.exit(3)
        """,
    )
    assert result.returncode == 3, result.stderr
    path, message = result.stdout.splitlines()
    assert path == str(projected.path / "db-password")
    assert "permission denied" in message
    assert "..20" not in result.stdout + result.stderr  # never the generation directory
    assert SECRET_VALUE not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_modes_of_one_write_differ_per_item(projected: KubeletWriter) -> None:
    generation = projected.path / str(projected.generation)
    assert os.stat(generation / "db-password").st_mode & 0o777 == 0o400
    assert os.stat(generation / "db-url").st_mode & 0o777 == 0o644
    assert os.stat(generation).st_mode & 0o777 == 0o755


class _Settings(CanarySettings):
    role: str = label("role", default="stable")
    pod_name: str = pod_field("metadata.name", default="")
    db_url: str = ""
    db_password: str = ""  # a plain field, fed by a Secret item
    api_token: str = secret("api-token", default="")


def _settings_for(volume: Path) -> type[_Settings]:
    config = CanaryConfigDict(
        downward_api_dir=None,
        projected_dirs=[str(volume)],
        projected_secret_keys=["db-password"],
    )
    return type("Settings", (_Settings,), {"model_config": config})


def test_plain_fields_fed_by_secret_items_are_secret(projected: KubeletWriter) -> None:
    projected.write({**_payload(), "api-token": File("tok-9f1c", mode=0o400)})
    cls = _settings_for(projected.path)

    s = cls()

    assert (s.role, s.pod_name, s.db_url) == (
        "canary",
        "shop-7f9c4d2e1-abcde",
        _payload()["db-url"],
    )
    assert s.db_password == SECRET_VALUE
    assert secret_fields(s) == {"db_password", "api_token"}
    assert SECRET_VALUE not in repr(s) and "tok-9f1c" not in repr(s)
    dumped = redacted_dump(s)
    assert dumped["db_password"] == dumped["api_token"] == "**********"
    assert dumped["db_url"] == "postgres://canary-db/app"  # a ConfigMap item stays visible
    # The CLI hides the Secret items' files too.
    redaction = Redaction(cls)
    assert redaction.file(str(projected.path), "db-password", SECRET_VALUE) == "**********"
    assert redaction.file(str(projected.path), "db-url", "postgres://x") == "postgres://x"


def test_a_projected_volume_reloads_from_one_generation(projected: KubeletWriter) -> None:
    settings = live(_settings_for(projected.path))
    projected.write(_payload(password="rotated-5ecr3t", db_url="postgres://stable-db/app"))

    result = settings.reload()

    assert result.status == "applied"
    assert (settings.db_url, settings.db_password) == ("postgres://stable-db/app", "rotated-5ecr3t")
    assert "rotated-5ecr3t" not in repr(result) and "rotated-5ecr3t" not in str(result)


def test_only_the_files_fields_need_are_read(projected: KubeletWriter) -> None:
    projected.write({**_payload(), "unrelated/deep": "x", "ca.crt": File("CA", mode=0o400)})
    cls = _settings_for(projected.path)

    snapshot = read_settings_volume(cls, str(projected.path))

    assert snapshot is not None
    assert snapshot.generation == projected.generation  # all from the one generation
    assert set(snapshot.files) == {"labels", "name", "db-url", "db-password"}


def test_an_item_becoming_unreadable_keeps_the_last_good_settings(
    projected: KubeletWriter, as_nobody: None
) -> None:
    # The Secret item is readable (0444) when the pod starts, then an update makes it 0400:
    # the reload fails with the stable path, and the application keeps its settings.
    # (A new value: the kubelet, like KubeletWriter, rewrites nothing for a mode change.)
    projected.write({**_payload(), "db-password": File("first-5ecr3t", mode=0o444)})
    script = _settings_source(projected.path) + textwrap.dedent(
        """
        import sys
        from canaryconf import live
        settings = live(NeedsSecret)
        print(settings.db_password == "first-5ecr3t", flush=True)
        sys.stdin.readline()
        result = settings.reload()
        print(result.status, flush=True)
        print(settings.db_password == "first-5ecr3t", settings.db_url, flush=True)
        print(settings.last_error, flush=True)
        """
    )
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        first = read_child_line(child.stdout.fileno(), timeout=60)
        if first != "True":
            child.kill()
            pytest.fail(f"child said {first!r}: {child.communicate(timeout=10)[1]}")
        projected.write(_payload(password="rotated", db_url="postgres://other-db/app"))
        out, err = child.communicate("go\n", timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    assert child.returncode == 0, err
    status, kept, error = out.splitlines()[:3]
    assert status == "failed"
    assert kept == "True postgres://canary-db/app"  # nothing of the new version applied
    assert str(projected.path / "db-password") in error
    assert "rotated" not in out + err and "first-5ecr3t" not in out + err
