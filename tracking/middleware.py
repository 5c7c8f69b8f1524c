"""Answers that hold for every request, whichever view it reached."""

from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse

from .doors.http import json_response, unavailable_response

logger = logging.getLogger(__name__)


class DatabaseUnavailableMiddleware:
    """An unreachable database is a 503 with ``Retry-After``, never a 500.

    The failed query marks the connection, so at the end of the request Django finds it unusable
    and closes it; the next request connects afresh and the service recovers by itself.
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        logger.warning(
            "database unavailable during %s %s: %s", request.method, request.path, exception
        )
        return unavailable_response()


class NulCharacterMiddleware:
    """A NUL character in the path or the query string is a 400 naming it.

    PostgreSQL text cannot hold U+0000, so such a value can match nothing and would otherwise
    fail in the database as a server error. Bodies are the doors' business (they refuse NUL in
    their own format).
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path:
            place = "the path"
        else:
            place = next(
                (
                    f"the {key!r} parameter"
                    for key, values in request.GET.lists()
                    if "\x00" in key + "".join(values)
                ),
                None,
            )
        if place is not None:
            return json_response(
                {
                    "code": "invalid_character",
                    "message": f"{place} contains the NUL character (U+0000)",
                },
                status=400,
            )
        return self.get_response(request)
