"""Celery tasks of profiles: thin wrappers over services, safe to run twice."""

import logging

from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from django.db.models import F, Q
from django.utils import timezone

from .models import Segment
from .segments import dirty_guests_recompute
from .segments import segment_recompute as recompute
from .sessions import sessions_close_idle as close_idle

# Set while an incremental segment task is queued and not yet started (one per burst).
INCREMENTAL_QUEUED_KEY = "footprint:segments-incremental-queued"

logger = logging.getLogger(__name__)


@shared_task
def sessions_close_idle() -> int:
    """Close the sessions idle past their workspace's timeout (run by beat every minute)."""
    return close_idle()


@shared_task(acks_late=True)
def segment_recompute(segment_id: int) -> dict:
    """Recompute one segment in full."""
    segment = Segment.objects.filter(pk=segment_id, is_active=True).first()
    if segment is None:
        return {"skipped": True}
    run = recompute(segment)
    return {
        "version": run.version,
        "entered": run.entered,
        "exited": run.exited,
        "stale": run.stale,
    }


@shared_task
def segments_schedule() -> int:
    """Queue a full recompute of every active segment whose schedule is due (beat, each minute)."""
    now = timezone.now()
    due = Segment.objects.filter(is_active=True, recompute_every__isnull=False).filter(
        Q(computed_at__isnull=True) | Q(computed_at__lte=now - F("recompute_every"))
    )
    ids = list(due.values_list("pk", flat=True))
    for segment_id in ids:
        segment_recompute.delay(segment_id)
    return len(ids)


def segments_incremental_enqueue() -> None:
    """Queue one incremental run unless one is already waiting (after a processed batch)."""
    try:
        if cache.add(INCREMENTAL_QUEUED_KEY, 1, timeout=30):
            segments_incremental.delay()
    except Exception:
        cache.delete(INCREMENTAL_QUEUED_KEY)
        if settings.CELERY_TASK_ALWAYS_EAGER and settings.CELERY_TASK_EAGER_PROPAGATES:
            raise
        logger.warning("could not queue incremental segments; the schedule will", exc_info=True)


@shared_task(acks_late=True)
def segments_incremental() -> int:
    """Recompute every active segment for the guests whose events changed."""
    cache.delete(INCREMENTAL_QUEUED_KEY)
    handled = 0
    while True:
        count = dirty_guests_recompute()
        handled += count
        if not count:
            return handled


@shared_task
def guest_days_purge() -> int:
    """Forget guest-days older than the daily guest counts need (run by beat daily)."""
    from .rollups import guest_days_purge as purge

    return purge()
