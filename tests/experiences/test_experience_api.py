"""/api/experiences/: create and change experiences with their variants."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from experiences.models import Experience, Variant
from tests.conftest import ON_POSTGRES
from tests.factories import SegmentFactory, SourceFactory, UserFactory

pytestmark = pytest.mark.django_db

NEW = {
    "friendlyId": "hero_banner",
    "name": "Hero banner",
    "trafficAllocation": 50,
    "metrics": [
        {
            "role": "primary",
            "event": "Order Completed",
            "condition": {"property": "total", "op": "gte", "value": 20},
        }
    ],
    "variants": [
        {"name": "control", "isControl": True, "content": {"title": "Welcome"}},
        {"name": "personal", "weight": 30, "content": {"title": "Hi {{firstName}}"}},
    ],
}


def call(source, **body):
    payload = {"clientKey": source.workspace.client_key, "friendlyId": "hero_banner", **body}
    return APIClient().post("/v2/callFlows", payload, format="json")


def test_create_then_read_back(api, source):
    SegmentFactory(workspace=source.workspace, slug="vip", name="VIP", rule={"all": []})
    created = api.post("/api/experiences/", {**NEW, "targetSegments": ["vip"]}, format="json")

    assert created.status_code == 201, created.content
    body = api.get("/api/experiences/hero_banner/").json()
    assert body["workspace"] == source.workspace.portal_id
    assert body["status"] == "draft"
    assert body["trafficAllocation"] == 50
    assert body["targetSegments"] == ["vip"]
    assert [(v["name"], v["weight"], v["isControl"]) for v in body["variants"]] == [
        ("control", 50, True),
        ("personal", 30, False),
    ]


def test_patch_updates_variants_by_ref_adds_and_removes(api, source):
    api.post("/api/experiences/", NEW, format="json")
    control, personal = api.get("/api/experiences/hero_banner/").json()["variants"]

    changed = api.patch(
        "/api/experiences/hero_banner/",
        {
            "name": "Hero banner v2",
            # The two swap names, one keeps its unspecified fields, a third arrives.
            "variants": [
                {"ref": control["ref"], "name": "personal", "weight": 10},
                {"ref": personal["ref"], "name": "control"},
                {"name": "bold", "content": {"title": "NOW"}},
            ],
        },
        format="json",
    )

    assert changed.status_code == 200, changed.content
    variants = {v.ref.hex: v for v in Variant.objects.all()}
    kept = variants[control["ref"].replace("-", "")]
    assert (kept.name, kept.weight, kept.is_control) == ("personal", 10, True)
    swapped = variants[personal["ref"].replace("-", "")]
    assert (swapped.name, swapped.weight, swapped.content) == ("control", 30, personal["content"])
    assert Variant.objects.filter(name="bold").exists()
    assert Experience.objects.get().name == "Hero banner v2"

    dropped = api.patch(
        "/api/experiences/hero_banner/", {"variants": [{"ref": control["ref"]}]}, format="json"
    )
    assert dropped.status_code == 200
    assert list(Variant.objects.values_list("name", flat=True)) == ["personal"]


def test_a_variant_with_assigned_guests_cannot_be_removed(api, source):
    api.post("/api/experiences/", {**NEW, "trafficAllocation": 100}, format="json")
    api.patch("/api/experiences/hero_banner/", {"status": "live"}, format="json")
    assigned = call(source, browserId="b-1").json()["variant"]
    assert assigned is not None
    others = [v for v in Variant.objects.all() if str(v.ref) != assigned["ref"]]

    answer = api.patch(
        "/api/experiences/hero_banner/",
        {"variants": [{"ref": str(v.ref)} for v in others]},
        format="json",
    )

    assert answer.status_code == 400
    assert "has guests assigned" in answer.json()["variants"][0]
    assert Variant.objects.count() == 2


def test_an_api_change_reaches_decisions_at_once(api, source):
    api.post("/api/experiences/", {**NEW, "trafficAllocation": 100}, format="json")
    assert call(source, browserId="b-1").json()["decision"] == "DEFAULT"  # a draft

    api.patch("/api/experiences/hero_banner/", {"status": "live"}, format="json")
    assert call(source, browserId="b-1").json()["decision"] == "EXPOSED"

    api.patch("/api/experiences/hero_banner/", {"status": "paused"}, format="json")
    assert call(source, browserId="b-1").json()["decision"] == "DEFAULT"


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        ({"friendlyId": "Not A Slug"}, "friendlyId", "slug"),
        ({"trafficAllocation": 101}, "trafficAllocation", "100"),
        (
            {
                "metrics": [
                    {
                        "event": "Order Completed",
                        "condition": {"property": "total", "op": "near", "value": 1},
                    }
                ]
            },
            "metrics",
            "op",
        ),
        ({"variants": [{"name": "a"}, {"name": "a"}]}, "variants", "differ"),
        (
            {"variants": [{"name": "a", "isControl": True}, {"name": "b", "isControl": True}]},
            "variants",
            "control",
        ),
        ({"variants": [{"name": "a", "weight": 0}], "status": "live"}, "status", "weights"),
        ({"startsAt": "2026-02-01T00:00:00Z", "endsAt": "2026-01-01T00:00:00Z"}, "endsAt", "after"),
        ({"targetSegments": ["nope"]}, "targetSegments", "nope"),
    ],
)
def test_bad_definitions_are_refused_clearly(api, source, change, field, says):
    answer = api.post("/api/experiences/", {**NEW, **change}, format="json")

    assert answer.status_code == 400
    assert says in str(answer.json()[field])
    assert not Experience.objects.exists()


def test_friendly_id_is_unique_per_workspace_and_cannot_change(api, source):
    assert api.post("/api/experiences/", NEW, format="json").status_code == 201
    again = api.post("/api/experiences/", NEW, format="json")
    assert again.status_code == 400
    assert "already has" in again.json()["friendlyId"][0]

    renamed = api.patch("/api/experiences/hero_banner/", {"friendlyId": "other"}, format="json")
    assert renamed.status_code == 400
    assert Experience.objects.get().friendly_id == "hero_banner"


def test_segments_and_workspaces_of_others_are_out_of_reach(api, source):
    other = SourceFactory().workspace
    SegmentFactory(workspace=other, slug="theirs", name="Theirs", rule={"all": []})

    foreign_segment = api.post(
        "/api/experiences/", {**NEW, "targetSegments": ["theirs"]}, format="json"
    )
    assert foreign_segment.status_code == 400
    foreign_workspace = api.post(
        "/api/experiences/", {**NEW, "workspace": other.portal_id}, format="json"
    )
    assert foreign_workspace.status_code == 400
    assert "not a member" in foreign_workspace.json()["workspace"][0]

    outsider = APIClient()
    outsider.force_authenticate(UserFactory(workspaces=[other]))
    api.post("/api/experiences/", NEW, format="json")
    assert outsider.get("/api/experiences/hero_banner/").status_code == 404
    assert (
        outsider.patch(
            "/api/experiences/hero_banner/", {"status": "live"}, format="json"
        ).status_code
        == 404
    )


def test_a_repeat_call_is_a_handful_of_queries(api, source):
    api.post("/api/experiences/", {**NEW, "trafficAllocation": 100}, format="json")
    api.patch("/api/experiences/hero_banner/", {"status": "live"}, format="json")
    assert call(source, browserId="b-1").json()["decision"] == "EXPOSED"

    with CaptureQueriesContext(connection) as queries:
        again = call(source, browserId="b-1").json()

    assert again["decision"] == "EXPOSED"
    statements = [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]
    # Guest and assignment (1), then the event store: suppression, dedup key, identity (4),
    # session (2), the event and the segment check (2), and the flow execution and its session
    # ref (2), and the counters: the guest's day (1) and the rollups and catalogue (1; on
    # SQLite, which has no data-modifying WITH, one statement for each of their four tables).
    # The experience itself comes from the per-process cache.
    assert len(statements) <= (15 if ON_POSTGRES else 18), "\n".join(statements)
    assert not any("experiences_experience" in sql for sql in statements)
