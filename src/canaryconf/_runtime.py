"""The process's one canaryconf runtime: the watcher thread, and what happens at fork.

:meth:`LiveSettings.start() <canaryconf.LiveSettings.start>` hands its watch to the
:class:`Runtime` of the process. The runtime runs one thread, ``canaryconf-watcher``,
with an event loop that sleeps until a volume changes (every started LiveSettings shares
it). Reloads and their handlers run on that thread too, one at a time, with no event
loop reported as running, so synchronous handlers may use libraries that refuse to run
inside one (Django's ORM), and a change wakes one thread once. The thread ends when the
last LiveSettings stops.

Fork is handled here and nowhere else. Just before a fork, the runtime lets the
deliveries and reloads under way in other threads finish and holds the next ones, so that
no canaryconf thread is half-way through a handler, a log line, a parser or a validator
(holding locks of theirs, which would stay locked in the child forever) when the child
is made. In the child
the inherited threads are gone: locks and queues are made new, and a LiveSettings that
was started is restarted on a fresh thread, ``canaryconf-restart``, once ``fork()`` has
returned (a reload first, so the child serves the volumes' current version; then the
watch). Nothing in the fork call itself waits for anything. ``live(...,
restart_after_fork=False)`` leaves a child without a watcher (multiprocessing or Celery
workers that do not read settings); :meth:`Runtime.ensure_started` (what the web adapters
call on every request) still starts one there on first use when asked to.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import threading
import time
import weakref
from asyncio import events
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from canaryconf import _watch

if TYPE_CHECKING:
    from canaryconf._live import LiveSettings

__all__ = ["Runtime", "StepLock", "runtime"]

logger = logging.getLogger("canaryconf")

#: How long ``start()`` waits for the watches to be in place and the first catch-up
#: reload to be done, and ``stop()`` for the watch to end.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0
#: How long the fork hook waits for a reload under way in another thread.
FORK_WAIT = 10.0

Runner = Callable[[Callable[[], Any]], Coroutine[Any, Any, Any]]
Inline = Callable[[Callable[[], Any]], None]
Follow = Callable[[asyncio.Event, Callable[[], None], Runner, Inline], Coroutine[Any, Any, None]]


class StepLock:
    """The lock a LiveSettings holds while it reads, validates and swaps: a plain lock
    that knows its owner, so the fork hook never waits for itself."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None

    def __enter__(self) -> None:
        self._lock.acquire()
        self._owner = threading.get_ident()

    def __exit__(self, *exc_info: object) -> None:
        self._owner = None
        self._lock.release()

    def acquire_for_fork(self) -> bool:
        """Take the lock before a fork; False when this thread holds it already or it
        was not released in time."""
        if self._owner == threading.get_ident():
            return False
        return self._lock.acquire(timeout=FORK_WAIT)

    def release_after_fork(self) -> None:
        self._lock.release()


