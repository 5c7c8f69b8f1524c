"""Profiles' steps of the processing pipeline (``FOOTPRINT["PIPELINE"]``, tracking.pipeline)."""

from __future__ import annotations

from django.db import transaction

from tracking.pipeline import Batch

from .identity import guests_resolve as resolve
from .models import Segment
from .segments import guests_mark_dirty
from .services import messages_suppressed_drop
from .sessions import sessions_assign, sessions_reconcile


def erased_drop(batch: Batch) -> None:
    """Drop the messages that carry an identifier of an erased guest."""
    kept = messages_suppressed_drop(batch.messages)
    batch.suppressed += len(batch.messages) - len(kept)
    batch.messages = kept


def guests_resolve(batch: Batch) -> None:
    """Give every message its guest, creating and merging guests as its identifiers say."""
    batch.notes["guests"] = resolve(messages=batch.messages)


def sessions_place(batch: Batch) -> None:
    """Join the sessions of merged guests, then place every message in a session."""
    resolution = batch.notes.get("guests")
    # Merged guests' sessions are joined first: joining afterwards could absorb a session
    # this batch's events were just placed in.
    if resolution is not None and resolution.merge_winners:
        sessions_reconcile(
            guest_ids=resolution.merge_winners,
            since=resolution.merged_since,
            until=resolution.merged_until,
            timeouts=batch.session_timeouts,
        )
    sessions_assign(messages=batch.messages, timeouts=batch.session_timeouts)


def segments_touch(batch: Batch) -> None:
    """Mark the batch's guests for incremental segment runs, in workspaces that have segments."""
    messages = batch.messages
    workspaces = {m.workspace_id for m in messages}
    with_segments = set(
        Segment.objects.filter(workspace_id__in=workspaces, is_active=True)
        .values_list("workspace_id", flat=True)
        .distinct()
    )
    if not with_segments:
        return
    owners = {m.guest_id: m.workspace_id for m in messages if m.workspace_id in with_segments}
    guests_mark_dirty(guest_ids=owners, workspace_id_of=owners)
    from .tasks import segments_incremental_enqueue

    transaction.on_commit(segments_incremental_enqueue)


def guests_count(batch: Batch) -> None:
    """Count the batch's guests once per day they were active on (new, returning, identified)."""
    from .rollups import guests_count as count

    resolution = batch.notes.get("guests")
    count(messages=batch.messages, guests=resolution.guests if resolution else [])
