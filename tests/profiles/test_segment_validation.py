"""rule_validate: bad rules are refused with the path of the bad node, good ones pass."""

import pytest

from profiles.rules import (
    MAX_COUNT,
    MAX_DAYS,
    MAX_DEPTH,
    MAX_IN_VALUES,
    MAX_NODES,
    RuleError,
    rule_validate,
)

PLAN = {"trait": {"key": "plan", "op": "eq", "value": "pro"}}
BOUGHT = {"event": {"name": "Order Completed"}}


def nested_nots(levels: int) -> dict:
    rule = PLAN
    for _ in range(levels):
        rule = {"not": rule}
    return rule


def trait(op, value, key="plan"):
    return {"trait": {"key": key, "op": op, "value": value}}


def field(name, op, value):
    return {"field": {"name": name, "op": op, "value": value}}


def where(*items):
    return {"event": {"name": "Order Completed", "where": list(items)}}


# (rule, path of the bad node, part of the message)
BAD = [
    # shape and logic
    ({}, "rule", "exactly one key"),
    ([], "rule", "exactly one key"),
    ("plan = pro", "rule", "exactly one key"),
    ({"all": [PLAN], "any": [PLAN]}, "rule", "exactly one key"),
    ({"where": PLAN}, "rule", "unknown node 'where'"),
    ({"all": []}, "all", "non-empty list"),
    ({"any": []}, "any", "non-empty list"),
    ({"any": PLAN}, "any", "non-empty list"),
    ({"all": [PLAN, {}]}, "all[1]", "exactly one key"),
    ({"any": [PLAN, {"all": [PLAN, {"nope": 1}]}]}, "any[1].all[1]", "unknown node 'nope'"),
    ({"not": []}, "not", "exactly one key"),
    ({"trait": ["plan", "eq", "pro"]}, "trait", "takes an object"),
    (nested_nots(MAX_DEPTH + 1), ".".join(["not"] * (MAX_DEPTH + 1)), "nests at most"),
    ({"all": [PLAN] * MAX_NODES}, f"all[{MAX_NODES - 1}]", "at most 200 nodes"),
    # trait
    ({"trait": {"op": "eq", "value": 1}}, "trait.key", "is required"),
    ({"trait": {"key": "plan", "op": "eq"}}, "trait.value", "is required"),
    ({"trait": {"key": "plan", "op": "eq", "value": 1, "why": 1}}, "trait.why", "not a known key"),
    (trait("eq", 1, key=""), "trait.key", "non-empty string"),
    (trait("eq", 1, key="  "), "trait.key", "non-empty string"),
    (trait("eq", 1, key=3), "trait.key", "non-empty string"),
    (trait("eq", 1, key="x" * 256), "trait.key", "at most 255"),
    (trait("eq", 1, key="address.city"), "trait.key", "must not contain"),
    (trait("eq", 1, key="tags[0]"), "trait.key", "must not contain"),
    (trait("eq", 1, key="$x"), "trait.key", "must not contain"),
    (trait("eq", 1, key='say "hi"'), "trait.key", "must not contain"),
    ({"not": trait("like", "pro")}, "not.trait.op", "must be one of"),
    ({"not": trait(["eq"], "pro")}, "not.trait.op", "must be one of"),
    (trait("exists", 1), "trait.value", "true or false"),
    (trait("eq", None), "trait.value", "number, string or boolean"),
    (trait("neq", [1]), "trait.value", "number, string or boolean"),
    (trait("gt", True), "trait.value", "number or a string"),
    (trait("gt", float("nan")), "trait.value", "number or a string"),
    (trait("eq", float("inf")), "trait.value", "number, string or boolean"),
    (trait("lte", None), "trait.value", "number or a string"),
    (trait("contains", ""), "trait.value", "non-empty string"),
    (trait("contains", 3), "trait.value", "non-empty string"),
    (trait("in", []), "trait.value", "non-empty list"),
    (trait("in", "pro"), "trait.value", "non-empty list"),
    (trait("in", ["pro", None]), "trait.value", "non-empty list"),
    (trait("in", [["pro"]]), "trait.value", "non-empty list"),
    (trait("in", list(range(MAX_IN_VALUES + 1))), "trait.value", f"at most {MAX_IN_VALUES}"),
    # numbers a double cannot hold
    (trait("gt", 10**400), "trait.value", "number or a string"),
    (trait("in", [1, 10**400]), "trait.value", "non-empty list"),
    # field
    (field("age", "eq", 3), "field.name", "must be one of"),
    (field(["guest_type"], "eq", "visitor"), "field.name", "must be one of"),
    (field({"guest_type": 1}, "eq", "visitor"), "field.name", "must be one of"),
    (field("guest_type", "gt", "visitor"), "field.op", "guest_type takes eq, neq, in"),
    (field("first_seen", "eq", {"days_ago": 1}), "field.op", "first_seen takes gt"),
    (field("email_domain", "contains", "ex.io"), "field.op", "email_domain takes eq"),
    (field("guest_type", "eq", "admin"), "field.value", "visitor and customer"),
    (field("guest_type", "in", ["visitor", "admin"]), "field.value", "visitor and customer"),
    (field("guest_type", "in", []), "field.value", "non-empty list of strings"),
    (field("email_domain", "in", ["ex.io", 3]), "field.value", "non-empty list of strings"),
    (field("email_domain", "eq", 3), "field.value", "must be a string"),
    (
        field("email_domain", "in", ["ex.io"] * (MAX_IN_VALUES + 1)),
        "field.value",
        f"at most {MAX_IN_VALUES}",
    ),
    (field("first_seen", "gt", 3), "field.value", "days_ago"),
    (field("first_seen", "gt", "last tuesday"), "field.value", "not an ISO-8601"),
    (field("last_seen", "lt", {"days": 3}), "field.value", "days_ago"),
    (field("last_seen", "lt", {"days_ago": 3, "hours": 1}), "field.value", "days_ago"),
    (field("last_seen", "lt", {"days_ago": -1}), "field.value.days_ago", "0 to 3650"),
    (field("last_seen", "lt", {"days_ago": 1.5}), "field.value.days_ago", "0 to 3650"),
    (field("last_seen", "lt", {"days_ago": True}), "field.value.days_ago", "0 to 3650"),
    (field("last_seen", "lt", {"days_ago": MAX_DAYS + 1}), "field.value.days_ago", "0 to 3650"),
    # An offset that pushes the moment past year 9999 in UTC, where it is compared.
    (field("first_seen", "gt", "9999-12-31T23:00:00-05:00"), "field.value", "out of range"),
    (field("first_seen", "gt", "0001-01-01T00:30:00+01:00"), "field.value", "out of range"),
    # event
    ({"event": {}}, "event.name", "is required"),
    ({"event": {"name": ""}}, "event.name", "non-empty string"),
    ({"event": {"name": "x", "since": 3}}, "event.since", "not a known key"),
    ({"event": {"name": "x", "count": 2}}, "event.count", "an object with op and value"),
    ({"event": {"name": "x", "count": {"op": "gte"}}}, "event.count.value", "is required"),
    ({"event": {"name": "x", "count": {"op": "neq", "value": 1}}}, "event.count.op", "one of"),
    ({"event": {"name": "x", "count": {"op": "gte", "value": -1}}}, "event.count.value", "0 or"),
    ({"event": {"name": "x", "count": {"op": "gte", "value": 1.5}}}, "event.count.value", "0 or"),
    ({"event": {"name": "x", "count": {"op": "gte", "value": True}}}, "event.count.value", "0 or"),
    (
        {"event": {"name": "x", "count": {"op": "gte", "value": MAX_COUNT + 1}}},
        "event.count.value",
        f"at most {MAX_COUNT}",
    ),
    (
        {"all": [PLAN, BOUGHT, {"event": {"name": "x", "within_days": 0}}]},
        "all[2].event.within_days",
        "1 to 3650",
    ),
    ({"event": {"name": "x", "within_days": MAX_DAYS + 1}}, "event.within_days", "1 to 3650"),
    ({"event": {"name": "x", "within_days": "7"}}, "event.within_days", "1 to 3650"),
    ({"event": {"name": "x", "within_days": True}}, "event.within_days", "1 to 3650"),
    ({"event": {"name": "x", "where": {"property": "sku"}}}, "event.where", "must be a list"),
    (where("sku"), "event.where[0]", "must be an object"),
    (where({"property": "sku", "op": "eq"}), "event.where[0].value", "is required"),
    (where({"property": "a.b", "op": "eq", "value": 1}), "event.where[0].property", "contain"),
    (
        {
            "all": [
                where(
                    {"property": "sku", "op": "eq", "value": "x"},
                    {"property": "sku", "op": "in", "value": "x"},
                )
            ]
        },
        "all[0].event.where[1].value",
        "non-empty list",
    ),
    (where({"property": "sku", "op": "matches", "value": "x"}), "event.where[0].op", "one of"),
    # revenue and sessions
    ({"revenue": {"op": "gt"}}, "revenue.value", "is required"),
    ({"revenue": {"op": "in", "value": 10}}, "revenue.op", "one of eq, gt"),
    ({"revenue": {"op": "gt", "value": "10"}}, "revenue.value", "must be a number"),
    ({"revenue": {"op": "gt", "value": True}}, "revenue.value", "must be a number"),
    ({"revenue": {"op": "gt", "value": 1, "within_days": 0}}, "revenue.within_days", "1 to"),
    ({"revenue": {"op": "gt", "value": 1, "currency": "EUR"}}, "revenue.currency", "not a known"),
    ({"sessions": {"op": "gte", "value": 1.5}}, "sessions.value", "whole number"),
    ({"sessions": {"op": "gte", "value": -1}}, "sessions.value", "whole number"),
    ({"sessions": {"op": "gte", "value": 999999999999999999999}}, "sessions.value", "at most"),
    ({"revenue": {"op": "gte", "value": 10**400}}, "revenue.value", "must be a number"),
    ({"sessions": {"op": "neq", "value": 1}}, "sessions.op", "one of"),
    ({"sessions": {"op": "gte", "value": 1, "within_days": 3651}}, "sessions.within_days", "1 to"),
    # experience and segment
    ({"experience": {"variant": "A"}}, "experience.friendly_id", "is required"),
    ({"experience": {"friendly_id": " "}}, "experience.friendly_id", "non-empty string"),
    ({"experience": {"friendly_id": "exp-1", "variant": ""}}, "experience.variant", "non-empty"),
    ({"experience": {"friendly_id": "exp-1", "variant": 1}}, "experience.variant", "non-empty"),
    ({"segment": {}}, "segment.slug", "is required"),
    ({"segment": {"slug": 3}}, "segment.slug", "non-empty string"),
    ({"segment": {"slug": "vips", "as_of": "now"}}, "segment.as_of", "not a known key"),
    # text PostgreSQL cannot hold, refused where it is rather than by the database later
    (trait("eq", "pro", key="pl\x00an"), "trait.key", "NUL character (U+0000)"),
    ({"any": [PLAN, trait("eq", "p\x00ro")]}, "any[1].trait.value", "NUL character"),
    (trait("in", ["pro", "p\x00"]), "trait.value[1]", "NUL character"),
    (trait("contains", "\x00"), "trait.value", "NUL character"),
    ({"event": {"name": "Order\x00"}}, "event.name", "NUL character"),
    (where({"property": "sku\x00", "op": "eq", "value": 1}), "event.where[0].property", "NUL"),
    (field("email_domain", "eq", "ex\x00.io"), "field.value", "NUL character"),
    (field("email_domain", "in", ["ex.io", "\x00"]), "field.value[1]", "NUL character"),
    ({"experience": {"friendly_id": "exp\x00"}}, "experience.friendly_id", "NUL character"),
    ({"segment": {"slug": "vips\x00"}}, "segment.slug", "NUL character"),
    # nested far past the bound, as a 5,000 deep body parses: refused at the bound
    (nested_nots(5000), ".".join(["not"] * (MAX_DEPTH + 1)), "nests at most"),
]


