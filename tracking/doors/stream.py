"""Sitecore's Stream API door (``/v1.2/browser/create.json``, ``/v1.2/event/create.json`` and
``/v1.2/events``, the JSON body form Sitecore's Engage SDK sends).

A Stream message becomes an event whose type and name are the Sitecore type (VIEW, IDENTITY,
ADD, …, or a custom upper-case name), so segment rules name Sitecore events as they name any
other. The browser id is the guest's browser identity; an IDENTITY's email and ``identifiers``
are known identities, so the pipeline stitches the browser's guest to the known guest. A
FORCE_CLOSE ends its session at once.

The answer carries the event's ref, so the ref is decided when the request is accepted (and
kept in the inbox row, so a re-run stores the same event once).
"""

from __future__ import annotations

import re
from typing import Any

from ..channels import ALIASES, CHANNELS, channel_normalise
from ..errors import IngestError
from ..messages import CURRENCY_RE, Message, contains_nul, email_normalize, text_value
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

DOOR = "stream"
VERSION = "1.2"
SOURCE_NAME = "Sitecore Stream API"
MAX_MESSAGE_BYTES = 64 * 1024
STANDARD_TYPES = (
    "VIEW",
    "IDENTITY",
    "ADD",
    "CONFIRM",
    "CHECKOUT",
    "PAYMENT",
    "CLEAR_CART",
    "SEARCH",
    "FORCE_CLOSE",
)
TYPE_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,49}$")
# A channel of the vocabulary (tracking.channels) or, of the same form, the business's own.
CHANNEL_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,31}$")
CALLBACK_RE = re.compile(r"^[A-Za-z_$][\w$]{0,63}(\.[A-Za-z_$][\w$]{0,63}){0,3}$")
# IDENTITY fields that describe the person; they update the guest's profile.
PERSON_FIELDS = {
    "email": "email",
    "firstname": "firstName",
    "lastname": "lastName",
    "title": "title",
    "gender": "gender",
    "dob": "dob",
    "mobile": "mobile",
    "phone": "phone",
    "street": "street",
    "city": "city",
    "state": "state",
    "country": "country",
    "postal_code": "postalCode",
}
# Fields that become columns, identities or context rather than properties.
ENVELOPE_FIELDS = {
    "type",
    "channel",
    "browser_id",
    "client_key",
    "identifiers",
    "currency",
    "language",
    "ext",
    "pos",
    *PERSON_FIELDS,
}


def callback_check(callback: str | None) -> str | None:
    """A JSONP callback name, refused unless it is a plain (dotted) JavaScript identifier."""
    if not callback:
        return None
    if not CALLBACK_RE.match(callback):
        raise IngestError(
            "invalid_callback", "callback must be a JavaScript function name", field="callback"
        )
    return callback


def message_from(raw: str | bytes | None) -> dict:
    """The Stream message of a request (the ``message`` parameter or the body)."""
    if raw in (None, "", b""):
        raise IngestError("missing_message", "message is required", field="message")
    if isinstance(raw, str):
        raw = raw.encode()
    if len(raw) > MAX_MESSAGE_BYTES:
        raise IngestError(
            "message_too_large",
            f"a message may be at most {MAX_MESSAGE_BYTES // 1024} KB",
            field="message",
        )
    message = body_parse(raw)
    if not isinstance(message, dict):
        raise IngestError("invalid_message", "message must be a JSON object", field="message")
    return message


def _identifiers(raw: dict) -> list[tuple[str, str]]:
    value = raw.get("identifiers")
    if value is None:
        return []
    if not isinstance(value, list):
        raise IngestError(
            "invalid_field",
            'identifiers must be a list of {"provider": …, "id": …}',
            field="identifiers",
        )
    pairs = []
    for index, item in enumerate(value[:20]):
        provider = text_value(item.get("provider"), 64) if isinstance(item, dict) else ""
        ident = text_value(item.get("id")) if isinstance(item, dict) else ""
        if not provider or not ident:
            raise IngestError(
                "invalid_identifier",
                f"identifiers[{index}] needs a provider and an id",
                field=f"identifiers[{index}]",
            )
        if provider.lower() == "email":
            email = email_normalize(ident)
            if not email:
                raise IngestError(
                    "invalid_identifier",
                    f"identifiers[{index}].id is not an email address",
                    field=f"identifiers[{index}].id",
                )
            pairs.append(("email", email))
        else:
            pairs.append((provider, ident))
    return pairs


