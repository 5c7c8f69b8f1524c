"""Logging filters that keep secrets out of log files."""

from __future__ import annotations

import logging
import re

# analytics.js puts the write key in the paths of its settings document and of the library
# itself, RudderStack's SDK in the source configuration's query string. Django logs the path
# of every 4xx/5xx answer (django.request) and runserver logs every request line with its
# query string (django.server).
WRITE_KEY_IN_PATH = re.compile(
    r"(/v1/projects/|/analytics\.js/v1/|[?&]writeKey=)[^/\s\"?&]+", re.IGNORECASE
)


class WriteKeyRedactFilter(logging.Filter):
    """Replace a write key in a logged request path with ``[redacted]``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = WRITE_KEY_IN_PATH.sub(r"\1[redacted]", message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True
