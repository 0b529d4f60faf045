"""read_volume reads one consistent generation of a real volume, and refuses what it must."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from canaryconf import (
    CanaryConfError,
    NotAVolumeError,
    UnsafePathError,
    VolumeBusyError,
    VolumeError,
    VolumeNotFoundError,
    VolumePermissionError,
    VolumeSnapshot,
    VolumeTooLargeError,
    read_volume,
)
from canaryconf.testing import KubeletWriter, pod_files
from canaryconf.volume import content_digest, read_volume_files
from conftest import GENERATION_RE


def _payload(marker: str) -> dict[str, str | bytes]:
    return pod_files(
        labels={"role": "canary", "gen": marker},
        annotations={"example.com/marker": marker},
        extra={"dir/sub/file": f"{marker} nested"},
    )


# --------------------------------------------------------------------------------------------
# Reading


def test_reads_every_file_through_the_generation(podinfo: KubeletWriter) -> None:
    payload = _payload("gen-1")
    podinfo.write(payload)

    snap = read_volume(podinfo.path)

    assert snap.generation is not None
    assert GENERATION_RE.fullmatch(snap.generation)
    assert snap.generation == os.readlink(podinfo.path / "..data")
    assert snap.path == str(podinfo.path)
    assert dict(snap.files) == {
        name: data.encode() if isinstance(data, str) else data for name, data in payload.items()
    }
    assert "dir/sub/file" in snap.files
    assert not any(name.startswith("..") or "/.." in name for name in snap.files)
    assert snap.text("dir/sub/file") == "gen-1 nested"
    assert snap.file_path("labels") == str(podinfo.path / "labels")


def test_path_may_be_str_or_pathlike(podinfo: KubeletWriter) -> None:
    podinfo.write({"role": "canary"})
    assert read_volume(str(podinfo.path)).files == read_volume(podinfo.path).files


def test_digest_follows_content_not_generation(podinfo: KubeletWriter) -> None:
    podinfo.write(_payload("gen-1"))
    first = read_volume(podinfo.path)
    podinfo.write(_payload("gen-2"))
    second = read_volume(podinfo.path)
    podinfo.write(_payload("gen-1"))
    third = read_volume(podinfo.path)

    assert len({first.generation, second.generation, third.generation}) == 3
    assert third.digest == first.digest
    assert second.digest != first.digest


def test_digest_tells_names_from_contents(tmp_path: Path) -> None:
    one = VolumeSnapshot(path=str(tmp_path), generation=None, files={"ab": b"c"})
    two = VolumeSnapshot(path=str(tmp_path), generation=None, files={"a": b"bc"})
    assert one.digest != two.digest


def test_digest_follows_the_files_of_a_replaced_snapshot(podinfo: KubeletWriter) -> None:
    podinfo.write({"role": "canary"})
    snap = read_volume(podinfo.path)
    other = dataclasses.replace(snap, files={"role": b"stable"})
    assert other.digest == content_digest({"role": b"stable"})
    assert other.digest != snap.digest
    assert dataclasses.replace(other, files=dict(snap.files)).digest == snap.digest
    with pytest.raises(TypeError):
        VolumeSnapshot(podinfo.path, None, {}, digest="0" * 64)  # type: ignore[call-arg]


def test_snapshot_pickles_and_copies(podinfo: KubeletWriter) -> None:
    podinfo.write({"labels": 'role="canary"', "dir/key": b"\x00bytes"})
    snap = read_volume_files(podinfo.path, ["labels", "dir"])
    snap.derived["parsed"] = {"role": "canary"}
    for copied in (pickle.loads(pickle.dumps(snap)), copy.deepcopy(snap), copy.copy(snap)):
        assert copied == snap
        assert (copied.path, copied.generation, copied.digest) == (
            snap.path,
            snap.generation,
            snap.digest,
        )
        assert copied.directories == frozenset({"dir"})
        assert dict(copied.files) == {"labels": b'role="canary"'}
        with pytest.raises(TypeError):
            copied.files["labels"] = b"changed"  # type: ignore[index]
        assert copied.derived == {}  # derived again by whoever reads the copy


def test_plain_directory_is_read_as_it_is(tmp_path: Path, podinfo: KubeletWriter) -> None:
    plain = tmp_path / "plain"
    (plain / "dir" / "sub").mkdir(parents=True)
    (plain / "role").write_text("canary")
    (plain / "dir" / "sub" / "file").write_bytes(b"\x00nested")
    (plain / "..hidden").write_text("skipped")
    (plain / "..somedir").mkdir()
    (plain / "..somedir" / "x").write_text("skipped")
    podinfo.write({"role": "canary", "dir/sub/file": b"\x00nested"})

    snap = read_volume(plain)

    assert snap.generation is None
    assert dict(snap.files) == {"role": b"canary", "dir/sub/file": b"\x00nested"}
    # The digest depends on names and contents only, not on how they are stored.
    assert snap.digest == read_volume(podinfo.path).digest


def test_empty_plain_directory(tmp_path: Path) -> None:
    snap = read_volume(tmp_path)
    assert snap.generation is None
    assert dict(snap.files) == {}


def test_symlink_inside_a_plain_directory_is_followed(tmp_path: Path) -> None:
    (tmp_path / "real").write_text("value")
    (tmp_path / "alias").symlink_to("real")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("deep")
    (tmp_path / "linkdir").symlink_to("d")

    snap = read_volume(tmp_path)

    assert snap.files["alias"] == b"value"
    assert snap.files["linkdir/f"] == b"deep"


def test_snapshot_is_immutable(podinfo: KubeletWriter) -> None:
    podinfo.write({"role": "canary"})
    snap = read_volume(podinfo.path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.generation = "..other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        snap.files["role"] = b"stable"  # type: ignore[index]


def test_snapshot_does_not_share_the_callers_dict(tmp_path: Path) -> None:
    files = {"role": b"canary"}
    snap = VolumeSnapshot(path=str(tmp_path), generation=None, files=files)
    files["role"] = b"stable"
    assert snap.files["role"] == b"canary"


def test_text_decodes_and_defaults(tmp_path: Path) -> None:
    snap = VolumeSnapshot(
        path=str(tmp_path), generation=None, files={"ok": "caf\u00e9".encode(), "bad": b"\xff"}
    )
    assert snap.text("ok") == "caf\u00e9"
    assert snap.text("bad") == "\ufffd"
    assert snap.text("missing") is None
    assert snap.text("missing", "fallback") == "fallback"


def test_repr_never_shows_contents(podinfo: KubeletWriter) -> None:
    token = "tok-8d1c7f7e-repr-secret"
    podinfo.write({"password": token, "dir/key": f"nested {token}"})

    snap = read_volume(podinfo.path)

    assert token not in repr(snap)
    assert token not in str(snap)
    assert "password" in repr(snap)  # names are fine, and useful
    assert "dir/key" in repr(snap)


# --------------------------------------------------------------------------------------------
# Consistency under a writer that keeps swapping generations

SWAPS = 2000
FILLER = "x" * 2000
JOIN_TIMEOUT = 90.0


def _marker_payload(n: int) -> dict[str, str | bytes]:
    marker = f"gen-{n}"
    files: dict[str, str | bytes] = {f"file-{i}": f"{marker}\n{FILLER}{i}" for i in range(6)}
    files["dir/nested"] = f"{marker}\nnested"
    return files


@pytest.fixture
def fast_thread_switches() -> Iterator[None]:
    """Hand the GIL over often: with the default 5 ms, a writer thread that makes many short
    system calls waits behind the reader after each one (the convoy effect), and a loaded
    machine turns seconds into minutes."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.0001)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


