"""The operators' Prometheus endpoint, ``GET /metrics``.

The counters and histograms live in ``config.lib.metrics`` and are counted where things happen
(the doors, processing, segment runs); the inbox backlog and the age of its oldest request are
read from the database at each scrape, so they are true whichever process answers.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from config.lib import metrics

from .selectors import inbox_backlog


class InboxBacklogCollector:
    """``footprint_inbox_pending`` and ``footprint_inbox_oldest_pending_age_seconds``."""

    def collect(self):
        count, oldest = inbox_backlog()
        yield GaugeMetricFamily(
            "footprint_inbox_pending",
            "Accepted requests waiting in the inbox for processing.",
            value=count,
        )
        age = (timezone.now() - oldest).total_seconds() if oldest is not None else 0.0
        yield GaugeMetricFamily(
            "footprint_inbox_oldest_pending_age_seconds",
            "Age of the oldest request waiting in the inbox (0 when none waits).",
            value=max(age, 0.0),
        )


def metrics_view(request: HttpRequest) -> HttpResponse:
    """The Prometheus text format, for a scraper holding ``FOOTPRINT_METRICS_TOKEN``
    (``Authorization: Bearer <token>``). Without a token configured the endpoint does not exist."""
    token = settings.FOOTPRINT["METRICS_TOKEN"]
    if not token:
        raise Http404("metrics are off: set FOOTPRINT_METRICS_TOKEN")
    scheme, _, given = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), token):
        response = HttpResponse(
            "send the metrics token as Authorization: Bearer <token>\n",
            status=401,
            content_type="text/plain",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(
        metrics.exposition([InboxBacklogCollector()]), content_type=metrics.CONTENT_TYPE_LATEST
    )
