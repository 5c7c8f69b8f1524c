"""Answers that hold for every request, whichever view it reached."""

from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse

from .doors.http import unavailable_response

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
