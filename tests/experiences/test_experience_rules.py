"""Rules for experiences that every caller goes through, and the database keeps."""

import pytest

from experiences.models import Experience
from experiences.services import ExperienceRuleError, experience_status_set
from tests.factories import ExperienceFactory, VariantFactory

pytestmark = pytest.mark.django_db


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
