"""Benchmark ``canaryconf.downward.parse_map`` against ``json.loads`` of the same map.

256 KiB is the most the Kubernetes API allows for all annotations of a pod together (keys +
values), so it is the largest annotation file a kubelet can write. Four cases are measured:

* ``ascii``: 256 KiB of plain ASCII values only (no escapes at all). Target: parse time
  <= 1.5 x json time.
* ``mixed``: 256 KiB of mostly plain values and JSON documents (escaped quotes, ``\\n``), and
  some values of non-ASCII text or with control and invisible characters (``\\x1b``,
  ``\\u200b``, ``\\U000e0001``...): one entry in eight. Target: parse time <= 2 x json time.
* ``small``: what a typical pod carries, parsed on every reload: 20 annotations (one of them
  a 1 KB JSON document of feature flags) and 10 labels, two files. No target: the ratio is
  reported, as the per-reload cost.
* ``escapes``: a stress case without a target, 256 KiB of values full of the escapes JSON
  does not share with Go.

Each map is rendered with ``format_map`` and the file parsed with ``parse_map``, against
``json.loads`` of a JSON document of the same map written as Go's ``encoding/json`` writes
it: non-ASCII characters literal (``json.dumps(map, ensure_ascii=False)``), not as ``\\u``
escapes. The ratio that decides a target is taken on ``str`` input; the same two are also
timed on bytes (as read from disk; the library parses bytes), for information.

Run: ``python benchmarks/bench_parse.py [--quick]``. ``run()`` returns the rows for other
scripts.
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
# parse_map time / json.loads time must not exceed these (None: reported, no target).
TARGETS: dict[str, float | None] = {"ascii": 1.5, "mixed": 2.0, "small": None, "escapes": None}
REPEAT = 15
# Calls per timing: a 256 KiB parse takes about a millisecond, a small one microseconds.
NUMBER = {"ascii": 10, "mixed": 10, "small": 2000, "escapes": 10}


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


_FLAG_NAMES = [
    *("checkout", "search", "recommendations", "dark-mode", "payments-v2", "reviews"),
    *("wishlist", "coupons", "gift-cards", "loyalty", "chat", "tracking"),
    *("free-shipping", "banner", "quick-buy"),
]


def _flags_document() -> str:
    """A feature-flag document of about 1 KB, as a team would put in one annotation."""
    flags: dict[str, dict[str, Any]] = {
        f"feature-{name}": {"enabled": index % 2 == 0, "ratio": round(index / 16, 3)}
        for index, name in enumerate(_FLAG_NAMES)
    }
    flags["feature-checkout"]["segments"] = ["beta-testers", "employees", "eu-west"]
    return json.dumps(flags, indent=1)


def build_small() -> tuple[dict[str, str], dict[str, str]]:
    """The ``small`` case: (annotations, labels) of a typical canary pod, 20 annotations
    (one a 1 KB JSON document of flags, one with non-ASCII text) and 10 labels."""
    prefix = "canary.example.com/"
    annotations = {
        "kubernetes.io/config.seen": "2026-11-26T10:00:00.123456789Z",
        "kubernetes.io/config.source": "api",
        "kubectl.kubernetes.io/restartedAt": "2026-11-26T09:58:12Z",
        "kubectl.kubernetes.io/default-container": "web",
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9090",
        "prometheus.io/path": "/metrics",
        "rollouts.argoproj.io/revision": "17",
        "rollouts.argoproj.io/canary-weight": "25",
        "cluster-autoscaler.kubernetes.io/safe-to-evict": "true",
        "team.example.com/owner": "Zoë Müller <zoe@example.com>",
        "team.example.com/oncall": "#shop-oncall",
        f"{prefix}db-url": "postgres://canary-db.shop.svc:5432/app?sslmode=require",
        f"{prefix}flags": _flags_document(),
        f"{prefix}max-connections": "64",
        f"{prefix}timeout-seconds": "2.5",
        f"{prefix}log-level": "debug",
        f"{prefix}new-checkout": "true",
        f"{prefix}allowed-hosts": '["shop.example.com", "canary.shop.example.com"]',
        f"{prefix}traffic-ratio": "0.25",
    }
    labels = {
        "app": "shop",
        "app.kubernetes.io/name": "shop",
        "app.kubernetes.io/instance": "shop-prod",
        "app.kubernetes.io/version": "4.12.0",
        "app.kubernetes.io/component": "web",
        "app.kubernetes.io/part-of": "boutique",
        "pod-template-hash": "6d8f7c9b5",
        "rollouts-pod-template-hash": "7f9c8d6b4",
        "role": "canary",
        "tier": "frontend",
    }
    assert len(annotations) == 20 and len(labels) == 10
    return annotations, labels


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


def json_document(mapping: dict[str, str]) -> str:
    """The JSON document of ``mapping`` as Go's ``encoding/json`` writes it: non-ASCII
    characters as they are, not ``\\u`` escapes (``json.loads`` reads those more slowly)."""
    return json.dumps(mapping, ensure_ascii=False)


def _call_all(func: Any, items: list[Any]) -> Any:
    """``func`` on each of ``items``: one loop whatever the number of files of a case."""
    if len(items) == 1:
        item = items[0]
        return lambda: func(item)
    return lambda: [func(item) for item in items]


def measure(
    name: str, maps: list[dict[str, str]], repeat: int = REPEAT, number: int = 10
) -> dict[str, Any]:
    """Time ``parse_map`` on the files of ``maps`` (one file each) and ``json.loads`` on
    their JSON documents, given as ``str`` (the ratio decides the target) and as UTF-8 bytes
    (for information)."""
    texts = [format_map(mapping) for mapping in maps]
    documents = [json_document(mapping) for mapping in maps]
    file_bytes = [text.encode("utf-8") for text in texts]
    document_bytes = [document.encode("utf-8") for document in documents]
    for text, data, document, mapping in zip(texts, file_bytes, documents, maps, strict=True):
        assert parse_map(text) == parse_map(data) == mapping
        assert json.loads(document) == json.loads(document.encode("utf-8")) == mapping
    parse_time, json_time, parse_bytes_time, json_bytes_time = _best_interleaved(
        [
            _call_all(parse_map, texts),
            _call_all(json.loads, documents),
            _call_all(parse_map, file_bytes),
            _call_all(json.loads, document_bytes),
        ],
        number=number,
        repeat=repeat,
    )
    ratio = parse_time / json_time
    target = TARGETS[name]
    return {
        "name": name,
        "entries": sum(map(len, maps)),
        "file_kib": round(sum(map(len, file_bytes)) / 1024, 1),
        "parse_map_ms": parse_time * 1000,
        "json_loads_ms": json_time * 1000,
        "ratio": ratio,
        "target": target,
        "passed": None if target is None else ratio <= target,
        "bytes_parse_map_ms": parse_bytes_time * 1000,
        "bytes_json_loads_ms": json_bytes_time * 1000,
        "bytes_ratio": parse_bytes_time / json_bytes_time,
    }


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Measure the cases; one row (a dict) per case. ``small`` and ``escapes`` have no
    target (their ``target`` and ``passed`` are ``None``). ``quick``: fewer repeats."""
    repeat = 5 if quick else REPEAT
    cases: list[tuple[str, list[dict[str, str]]]] = [
        ("ascii", [build_map("ascii")]),
        ("mixed", [build_map("mixed")]),
        ("small", list(build_small())),
        ("escapes", [build_map("escapes")]),
    ]
    return [measure(name, maps, repeat, NUMBER[name]) for name, maps in cases]


