"""Optional operator endpoints; include them explicitly and protect them yourself.

>>> urlpatterns = [path("-/canaryconf/", include("canaryconf.django.urls"))]  # doctest: +SKIP

- ``GET -/canaryconf/``: the request's snapshot with secrets redacted, its generation,
  digest and rollout role, the last reload error as text (null after a good reload),
  whether this process watches, and its pid;
- ``POST -/canaryconf/reload``: reload now in the process that got the request; 422 when
  the new version was rejected. CSRF-exempt: it takes no input, but anyone who can reach
  it can make the process re-read its volumes.
"""

from __future__ import annotations

import os
from typing import Any

from django.http import HttpResponseNotAllowed, JsonResponse  # type: ignore[import-untyped]
from django.views.decorators.csrf import csrf_exempt  # type: ignore[import-untyped]

from canaryconf.django import _runtime
from canaryconf.settings import redacted_dump

__all__ = ["reload_settings", "status"]

NO_STORE = {"Cache-Control": "no-store"}


def status(request: Any) -> Any:
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    live = _runtime.get_live_settings()
    pinned = getattr(request, "canaryconf", None) or _runtime.pin(live)
    return JsonResponse(
        {
            "settings": redacted_dump(pinned.settings),
            "generation": pinned.generation,
            "digest": pinned.digest,
            "rollout_role": pinned.rollout_role,
            "last_error": _error_text(live.last_error),
            "watching": live.running,
            "pid": os.getpid(),
        },
        headers=NO_STORE,
    )


@csrf_exempt  # type: ignore[untyped-decorator]
def reload_settings(request: Any) -> Any:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    result = _runtime.get_live_settings().reload()
    return JsonResponse(
        {
            "status": result.status,
            "generation": result.generation,
            "digest": result.digest,
            "changed": sorted(result.change.fields) if result.change is not None else [],
            "restart_required": sorted(result.restart_fields),
            "error": _error_text(result.error),
            "pid": os.getpid(),
        },
        status=422 if result.failed else 200,
        headers=NO_STORE,
    )


def _error_text(error: BaseException | None) -> str | None:
    # canaryconf's errors name files and keys, never values: safe to show.
    return None if error is None else f"{type(error).__name__}: {error}"
