"""The JSON bodies of the web adapters' operator endpoints, one definition for Flask,
FastAPI and Django: ``GET -/canaryconf`` (:func:`status_body`) and ``POST
-/canaryconf/reload`` (:func:`reload_body`, sent with :func:`reload_status_code`).

>>> from canaryconf import CanarySettings, live
>>> class Settings(CanarySettings):
...     flag: bool = False
>>> settings = live(Settings)
>>> body = status_body(settings, settings.pin(), watching=False)
>>> body["settings"], body["last_error"], body["watching"]
({'flag': False}, None, False)
>>> result = settings.reload()
>>> reload_body(settings, result)["status"], reload_status_code(result)
('unchanged', 200)
"""

from __future__ import annotations

import os
from typing import Any

from canaryconf._errors import CanaryConfError, safe_message
from canaryconf._live import LiveSettings, PinnedSettings
from canaryconf.change import ReloadResult
from canaryconf.settings import redacted_digest, redacted_dump

__all__ = ["NO_STORE", "error_text", "reload_body", "reload_status_code", "status_body"]

#: Headers of every endpoint response: it describes this process now, never cache it.
NO_STORE = {"Cache-Control": "no-store"}


def error_text(error: BaseException | None) -> str | None:
    """``"<ErrorType>: <message>"``, or None. canaryconf's errors name files and keys, never
    values, so their text is safe to show; any other error's message (an exception a hook
    or a settings class raised) can quote a value and is withheld
    (:func:`~canaryconf._errors.safe_message`)."""
    if error is None:
        return None
    if isinstance(error, CanaryConfError):
        return f"{type(error).__name__}: {error}"
    return safe_message(error)


def status_body(
    live: LiveSettings[Any], pinned: PinnedSettings[Any], *, watching: bool
) -> dict[str, Any]:
    """The request's snapshot ``pinned`` (secrets redacted) with its generation, the digest
    of the redacted settings (:func:`~canaryconf.settings.redacted_digest`: never the
    volumes' digest, which hashes Secret bytes) and rollout role, the last reload error of
    ``live`` as text (None after a good reload), whether this process watches, and its
    pid."""
    return {
        "settings": redacted_dump(pinned.settings),
        "generation": pinned.generation,
        "digest": redacted_digest(pinned.settings),
        "rollout_role": pinned.rollout_role,
        "last_error": error_text(live.last_error),
        "watching": watching,
        "pid": os.getpid(),
    }


def reload_body(live: LiveSettings[Any], result: ReloadResult[Any]) -> dict[str, Any]:
    """What a reload of ``live`` did: its status, the generation and the digest of the
    redacted settings in use after it,
    the fields it changed and those left for a restart, its error and ``live``'s last
    error as text, and the pid of the process that reloaded."""
    return {
        "status": result.status,
        "generation": result.generation,
        "digest": redacted_digest(result.change.new if result.change else live.current),
        "changed": sorted(result.change.fields) if result.change is not None else [],
        "restart_required": sorted(result.restart_fields),
        "error": error_text(result.error),
        "last_error": error_text(live.last_error),
        "pid": os.getpid(),
    }


def reload_status_code(result: ReloadResult[Any]) -> int:
    """200, or 422 when the new version was rejected (the last good settings stay)."""
    return 422 if result.failed else 200
