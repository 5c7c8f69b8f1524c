"""The Optimizely (Episerver) Tracking API door (``/api/v1.0/Track``, ``/api/v1.0/TrackBulk``).

A TrackEvent becomes a ``track`` message named by its ``EventType``, so segment rules and
experience goals use Optimizely event types like any other event name. Field names are matched
without regard to case (the API is .NET: ``DeviceId``, ``deviceId`` and ``deviceID`` are one).

``TrackId`` makes an event unique per tracking client (the source) and ``Scope``: its message id
is derived from the three, and a repeat within 72 hours is dropped by the pipeline's dedup.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import orjson

from ..channels import channel_of_source_kind
from ..errors import IngestError
from ..messages import (
    MAX_ID_LENGTH,
    MAX_NAME_LENGTH,
    Message,
    contains_nul,
    corrected_timestamp,
    email_normalize,
    parse_timestamp,
    text_value,
    valid_ip,
)
from .base import DoorSpec, InboxContext, Rejected, body_parse
from .schema import ERROR, OBJECT, STRING, object_schema, operation

DOOR = "optimizely"
SINGLE = "single"
BULK = "bulk"
MAX_EVENT_BYTES = 256 * 1024
MAX_BULK_EVENTS = 100
TRACK_ID_LENGTH = 64
TRACK_ID_WINDOW = timedelta(hours=72)
MAX_SCOPE_LENGTH = 128
IP_HEADER = "HTTP_EPI_USER_IP_ADDRESS"


def body_limit(route: str) -> int:
    # A bulk request holds up to 100 events of up to 256 KB each, plus the list around them.
    return MAX_EVENT_BYTES * (MAX_BULK_EVENTS if route == BULK else 1) + 1024


def key_from_header(header: str) -> str | None:
    """The key of ``Authorization: epi-single <key>``."""
    scheme, _, key = header.strip().partition(" ")
    if scheme.lower() != "epi-single" or not key.strip():
        return None
    return key.strip()


def _fields(raw: dict) -> dict[str, Any]:
    return {str(key).lower(): value for key, value in raw.items()}


def _required_text(fields: dict, name: str, *, limit: int) -> str:
    value = fields.get(name.lower())
    if value is None or (isinstance(value, str) and not value.strip()):
        raise IngestError(f"missing_{name}", f"{name} is required", field=name)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise IngestError("invalid_field", f"{name} must be a string", field=name)
    text = str(value).strip()
    if len(text) > limit:
        raise IngestError("invalid_field", f"{name} is longer than {limit} characters", field=name)
    return text


def _optional_text(fields: dict, name: str, *, limit: int = 2048) -> str:
    value = fields.get(name.lower())
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise IngestError("invalid_field", f"{name} must be a string", field=name)
    return str(value).strip()[:limit]


def _object(fields: dict, name: str) -> dict:
    value = fields.get(name.lower())
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise IngestError("invalid_field", f"{name} must be a JSON object", field=name)
    return value


def event_normalize(
    raw: Any,
    *,
    workspace_id: int,
    source_id: int,
    channel: str,
    ip: str | None,
    received_at: datetime,
    fallback_message_id: str,
    max_future_skew: timedelta,
) -> Message:
    """Validate one TrackEvent and build the internal ``Message`` from it."""
    if not isinstance(raw, dict):
        raise IngestError("invalid_event", "each track event must be a JSON object")
    if contains_nul(raw):
        raise IngestError("invalid_character", "strings must not contain U+0000")
    fields = _fields(raw)
    device_id = _required_text(fields, "DeviceId", limit=MAX_ID_LENGTH)
    event_type = _required_text(fields, "EventType", limit=MAX_NAME_LENGTH)
    value = _required_text(fields, "Value", limit=MAX_EVENT_BYTES)
    scope = _optional_text(fields, "Scope", limit=MAX_SCOPE_LENGTH + 1)
    if len(scope) > MAX_SCOPE_LENGTH:
        raise IngestError(
            "invalid_field", f"Scope is longer than {MAX_SCOPE_LENGTH} characters", field="Scope"
        )
    track_id = _optional_text(fields, "TrackId", limit=TRACK_ID_LENGTH)
    session_id = _optional_text(fields, "SessionId", limit=MAX_ID_LENGTH)
    page_uri = _optional_text(fields, "PageUri")
    page_title = _optional_text(fields, "PageTitle", limit=MAX_NAME_LENGTH)
    country = _optional_text(fields, "CountryCode", limit=64)
    event_time = parse_timestamp(fields.get("eventtime"), "EventTime")
    payload = _object(fields, "Payload")
    user = _fields(_object(fields, "User"))
    info = user.get("info")
    if info is not None and not isinstance(info, dict):
        raise IngestError("invalid_field", "User.Info must be a JSON object", field="User.Info")

    timestamp, clamped = corrected_timestamp(
        original=event_time,
        sent_at=None,
        received_at=received_at,
        max_future_skew=max_future_skew,
    )
    event_ip = valid_ip(fields.get("remoteaddress")) or ip

    identifiers = [("device_id", device_id)]
    traits: dict = dict(info or {})
    email = email_normalize(user.get("email"))
    if email:
        identifiers.append(("email", email))
        traits["email"] = email
    name = text_value(user.get("name"), MAX_NAME_LENGTH)
    if name:
        traits["name"] = name

    properties = {
        **payload,
        "eventValue": value,
        **({"scope": scope} if scope else {}),
        **({"trackId": track_id} if track_id else {}),
        **({"pageUri": page_uri} if page_uri else {}),
        **({"pageTitle": page_title} if page_title else {}),
        **({"countryCode": country} if country else {}),
    }
    context: dict = {"device": {"id": device_id}}
    if event_ip:
        context["ip"] = event_ip
    if page_uri or page_title:
        context["page"] = {
            key: item for key, item in (("url", page_uri), ("title", page_title)) if item
        }
    if country:
        context["location"] = {"country": country}
    if session_id:
        context["sessionId"] = session_id

    return Message(
        workspace_id=workspace_id,
        source_id=source_id,
        door=DOOR,
        type="track",
        name=event_type,
        message_id=f"trackid:{source_id}:{scope}:{track_id}" if track_id else fallback_message_id,
        dedup_window=TRACK_ID_WINDOW if track_id else None,
        timestamp=timestamp,
        original_timestamp=event_time,
        received_at=received_at,
        timestamp_clamped=clamped,
        ip=event_ip,
        channel=channel,
        properties=properties,
        context=context,
        traits=traits,
        updates_profile=bool(traits),
        identifiers=identifiers,
        client_session_id=session_id,
        device=device_id,
        payload=raw,
    )


def events_of(payload: Any, *, route: str) -> list:
    """The track events of a request body, or ``IngestError`` if its envelope is wrong."""
    if route == SINGLE:
        if not isinstance(payload, dict):
            raise IngestError("invalid_body", "the body must be one TrackEvent JSON object")
        return [payload]
    if not isinstance(payload, list):
        raise IngestError("invalid_body", "the body must be a JSON list of TrackEvents")
    if not payload:
        raise IngestError("empty_bulk", "the list holds no track events")
    if len(payload) > MAX_BULK_EVENTS:
        raise IngestError(
            "bulk_too_large",
            f"a bulk request holds at most {MAX_BULK_EVENTS} track events, this one has "
            f"{len(payload)}",
        )
    return payload


def events_parse(
    events: list, *, check_sizes: bool, fallback_prefix: str, **normalize_kwargs: Any
) -> tuple[list[Message], list[Rejected], list[int]]:
    """Messages and rejections of a list of track events, and the rejected indexes."""
    messages: list[Message] = []
    rejected: list[Rejected] = []
    rejected_at: list[int] = []
    for index, raw in enumerate(events):
        try:
            if check_sizes and len(orjson.dumps(raw)) > MAX_EVENT_BYTES:
                raise IngestError(
                    "event_too_large",
                    f"a track event may be at most {MAX_EVENT_BYTES // 1024} KB",
                )
            messages.append(
                event_normalize(
                    raw, fallback_message_id=f"{fallback_prefix}-{index}", **normalize_kwargs
                )
            )
        except IngestError as error:
            rejected.append(Rejected(error=error, payload=raw))
            rejected_at.append(index)
    return messages, rejected, rejected_at


def inbox_parse(ctx: InboxContext) -> tuple[list[Message], list[Rejected]]:
    """Turn one stored request into messages and rejections."""
    route = ctx.meta.get("route", BULK)
    events = events_of(body_parse(ctx.body), route=route)
    messages, rejected, _ = events_parse(
        events,
        check_sizes=route == BULK,
        # Deterministic, so a re-run of the same inbox row deduplicates.
        fallback_prefix=f"fp-{ctx.inbox_id}",
        workspace_id=ctx.workspace_id,
        source_id=ctx.source_id,
        channel=channel_of_source_kind(ctx.source_kind),
        ip=ctx.ip,
        received_at=ctx.received_at,
        max_future_skew=ctx.max_future_skew,
    )
    return messages, rejected


def replay_requests(payloads: list[dict]) -> list[tuple[bytes, dict]]:
    """Inbox bodies and metas that carry failed track events through this door again."""
    return [
        (orjson.dumps(payloads[start : start + MAX_BULK_EVENTS]), {"route": BULK, "replay": True})
        for start in range(0, len(payloads), MAX_BULK_EVENTS)
    ]


def openapi_paths() -> dict:
    track_event = object_schema(
        {
            "DeviceId": STRING,
            "EventType": {"type": "string", "description": "Becomes the event's name."},
            "Value": STRING,
            "EventTime": {"type": "string", "format": "date-time"},
            "Scope": STRING,
            "TrackId": {
                "type": "string",
                "description": f"Trimmed to {TRACK_ID_LENGTH} characters; a repeat "
                "from the same source and Scope within 72 hours is skipped.",
            },
            "SessionId": STRING,
            "PageUri": STRING,
            "PageTitle": STRING,
            "RemoteAddress": {"type": "string", "description": "Overrides Epi-User-IP-Address."},
            "CountryCode": STRING,
            "User": object_schema({"Name": STRING, "Email": STRING, "Info": OBJECT}),
            "Payload": OBJECT,
        },
        required=("DeviceId", "EventType", "Value"),
    )
    epi_auth = {
        "name": "Authorization",
        "in": "header",
        "required": True,
        "description": "`epi-single <write key>`",
        "schema": STRING,
    }
    ip_header = {
        "name": "Epi-User-IP-Address",
        "in": "header",
        "description": "The visitor's IP for the request's events.",
        "schema": STRING,
    }
    accepted = {
        "description": "Accepted; invalid events of a bulk request are listed in `rejected`.",
        "content": {
            "application/json": {
                "schema": object_schema(
                    {"accepted": {"type": "integer"}, "rejected": {"type": "array", "items": {}}}
                )
            }
        },
    }
    return {
        "/api/v1.0/Track": {
            "post": operation(
                "optimizely_track",
                "Optimizely Tracking API: one TrackEvent",
                "Field names in PascalCase or camelCase.",
                parameters=[epi_auth, ip_header],
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": track_event}},
                },
                responses={"200": accepted, "400": ERROR, "401": ERROR},
            )
        },
        "/api/v1.0/TrackBulk": {
            "post": operation(
                "optimizely_track_bulk",
                "Optimizely Tracking API: up to 100 TrackEvents",
                "Each at most 256 KB; an event's RemoteAddress overrides the header IP.",
                parameters=[epi_auth, ip_header],
                requestBody={
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "array",
                                "maxItems": MAX_BULK_EVENTS,
                                "items": track_event,
                            }
                        }
                    },
                },
                responses={"200": accepted, "400": ERROR, "401": ERROR},
            )
        },
    }


SPEC = DoorSpec(
    key=DOOR, parse=inbox_parse, replay_requests=replay_requests, openapi_paths=openapi_paths
)
