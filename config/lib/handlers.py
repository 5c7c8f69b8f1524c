"""Serving some views through fewer middleware.

The front doors are called thousands of times a second by scripts and servers that carry no
session, no login, no CSRF token and no flash message, yet ``MIDDLEWARE`` builds a lazy session,
a lazy user and a message store for each of their requests and reads them back on the way out.
A view marked with ``lean`` is served through ``LEAN_MIDDLEWARE`` instead: the same list minus
what such a view never uses, in the same order, so what it answers (security headers, hosts,
the 503 of a lost database) is unchanged. ``LeanViewsMiddleware``, first in ``MIDDLEWARE``,
sends them there; every other request goes on through ``MIDDLEWARE``.

``DoorsApplication`` goes one step further for the WSGI server (gunicorn): it serves a lean
view's ordinary request itself, without Django's request handler, URL resolution per request,
middleware chain or request signals, applying what ``LEAN_MIDDLEWARE`` would have applied (see
``DoorsApplication``). Anything out of the ordinary goes to Django's handler as before.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import DisallowedHost, ImproperlyConfigured
from django.core.handlers.base import BaseHandler
from django.core.handlers.exception import response_for_exception
from django.core.handlers.wsgi import WSGIHandler, WSGIRequest, get_script_name
from django.db import DEFAULT_DB_ALIAS, connections
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.security import SecurityMiddleware
from django.urls import Resolver404, get_resolver, set_script_prefix
from django.utils.log import log_response

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


class LeanViews:
    """The lean view at a path with its arguments (None at any other path), resolved once per
    path and process."""

    def __init__(self) -> None:
        self.found: dict[str, tuple | None] = {}

    def __call__(self, path: str) -> tuple | None:
        try:
            return self.found[path]
        except KeyError:
            pass
        try:
            match = get_resolver().resolve(path)
        except Resolver404:
            found = None
        else:
            lean_ = getattr(match.func, LEAN, False)
            found = (match.func, match.args, match.kwargs) if lean_ else None
        if len(self.found) >= PATHS_REMEMBERED:
            self.found.clear()
        self.found[path] = found
        return found


class LeanViewsMiddleware:
    """First in ``MIDDLEWARE``: a request for a lean view goes on through ``LEAN_MIDDLEWARE``
    (and the view) instead of the rest of ``MIDDLEWARE``."""

    def __init__(self, get_response) -> None:
        unknown = set(settings.LEAN_MIDDLEWARE) - set(settings.MIDDLEWARE)
        if unknown:
            raise ImproperlyConfigured(f"LEAN_MIDDLEWARE names what MIDDLEWARE lacks: {unknown}")
        self.get_response = get_response
        self.lean = LeanHandler()._middleware_chain
        self.lean_view = LeanViews()

    def __call__(self, request):
        if self.lean_view(request.path_info) is not None:
            return self.lean(request)
        return self.get_response(request)


# The middleware whose work ``DoorsApplication`` does itself, in ``LEAN_MIDDLEWARE``'s order.
# With any other ``LEAN_MIDDLEWARE`` it stands aside and every request goes through Django.
DOORS_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "tracking.middleware.NulCharacterMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "tracking.middleware.DatabaseUnavailableMiddleware",
]


class DoorsApplication:
    """The WSGI application: an ordinary request for a lean view is answered by the view
    straight away, and every other request by Django's ``WSGIHandler``.

    A door's request costs Django's handler about as much CPU as the door's own work: signals
    that walk every connection and cache, a middleware chain of nested wrappers, URL resolution.
    Here a lean view's path is resolved once per process, and the request gets exactly what
    ``LEAN_MIDDLEWARE`` (``DOORS_MIDDLEWARE``) gives it, through the same middleware's methods:

    - ``SecurityMiddleware``'s redirect to HTTPS and its headers (HSTS, nosniff, referrer and
      opener policies), ``XFrameOptionsMiddleware``'s header, ``CommonMiddleware``'s
      ``Content-Length``;
    - a host not in ``ALLOWED_HOSTS``, a NUL character in the path or query string, or a
      redirect to HTTPS goes through Django's handler, which refuses or redirects it as always;
    - an exception is answered as Django answers it (``response_for_exception``: logged, 500);
      a lost database is already the door's 503;
    - a 4xx or 5xx is logged as Django logs it (``django.request``);
    - this thread's database connection is closed before and after the request when it is
      broken or past ``CONN_MAX_AGE``, as the request signals would close it.

    Settings that make ``CommonMiddleware`` refuse or redirect requests (``DISALLOWED_USER_AGENTS``,
    ``PREPEND_WWW``) or a different ``LEAN_MIDDLEWARE`` turn it off: then it only hands over.
    """

    def __init__(self, application: WSGIHandler) -> None:
        self.application = application
        self.enabled = (
            list(settings.LEAN_MIDDLEWARE) == DOORS_MIDDLEWARE
            and not settings.DISALLOWED_USER_AGENTS
            and not settings.PREPEND_WWW
        )
        self.security = SecurityMiddleware(application)
        self.common = CommonMiddleware(application)
        self.frames = XFrameOptionsMiddleware(application)
        self.view = LeanViews()

    def __call__(self, environ: dict, start_response):
        path = environ.get("PATH_INFO", "")
        found = self.view(path) if self.enabled and not _has_nul(environ) else None
        if found is None:
            return self.application(environ, start_response)
        request = WSGIRequest(environ)
        try:
            request.get_host()
        except DisallowedHost:
            return self.application(environ, start_response)
        if self.security.process_request(request) is not None:
            return self.application(environ, start_response)

        set_script_prefix(get_script_name(environ))
        _connection_check()
        view, args, kwargs = found
        try:
            response = view(request, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - answered as Django's handler answers it
            response = response_for_exception(request, exc)
        response = self.frames.process_response(request, response)
        response = self.common.process_response(request, response)
        response = self.security.process_response(request, response)
        if response.status_code >= 400:
            log_response(
                "%s: %s", response.reason_phrase, request.path, response=response, request=request
            )
        status = f"{response.status_code} {response.reason_phrase}"
        headers = [
            *response.items(),
            *(("Set-Cookie", c.output(header="")) for c in response.cookies.values()),
        ]
        if response.streaming:
            # Its closing (by the server, after the last chunk) closes what it holds.
            response._resource_closers.append(request.close)
            start_response(status, headers)
            return response
        try:
            body = response.content
        finally:
            request.close()
            _connection_check()
        start_response(status, headers)
        return [body]


def _connection_check() -> None:
    """Close this thread's connection if it is broken or too old, as ``close_old_connections``
    does at the start and end of a request (not inside a transaction: a test's, say)."""
    db = connections[DEFAULT_DB_ALIAS]  # once: each use of the ``connection`` proxy looks it up
    if not db.in_atomic_block:
        db.close_if_unusable_or_obsolete()


def _has_nul(environ: dict) -> bool:
    """Whether the path or query string may hold a NUL character (encoded or not): such a
    request goes through ``NulCharacterMiddleware``, which names it."""
    query = environ.get("QUERY_STRING", "")
    path = environ.get("PATH_INFO", "")
    return "\x00" in path or "%00" in path or "\x00" in query or "%00" in query