@pytest.mark.parametrize(("rule", "path", "message"), BAD, ids=[case[1] for case in BAD])
def test_a_bad_rule_is_refused_with_the_path_of_the_bad_node(rule, path, message):
    with pytest.raises(RuleError) as refused:
        rule_validate(rule)
    assert refused.value.path == path
    assert message in refused.value.message
    assert str(refused.value).startswith(f"{path}: ")


GOOD = [
    PLAN,
    {"all": [PLAN]},
    {"any": [PLAN, {"not": BOUGHT}]},
    nested_nots(MAX_DEPTH),
    {"all": [PLAN] * (MAX_NODES - 1)},
    trait("exists", False, key="vip"),
    trait("eq", True, key="vip"),
    trait("eq", 2.5, key="score"),
    trait("neq", "pro"),
    trait("gte", "2025-01-01", key="since"),
    trait("lt", -3, key="score"),
    trait("contains", "ro"),
    trait("in", ["pro", 3, True]),
    trait("in", list(range(MAX_IN_VALUES))),
    trait("eq", 1, key="plan type (ü)"),
    field("guest_type", "in", ["visitor", "customer"]),
    field("guest_type", "neq", "customer"),
    field("email_domain", "eq", "EX.io"),
    field("email_domain", "eq", ""),
    field("email_domain", "in", ["ex.io", "shop.example"]),
    field("first_seen", "gte", {"days_ago": 0}),
    field("first_seen", "gte", {"days_ago": MAX_DAYS}),
    field("last_seen", "lt", "2025-06-01"),
    field("last_seen", "lt", "2025-06-01T12:00:00"),
    field("last_seen", "lte", "2025-06-01T12:00:00+02:00"),
    field("last_seen", "lte", "9999-12-31T23:00:00+01:00"),
    BOUGHT,
    {
        "event": {
            "name": "Order Completed",
            "count": {"op": "eq", "value": 0},
            "within_days": 1,
            "where": [],
        }
    },
    {
        "event": {
            "name": "Order Completed",
            "count": {"op": "gte", "value": 3},
            "within_days": MAX_DAYS,
            "where": [
                {"property": "sku", "op": "in", "value": ["a", "b"]},
                {"property": "coupon", "op": "exists", "value": False},
            ],
        }
    },
    {"revenue": {"op": "gt", "value": 99.5}},
    {"revenue": {"op": "lte", "value": -10, "within_days": 30}},
    {"sessions": {"op": "eq", "value": 0, "within_days": 7}},
    {"sessions": {"op": "lt", "value": MAX_COUNT}},
    {"experience": {"friendly_id": "exp-1"}},
    {"experience": {"friendly_id": "exp-1", "variant": "B"}},
    {"segment": {"slug": "vips"}},
]


