"""Experiment results: sums from stored TRACKING and goal events, statistics from gbstats."""

import re
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from gbstats.bayesian.tests import EffectBayesianABTest
from gbstats.frequentist.tests import SequentialTwoSidedTTest, TwoSidedTTest
from gbstats.models.statistics import ProportionStatistic, SampleMeanStatistic
from scipy import stats

from experiences.models import Experience, Metric
from experiences.results import experience_results, experience_summary
from profiles.models import Guest
from tests.factories import ExperienceFactory, VariantFactory
from tracking.models import Event

pytestmark = pytest.mark.django_db


def tracking_event(experience, variant, guest, source, at, *, status="SUCCESS"):
    """The TRACKING event of one flow execution, as the event store keeps it (seed 004)."""
    flow = {
        "ref": str(uuid.uuid4()),
        "occurredAt": int(at.timestamp() * 1000),
        "flowRef": str(experience.ref),
        "flowFriendlyId": experience.friendly_id,
        "flowVariantRef": str(variant.ref),
        "guestRef": str(guest.ref),
        "flowExecutionTimeMs": 3,
        "status": status,
    }
    return Event(
        workspace=source.workspace,
        source=source,
        guest=guest,
        type="TRACKING",
        name=experience.friendly_id,
        message_id=f"flow-{flow['ref']}",
        timestamp=at,
        received_at=at,
        properties={
            "variant": variant.name,
            "flowExecutionRef": flow["ref"],
            "arbitraryData": {
                "flowExecution": flow,
                "_bx_arbitraryDataV3ga": {"bxt": {"flowExecution": flow, "category": "EXECUTED"}},
            },
        },
    )


def goal(guest, source, at, index, **properties):
    return Event(
        workspace=source.workspace,
        source=source,
        guest=guest,
        type="track",
        name="Order Completed",
        message_id=f"{guest.ref}-{index}",
        timestamp=at,
        received_at=at,
        properties={"currency": "EUR", **properties},
    )


def exposed_guests(experience, variant, source, *, count, converted, start, spread_days=0):
    """``count`` guests exposed to ``variant``; ``converted`` of them buy inside the window.

    Every guest also has noise that must not count: a purchase before exposure, and the
    non-converters one purchase after the window. With ``spread_days`` the exposures (and
    their purchases) spread over that many days.
    """
    now = timezone.now()
    guests = Guest.objects.bulk_create(
        Guest(workspace=source.workspace, ref=uuid.uuid4(), first_seen=now, last_seen=now)
        for _ in range(count)
    )
    seen = [start + timedelta(days=i % (spread_days or 1)) for i in range(count)]
    events = [
        tracking_event(experience, variant, g, source, at)
        for g, at in zip(guests, seen, strict=False)
    ]
    # A second exposure later does not move the first; a failed execution is no exposure.
    events += [
        tracking_event(experience, variant, g, source, at + timedelta(days=1))
        for g, at in zip(guests[:10], seen, strict=False)
    ]
    events += [
        tracking_event(experience, variant, g, source, at - timedelta(days=1), status="FAILURE")
        for g, at in zip(guests[:5], seen, strict=False)
    ]
    events += [
        goal(g, source, at - timedelta(hours=1), 0) for g, at in zip(guests, seen, strict=False)
    ]
    events += [
        goal(g, source, at + timedelta(days=2), 1)
        for g, at in zip(guests[:converted], seen[:converted], strict=False)
    ]
    events += [
        goal(g, source, at + timedelta(days=9), 2)
        for g, at in zip(guests[converted:], seen[converted:], strict=False)
    ]
    Event.objects.bulk_create(events, batch_size=2000)
    return guests


@pytest.fixture
def experience(source):
    experience = ExperienceFactory(
        workspace=source.workspace, friendly_id="hero", name="Hero", status="live"
    )
    Metric.objects.create(
        experience=experience,
        event="Order Completed",
        window_days=7,
        condition={"property": "currency", "op": "eq", "value": "EUR"},
    )
    return experience


