"""KubeletWriter leaves on disk exactly what the kubelet's AtomicWriter leaves; pod_files
renders a podinfo volume as a node does."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from canaryconf import parse_map
from canaryconf.testing import DEFAULT_CONFIG_SEEN, File, KubeletWriter, pod_files
from conftest import GENERATION_RE, generations


def _visible(volume: Path) -> set[str]:
    """Top-level names a user sees (everything but the ``..`` entries)."""
    return {p.name for p in volume.iterdir() if not p.name.startswith("..")}


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path, follow_symlinks=False).st_mode)


@pytest.fixture
def strict_umask() -> Iterator[None]:
    """A umask that would strip group/other bits, to prove modes are set explicitly."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def test_first_write_creates_a_generation_and_links(podinfo: KubeletWriter) -> None:
    vol = podinfo.path

    assert podinfo.write({"labels": 'role="canary"', "name": "app-1"}) is True

    [generation] = generations(vol)
    assert GENERATION_RE.fullmatch(generation)
    assert os.readlink(vol / "..data") == generation
    assert podinfo.generation == generation
    assert not os.path.lexists(vol / "..data_tmp")
    assert os.readlink(vol / "labels") == "..data/labels"
    assert os.readlink(vol / "name") == "..data/name"
    assert (vol / "labels").read_text() == 'role="canary"'
    assert (vol / generation / "name").read_bytes() == b"app-1"
    assert _visible(vol) == {"labels", "name"}


def test_second_write_swaps_the_generation_and_removes_the_old_one(
    podinfo: KubeletWriter,
) -> None:
    vol = podinfo.path
    podinfo.write({"labels": 'role="canary"', "nested/deep/file": "one"})
    first = podinfo.generation

    assert podinfo.write({"labels": 'role="stable"', "nested/deep/file": "two"}) is True

    assert generations(vol) == [podinfo.generation]
    assert podinfo.generation != first
    assert not (vol / str(first)).exists()
    assert os.readlink(vol / "..data") == podinfo.generation
    assert not os.path.lexists(vol / "..data_tmp")
    assert (vol / "labels").read_text() == 'role="stable"'
    assert (vol / "nested" / "deep" / "file").read_text() == "two"


def test_unchanged_payload_writes_nothing(podinfo: KubeletWriter) -> None:
    payload = {"labels": 'role="canary"', "annotations": ""}
    podinfo.write(payload)
    generation = podinfo.generation
    inode = os.stat(podinfo.path / str(generation)).st_ino

    assert podinfo.write(dict(payload)) is False
    assert podinfo.generation == generation
    assert os.stat(podinfo.path / str(generation)).st_ino == inode
    assert generations(podinfo.path) == [generation]


def test_unchanged_payload_recreates_a_missing_top_level_link(podinfo: KubeletWriter) -> None:
    podinfo.write({"labels": 'role="canary"', "name": "app-1"})
    generation = podinfo.generation
    os.unlink(podinfo.path / "labels")

    assert podinfo.write({"labels": 'role="canary"', "name": "app-1"}) is False

    assert podinfo.generation == generation
    assert os.readlink(podinfo.path / "labels") == "..data/labels"
    assert (podinfo.path / "labels").read_text() == 'role="canary"'


def test_str_and_bytes_with_equal_content_are_unchanged(podinfo: KubeletWriter) -> None:
    podinfo.write({"token": "s3cr\u00e9t"})
    assert podinfo.write({"token": "s3cr\u00e9t".encode()}) is False


def test_removing_a_name_is_a_change_even_if_the_rest_is_equal(podinfo: KubeletWriter) -> None:
    vol = podinfo.path
    podinfo.write({"a": "1", "b": "2", "dir/x": "3"})

    assert podinfo.write({"a": "1"}) is True

    assert _visible(vol) == {"a"}
    assert not os.path.lexists(vol / "b")
    assert not os.path.lexists(vol / "dir")
    assert set(os.listdir(vol / str(podinfo.generation))) == {"a"}


def test_nested_path_gets_only_a_top_level_link(podinfo: KubeletWriter) -> None:
    vol = podinfo.path
    podinfo.write({"dir/sub/file": "deep", "top": "flat"})

    assert _visible(vol) == {"dir", "top"}
    assert os.readlink(vol / "dir") == "..data/dir"
    assert not os.path.islink(vol / str(podinfo.generation) / "dir")
    assert (vol / "dir" / "sub" / "file").read_text() == "deep"


