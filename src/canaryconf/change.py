"""What one reload produced: a :class:`Change` between two snapshots, a :class:`ReloadResult`."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Final, Generic, Literal, TypeVar

from canaryconf.settings import REDACTED, CanarySettings, Redacted, secret_fields
from canaryconf.sources.base import field_names

__all__ = ["ABSENT", "Change", "ReloadResult", "change_line", "changed_fields", "display"]

S = TypeVar("S", bound=CanarySettings)


def changed_fields(old: CanarySettings, new: CanarySettings) -> frozenset[str]:
    """Names of the fields whose values differ between two snapshots."""
    # (A field's value is its instance dict entry: no attribute look-up per field.)
    before, after = old.__dict__, new.__dict__
    return frozenset(
        [
            name
            for name in field_names(type(new))
            if before.get(name, ABSENT) != after.get(name, ABSENT)
        ]
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
        """``{field: (old, new)}`` for each changed field; a secret's values are
        :data:`~canaryconf.settings.REDACTED` (a :class:`~canaryconf.settings.Redacted`)."""
        secrets = secret_fields(self.old) | secret_fields(self.new)
        result: dict[str, tuple[Any, Any]] = {}
        for name in sorted(self.fields):
            if name in secrets:
                result[name] = (REDACTED, REDACTED)
            else:
                result[name] = (_plain(getattr(self.old, name)), _plain(getattr(self.new, name)))
        return result

    def lines(self) -> list[str]:
        """One :func:`change_line` per changed field: what logs and the CLI print.

        >>> from canaryconf import CanarySettings
        >>> class S(CanarySettings):
        ...     color: str = "blue"
        >>> Change(S(), S(color="green")).lines()
        ['~ color: blue -> green']
        """
        return [change_line(name, old, new) for name, (old, new) in self.diff().items()]

    def __repr__(self) -> str:
        return f"Change(fields={sorted(self.fields)}, generation={self.generation!r})"


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


#: What :func:`change_line` takes for a key that is not there on one side.
ABSENT: Final[Any] = _Absent()


def display(value: Any) -> str:
    """A value on one line: text as is when printable, else JSON-quoted; bytes as text when
    UTF-8; anything else as compact JSON."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            return f"<{len(value)} bytes of binary data>"
    if isinstance(value, str):
        if value.isprintable():
            return value
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def change_line(name: str, old: Any, new: Any) -> str:
    """The one way a change of one value is written: ``+ name: new`` (added), ``- name:
    old`` (removed), ``~ name: old -> new``; when either side is
    :class:`~canaryconf.settings.Redacted`, ``~ name: changed (**********)`` and no value.

    >>> change_line("color", "blue", "green"), change_line("key", REDACTED, REDACTED)
    ('~ color: blue -> green', '~ key: changed (**********)')
    >>> change_line("flag", ABSENT, True), change_line("flag", "**********", "x")
    ('+ flag: true', '~ flag: ********** -> x')
    """
    if isinstance(old, Redacted) or isinstance(new, Redacted):
        if old is ABSENT:
            return f"+ {name}: {REDACTED}"
        if new is ABSENT:
            return f"- {name}: {REDACTED}"
        return f"~ {name}: changed ({REDACTED})"
    if old is ABSENT:
        return f"+ {name}: {display(new)}"
    if new is ABSENT:
        return f"- {name}: {display(old)}"
    return f"~ {name}: {display(old)} -> {display(new)}"


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
    #: The volumes' content digest (it hashes Secret bytes: in-process only, never in a
    #: repr; what is published is :func:`~canaryconf.settings.redacted_digest`).
    digest: str = field(default="", repr=False)
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
