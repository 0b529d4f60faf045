"""Pin one settings snapshot per request: ``request.canaryconf``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from canaryconf import _web
from canaryconf.django import _runtime

__all__ = ["CanaryConfMiddleware"]


class CanaryConfMiddleware:
    """Set ``request.canaryconf`` to a :class:`~canaryconf.PinnedSettings`: the
    snapshot current when the request arrived, with its generation, digest and rollout
    role. Every read in the request sees that one version, even if a reload applies a new
    one meanwhile.

    >>> MIDDLEWARE = ["canaryconf.django.middleware.CanaryConfMiddleware", ...]  # doctest: +SKIP
    >>> def checkout(request):                                                 # doctest: +SKIP
    ...     s = request.canaryconf
    ...     return JsonResponse({"db_url": s.db_url, "generation": s.generation})

    Works under WSGI and ASGI. In a process forked after ``ready()`` it also makes sure
    the watcher runs there.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if self.is_async:
            return self.__acall__(request)
        self._pin(request)
        return self.get_response(request)

    async def __acall__(self, request: Any) -> Any:
        self._pin(request)
        response: Awaitable[Any] = self.get_response(request)
        return await response

    @staticmethod
    def _pin(request: Any) -> None:
        _runtime.ensure_watching()
        request.canaryconf = _web.pin(request.META, _runtime.get_live_settings())
