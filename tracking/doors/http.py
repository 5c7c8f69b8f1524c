"""HTTP plumbing shared by the front doors: bodies, client addresses, keys, CORS, answers, and
``door_view``, the decorator every door view wears."""

from __future__ import annotations

import base64
import binascii
import functools
import logging
import threading
import time
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from config.lib import metrics
from config.lib.handlers import lean

from ..errors import IngestError
from ..messages import valid_ip

if TYPE_CHECKING:
    from ..models import Source

CORS_MAX_AGE = "86400"
RATE_WINDOW_SECONDS = 1
# A web process admits up to this many requests of a source on its own before it adds them to
# the shared count in Redis: a limit's 1/ALLOWANCE_SHARE, at most ALLOWANCE_MAX, at least 1
# (every request counted in Redis at once, as for any limit under ALLOWANCE_SHARE). So a source
# may exceed its limit by at most ``allowance - 1`` requests a second per web process: under
# 1% of its limit per process.
ALLOWANCE_SHARE = 100
ALLOWANCE_MAX = 20

logger = logging.getLogger(__name__)


def json_response(payload: Any, status: int = 200, **headers: str) -> HttpResponse:
    response = HttpResponse(orjson.dumps(payload), status=status, content_type="application/json")
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def error_response(error: IngestError) -> HttpResponse:
    if error.retry_after is not None:
        return json_response(
            error.as_dict(), status=error.status, Retry_After=str(error.retry_after)
        )
    return json_response(error.as_dict(), status=error.status)


# Adds to a counter and gives it its expiry when it is new: one command, one round trip.
_COUNT_SCRIPT = """
local count = redis.call('INCRBY', KEYS[1], ARGV[2])
if count == tonumber(ARGV[2]) then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""
_count_scripts: dict[str, Any] = {}


def _count_script(backend: RedisCache):
    """The counting script on the cache's Redis, made once per process and server.

    Django's Redis cache builds a new client (and its table of reply parsers) for every call;
    one client per server, shared by the threads (it is thread-safe), costs nothing per request.
    """
    server = backend._servers[0]
    script = _count_scripts.get(server)
    if script is None:
        client = backend._cache.get_client(write=True)
        script = _count_scripts[server] = client.register_script(_COUNT_SCRIPT)
    return script


def _window_count(key: str, *, timeout: int, allowance: int = 1) -> int:
    """Add one to a counter in the cache and return it: one round trip on Redis (Django's
    ``incr`` asks whether the key exists first), or none for a request within this process's
    ``allowance`` (see ``_allowance_count``)."""
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        name = backend.make_key(key)  # ours, and valid: validating walks it per character
        if allowance > 1:
            return _allowance_count(backend, name, timeout=timeout, allowance=allowance)
        return int(_count_script(backend)(keys=[name], args=[timeout, 1]))
    try:
        return cache.incr(key)
    except ValueError:
        return 1 if cache.add(key, 1, timeout=timeout) else cache.incr(key)


# Per counter in Redis: the requests this process admitted and has not added yet, and the
# count Redis last answered. Reset with each window (the counter's name holds its second).
_allowances: dict[str, list[int]] = {}
_allowances_lock = threading.Lock()
ALLOWANCES_REMEMBERED = 1024


def _allowance_count(backend: RedisCache, name: str, *, timeout: int, allowance: int) -> int:
    """The window's count as far as this process knows, this request included.

    Requests are added to the shared counter ``allowance`` at a time; in between, the count is
    the last one Redis answered plus what this process admitted since. Other processes' requests
    since that answer are unseen until the next addition, which bounds what a source can send
    over its limit (``ALLOWANCE_SHARE``).
    """
    with _allowances_lock:
        state = _allowances.get(name)
        if state is None:
            if len(_allowances) >= ALLOWANCES_REMEMBERED:
                _allowances.clear()
            state = _allowances[name] = [0, 0]
        state[0] += 1
        if state[0] < allowance:
            return state[1] + state[0]
        unsent, state[0] = state[0], 0
    total = int(_count_script(backend)(keys=[name], args=[timeout, unsent]))
    with _allowances_lock:
        state[1] = max(state[1], total)
    return total


def rate_limit_check(source: Source) -> None:
    """Refuse the request (429) when the source has used up this second's requests.

    A fixed one-second window counted in Django's cache: shared by every web instance when
    the cache is Redis (``CACHE_URL``), per process with the local-memory default. On Redis a
    process adds its requests to the shared count a few at a time (its allowance, at most 1% of
    the limit: see ``ALLOWANCE_SHARE``), so most requests make no round trip. If the cache
    itself fails the request is let through: losing data would be worse than a burst.
    """
    limit = source.rate_limit
    if limit is None:
        limit = settings.FOOTPRINT["RATE_LIMIT"]
    if not limit:
        return
    key = f"footprint:rate:{source.pk}:{int(time.time())}"
    allowance = max(1, min(ALLOWANCE_MAX, limit // ALLOWANCE_SHARE))
    try:
        count = _window_count(key, timeout=RATE_WINDOW_SECONDS + 1, allowance=allowance)
    except Exception:
        logger.warning("rate limit not checked: the cache failed", exc_info=True)
        return
    if count > limit:
        raise IngestError(
            "rate_limited",
            f"this source may send at most {limit} requests per second; retry shortly",
            status=429,
            retry_after=RATE_WINDOW_SECONDS,
        )


def unavailable_response() -> HttpResponse:
    """The database is unreachable: tell the client to retry, having stored nothing."""
    return json_response(
        {"code": "unavailable", "message": "storage is unavailable, retry later"},
        status=503,
        Retry_After="5",
    )


def body_read(request: HttpRequest, *, limit: int) -> bytes:
    """The request body, decompressed, refusing anything over ``limit`` bytes before reading it.

    A gzip body is inflated at most ``limit + 1`` bytes, so a compression bomb costs nothing.
    """
    too_large = IngestError(
        "request_too_large", f"the request body may be at most {limit // 1024} KB", status=400
    )
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise IngestError("invalid_request", "Content-Length is not a number") from None
    if declared > limit:
        raise too_large
    raw = request.read(limit + 1)
    if len(raw) > limit:
        raise too_large

    encoding = request.META.get("HTTP_CONTENT_ENCODING", "").strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise IngestError(
            "unsupported_encoding",
            f"Content-Encoding {encoding!r} is not supported; use gzip or none",
            status=415,
        )
    wbits = zlib.MAX_WBITS | 16 if "gzip" in encoding else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise IngestError("invalid_encoding", f"the {encoding} body is corrupt: {exc}") from None
    if len(body) > limit or inflater.unconsumed_tail:
        raise too_large
    return body


def client_ip(request: HttpRequest) -> str | None:
    """The client's address: the first untrusted hop of X-Forwarded-For, else the peer."""
    address = request.META.get("REMOTE_ADDR")
    hops = settings.TRUSTED_PROXY_HOPS
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if hops > 0 and forwarded:
        chain = [part.strip() for part in forwarded.split(",") if part.strip()]
        if chain:
            address = chain[-hops] if len(chain) >= hops else chain[0]
    return valid_ip(address)


