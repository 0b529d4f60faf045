"""The ``canaryconf.django`` app: add it to ``INSTALLED_APPS``."""

from __future__ import annotations

from django.apps import AppConfig  # type: ignore[import-untyped]
from django.core import checks  # type: ignore[import-untyped]

from canaryconf.django import _runtime
from canaryconf.django.checks import check_canaryconf


class CanaryConfConfig(AppConfig):  # type: ignore[misc]
    """Loads ``CANARYCONF`` when Django is ready and starts the watcher where requests are
    served (see :func:`canaryconf.django._runtime.watch_decision`)."""

    name = "canaryconf.django"
    label = "canaryconf"
    verbose_name = "canaryconf"

    def ready(self) -> None:
        checks.register(check_canaryconf, "canaryconf")
        _runtime.setup()