def test_results_per_variant(api, source, experience):
    start = timezone.now() - timedelta(days=20)
    control = VariantFactory(experience=experience, name="A", is_control=True)
    variant = VariantFactory(experience=experience, name="B")
    exposed_guests(experience, control, source, count=1000, converted=100, start=start)
    exposed_guests(experience, variant, source, count=1000, converted=130, start=start)

    results = api.get("/api/experiences/hero/results/").json()

    assert [v["exposed"] for v in results["variants"]] == [1000, 1000]
    a, b = results["metrics"][0]["variants"]
    assert (a["exposed"], a["total"], a["mean"]) == (1000, 100, 0.1)
    assert (b["exposed"], b["total"], b["mean"]) == (1000, 130, 0.13)
    assert b["uplift"] == pytest.approx(0.3)
    # Everyone bought an hour before exposure: the covariate has no variance, CUPED stays off.
    assert b["cupedApplied"] is False
    reference = SequentialTwoSidedTTest(
        ProportionStatistic(n=1000, sum=100), ProportionStatistic(n=1000, sum=130)
    ).compute_result()
    assert b["pValue"] == pytest.approx(reference.p_value, rel=1e-6)
    assert (b["upliftLow"], b["upliftHigh"]) == pytest.approx(reference.ci, rel=1e-6)
    bayes = EffectBayesianABTest(
        ProportionStatistic(n=1000, sum=100), ProportionStatistic(n=1000, sum=130)
    ).compute_result()
    assert b["chanceToBeatControl"] == pytest.approx(bayes.chance_to_win, rel=1e-6)
    assert b["expectedLoss"] == pytest.approx(bayes.risk[1], rel=1e-6)
    assert results["sampleRatio"]["mismatch"] is False
    assert (a["isControl"], b["isControl"]) == (True, False)
    assert results["metrics"][0]["conditionText"] == "currency = EUR"


def test_fixed_horizon_when_sequential_testing_is_off(api, source, experience):
    experience.sequential_testing = False
    experience.save()
    start = timezone.now() - timedelta(days=20)
    control = VariantFactory(experience=experience, name="A", is_control=True)
    variant = VariantFactory(experience=experience, name="B")
    exposed_guests(experience, control, source, count=400, converted=40, start=start)
    exposed_guests(experience, variant, source, count=400, converted=62, start=start)

    results = api.get("/api/experiences/hero/results/").json()

    b = results["metrics"][0]["variants"][1]
    reference = TwoSidedTTest(
        ProportionStatistic(n=400, sum=40), ProportionStatistic(n=400, sum=62)
    ).compute_result()
    assert b["pValue"] == pytest.approx(reference.p_value, rel=1e-6)
    assert results["method"]["sequential"] is False


def test_the_daily_series_is_cumulative_and_ends_at_the_result(api, source, experience):
    start = (timezone.now() - timedelta(days=20)).replace(hour=12)
    control = VariantFactory(experience=experience, name="A", is_control=True)
    variant = VariantFactory(experience=experience, name="B")
    exposed_guests(experience, control, source, count=300, converted=30, start=start, spread_days=3)
    exposed_guests(experience, variant, source, count=300, converted=60, start=start, spread_days=3)

    results = api.get("/api/experiences/hero/results/?daily=1").json()

    days = results["metrics"][0]["daily"]
    # Exposures on days 0-2; purchases two days after each (days 2-4); second exposures later.
    assert [d["date"] for d in days] == [
        (start + timedelta(days=i)).date().isoformat() for i in range(5)
    ]
    exposed = [[p["exposed"] for p in d["variants"]] for d in days]
    assert exposed == [[100, 100], [200, 200], [300, 300], [300, 300], [300, 300]]
    # Guests i, i+3, … are exposed on day i % 3; the first 30 (60) buy two days later.
    bought_a = [sum(1 for i in range(30) if i % 3 + 2 <= day) for day in range(5)]
    assert [round(d["variants"][0]["mean"] * exposed[k][0]) for k, d in enumerate(days)] == bought_a
    assert days[-1]["variants"][1]["uplift"] == pytest.approx(
        results["metrics"][0]["variants"][1]["uplift"]
    )
    daily_exposures = results["exposuresDaily"]
    assert [d["variants"][0]["new"] for d in daily_exposures] == [100, 100, 100]


def test_count_and_sum_per_guest(api, source, experience):
    start = timezone.now() - timedelta(days=5)
    control = VariantFactory(experience=experience, name="A", is_control=True)
    variant = VariantFactory(experience=experience, name="B")
    experience.metrics.all().delete()
    Metric.objects.create(
        experience=experience, role="primary", kind="count", event="Order Completed"
    )
    Metric.objects.create(
        experience=experience,
        role="secondary",
        kind="sum",
        event="Order Completed",
        property="revenue",
    )
    now = timezone.now()
    values = {control: [[10.0, 5.5], [], [3.25]], variant: [[20.0], [7.0, 7.0, 1.0], []]}
    events = []
    for arm, per_guest in values.items():
        for orders in per_guest:
            guest = Guest.objects.create(workspace=source.workspace, first_seen=now, last_seen=now)
            events.append(tracking_event(experience, arm, guest, source, start))
            events += [
                goal(guest, source, start + timedelta(hours=1 + i), i, revenue=amount)
                for i, amount in enumerate(orders)
            ]
            # A revenue that is not a number is left out of the sum (and so of the count).
            events.append(goal(guest, source, start + timedelta(hours=9), 99, revenue="n/a"))
    Event.objects.bulk_create(events)

    results = api.get("/api/experiences/hero/results/").json()

    count, revenue = results["metrics"]
    assert [v["total"] for v in count["variants"]] == [6, 7]  # with the "n/a" orders
    assert [v["total"] for v in revenue["variants"]] == pytest.approx([18.75, 35.0])
    sums = {
        name: SampleMeanStatistic(
            n=3, sum=sum(sum(o) for o in orders), sum_squares=sum(sum(o) ** 2 for o in orders)
        )
        for name, orders in (("A", values[control]), ("B", values[variant]))
    }
    reference = SequentialTwoSidedTTest(sums["A"], sums["B"]).compute_result()
    assert revenue["variants"][1]["pValue"] == pytest.approx(reference.p_value, rel=1e-6)


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

    results = api.get("/api/experiences/hero/results/?daily=1").json()

    assert (
        camel_case_keys(
            {k: v for k, v in results.items() if k != "metrics"}
            | {
                "metrics": [
                    {k: v for k, v in m.items() if k != "condition"} for m in results["metrics"]
                ]
            }
        )
        == []
    )
    schema = api.get("/api/schema/?format=json").json()["components"]["schemas"]
    assert set(results) == set(schema["Results"]["properties"])
    for metric in results["metrics"]:
        assert set(metric) == set(schema["MetricResult"]["properties"])
        for row in metric["variants"]:
            assert set(row) <= set(schema["MetricVariant"]["properties"])
    assert api.get("/api/experiences/hero/results/?daily=maybe").status_code == 400


