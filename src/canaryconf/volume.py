"""Read one consistent generation of a mounted Kubernetes volume.

The kubelet updates configMap, secret, downwardAPI and projected volumes by writing a new
*generation* directory (``..2026_11_26_10_00_00.123456789``) and then atomically renaming the
``..data`` symlink to point at it. Reading ``labels`` and then ``annotations`` through the
top-level symlinks can mix two generations; :func:`read_volume` resolves ``..data`` once and
reads every file through that one generation directory, starting again if the generation
disappears under it.

Plain directories (local development, docker bind mounts) are read as they are.

This module knows nothing of parsing, pydantic or watching.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from canaryconf._errors import (
    NotAVolumeError,
    UnsafePathError,
    VolumeBusyError,
    VolumeError,
    VolumeNotFoundError,
    VolumePermissionError,
    VolumeTooLargeError,
)

__all__ = [
    "DATA_LINK",
    "DEFAULT_MAX_FILE_BYTES",
    "DEFAULT_MAX_VOLUME_BYTES",
    "GenerationCache",
    "VolumeBusyError",
    "VolumeSnapshot",
    "read_data_target",
    "read_regular_file",
    "read_volume",
    "read_volume_files",
]

DATA_LINK = "..data"
#: A ConfigMap or Secret holds at most 1 MiB; so, then, does any one of its files.
DEFAULT_MAX_FILE_BYTES = 1024 * 1024
#: A projected volume can combine several sources; 4 MiB leaves room for that.
DEFAULT_MAX_VOLUME_BYTES = 4 * 1024 * 1024
DEFAULT_RETRIES = 20


@dataclass(frozen=True)
class VolumeSnapshot:
    """The files of one generation of a volume, read at one moment.

    ``generation`` is the name of the ``..<timestamp>`` directory that ``..data`` pointed
    to, or None for a plain directory. ``files`` maps each relative path (nested paths
    joined with ``/``, ``..`` entries left out) to its bytes. ``digest`` is a SHA-256 over
    names and contents only, so two generations with the same content share a digest; it
    is always computed from the files, never given (``dataclasses.replace`` with other
    files gives their digest). A snapshot can be pickled and copied.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "role").write_text("canary")
    >>> snap = read_volume(d)
    >>> snap.generation is None, snap.text("role")
    (True, 'canary')
    """

    path: str
    generation: str | None
    files: Mapping[str, bytes]
    digest: str = field(init=False)  # (computed from the files in __post_init__)
    #: The names asked for that are directories, not files (:func:`read_volume_files`,
    #: which reads no directory): a reader that expected a file there can tell a broken
    #: version from a missing file. A whole read shows a directory by the files under it.
    directories: frozenset[str] = field(default=frozenset())
    #: What readers derived from these files (a parsed label file), kept with them: a
    #: generation never changes, so whoever reads the same snapshot derives it once.
    derived: dict[object, object] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        if not isinstance(self.files, MappingProxyType):
            object.__setattr__(self, "files", MappingProxyType(dict(self.files)))
        object.__setattr__(self, "digest", content_digest(self.files, self.directories))

    def __reduce__(self) -> tuple[type[VolumeSnapshot], tuple[object, ...]]:
        # (``files`` is a read-only view, which pickle cannot take: its dict is pickled,
        # and what readers derived is left behind, to be derived again.)
        return type(self), (self.path, self.generation, dict(self.files), self.directories)

    def file_path(self, name: str) -> str:
        """The path a user should see for file ``name`` (the stable top-level one)."""
        return _joined(self.path, name)

    def text(self, name: str, default: str | None = None) -> str | None:
        """File ``name`` decoded as UTF-8 (invalid bytes replaced), or ``default``."""
        data = self.files.get(name)
        if data is None:
            return default
        return data.decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        # File contents stay out of reprs: they can be secrets.
        names = ", ".join(sorted(self.files))
        return (
            f"VolumeSnapshot(path={self.path!r}, generation={self.generation!r}, "
            f"files=[{names}], digest={self.digest[:12]!r})"
        )


class GenerationCache:
    """The last generation read of each volume, for every reader in the process.

    The kubelet never changes a generation directory once ``..data`` points to it: it
    writes a new one and renames ``..data``. So while ``..data`` still names the
    generation read last, that read is the volume's content, and N readers of one volume
    (N LiveSettings, their parsers) read and parse each generation once. A plain directory
    (no ``..data``) has no generation and is always read.

    >>> from canaryconf.testing import KubeletWriter
    >>> import tempfile
    >>> vol = tempfile.mkdtemp()
    >>> _ = KubeletWriter(vol).write({"labels": 'role="canary"'})
    >>> cache = GenerationCache()
    >>> cache.read(vol) is cache.read(vol)
    True
    """

    #: Volumes remembered at most: a process that reads more (a test suite making one per
    #: case) forgets the one stored longest ago.
    MAX_VOLUMES = 256

    def __init__(self) -> None:
        self._last: dict[tuple[object, ...], VolumeSnapshot] = {}

    def read(
        self,
        path: str | os.PathLike[str],
        names: Iterable[str] | None = None,
        *,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        max_volume_bytes: int = DEFAULT_MAX_VOLUME_BYTES,
        fresh: bool = False,
        data_target: str | None = None,
    ) -> VolumeSnapshot:
        """:func:`read_volume` (or :func:`read_volume_files` for ``names``), unless the
        generation ``..data`` names now is the one read last with the same arguments;
        ``fresh`` reads anyway (and remembers what it read). ``data_target``: what
        ``..data`` named when the caller just looked (read here when not given)."""
        root = os.fspath(path)
        wanted = None if names is None else frozenset(names)
        key = (os.path.abspath(root), wanted, max_file_bytes, max_volume_bytes)
        last = self._last.get(key)
        if not fresh and last is not None:
            if data_target is None:
                data_target = read_data_target(root)
            if last.generation == data_target:
                return last
        caps = {"max_file_bytes": max_file_bytes, "max_volume_bytes": max_volume_bytes}
        if wanted is None:
            snapshot = read_volume(root, data_target=data_target, **caps)
        else:
            snapshot = read_volume_files(root, wanted, data_target=data_target, **caps)
        self._last.pop(key, None)
        if snapshot.generation is not None:
            self._last[key] = snapshot  # (last, in the order the oldest is dropped)
            if len(self._last) > self.MAX_VOLUMES:
                del self._last[next(iter(self._last))]
        return snapshot

    def clear(self) -> None:
        self._last.clear()


def content_digest(files: Mapping[str, bytes], directories: Iterable[str] = ()) -> str:
    """SHA-256 over the sorted names and contents (length-prefixed, so unambiguous), and
    the names of ``directories`` (marked apart from files: a version with a directory
    where a file is expected differs from one with nothing there)."""
    # One byte string hashed once (the same bytes as one update per piece, fewer calls).
    parts: list[bytes] = []
    for name in sorted(files):
        data = files[name]
        encoded = name.encode("utf-8", errors="surrogateescape")
        parts += (len(encoded).to_bytes(4, "big"), encoded, len(data).to_bytes(8, "big"), data)
    for name in sorted(directories):
        encoded = name.encode("utf-8", errors="surrogateescape")
        # (no name is 4 GiB long: a directory's mark)
        parts += (b"\xff\xff\xff\xff", len(encoded).to_bytes(4, "big"), encoded)
    return hashlib.sha256(b"".join(parts)).hexdigest()


def read_data_target(path: str | os.PathLike[str]) -> str | None:
    """The generation ``..data`` points to now, or None when there is no ``..data`` link."""
    try:
        return os.readlink(_joined(os.fspath(path), DATA_LINK))
    except OSError:
        return None


@functools.lru_cache(maxsize=4096)
def _joined(directory: str, name: str) -> str:
    """``os.path.join(directory, name)`` for the stable names of a volume (its ``..data``
    link, its top-level files), asked again at every reload: for each link read and each
    field's provenance."""
    return os.path.join(directory, name)


