"""An experiment from the outside: made through the API, run through ``/v2/callFlows``, fed
through ``/v1/track``, read back from the results API, and checked against what the test
itself sent, judged by GrowthBook's engine (an implementation independent of Footprint's)."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from django.utils import timezone
from gbstats.bayesian.tests import EffectBayesianABTest
from gbstats.frequentist.tests import SequentialTwoSidedTTest
from gbstats.models.statistics import (
    ProportionStatistic,
    RegressionAdjustedStatistic,
    SampleMeanStatistic,
)
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

GUESTS = 120


def gb(values, pre, binary):
    def plain(xs):
        if binary:
            return ProportionStatistic(n=len(xs), sum=sum(xs))
        return SampleMeanStatistic(n=len(xs), sum=sum(xs), sum_squares=sum(x * x for x in xs))

    return RegressionAdjustedStatistic(
        n=len(values),
        post_statistic=plain(values),
        pre_statistic=plain(pre),
        post_pre_sum_of_products=sum(x * y for x, y in zip(values, pre, strict=True)),
        theta=0,
    )


def test_results_equal_what_was_sent(api, door, source):
    created = api.post(
        "/api/experiences/",
        {
            "workspace": source.workspace.portal_id,
            "friendlyId": "checkout",
            "name": "Checkout",
            "variants": [{"name": "control", "isControl": True}, {"name": "personal"}],
            "metrics": [
                {"role": "primary", "kind": "conversion", "event": "Order Completed"},
                {
                    "role": "secondary",
                    "kind": "sum",
                    "event": "Order Completed",
                    "property": "revenue",
                    "name": "Revenue per guest",
                },
                {
                    "role": "guardrail",
                    "kind": "count",
                    "event": "Refund Requested",
                    "guardrailDirection": "must_not_rise",
                    "guardrailThreshold": 5,
                },
            ],
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    live = api.patch("/api/experiences/checkout/", {"status": "live"}, format="json")
    assert live.status_code == 200, live.content

    rng = random.Random(17)
    sent = {}  # guest -> (variant, converted, revenue, refunds, pre revenue, pre converted)
    before = (timezone.now() - timedelta(days=3)).isoformat()
    for index in range(GUESTS):
        user = f"u-{index}"
        # Some guests ordered before they ever saw the experience: CUPED's covariate.
        pre_revenue = 0.0
        if rng.random() < 0.3:
            pre_revenue = round(rng.uniform(5, 80), 2)
            door.post(
                "track",
                {
                    "userId": user,
                    "event": "Order Completed",
                    "timestamp": before,
                    "properties": {"revenue": pre_revenue},
                },
            )
        # Then the drain the committed exposure queued stores it, as a worker would.
        with door.capture(execute=True):
            decided = APIClient().post(
                "/v2/callFlows",
                {
                    "clientKey": source.workspace.client_key,
                    "friendlyId": "checkout",
                    "identifiers": {"provider": "user_id", "id": user},
                },
                format="json",
            )
        assert decided.status_code == 200, decided.content
        variant = decided.json()["variant"]["name"]
        rate = 0.25 if variant == "control" else 0.5
        revenue, converted, refunds = 0.0, 0, 0
        for _ in range(rng.choice([1, 1, 2]) if rng.random() < rate else 0):
            amount = round(rng.uniform(10, 120), 2)
            door.post(
                "track",
                {"userId": user, "event": "Order Completed", "properties": {"revenue": amount}},
            )
            revenue += amount
            converted = 1
        if rng.random() < 0.1:
            door.post("track", {"userId": user, "event": "Refund Requested"})
            refunds = 1
        sent[user] = (variant, converted, revenue, refunds, pre_revenue, int(pre_revenue > 0))

    results = api.get("/api/experiences/checkout/results/").json()
    by_name = {v["name"]: v for v in results["variants"]}
    arms = {
        name: [row for row in sent.values() if row[0] == name] for name in ("control", "personal")
    }
    for name, rows in arms.items():
        assert by_name[name]["exposed"] == len(rows)
    assert results["sampleRatio"]["pValue"] > 0
    assert results["start"]["ok"] is True
    assert results["method"]["sequential"] is True and results["method"]["cuped"] is True

    primary, revenue, guardrail = results["metrics"]
    expected = {
        # metric: (values column, pre column, binary)
        "primary": (1, 5, True),
        "revenue": (2, 4, False),
        "guardrail": (3, None, False),
    }
    for metric, key in ((primary, "primary"), (revenue, "revenue"), (guardrail, "guardrail")):
        column, pre_column, binary = expected[key]
        stats = {}
        for name, rows in arms.items():
            values = [float(r[column]) for r in rows]
            pre = [float(r[pre_column]) if pre_column else 0.0 for r in rows]
            row = next(v for v in metric["variants"] if v["name"] == name)
            assert row["exposed"] == len(rows)
            assert row["total"] == pytest.approx(sum(values), abs=1e-6)
            assert row["mean"] == pytest.approx(sum(values) / len(values), rel=1e-9)
            stats[name] = gb(values, pre, binary)
        personal = next(v for v in metric["variants"] if v["name"] == "personal")
        reference = SequentialTwoSidedTTest(stats["control"], stats["personal"]).compute_result()
        bayes = EffectBayesianABTest(stats["control"], stats["personal"]).compute_result()
        if reference.error_message:
            assert personal["pValue"] is None
            continue
        assert personal["uplift"] == pytest.approx(reference.expected, rel=1e-6)
        assert personal["upliftLow"] == pytest.approx(reference.ci[0], rel=1e-6)
        assert personal["upliftHigh"] == pytest.approx(reference.ci[1], rel=1e-6)
        assert personal["pValue"] == pytest.approx(reference.p_value, rel=1e-6, abs=1e-12)
        assert personal["chanceToBeatControl"] == pytest.approx(bayes.chance_to_win, rel=1e-6)
    # Pre-period revenue existed, so CUPED adjusted that metric; nobody refunded before.
    assert next(v for v in revenue["variants"] if not v["isControl"])["cupedApplied"] is True
    assert guardrail["variants"][1]["guardrail"] in ("safe", "pending", "breached")
    # Holm over 2 metrics x 1 variant: the smaller p-value doubled (capped at 1).
    p_values = sorted(m["variants"][1]["pValue"] for m in (primary, revenue))
    adjusted = sorted(m["variants"][1]["pValueAdjusted"] for m in (primary, revenue))
    assert adjusted[0] == pytest.approx(min(1, 2 * p_values[0]))
    assert results["verdict"]["headline"]

    daily = api.get("/api/experiences/checkout/results/?daily=1").json()
    last = daily["metrics"][0]["daily"][-1]["variants"]
    assert [p["exposed"] for p in last] == [v["exposed"] for v in primary["variants"]]
    assert daily["exposuresDaily"][-1]["variants"][0]["exposed"] == len(arms["control"])
