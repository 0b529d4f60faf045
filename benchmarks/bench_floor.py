"""Benchmark canaryconf against the floor (the least a program can do) and against peers.

A reload runs in every worker of every pod of a fleet, so its cost multiplies. This module
measures what canaryconf costs on top of the least work that a correct watcher must do,
and what the usual alternatives cost, on one realistic workload:

- **volumes** (written byte for byte as the kubelet writes them, by
  ``canaryconf.testing.KubeletWriter`` in a writer process of its own): a podinfo
  (downwardAPI) volume with 10 labels and 20 annotations, one of them a 1 KiB JSON flags
  document; a ConfigMap directory with 2 keys; a Secret directory with 1 key;
- **settings**: 15 fields reading them (5 labels, 7 annotations including the flags
  document as ``dict[str, Flag]``, the two ConfigMap keys, one as a nested model, and a
  ``SecretStr`` from the Secret);
- **swaps**: each swap writes a new podinfo generation (new annotations and the sequence
  label); every 5th one first writes a new ConfigMap generation too. Every swap is a real
  change that must be applied. Tearing is detectable: the sequence number is in a label
  *and* in an annotation (two files of the podinfo volume), the ConfigMap revision is in
  both of its keys; a delivered settings object whose two copies differ mixed two
  generations of one volume (``torn``).

**Subjects**, each in a process of its own (``sys.executable``), each watching its own copy
of the volumes, reporting each delivered settings object (sequence numbers seen,
``perf_counter()`` at handler entry, in-process work) as a JSON line on stdout:

1. ``floor``: written here, without canaryconf: raw inotify through ctypes
   (``inotify_init1``, ``inotify_add_watch(dir, IN_MOVED_TO)`` on each volume directory,
   ``select`` + ``read``); on the ``..data`` rename it ``readlink``\\ s ``..data``, reads the
   needed files of that generation only, parses the map format minimally (lines
   ``key="value"``, ``json.loads`` for the value), builds a plain pydantic ``BaseModel``
   with the same 15 fields and types and calls a callback. Its *work* is from the wake-up
   (``select`` returned) to the callback.
2. ``canaryconf thread``: ``live(Settings).start()``, an ``@live.on_change`` handler.
3. ``canaryconf async``: ``async with live.watching():`` in ``asyncio.run``.
   For both, *work* is ``ReloadResult.duration`` (read + parse + validate + compare +
   publish, the in-process reload step); ``wake->handler`` is from the moment canaryconf's
   inotify descriptor was read (``canaryconf._inotify.read_events`` is wrapped in the
   subject process to see it; "-" when that internal is gone) to the handler.
4. ``watchfiles + BaseSettings``: ``watchfiles.watch(*dirs)`` (defaults: recursive,
   debounce 1600 ms) with ``step=50`` (the default) and ``step=10``; each batch
   re-instantiates a pydantic-settings ``BaseSettings`` whose custom source reads the files
   itself through the top-level names (``podinfo/annotations``), as code written without
   canaryconf does.
5. ``watchdog``: an ``Observer`` on each directory; *every* event re-reads the files through
   the top-level names and builds the plain model: ``torn`` counts mixed generations,
   ``duplicates`` deliveries equal to the previous one. Skipped, with a note, when
   ``watchdog`` is not installed (``pip install --group bench``).
6. ``polling 1 s``: ``readlink ..data`` of each directory every second; on a change it reads
   like the floor. It takes about 0.5 s per swap, so it is written only every 4th swap (the
   table says how many swaps it had), each after a random 0-1 s pause (else its swaps lock
   in phase with its poll timer).

**1. Latency** (``section: floor latency``). A writer process does the kubelet's sequence
and takes ``time.perf_counter()`` right before and right after the rename onto ``..data``
(it wraps ``os.rename`` in that process only; ``perf_counter`` is CLOCK_MONOTONIC on Linux,
one clock for every process). Latencies are measured from the timestamp *before* the
call: the rename takes effect inside it, and on a 2-core machine the watcher it wakes
often preempts the writer before the call returns, so the timestamp after it can come
later than the watcher's handler (the floor's latencies came out negative that way). The
notes give the span between the two timestamps. Subjects are interleaved swap by swap, in
a shuffled order: swap *i*
writes subject A's volumes and waits (at most 2 s, 2.5 s for polling, else ``missed``) for
A's delivery of swap *i*, then waits until A has been silent for 5 ms (at most 100 ms: the
trailing events of a peer are not charged to the next subject), then a random 0-20 ms
pause, then B's, and so on. 3 rounds x 100 swaps (quick: 3 x 30) after 3 warm-up swaps. For
each subject: the p50 and p99 of each round, shown as ``min / median`` over the rounds, of
the latency (rename of the swap's last ``..data`` to handler entry) and of the in-process
work; for canaryconf the ratio of the medians to the floor's. Target (both canaryconf
watchers): p50 <= 1.5 x floor p50, p99 <= 2 x floor p99.

**2. Wake-ups, reloads, tearing, idle CPU** (``section: floor events``), over the timed
rounds, per kubelet swap (one per ``..data`` rename: 1 per swap, 2 when the ConfigMap
changed too): ``wake-ups`` (floor: ``select`` returns; canaryconf: reads of its inotify
descriptors; watchfiles: batches; watchdog: events; polling: polls), ``reloads`` (times the
volumes were read: canaryconf's ``ReloadResult``\\ s other than ``same-generation``, which
read nothing), ``deliveries`` (handler calls), ``duplicates``, ``torn`` and ``read errors``
(a naive read that failed mid-swap). ``idle CPU``: every subject then idles for 5 s
(quick: 3 s) and reports its ``getrusage`` CPU as % of a core. Target (canaryconf): 1
wake-up and <= 1 reload per kubelet swap, no torn version. ``where the time goes`` splits
canaryconf's latency: rename -> wake-up (kernel + scheduling), wake-up -> handler, of which
the reload step (``ReloadResult.duration``) and the rest (the hand-over from the event
loop to the reload, and the dispatch).

**3. Scale** (each with the floor beside it):

a. ``annotation size``: one annotation grown to 1, 16 and 248 KiB (248 + the rest stays
   under the Kubernetes cap of 256 KiB for all annotations): the flags document (read and
   validated), then ``kubectl.kubernetes.io/last-applied-configuration`` (not read by any
   field: the usual big annotation). Floor and canaryconf thread, a process each,
   interleaved; 40 swaps (quick: 12). Latency and work p50, ratio.
b. ``fields``: 10, 100 and 500 annotation fields (str/int/float/bool in turn), measured in
   this process: each iteration writes a generation changing every value, then times
   canaryconf's ``live.reload()`` (its ``ReloadResult.duration``) and the floor's read +
   parse + ``model_validate`` of the plain model, alternately first; 200 iterations (quick:
   60) after 10 warm-up. Median work, ratio, and the cost per field in us (slope from 10
   fields). Target: canaryconf at 500 fields <= 5 x floor.
c. ``instances``: 1, 10, 100 LiveSettings in one process. *Distinct*: each on its own three
   directories; each swap writes a random instance's volumes; latency to that instance's
   handler (the floor: one program with one inotify descriptor serving as many consumers).
   ``inotify fds`` and ``warnings`` show canaryconf's descriptors and any fallback (Linux
   allows 128 inotify instances per user by default, shared with every other process of
   the user: ``in use before`` counts those held before the case started). *Shared*: all
   instances on ONE set of volumes; CPU (``getrusage`` of the process, measured by itself
   around the swaps) per swap until all N handlers ran, against a floor that reads and
   parses once and builds N models.
   ``growth`` is CPU(N) / CPU(1): sharing the read should keep it far below N.
d. ``processes``: 1, 4, 16 worker processes on one set of volumes (canaryconf thread
   watcher, one LiveSettings each) against as many floor programs on another, swaps
   interleaved; each worker measures its own ``getrusage`` CPU from before the first swap
   to after the last and reports it; total CPU per swap = sum / swaps. Target at 16
   processes: canaryconf <= 2 x floor.

Run: ``python benchmarks/bench_floor.py [--quick] [--json rows.json] [--output FILE.md]
[--only latency|size|fields|instances|processes] [--rounds N] [--swaps N]``.
``run(quick=...)`` returns the rows (benchmarks/run_all.py picks it up). Every child
process is bounded (its own lifetime cap, timeouts on every wait) and is stopped on exit,
on errors and on Ctrl-C (children ignore SIGINT and end when their stdin closes).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import math
import os
import queue
import random
import resource
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, SecretStr, create_model
from run_all import fmt as _fmt  # one way to show a figure across the benchmarks

BENCH_DIR = Path(__file__).resolve().parent
SRC_DIR = BENCH_DIR.parent / "src"
if find_spec("canaryconf") is None:  # running from a checkout without installing
    sys.path.insert(0, str(SRC_DIR))

# canaryconf is imported only inside functions: the floor's process never imports it.

P50_RATIO_TARGET = 1.5
P99_RATIO_TARGET = 2.0
FIELDS_RATIO_TARGET = 5.0
PROCESSES_RATIO_TARGET = 2.0

WARMUP_SWAPS = 3
WAIT_TIMEOUT = 2.0  # longest wait for one delivery
POLL_INTERVAL = 1.0
POLL_EVERY = 4  # the polling subject gets every 4th swap
PAUSE_MAX = 0.02  # a uniform 0-20 ms pause before each write
QUIET_GAP = 0.005  # after a delivery, wait until the subject is silent this long...
QUIET_LIMIT = 0.1  # ...but no longer than this
START_TIMEOUT = 180.0  # a child's start-up (16 processes importing pydantic on 2 cores)
REQUEST_TIMEOUT = 60.0
CHILD_LIFETIME = 3600.0  # a child ends itself after this, whatever happens
CM_EVERY = 5  # the ConfigMap changes every 5th swap

ROLES = ("podinfo", "config", "secret")
DATA_LINK = "..data"
SEQ_KEY = "bench.example.com/seq"
FLAGS_KEY = "bench.example.com/flags"
FILLER_KEY = "kubectl.kubernetes.io/last-applied-configuration"
IN_MOVED_TO = 0x00000080
IN_CLOEXEC = 0o2000000
_EVENT = struct.Struct("iIII")

Progress = Callable[[str], None]


# -- the workload -------------------------------------------------------------------------


class Flag(BaseModel):
    enabled: bool
    rollout: int
    variant: str


class Tuning(BaseModel):
    revision: int
    batch_size: int
    timeout_ms: int


class FieldSpec(NamedTuple):
    """One settings field: its name and type, and where it reads from."""

    name: str
    type: Any
    source: str  # label | annotation | configmap | secret
    key: str
    is_json: bool = False


STANDARD_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("app", str, "label", "app"),
    FieldSpec("role", str, "label", "role"),
    FieldSpec("version", str, "label", "version"),
    FieldSpec("team", str, "label", "team"),
    FieldSpec("label_seq", int, "label", SEQ_KEY),
    FieldSpec("seq", int, "annotation", SEQ_KEY),
    FieldSpec("db_url", str, "annotation", "bench.example.com/db-url"),
    FieldSpec("flags", dict[str, Flag], "annotation", FLAGS_KEY, True),
    FieldSpec("timeout_ms", int, "annotation", "bench.example.com/timeout-ms"),
    FieldSpec("retries", int, "annotation", "bench.example.com/retries"),
    FieldSpec("sample_rate", float, "annotation", "bench.example.com/sample-rate"),
    FieldSpec("maintenance", bool, "annotation", "bench.example.com/maintenance"),
    FieldSpec("cm_revision", int, "configmap", "revision"),
    FieldSpec("tuning", Tuning, "configmap", "tuning.json", True),
    FieldSpec("api_key", SecretStr, "secret", "api-key"),
)
N_FIELD_TYPES = (str, int, float, bool)


def n_field_specs(count: int) -> tuple[FieldSpec, ...]:
    """``count`` annotation fields f000, f001... of types str, int, float, bool in turn."""
    return tuple(
        FieldSpec(f"f{i:03d}", N_FIELD_TYPES[i % 4], "annotation", f"bench.example.com/f{i:03d}")
        for i in range(count)
    )


def n_field_value(i: int, seq: int) -> str:
    kind = N_FIELD_TYPES[i % 4]
    if kind is str:
        return f"value-{i}-{seq}"
    if kind is int:
        return str(i * 1000 + seq)
    if kind is float:
        return f"{seq}.{i:03d}"
    return "true" if (seq + i) % 2 else "false"


def cm_revision(seq: int) -> int:
    return seq // CM_EVERY


def flags_document(seq: int, size: int) -> str:
    """A JSON flags document of about ``size`` bytes whose rollout figures move with ``seq``."""
    flags: dict[str, dict[str, Any]] = {}
    length = 2
    i = 0
    while length < size:
        entry = {"enabled": (seq + i) % 3 != 0, "rollout": (seq + 7 * i) % 101}
        entry["variant"] = ("blue", "green", "canary")[(seq + i) % 3]
        name = f"flag-{i:04d}"
        flags[name] = entry
        length += len(json.dumps({name: entry})) - 1
        i += 1
    return json.dumps(flags, separators=(",", ":"))


_FILLER: dict[int, str] = {}


def filler_document(size: int) -> str:
    """A ``kubectl apply`` record of a pod spec of about ``size`` bytes (constant)."""
    if size not in _FILLER:
        containers = []
        i = 0
        doc = ""
        while len(doc) < size:
            containers.append(
                {
                    "name": f"c{i}",
                    "image": f"registry.example.com/team/app:{i}",
                    "env": [{"name": f"VAR_{i}_{j}", "value": f"value {j}"} for j in range(4)],
                }
            )
            i += 1
            spec = {"apiVersion": "v1", "kind": "Pod", "spec": {"containers": containers}}
            doc = json.dumps(spec, separators=(",", ":"))
        _FILLER[size] = doc[:size] if size < 256 else doc
    return _FILLER[size]


def podinfo_payload(seq: int, opts: dict[str, Any]) -> dict[str, str | bytes]:
    """The podinfo volume of swap ``seq``: 10 labels, 20 annotations (see the docstring).
    ``opts``: ``flags_bytes`` (default 1024), ``filler_bytes`` (default 200), or
    ``n_fields`` for the fields scale (then only those annotations and the sequence)."""
    from canaryconf.testing import pod_files

    labels = {
        "app": "shop",
        "role": "canary",
        "version": "v2-3-1",
        "team": "payments",
        "tier": "backend",
        "component": "api",
        "rollouts-pod-template-hash": "6d8f7c9b5",
        "app.kubernetes.io/part-of": "shop",
        "app.kubernetes.io/managed-by": "argo-rollouts",
        SEQ_KEY: str(seq),
    }
    n_fields = int(opts.get("n_fields", 0))
    if n_fields:
        annotations = {
            f"bench.example.com/f{i:03d}": n_field_value(i, seq) for i in range(n_fields)
        }
        annotations[SEQ_KEY] = str(seq)
        return pod_files(labels=labels, annotations=annotations)
    annotations = {
        SEQ_KEY: str(seq),
        "bench.example.com/db-url": f"postgres://db-{seq % 3}.example.com:5432/shop",
        FLAGS_KEY: flags_document(seq, int(opts.get("flags_bytes", 1024))),
        "bench.example.com/timeout-ms": str(1000 + (seq % 10) * 100),
        "bench.example.com/retries": str(3 + seq % 3),
        "bench.example.com/sample-rate": str((seq % 10) / 10),
        "bench.example.com/maintenance": "true" if seq % 7 == 0 else "false",
        "bench.example.com/owner": "team-payments@example.com",
        "bench.example.com/runbook": "https://runbooks.example.com/shop/api",
        "bench.example.com/note": 'a "quoted" note\nwith a tab\there and ünïcode',
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9090",
        "prometheus.io/path": "/metrics",
        "deployment.kubernetes.io/revision": "42",
        "kubectl.kubernetes.io/default-container": "app",
        "sidecar.istio.io/inject": "false",
        "cluster-autoscaler.kubernetes.io/safe-to-evict": "true",
        FILLER_KEY: filler_document(int(opts.get("filler_bytes", 200))),
    }
    return pod_files(labels=labels, annotations=annotations)


def config_payload(revision: int) -> dict[str, str | bytes]:
    tuning = {"revision": revision, "batch_size": 100 + revision % 7, "timeout_ms": 250}
    return {"revision": str(revision), "tuning.json": json.dumps(tuning)}


def secret_payload() -> dict[str, str | bytes]:
    return {"api-key": "sk-bench-0123456789abcdef0123456789abcdef"}


def role_dirs(root: str) -> dict[str, str]:
    return {role: os.path.join(root, role) for role in ROLES}


def write_volumes(root: str) -> dict[str, str]:
    """Write the first generation of the three volumes under ``root`` from this process
    (a benchmark that swaps them from another process, or not at all); their directories."""
    from canaryconf.testing import KubeletWriter

    dirs = role_dirs(root)
    KubeletWriter(dirs["podinfo"]).write(podinfo_payload(0, {}))
    KubeletWriter(dirs["config"]).write(config_payload(0))
    KubeletWriter(dirs["secret"]).write(secret_payload())
    return dirs


# -- the floor's reading (no canaryconf) --------------------------------------------------


def parse_map_min(text: str) -> dict[str, str]:
    """The kubelet's label/annotation format, minimally: a ``key="value"`` per line (a
    value's newlines are escaped), the value unquoted by ``json.loads``. Enough for the
    floor's payload; canaryconf's parser also takes Go's escapes that JSON lacks."""
    out: dict[str, str] = {}
    for line in text.split("\n"):
        if line:
            key, _, value = line.partition("=")
            out[key] = json.loads(value)
    return out


