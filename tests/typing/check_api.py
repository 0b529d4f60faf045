"""Checked by mypy --strict (``tests/test_api.py`` runs it), never executed: the
documented ways of reading settings and registering handlers are typed, and the mistakes
below are type errors (``warn_unused_ignores`` fails the check if one stops being one)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import Depends
from flask import Flask
from typing_extensions import assert_type

import canaryconf.flask
from canaryconf import CanarySettings, Change, LiveSettings, PinnedSettings, annotation, live
from canaryconf.django import get_live_settings
from canaryconf.fastapi import current_settings, pinned_settings
from canaryconf.flask import CanaryConf
from canaryconf.sources.base import Origin


class Settings(CanarySettings):
    db_url: str = annotation("db-url", default="postgres://stable-db/app")
    workers: int = 4


settings = live(Settings)
assert_type(settings, LiveSettings[Settings])
assert_type(settings.current, Settings)
assert_type(settings.current.db_url, str)
assert_type(settings.pin(), PinnedSettings[Settings])
assert_type(settings.pin().settings.workers, int)
typo = settings.current.db_ulr  # type: ignore[attr-defined]  # a misspelt field


@settings.on_change("db_url")
def rebuild_pool(change: Change[Any]) -> None: ...


@settings.on_change
async def log_change(change: Change[Settings]) -> None: ...


@settings.on_reload_failed
def alert(error: Exception) -> None: ...


@settings.on_restart_required
def restart(fields: frozenset[str]) -> None: ...


def wrong(change: int, extra: str) -> None: ...


settings.on_change(wrong)  # type: ignore[type-var]  # not a handler of a change
settings.on_reload_failed(rebuild_pool)  # type: ignore[type-var]  # takes a change, not an error

SettingsDep = Annotated[Settings, Depends(current_settings(settings))]
PinnedDep = Annotated[PinnedSettings[Settings], Depends(pinned_settings(settings))]
assert_type(get_live_settings(Settings), LiveSettings[Settings])

# Flask: the extension's snapshot is your class; the module-level proxy stands for the
# snapshot of whichever app serves the request, so it is typed as what every read of it
# reaches (a CanarySettings, as Flask types its own proxies), and your fields are not
# known through it.
canary = CanaryConf(Flask(__name__), settings)
assert_type(canary.snapshot, Settings)
assert_type(canary.snapshot.db_url, str)
assert_type(canaryconf.flask.settings, CanarySettings)
assert_type(canaryconf.flask.settings.origins, Mapping[str, Origin])
assert_type(canaryconf.flask.settings.model_dump(), dict[str, Any])
unknown = canaryconf.flask.settings.db_url  # type: ignore[attr-defined]  # use canary.snapshot
