"""Live settings: validate every new version, swap it in atomically, tell the handlers.

:func:`live` wraps a :class:`~canaryconf.CanarySettings` class in a :class:`LiveSettings`
that you import like a settings object. Attribute reads go to the current snapshot and
take no lock; a reload re-reads every volume, validates, and swaps the whole snapshot only
when it is valid and different, keeping the last good one otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import logging
import os
import queue
import signal as signal_module
import threading
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar, cast, overload

from blinker import NamedSignal

from canaryconf import _watch, signals
from canaryconf._errors import CanaryConfError, VolumeError, VolumePermissionError
from canaryconf.change import Change, ReloadResult, changed_fields
from canaryconf.rollout import CANARY_ROLES, STABLE_ROLES, RolloutInfo
from canaryconf.settings import CanarySettings, build_settings, restart_fields, secret_fields
from canaryconf.sources.base import read_settings_volume
from canaryconf.sources.providers.labels import is_rollout_field
from canaryconf.volume import VolumeSnapshot, read_data_target

__all__ = ["LiveSettings", "PinnedSettings", "live"]

logger = logging.getLogger("canaryconf")

S = TypeVar("S", bound=CanarySettings)
F = TypeVar("F", bound=Callable[..., Any])

STOP_TIMEOUT = 1.0
START_TIMEOUT = 5.0


@dataclass(frozen=True)
class _State(Generic[S]):
    snapshot: S
    volumes: Mapping[str, VolumeSnapshot | None]
    digest: str
    targets: tuple[str | None, ...]

    @property
    def generation(self) -> str | None:
        for snap in self.volumes.values():
            if snap is not None and snap.generation is not None:
                return snap.generation
        return None


@dataclass(frozen=True)
class PinnedSettings(Generic[S]):
    """One snapshot together with the generation, digest and rollout role it came with,
    all read from one version: what a web adapter pins for the length of a request.

    Other attributes are read from the snapshot, so ``pinned.db_url`` works.
    """

    settings: S
    generation: str | None
    digest: str
    rollout_role: str | None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "settings":
            raise AttributeError(name)
        return getattr(self.settings, name)


@dataclass
class _Core(Generic[S]):
    settings_cls: type[S]
    init_kwargs: dict[str, Any]
    dirs: list[str]
    backend: Literal["inotify", "watchfiles", "polling"]
    debounce: float
    poll_interval: float
    on_restart_required: Literal["signal", "exit"]
    handler_timeout: float | None
    state: _State[S]
    lock: threading.Lock = field(default_factory=threading.Lock)
    dispatch_lock: threading.RLock = field(default_factory=threading.RLock)
    async_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = field(
        default_factory=weakref.WeakKeyDictionary
    )
    last_error: Exception | None = None
    failed_digest: str | None = None
    receivers: list[tuple[NamedSignal, _Receiver]] = field(default_factory=list)
    thread_future: Any = None
    thread_stop: asyncio.Event | None = None
    rollout_field: str | None = None
    restart_fields: frozenset[str] = frozenset()
    reloads: int = 0
    # Set in a forked child: its first reload takes restart-required fields as they are,
    # since this process starts from them (otherwise every new worker of a --preload
    # master would ask to be restarted again).
    adopt_restart_fields: bool = False


class _Receiver:
    """A decorated handler, adapted to blinker's ``receiver(sender, **kwargs)``."""

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


def _combined_digest(volumes: Mapping[str, VolumeSnapshot | None]) -> str:
    h = hashlib.sha256()
    for directory, snap in volumes.items():
        h.update(directory.encode("utf-8", errors="surrogateescape") + b"\0")
        h.update((snap.digest if snap is not None else "-").encode() + b"\0")
    return h.hexdigest()


