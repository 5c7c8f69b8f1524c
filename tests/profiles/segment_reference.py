"""The segment rule language evaluated in plain Python, straight from ``profiles.rules``' docstring.

It is the oracle of the differential tests: it reads rows given as dataclasses and knows
nothing of SQL, so it must not import ``profiles.segment_sql``. It is written for clarity, one
guest at a time; it assumes the rule is valid (``rule_validate`` passed).
"""

from __future__ import annotations

import operator
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

COMPARE = {
    "eq": operator.eq,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


@dataclass
class RefGuest:
    key: Hashable
    first_seen: datetime
    last_seen: datetime
    guest_type: str = "visitor"
    email: str = ""
    traits: dict[str, Any] = field(default_factory=dict)
    merged: bool = False


@dataclass
class RefEvent:
    guest: Hashable
    name: str
    timestamp: datetime
    type: str = "track"
    properties: dict[str, Any] = field(default_factory=dict)
    revenue: Decimal | None = None


@dataclass
class RefSession:
    guest: Hashable
    started_at: datetime


def json_kind(value: Any) -> str:
    """The JSON kind of a decoded value; a boolean is not a number."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def value_matches(values: Mapping[str, Any], key: str, op: str, expected: Any) -> bool:
    """One trait or event-property condition on a JSON object's top-level ``key``."""
    present = key in values
    stored = values.get(key)
    if op == "exists":
        return (present and stored is not None) is expected
    if op == "neq":
        return not value_matches(values, key, "eq", expected)
    if op == "in":
        return any(value_matches(values, key, "eq", item) for item in expected)
    if not present:
        return False
    kind = json_kind(stored)
    if op == "contains":
        return kind == "string" and expected in stored
    if kind != json_kind(expected):
        return False
    if kind == "number":
        return COMPARE[op](float(stored), float(expected))
    if kind == "boolean":
        return op == "eq" and stored is expected
    # Python orders str by code point, as the spec asks.
    return COMPARE[op](stored, expected)


def moment(value: Any, now: datetime) -> datetime:
    """``{"days_ago": N}`` or an ISO-8601 date-time (UTC when it has no offset)."""
    if isinstance(value, dict):
        return now - timedelta(days=value["days_ago"])
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def email_domain(email: str) -> str | None:
    """The lower-cased part after the last ``@``; None without an ``@``."""
    if "@" not in email:
        return None
    return email.rpartition("@")[2].lower()


def reference_members(
    rule: dict,
    *,
    guests: Iterable[RefGuest],
    events: Iterable[RefEvent],
    sessions: Iterable[RefSession],
    memberships: Mapping[str, set],
    now: datetime,
) -> set:
    """The keys of the live guests that ``rule`` selects.

    ``guests``, ``events`` and ``sessions`` are one workspace's rows; ``memberships`` maps a
    segment slug of that workspace to the keys of its current members.
    """
    guests = list(guests)
    events_of: dict[Hashable, list[RefEvent]] = defaultdict(list)
    for event in events:
        events_of[event.guest].append(event)
    sessions_of: dict[Hashable, list[RefSession]] = defaultdict(list)
    for session in sessions:
        sessions_of[session.guest].append(session)

    def since(days: int | None) -> datetime | None:
        return None if days is None else now - timedelta(days=days)

    def in_window(moment_: datetime, start: datetime | None) -> bool:
        return start is None or moment_ >= start

    def field_holds(guest: RefGuest, body: dict) -> bool:
        name, op, value = body["name"], body["op"], body["value"]
        if name in ("first_seen", "last_seen"):
            return COMPARE[op](getattr(guest, name), moment(value, now))
        if name == "guest_type":
            actual, wanted = guest.guest_type, value
        else:
            actual = email_domain(guest.email)
            wanted = [v.lower() for v in value] if op == "in" else value.lower()
        if op == "in":
            return actual is not None and actual in wanted
        equal = actual is not None and actual == wanted
        return equal if op == "eq" else not equal

    def event_holds(guest: RefGuest, body: dict) -> bool:
        start = since(body.get("within_days"))
        count = sum(
            1
            for event in events_of[guest.key]
            if event.name == body["name"]
            and in_window(event.timestamp, start)
            and all(
                value_matches(event.properties, item["property"], item["op"], item["value"])
                for item in body.get("where", [])
            )
        )
        wanted = body.get("count", {"op": "gte", "value": 1})
        return COMPARE[wanted["op"]](count, wanted["value"])

    def revenue_holds(guest: RefGuest, body: dict) -> bool:
        start = since(body.get("within_days"))
        total = sum(
            (
                event.revenue
                for event in events_of[guest.key]
                if event.revenue is not None and in_window(event.timestamp, start)
            ),
            Decimal(0),
        )
        return COMPARE[body["op"]](float(total), float(body["value"]))

    def sessions_hold(guest: RefGuest, body: dict) -> bool:
        start = since(body.get("within_days"))
        count = sum(1 for s in sessions_of[guest.key] if in_window(s.started_at, start))
        return COMPARE[body["op"]](count, body["value"])

    def experience_holds(guest: RefGuest, body: dict) -> bool:
        return any(
            event.type == "TRACKING"
            and event.name == body["friendly_id"]
            and (
                "variant" not in body
                or value_matches(event.properties, "variant", "eq", body["variant"])
            )
            for event in events_of[guest.key]
        )

    def holds(node: dict, guest: RefGuest) -> bool:
        ((kind, body),) = node.items()
        if kind == "all":
            return all(holds(child, guest) for child in body)
        if kind == "any":
            return any(holds(child, guest) for child in body)
        if kind == "not":
            return not holds(body, guest)
        if kind == "trait":
            return value_matches(guest.traits, body["key"], body["op"], body["value"])
        if kind == "field":
            return field_holds(guest, body)
        if kind == "event":
            return event_holds(guest, body)
        if kind == "revenue":
            return revenue_holds(guest, body)
        if kind == "sessions":
            return sessions_hold(guest, body)
        if kind == "experience":
            return experience_holds(guest, body)
        if kind == "segment":
            return guest.key in memberships.get(body["slug"], set())
        raise ValueError(f"not a rule node: {kind!r}")

    return {guest.key for guest in guests if not guest.merged and holds(rule, guest)}