def read_regular_file(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """The bytes of one small regular file, with the checks volume files get: opened without
    blocking (a FIFO cannot hang the reader), refused unless a regular file (a device such
    as ``/dev/zero`` never ends), refused over ``max_bytes`` before and while reading.

    Raises a :class:`~canaryconf.VolumeError` subclass naming ``path``.

    >>> import tempfile, pathlib
    >>> pid_file = pathlib.Path(tempfile.mkdtemp()) / "app.pid"
    >>> _ = pid_file.write_text("4242")
    >>> read_regular_file(pid_file, 64)
    b'4242'
    """
    name = os.fspath(path)
    try:
        data = _read_capped(name, max_bytes, max_bytes)
    except FileNotFoundError:
        raise VolumeNotFoundError(name, "no such file") from None
    except PermissionError:
        raise VolumePermissionError(name, "permission denied") from None
    except OSError as exc:
        raise VolumeError(name, exc.strerror or "cannot be read") from None
    if data is None:  # pragma: no cover - the cap is the budget: over it raised above
        raise VolumeTooLargeError(name, f"file is over {max_bytes} bytes")
    return data


class _GenerationVanished(Exception):
    """Internal: a file or directory went away while it was being read."""


def read_volume(
    path: str | os.PathLike[str],
    *,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    max_volume_bytes: int = DEFAULT_MAX_VOLUME_BYTES,
    retries: int = DEFAULT_RETRIES,
    data_target: str | None = None,
) -> VolumeSnapshot:
    """Read every file of the volume at ``path`` from one consistent generation.

    Where ``..data`` exists it is resolved once and every file is read through the
    generation directory it names; if that generation is removed (or ``..data`` moves on)
    while reading, the read starts again, at most ``retries`` times. Without ``..data`` the
    directory is read as a plain tree. Entries whose names start with ``..`` are skipped.
    ``data_target`` is what ``..data`` named when the caller just looked (then it is not
    read again before reading).

    Raises a :class:`~canaryconf.VolumeError` subclass naming the path: the directory is
    missing (:class:`VolumeNotFoundError`), a file cannot be read
    (:class:`VolumePermissionError`), a symlink leads outside the volume
    (:class:`UnsafePathError`), a file or the whole is over its cap
    (:class:`VolumeTooLargeError`, checked before the file is read), or a plain file stands
    where the directory should be (:class:`NotAVolumeError`, a ``subPath`` mount).

    >>> from canaryconf.testing import KubeletWriter
    >>> import tempfile
    >>> vol = tempfile.mkdtemp()
    >>> _ = KubeletWriter(vol).write({"labels": 'role="canary"'})
    >>> snap = read_volume(vol)
    >>> snap.generation.startswith(".."), snap.files["labels"]
    (True, b'role="canary"')
    """
    root = os.fspath(path)
    first = data_target if data_target is not None else read_data_target(root)
    if first is None:
        _check_root(root)  # (a ``..data`` link in it says it is a directory)
    # Real paths are resolved only when a symlink or a subdirectory needs them: a generation
    # the kubelet wrote has neither, and resolving costs a system call per path component.
    real_root: RealPath = _resolved_once(lambda: os.path.realpath(root))
    attempts = max(1, retries)
    for attempt in range(attempts):
        target = first if attempt == 0 else read_data_target(root)
        if target is None:
            try:
                files = _read_tree(
                    root,
                    root,
                    real_root,
                    real_root,
                    max_file=max_file_bytes,
                    max_total=max_volume_bytes,
                    plain=True,
                )
            except _GenerationVanished:
                continue  # a file was removed while we read it: read again
            return VolumeSnapshot(path=root, generation=None, files=files)
        generation_dir = os.path.join(root, target)
        # The kubelet makes the generation a real directory (then its real path is known
        # without resolving it again); one that is a symlink leading elsewhere would have
        # every file under it read as the volume's.
        real_generation = _checked_generation(root, target, real_root)
        try:
            files = _read_tree(
                generation_dir,
                root,
                real_root,
                real_generation,
                max_file=max_file_bytes,
                max_total=max_volume_bytes,
                plain=False,
            )
        except _GenerationVanished:
            if read_data_target(root) == target and not os.path.isdir(generation_dir):
                # Not a swap under way: the kubelet creates a generation before it points
                # ``..data`` at it and removes it only after ``..data`` moved on.
                raise VolumeError(
                    os.path.join(root, DATA_LINK),
                    f"points to generation {target}, which does not exist",
                ) from None
            continue
        if read_data_target(root) != target:
            # ``..data`` moved on while we read, so the old generation may have been half
            # removed under us (the directory outlives its files). While ``..data`` still
            # names it, the kubelet has not started removing it.
            continue
        return VolumeSnapshot(path=root, generation=target, files=files)
    raise VolumeBusyError(root, f"kept changing while being read ({attempts} attempts)")


def _check_root(root: str) -> None:
    try:
        st = os.stat(root)
    except FileNotFoundError:
        raise VolumeNotFoundError(root, "no such directory (is the volume mounted?)") from None
    except PermissionError:
        raise VolumePermissionError(root, "permission denied") from None
    except OSError as exc:
        raise VolumeError(root, exc.strerror or "cannot be read") from None
    if not stat.S_ISDIR(st.st_mode):
        raise NotAVolumeError(
            root,
            "is a file, not a volume directory: a subPath mount is a copy that never updates;"
            " mount the whole volume and point canaryconf at its directory",
        )


#: A real path, resolved on first call (then kept).
RealPath = Callable[[], str]


def _resolved_once(resolve: Callable[[], str]) -> RealPath:
    """``resolve()``, called the first time the result is asked for, then kept. (What
    ``functools.cache`` gives, without making a cache object at every read.)"""
    kept: list[str] = []

    def real_path() -> str:
        if not kept:
            kept.append(resolve())
        return kept[0]

    return real_path


def _walk(
    base: str,
    prefix: str,
    real_root: RealPath,
    real_base: RealPath,
    ancestors: frozenset[str],
    *,
    skip_dots: bool,
) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Every file under ``base``; ``ancestors`` are the real paths of the directories
    between the walk's top (``real_base``) and ``base``, to refuse a symlink loop."""
    with os.scandir(base) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        if skip_dots and entry.name.startswith(".."):
            continue
        if entry.is_symlink():
            _check_inside(entry.path, real_root())
        rel = f"{prefix}{entry.name}"
        if entry.is_dir(follow_symlinks=True):
            real = os.path.realpath(entry.path)
            if real == real_base() or real in ancestors:
                raise VolumeError(entry.path, "is a symlink loop (it leads to its own parent)")
            yield from _walk(
                entry.path,
                rel + "/",
                real_root,
                real_base,
                ancestors | {real},
                skip_dots=False,
            )
        else:
            yield rel, entry


def _checked_generation(root: str, target: str, real_root: RealPath) -> RealPath:
    """The real path of the generation ``target`` that ``..data`` of ``root`` names. It
    must name a ``..<timestamp>`` directory of the volume; the kubelet makes that a real
    directory (its real path is then known without resolving it); one that is a symlink
    leading elsewhere would have every file under it read as the volume's: refused."""
    if "/" in target or not target.startswith("..") or target in ("..", DATA_LINK):
        raise UnsafePathError(os.path.join(root, DATA_LINK), "does not name a generation")
    generation_dir = os.path.join(root, target)
    try:
        mode: int | None = os.lstat(generation_dir).st_mode
    except OSError:
        mode = None  # (gone: the read that follows notices)
    if mode is None or stat.S_ISDIR(mode):
        return _resolved_once(lambda: os.path.join(real_root(), target))
    resolved = os.path.realpath(generation_dir)
    if not resolved.startswith(real_root() + os.sep):
        raise UnsafePathError(
            os.path.join(root, DATA_LINK), "leads outside the volume (a symlinked generation)"
        )
    return lambda: resolved


def _lstat_mode(path: str) -> int | None:
    try:
        return os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None


def _read_tree(
    base: str,
    root: str,
    real_root: RealPath,
    real_base: RealPath,
    *,
    max_file: int,
    max_total: int,
    plain: bool,
) -> dict[str, bytes]:
    """Every file under ``base`` (whose real path is ``real_base``). ``plain`` is a
    directory without generations; otherwise ``base`` is a generation directory of the
    volume at ``root``."""
    files: dict[str, bytes] = {}
    total = 0
    entry: os.DirEntry[str] | None = None
    try:
        walk = _walk(base, "", real_root, real_base, frozenset(), skip_dots=plain)
        for rel, entry in walk:
            data = _read_capped(entry.path, max_file, max_total - total)
            if data is None:
                raise VolumeTooLargeError(root, f"volume is over {max_total} bytes")
            total += len(data)
            files[rel] = data
    except VolumeError as exc:
        raise type(exc)(_stable_path(exc.path, base, root, plain), exc.reason) from None
    except FileNotFoundError as exc:
        if plain and entry is not None and exc.filename == entry.path and _dangling(entry.path):
            raise VolumeError(entry.path, "is a symlink to nothing (dangling)") from None
        raise _GenerationVanished from None
    except NotADirectoryError:
        raise _GenerationVanished from None
    except PermissionError as exc:
        shown = _stable_path(exc.filename or base, base, root, plain)
        raise VolumePermissionError(shown, "permission denied") from None
    except OSError as exc:
        shown = _stable_path(exc.filename or base, base, root, plain)
        raise VolumeError(shown, exc.strerror or "cannot be read") from None
    return files


def _stable_path(path: str, base: str, root: str, plain: bool) -> str:
    """The path a user knows for ``path``: under the volume's top level, not under the
    short-lived generation directory ``base`` (which a user never configured)."""
    if plain:
        return path
    if path == base:
        return root
    if not path.startswith(base + os.sep):
        return path
    return os.path.join(root, path[len(base) + 1 :])


def _dangling(path: str) -> bool:
    return os.path.islink(path) and not os.path.exists(path)


def _check_inside(path: str, real_root: str) -> None:
    resolved = os.path.realpath(path)
    if resolved != real_root and not resolved.startswith(real_root + os.sep):
        raise UnsafePathError(path, "is a symlink that leads outside the volume; refused")


_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
#: Also: refuse to follow a symlink in the last component (ELOOP). Without O_NOFOLLOW
#: (Windows) every name is looked at the careful way.
_HAS_NOFOLLOW = hasattr(os, "O_NOFOLLOW")
_OPEN_NOFOLLOW = _OPEN_FLAGS | getattr(os, "O_NOFOLLOW", 0)
#: What opening with ``O_NOFOLLOW`` gives for a symlink (Linux ELOOP, FreeBSD EMLINK).
_SYMLINK_ERRNOS = frozenset({errno.ELOOP, getattr(errno, "EMLINK", errno.ELOOP)})


def _read_capped(path: str, cap: int, budget: int, *, plain_only: bool = False) -> bytes | None:
    """The bytes of the regular file ``path``. Over ``cap`` raises
    :class:`VolumeTooLargeError`; over ``budget`` (what the volume has left) returns None.
    Both are checked on the size before reading, and again while reading (a file can grow).
    ``plain_only``: open without following a symlink, and raise :class:`_NotPlain` for a
    symlink or a directory (the caller then looks at the name the careful way)."""
    try:
        fd = os.open(path, _OPEN_NOFOLLOW if plain_only else _OPEN_FLAGS)
    except OSError as exc:
        if plain_only and exc.errno in _SYMLINK_ERRNOS:
            raise _NotPlain from None
        if exc.errno in (errno.ENOENT, errno.EACCES, errno.EPERM):
            raise
        raise VolumeError(path, exc.strerror or "cannot be opened") from None
    try:
        st = os.fstat(fd)
        if plain_only and stat.S_ISDIR(st.st_mode):
            raise _NotPlain
        if not stat.S_ISREG(st.st_mode):
            raise VolumeError(path, "is not a regular file")
        if st.st_size > cap:
            raise VolumeTooLargeError(path, f"file is over {cap} bytes ({st.st_size})")
        if st.st_size > budget:
            return None
        limit = min(cap, budget)
        chunks: list[bytes] = []
        remaining = limit + 1
        while remaining > 0:
            # The size fstat gave, plus one byte to notice a file that grew since.
            want = min(remaining, st.st_size + 1 if not chunks else 1 << 16)
            chunk = os.read(fd, want)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
            if len(chunk) < want:
                break  # a regular file reads short only at its end: no read to learn that
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if len(data) > cap:
            raise VolumeTooLargeError(path, f"file is over {cap} bytes")
        return data if len(data) <= budget else None
    finally:
        os.close(fd)


class _NotPlain(Exception):
    """Internal: the name is a symlink or a directory: :func:`_read_named` looks closer."""


def read_volume_files(
    path: str | os.PathLike[str],
    names: Iterable[str],
    *,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    max_volume_bytes: int = DEFAULT_MAX_VOLUME_BYTES,
    retries: int = DEFAULT_RETRIES,
    data_target: str | None = None,
) -> VolumeSnapshot:
    """Read only the files ``names`` of the volume at ``path``, all from one generation.

    Like :func:`read_volume`, but a file that is not named is never opened: in a projected
    volume, a 0400 Secret item owned by another user does not stop a reader that does not
    need it. A name with no file is left out of the snapshot. A named file that cannot be
    read raises :class:`VolumePermissionError` naming its stable top-level path (never the
    short-lived ``..<timestamp>`` one).

    >>> from canaryconf.testing import KubeletWriter
    >>> import tempfile
    >>> vol = tempfile.mkdtemp()
    >>> _ = KubeletWriter(vol).write({"labels": 'role="canary"', "token": "s3cr3t"})
    >>> sorted(read_volume_files(vol, ["labels", "missing"]).files)
    ['labels']
    """
    root = os.fspath(path)
    first = data_target if data_target is not None else read_data_target(root)
    if first is None:
        _check_root(root)
    real_root: RealPath = _resolved_once(lambda: os.path.realpath(root))
    wanted = _wanted_names(names if isinstance(names, frozenset) else frozenset(names))
    attempts = max(1, retries)
    for attempt in range(attempts):
        target = first if attempt == 0 else read_data_target(root)
        base = root
        if target is not None:
            base = os.path.join(root, target)
            _checked_generation(root, target, real_root)
        directories: set[str] = set()
        try:
            files = _read_named(
                base,
                root,
                real_root,
                wanted,
                directories,
                max_file=max_file_bytes,
                max_total=max_volume_bytes,
            )
        except _GenerationVanished:
            continue
        if target is not None and read_data_target(root) != target:
            continue
        return VolumeSnapshot(
            path=root, generation=target, files=files, directories=frozenset(directories)
        )
    raise VolumeBusyError(root, f"kept changing while being read ({attempts} attempts)")


@functools.lru_cache(maxsize=512)
def _wanted_names(names: frozenset[str]) -> tuple[str, ...]:
    """The names a selective read may open, in order (the same few sets at every read)."""
    return tuple(sorted(n for n in names if _plain_relative(n)))


def _plain_relative(name: str) -> bool:
    parts = name.split("/")
    return (
        bool(name)
        and not name.startswith("/")
        and not parts[0].startswith("..")
        and all(p not in ("", ".", "..") for p in parts)
    )


def _read_named(
    base: str,
    root: str,
    real_root: RealPath,
    names: Iterable[str],
    directories: set[str],
    *,
    max_file: int,
    max_total: int,
) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    total = 0
    # (The names are plain relative paths: joined by hand, once per file and reload.)
    prefix = base if base.endswith(os.sep) else base + os.sep
    for name in names:
        full = prefix + name
        shown = _joined(root, name)  # (the top-level path a user sees; memoized)
        try:
            # The usual case, a regular file of the generation, in one open; a symlink or
            # a directory (or a nested name) is looked at closer.
            plain = _HAS_NOFOLLOW and "/" not in name
            if plain:
                try:
                    data = _read_capped(full, max_file, max_total - total, plain_only=True)
                except _NotPlain:
                    plain = False
            if not plain:
                mode = _lstat_mode(full)
                if mode is not None and ("/" in name or stat.S_ISLNK(mode)):
                    # A symlink, or a path through a directory that may be one: resolved.
                    _check_inside(full, real_root())
                if mode is not None and (
                    stat.S_ISDIR(mode) or (stat.S_ISLNK(mode) and os.path.isdir(full))
                ):
                    directories.add(name)  # not a file a field can read: said, not read
                    continue
                data = _read_capped(full, max_file, max_total - total)
        except VolumeError as exc:
            raise type(exc)(shown, exc.reason) from None
        except (FileNotFoundError, NotADirectoryError):
            if base != root and not os.path.isdir(base):
                raise _GenerationVanished from None
            if base == root and _dangling(full):
                raise VolumeError(shown, "is a symlink to nothing (dangling)") from None
            continue
        except PermissionError:
            raise VolumePermissionError(
                shown, "permission denied (the file's mode or owner keeps this user out)"
            ) from None
        except OSError as exc:
            raise VolumeError(shown, exc.strerror or "cannot be read") from None
        if data is None:
            raise VolumeTooLargeError(root, f"volume is over {max_total} bytes")
        total += len(data)
        files[name] = data
    return files
