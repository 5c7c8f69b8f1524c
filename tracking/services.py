"""Everything in ingestion that writes: workspaces, sources, the inbox and the event store."""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson
from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.db.models import JSONField, Max, QuerySet
from django.utils import timezone

from config.lib.db import (
    COPY_FROM_ROWS,
    ids_reserve,
    keys_upsert_returning,
    on_postgres,
    row_values,
    rows_copy,
)

from .doors import DOORS
from .doors.base import InboxContext, Rejected
from .errors import IngestError
from .messages import Message, contains_nul, ip_anonymize
from .models import (
    DedupKey,
    Door,
    Event,
    FailedEvent,
    InboxRequest,
    Source,
    Workspace,
    write_key_digest,
    write_key_new,
)
from .pipeline import Batch, batch_run, hook, hooks
from .selectors import sources_forget

logger = logging.getLogger(__name__)


# --- Workspaces and sources -------------------------------------------------------------------


def _next_number(model: type[Workspace] | type[Source], field_name: str, first: int) -> int:
    last = model.objects.aggregate(last=Max(field_name))["last"]
    return max(last or 0, first - 1) + 1


def workspace_create(*, name: str) -> Workspace:
    for _ in range(5):
        try:
            with transaction.atomic():
                return Workspace.objects.create(
                    name=name, portal_id=_next_number(Workspace, "portal_id", 1001)
                )
        except IntegrityError:
            if Workspace.objects.filter(name=name).exists():
                raise
    raise IntegrityError("could not allocate a portal_id")


def source_create(
    *, workspace: Workspace, name: str, kind: str = Source.Kind.WEB, **options: object
) -> Source:
    for _ in range(5):
        key = write_key_new()
        try:
            with transaction.atomic():
                return Source.objects.create(
                    workspace=workspace,
                    name=name,
                    kind=kind,
                    prop_id=_next_number(Source, "prop_id", 1),
                    write_key=key,
                    write_key_digest=write_key_digest(key),
                    **options,
                )
        except IntegrityError:
            if Source.objects.filter(workspace=workspace, name=name).exists():
                raise
    raise IntegrityError("could not allocate a prop_id")


def workspace_source_get(*, workspace: Workspace, name: str, kind: str) -> Source:
    """The workspace's source of that name, made on first use.

    Doors that authenticate with the workspace's ``client_key`` (Sitecore's Stream API, flow
    executions) store their events under a source of their own.
    """
    source = Source.objects.filter(workspace=workspace, name=name).first()
    if source is None:
        try:
            source = source_create(workspace=workspace, name=name, kind=kind)
        except IntegrityError:  # made by a concurrent request
            source = Source.objects.get(workspace=workspace, name=name)
    return source


def browser_create(*, workspace: Workspace) -> tuple[str, object]:
    """A new browser identity (Sitecore's browser ref) and the visitor guest it belongs to
    (made by ``FOOTPRINT["GUEST_FOR_IDENTITY"]``: guests belong to profiles)."""
    ref = str(uuid.uuid4())
    with transaction.atomic():
        guest = hook("GUEST_FOR_IDENTITY")(
            workspace_id=workspace.pk,
            kind="browser",
            value=ref,
            door=Door.STREAM,
            now=timezone.now(),
        )
    return ref, guest


def source_rotate_write_key(*, source: Source) -> Source:
    """Give the source a new write key; the old one stops working at once."""
    source.write_key = write_key_new()
    source.write_key_digest = write_key_digest(source.write_key)
    source.save(update_fields=["write_key", "write_key_digest"])
    sources_forget()
    transaction.on_commit(sources_forget)
    return source


# --- Accept -----------------------------------------------------------------------------------


def inbox_accept(
    *,
    source: Source,
    door: str,
    body: bytes,
    meta: dict,
    ip: str | None,
    received_at: datetime,
) -> InboxRequest:
    """Store one request durably (one INSERT) and schedule its processing."""
    row = _inbox_row_create(
        source=source, door=door, body=body, meta=meta, ip=ip, received_at=received_at
    )
    from .tasks import inbox_drain_enqueue

    transaction.on_commit(inbox_drain_enqueue)
    return row