@pytest.mark.slow
@pytest.mark.usefixtures("fast_thread_switches")
def test_reader_never_sees_two_generations_or_a_missing_file(tmp_path: Path) -> None:
    # On a real disk (not tmpfs): there, removing the old generation is slow enough for a
    # reader to meet it half removed, which is the case this test is about.
    writer = KubeletWriter(tmp_path / "vol", seed=7)
    writer.write(_marker_payload(0))
    expected_names = set(_marker_payload(0))
    stop = threading.Event()
    failures: list[BaseException] = []
    torn: list[str] = []
    counts = {"reads": 0, "changing": 0, "swaps": 0}

    def write_loop() -> None:
        try:
            for n in range(1, SWAPS + 1):
                if stop.is_set():
                    return
                assert writer.write(_marker_payload(n))
                counts["swaps"] = n
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)
        finally:
            stop.set()

    def read_loop() -> None:
        try:
            while not stop.is_set():
                try:
                    snap = read_volume(writer.path)
                except VolumeError as exc:
                    if "kept changing" not in str(exc):
                        raise
                    counts["changing"] += 1
                    continue
                counts["reads"] += 1
                markers = {data.split(b"\n", 1)[0] for data in snap.files.values()}
                if set(snap.files) != expected_names or len(markers) != 1:
                    torn.append(f"{snap.generation}: {sorted(snap.files)} {sorted(markers)}")
        except BaseException as exc:
            failures.append(exc)
            stop.set()

    threads = [threading.Thread(target=write_loop), threading.Thread(target=read_loop)]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join(JOIN_TIMEOUT)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert not any(thread.is_alive() for thread in threads), "threads did not stop"
    assert failures == []
    assert counts["swaps"] == SWAPS
    assert torn == []
    assert counts["reads"] > 100
    # "kept changing" means every retry met a swap: rare, and never a wrong answer.
    assert counts["changing"] * 20 <= counts["reads"], counts


