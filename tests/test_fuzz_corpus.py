"""The fuzz targets of ``fuzz/`` run over the fixed corpus of ``tests/corpus/``, without
atheris: the Go-rendered vectors that add coverage, hand-written malformed files, and every
input a fuzzing run found to crash (kept, once fixed, so that it stays fixed).

One directory per target: ``tests/corpus/parse_map`` for ``targets.parse_map_target``,
``tests/corpus/volume`` for ``targets.volume_target``. A corpus file is a test case; add
one by dropping it in. ``fuzz/README.md`` says how to fuzz for longer.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "corpus"
TARGETS = ROOT / "fuzz" / "targets.py"


def load_targets() -> ModuleType:
    name = "canaryconf_fuzz_targets"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, TARGETS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def replay(target: Callable[[bytes], None], directory: Path) -> tuple[int, list[str]]:
    """Run ``target`` on every file of ``directory`` in name order; (count, failures)."""
    files = sorted(p for p in directory.iterdir() if p.is_file())
    failures = []
    for path in files:
        try:
            target(path.read_bytes())
        except Exception:
            failures.append(f"{path.name}:\n{traceback.format_exc()}")
    return len(files), failures


@pytest.mark.parametrize(
    ("corpus", "target"),
    [("parse_map", "parse_map_target"), ("volume", "volume_target")],
)
def test_fuzz_corpus_replays_cleanly(corpus: str, target: str) -> None:
    count, failures = replay(getattr(load_targets(), target), CORPUS / corpus)
    assert count >= 20, f"the {corpus} corpus is nearly empty ({count} files)"
    assert failures == [], "\n".join(failures)


def test_the_volume_target_splits_its_input_as_documented() -> None:
    targets = load_targets()
    downward, configmaps, secrets = targets.split_volume_input(
        bytes([0b111111]) + b"\xff\xfe".join([b"a", b"l", b"3", b"tok", b"pod", b"2"])
    )
    assert downward == {"annotations": b"a", "labels": b"l", "name": b"pod", "limits.cpu": b"2"}
    assert (configmaps, secrets) == ({"replicas": b"3"}, {"token": b"tok"})
    assert targets.split_volume_input(bytes([0])) == ({}, {}, {})


def test_the_targets_catch_what_they_are_meant_to(monkeypatch: pytest.MonkeyPatch) -> None:
    """A target that could not fail would prove nothing: break canaryconf on purpose."""
    targets = load_targets()
    monkeypatch.setattr(targets, "_parse_slow", lambda text, source: {"forged": "map"})
    with pytest.raises(AssertionError, match="reference parser"):
        targets.parse_map_target(b'a="b"')
