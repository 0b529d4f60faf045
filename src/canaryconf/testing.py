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

import errno
import os
import posixpath
import random
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from canaryconf.downward import format_map
from canaryconf.volume import DATA_LINK, read_data_target

__all__ = ["DEFAULT_CONFIG_SEEN", "File", "KubeletWriter", "pod_files"]

DATA_TMP_LINK = "..data_tmp"
#: The ``kubernetes.io/config.seen`` value :func:`pod_files` uses unless told otherwise.
DEFAULT_CONFIG_SEEN = "2026-01-01T00:00:00.000000000Z"
#: The real writer's limits on a payload path and on each of its names.
MAX_PATH_LENGTH = 4096
MAX_NAME_LENGTH = 255


@dataclass(frozen=True)
class File:
    """One file of a payload with its own mode and owner: the kubelet's ``FileProjection``.

    A Secret item of a projected volume is often ``File(token, mode=0o400)`` beside 0644
    files. ``owner`` is the user id the kubelet gives the file (``fsUser``; only root may
    set it): the group is left as it is, as the real writer does.

    >>> import tempfile, os, stat
    >>> vol = tempfile.mkdtemp()
    >>> _ = KubeletWriter(vol).write({"labels": "", "token": File("s3cr3t", mode=0o400)})
    >>> oct(stat.S_IMODE(os.stat(os.path.join(vol, "token")).st_mode))
    '0o400'
    """

    data: str | bytes
    mode: int | None = None
    owner: int | None = None


