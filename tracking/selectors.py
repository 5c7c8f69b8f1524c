"""Reads of ingestion data used by more than one caller."""

from __future__ import annotations

import time
from datetime import datetime

from django.conf import settings
from django.db.models import QuerySet

from .errors import IngestError
from .models import CatalogueEvent, CatalogueKey, Event, Source, Workspace, write_key_digest

_sources: dict[str, tuple[float, Source]] = {}


def sources_forget() -> None:
    """Drop this process's cached write-key lookups (after a key is rotated or a source changes)."""
    _sources.clear()


def source_get_by_write_key(write_key: str | None) -> Source:
    """The active source a write key belongs to, or ``IngestError`` 401.

    Every ingestion request asks, so each process keeps a found source for
    ``FOOTPRINT_SOURCE_CACHE_SECONDS`` (5 s): a rotated or deactivated key stops working at once
    in the process that changed it and within those seconds in the others. Unknown keys are
    never cached.
    """
    if not write_key:
        raise IngestError(
            "invalid_write_key",
            "no write key: send it as the Basic username, a Bearer token or writeKey",
            status=401,
        )
    now = time.monotonic()
    # Kept by the key itself (as the source's row holds it): a found key costs no hashing.
    cached = _sources.get(write_key)
    if cached is not None and cached[0] > now:
        return cached[1]
    source = (
        Source.objects.select_related("workspace")
        .filter(write_key_digest=write_key_digest(write_key), is_active=True)
        .first()
    )
    if source is None:
        raise IngestError("invalid_write_key", "the write key is not valid", status=401)
    if len(_sources) > 10_000:
        _sources.clear()
    _sources[write_key] = (now + settings.FOOTPRINT["SOURCE_CACHE_SECONDS"], source)
    return source


def source_get_by_portal(*, portal_id: int, prop_id: int) -> Source | None:
    """The active source with ``prop_id`` in the workspace with ``portal_id``, if any."""
    return (
        Source.objects.select_related("workspace")
        .filter(prop_id=prop_id, workspace__portal_id=portal_id, is_active=True)
        .first()
    )


def workspaces_visible(user) -> QuerySet[Workspace]:
    """The workspaces a user may read: their own; every one for a superuser."""
    if not user.is_authenticated:
        return Workspace.objects.none()
    if user.is_superuser:
        return Workspace.objects.all()
    return Workspace.objects.filter(members=user)


def workspace_get_by_client_key(client_key: object, *, field: str = "client_key") -> Workspace:
    """The workspace a client key belongs to, or ``IngestError`` 401 naming ``field``."""
    if not isinstance(client_key, str) or not client_key:
        raise IngestError("missing_client_key", f"{field} is required", field=field, status=401)
    workspace = Workspace.objects.filter(client_key=client_key).first()
    if workspace is None:
        raise IngestError("invalid_client_key", f"{field} is not valid", field=field, status=401)
    return workspace


def event_refs(event_id: int | None) -> dict[str, str | None]:
    """The public refs of a stored event's guest and session (both None without an event)."""
    if event_id is None:
        return {"guest": None, "session": None}
    row = Event.objects.filter(pk=event_id).values("guest__ref", "session__ref").first() or {}
    guest, session = row.get("guest__ref"), row.get("session__ref")
    return {"guest": str(guest) if guest else None, "session": str(session) if session else None}


def catalogue_event_names(*, workspace_ids) -> list[str]:
    """Every event name the workspaces have sent, sorted, each once."""
    return list(
        CatalogueEvent.objects.filter(workspace_id__in=workspace_ids)
        .order_by("name")
        .values_list("name", flat=True)
        .distinct()
    )


def catalogue_keys(
    *, workspace_ids, kind: str, event_name: str | None = None
) -> list[CatalogueKey]:
    """The trait (``kind="trait"``) or property keys (``"property"``, of one event when
    ``event_name`` is given) the workspaces have sent, by key; a key sent in several
    workspaces or with several events comes once per row."""
    if kind not in CatalogueKey.Kind.values:
        raise ValueError(f"kind must be one of {', '.join(CatalogueKey.Kind.values)}, not {kind!r}")
    keys = CatalogueKey.objects.filter(workspace_id__in=workspace_ids, kind=kind)
    if event_name is not None:
        keys = keys.filter(event_name=event_name)
    return list(keys.order_by("key", "event_name", "workspace_id"))


def inbox_backlog() -> tuple[int, datetime | None]:
    """How many accepted requests wait for processing, and when the oldest of them arrived
    (by id, which the partial index on pending rows serves)."""
    from .models import InboxRequest

    pending = InboxRequest.objects.filter(status=InboxRequest.Status.PENDING)
    oldest = pending.order_by("id").values_list("received_at", flat=True).first()
    return (pending.count() if oldest is not None else 0), oldest
