"""The reload step (``canaryconf._reload``) on its own: no thread, no file, no watcher.

Volumes are :class:`~canaryconf.VolumeSnapshot` values built in memory; the settings are
built from them by a plain function, so every outcome in the step's table of reasons is
reached deterministically, and hypothesis drives long random sequences of readings.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from canaryconf import (
    CanarySettings,
    SettingsValidationError,
    VolumeBusyError,
    VolumeError,
    VolumePermissionError,
)
from canaryconf._errors import FieldProblem
from canaryconf._reload import REASONS, Reading, ReloadState, Version, is_news, step
from canaryconf.volume import VolumeSnapshot

VOLUME = "/etc/podinfo"


class Settings(CanarySettings):
    color: str = "blue"
    size: int = 0
    workers: int = 4


RESTART = frozenset({"workers"})


def volume(generation: str | None, **values: Any) -> VolumeSnapshot:
    return VolumeSnapshot(VOLUME, generation, {"values": json.dumps(values).encode()})


def build(volumes: Any) -> Settings:
    snap = volumes[VOLUME]
    values = json.loads(snap.files["values"]) if snap is not None else {}
    if values.get("size", 0) < 0:
        problem = FieldProblem("size", "must be >= 0", VOLUME + "/values", "size")
        raise SettingsValidationError("Settings", [problem])
    return Settings(**values)


def start(generation: str | None = "..g0", **values: Any) -> ReloadState[Settings]:
    vols = {VOLUME: volume(generation, **values)}
    return ReloadState(Version.of(build(vols), vols))


def read(generation: str | None, **values: Any) -> Reading:
    return Reading({VOLUME: volume(generation, **values)}, links=(generation,))


def run(state: ReloadState[Settings], reading: Reading, trigger: Any = "watcher") -> Any:
    return step(state, reading, trigger=trigger, build=build, restart_fields=RESTART)


def test_a_new_valid_version_is_applied() -> None:
    state, result = run(start(color="blue"), read("..g1", color="red"))
    assert (result.status, result.reason) == ("applied", "applied")
    assert result.change.fields == {"color"}
    assert (result.change.old.color, result.change.new.color) == ("blue", "red")
    assert state.current.settings.color == "red"
    assert (state.current.generation, result.generation) == ("..g1", "..g1")
    assert state.last_error is None


def test_the_watcher_reads_nothing_while_every_link_names_the_applied_generation() -> None:
    state = start("..g0")
    assert not is_news(state, ("..g0",), "watcher")
    assert is_news(state, ("..g1",), "watcher")
    assert is_news(state, ("..g0",), "manual"), "a manual reload always reads"
    plain = start(None)
    assert is_news(plain, (None,), "watcher"), "a plain directory has no link to compare"


def test_the_same_content_in_a_new_generation_is_unchanged() -> None:
    state, result = run(start("..g0", color="blue"), read("..g1", color="blue"))
    assert (result.status, result.reason) == ("unchanged", "same-content")
    assert state.current.generation == "..g1", "the next event compares with ..g1"


def test_new_content_with_the_same_values_is_unchanged() -> None:
    before = start(color="blue")
    state, result = run(before, read("..g1", color="blue", extra="ignored"))
    assert (result.status, result.reason) == ("unchanged", "same-values")
    assert state.current.settings is before.current.settings
    assert state.current.digest != before.current.digest


def test_restart_required_fields_are_held_back() -> None:
    state, result = run(start(workers=4, color="a"), read("..g1", workers=8, color="b"))
    assert result.status == "applied"
    assert result.restart_fields == {"workers"}
    assert result.change.fields == {"color"}
    assert state.current.settings.workers == 4
    state, result = run(start(workers=4), read("..g1", workers=8))
    assert (result.status, result.reason, result.restart_fields) == (
        "unchanged",
        "same-values",
        {"workers"},
    )


def test_a_forked_child_adopts_restart_required_fields_once() -> None:
    child = start(workers=4)
    child = ReloadState(child.current, adopt_restart_fields=True)
    state, result = run(child, read("..g1", workers=8))
    assert (result.status, result.restart_fields) == ("applied", frozenset())
    assert state.current.settings.workers == 8
    assert not state.adopt_restart_fields
    _, again = run(state, read("..g2", workers=16))
    assert again.restart_fields == {"workers"}


def test_an_invalid_version_keeps_the_last_good_settings() -> None:
    good = start(size=1)
    state, result = run(good, read("..g1", size=-1))
    assert (result.status, result.reason) == ("failed", "invalid")
    assert isinstance(result.error, SettingsValidationError)
    assert state.current is good.current
    assert state.last_error is result.error
    assert not result.repeated


def test_a_rejected_version_met_again_is_no_news_for_the_watcher() -> None:
    state, first = run(start(size=1), read("..g1", size=-1))
    state, again = run(state, read("..g1", size=-1), "watcher")
    assert (again.status, again.reason) == ("unchanged", "rejected-before")
    state, manual = run(state, read("..g1", size=-1), "manual")
    assert (manual.status, manual.reason, manual.repeated) == ("failed", "rejected-before", True)
    assert manual.error is first.error


def test_rolling_back_to_the_applied_content_clears_the_error() -> None:
    state, _ = run(start("..g0", size=1), read("..g1", size=-1))
    state, result = run(state, read("..g2", size=1))
    assert (result.status, result.reason) == ("unchanged", "same-content")
    assert state.last_error is None and state.rejected is None


def test_a_version_that_cannot_be_read_is_rejected_once() -> None:
    error = VolumePermissionError(VOLUME + "/values", "permission denied")
    reading = Reading(None, error, ("..g1",))
    state, result = run(start(), reading)
    assert (result.status, result.reason) == ("failed", "invalid")
    _, again = run(state, reading, "watcher")
    assert (again.status, again.reason) == ("unchanged", "rejected-before")
    _, manual = run(state, reading, "manual")
    assert (manual.status, manual.repeated) == ("failed", True)


def test_a_busy_volume_is_not_a_failed_version() -> None:
    busy = VolumeBusyError(VOLUME, "kept changing while being read (20 attempts)")
    for trigger in ("watcher", "manual"):
        state, result = run(start(), Reading(None, busy, ("..g9",)), trigger)
        assert (result.status, result.reason, result.error) == ("unchanged", "busy", None)
        assert state.last_error is None and state.rejected is None


def test_a_volume_gone_or_half_removed_keeps_the_last_settings() -> None:
    good = start("..g0", color="red")
    gone = Reading({VOLUME: None}, links=(None,))
    _, result = run(good, gone)
    assert (result.status, result.reason) == ("unchanged", "volume-gone")
    unlinked = Reading({VOLUME: volume(None, color="blue")}, links=(None,))
    _, result = run(good, unlinked)
    assert result.reason == "volume-gone", "..data lost: a removal, not a plain directory"
    dangling = Reading(None, VolumeError(VOLUME + "/labels", "is a symlink to nothing"), (None,))
    state, result = run(good, dangling)
    assert (result.status, result.reason) == ("unchanged", "volume-gone")
    assert state is good


# -- a model of long sequences --------------------------------------------------------

READINGS = st.one_of(
    st.tuples(st.just("valid"), st.sampled_from(["a", "b", "c"]), st.integers(0, 2)),
    st.tuples(st.just("invalid"), st.just("x"), st.integers(-2, -1)),
    st.tuples(st.just("busy"), st.just(""), st.just(0)),
    st.tuples(st.just("unreadable"), st.just(""), st.integers(0, 1)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(READINGS, st.sampled_from(["watcher", "manual"])), max_size=30))
def test_any_sequence_of_readings_keeps_one_valid_ordered_stream(sequence: list[Any]) -> None:
    """Whatever is read, in whatever order: the settings are always the last valid version
    read; applied changes chain (each ``old`` is the previous ``new``); a version is
    reported failed once per run of meetings by the watcher; busy never fails."""
    state = start("..g0", color="a", size=0)
    applied: list[Any] = []
    last_valid = state.current.settings
    rejected_now: set[str] = set()
    for number, ((kind, color, size), trigger) in enumerate(sequence, start=1):
        generation = f"..g{number}"
        if kind == "busy":
            reading = Reading(None, VolumeBusyError(VOLUME, "busy"), (generation,))
        elif kind == "unreadable":
            error = VolumePermissionError(f"{VOLUME}/values{size}", "permission denied")
            reading = Reading(None, error, ("..unreadable",))
        else:
            reading = read(generation, color=color, size=size)
        before = state
        state, result = run(state, reading, trigger)
        assert result.reason in REASONS
        if kind == "busy":
            assert (result.status, state) == ("unchanged", before)
        if result.status == "failed":
            assert kind in ("invalid", "unreadable")
            assert state.current is before.current
            if not result.repeated:
                key = state.rejected
                assert key is not None and key not in rejected_now
                rejected_now = {key}
            else:
                assert trigger == "manual"
        if kind == "valid":
            last_valid = build(reading.volumes)
            rejected_now.clear()
        if result.status == "applied":
            if applied:
                assert result.change.old is applied[-1].new
            applied.append(result.change)
        assert state.current.settings.model_dump() == last_valid.model_dump()


def test_every_reason_is_documented() -> None:
    import canaryconf._reload as module

    for reason in REASONS:
        assert f"``{reason}``" in (module.__doc__ or "")
