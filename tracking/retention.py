"""Retention: what each workspace's retention window has passed is deleted, in chunks."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from .event_partitions import months_expired_drop
from .models import (
    Event,
    FailedEvent,
    InboxRequest,
    Workspace,
)
from .pipeline import hooks

logger = logging.getLogger(__name__)

RETENTION_CHUNK = 5000


def retention_purge(
    *, now: datetime | None = None, dry_run: bool = False, chunk_size: int = RETENTION_CHUNK
) -> dict[str, int]:
    """Delete what each workspace's retention window has passed; the counts, by kind.

    Events older than the window go first, then the sessions that no longer hold an event,
    failed events and processed (done or failed) inbox requests received before the window.
    Workspaces without ``retention_days`` keep everything. On PostgreSQL the events table's
    months that every workspace's window has passed are dropped whole first. Deletes run in
    chunks of ``chunk_size`` rows, each its own transaction, so no lock is held for long.
    """
    now = now or timezone.now()
    counts = dict.fromkeys(("events", "sessions", "failed_events", "inbox_requests"), 0)
    if not dry_run:
        # Whole months every workspace's window has passed go at once (PostgreSQL's
        # partitions); the chunked deletes below take what is left. A dry run counts the
        # same events through the chunked path.
        _, counts["events"] = months_expired_drop(now=now)
    windows = Workspace.objects.filter(retention_days__isnull=False).values_list(
        "pk", "retention_days"
    )
    for workspace_id, days in windows:
        cutoff = now - timedelta(days=days)
        targets = {}
        for provider in hooks("RETENTION"):
            targets.update(provider(workspace_id=workspace_id, cutoff=cutoff))
        for kind, queryset in targets.items():
            counts[kind] = counts.get(kind, 0) + (
                queryset.count() if dry_run else _delete_chunked(queryset, chunk_size=chunk_size)
            )
    return counts


def retention_events(*, workspace_id: int, cutoff: datetime) -> dict[str, QuerySet]:
    """Retention's first targets: the events before the window."""
    return {"events": Event.objects.filter(workspace_id=workspace_id, timestamp__lt=cutoff)}


def retention_requests(*, workspace_id: int, cutoff: datetime) -> dict[str, QuerySet]:
    """Retention's last targets: failed events and processed inbox requests."""
    return {
        "failed_events": FailedEvent.objects.filter(
            workspace_id=workspace_id, received_at__lt=cutoff
        ),
        "inbox_requests": InboxRequest.objects.filter(
            source__workspace_id=workspace_id, received_at__lt=cutoff
        ).exclude(status=InboxRequest.Status.PENDING),
    }


def _delete_chunked(queryset: QuerySet, *, chunk_size: int) -> int:
    deleted = 0
    while True:
        with transaction.atomic():
            pks = list(queryset.values_list("pk", flat=True)[:chunk_size])
            if not pks:
                return deleted
            queryset.model.objects.filter(pk__in=pks).delete()
        deleted += len(pks)
