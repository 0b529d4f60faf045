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

from typing import Any

from django.http import HttpResponseNotAllowed, JsonResponse  # type: ignore[import-untyped]
from django.views.decorators.csrf import csrf_exempt  # type: ignore[import-untyped]

from canaryconf import _web
from canaryconf.django import _runtime

__all__ = ["reload_settings", "status"]


def status(request: Any) -> Any:
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    live = _runtime.get_live_settings()
    return _json(_web.status_response(live, _web.pin(request.META, live)))


@csrf_exempt  # type: ignore[untyped-decorator]
def reload_settings(request: Any) -> Any:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    live = _runtime.get_live_settings()
    return _json(_web.reload_response(live, live.reload()))


def _json(answer: _web.Response) -> Any:
    body, status_code, headers = answer
    return JsonResponse(body, status=status_code, headers=headers)
