"""Directory watchers: one per volume directory per event loop, shared by subscribers.

Every backend is a coroutine that yields once per coalesced batch of changes:

- ``inotify`` (Linux, default): the inotify descriptor is registered with the event loop
  (``loop.add_reader``), so an idle watcher costs nothing: no thread of its own, no timer,
  no periodic wake-up. On a volume the kubelet manages it listens for the rename onto
  ``..data`` (the kubelet's commit point) alone and reports it at once: one wake-up per
  swap. On a plain directory any change is reported, coalesced over ``debounce`` seconds.
- ``watchfiles`` (elsewhere, e.g. macOS development): ``watchfiles.awatch`` on the directory.
- ``polling`` (``force_polling=True``, or when inotify is unavailable or out of watches):
  every ``poll_interval`` seconds compare the ``..data`` target, or for a plain directory
  the content digest; never mtimes, whose granularity can be a second.

A :class:`DirectoryWatch` waits for a directory that does not exist yet, watches it again
after it is removed and recreated, and restarts with backoff after any error, logging it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Literal

from canaryconf import _inotify
from canaryconf.volume import DATA_LINK, read_data_target, read_volume

__all__ = ["Backend", "DirectoryWatch", "choose_backend", "directory_watch"]

logger = logging.getLogger("canaryconf")

Backend = Literal["auto", "inotify", "watchfiles", "polling"]
Subscriber = Callable[[], Awaitable[None]]

MISSING_POLL_START = 0.05
MISSING_POLL_MAX = 1.0
BACKOFF_START = 0.1
BACKOFF_MAX = 5.0

_warned: set[str] = set()


def _warn_once(key: str, message: str, *args: object) -> None:
    if key not in _warned:
        _warned.add(key)
        logger.warning(message, *args)


def choose_backend(
    backend: Backend, force_polling: bool
) -> Literal["inotify", "watchfiles", "polling"]:
    """The backend ``auto`` stands for here: inotify on Linux, watchfiles elsewhere."""
    if force_polling or backend == "polling":
        return "polling"
    if backend == "auto":
        return "inotify" if _inotify.available() else "watchfiles"
    return backend


class DirectoryGone(Exception):
    """The watched directory was removed or moved away."""


class DirectoryWatch:
    """Watches one directory in one event loop and calls every subscriber per change.

    Subscribers are coroutine functions; they are awaited one after the other, in
    subscription order. ``ready`` is set once the first watch is in place (or the
    directory was found missing and is being waited for), so nothing written after it is
    missed.
    """

    def __init__(
        self,
        path: str,
        *,
        backend: Literal["inotify", "watchfiles", "polling"],
        debounce: float,
        poll_interval: float,
        on_close: Callable[[DirectoryWatch], None] | None = None,
    ) -> None:
        self.path = path
        self.backend = backend
        self.debounce = debounce
        self.poll_interval = poll_interval
        self.subscribers: list[Subscriber] = []
        self.ready = asyncio.Event()
        self._on_close = on_close
        self._task: asyncio.Task[None] | None = None

    def subscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.append(subscriber)
        if self._task is None or self._task.done():
            # (A watch task only ends when cancelled or when the loop shuts down, but a
            # subscriber must never join a watch that nobody runs.)
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"canaryconf-watch:{self.path}"
            )

    async def unsubscribe(self, subscriber: Subscriber) -> None:
        with contextlib.suppress(ValueError):
            self.subscribers.remove(subscriber)
        if not self.subscribers and self._task is not None:
            task, self._task = self._task, None
            if self._on_close is not None:
                self._on_close(self)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _notify(self) -> None:
        for subscriber in list(self.subscribers):
            try:
                await subscriber()
            except Exception:
                logger.exception("canaryconf: reload after a change in %s failed", self.path)

    async def _run(self) -> None:
        backoff = BACKOFF_START
        while True:
            try:
                await self._wait_for_directory()
                async for _ in self._batches():
                    backoff = BACKOFF_START
                    await self._notify()
            except asyncio.CancelledError:
                raise
            except (DirectoryGone, FileNotFoundError):  # also: gone again before the watch
                # Keep the last settings: a volume that went away has not become empty.
                logger.warning("canaryconf: %s was removed; waiting for it to return", self.path)
                continue
            except _inotify.InotifyUnavailable as exc:
                _warn_once(
                    f"inotify:{exc.errno}",
                    "canaryconf: inotify unavailable (%s); falling back to polling every %ss",
                    exc.strerror,
                    self.poll_interval,
                )
                self.backend = "polling"
                continue
            except Exception:
                logger.exception(
                    "canaryconf: watcher of %s failed; restarting in %.1fs", self.path, backoff
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    async def _wait_for_directory(self) -> None:
        """Wait until the path is a directory. A missing path is waited for; so is a plain
        file (a subPath mount, or a directory briefly replaced by a file), with a warning:
        the watch never ends while someone is subscribed."""
        delay = MISSING_POLL_START
        announced: str | None = None  # what was said: "missing" or "file"
        while True:
            try:
                mode: int | None = os.stat(self.path).st_mode
            except (FileNotFoundError, NotADirectoryError):
                mode = None
            if mode is not None and stat.S_ISDIR(mode):
                if announced:
                    logger.info("canaryconf: %s appeared; watching it", self.path)
                    await self._notify()
                return
            found = "missing" if mode is None else "file"
            if found != announced:
                if found == "missing":
                    logger.warning("canaryconf: %s does not exist yet; waiting for it", self.path)
                else:
                    _warn_once(
                        f"subpath:{self.path}",
                        "canaryconf: %s is a file, not a volume directory: a subPath mount"
                        " never updates; mount the whole volume to get live changes (waiting"
                        " for a directory there)",
                        self.path,
                    )
                announced = found
                self.ready.set()
            await asyncio.sleep(delay)
            delay = min(delay * 2, MISSING_POLL_MAX)

    def _batches(self) -> AsyncIterator[None]:
        if self.backend == "inotify":
            return self._inotify_batches()
        if self.backend == "watchfiles":
            return self._watchfiles_batches()
        return self._polling_batches()

    async def _inotify_batches(self) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        fd = _inotify.open_inotify()
        _open_fds.add(fd)
        pending: list[_inotify.InotifyEvent] = []
        wakeup = asyncio.Event()

        def readable() -> None:
            pending.extend(_inotify.read_events(fd))
            wakeup.set()

        try:
            # A volume the kubelet manages changes only by the rename onto ``..data``: watch
            # for that alone (one wake-up per swap). A plain directory is watched for any
            # change, until a ``..data`` commit shows the kubelet manages it after all.
            kubelet = read_data_target(self.path) is not None
            _inotify.add_directory_watch(
                fd, self.path, _inotify.KUBELET_MASK if kubelet else _inotify.DIRECTORY_MASK
            )
            loop.add_reader(fd, readable)
            self.ready.set()
            await self._notify()  # the directory may have changed before the watch existed
            while True:
                await wakeup.wait()
                wakeup.clear()
                committed = self._take(pending)
                if kubelet and not committed:
                    continue  # a rename of something else: no news
                if committed and not kubelet:
                    kubelet = True
                    _inotify.add_directory_watch(fd, self.path, _inotify.KUBELET_MASK)
                if not committed and self.debounce > 0:
                    deadline = loop.time() + self.debounce
                    while not committed:
                        remaining = deadline - loop.time()
                        if remaining <= 0:
                            break
                        with contextlib.suppress(asyncio.TimeoutError):
                            await asyncio.wait_for(wakeup.wait(), remaining)
                        wakeup.clear()
                        committed = self._take(pending)
                yield
        finally:
            with contextlib.suppress(Exception):
                loop.remove_reader(fd)
            _open_fds.discard(fd)
            os.close(fd)

    @staticmethod
    def _take(pending: list[_inotify.InotifyEvent]) -> bool:
        """Drain ``pending``; True when it held the ``..data`` commit. Raises
        :class:`DirectoryGone` when the directory itself went away."""
        events = pending[:]
        pending.clear()
        committed = False
        for event in events:
            if event.mask & _inotify.GONE_MASK:
                raise DirectoryGone
            if event.mask & _inotify.IN_Q_OVERFLOW:
                committed = True  # events were lost: re-read now
            elif event.name == DATA_LINK and event.mask & (
                _inotify.IN_MOVED_TO | _inotify.IN_CREATE
            ):
                committed = True
        return committed

    async def _watchfiles_batches(self) -> AsyncIterator[None]:
        import watchfiles  # noqa: PLC0415  (its native module loads only when used)

        loop = asyncio.get_running_loop()
        identity = _identity(self.path)
        stop = asyncio.Event()
        debounce_ms = max(1, int(self.debounce * 1000))
        changes = watchfiles.awatch(
            self.path,
            recursive=False,
            debounce=debounce_ms,
            step=min(50, debounce_ms),
            stop_event=stop,
        )
        batch = loop.create_task(anext(changes))
        try:
            # awatch puts its watch in place in its first step, before it first waits:
            # after this, nothing written to the directory is missed.
            await asyncio.sleep(0)
            self.ready.set()
            await self._notify()
            while True:
                found = await batch
                # A directory removed (and perhaps already recreated: a new directory,
                # maybe with the old inode number) leaves the watch on a dead inode.
                if _identity(self.path) != identity or any(
                    kind == watchfiles.Change.deleted and os.path.normpath(path) == self.path
                    for kind, path in found
                ):
                    raise DirectoryGone
                yield
                batch = loop.create_task(anext(changes))
        finally:
            stop.set()  # its thread sees this within ``step`` and ends the iteration
            if not batch.done():
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(batch, 1.0)
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await changes.aclose()

    async def _polling_batches(self) -> AsyncIterator[None]:
        # Fingerprint first: a change made while the subscribers reload is then seen at
        # the next poll instead of being taken for what they already read.
        last = _fingerprint(self.path)
        self.ready.set()
        await self._notify()
        while True:
            await asyncio.sleep(self.poll_interval)
            if not os.path.isdir(self.path):
                raise DirectoryGone
            current = _fingerprint(self.path)
            if current != last:
                last = current
                yield


def _identity(path: str) -> tuple[int, int] | None:
    """The directory's device and inode, or None when it is no directory now."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


