"""Django settings of the checkout example: no database, no templates, one app."""

from __future__ import annotations

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "checkout-example-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = ["canaryconf.django"]
MIDDLEWARE = ["canaryconf.django.middleware.CanaryConfMiddleware"]
ROOT_URLCONF = "checkout.urls"
WSGI_APPLICATION = "checkout.wsgi.application"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

CANARYCONF = {
    "SETTINGS": "checkout.config.CheckoutSettings",
    # settings.CHECKOUT_NEW_FLOW follows the field (see the caveat in the README).
    "MIRROR": {"new_checkout": "CHECKOUT_NEW_FLOW"},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"canaryconf": {"handlers": ["console"], "level": "INFO"}},
}