def _inbox_row_create(
    *, source: Source, door: str, body: bytes, meta: dict, ip: str | None, received_at: datetime
) -> InboxRequest:
    if ip and source.workspace.anonymize_ip:
        ip = ip_anonymize(ip)
    return InboxRequest.objects.create(
        source=source, door=door, body=body, meta=meta, ip=ip, received_at=received_at
    )


def inbox_accept_processed(
    *,
    source: Source,
    door: str,
    body: bytes,
    meta: dict,
    ip: str | None,
    received_at: datetime,
) -> list[int]:
    """Store one request in the inbox and process it at once; the ids of the events it stored.

    For doors whose answer carries the ids of the stored event, its session and its guest
    (Sitecore's event/create, /collect). The request still goes through the inbox and the one
    parser and pipeline every door uses; it is only processed inside the request instead of by
    a worker. If processing fails, the request stays pending in the inbox (it was accepted),
    a worker retries it, and the answer carries no stored ids.
    """
    with transaction.atomic():
        row = _inbox_row_create(
            source=source, door=door, body=body, meta=meta, ip=ip, received_at=received_at
        )
        try:
            with transaction.atomic():
                _, stored = _inbox_rows_store([row])
        except (OperationalError, InterfaceError):
            raise
        except Exception:
            logger.exception("inbox request %s could not be processed at once", row.pk)
            from .tasks import inbox_drain_enqueue

            transaction.on_commit(inbox_drain_enqueue)
            return []
    return stored.event_ids


def failed_events_replay(*, failed: list[FailedEvent]) -> int:
    """Send failed messages through their door again (after a fix); returns how many went.

    Each source and door gets one new inbox request; the pipeline validates the messages anew,
    so one that still fails is recorded again with its reason. Failed events without a payload
    (the whole request was unreadable) cannot be replayed and are left alone.
    """
    groups: dict[tuple[int, str], list[FailedEvent]] = {}
    for item in failed:
        if item.payload is not None and item.replayed_at is None:
            groups.setdefault((item.source_id, item.door), []).append(item)
    now = timezone.now()
    with transaction.atomic():
        for (source_id, door), items in groups.items():
            InboxRequest.objects.bulk_create(
                InboxRequest(source_id=source_id, door=door, body=body, meta=meta, received_at=now)
                for body, meta in DOORS[door].replay_requests([item.payload for item in items])
            )
            FailedEvent.objects.filter(pk__in=[item.pk for item in items]).update(replayed_at=now)
        if groups:
            from .tasks import inbox_drain_enqueue

            transaction.on_commit(inbox_drain_enqueue)
    return sum(len(items) for items in groups.values())


def failed_event_replay_edited(*, failed: FailedEvent, payload: dict) -> InboxRequest:
    """Send an edited copy of a failed message through its door again.

    The failed event keeps the payload as it arrived (marked replayed); the copy is a new inbox
    request that the door's parser and the pipeline treat like any other, so one that still
    fails is recorded as a new failed event with its reason.
    """
    now = timezone.now()
    with transaction.atomic():
        [(body, meta)] = DOORS[failed.door].replay_requests([payload])
        inbox = InboxRequest.objects.create(
            source_id=failed.source_id, door=failed.door, body=body, meta=meta, received_at=now
        )
        FailedEvent.objects.filter(pk=failed.pk).update(replayed_at=now)
        from .tasks import inbox_drain_enqueue

        transaction.on_commit(inbox_drain_enqueue)
    return inbox


# --- Process ----------------------------------------------------------------------------------


