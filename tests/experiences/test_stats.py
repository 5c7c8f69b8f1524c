"""Experiment statistics against independent reference values (scipy, numerical integration)."""

import math

import pytest
from scipy import integrate, stats

from experiences.stats import (
    chance_to_beat,
    chi_square_survival,
    compare,
    sample_ratio_check,
    two_proportion_z_test,
)

CASES = [
    # control converted/exposed, variant converted/exposed
    (100, 1000, 130, 1000),
    (48, 1200, 52, 1150),
    (20, 500, 9, 480),
    (1, 30, 4, 31),
]


@pytest.mark.parametrize(("ca", "na", "cb", "nb"), CASES)
def test_z_test_matches_a_pooled_two_proportion_test(ca, na, cb, nb):
    pooled = (ca + cb) / (na + nb)
    error = math.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb))
    z_expected = (cb / nb - ca / na) / error
    p_expected = 2 * stats.norm.sf(abs(z_expected))

    z, p = two_proportion_z_test(ca, na, cb, nb)

    assert z == pytest.approx(z_expected, rel=1e-9)
    assert p == pytest.approx(p_expected, rel=1e-6, abs=1e-12)


def test_z_test_agrees_with_a_chi_square_contingency_test():
    # For a 2x2 table without continuity correction, chi2 = z**2 and the p-values agree.
    table = [[100, 900], [130, 870]]
    chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
    z, p_z = two_proportion_z_test(100, 1000, 130, 1000)
    assert z**2 == pytest.approx(chi2, rel=1e-9)
    assert p_z == pytest.approx(p, rel=1e-6)


@pytest.mark.parametrize(("ca", "na", "cb", "nb"), CASES)
def test_chance_to_beat_matches_numerical_integration(ca, na, cb, nb):
    a = stats.beta(1 + ca, 1 + na - ca)
    b = stats.beta(1 + cb, 1 + nb - cb)
    expected, _ = integrate.quad(lambda x: b.pdf(x) * a.cdf(x), 0, 1, limit=200, epsabs=1e-10)

    assert chance_to_beat(ca, na, cb, nb) == pytest.approx(expected, abs=1e-6)


def test_chance_to_beat_for_large_counts_uses_a_close_approximation():
    a = stats.beta(1 + 6000, 1 + 60000 - 6000)
    b = stats.beta(1 + 6200, 1 + 60000 - 6200)
    expected, _ = integrate.quad(lambda x: b.pdf(x) * a.cdf(x), 0.08, 0.12, limit=400)
    assert chance_to_beat(6000, 60000, 6200, 60000) == pytest.approx(expected, abs=2e-3)


def test_confidence_interval_of_the_difference():
    result = compare(control_converted=100, control_exposed=1000, converted=130, exposed=1000)
    spread = math.sqrt(0.1 * 0.9 / 1000 + 0.13 * 0.87 / 1000)
    z = stats.norm.ppf(0.975)
    assert result.difference == pytest.approx(0.03)
    assert result.difference_low == pytest.approx(0.03 - z * spread)
    assert result.difference_high == pytest.approx(0.03 + z * spread)
    assert result.uplift == pytest.approx(0.3)
    assert result.uplift_low == pytest.approx((0.03 - z * spread) / 0.1)


@pytest.mark.parametrize(("x", "df"), [(0.5, 1), (3.84, 1), (10.0, 2), (25.3, 3), (80.0, 4)])
def test_chi_square_tail_matches_scipy(x, df):
    assert chi_square_survival(x, df) == pytest.approx(stats.chi2.sf(x, df), rel=1e-9, abs=1e-15)


def test_sample_ratio_mismatch():
    fine = sample_ratio_check([5030, 4970], [50, 50])
    skewed = sample_ratio_check([5300, 4700], [50, 50])
    expected = stats.chisquare([5300, 4700], [5000, 5000])

    assert not fine.mismatch
    assert skewed.mismatch
    assert skewed.chi_square == pytest.approx(expected.statistic)
    assert skewed.p_value == pytest.approx(expected.pvalue, rel=1e-6)
    assert not sample_ratio_check([9010, 990], [90, 10]).mismatch