# --------------------------------------------------------------------------------------------
# Errors


def test_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "podinfo"
    with pytest.raises(VolumeNotFoundError) as info:
        read_volume(missing)
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, CanaryConfError)
    assert info.value.path == str(missing)
    assert str(missing) in str(info.value)


def test_a_file_where_the_volume_should_be_is_a_subpath_mount(tmp_path: Path) -> None:
    single = tmp_path / "labels"
    single.write_text('role="canary"')
    with pytest.raises(NotAVolumeError) as info:
        read_volume(single)
    assert isinstance(info.value, NotADirectoryError)
    assert str(single) in str(info.value)
    assert "subPath" in str(info.value)


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_symlink_out_of_a_plain_directory_is_refused(tmp_path: Path, kind: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "shadow").write_text("root:x:0:0")
    volume = tmp_path / "vol"
    volume.mkdir()
    (volume / "role").write_text("canary")
    target = outside / "shadow" if kind == "file" else outside
    (volume / "escape").symlink_to(target)

    with pytest.raises(UnsafePathError) as info:
        read_volume(volume)
    assert info.value.path == str(volume / "escape")
    assert "root:x" not in str(info.value)


def test_relative_symlink_out_of_a_generation_is_refused(podinfo: KubeletWriter) -> None:
    (podinfo.path.parent / "secret").write_text("outside")
    podinfo.write({"role": "canary"})
    generation = podinfo.path / str(podinfo.generation)
    (generation / "escape").symlink_to("../../secret")

    with pytest.raises(UnsafePathError) as info:
        read_volume(podinfo.path)
    assert info.value.path == str(podinfo.path / "escape")
    assert str(podinfo.path / "escape") in str(info.value)


def test_data_link_that_is_not_a_generation_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "..data").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UnsafePathError) as info:
        read_volume(tmp_path)
    assert "..data" in str(info.value)


def test_dangling_symlink_in_a_plain_directory_names_it(tmp_path: Path) -> None:
    (tmp_path / "role").write_text("canary")
    (tmp_path / "gone").symlink_to("nowhere")
    with pytest.raises(VolumeError) as info:
        read_volume(tmp_path)
    assert str(tmp_path / "gone") in str(info.value)


def test_symlink_loop_in_a_plain_directory_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "role").write_text("canary")
    (tmp_path / "loop").symlink_to(".")
    with pytest.raises(VolumeError) as info:
        read_volume(tmp_path)
    assert info.value.path == str(tmp_path / "loop")
    assert str(tmp_path / "loop") in str(info.value)


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(VolumeError) as info:
        read_volume(tmp_path)
    assert str(tmp_path / "pipe") in str(info.value)