def test_default_file_mode_is_0644_and_generation_0755(
    podinfo: KubeletWriter, strict_umask: None
) -> None:
    podinfo.write({"labels": "", "dir/sub/file": "x"})
    generation = podinfo.path / str(podinfo.generation)

    assert _mode(generation) == 0o755
    assert _mode(generation / "labels") == 0o644
    assert _mode(generation / "dir" / "sub" / "file") == 0o644


@pytest.mark.parametrize("mode", [0o400, 0o600, 0o640])
def test_custom_file_mode_is_applied(podinfo: KubeletWriter, strict_umask: None, mode: int) -> None:
    podinfo.write({"password": "x", "dir/key": "y"}, mode=mode)
    generation = podinfo.path / str(podinfo.generation)

    assert _mode(generation / "password") == mode
    assert _mode(generation / "dir" / "key") == mode
    assert _mode(generation) == 0o755


@pytest.mark.parametrize(
    "name", ["../x", "/abs", "..hidden", "..data", "a/../b", "", ".", "./..x", "x" * 256]
)
def test_invalid_payload_names_are_rejected_before_anything_is_written(
    podinfo: KubeletWriter, name: str
) -> None:
    with pytest.raises(ValueError):
        podinfo.write({"ok": "1", name: "2"})
    assert os.listdir(podinfo.path) == []


def test_paths_are_cleaned_as_the_real_writer_does(podinfo: KubeletWriter) -> None:
    # validatePayload keys the payload by filepath.Clean(path): these are accepted.
    podinfo.write({"a//b": "1", "./c": "2", "d/./e": "3", "f/": "4"})

    generation = podinfo.path / str(podinfo.generation)
    found = {p.relative_to(generation).as_posix() for p in generation.rglob("*") if p.is_file()}
    assert found == {"a/b", "c", "d/e", "f"}
    assert _visible(podinfo.path) == {"a", "c", "d", "f"}
    assert (podinfo.path / "a" / "b").read_text() == "1"
    assert podinfo.write({"a/b": "1", "c": "2", "d/e": "3", "f": "4"}) is False


def test_two_paths_that_clean_to_one_are_refused(podinfo: KubeletWriter) -> None:
    with pytest.raises(ValueError, match="'a/b'"):
        podinfo.write({"a//b": "1", "a/b": "2"})
    assert os.listdir(podinfo.path) == []


def test_per_file_modes_in_one_write(podinfo: KubeletWriter, strict_umask: None) -> None:
    # A projected volume: 0644 downward files beside a 0400 Secret item and a 0600 key.
    podinfo.write(
        {
            "labels": 'role="canary"',
            "db-password": File("hunter2", mode=0o400),
            "tls/key.pem": File(b"KEY", mode=0o600),
        }
    )
    generation = podinfo.path / str(podinfo.generation)

    assert _mode(generation / "labels") == 0o644
    assert _mode(generation / "db-password") == 0o400
    assert _mode(generation / "tls" / "key.pem") == 0o600
    assert (generation / "db-password").read_bytes() == b"hunter2"


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_owner_is_applied_to_the_file_only(podinfo: KubeletWriter) -> None:
    podinfo.write({"token": File("t", mode=0o400, owner=65534), "labels": ""})
    generation = podinfo.path / str(podinfo.generation)

    assert os.stat(generation / "token").st_uid == 65534
    assert os.stat(generation / "token").st_gid == os.getegid()
    assert os.stat(generation / "labels").st_uid == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root may chown")
def test_owner_needs_root(podinfo: KubeletWriter) -> None:
    with pytest.raises(PermissionError, match="root"):
        podinfo.write({"token": File("t", owner=0)})


def test_stale_data_tmp_fails_the_write_and_leaves_the_volume_stuck(tmp_path: Path) -> None:
    writer = KubeletWriter(tmp_path / "vol", stale_data_tmp="fail")
    writer.write({"labels": 'role="canary"'})
    first = writer.generation
    os.symlink("..2020_01_01_00_00_00.1", writer.path / "..data_tmp")  # a crashed kubelet's

    for _ in range(2):  # every later update fails the same way
        with pytest.raises(FileExistsError, match=r"\.\.data_tmp"):
            writer.write({"labels": 'role="stable"'})
        assert writer.generation == first
        assert generations(writer.path) == [first]
        assert (writer.path / "labels").read_text() == 'role="canary"'

    os.unlink(writer.path / "..data_tmp")  # what an operator does to unstick it
    assert writer.write({"labels": 'role="stable"'}) is True
    assert (writer.path / "labels").read_text() == 'role="stable"'


