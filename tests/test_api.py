"""The public API: exactly what ``__all__`` lists, named ``canaryconf.X`` in tracebacks,
and typed so that a misspelt field or a wrong handler is a type error."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
from pydantic import BaseModel

import canaryconf

ROOT = Path(__file__).resolve().parent.parent

API = {
    "CanaryConfError",
    "CanaryConfigDict",
    "CanarySettings",
    "Change",
    "DownwardAPIFormatError",
    "FieldProblem",
    "LiveSettings",
    "NotAVolumeError",
    "PinnedSettings",
    "ReloadResult",
    "RolloutInfo",
    "SettingsValidationError",
    "UnsafePathError",
    "VolumeBusyError",
    "VolumeError",
    "VolumeNotFoundError",
    "VolumePermissionError",
    "VolumeSnapshot",
    "VolumeTooLargeError",
    "annotation",
    "configmap",
    "format_map",
    "label",
    "live",
    "parse_map",
    "pod_field",
    "read_volume",
    "redacted_dump",
    "resource",
    "restart_required",
    "secret",
}


def test_the_package_exports_exactly_its_api() -> None:
    assert set(canaryconf.__all__) == API
    public = {
        name
        for name, value in vars(canaryconf).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public - API <= {"annotations"}  # the __future__ import


def test_exports_from_private_modules_are_named_canaryconf() -> None:
    for name in canaryconf.__all__:
        module = getattr(canaryconf, name).__module__
        assert not module.startswith("canaryconf._"), (name, module)
    assert repr(canaryconf.VolumeError("/etc/podinfo", "gone")).startswith("VolumeError(")
    assert canaryconf.VolumeError.__module__ == "canaryconf"
    assert issubclass(canaryconf.CanarySettings, BaseModel)


@pytest.mark.parametrize(
    "module",
    ["canaryconf.starlette", "canaryconf.fastapi", "canaryconf.flask", "canaryconf.signals"],
)
def test_each_adapter_exports_what_it_lists(module: str) -> None:
    loaded = importlib.import_module(module)
    for name in loaded.__all__:
        assert hasattr(loaded, name), f"{module}.{name}"


def test_the_documented_api_is_typed() -> None:
    """mypy --strict over ``tests/typing/``: reading ``current`` is typed (a misspelt
    field is an error), handlers of the wrong shape are errors, and every expected error
    stays one (``warn_unused_ignores``)."""
    mypy = shutil.which("mypy", path=str(Path(sys.executable).parent))
    if mypy is None:
        pytest.skip("mypy is not installed in this environment (the dev dependency group)")
    done = subprocess.run(
        [mypy, "--strict", "--warn-unused-ignores", "tests/typing"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_documented_api_is_typed_for_pyright() -> None:
    """The same module under pyright (basedpyright, which ships its own Node.js) in strict
    mode, with every unneeded ``type: ignore`` an error."""
    pyright = shutil.which("basedpyright", path=str(Path(sys.executable).parent))
    if pyright is None:
        pytest.skip("basedpyright is not installed in this environment (the lint group)")
    done = subprocess.run(
        [pyright, "-p", "tests/typing/pyrightconfig.json", "--pythonpath", sys.executable],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
