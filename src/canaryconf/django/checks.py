"""System checks (``manage.py check``, and the checks every management command runs):
configuration problems are reported the Django way instead of breaking the command.

- ``canaryconf.E001``: ``CANARYCONF`` is missing or malformed, or names a class or a
  LiveSettings that does not import;
- ``canaryconf.W001``: the volumes do not give valid settings now (a volume that cannot be
  read, a value that does not validate); the message names the file, line and key, never
  a value. A warning, not an error: ``migrate`` and friends still run, and a server
  process refuses to start on its own.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings  # type: ignore[import-untyped]
from django.core.checks import CheckMessage, Error, Warning  # type: ignore[import-untyped]
from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped]

from canaryconf._errors import CanaryConfError, SettingsValidationError
from canaryconf.django.conf import SETTING_NAME, Config

__all__ = ["check_canaryconf"]


def check_canaryconf(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The ``canaryconf`` checks: registered by the app (tag ``canaryconf``)."""
    try:
        config = Config.from_django(django_settings)
        settings_cls = None if config.settings is None else config.settings_class()
    except (ImproperlyConfigured, ImportError) as exc:
        return [Error(str(exc), hint=f"fix settings.{SETTING_NAME}", id="canaryconf.E001")]
    if settings_cls is None:  # "LIVE": loaded (and checked) where it is defined
        return []
    try:
        settings_cls()
    except CanaryConfError as exc:
        return [
            Warning(
                f"{config.source} does not load from its volumes now: {_one_line(exc)}",
                hint="the last good settings are kept by a running server; fix the volume",
                id="canaryconf.W001",
            )
        ]
    return []


def _one_line(error: CanaryConfError) -> str:
    if isinstance(error, SettingsValidationError):
        return "; ".join(str(p) for p in error.problems).replace("\n", " ")
    return str(error).replace("\n", " ")
