"""Benchmark ``canaryconf.downward.parse_map`` against ``json.loads`` on 256 KiB maps.

256 KiB is the most the Kubernetes API allows for all annotations of a pod together (keys +
values), so it is the largest annotation file a kubelet can write. Three maps are measured:

* ``mixed``: mostly plain values and JSON documents (escaped quotes, ``\\n``), and some values
  of non-ASCII text or with control and invisible characters (``\\x1b``, ``\\u200b``,
  ``\\U000e0001``...): one entry in eight;
* ``ascii``: plain ASCII values only (no escapes at all);
* ``escapes``: a stress case without a target, every value full of the escapes JSON does not
  share with Go.

Each map is rendered with ``format_map`` and the file parsed with ``parse_map``, against
``json.loads(json.dumps(map))``. Target: ``parse_map`` at least half as fast as ``json.loads``
(parse time <= 2 x json time), both given ``str``. The same two are also timed on bytes (as
read from disk; the library parses bytes), for information.

Run: ``python benchmarks/bench_parse.py``. ``run()`` returns the rows for other scripts.
"""

from __future__ import annotations

import json
import random
import sys
import time
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
REPEAT = 15


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


# Human text: non-ASCII words and the escapes JSON shares with Go (\n \t \" \\).
_TEXT_BITS = ["café", "Grüße", "数据", "Привет", "مرحبا", "😀", "naïve", "\n", "\t", '"', "\\"]
# Characters Go writes with escapes JSON does not have (\x1b \a \v \U...) or as \u.
_EXOTIC_BITS = [
    "\x00",
    "\x1b",
    "\a",
    "\v",
    "\x7f",
    "\u200b",
    "\u200e",
    "\u00a0",
    "\ufeff",
    "\U0001d173",
    "\U000e0001",
    "😀",
    "é",
    "\\",
    '"',
]


def _value(rng: random.Random, kind: str, index: int) -> str:
    if kind == "plain":
        return f"https://example.com/{index}?q=" + "".join(
            rng.choices("abcdefghijklmnopqrstuvwxyz0123456789-_.", k=rng.randint(20, 300))
        )
    if kind == "json":
        return _json_document(rng, index)
    bits = _TEXT_BITS if kind == "text" else _EXOTIC_BITS
    return "".join(
        rng.choice(bits) if rng.random() < 0.3 else "word " for _ in range(rng.randint(10, 120))
    )


# Which kind of value each entry gets, in turn.
MIXES = {
    # Mostly plain values (URLs, hashes) and JSON documents (compact and indented: \" and \n
    # escapes), and some values of non-ASCII text or with control or invisible characters
    # (one entry in 8; about 15% of the bytes).
    "mixed": ["plain", "json"] * 7 + ["text", "exotic"],
    "ascii": ["plain"],
    # Stress case, not a target: every value full of escapes JSON does not share with Go.
    "escapes": ["exotic"],
}


def build_map(kind: str, seed: int = 1) -> dict[str, str]:
    """A map whose keys + values take just under 256 KiB of UTF-8.

    ``kind`` names a mix of value kinds: ``"mixed"``, ``"ascii"`` or ``"escapes"``.
    """
    rng = random.Random(seed)
    mapping: dict[str, str] = {
        "kubernetes.io/config.seen": "2026-11-26T10:00:00.123456789Z",
        "kubernetes.io/config.source": "api",
    }
    total = sum(_utf8_len(k) + _utf8_len(v) for k, v in mapping.items())
    kinds = MIXES[kind]
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


def _best_interleaved(funcs: list[Any], number: int, repeat: int) -> list[float]:
    """Best time of one call of each function, in seconds.

    CPU time of this process (``time.process_time``), not wall time: other processes on a
    busy machine then disturb the result less. The repeats of the functions alternate, so a
    load that changes during the run slows them alike and their ratio stays meaningful.
    """
    best = [float("inf")] * len(funcs)
    for _ in range(repeat):
        for index, func in enumerate(funcs):
            timer = timeit.Timer(func, timer=time.process_time)
            best[index] = min(best[index], timer.timeit(number=number) / number)
    return best


def measure(name: str, mapping: dict[str, str], repeat: int = REPEAT) -> dict[str, Any]:
    """Time ``parse_map`` on the file and ``json.loads`` on the JSON document of ``mapping``,
    given as ``str`` (the ratio decides the target) and as UTF-8 bytes (for information)."""
    text = format_map(mapping)
    document = json.dumps(mapping)
    file_bytes = text.encode("utf-8")
    document_bytes = document.encode("utf-8")
    assert parse_map(text) == parse_map(file_bytes) == mapping
    assert json.loads(document) == json.loads(document_bytes) == mapping
    parse_time, json_time, parse_bytes_time, json_bytes_time = _best_interleaved(
        [
            lambda: parse_map(text),
            lambda: json.loads(document),
            lambda: parse_map(file_bytes),
            lambda: json.loads(document_bytes),
        ],
        number=10,
        repeat=repeat,
    )
    ratio = parse_time / json_time
    return {
        "name": name,
        "entries": len(mapping),
        "file_kib": round(len(file_bytes) / 1024, 1),
        "parse_map_ms": parse_time * 1000,
        "json_loads_ms": json_time * 1000,
        "ratio": ratio,
        "target": TARGET_RATIO,
        "passed": ratio <= TARGET_RATIO,
        "bytes_parse_map_ms": parse_bytes_time * 1000,
        "bytes_json_loads_ms": json_bytes_time * 1000,
        "bytes_ratio": parse_bytes_time / json_bytes_time,
    }


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Measure the maps; one row (a dict) per map. The ``escapes`` row is a stress case
    without a target (its ``target`` and ``passed`` are ``None``). ``quick``: fewer repeats."""
    repeat = 5 if quick else REPEAT
    rows = [measure(name, build_map(name), repeat) for name in ("mixed", "ascii", "escapes")]
    rows[2]["target"] = rows[2]["passed"] = None
    return rows


def _verdict(passed: bool | None) -> str:
    if passed is None:
        return "-"
    return "PASS" if passed else "FAIL"


def main() -> int:
    rows = run()
    print(
        f"parse_map vs json.loads(json.dumps(map)), 256 KiB maps, CPU time, best of {REPEAT}; "
        f"target: parse <= {TARGET_RATIO:g} x json"
    )
    header = (
        f"{'map':<8} {'entries':>7} {'file KiB':>8} {'parse_map ms':>12} {'json.loads ms':>13} "
        f"{'ratio':>5}  {'result':<6}  {'as bytes: parse / json ms':>25} {'ratio':>5}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['name']:<8} {row['entries']:>7} {row['file_kib']:>8.1f} "
            f"{row['parse_map_ms']:>12.3f} {row['json_loads_ms']:>13.3f} {row['ratio']:>5.2f}  "
            f"{_verdict(row['passed']):<6}  "
            f"{row['bytes_parse_map_ms']:>12.3f} / {row['bytes_json_loads_ms']:<10.3f} "
            f"{row['bytes_ratio']:>5.2f}"
        )
    print("escapes: stress case, every value full of escapes JSON lacks (no target)")
    return 0 if all(row["passed"] is not False for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
