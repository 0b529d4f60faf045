"""What one reload produced: a :class:`Change` between two snapshots, a :class:`ReloadResult`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from canaryconf.settings import REDACTED, CanarySettings, secret_fields

__all__ = ["Change", "ReloadResult", "changed_fields"]

S = TypeVar("S", bound=CanarySettings)


def changed_fields(old: CanarySettings, new: CanarySettings) -> frozenset[str]:
    """Names of the fields whose values differ between two snapshots."""
    return frozenset(
        name for name in type(new).model_fields if getattr(old, name) != getattr(new, name)
    )


@dataclass(frozen=True)
class Change(Generic[S]):
    """The change from snapshot ``old`` to snapshot ``new``.

    ``fields`` names what changed; ``diff()`` gives old and new values with secret fields
    redacted, so it is safe to log.

    >>> from canaryconf import CanarySettings
    >>> class S(CanarySettings):
    ...     flag: bool = False
    >>> change = Change(S(), S(flag=True))
    >>> change.fields, change.diff()
    (frozenset({'flag'}), {'flag': (False, True)})
    """

    old: S
    new: S
    fields: frozenset[str] = field(default=frozenset())
    generation: str | None = None
    digest: str = ""

    def __post_init__(self) -> None:
        if not self.fields:
            object.__setattr__(self, "fields", changed_fields(self.old, self.new))

    def __contains__(self, name: object) -> bool:
        return name in self.fields

    def diff(self) -> dict[str, tuple[Any, Any]]:
        """``{field: (old, new)}`` for each changed field; secrets show ``**********``."""
        secrets = secret_fields(self.old) | secret_fields(self.new)
        result: dict[str, tuple[Any, Any]] = {}
        for name in sorted(self.fields):
            if name in secrets:
                result[name] = (REDACTED, REDACTED)
            else:
                result[name] = (_plain(getattr(self.old, name)), _plain(getattr(self.new, name)))
        return result

    def __repr__(self) -> str:
        return f"Change(fields={sorted(self.fields)}, generation={self.generation!r})"


def _plain(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    return dump(mode="json") if callable(dump) else value


@dataclass(frozen=True)
class ReloadResult(Generic[S]):
    """The outcome of one reload: ``status`` is ``applied``, ``unchanged`` or ``failed``.

    ``change`` is set when applied; ``error`` when failed (``repeated`` then says that a
    manual reload met a version already rejected: no second ``reload_failed`` is sent);
    ``restart_fields`` names restart-required fields whose new values were held back.
    """

    status: Literal["applied", "unchanged", "failed"]
    change: Change[S] | None = None
    error: Exception | None = None
    generation: str | None = None
    digest: str = ""
    duration: float = 0.0
    timestamp: float = field(default_factory=time.time)
    restart_fields: frozenset[str] = frozenset()
    #: A manual reload met content already rejected: ``error`` is that rejection's.
    repeated: bool = False
    #: Why the reload ended as it did: ``applied``, ``same-generation``, ``same-content``,
    #: ``same-values``, ``volume-gone``, ``busy``, ``rejected-before`` or ``invalid`` (the
    #: table in ``docs/concepts.md`` says when each happens).
    reason: str = ""

    @property
    def applied(self) -> bool:
        return self.status == "applied"

    @property
    def failed(self) -> bool:
        return self.status == "failed"
