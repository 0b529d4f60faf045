"""Django signals of canaryconf.django.

``settings_changed`` is sent after each applied change of the settings ``CANARYCONF``
configured, once the mirrored Django settings hold the new values. ``sender`` is the
:class:`~canaryconf.LiveSettings`, ``change`` the :class:`~canaryconf.Change`.

Receivers run outside any event loop, so they may use the ORM: in canaryconf's
``canaryconf-watcher`` thread (outside its loop) when the watcher saw the change, in the
calling thread for a ``reload()`` from sync code, in a worker thread for one from async
code (an async view). A receiver that raises is logged and the others still run. Database
connections the receivers open are closed once they have all run; one the thread had
before stays open.

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
