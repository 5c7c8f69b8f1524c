"""Celery tasks of ingestion: thin wrappers over services, safe to run twice."""

import logging

from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from . import services
from .models import InboxRequest

# Set while a drain task is queued and not yet started, so a burst of requests queues one task.
DRAIN_QUEUED_KEY = "footprint:inbox-drain-queued"

logger = logging.getLogger(__name__)


def inbox_drain_enqueue() -> None:
    """Queue one drain task unless one is already waiting to start.

    Runs after the inbox row is committed. If the broker is unreachable the request has still
    been accepted: the row waits in the inbox and the periodic sweep queues it later.
    """
    try:
        if cache.add(DRAIN_QUEUED_KEY, 1, timeout=10):
            inbox_drain.delay()
    except Exception:
        # Nothing was queued: the next request must try again rather than wait for the sweep.
        cache.delete(DRAIN_QUEUED_KEY)
        if settings.CELERY_TASK_ALWAYS_EAGER and settings.CELERY_TASK_EAGER_PROPAGATES:
            raise
        logger.warning("could not queue inbox processing; the sweep will", exc_info=True)


@shared_task(name="tracking.tasks.inbox_drain", acks_late=True)
def inbox_drain() -> dict:
    # Cleared before claiming: any request committed from now on queues a task of its own.
    cache.delete(DRAIN_QUEUED_KEY)
    stats = services.inbox_drain()
    return {"requests": stats.requests, "stored": stats.stored}


@shared_task(name="tracking.tasks.inbox_sweep")
def inbox_sweep() -> bool:
    """Re-enqueue processing for rows no task picked up (a lost task, a broker outage)."""
    cutoff = timezone.now() - settings.FOOTPRINT["INBOX_SWEEP_AGE"]
    stale = InboxRequest.objects.filter(
        status=InboxRequest.Status.PENDING, received_at__lt=cutoff
    ).exists()
    if stale:
        inbox_drain.delay()
    return stale


@shared_task(name="tracking.tasks.dedup_keys_purge")
def dedup_keys_purge() -> int:
    return services.dedup_keys_purge()


@shared_task(name="tracking.tasks.retention_purge")
def retention_purge() -> dict:
    """Purge what the workspaces' retention windows have passed (beat, daily)."""
    return services.retention_purge()


@shared_task(name="tracking.tasks.event_partitions_ahead")
def event_partitions_ahead() -> list[str]:
    """Make the events table's partitions for this month and the next ones (beat, daily)."""
    from .event_partitions import months_ahead

    return months_ahead()
