"""Segment membership: recompute (full or for some guests) and apply only the difference.

A run takes the next version of its segment, computes the members with one query
(``segment_sql.members_query``), then, holding the segment's row lock, applies the difference
in bulk: guests that entered get an open membership, guests that left have theirs closed. A run
whose version is older than the newest full run already applied is stale and changes nothing,
so a slow run can never overwrite a newer one.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from config.lib import metrics
from config.lib.db import on_postgres, work_mem

from .models import DirtyGuest, Segment, SegmentMembership, SegmentRun
from .rules import rule_validate, segment_refs
from .segment_sql import members_query

CHUNK = 5000


def segment_rules_lookup(workspace_id: int):
    """``slug -> rule`` for the workspace's segments, as the validator wants it."""
    rules = dict(Segment.objects.filter(workspace_id=workspace_id).values_list("slug", "rule"))
    return rules.get


def segment_validate(*, workspace_id: int, slug: str, rule) -> None:
    """Raise ``RuleError`` (with the path of the bad node) if the rule cannot be used."""
    rule_validate(rule, segment_rules=segment_rules_lookup(workspace_id), slug=slug)


def _slug_replace(node, old: str, new: str):
    ((kind, body),) = node.items()
    if kind in ("all", "any"):
        return {kind: [_slug_replace(child, old, new) for child in body]}
    if kind == "not":
        return {kind: _slug_replace(body, old, new)}
    if kind == "segment" and body.get("slug") == old:
        return {kind: {**body, "slug": new}}
    return node


def segment_slug_follow(*, workspace_id: int, old: str, new: str) -> list[Segment]:
    """Point the workspace's rules that refer to segment ``old`` at its new slug ``new``.

    Renaming a segment keeps every rule built on it working; returns the segments rewritten.
    """
    rewritten = []
    with transaction.atomic():
        for other in Segment.objects.select_for_update().filter(workspace_id=workspace_id):
            if any(ref == old for ref, _ in segment_refs(other.rule)):
                other.rule = _slug_replace(other.rule, old, new)
                other.save(update_fields=["rule"])
                rewritten.append(other)
    return rewritten


def _version_take(segment: Segment) -> int:
    Segment.objects.filter(pk=segment.pk).update(version=F("version") + 1)
    return Segment.objects.values_list("version", flat=True).get(pk=segment.pk)


def segment_recompute(
    segment: Segment, *, guest_ids: Iterable[int] | None = None, now: datetime | None = None
) -> SegmentRun:
    """Recompute a segment in full, or only for ``guest_ids``; returns the run's record."""
    started = time.perf_counter()
    now = now or timezone.now()
    kind = SegmentRun.Kind.FULL if guest_ids is None else SegmentRun.Kind.INCREMENTAL
    version = _version_take(segment)
    run = SegmentRun.objects.create(segment=segment, version=version, kind=kind, started_at=now)

    scope = None if guest_ids is None else sorted(set(guest_ids))
    query = members_query(segment.rule, workspace_id=segment.workspace_id, now=now, guest_ids=scope)
    members = _members_fetch(query)

    with transaction.atomic():
        locked = Segment.objects.select_for_update().get(pk=segment.pk)
        if locked.applied_version > version:
            run.stale = True
        else:
            current = SegmentMembership.objects.filter(segment=segment, exited_at__isnull=True)
            if scope is not None:
                current = current.filter(guest_id__in=scope)
            present = set(current.values_list("guest_id", flat=True))
            entered = sorted(members - present)
            exited = sorted(present - members)
            _memberships_open(segment, entered, now)
            for start in range(0, len(exited), CHUNK):
                SegmentMembership.objects.filter(
                    segment=segment,
                    exited_at__isnull=True,
                    guest_id__in=exited[start : start + CHUNK],
                ).update(exited_at=now)
            run.entered, run.exited = len(entered), len(exited)
            changes = {
                "member_count": SegmentMembership.objects.filter(
                    segment=segment, exited_at__isnull=True
                ).count()
            }
            if kind == SegmentRun.Kind.FULL:
                changes |= {"applied_version": version, "computed_at": now}
            Segment.objects.filter(pk=segment.pk).update(**changes)
        run.guests_checked = len(scope) if scope is not None else None
        run.finished_at = timezone.now()
        run.save()
    transaction.on_commit(
        lambda: metrics.segment_run_seconds.labels(kind=kind).observe(time.perf_counter() - started)
    )
    return run


# Aggregating millions of events sorts and hashes; this keeps that in memory, for one query.
MEMBERS_WORK_MEM = "64MB"


def _members_fetch(query) -> set[int]:
    with work_mem(MEMBERS_WORK_MEM):
        return set(query.values_list("pk", flat=True))


def _memberships_open(segment: Segment, guest_ids: list[int], now: datetime) -> None:
    """Open a stay for each guest: one INSERT of arrays on PostgreSQL."""
    if not guest_ids:
        return
    if on_postgres():
        table = SegmentMembership._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (segment_id, guest_id, entered_at) "  # noqa: S608
                "SELECT %s, guest_id, %s FROM unnest(%s::bigint[]) AS guest_id",
                [segment.pk, now, guest_ids],
            )
        return
    SegmentMembership.objects.bulk_create(
        [SegmentMembership(segment=segment, guest_id=g, entered_at=now) for g in guest_ids],
        batch_size=CHUNK,
    )


def guests_mark_dirty(*, guest_ids: Iterable[int], workspace_id_of: dict[int, int]) -> None:
    """Queue guests for incremental segment runs (inside the pipeline's transaction)."""
    DirtyGuest.objects.bulk_create(
        [
            DirtyGuest(guest_id=guest_id, workspace_id=workspace_id_of[guest_id])
            for guest_id in sorted(set(guest_ids))
        ],
        ignore_conflicts=True,
    )


def dirty_guests_recompute(*, limit: int = 20_000, now: datetime | None = None) -> int:
    """Run every active segment for the guests marked dirty; returns how many were handled."""
    with transaction.atomic():
        claimed = list(
            DirtyGuest.objects.select_for_update(skip_locked=True)
            .order_by("marked_at")
            .values_list("guest_id", "workspace_id")[:limit]
        )
        if not claimed:
            return 0
        DirtyGuest.objects.filter(pk__in=[guest_id for guest_id, _ in claimed]).delete()
    by_workspace: dict[int, list[int]] = {}
    for guest_id, workspace_id in claimed:
        by_workspace.setdefault(workspace_id, []).append(guest_id)
    for workspace_id, guest_ids in by_workspace.items():
        for segment in segments_in_order(workspace_id):
            segment_recompute(segment, guest_ids=guest_ids, now=now)
    return len(claimed)


def segments_in_order(workspace_id: int) -> list[Segment]:
    """The workspace's active segments, each after the segments its rule refers to."""
    from .rules import segment_refs

    segments = {
        s.slug: s for s in Segment.objects.filter(workspace_id=workspace_id, is_active=True)
    }
    ordered: list[Segment] = []
    done: set[str] = set()

    def visit(slug: str, trail: frozenset) -> None:
        if slug in done or slug not in segments or slug in trail:
            return
        for ref, _ in segment_refs(segments[slug].rule):
            visit(ref, trail | {slug})
        done.add(slug)
        ordered.append(segments[slug])

    for slug in sorted(segments):
        visit(slug, frozenset())
    return ordered