def _verdict(passed: bool | None) -> str:
    if passed is None:
        return "-"
    return "PASS" if passed else "FAIL"


def main() -> int:
    quick = "--quick" in sys.argv[1:]
    rows = run(quick=quick)
    print(
        "parse_map vs json.loads(json.dumps(map, ensure_ascii=False)), CPU time, "
        f"best of {5 if quick else REPEAT}"
    )
    header = (
        f"{'case':<8} {'entries':>7} {'file KiB':>8} {'parse_map ms':>12} {'json.loads ms':>13} "
        f"{'ratio':>5} {'target':>6}  {'result':<6}  {'as bytes: parse / json ms':>25} "
        f"{'ratio':>5}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        target = "-" if row["target"] is None else f"{row['target']:g}"
        print(
            f"{row['name']:<8} {row['entries']:>7} {row['file_kib']:>8.1f} "
            f"{row['parse_map_ms']:>12.4f} {row['json_loads_ms']:>13.4f} {row['ratio']:>5.2f} "
            f"{target:>6}  {_verdict(row['passed']):<6}  "
            f"{row['bytes_parse_map_ms']:>12.4f} / {row['bytes_json_loads_ms']:<10.4f} "
            f"{row['bytes_ratio']:>5.2f}"
        )
    print(
        "ascii, mixed, escapes: 256 KiB of keys + values; small: 20 annotations (a 1 KB JSON "
        "flags document) + 10 labels, two files, the per-reload cost (no target); escapes: "
        "stress case, every value full of escapes JSON lacks (no target)"
    )
    return 0 if all(row["passed"] is not False for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
