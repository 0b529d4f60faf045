"""Benchmark ``canaryconf.downward.parse_map`` against ``json.loads`` on 256 KiB maps.

256 KiB is the most the Kubernetes API allows for all annotations of a pod together (keys +
values), so it is the largest annotation file a kubelet can write. Two maps are measured:

* ``mixed``: plain values, JSON documents (escaped quotes, ``\\n``), and values with non-ASCII
  text, control characters and astral code points (``\\u``, ``\\U``, ``\\x`` escapes);
* ``ascii``: plain ASCII values only (no escapes at all).

For each, the rendered file (``format_map``) is parsed with ``parse_map`` and compared with
``json.loads`` of ``json.dumps`` of the same map. Target: ``parse_map`` at least half as fast
as ``json.loads`` (parse time <= 2 x json time).

Run: ``python benchmarks/bench_parse.py``. ``run()`` returns the rows for other scripts.
"""

from __future__ import annotations

import json
import random
import sys
import timeit
from pathlib import Path
from typing import Any

try:
    from canaryconf.downward import format_map, parse_map
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from canaryconf.downward import format_map, parse_map

LIMIT = 256 * 1024  # bytes of keys + values, the Kubernetes annotation limit
TARGET_RATIO = 2.0  # parse_map time / json.loads time must not exceed this
REPEAT = 7


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def _json_document(rng: random.Random, index: int) -> str:
    doc = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"shop-{index}", "labels": {"app": "shop", "tier": "web"}},
        "spec": {
            "replicas": rng.randint(1, 9),
            "template": {"containers": [{"name": "web", "image": f"shop:{index}.0"}]},
            "ratio": round(rng.random(), 3),
        },
    }
    return json.dumps(doc, indent=1 if index % 2 else None) + "\n"


_UNICODE_BITS = [
    "café ",
    "数据 ",
    "Привет ",
    "مرحبا ",
    "😀",
    "\u200b",
    "\u00a0",
    "\t",
    "\x00",
    "\x1b",
    "\U0001d173",
    "\ufeff",
    "\\",
    '"',
    "=#",
]


def _value(rng: random.Random, kind: str, index: int) -> str:
    if kind == "plain":
        return f"https://example.com/{index}?q=" + "".join(
            rng.choices("abcdefghijklmnopqrstuvwxyz0123456789-_.", k=rng.randint(20, 300))
        )
    if kind == "json":
        return _json_document(rng, index)
    return "".join(
        rng.choice(_UNICODE_BITS) if rng.random() < 0.3 else "word "
        for _ in range(rng.randint(10, 120))
    )


def build_map(kind: str, seed: int = 1) -> dict[str, str]:
    """A map whose keys + values take just under 256 KiB of UTF-8.

    ``kind`` is ``"mixed"`` (plain, JSON and non-ASCII/escaped values) or ``"ascii"``.
    """
    rng = random.Random(seed)
    mapping: dict[str, str] = {
        "kubernetes.io/config.seen": "2026-11-26T10:00:00.123456789Z",
        "kubernetes.io/config.source": "api",
    }
    total = sum(_utf8_len(k) + _utf8_len(v) for k, v in mapping.items())
    kinds = ["plain"] if kind == "ascii" else ["plain", "json", "json", "unicode"]
    index = 0
    while True:
        value_kind = kinds[index % len(kinds)]
        key = f"example.com/{value_kind}-{index:05d}"
        value = _value(rng, value_kind, index)
        size = _utf8_len(key) + _utf8_len(value)
        if total + size > LIMIT:
            break
        mapping[key] = value
        total += size
        index += 1
    return mapping


def _best(func: Any, number: int) -> float:
    """Best time of one call, in seconds."""
    return min(timeit.repeat(func, number=number, repeat=REPEAT)) / number


def measure(name: str, mapping: dict[str, str]) -> dict[str, Any]:
    text = format_map(mapping)
    document = json.dumps(mapping)
    assert parse_map(text) == mapping
    assert json.loads(document) == mapping
    number = 20
    parse_time = _best(lambda: parse_map(text), number)
    json_time = _best(lambda: json.loads(document), number)
    ratio = parse_time / json_time
    return {
        "name": name,
        "entries": len(mapping),
        "file_bytes": _utf8_len(text),
        "json_bytes": _utf8_len(document),
        "parse_map_ms": parse_time * 1000,
        "json_loads_ms": json_time * 1000,
        "ratio": ratio,
        "target": TARGET_RATIO,
        "passed": ratio <= TARGET_RATIO,
    }


def run() -> list[dict[str, Any]]:
    """Measure both maps; one row (a dict) per map."""
    return [measure("mixed", build_map("mixed")), measure("ascii", build_map("ascii"))]


def main() -> int:
    rows = run()
    print(f"parse_map vs json.loads, best of {REPEAT} (target: parse <= {TARGET_RATIO:g} x json)")
    header = (
        f"{'map':<6} {'entries':>7} {'file KiB':>9} {'parse_map ms':>13} "
        f"{'json.loads ms':>14} {'ratio':>6}  result"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['name']:<6} {row['entries']:>7} {row['file_bytes'] / 1024:>9.1f} "
            f"{row['parse_map_ms']:>13.3f} {row['json_loads_ms']:>14.3f} "
            f"{row['ratio']:>6.2f}  {'PASS' if row['passed'] else 'FAIL'}"
        )
    return 0 if all(row["passed"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
