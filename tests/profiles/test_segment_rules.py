"""The rule compiler on a small workspace: one assertion per kind of condition."""

import pytest
from django.utils import timezone

from profiles.models import Guest, Segment
from profiles.segment_sql import members_query
from profiles.segments import segment_recompute
from tests.factories import SegmentFactory

pytestmark = pytest.mark.django_db


def test_each_condition_kind_selects_the_right_guests(door):
    door.post(
        "identify",
        {"userId": "a", "traits": {"plan": "pro", "age": 30, "vip": True, "email": "a@ex.io"}},
    )
    door.post("identify", {"userId": "b", "traits": {"plan": "free", "age": "30"}})
    door.post(
        "track",
        {"userId": "a", "event": "Order Completed", "properties": {"revenue": 50, "sku": "x"}},
    )
    door.post("track", {"userId": "a", "event": "Order Completed", "properties": {"revenue": 60}})
    ws = door.source.workspace_id
    now = timezone.now()

    def m(rule):
        return sorted(
            g.identities.get(kind="user_id").value
            for g in members_query(rule, workspace_id=ws, now=now)
        )

    assert m({"trait": {"key": "plan", "op": "eq", "value": "pro"}}) == ["a"]
    assert m({"trait": {"key": "age", "op": "gte", "value": 30}}) == ["a"]
    assert m({"trait": {"key": "age", "op": "eq", "value": "30"}}) == ["b"]
    assert m({"trait": {"key": "vip", "op": "eq", "value": True}}) == ["a"]
    assert m({"trait": {"key": "vip", "op": "neq", "value": True}}) == ["b"]
    assert m({"trait": {"key": "plan", "op": "contains", "value": "r"}}) == ["a", "b"]
    assert m({"trait": {"key": "plan", "op": "in", "value": ["free", 3]}}) == ["b"]
    assert m({"trait": {"key": "vip", "op": "exists", "value": False}}) == ["b"]
    assert m(
        {"event": {"name": "Order Completed", "count": {"op": "gte", "value": 2}, "within_days": 7}}
    ) == ["a"]
    assert m({"event": {"name": "Order Completed", "count": {"op": "eq", "value": 0}}}) == ["b"]
    assert m(
        {
            "event": {
                "name": "Order Completed",
                "where": [{"property": "sku", "op": "eq", "value": "x"}],
            }
        }
    ) == ["a"]
    assert m({"revenue": {"op": "gt", "value": 100}}) == ["a"]
    assert m({"revenue": {"op": "lt", "value": 100}}) == ["b"]
    assert m({"sessions": {"op": "gte", "value": 1, "within_days": 1}}) == ["a", "b"]
    assert m({"field": {"name": "email_domain", "op": "eq", "value": "EX.io"}}) == ["a"]
    assert m({"field": {"name": "last_seen", "op": "gte", "value": {"days_ago": 1}}}) == ["a", "b"]
    assert (
        m({"not": {"any": [{"field": {"name": "guest_type", "op": "eq", "value": "customer"}}]}})
        == []
    )
    seg = SegmentFactory(
        workspace=door.source.workspace,
        slug="pro",
        name="Pro",
        rule={"trait": {"key": "plan", "op": "eq", "value": "pro"}},
    )
    run = segment_recompute(seg)
    assert (run.entered, run.exited) == (1, 0)
    assert m({"segment": {"slug": "pro"}}) == ["a"]


@pytest.mark.parametrize(
    "rule",
    [
        {"event": {"name": "Order Completed", "count": {"op": "lte", "value": 1}}},
        {"revenue": {"op": "lt", "value": 100}},
        {"sessions": {"op": "eq", "value": 0}},
        {"not": {"segment": {"slug": "pro"}}},
        {
            "any": [
                {"experience": {"friendly_id": "x"}},
                {"trait": {"key": "plan", "op": "eq", "value": "free"}},
            ]
        },
    ],
)
def test_a_run_for_some_guests_selects_what_a_full_run_does_among_them(door, rule):
    for user, plan in (("a", "pro"), ("b", "free"), ("c", "pro")):
        door.post("identify", {"userId": user, "traits": {"plan": plan}})
    door.post("track", {"userId": "a", "event": "Order Completed", "properties": {"revenue": 150}})
    ws = door.source.workspace_id
    SegmentFactory(
        workspace=door.source.workspace,
        slug="pro",
        name="Pro",
        rule={"trait": {"key": "plan", "op": "eq", "value": "pro"}},
    )
    segment_recompute(Segment.objects.get(slug="pro"))
    now = timezone.now()
    everyone = set(members_query(rule, workspace_id=ws, now=now).values_list("pk", flat=True))
    ids = sorted(
        Guest.objects.filter(identities__value__in=["a", "b"]).values_list("pk", flat=True)
    )

    some = set(
        members_query(rule, workspace_id=ws, now=now, guest_ids=ids).values_list("pk", flat=True)
    )

    assert some == everyone & set(ids)
