"""The ``CANARYCONF`` Django setting, read once when the app is ready.

>>> CANARYCONF = {                                  # doctest: +SKIP
...     "SETTINGS": "checkout.config.CheckoutSettings",  # a CanarySettings class, or
...     # "LIVE": "checkout.config.settings",            # an existing LiveSettings
...     "MIRROR": {"new_checkout": "CHECKOUT_NEW_FLOW"},  # field -> django.conf.settings name
...     "OPTIONS": {"debounce": 0.01},                    # live() keyword arguments
...     "WATCH": True,                                    # or "lazy", or False (never)
...     "SERVER_COMMANDS": ["runserver", "testserver"],   # manage.py commands that serve
... }
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped]
from django.utils.module_loading import import_string  # type: ignore[import-untyped]

from canaryconf._live import LiveSettings, live
from canaryconf.settings import CanarySettings

__all__ = ["SETTING_NAME", "Config"]

#: The name of the Django setting canaryconf.django reads.
SETTING_NAME = "CANARYCONF"
DEFAULT_SERVER_COMMANDS = ("runserver", "testserver")
_KEYS = frozenset({"SETTINGS", "LIVE", "MIRROR", "OPTIONS", "WATCH", "SERVER_COMMANDS"})


@dataclass(frozen=True)
class Config:
    """``CANARYCONF``, checked: exactly one of ``settings`` (a dotted path to a
    :class:`~canaryconf.CanarySettings` class) and ``live`` (a dotted path to a
    :class:`~canaryconf.LiveSettings`)."""

    settings: str | None = None
    live: str | None = None
    mirror: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    #: True: start in ``ready()`` where requests are served; "lazy": at the first request
    #: of each process instead (no thread in a pre-fork master); False: never.
    watch: bool | Literal["lazy"] = True
    server_commands: frozenset[str] = frozenset(DEFAULT_SERVER_COMMANDS)

    @classmethod
    def from_django(cls, django_settings: Any) -> Config:
        """Read and check ``django_settings.CANARYCONF``; raise ``ImproperlyConfigured``."""
        raw = getattr(django_settings, SETTING_NAME, None)
        if raw is None:
            raise ImproperlyConfigured(
                f"'canaryconf.django' is in INSTALLED_APPS but settings.{SETTING_NAME} is not"
                ' set: add CANARYCONF = {"SETTINGS": "myproject.config.Settings"}'
            )
        return cls.from_mapping(raw)

    @classmethod
    def from_mapping(cls, raw: object) -> Config:
        if not isinstance(raw, Mapping):
            raise _improper(f"must be a dict, not {type(raw).__name__}")
        unknown = set(raw) - _KEYS
        if unknown:
            raise _improper(
                f"unknown key(s) {', '.join(sorted(map(repr, unknown)))};"
                f" expected some of {', '.join(sorted(_KEYS))}"
            )
        settings_path, live_path = raw.get("SETTINGS"), raw.get("LIVE")
        if (settings_path is None) == (live_path is None):
            raise _improper('needs exactly one of "SETTINGS" (a class) and "LIVE" (an instance)')
        for key, value in (("SETTINGS", settings_path), ("LIVE", live_path)):
            if value is not None and not isinstance(value, str):
                raise _improper(f'"{key}" must be a dotted path string')
        options = raw.get("OPTIONS", {})
        if not isinstance(options, Mapping):
            raise _improper('"OPTIONS" must be a dict of live() keyword arguments')
        if options and live_path is not None:
            raise _improper('"OPTIONS" applies to "SETTINGS" only; pass them to live() yourself')
        watch = raw.get("WATCH", True)
        if not isinstance(watch, bool) and watch != "lazy":
            raise _improper('"WATCH" must be True, "lazy" or False')
        commands = raw.get("SERVER_COMMANDS", DEFAULT_SERVER_COMMANDS)
        if isinstance(commands, str) or not all(isinstance(c, str) for c in commands):
            raise _improper('"SERVER_COMMANDS" must be a list of command names')
        return cls(
            settings=settings_path,
            live=live_path,
            mirror=_check_mirror(raw.get("MIRROR", {})),
            options=dict(options),
            watch=watch,
            server_commands=frozenset(commands),
        )

    def load(self) -> LiveSettings[Any]:
        """Import the settings class and make it live, or import the LiveSettings; check
        that every mirrored field exists."""
        if self.live is not None:
            instance = import_string(self.live)
            if not isinstance(instance, LiveSettings):
                raise _improper(
                    f'"LIVE" must name a LiveSettings (made by canaryconf.live()), but'
                    f" {self.live} is a {type(instance).__name__}"
                )
        else:
            assert self.settings is not None
            settings_cls = self.settings_class()
            instance = live(settings_cls, **self.options)
        fields = instance.settings_class.model_fields
        missing = sorted(name for name in self.mirror if name not in fields)
        if missing:
            raise _improper(
                f'"MIRROR" names field(s) {", ".join(missing)} that'
                f" {instance.settings_class.__name__} does not have"
            )
        return instance

    def settings_class(self) -> type[CanarySettings]:
        """The class ``SETTINGS`` names (importing it does not read any volume)."""
        assert self.settings is not None
        settings_cls = import_string(self.settings)
        if not (isinstance(settings_cls, type) and issubclass(settings_cls, CanarySettings)):
            raise _improper(f'"SETTINGS" must name a CanarySettings subclass: {self.settings}')
        return settings_cls

    @property
    def source(self) -> str:
        """The dotted path the settings come from, for messages."""
        return self.live or self.settings or "?"


def _check_mirror(mirror: object) -> dict[str, str]:
    if not isinstance(mirror, Mapping):
        raise _improper('"MIRROR" must be a dict {field name: Django setting name}')
    checked: dict[str, str] = {}
    for field_name, setting in mirror.items():
        if not isinstance(field_name, str) or not isinstance(setting, str):
            raise _improper('"MIRROR" keys and values must be strings')
        if not setting.isupper() or not setting.isidentifier():
            raise _improper(
                f'"MIRROR" maps {field_name!r} to {setting!r}: Django settings names are'
                " UPPER_CASE identifiers"
            )
        checked[field_name] = setting
    return checked


def _improper(reason: str) -> Exception:
    error: Exception = ImproperlyConfigured(f"settings.{SETTING_NAME}: {reason}")
    return error
