"""Storing new messages: the pipeline's run over a batch, and tracking's own steps (IP
anonymisation, dedup keys, the events COPY)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.db.models import JSONField
from django.utils import timezone

from config.lib.db import (
    COPY_FROM_ROWS,
    ids_reserve,
    keys_upsert_returning,
    on_postgres,
    row_values,
    rows_copy,
)

from .messages import Message, ip_anonymize
from .models import (
    DedupKey,
    Event,
    Workspace,
)
from .pipeline import Batch, batch_run

logger = logging.getLogger(__name__)


@dataclass
class Stored:
    event_ids: list[int]
    duplicates: int = 0
    suppressed: int = 0


def events_store(*, messages: list[Message], dedup_windows: dict, session_timeouts: dict) -> Stored:
    """Run the processing pipeline (``FOOTPRINT["PIPELINE"]``) over new messages: drop erased
    guests' and duplicate messages, resolve guests and sessions, insert events.

    Runs inside the caller's transaction. ``dedup_windows`` maps source id to that source's
    dedup window, ``session_timeouts`` workspace id to its session timeout.
    """
    batch = batch_run(
        Batch(messages=messages, dedup_windows=dedup_windows, session_timeouts=session_timeouts)
    )
    return Stored(
        event_ids=batch.event_ids, duplicates=batch.duplicates, suppressed=batch.suppressed
    )


# Every column of an event is the message attribute of the same name.
EVENT_FIELDS = [f for f in Event._meta.concrete_fields if not f.primary_key]
EVENT_JSON_FIELDS = frozenset(f.attname for f in EVENT_FIELDS if isinstance(f, JSONField))


def events_insert(messages: list[Message]) -> list[int]:
    """Insert one event per message; returns their ids, in order.

    On PostgreSQL the ids are drawn from the sequence in one query and the rows go in with one
    ``COPY``, straight from the messages: several times faster than a multi-row INSERT of model
    instances, where building the instances and quoting every value client-side dominate.
    """
    if not on_postgres() or len(messages) < COPY_FROM_ROWS:
        events = Event.objects.bulk_create(
            [Event(**{f.attname: getattr(m, f.attname) for f in EVENT_FIELDS}) for m in messages],
            batch_size=1000,
        )
        return [event.pk for event in events]
    table = Event._meta.db_table
    columns = ", ".join(connection.ops.quote_name(f.column) for f in EVENT_FIELDS)
    names = [f.attname for f in EVENT_FIELDS]
    ids = ids_reserve(table, len(messages))
    rows_copy(
        table,
        f"id, {columns}",
        (
            [event_id, *row_values(message, names, EVENT_JSON_FIELDS)]
            for event_id, message in zip(ids, messages, strict=True)
        ),
    )
    return ids


def messages_ip_anonymize(*, messages: list[Message]) -> None:
    """Zero the host part of every address (the typed ip and ``context.ip``) of the messages
    whose workspace asks for it. Every door's messages pass here before anything is stored."""
    with_ip = {m.workspace_id for m in messages if m.ip or m.context.get("ip")}
    if not with_ip:
        return
    anonymizing = set(
        Workspace.objects.filter(pk__in=with_ip, anonymize_ip=True).values_list("pk", flat=True)
    )
    for message in messages:
        if message.workspace_id not in anonymizing:
            continue
        message.ip = ip_anonymize(message.ip)
        if "ip" in message.context:
            raw = message.context["ip"]
            message.context = {
                **message.context,
                "ip": ip_anonymize(raw) if isinstance(raw, str) else None,
            }


def dedup_claim(*, messages: list[Message], dedup_windows: dict) -> list[Message]:
    """The messages whose messageId is new in their workspace, or whose earlier key expired.

    The first message with a given id wins, within the batch and across batches; the window is
    counted from the time the first one was received (as seed 002 says), not from its timestamp.
    Keys are claimed with one ``INSERT … ON CONFLICT DO UPDATE … WHERE expired RETURNING``, so
    concurrent workers cannot both win the same id.
    """
    first: dict[tuple[int, str], Message] = {}
    for message in messages:
        first.setdefault((message.workspace_id, message.message_id), message)
    if not first:
        return []
    rows = [
        (ws, mid, m.received_at, m.received_at + (m.dedup_window or dedup_windows[m.source_id]))
        # In key order, so that drains inserting overlapping keys wait for each other rather
        # than deadlock.
        for (ws, mid), m in sorted(first.items(), key=lambda item: item[0])
    ]
    table = DedupKey._meta.db_table
    won = set(
        keys_upsert_returning(
            table,
            ["workspace_id", "message_id", "received_at", "expires_at"],
            ["bigint", "text", "timestamptz", "timestamptz"],
            rows,
            conflict="workspace_id, message_id",
            assign="received_at = excluded.received_at, expires_at = excluded.expires_at",
            where=f"{table}.expires_at <= excluded.received_at",
            returning="workspace_id, message_id",
        )
    )
    return [m for key, m in first.items() if key in won]


def dedup_keys_purge(*, now: datetime | None = None) -> int:
    """Forget dedup keys whose window has ended."""
    deleted, _ = DedupKey.objects.filter(expires_at__lte=now or timezone.now()).delete()
    return deleted
