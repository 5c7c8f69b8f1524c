"""Experiment results: counts from the database, statistics against independent values."""

import re
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from gbstats.bayesian.tests import EffectBayesianABTest
from gbstats.frequentist.tests import SequentialTwoSidedTTest
from gbstats.models.statistics import ProportionStatistic
from scipy import stats

from experiences.models import Experience, FlowExecution
from profiles.models import Guest
from tests.factories import ExperienceFactory, VariantFactory
from tracking.models import Event

pytestmark = pytest.mark.django_db


def exposed_guests(experience, variant, source, *, count, converted, start):
    """``count`` guests exposed to ``variant``; ``converted`` of them buy inside the window.

    Every guest also has noise that must not count: a purchase before exposure, and the
    non-converters one purchase after the window.
    """
    now = timezone.now()
    guests = Guest.objects.bulk_create(
        Guest(workspace=source.workspace, ref=uuid.uuid4(), first_seen=now, last_seen=now)
        for _ in range(count)
    )
    FlowExecution.objects.bulk_create(
        FlowExecution(experience=experience, variant=variant, guest=g, occurred_at=start)
        for g in guests
    )
    # A second exposure later does not move the first.
    FlowExecution.objects.bulk_create(
        FlowExecution(
            experience=experience, variant=variant, guest=g, occurred_at=start + timedelta(days=1)
        )
        for g in guests[:10]
    )

    def order(guest, at, index):
        return Event(
            workspace=source.workspace,
            source=source,
            guest=guest,
            type="track",
            name="Order Completed",
            message_id=f"{guest.ref}-{index}",
            timestamp=at,
            received_at=at,
            properties={"currency": "EUR"},
        )

    events = [order(g, start - timedelta(hours=1), 0) for g in guests]
    events += [order(g, start + timedelta(days=2), 1) for g in guests[:converted]]
    events += [order(g, start + timedelta(days=9), 2) for g in guests[converted:]]
    Event.objects.bulk_create(events, batch_size=2000)


@pytest.fixture
def experience(source):
    experience = ExperienceFactory(
        workspace=source.workspace,
        friendly_id="hero",
        name="Hero",
        status="live",
        goal_event="Order Completed",
        goal_window_days=7,
        goal_condition={"property": "currency", "op": "eq", "value": "EUR"},
    )
    return experience


def test_results_per_variant(api, source, experience):
    start = timezone.now() - timedelta(days=20)
    control = VariantFactory(experience=experience, name="A", is_control=True)
    variant = VariantFactory(experience=experience, name="B")
    exposed_guests(experience, control, source, count=1000, converted=100, start=start)
    exposed_guests(experience, variant, source, count=1000, converted=130, start=start)

    results = api.get("/api/experiences/hero/results/").json()

    a, b = results["variants"]
    assert (a["exposed"], a["converted"], a["conversionRate"]) == (1000, 100, 0.1)
    assert (b["exposed"], b["converted"], b["conversionRate"]) == (1000, 130, 0.13)
    assert b["uplift"] == pytest.approx(0.3)
    reference = SequentialTwoSidedTTest(
        ProportionStatistic(n=1000, sum=100), ProportionStatistic(n=1000, sum=130)
    ).compute_result()
    assert b["pValue"] == pytest.approx(reference.p_value, rel=1e-6)
    bayes = EffectBayesianABTest(
        ProportionStatistic(n=1000, sum=100), ProportionStatistic(n=1000, sum=130)
    ).compute_result()
    assert b["chanceToBeatControl"] == pytest.approx(bayes.chance_to_win, rel=1e-6)
    assert results["sampleRatio"]["mismatch"] is False
    assert (a["isControl"], b["isControl"]) == (True, False)


def camel_case_keys(value, path="") -> list[str]:
    """Paths of keys in ``value`` that are not camelCase."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            if not re.fullmatch(r"[a-z][a-zA-Z0-9]*", key):
                found.append(f"{path}.{key}")
            found += camel_case_keys(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += camel_case_keys(item, f"{path}[{index}]")
    return found


def test_results_speak_camel_case_and_match_their_schema(api, source, experience):
    start = timezone.now() - timedelta(days=20)
    control = VariantFactory(experience=experience, name="A", is_control=True)
    variant = VariantFactory(experience=experience, name="B")
    exposed_guests(experience, control, source, count=10, converted=1, start=start)
    exposed_guests(experience, variant, source, count=10, converted=2, start=start)

    results = api.get("/api/experiences/hero/results/").json()

    assert camel_case_keys(results) == []
    schema = api.get("/api/schema/?format=json").json()["components"]["schemas"]
    assert set(results) == set(schema["Results"]["properties"])
    for row in results["variants"]:
        assert set(row) == set(schema["VariantResult"]["properties"])


def test_a_skewed_split_raises_the_sample_ratio_warning(api, source, experience):
    start = timezone.now() - timedelta(days=20)
    control = VariantFactory(experience=experience, name="A", is_control=True)
    variant = VariantFactory(experience=experience, name="B")
    exposed_guests(experience, control, source, count=1100, converted=0, start=start)
    exposed_guests(experience, variant, source, count=900, converted=0, start=start)

    ratio = api.get("/api/experiences/hero/results/").json()["sampleRatio"]

    expected = stats.chisquare([1100, 900])
    assert ratio["mismatch"] is True
    assert ratio["pValue"] == pytest.approx(expected.pvalue, rel=1e-6)


def test_admin_shows_results_chart_and_actions(admin_client, source, experience):
    start = timezone.now() - timedelta(days=20)
    control = VariantFactory(experience=experience, name="A", is_control=True)
    variant = VariantFactory(experience=experience, name="B")
    exposed_guests(experience, control, source, count=1100, converted=110, start=start)
    exposed_guests(experience, variant, source, count=900, converted=120, start=start)

    page = admin_client.get(f"/admin/experiences/experience/{experience.pk}/change/")
    html = page.content.decode()

    assert page.status_code == 200
    assert "<svg" in html and "conversion rate per variant" in html
    assert "Sample ratio mismatch" in html
    assert "13.33%" in html  # B: 120 / 900

    admin_client.post(
        "/admin/experiences/experience/", {"action": "pause", "_selected_action": [experience.pk]}
    )
    experience.refresh_from_db()
    assert experience.status == Experience.Status.PAUSED
