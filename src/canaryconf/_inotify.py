"""A minimal Linux inotify binding over ctypes.

canaryconf needs four calls (``inotify_init1``, ``inotify_add_watch``, ``inotify_rm_watch``,
``read``) and a file descriptor it can hand to an event loop or ``select``; libc already has
them, so no dependency is added. The descriptor is non-blocking: readiness comes from the
loop. One descriptor carries many watches (see :mod:`canaryconf._watch`): the kernel limits
descriptors per user far more tightly (``fs.inotify.max_user_instances``, 128 by default)
than watches.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct
import sys
from typing import NamedTuple

__all__ = [
    "InotifyEvent",
    "InotifyUnavailable",
    "add_directory_watch",
    "available",
    "open_inotify",
    "read_events",
    "remove_watch",
]

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_MASK_ADD = 0x20000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = getattr(os, "O_CLOEXEC", 0o2000000)

#: What a watch on a volume directory listens for: any entry created, removed, renamed or
#: written, and the directory itself going away.
DIRECTORY_MASK = (
    IN_MODIFY
    | IN_ATTRIB
    | IN_CLOSE_WRITE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
    | IN_ONLYDIR
)
#: What a watch on a volume the kubelet manages listens for: the rename onto ``..data``
#: (its one commit point) and the directory going away. The kubelet's other steps (the new
#: generation, its files, ``..data_tmp``, the old generation's removal) wake nobody.
KUBELET_MASK = IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR
#: Events after which the watch is gone and the directory must be watched anew.
GONE_MASK = IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT | IN_IGNORED

#: How names are decoded: what ``os.fsdecode`` does, without a Python call per event.
_FS_ENCODING = sys.getfilesystemencoding()
_FS_ERRORS = sys.getfilesystemencodeerrors()
_HEADER = struct.Struct("iIII")
_BUFFER = 64 * 1024
#: An event with the longest name the kernel sends (NAME_MAX and its padding).
_LARGEST_EVENT = _HEADER.size + 256 + 16


class InotifyUnavailable(OSError):
    """inotify cannot be used here: not Linux, no libc symbol, or a kernel limit reached."""


class InotifyEvent(NamedTuple):
    """One inotify event: watch descriptor, mask and the entry name ("" for the dir). (A
    named tuple: one is made per event read, on the path of every change.)"""

    wd: int
    mask: int
    name: str


_libc: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        if not sys.platform.startswith("linux"):
            raise InotifyUnavailable(errno.ENOSYS, "inotify exists only on Linux")
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            lib.inotify_init1.argtypes = [ctypes.c_int]
            lib.inotify_init1.restype = ctypes.c_int
            lib.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
            lib.inotify_add_watch.restype = ctypes.c_int
            lib.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
            lib.inotify_rm_watch.restype = ctypes.c_int
        except (OSError, AttributeError) as exc:
            raise InotifyUnavailable(errno.ENOSYS, f"libc has no inotify: {exc}") from None
        _libc = lib
    return _libc


def available() -> bool:
    """True when this platform's libc offers inotify."""
    try:
        _lib()
    except InotifyUnavailable:
        return False
    return True


def open_inotify() -> int:
    """A new non-blocking, close-on-exec inotify descriptor."""
    fd = int(_lib().inotify_init1(IN_NONBLOCK | IN_CLOEXEC))
    if fd < 0:
        err = ctypes.get_errno()
        raise InotifyUnavailable(err, f"inotify_init1: {os.strerror(err)}")
    return fd


def add_directory_watch(fd: int, path: str, mask: int = DIRECTORY_MASK) -> int:
    """Watch the directory ``path`` (not recursively); returns the watch descriptor.

    A directory already watched on ``fd`` (by this path or another one to the same inode)
    keeps its watch descriptor and gets ``mask`` instead of its old mask, or in addition to
    it when ``mask`` holds :data:`IN_MASK_ADD`.
    ENOSPC (``fs.inotify.max_user_watches`` reached) raises :class:`InotifyUnavailable`;
    a missing or non-directory path raises FileNotFoundError / NotADirectoryError.
    """
    wd = int(_lib().inotify_add_watch(fd, os.fsencode(path), mask))
    if wd < 0:
        err = ctypes.get_errno()
        if err == errno.ENOSPC:
            raise InotifyUnavailable(
                err, "inotify watch limit reached (fs.inotify.max_user_watches)"
            )
        if err == errno.ENOENT:
            raise FileNotFoundError(err, os.strerror(err), path)
        if err == errno.ENOTDIR:
            raise NotADirectoryError(err, os.strerror(err), path)
        raise OSError(err, os.strerror(err), path)
    return wd


def remove_watch(fd: int, wd: int) -> None:
    """Remove watch ``wd`` from ``fd``; the kernel then queues ``IN_IGNORED`` for it.

    A watch the kernel has removed already (its directory deleted or unmounted: the
    ``IN_IGNORED`` may still be queued) is not an error: EINVAL is ignored.
    """
    if int(_lib().inotify_rm_watch(fd, wd)) < 0:
        err = ctypes.get_errno()
        if err != errno.EINVAL:
            raise OSError(err, f"inotify_rm_watch: {os.strerror(err)}")


def read_events(fd: int) -> list[InotifyEvent]:
    """Every event queued on ``fd`` now (an empty list when none is)."""
    events: list[InotifyEvent] = []
    while True:
        try:
            buffer = os.read(fd, _BUFFER)
        except BlockingIOError:
            return events
        offset = 0
        while offset + _HEADER.size <= len(buffer):
            wd, mask, _cookie, length = _HEADER.unpack_from(buffer, offset)
            start = offset + _HEADER.size
            raw = buffer[start : start + length].rstrip(b"\0")
            events.append(InotifyEvent(wd, mask, raw.decode(_FS_ENCODING, _FS_ERRORS)))
            offset = start + length
        if len(buffer) <= _BUFFER - _LARGEST_EVENT:
            # Room for another event was left: the queue was empty. (One queued since
            # makes the descriptor readable again.)
            return events
