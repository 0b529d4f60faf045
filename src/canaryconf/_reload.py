"""The reload step: what one reload makes of what was read, as a pure function.

:func:`step` takes the state of a :class:`~canaryconf.LiveSettings` (the applied
:class:`Version`, the last error, the last rejected version), what the shell read this
time (a :class:`Reading`: the volumes, or the error reading them raised, and where each
``..data`` pointed) and what started the reload (the watcher, or a call of ``reload()``),
and returns the next state with the :class:`~canaryconf.ReloadResult` to report. It
starts no thread, takes no lock and reads no file: the shell (``_live``) reads, calls
``step`` under its lock, publishes the state and hands the result to the dispatcher.

Every outcome has a ``reason`` (one of :data:`REASONS`):

======================  ============  ====================================================
reason                  status        when
======================  ============  ====================================================
``applied``             applied       a new valid version with other values
``same-generation``     unchanged     the watcher woke up, but every ``..data`` still
                                      names the generation applied (nothing was read)
``same-content``        unchanged     the files read are those applied (also: a rejected
                                      version was rolled back, so the error is cleared)
``same-values``         unchanged     new files, but the settings validate to the same
                                      values (or only restart-required fields moved)
``volume-gone``         unchanged     a volume read before is gone or half removed: the
                                      last settings stay until it is back
``busy``                unchanged     newer generations kept arriving while reading: not
                                      a bad version; the next event reads again
``rejected-before``     unchanged /   the version read was rejected already: no news for
                        failed        the watcher; a manual reload reports it again
                                      (``repeated=True``) without a second signal
``invalid``             failed        the version does not read or validate; the last
                                      good settings stay
======================  ============  ====================================================
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Generic, Literal, TypeVar

from canaryconf._errors import CanaryConfError, VolumeError, VolumePermissionError
from canaryconf.change import Change, ReloadResult, changed_fields
from canaryconf.settings import CanarySettings
from canaryconf.volume import VolumeBusyError, VolumeSnapshot

__all__ = [
    "REASONS",
    "Reading",
    "ReloadState",
    "Trigger",
    "Version",
    "combined_digest",
    "is_news",
    "step",
]

logger = logging.getLogger("canaryconf")

S = TypeVar("S", bound=CanarySettings)

#: What started a reload: the watcher (an event in a volume directory) or a call of
#: ``reload()``/``areload()`` (an operator endpoint, a signal, your code).
Trigger = Literal["watcher", "manual"]

REASONS = (
    "applied",
    "same-generation",
    "same-content",
    "same-values",
    "volume-gone",
    "busy",
    "rejected-before",
    "invalid",
)

Volumes = Mapping[str, VolumeSnapshot | None]


def combined_digest(volumes: Volumes) -> str:
    """SHA-256 over the directory names and content digests of ``volumes``, in order."""
    h = hashlib.sha256()
    for directory, volume in volumes.items():
        h.update(directory.encode("utf-8", errors="surrogateescape") + b"\0")
        h.update((volume.digest if volume is not None else "-").encode() + b"\0")
    return h.hexdigest()


@dataclass(frozen=True)
class Version(Generic[S]):
    """One applied version: the settings snapshot and the volume generations it came from."""

    settings: S
    volumes: Volumes
    digest: str

    @classmethod
    def of(cls, settings: S, volumes: Volumes) -> Version[S]:
        return cls(settings, dict(volumes), combined_digest(volumes))

    @property
    def generations(self) -> tuple[str | None, ...]:
        """The generation of each volume (None: a plain directory, or no volume)."""
        return tuple([v.generation if v is not None else None for v in self.volumes.values()])

    @property
    def generation(self) -> str | None:
        """The generation of the first volume that has one."""
        for generation in self.generations:
            if generation is not None:
                return generation
        return None


@dataclass(frozen=True)
class ReloadState(Generic[S]):
    """What a LiveSettings carries from one reload to the next."""

    current: Version[S]
    #: Why the last reload failed; None after a good one.
    last_error: Exception | None = None
    #: The identity of the last rejected version (its content digest, or for a version
    #: that could not be read, the generations and the error): meeting it again is no news.
    rejected: str | None = None
    #: True in a forked child until its first reload, which takes restart-required fields
    #: as they are: the process starts from them.
    adopt_restart_fields: bool = False


@dataclass(frozen=True)
class Reading:
    """What the shell read for one reload: ``volumes`` (each directory's generation, or
    None for a missing one) or the ``error`` reading raised; ``links`` is where each
    directory's ``..data`` pointed once reading ended (None: no link)."""

    volumes: Volumes | None
    error: Exception | None = None
    links: tuple[str | None, ...] = ()


def is_news(state: ReloadState[S], links: tuple[str | None, ...], trigger: Trigger) -> bool:
    """False when the watcher woke up but every ``..data`` still names the generation
    applied: nothing to read. A manual reload always reads."""
    generations = state.current.generations
    if trigger != "watcher" or not generations or not all(generations):
        return True
    return links != generations


