"""Directory watchers: one per volume directory per event loop, shared by subscribers.

Every backend is a coroutine that yields once per coalesced batch of changes:

- ``inotify`` (Linux, default): every watch of an event loop is a watch on that loop's
  one inotify descriptor (:class:`_InotifyHub`), registered with the loop
  (``loop.add_reader``) once. An idle watcher costs nothing: no thread of its own, no
  timer, no periodic wake-up. One descriptor per loop, not one per directory, because the
  kernel allows few descriptors per user (``fs.inotify.max_user_instances``, 128 by
  default, shared by every process of that UID on the node) but many watches: a process
  with 100 LiveSettings over 300 directories holds one descriptor (one per event loop
  that watches: the runtime's watcher thread, and each loop running ``async with
  live.watching()``). The descriptor is opened at the first watch of a loop and closed
  when its last watch ends. On a volume the kubelet manages a watch listens for the
  rename onto ``..data`` (the kubelet's commit point) alone and reports it at once: one
  wake-up per swap, and when every subscriber can react without being awaited (the
  runtime's thread watcher) they are called from the callback that read the event, in
  one pass of the loop. On a plain directory any change is reported, coalesced over
  ``debounce`` seconds.
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
import threading
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
        self._direct: dict[Subscriber, Callable[[], None]] = {}
        #: True while the task awaits the subscribers: a commit then waits its turn.
        self._notifying = False

    def subscribe(self, subscriber: Subscriber, direct: Callable[[], None] | None = None) -> None:
        """Call ``subscriber`` at each change. ``direct``, if given, is the same reaction
        as a plain function, which the inotify hub may call at once, from the callback of
        the loop that read a kubelet commit, instead of waking this watch's task to await
        ``subscriber``: one iteration of the loop per change (see :meth:`_commit`)."""
        self.subscribers.append(subscriber)
        if direct is not None:
            self._direct[subscriber] = direct
        if self._task is None or self._task.done():
            # (A watch task only ends when cancelled or when the loop shuts down, but a
            # subscriber must never join a watch that nobody runs.)
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"canaryconf-watch:{self.path}"
            )

    async def unsubscribe(self, subscriber: Subscriber) -> None:
        with contextlib.suppress(ValueError):
            self.subscribers.remove(subscriber)
        if subscriber not in self.subscribers:
            self._direct.pop(subscriber, None)
        if not self.subscribers and self._task is not None:
            task, self._task = self._task, None
            if self._on_close is not None:
                self._on_close(self)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _notify(self) -> None:
        self._notifying = True
        try:
            for subscriber in list(self.subscribers):
                try:
                    await subscriber()
                except Exception:
                    self._log_failure()
        finally:
            self._notifying = False

    def _log_failure(self) -> None:
        logger.exception("canaryconf: reload after a change in %s failed", self.path)

    def _commit(self) -> bool:
        """A kubelet commit, read by the hub: call every subscriber's direct form now, in
        subscription order, and say True; or say False (a subscriber has none, or the task
        is awaiting the subscribers already) and let the task handle it."""
        subscribers = list(self.subscribers)
        direct = self._direct
        if self._notifying or not subscribers or not direct.keys() >= set(subscribers):
            return False
        for subscriber in subscribers:
            try:
                direct[subscriber]()
            except Exception:
                self._log_failure()
        return True

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
        hub = _hub(loop)
        # A volume the kubelet manages changes only by the rename onto ``..data``: watch
        # for that alone (one wake-up per swap). A plain directory is watched for any
        # change, until a ``..data`` commit shows the kubelet manages it after all.
        kubelet = read_data_target(self.path) is not None
        listener = _Listener(
            self.path, _inotify.KUBELET_MASK if kubelet else _inotify.DIRECTORY_MASK
        )
        hub.add(listener)
        try:
            self.ready.set()
            await self._notify()  # the directory may have changed before the watch existed
            if kubelet:
                listener.on_commit = self._commit
            while True:
                await listener.wakeup.wait()
                listener.wakeup.clear()
                committed = self._take(listener.pending)
                if kubelet and not committed:
                    continue  # a rename of something else: no news
                if committed and not kubelet:
                    kubelet = True
                    hub.set_mask(listener, _inotify.KUBELET_MASK)
                    listener.on_commit = self._commit
                if not committed and self.debounce > 0:
                    deadline = loop.time() + self.debounce
                    while not committed:
                        remaining = deadline - loop.time()
                        if remaining <= 0:
                            break
                        with contextlib.suppress(asyncio.TimeoutError):
                            await asyncio.wait_for(listener.wakeup.wait(), remaining)
                        listener.wakeup.clear()
                        committed = self._take(listener.pending)
                yield
        finally:
            listener.on_commit = None
            hub.remove(listener)

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
            elif _is_commit(event):
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


# -- the inotify descriptor of a loop ----------------------------------------------------

#: Events the kernel reports whatever a watch's mask says.
_ALWAYS = _inotify.IN_IGNORED | _inotify.IN_UNMOUNT | _inotify.IN_Q_OVERFLOW


class _Listener:
    """One :class:`DirectoryWatch`'s watch on its loop's hub: the path and mask it asked
    for, the watch descriptor the kernel gave (``None`` once the watch is gone), and the
    events routed to it that it has not looked at yet; ``wakeup`` is set when some came.
    ``on_commit``, when set, handles a batch that is a kubelet commit and nothing worse
    at once (it says False when it would rather the task did)."""

    __slots__ = ("mask", "on_commit", "path", "pending", "wakeup", "wd")

    def __init__(self, path: str, mask: int) -> None:
        self.path = path
        self.mask = mask
        self.wd: int | None = None
        self.pending: list[_inotify.InotifyEvent] = []
        self.wakeup = asyncio.Event()
        self.on_commit: Callable[[], bool] | None = None


class _InotifyHub:
    """The one inotify descriptor of an event loop, and the routing of its events.

    Why one per loop: the kernel allows 128 descriptors per user by default
    (``fs.inotify.max_user_instances``, shared by every process of the UID on the node)
    but tens of thousands of watches; a descriptor per directory ran out at about 40
    LiveSettings and sent everything to polling.

    The descriptor is opened at the first watch and registered with the loop once; it is
    closed, and unregistered, when the last watch ends, so a process that stopped watching
    holds none. Events are routed by watch descriptor. The kernel gives two paths to one
    directory (a symlink and its target, two bind mounts) the same watch descriptor and
    one mask, which ``inotify_add_watch`` replaces: so each descriptor keeps a list of its
    listeners, the kernel's mask is the union of theirs, each listener gets only the events
    its own mask asks for, and the kernel watch is removed when its last listener leaves.
    ``IN_IGNORED`` (the directory deleted or unmounted) reaches the listeners of that
    descriptor, which end their watch and wait for the directory again; ``IN_Q_OVERFLOW``
    (events lost) reaches every listener, which re-read.

    Used only from its loop's thread (and :func:`forget_after_fork`). It refers to its loop
    weakly: a loop dropped without being closed properly still closes the descriptor
    when it is collected.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)
        self.fd: int | None = None
        self._listeners: dict[int, list[_Listener]] = {}
        self._finalizer: weakref.finalize[[], asyncio.AbstractEventLoop] | None = None

    def add(self, listener: _Listener) -> None:
        """Watch ``listener.path`` for ``listener.mask``; raises what
        :func:`_inotify.add_directory_watch` and :func:`_inotify.open_inotify` raise."""
        fd = self._open()
        try:
            # IN_MASK_ADD: a directory other listeners watch already keeps what they asked
            # for, at no moment narrower.
            wd = _inotify.add_directory_watch(
                fd, listener.path, listener.mask | _inotify.IN_MASK_ADD
            )
        except BaseException:
            self._close_if_idle()
            raise
        listener.wd = wd
        self._listeners.setdefault(wd, []).append(listener)

    def set_mask(self, listener: _Listener, mask: int) -> None:
        """Change what ``listener`` listens for (narrowing included)."""
        listener.mask = mask
        if listener.wd is not None and listener.wd in self._listeners:
            self._apply(listener.wd, listener.path)

    def remove(self, listener: _Listener) -> None:
        """End ``listener``'s watch; the kernel watch goes with its last listener, the
        descriptor with the loop's last watch. Never raises: it runs in ``finally``."""
        wd, listener.wd = listener.wd, None
        listeners = self._listeners.get(wd) if wd is not None else None
        if wd is not None and listeners is not None and listener in listeners:
            listeners.remove(listener)
            if listeners:
                self._apply(wd, listeners[0].path)  # narrow to what the others ask for
            else:
                del self._listeners[wd]
                if self.fd is not None:
                    try:
                        _inotify.remove_watch(self.fd, wd)
                    except OSError:
                        logger.debug("canaryconf: inotify_rm_watch failed", exc_info=True)
        self._close_if_idle()

    def _apply(self, wd: int, path: str) -> None:
        """Set the kernel's mask of ``wd`` to the union of its listeners' masks, through
        ``path`` (one of theirs)."""
        fd = self.fd
        if fd is None:
            return
        try:
            got = _inotify.add_directory_watch(fd, path, self._mask_of(wd))
        except OSError:
            return  # gone meanwhile: its IN_IGNORED, or its listeners' re-watch, follows
        if got != wd:
            # ``path`` names another directory now (removed and recreated): what this did
            # there must be undone. The old directory keeps a wider mask: its listeners
            # still get only their own events.
            try:
                if self._listeners.get(got):
                    _inotify.add_directory_watch(fd, path, self._mask_of(got))
                else:
                    _inotify.remove_watch(fd, got)
            except OSError:
                logger.debug("canaryconf: inotify mask not restored", exc_info=True)

    def _mask_of(self, wd: int) -> int:
        """The union of the masks of ``wd``'s listeners."""
        mask = 0
        for listener in self._listeners[wd]:
            mask |= listener.mask
        return mask

    def _open(self) -> int:
        """The descriptor, opened now if the loop has none: lazily, so a loop that never
        uses inotify (watchfiles, polling) holds none. The finalizer closes it if the loop
        is collected while still watching."""
        if self.fd is not None:
            return self.fd
        loop = self._loop()
        if loop is None or loop.is_closed():
            raise RuntimeError("the event loop of this inotify hub is gone")
        fd = _inotify.open_inotify()
        try:
            loop.add_reader(fd, self._readable)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        finalizer = weakref.finalize(loop, self.abandon)
        finalizer.atexit = False  # at exit the watcher thread may still select on it
        self._finalizer = finalizer
        return fd

    def _close_if_idle(self) -> None:
        """Close the descriptor once no watch is left: a process that stopped watching
        holds no inotify instance (they are counted per user, across processes)."""
        if self._listeners or self.fd is None:
            return
        loop = self._loop()
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(Exception):
                loop.remove_reader(self.fd)
        self.abandon()

    def abandon(self) -> None:
        """Close the descriptor without touching the loop (which may be closed, gone, or,
        in a forked child, share its epoll instance with the parent: unregistering there
        would unregister the parent's descriptor) and forget every watch."""
        fd, self.fd = self.fd, None
        self._listeners.clear()
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _readable(self) -> None:
        """Read what is queued and hand it to the listeners it concerns: a batch that is a
        kubelet commit and nothing else a listener must act on goes to its ``on_commit``,
        anything else wakes its task."""
        if self.fd is None:
            return
        routed: dict[int, tuple[_Listener, list[_inotify.InotifyEvent]]] = {}
        for event in _inotify.read_events(self.fd):
            if event.wd == -1:  # IN_Q_OVERFLOW: events were lost, for anyone
                targets = [x for group in self._listeners.values() for x in group]
            else:
                targets = self._listeners.get(event.wd, [])
                if event.mask & _inotify.IN_IGNORED:
                    # The kernel removed the watch: its listeners end theirs (GONE_MASK).
                    self._listeners.pop(event.wd, None)
                    for listener in targets:
                        listener.wd = None
            for listener in targets:
                if event.mask & (listener.mask | _ALWAYS):
                    entry = routed.get(id(listener))
                    if entry is None:
                        routed[id(listener)] = (listener, [event])
                    else:
                        entry[1].append(event)
        for listener, events in routed.values():
            on_commit = listener.on_commit
            if (
                on_commit is not None
                and not listener.pending
                and _only_a_commit(events)
                and on_commit()
            ):
                continue
            listener.pending.extend(events)
            listener.wakeup.set()


