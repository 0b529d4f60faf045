"""The package as a user installs it: its version, its logger, the hints of its extras."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import canaryconf
from canaryconf import cli


def test_version_is_the_installed_distributions() -> None:
    """One version: ``__version__`` is what pyproject.toml's build metadata reads."""
    assert canaryconf.__version__ == importlib.metadata.version("canaryconf")


def test_cli_version_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])

    assert info.value.code == 0
    assert canaryconf.__version__ in capsys.readouterr().out


def test_the_library_logger_has_a_null_handler_and_propagates() -> None:
    logger = logging.getLogger("canaryconf")

    assert any(isinstance(h, logging.NullHandler) for h in logger.handlers)
    assert logger.propagate


def test_warnings_reach_the_applications_logging_config() -> None:
    """With a NullHandler on the library logger, an application that configures logging
    still gets canaryconf's warnings; one that does not gets no "No handlers" noise."""
    code = (
        "import logging, sys\n"
        "import canaryconf\n"
        "logging.getLogger('canaryconf.live').warning('unconfigured')\n"
        "logging.basicConfig(stream=sys.stdout, format='%(name)s %(levelname)s %(message)s')\n"
        "logging.getLogger('canaryconf.live').warning('configured')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )

    assert result.stdout == "canaryconf.live WARNING configured\n"
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("module", "blocked", "extra"),
    [
        ("canaryconf.flask", "flask", "flask"),
        ("canaryconf.django", "django", "django"),
        ("canaryconf.django.apps", "django", "django"),
        ("canaryconf.fastapi", "fastapi", "fastapi"),
        ("canaryconf.metrics", "prometheus_client", "prometheus"),
    ],
)
def test_an_adapter_without_its_extra_names_the_extra(
    module: str, blocked: str, extra: str
) -> None:
    """The framework is made unimportable (``sys.modules[name] = None``), as when the
    extra is not installed: the ImportError says what to install."""
    code = f"import sys\nsys.modules[{blocked!r}] = None\nimport {module}\n"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )

    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("ImportError: "), result.stderr
    assert f"pip install 'canaryconf[{extra}]'" in last_line


def _dev_script() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "dev.py"
    spec = importlib.util.spec_from_file_location("canaryconf_dev_script", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dev_script_installs_every_extra_for_the_tests() -> None:
    """dev.py reads pyproject.toml without tomllib (it runs on 3.10): a new extra is
    installed into every test environment without editing dev.py."""
    tomllib = pytest.importorskip("tomllib")
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    declared = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]

    extras = _dev_script()._extras()

    assert sorted(extras) == sorted(declared)
    assert {"flask", "fastapi", "django", "prometheus"} <= set(extras)
