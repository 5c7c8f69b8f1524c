"""Experiment statistics against independent reference values (scipy, textbook formulas).

The comparison with GrowthBook's engine is in ``test_stats_gbstats.py``; the sequential test's
false-positive rate under peeking in ``test_stats_simulation.py``.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from experiences.stats import (
    BENJAMINI_HOCHBERG,
    HOLM,
    Sample,
    compare,
    p_values_adjust,
    sample_ratio_check,
)


def conversions(n, converted):
    return Sample(n=n, sum=converted, sum_squares=converted, binary=True)


def test_the_fixed_horizon_test_is_welchs_t_test_on_the_relative_uplift():
    control, variant = conversions(1000, 100), conversions(1000, 130)
    result = compare(control, variant, sequential_testing=False)
    p_c, p_v = 0.1, 0.13
    var_c, var_v = p_c * (1 - p_c), p_v * (1 - p_v)
    # Delta method for (p_v - p_c) / p_c.
    se = math.sqrt(var_v / (p_c**2 * 1000) + var_c * p_v**2 / (p_c**4 * 1000))
    dof = (var_c / 1000 + var_v / 1000) ** 2 / (
        (var_c / 1000) ** 2 / 999 + (var_v / 1000) ** 2 / 999
    )
    assert result.uplift == pytest.approx(0.3)
    assert result.uplift_low == pytest.approx(0.3 - stats.t.ppf(0.975, dof) * se)
    assert result.p_value == pytest.approx(2 * stats.t.sf(0.3 / se, dof))
    assert result.chance_to_beat_control == pytest.approx(stats.norm.cdf(0.3 / se))
    assert not result.cuped and not result.sequential


def test_the_sequential_interval_is_wider_than_the_fixed_one_and_contains_it():
    control, variant = conversions(4000, 400), conversions(4000, 470)
    fixed = compare(control, variant, sequential_testing=False)
    always_valid = compare(control, variant)
    assert always_valid.sequential
    assert always_valid.uplift == pytest.approx(fixed.uplift)
    assert always_valid.uplift_low < fixed.uplift_low < fixed.uplift_high < always_valid.uplift_high
    assert always_valid.p_value > fixed.p_value


def test_cuped_narrows_the_interval_when_the_pre_period_predicts_the_metric():
    rng = np.random.default_rng(3)
    arms = []
    for lift in (0.0, 0.05):
        habit = rng.gamma(2.0, 5.0, size=5000)
        pre, post = rng.poisson(habit), rng.poisson(habit * (1 + lift))
        arms.append(
            Sample(
                n=5000,
                sum=post.sum(),
                sum_squares=(post**2).sum(),
                pre_sum=pre.sum(),
                pre_sum_squares=(pre**2).sum(),
                sum_products=(post * pre).sum(),
            )  # fmt: skip
        )
    plain = compare(*arms, cuped=False)
    adjusted = compare(*arms)
    assert adjusted.cuped and adjusted.theta > 0.5
    assert (adjusted.uplift_high - adjusted.uplift_low) < 0.6 * (
        plain.uplift_high - plain.uplift_low
    )


def test_without_pre_period_data_cuped_changes_nothing():
    control, variant = conversions(1000, 100), conversions(1000, 130)
    assert compare(control, variant) == compare(control, variant, cuped=False)


def test_expected_loss_is_the_mean_shortfall_of_the_posterior():
    result = compare(conversions(2000, 200), conversions(2000, 190), sequential_testing=False)
    se = (result.uplift_high - result.uplift) / stats.t.ppf(0.975, 3997.7)
    posterior = stats.norm(result.uplift, se)
    expected = posterior.expect(lambda x: max(-x, 0.0), lb=-1, ub=1)
    assert result.expected_loss == pytest.approx(expected, rel=1e-3)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(0, 1)), min_size=1, max_size=12))
def test_benjamini_hochberg_matches_scipy(p_values):
    adjusted = p_values_adjust(p_values, BENJAMINI_HOCHBERG)
    given_p = [p for p in p_values if p is not None]
    expected = iter(stats.false_discovery_control(given_p) if given_p else [])
    for p, a in zip(p_values, adjusted, strict=True):
        if p is None:
            assert a is None
        else:
            assert a == pytest.approx(next(expected), abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=7), st.floats(0.001, 0.2))
def test_holm_rejects_exactly_what_the_step_down_procedure_rejects(p_values, alpha):
    """Holm's procedure: walk the p-values up from the smallest, rejecting while
    p_(k) <= alpha / (m - k + 1); an adjusted p-value <= alpha means the same rejection."""
    m = len(p_values)
    rejected = set()
    for k, (p, i) in enumerate(sorted((p, i) for i, p in enumerate(p_values)), start=1):
        if p > alpha / (m - k + 1):
            break
        rejected.add(i)
    adjusted = p_values_adjust(p_values, HOLM)
    assert {i for i, a in enumerate(adjusted) if a <= alpha} == rejected
    assert all(a >= p for a, p in zip(adjusted, p_values, strict=True))


def test_an_unknown_correction_is_refused_by_name():
    with pytest.raises(ValueError, match="no correction 'bonferonni'"):
        p_values_adjust([0.01], "bonferonni")


@pytest.mark.parametrize(
    ("edge", "reason"),
    [
        ((conversions(0, 0), conversions(100, 10)), "too few guests"),
        ((conversions(100, 0), conversions(100, 10)), "control's mean is 0"),
        ((conversions(100, 10), conversions(100, 0)), "no variation"),
    ],
)
def test_what_cannot_be_computed_says_why(edge, reason):
    result = compare(*edge)
    assert result.p_value is None and result.uplift is None
    assert reason in result.reason


def test_sample_ratio_mismatch():
    fine = sample_ratio_check([5030, 4970], [50, 50])
    skewed = sample_ratio_check([5300, 4700], [50, 50])
    expected = stats.chisquare([5300, 4700], [5000, 5000])

    assert not fine.mismatch
    assert skewed.mismatch
    assert skewed.chi_square == pytest.approx(expected.statistic)
    assert skewed.p_value == pytest.approx(expected.pvalue, rel=1e-6)
    assert not sample_ratio_check([9010, 990], [90, 10]).mismatch
