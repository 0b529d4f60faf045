"""``manage.py canaryconf show`` and ``manage.py canaryconf validate``."""

from __future__ import annotations

import json
from typing import Any, NoReturn

from django.core.management.base import BaseCommand, CommandParser  # type: ignore[import-untyped]

from canaryconf._errors import CanaryConfError, SettingsValidationError
from canaryconf.django import _runtime
from canaryconf.settings import CanarySettings, redacted_digest, redacted_dump

NONE = "-"


class Command(BaseCommand):  # type: ignore[misc]
    help = (
        "show: the settings as this process loads them now from the volumes (secrets"
        " redacted) with their generation, or the error when they do not load (a running"
        " server's own state is at its GET -/canaryconf endpoint)."
        " validate: read the volumes now and check them; exit 1 with one line per failing"
        " field."
    )
    requires_system_checks: list[str] = []  # must work while the project itself is broken

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["show", "validate"])
        parser.add_argument("--json", action="store_true", help="show: one JSON document")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        runtime = _runtime.runtime()
        if action == "show":
            self._show(runtime, as_json=options["json"])
        else:
            self._validate(runtime, traceback=options.get("traceback", False))

    def _show(self, runtime: _runtime.Runtime, *, as_json: bool) -> None:
        live = runtime.live
        if live is None:
            assert runtime.error is not None
            self._fail(runtime.error)
        pinned = live.pin()
        last_error = live.last_error
        report: dict[str, Any] = {
            "settings": runtime.config.source,
            "generation": pinned.generation,
            "digest": redacted_digest(pinned.settings),
            "rollout_role": pinned.rollout_role,
            "volume_dirs": live.volume_dirs,
            "last_error": _one_line(last_error) if last_error is not None else None,
            "values": redacted_dump(pinned.settings),
        }
        if as_json:
            self.stdout.write(json.dumps(report, indent=2, sort_keys=True))
            return
        for key in ("settings", "generation", "digest", "rollout_role", "last_error"):
            self.stdout.write(f"{key + ':':<14}{report[key] if report[key] else NONE}")
        self.stdout.write(f"{'volume_dirs:':<14}{', '.join(live.volume_dirs) or NONE}")
        for name, value in report["values"].items():
            self.stdout.write(f"  {name} = {json.dumps(value, sort_keys=True)}")

    def _validate(self, runtime: _runtime.Runtime, *, traceback: bool) -> None:
        if runtime.live is not None:
            settings_cls: type[CanarySettings] = runtime.live.settings_class
        elif runtime.config.settings is not None:
            settings_cls = runtime.config.settings_class()
        else:  # "LIVE" whose module failed to import: that failure is the answer
            assert runtime.error is not None
            self._fail(runtime.error)
        try:
            settings_cls()
        except CanaryConfError as exc:
            self._fail(exc)
        except Exception as exc:
            if traceback:
                raise
            self.stderr.write(
                f"{type(exc).__name__} while building {settings_cls.__name__}"
                " (details withheld: they may hold values; rerun with --traceback)"
            )
            raise SystemExit(1) from None
        self.stdout.write(f"ok: {runtime.config.source} validates")

    def _fail(self, error: BaseException) -> NoReturn:
        if isinstance(error, SettingsValidationError):
            for problem in error.problems:
                self.stderr.write(str(problem).replace("\n", " "))
        else:
            self.stderr.write(_one_line(error))
        raise SystemExit(1)


def _one_line(error: BaseException) -> str:
    if isinstance(error, SettingsValidationError):
        return "; ".join(str(p) for p in error.problems).replace("\n", " ")
    return f"{type(error).__name__}: {error}".replace("\n", " ")
