"""Django integration: an app that keeps ``CANARYCONF`` settings live in every process.

.. code-block:: python

    # settings.py
    INSTALLED_APPS = [..., "canaryconf.django"]
    MIDDLEWARE = ["canaryconf.django.middleware.CanaryConfMiddleware", ...]
    CANARYCONF = {
        "SETTINGS": "checkout.config.CheckoutSettings",   # or "LIVE": "checkout.config.settings"
        "MIRROR": {"new_checkout": "CHECKOUT_NEW_FLOW"},  # optional
    }

    # views.py
    def checkout(request):
        s = request.canaryconf               # one pinned snapshot for the whole request
        return JsonResponse({"db_url": s.db_url, "generation": s.generation})

What it does:

- ``AppConfig.ready()`` loads the settings and starts the watcher once per process where
  requests are served: under gunicorn/uwsgi in each worker (with ``--preload`` the
  master's watcher is restarted in every forked worker), under ``runserver`` only in the
  autoreloader's child (or the one process of ``--noreload``); other ``manage.py``
  commands never watch. Volume files never restart ``runserver``. ``"WATCH": "lazy"``
  starts it at each process's first request instead, so that a pre-fork master runs no
  thread; ``"WATCH": False`` never starts it (tests, or you call ``start()`` yourself).
- ``MIRROR`` copies fields into ``django.conf.settings`` at startup and after each applied
  change. Caveat: ``django.conf.settings`` is one per process, so a request reading it
  twice can see two versions, code that read a setting at startup keeps the old value,
  Django's ``setting_changed`` is not sent, and inside ``override_settings`` the mirrored
  value is written to the override and lost when it ends. Read ``request.canaryconf``
  where consistency matters.
- :data:`canaryconf.django.signals.settings_changed` is sent after each applied change.
- ``python manage.py canaryconf show`` prints the current settings (secrets redacted),
  generation and last error; ``python manage.py canaryconf validate`` exits 1 with one
  line per failing field.

Importing ``canaryconf`` never imports Django; only ``canaryconf.django`` does.
"""

from __future__ import annotations

try:
    # the extra's check, before any submodule imports Django
    import django  # type: ignore[import-untyped]  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("canaryconf.django needs Django: pip install 'canaryconf[django]'") from exc

from canaryconf._live import PinnedSettings
from canaryconf.django._runtime import get_live_settings, pin
from canaryconf.django.signals import settings_changed

__all__ = ["PinnedSettings", "get_live_settings", "pin", "settings_changed"]