class KubeletWriter:
    """Update a directory exactly as the kubelet updates a mounted volume.

    ``write(payload)`` takes the whole new content of the volume (relative path -> text,
    bytes or :class:`File`) and:

    1. checks and cleans every path as the real writer does (``a//b``, ``./c``, ``d/./e``
       and ``f/`` become ``a/b``, ``c``, ``d/e``, ``f``; empty, absolute, ``..`` and
       ``..``-prefixed paths and names over 255 characters are refused before anything is
       written);
    2. resolves ``..data``; if every file of the payload equals the current one byte for
       byte and none was removed, writes nothing (it only re-creates a missing top-level
       symlink) and returns False;
    3. creates ``..YYYY_MM_DD_HH_MM_SS.<random>`` (mode 0700, then 0755) and writes every
       file into it in random order (O_WRONLY|O_CREAT|O_TRUNC, then chmod to the file's
       mode, else ``mode``; then chown to its owner, if any);
    4. points ``..data_tmp`` at it and renames ``..data_tmp`` onto ``..data``: the one
       atomic switch;
    5. creates ``<name> -> ..data/<name>`` for each new top-level name, removes the
       top-level entries that left the payload (whatever their type), and removes the old
       generation.

    It returns True when it wrote a new generation.

    ``stale_data_tmp`` says what a ``..data_tmp`` left by a crashed kubelet does. The real
    writer cannot create its link over it: ``write`` fails with :class:`FileExistsError`
    after removing the new generation, ``..data`` stays where it was, and every later write
    fails the same way: the volume is stuck until someone removes ``..data_tmp``. That is
    ``"fail"``; the default, ``"replace"``, removes the stale link and goes on.

    >>> import tempfile, os
    >>> vol = tempfile.mkdtemp()
    >>> KubeletWriter(vol).write({"db-url": "postgres://canary-db/app"})
    True
    >>> os.readlink(os.path.join(vol, "db-url"))
    '..data/db-url'
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        seed: int | None = None,
        stale_data_tmp: Literal["replace", "fail"] = "replace",
    ) -> None:
        if stale_data_tmp not in ("replace", "fail"):
            raise ValueError(f"stale_data_tmp must be 'replace' or 'fail', not {stale_data_tmp!r}")
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.stale_data_tmp = stale_data_tmp
        self._random = random.Random(seed)

    @property
    def generation(self) -> str | None:
        """The generation ``..data`` points to now."""
        return read_data_target(self.path)

    def write(self, payload: Mapping[str, str | bytes | File], *, mode: int = 0o644) -> bool:
        items = _clean_payload(payload)
        files = {name: _as_bytes(item.data) for name, item in items.items()}
        for item in items.values():
            if item.owner is not None and os.geteuid() != 0:
                raise PermissionError("File(owner=...) needs root, as chown does")
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
            item = items[name]
            file_mode = mode if item.mode is None else item.mode
            target = generation_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, file_mode)
            try:
                os.write(fd, files[name])
            finally:
                os.close(fd)
            os.chmod(target, file_mode)
            if item.owner is not None:
                os.lchown(target, item.owner, -1)

        tmp_link = self.path / DATA_TMP_LINK
        if os.path.lexists(tmp_link) and self.stale_data_tmp == "replace":
            os.unlink(tmp_link)
        try:
            os.symlink(generation, tmp_link)
        except FileExistsError:
            shutil.rmtree(generation_dir, ignore_errors=True)
            raise FileExistsError(
                errno.EEXIST,
                "a stale ..data_tmp blocks the atomic update (the kubelet fails the same way)",
                str(tmp_link),
            ) from None
        os.rename(tmp_link, self.path / DATA_LINK)

        self._link_top_level(files)
        if old_files is not None:
            self._remove_top_level({_top(n) for n in old_files} - {_top(n) for n in files})
        if old:
            shutil.rmtree(self.path / old, ignore_errors=True)
        return True

    def _link_top_level(self, files: Mapping[str, bytes]) -> None:
        for name in {_top(n) for n in files}:
            link = self.path / name
            if not os.path.lexists(link):
                os.symlink(f"{DATA_LINK}/{name}", link)

    def _remove_top_level(self, names: set[str]) -> None:
        """Remove each name as Go's ``os.Remove`` does: a file or link, else an empty
        directory. A failure is raised after the switch, before the old generation is
        removed, as in the real writer."""
        error: OSError | None = None
        for name in sorted(names):
            entry = self.path / name
            try:
                os.unlink(entry)
            except FileNotFoundError:
                continue
            except (IsADirectoryError, PermissionError):
                try:
                    os.rmdir(entry)
                except OSError as exc:
                    error = exc
            except OSError as exc:
                error = exc
        if error is not None:
            raise error

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


def _clean_payload(payload: Mapping[str, str | bytes | File]) -> dict[str, File]:
    """The payload keyed by cleaned paths, checked as the real writer's ``validatePayload``
    does; raises :class:`ValueError` naming the path before anything is written."""
    cleaned: dict[str, File] = {}
    for name, item in payload.items():
        clean = _clean_path(name)
        if clean in cleaned:
            raise ValueError(f"payload paths {name!r} and another both clean to {clean!r}")
        cleaned[clean] = item if isinstance(item, File) else File(item)
    return cleaned


def _clean_path(name: str) -> str:
    if not name:
        raise ValueError("invalid payload path '': must not be empty")
    if name.startswith("/"):
        raise ValueError(f"invalid payload path {name!r}: must be relative")
    if len(name) > MAX_PATH_LENGTH:
        raise ValueError(f"invalid payload path: over {MAX_PATH_LENGTH} characters")
    parts = name.split("/")
    if ".." in parts:
        raise ValueError(f"invalid payload path {name!r}: must not contain '..'")
    if any(len(part) > MAX_NAME_LENGTH for part in parts):
        raise ValueError(f"invalid payload path {name!r}: a name over {MAX_NAME_LENGTH} characters")
    if parts[0].startswith(".."):
        raise ValueError(f"invalid payload path {name!r}: must not start with '..'")
    clean = posixpath.normpath(name)
    # The real writer would go on to write ``.`` or ``./..x`` and fail or clobber its own
    # ``..`` entries; refusing them here is the one place this writer is stricter.
    if clean == "." or clean.startswith(".."):
        raise ValueError(f"invalid payload path {name!r}: cleans to {clean!r}")
    return clean


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
