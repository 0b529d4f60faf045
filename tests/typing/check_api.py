"""Checked by mypy --strict (``tests/test_api.py`` runs it), never executed: the
documented ways of reading settings and registering handlers are typed, and the mistakes
below are type errors (``warn_unused_ignores`` fails the check if one stops being one)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends
from typing_extensions import assert_type

from canaryconf import CanarySettings, Change, LiveSettings, PinnedSettings, annotation, live
from canaryconf.django import get_live_settings
from canaryconf.fastapi import current_settings, pinned_settings


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
