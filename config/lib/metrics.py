"""Prometheus metrics for operators, with the official ``prometheus-client``.

Every process counts into these objects; a scrape reads them. Under gunicorn and Celery, where
many processes count, set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory shared by all of
them on the machine (before they start): each process then writes its values to its own file
there and a scrape adds the files up (``prometheus_client.multiprocess``). Without it the
values live in the process that scrapes, which is right for ``runserver`` and for tests.

What is read from the database at scrape time (the inbox backlog and its age) is a collector
the apps hand to ``exposition``; this module knows no app.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

__all__ = ["CONTENT_TYPE_LATEST", "exposition"]

# Seconds; from a fast request to the point an operator is paged.
LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)
RUN_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)

door_requests = Counter(
    "footprint_door_requests",
    "Requests answered by the front doors, by door and HTTP status.",
    ["door", "status"],
)
door_request_seconds = Histogram(
    "footprint_door_request_seconds",
    'Time a front door took to answer, by door (door="callflows" is /v2/callFlows).',
    ["door"],
    buckets=LATENCY_BUCKETS,
)
messages_accepted = Counter(
    "footprint_messages_accepted",
    "Messages in requests the doors accepted into the inbox, by door.",
    ["door"],
)
events_stored = Counter("footprint_events_stored", "Events stored by processing.")
events_failed = Counter(
    "footprint_events_failed",
    "Messages processing refused (kept as failed events), by door and reason code.",
    ["door", "reason"],
)
duplicates_dropped = Counter(
    "footprint_duplicates_dropped",
    "Messages dropped because their messageId was seen within the dedup window.",
)
processing_lag_seconds = Histogram(
    "footprint_processing_lag_seconds",
    "Time from an accepted request's arrival to the commit of its events.",
    buckets=LAG_BUCKETS,
)
segment_run_seconds = Histogram(
    "footprint_segment_run_seconds",
    "Duration of segment recomputes, by kind (full or incremental).",
    ["kind"],
    buckets=RUN_BUCKETS,
)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def exposition(collectors: Iterable = ()) -> bytes:
    """The text a scrape answers: every process's counters (one process's own when not in
    multiprocess mode), then what ``collectors`` read now."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    output = generate_latest(registry)
    extra = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        extra.register(collector)
    return output + generate_latest(extra)
