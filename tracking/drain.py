"""Processing the inbox: claim accepted requests, parse them through their door, run the
pipeline over their messages, record what failed. Celery's ``inbox_drain`` task calls it."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import orjson
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from config.lib import metrics
from config.lib.db import connection_apart_close, on_postgres

from . import debugger
from .doors import DOORS
from .doors.base import InboxContext, Rejected
from .errors import IngestError
from .messages import Message, contains_nul
from .models import (
    FailedEvent,
    InboxRequest,
)
from .store import Stored, dedup_keys_release, events_store, failed_rollups_count

logger = logging.getLogger(__name__)


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
        try:
            return _drain_loop(claim_size, max_batches)
        finally:
            connection_apart_close()
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
        connection.close()  # this thread's own connections
        connection_apart_close()


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
    inbox together. A crash anywhere rolls the whole claim back and the rows stay pending; each
    dedup key remembers its request, which wins it again, so the re-run stores nothing twice
    (the keys may have been committed apart, see ``store.dedup_claim``). If the batch
    fails, each of its rows is retried alone so that one poison request cannot hold up the
    others. A database that is briefly unavailable (or a deadlock between workers) fails nothing:
    the rows stay pending for the next drain.
    """
    claimed: list[int] = []
    # Outside a transaction of the caller's (a worker), dedup keys are claimed on a second
    # connection and committed at once (``store.dedup_claim``): a drain holding a client's
    # retry of a message another drain holds does not wait for that drain's whole batch.
    apart = on_postgres() and not connection.in_atomic_block
    try:
        with transaction.atomic():
            rows = _inbox_claim(limit=claim_size)
            if not rows:
                return DrainStats()
            claimed = [row.pk for row in rows]
            return _inbox_rows_process(rows, keys_apart=apart)
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
                    stats.add(_inbox_rows_process(rows, keys_apart=apart))
        except (OperationalError, InterfaceError):
            logger.warning("inbox request %s hit a database error", row_id, exc_info=True)
            stats.retry_later += 1
        except Exception as exc:
            logger.exception("inbox request %s failed", row_id)
            if apart:
                _keys_release(row_id)
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


def _keys_release(row_id: int) -> None:
    """Give back the dedup keys a request that failed for good claimed apart (its messages
    were not stored). They are found by parsing it again: one that does not parse claimed
    none."""
    row = InboxRequest.objects.select_related("source").filter(pk=row_id).first()
    if row is None:
        return
    try:
        parsed, _ = _row_parse(row, settings.FOOTPRINT["MAX_FUTURE_SKEW"])
    except Exception:
        logger.warning("inbox request %s does not parse: no dedup key to give back", row_id)
        return
    dedup_keys_release(
        inbox_id=row_id, keys=[(message.workspace_id, message.message_id) for message in parsed]
    )


def _inbox_rows_process(rows: list[InboxRequest], *, keys_apart: bool = False) -> DrainStats:
    stats, _ = _inbox_rows_store(rows, keys_apart=keys_apart)
    return stats


def _row_parse(row: InboxRequest, max_future_skew) -> tuple[list[Message], list[Rejected]]:
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
    for message in parsed:
        message.inbox_id = row.pk
    return parsed, rejected


def _inbox_rows_store(
    rows: list[InboxRequest], *, keys_apart: bool = False
) -> tuple[DrainStats, Stored]:
    max_future_skew = settings.FOOTPRINT["MAX_FUTURE_SKEW"]
    messages: list[Message] = []
    failed: list[FailedEvent] = []
    counts: dict[int, int] = {}
    for row in rows:
        source = row.source
        parsed, rejected = _row_parse(row, max_future_skew)
        counts[row.pk] = len(parsed) + len(rejected)
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
        keys_apart=keys_apart,
    )
    if failed:
        FailedEvent.objects.bulk_create(failed, batch_size=500)
        failed_rollups_count(failed)
    debugger.bodies_keep(rows)
    # One UPDATE per distinct message count: a batch's requests mostly hold the same number.
    by_count: dict[int, list[int]] = {}
    for pk, count in counts.items():
        by_count.setdefault(count, []).append(pk)
    processed_at = timezone.now()
    for count, pks in by_count.items():
        InboxRequest.objects.filter(pk__in=pks).update(
            status=InboxRequest.Status.DONE,
            body=b"",
            processed_at=processed_at,
            attempts=1,
            message_count=count,
        )
    transaction.on_commit(lambda: _metrics_count(rows, stored=stored, failed=failed))
    stats = DrainStats(
        requests=len(rows),
        stored=len(stored.event_ids),
        duplicates=stored.duplicates,
        suppressed=stored.suppressed,
        rejected=len(failed),
    )
    return stats, stored


def _metrics_count(rows: list[InboxRequest], *, stored: Stored, failed: list[FailedEvent]):
    """Count a committed batch for the operators' metrics (``config.lib.metrics``)."""
    metrics.events_stored.inc(len(stored.event_ids))
    if stored.duplicates:
        metrics.duplicates_dropped.inc(stored.duplicates)
    reasons: dict[tuple[str, str], int] = {}
    for item in failed:
        key = (item.door, item.code)
        reasons[key] = reasons.get(key, 0) + 1
    for (door, code), count in reasons.items():
        metrics.events_failed.labels(door=door, reason=code).inc(count)
    now = timezone.now()
    for row in rows:
        metrics.processing_lag_seconds.observe(max((now - row.received_at).total_seconds(), 0))


def failed_payload(payload):
    """A refused message as it can be stored: U+0000, which PostgreSQL refuses in jsonb (and
    which may be why the message was refused), becomes U+FFFD so the rest of the request is
    not lost with it."""
    if not contains_nul(payload):
        return payload
    return orjson.loads(orjson.dumps(payload).replace(b"\\u0000", b"\\ufffd"))