def header_write_key(request: HttpRequest) -> str | None:
    """The write key from HTTP Basic (key as user, empty password) or a Bearer token."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, credentials = header.partition(" ")
    scheme = scheme.lower()
    credentials = credentials.strip()
    if scheme == "basic" and credentials:
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise IngestError(
                "invalid_write_key", "the Basic credentials are not valid base64", status=401
            ) from None
        return decoded.partition(":")[0]
    if scheme == "bearer" and credentials:
        return credentials
    return None


def cors_allow(
    response: HttpResponse, request: HttpRequest, *, allowed: bool = True
) -> HttpResponse:
    origin = request.META.get("HTTP_ORIGIN")
    if origin and allowed:
        response["Access-Control-Allow-Origin"] = origin
        if response.has_header("Retry-After"):
            response["Access-Control-Expose-Headers"] = "Retry-After"
    response["Vary"] = "Origin"
    return response


def cors_preflight(request: HttpRequest, *, methods: str) -> HttpResponse:
    """Answer a browser's preflight. The real request is checked against the source's origins."""
    response = HttpResponse(status=204)
    response["Access-Control-Allow-Methods"] = methods
    response["Access-Control-Allow-Headers"] = request.META.get(
        "HTTP_ACCESS_CONTROL_REQUEST_HEADERS", "Authorization, Content-Type, Content-Encoding"
    )
    response["Access-Control-Max-Age"] = CORS_MAX_AGE
    return cors_allow(response, request)


def door_error(request: HttpRequest, error: IngestError) -> HttpResponse:
    """A refusal in the JSON error format of the doors. The origin is withheld from a browser
    when it is the origin that was refused."""
    return cors_allow(error_response(error), request, allowed=error.status != 403)


def door_view(
    *methods: str,
    not_allowed: dict | None = None,
    any_method: bool = False,
    error: Callable[[HttpRequest, IngestError], HttpResponse] = door_error,
    name: str | None = None,
):
    """The answers every door gives the same way, around a view that only handles its request.

    A CORS preflight is answered for ``methods``; any other method is a 405 with ``Allow`` and
    the body ``not_allowed`` (by default the JSON error ``method_not_allowed``), unless
    ``any_method`` lets the view serve them all. An ``IngestError`` the view raises is rendered
    by ``error``, the door's own error format (it sets its CORS headers itself); an unreachable
    database is a 503 with ``Retry-After``. The view's answer gets the CORS headers. Door views
    take no CSRF token: they are called by other sites' scripts and by servers; they use no
    session, login or message either, so they are served through ``LEAN_MIDDLEWARE``.

    Every answer is counted for the operators' metrics under ``name`` (by default the view's
    name), with its status and how long it took.
    """
    allow = ", ".join(methods)
    if not_allowed is None:
        not_allowed = {"code": "method_not_allowed", "message": f"use {' or '.join(methods)}"}

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        label = name or view.__name__
        latency = metrics.door_request_seconds.labels(door=label)
        counters: dict[int, Any] = {}  # the request counter of each status

        @lean
        @csrf_exempt
        @functools.wraps(view)
        def door(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            started = time.perf_counter()
            status = 500
            try:
                response = answer(request, *args, **kwargs)
                status = response.status_code
                return response
            finally:
                latency.observe(time.perf_counter() - started)
                counter = counters.get(status)
                if counter is None:
                    counter = counters[status] = metrics.door_requests.labels(
                        door=label, status=str(status)
                    )
                counter.inc()

        def answer(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method == "OPTIONS":
                return cors_preflight(request, methods=f"{allow}, OPTIONS")
            if request.method not in methods and not any_method:
                return cors_allow(json_response(not_allowed, status=405, Allow=allow), request)
            try:
                response = view(request, *args, **kwargs)
            except IngestError as refusal:
                return error(request, refusal)
            except (OperationalError, InterfaceError):
                return cors_allow(unavailable_response(), request)
            return cors_allow(response, request)

        return door

    return decorator
