"""The internal message every door produces, and the Segment-spec rules that build it.

A door parses its wire format into ``Message`` objects; the pipeline (``tracking.services``)
only ever sees ``Message``. Validation raises ``IngestError`` naming the field at fault.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

import orjson

from .channels import channel_normalise
from .errors import IngestError

MESSAGE_TYPES = frozenset({"track", "identify", "page", "screen", "group", "alias"})
PAGE_VIEW_TYPES = frozenset({"page", "screen", "VIEW"})
MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_BATCH_MESSAGES = 2500
MAX_ID_LENGTH = 255
# orjson writes at most this many levels of arrays and objects.
MAX_NESTING = 254
MAX_NAME_LENGTH = 255
# Largest revenue the typed column holds (18 digits, 4 after the point).
MAX_REVENUE = Decimal("99999999999999.9999")
CURRENCY_RE = re.compile(r"^[A-Za-z]{3}$")


@dataclass(slots=True)
class Message:
    """One normalised event, ready for dedup, identity resolution and storage."""

    workspace_id: int
    source_id: int
    door: str
    type: str
    message_id: str
    timestamp: datetime
    received_at: datetime
    name: str = ""
    user_id: str = ""
    anonymous_id: str = ""
    group_id: str = ""
    previous_id: str = ""
    properties: dict = field(default_factory=dict)
    context: dict = field(default_factory=dict)
    traits: dict = field(default_factory=dict)
    integrations: dict | None = None
    original_timestamp: datetime | None = None
    sent_at: datetime | None = None
    timestamp_clamped: bool = False
    ip: str | None = None
    channel: str = ""
    revenue: Decimal | None = None
    currency: str = ""
    value: float | None = None
    # (kind, value) pairs that identify the guest.
    identifiers: list[tuple[str, str]] = field(default_factory=list)
    # The session id the client gave (context.sessionId, sid, SessionId), if any.
    client_session_id: str = ""
    # The ref a new session made for this message takes: one an answer already gave out
    # (``/v2/callFlows``' sessionRef). A message that joins an existing session ignores it.
    session_ref: str = ""
    # The browser or device the event came from, when the door knows it.
    device: str = ""
    # The page or screen a page view was of (its URL, path or name).
    page: str = ""
    # A Sitecore FORCE_CLOSE: the event's session ends with it.
    closes_session: bool = False
    # The traits describe the person (identify, IDENTITY, an Optimizely User): they update the
    # guest's profile rather than only being kept on the event.
    updates_profile: bool = False
    # How long a repeat of ``message_id`` is dropped, when the door decides rather than the
    # source (Optimizely's TrackID: 72 hours).
    dedup_window: timedelta | None = None
    # The inbox request the message came in (its dedup key remembers it).
    inbox_id: int | None = None
    # The event as its door received it, when that is not the Segment-spec message itself.
    payload: Any = None
    # Set by identity resolution and sessionisation.
    guest_id: int | None = None
    session_id: int | None = None

    @property
    def is_page_view(self) -> bool:
        return self.type in PAGE_VIEW_TYPES


@dataclass(slots=True)
class BatchDefaults:
    """What a request carries for all of its messages."""

    received_at: datetime
    ip: str | None = None
    sent_at: datetime | None = None
    context: dict = field(default_factory=dict)
    integrations: dict | None = None
    channel: str = ""


def parse_timestamp(value: Any, field_name: str) -> datetime | None:
    """An ISO-8601 date-time (a trailing Z and a missing offset both mean UTC)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise IngestError(
            "invalid_timestamp", f"{field_name} must be an ISO-8601 string", field=field_name
        )
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise IngestError(
            "invalid_timestamp",
            f"{field_name} is not an ISO-8601 date-time: {value[:64]!r}",
            field=field_name,
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        # A time that is not a representable date in UTC could be stored but never read back.
        return parsed.astimezone(UTC)
    except OverflowError:
        raise IngestError(
            "invalid_timestamp", f"{field_name} is out of range: {value[:64]!r}", field=field_name
        ) from None


def valid_ip(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return _ip_normalize(value)


@lru_cache(maxsize=8192)
def _ip_normalize(value: str) -> str | None:
    # Visitors send the same address again and again; parsing one is the slow part.
    value = value.strip()
    try:
        socket.inet_pton(socket.AF_INET, value)
    except OSError:
        pass
    else:
        return value  # dotted IPv4 (inet_pton takes no other form): already as written
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def ip_anonymize(value: str | None) -> str | None:
    """The address with its host part zeroed: IPv4's last octet, IPv6's last 80 bits.

    Anything that is not an address is dropped rather than kept as it came.
    """
    if not value:
        return None
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


def _id_field(message: dict, key: str) -> str:
    value = message.get(key)
    if value is None or value == "":
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise IngestError("invalid_id", f"{key} must be a string", field=key)
    text = str(value)
    if len(text) > MAX_ID_LENGTH:
        raise IngestError(
            "invalid_id", f"{key} is longer than {MAX_ID_LENGTH} characters", field=key
        )
    return text


def _object_field(message: dict, key: str) -> dict:
    value = message.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise IngestError("invalid_field", f"{key} must be a JSON object", field=key)
    return value


def _name_field(message: dict, key: str, *, required: bool) -> str:
    value = message.get(key)
    if value is None or value == "":
        if required:
            raise IngestError(f"missing_{key}", f"{key} is required", field=key)
        return ""
    if not isinstance(value, str):
        raise IngestError("invalid_field", f"{key} must be a string", field=key)
    if required and not value.strip():
        raise IngestError(f"missing_{key}", f"{key} must not be blank", field=key)
    if len(value) > MAX_NAME_LENGTH:
        raise IngestError(
            "invalid_field", f"{key} is longer than {MAX_NAME_LENGTH} characters", field=key
        )
    return value


def reserved_properties(properties: dict) -> tuple[Decimal | None, str, float | None]:
    """The typed ``revenue``, ``currency`` and ``value`` of a properties object."""
    revenue = None
    raw_revenue = properties.get("revenue")
    if raw_revenue is not None:
        if isinstance(raw_revenue, bool) or not isinstance(raw_revenue, int | float | str):
            raise IngestError(
                "invalid_revenue", "properties.revenue must be a number", field="properties.revenue"
            )
        try:
            revenue = Decimal(str(raw_revenue)).quantize(Decimal("0.0001"))
        except (InvalidOperation, ValueError):
            raise IngestError(
                "invalid_revenue",
                f"properties.revenue is not a decimal number: {str(raw_revenue)[:32]!r}",
                field="properties.revenue",
            ) from None
        if not revenue.is_finite() or abs(revenue) > MAX_REVENUE:
            raise IngestError(
                "invalid_revenue",
                f"properties.revenue must be finite and at most {MAX_REVENUE}",
                field="properties.revenue",
            )

    currency = ""
    raw_currency = properties.get("currency")
    if raw_currency not in (None, ""):
        if not isinstance(raw_currency, str) or not CURRENCY_RE.match(raw_currency):
            raise IngestError(
                "invalid_currency",
                "properties.currency must be a three-letter ISO 4217 code",
                field="properties.currency",
            )
        currency = raw_currency.upper()
    elif revenue is not None:
        currency = "USD"

    value = None
    raw_value = properties.get("value")
    if raw_value is not None:
        if isinstance(raw_value, bool) or not isinstance(raw_value, int | float):
            raise IngestError(
                "invalid_value", "properties.value must be a number", field="properties.value"
            )
        value = float(raw_value)
        if value != value or value in (float("inf"), float("-inf")):
            raise IngestError(
                "invalid_value", "properties.value must be finite", field="properties.value"
            )
    return revenue, currency, value


def corrected_timestamp(
    *,
    original: datetime | None,
    sent_at: datetime | None,
    received_at: datetime,
    max_future_skew: timedelta,
) -> tuple[datetime, bool]:
    """Correct the device clock: timestamp = receivedAt - (sentAt - originalTimestamp).

    Returns the timestamp and whether it had to be clamped to receivedAt because it lay more
    than ``max_future_skew`` in the future.
    """
    if original is None:
        return received_at, False
    try:
        timestamp = received_at - (sent_at - original) if sent_at is not None else original
    except OverflowError:
        raise IngestError(
            "invalid_timestamp",
            "sentAt and timestamp are too far apart to correct the clock with",
            field="sentAt",
        ) from None
    if timestamp > received_at + max_future_skew:
        return received_at, True
    return timestamp, False


def historic_times(
    raw: dict, *, now: datetime, max_future_skew: timedelta
) -> tuple[datetime, datetime | None, datetime | None, datetime, bool]:
    """The times of a message read back from an export, as ``(timestamp, originalTimestamp,
    sentAt, receivedAt, clamped)``.

    An export (Segment's, RudderStack's, Footprint's own) writes each message as it was stored:
    ``timestamp`` is already the clock-corrected time and ``receivedAt`` the time it first
    arrived. Correcting again against the time of the import would make a year-old event look
    a moment old, so ``timestamp`` is kept as it is. Only a message with nothing but its
    ``originalTimestamp`` is corrected, with its own ``sentAt`` and ``receivedAt`` as the live
    door would have. Without ``receivedAt`` the event is taken to have been received when it
    happened (never later than now). A message with no time at all is refused: stored, it
    would look like something that happened during the import. The future-skew rule is the
    live one, against the message's own ``receivedAt``.
    """
    given = parse_timestamp(raw.get("timestamp"), "timestamp")
    original = parse_timestamp(raw.get("originalTimestamp"), "originalTimestamp")
    sent_at = parse_timestamp(raw.get("sentAt"), "sentAt")
    received_at = parse_timestamp(raw.get("receivedAt"), "receivedAt")
    if received_at is not None and received_at > now + max_future_skew:
        raise IngestError(
            "invalid_timestamp",
            f"receivedAt lies in the future: {raw.get('receivedAt')[:64]!r}",
            field="receivedAt",
        )
    if given is None and original is not None and received_at is not None:
        timestamp, clamped = corrected_timestamp(
            original=original,
            sent_at=sent_at,
            received_at=received_at,
            max_future_skew=max_future_skew,
        )
        return timestamp, original, sent_at, received_at, clamped
    timestamp = given or original or received_at
    if timestamp is None:
        raise IngestError(
            "missing_timestamp",
            "an imported message needs a timestamp (timestamp, originalTimestamp or receivedAt)",
            field="timestamp",
        )
    if received_at is None:
        received_at = min(timestamp, now)
    clamped = timestamp > received_at + max_future_skew
    if clamped:
        timestamp = received_at
    return timestamp, original or given, sent_at, received_at, clamped


def segment_message_normalize(
    raw: Any,
    *,
    workspace_id: int,
    source_id: int,
    door: str,
    defaults: BatchDefaults,
    forced_type: str | None,
    fallback_message_id: str,
    max_future_skew: timedelta,
    historic: bool = False,
) -> Message:
    """Validate one Segment-spec message and build the internal ``Message`` from it.

    ``historic`` is for a message read back from an export (``manage.py import_events``): its
    times are the ones the export recorded (``historic_times``), and ``defaults.received_at``
    is only the moment of the import.
    """
    if not isinstance(raw, dict):
        raise IngestError("invalid_message", "each message must be a JSON object")

    message_type = forced_type or raw.get("type")
    if not message_type:
        raise IngestError("missing_type", "type is required", field="type")
    if not isinstance(message_type, str) or message_type not in MESSAGE_TYPES:
        allowed = ", ".join(sorted(MESSAGE_TYPES))
        raise IngestError(
            "invalid_type",
            f"type must be one of {allowed}, not {str(message_type)[:32]!r}",
            field="type",
        )

    user_id = _id_field(raw, "userId")
    anonymous_id = _id_field(raw, "anonymousId")
    if not user_id and not anonymous_id:
        raise IngestError(
            "no_user_anon_id", "every message needs a userId or an anonymousId", field="userId"
        )

    name = ""
    group_id = previous_id = ""
    if message_type == "track":
        name = _name_field(raw, "event", required=True)
    elif message_type in ("page", "screen"):
        name = _name_field(raw, "name", required=False)
    elif message_type == "group":
        group_id = _id_field(raw, "groupId")
        if not group_id:
            raise IngestError("missing_groupId", "group needs a groupId", field="groupId")
    elif message_type == "alias":
        previous_id = _id_field(raw, "previousId")
        if not previous_id:
            raise IngestError("missing_previousId", "alias needs a previousId", field="previousId")

    properties = _object_field(raw, "properties")
    traits = _object_field(raw, "traits")
    context = _object_field(raw, "context")
    if defaults.context:
        context = {**defaults.context, **context}
    if message_type == "identify" and not traits and isinstance(context.get("traits"), dict):
        # RudderStack's SDKs send an identify's traits in context.traits only.
        traits = context["traits"]
    integrations = raw.get("integrations")
    if integrations is not None and not isinstance(integrations, dict):
        raise IngestError(
            "invalid_field", "integrations must be a JSON object", field="integrations"
        )
    if defaults.integrations is not None:
        integrations = {**defaults.integrations, **(integrations or {})}

    message_id = _id_field(raw, "messageId") or fallback_message_id
    if historic:
        timestamp, original, sent_at, received_at, clamped = historic_times(
            raw, now=defaults.received_at, max_future_skew=max_future_skew
        )
    else:
        original = parse_timestamp(raw.get("timestamp"), "timestamp") or parse_timestamp(
            raw.get("originalTimestamp"), "originalTimestamp"
        )
        sent_at = parse_timestamp(raw.get("sentAt"), "sentAt") or defaults.sent_at
        received_at = defaults.received_at
        timestamp, clamped = corrected_timestamp(
            original=original,
            sent_at=sent_at,
            received_at=received_at,
            max_future_skew=max_future_skew,
        )

    client_ip = context.get("ip")
    if client_ip in (None, "") and defaults.ip:
        context = {**context, "ip": defaults.ip}
    ip = valid_ip(context.get("ip"))

    revenue, currency, value = reserved_properties(properties)

    channel = raw.get("channel") or context.get("channel") or defaults.channel
    if not isinstance(channel, str):
        raise IngestError("invalid_field", "channel must be a string", field="channel")
    channel = channel_normalise(channel) or defaults.channel

    identifiers = []
    if user_id:
        identifiers.append(("user_id", user_id))
    if anonymous_id:
        identifiers.append(("anonymous_id", anonymous_id))
    if message_type == "identify":
        email = email_normalize(traits.get("email"))
        if email:
            identifiers.append(("email", email))
    identifiers += external_ids(context.get("externalIds"))

    return Message(
        workspace_id=workspace_id,
        source_id=source_id,
        door=door,
        type=message_type,
        name=name,
        message_id=message_id,
        user_id=user_id,
        anonymous_id=anonymous_id,
        group_id=group_id,
        previous_id=previous_id,
        properties=properties,
        context=context,
        traits=traits,
        integrations=integrations,
        timestamp=timestamp,
        original_timestamp=original,
        sent_at=sent_at,
        received_at=received_at,
        timestamp_clamped=clamped,
        ip=ip,
        channel=channel,
        revenue=revenue,
        currency=currency,
        value=value,
        identifiers=identifiers,
        client_session_id=_session_id(context),
        updates_profile=message_type == "identify",
        device=text_value(
            context.get("device", {}).get("id") if isinstance(context.get("device"), dict) else None
        ),
        page=_page(message_type, name, properties, context),
    )


def email_normalize(value: Any) -> str:
    """An email address as an identity value (trimmed, lower case), or "" if it is not one."""
    if not isinstance(value, str):
        return ""
    email = value.strip().lower()
    if "@" not in email or len(email) > MAX_ID_LENGTH or any(c.isspace() for c in email):
        return ""
    return email


def external_ids(value: Any) -> list[tuple[str, str]]:
    """Segment's ``context.externalIds`` ([{id, type}, …]) as free ``(provider, id)`` pairs."""
    if not isinstance(value, list):
        return []
    pairs = []
    for item in value[:20]:
        if not isinstance(item, dict):
            continue
        kind, ident = text_value(item.get("type")), text_value(item.get("id"))
        if kind and ident and kind not in ("user_id", "anonymous_id"):
            pairs.append((kind[:64], ident))
    return pairs


def text_value(value: Any, limit: int = MAX_ID_LENGTH) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return ""
    return str(value).strip()[:limit]


def _session_id(context: dict) -> str:
    return text_value(context.get("sessionId") or context.get("session_id"))


def _page(message_type: str, name: str, properties: dict, context: dict) -> str:
    if message_type not in PAGE_VIEW_TYPES:
        return ""
    page = context.get("page") if isinstance(context.get("page"), dict) else {}
    for candidate in (properties.get("url"), page.get("url"), properties.get("path"), name):
        text = text_value(candidate, 2048)
        if text:
            return text
    return ""


def contains_nul(value: Any) -> bool:
    """PostgreSQL cannot store U+0000 in text or jsonb, so such a message must be refused.

    Walks without recursion: a deeply nested body must not exhaust the interpreter's stack.
    """
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def too_deep(value: Any) -> bool:
    """Whether ``value`` nests deeper than ``MAX_NESTING`` (orjson, which serves every stored
    message back, refuses to write anything deeper)."""
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        return True
    return False


def nesting_error() -> IngestError:
    return IngestError("too_deep", f"JSON may nest at most {MAX_NESTING} levels deep")