@dataclass
class DrainStats:
    requests: int = 0
    stored: int = 0
    duplicates: int = 0
    suppressed: int = 0
    rejected: int = 0
    failed_requests: int = 0
    retry_later: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, other: DrainStats) -> None:
        self.requests += other.requests
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.suppressed += other.suppressed
        self.retry_later += other.retry_later
        self.rejected += other.rejected
        self.failed_requests += other.failed_requests
        self.errors.extend(other.errors)


def inbox_drain(
    *, claim_size: int | None = None, max_batches: int | None = None, threads: int | None = None
) -> DrainStats:
    """Process pending inbox rows until none are left (or ``max_batches`` were claimed).

    On PostgreSQL ``threads`` (``FOOTPRINT_DRAIN_THREADS``, 2 by default) claim and process
    batches side by side, each on its own connection: while one waits on PostgreSQL the other
    parses and resolves, so one worker process keeps both busy. They share the inbox as separate
    workers do (``SKIP LOCKED``). Inside a transaction (tests, eager tasks) it stays in this
    thread, which alone sees that transaction's rows.
    """
    claim_size = claim_size or settings.FOOTPRINT["INBOX_CLAIM_SIZE"]
    threads = threads or settings.FOOTPRINT["DRAIN_THREADS"]
    if threads <= 1 or not on_postgres() or connection.in_atomic_block:
        return _drain_loop(claim_size, max_batches)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="drain") as pool:
        runs = [pool.submit(_drain_thread, claim_size, max_batches) for _ in range(threads)]
    total = DrainStats()
    for run in runs:
        total.add(run.result())
    return total


def _drain_thread(claim_size: int, max_batches: int | None) -> DrainStats:
    try:
        return _drain_loop(claim_size, max_batches)
    finally:
        connection.close()  # this thread's own connection


# Batches in a row that may end in a retryable database error (a deadlock with another
# drain) before a drain leaves the rest to the next one.
DRAIN_RETRIES = 3


def _drain_loop(claim_size: int, max_batches: int | None) -> DrainStats:
    total = DrainStats()
    batches = retries = 0
    while max_batches is None or batches < max_batches:
        stats = inbox_process_batch(claim_size=claim_size)
        batches += 1
        total.add(stats)
        if stats.requests + stats.failed_requests:
            retries = 0
        elif stats.retry_later and retries < DRAIN_RETRIES:
            retries += 1
        else:
            break
    return total


def inbox_process_batch(*, claim_size: int) -> DrainStats:
    """Claim up to ``claim_size`` pending rows and store their events in one transaction.

    Rows are claimed with ``FOR UPDATE SKIP LOCKED``, so any number of workers can drain the
    inbox together. A crash anywhere rolls the whole claim back and the rows stay pending; dedup
    keys are written in the same transaction, so the re-run stores nothing twice. If the batch
    fails, each of its rows is retried alone so that one poison request cannot hold up the
    others. A database that is briefly unavailable (or a deadlock between workers) fails nothing:
    the rows stay pending for the next drain.
    """
    claimed: list[int] = []
    try:
        with transaction.atomic():
            rows = _inbox_claim(limit=claim_size)
            if not rows:
                return DrainStats()
            claimed = [row.pk for row in rows]
            return _inbox_rows_process(rows)
    except (OperationalError, InterfaceError):
        logger.warning("inbox batch hit a database error; its rows stay pending", exc_info=True)
        return DrainStats(retry_later=len(claimed))
    except Exception:
        logger.exception("inbox batch failed; retrying its rows one by one")
    stats = DrainStats()
    for row_id in claimed:
        try:
            with transaction.atomic():
                rows = _inbox_claim(limit=1, pk=row_id)
                if rows:
                    stats.add(_inbox_rows_process(rows))
        except (OperationalError, InterfaceError):
            logger.warning("inbox request %s hit a database error", row_id, exc_info=True)
            stats.retry_later += 1
        except Exception as exc:
            logger.exception("inbox request %s failed", row_id)
            InboxRequest.objects.filter(pk=row_id, status=InboxRequest.Status.PENDING).update(
                status=InboxRequest.Status.FAILED,
                error=f"{type(exc).__name__}: {exc}"[:2000],
                processed_at=timezone.now(),
            )
            stats.failed_requests += 1
            stats.errors.append(f"inbox #{row_id}: {type(exc).__name__}: {exc}")
    return stats