@pytest.mark.parametrize("rule", GOOD)
def test_a_good_rule_passes(rule):
    rule_validate(rule)


# --- references between segments ------------------------------------------------------------


def lookup(rules: dict):
    return rules.get


def refers_to(*slugs: str) -> dict:
    return {"any": [PLAN, *({"segment": {"slug": slug}} for slug in slugs)]}


@pytest.mark.parametrize(
    ("rule", "others", "path", "message"),
    [
        ({"segment": {"slug": "a"}}, {"a": PLAN}, "segment.slug", "cannot refer to itself"),
        (refers_to("b"), {"b": refers_to("a")}, "any[1].segment.slug", "b → a"),
        (
            {"all": [PLAN, {"not": refers_to("x", "b")}]},
            {"b": refers_to("c"), "c": refers_to("d"), "d": {"segment": {"slug": "a"}}, "x": PLAN},
            "all[1].not.any[2].segment.slug",
            "b → c → d → a",
        ),
        (refers_to("ghost"), {"b": PLAN}, "any[1].segment.slug", "no segment 'ghost'"),
    ],
    ids=["itself", "a-b-a", "a-b-c-d-a", "unknown"],
)
def test_references_that_loop_back_or_lead_nowhere_are_refused(rule, others, path, message):
    with pytest.raises(RuleError) as refused:
        rule_validate(rule, segment_rules=lookup(others), slug="a")
    assert refused.value.path == path
    assert message in refused.value.message


