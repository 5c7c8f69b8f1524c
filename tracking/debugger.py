"""A source's live debugger: the last requests it sent, as they are processed.

Processing empties an inbox row's body once its messages are stored (the events keep what they
carried), so the debugger keeps its own short-lived copy of each body, in the cache, and only
for sources whose debugger page is open: the page (and every poll of it) marks the source
watched for ``WATCH_SECONDS``, and processing copies the bodies of watched sources' requests
for ``BODY_SECONDS``. A source nobody watches costs processing one cache read per batch.
"""

from __future__ import annotations

import orjson
from django.core.cache import cache

from .models import FailedEvent, InboxRequest

WATCH_SECONDS = 120
BODY_SECONDS = 3600
# A body larger than this is not copied (the page says so); the events still hold its messages.
BODY_LIMIT = 256 * 1024
REQUESTS_SHOWN = 15
REJECTIONS_SHOWN = 20


def _watch_key(source_id: int) -> str:
    return f"fp:debugger:watch:{source_id}"


def _body_key(inbox_id: int) -> str:
    return f"fp:debugger:body:{inbox_id}"


def source_watch(source_id: int) -> None:
    """The source's debugger is open: keep copies of its requests' bodies for a while."""
    cache.set(_watch_key(source_id), 1, WATCH_SECONDS)


def sources_watched(source_ids) -> set[int]:
    keys = {_watch_key(source_id): source_id for source_id in set(source_ids)}
    if not keys:
        return set()
    return {keys[key] for key in cache.get_many(list(keys))}


def bodies_keep(rows) -> None:
    """Processing's part: copy the bodies of watched sources' requests before it empties them."""
    watched = sources_watched(row.source_id for row in rows)
    if not watched:
        return
    cache.set_many(
        {
            _body_key(row.pk): bytes(row.body)
            for row in rows
            if row.source_id in watched and len(row.body) <= BODY_LIMIT
        },
        BODY_SECONDS,
    )


def request_payload(inbox: InboxRequest):
    """What the request carried, as JSON, or None when no copy of it is left."""
    body = bytes(inbox.body) if inbox.body else cache.get(_body_key(inbox.pk))
    if not body:
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return {"unreadable body": body[:2000].decode("utf-8", "replace")}


def source_requests(source, *, limit: int = REQUESTS_SHOWN) -> list[dict]:
    """The source's latest requests, newest first, each with its messages and rejections.

    Two queries on indexes: the source's rows by id (``inbox_source_id_idx``), and the failed
    events of those rows (by their inbox row).
    """
    rows = list(InboxRequest.objects.filter(source=source).defer("body").order_by("-id")[:limit])
    rejections: dict[int, list[FailedEvent]] = {}
    for failed in (
        FailedEvent.objects.filter(inbox_id__in=[row.pk for row in rows])
        .only("id", "inbox_id", "code", "reason", "field")
        .order_by("id")
    ):
        rejections.setdefault(failed.inbox_id, []).append(failed)
    return [request_summary(row, rejections.get(row.pk, [])) for row in rows]


def request_summary(row: InboxRequest, rejections: list[FailedEvent]) -> dict:
    done = row.status == InboxRequest.Status.DONE
    messages = row.message_count
    return {
        "id": row.pk,
        "received_at": row.received_at.isoformat(),
        "door": row.get_door_display(),
        "status": row.get_status_display(),
        "messages": messages,
        "accepted": messages - len(rejections) if done and messages is not None else None,
        "rejected_count": len(rejections),
        "rejected": [
            {"code": failed.code, "reason": failed.reason, "field": failed.field}
            for failed in rejections[:REJECTIONS_SHOWN]
        ],
        "error": row.error,
    }
