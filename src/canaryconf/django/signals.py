"""Django signals of canaryconf.django.

``settings_changed`` is sent after each applied change of the settings ``CANARYCONF``
configured, once the mirrored Django settings hold the new values. ``sender`` is the
:class:`~canaryconf.LiveSettings`, ``change`` the :class:`~canaryconf.Change`.

Receivers run outside any event loop (a worker thread when the change came from the
background watcher), so they may use the ORM; a receiver that raises is logged and the
others still run. Database connections a receiver opens in that thread are closed after.

>>> from django.dispatch import receiver                    # doctest: +SKIP
>>> from canaryconf.django.signals import settings_changed  # doctest: +SKIP
>>> @receiver(settings_changed)                             # doctest: +SKIP
... def log_change(sender, change, **kwargs):
...     print(change.diff())
"""

from __future__ import annotations

from django.dispatch import Signal  # type: ignore[import-untyped]

__all__ = ["settings_changed"]

settings_changed = Signal()
