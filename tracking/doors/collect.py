"""The Event Track API door (``/collect``, seed 001).

A hit becomes a ``track`` event named by its action (``ea``), with its category (``ec``) in the
properties, so segment rules use actions as event names. ``uid`` is the user id (a known
identity), ``aid`` the device's advertising id, ``sid`` the client's session.

The answer carries the stored event's id, session and guest, so the hit is written to the inbox
and processed at once (see ``services.inbox_accept_processed``); its id is decided when it is
accepted, so a re-run stores it once.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import orjson

from ..channels import channel_normalise, channel_of_source_kind
from ..errors import IngestError
from ..messages import MAX_NAME_LENGTH, Message, contains_nul, reserved_properties, text_value
from .base import (
    DoorSpec,
    InboxContext,
    Rejected,
    body_parse,
    one_message_parse,
    replay_one_each,
    text_field,
)
from .schema import ERROR, OBJECT, STRING, object_schema, operation, query

DOOR = "collect"
MAX_BODY_BYTES = 32 * 1024
RESP_TYPES = ("javascript", "json", "pixel", "redirect")
# Request parameters that address the door rather than describe the event.
ADDRESS_FIELDS = ("portal_id", "prop_id", "resp_type", "redirect_url")
EVENT_FIELDS = ("ea", "ec", "sid", "aid", "uid", "context", "extra", "dims", "items")
JSON_FIELDS = {"context": dict, "extra": dict, "dims": dict, "items": list}
CALLBACK = "_event_callback_data"
TRANSPARENT_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NOT_FOUND = {"message": "404 not found"}
METHOD_NOT_ALLOWED = {"message": "use GET or POST"}


class NotFound(IngestError):
    """Unknown portal or property: answered 404 ``{"message": "404 not found"}``."""

    def __init__(self) -> None:
        super().__init__("not_found", NOT_FOUND["message"], status=404)


def address_parse(params: Any) -> tuple[int, int, str, str]:
    """``portal_id``, ``prop_id``, ``resp_type`` and ``redirect_url`` of the query string."""
    try:
        portal_id = int(params.get("portal_id", ""))
        prop_id = int(params.get("prop_id", ""))
    except ValueError:
        raise NotFound from None
    resp_type = (params.get("resp_type") or "javascript").lower()
    if resp_type not in RESP_TYPES:
        raise IngestError(
            "invalid_resp_type",
            f"resp_type must be one of {', '.join(RESP_TYPES)}",
            field="resp_type",
        )
    return portal_id, prop_id, resp_type, params.get("redirect_url", "")


def hit_from(params: Any, body: bytes) -> dict:
    """The event fields of a hit: the query's, overridden by a JSON body's."""
    hit: dict = {key: params[key] for key in EVENT_FIELDS if key in params}
    for key, kind in JSON_FIELDS.items():
        if isinstance(hit.get(key), str):
            try:
                hit[key] = orjson.loads(hit[key])
            except orjson.JSONDecodeError:
                raise IngestError(
                    "invalid_field", f"{key} must be JSON ({kind.__name__})", field=key
                ) from None
    if body.strip():
        posted = body_parse(body)
        if not isinstance(posted, dict):
            raise IngestError("invalid_body", "the body must be a JSON object")
        hit.update({key: value for key, value in posted.items() if key not in ADDRESS_FIELDS})
    return hit


def redirect_check(url: str, *, action: str, allowed_hosts: list[str]) -> str:
    """The URL to redirect a click to, refused unless it goes to a host the source allows."""
    if action != "click":
        raise IngestError(
            "redirect_not_allowed", "resp_type=redirect is only for ea=click", field="resp_type"
        )
    if not url:
        raise IngestError(
            "missing_redirect_url", "resp_type=redirect needs a redirect_url", field="redirect_url"
        )
    parts = urlsplit(url)
    suspicious = "\\" in url or any(ord(c) < 33 for c in url)
    host = (parts.hostname or "").lower()
    allowed = {str(h).lower() for h in allowed_hosts}
    if suspicious or parts.scheme not in ("http", "https") or not host or host not in allowed:
        raise IngestError(
            "redirect_host_not_allowed",
            f"redirect_url must be an http(s) URL on a host this source allows; "
            f"{host or 'its host'!s} is not one of them (see the source's allowed redirect hosts)",
            field="redirect_url",
        )
    return url


def hit_normalize(
    hit: Any,
    *,
    workspace_id: int,
    source_id: int,
    channel: str,
    ref: str,
    ip: str | None,
    received_at: datetime,
) -> Message:
    """Validate one hit and build the internal ``Message`` from it."""
    if not isinstance(hit, dict):
        raise IngestError("invalid_body", "the hit must be a JSON object")
    if contains_nul(hit):
        raise IngestError("invalid_character", "strings must not contain U+0000")
    action = text_field(hit, "ea", limit=MAX_NAME_LENGTH)
    if not action:
        raise IngestError("missing_ea", "ea (the event action) is required", field="ea")
    category = text_field(hit, "ec", limit=MAX_NAME_LENGTH)
    if not category:
        raise IngestError("missing_ec", "ec (the event category) is required", field="ec")
    session_id = text_field(hit, "sid")
    device_id = text_field(hit, "aid")
    user_id = text_field(hit, "uid")
    if not user_id and not device_id:
        raise IngestError("missing_uid", "uid or aid is required", field="uid")
    for key, kind in JSON_FIELDS.items():
        if hit.get(key) is not None and not isinstance(hit[key], kind):
            noun = "a JSON object" if kind is dict else "a JSON list"
            raise IngestError("invalid_field", f"{key} must be {noun}", field=key)

    properties = {**(hit.get("extra") or {}), "category": category}
    if hit.get("dims"):
        properties["dims"] = hit["dims"]
    if hit.get("items"):
        properties["items"] = hit["items"]
    revenue, currency, value = reserved_properties(properties)
    context = dict(hit.get("context") or {})
    if ip and not context.get("ip"):
        context["ip"] = ip
    if session_id:
        context["sessionId"] = session_id
    identifiers = []
    if user_id:
        identifiers.append(("user_id", user_id))
    if device_id:
        identifiers.append(("device_id", device_id))

    return Message(
        workspace_id=workspace_id,
        source_id=source_id,
        door=DOOR,
        type="track",
        name=action,
        message_id=ref,
        timestamp=received_at,
        received_at=received_at,
        user_id=user_id,
        ip=ip,
        channel=channel_normalise(text_value(context.get("channel"), 32)) or channel,
        properties=properties,
        context=context,
        revenue=revenue,
        currency=currency,
        value=value,
        identifiers=identifiers,
        client_session_id=session_id,
        device=device_id,
        payload=hit,
    )


def answer_of(*, ref: str, hit: dict, guest_ref: str | None, session_ref: str | None) -> dict:
    """The ids a hit's answer carries, in the manner of seed 001's example."""
    return {
        "type": "event",
        "event_id": ref,
        "session_id": session_ref,
        "sid": text_value(hit.get("sid")) or None,
        "client_id": guest_ref,
        "uid": text_value(hit.get("uid")) or None,
        "aid": text_value(hit.get("aid")) or None,
    }


def inbox_parse(ctx: InboxContext) -> tuple[list[Message], list[Rejected]]:
    """Turn one stored hit into its message, or its rejection."""
    return one_message_parse(
        ctx,
        lambda hit: hit_normalize(
            hit,
            workspace_id=ctx.workspace_id,
            source_id=ctx.source_id,
            channel=channel_of_source_kind(ctx.source_kind),
            ref=ctx.ref,
            ip=ctx.ip,
            received_at=ctx.received_at,
        ),
    )


def openapi_paths() -> dict:
    hit = object_schema(
        {
            "ea": {"type": "string", "description": "Event action; the event's name."},
            "ec": {"type": "string", "description": "Event category."},
            "sid": STRING,
            "aid": STRING,
            "uid": STRING,
            "context": OBJECT,
            "extra": OBJECT,
            "dims": OBJECT,
            "items": {"type": "array", "items": {}},
        },
        required=("ea", "ec"),
    )
    parameters = [
        query("portal_id", "The workspace's portal id.", required=True, type="integer"),
        query("prop_id", "The source's property id.", required=True, type="integer"),
        query("resp_type", "The answer's form.", type="string", enum=list(RESP_TYPES)),
        query("redirect_url", "For resp_type=redirect with ea=click; an allowed host only."),
        *(
            query(name, "An event field (JSON for context, extra, dims, items).")
            for name in EVENT_FIELDS
        ),
    ]
    responses = {
        "200": {
            "description": "The event's ids: `_event_callback_data({...});` (javascript), the "
            "same object (json) or a 1x1 GIF (pixel).",
            "content": {
                "application/javascript": {"schema": STRING},
                "application/json": {
                    "schema": object_schema(
                        {
                            "type": STRING,
                            "event_id": STRING,
                            "session_id": STRING,
                            "client_id": STRING,
                            "sid": STRING,
                            "uid": STRING,
                            "aid": STRING,
                        }
                    )
                },
                "image/gif": {"schema": {"type": "string", "format": "binary"}},
            },
        },
        "302": {"description": "resp_type=redirect: to redirect_url."},
        "400": ERROR,
        "404": {
            "description": 'Unknown portal or property: `{"message": "404 not found"}`.',
            "content": {"application/json": {"schema": object_schema({"message": STRING})}},
        },
    }
    return {
        "/collect": {
            method: operation(
                f"collect_{method}",
                "Event Track API: one hit",
                "Stored before the answer, which carries the event's, session's and guest's ids.",
                parameters=parameters,
                responses=responses,
                **(
                    {"requestBody": {"content": {"application/json": {"schema": hit}}}}
                    if method == "post"
                    else {}
                ),
            )
            for method in ("get", "post")
        },
    }


SPEC = DoorSpec(
    key=DOOR, parse=inbox_parse, replay_requests=replay_one_each, openapi_paths=openapi_paths
)
