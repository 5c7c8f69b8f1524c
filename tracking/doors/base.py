"""What every front door shares: the contract between a door and the pipeline, and the helpers
more than one door uses.

A door is one module that turns a stored request (an ``InboxContext``) into internal
``Message`` objects and the messages it refused (``Rejected``), and that knows how to send
failed messages through itself again. Its ``DoorSpec`` says so to the pipeline, the replay and
the OpenAPI description (see the registry in ``tracking.doors``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from ..errors import IngestError
from ..messages import MAX_ID_LENGTH, Message


@dataclass(slots=True)
class Rejected:
    """A message refused by validation, kept with its reason."""

    error: IngestError
    payload: Any


Parsed = tuple[list[Message], list[Rejected]]


@dataclass(frozen=True, slots=True)
class InboxContext:
    """One stored request, as the worker hands it to its door's parser."""

    body: bytes
    meta: dict
    inbox_id: int
    workspace_id: int
    source_id: int
    source_kind: str
    ip: str | None
    received_at: datetime
    max_future_skew: timedelta

    @property
    def ref(self) -> str:
        """The ref decided when the request was accepted, else one derived from the inbox row:
        deterministic either way, so a re-run of the row stores its message once."""
        return self.meta.get("ref") or f"fp-{self.inbox_id}"


@dataclass(frozen=True, slots=True)
class DoorSpec:
    """A door as the rest of Footprint sees it."""

    # The ``models.Door`` value stored with its inbox requests, events and failed events.
    key: str
    # The stored request to messages and rejections; ``IngestError`` if it is unreadable whole.
    parse: Callable[[InboxContext], Parsed]
    # Inbox bodies and metas that carry failed messages' payloads through the door again.
    replay_requests: Callable[[list[dict]], list[tuple[bytes, dict]]]
    # The door's paths in the OpenAPI schema; None leaves the door out of it.
    openapi_paths: Callable[[], dict] | None = None


def body_parse(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise IngestError("invalid_json", f"the body is not valid JSON: {exc}") from None


def text_field(raw: dict, key: str, *, required: bool = False, limit: int = MAX_ID_LENGTH) -> str:
    """A short text field of a message (a number is taken as its text), stripped."""
    value = raw.get(key)
    if value is None or value == "":
        if required:
            raise IngestError(f"missing_{key}", f"{key} is required", field=key)
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise IngestError("invalid_field", f"{key} must be a string", field=key)
    text = str(value).strip()
    if len(text) > limit:
        raise IngestError("invalid_field", f"{key} is longer than {limit} characters", field=key)
    return text


def one_message_parse(ctx: InboxContext, normalize: Callable[[Any], Message]) -> Parsed:
    """The parse of a door whose stored request is one message: it, or its rejection."""
    raw = body_parse(ctx.body)
    try:
        message = normalize(raw)
    except IngestError as error:
        return [], [Rejected(error=error, payload=raw)]
    return [message], []


def replay_one_each(payloads: list[dict]) -> list[tuple[bytes, dict]]:
    """Replay for a door whose stored request is one message: one request per payload."""
    return [(orjson.dumps(payload), {"replay": True}) for payload in payloads]
