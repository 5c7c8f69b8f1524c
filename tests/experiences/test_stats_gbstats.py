"""Footprint's statistics against GrowthBook's engine (``gbstats``) on the same aggregates.

Random experiments (hypothesis) and edge cases (zero conversions, an empty variant, two or
three guests, ten million guests) go to both; estimates, intervals, p-values, chances to win,
expected losses and the sample-ratio check must agree to 1e-6 (relative, or absolute below
1e-9). ``teardown_module`` prints the largest difference seen per statistic (run with ``-s``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from gbstats.bayesian.tests import EffectBayesianABTest, EffectBayesianConfig
from gbstats.frequentist.tests import (
    FrequentistConfig,
    SequentialConfig,
    SequentialTwoSidedTTest,
    TwoSidedTTest,
)
from gbstats.models.statistics import (
    ProportionStatistic,
    RegressionAdjustedStatistic,
    SampleMeanStatistic,
)
from gbstats.utils import check_srm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiences.stats import Sample, compare, sample_ratio_check

REL, ABS = 1e-6, 1e-9
LARGEST: dict[str, float] = {}
COMPARED = {
    "uplift (fixed)": "TwoSidedTTest.compute_result().expected",
    "interval (fixed)": "TwoSidedTTest.compute_result().ci",
    "p-value (fixed)": "TwoSidedTTest.compute_result().p_value",
    "uplift (sequential)": "SequentialTwoSidedTTest.compute_result().expected",
    "interval (sequential)": "SequentialTwoSidedTTest.compute_result().ci",
    "p-value (sequential)": "SequentialTwoSidedTTest.compute_result().p_value",
    "chance to beat control": "EffectBayesianABTest.compute_result().chance_to_win",
    "expected loss": "EffectBayesianABTest.compute_result().risk[1]",
    "CUPED uplift (fixed)": "TwoSidedTTest on RegressionAdjustedStatistic .expected",
    "CUPED interval (fixed)": "TwoSidedTTest on RegressionAdjustedStatistic .ci",
    "CUPED p-value (fixed)": "TwoSidedTTest on RegressionAdjustedStatistic .p_value",
    "CUPED p-value (sequential)": "SequentialTwoSidedTTest on RegressionAdjustedStatistic",
    "CUPED chance to beat control": "EffectBayesianABTest on RegressionAdjustedStatistic",
    "sample-ratio p-value": "gbstats.utils.check_srm",
}


def close(name: str, ours: float, theirs: float) -> None:
    difference = abs(ours - theirs)
    if math.isfinite(difference):
        LARGEST[name] = max(LARGEST.get(name, 0.0), difference)
    assert math.isclose(ours, theirs, rel_tol=REL, abs_tol=ABS), (name, ours, theirs)


def teardown_module():
    print("\nlargest |Footprint - gbstats| per statistic:")
    for name, function in COMPARED.items():
        print(f"  {name:30} {LARGEST.get(name, float('nan')):.3e}  vs {function}")


def gb_statistic(sample: Sample, *, cuped: bool):
    def plain(n, total, squares):
        if sample.binary:
            return ProportionStatistic(n=n, sum=total)
        return SampleMeanStatistic(n=n, sum=total, sum_squares=squares)

    post = plain(sample.n, sample.sum, sample.sum_squares)
    if not cuped:
        return post
    return RegressionAdjustedStatistic(
        n=sample.n,
        post_statistic=post,
        pre_statistic=plain(sample.n, sample.pre_sum, sample.pre_sum_squares),
        post_pre_sum_of_products=sample.sum_products,
        theta=0,
    )


def check_against_gbstats(control: Sample, variant: Sample, *, cuped: bool) -> None:
    prefix = "CUPED " if cuped else ""
    ours = compare(control, variant, sequential_testing=False, cuped=cuped)
    theirs = TwoSidedTTest(
        gb_statistic(control, cuped=cuped),
        gb_statistic(variant, cuped=cuped),
        FrequentistConfig(alpha=0.05),
    ).compute_result()
    if theirs.error_message or ours.p_value is None:
        # Both refuse the same inputs: an empty arm, a control mean of 0, no variance.
        assert ours.p_value is None, (ours, theirs)
        assert theirs.error_message, (ours, theirs)
    else:
        close(f"{prefix}uplift (fixed)", ours.uplift, theirs.expected)
        close(f"{prefix}interval (fixed)", ours.uplift_low, theirs.ci[0])
        close(f"{prefix}interval (fixed)", ours.uplift_high, theirs.ci[1])
        close(f"{prefix}p-value (fixed)", ours.p_value, theirs.p_value)

    ours = compare(control, variant, sequential_testing=True, cuped=cuped)
    theirs = SequentialTwoSidedTTest(
        gb_statistic(control, cuped=cuped),
        gb_statistic(variant, cuped=cuped),
        SequentialConfig(alpha=0.05, sequential_tuning_parameter=5000),
    ).compute_result()
    if theirs.error_message or ours.p_value is None:
        assert ours.p_value is None and theirs.error_message, (ours, theirs)
    else:
        if not cuped:
            close("uplift (sequential)", ours.uplift, theirs.expected)
            close("interval (sequential)", ours.uplift_low, theirs.ci[0])
            close("interval (sequential)", ours.uplift_high, theirs.ci[1])
        close(f"{prefix}p-value (sequential)", ours.p_value, theirs.p_value)

    bayes = EffectBayesianABTest(
        gb_statistic(control, cuped=cuped),
        gb_statistic(variant, cuped=cuped),
        EffectBayesianConfig(),
    ).compute_result()
    if bayes.error_message or ours.chance_to_beat_control is None:
        assert ours.chance_to_beat_control is None and bayes.error_message, (ours, bayes)
    else:
        close(f"{prefix}chance to beat control", ours.chance_to_beat_control, bayes.chance_to_win)
        if not cuped:
            close("expected loss", ours.expected_loss, bayes.risk[1])


def sample_from(values: np.ndarray, pre: np.ndarray, binary: bool) -> Sample:
    return Sample(
        n=len(values),
        sum=float(values.sum()),
        sum_squares=float(np.square(values).sum()),
        binary=binary,
        pre_sum=float(pre.sum()),
        pre_sum_squares=float(np.square(pre).sum()),
        sum_products=float((values * pre).sum()),
    )


def simulated(rng, kind: str, n: int, level: float, lift: float, pre_link: float):
    """Guest values of one arm (and their pre-period values, correlated by ``pre_link``)."""
    habit = rng.gamma(2.0, level / 2, size=n)  # how active each guest is anyway
    pre_habit = pre_link * habit + (1 - pre_link) * rng.gamma(2.0, level / 2, size=n)
    if kind == "conversion":
        p, p_pre = np.clip(habit * (1 + lift), 0, 1), np.clip(pre_habit, 0, 1)
        return (rng.random(n) < p).astype(float), (rng.random(n) < p_pre).astype(float)
    counts, pre_counts = rng.poisson(habit * (1 + lift) * 5), rng.poisson(pre_habit * 5)
    if kind == "count":
        return counts.astype(float), pre_counts.astype(float)
    # Revenue: a few orders of a skewed size.
    return (
        counts * rng.lognormal(3.0, 1.0, size=n).round(2),
        pre_counts * rng.lognormal(3.0, 1.0, size=n).round(2),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    kind=st.sampled_from(["conversion", "count", "revenue"]),
    n_control=st.integers(0, 3000),
    n_variant=st.integers(0, 3000),
    level=st.floats(0.001, 0.6),
    lift=st.floats(-0.5, 1.0),
    pre_link=st.floats(0.0, 1.0),
    cuped=st.booleans(),
)
def test_random_experiments_agree_with_gbstats(
    seed, kind, n_control, n_variant, level, lift, pre_link, cuped
):
    rng = np.random.default_rng(seed)
    binary = kind == "conversion"
    control = sample_from(*simulated(rng, kind, n_control, level, 0.0, pre_link), binary)
    variant = sample_from(*simulated(rng, kind, n_variant, level, lift, pre_link), binary)
    check_against_gbstats(control, variant, cuped=cuped)


def conversions(n: int, converted: int, pre: int = 0, both: int = 0) -> Sample:
    """A conversion arm from counts: ``pre`` guests converted before exposure, ``both`` of
    them after it too."""
    return Sample(
        n=n, sum=converted, sum_squares=converted, binary=True,
        pre_sum=pre, pre_sum_squares=pre, sum_products=both,
    )  # fmt: skip


EDGES = {
    "zero conversions in both": (conversions(1000, 0), conversions(1000, 0)),
    "zero conversions in control": (conversions(1000, 0), conversions(1000, 12)),
    "zero conversions in the variant": (conversions(1000, 12), conversions(1000, 0)),
    "everybody converted in one": (conversions(50, 50), conversions(50, 40)),
    "the variant is empty": (conversions(1000, 100), conversions(0, 0)),
    "control is empty": (conversions(0, 0), conversions(1000, 100)),
    "one guest each": (conversions(1, 1), conversions(1, 0)),
    "two guests each": (conversions(2, 1), conversions(2, 1)),
    "three and two": (conversions(3, 1), conversions(2, 1)),
    "tiny": (conversions(7, 2), conversions(9, 5)),
    "huge, no difference": (conversions(10_000_000, 500_000), conversions(10_000_000, 500_000)),
    "huge, small lift": (conversions(10_000_000, 500_000), conversions(10_000_000, 502_000)),
    "huge, big lift": (conversions(10_000_000, 500_000), conversions(10_000_000, 600_000)),
    "rare": (conversions(200_000, 3), conversions(200_000, 9)),
    "uneven split": (conversions(100, 10), conversions(100_000, 11_000)),
    "pre-period with CUPED": (
        conversions(5000, 400, pre=600, both=150),
        conversions(5000, 480, pre=610, both=170),
    ),
    "pre-period with no pre conversions": (
        conversions(5000, 400, pre=0, both=0),
        conversions(5000, 480, pre=0, both=0),
    ),
}


@pytest.mark.parametrize("cuped", [False, True])
@pytest.mark.parametrize("edge", list(EDGES))
def test_edge_cases_agree_with_gbstats(edge, cuped):
    control, variant = EDGES[edge]
    check_against_gbstats(control, variant, cuped=cuped)


def test_a_mean_metric_where_one_guest_spent_everything():
    control = Sample(n=1000, sum=0.0, sum_squares=0.0)
    variant = Sample(n=1000, sum=5000.0, sum_squares=5000.0**2)
    check_against_gbstats(control, variant, cuped=False)
    control = Sample(n=1000, sum=100.0, sum_squares=100.0**2)  # one guest in control too
    check_against_gbstats(control, variant, cuped=False)


@settings(max_examples=200, deadline=None)
@given(
    exposed=st.lists(st.integers(0, 10_000_000), min_size=2, max_size=5),
    weights=st.lists(st.integers(0, 100), min_size=5, max_size=5),
)
def test_the_sample_ratio_check_agrees_with_gbstats(exposed, weights):
    weights = weights[: len(exposed)]
    if sum(weights) == 0:
        weights[0] = 1
    ours = sample_ratio_check(exposed, weights)
    close("sample-ratio p-value", ours.p_value, float(check_srm(exposed, weights)))