def needed_files(specs: Sequence[FieldSpec]) -> dict[str, list[str]]:
    """Per volume role, the files the fields read."""
    need: dict[str, list[str]] = {role: [] for role in ROLES}
    for spec in specs:
        if spec.source in ("label", "annotation"):
            need["podinfo"] = ["labels", "annotations"]
        else:
            role = "config" if spec.source == "configmap" else "secret"
            if spec.key not in need[role]:
                need[role].append(spec.key)
    return need


def read_generation(directory: str, names: Sequence[str]) -> dict[str, str]:
    """The files ``names`` of the generation ``..data`` points to, read through that one
    generation (resolved once); read again if it is removed under us."""
    for _attempt in range(50):
        generation = os.readlink(os.path.join(directory, DATA_LINK))
        base = os.path.join(directory, generation)
        try:
            files = {}
            for name in names:
                with open(os.path.join(base, name), "rb") as fh:
                    files[name] = fh.read().decode()
            return files
        except FileNotFoundError:
            continue
    raise RuntimeError(f"{directory}: generations kept moving")


def read_top_level(directory: str, names: Sequence[str]) -> dict[str, str]:
    """The files through the top-level names, one after the other: what naive code does
    (two files can come from two generations)."""
    files = {}
    for name in names:
        with open(os.path.join(directory, name), "rb") as fh:
            files[name] = fh.read().decode()
    return files


def parse_role(role: str, files: dict[str, str]) -> dict[str, Any]:
    if role == "podinfo":
        return {
            "labels": parse_map_min(files.get("labels", "")),
            "annotations": parse_map_min(files.get("annotations", "")),
        }
    return files


