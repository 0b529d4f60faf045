"""WSGI entry point: ``gunicorn checkout.wsgi:application``."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "checkout.settings")

application = get_wsgi_application()
