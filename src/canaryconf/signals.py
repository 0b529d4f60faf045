"""The blinker signals canaryconf sends. The sender is always the :class:`LiveSettings`.

Connect to them for any settings object (``settings_changed.connect(fn)``) or for one
(``settings_changed.connect(fn, sender=live)``); the decorators of
:class:`~canaryconf.LiveSettings` (``@live.on_change()`` and friends) connect here too,
holding the handler strongly. canaryconf calls receivers one by one and isolates them: a
receiver that raises is logged and the others still run. Coroutine receivers are awaited.
Receivers are called in the order they were connected (those connected for any sender
first): the signals are :class:`~canaryconf._dispatch.OrderedSignal`, blinker signals
whose ``set_class`` keeps connection order.

>>> from canaryconf import signals
>>> sorted(signals.canaryconf_signals)  # doctest: +NORMALIZE_WHITESPACE
['handler-failed', 'promoted', 'reload-failed', 'reloaded', 'restart-required',
 'role-changed', 'settings-changed']
"""

from __future__ import annotations

from canaryconf._dispatch import OrderedNamespace

__all__ = [
    "canaryconf_signals",
    "handler_failed",
    "promoted",
    "reload_failed",
    "reloaded",
    "restart_required",
    "role_changed",
    "settings_changed",
]

canaryconf_signals = OrderedNamespace()

settings_changed = canaryconf_signals.signal(
    "settings-changed",
    doc="A new snapshot was applied. kwargs: ``change`` (:class:`~canaryconf.Change`).",
)
reload_failed = canaryconf_signals.signal(
    "reload-failed",
    doc="A new version did not validate; the last good snapshot stays. kwargs: ``error``.",
)
role_changed = canaryconf_signals.signal(
    "role-changed",
    doc="The rollout role changed. kwargs: ``change``, ``old_role``, ``new_role``.",
)
promoted = canaryconf_signals.signal(
    "promoted",
    doc="The pod went from canary (or preview) to stable (or active). kwargs: ``change``.",
)
restart_required = canaryconf_signals.signal(
    "restart-required",
    doc="Fields marked restart_required changed; their new values were not applied. "
    "kwargs: ``fields`` (frozenset of names), ``change``.",
)
handler_failed = canaryconf_signals.signal(
    "handler-failed",
    doc="A handler raised (or a coroutine handler ran over its timeout). kwargs: "
    "``handler`` (its name), ``signal`` (the signal's name), ``error``.",
)
reloaded = canaryconf_signals.signal(
    "reloaded",
    doc="Every reload, whatever its outcome. kwargs: ``result`` (:class:`ReloadResult`).",
)
