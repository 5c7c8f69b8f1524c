"""The experience admin applies the same rules as the API, to the page, its variants and actions.

Every refusal is checked against a save of the same page that is accepted, so that a test
cannot pass because the posted form itself was broken.
"""

import json
import re

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from experiences.models import Assignment, Experience, FlowExecution, Variant
from tests.factories import (
    ExperienceFactory,
    SegmentFactory,
    UserFactory,
    VariantFactory,
    WorkspaceFactory,
)
from tracking.tasks import inbox_drain

pytestmark = pytest.mark.django_db


@pytest.fixture
def live(source):
    experience = ExperienceFactory(
        workspace=source.workspace,
        friendly_id="hero_banner",
        name="Hero banner",
        status=Experience.Status.LIVE,
    )
    VariantFactory(experience=experience, name="A", is_control=True, content={"title": "Hello"})
    VariantFactory(experience=experience, name="B", content={"title": "Hi"})
    return experience


def call(source, friendly_id="hero_banner", browser_id="b-1"):
    payload = {
        "clientKey": source.workspace.client_key,
        "friendlyId": friendly_id,
        "browserId": browser_id,
    }
    answer = APIClient().post("/v2/callFlows", payload, format="json")
    inbox_drain.delay()  # the workers store the exposure
    return answer


def change_form(experience, variants=None, added=(), metrics=(), **fields):
    """The change page's POST as a browser sends it: the page's fields, overridden by ``fields``,
    the variants inline, each overridden by ``variants[name]`` (``DELETE`` to remove one), and
    the metrics inline with ``metrics`` added."""
    variants = variants or {}
    data = {
        "workspace": experience.workspace_id,
        "friendly_id": experience.friendly_id,
        "name": experience.name,
        "kind": experience.kind,
        "status": experience.status,
        "traffic_allocation": experience.traffic_allocation,
        "sequential_testing": "on" if experience.sequential_testing else "",
        "cuped": "on" if experience.cuped else "",
        "correction": experience.correction,
        "starts_at_0": "",
        "starts_at_1": "",
        "ends_at_0": "",
        "ends_at_1": "",
    }
    data |= fields
    rows = [
        {
            "id": variant.pk,
            "experience": experience.pk,
            "name": variant.name,
            "weight": variant.weight,
            "is_control": variant.is_control,
            "content": json.dumps(variant.content),
            **variants.get(variant.name, {}),
        }
        for variant in (experience.variants.order_by("pk") if experience.pk else [])
    ]
    stored = len(rows)
    rows += [{"experience": experience.pk, "weight": 50, "content": "{}", **row} for row in added]
    data |= {
        "variants-TOTAL_FORMS": len(rows),
        "variants-INITIAL_FORMS": stored,
        "variants-MIN_NUM_FORMS": 0,
        "variants-MAX_NUM_FORMS": 1000,
    }
    for index, row in enumerate(rows):
        for key, value in row.items():
            if value is False or value is None:  # an unticked checkbox is not sent
                continue
            data[f"variants-{index}-{key}"] = "on" if value is True else value
    stored_metrics = list(experience.metrics.order_by("pk")) if experience.pk else []
    metric_rows = [
        {
            "id": m.pk,
            "experience": experience.pk,
            "role": m.role,
            "kind": m.kind,
            "event": m.event,
            "condition": "" if m.condition is None else json.dumps(m.condition),
            "property": m.property,
            "window_days": m.window_days,
            "guardrail_direction": m.guardrail_direction,
            "guardrail_threshold": "" if m.guardrail_threshold is None else m.guardrail_threshold,
            "name": m.name,
        }
        for m in stored_metrics
    ]
    metric_rows += [
        {"experience": experience.pk, "role": "primary", "kind": "conversion", "window_days": 14,
         **row}
        for row in metrics
    ]  # fmt: skip
    data |= {
        "metrics-TOTAL_FORMS": len(metric_rows),
        "metrics-INITIAL_FORMS": len(stored_metrics),
        "metrics-MIN_NUM_FORMS": 0,
        "metrics-MAX_NUM_FORMS": 1000,
    }
    for index, row in enumerate(metric_rows):
        for key, value in row.items():
            if value is None:
                continue
            data[f"metrics-{index}-{key}"] = value
    return data


def save(client, experience, **changes):
    return client.post(
        f"/admin/experiences/experience/{experience.pk}/change/", change_form(experience, **changes)
    )