def step(
    state: ReloadState[S],
    reading: Reading,
    *,
    trigger: Trigger,
    build: Callable[[Volumes], S],
    restart_fields: frozenset[str] = frozenset(),
    reread: bool = False,
) -> tuple[ReloadState[S], ReloadResult[S]]:
    """The next state and the result of one reload (see the module's table of reasons).

    ``build`` validates volumes into a settings snapshot (raising what validation
    raises); ``restart_fields`` are held back at their old values. ``reread`` says that
    ``build`` reads the sources that are not volumes again (``reload(everything=True)``):
    the same files may then give other values, so they are validated whatever their
    digest.
    """
    current = state.current
    if reading.volumes is None:
        error = reading.error or CanaryConfError("nothing was read")
        return _read_failed(state, error, reading.links, trigger)
    volumes = reading.volumes
    if _volume_vanished(current.volumes, volumes):
        return state, _unchanged(current, "volume-gone")
    digest = combined_digest(volumes)
    if digest == current.digest and not reread:
        # Back to the applied content (a bad version was rolled back, say).
        moved = Version(current.settings, dict(volumes), digest)
        return replace(state, current=moved, last_error=None, rejected=None), _unchanged(
            current, "same-content"
        )
    if digest == state.rejected and not reread:
        return state, _rejected_before(state, trigger)
    try:
        new = build(volumes)
    except Exception as exc:
        return _rejected(state, exc, digest)
    fields = changed_fields(current.settings, new)
    held = frozenset() if state.adopt_restart_fields else fields & restart_fields
    if held:
        new = new.model_copy(update={name: getattr(current.settings, name) for name in held})
        fields -= held
    applied = Version(new if fields else current.settings, dict(volumes), digest)
    generation = applied.generation
    next_state = ReloadState(applied)
    if not fields:
        result: ReloadResult[S] = ReloadResult(
            "unchanged",
            generation=generation,
            digest=digest,
            restart_fields=held,
            reason="same-values",
        )
        return next_state, result
    change = Change(current.settings, new, fields, generation, digest)
    return next_state, ReloadResult(
        "applied",
        change=change,
        generation=generation,
        digest=digest,
        restart_fields=held,
        reason="applied",
    )


def _unchanged(current: Version[S], reason: str) -> ReloadResult[S]:
    return ReloadResult(
        "unchanged", generation=current.generation, digest=current.digest, reason=reason
    )


def _rejected_before(state: ReloadState[S], trigger: Trigger) -> ReloadResult[S]:
    if trigger == "watcher":  # the watcher saw this version already: nothing new to say
        return _unchanged(state.current, "rejected-before")
    return ReloadResult(
        "failed",
        error=state.last_error,
        generation=state.current.generation,
        digest=state.current.digest,
        repeated=True,
        reason="rejected-before",
    )


def _rejected(
    state: ReloadState[S], error: Exception, identity: str
) -> tuple[ReloadState[S], ReloadResult[S]]:
    if identity == state.rejected:
        return state, _rejected_before(state, "manual")
    if not isinstance(error, CanaryConfError):
        logger.error(
            "canaryconf: unexpected %s while reloading %s",
            type(error).__name__,
            type(state.current.settings).__name__,
        )
    result: ReloadResult[S] = ReloadResult(
        "failed",
        error=error,
        generation=state.current.generation,
        digest=state.current.digest,
        reason="invalid",
    )
    return replace(state, last_error=error, rejected=identity), result


def _read_failed(
    state: ReloadState[S], error: Exception, links: tuple[str | None, ...], trigger: Trigger
) -> tuple[ReloadState[S], ReloadResult[S]]:
    current = state.current
    if isinstance(error, VolumeBusyError):
        # Newer generations kept arriving: the version is not bad, only gone by; each of
        # them was a rename that wakes the watcher again.
        return state, _unchanged(current, "busy")
    if _removal_under_way(current.volumes, links, error):
        return state, _unchanged(current, "volume-gone")
    # A version rejected while being read (a file over the cap, one that cannot be read,
    # a symlink out of the volume) has no content digest: name it by the generations
    # ``..data`` pointed to and the error, so that reading it again is no news.
    identity = f"read:{links}:{type(error).__name__}:{error}"
    if identity == state.rejected:
        return state, _rejected_before(state, trigger)
    return _rejected(state, error, identity)


def _removal_under_way(old: Volumes, links: tuple[str | None, ...], error: Exception) -> bool:
    """True when reading failed because a volume read before through a generation has lost
    its ``..data`` link: halfway through a removal, what is left (links to nothing) is no
    version, so the last settings stay, as for a volume that is gone."""
    if not isinstance(error, VolumeError) or isinstance(error, VolumePermissionError):
        return False
    return any(
        before is not None and before.generation is not None and link is None
        for before, link in zip(old.values(), links, strict=False)
    )


def _volume_vanished(old: Volumes, new: Volumes) -> bool:
    """True when a volume that was read before is gone, or has lost its ``..data`` link:
    it is being removed or recreated, not emptied, so the last settings stay."""
    for directory, before in old.items():
        if before is None:
            continue
        after = new.get(directory)
        if after is None or (before.generation is not None and after.generation is None):
            logger.debug(
                "canaryconf: %s is gone or incomplete; keeping the last settings", directory
            )
            return True
    return False