def test_a_skewed_split_raises_the_sample_ratio_warning(api, source, experience):
    start = timezone.now() - timedelta(days=20)
    control = VariantFactory(experience=experience, name="A", is_control=True)
    variant = VariantFactory(experience=experience, name="B")
    exposed_guests(experience, control, source, count=1100, converted=0, start=start)
    exposed_guests(experience, variant, source, count=900, converted=0, start=start)

    results = api.get("/api/experiences/hero/results/").json()

    expected = stats.chisquare([1100, 900])
    assert results["sampleRatio"]["mismatch"] is True
    assert results["sampleRatio"]["pValue"] == pytest.approx(expected.pvalue, rel=1e-6)
    assert results["verdict"]["kind"] == "srm"
    assert experience_summary(experience)["sampleRatioMismatch"] is True


def test_exposures_before_going_live_are_flagged(source, experience):
    experience.live_since = timezone.now() - timedelta(days=2)
    experience.save()
    control = VariantFactory(experience=experience, name="A", is_control=True)
    variant = VariantFactory(experience=experience, name="B")
    exposed_guests(experience, control, source, count=20, converted=2, start=timezone.now())
    exposed_guests(
        experience, variant, source, count=3, converted=0, start=timezone.now() - timedelta(days=3)
    )
    exposed_guests(experience, variant, source, count=17, converted=2, start=timezone.now())

    start = experience_results(experience)["start"]

    assert start["ok"] is False
    assert start["exposedBeforeLive"] == 3
    assert "before it went live" in start["message"]


def test_the_summary_names_the_leader_and_its_significance(source, experience):
    start = timezone.now() - timedelta(days=20)
    control = VariantFactory(experience=experience, name="A", is_control=True)
    variant = VariantFactory(experience=experience, name="B")
    exposed_guests(experience, control, source, count=1000, converted=100, start=start)
    exposed_guests(experience, variant, source, count=1000, converted=200, start=start)

    summary = experience_summary(experience)

    assert summary["exposed"] == 2000
    assert summary["leader"] == "B"
    assert summary["significant"] is True
    assert summary["uplift"] == pytest.approx(1.0)
    assert summary["verdict"] == "winner"


def test_admin_shows_results_first_and_actions(admin_client, source, experience):
    start = timezone.now() - timedelta(days=20)
    control = VariantFactory(experience=experience, name="control", is_control=True)
    variant = VariantFactory(experience=experience, name="B")
    exposed_guests(experience, control, source, count=1100, converted=110, start=start)
    exposed_guests(experience, variant, source, count=900, converted=120, start=start)

    page = admin_client.get(f"/admin/experiences/experience/{experience.pk}/change/")
    html = page.content.decode()

    assert page.status_code == 200
    assert html.index('id="fp-verdict"') < html.index('id="fp-setup"') < html.index("id_name")
    assert "Sample-ratio mismatch: do not trust these numbers yet." in html
    assert "13.33%" in html  # B: 120 / 900
    assert 'data-chart="metric-chart-0"' in html and 'id="exposure-chart"' in html
    assert "control (control)" not in html and ">null<" not in html
    assert "Sequential testing is on" in html

    listing = admin_client.get("/admin/experiences/experience/").content.decode()
    assert "sample-ratio mismatch" in listing and "2,000" in listing

    admin_client.post(
        "/admin/experiences/experience/", {"action": "pause", "_selected_action": [experience.pk]}
    )
    experience.refresh_from_db()
    assert experience.status == Experience.Status.PAUSED