def refused(response, says):
    """The page came back with the error shown, instead of redirecting after a save."""
    assert response.status_code == 200, response.status_code
    html = response.content.decode()
    errors = re.findall(r'class="errorlist[^"]*"[^>]*>(.*?)</ul>', html, re.S)
    assert errors, "no error shown"
    assert any(says in error for error in errors), errors


def test_an_allowed_change_of_a_live_experience_is_saved(admin_client, source, live):
    answer = save(
        admin_client,
        live,
        name="Hero banner v2",
        traffic_allocation=40,
        variants={"A": {"weight": 10}},
        added=[{"name": "C", "weight": 5}],
    )

    assert answer.status_code == 302, answer.content.decode()
    live.refresh_from_db()
    assert (live.name, live.traffic_allocation) == ("Hero banner v2", 40)
    assert sorted(live.variants.values_list("name", "weight")) == [("A", 10), ("B", 50), ("C", 5)]


def test_the_friendly_id_of_a_live_experience_cannot_be_renamed(admin_client, source, live):
    assert call(source).json()["decision"] == "EXPOSED"

    page = admin_client.get(f"/admin/experiences/experience/{live.pk}/change/").content.decode()
    assert 'name="friendly_id"' not in page and 'name="workspace"' not in page
    assert "hero_banner" in page

    save(admin_client, live, friendly_id="hero_banner_2")

    assert Experience.objects.get(pk=live.pk).friendly_id == "hero_banner"
    assert call(source, browser_id="b-2").json()["decision"] == "EXPOSED"


def test_traffic_allocation_stays_within_100_percent(admin_client, source, live):
    refused(save(admin_client, live, traffic_allocation=150), "100")
    assert Experience.objects.get(pk=live.pk).traffic_allocation == 100


def test_a_second_control_is_refused(admin_client, source, live):
    refused(save(admin_client, live, variants={"B": {"is_control": True}}), "at most one")
    assert list(live.variants.filter(is_control=True).values_list("name", flat=True)) == ["A"]


def test_the_control_can_move_to_another_variant(admin_client, source, live):
    # B is saved after A, so A must give up the control first, whichever is stored first.
    a, b = live.variants.order_by("pk")
    answer = save(
        admin_client, live, variants={"A": {"is_control": False}, "B": {"is_control": True}}
    )
    assert answer.status_code == 302, answer.content.decode()
    assert list(live.variants.filter(is_control=True)) == [b]

    answer = save(
        admin_client, live, variants={"A": {"is_control": True}, "B": {"is_control": False}}
    )
    assert answer.status_code == 302, answer.content.decode()
    assert list(live.variants.filter(is_control=True)) == [a]


def test_a_variant_guests_are_assigned_to_cannot_be_deleted(admin_client, source, live):
    assigned = call(source).json()["variant"]
    name = assigned["name"]

    answer = save(admin_client, live, variants={name: {"DELETE": True}})

    refused(answer, "has guests assigned; set its weight to 0")
    assert Variant.objects.filter(ref=assigned["ref"]).exists()
    assert Assignment.objects.filter(variant__ref=assigned["ref"]).count() == 1
    assert FlowExecution.objects.filter(variant__ref=assigned["ref"]).count() == 1
    # Weighting it to 0 is the way to stop showing it; the guest keeps the variant.
    weighted = save(admin_client, live, variants={name: {"weight": 0}})
    assert weighted.status_code == 302, weighted.content.decode()
    assert call(source).json()["variant"]["ref"] == assigned["ref"]


def test_a_variant_nobody_saw_can_be_deleted(admin_client, source, live):
    answer = save(admin_client, live, variants={"B": {"DELETE": True}})

    assert answer.status_code == 302, answer.content.decode()
    assert list(live.variants.values_list("name", flat=True)) == ["A"]


def test_a_live_experience_keeps_some_weight(admin_client, source, live):
    refused(
        save(admin_client, live, variants={"A": {"weight": 0}, "B": {"weight": 0}}),
        "weights add up to more than 0",
    )
    assert sorted(live.variants.values_list("weight", flat=True)) == [50, 50]


def test_a_draft_goes_live_with_its_first_weights_in_one_save(admin_client, source):
    draft = ExperienceFactory(workspace=source.workspace)
    VariantFactory(experience=draft, name="A", weight=0)

    answer = save(admin_client, draft, status="live", variants={"A": {"weight": 10}})

    assert answer.status_code == 302, answer.content.decode()
    assert Experience.objects.get(pk=draft.pk).status == Experience.Status.LIVE


