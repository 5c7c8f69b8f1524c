"""The segment rule language: validation with paths, and compilation to one set-based query.

A rule is JSON::

    node      := {"all": [node, …]} | {"any": [node, …]} | {"not": node} | condition
    condition := {"trait":      {"key": K, "op": OP, "value": V}}
               | {"field":      {"name": F, "op": OP, "value": V}}
               | {"event":      {"name": E, "count": {"op": COP, "value": N},
                                 "within_days": D, "where": [{"property": P, "op": OP,
                                                              "value": V}, …]}}
               | {"revenue":    {"op": COP, "value": X, "within_days": D}}
               | {"sessions":   {"op": COP, "value": N, "within_days": D}}
               | {"experience": {"friendly_id": S, "variant": S}}
               | {"segment":    {"slug": S}}

``all`` and ``any`` take at least one node. In ``event``, ``count`` defaults to at least once,
and ``within_days`` and ``where`` are optional; ``within_days`` is optional in ``revenue`` and
``sessions`` too (no limit). ``variant`` is optional in ``experience``.

Trait keys and property names are top-level keys and may not contain ``" \\ . [ ] $``. No text
anywhere in a rule may contain U+0000 (PostgreSQL cannot hold it).

Value comparisons (traits, event properties) — the same in SQL and in the reference evaluator:

- ``exists`` (value ``true``/``false``): the key is present and not JSON null / it is not.
- ``eq``: the stored value has the same JSON kind as ``value`` (number, string, boolean) and is
  equal (numbers compare as numbers: 2 equals 2.0). ``neq`` is exactly ``not eq`` (a missing key
  is "not equal").
- ``gt``, ``gte``, ``lt``, ``lte`` (value a number or a string): the stored value has the same
  kind and compares so; strings compare by code point, so ISO-8601 dates order correctly.
- ``contains`` (value a string): the stored value is a string containing it (case-sensitive).
- ``in`` (value a non-empty list of at most 100 numbers/strings/booleans): ``eq`` one of them.

Numbers are those a double holds (compared as double precision); counts are whole numbers up to
PostgreSQL's bigint, which ``COUNT(*)`` is.

Guest fields (``field.name``): ``guest_type`` (``eq``/``neq``/``in``; visitor or customer),
``first_seen`` and ``last_seen`` (``gt``/``gte``/``lt``/``lte`` with ``{"days_ago": N}`` or an
ISO-8601 date-time), ``email_domain`` (``eq``/``neq``/``in``; the lower-cased part after the
last ``@``; guests without an email have none and are "not equal").

Counts (``COP``: ``eq``, ``gt``, ``gte``, ``lt``, ``lte``): ``event`` counts the guest's events
named ``E`` (any type) in the last ``D`` days (``timestamp >= now - D days``) whose properties
match every ``where``; ``revenue`` sums ``revenue`` of the guest's events in the window (none
sums to 0); ``sessions`` counts sessions started in the window.

``experience``: the guest has a TRACKING event whose ``name`` is the experience's friendly id
(and whose ``properties.variant`` is ``variant``, when given). ``segment``: the guest is a
current member of the workspace's segment with that slug (as last computed); a rule may not
refer to itself, directly or through other segments.

Only live guests (not merged away) of the segment's workspace are ever members.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

LOGIC = ("all", "any", "not")
CONDITIONS = ("trait", "field", "event", "revenue", "sessions", "experience", "segment")
VALUE_OPS = ("eq", "neq", "gt", "gte", "lt", "lte", "contains", "in", "exists")
COUNT_OPS = ("eq", "gt", "gte", "lt", "lte")
FIELDS = {
    "guest_type": ("eq", "neq", "in"),
    "first_seen": ("gt", "gte", "lt", "lte"),
    "last_seen": ("gt", "gte", "lt", "lte"),
    "email_domain": ("eq", "neq", "in"),
}
GUEST_TYPES = ("visitor", "customer")
MAX_DEPTH = 12
MAX_NODES = 200
MAX_DAYS = 3650
# Each value of an ``in`` list is one comparison per guest in the compiled query.
MAX_IN_VALUES = 100
MAX_COUNT = 2**63 - 1  # PostgreSQL's bigint


class RuleError(ValueError):
    """A rule that does not validate; ``path`` points at the bad node (``all[2].event.name``)."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path or 'rule'}: {message}")
        self.path = path or "rule"
        self.message = message


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def is_number(value: Any) -> bool:
    """A JSON number a double holds: NaN, the infinities (which Python's JSON reader lets in) and
    integers past a double's range (``1`` followed by 400 zeros) are not."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def is_scalar(value: Any) -> bool:
    return isinstance(value, str | bool) or is_number(value)


def rule_validate(
    rule: Any, *, segment_rules: Callable[[str], Any | None] | None = None, slug: str = ""
) -> None:
    """Raise ``RuleError`` for the first bad node of ``rule``.

    ``segment_rules(slug)`` gives the rule of another segment of the same workspace (or None if
    there is none) so references can be checked and cycles found; ``slug`` is the segment being
    validated.
    """
    counter = [0]
    _node(rule, "", depth=0, counter=counter)
    if segment_rules is not None:
        _cycles_check(rule, slug=slug, segment_rules=segment_rules)


def _node(node: Any, path: str, *, depth: int, counter: list[int]) -> None:
    counter[0] += 1
    if counter[0] > MAX_NODES:
        raise RuleError(path, f"a rule has at most {MAX_NODES} nodes")
    if depth > MAX_DEPTH:
        raise RuleError(path, f"a rule nests at most {MAX_DEPTH} levels")
    if not isinstance(node, dict) or len(node) != 1:
        raise RuleError(
            path,
            "each node is an object with exactly one key: " + ", ".join((*LOGIC, *CONDITIONS)),
        )
    ((kind, body),) = node.items()
    here = _join(path, kind)
    if kind in ("all", "any"):
        if not isinstance(body, list) or not body:
            raise RuleError(here, f"{kind} takes a non-empty list of nodes")
        for index, child in enumerate(body):
            _node(child, _join(here, index), depth=depth + 1, counter=counter)
    elif kind == "not":
        _node(body, here, depth=depth + 1, counter=counter)
    elif kind in CONDITIONS:
        if not isinstance(body, dict):
            raise RuleError(here, f"{kind} takes an object")
        CONDITION_CHECKS[kind](body, here)
    else:
        raise RuleError(
            path, f"unknown node {kind!r}; expected one of " + ", ".join((*LOGIC, *CONDITIONS))
        )


def _keys(body: dict, path: str, *, required: tuple, optional: tuple = ()) -> None:
    for key in required:
        if key not in body:
            raise RuleError(_join(path, key), "is required")
    for key in body:
        if key not in required and key not in optional:
            raise RuleError(_join(path, key), "is not a known key here")


def _text(body: dict, key: str, path: str) -> str:
    value = body[key]
    if not isinstance(value, str) or not value.strip():
        raise RuleError(_join(path, key), "must be a non-empty string")
    if len(value) > 255:
        raise RuleError(_join(path, key), "must be at most 255 characters")
    _no_nul(value, _join(path, key))
    return value


def _no_nul(value: Any, path: str) -> None:
    """A rule with U+0000 in its text could be neither stored nor run on PostgreSQL."""
    if isinstance(value, str) and "\x00" in value:
        raise RuleError(path, "must not contain the NUL character (U+0000)")


def _values_no_nul(value: Any, path: str) -> None:
    if isinstance(value, list):
        for index, item in enumerate(value):
            _no_nul(item, _join(path, index))
    else:
        _no_nul(value, path)


def _days(body: dict, key: str, path: str) -> None:
    if key in body:
        value = body[key]
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_DAYS:
            raise RuleError(_join(path, key), f"must be a whole number of days, 1 to {MAX_DAYS}")


def _value_op(body: dict, path: str) -> None:
    op, value = body["op"], body["value"]
    if op not in VALUE_OPS:
        raise RuleError(_join(path, "op"), f"must be one of {', '.join(VALUE_OPS)}")
    where = _join(path, "value")
    if op == "exists":
        if not isinstance(value, bool):
            raise RuleError(where, "exists takes true or false")
    elif op in ("eq", "neq"):
        if not is_scalar(value):
            raise RuleError(where, f"{op} takes a number, string or boolean")
    elif op in ("gt", "gte", "lt", "lte"):
        if not (is_number(value) or isinstance(value, str)):
            raise RuleError(where, f"{op} takes a number or a string")
    elif op == "contains":
        if not isinstance(value, str) or not value:
            raise RuleError(where, "contains takes a non-empty string")
    elif op == "in":
        if not isinstance(value, list) or not value or not all(is_scalar(v) for v in value):
            raise RuleError(where, "in takes a non-empty list of numbers, strings or booleans")
        if len(value) > MAX_IN_VALUES:
            raise RuleError(where, f"in takes at most {MAX_IN_VALUES} values")
    _values_no_nul(value, where)


def _count_op(body: dict, path: str, *, whole: bool) -> None:
    if body["op"] not in COUNT_OPS:
        raise RuleError(_join(path, "op"), f"must be one of {', '.join(COUNT_OPS)}")
    value = body["value"]
    if whole:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise RuleError(_join(path, "value"), "must be a whole number, 0 or more")
        if value > MAX_COUNT:
            raise RuleError(_join(path, "value"), f"must be at most {MAX_COUNT}")
    elif not is_number(value):
        raise RuleError(_join(path, "value"), "must be a number")


def _json_key(body: dict, key: str, path: str) -> None:
    value = _text(body, key, path)
    if any(c in value for c in '"\\.[]$'):
        raise RuleError(_join(path, key), 'must not contain ", \\, ., [, ] or $')


def _trait(body: dict, path: str) -> None:
    _keys(body, path, required=("key", "op", "value"))
    _json_key(body, "key", path)
    _value_op(body, path)


def _field(body: dict, path: str) -> None:
    _keys(body, path, required=("name", "op", "value"))
    name = body["name"]
    if not isinstance(name, str) or name not in FIELDS:
        raise RuleError(_join(path, "name"), f"must be one of {', '.join(FIELDS)}")
    op, value = body["op"], body["value"]
    if op not in FIELDS[name]:
        raise RuleError(_join(path, "op"), f"{name} takes {', '.join(FIELDS[name])}")
    where = _join(path, "value")
    if name in ("first_seen", "last_seen"):
        moment_parse(value, where)
    elif op == "in":
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise RuleError(where, "in takes a non-empty list of strings")
        if len(value) > MAX_IN_VALUES:
            raise RuleError(where, f"in takes at most {MAX_IN_VALUES} values")
        if name == "guest_type" and any(v not in GUEST_TYPES for v in value):
            raise RuleError(where, "guest types are visitor and customer")
        _values_no_nul(value, where)
    else:
        if not isinstance(value, str):
            raise RuleError(where, "must be a string")
        if name == "guest_type" and value not in GUEST_TYPES:
            raise RuleError(where, "guest types are visitor and customer")
        _no_nul(value, where)


def _event(body: dict, path: str) -> None:
    _keys(body, path, required=("name",), optional=("count", "within_days", "where"))
    _text(body, "name", path)
    if "count" in body:
        count = body["count"]
        here = _join(path, "count")
        if not isinstance(count, dict):
            raise RuleError(here, "must be an object with op and value")
        _keys(count, here, required=("op", "value"))
        _count_op(count, here, whole=True)
    _days(body, "within_days", path)
    if "where" in body:
        where = body["where"]
        here = _join(path, "where")
        if not isinstance(where, list):
            raise RuleError(here, "must be a list of property conditions")
        for index, item in enumerate(where):
            property_condition_validate(item, _join(here, index))


def property_condition_validate(condition: Any, path: str = "") -> None:
    """An event property condition, ``{"property": P, "op": OP, "value": V}``."""
    if not isinstance(condition, dict):
        raise RuleError(path, "must be an object with property, op and value")
    _keys(condition, path, required=("property", "op", "value"))
    _json_key(condition, "property", path)
    _value_op(condition, path)


def _revenue(body: dict, path: str) -> None:
    _keys(body, path, required=("op", "value"), optional=("within_days",))
    _count_op(body, path, whole=False)
    _days(body, "within_days", path)


def _sessions(body: dict, path: str) -> None:
    _keys(body, path, required=("op", "value"), optional=("within_days",))
    _count_op(body, path, whole=True)
    _days(body, "within_days", path)


def _experience(body: dict, path: str) -> None:
    _keys(body, path, required=("friendly_id",), optional=("variant",))
    _text(body, "friendly_id", path)
    if "variant" in body:
        _text(body, "variant", path)


def _segment(body: dict, path: str) -> None:
    _keys(body, path, required=("slug",))
    _text(body, "slug", path)


CONDITION_CHECKS = {
    "trait": _trait,
    "field": _field,
    "event": _event,
    "revenue": _revenue,
    "sessions": _sessions,
    "experience": _experience,
    "segment": _segment,
}


def moment_parse(value: Any, path: str, *, now: datetime | None = None) -> datetime | None:
    """``{"days_ago": N}`` or an ISO-8601 date-time; with ``now``, the moment it means."""
    if isinstance(value, dict):
        if set(value) != {"days_ago"}:
            raise RuleError(path, 'must be {"days_ago": N} or an ISO-8601 date-time')
        days = value["days_ago"]
        if not isinstance(days, int) or isinstance(days, bool) or not 0 <= days <= MAX_DAYS:
            raise RuleError(_join(path, "days_ago"), f"must be a whole number, 0 to {MAX_DAYS}")
        return None if now is None else now - timedelta(days=days)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise RuleError(path, f"is not an ISO-8601 date-time: {value[:40]!r}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        try:
            # Compared in UTC (SQLite stores UTC text): 9999-12-31T23:00-05:00 has no UTC form.
            moment.astimezone(UTC)
        except OverflowError:
            raise RuleError(path, "is out of range in UTC") from None
        return moment
    raise RuleError(path, 'must be {"days_ago": N} or an ISO-8601 date-time')


def segment_refs(rule: Any) -> list[tuple[str, str]]:
    """(slug, path) of every ``segment`` condition in a (valid) rule."""
    found: list[tuple[str, str]] = []

    def walk(node: Any, path: str) -> None:
        ((kind, body),) = node.items()
        here = _join(path, kind)
        if kind in ("all", "any"):
            for index, child in enumerate(body):
                walk(child, _join(here, index))
        elif kind == "not":
            walk(body, here)
        elif kind == "segment":
            found.append((body["slug"], _join(here, "slug")))

    walk(rule, "")
    return found


def _cycles_check(rule: Any, *, slug: str, segment_rules: Callable[[str], Any | None]) -> None:
    for ref, path in segment_refs(rule):
        if ref == slug:
            raise RuleError(path, "a segment cannot refer to itself")
        seen = {slug}
        stack = [(ref, [ref])]
        if segment_rules(ref) is None:
            raise RuleError(path, f"there is no segment {ref!r} in this workspace")
        while stack:
            current, trail = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            other = segment_rules(current)
            if other is None:
                continue
            for next_slug, _ in segment_refs(other):
                if next_slug == slug:
                    raise RuleError(
                        path, "refers back to this segment: " + " → ".join([*trail, slug])
                    )
                stack.append((next_slug, [*trail, next_slug]))
