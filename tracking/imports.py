"""Backfill: messages exported as NDJSON (one Segment-spec message per line, as Segment's and
RudderStack's exports write them) stored through the ``/v1`` door's parser and the pipeline.

``manage.py import_events`` is the door. Each batch of lines is one transaction: lines parsed
by the Segment door (``doors.segment.exported_message_parse``, keeping the times the export
recorded), messages already stored skipped, the rest run through the same pipeline as live
traffic (``store.events_store``: erased guests, dedup, guests, sessions, the events COPY,
segments), bad lines kept as failed events with their file, line number and reason.

Importing the same file again stores nothing twice, whatever the dedup window:

- a line without a ``messageId`` gets one from its content: ``import-`` and the first 32 hex
  digits of the line's SHA-256, then ``-N`` for the N-th identical line before it in the file;
  the same file (or another export holding the same line) gives the same id again;
- a message whose ``messageId`` is already stored as an event of the workspace is skipped,
  looked up by the events' ``(workspace, message_id)`` index: dedup keys are forgotten once
  their window has passed (``purge``), stored events are the lasting record, and they also
  cover messages that first arrived live (an export overlapping live traffic);
- within a run, and against imports running at the same time, the pipeline's dedup keys
  decide as they do for live traffic (an imported message's key counts its window from the
  import, not from its historic ``receivedAt``, so it holds while the import runs);
- a bad line is recorded once: its failed event carries the line's key (content hash and
  occurrence, as above), unique per workspace.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass, field
from datetime import timedelta

import orjson
from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from config.lib import metrics
from config.lib.db import on_postgres, texts_present

from .doors import segment
from .drain import failed_payload
from .errors import IngestError
from .messages import MAX_BATCH_BYTES, Message
from .models import Door, Event, FailedEvent, Source
from .store import events_store, failed_rollups_count

logger = logging.getLogger(__name__)

# Lines per transaction: as many messages as a worker's claim of 50 full batches.
IMPORT_BATCH = 5000
# A line longer than a whole batch request is not read at all (it could not be one message).
MAX_LINE_BYTES = MAX_BATCH_BYTES
# How much of a line that is not JSON its failed event keeps, as text.
MAX_TEXT_KEPT = 64 * 1024
# Line numbers kept per failure reason, for the summary.
LINES_PER_REASON = 10


@dataclass
class ImportStats:
    lines: int = 0  # lines read, blank ones included
    blank: int = 0
    stored: int = 0
    # Messages whose messageId was already stored (an earlier import, or live traffic).
    already_stored: int = 0
    # Repeats dropped by the pipeline's dedup (the same messageId twice in this run).
    duplicates: int = 0
    suppressed: int = 0  # carrying an identifier of an erased guest
    failed: int = 0  # bad lines, this run
    failed_known: int = 0  # …of which an earlier run had recorded already
    seconds: float = 0.0
    # code -> (count, an example reason, the first line numbers)
    reasons: dict[str, tuple[int, str, list[int]]] = field(default_factory=dict)

    def add(self, other: ImportStats) -> None:
        for name in (
            "lines",
            "blank",
            "stored",
            "already_stored",
            "duplicates",
            "suppressed",
            "failed",
            "failed_known",
            "seconds",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for code, (count, reason, lines) in other.reasons.items():
            self._reason_add(code, reason, lines, count)

    def _reason_add(self, code: str, reason: str, lines: list[int], count: int = 1) -> None:
        known = self.reasons.get(code)
        if known is None:
            self.reasons[code] = (count, reason, lines[:LINES_PER_REASON])
        else:
            kept = known[2] + lines[: LINES_PER_REASON - len(known[2])]
            self.reasons[code] = (known[0] + count, known[1], kept)


class LineKeys:
    """Deterministic keys of a file's lines: the content's hash and how many identical lines
    came before it. The same file gives the same keys, run after run."""

    def __init__(self):
        self._seen: Counter[bytes] = Counter()

    def key(self, line: bytes) -> str:
        digest = hashlib.sha256(line).digest()[:16]
        earlier = self._seen[digest]
        self._seen[digest] += 1
        return f"import-{digest.hex()}" + (f"-{earlier}" if earlier else "")


def ndjson_import(
    *,
    source: Source,
    lines: Iterable[bytes],
    file_name: str,
    batch_size: int = IMPORT_BATCH,
    threads: int | None = None,
    on_batch: Callable[[ImportStats], None] | None = None,
) -> ImportStats:
    """Import one file's lines into ``source``; ``on_batch`` hears after each transaction.

    This thread reads and parses; on PostgreSQL ``threads`` (``FOOTPRINT_DRAIN_THREADS``, as
    for a worker) store batches side by side, each in its own transaction on its own
    connection, so that parsing, Python's share of the pipeline and PostgreSQL's work overlap
    as in a worker process. Guests are locked by the pipeline as between workers, and a batch
    that meets a deadlock is run again (it is idempotent, like every batch).
    """
    started = time.perf_counter()
    threads = threads or settings.FOOTPRINT["DRAIN_THREADS"]
    if threads > 1 and (not on_postgres() or connection.in_atomic_block):
        threads = 1  # only this thread sees the caller's transaction (tests)
    context = _Context(source=source, file_name=file_name[:255])
    total = ImportStats()
    keys = LineKeys()

    def finished(stats: ImportStats) -> None:
        total.add(stats)
        if on_batch is not None:
            on_batch(stats)

    def parsed_batches():
        chunk: list[tuple[int, bytes]] = []
        for number, line in enumerate(lines, start=1):
            chunk.append((number, line))
            if len(chunk) >= batch_size:
                yield _chunk_parse(context, chunk, keys)
                chunk = []
        if chunk:
            yield _chunk_parse(context, chunk, keys)

    if threads == 1:
        for parsed in parsed_batches():
            finished(_chunk_store(context, parsed))
    else:
        _store_in_threads(context, parsed_batches(), threads, finished)
    # Reading and inflating the file count too.
    total.seconds = time.perf_counter() - started
    return total


def _store_in_threads(context, batches, threads: int, finished) -> None:
    """Store parsed batches on ``threads`` threads; this one keeps parsing ahead of them."""
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="import") as pool:
        pending: set[Future] = set()
        try:
            for parsed in batches:
                # A batch or so waits per thread: memory stays a few batches deep.
                while len(pending) >= threads * 2:
                    ready, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in ready:
                        finished(future.result())
                pending.add(pool.submit(_chunk_store_in_thread, context, parsed))
        except BaseException:
            # Reading stopped: what is being stored still counts (or fails on its own).
            for future in pending:
                if not future.cancel() and future.exception() is None:
                    finished(future.result())
            raise
        for future in as_completed(pending):
            finished(future.result())


@dataclass
class _Context:
    source: Source
    file_name: str


@dataclass
class _Parsed:
    stats: ImportStats
    messages: list[Message]
    failed: list[FailedEvent]


def _chunk_parse(context: _Context, chunk: list[tuple[int, bytes]], keys: LineKeys) -> _Parsed:
    started = time.perf_counter()
    source = context.source
    stats = ImportStats(lines=len(chunk))
    imported_at = timezone.now()
    max_future_skew = settings.FOOTPRINT["MAX_FUTURE_SKEW"]
    messages: list[Message] = []
    failed: list[FailedEvent] = []
    for number, raw_line in chunk:
        line = raw_line.strip()
        if number == 1 and line.startswith(b"\xef\xbb\xbf"):  # a byte-order mark
            line = line[3:].lstrip()
        if not line:
            stats.blank += 1
            continue
        key = None
        payload = None
        try:
            if len(line) > MAX_LINE_BYTES:
                raise IngestError(
                    "message_too_large",
                    f"the line is {len(line):,} bytes long; a message may be at most 32 KB",
                )
            try:
                payload = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                # What is kept of the line is its text.
                payload = line[:MAX_TEXT_KEPT].decode(errors="replace")
                raise IngestError("invalid_json", f"the line is not valid JSON: {exc}") from None
            if not isinstance(payload, dict) or payload.get("messageId") in (None, ""):
                key = keys.key(line)
            messages.append(
                segment.exported_message_parse(
                    line,
                    payload,
                    workspace_id=source.workspace_id,
                    source_id=source.pk,
                    source_kind=source.kind,
                    fallback_message_id=key or "",
                    imported_at=imported_at,
                    max_future_skew=max_future_skew,
                )
            )
        except IngestError as error:
            stats.failed += 1
            stats._reason_add(error.code, error.message, [number])
            failed.append(
                FailedEvent(
                    workspace_id=source.workspace_id,
                    source=source,
                    door=Door.SEGMENT,
                    code=error.code,
                    reason=error.message,
                    field=error.field or "",
                    payload=failed_payload(payload),
                    received_at=imported_at,
                    import_file=context.file_name,
                    import_line=number,
                    import_key=key or keys.key(line),
                )
            )
    stats.seconds = time.perf_counter() - started
    return _Parsed(stats=stats, messages=messages, failed=failed)


# Times a batch that met a deadlock with another is run again before the import stops.
DEADLOCK_RETRIES = 3


def _chunk_store_in_thread(context: _Context, parsed: _Parsed) -> ImportStats:
    try:
        for attempt in range(DEADLOCK_RETRIES + 1):
            try:
                return _chunk_store(context, parsed)
            except OperationalError as error:
                if attempt == DEADLOCK_RETRIES or not _is_deadlock(error):
                    raise
                logger.info("an import batch met a deadlock; running it again")
        raise AssertionError("unreachable")
    finally:
        connection.close()  # this thread's own connection; a new one costs little per batch


def _is_deadlock(error: OperationalError) -> bool:
    return getattr(error.__cause__, "sqlstate", None) in ("40P01", "40001")


def _chunk_store(context: _Context, parsed: _Parsed) -> ImportStats:
    started = time.perf_counter()
    source = context.source
    window = source.dedup_window
    messages = parsed.messages
    stats = ImportStats()
    stats.add(parsed.stats)
    with transaction.atomic():
        known = _message_ids_stored(
            workspace_id=source.workspace_id, message_ids={m.message_id for m in messages}
        )
        fresh = [m for m in messages if m.message_id not in known]
        stats.already_stored = len(messages) - len(fresh)
        # A historic message's dedup key would have expired long ago (the window counts from
        # its receivedAt), so two copies of one messageId with receivedAt further apart than
        # the window, stored by two threads at once, would both win their key. Counted from
        # the import instead, the key holds until the window has passed after it.
        now = timezone.now()
        for message in fresh:
            message.dedup_window = max(now - message.received_at, timedelta(0)) + window
        stored = events_store(
            messages=fresh,
            dedup_windows={source.pk: source.dedup_window},
            session_timeouts={source.workspace_id: source.workspace.session_timeout},
        )
        stats.stored = len(stored.event_ids)
        stats.duplicates = stored.duplicates
        stats.suppressed = stored.suppressed
        new_failed = _failed_record(source.workspace_id, parsed.failed)
        stats.failed_known = stats.failed - len(new_failed)
        transaction.on_commit(lambda: _metrics_count(stats, new_failed))
    stats.seconds += time.perf_counter() - started
    return stats


def _metrics_count(stats: ImportStats, failed: list[FailedEvent]) -> None:
    """Count a committed batch for the operators' metrics, as the worker counts its own."""
    metrics.events_stored.inc(stats.stored)
    if stats.duplicates + stats.already_stored:
        metrics.duplicates_dropped.inc(stats.duplicates + stats.already_stored)
    for code, count in Counter(item.code for item in failed).items():
        metrics.events_failed.labels(door=Door.SEGMENT, reason=code).inc(count)


def _message_ids_stored(*, workspace_id: int, message_ids: set[str]) -> set[str]:
    """Which of ``message_ids`` are stored as events of the workspace (by its message index)."""
    return texts_present(
        Event._meta.db_table,
        "message_id",
        message_ids,
        where="workspace_id = %s",
        params=[workspace_id],
    )


def _failed_record(workspace_id: int, failed: list[FailedEvent]) -> list[FailedEvent]:
    """Store the failed lines no earlier run recorded (and count them in the hourly failure
    rollups); the ones that were new."""
    if not failed:
        return []
    known = set(
        FailedEvent.objects.filter(
            workspace_id=workspace_id, import_key__in=[f.import_key for f in failed]
        ).values_list("import_key", flat=True)
    )
    new = [f for f in failed if f.import_key not in known]
    # A concurrent import of the same file may record a line first: it is kept once.
    FailedEvent.objects.bulk_create(new, batch_size=500, ignore_conflicts=True)
    if new:
        failed_rollups_count(new)
    return new