def test_a_new_live_experience_with_variants_is_created_in_one_save(admin_client, source):
    blank = Experience(workspace=source.workspace, friendly_id="fresh", name="Fresh", status="live")
    data = change_form(blank, added=[{"name": "A", "is_control": True}, {"name": "B"}])

    answer = admin_client.post("/admin/experiences/experience/add/", data)

    assert answer.status_code == 302, answer.content.decode()
    created = Experience.objects.get(friendly_id="fresh")
    assert sorted(created.variants.values_list("name", "is_control")) == [
        ("A", True),
        ("B", False),
    ]


def test_segments_of_another_workspace_are_refused(admin_client, source, live):
    theirs = SegmentFactory(
        workspace=WorkspaceFactory(), slug="theirs", name="Theirs", rule={"all": []}
    )

    refused(save(admin_client, live, target_segments=[theirs.pk]), "no segment &#x27;theirs&#x27;")
    assert not live.target_segments.exists()


def test_the_metrics_are_checked_by_the_rules(admin_client, source, live):
    condition = json.dumps({"property": "revenue", "op": "near", "value": 1})
    order = {"event": "Order Completed"}

    refused(save(admin_client, live, metrics=[{**order, "condition": condition}]), "op")
    refused(save(admin_client, live, metrics=[order, order]), "exactly one primary metric")
    refused(save(admin_client, live, metrics=[{**order, "kind": "sum"}]), "numeric property")
    refused(
        save(admin_client, live, metrics=[order, {**order, "role": "guardrail"}]),
        "which way it must not move",
    )
    assert not live.metrics.exists()

    accepted = save(
        admin_client,
        live,
        metrics=[
            order,
            {**order, "role": "guardrail", "kind": "sum", "property": "revenue",
             "guardrail_direction": "must_not_drop", "guardrail_threshold": 2},
        ],
    )  # fmt: skip
    assert accepted.status_code == 302
    assert [m.role for m in live.metrics.all()] == ["primary", "guardrail"]
    # An empty condition shows as nothing, not as null.
    page = admin_client.get(f"/admin/experiences/experience/{live.pk}/change/").content.decode()
    assert ">null</textarea>" not in page


def test_launch_refuses_an_experience_without_weight_and_launches_the_rest(
    admin_client, source, live
):
    ready = ExperienceFactory(workspace=source.workspace)
    VariantFactory(experience=ready, name="A")
    empty = ExperienceFactory(workspace=source.workspace, name="Empty")
    VariantFactory(experience=empty, name="A", weight=0)

    answer = admin_client.post(
        "/admin/experiences/experience/",
        {"action": "launch", "_selected_action": [ready.pk, empty.pk]},
        follow=True,
    )

    html = answer.content.decode()
    assert "Launched 1 experience(s)." in html
    assert "Empty: a live experience needs variants whose weights add up to more than 0" in html
    assert Experience.objects.get(pk=ready.pk).status == Experience.Status.LIVE
    assert Experience.objects.get(pk=empty.pk).status == Experience.Status.DRAFT


def test_pause_and_complete_reach_decisions_at_once(admin_client, source, live):
    assert call(source).json()["decision"] == "EXPOSED"

    for action, status in (("pause", "paused"), ("launch", "live"), ("complete", "completed")):
        admin_client.post(
            "/admin/experiences/experience/", {"action": action, "_selected_action": [live.pk]}
        )
        assert Experience.objects.get(pk=live.pk).status == status
        expected = "EXPOSED" if status == "live" else "DEFAULT"
        assert call(source).json()["decision"] == expected


def test_without_the_variants_inline_the_page_still_checks_the_launch(client, source):
    # A staff user who may change experiences but not their variants gets no inline.
    user = UserFactory(is_staff=True, workspaces=[source.workspace])
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_experience", "change_experience"])
    )
    client.force_login(user)
    draft = ExperienceFactory(workspace=source.workspace)
    VariantFactory(experience=draft, weight=0)
    data = {k: v for k, v in change_form(draft).items() if not k.startswith("variants-")}
    url = f"/admin/experiences/experience/{draft.pk}/change/"

    refused(client.post(url, {**data, "status": "live"}), "weights add up to more than 0")
    assert Experience.objects.get(pk=draft.pk).status == Experience.Status.DRAFT
    assert client.post(url, {**data, "status": "paused"}).status_code == 302
    assert Experience.objects.get(pk=draft.pk).status == Experience.Status.PAUSED