def _is_commit(event: _inotify.InotifyEvent) -> bool:
    """Whether ``event`` puts a ``..data`` link in place: the kubelet's commit."""
    return event.name == DATA_LINK and bool(
        event.mask & (_inotify.IN_MOVED_TO | _inotify.IN_CREATE)
    )


def _only_a_commit(events: list[_inotify.InotifyEvent]) -> bool:
    """Whether ``events`` hold the kubelet's commit and otherwise only renames (that a
    kubelet-managed watch ignores): nothing gone, nothing lost."""
    commit = False
    for event in events:
        if event.mask != _inotify.IN_MOVED_TO:
            return False
        commit = commit or _is_commit(event)
    return commit


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _InotifyHub] = (
    weakref.WeakKeyDictionary()
)
_hubs_lock = threading.Lock()


def _hub(loop: asyncio.AbstractEventLoop) -> _InotifyHub:
    """The hub of ``loop``, made on first use."""
    with _hubs_lock:
        _release_closed_loops()
        hub = _hubs.get(loop)
        if hub is None:
            hub = _hubs[loop] = _InotifyHub(loop)
        return hub


def _release_closed_loops() -> None:
    """Close the descriptors of loops closed while still watching (``loop.close()`` with
    the watch tasks never cancelled, e.g. after ``run_until_complete`` was interrupted):
    nothing will run their tasks' cleanup. Called with ``_hubs_lock`` held."""
    for loop, hub in list(_hubs.items()):
        if loop.is_closed():
            hub.abandon()
            del _hubs[loop]


def inotify_descriptors() -> list[int]:
    """The inotify descriptors open in this process's hubs (for diagnostics and tests)."""
    with _hubs_lock:
        _release_closed_loops()
        return [h.fd for h in _hubs.values() if h.fd is not None]


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
    """In a forked child: drop the parent's watches and close its inotify descriptors
    (the parent's threads and loops are gone here; the runtime restarts its watchers on a
    fresh loop, which opens a descriptor of its own). Takes no lock: one held by another
    thread at fork time would never be released here."""
    global _hubs_lock
    _hubs_lock = threading.Lock()
    for hub in list(_hubs.values()):
        hub.abandon()
    _hubs.clear()
    _registries.clear()
