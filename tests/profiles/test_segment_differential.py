"""The rule compiler against the plain-Python reference, on random worlds and random rules.

Each example inserts a small world of guests, events, sessions and segment memberships into one
workspace (and a smaller one into a second workspace), runs ``members_query`` for a few random
valid rules in both, and compares with ``tests.profiles.segment_reference``. Every example's rows
are rolled back before the next one.

Times sit on whole days and seconds before ``NOW`` so that window and field boundaries
(``>=`` against ``<``) are hit exactly. Strings mix upper and lower case and a non-ASCII letter
so ordering by code point matters. ``EDGES`` is one hand-made example that always runs.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.db import transaction
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from profiles.models import Guest, Segment, SegmentMembership, Session
from profiles.rules import COUNT_OPS, FIELDS, GUEST_TYPES, VALUE_OPS, rule_validate
from profiles.segment_sql import members_query
from tests.factories import SegmentFactory, SourceFactory
from tests.profiles.segment_reference import RefEvent, RefGuest, RefSession, reference_members
from tracking.models import Event, Source

NOW = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)
SEGMENT_SLUG = "vips"
SEGMENT_RULE = {"trait": {"key": "vip", "op": "eq", "value": True}}

TRAIT_KEYS = ("plan", "age", "vip", "country", "score")
PROPERTY_KEYS = ("plan", "age", "vip", "variant")
EVENT_NAMES = ("Order Completed", "Page Viewed", "exp-1", "exp-2")
EVENT_TYPES = ("track", "page", "TRACKING")
VARIANTS = ("A", "B", "1")
LOCAL_PARTS = ("ann", "Bo", "a@b", '"x@y"')
DOMAINS = ("ex.io", "EX.io", "shop.example", "Shöp.example", "ÉX.io", "")
RULE_DOMAINS = ("ex.io", "EX.IO", "shop.example", "shöp.example", "éx.io", "ÉX.IO", "")
ASCII_RULE_DOMAINS = tuple(d for d in RULE_DOMAINS if d.isascii())

# --- worlds ----------------------------------------------------------------------------------

strings = st.text(alphabet="aAb-é", max_size=3)
numbers = st.one_of(st.integers(-3, 5), st.integers(-30, 50).map(lambda tenths: tenths / 10))
scalars = st.one_of(numbers, strings, st.booleans())
stored_values = st.one_of(
    scalars, st.none(), st.sampled_from([["a"], {"a": 1}]), st.sampled_from(VARIANTS)
)
# Rules draw their days from the same few numbers, so boundaries are met often.
DAYS = (0, 1, 2, 7, 30)
days_before = st.one_of(st.sampled_from(DAYS), st.integers(0, 60))
moments = st.builds(
    lambda days, seconds, micro: NOW - timedelta(days=days, seconds=seconds, microseconds=micro),
    days_before,
    st.sampled_from([-60, 0, 0, 1, 3600, 86399]),
    st.sampled_from([0, 0, 1]),
)
emails = st.one_of(
    st.sampled_from(["", "no-at-sign"]),
    st.builds("{}@{}".format, st.sampled_from(LOCAL_PARTS), st.sampled_from(DOMAINS)),
)
# Amounts whose sums are not exact in binary floating point (0.1 + 0.2), and rule values that
# are those sums, so that `eq` meets them.
REVENUE_AMOUNTS = ("0.1", "0.2", "0.3", "0.4", "10", "19.99", "-5")
REVENUE_SUMS = (0, 0.3, 0.4, 0.5, 0.6, 0.7, 10, 10.3, 19.99, 29.99, 5)
revenues = st.one_of(
    st.none(),
    st.sampled_from(REVENUE_AMOUNTS).map(Decimal),
    st.integers(-500, 5000).map(lambda cents: Decimal(cents) / 100),
)
MEMBERSHIP_HISTORIES = ("none", "open", "closed", "reentered")


@dataclass
class World:
    guests: list[dict]
    events: list[dict]
    sessions: list[dict]


@st.composite
def worlds(draw, *, min_guests: int, max_guests: int) -> World:
    count = draw(st.integers(min_guests, max_guests))
    guests = [
        draw(
            st.fixed_dictionaries(
                {
                    "guest_type": st.sampled_from(GUEST_TYPES),
                    "first_seen": moments,
                    "last_seen": moments,
                    "email": emails,
                    "traits": st.fixed_dictionaries(
                        {}, optional=dict.fromkeys(TRAIT_KEYS, stored_values)
                    ),
                    # The first guest stays live: merged guests point at it.
                    "merged": st.just(False)
                    if index == 0
                    else st.integers(0, 4).map(lambda n: n == 0),
                    "membership": st.sampled_from(MEMBERSHIP_HISTORIES),
                }
            )
        )
        for index in range(count)
    ]
    guest_index = st.integers(0, count - 1)
    events = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "guest": guest_index,
                    "name": st.sampled_from(EVENT_NAMES),
                    "type": st.sampled_from(EVENT_TYPES),
                    "properties": st.fixed_dictionaries(
                        {}, optional=dict.fromkeys(PROPERTY_KEYS, stored_values)
                    ),
                    "revenue": revenues,
                    "timestamp": moments,
                }
            ),
            max_size=4 * count,
        )
    )
    sessions = draw(
        st.lists(
            st.fixed_dictionaries({"guest": guest_index, "started_at": moments}),
            max_size=2 * count,
        )
    )
    return World(guests=guests, events=events, sessions=sessions)


# --- rules -----------------------------------------------------------------------------------


@st.composite
def value_conditions(draw, *, key_name: str, keys: tuple, with_contains: bool) -> dict:
    ops = [op for op in VALUE_OPS if with_contains or op != "contains"]
    op = draw(st.sampled_from(ops))
    if op == "exists":
        value = draw(st.booleans())
    elif op in ("eq", "neq"):
        value = draw(st.one_of(scalars, st.sampled_from(VARIANTS)))
    elif op == "contains":
        value = draw(st.text(alphabet="aAb-é", min_size=1, max_size=2))
    elif op == "in":
        value = draw(st.lists(scalars, min_size=1, max_size=3))
    else:
        value = draw(st.one_of(numbers, strings))
    return {key_name: draw(st.sampled_from([*keys, "missing"])), "op": op, "value": value}


def iso_moments():
    """ISO-8601 date-times with an offset, without one (UTC), and plain dates."""
    return st.one_of(
        moments.map(lambda m: m.isoformat()),
        moments.map(lambda m: m.replace(tzinfo=None).isoformat()),
        moments.map(lambda m: m.astimezone(UTC).date().isoformat()),
        moments.map(lambda m: m.astimezone(timezone(timedelta(hours=2))).isoformat()),
    )


@st.composite
def field_conditions(draw, *, ascii_domains: bool) -> dict:
    name = draw(st.sampled_from(list(FIELDS)))
    op = draw(st.sampled_from(FIELDS[name]))
    if name in ("first_seen", "last_seen"):
        value = draw(st.one_of(st.builds(dict, days_ago=days_before), iso_moments()))
    else:
        choices = (
            GUEST_TYPES
            if name == "guest_type"
            else (ASCII_RULE_DOMAINS if ascii_domains else RULE_DOMAINS)
        )
        one = st.sampled_from(choices)
        value = draw(st.lists(one, min_size=1, max_size=3) if op == "in" else one)
    return {"name": name, "op": op, "value": value}


within_days = st.one_of(st.sampled_from([d for d in DAYS if d]), st.integers(1, 61))


@st.composite
def event_conditions(draw, *, with_contains: bool) -> dict:
    body = {"name": draw(st.sampled_from([*EVENT_NAMES, "Never Sent"]))}
    if draw(st.booleans()):
        body["count"] = {"op": draw(st.sampled_from(COUNT_OPS)), "value": draw(st.integers(0, 3))}
    if draw(st.booleans()):
        body["within_days"] = draw(within_days)
    if draw(st.booleans()):
        body["where"] = draw(
            st.lists(
                value_conditions(
                    key_name="property", keys=PROPERTY_KEYS, with_contains=with_contains
                ),
                max_size=2,
            )
        )
    return body


@st.composite
def windowed_counts(draw, values) -> dict:
    body = {"op": draw(st.sampled_from(COUNT_OPS)), "value": draw(values)}
    if draw(st.booleans()):
        body["within_days"] = draw(within_days)
    return body


@st.composite
def experience_conditions(draw) -> dict:
    body = {"friendly_id": draw(st.sampled_from(["exp-1", "exp-2", "Order Completed"]))}
    if draw(st.booleans()):
        body["variant"] = draw(st.sampled_from(VARIANTS))
    return body


def conditions(*, with_contains: bool, ascii_domains: bool):
    """Every kind of condition; those with many operators come up more often."""
    traits = value_conditions(key_name="key", keys=TRAIT_KEYS, with_contains=with_contains)
    fields = field_conditions(ascii_domains=ascii_domains)
    events = event_conditions(with_contains=with_contains)
    revenue_values = st.one_of(st.sampled_from(REVENUE_SUMS), st.integers(-10, 60), numbers)
    return st.one_of(
        *(traits.map(lambda body: {"trait": body}) for _ in range(3)),
        *(fields.map(lambda body: {"field": body}) for _ in range(3)),
        *(events.map(lambda body: {"event": body}) for _ in range(2)),
        windowed_counts(revenue_values).map(lambda body: {"revenue": body}),
        windowed_counts(st.integers(0, 3)).map(lambda body: {"sessions": body}),
        experience_conditions().map(lambda body: {"experience": body}),
        st.just({"segment": {"slug": SEGMENT_SLUG}}),
    )


def rules(depth: int, leaves):
    """Rules whose all/any/not nest at most ``depth`` levels."""
    if depth == 0:
        return leaves
    children = rules(depth - 1, leaves)
    return st.one_of(
        leaves,
        st.lists(children, min_size=1, max_size=3).map(lambda nodes: {"all": nodes}),
        st.lists(children, min_size=1, max_size=3).map(lambda nodes: {"any": nodes}),
        children.map(lambda node: {"not": node}),
    )


# --- one hand-made example, always run ------------------------------------------------------


def _guest(**facts) -> dict:
    defaults = {"guest_type": "visitor", "email": "", "traits": {}, "merged": False}
    return {"first_seen": NOW, "last_seen": NOW, "membership": "none", **defaults, **facts}


def _event(guest: int, name: str, days: float, **facts) -> dict:
    defaults = {"type": "track", "properties": {}, "revenue": None}
    return (
        {"guest": guest, "name": name, "timestamp": NOW - timedelta(days=days)} | defaults | facts
    )


SEVEN_DAYS_AGO = NOW - timedelta(days=7)
TINY = timedelta(microseconds=1)
# Exact window and field boundaries, sums that binary floats get wrong, an '@' in the local part,
# an ISO time with an offset, upper case before lower case, true that is not 1, null that is
# not there, history that left and came back.
EDGES = {
    "world": World(
        guests=[
            _guest(
                email="a@b@EX.io",
                first_seen=SEVEN_DAYS_AGO,
                traits={"plan": "B", "age": 2, "vip": True},
                membership="open",
            ),
            _guest(
                first_seen=SEVEN_DAYS_AGO - TINY,
                traits={"plan": "a", "age": 2.0, "vip": 1, "score": None},
                membership="reentered",
            ),
            _guest(email="c@ex.io", merged=True, membership="open", traits={"plan": "B"}),
        ],
        events=[
            _event(0, "Order Completed", 7, revenue=Decimal("0.1")),
            _event(0, "Order Completed", 1, revenue=Decimal("0.2")),
            _event(1, "Order Completed", 7, timestamp=SEVEN_DAYS_AGO - TINY),
            _event(1, "exp-1", 30, type="TRACKING", properties={"variant": "A"}),
            _event(0, "exp-1", 3, properties={"variant": "A"}),
        ],
        sessions=[{"guest": 0, "started_at": NOW - timedelta(days=2)}],
    ),
    "neighbour": World(guests=[_guest(traits={"plan": "B"})], events=[], sessions=[]),
    "rules_": [
        {"event": {"name": "Order Completed", "within_days": 7, "count": {"op": "eq", "value": 1}}},
        {"revenue": {"op": "eq", "value": 0.3, "within_days": 7}},
        {"sessions": {"op": "gte", "value": 1, "within_days": 2}},
        {"field": {"name": "first_seen", "op": "gte", "value": {"days_ago": 7}}},
        {
            "field": {
                "name": "first_seen",
                "op": "lte",
                "value": SEVEN_DAYS_AGO.astimezone(timezone(timedelta(hours=2))).isoformat(),
            }
        },
        {"field": {"name": "email_domain", "op": "eq", "value": "ex.io"}},
        {"field": {"name": "email_domain", "op": "neq", "value": "EX.io"}},
        {"trait": {"key": "plan", "op": "lt", "value": "a"}},
        {"trait": {"key": "age", "op": "eq", "value": 2}},
        {"trait": {"key": "vip", "op": "in", "value": [1, "x"]}},
        {"trait": {"key": "score", "op": "exists", "value": False}},
        {"not": {"experience": {"friendly_id": "exp-1", "variant": "A"}}},
        {"segment": {"slug": SEGMENT_SLUG}},
    ],
}


# --- the check -------------------------------------------------------------------------------


def world_insert(world: World, *, source: Source, segment: Segment) -> dict:
    """Insert ``world`` into the source's workspace; the reference's view of the same rows."""
    workspace_id = source.workspace_id
    guests = Guest.objects.bulk_create(
        Guest(
            workspace_id=workspace_id,
            guest_type=g["guest_type"],
            first_seen=g["first_seen"],
            last_seen=g["last_seen"],
            email=g["email"],
            traits=g["traits"],
        )
        for g in world.guests
    )
    Guest.objects.filter(
        pk__in=[guest.pk for guest, g in zip(guests, world.guests, strict=True) if g["merged"]]
    ).update(merged_into=guests[0].pk)
    Event.objects.bulk_create(
        Event(
            workspace_id=workspace_id,
            source=source,
            guest=guests[e["guest"]],
            type=e["type"],
            name=e["name"],
            message_id=f"m{index}",
            properties=e["properties"],
            revenue=e["revenue"],
            timestamp=e["timestamp"],
            received_at=e["timestamp"],
        )
        for index, e in enumerate(world.events)
    )
    Session.objects.bulk_create(
        Session(
            workspace_id=workspace_id,
            guest=guests[s["guest"]],
            started_at=s["started_at"],
            ended_at=s["started_at"],
        )
        for s in world.sessions
    )
    memberships = []
    for guest, g in zip(guests, world.guests, strict=True):
        history = g["membership"]
        if history in ("closed", "reentered"):
            memberships.append(
                SegmentMembership(
                    segment=segment,
                    guest=guest,
                    entered_at=NOW - timedelta(days=9),
                    exited_at=NOW - timedelta(days=5),
                )
            )
        if history in ("open", "reentered"):
            memberships.append(
                SegmentMembership(segment=segment, guest=guest, entered_at=NOW - timedelta(days=2))
            )
    SegmentMembership.objects.bulk_create(memberships)
    return {
        "guests": [
            RefGuest(
                key=guest.pk,
                guest_type=g["guest_type"],
                first_seen=g["first_seen"],
                last_seen=g["last_seen"],
                email=g["email"],
                traits=g["traits"],
                merged=g["merged"],
            )
            for guest, g in zip(guests, world.guests, strict=True)
        ],
        "events": [
            RefEvent(
                guest=guests[e["guest"]].pk,
                name=e["name"],
                type=e["type"],
                properties=e["properties"],
                revenue=e["revenue"],
                timestamp=e["timestamp"],
            )
            for e in world.events
        ],
        "sessions": [
            RefSession(guest=guests[s["guest"]].pk, started_at=s["started_at"])
            for s in world.sessions
        ],
        "memberships": {
            SEGMENT_SLUG: {
                guest.pk
                for guest, g in zip(guests, world.guests, strict=True)
                if g["membership"] in ("open", "reentered")
            }
        },
    }


@pytest.fixture
def two_workspaces(db):
    """(source, segment) for the workspace under test and for a neighbouring one."""
    pairs = []
    for _ in range(2):
        source = SourceFactory()
        segment = SegmentFactory(
            workspace=source.workspace, slug=SEGMENT_SLUG, name="VIPs", rule=SEGMENT_RULE
        )
        pairs.append((source, segment))
    return pairs


def assert_compiler_agrees(two_workspaces, worlds_: tuple[World, World], rules_: list) -> None:
    lookup = {SEGMENT_SLUG: SEGMENT_RULE}.get
    for rule in rules_:
        rule_validate(rule, segment_rules=lookup, slug="under-test")
    with transaction.atomic():
        # The previous example's rows were rolled back.
        assert not Guest.objects.filter(
            workspace_id__in=[s.workspace_id for s, _ in two_workspaces]
        )
        facts = [
            world_insert(world, source=source, segment=segment)
            for world, (source, segment) in zip(worlds_, two_workspaces, strict=True)
        ]
        for rule in rules_:
            for (source, _), rows in zip(two_workspaces, facts, strict=True):
                selected = members_query(rule, workspace_id=source.workspace_id, now=NOW)
                expected = reference_members(rule, now=NOW, **rows)
                assert set(selected.values_list("pk", flat=True)) == expected, rule
        transaction.set_rollback(True)


# A few rules per world: inserting the world costs more than asking about it.
EVERY_KIND = st.lists(
    rules(3, conditions(with_contains=True, ascii_domains=False)), min_size=1, max_size=5
)
# SQLite's lower() folds ASCII letters only, so there the rules' email domains stay ASCII.
# `contains` stays in: it compiles to instr(), which is case-sensitive on both backends.
SQLITE_SAFE = st.lists(
    rules(3, conditions(with_contains=True, ascii_domains=True)), min_size=1, max_size=5
)


@pytest.mark.postgres
@pytest.mark.django_db
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    world=worlds(min_guests=3, max_guests=12),
    neighbour=worlds(min_guests=1, max_guests=4),
    rules_=EVERY_KIND,
)
@example(**EDGES)
def test_compiled_rules_select_what_the_reference_selects(two_workspaces, world, neighbour, rules_):
    assert_compiler_agrees(two_workspaces, (world, neighbour), rules_)


@pytest.mark.django_db
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    world=worlds(min_guests=3, max_guests=12),
    neighbour=worlds(min_guests=1, max_guests=4),
    rules_=SQLITE_SAFE,
)
@example(**EDGES)
def test_compiled_rules_select_what_the_reference_selects_on_any_backend(
    two_workspaces, world, neighbour, rules_
):
    assert_compiler_agrees(two_workspaces, (world, neighbour), rules_)