class LiveSettings(Generic[S]):
    """The current settings snapshot of ``settings_cls``, kept up to date.

    ``live.db_url`` reads the field from the current snapshot (as fast as reading it from a
    pydantic model: the values live in the instance dict, replaced whole at each swap);
    ``live.current`` is the snapshot itself: pin it once per request to see one version
    throughout. ``generation`` and ``digest`` tell which volume content it came from.

    >>> import tempfile
    >>> from canaryconf import CanaryConfigDict, CanarySettings, label
    >>> from canaryconf.testing import KubeletWriter, pod_files
    >>> vol = tempfile.mkdtemp()
    >>> writer = KubeletWriter(vol)
    >>> _ = writer.write(pod_files(labels={"role": "canary"}))
    >>> class Settings(CanarySettings):
    ...     model_config = CanaryConfigDict(downward_api_dir=vol)
    ...     role: str = label("role", default="stable")
    >>> settings = live(Settings)
    >>> @settings.on_change("role")
    ... def role_moved(change):
    ...     print("role:", change.diff()["role"])
    >>> _ = writer.write(pod_files(labels={"role": "stable"}))
    >>> settings.reload().status
    role: ('canary', 'stable')
    'applied'
    >>> settings.role
    'stable'
    """

    _core: _Core[S]

    def __init__(
        self,
        settings_cls: type[S],
        *,
        backend: _watch.Backend = "auto",
        force_polling: bool = False,
        debounce: float = 0.005,
        poll_interval: float = 1.0,
        on_restart_required: Literal["signal", "exit"] = "signal",
        handler_timeout: float | None = 30.0,
        **init_kwargs: Any,
    ) -> None:
        dirs = settings_cls.volume_dirs()
        volumes = {d: read_settings_volume(settings_cls, d) for d in dirs}
        snapshot = cast(S, build_settings(settings_cls, volumes, **init_kwargs))
        core: _Core[S] = _Core(
            settings_cls=settings_cls,
            init_kwargs=dict(init_kwargs),
            dirs=dirs,
            backend=_watch.choose_backend(backend, force_polling),
            debounce=debounce,
            poll_interval=poll_interval,
            on_restart_required=on_restart_required,
            handler_timeout=handler_timeout,
            state=_State(snapshot, volumes, _combined_digest(volumes), _generations(volumes)),
        )
        core.rollout_field = next(
            (n for n, f in settings_cls.model_fields.items() if is_rollout_field(f)), None
        )
        core.restart_fields = restart_fields(settings_cls)
        self._publish(core)
        _instances.add(self)

    # -- reading -------------------------------------------------------------------------

    def _publish(self, core: _Core[S]) -> None:
        values = {
            name: getattr(core.state.snapshot, name)
            for name in type(core.state.snapshot).model_fields
            if name not in _RESERVED
        }
        values["_core"] = core
        object.__setattr__(self, "__dict__", values)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_core":  # _core: not built yet (or failed)
            raise AttributeError(name)
        return getattr(self._core.state.snapshot, name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"LiveSettings is read-only: {name!r} cannot be set")

    def __repr__(self) -> str:
        return (
            f"LiveSettings({self._core.settings_cls.__name__}, generation={self.generation!r},"
            f" current={self.current!r})"
        )

    @property
    def current(self) -> S:
        """The current validated, frozen snapshot."""
        return self._core.state.snapshot

    @property
    def settings_class(self) -> type[S]:
        return self._core.settings_cls

    @property
    def generation(self) -> str | None:
        """The ``..<timestamp>`` generation of the first volume the snapshot came from."""
        return self._core.state.generation

    @property
    def generations(self) -> dict[str, str | None]:
        """The generation of each volume directory."""
        return {d: (s.generation if s else None) for d, s in self._core.state.volumes.items()}

    @property
    def digest(self) -> str:
        """SHA-256 over the content of every volume the snapshot came from."""
        return self._core.state.digest

    @property
    def last_error(self) -> Exception | None:
        """Why the last reload failed, or None when it succeeded."""
        return self._core.last_error

    @property
    def volume_dirs(self) -> list[str]:
        return list(self._core.dirs)

    @property
    def rollout_role(self) -> str | None:
        """The rollout role of the current snapshot (None without a RolloutInfo field)."""
        return _role(self._core, self.current)

    def pin(self) -> PinnedSettings[S]:
        """The current snapshot with its generation, digest and rollout role, read as one
        (``current`` and ``generation`` read one after the other could straddle a swap).

        >>> from canaryconf import CanarySettings
        >>> class Settings(CanarySettings):
        ...     feature_x: bool = False
        >>> pinned = live(Settings).pin()
        >>> pinned.feature_x, pinned.generation
        (False, None)
        """
        state = self._core.state
        return PinnedSettings(
            state.snapshot, state.generation, state.digest, _role(self._core, state.snapshot)
        )

    # -- reloading -----------------------------------------------------------------------

    @staticmethod
    def _targets(dirs: list[str]) -> tuple[str | None, ...]:
        return tuple(read_data_target(d) for d in dirs)

    def _reload_core(self, *, fast: bool) -> ReloadResult[S]:
        core = self._core
        started = time.perf_counter()
        with core.lock:
            old = core.state
            adopt_restart_fields, core.adopt_restart_fields = core.adopt_restart_fields, False
            if fast and old.targets and all(old.targets):
                targets = self._targets(core.dirs)
                if targets == old.targets:
                    return ReloadResult("unchanged", generation=old.generation, digest=old.digest)
            try:
                volumes = {d: read_settings_volume(core.settings_cls, d) for d in core.dirs}
                # Compared with ..data at the next event: the generations this content came
                # from, not a second readlink that a swap in between could have moved on.
                targets = _generations(volumes)
                if _volume_vanished(old.volumes, volumes):
                    return ReloadResult("unchanged", generation=old.generation, digest=old.digest)
                digest = _combined_digest(volumes)
                if digest == old.digest:
                    # Back to the applied content (a bad version was rolled back, say).
                    core.last_error = None
                    core.failed_digest = None
                    if targets != old.targets:
                        core.state = _State(old.snapshot, volumes, digest, targets)
                    return ReloadResult("unchanged", generation=old.generation, digest=old.digest)
                if digest == core.failed_digest:
                    if fast:  # the watcher saw this version already: nothing new to say
                        return ReloadResult(
                            "unchanged", generation=old.generation, digest=old.digest
                        )
                    return ReloadResult(
                        "failed",
                        error=core.last_error,
                        generation=old.generation,
                        digest=old.digest,
                        repeated=True,
                    )
                new = cast(S, build_settings(core.settings_cls, volumes, **core.init_kwargs))
            except Exception as exc:
                if _removal_under_way(old.volumes, exc):
                    return ReloadResult("unchanged", generation=old.generation, digest=old.digest)
                digest_failed = locals().get("digest")
                # A version rejected while its volume was read (a file over the cap, one
                # that cannot be read, a symlink out of the volume) has no content digest:
                # name it by the generations ..data points to and the error instead, so
                # that reading it again (the next event, a second reload) is no news.
                failed = (
                    digest_failed
                    if isinstance(digest_failed, str)
                    else f"read:{self._targets(core.dirs)}:{type(exc).__name__}:{exc}"
                )
                if failed == core.failed_digest:
                    if fast:
                        return ReloadResult(
                            "unchanged", generation=old.generation, digest=old.digest
                        )
                    return ReloadResult(
                        "failed",
                        error=core.last_error,
                        generation=old.generation,
                        digest=old.digest,
                        repeated=True,
                    )
                if not isinstance(exc, CanaryConfError):
                    logger.error(
                        "canaryconf: unexpected error while reloading %s",
                        core.settings_cls.__name__,
                        exc_info=True,
                    )
                core.last_error = exc
                core.failed_digest = failed
                core.reloads += 1
                return ReloadResult(
                    "failed",
                    error=exc,
                    generation=old.generation,
                    digest=old.digest,
                    duration=time.perf_counter() - started,
                )
            fields = changed_fields(old.snapshot, new)
            pending_restart = fields & core.restart_fields
            if adopt_restart_fields:
                pending_restart = frozenset()
            if pending_restart:
                keep = {name: getattr(old.snapshot, name) for name in pending_restart}
                new = new.model_copy(update=keep)
                fields -= pending_restart
            core.last_error = None
            core.failed_digest = None
            core.reloads += 1
            core.state = _State(new if fields else old.snapshot, volumes, digest, targets)
            if fields:
                self._publish(core)
            change = Change(old.snapshot, new, fields, core.state.generation, digest)
            return ReloadResult(
                "applied" if fields else "unchanged",
                change=change if fields else None,
                generation=core.state.generation,
                digest=digest,
                duration=time.perf_counter() - started,
                restart_fields=pending_restart,
            )

    def reload(self) -> ReloadResult[S]:
        """Re-read every volume, validate, and swap if valid and different.

        Handlers run in the calling thread (coroutine handlers on a loop of their own).
        Returns a :class:`~canaryconf.ReloadResult`; a failed reload keeps the last good
        snapshot, sets :attr:`last_error` and sends ``reload_failed``.
        """
        return self._reload_sync(fast=False)

    def _reload_sync(self, *, fast: bool) -> ReloadResult[S]:
        # One reload and its handlers at a time, so handlers see changes in order; a
        # handler may itself call reload() (the lock is re-entrant).
        with self._core.dispatch_lock:
            result = self._reload_core(fast=fast)
            for coro in self._dispatch(result):
                _run_coroutine_here(coro)
            return result

    async def areload(self, *, _fast: bool = False) -> ReloadResult[S]:
        """:meth:`reload` for async code: coroutine handlers are awaited on this loop."""
        loop = asyncio.get_running_loop()
        lock = self._core.async_locks.get(loop)
        if lock is None:
            lock = self._core.async_locks.setdefault(loop, asyncio.Lock())
        async with lock:
            result = self._reload_core(fast=_fast)
            for coro in self._dispatch(result):
                await coro
            return result

    def _dispatch(self, result: ReloadResult[S]) -> Iterator[Awaitable[Any]]:
        """Send the signals a result calls for; yields the coroutines handlers returned,
        for the caller to await in order."""
        core = self._core
        name = core.settings_cls.__name__
        if result.status == "failed" and not result.repeated:
            logger.warning(
                "canaryconf: reload of %s failed, keeping the last good settings: %s",
                name,
                result.error,
            )
            yield from self._send(signals.reload_failed, error=result.error)
        change = result.change
        if result.restart_fields:
            fields = sorted(result.restart_fields)
            logger.warning(
                "canaryconf: %s changed fields that need a restart (%s); not applied live",
                name,
                ", ".join(fields),
            )
            yield from self._send(
                signals.restart_required, fields=result.restart_fields, change=change
            )
            if core.on_restart_required == "exit":
                logger.warning("canaryconf: asking process %d to exit (SIGTERM)", os.getpid())
                os.kill(os.getpid(), signal_module.SIGTERM)
        if change is not None:
            if logger.isEnabledFor(logging.INFO):
                logger.info(
                    "canaryconf: %s applied generation %s: %s",
                    name,
                    change.generation,
                    _describe(change),
                )
            yield from self._send(signals.settings_changed, change=change)
            old_role, new_role = _role(core, change.old), _role(core, change.new)
            if old_role != new_role:
                yield from self._send(
                    signals.role_changed, change=change, old_role=old_role, new_role=new_role
                )
                if _is_promotion(core, change, old_role, new_role):
                    yield from self._send(signals.promoted, change=change)
        yield from self._send(signals.reloaded, result=result)

    def _send(self, signal: NamedSignal, **kwargs: Any) -> Iterator[Awaitable[Any]]:
        for receiver in _in_connection_order(signal, self):
            try:
                outcome = receiver(self, **kwargs)
            except Exception as exc:
                _handler_failed(self, signal, receiver, exc)
                continue
            if inspect.isawaitable(outcome):
                yield _guarded(outcome, signal, receiver, self._core.handler_timeout, self)

    # -- handlers ------------------------------------------------------------------------

    def _connect(
        self, signal: NamedSignal, fn: F, argument: str, fields: tuple[str, ...] = ()
    ) -> F:
        unknown = set(fields) - set(self._core.settings_cls.model_fields)
        if unknown:
            raise ValueError(
                f"{self._core.settings_cls.__name__} has no field(s) {', '.join(sorted(unknown))}"
            )
        receiver = _Receiver(fn, argument, frozenset(fields))
        signal.connect(receiver, sender=self, weak=False)
        self._core.receivers.append((signal, receiver))
        return fn

    @overload
    def on_change(self, fn: F, /) -> F: ...
    @overload
    def on_change(self, *fields: str) -> Callable[[F], F]: ...

    def on_change(self, *fields: Any) -> Any:
        """Decorate a handler ``fn(change)`` called after each applied change, or only when
        one of ``fields`` changed. Sync or async; held strongly; run in registration order.

        >>> @settings.on_change("db_url")          # doctest: +SKIP
        ... def rebuild_pool(change): ...
        """
        if len(fields) == 1 and callable(fields[0]):
            return self._connect(signals.settings_changed, fields[0], "change")
        return lambda fn: self._connect(signals.settings_changed, fn, "change", fields)

    def on_reload_failed(self, fn: F) -> F:
        """Decorate a handler ``fn(error)`` called when a new version is rejected."""
        return self._connect(signals.reload_failed, fn, "error")

    def on_promoted(self, fn: F) -> F:
        """Decorate a handler ``fn(change)`` called when the pod goes canary -> stable."""
        return self._connect(signals.promoted, fn, "change")

    def on_role_changed(self, fn: F) -> F:
        """Decorate a handler ``fn(change)`` called when the rollout role changes."""
        return self._connect(signals.role_changed, fn, "change")

    def on_restart_required(self, fn: F) -> F:
        """Decorate a handler ``fn(fields)`` called when restart-only fields changed."""
        return self._connect(signals.restart_required, fn, "fields")

    def disconnect(self, fn: Callable[..., Any]) -> None:
        """Remove every registration of handler ``fn``."""
        keep = []
        for signal, receiver in self._core.receivers:
            if receiver.fn is fn:
                signal.disconnect(receiver, sender=self)
            else:
                keep.append((signal, receiver))
        self._core.receivers[:] = keep

    # -- watching ------------------------------------------------------------------------

    async def watch(
        self,
        stop_event: asyncio.Event | None = None,
        *,
        _ready: Callable[[], None] | None = None,
        _handlers: _HandlerThread | None = None,
    ) -> None:
        """Watch every volume of the settings in the running loop until ``stop_event`` is
        set (or the task is cancelled). With inotify there is no thread and no timer: the
        loop wakes only when a volume changes.

        >>> async def main():                      # doctest: +SKIP
        ...     await settings.watch()
        """
        core = self._core
        watches = [
            _watch.directory_watch(
                d, backend=core.backend, debounce=core.debounce, poll_interval=core.poll_interval
            )
            for d in core.dirs
        ]

        async def on_event() -> None:
            if _handlers is None:
                await self.areload(_fast=True)
            else:
                await _handlers.run(lambda: self._reload_sync(fast=True))

        for w in watches:
            w.subscribe(on_event)
        try:
            for w in watches:
                await w.ready.wait()
            # A watch shared with another LiveSettings was in place before this one
            # subscribed: catch up with what changed since this snapshot was read.
            await on_event()
            if _ready is not None:
                _ready()
            if stop_event is None:
                await asyncio.Future()
            else:
                await stop_event.wait()
        finally:
            for w in watches:
                await w.unsubscribe(on_event)

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[LiveSettings[S]]:
        """``async with live.watching():`` watch for the duration of the block.

        Handlers run in this event loop: a coroutine handler is awaited there, and a
        synchronous one blocks the loop while it runs, so keep those short.
        """
        stop = asyncio.Event()
        ready = asyncio.Event()
        task = asyncio.get_running_loop().create_task(self.watch(stop, _ready=ready.set))
        waiter = asyncio.ensure_future(ready.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done():
            task.result()
        try:
            yield self
        finally:
            stop.set()
            await task

    def start(self) -> LiveSettings[S]:
        """Watch in canaryconf's background thread (for WSGI apps and scripts).

        Returns once the watches are in place. The thread ``canaryconf-watcher`` runs an
        event loop that sleeps until a volume changes; it is shared by every LiveSettings
        started in the process. Reloads and their handlers run on a second thread,
        ``canaryconf-handlers``, that has no event loop, so synchronous handlers may use
        libraries that refuse to run inside one (Django's ORM); coroutine handlers run on a
        loop of their own there.
        """
        core = self._core
        if core.thread_future is not None:
            return self
        background = _Background.acquire()
        ready = threading.Event()
        stop_event = core.thread_stop = asyncio.Event()
        future = core.thread_future = background.submit(
            self.watch(stop_event, _ready=ready.set, _handlers=background.handlers)
        )
        if not ready.wait(START_TIMEOUT) and future.done():
            self.stop()
            future.result()
        return self

    def stop(self) -> None:
        """Stop the background watcher; returns within about a second. The thread ends
        when the last started LiveSettings stops. A handler may call it: the watcher then
        ends once the handler returns."""
        core = self._core
        future, core.thread_future = core.thread_future, None
        stop_event, core.thread_stop = core.thread_stop, None
        if future is None:
            return
        background = _Background.current
        if background is not None:
            if stop_event is not None:
                background.loop.call_soon_threadsafe(stop_event.set)
            if not background.is_current_thread():  # waiting there would block the loop
                with contextlib.suppress(Exception):
                    future.result(timeout=STOP_TIMEOUT)
            _Background.release()

    @property
    def running(self) -> bool:
        """True while the background watcher runs."""
        return self._core.thread_future is not None

    def __enter__(self) -> LiveSettings[S]:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def reload_on_signal(self, signum: int = signal_module.SIGHUP) -> None:
        """Reload whenever the process receives ``signum`` (opt-in; main thread only),
        for a sidecar that signals the application."""
        previous = signal_module.getsignal(signum)

        def handler(received: int, frame: Any) -> None:
            threading.Thread(
                target=self._reload_logged, name="canaryconf-signal-reload", daemon=True
            ).start()
            if callable(previous):
                previous(received, frame)

        signal_module.signal(signum, handler)

    def _reload_logged(self) -> None:
        try:
            self.reload()
        except Exception:
            logger.exception("canaryconf: reload on signal failed")


_RESERVED = frozenset(name for name in dir(LiveSettings) if not name.startswith("__")) | {"_core"}


def live(settings_cls: type[S], **kwargs: Any) -> LiveSettings[S]:
    """Load ``settings_cls`` now and keep it live. See :class:`LiveSettings` for options.

    >>> from canaryconf import CanarySettings
    >>> class Settings(CanarySettings):
    ...     feature_x: bool = False
    >>> settings = live(Settings)
    >>> settings.feature_x
    False
    """
    return LiveSettings(settings_cls, **kwargs)


# -- helpers ------------------------------------------------------------------------------


def _generations(volumes: Mapping[str, VolumeSnapshot | None]) -> tuple[str | None, ...]:
    return tuple(snap.generation if snap is not None else None for snap in volumes.values())


def _removal_under_way(old: Mapping[str, VolumeSnapshot | None], error: Exception) -> bool:
    """True when reading failed because a volume read before through a generation has lost
    its ``..data`` link: halfway through a removal, what is left (links to nothing) is no
    version, so the last snapshot stays, as for a volume that is gone."""
    if not isinstance(error, VolumeError) or isinstance(error, VolumePermissionError):
        return False
    return any(
        before is not None and before.generation is not None and read_data_target(d) is None
        for d, before in old.items()
    )


def _volume_vanished(
    old: Mapping[str, VolumeSnapshot | None], new: Mapping[str, VolumeSnapshot | None]
) -> bool:
    """True when a volume that was read before is gone, or has lost its ``..data`` link:
    it is being removed or recreated, not emptied, so the last snapshot stays."""
    for directory, before in old.items():
        after = new.get(directory)
        if before is None:
            continue
        if after is None or (before.generation is not None and after.generation is None):
            logger.debug(
                "canaryconf: %s is gone or incomplete; keeping the last settings", directory
            )
            return True
    return False


def _role(core: _Core[Any], snapshot: CanarySettings) -> str | None:
    if core.rollout_field is None:
        return None
    info = getattr(snapshot, core.rollout_field)
    return info.role if isinstance(info, RolloutInfo) else None


def _describe(change: Change[Any]) -> str:
    secrets = secret_fields(change.new)
    parts = []
    for name, (old, new) in change.diff().items():
        if name in secrets:
            parts.append(f"{name} (secret)")
        else:
            parts.append(f"{name}: {_short(old)} -> {_short(new)}")
    return "; ".join(parts)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _in_connection_order(signal: NamedSignal, sender: Any) -> list[Any]:
    """The receivers of ``signal`` for ``sender``, in the order they were connected
    (blinker's ``receivers_for`` walks a set of ids: its order is arbitrary)."""
    chosen = list(signal.receivers_for(sender))
    if len(chosen) < 2:
        return chosen
    connected = [
        ref() if isinstance(ref, weakref.ref) else ref for ref in list(signal.receivers.values())
    ]

    def position(receiver: Any) -> int:
        for index, candidate in enumerate(connected):
            if candidate is receiver or candidate == receiver:
                return index
        return len(connected)

    return sorted(chosen, key=position)


def _is_promotion(
    core: _Core[Any], change: Change[Any], old_role: str | None, new_role: str | None
) -> bool:
    """Canary (or preview) -> stable (or active) for the same revision: a pod keeps its
    ``rollouts-pod-template-hash`` when Argo Rollouts promotes it in place."""
    if old_role not in CANARY_ROLES or new_role not in STABLE_ROLES:
        return False
    if core.rollout_field is None:
        return True
    old_hash = getattr(change.old, core.rollout_field).pod_template_hash
    new_hash = getattr(change.new, core.rollout_field).pod_template_hash
    return old_hash is None or new_hash is None or old_hash == new_hash


def _handler_failed(
    sender: Any, signal: NamedSignal, receiver: Any, error: BaseException, *, log: bool = True
) -> None:
    """Log a handler's failure with its name (unless already logged) and tell the
    ``handler_failed`` receivers."""
    if log:
        _log_handler_error(signal, receiver)
    if signal is signals.handler_failed:
        return
    for listener in _in_connection_order(signals.handler_failed, sender):
        try:
            listener(
                sender,
                handler=getattr(receiver, "__name__", repr(receiver)),
                signal=signal.name,
                error=error,
            )
        except Exception:
            _log_handler_error(signals.handler_failed, listener)


def _log_handler_error(signal: NamedSignal, receiver: Any) -> None:
    logger.exception(
        "canaryconf: handler %s for %s raised; other handlers still run",
        getattr(receiver, "__name__", repr(receiver)),
        signal.name,
    )


async def _guarded(
    awaitable: Awaitable[Any],
    signal: NamedSignal,
    receiver: Any,
    timeout: float | None,
    sender: Any = None,
) -> None:
    """Await a coroutine handler for at most ``timeout`` seconds; log (with the handler's
    name) what it raised or that it ran over and was cancelled."""
    timed = asyncio.ensure_future(awaitable)
    try:
        await asyncio.wait_for(timed, timeout)
    except asyncio.TimeoutError as exc:
        if timed.cancelled():
            logger.error(
                "canaryconf: handler %s for %s ran over %ss and was cancelled",
                getattr(receiver, "__name__", repr(receiver)),
                signal.name,
                timeout,
            )
            _handler_failed(sender, signal, receiver, exc, log=False)
        else:  # the handler itself raised TimeoutError
            _handler_failed(sender, signal, receiver, exc)
    except Exception as exc:
        _handler_failed(sender, signal, receiver, exc)


def _run_coroutine_here(coro: Awaitable[Any]) -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(_as_coroutine(coro))
        return
    task = loop.create_task(_as_coroutine(coro))
    _background_tasks.add(task)
    task.add_done_callback(_background_tasks.discard)


async def _as_coroutine(awaitable: Awaitable[Any]) -> None:
    await awaitable


_background_tasks: set[asyncio.Task[None]] = set()


class _HandlerThread:
    """A thread with no event loop that runs reloads and their handlers one at a time.

    It blocks on its queue while idle (no periodic wake-ups) and is started on first use.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: queue.SimpleQueue[tuple[Callable[[], Any], asyncio.Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self.thread: threading.Thread | None = None

    async def run(self, fn: Callable[[], Any]) -> Any:
        future: asyncio.Future[Any] = self.loop.create_future()
        if self.thread is None:
            self.thread = threading.Thread(
                target=self._serve, name="canaryconf-handlers", daemon=True
            )
            self.thread.start()
        self.queue.put((fn, future))
        return await future

    def _serve(self) -> None:
        while (item := self.queue.get()) is not None:
            fn, future = item
            try:
                outcome: tuple[bool, Any] = (True, fn())
            except BaseException as exc:
                outcome = (False, exc)
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self.loop.call_soon_threadsafe(_settle, future, outcome)

    def stop(self) -> None:
        self.queue.put(None)
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(STOP_TIMEOUT)

    def is_current_thread(self) -> bool:
        return threading.current_thread() is self.thread


def _settle(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if future.done():
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class _Background:
    """The process's one watcher thread: an event loop that sleeps until an event."""

    current: _Background | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.handlers = _HandlerThread(self.loop)
        self.users = 0
        self.thread = threading.Thread(target=self._run, name="canaryconf-watcher", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()

    def submit(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    @classmethod
    def acquire(cls) -> _Background:
        with cls._lock:
            if cls.current is None:
                cls.current = cls()
            cls.current.users += 1
            return cls.current

    @classmethod
    def release(cls) -> None:
        with cls._lock:
            background = cls.current
            if background is None:
                return
            background.users -= 1
            if background.users > 0:
                return
            cls.current = None
        background.loop.call_soon_threadsafe(background.loop.stop)
        if not background.is_current_thread():
            background.thread.join(STOP_TIMEOUT)
        background.handlers.stop()

    def is_current_thread(self) -> bool:
        current = threading.current_thread()
        return current is self.thread or self.handlers.is_current_thread()


_instances: weakref.WeakSet[LiveSettings[Any]] = weakref.WeakSet()
# What a forked child inherits of the parent's watcher (its loop, tasks, stop events) must
# not be collected there: finalizing coroutines this process never ran prints noise.
_forked_away: list[object] = []


def _after_fork_in_child() -> None:
    """A forked child has no watcher thread: start again what ran in the parent, with a
    fresh snapshot, and forget the parent's descriptors and locks."""
    _watch.forget_after_fork()
    _forked_away.append(_Background.current)
    _Background.current = None
    _Background._lock = threading.Lock()
    restart = []
    for instance in list(_instances):
        core = instance._core
        core.lock = threading.Lock()
        core.async_locks = weakref.WeakKeyDictionary()
        core.dispatch_lock = threading.RLock()
        core.adopt_restart_fields = True
        if core.thread_future is not None:
            _forked_away.append((core.thread_future, core.thread_stop))
            core.thread_future = None
            core.thread_stop = None
            restart.append(instance)
    for instance in restart:
        try:
            instance.reload()
            instance.start()
        except Exception:
            logger.exception("canaryconf: could not restart the watcher in child %d", os.getpid())


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
