"""The exceptions canaryconf raises on purpose.

Every message names the file (and, where it applies, the line and key) and never carries a
value read from a volume: values can be secrets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class CanaryConfError(Exception):
    """Base class of every error canaryconf raises on purpose."""


class DownwardAPIFormatError(CanaryConfError, ValueError):
    """A label or annotation file is not in the format the kubelet writes.

    ``source``, ``line`` (1-based) and ``key`` say where; the offending value is never part
    of the message.
    """

    def __init__(
        self,
        reason: str,
        *,
        source: str | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        self.reason = reason
        self.source = source
        self.line = line
        self.key = key
        parts = [
            source,
            f"line {line}" if line is not None else None,
            f"key {key!r}" if key is not None else None,
        ]
        where = ", ".join(p for p in parts if p)
        super().__init__(f"{where}: {reason}" if where else reason)


class VolumeError(CanaryConfError, OSError):
    """A volume (or one of its files) cannot be read as a consistent snapshot.

    ``path`` names the directory or file concerned.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class VolumeNotFoundError(VolumeError, FileNotFoundError):
    """The volume directory does not exist (yet): the mount may not be ready."""


class VolumePermissionError(VolumeError, PermissionError):
    """A file or directory of the volume cannot be read by this process."""


class VolumeTooLargeError(VolumeError):
    """A file or the whole volume is over the configured size cap."""


class UnsafePathError(VolumeError):
    """A file of the volume resolves to a place outside the volume (a hostile symlink)."""


class VolumeBusyError(VolumeError):
    """Newer generations kept arriving while the volume was being read, so no one
    generation could be read whole. Not a bad version: read again at the next change."""


class NotAVolumeError(VolumeError, NotADirectoryError):
    """A plain file stands where a volume directory was expected (a ``subPath`` mount)."""


@dataclass(frozen=True)
class FieldProblem:
    """One field that failed validation, and where its value came from.

    ``source`` is a file path (or "environment", "init", "default"), ``key`` the annotation,
    label, file or variable name, ``line`` the line in a label/annotation file.
    """

    field: str
    reason: str
    source: str | None = None
    key: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = []
        if self.source:
            where.append(self.source)
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.key is not None:
            where.append(f"key {self.key!r}")
        origin = f" ({', '.join(where)})" if where else ""
        return f"{self.field}{origin}: {self.reason}"


class SettingsValidationError(CanaryConfError, ValueError):
    """A new version of the settings does not validate.

    ``problems`` lists each failing field with the file and key its value came from. The
    message never contains a value.
    """

    def __init__(self, settings_name: str, problems: Sequence[FieldProblem]) -> None:
        self.settings_name = settings_name
        self.problems = tuple(problems)
        count = len(self.problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        noun = "error" if count == 1 else "errors"
        super().__init__(f"{count} validation {noun} for {settings_name}\n{lines}")


def safe_message(error: BaseException) -> str:
    """What may be shown of ``error``: the message of canaryconf's own errors (built never
    to hold a value), only the type of any other (its message can quote one).

    >>> safe_message(VolumeError("/etc/podinfo", "permission denied"))
    '/etc/podinfo: permission denied'
    >>> safe_message(KeyError("tok-1234"))
    'KeyError (message withheld: it may quote a value)'
    """
    if isinstance(error, CanaryConfError):
        return str(error)
    return f"{type(error).__name__} (message withheld: it may quote a value)"
