"""Delivering reload results to handlers: one total order per LiveSettings, whoever reloads.

A :class:`Dispatcher` belongs to one :class:`~canaryconf.LiveSettings`. Each reload hands
it a result while still holding the LiveSettings' lock (:meth:`Dispatcher.post`), so the
queue is in the order the versions were applied. Whoever then asks for delivery (a
thread's ``reload()``, a loop's ``areload()``, the watcher) either becomes the one that
drains the queue, in order, or waits until another one has delivered its result: a
handler always sees ``change.old`` equal to the previous change's ``new``. A handler that
reloads from inside a handler gets its change delivered right after the current one.

Receivers are found through blinker's public API (``receivers_for``); canaryconf's
signals keep them in connection order through blinker's own extension point
(``Signal.set_class``, see :class:`OrderedSignal`). Each receiver is isolated: what it
raises is logged and sent as ``handler_failed``, and the others still run. A coroutine
receiver is awaited for at most ``handler_timeout`` seconds, then cancelled and left
behind: dispatch moves on even if it ignores the cancellation.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from functools import partial
from typing import Any

from blinker import NamedSignal, Namespace

__all__ = [
    "Announce",
    "Delivery",
    "Dispatcher",
    "OrderedNamespace",
    "OrderedSignal",
    "Receiver",
]

logger = logging.getLogger("canaryconf")

#: What a result is announced as: the signals to send, each with its keyword arguments.
Announce = Callable[[Any], Iterable[tuple[NamedSignal, dict[str, Any]]]]

# The dispatchers this context is draining right now (a handler that reloads runs in it).
_DRAINING: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar(
    "canaryconf_draining", default=frozenset()
)
# How often a thread waiting for another drain re-checks that one still runs (seconds).
_RECHECK = 1.0
# Coroutine handlers cancelled at their timeout that have not finished yet.
_overdue: set[asyncio.Task[Any]] = set()


class _OrderedIds(set[Any]):
    """A set that iterates in insertion order: blinker's ``set_class`` for receivers."""

    def __init__(self, items: Iterable[Any] = ()) -> None:
        super().__init__()
        self._order: dict[Any, None] = {}
        for item in items:
            self.add(item)

    def add(self, item: Any) -> None:
        super().add(item)
        self._order[item] = None

    def discard(self, item: Any) -> None:
        super().discard(item)
        self._order.pop(item, None)

    def remove(self, item: Any) -> None:
        super().remove(item)
        self._order.pop(item, None)

    def pop(self) -> Any:
        item = next(iter(self._order))
        self.remove(item)
        return item

    def clear(self) -> None:
        super().clear()
        self._order.clear()

    def update(self, *others: Iterable[Any]) -> None:
        for other in others:
            for item in other:
                self.add(item)

    def copy(self) -> _OrderedIds:
        return self._with(dict(self._order))

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._order))

    def __or__(self, other: Iterable[Any]) -> _OrderedIds:
        # (blinker unites two of these for every signal it sends: made in one go.)
        order = dict(self._order)
        order.update(dict.fromkeys(other))
        return self._with(order)

    @classmethod
    def _with(cls, order: dict[Any, None]) -> _OrderedIds:
        """One holding the keys of ``order`` (which it keeps)."""
        made = cls()
        set.update(made, order)
        made._order = order
        return made


class OrderedSignal(NamedSignal):
    """A blinker signal whose receivers are called in the order they were connected
    (those connected for any sender first, then those for the sender)."""

    set_class = _OrderedIds


class OrderedNamespace(Namespace):
    """A blinker namespace of :class:`OrderedSignal`."""

    def signal(self, name: str, doc: str | None = None) -> NamedSignal:
        if name not in self:
            self[name] = OrderedSignal(name, doc)
        return self[name]


class Receiver:
    """A decorated handler, adapted to blinker's ``receiver(sender, **kwargs)``: called
    with one keyword argument (``argument``), and only for changes of ``fields`` if any."""

    def __init__(self, fn: Callable[..., Any], argument: str, fields: frozenset[str]) -> None:
        self.fn = fn
        self.argument = argument
        self.fields = fields
        self.__name__ = getattr(fn, "__qualname__", repr(fn))

    def __call__(self, sender: Any, **kwargs: Any) -> Any:
        if self.fields:
            change = kwargs.get("change")
            if change is None or not (self.fields & change.fields):
                return None
        return self.fn(kwargs[self.argument])


