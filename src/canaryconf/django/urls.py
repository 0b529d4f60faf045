"""The operator endpoints of :mod:`canaryconf.django.views`, to add explicitly, at the top
level of your URLconf, with or without a trailing slash:

>>> urlpatterns = [..., *canaryconf_urls()]        # doctest: +SKIP

or under a prefix of your own (then with the slash only):
``path("-/canaryconf/", include("canaryconf.django.urls"))``.
"""

from __future__ import annotations

import re
from typing import Any

from django.urls import path, re_path  # type: ignore[import-untyped]

from canaryconf.django import views

__all__ = ["canaryconf_urls", "urlpatterns"]

app_name = "canaryconf"
urlpatterns = [
    path("", views.status, name="status"),
    path("reload", views.reload_settings, name="reload"),
]


def canaryconf_urls(prefix: str = "-/canaryconf") -> list[Any]:
    """``GET /<prefix>`` and ``POST /<prefix>/reload``, each answering with and without a
    trailing slash (no redirect: a POST would not follow it)."""
    escaped = re.escape(prefix.strip("/"))
    return [
        re_path(rf"^{escaped}/?$", views.status, name="canaryconf-status"),
        re_path(rf"^{escaped}/reload/?$", views.reload_settings, name="canaryconf-reload"),
    ]
