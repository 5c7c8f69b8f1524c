"""Celery tasks of ingestion: thin wrappers over services, safe to run twice."""

import logging
import os
import threading
import time

from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from . import services
from .models import InboxRequest

# Set while a drain task is queued and not yet started, so a burst of requests queues one task.
DRAIN_QUEUED_KEY = "footprint:inbox-drain-queued"

logger = logging.getLogger(__name__)


_wake_lock = threading.Lock()
_wake_last = float("-inf")
_wake_pending = False
_wake_due = threading.Event()
_waker_pid: int | None = None


def inbox_drain_wake() -> None:
    """Wake the drain for a request just committed, at most once per ``DRAIN_WAKE_SECONDS`` in
    this process (``inbox_drain_enqueue`` costs a Redis round trip or two).

    The first request of a quiet spell wakes the drain at once; the ones that follow within the
    interval are covered by one wake at its end, so every committed request is followed by a
    wake no later than the interval after it, however the drain that was running went. With no
    broker (tasks run in-process) or an interval of 0 every request wakes it.
    """
    global _wake_last, _wake_pending
    interval = settings.FOOTPRINT["DRAIN_WAKE_SECONDS"]
    if interval <= 0 or settings.CELERY_TASK_ALWAYS_EAGER:
        inbox_drain_enqueue()
        return
    with _wake_lock:
        if _wake_pending:
            return  # a wake is already due, and it comes after this request's commit
        now = time.monotonic()
        if now < _wake_last + interval:
            _wake_pending = True
            _waker_start()
            _wake_due.set()
            return
        _wake_last = now
    inbox_drain_enqueue()


def _waker_start() -> None:
    """One thread per process makes the wakes that are due (a fork starts its own): a
    long-lived thread keeps its cache connection, where a thread per wake would open one."""
    global _waker_pid
    if _waker_pid != os.getpid():
        _waker_pid = os.getpid()
        threading.Thread(target=_waker, name="drain-waker", daemon=True).start()


def _waker() -> None:
    global _wake_last, _wake_pending
    while True:
        _wake_due.wait()
        _wake_due.clear()
        with _wake_lock:
            wait = _wake_last + settings.FOOTPRINT["DRAIN_WAKE_SECONDS"] - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        with _wake_lock:
            _wake_last = time.monotonic()
            _wake_pending = False
        try:
            inbox_drain_enqueue()
        except Exception:  # it logs what it can; this thread must keep waking
            logger.exception("waking the drain failed")


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
