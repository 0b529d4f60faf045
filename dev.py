#!/usr/bin/env python3
"""Set up a virtual environment and run canaryconf's demo or its checks.

    python3 dev.py demo    # install into .venv, then play a canary rollout locally
    python3 dev.py test    # install into .venv, then ruff, mypy --strict and pytest
                           # (pytest also builds the docs with mkdocs build --strict)

Only the Python standard library is used here, so this runs on a machine that has nothing
but Python 3.10 or newer. Packages come from PyPI through pip. The environment is reused
while pyproject.toml is unchanged.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
STAMP = VENV / ".canaryconf-installed"
INSTALL_TIMEOUT = 900
STEP_TIMEOUT = 1500


def _run(*args: str | Path, timeout: float = STEP_TIMEOUT) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    result = subprocess.run([str(a) for a in args], check=False, cwd=ROOT, timeout=timeout)
    if result.returncode != 0:
        sys.exit(result.returncode)


def ensure_venv() -> None:
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted and PY.exists():
        return
    if not PY.exists():
        print(f"creating {VENV.name}/", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    _run(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip", timeout=INSTALL_TIMEOUT)
    _run(PY, "-m", "pip", "install", "--quiet", "-e", ".[dev]", timeout=INSTALL_TIMEOUT)
    STAMP.write_text(wanted)


def test(extra: list[str]) -> None:
    ensure_venv()
    _run(BIN / "ruff", "check", ".")
    _run(BIN / "ruff", "format", "--check", ".")
    _run(BIN / "mypy", "--strict", "src")
    _run(PY, "-m", "pytest", *extra)


def demo(extra: list[str]) -> None:
    ensure_venv()
    _run(BIN / "canaryconf", "demo", *extra)


def main() -> None:
    commands = {"test": test, "demo": demo}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
