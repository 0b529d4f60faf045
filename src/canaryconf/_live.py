"""Live settings: the facade a service imports.

:func:`live` wraps a :class:`~canaryconf.CanarySettings` class in a :class:`LiveSettings`
that you import like a settings object. Attribute reads go to the current snapshot and take
no lock. The work is done by four parts, each in its own module:

- ``_reload``: the reload step, a pure function (state, what was read, what started the
  reload) -> (next state, :class:`~canaryconf.ReloadResult`);
- ``_dispatch``: delivers results to the handlers, one total order per LiveSettings
  whoever reloads, each handler isolated and bounded;
- ``_runtime``: the process's watcher thread, and fork handling;
- ``_watch``: one watch per volume directory per event loop.

A reload reads the volumes, calls the step under the LiveSettings' lock, publishes the
new snapshot and posts the result to the dispatcher (all under that lock, so the order of
deliveries is the order of swaps), then lets the dispatcher deliver it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal as signal_module
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Generic, Literal, TypeVar, cast, overload

from blinker import NamedSignal

from canaryconf import _watch, signals
from canaryconf._dispatch import Delivery, Dispatcher, Receiver
from canaryconf._errors import safe_message
from canaryconf._reload import Reading, ReloadState, Trigger, Version, is_news, step
from canaryconf._runtime import Inline, Runner, StepLock, runtime
from canaryconf.change import Change, ReloadResult
from canaryconf.rollout import CANARY_ROLES, STABLE_ROLES, RolloutInfo
from canaryconf.settings import CanarySettings, build_snapshot, restart_fields
from canaryconf.sources.base import StaticValues, read_settings_volume
from canaryconf.sources.providers.labels import is_rollout_field
from canaryconf.volume import VolumeSnapshot, read_data_target

__all__ = ["LiveSettings", "PinnedSettings", "live"]

logger = logging.getLogger("canaryconf")

S = TypeVar("S", bound=CanarySettings)
F = TypeVar("F", bound=Callable[..., Any])
#: Handlers, typed so that a handler of the wrong shape is a type error.
OnChange = TypeVar("OnChange", bound=Callable[[Change[Any]], object])
OnError = TypeVar("OnError", bound=Callable[[Exception], object])
OnFields = TypeVar("OnFields", bound=Callable[[frozenset[str]], object])


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


class _Core(Generic[S]):
    """Everything a LiveSettings holds besides the field values."""

    def __init__(
        self,
        settings_cls: type[S],
        init_kwargs: dict[str, Any],
        state: ReloadState[S],
        options: dict[str, Any],
    ) -> None:
        self.settings_cls = settings_cls
        self.init_kwargs = init_kwargs
        self.dirs: list[str] = settings_cls.volume_dirs()
        self.backend: Literal["inotify", "watchfiles", "polling"] = _watch.choose_backend(
            options["backend"], options["force_polling"]
        )
        self.debounce: float = options["debounce"]
        self.poll_interval: float = options["poll_interval"]
        self.restart_after_fork: bool = options["restart_after_fork"]
        self.state = state
        self.lock = StepLock()
        self.dispatcher: Dispatcher = cast(Dispatcher, None)
        self.receivers: list[tuple[NamedSignal, Receiver]] = []
        self.async_watches = 0
        self.rollout_field = next(
            (n for n, f in settings_cls.model_fields.items() if is_rollout_field(f)), None
        )
        self.restart_fields = restart_fields(settings_cls)
        self.field_names = tuple(settings_cls.model_fields)
        self.static: StaticValues | None = None

    def build(self, volumes: Any) -> S:
        """Validate ``volumes`` with the static sources read at the last full build."""
        snapshot, _ = build_snapshot(self.settings_cls, volumes, self.init_kwargs, self.static)
        return snapshot


class LiveSettings(Generic[S]):
    """The current settings snapshot of ``settings_cls``, kept up to date.

    ``live.db_url`` reads the field from the current snapshot (as fast as reading it from a
    pydantic model: the values live in the instance dict, replaced whole at each swap);
    ``live.current`` is the snapshot itself: pin it once per request to see one version
    throughout. ``generation`` and ``digest`` tell which volume content it came from.

    Options (keyword arguments that are not fields of ``settings_cls``):

    - ``backend`` (``"auto"``: inotify on Linux, else watchfiles; or ``"inotify"``,
      ``"watchfiles"``, ``"polling"``), ``force_polling``, ``poll_interval``;
    - ``debounce``: how long events other than the kubelet's ``..data`` commit are
      coalesced (seconds);
    - ``handler_timeout``: how long a coroutine handler may run before it is cancelled and
      dispatch moves on (None: no bound);
    - ``on_restart_required``: ``"signal"`` (send ``restart_required``) or ``"exit"``
      (also ask this process to exit with SIGTERM once those handlers ran);
    - ``restart_after_fork``: restart the watcher in a forked child that inherited a
      started LiveSettings (default True; see :meth:`start`).

    Every other keyword argument is a field value (highest precedence); a name that is
    neither an option nor a field is refused. A field named like an attribute of
    LiveSettings (``generation``, ``digest``...) is refused too: name the field otherwise
    and keep its key, ``generation_id: str = annotation("generation")``.

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
        restart_after_fork: bool = True,
        **init_kwargs: Any,
    ) -> None:
        _check_fields(settings_cls, init_kwargs)
        dirs = settings_cls.volume_dirs()
        volumes = {d: read_settings_volume(settings_cls, d) for d in dirs}
        snapshot, static = build_snapshot(settings_cls, volumes, init_kwargs)
        options = {
            "backend": backend,
            "force_polling": force_polling,
            "debounce": debounce,
            "poll_interval": poll_interval,
            "restart_after_fork": restart_after_fork,
        }
        core = _Core(
            settings_cls, dict(init_kwargs), ReloadState(Version.of(snapshot, volumes)), options
        )
        core.static = static
        core.dispatcher = Dispatcher(self, self._announce, handler_timeout)
        self._publish(core)
        if on_restart_required == "exit":
            self._connect(signals.reloaded, _exit_when_restart_is_required, "result")
        runtime().register(self)

    # -- reading -------------------------------------------------------------------------

    def _publish(self, core: _Core[S]) -> None:
        snapshot = core.state.current.settings
        # (A snapshot's instance dict holds its field values and nothing else.)
        values: dict[str, Any] = dict(snapshot.__dict__)
        values["_core"] = core
        object.__setattr__(self, "__dict__", values)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_core":  # _core: not built yet (or failed)
            raise AttributeError(name)
        return getattr(self._core.state.current.settings, name)

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
        return self._core.state.current.settings

    @property
    def settings_class(self) -> type[S]:
        return self._core.settings_cls

    @property
    def generation(self) -> str | None:
        """The ``..<timestamp>`` generation of the first volume the snapshot came from."""
        return self._core.state.current.generation

    @property
    def generations(self) -> dict[str, str | None]:
        """The generation of each volume directory."""
        return {
            d: (v.generation if v else None) for d, v in self._core.state.current.volumes.items()
        }

    @property
    def digest(self) -> str:
        """SHA-256 over the content of every volume the snapshot came from. It covers
        Secret files too: never publish it (the endpoints and metrics publish a digest of
        the redacted settings instead)."""
        return self._core.state.current.digest

    @property
    def last_error(self) -> Exception | None:
        """Why the last reload failed, or None when it succeeded."""
        return self._core.state.last_error

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
        version = self._core.state.current
        return PinnedSettings(
            version.settings,
            version.generation,
            version.digest,
            _role(self._core, version.settings),
        )

    # -- reloading -----------------------------------------------------------------------

    def reload(self, *, everything: bool = False) -> ReloadResult[S]:
        """Re-read every volume, validate, and swap if valid and different.

        Init kwargs, environment variables, a dotenv file and pydantic's ``secrets_dir``
        cannot change while a process runs: they are read when the LiveSettings is made,
        and reloads (the watcher's and this one) read only the volumes.
        ``everything=True`` reads those sources again too (after your code changed
        ``os.environ``, say).

        Returns once the handlers of this change ran: here, or in the thread (or event
        loop) that was already delivering an earlier change, since handlers see changes
        one at a time and in order. From inside a handler it returns at once and the
        change is delivered right after the current one. Coroutine handlers run on a loop
        of their own. A failed reload keeps the last good snapshot, sets
        :attr:`last_error` and sends ``reload_failed``.
        """
        return self._reload("manual", everything=everything)

    async def areload(self, *, everything: bool = False) -> ReloadResult[S]:
        """:meth:`reload` for async code: coroutine handlers are awaited on this loop."""
        return await self._areload("manual", everything=everything)

    def _step(self, trigger: Trigger, *, everything: bool = False) -> Delivery:
        """Read, take the reload step and publish, under the lock; post the result."""
        core = self._core
        started = time.perf_counter()
        with core.lock:
            state = core.state
            links = self._links() if trigger == "watcher" else None
            if links is not None and not is_news(state, links, trigger):
                version = state.current
                result: ReloadResult[S] = ReloadResult(
                    "unchanged",
                    generation=version.generation,
                    digest=version.digest,
                    reason="same-generation",
                )
                return core.dispatcher.post(result)
            try:
                volumes = self._read(state.current, links)
                # The generations this content came from, not a second readlink that a
                # swap in between could have moved on.
                reading = Reading(volumes, links=_generations(volumes))
            except Exception as exc:
                reading = Reading(None, exc, self._links())
            renewed: list[StaticValues | None] = []

            def build_everything(volumes: Any) -> S:
                # Every source read again; the static values are renewed once a version
                # built this way is not rejected.
                snapshot, static = build_snapshot(core.settings_cls, volumes, core.init_kwargs)
                renewed.append(static)
                return snapshot

            core.state, result = step(
                state,
                reading,
                trigger=trigger,
                build=build_everything if everything else core.build,
                restart_fields=core.restart_fields,
                reread=everything,
            )
            if renewed and renewed[0] is not None and result.status != "failed":
                core.static = renewed[0]
            if core.state.current.settings is not state.current.settings:
                self._publish(core)
            # (Set on the result just made, which nobody has seen yet: ``replace`` would
            # build it a second time on every reload.)
            object.__setattr__(result, "duration", time.perf_counter() - started)
            return core.dispatcher.post(result)

    def _read(
        self, current: Version[S], links: tuple[str | None, ...] | None
    ) -> dict[str, VolumeSnapshot | None]:
        """The volumes for one reload. For the watcher (which read each ``..data`` as
        ``links``), a volume whose ``..data`` still names the generation applied is not
        read again (the kubelet never changes a generation), and one another LiveSettings
        of this process read already is shared; a manual reload reads every file."""
        core = self._core
        if links is None:
            return {d: read_settings_volume(core.settings_cls, d) for d in core.dirs}
        volumes: dict[str, VolumeSnapshot | None] = {}
        for directory, link in zip(core.dirs, links, strict=True):
            before = current.volumes.get(directory)
            if link is not None and before is not None and before.generation == link:
                volumes[directory] = before
            else:
                volumes[directory] = read_settings_volume(
                    core.settings_cls, directory, shared=True, data_target=link
                )
        return volumes

    def _links(self) -> tuple[str | None, ...]:
        return tuple([read_data_target(d) for d in self._core.dirs])

    def _reload(self, trigger: Trigger, *, everything: bool = False) -> ReloadResult[S]:
        delivery = self._step(trigger, everything=everything)
        self._core.dispatcher.deliver(delivery)
        result: ReloadResult[S] = delivery.result
        return result

    async def _areload(self, trigger: Trigger, *, everything: bool = False) -> ReloadResult[S]:
        delivery = self._step(trigger, everything=everything)
        await self._core.dispatcher.adeliver(delivery)
        result: ReloadResult[S] = delivery.result
        return result

    def _announce(self, result: ReloadResult[S]) -> Iterator[tuple[NamedSignal, dict[str, Any]]]:
        """The signals ``result`` calls for, in order, logging as it goes."""
        core = self._core
        name = core.settings_cls.__name__
        if result.status == "failed" and not result.repeated:
            logger.warning(
                "canaryconf: reload of %s failed, keeping the last good settings: %s",
                name,
                safe_message(result.error) if result.error is not None else "?",
            )
            yield signals.reload_failed, {"error": result.error}
        change = result.change
        if result.restart_fields:
            logger.warning(
                "canaryconf: %s changed fields that need a restart (%s); not applied live",
                name,
                ", ".join(sorted(result.restart_fields)),
            )
            yield signals.restart_required, {"fields": result.restart_fields, "change": change}
        if change is not None:
            if logger.isEnabledFor(logging.INFO):
                logger.info(
                    "canaryconf: %s applied generation %s: %s",
                    name,
                    change.generation,
                    "; ".join(change.lines()),
                )
            yield signals.settings_changed, {"change": change}
            old_role, new_role = _role(core, change.old), _role(core, change.new)
            if old_role != new_role:
                yield (
                    signals.role_changed,
                    {"change": change, "old_role": old_role, "new_role": new_role},
                )
                if _is_promotion(core, change, old_role, new_role):
                    yield signals.promoted, {"change": change}
        yield signals.reloaded, {"result": result}

    # -- handlers ------------------------------------------------------------------------

    def _connect(
        self, signal: NamedSignal, fn: F, argument: str, fields: tuple[str, ...] = ()
    ) -> F:
        unknown = set(fields) - set(self._core.settings_cls.model_fields)
        if unknown:
            raise ValueError(
                f"{self._core.settings_cls.__name__} has no field(s) {', '.join(sorted(unknown))}"
            )
        receiver = Receiver(fn, argument, frozenset(fields))
        signal.connect(receiver, sender=self, weak=False)
        self._core.receivers.append((signal, receiver))
        return fn

    @overload
    def on_change(self, fn: OnChange, /) -> OnChange: ...
    @overload
    def on_change(self, *fields: str) -> Callable[[OnChange], OnChange]: ...

    def on_change(self, *fields: Any) -> Any:
        """Decorate a handler ``fn(change)`` called after each applied change, or only when
        one of ``fields`` changed. Sync or async; held strongly; run in registration order.

        >>> @settings.on_change("db_url")          # doctest: +SKIP
        ... def rebuild_pool(change): ...
        """
        if len(fields) == 1 and callable(fields[0]):
            return self._connect(signals.settings_changed, fields[0], "change")
        return lambda fn: self._connect(signals.settings_changed, fn, "change", fields)

    def on_reload_failed(self, fn: OnError) -> OnError:
        """Decorate a handler ``fn(error)`` called when a new version is rejected."""
        return self._connect(signals.reload_failed, fn, "error")

    def on_promoted(self, fn: OnChange) -> OnChange:
        """Decorate a handler ``fn(change)`` called when the pod goes canary -> stable."""
        return self._connect(signals.promoted, fn, "change")

    def on_role_changed(self, fn: OnChange) -> OnChange:
        """Decorate a handler ``fn(change)`` called when the rollout role changes."""
        return self._connect(signals.role_changed, fn, "change")

    def on_restart_required(self, fn: OnFields) -> OnFields:
        """Decorate a handler ``fn(fields)`` called when restart-only fields changed."""
        return self._connect(signals.restart_required, fn, "fields")

    def disconnect(self, fn: Callable[..., Any]) -> None:
        """Remove every registration of handler ``fn``."""
        keep = []
        for signal, receiver in self._core.receivers:
            if receiver.fn is fn:
                # Each Receiver serves this LiveSettings only: remove it whole (a
                # disconnect for one sender leaves a strong receiver held by blinker).
                signal.disconnect(receiver)
            else:
                keep.append((signal, receiver))
        self._core.receivers[:] = keep

    # -- watching ------------------------------------------------------------------------

    async def watch(self, stop_event: asyncio.Event | None = None) -> None:
        """Watch every volume of the settings in the running loop until ``stop_event`` is
        set (or the task is cancelled). With inotify there is no thread and no timer: the
        loop wakes only when a volume changes. Handlers run in this loop.

        >>> async def main():                      # doctest: +SKIP
        ...     await settings.watch()
        """
        await self._follow(stop_event, None, None, None)

    async def _follow(
        self,
        stop_event: asyncio.Event | None,
        ready: Callable[[], None] | None,
        run: Runner | None,
        inline: Inline | None,
    ) -> None:
        """The watch: subscribe to each directory's watch, catch up once, call ``ready``,
        then reload at each event until ``stop_event``. ``run`` runs a reload elsewhere
        (the runtime's thread, outside its loop), and ``inline`` runs one at once from a
        callback of the loop as if outside it (the kubelet's commits); without them
        reloads run in this loop."""
        core = self._core
        watches = [
            _watch.directory_watch(
                d, backend=core.backend, debounce=core.debounce, poll_interval=core.poll_interval
            )
            for d in core.dirs
        ]

        def reload_unless_stopped() -> None:
            # Queued before stop() but run after it: no reload once stopped.
            if stop_event is None or not stop_event.is_set():
                self._reload("watcher")

        async def on_event() -> None:
            if run is None:
                await self._areload("watcher")
            else:
                await run(reload_unless_stopped)

        direct = None if inline is None else functools.partial(inline, reload_unless_stopped)
        core.async_watches += run is None
        for w in watches:
            w.subscribe(on_event, direct)
        try:
            for w in watches:
                await w.ready.wait()
            # A watch shared with another LiveSettings was in place before this one
            # subscribed: catch up with what changed since this snapshot was read.
            await on_event()
            if ready is not None:
                ready()
            if stop_event is None:
                await asyncio.Future()
            else:
                await stop_event.wait()
        finally:
            core.async_watches -= run is None
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
        task = asyncio.get_running_loop().create_task(self._follow(stop, ready.set, None, None))
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

        Returns once the watches are in place. Idempotent, safe from any thread, and
        cheap once started (a web adapter calls it on every request). The thread
        ``canaryconf-watcher`` runs an event loop that sleeps until a volume changes; it is
        shared by every LiveSettings started in the process. Reloads and their handlers
        run on the same thread, one at a time, outside its event loop (no loop is
        running while they do), so synchronous handlers may use libraries that refuse to
        run inside one (Django's ORM); coroutine handlers run on a loop of their own
        there.

        In a process forked from one where it was started (a gunicorn ``--preload``
        worker, a multiprocessing or Celery worker), the watcher is restarted on a fresh
        thread once ``fork()`` returned, after a reload; ``start()`` there waits for that.
        ``restart_after_fork=False`` turns that off.
        """
        runtime().ensure_started(self, self._follow)
        return self

    def stop(self) -> None:
        """Stop the background watcher; no reload starts from it afterwards. The thread
        ends when the last started LiveSettings stops (that stop waits, at most 5 s, for
        a handler under way to return). Idempotent and safe from any thread; a handler
        may call it (the watcher then ends once the handler returns)."""
        runtime().stop(self)

    @property
    def running(self) -> bool:
        """True while a watcher follows the volumes: the background thread's
        (:meth:`start`), or one in an event loop (:meth:`watching`, :meth:`watch`)."""
        return runtime().running(self) or self._core.async_watches > 0

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

    def _after_fork(self) -> None:
        """In a forked child: new lock and queue, no watch of this loop, and the first
        reload takes restart-required fields as they are."""
        core = self._core
        core.lock = StepLock()
        core.dispatcher.reset()
        core.async_watches = 0
        core.state = replace(core.state, adopt_restart_fields=True)


#: Attribute names of LiveSettings: a settings field may not take one.
RESERVED = frozenset(name for name in dir(LiveSettings) if not name.startswith("__")) | {"_core"}
_OPTIONS = frozenset(
    {
        "backend",
        "force_polling",
        "debounce",
        "poll_interval",
        "on_restart_required",
        "handler_timeout",
        "restart_after_fork",
    }
)


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


def _check_fields(settings_cls: type[CanarySettings], init_kwargs: dict[str, Any]) -> None:
    fields = settings_cls.model_fields
    clashes = sorted(set(fields) & RESERVED)
    if clashes:
        listed = ", ".join(repr(name) for name in clashes)
        raise TypeError(
            f"{settings_cls.__name__}: field(s) {listed} would be hidden by the LiveSettings"
            f" attribute(s) of the same name; name the field otherwise and keep its key, e.g."
            f" {clashes[0]}_value: str = annotation({clashes[0].replace('_', '-')!r})"
        )
    names = set(fields)
    for field in fields.values():
        if isinstance(field.alias, str):
            names.add(field.alias)
        choices = getattr(field.validation_alias, "choices", [field.validation_alias])
        names.update(c for c in choices if isinstance(c, str))
    unknown = sorted(set(init_kwargs) - names)
    if unknown:
        raise TypeError(
            f"live() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}:"
            f" neither an option ({', '.join(sorted(_OPTIONS))}) nor a field of"
            f" {settings_cls.__name__}"
        )


def _exit_when_restart_is_required(result: ReloadResult[Any]) -> None:
    """The ``on_restart_required="exit"`` policy: a ``reloaded`` receiver that asks the
    process to exit once the ``restart_required`` handlers have run."""
    if result.restart_fields:
        logger.warning("canaryconf: asking process %d to exit (SIGTERM)", os.getpid())
        os.kill(os.getpid(), signal_module.SIGTERM)


def _generations(volumes: dict[str, VolumeSnapshot | None]) -> tuple[str | None, ...]:
    return tuple([v.generation if v is not None else None for v in volumes.values()])


def _role(core: _Core[Any], snapshot: CanarySettings) -> str | None:
    if core.rollout_field is None:
        return None
    info = getattr(snapshot, core.rollout_field)
    return info.role if isinstance(info, RolloutInfo) else None


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