def _fingerprint(path: str) -> str | None:
    target = read_data_target(path)
    if target is not None:
        return "data:" + target
    try:
        return "digest:" + read_volume(path).digest
    except Exception:
        return None


_open_fds: set[int] = set()
_registries: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, str], DirectoryWatch]
] = weakref.WeakKeyDictionary()


def directory_watch(
    path: str,
    *,
    backend: Literal["inotify", "watchfiles", "polling"],
    debounce: float,
    poll_interval: float,
) -> DirectoryWatch:
    """The watch of ``path`` in the running loop, created on first use and shared."""
    loop = asyncio.get_running_loop()
    registry = _registries.setdefault(loop, {})
    key = (os.path.abspath(path), backend)
    watch = registry.get(key)
    if watch is None:
        watch = DirectoryWatch(
            key[0],
            backend=backend,
            debounce=debounce,
            poll_interval=poll_interval,
            on_close=lambda _: _forget(registry, key),
        )
        registry[key] = watch
    return watch


def _forget(registry: dict[tuple[str, str], DirectoryWatch], key: tuple[str, str]) -> None:
    registry.pop(key, None)


def active_watches() -> list[DirectoryWatch]:
    """Every watch of every loop in this process (for diagnostics and tests)."""
    return [w for registry in list(_registries.values()) for w in registry.values()]


def forget_after_fork() -> None:
    """In a forked child: drop the parent's watches and close its inotify descriptors."""
    for fd in list(_open_fds):
        with contextlib.suppress(OSError):
            os.close(fd)
    _open_fds.clear()
    _registries.clear()