def test_stale_data_tmp_is_replaced_by_default(podinfo: KubeletWriter) -> None:
    podinfo.write({"labels": 'role="canary"'})
    os.symlink("..2020_01_01_00_00_00.1", podinfo.path / "..data_tmp")

    assert podinfo.write({"labels": 'role="stable"'}) is True
    assert not os.path.lexists(podinfo.path / "..data_tmp")


def test_top_level_entries_of_any_type_are_removed(podinfo: KubeletWriter) -> None:
    podinfo.write({"gone-link": "1", "gone-file": "2", "gone-dir/x": "3", "stays": "4"})
    # Something replaced two of the links by a plain file and an empty directory.
    os.unlink(podinfo.path / "gone-file")
    (podinfo.path / "gone-file").write_text("local")
    os.unlink(podinfo.path / "gone-dir")
    (podinfo.path / "gone-dir").mkdir()

    assert podinfo.write({"stays": "4"}) is True

    assert _visible(podinfo.path) == {"stays"}


def test_dotted_names_below_the_top_level_are_allowed(podinfo: KubeletWriter) -> None:
    podinfo.write({"dir/..inner": "1", "dir/.hidden": "2", ".dotfile": "3"})
    assert (podinfo.path / "dir" / "..inner").read_text() == "1"
    assert (podinfo.path / ".dotfile").read_text() == "3"


def test_pod_files_adds_the_kubelet_annotations() -> None:
    files = pod_files(annotations={"example.com/db-url": "postgres://canary-db/app"})

    annotations = parse_map(files["annotations"])
    assert annotations == {
        "example.com/db-url": "postgres://canary-db/app",
        "kubernetes.io/config.seen": DEFAULT_CONFIG_SEEN,
        "kubernetes.io/config.source": "api",
    }


def test_pod_files_config_annotations_can_be_set() -> None:
    files = pod_files(config_seen="2026-11-26T10:00:00.123456789Z", config_source="file")
    assert files["annotations"] == (
        'kubernetes.io/config.seen="2026-11-26T10:00:00.123456789Z"\n'
        'kubernetes.io/config.source="file"'
    )


def test_pod_files_renders_labels_in_the_map_format() -> None:
    labels = {"role": "canary", "app": "shop", "rollouts-pod-template-hash": "6d8f7c9b5"}

    text = pod_files(labels=labels)["labels"]

    assert text == 'app="shop"\nrole="canary"\nrollouts-pod-template-hash="6d8f7c9b5"'
    assert parse_map(text) == labels


def test_pod_files_round_trips_awkward_annotation_values() -> None:
    value = 'line one\nline "two"\t\\ \x00 caf\u00e9 \U0001f600 {"json": [1, 2]}'
    files = pod_files(annotations={"example.com/v": value})
    text = files["annotations"]
    assert isinstance(text, str)
    assert "\n" not in text.split("\n", 1)[0]  # one line per entry
    assert parse_map(text)["example.com/v"] == value


def test_pod_files_single_value_files() -> None:
    files = pod_files(
        uid="1234-abcd",
        resources={"limits.cpu": 2, "limits.memory": "64"},
        extra={"cfg/raw.bin": b"\x00\x01"},
    )
    assert files["name"] == "app-6d8f7c9b5-x7k2p"
    assert files["namespace"] == "default"
    assert files["uid"] == "1234-abcd"
    assert files["limits.cpu"] == "2"
    assert files["limits.memory"] == "64"
    assert files["cfg/raw.bin"] == b"\x00\x01"
    assert "uid" not in pod_files()
    assert "name" not in pod_files(name=None)


def test_pod_files_written_by_the_writer_read_back(podinfo: KubeletWriter) -> None:
    podinfo.write(pod_files(labels={"role": "canary"}, annotations={"a/b": "c"}))
    assert parse_map((podinfo.path / "labels").read_bytes()) == {"role": "canary"}
    assert parse_map((podinfo.path / "annotations").read_bytes())["a/b"] == "c"
    assert _visible(podinfo.path) == {"labels", "annotations", "name", "namespace"}
