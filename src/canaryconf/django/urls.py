"""The operator endpoints of :mod:`canaryconf.django.views`, to include explicitly:
``path("-/canaryconf/", include("canaryconf.django.urls"))``."""

from __future__ import annotations

from django.urls import path  # type: ignore[import-untyped]

from canaryconf.django import views

app_name = "canaryconf"
urlpatterns = [
    path("", views.status, name="status"),
    path("reload", views.reload_settings, name="reload"),
]
