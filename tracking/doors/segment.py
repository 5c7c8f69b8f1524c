"""The Segment / Customer.io / RudderStack spec door (``/v1/...``), as a parser.

``request_check`` runs when a request arrives: it decides whether the request as a whole is
acceptable (and, for single-message routes, whether its one message is valid). ``inbox_parse``
runs in the worker and turns the stored request into ``Message`` objects plus the rejected
messages with their reasons.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import orjson

from ..channels import channel_of_source_kind
from ..errors import IngestError
from ..messages import (
    MAX_BATCH_BYTES,
    MAX_BATCH_MESSAGES,
    MAX_MESSAGE_BYTES,
    MAX_NESTING,
    BatchDefaults,
    Message,
    contains_nul,
    nesting_error,
    parse_timestamp,
    segment_message_normalize,
    too_deep,
)
from .base import DoorSpec, InboxContext, Rejected, body_parse

DOOR = "segment"
BATCH = "batch"
# The route a request came in by: its message type, or "batch".
ROUTES = {
    "track": "track",
    "t": "track",
    "identify": "identify",
    "i": "identify",
    "page": "page",
    "p": "page",
    "screen": "screen",
    "s": "screen",
    "group": "group",
    "g": "group",
    "alias": "alias",
    "a": "alias",
    "batch": BATCH,
    "b": BATCH,
    "import": BATCH,
}


def may_hold_nul(body: bytes) -> bool:
    """Whether a JSON body may hold U+0000: JSON writes it only as the escape ``\\u0000``."""
    return b"\\u0000" in body


def may_nest_too_deep(body: bytes) -> bool:
    """Whether a JSON body may nest deeper than ``MAX_NESTING``: no deeper than it has brackets."""
    return body.count(b"[") + body.count(b"{") > MAX_NESTING


def body_limit(route: str) -> int:
    return MAX_BATCH_BYTES if route == BATCH else MAX_MESSAGE_BYTES


def request_check(
    payload: Any, *, route: str, body: bytes | None = None, **normalize_kwargs: Any
) -> None:
    """Refuse a request that cannot be accepted as a whole (raises ``IngestError``).

    A batch is accepted when its envelope is sound; its messages are validated one by one
    in the worker, so one bad message never costs the others. A single-message request is
    validated here so the client hears about its mistake at once.

    Given the ``body`` the payload was parsed from, what it rules out is not looked for in the
    payload (as the worker does; see ``may_hold_nul`` and ``may_nest_too_deep``).
    """
    check_nul = body is None or may_hold_nul(body)
    check_shape = body is None or may_nest_too_deep(body)
    if not isinstance(payload, dict):
        raise IngestError("invalid_body", "the body must be a JSON object")
    if route == BATCH:
        messages = payload.get("batch")
        if not isinstance(messages, list):
            raise IngestError("invalid_batch", "batch must be a list of messages", field="batch")
        if len(messages) > MAX_BATCH_MESSAGES:
            raise IngestError(
                "batch_too_large",
                f"a batch holds at most {MAX_BATCH_MESSAGES} messages, this one has "
                f"{len(messages)}",
                field="batch",
            )
        _defaults_parse(payload, received_at=None)
        envelope = [payload.get("context"), payload.get("integrations")]
        if check_shape and too_deep(envelope):
            raise nesting_error()
        if check_nul and contains_nul(envelope):
            raise IngestError("invalid_character", "strings must not contain U+0000")
        return
    if check_shape and too_deep(payload):
        raise nesting_error()
    if check_nul and contains_nul(payload):
        raise IngestError("invalid_character", "strings must not contain U+0000")
    segment_message_normalize(
        payload,
        forced_type=route,
        fallback_message_id="check",
        defaults=BatchDefaults(received_at=normalize_kwargs.pop("received_at")),
        **normalize_kwargs,
    )


def _defaults_parse(payload: dict, *, received_at: Any) -> tuple[dict, dict | None, Any]:
    context = payload.get("context")
    if context is not None and not isinstance(context, dict):
        raise IngestError("invalid_field", "context must be a JSON object", field="context")
    integrations = payload.get("integrations")
    if integrations is not None and not isinstance(integrations, dict):
        raise IngestError(
            "invalid_field", "integrations must be a JSON object", field="integrations"
        )
    sent_at = parse_timestamp(payload.get("sentAt"), "sentAt")
    return context or {}, integrations, sent_at


def inbox_parse(ctx: InboxContext) -> tuple[list[Message], list[Rejected]]:
    """Turn one stored request into messages and rejections."""
    body = ctx.body
    route = ctx.meta.get("route", BATCH)
    payload = body_parse(body)
    defaults = BatchDefaults(
        received_at=ctx.received_at, ip=ctx.ip, channel=channel_of_source_kind(ctx.source_kind)
    )
    if route == BATCH:
        items = payload.get("batch") or []
        defaults.context, defaults.integrations, defaults.sent_at = _defaults_parse(
            payload, received_at=ctx.received_at
        )
        forced_type = None
        # Sizes are checked one by one only when the whole body could hide an oversize one.
        check_sizes = len(body) > MAX_MESSAGE_BYTES
    else:
        items = [payload]
        forced_type = route
        check_sizes = False
    check_nul = may_hold_nul(body)
    historic = bool(ctx.meta.get("historic"))
    # Likewise nesting: only a body with that many brackets in all can hold a too deep message.
    check_shape = check_sizes or may_nest_too_deep(body)

    messages: list[Message] = []
    rejected: list[Rejected] = []
    for index, raw in enumerate(items):
        try:
            _message_check(
                raw, check_sizes=check_sizes, check_nul=check_nul, check_shape=check_shape
            )
            messages.append(
                segment_message_normalize(
                    raw,
                    workspace_id=ctx.workspace_id,
                    source_id=ctx.source_id,
                    door=DOOR,
                    defaults=defaults,
                    forced_type=forced_type,
                    # Deterministic, so a re-run of the same inbox row deduplicates.
                    fallback_message_id=f"fp-{ctx.inbox_id}-{index}",
                    max_future_skew=ctx.max_future_skew,
                    # A replayed line of an imported export keeps its export's times.
                    historic=historic,
                )
            )
        except IngestError as error:
            rejected.append(Rejected(error=error, payload=raw))
    return messages, rejected


def _message_check(raw: Any, *, check_sizes: bool, check_nul: bool, check_shape: bool) -> None:
    """The checks of one message of a body that the body as a whole could not settle: its
    size, its nesting, U+0000. Raises ``IngestError``."""
    if isinstance(raw, dict):
        # analytics.js sends the key in the body; a failed event must not keep it.
        raw.pop("writeKey", None)
    if check_shape:
        try:
            size = len(orjson.dumps(raw))
        except orjson.JSONEncodeError:
            raise nesting_error() from None
        if check_sizes and size > MAX_MESSAGE_BYTES:
            raise IngestError(
                "message_too_large",
                f"a message may be at most {MAX_MESSAGE_BYTES // 1024} KB",
            )
    if check_nul and contains_nul(raw):
        raise IngestError("invalid_character", "strings must not contain U+0000")


def exported_message_parse(
    line: bytes,
    raw: Any,
    *,
    workspace_id: int,
    source_id: int,
    source_kind: str,
    fallback_message_id: str,
    imported_at: datetime,
    max_future_skew: timedelta,
) -> Message:
    """One message of an export file (``manage.py import_events``): ``line`` as read, ``raw``
    its parsed JSON. The checks and the normalisation of a batch's message, with the times the
    export recorded (``messages.historic_times``) instead of the time of the import.
    Raises ``IngestError``."""
    check_sizes = len(line) > MAX_MESSAGE_BYTES
    _message_check(
        raw,
        check_sizes=check_sizes,
        check_nul=may_hold_nul(line),
        check_shape=check_sizes or may_nest_too_deep(line),
    )
    return segment_message_normalize(
        raw,
        workspace_id=workspace_id,
        source_id=source_id,
        door=DOOR,
        defaults=BatchDefaults(
            received_at=imported_at, channel=channel_of_source_kind(source_kind)
        ),
        forced_type=None,
        fallback_message_id=fallback_message_id,
        max_future_skew=max_future_skew,
        historic=True,
    )


def replay_requests(payloads: list[dict]) -> list[tuple[bytes, dict]]:
    """Inbox bodies and metas that carry failed messages through this door again: one batch."""
    return [(orjson.dumps({"batch": payloads}), {"route": "batch", "replay": True})]


SPEC = DoorSpec(key=DOOR, parse=inbox_parse, replay_requests=replay_requests)
