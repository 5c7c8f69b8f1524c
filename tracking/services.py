"""Workspaces and sources, and accepting requests into the inbox.

Processing lives in ``drain``, storing in ``store``, retention in ``retention``; their entry
points are named here too, so callers reach ingestion's writes through ``tracking.services``.
"""

from __future__ import annotations

import functools
import logging
import uuid
from datetime import datetime

import orjson
from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from django.db.models import Max
from django.utils import timezone

from config.lib import metrics
from config.lib.db import on_postgres, row_insert

from .doors import DOORS
from .drain import DrainStats, _inbox_rows_store, inbox_drain, inbox_process_batch
from .messages import ip_anonymize
from .models import (
    Door,
    FailedEvent,
    InboxRequest,
    Source,
    Workspace,
    write_key_digest,
    write_key_new,
)
from .pipeline import hook
from .retention import RETENTION_CHUNK, retention_purge
from .selectors import sources_forget
from .store import dedup_keys_purge, events_store

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
    messages: int = 1,
) -> int:
    """Store one request durably (one INSERT) and schedule its processing; the row's id.
    ``messages`` is how many it holds, for the operators' metrics."""
    ip = _inbox_ip(source, ip)
    if on_postgres():
        row_id = _inbox_row_insert(
            source_id=source.pk, door=door, body=body, meta=meta, ip=ip, received_at=received_at
        )
    else:
        row_id = InboxRequest.objects.create(
            source=source, door=door, body=body, meta=meta, ip=ip, received_at=received_at
        ).pk
    inbox_accepted(door=door, messages=messages)
    return row_id


def inbox_accepted(*, door: str, messages: int = 1) -> None:
    """What follows an inbox row written for an accepted request, once it commits: the drain
    is woken and the messages counted. For a caller that writes the row itself (``inbox_accept``
    does both)."""
    from .tasks import inbox_drain_wake

    accepted = _accepted_counter(door)

    def committed() -> None:
        inbox_drain_wake()
        accepted.inc(messages)

    transaction.on_commit(committed)


@functools.cache
def _accepted_counter(door: str):
    return metrics.messages_accepted.labels(door=door)


def _inbox_ip(source: Source, ip: str | None) -> str | None:
    return ip_anonymize(ip) if ip and source.workspace.anonymize_ip else ip


# The columns every new inbox row starts with, besides what the request brings.
_INBOX_NEW = {"status": InboxRequest.Status.PENDING, "attempts": 0, "error": ""}


def _inbox_row_insert(
    *, source_id: int, door: str, body: bytes, meta: dict, ip: str | None, received_at: datetime
) -> int:
    """Every accepted request makes this row: one INSERT bound on the server (see row_insert),
    without building a model instance (PostgreSQL only)."""
    return row_insert(
        InboxRequest._meta.db_table,
        {
            "source_id": source_id,
            "door": door,
            "body": body,
            "meta": orjson.dumps(meta).decode(),
            "ip": ip,
            "received_at": received_at,
            **_INBOX_NEW,
        },
    )


def _inbox_row_create(
    *, source: Source, door: str, body: bytes, meta: dict, ip: str | None, received_at: datetime
) -> InboxRequest:
    ip = _inbox_ip(source, ip)
    if not on_postgres():
        return InboxRequest.objects.create(
            source=source, door=door, body=body, meta=meta, ip=ip, received_at=received_at
        )
    row = InboxRequest(
        source=source, door=door, body=body, meta=meta, ip=ip, received_at=received_at
    )
    row.pk = _inbox_row_insert(
        source_id=source.pk, door=door, body=body, meta=meta, ip=ip, received_at=received_at
    )
    row._state.adding = False
    row._state.db = "default"
    return row


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
        transaction.on_commit(metrics.messages_accepted.labels(door=door).inc)
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
    groups: dict[tuple[int, str, bool], list[FailedEvent]] = {}
    for item in failed:
        if item.payload is not None and item.replayed_at is None:
            groups.setdefault((item.source_id, item.door, bool(item.import_file)), []).append(item)
    now = timezone.now()
    with transaction.atomic():
        for (source_id, door, imported), items in groups.items():
            InboxRequest.objects.bulk_create(
                InboxRequest(
                    source_id=source_id,
                    door=door,
                    body=body,
                    meta=_replay_meta(meta, imported=imported),
                    received_at=now,
                )
                for body, meta in DOORS[door].replay_requests(
                    [_replay_payload(item.payload, item) for item in items]
                )
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
        [(body, meta)] = DOORS[failed.door].replay_requests([_replay_payload(payload, failed)])
        inbox = InboxRequest.objects.create(
            source_id=failed.source_id,
            door=failed.door,
            body=body,
            meta=_replay_meta(meta, imported=bool(failed.import_file)),
            received_at=now,
        )
        FailedEvent.objects.filter(pk=failed.pk).update(replayed_at=now)
        from .tasks import inbox_drain_enqueue

        transaction.on_commit(inbox_drain_enqueue)
    return inbox


def _replay_payload(payload, failed: FailedEvent):
    """A replayed line of an imported file without a messageId gets the one its import gave it
    (its line key), so importing the file again later does not store it a second time."""
    if failed.import_key and isinstance(payload, dict) and not payload.get("messageId"):
        return {**payload, "messageId": failed.import_key}
    return payload


def _replay_meta(meta: dict, *, imported: bool) -> dict:
    """A replayed line of an imported file keeps the times its export recorded, as on import
    (the door parses it as historic) rather than being corrected against the replay's time."""
    return {**meta, "historic": True} if imported else meta


__all__ = [
    "RETENTION_CHUNK",
    "DrainStats",
    "dedup_keys_purge",
    "events_store",
    "inbox_drain",
    "inbox_process_batch",
    "retention_purge",
]