class Delivery:
    """One posted result, delivered once; ``delivered`` is true once every handler ran.

    A thread that has to wait for another one's drain gets an event to wait on; a
    delivery nobody waits for (the usual case: the poster drains) never makes one."""

    __slots__ = ("_callbacks", "_event", "delivered", "result")

    def __init__(self, result: Any) -> None:
        self.result = result
        self.delivered = False
        self._event: threading.Event | None = None
        self._callbacks: list[Callable[[], object]] = []

    def wait(self, timeout: float, lock: threading.Lock) -> None:
        """Wait until delivered, at most ``timeout`` seconds (``lock``: the dispatcher's)."""
        with lock:
            if self.delivered:
                return
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        event.wait(timeout)

    def finish(self, lock: threading.Lock) -> None:
        with lock:
            self.delivered = True
            event = self._event
            callbacks, self._callbacks = self._callbacks, []
        if event is not None:
            event.set()
        for callback in callbacks:
            callback()


class Dispatcher:
    """Delivers the results of one sender, one at a time, in the order posted."""

    def __init__(self, sender: Any, announce: Announce, handler_timeout: float | None) -> None:
        self.sender = sender
        self.announce = announce
        self.handler_timeout = handler_timeout
        self.reset()

    def reset(self) -> None:
        """Forget the queue and whoever drained it (in a forked child: not this process's)."""
        self._mutex = threading.Lock()
        # Held while one delivery runs its handlers: the fork hook takes it, so that no
        # handler (nor the log line before it) is half-way in another thread at fork.
        self._gate = threading.Lock()
        self._queue: deque[Delivery] = deque()
        self._draining = False

    def acquire_for_fork(self, timeout: float) -> bool:
        """Wait for the delivery under way, and hold the next ones, until after a fork;
        False when this context is delivering (a handler forks) or it took too long."""
        if id(self) in _DRAINING.get():
            return False
        return self._gate.acquire(timeout=timeout)

    def release_after_fork(self) -> None:
        self._gate.release()

    def post(self, result: Any) -> Delivery:
        """Queue ``result``; call it where the order of results is decided."""
        delivery = Delivery(result)
        with self._mutex:
            self._queue.append(delivery)
        return delivery

    # -- from a thread ---------------------------------------------------------------

    def deliver(self, delivery: Delivery) -> None:
        """Return once ``delivery`` was delivered: drain the queue here, or wait for the
        one that drains it. Inside a handler of this sender, return at once (the drain
        under way delivers it next)."""
        while (claimed := self._claim(delivery)) is False:
            # Re-checked now and then: a drain ended by an exception leaves the queue to
            # whoever waits (only while waiting: an idle process never wakes for this).
            delivery.wait(_RECHECK, self._mutex)
        if claimed:
            self._drain(self._run_sync)

    def _claim(
        self, delivery: Delivery, on_done: Callable[[], object] | None = None
    ) -> bool | None:
        """None: nothing to do (delivered, or asked from a handler of this sender, whose
        drain delivers it next); True: the caller drains now; False: another drain will
        deliver it (``on_done`` is called then)."""
        with self._mutex:
            if delivery.delivered or id(self) in _DRAINING.get():
                return None
            if not self._draining:
                self._draining = True
                return True
            if on_done is not None:
                delivery._callbacks.append(on_done)
            return False

    def _drain(self, run: Callable[[Delivery], None]) -> None:
        token = _DRAINING.set(_DRAINING.get() | {id(self)})
        try:
            while (delivery := self._next()) is not None:
                try:
                    with self._gate:
                        run(delivery)
                finally:
                    delivery.finish(self._mutex)
        except BaseException:
            self._stop_draining()
            raise
        finally:
            _DRAINING.reset(token)

    def _next(self) -> Delivery | None:
        """The next delivery to run; None, and nobody draining, when the queue is empty."""
        with self._mutex:
            if self._queue:
                return self._queue.popleft()
            self._draining = False
            return None

    def _stop_draining(self) -> None:
        """After a drain ended by an exception: nobody drains, and the coroutines waiting
        for a queued delivery are woken to take over (threads re-check by themselves)."""
        with self._mutex:
            self._draining = False
            waiting = [d for d in self._queue if d._callbacks]
            callbacks = [c for d in waiting for c in d._callbacks]
            for d in waiting:
                d._callbacks = []
        for callback in callbacks:
            callback()

    def _run_sync(self, delivery: Delivery) -> None:
        for signal, receiver, kwargs in self._calls(delivery):
            outcome = self._call(signal, receiver, kwargs)
            if outcome is not None and inspect.isawaitable(outcome):
                _run_coroutine(self._await(outcome, signal, receiver))

    # -- from a coroutine ------------------------------------------------------------

    async def adeliver(self, delivery: Delivery) -> None:
        """:meth:`deliver` for a coroutine: coroutine handlers are awaited in this loop
        and waiting for another drain does not block it."""
        loop = asyncio.get_running_loop()
        while True:
            waiter: asyncio.Future[None] = loop.create_future()
            claimed = self._claim(delivery, partial(loop.call_soon_threadsafe, _resolve, waiter))
            if claimed is None:
                return
            if claimed:
                break
            await waiter
        token = _DRAINING.set(_DRAINING.get() | {id(self)})
        try:
            while (next_one := self._next()) is not None:
                try:
                    with self._gate:
                        for signal, receiver, kwargs in self._calls(next_one):
                            outcome = self._call(signal, receiver, kwargs)
                            if outcome is not None and inspect.isawaitable(outcome):
                                await self._await(outcome, signal, receiver)
                finally:
                    next_one.finish(self._mutex)
        except BaseException:
            self._stop_draining()
            raise
        finally:
            _DRAINING.reset(token)

    # -- one handler -----------------------------------------------------------------

    def _calls(self, delivery: Delivery) -> Iterator[tuple[NamedSignal, Any, dict[str, Any]]]:
        for signal, kwargs in self.announce(delivery.result):
            for receiver in signal.receivers_for(self.sender):
                yield signal, receiver, kwargs

    def _call(self, signal: NamedSignal, receiver: Any, kwargs: dict[str, Any]) -> Any:
        try:
            return receiver(self.sender, **kwargs)
        except Exception as exc:
            self.handler_failed(signal, receiver, exc)
            return None

    async def _await(self, awaitable: Awaitable[Any], signal: NamedSignal, receiver: Any) -> None:
        """Await a coroutine handler for at most ``handler_timeout`` seconds."""
        task = asyncio.ensure_future(awaitable)
        try:
            done, _ = await asyncio.wait({task}, timeout=self.handler_timeout)
        except BaseException:
            task.cancel()
            raise
        if not done:
            task.cancel()  # not awaited: a handler that ignores it must not hold dispatch
            _overdue.add(task)
            task.add_done_callback(_overdue.discard)
            logger.error(
                "canaryconf: handler %s for %s ran over %ss and was cancelled",
                _name(receiver),
                signal.name,
                self.handler_timeout,
            )
            self.handler_failed(
                signal,
                receiver,
                TimeoutError(f"ran over {self.handler_timeout}s"),
                log=False,
            )
            return
        if task.cancelled():
            return
        error = task.exception()
        if isinstance(error, Exception):
            self.handler_failed(signal, receiver, error)

    def handler_failed(
        self, signal: NamedSignal, receiver: Any, error: BaseException, *, log: bool = True
    ) -> None:
        """Log a handler's failure with its name (unless logged already) and tell the
        ``handler_failed`` receivers."""
        from canaryconf import signals  # noqa: PLC0415  (signals imports this module)

        if log:
            _log_handler_error(signal, receiver, error)
        if signal is signals.handler_failed:
            return
        for listener in signals.handler_failed.receivers_for(self.sender):
            try:
                listener(self.sender, handler=_name(receiver), signal=signal.name, error=error)
            except Exception as exc:
                _log_handler_error(signals.handler_failed, listener, exc)


def _name(receiver: Any) -> str:
    return str(getattr(receiver, "__name__", repr(receiver)))


def _log_handler_error(signal: NamedSignal, receiver: Any, error: BaseException) -> None:
    logger.error(
        "canaryconf: handler %s for %s raised; other handlers still run",
        _name(receiver),
        signal.name,
        exc_info=error,
    )


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _run_coroutine(coro: Awaitable[None]) -> None:
    """Run a coroutine handler (already bounded by its timeout) from a thread: on a loop
    of its own, or, in a thread whose loop is running (sync code called from async
    code), as a task of that loop."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is not None:
        task = running.create_task(_as_coroutine(coro))
        _overdue.add(task)
        task.add_done_callback(_overdue.discard)
        return
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(_as_coroutine(coro))
    finally:
        if not asyncio.all_tasks(loop):
            loop.close()
        # else: a handler that ignored its cancellation stays suspended on a loop that
        # never runs again; closing it would only print noise.


async def _as_coroutine(awaitable: Awaitable[None]) -> None:
    await awaitable
