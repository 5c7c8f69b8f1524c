"""Serving some views through fewer middleware.

The front doors are called thousands of times a second by scripts and servers that carry no
session, no login, no CSRF token and no flash message, yet ``MIDDLEWARE`` builds a lazy session,
a lazy user and a message store for each of their requests and reads them back on the way out.
A view marked with ``lean`` is served through ``LEAN_MIDDLEWARE`` instead: the same list minus
what such a view never uses, in the same order, so what it answers (security headers, hosts,
the 503 of a lost database) is unchanged. ``LeanViewsMiddleware``, first in ``MIDDLEWARE``,
sends them there; every other request goes on through ``MIDDLEWARE``.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.base import BaseHandler
from django.urls import Resolver404, get_resolver

LEAN = "lean_middleware"
# Paths remembered per process (door paths are few; a settings document's path holds its key).
PATHS_REMEMBERED = 4096


def lean(view: Callable) -> Callable:
    """Mark a view to be served through ``LEAN_MIDDLEWARE``."""
    setattr(view, LEAN, True)
    return view


class LeanHandler(BaseHandler):
    """Django's request handler with ``LEAN_MIDDLEWARE`` in place of ``MIDDLEWARE``."""

    def __init__(self) -> None:
        super().__init__()
        self.load_middleware()

    def load_middleware(self, is_async: bool = False) -> None:
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = settings.LEAN_MIDDLEWARE
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full


class LeanViewsMiddleware:
    """First in ``MIDDLEWARE``: a request for a lean view goes on through ``LEAN_MIDDLEWARE``
    (and the view) instead of the rest of ``MIDDLEWARE``."""

    def __init__(self, get_response) -> None:
        unknown = set(settings.LEAN_MIDDLEWARE) - set(settings.MIDDLEWARE)
        if unknown:
            raise ImproperlyConfigured(f"LEAN_MIDDLEWARE names what MIDDLEWARE lacks: {unknown}")
        self.get_response = get_response
        self.lean = LeanHandler()._middleware_chain
        self.paths: dict[str, bool] = {}

    def is_lean(self, path: str) -> bool:
        found = self.paths.get(path)
        if found is None:
            try:
                match = get_resolver().resolve(path)
            except Resolver404:
                found = False
            else:
                found = getattr(match.func, LEAN, False)
            if len(self.paths) >= PATHS_REMEMBERED:
                self.paths.clear()
            self.paths[path] = found
        return found

    def __call__(self, request):
        if self.is_lean(request.path_info):
            return self.lean(request)
        return self.get_response(request)
