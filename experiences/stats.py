"""Experiment statistics: conversion rates, uplift with a confidence interval, a two-proportion
z-test, the Bayesian chance to beat control and a sample-ratio-mismatch check.

Pure functions over counts, so results can be computed in SQL (counts per variant) and judged
here. Only the standard library is used: the normal distribution from ``statistics``, the
chi-square tail from the regularised incomplete gamma function, and the exact Beta comparison
(Evan Miller's closed form) in log space.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

Z95 = NormalDist().inv_cdf(0.975)
SRM_ALPHA = 0.001


@dataclass(frozen=True)
class Comparison:
    """A variant against control."""

    uplift: float | None  # relative: (p_variant - p_control) / p_control
    difference: float  # absolute: p_variant - p_control
    difference_low: float  # 95% confidence interval of the absolute difference
    difference_high: float
    uplift_low: float | None  # the same interval, relative to the control's rate
    uplift_high: float | None
    z: float | None
    p_value: float | None  # two-sided
    chance_to_beat_control: float


def rate(converted: int, exposed: int) -> float:
    return converted / exposed if exposed else 0.0


def compare(
    *, control_converted: int, control_exposed: int, converted: int, exposed: int
) -> Comparison:
    p_c, p_v = rate(control_converted, control_exposed), rate(converted, exposed)
    difference = p_v - p_c
    if control_exposed and exposed:
        spread = math.sqrt(p_c * (1 - p_c) / control_exposed + p_v * (1 - p_v) / exposed)
    else:
        spread = 0.0
    low, high = difference - Z95 * spread, difference + Z95 * spread
    z, p_value = two_proportion_z_test(control_converted, control_exposed, converted, exposed)
    return Comparison(
        uplift=difference / p_c if p_c else None,
        difference=difference,
        difference_low=low,
        difference_high=high,
        uplift_low=low / p_c if p_c else None,
        uplift_high=high / p_c if p_c else None,
        z=z,
        p_value=p_value,
        chance_to_beat_control=chance_to_beat(
            control_converted, control_exposed, converted, exposed
        ),
    )


def two_proportion_z_test(
    converted_a: int, exposed_a: int, converted_b: int, exposed_b: int
) -> tuple[float | None, float | None]:
    """z and the two-sided p-value of H0: both rates are equal (pooled standard error)."""
    if not exposed_a or not exposed_b:
        return None, None
    pooled = (converted_a + converted_b) / (exposed_a + exposed_b)
    error = math.sqrt(pooled * (1 - pooled) * (1 / exposed_a + 1 / exposed_b))
    if error == 0:
        return None, None
    z = (converted_b / exposed_b - converted_a / exposed_a) / error
    return z, 2 * (1 - NormalDist().cdf(abs(z)))


def chance_to_beat(converted_a: int, exposed_a: int, converted_b: int, exposed_b: int) -> float:
    """P(rate B > rate A) with uniform Beta(1, 1) priors: Beta(1 + conversions, 1 + misses)."""
    alpha_a, beta_a = 1 + converted_a, 1 + exposed_a - converted_a
    alpha_b, beta_b = 1 + converted_b, 1 + exposed_b - converted_b
    if alpha_b > 5000:  # the exact sum grows with alpha_b: use the normal approximation
        return _chance_normal(alpha_a, beta_a, alpha_b, beta_b)
    total = 0.0
    log_beta_ab = _log_beta(alpha_a, beta_a)
    for i in range(alpha_b):
        total += math.exp(
            _log_beta(alpha_a + i, beta_a + beta_b)
            - math.log(beta_b + i)
            - _log_beta(1 + i, beta_b)
            - log_beta_ab
        )
    return min(1.0, max(0.0, total))


def _chance_normal(alpha_a: float, beta_a: float, alpha_b: float, beta_b: float) -> float:
    def moments(alpha, beta):
        mean = alpha / (alpha + beta)
        return mean, alpha * beta / ((alpha + beta) ** 2 * (alpha + beta + 1))

    mean_a, var_a = moments(alpha_a, beta_a)
    mean_b, var_b = moments(alpha_b, beta_b)
    return 1 - NormalDist(mean_b - mean_a, math.sqrt(var_a + var_b)).cdf(0)


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


@dataclass(frozen=True)
class SampleRatio:
    chi_square: float
    p_value: float
    mismatch: bool


def sample_ratio_check(exposed: list[int], weights: list[float]) -> SampleRatio:
    """Chi-square goodness of fit of the exposed counts against the configured weights."""
    total, weight_sum = sum(exposed), sum(weights)
    if total == 0 or weight_sum <= 0 or len(exposed) < 2:
        return SampleRatio(chi_square=0.0, p_value=1.0, mismatch=False)
    chi = 0.0
    for observed, weight in zip(exposed, weights, strict=True):
        expected = total * weight / weight_sum
        if expected > 0:
            chi += (observed - expected) ** 2 / expected
    p_value = chi_square_survival(chi, len(exposed) - 1)
    return SampleRatio(chi_square=chi, p_value=p_value, mismatch=p_value < SRM_ALPHA)


def chi_square_survival(x: float, degrees: int) -> float:
    """P(X >= x) for a chi-square variable: the regularised upper incomplete gamma Q(k/2, x/2)."""
    if x <= 0:
        return 1.0
    return _gamma_q(degrees / 2, x / 2)


def _gamma_q(a: float, x: float) -> float:
    if x < a + 1:  # series for P, then Q = 1 - P
        term = total = 1 / a
        n = a
        for _ in range(10_000):
            n += 1
            term *= x / n
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1 - total * math.exp(-x + a * math.log(x) - math.lgamma(a)))
    # Continued fraction for Q (modified Lentz).
    tiny = 1e-300
    b = x + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return min(1.0, math.exp(-x + a * math.log(x) - math.lgamma(a)) * h)