@pytest.mark.parametrize(
    "others",
    [
        {"b": PLAN},
        {"b": refers_to("c"), "c": PLAN},
        # A diamond: a → b → d and a → c → d.
        {"b": refers_to("d"), "c": refers_to("d"), "d": PLAN},
        # A loop that does not pass through a (b → c → b) is not a's to refuse, and must end.
        {"b": refers_to("c"), "c": refers_to("b")},
    ],
    ids=["direct", "chain", "diamond", "loop-elsewhere"],
)
def test_references_without_a_loop_through_this_segment_pass(others):
    rule = {"all": [refers_to("b"), *([refers_to("c")] if "c" in others else [])]}
    rule_validate(rule, segment_rules=lookup(others), slug="a")


def test_references_are_only_checked_when_asked():
    rule_validate({"segment": {"slug": "ghost"}})
    rule_validate({"segment": {"slug": "a"}}, slug="a")


@pytest.mark.django_db
def test_the_factory_default_rule_is_valid_and_runs_incrementally():
    """Tests that make a segment without a rule get one the product accepts and can run."""
    from profiles.segments import segment_recompute
    from tests.factories import GuestFactory, SegmentFactory

    segment = SegmentFactory()
    rule_validate(segment.rule)
    guest = GuestFactory(workspace=segment.workspace)
    segment_recompute(segment, guest_ids=[guest.pk])
    assert list(segment.memberships.values_list("guest_id", flat=True)) == [guest.pk]
