"""Times in the reader's time zone: the admin's pages set a ``fp_tz`` cookie from the
browser's own zone (``Intl.DateTimeFormat``), and this middleware activates it for each
request. Without the cookie, or with a zone Python does not know, times stay in UTC."""

from __future__ import annotations

import zoneinfo
from functools import lru_cache
from urllib.parse import unquote

from django.utils import timezone

COOKIE = "fp_tz"


@lru_cache(maxsize=64)
def _zone(name: str) -> zoneinfo.ZoneInfo | None:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return None


class BrowserTimeZoneMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        name = unquote(request.COOKIES.get(COOKIE, ""))
        zone = _zone(name) if name and len(name) <= 64 else None
        if zone is not None:
            timezone.activate(zone)
        else:
            timezone.deactivate()
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