class _Background:
    """The runtime's one thread, ``canaryconf-watcher``: it runs an event loop that
    sleeps until a volume changes, and runs reloads and their handlers as if outside
    that loop.

    A kubelet commit (the common case: one rename onto ``..data``) is run by
    :meth:`inline`, straight from the callback of the loop that read the inotify event:
    one iteration of the loop per change, no task woken, nothing queued or awaited. For
    the length of that call no event loop is running in the thread
    (``asyncio.get_running_loop()`` raises, ``asyncio.run()`` works), so synchronous
    handlers may use libraries that refuse to run inside one, such as Django's ORM.

    Everything else a watch does (its first catch-up reload, a plain directory's
    coalesced changes, polling) hands a reload to :meth:`run`, which queues it and stops
    the loop (``loop.stop()`` lets the loop finish the callbacks it is running, then
    ``run_forever`` returns); the thread then runs what was queued, in order, with no
    event loop running, settles each one's future and goes back to the loop. Either way a
    change wakes one thread, once: no hand-off to a second thread and back.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._queued: collections.deque[tuple[Callable[[], Any], asyncio.Future[Any]]] = (
            collections.deque()
        )
        self._closing = False
        #: True while the thread is out of its loop, running reloads and handlers.
        self.busy = False
        self.thread = threading.Thread(target=self._run, name="canaryconf-watcher", daemon=True)
        self.thread.start()

    async def run(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on this thread outside the event loop; await its result. Called on
        the loop (by a watch)."""
        if self._closing:
            raise asyncio.CancelledError  # shutting down: the loop runs only to clean up
        future: asyncio.Future[Any] = self.loop.create_future()
        self._queued.append((fn, future))
        self.loop.stop()
        return await future

    def inline(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` now, from a callback of the loop, as if the loop were not running
        (what :meth:`run` achieves by leaving the loop, without leaving it). Exceptions
        propagate. Nothing runs once the thread is shutting down."""
        if self._closing:
            return
        running = events._get_running_loop()
        events._set_running_loop(None)
        self.busy = True
        try:
            fn()
        finally:
            self.busy = False
            events._set_running_loop(running)

    def _run(self) -> None:
        # The loop is not made this thread's current one: a handler that asks asyncio for
        # a loop must not get this one (not running while handlers run) and run it.
        loop = self.loop
        try:
            while True:
                loop.run_forever()
                self._run_queued()
                if self._closing:
                    break
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    def _run_queued(self) -> None:
        queued = self._queued
        self.busy = True
        try:
            while queued:
                fn, future = queued.popleft()
                if future.done():  # its watch was cancelled meanwhile
                    continue
                try:
                    outcome: tuple[bool, Any] = (True, fn())
                except BaseException as exc:
                    outcome = (False, exc)
                _settle(future, outcome)
        finally:
            self.busy = False

    def is_current_thread(self) -> bool:
        return threading.current_thread() is self.thread

    def shutdown(self, timeout: float = STOP_TIMEOUT) -> None:
        """End the thread once what it runs now returns; wait for that at most
        ``timeout`` seconds (not at all on the thread itself)."""
        self._closing = True
        if self.is_current_thread():
            # From a handler (the loop is not running: the thread ends once the handler
            # returns) or from a callback of the loop.
            if self.loop.is_running():
                self.loop.stop()
            return
        with contextlib.suppress(RuntimeError):  # closed already
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout)


def _settle(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if future.done():
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class StopEvent(asyncio.Event):
    """The stop of a watch on the runtime's loop: :meth:`request` may be called from any
    thread and :meth:`is_set` is true at once (a reload queued on the runtime's thread
    checks it), while the watch's waiters are woken on the loop."""

    requested = False

    def request(self, loop: asyncio.AbstractEventLoop) -> None:
        self.requested = True
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self.set)

    def is_set(self) -> bool:
        return self.requested or super().is_set()


@dataclass(eq=False)
class _Watch:
    """One LiveSettings watched on the runtime's loop."""

    future: Future[None]
    stop: StopEvent
    ready: threading.Event


class Runtime:
    """What canaryconf runs in this process: one per process (:func:`runtime`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._background: _Background | None = None
        self._watches: weakref.WeakKeyDictionary[LiveSettings[Any], _Watch] = (
            weakref.WeakKeyDictionary()
        )
        self._instances: weakref.WeakSet[LiveSettings[Any]] = weakref.WeakSet()
        self._restarting: weakref.WeakSet[LiveSettings[Any]] = weakref.WeakSet()
        self._restart_done = threading.Event()
        self._restart_done.set()
        self._restart_thread: threading.Thread | None = None
        self._restart_lock = threading.Lock()
        self._wanted: weakref.WeakSet[LiveSettings[Any]] = weakref.WeakSet()
        self._pid = os.getpid()
        self._held: list[Callable[[], None]] = []
        # What a forked child inherits of the parent's watcher (its loop, tasks, stop
        # events) must not be collected there: finalizing coroutines that this process
        # never ran prints noise.
        self._forked_away: list[object] = []

    def register(self, live: LiveSettings[Any]) -> None:
        """Know ``live`` for fork handling."""
        self._instances.add(live)

    def instances(self) -> list[LiveSettings[Any]]:
        return list(self._instances)

    # -- start and stop --------------------------------------------------------------

    def start(self, live: LiveSettings[Any], follow: Follow) -> None:
        """Watch ``live`` on the runtime's loop (``follow(stop, ready, run, inline)`` is its
        watch); idempotent and safe from any thread. Returns once the watches are in
        place."""
        if threading.current_thread() is not self._restart_thread:
            self._restart_done.wait(START_TIMEOUT)  # a forked child's restart comes first
        with self._lock:
            watch = self._watches.get(live)
            if watch is None or watch.future.done():
                if watch is not None:
                    self._watches.pop(live, None)
                background = self._background
                if background is None:
                    background = self._background = _Background()
                stop = StopEvent()
                ready = threading.Event()
                future = asyncio.run_coroutine_threadsafe(
                    follow(stop, ready.set, background.run, background.inline),
                    background.loop,
                )
                future.add_done_callback(lambda _: ready.set())
                watch = self._watches[live] = _Watch(future, stop, ready)
                self._wanted.add(live)
        if self._on_runtime_thread():
            return  # waiting here would block the loop that makes it ready
        watch.ready.wait(START_TIMEOUT)
        if watch.future.done():
            self.stop(live)
            watch.future.result()  # raises what the watch raised

    def stop(self, live: LiveSettings[Any]) -> None:
        """Stop watching ``live``; the thread ends with the last one. Idempotent. No
        reload of ``live`` starts from the watcher once this returns; the last stop
        waits for a reload or handler under way to end (at most ``STOP_TIMEOUT``
        seconds in all)."""
        deadline = time.monotonic() + STOP_TIMEOUT
        if live in self._restarting and threading.current_thread() is not self._restart_thread:
            with self._restart_lock:
                self._restarting.discard(live)
        with self._lock:
            self._wanted.discard(live)
            watch = self._watches.pop(live, None)
            background = self._background
            if watch is None or background is None:
                return
            last = not self._watches
            if last:
                self._background = None
        watch.stop.request(background.loop)
        # Wait for the watch to end, unless the runtime's thread is busy with a reload
        # (of another LiveSettings, say): the request keeps any reload of this one from
        # starting, and the watch ends once the thread is back in its loop.
        if not background.is_current_thread() and (last or not background.busy):
            with contextlib.suppress(Exception):
                watch.future.result(timeout=STOP_TIMEOUT)
        if last:
            background.shutdown(max(0.0, deadline - time.monotonic()))

    def running(self, live: LiveSettings[Any]) -> bool:
        """True while ``live`` is watched on the runtime's thread (or about to be again,
        in a forked child)."""
        if live in self._restarting:
            return True
        watch = self._watches.get(live)
        return watch is not None and not watch.future.done()

    def ensure_started(self, live: LiveSettings[Any], follow: Follow) -> None:
        """Start watching ``live`` in this process unless it is watched already: what a
        web adapter calls on every request, so it costs a dictionary look-up once done."""
        watch = self._watches.get(live)
        if watch is not None and not watch.future.done():
            return
        self.start(live, follow)

    def _on_runtime_thread(self) -> bool:
        background = self._background
        return background is not None and background.is_current_thread()

    # -- fork --------------------------------------------------------------------------

    def before_fork(self) -> None:
        """Let deliveries and reloads under way in other threads finish, and hold the next
        ones until the fork is done: first each dispatcher's gate (a handler may reload,
        which takes the reload lock), then each reload lock."""
        held: list[Callable[[], None]] = []
        instances = self.instances()
        for live in instances:
            dispatcher = live._core.dispatcher
            if dispatcher.acquire_for_fork(FORK_WAIT):
                held.append(dispatcher.release_after_fork)
        for live in instances:
            lock = live._core.lock
            if lock.acquire_for_fork():
                held.append(lock.release_after_fork)
        self._held = held

    def after_fork_in_parent(self) -> None:
        held, self._held = self._held, []
        for release in reversed(held):
            release()

    def after_fork_in_child(self) -> None:
        """Forget the parent's threads and make new locks; restart what was watched on a
        fresh thread. Nothing here waits."""
        self._held = []
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._forked_away.append((self._background, dict(self._watches)))
        self._background = None
        self._watches = weakref.WeakKeyDictionary()
        _watch.forget_after_fork()
        restart = []
        for live in self.instances():
            live._after_fork()
            if live in self._wanted and live._core.restart_after_fork:
                restart.append(live)
        self._wanted = weakref.WeakSet()
        self._restarting = weakref.WeakSet(restart)
        self._restart_lock = threading.Lock()
        self._restart_done = threading.Event()
        if not restart:
            self._restart_done.set()
            return
        self._restart_thread = threading.Thread(
            target=self._restart, args=(restart,), name="canaryconf-restart", daemon=True
        )
        self._restart_thread.start()

    def _restart(self, lives: list[LiveSettings[Any]]) -> None:
        try:
            for live in lives:
                try:
                    live.reload()
                    with self._restart_lock:  # stop() meanwhile cancels the restart
                        if live in self._restarting:
                            live.start()
                except Exception:
                    logger.exception(
                        "canaryconf: could not restart the watcher in child %d", os.getpid()
                    )
                finally:
                    self._restarting.discard(live)
        finally:
            self._restart_done.set()


_runtime = Runtime()


def runtime() -> Runtime:
    """The runtime of this process."""
    return _runtime


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_runtime.before_fork,
        after_in_parent=_runtime.after_fork_in_parent,
        after_in_child=_runtime.after_fork_in_child,
    )