def _inbox_claim(*, limit: int, pk: int | None = None) -> list[InboxRequest]:
    pending = InboxRequest.objects.filter(status=InboxRequest.Status.PENDING)
    if pk is not None:
        pending = pending.filter(pk=pk)
    return list(
        pending.select_for_update(skip_locked=True, of=("self",))
        .select_related("source__workspace")
        .order_by("id")[:limit]
    )


def _inbox_rows_process(rows: list[InboxRequest]) -> DrainStats:
    stats, _ = _inbox_rows_store(rows)
    return stats


def _inbox_rows_store(rows: list[InboxRequest]) -> tuple[DrainStats, Stored]:
    max_future_skew = settings.FOOTPRINT["MAX_FUTURE_SKEW"]
    messages: list[Message] = []
    failed: list[FailedEvent] = []
    for row in rows:
        source = row.source
        try:
            parsed, rejected = DOORS[row.door].parse(
                InboxContext(
                    body=bytes(row.body),
                    meta=row.meta,
                    inbox_id=row.pk,
                    workspace_id=source.workspace_id,
                    source_id=source.pk,
                    source_kind=source.kind,
                    ip=row.ip,
                    received_at=row.received_at,
                    max_future_skew=max_future_skew,
                )
            )
        except IngestError as error:
            parsed, rejected = [], [Rejected(error=error, payload=None)]
        messages.extend(parsed)
        failed.extend(
            FailedEvent(
                workspace_id=source.workspace_id,
                source=source,
                inbox=row,
                door=row.door,
                code=item.error.code,
                reason=item.error.message,
                field=item.error.field,
                payload=failed_payload(item.payload),
                received_at=row.received_at,
            )
            for item in rejected
        )

    stored = events_store(
        messages=messages,
        dedup_windows={row.source_id: row.source.dedup_window for row in rows},
        session_timeouts={
            row.source.workspace_id: row.source.workspace.session_timeout for row in rows
        },
    )
    if failed:
        FailedEvent.objects.bulk_create(failed, batch_size=500)
    InboxRequest.objects.filter(pk__in=[row.pk for row in rows]).update(
        status=InboxRequest.Status.DONE, body=b"", processed_at=timezone.now(), attempts=1
    )
    stats = DrainStats(
        requests=len(rows),
        stored=len(stored.event_ids),
        duplicates=stored.duplicates,
        suppressed=stored.suppressed,
        rejected=len(failed),
    )
    return stats, stored


def failed_payload(payload):
    """A refused message as it can be stored: U+0000, which PostgreSQL refuses in jsonb (and
    which may be why the message was refused), becomes U+FFFD so the rest of the request is
    not lost with it."""
    if not contains_nul(payload):
        return payload
    return orjson.loads(orjson.dumps(payload).replace(b"\\u0000", b"\\ufffd"))


# --- Store ------------------------------------------------------------------------------------


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


# --- Retention --------------------------------------------------------------------------------

RETENTION_CHUNK = 5000


def retention_purge(
    *, now: datetime | None = None, dry_run: bool = False, chunk_size: int = RETENTION_CHUNK
) -> dict[str, int]:
    """Delete what each workspace's retention window has passed; the counts, by kind.

    Events older than the window go first, then the sessions that no longer hold an event,
    failed events and processed (done or failed) inbox requests received before the window.
    Workspaces without ``retention_days`` keep everything. Deletes run in chunks of
    ``chunk_size`` rows, each its own transaction, so no lock is held for long.
    """
    now = now or timezone.now()
    counts = dict.fromkeys(("events", "sessions", "failed_events", "inbox_requests"), 0)
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
