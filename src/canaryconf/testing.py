"""Write volumes the way the kubelet does, for tests and local development.

:class:`KubeletWriter` performs the kubelet's AtomicWriter sequence of file-system calls
(``pkg/volume/util/atomic_writer.go``) on a local directory, so a test of your service sees
exactly what a pod sees: a new ``..<timestamp>`` generation, the ``..data`` symlink renamed
onto it, top-level symlinks, and the old generation removed.

>>> import tempfile
>>> from canaryconf import read_volume
>>> vol = tempfile.mkdtemp()
>>> writer = KubeletWriter(vol)
>>> writer.write(pod_files(labels={"app": "shop", "role": "canary"}))
True
>>> writer.write(pod_files(labels={"app": "shop", "role": "canary"}))  # unchanged
False
>>> read_volume(vol).text("labels")
'app="shop"\\nrole="canary"'
"""

from __future__ import annotations

import os
import random
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

from canaryconf.downward import format_map
from canaryconf.volume import DATA_LINK, read_data_target

__all__ = ["DEFAULT_CONFIG_SEEN", "KubeletWriter", "pod_files"]

DATA_TMP_LINK = "..data_tmp"
#: The ``kubernetes.io/config.seen`` value :func:`pod_files` uses unless told otherwise.
DEFAULT_CONFIG_SEEN = "2026-01-01T00:00:00.000000000Z"


class KubeletWriter:
    """Update a directory exactly as the kubelet updates a mounted volume.

    ``write(payload)`` takes the whole new content of the volume (relative path -> text or
    bytes) and:

    1. resolves ``..data``; if every file of the payload equals the current one byte for
       byte and none was removed, writes nothing (it only re-creates a missing top-level
       symlink) and returns False;
    2. creates ``..YYYY_MM_DD_HH_MM_SS.<random>`` (mode 0700, then 0755) and writes every
       file into it in random order (O_WRONLY|O_CREAT|O_TRUNC, then chmod to ``mode``);
    3. points ``..data_tmp`` at it and renames ``..data_tmp`` onto ``..data``: the one
       atomic switch;
    4. creates ``<name> -> ..data/<name>`` for each new top-level name, unlinks the
       top-level names that left the payload, and removes the old generation.

    It returns True when it wrote a new generation.

    >>> import tempfile, os
    >>> vol = tempfile.mkdtemp()
    >>> KubeletWriter(vol).write({"db-url": "postgres://canary-db/app"})
    True
    >>> os.readlink(os.path.join(vol, "db-url"))
    '..data/db-url'
    """

    def __init__(self, path: str | os.PathLike[str], *, seed: int | None = None) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._random = random.Random(seed)

    @property
    def generation(self) -> str | None:
        """The generation ``..data`` points to now."""
        return read_data_target(self.path)

    def write(self, payload: Mapping[str, str | bytes], *, mode: int = 0o644) -> bool:
        files = {_check_name(name): _as_bytes(data) for name, data in payload.items()}
        old = read_data_target(self.path)
        old_files = _existing_files(self.path / old) if old else None
        if old_files is not None and old_files == files:
            self._link_top_level(files)
            return False

        generation = self._new_generation_name()
        generation_dir = self.path / generation
        os.mkdir(generation_dir, 0o700)
        os.chmod(generation_dir, 0o755)  # noqa: S103  (what the kubelet does)
        names = list(files)
        self._random.shuffle(names)
        for name in names:
            target = generation_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            try:
                os.write(fd, files[name])
            finally:
                os.close(fd)
            os.chmod(target, mode)

        tmp_link = self.path / DATA_TMP_LINK
        if os.path.lexists(tmp_link):
            os.unlink(tmp_link)
        os.symlink(generation, tmp_link)
        os.rename(tmp_link, self.path / DATA_LINK)

        self._link_top_level(files)
        if old_files is not None:
            new_top = {_top(name) for name in files}
            for name in {_top(n) for n in old_files} - new_top:
                link = self.path / name
                if os.path.islink(link):
                    os.unlink(link)
        if old:
            shutil.rmtree(self.path / old, ignore_errors=True)
        return True

    def _link_top_level(self, files: Mapping[str, bytes]) -> None:
        for name in {_top(n) for n in files}:
            link = self.path / name
            if not os.path.lexists(link):
                os.symlink(f"{DATA_LINK}/{name}", link)

    def _new_generation_name(self) -> str:
        while True:
            stamp = time.strftime("%Y_%m_%d_%H_%M_%S", time.gmtime())
            name = f"..{stamp}.{self._random.getrandbits(32)}"
            if not os.path.lexists(self.path / name):
                return name


def pod_files(
    *,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    name: str | None = "app-6d8f7c9b5-x7k2p",
    namespace: str | None = "default",
    uid: str | None = None,
    resources: Mapping[str, int | str] | None = None,
    extra: Mapping[str, str | bytes] | None = None,
    config_seen: str = DEFAULT_CONFIG_SEEN,
    config_source: str = "api",
) -> dict[str, str | bytes]:
    """The payload of a typical podinfo downwardAPI volume.

    ``labels`` and ``annotations`` are rendered in the kubelet's map format; the kubelet's
    own ``kubernetes.io/config.seen`` and ``kubernetes.io/config.source`` annotations are
    added as on a real node. ``resources`` maps file names to values
    (``{"limits.cpu": 1}``); ``extra`` adds any other files as they are.

    >>> sorted(pod_files(labels={"role": "canary"}))
    ['annotations', 'labels', 'name', 'namespace']
    >>> pod_files(labels={"role": "canary"})["labels"]
    'role="canary"'
    """
    all_annotations = {
        "kubernetes.io/config.seen": config_seen,
        "kubernetes.io/config.source": config_source,
        **(annotations or {}),
    }
    files: dict[str, str | bytes] = {
        "labels": format_map(labels or {}),
        "annotations": format_map(all_annotations),
    }
    for key, value in (("name", name), ("namespace", namespace), ("uid", uid)):
        if value is not None:
            files[key] = value
    for key, amount in (resources or {}).items():
        files[key] = str(amount)
    files.update(extra or {})
    return files


def _as_bytes(data: str | bytes) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


def _check_name(name: str) -> str:
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid payload path {name!r}")
    if parts[0].startswith(".."):
        raise ValueError(f"payload path {name!r} must not start with '..'")
    return name


def _top(name: str) -> str:
    return name.split("/", 1)[0]


def _existing_files(generation_dir: Path) -> dict[str, bytes] | None:
    if not generation_dir.is_dir():
        return None
    found: dict[str, bytes] = {}
    for path in generation_dir.rglob("*"):
        if path.is_file():
            found[path.relative_to(generation_dir).as_posix()] = path.read_bytes()
    return found