@pytest.fixture
def counted_reads(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts the bytes os.read returns from now on (the files stay real)."""
    counter = {"bytes": 0}
    real_read = os.read

    def read(fd: int, n: int) -> bytes:
        data = real_read(fd, n)
        counter["bytes"] += len(data)
        return data

    monkeypatch.setattr(os, "read", read)
    return counter


@pytest.mark.timeout(20)
def test_huge_file_is_refused_before_it_is_read(
    podinfo: KubeletWriter, counted_reads: dict[str, int]
) -> None:
    podinfo.write({"role": "canary", "big": ""})
    big = podinfo.path / str(podinfo.generation) / "big"
    os.truncate(big, 2 * 1024**3)  # sparse: 2 GiB that take no space

    with pytest.raises(VolumeTooLargeError) as info:
        read_volume(podinfo.path)

    # The error names the stable top-level path, not the short-lived generation directory.
    assert info.value.path == str(podinfo.path / "big")
    assert str(podinfo.path / "big") in str(info.value)
    assert str(1024 * 1024) in str(info.value)
    assert counted_reads["bytes"] <= len(b"canary"), "the big file was read"


def test_file_over_a_custom_cap(tmp_path: Path) -> None:
    (tmp_path / "small").write_bytes(b"x" * 100)
    (tmp_path / "large").write_bytes(b"x" * 101)
    with pytest.raises(VolumeTooLargeError) as info:
        read_volume(tmp_path, max_file_bytes=100)
    assert info.value.path == str(tmp_path / "large")
    (tmp_path / "large").unlink()
    assert read_volume(tmp_path, max_file_bytes=100).files["small"] == b"x" * 100


def test_volume_over_its_cap(podinfo: KubeletWriter, counted_reads: dict[str, int]) -> None:
    podinfo.write({f"part-{i}": "x" * 1000 for i in range(5)})

    with pytest.raises(VolumeTooLargeError) as info:
        read_volume(podinfo.path, max_volume_bytes=3500)

    assert str(podinfo.path) in str(info.value)
    assert "3500" in str(info.value)
    assert counted_reads["bytes"] <= 3500, "read past the volume cap"
    assert len(read_volume(podinfo.path, max_volume_bytes=5000).files) == 5


def _unreadable_volume(base: Path) -> Path:
    writer = KubeletWriter(base / "vol")
    writer.write({"role": "canary", "password": "hunter2"})
    unreadable = writer.path / str(writer.generation) / "password"
    unreadable.chmod(0o000)
    return unreadable


def test_unreadable_file_names_the_file(request: pytest.FixtureRequest) -> None:
    # root reads anything: then the read is made by an unprivileged user (or skipped)
    as_nobody = request.getfixturevalue("as_nobody") if os.geteuid() == 0 else None
    base = Path(tempfile.mkdtemp(prefix="canaryconf-perm-", dir="/tmp"))
    try:
        base.chmod(0o755)  # so that uid 65534 can reach the volume
        unreadable = _unreadable_volume(base)
        volume = unreadable.parent.parent
        if as_nobody is None:
            with pytest.raises(VolumePermissionError) as info:
                read_volume(volume)
            error = {
                "type": type(info.value).__name__,
                "path": info.value.path,
                "message": str(info.value),
                "is_permission_error": isinstance(info.value, PermissionError),
            }
        else:
            error = _read_as_nobody(volume, as_nobody)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    assert error["type"] == "VolumePermissionError"
    assert error["is_permission_error"] is True
    # The stable top-level path a user configured, never the short-lived generation.
    assert error["path"] == str(unreadable.parent.parent / "password")
    assert "..20" not in error["message"]
    assert str(unreadable.parent.parent / "password") in error["message"]
    assert "hunter2" not in error["message"]


def _read_as_nobody(volume: Path, as_nobody: dict[str, Any]) -> dict[str, object]:
    code = textwrap.dedent(
        """
        import json, sys
        from canaryconf import read_volume
        try:
            read_volume(sys.argv[1])
        except Exception as exc:
            print(json.dumps({
                "type": type(exc).__name__,
                "path": getattr(exc, "path", None),
                "message": str(exc),
                "is_permission_error": isinstance(exc, PermissionError),
            }))
        else:
            print(json.dumps({"type": None}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(volume)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd="/",
        **as_nobody,
    )
    assert result.returncode == 0, result.stderr
    decoded: dict[str, object] = json.loads(result.stdout)
    return decoded


@pytest.mark.parametrize("selective", [False, True], ids=["whole", "named files"])
def test_a_volume_that_keeps_changing_is_busy_not_broken(tmp_path: Path, selective: bool) -> None:
    """With newer generations arriving faster than a read, the error says so
    (VolumeBusyError: read again later), never that the version is bad; whether every
    file is read or only some (a downwardAPI or projected volume)."""
    writer = KubeletWriter(tmp_path / "vol", seed=5)
    files = {f"f{i}": "x" * 4096 for i in range(20)}
    writer.write(files)
    stop = threading.Event()

    def swap() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            writer.write({**files, "n": str(n)})

    swapper = threading.Thread(target=swap, name="swapper")
    swapper.start()
    errors: list[Exception] = []
    try:
        for _ in range(5000):
            try:
                if selective:
                    read_volume_files(writer.path, sorted(files), retries=1)
                else:
                    read_volume(writer.path, retries=1)
            except VolumeError as exc:
                errors.append(exc)
                break
    finally:
        stop.set()
        swapper.join(10)
    if not errors:
        pytest.skip("every read got a whole generation in between swaps on this machine")
    assert isinstance(errors[0], VolumeBusyError), repr(errors[0])
    assert "kept changing while being read" in str(errors[0])


def test_data_link_to_a_missing_generation_is_named_as_such(tmp_path: Path) -> None:
    writer = KubeletWriter(tmp_path / "vol")
    writer.write({"role": "canary"})
    generation = str(writer.generation)
    shutil.rmtree(writer.path / generation)
    with pytest.raises(VolumeError) as info:
        read_volume(writer.path)
    assert not isinstance(info.value, VolumeBusyError)
    assert info.value.path == str(writer.path / "..data")
    assert f"points to generation {generation}, which does not exist" in str(info.value)


# --------------------------------------------------------------------------------------------
# GenerationCache


def test_the_generation_cache_reads_each_generation_once(tmp_path: Path) -> None:
    from canaryconf.volume import GenerationCache

    writer = KubeletWriter(tmp_path / "vol")
    writer.write({"labels": 'role="canary"'})
    cache = GenerationCache()
    first = cache.read(writer.path)
    assert cache.read(writer.path) is first
    # Other arguments (the files read, the caps) are another read.
    assert cache.read(writer.path, ["labels"]) is not first
    assert cache.read(writer.path, max_file_bytes=100) is not first
    # ``fresh`` reads again, and what it read is what the next reader shares.
    again = cache.read(writer.path, fresh=True)
    assert again is not first and again.files == first.files
    assert cache.read(writer.path) is again
    writer.write({"labels": 'role="stable"'})
    after = cache.read(writer.path)
    assert after.generation == writer.generation != first.generation
    assert after.files["labels"] == b'role="stable"'


def test_the_generation_cache_always_reads_a_plain_directory(tmp_path: Path) -> None:
    from canaryconf.volume import GenerationCache

    (tmp_path / "role").write_text("canary")
    cache = GenerationCache()
    assert cache.read(tmp_path).files["role"] == b"canary"
    (tmp_path / "role").write_text("stable")
    assert cache.read(tmp_path).files["role"] == b"stable"


def test_the_generation_cache_forgets_the_oldest_volume_beyond_its_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from canaryconf.volume import GenerationCache

    monkeypatch.setattr(GenerationCache, "MAX_VOLUMES", 2)
    writers = [KubeletWriter(tmp_path / f"v{i}") for i in range(3)]
    for w in writers:
        w.write({"k": "v"})
    cache = GenerationCache()
    first = [cache.read(w.path) for w in writers]
    assert cache.read(writers[2].path) is first[2]
    assert cache.read(writers[1].path) is first[1]
    assert cache.read(writers[0].path) is not first[0]  # dropped: read again
