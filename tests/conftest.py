"""Helpers shared by the test modules: real volumes, written the way the kubelet writes them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from canaryconf.testing import KubeletWriter

#: The name of a generation directory: ``..YYYY_MM_DD_HH_MM_SS.<random uint32>``.
GENERATION_RE = re.compile(r"\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.\d{1,10}")


@pytest.fixture
def podinfo(tmp_path: Path) -> KubeletWriter:
    """An empty downwardAPI volume directory at ``tmp_path/podinfo``, updated through a
    :class:`KubeletWriter`."""
    return KubeletWriter(tmp_path / "podinfo", seed=1)


def generations(volume: Path) -> list[str]:
    """The names of the generation directories present in ``volume``."""
    return sorted(p.name for p in volume.iterdir() if GENERATION_RE.fullmatch(p.name))