def message_normalize(
    raw: Any,
    *,
    workspace_id: int,
    source_id: int,
    ref: str,
    ip: str | None,
    received_at: Any,
) -> Message:
    """Validate one Stream message and build the internal ``Message`` from it."""
    if not isinstance(raw, dict):
        raise IngestError("invalid_message", "message must be a JSON object", field="message")
    if contains_nul(raw):
        raise IngestError("invalid_character", "strings must not contain U+0000")
    event_type = text_field(raw, "type", required=True, limit=50)
    if not TYPE_RE.match(event_type):
        raise IngestError(
            "invalid_type",
            f"type must be one of {', '.join(STANDARD_TYPES)} or a custom upper-case name "
            f"(A-Z, 0-9, _), not {event_type[:50]!r}",
            field="type",
        )
    channel = text_field(raw, "channel", required=True, limit=32)
    if not CHANNEL_RE.match(channel):
        raise IngestError(
            "invalid_channel",
            f"channel must be upper case, such as {', '.join(CHANNELS[:7])}",
            field="channel",
        )
    channel = channel_normalise(channel)
    browser_id = text_field(raw, "browser_id", required=True)
    point_of_sale = text_field(raw, "pos")
    language = text_field(raw, "language", limit=16)
    page = text_field(raw, "page", limit=2048)
    currency = text_field(raw, "currency", limit=3)
    if currency and not CURRENCY_RE.match(currency):
        raise IngestError(
            "invalid_currency", "currency must be a three-letter ISO 4217 code", field="currency"
        )
    ext = raw.get("ext")
    if ext is not None and not isinstance(ext, dict):
        raise IngestError("invalid_field", "ext must be a JSON object", field="ext")

    identifiers = [("browser", browser_id)]
    traits: dict = {}
    if event_type == "IDENTITY":
        identifiers += _identifiers(raw)
        email = email_normalize(raw.get("email"))
        if email:
            identifiers.append(("email", email))
        for field_name, trait in PERSON_FIELDS.items():
            value = text_value(raw.get(field_name), 254)
            if value:
                traits[trait] = email if trait == "email" else value

    properties = {
        **(ext or {}),
        **{key: value for key, value in raw.items() if key not in ENVELOPE_FIELDS},
    }
    if point_of_sale:
        properties["pointOfSale"] = point_of_sale
    context: dict = {}
    if ip:
        context["ip"] = ip
    if language:
        context["locale"] = language
    if page:
        context["page"] = {"url": page}
    if point_of_sale:
        context["pointOfSale"] = point_of_sale

    return Message(
        workspace_id=workspace_id,
        source_id=source_id,
        door=DOOR,
        type=event_type,
        name=event_type,
        message_id=ref,
        timestamp=received_at,
        received_at=received_at,
        ip=ip,
        channel=channel,
        currency=currency.upper(),
        properties=properties,
        context=context,
        traits=traits,
        updates_profile=bool(traits),
        identifiers=list(dict.fromkeys(identifiers)),
        device=browser_id,
        page=page if event_type == "VIEW" else "",
        closes_session=event_type == "FORCE_CLOSE",
        payload=raw,
    )


def inbox_parse(ctx: InboxContext) -> tuple[list[Message], list[Rejected]]:
    """Turn one stored request (one Stream message) into its message, or its rejection."""
    return one_message_parse(
        ctx,
        lambda raw: message_normalize(
            raw,
            workspace_id=ctx.workspace_id,
            source_id=ctx.source_id,
            ref=ctx.ref,
            ip=ctx.ip,
            received_at=ctx.received_at,
        ),
    )


def openapi_paths() -> dict:
    message = object_schema(
        {
            "channel": {
                "type": "string",
                "example": "WEB",
                "pattern": CHANNEL_RE.pattern,
                "description": f"Upper case: one of {', '.join(CHANNELS)}, or the business's own "
                "name. Other doors' words are accepted and stored as these names: "
                + ", ".join(f"{word.upper()} as {name}" for word, name in ALIASES.items())
                + ".",
            },
            "type": {
                "type": "string",
                "description": "One of these or a custom upper-case name.",
                "example": "VIEW",
                "enum": list(STANDARD_TYPES),
            },
            "browser_id": STRING,
            "language": STRING,
            "currency": STRING,
            "page": STRING,
            "pos": STRING,
            "ext": OBJECT,
            "email": STRING,
            "firstname": STRING,
            "lastname": STRING,
            "identifiers": {
                "type": "array",
                "items": object_schema({"provider": STRING, "id": STRING}),
            },
        },
        required=("type", "channel", "browser_id"),
    )
    ok = {
        "description": "JSON, or JSONP (`callback(...);`) when `callback` is given.",
        "content": {
            "application/json": {
                "schema": object_schema(
                    {
                        "ref": STRING,
                        "status": {"type": "string", "example": "OK"},
                        "version": {"type": "string", "example": VERSION},
                        "client_key": STRING,
                        "customer_ref": STRING,
                        "session_ref": STRING,
                    }
                )
            },
            "application/javascript": {"schema": STRING},
        },
    }
    client_key = query("client_key", "The workspace's client key.", required=True)
    callback = query("callback", "A JavaScript function name: the answer is JSONP.")
    message_param = query(
        "message",
        "The Stream message as JSON (or send it as the POST body).",
        type="string",
    )
    event = operation(
        "stream_event_create",
        "Sitecore Stream API: one event",
        "VIEW, IDENTITY (stitches the browser's guest to the known guest), FORCE_CLOSE "
        "(closes the session), … Stored before the answer, which carries its refs.",
        parameters=[client_key, message_param, callback],
        responses={"200": ok, "400": ERROR, "401": ERROR},
    )
    events_body = object_schema(
        {**message["properties"], "client_key": STRING},
        required=("client_key", "type", "channel", "browser_id"),
    )
    return {
        "/v1.2/events": {
            "post": operation(
                "stream_events",
                "Sitecore Stream API: one event as a JSON body",
                "What Sitecore's Engage SDK sends (`pageView`, `identity`, `event`, from a "
                "browser or with `initServer`): the message of `event/create.json` with the "
                "workspace's `client_key` inside it. Stored before the answer, which carries "
                "its refs.",
                parameters=[],
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": events_body}},
                },
                responses={"200": ok, "400": ERROR, "401": ERROR},
            )
        },
        "/v1.2/browser/create.json": {
            "get": operation(
                "stream_browser_create",
                "Sitecore Stream API: a new browser",
                "Creates a browser ref and its visitor guest.",
                parameters=[client_key, callback],
                responses={"200": ok, "401": ERROR},
            )
        },
        "/v1.2/event/create.json": {
            "get": event,
            "post": {
                **event,
                "operationId": "stream_event_create_post",
                "requestBody": {"content": {"application/json": {"schema": message}}},
            },
        },
    }


SPEC = DoorSpec(
    key=DOOR, parse=inbox_parse, replay_requests=replay_one_each, openapi_paths=openapi_paths
)
