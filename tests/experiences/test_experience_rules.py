"""Rules for experiences that every caller goes through, and the database keeps."""

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.db.models import RestrictedError
from rest_framework.test import APIClient

from experiences.models import Assignment, Experience, FlowExecution, Variant
from experiences.services import ExperienceRuleError, experience_status_set
from tests.factories import ExperienceFactory, VariantFactory, WorkspaceFactory
from tracking.tasks import inbox_drain

pytestmark = pytest.mark.django_db


@pytest.fixture
def live(source):
    experience = ExperienceFactory(
        workspace=source.workspace, friendly_id="hero_banner", status=Experience.Status.LIVE
    )
    VariantFactory(experience=experience, name="A", is_control=True)
    VariantFactory(experience=experience, name="B")
    return experience


def call(source, browser_id="b-1"):
    payload = {
        "clientKey": source.workspace.client_key,
        "friendlyId": "hero_banner",
        "browserId": browser_id,
    }
    answer = APIClient().post("/v2/callFlows", payload, format="json").json()
    inbox_drain.delay()  # the workers store the exposure
    return answer


def test_a_second_control_violates_the_database_constraint(live):
    with pytest.raises(IntegrityError), transaction.atomic():
        VariantFactory(experience=live, name="C", is_control=True)

    # One control per experience: other experiences and non-controls are not affected.
    VariantFactory(experience=live, name="D")
    VariantFactory(experience=ExperienceFactory(workspace=live.workspace), is_control=True)
    assert live.variants.filter(is_control=True).count() == 1


def test_a_variant_with_guests_is_never_deleted_but_the_experience_can_be(source, live):
    assigned = Variant.objects.get(ref=call(source)["variant"]["ref"])

    with pytest.raises(RestrictedError), transaction.atomic():
        assigned.delete()
    assert Assignment.objects.filter(variant=assigned).count() == 1
    assert FlowExecution.objects.filter(variant=assigned).count() == 1

    live.delete()
    assert not Variant.objects.exists()
    assert not Assignment.objects.exists()
    assert not FlowExecution.objects.exists()


def test_the_api_moves_the_control_to_an_earlier_variant(api, source, live):
    a, b = live.variants.order_by("pk")
    Variant.objects.filter(pk=a.pk).update(is_control=False)
    Variant.objects.filter(pk=b.pk).update(is_control=True)

    answer = api.patch(
        "/api/experiences/hero_banner/",
        # A is saved first, while B is still stored as the control.
        {
            "variants": [
                {"ref": str(a.ref), "isControl": True},
                {"ref": str(b.ref), "isControl": False},
            ]
        },
        format="json",
    )

    assert answer.status_code == 200, answer.content
    assert list(live.variants.filter(is_control=True)) == [a]


def test_the_api_refuses_to_rename_a_live_experience_and_decisions_go_on(api, source, live):
    answer = api.patch("/api/experiences/hero_banner/", {"friendlyId": "other"}, format="json")

    assert answer.status_code == 400
    assert answer.json() == {"friendlyId": ["the friendlyId cannot change"]}
    assert call(source)["decision"] == "EXPOSED"


def test_status_changes_go_through_the_rules(source):
    draft = ExperienceFactory(workspace=source.workspace)
    VariantFactory(experience=draft, weight=0)

    with pytest.raises(ExperienceRuleError) as refused:
        experience_status_set(experience=draft, status=Experience.Status.LIVE)
    assert refused.value.field == "status"
    assert Experience.objects.get(pk=draft.pk).status == Experience.Status.DRAFT

    paused = experience_status_set(experience=draft, status=Experience.Status.PAUSED)
    assert paused.status == Experience.Status.PAUSED
    with pytest.raises(ExperienceRuleError):
        experience_status_set(experience=draft, status="archived")


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_the_first_of_two_controls():
    executor = MigrationExecutor(connection)
    before, after = [("experiences", "0001_initial")], [("experiences", "0002_variant_one_control")]
    workspace = WorkspaceFactory()
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    OldExperience = old.get_model("experiences", "Experience")
    OldVariant = old.get_model("experiences", "Variant")
    both = OldExperience.objects.create(workspace_id=workspace.pk, friendly_id="both", name="Both")
    first, second, plain = (
        OldVariant.objects.create(experience=both, name=name, is_control=control)
        for name, control in (("A", True), ("B", True), ("C", False))
    )
    single = OldExperience.objects.create(workspace_id=workspace.pk, friendly_id="one", name="One")
    only = OldVariant.objects.create(experience=single, name="A", is_control=True)

    executor = MigrationExecutor(connection)
    executor.migrate(after)
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    controls = dict(Variant.objects.values_list("pk", "is_control"))
    assert controls == {first.pk: True, second.pk: False, plain.pk: False, only.pk: True}
