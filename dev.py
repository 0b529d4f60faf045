#!/usr/bin/env python3
"""Set up virtual environments and run canaryconf's demo or its checks.

    python3 dev.py demo          # install into .venv, then play a canary rollout locally
    python3 dev.py test          # everything CI runs (see below)
    python3 dev.py test --quick  # ruff, mypy --strict and the whole suite, this Python only

``test`` runs, in order:

1. ruff, ``mypy --strict`` and the whole test suite (docs build and e2e included) with the
   Python that runs this script, in ``.venv``;
2. the suite without the slow ``e2e``, ``stress`` and ``slow`` tests and the docs build
   on every other CPython from 3.10 to 3.13 found on this machine (``python3.X`` on PATH
   or a pyenv version), each in ``.venv-3.X``; a missing one is reported and skipped;
3. the same suite once more at the lowest versions that pyproject.toml allows for every
   dependency and extra, resolved by uv (``--resolution lowest-direct``) on the oldest
   Python found, in ``.venv-lowest``;
4. ``python -m build``, ``twine check --strict`` and a check of what the sdist and the
   wheel hold.

Arguments after ``test`` other than ``--quick`` go to every pytest run
(``python3 dev.py test --quick -x -q tests/test_downward.py``).

Only the Python standard library is used here, so this runs on a machine that has nothing
but Python 3.10 or newer. Packages come from PyPI through pip (25.1 or newer, for
``--group``: the first step upgrades it). An environment is reused while pyproject.toml is
unchanged.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import venv
import zipfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent
BIN_DIR = "Scripts" if os.name == "nt" else "bin"
VENV = ROOT / ".venv"
PY = VENV / BIN_DIR / "python"
INSTALL_TIMEOUT = 900
STEP_TIMEOUT = 1500
PROBE_TIMEOUT = 30
#: The CPython versions the project supports (pyproject.toml's classifiers).
SUPPORTED = ((3, 10), (3, 11), (3, 12), (3, 13))
#: What the other interpreters and the lowest-versions run leave out: the slow markers and
#: the docs build (its tools are in the ``docs`` group, installed in ``.venv`` only).
FAST = "not e2e and not stress and not slow and not docs"


class Failed(Exception):
    """A step exited with a non-zero status."""


def _run(
    *args: str | Path, timeout: float = STEP_TIMEOUT, env: dict[str, str] | None = None
) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    result = subprocess.run([str(a) for a in args], check=False, cwd=ROOT, timeout=timeout, env=env)
    if result.returncode != 0:
        raise Failed(f"exit status {result.returncode}: {' '.join(str(a) for a in args)}")


def _extras() -> list[str]:
    """The names of every extra in pyproject.toml (tomllib is 3.11+: a plain scan)."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    section = re.search(r"^\[project\.optional-dependencies\]\n(.*?)(?=^\[)", text, re.M | re.S)
    if section is None:
        return []
    return re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*=", section.group(1), re.M)


def _project_spec() -> str:
    extras = _extras()
    return f".[{','.join(extras)}]" if extras else "."


def _stamp(env_dir: Path, what: str) -> tuple[Path, str]:
    pyproject = (ROOT / "pyproject.toml").read_bytes()
    return env_dir / ".canaryconf-installed", hashlib.sha256(pyproject + what.encode()).hexdigest()


def _create(env_dir: Path, python: str) -> Path:
    """A virtual environment at ``env_dir`` made by ``python``, with an up-to-date pip."""
    py = env_dir / BIN_DIR / "python"
    if not py.exists():
        print(f"creating {env_dir.name}/", flush=True)
        _run(python, "-m", "venv", "--clear", env_dir, timeout=INSTALL_TIMEOUT)
    _run(py, "-m", "pip", "install", "--quiet", "--upgrade", "pip>=25.1", timeout=INSTALL_TIMEOUT)
    return py


def ensure_venv() -> None:
    """``.venv``, made by this Python: the project with every extra, the ``dev`` group."""
    stamp, wanted = _stamp(VENV, "dev")
    if stamp.exists() and stamp.read_text() == wanted and PY.exists():
        return
    if not PY.exists():
        print(f"creating {VENV.name}/", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    _create(VENV, sys.executable)
    _run(
        PY,
        "-m",
        "pip",
        "install",
        "--quiet",
        "-e",
        _project_spec(),
        "--group",
        "dev",
        timeout=INSTALL_TIMEOUT,
    )
    stamp.write_text(wanted)


def _ensure_test_venv(env_dir: Path, python: str) -> Path:
    """``env_dir``: the project with every extra and the ``test`` group, for ``python``."""
    py = env_dir / BIN_DIR / "python"
    stamp, wanted = _stamp(env_dir, "test " + python)
    if stamp.exists() and stamp.read_text() == wanted and py.exists():
        return py
    _create(env_dir, python)
    _run(
        py,
        "-m",
        "pip",
        "install",
        "--quiet",
        "-e",
        _project_spec(),
        "--group",
        "test",
        timeout=INSTALL_TIMEOUT,
    )
    stamp.write_text(wanted)
    return py


def _ensure_lowest_venv(python: str) -> Path:
    """``.venv-lowest``: every direct requirement (dependencies, extras, ``test`` group) at
    the lowest version its specifier allows, as uv resolves them."""
    env_dir = ROOT / ".venv-lowest"
    py = env_dir / BIN_DIR / "python"
    stamp, wanted = _stamp(env_dir, "lowest " + python)
    if stamp.exists() and stamp.read_text() == wanted and py.exists():
        return py
    _create(env_dir, python)
    _run(py, "-m", "pip", "install", "--quiet", "uv>=0.8", timeout=INSTALL_TIMEOUT)
    _run(
        env_dir / BIN_DIR / "uv",
        "pip",
        "install",
        "--quiet",
        "--python",
        py,
        "--resolution",
        "lowest-direct",
        "-e",
        _project_spec(),
        "--group",
        "test",
        timeout=INSTALL_TIMEOUT,
    )
    stamp.write_text(wanted)
    return py


def _version_of(python: str) -> tuple[int, int] | None:
    """(major, minor) of a working CPython at ``python``, else None (a pyenv shim of a
    version not selected, say)."""
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(sys.implementation.name, *sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = out.stdout.split()
    if out.returncode != 0 or len(parts) != 3 or parts[0] != "cpython":
        return None
    return int(parts[1]), int(parts[2])


def find_interpreters() -> dict[tuple[int, int], str]:
    """A working CPython for each supported version found: pyenv versions first (the
    newest patch release), then ``python3.X`` on PATH."""
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    found: dict[tuple[int, int], str] = {}
    for version in SUPPORTED:
        name = "python{}.{}".format(*version)
        pattern = str(pyenv_root / "versions" / "{}.{}.*".format(*version) / "bin" / name)
        candidates = sorted(glob.glob(pattern), key=_patch_order, reverse=True)
        on_path = shutil.which(name)
        if on_path:
            candidates.append(on_path)
        for candidate in candidates:
            if _version_of(candidate) == version:
                found[version] = candidate
                break
    return found


def _patch_order(path: str) -> tuple[int, ...]:
    match = re.search(r"/\d+\.\d+\.(\d+)/", path)
    return (int(match.group(1)),) if match else (-1,)


def check_dist(out: Path) -> None:
    """The sdist and the wheel in ``out`` hold LICENSE, the wheel py.typed and no tests;
    the metadata names the license file and the version of ``__init__.py``."""
    init = (ROOT / "src" / "canaryconf" / "__init__.py").read_text(encoding="utf-8")
    version_match = re.search(r'^__version__ = "([^"]+)"', init, re.M)
    if version_match is None:
        raise Failed("no __version__ in src/canaryconf/__init__.py")
    version = version_match.group(1)
    wheels = list(out.glob("canaryconf-*.whl"))
    sdists = list(out.glob("canaryconf-*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        raise Failed(f"expected one wheel and one sdist in the build, found {wheels + sdists}")
    problems = []
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = wheel.namelist()
        dist_info = f"canaryconf-{version}.dist-info"
        metadata = wheel.read(f"{dist_info}/METADATA").decode("utf-8")
    for required in (
        f"{dist_info}/licenses/LICENSE",
        "canaryconf/py.typed",
        "canaryconf/__init__.py",
    ):
        if required not in names:
            problems.append(f"wheel: {required} missing")
    problems += [
        f"wheel: holds {n}" for n in names if not n.startswith(("canaryconf/", dist_info + "/"))
    ]
    for line in (f"Version: {version}", "License-Expression: Apache-2.0", "License-File: LICENSE"):
        if line not in metadata.splitlines():
            problems.append(f"wheel METADATA: no {line!r}")
    with tarfile.open(sdists[0]) as sdist:
        members = {m.name.split("/", 1)[-1] for m in sdist.getmembers()}
    for required in (
        "LICENSE",
        "README.md",
        "CHANGELOG.md",
        "pyproject.toml",
        "src/canaryconf/py.typed",
    ):
        if required not in members:
            problems.append(f"sdist: {required} missing")
    if problems:
        raise Failed("distribution check: " + "; ".join(problems))
    print(f"distributions OK: {wheels[0].name} ({len(names)} files), {sdists[0].name}", flush=True)


def build_and_check() -> None:
    with tempfile.TemporaryDirectory(prefix="canaryconf-dist-") as tmp:
        out = Path(tmp)
        _run(PY, "-m", "build", "--outdir", out, ROOT)
        _run(VENV / BIN_DIR / "twine", "check", "--strict", *sorted(out.iterdir()))
        check_dist(out)


def lint_and_type_check() -> None:
    _run(VENV / BIN_DIR / "ruff", "check", ".")
    _run(VENV / BIN_DIR / "ruff", "format", "--check", ".")
    _run(VENV / BIN_DIR / "mypy", "--strict", "src")


def test(extra: list[str]) -> None:
    quick = "--quick" in extra
    pytest_args = [a for a in extra if a != "--quick"]
    ensure_venv()
    steps: list[tuple[str, float, str]] = []

    def step(name: str, action: Callable[[], object]) -> None:
        started = time.monotonic()
        try:
            action()
        except (Failed, subprocess.TimeoutExpired) as exc:
            steps.append((name, time.monotonic() - started, f"FAILED ({exc})"))
        else:
            steps.append((name, time.monotonic() - started, "ok"))

    here = "{}.{}".format(*sys.version_info[:2])
    step("ruff, mypy", lint_and_type_check)
    step(f"pytest, Python {here}, whole suite", lambda: _run(PY, "-m", "pytest", *pytest_args))
    if not quick:
        interpreters = find_interpreters()
        for version in SUPPORTED:
            label = "{}.{}".format(*version)
            if version == sys.version_info[:2]:
                continue
            if version not in interpreters:
                print(f"Python {label}: not found on this machine, skipped", flush=True)
                steps.append((f"pytest, Python {label}", 0.0, "skipped: not found"))
                continue
            python = interpreters[version]
            step(
                f"pytest, Python {label}, -m '{FAST}'",
                lambda p=python, v=label: _run(
                    _ensure_test_venv(ROOT / f".venv-{v}", p),
                    "-m",
                    "pytest",
                    "-m",
                    FAST,
                    *pytest_args,
                ),
            )
        oldest = interpreters[min(interpreters)] if interpreters else sys.executable
        oldest_label = "{}.{}".format(*(_version_of(oldest) or sys.version_info[:2]))
        step(
            f"pytest, lowest versions, Python {oldest_label}, -m '{FAST}'",
            lambda: _run(_ensure_lowest_venv(oldest), "-m", "pytest", "-m", FAST, *pytest_args),
        )
        step("build, twine check --strict, contents", build_and_check)
    print("\nsummary:")
    width = max(len(name) for name, _, _ in steps)
    for name, seconds, outcome in steps:
        print(f"  {name:<{width}} {seconds:7.1f} s  {outcome}")
    if any(outcome.startswith("FAILED") for _, _, outcome in steps):
        sys.exit(1)


def demo(extra: list[str]) -> None:
    ensure_venv()
    _run(VENV / BIN_DIR / "canaryconf", "demo", *extra)


def main() -> None:
    commands = {"test": test, "demo": demo}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    try:
        commands[sys.argv[1]](sys.argv[2:])
    except (Failed, subprocess.TimeoutExpired) as exc:
        sys.exit(str(exc))


if __name__ == "__main__":
    main()