def values_from(specs: Sequence[FieldSpec], parsed: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Field values (JSON documents decoded) from the parsed volumes."""
    values: dict[str, Any] = {}
    for spec in specs:
        if spec.source == "label":
            raw = parsed["podinfo"]["labels"][spec.key]
        elif spec.source == "annotation":
            raw = parsed["podinfo"]["annotations"][spec.key]
        elif spec.source == "configmap":
            raw = parsed["config"][spec.key]
        else:
            raw = parsed["secret"][spec.key]
        values[spec.name] = json.loads(raw) if spec.is_json else raw
    return values


def plain_model(specs: Sequence[FieldSpec], name: str = "FloorSettings") -> type[BaseModel]:
    """A plain frozen pydantic model with the same fields and types."""
    fields: dict[str, Any] = {spec.name: (spec.type, ...) for spec in specs}
    return create_model(name, __config__=ConfigDict(frozen=True), **fields)


def read_naive(dirs: dict[str, str], need: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    return {
        role: parse_role(role, read_top_level(dirs[role], need[role]))
        for role in ROLES
        if need[role]
    }


# -- settings classes that use canaryconf or pydantic-settings ----------------------------


def canary_class(root: str, specs: Sequence[FieldSpec]) -> type[Any]:
    """A CanarySettings class with ``specs`` reading the volumes under ``root``."""
    from canaryconf import CanaryConfigDict, CanarySettings, annotation, configmap, label, secret

    helpers = {"label": label, "annotation": annotation, "configmap": configmap, "secret": secret}
    dirs = role_dirs(root)
    sources = {spec.source for spec in specs}
    namespace: dict[str, Any] = {
        "__module__": __name__,
        "__annotations__": {spec.name: spec.type for spec in specs},
        "model_config": CanaryConfigDict(
            downward_api_dir=dirs["podinfo"],
            configmap_dirs=[dirs["config"]] if "configmap" in sources else [],
            secrets_dirs=[dirs["secret"]] if "secret" in sources else [],
        ),
    }
    for spec in specs:
        namespace[spec.name] = helpers[spec.source](spec.key)
    return type("BenchSettings", (CanarySettings,), namespace)


def peer_settings_class(root: str, specs: Sequence[FieldSpec]) -> type[Any]:
    """A pydantic-settings ``BaseSettings`` that reads the volume files itself, through
    their top-level names, from a custom source (environment variables first, as usual)."""
    from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

    dirs = role_dirs(root)
    need = needed_files(specs)

    class VolumeFiles(PydanticBaseSettingsSource):
        def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
            return None, field_name, False

        def __call__(self) -> dict[str, Any]:
            return values_from(specs, read_naive(dirs, need))

    def customise(
        cls: Any,
        settings_cls: Any,
        *,
        init_settings: Any,
        env_settings: Any,
        dotenv_settings: Any,
        file_secret_settings: Any,
    ) -> tuple[Any, ...]:
        return (init_settings, env_settings, VolumeFiles(settings_cls))

    namespace: dict[str, Any] = {
        "__module__": __name__,
        "__annotations__": {spec.name: spec.type for spec in specs},
        "model_config": SettingsConfigDict(frozen=True, env_prefix="BENCH_FLOOR_PEER_"),
        "settings_customise_sources": classmethod(customise),
    }
    return type("PeerSettings", (BaseSettings,), namespace)


# -- child processes: the subjects --------------------------------------------------------


class Emitter:
    """JSON lines on stdout (fd 1, unbuffered; each line is one ``write`` under 4 KiB,
    so lines from several threads never interleave)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def emit(self, obj: dict[str, Any]) -> None:
        data = (json.dumps(obj, separators=(",", ":"), default=str) + "\n").encode()
        with self.lock:
            os.write(1, data)


class Subject:
    """What every subject has: its consumers (one per root; a root listed twice is one
    volume shared by two consumers), counters, and the report of each delivery.

    ``mode`` ``each``: a line per delivery. ``all``: a line per sequence number once every
    consumer has delivered it (its ``t`` is the last handler's)."""

    def __init__(self, spec: dict[str, Any], out: Emitter) -> None:
        self.spec = spec
        self.out = out
        self.roots: list[str] = list(spec["roots"])
        self.mode: str = spec.get("mode", "each")
        self.specs = STANDARD_FIELDS
        self.counters: Counter[str] = Counter()
        self.extra: dict[str, Any] = {}
        self._pending_all: dict[int, tuple[set[int], float]] = {}
        self._lock = threading.Lock()

    def deliver(self, index: int, model: Any, t: float, work: float | None, **more: Any) -> None:
        """Report one delivered settings object (``t``: handler entry)."""
        self.counters["deliveries"] += 1
        seq = model.seq
        if self.mode == "all":
            with self._lock:
                seen, first = self._pending_all.get(seq, (set(), t))
                seen.add(index)
                if len(seen) < len(self.roots):
                    self._pending_all[seq] = (seen, first)
                    return
                self._pending_all.pop(seq, None)
            self.out.emit({"k": "a", "seq": seq, "t": t, "t0": first})
            return
        record = {
            "k": "d",
            "i": index,
            "seq": seq,
            "ls": model.label_seq,
            "cr": model.cm_revision,
            "tr": model.tuning.revision,
            "t": t,
            "w": work,
        }
        record.update(more)
        self.out.emit(record)

    def rebuild(self, t_wake: float, build: Callable[[], Any]) -> None:
        """A peer's reload after waking at ``t_wake``: build the settings whole and deliver
        them (a build that fails, reading a half-written volume, is counted)."""
        self.counters["wakeups"] += 1
        self.counters["reloads"] += 1
        try:
            model = build()
        except Exception:
            self.counters["read_errors"] += 1
            return
        t = time.perf_counter()
        self.deliver(0, model, t, t - t_wake)

    def stats(self) -> dict[str, Any]:
        return {**self.counters, **self.extra}

    def serve(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class FloorSubject(Subject):
    """Raw inotify via ctypes, one descriptor for every directory, ``select`` in the main
    thread; reads each changed volume once (shared by its consumers) and builds a plain
    model per consumer."""

    def __init__(self, spec: dict[str, Any], out: Emitter) -> None:
        super().__init__(spec, out)
        self.model = plain_model(self.specs)
        self.need = needed_files(self.specs)
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self.fd = libc.inotify_init1(IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.dir_role: dict[str, str] = {}
        self.users: dict[str, list[int]] = {}  # directory -> consumers reading it
        self.consumer_dirs: list[dict[str, str]] = []
        for index, root in enumerate(self.roots):
            dirs = role_dirs(root)
            self.consumer_dirs.append(dirs)
            for role, directory in dirs.items():
                if self.need[role]:
                    self.dir_role[directory] = role
                    self.users.setdefault(directory, []).append(index)
        self.wd_dir: dict[int, str] = {}
        for directory in self.dir_role:
            wd = libc.inotify_add_watch(self.fd, os.fsencode(directory), IN_MOVED_TO)
            if wd < 0:
                raise OSError(ctypes.get_errno(), f"inotify_add_watch {directory}")
            self.wd_dir[wd] = directory
        self.cache = {d: self._read(d) for d in self.dir_role}
        self.stop_r, self.stop_w = os.pipe()

    def _read(self, directory: str) -> dict[str, Any]:
        role = self.dir_role[directory]
        return parse_role(role, read_generation(directory, self.need[role]))

    def serve(self) -> None:
        self.out.emit({"k": "r", "op": "ready"})
        while True:
            ready, _, _ = select.select([self.fd, self.stop_r], [], [])
            if self.stop_r in ready:
                return
            t_wake = time.perf_counter()
            self.counters["wakeups"] += 1
            buffer = os.read(self.fd, 65536)
            changed: list[str] = []
            offset = 0
            while offset + _EVENT.size <= len(buffer):
                wd, _mask, _cookie, length = _EVENT.unpack_from(buffer, offset)
                name = buffer[offset + _EVENT.size : offset + _EVENT.size + length].rstrip(b"\0")
                offset += _EVENT.size + length
                directory = self.wd_dir.get(wd)
                if name == b"..data" and directory is not None and directory not in changed:
                    changed.append(directory)
            consumers: list[int] = []
            for directory in changed:
                self.cache[directory] = self._read(directory)
                self.counters["reloads"] += 1
                consumers.extend(i for i in self.users[directory] if i not in consumers)
            for index in consumers:
                dirs = self.consumer_dirs[index]
                parsed = {self.dir_role[d]: self.cache[d] for d in dirs.values() if d in self.cache}
                model = self.model.model_validate(values_from(self.specs, parsed))
                self.callback(index, model, t_wake)

    def callback(self, index: int, model: Any, t_wake: float) -> None:
        t = time.perf_counter()
        self.deliver(index, model, t, t - t_wake)

    def stop(self) -> None:
        os.write(self.stop_w, b"x")


class CanarySubject(Subject):
    """canaryconf: one LiveSettings per root, started in the background thread
    (``async_=False``) or watched in this process's asyncio loop."""

    def __init__(self, spec: dict[str, Any], out: Emitter, *, async_: bool) -> None:
        super().__init__(spec, out)
        import logging

        import canaryconf
        from canaryconf import signals

        self.async_ = async_
        self.last_wake = math.nan
        self.extra["wakeups_measured"] = self._wrap_inotify()
        subject = self

        class CountWarnings(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                subject.counters["warnings"] += 1
                subject.extra.setdefault("first_warning", record.getMessage()[:200])

        logging.getLogger("canaryconf").addHandler(CountWarnings(logging.WARNING))
        self.lives: list[Any] = []
        self.pending: dict[int, tuple[float, Any, float]] = {}
        classes: dict[str, type[Any]] = {}
        for index, root in enumerate(self.roots):
            if root not in classes:
                classes[root] = canary_class(root, self.specs)
            live = canaryconf.live(classes[root])
            live.on_change(self._on_change(index))
            signals.reloaded.connect(self._on_reloaded(index), sender=live, weak=False)
            self.lives.append(live)
        self.stopped = threading.Event()
        self.loop: Any = None
        self.astop: Any = None

    def _wrap_inotify(self) -> bool:
        """Count wake-ups: wrap ``canaryconf._inotify.read_events`` (called once each time
        the event loop finds an inotify descriptor readable). False when it is gone."""
        try:
            from canaryconf import _inotify

            original = _inotify.read_events
        except (ImportError, AttributeError):
            return False

        def read_events(fd: int) -> Any:
            t = time.perf_counter()
            events = original(fd)
            if events:
                self.counters["wakeups"] += 1
                self.last_wake = t
            return events

        _inotify.read_events = read_events  # type: ignore[assignment]
        return True

    def _on_change(self, index: int) -> Callable[[Any], None]:
        def on_change(change: Any) -> None:
            t = time.perf_counter()
            if self.mode == "all":
                self.deliver(index, change.new, t, None)
            else:
                self.pending[index] = (t, change.new, self.last_wake)

        return on_change

    def _on_reloaded(self, index: int) -> Callable[..., None]:
        def on_reloaded(sender: Any, result: Any) -> None:
            self.counters["results"] += 1
            self.counters[f"reason:{result.reason or result.status}"] += 1
            if result.reason != "same-generation":
                self.counters["reloads"] += 1
            if self.mode == "all" or not result.applied:
                return
            pending = self.pending.pop(index, None)
            if pending is not None:
                t, model, wake = pending
                more = {"wh": t - wake} if not math.isnan(wake) else {}
                self.deliver(index, model, t, result.duration, **more)

        return on_reloaded

    def serve(self) -> None:
        if not self.async_:
            for live in self.lives:
                live.start()
            self._ready()
            self.stopped.wait()
            for live in self.lives:
                live.stop()
            return
        import asyncio

        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self.astop = asyncio.Event()
            async with contextlib.AsyncExitStack() as stack:
                for live in self.lives:
                    await stack.enter_async_context(live.watching())
                self._ready()
                await self.astop.wait()

        asyncio.run(main())

    def _ready(self) -> None:
        fds = 0
        with contextlib.suppress(OSError):
            for name in os.listdir("/proc/self/fd"):
                with contextlib.suppress(OSError):
                    fds += "inotify" in os.readlink(f"/proc/self/fd/{name}")
        self.extra["inotify_fds"] = fds
        self.out.emit({"k": "r", "op": "ready", "inotify_fds": fds})

    def stop(self) -> None:
        self.stopped.set()
        if self.loop is not None and self.astop is not None:
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self.astop.set)


class WatchfilesSubject(Subject):
    """``watchfiles.watch(*dirs, step=...)`` (recursive, debounce 1600 ms: the defaults),
    re-instantiating a pydantic-settings class per batch."""

    def __init__(self, spec: dict[str, Any], out: Emitter) -> None:
        super().__init__(spec, out)
        (root,) = self.roots
        self.settings_cls = peer_settings_class(root, self.specs)
        self.settings_cls()  # fail early, and warm up
        self.dirs = list(role_dirs(root).values())
        self.step = int(spec.get("step", 50))
        self.stopped = threading.Event()

    def serve(self) -> None:
        import watchfiles

        # watch() puts its watch in place as the generator starts; it yields only on a
        # change, so readiness is announced shortly after it started.
        threading.Timer(0.5, self.out.emit, args=({"k": "r", "op": "ready"},)).start()
        for _changes in watchfiles.watch(*self.dirs, step=self.step, stop_event=self.stopped):
            self.rebuild(time.perf_counter(), self.settings_cls)

    def stop(self) -> None:
        self.stopped.set()


class WatchdogSubject(Subject):
    """A watchdog ``Observer`` per directory event: re-read everything through the
    top-level names and build the plain model, on every event."""

    def __init__(self, spec: dict[str, Any], out: Emitter) -> None:
        super().__init__(spec, out)
        (root,) = self.roots
        self.model = plain_model(self.specs)
        self.need = needed_files(self.specs)
        self.dirs = role_dirs(root)
        self.stopped = threading.Event()
        self.observer: Any = None

    def on_event(self, event: Any) -> None:
        self.rebuild(
            time.perf_counter(),
            lambda: self.model.model_validate(
                values_from(self.specs, read_naive(self.dirs, self.need))
            ),
        )

    def serve(self) -> None:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        subject = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                subject.on_event(event)

        self.observer = Observer()
        handler = Handler()
        for role, directory in self.dirs.items():
            if self.need[role]:
                self.observer.schedule(handler, directory, recursive=False)
        self.observer.start()
        self.out.emit({"k": "r", "op": "ready"})
        self.stopped.wait()
        self.observer.stop()
        self.observer.join(5)

    def stop(self) -> None:
        self.stopped.set()


class PollingSubject(Subject):
    """``readlink ..data`` of each directory every ``interval``; on a change read like the
    floor (through the new generation)."""

    def __init__(self, spec: dict[str, Any], out: Emitter) -> None:
        super().__init__(spec, out)
        (root,) = self.roots
        self.model = plain_model(self.specs)
        self.need = needed_files(self.specs)
        self.dirs = {role: d for role, d in role_dirs(root).items() if self.need[role]}
        self.interval = float(spec.get("interval", POLL_INTERVAL))
        self.stopped = threading.Event()

    def serve(self) -> None:
        links = {role: os.readlink(os.path.join(d, DATA_LINK)) for role, d in self.dirs.items()}
        cache = {
            role: parse_role(role, read_generation(d, self.need[role]))
            for role, d in self.dirs.items()
        }
        self.out.emit({"k": "r", "op": "ready"})
        while not self.stopped.wait(self.interval):
            self.counters["wakeups"] += 1
            t_wake = time.perf_counter()
            changed = False
            for role, directory in self.dirs.items():
                link = os.readlink(os.path.join(directory, DATA_LINK))
                if link != links[role]:
                    links[role] = link
                    cache[role] = parse_role(role, read_generation(directory, self.need[role]))
                    self.counters["reloads"] += 1
                    changed = True
            if changed:
                model = self.model.model_validate(values_from(self.specs, cache))
                t = time.perf_counter()
                self.deliver(0, model, t, t - t_wake)

    def stop(self) -> None:
        self.stopped.set()


def _rusage_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _commands(subject: Subject, out: Emitter) -> None:
    """The command thread of a subject: one JSON request per stdin line, one reply line.
    End of input (the parent closed the pipe, or died) stops the subject."""
    begin = _rusage_cpu()
    for line in sys.stdin:
        try:
            request = json.loads(line)
        except ValueError:
            continue
        op = request.get("op")
        if op == "stats":
            out.emit({"k": "r", "op": op, **subject.stats()})
        elif op == "begin":
            begin = _rusage_cpu()
            out.emit({"k": "r", "op": op})
        elif op == "end":
            out.emit({"k": "r", "op": op, "cpu": _rusage_cpu() - begin})
        elif op == "idle":
            before, t0 = _rusage_cpu(), time.monotonic()
            time.sleep(float(request.get("seconds", 3)))
            out.emit(
                {"k": "r", "op": op, "cpu": _rusage_cpu() - before, "wall": time.monotonic() - t0}
            )
        elif op == "stop":
            break
    # The end of input: stop, and leave in 3 s whatever a watcher thread does meanwhile.
    ender = threading.Timer(3.0, os._exit, args=(0,))
    ender.daemon = True
    ender.start()
    subject.stop()


def subject_child(spec: dict[str, Any]) -> None:
    out = Emitter()
    kind = spec["kind"]
    subject: Subject
    if kind == "floor":
        subject = FloorSubject(spec, out)
    elif kind in ("cc-thread", "cc-async"):
        subject = CanarySubject(spec, out, async_=kind == "cc-async")
    elif kind == "watchfiles":
        subject = WatchfilesSubject(spec, out)
    elif kind == "watchdog":
        subject = WatchdogSubject(spec, out)
    elif kind == "poll":
        subject = PollingSubject(spec, out)
    else:
        raise SystemExit(f"unknown subject {kind!r}")
    if kind == "floor":
        assert "canaryconf" not in sys.modules, "the floor must not import canaryconf"
    threading.Thread(target=_commands, args=(subject, out), name="commands", daemon=True).start()
    subject.serve()


# -- child processes: the writer ----------------------------------------------------------


def writer_child() -> None:
    """The kubelet stand-in: ``KubeletWriter`` (the exact AtomicWriter sequence), with
    ``os.rename`` wrapped in this process so that ``perf_counter()`` is taken right before
    and right after the rename onto ``..data``."""
    from canaryconf.testing import KubeletWriter

    renamed: list[tuple[float, float]] = []  # (perf_counter before, after) each rename
    real_rename, real_replace = os.rename, os.replace

    def timed(real: Callable[..., None]) -> Callable[..., None]:
        def call(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
            if os.path.basename(os.fspath(dst)) != DATA_LINK:
                real(src, dst, *args, **kwargs)
                return
            before = time.perf_counter()
            real(src, dst, *args, **kwargs)
            renamed.append((before, time.perf_counter()))

        return call

    rename, replace = timed(real_rename), timed(real_replace)
    os.rename = rename  # type: ignore[assignment]
    os.replace = replace  # type: ignore[assignment]

    writers: dict[str, KubeletWriter] = {}
    options: dict[str, dict[str, Any]] = {}
    revisions: dict[str, int] = {}

    def write(directory: str, payload: dict[str, str | bytes]) -> tuple[float, float]:
        writer = writers.get(directory)
        if writer is None:
            writer = writers[directory] = KubeletWriter(directory)
        before = len(renamed)
        if not writer.write(payload):
            raise RuntimeError(f"{directory}: payload unchanged, nothing written")
        if len(renamed) == before:
            raise RuntimeError("KubeletWriter no longer renames onto ..data with os.rename")
        return renamed[-1]

    def out(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    for line in sys.stdin:
        request = json.loads(line)
        op = request["op"]
        if op == "init":
            for root in request["roots"]:
                dirs = role_dirs(root)
                options[root] = request.get("opts", {})
                revisions[root] = 0
                write(dirs["podinfo"], podinfo_payload(0, options[root]))
                write(dirs["config"], config_payload(0))
                write(dirs["secret"], secret_payload())
            out({"k": "r", "op": op})
        elif op == "swap":
            root, seq = request["root"], request["seq"]
            dirs = role_dirs(root)
            renames = 1
            revision = cm_revision(seq)
            if revision != revisions[root]:
                revisions[root] = revision
                write(dirs["config"], config_payload(revision))
                renames += 1
            before, after = write(dirs["podinfo"], podinfo_payload(seq, options[root]))
            out({"k": "r", "op": op, "t": before, "t_after": after, "renames": renames})
        else:
            out({"k": "r", "op": op})


def child_main(raw: str) -> None:
    """Entry point of every child process (``bench_floor.py --child JSON``)."""
    spec = json.loads(raw)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    lifetime = threading.Timer(float(spec.get("lifetime", CHILD_LIFETIME)), os._exit, args=(3,))
    lifetime.daemon = True
    lifetime.start()
    try:
        if spec["kind"] == "writer":
            writer_child()
        else:
            subject_child(spec)
    except BaseException:
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        os._exit(2)
    sys.stdout.flush()
    sys.stderr.flush()
    # Watcher threads of peers (watchfiles, watchdog) must not hold the exit up.
    os._exit(0)


# -- parent side: child handles -----------------------------------------------------------


class ChildDied(RuntimeError):
    pass


_EOF = {"k": "eof"}


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    spec = find_spec("canaryconf")
    if spec is not None and spec.origin:
        src = str(Path(spec.origin).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    return env


class Child:
    """A child process speaking JSON lines. A reader thread routes replies (``k: r``) and
    deliveries (anything else) to two queues; ``log`` keeps every delivery seen."""

    def __init__(self, name: str, spec: dict[str, Any]) -> None:
        self.name = name
        self.spec = spec
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115  (closed by Fleet.stop)
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=_child_env(),
        )
        self.replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self.deliveries: queue.Queue[dict[str, Any]] = queue.Queue()
        self.log: list[dict[str, Any]] = []
        self.ready: dict[str, Any] = {}
        self.dead = False
        self._reader = threading.Thread(target=self._read, name=f"read-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            (self.replies if obj.get("k") == "r" else self.deliveries).put(obj)
        self.dead = True
        self.replies.put(_EOF)
        self.deliveries.put(_EOF)

    def error_text(self) -> str:
        with contextlib.suppress(Exception):
            self.stderr.seek(0)
            return self.stderr.read().decode(errors="replace").strip()[-1500:]
        return ""

    def send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps(obj) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise ChildDied(f"{self.name}: {exc}; stderr: {self.error_text()}") from None

    def reply(self, op: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.name}: no {op!r} reply in {timeout:g} s")
            try:
                obj = self.replies.get(timeout=remaining)
            except queue.Empty:
                continue
            if obj is _EOF:
                self.replies.put(_EOF)
                raise ChildDied(f"{self.name} ended ({self.proc.poll()}): {self.error_text()}")
            if obj.get("op") == op:
                return obj

    def request(self, op: str, timeout: float = REQUEST_TIMEOUT, **args: Any) -> dict[str, Any]:
        self.send({"op": op, **args})
        return self.reply(op, timeout)

    def _next(self, timeout: float | None) -> dict[str, Any] | None:
        """The next delivery, logged; None when none came within ``timeout`` (None: none
        is queued now); ``_EOF`` (left queued for the next caller) once the child ended."""
        try:
            if timeout is None:
                obj = self.deliveries.get_nowait()
            else:
                obj = self.deliveries.get(timeout=timeout)
        except queue.Empty:
            return None
        if obj is _EOF:
            self.deliveries.put(_EOF)
        else:
            self.log.append(obj)
        return obj

    def await_delivery(
        self, seq: int, timeout: float, index: int | None = None
    ) -> dict[str, Any] | None:
        """The first delivery of ``seq`` or later (of consumer ``index``), or None."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            obj = self._next(remaining)
            if obj is None:
                return None
            if obj is _EOF:
                raise ChildDied(f"{self.name} ended ({self.proc.poll()}): {self.error_text()}")
            if obj.get("seq", -1) >= seq and (index is None or obj.get("i") == index):
                return obj
        return None

    def quiet(self, gap: float = QUIET_GAP, limit: float = QUIET_LIMIT) -> None:
        """Wait until no delivery came for ``gap`` (at most ``limit``)."""
        end = time.monotonic() + limit
        while time.monotonic() < end:
            obj = self._next(gap)
            if obj is None or obj is _EOF:
                return

    def drain(self) -> None:
        while (obj := self._next(None)) is not None and obj is not _EOF:
            pass

    def close(self) -> None:
        """Ask it to stop (close stdin); the caller waits and kills (see :class:`Fleet`)."""
        with contextlib.suppress(Exception):
            assert self.proc.stdin is not None
            self.proc.stdin.close()


class Fleet:
    """Every child process of a measurement: started together, ready-checked, and always
    stopped (stdin closed, then SIGTERM, then SIGKILL), on errors and Ctrl-C too."""

    def __init__(self) -> None:
        self.children: list[Child] = []
        self.root = tempfile.mkdtemp(prefix="canaryconf-floor-")
        self._roots = 0
        self.rename_us: list[float] = []  # how long each timed rename call took, as seen
        self.writer = self.spawn("writer", {"kind": "writer"}, wait=False)

    def new_root(self) -> str:
        self._roots += 1
        path = os.path.join(self.root, f"v{self._roots:04d}")
        os.mkdir(path)
        return path

    def init_roots(self, roots: Sequence[str], opts: dict[str, Any] | None = None) -> None:
        self.writer.request("init", roots=list(roots), opts=opts or {}, timeout=300)

    def spawn(self, name: str, spec: dict[str, Any], wait: bool = True) -> Child:
        child = Child(name, spec)
        self.children.append(child)
        if wait:
            self.wait_ready([child])
        return child

    def wait_ready(self, children: Sequence[Child]) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        for child in children:
            child.ready = child.reply("ready", max(1.0, deadline - time.monotonic()))

    def swap(self, root: str, seq: int) -> tuple[float, int]:
        """Write swap ``seq`` into ``root``: (perf_counter right before the rename onto
        ``..data`` of its last volume, number of renames)."""
        reply = self.writer.request("swap", root=root, seq=seq, timeout=30)
        self.rename_us.append((reply["t_after"] - reply["t"]) * 1e6)
        return float(reply["t"]), int(reply["renames"])

    def stop(self, children: Sequence[Child]) -> None:
        for child in children:
            child.close()
        deadline = time.monotonic() + 10
        for child in children:
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.proc.terminate()
                try:
                    child.proc.wait(2)
                except subprocess.TimeoutExpired:
                    child.proc.kill()
                    child.proc.wait()
            with contextlib.suppress(Exception):
                child.stderr.close()
        for child in children:
            if child in self.children:
                self.children.remove(child)

    def close(self) -> None:
        try:
            self.stop(list(self.children))
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@contextlib.contextmanager
def fleet() -> Iterator[Fleet]:
    f = Fleet()
    try:
        yield f
    finally:
        f.close()


# -- statistics ---------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in 0..100."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.median(clean) if clean else math.nan


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def inotify_instances_of_user() -> int:
    """How many inotify instances processes of this user hold now (the per-user limit,
    ``fs.inotify.max_user_instances``, is 128 by default, shared by every such process on
    the machine: on a Kubernetes node, by every container running as the same uid)."""
    uid, count = os.getuid(), 0
    with contextlib.suppress(OSError):
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            fd_dir = f"/proc/{pid}/fd"
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{pid}").st_uid != uid:
                    continue
                for fd in os.listdir(fd_dir):
                    with contextlib.suppress(OSError):
                        count += "inotify" in os.readlink(f"{fd_dir}/{fd}")
    return count


def inotify_limit() -> int | None:
    try:
        return int(Path("/proc/sys/fs/inotify/max_user_instances").read_text())
    except (OSError, ValueError):
        return None


def loadavg() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan


# -- 1 and 2: latency, events, idle CPU ---------------------------------------------------


@dataclass
class Entry:
    """A subject of the latency measurement and what was measured of it."""

    name: str
    kind: str
    spec: dict[str, Any]
    every: int = 1
    timeout: float = WAIT_TIMEOUT
    pause: float = PAUSE_MAX  # the random pause before each of its swaps is 0..pause
    child: Child | None = None
    root: str = ""
    lat: list[list[float]] = field(default_factory=list)  # per round, ms
    work: list[list[float]] = field(default_factory=list)
    wake: list[list[float]] = field(default_factory=list)  # wake-up -> handler, ms
    missed: int = 0
    kubelet_swaps: int = 0
    first_timed_seq: int = 0


def latency_entries(notes: list[str]) -> list[Entry]:
    entries = [
        Entry("floor (raw inotify + BaseModel)", "floor", {"kind": "floor"}),
        Entry("canaryconf thread (live.start())", "cc-thread", {"kind": "cc-thread"}),
        Entry("canaryconf async (live.watching())", "cc-async", {"kind": "cc-async"}),
        Entry(
            "watchfiles.watch step=50 + BaseSettings",
            "watchfiles",
            {"kind": "watchfiles", "step": 50},
        ),
        Entry(
            "watchfiles.watch step=10 + BaseSettings",
            "watchfiles",
            {"kind": "watchfiles", "step": 10},
        ),
    ]
    if find_spec("watchdog") is not None:
        entries.append(Entry("watchdog, re-read per event", "watchdog", {"kind": "watchdog"}))
    else:
        notes.append("watchdog is not installed (`pip install --group bench`): subject skipped")
    entries.append(
        Entry(
            f"polling ..data every {POLL_INTERVAL:g} s",
            "poll",
            {"kind": "poll", "interval": POLL_INTERVAL},
            every=POLL_EVERY,
            timeout=POLL_INTERVAL + 1.5,
            pause=POLL_INTERVAL,
        )
    )
    return entries


def measure_latency(
    rounds: int, swaps: int, idle_seconds: float, progress: Progress, notes: list[str]
) -> list[dict[str, Any]]:
    rng = random.Random(20261126)
    entries = latency_entries(notes)
    with fleet() as f:
        for entry in entries:
            entry.root = f.new_root()
        f.init_roots([e.root for e in entries])
        progress(f"latency: starting {len(entries)} subjects")
        for entry in entries:
            entry.child = f.spawn(entry.name, {**entry.spec, "roots": [entry.root]}, wait=False)
        f.wait_ready([e.child for e in entries if e.child is not None])

        def one_swap(entry: Entry, seq: int, round_: int | None) -> None:
            assert entry.child is not None
            time.sleep(rng.uniform(0, entry.pause))
            t_rename, renames = f.swap(entry.root, seq)
            delivery = entry.child.await_delivery(seq, entry.timeout)
            if round_ is not None:
                entry.kubelet_swaps += renames
                if delivery is None or delivery["seq"] != seq:
                    entry.missed += 1
                else:
                    entry.lat[round_].append((delivery["t"] - t_rename) * 1000)
                    if delivery.get("w") is not None:
                        entry.work[round_].append(delivery["w"] * 1000)
                    if delivery.get("wh") is not None:
                        entry.wake[round_].append(delivery["wh"] * 1000)
            entry.child.quiet()

        # Warm-up: every subject gets WARMUP_SWAPS swaps or more (polling: exactly that).
        seq = WARMUP_SWAPS * POLL_EVERY
        for warm in range(1, seq + 1):
            for entry in entries:
                if warm % entry.every == 0:
                    one_swap(entry, warm, None)
        before = {e.name: e.child.request("stats") for e in entries if e.child is not None}
        for entry in entries:
            entry.first_timed_seq = seq + 1
        for round_ in range(rounds):
            progress(f"latency: round {round_ + 1}/{rounds}, {swaps} swaps x {len(entries)}")
            for entry in entries:
                entry.lat.append([])
                entry.work.append([])
                entry.wake.append([])
            for _ in range(swaps):
                seq += 1
                order = entries[:]
                rng.shuffle(order)
                for entry in order:
                    if seq % entry.every == 0:
                        one_swap(entry, seq, round_)
        time.sleep(0.2)
        after = {}
        for entry in entries:
            assert entry.child is not None
            entry.child.drain()
            after[entry.name] = entry.child.request("stats")
        progress(f"idle CPU: {idle_seconds:g} s, every subject at once")
        for entry in entries:
            assert entry.child is not None
            entry.child.send({"op": "idle", "seconds": idle_seconds})
        idle = {
            e.name: e.child.reply("idle", idle_seconds + 60) for e in entries if e.child is not None
        }
        spans = f.rename_us
        notes.append(
            f"the writer's rename onto ..data, from the timestamp before the call to the one "
            f"after it returned: p50 {percentile(spans, 50):.0f} us, p99 "
            f"{percentile(spans, 99):.0f} us, max {max(spans) / 1000:.2f} ms over "
            f"{len(spans)} swaps (latencies are measured from the timestamp before)"
        )
    load = loadavg()
    return latency_rows(entries, before, after, idle, load)


def _round_stats(per_round: list[list[float]], q: float) -> tuple[float, float]:
    """(min, median) over the rounds of each round's q-th percentile."""
    values = [percentile(r, q) for r in per_round if r]
    if not values:
        return math.nan, math.nan
    return min(values), statistics.median(values)


def tally(entry: Entry) -> dict[str, int]:
    """Deliveries of the timed rounds: count, duplicates (same state as the previous
    delivery), torn (two copies of one volume's sequence disagree)."""
    deliveries = duplicates = torn = 0
    previous: tuple[Any, ...] | None = None
    assert entry.child is not None
    for record in entry.child.log:
        if record.get("k") != "d" or record["seq"] < entry.first_timed_seq:
            if record.get("k") == "d":
                previous = (record["seq"], record["ls"], record["cr"], record["tr"])
            continue
        deliveries += 1
        state = (record["seq"], record["ls"], record["cr"], record["tr"])
        duplicates += state == previous
        torn += record["seq"] != record["ls"] or record["cr"] != record["tr"]
        previous = state
    return {"deliveries": deliveries, "duplicates": duplicates, "torn": torn}


def latency_rows(
    entries: list[Entry],
    before: dict[str, dict[str, Any]],
    after: dict[str, dict[str, Any]],
    idle: dict[str, dict[str, Any]],
    load: float,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    floor = next(e for e in entries if e.kind == "floor")
    floor_p50 = _round_stats(floor.lat, 50)[1]
    floor_p99 = _round_stats(floor.lat, 99)[1]
    for entry in entries:
        p50_min, p50_med = _round_stats(entry.lat, 50)
        p99_min, p99_med = _round_stats(entry.lat, 99)
        w50_min, w50_med = _round_stats(entry.work, 50)
        w99_min, w99_med = _round_stats(entry.work, 99)
        targeted = entry.kind in ("cc-thread", "cc-async")
        r50, r99 = ratio(p50_med, floor_p50), ratio(p99_med, floor_p99)
        passed = None
        if targeted:
            passed = entry.missed == 0 and r50 <= P50_RATIO_TARGET and r99 <= P99_RATIO_TARGET
        rows.append(
            {
                "bench": "floor",
                "section": "floor latency",
                "name": entry.name,
                "swaps": sum(len(r) for r in entry.lat) + entry.missed,
                "rounds": len(entry.lat),
                "missed": entry.missed,
                "p50_ms_min": p50_min,
                "p50_ms": p50_med,
                "p99_ms_min": p99_min,
                "p99_ms": p99_med,
                "work_p50_ms_min": w50_min,
                "work_p50_ms": w50_med,
                "work_p99_ms_min": w99_min,
                "work_p99_ms": w99_med,
                "x_floor_p50": r50 if entry is not floor else 1.0,
                "x_floor_p99": r99 if entry is not floor else 1.0,
                "load_avg": load,
                "target": (
                    f"p50 <= {P50_RATIO_TARGET:g} x floor, p99 <= {P99_RATIO_TARGET:g} x floor"
                    if targeted
                    else ""
                ),
                "passed": passed,
            }
        )
    for entry in entries:
        b, a = before[entry.name], after[entry.name]

        def delta(key: str, a: dict[str, Any] = a, b: dict[str, Any] = b) -> float:
            return float(a.get(key, 0)) - float(b.get(key, 0))

        swaps = entry.kubelet_swaps or math.nan
        counts = tally(entry)
        wake_measured = a.get("wakeups_measured", True)
        wakeups = delta("wakeups") / swaps if wake_measured else math.nan
        reloads = delta("reloads") / swaps
        idle_entry = idle.get(entry.name, {})
        idle_pct = ratio(idle_entry.get("cpu", math.nan), idle_entry.get("wall", math.nan)) * 100
        targeted = entry.kind in ("cc-thread", "cc-async")
        passed = None
        if targeted:
            passed = (
                not math.isnan(wakeups)
                and wakeups <= 1.0
                and reloads <= 1.0
                and counts["torn"] == 0
            )
        rows.append(
            {
                "bench": "floor",
                "section": "floor events",
                "name": entry.name,
                "kubelet_swaps": entry.kubelet_swaps,
                "wakeups_per_swap": wakeups,
                "reloads_per_swap": reloads,
                "deliveries_per_swap": counts["deliveries"] / swaps,
                "duplicates": counts["duplicates"],
                "torn": counts["torn"],
                "read_errors": int(delta("read_errors")),
                "idle_cpu_pct": idle_pct,
                "reasons": ", ".join(
                    f"{k.split(':', 1)[1]} {int(delta(k))}"
                    for k in sorted(a)
                    if k.startswith("reason:") and delta(k)
                ),
                "target": "1 wake-up, <= 1 reload per kubelet swap, none torn" if targeted else "",
                "passed": passed,
            }
        )
    for entry in entries:
        if entry.kind not in ("cc-thread", "cc-async"):
            continue
        lat = _round_stats(entry.lat, 50)[1]
        wake = _round_stats(entry.wake, 50)[1]
        work = _round_stats(entry.work, 50)[1]
        rows.append(
            {
                "bench": "floor",
                "section": "floor breakdown",
                "name": entry.name,
                "latency_p50_ms": lat,
                "rename_to_wakeup_ms": lat - wake,
                "wakeup_to_handler_ms": wake,
                "reload_step_ms": work,
                "hop_and_dispatch_ms": wake - work,
                "floor_latency_p50_ms": floor_p50,
                "floor_work_p50_ms": _round_stats(floor.work, 50)[1],
                "target": "",
                "passed": None,
            }
        )
    return rows


# -- 3a. annotation size ------------------------------------------------------------------

SIZE_KIB = (1, 16, 248)


def measure_size(swaps: int, progress: Progress) -> list[dict[str, Any]]:
    rows = []
    rng = random.Random(7)
    cases = [("flags document (read)", "flags_bytes", kib) for kib in SIZE_KIB]
    cases += [("last-applied-configuration (not read)", "filler_bytes", kib) for kib in SIZE_KIB]
    for label, key, kib in cases:
        progress(f"size: {label}, {kib} KiB, {swaps} swaps")
        opts = {key: kib * 1024}
        file_kib = len(podinfo_payload(1, opts)["annotations"].encode()) / 1024
        with fleet() as f:
            kinds = ("floor", "cc-thread")
            roots = {k: f.new_root() for k in kinds}
            f.init_roots(list(roots.values()), opts)
            children = {k: f.spawn(k, {"kind": k, "roots": [roots[k]]}, wait=False) for k in kinds}
            f.wait_ready(list(children.values()))
            lat: dict[str, list[float]] = {k: [] for k in kinds}
            work: dict[str, list[float]] = {k: [] for k in kinds}
            missed = Counter[str]()
            for seq in range(1, WARMUP_SWAPS + swaps + 1):
                order = list(kinds) if seq % 2 else list(reversed(kinds))
                for k in order:
                    time.sleep(rng.uniform(0, PAUSE_MAX))
                    t_rename, _ = f.swap(roots[k], seq)
                    delivery = children[k].await_delivery(seq, WAIT_TIMEOUT)
                    children[k].quiet()
                    if seq <= WARMUP_SWAPS:
                        continue
                    if delivery is None or delivery["seq"] != seq:
                        missed[k] += 1
                        continue
                    lat[k].append((delivery["t"] - t_rename) * 1000)
                    work[k].append(delivery["w"] * 1000)
        fl, cc = "floor", "cc-thread"
        rows.append(
            {
                "bench": "floor",
                "section": "scale: annotation size",
                "name": f"{label}, {kib} KiB",
                "annotations_file_kib": file_kib,
                "swaps": swaps,
                "missed": missed[fl] + missed[cc],
                "floor_p50_ms": percentile(lat[fl], 50),
                "canaryconf_p50_ms": percentile(lat[cc], 50),
                "x_p50": ratio(percentile(lat[cc], 50), percentile(lat[fl], 50)),
                "floor_p99_ms": percentile(lat[fl], 99),
                "canaryconf_p99_ms": percentile(lat[cc], 99),
                "floor_work_p50_ms": percentile(work[fl], 50),
                "canaryconf_work_p50_ms": percentile(work[cc], 50),
                "x_work": ratio(percentile(work[cc], 50), percentile(work[fl], 50)),
                "load_avg": loadavg(),
                "target": "",
                "passed": None,
            }
        )
    return rows


# -- 3b. fields (in this process) ---------------------------------------------------------

FIELD_COUNTS = (10, 100, 500)


def measure_fields(iterations: int, progress: Progress) -> list[dict[str, Any]]:
    from canaryconf import live
    from canaryconf.testing import KubeletWriter

    warmup = 10
    results: dict[int, tuple[float, float, float, float]] = {}
    for count in FIELD_COUNTS:
        progress(f"fields: {count} fields, {iterations} reloads each")
        specs = n_field_specs(count)
        root = tempfile.mkdtemp(prefix="canaryconf-floor-fields-")
        try:
            dirs = role_dirs(root)
            opts = {"n_fields": count}
            writer = KubeletWriter(dirs["podinfo"])
            writer.write(podinfo_payload(0, opts))
            settings = live(canary_class(root, specs))
            model = plain_model(specs)
            need = needed_files(specs)

            def floor_reload(
                dirs: dict[str, str] = dirs,
                need: dict[str, list[str]] = need,
                specs: Sequence[FieldSpec] = specs,
                model: type[BaseModel] = model,
            ) -> BaseModel:
                parsed = {
                    role: parse_role(role, read_generation(dirs[role], need[role]))
                    for role in ROLES
                    if need[role]
                }
                return model.model_validate(values_from(specs, parsed))

            cc_times: list[float] = []
            floor_times: list[float] = []
            for i in range(1, warmup + iterations + 1):
                writer.write(podinfo_payload(i, opts))
                timings: dict[str, float] = {}
                for which in ("cc", "floor") if i % 2 else ("floor", "cc"):
                    if which == "cc":
                        result = settings.reload()
                        if not result.applied:
                            raise RuntimeError(f"reload not applied: {result.reason}")
                        timings["cc"] = result.duration
                    else:
                        t0 = time.perf_counter()
                        built = floor_reload()
                        timings["floor"] = time.perf_counter() - t0
                        assert built.f001 == 1000 + i  # type: ignore[attr-defined]
                if i > warmup:
                    cc_times.append(timings["cc"] * 1e6)
                    floor_times.append(timings["floor"] * 1e6)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        results[count] = (
            statistics.median(floor_times),
            statistics.median(cc_times),
            percentile(floor_times, 99),
            percentile(cc_times, 99),
        )
    rows = []
    base = FIELD_COUNTS[0]
    for count in FIELD_COUNTS:
        fl, cc, fl99, cc99 = results[count]
        targeted = count == FIELD_COUNTS[-1]
        slope = count != base
        rows.append(
            {
                "bench": "floor",
                "section": "scale: fields",
                "name": f"{count} fields",
                "floor_us": fl,
                "canaryconf_us": cc,
                "x_floor": ratio(cc, fl),
                "floor_p99_us": fl99,
                "canaryconf_p99_us": cc99,
                "floor_us_per_field": (fl - results[base][0]) / (count - base)
                if slope
                else math.nan,
                "canaryconf_us_per_field": (cc - results[base][1]) / (count - base)
                if slope
                else math.nan,
                "target": f"<= {FIELDS_RATIO_TARGET:g} x floor" if targeted else "",
                "passed": ratio(cc, fl) <= FIELDS_RATIO_TARGET if targeted else None,
            }
        )
    return rows


# -- 3c. instances ------------------------------------------------------------------------

INSTANCE_COUNTS = (1, 10, 100)


def measure_instances(swaps: int, progress: Progress) -> list[dict[str, Any]]:
    rows = []
    rng = random.Random(11)
    kinds = ("floor", "cc-thread")
    fl, cc = kinds
    for count in INSTANCE_COUNTS:
        progress(f"instances: {count} on distinct volumes, {swaps} swaps")
        in_use = inotify_instances_of_user()
        with fleet() as f:
            roots = {k: [f.new_root() for _ in range(count)] for k in kinds}
            f.init_roots(roots[fl] + roots[cc])
            children = {k: f.spawn(k, {"kind": k, "roots": roots[k]}, wait=False) for k in kinds}
            f.wait_ready(list(children.values()))
            lat: dict[str, list[float]] = {k: [] for k in kinds}
            missed = Counter[str]()
            for seq in range(1, WARMUP_SWAPS + swaps + 1):
                index = rng.randrange(count)
                for k in kinds if seq % 2 else tuple(reversed(kinds)):
                    time.sleep(rng.uniform(0, PAUSE_MAX))
                    # each root has its own sequence; seq grows for all, so it is news
                    t_rename, _ = f.swap(roots[k][index], seq)
                    delivery = children[k].await_delivery(seq, WAIT_TIMEOUT, index=index)
                    children[k].quiet()
                    if seq <= WARMUP_SWAPS:
                        continue
                    if delivery is None or delivery["seq"] != seq:
                        missed[k] += 1
                    else:
                        lat[k].append((delivery["t"] - t_rename) * 1000)
            stats = children[cc].request("stats")
        rows.append(
            {
                "bench": "floor",
                "section": "scale: instances, distinct volumes",
                "name": f"{count} instance(s)",
                "swaps": swaps,
                "missed": missed[fl] + missed[cc],
                "inotify_in_use_before": in_use,
                "inotify_limit": inotify_limit(),
                "inotify_fds": children[cc].ready.get("inotify_fds"),
                "warnings": stats.get("warnings", 0),
                "first_warning": stats.get("first_warning", ""),
                "floor_p50_ms": percentile(lat[fl], 50),
                "canaryconf_p50_ms": percentile(lat[cc], 50),
                "x_p50": ratio(percentile(lat[cc], 50), percentile(lat[fl], 50)),
                "floor_p99_ms": percentile(lat[fl], 99),
                "canaryconf_p99_ms": percentile(lat[cc], 99),
                "x_p99": ratio(percentile(lat[cc], 99), percentile(lat[fl], 99)),
                "load_avg": loadavg(),
                "target": "",
                "passed": None,
            }
        )
    shared: dict[int, dict[str, float]] = {}
    for count in INSTANCE_COUNTS:
        progress(f"instances: {count} on one shared volume, {swaps} swaps")
        with fleet() as f:
            root = {k: f.new_root() for k in kinds}
            f.init_roots(list(root.values()))
            children = {
                k: f.spawn(k, {"kind": k, "roots": [root[k]] * count, "mode": "all"}, wait=False)
                for k in kinds
            }
            f.wait_ready(list(children.values()))
            seq = 0
            for seq in range(1, WARMUP_SWAPS + 1):
                for k in kinds:
                    f.swap(root[k], seq)
                    children[k].await_delivery(seq, WAIT_TIMEOUT * 5)
            for k in kinds:
                children[k].request("begin")
            lat_all: dict[str, list[float]] = {k: [] for k in kinds}
            missed = Counter[str]()
            for seq in range(WARMUP_SWAPS + 1, WARMUP_SWAPS + swaps + 1):
                for k in kinds if seq % 2 else tuple(reversed(kinds)):
                    time.sleep(rng.uniform(0, PAUSE_MAX))
                    t_rename, _ = f.swap(root[k], seq)
                    delivery = children[k].await_delivery(seq, WAIT_TIMEOUT * 5)
                    if delivery is None or delivery["seq"] != seq:
                        missed[k] += 1
                    else:
                        lat_all[k].append((delivery["t"] - t_rename) * 1000)
            cpu = {k: children[k].request("end")["cpu"] for k in kinds}
        shared[count] = {k: cpu[k] / swaps * 1000 for k in kinds}
        rows.append(
            {
                "bench": "floor",
                "section": "scale: instances, one shared volume",
                "name": f"{count} instance(s)",
                "swaps": swaps,
                "missed": missed[fl] + missed[cc],
                "floor_cpu_ms_per_swap": shared[count][fl],
                "canaryconf_cpu_ms_per_swap": shared[count][cc],
                "x_floor": ratio(shared[count][cc], shared[count][fl]),
                "floor_growth": ratio(shared[count][fl], shared[INSTANCE_COUNTS[0]][fl]),
                "canaryconf_growth": ratio(shared[count][cc], shared[INSTANCE_COUNTS[0]][cc]),
                "floor_all_done_p50_ms": percentile(lat_all[fl], 50),
                "canaryconf_all_done_p50_ms": percentile(lat_all[cc], 50),
                "load_avg": loadavg(),
                "target": "",
                "passed": None,
            }
        )
    return rows


# -- 3d. processes ------------------------------------------------------------------------

PROCESS_COUNTS = (1, 4, 16)


def _swap_all(
    f: Fleet, root: str, workers: Sequence[Child], seq: int, lat: list[float] | None
) -> int:
    """Write swap ``seq`` and wait for every worker; the latency to the last one goes to
    ``lat``. Returns how many workers missed it."""
    t_rename, _ = f.swap(root, seq)
    last = -math.inf
    misses = 0
    for worker in workers:
        delivery = worker.await_delivery(seq, WAIT_TIMEOUT * 5)
        if delivery is None or delivery["seq"] != seq:
            misses += 1
        else:
            last = max(last, delivery["t"])
    if lat is not None and not misses:
        lat.append((last - t_rename) * 1000)
    return misses


def measure_processes(swaps: int, rounds: int, progress: Progress) -> list[dict[str, Any]]:
    """For each worker count: ``rounds`` rounds of ``swaps`` swaps (one fleet, warmed up
    once), each round's CPU taken apart; the ratio judged is the median of the rounds'."""
    rows = []
    rng = random.Random(13)
    kinds = ("floor", "cc-thread")
    fl, cc = kinds
    for count in PROCESS_COUNTS:
        progress(f"processes: {count} workers of each kind, {rounds} rounds of {swaps} swaps")
        with fleet() as f:
            root = {k: f.new_root() for k in kinds}
            f.init_roots(list(root.values()))
            workers = {
                k: [
                    f.spawn(f"{k}-{i}", {"kind": k, "roots": [root[k]], "mode": "all"}, wait=False)
                    for i in range(count)
                ]
                for k in kinds
            }
            f.wait_ready([w for k in kinds for w in workers[k]])
            for seq in range(1, WARMUP_SWAPS + 1):
                for k in kinds:
                    _swap_all(f, root[k], workers[k], seq, None)
            lat_all: dict[str, list[float]] = {k: [] for k in kinds}
            missed = Counter[str]()
            cpu = dict.fromkeys(kinds, 0.0)
            round_ratios: list[float] = []
            for done in range(rounds):
                for k in kinds:
                    for worker in workers[k]:
                        worker.request("begin")
                first = WARMUP_SWAPS + done * swaps + 1
                for seq in range(first, first + swaps):
                    for k in kinds if seq % 2 else tuple(reversed(kinds)):
                        time.sleep(rng.uniform(0, PAUSE_MAX))
                        missed[k] += _swap_all(f, root[k], workers[k], seq, lat_all[k])
                spent = {k: sum(w.request("end")["cpu"] for w in workers[k]) for k in kinds}
                for k in kinds:
                    cpu[k] += spent[k]
                round_ratios.append(ratio(spent[cc], spent[fl]))
        per_swap = {k: cpu[k] / (swaps * rounds) * 1000 for k in kinds}
        targeted = count == PROCESS_COUNTS[-1]
        x = median(round_ratios)
        rows.append(
            {
                "bench": "floor",
                "section": "scale: processes",
                "name": f"{count} process(es)",
                "swaps": swaps * rounds,
                "missed": missed[fl] + missed[cc],
                "floor_cpu_ms_per_swap": per_swap[fl],
                "canaryconf_cpu_ms_per_swap": per_swap[cc],
                "x_floor": x,
                "x_rounds": f"{min(round_ratios):.2f} to {max(round_ratios):.2f}",
                "canaryconf_cpu_ms_per_worker": per_swap[cc] / count,
                "floor_all_done_p50_ms": percentile(lat_all[fl], 50),
                "canaryconf_all_done_p50_ms": percentile(lat_all[cc], 50),
                "load_avg": loadavg(),
                "target": f"<= {PROCESSES_RATIO_TARGET:g} x floor (median of the rounds)"
                if targeted
                else "",
                "passed": x <= PROCESSES_RATIO_TARGET if targeted else None,
            }
        )
    return rows


# -- entry points -------------------------------------------------------------------------

SECTIONS = ("latency", "size", "fields", "instances", "processes")


def run(
    quick: bool = False,
    *,
    progress: Progress | None = None,
    only: Sequence[str] | None = None,
    rounds: int | None = None,
    swaps: int | None = None,
    notes: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Every measurement (or those of ``only``); one row (a dict) per case."""
    say: Progress = progress or (lambda _msg: None)
    notes = notes if notes is not None else []
    wanted = set(only or SECTIONS)
    unknown = wanted - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown section(s) {sorted(unknown)}; choose from {SECTIONS}")
    rows: list[dict[str, Any]] = []
    if "latency" in wanted:
        rows += measure_latency(
            rounds or 3, swaps or (30 if quick else 100), 3.0 if quick else 5.0, say, notes
        )
    if "size" in wanted:
        rows += measure_size(12 if quick else 40, say)
    if "fields" in wanted:
        rows += measure_fields(60 if quick else 200, say)
    if "instances" in wanted:
        rows += measure_instances(12 if quick else 40, say)
    if "processes" in wanted:
        rows += measure_processes(12 if quick else 40, 2 if quick else 5, say)
    for note in notes:
        say(f"note: {note}")
    return rows


def _pair(row: dict[str, Any], low: str, mid: str) -> str:
    return f"{_fmt(row.get(low))} / {_fmt(row.get(mid))}"


def _result(row: dict[str, Any]) -> str:
    passed = row.get("passed")
    return "-" if passed is None else ("PASS" if passed else "**FAIL**")


Column = tuple[str, Callable[[dict[str, Any]], str]]


def _col(key: str, title: str) -> Column:
    return title, lambda row: _fmt(row.get(key))


SECTION_TABLES: dict[str, tuple[str, list[Column]]] = {
    "floor latency": (
        "Latency, rename -> handler, and in-process work (ms; min / median over rounds "
        "of each round's percentile)",
        [
            _col("swaps", "swaps"),
            _col("missed", "missed"),
            ("p50", lambda r: _pair(r, "p50_ms_min", "p50_ms")),
            ("p99", lambda r: _pair(r, "p99_ms_min", "p99_ms")),
            ("work p50", lambda r: _pair(r, "work_p50_ms_min", "work_p50_ms")),
            ("work p99", lambda r: _pair(r, "work_p99_ms_min", "work_p99_ms")),
            _col("x_floor_p50", "x floor p50"),
            _col("x_floor_p99", "x floor p99"),
        ],
    ),
    "floor events": (
        "Wake-ups, reloads and deliveries per kubelet swap; tearing; idle CPU",
        [
            _col("kubelet_swaps", "kubelet swaps"),
            _col("wakeups_per_swap", "wake-ups"),
            _col("reloads_per_swap", "reloads"),
            _col("deliveries_per_swap", "deliveries"),
            _col("duplicates", "duplicates"),
            _col("torn", "torn"),
            _col("read_errors", "read errors"),
            _col("idle_cpu_pct", "idle CPU %"),
            _col("reasons", "canaryconf reasons"),
        ],
    ),
    "floor breakdown": (
        "Where canaryconf's latency goes (ms, medians of the round p50s)",
        [
            _col("latency_p50_ms", "latency"),
            _col("rename_to_wakeup_ms", "rename -> wake-up"),
            _col("wakeup_to_handler_ms", "wake-up -> handler"),
            _col("reload_step_ms", "of which reload step"),
            _col("hop_and_dispatch_ms", "of which hop + dispatch"),
            _col("floor_latency_p50_ms", "floor latency"),
            _col("floor_work_p50_ms", "floor work"),
        ],
    ),
    "scale: annotation size": (
        "Scale a: one annotation grown (ms)",
        [
            _col("annotations_file_kib", "annotations file KiB"),
            _col("missed", "missed"),
            _col("floor_p50_ms", "floor p50"),
            _col("canaryconf_p50_ms", "canaryconf p50"),
            _col("x_p50", "x"),
            _col("floor_p99_ms", "floor p99"),
            _col("canaryconf_p99_ms", "canaryconf p99"),
            _col("floor_work_p50_ms", "floor work p50"),
            _col("canaryconf_work_p50_ms", "canaryconf work p50"),
            _col("x_work", "x work"),
        ],
    ),
    "scale: fields": (
        "Scale b: fields, in-process reload work (us)",
        [
            _col("floor_us", "floor median"),
            _col("canaryconf_us", "canaryconf median"),
            _col("x_floor", "x floor"),
            _col("floor_p99_us", "floor p99"),
            _col("canaryconf_p99_us", "canaryconf p99"),
            _col("floor_us_per_field", "floor us/field"),
            _col("canaryconf_us_per_field", "canaryconf us/field"),
        ],
    ),
    "scale: instances, distinct volumes": (
        "Scale c: N LiveSettings in one process, each on its own volumes: latency (ms)",
        [
            _col("missed", "missed"),
            _col("inotify_in_use_before", "inotify instances in use before"),
            _col("inotify_limit", "limit"),
            _col("inotify_fds", "canaryconf inotify fds"),
            _col("warnings", "warnings"),
            _col("floor_p50_ms", "floor p50"),
            _col("canaryconf_p50_ms", "canaryconf p50"),
            _col("x_p50", "x p50"),
            _col("floor_p99_ms", "floor p99"),
            _col("canaryconf_p99_ms", "canaryconf p99"),
            _col("x_p99", "x p99"),
        ],
    ),
    "scale: instances, one shared volume": (
        "Scale c: N LiveSettings in one process on ONE volume: CPU per swap (ms)",
        [
            _col("missed", "missed"),
            _col("floor_cpu_ms_per_swap", "floor CPU"),
            _col("canaryconf_cpu_ms_per_swap", "canaryconf CPU"),
            _col("x_floor", "x floor"),
            _col("floor_growth", "floor growth"),
            _col("canaryconf_growth", "canaryconf growth"),
            _col("floor_all_done_p50_ms", "floor all done p50"),
            _col("canaryconf_all_done_p50_ms", "canaryconf all done p50"),
        ],
    ),
    "scale: processes": (
        "Scale d: worker processes on one volume: total CPU per swap (ms)",
        [
            _col("missed", "missed"),
            _col("swaps", "swaps"),
            _col("floor_cpu_ms_per_swap", "floor CPU"),
            _col("canaryconf_cpu_ms_per_swap", "canaryconf CPU"),
            _col("x_floor", "x floor (median of rounds)"),
            _col("x_rounds", "x floor, rounds"),
            _col("canaryconf_cpu_ms_per_worker", "canaryconf per worker"),
            _col("floor_all_done_p50_ms", "floor all done p50"),
            _col("canaryconf_all_done_p50_ms", "canaryconf all done p50"),
        ],
    ),
}


def format_markdown(rows: list[dict[str, Any]]) -> str:
    """A markdown table per section, with its targets and the load average."""
    out: list[str] = []
    for section, (title, columns) in SECTION_TABLES.items():
        section_rows = [r for r in rows if r.get("section") == section]
        if not section_rows:
            continue
        has_targets = any(r.get("passed") is not None for r in section_rows)
        headers = ["case"] + [t for t, _ in columns] + (["result"] if has_targets else [])
        out.append(f"### {title}")
        out.append("")
        out.append("| " + " | ".join(headers) + " |")
        out.append("|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|")
        for row in section_rows:
            cells = [str(row["name"])] + [fn(row) for _t, fn in columns]
            if has_targets:
                cells.append(_result(row))
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        out.append("")
        for target in sorted({r["target"] for r in section_rows if r.get("target")}):
            out.append(f"Target: {target}.")
        loads = [r["load_avg"] for r in section_rows if isinstance(r.get("load_avg"), float)]
        if loads:
            out.append(f"Load average (1 min) after: {max(loads):.2f}.")
        warnings = {r.get("first_warning") for r in section_rows if r.get("first_warning")}
        for warning in sorted(w for w in warnings if w):
            out.append(f"canaryconf warned: `{warning}`")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import platform

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer swaps (about 2 minutes)")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    parser.add_argument("--output", metavar="FILE", help="also write the markdown here")
    parser.add_argument("--only", action="append", choices=SECTIONS, help="repeatable")
    parser.add_argument("--rounds", type=int, help="latency rounds (default 3)")
    parser.add_argument("--swaps", type=int, help="latency swaps per round (100, quick 30)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(args.child)
        return 0

    def say(msg: str) -> None:
        print(f"[bench_floor] {msg}", file=sys.stderr, flush=True)

    def terminated(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)  # unwinds: every child is stopped, volumes removed

    signal.signal(signal.SIGTERM, terminated)
    started = time.monotonic()
    load_start = os.getloadavg()
    notes: list[str] = []
    rows = run(
        quick=args.quick,
        progress=say,
        only=args.only,
        rounds=args.rounds,
        swaps=args.swaps,
        notes=notes,
    )
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    header = [
        f"## canaryconf against the floor ({'quick' if args.quick else 'full'} run)",
        "",
        f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.platform()}; load average {' '.join(f'{x:.2f}' for x in load_start)} at "
        f"the start, {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end; "
        f"{time.monotonic() - started:.0f} s.",
        "",
    ]
    header += [f"Note: {note}" for note in notes] + ([""] if notes else [])
    text = "\n".join(header) + "\n" + format_markdown(rows)
    print(text)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=str))
    return 0 if all(row.get("passed") is not False for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
