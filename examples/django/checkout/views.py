from __future__ import annotations

import os

from django.http import HttpRequest, JsonResponse


def checkout(request: HttpRequest) -> JsonResponse:
    """Every value comes from the one snapshot the middleware pinned for this request."""
    s = request.canaryconf  # a canaryconf.django.PinnedSettings
    return JsonResponse(
        {
            "generation": s.generation,
            "db_url": s.db_url,
            "new_checkout": s.new_checkout,
            "role": s.rollout.role,
            "pid": os.getpid(),
        }
    )
