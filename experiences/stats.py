"""Experiment statistics: one variant against control on one metric, from aggregates.

Everything here is a pure function of per-variant aggregates (guests ``n``, ``Σx``, ``Σx²``
and, for CUPED, the same over the pre-exposure covariate ``y`` and ``Σxy``), so the database
sums per variant and this module judges. The methods and their reference:

- **Means and variances.** A conversion metric is a 0/1 mean with variance ``p(1 - p)``; a count
  or sum per guest has the sample variance ``(Σx² - (Σx)²/n) / (n - 1)``. (GrowthBook's
  ``ProportionStatistic`` and ``SampleMeanStatistic``.)
- **CUPED** (Deng et al. 2013). ``θ = cov(x, y) / var(y)`` over both arms pooled; each arm's
  mean becomes ``x̄ - θ ȳ`` and its variance ``var(x) + θ² var(y) - 2θ cov(x, y)``. When the
  covariate has no variance (nobody did anything in the pre-period) θ is 0 and nothing
  changes. (``RegressionAdjustedStatistic``, ``compute_theta``.)
- **Relative uplift** ``(x̄_v - x̄_c) / x̄_c`` with the delta-method variance
  ``var_v / (x̄_c² n_v) + var_c x̄_v² / (x̄_c⁴ n_c)`` (the control's and variant's unadjusted means).
- **Fixed-horizon test**: Welch's t-test on that estimate with the Welch–Satterthwaite degrees
  of freedom; two-sided p-value and a ``1 - α`` interval. (``TwoSidedTTest``.)
- **Sequential test** (the default): the asymptotic confidence sequence of Waudby-Smith et al.
  (2023, eq. 9), with the tuning ``N*`` that makes it tightest near 5,000 guests, and its
  always-valid p-value (eq. 155). Valid however often it is looked at, so stopping the first
  day it says "significant" keeps the false-positive rate at α. (``SequentialTwoSidedTTest``.)
- **Bayesian**: with a flat prior the posterior of the relative uplift is normal with the
  estimate and its delta-method variance; chance to beat control is ``P(uplift > 0)`` and the
  expected loss of shipping the variant is ``E[max(-uplift, 0)]``, in closed form.
  (``EffectBayesianABTest`` with an improper prior.)
- **Multiple comparisons**: Holm–Bonferroni (family-wise error) or Benjamini–Hochberg (false
  discovery rate) over the p-values of every variant on every primary and secondary metric.
- **Sample-ratio mismatch**: chi-square goodness of fit of the exposed counts against the
  weights; a mismatch below p = 0.001. (``gbstats.utils.check_srm``.)

``tests/experiences/test_stats_gbstats.py`` feeds the same aggregates to these functions and to
``gbstats`` and asserts the same numbers; ``test_stats_simulation.py`` checks the sequential
test's false-positive rate when an A/A experiment is looked at every day. The functions take
numpy arrays as well as numbers, so the simulation runs thousands of experiments at once.

Where Footprint decides differently from gbstats, on purpose: when one arm has no variance
(no conversions at all, or every guest converted) but the other has some, gbstats gives up;
Footprint does too (it reports no p-value), so that a handful of guests cannot look decisive.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


class _OnFirstUse:
    """A module imported the first time one of its names is read. numpy and scipy take about
    50 MiB a process; web processes that never compute results should not carry them."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str):
        value = getattr(importlib.import_module(self._name), attribute)
        setattr(self, attribute, value)
        return value


np = _OnFirstUse("numpy")
scipy_stats = _OnFirstUse("scipy.stats")

ALPHA = 0.05
SRM_ALPHA = 0.001
# The sequential test's tuning: the total sample size at which the confidence sequence is
# tightest (GrowthBook's default). It changes the width, never the validity.
SEQUENTIAL_TUNING = 5000
HOLM = "holm"
BENJAMINI_HOCHBERG = "bh"
CORRECTIONS = (HOLM, BENJAMINI_HOCHBERG)


@dataclass(frozen=True)
class Sample:
    """One variant's aggregates of one metric over its exposed guests.

    ``binary``: the metric is a conversion (every value 0 or 1). ``pre_*``: the same metric
    for the same guests in the pre-exposure window (CUPED's covariate); ``sum_products`` is
    ``Σ value × pre-value``.
    """

    n: int
    sum: float
    sum_squares: float
    binary: bool = False
    pre_sum: float = 0.0
    pre_sum_squares: float = 0.0
    sum_products: float = 0.0

    @property
    def mean(self) -> float:
        return self.sum / self.n if self.n else 0.0

    @property
    def variance(self) -> float:
        return _variance(self.n, self.sum, self.sum_squares, self.binary)

    @property
    def pre_mean(self) -> float:
        return self.pre_sum / self.n if self.n else 0.0


def _variance(n, total, squares, binary):
    """A proportion's ``p(1-p)``, or the sample variance; 0 where undefined (n ≤ 1)."""
    n = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(n > 0, total / np.where(n > 0, n, 1), 0.0)
        if binary:
            return mean * (1 - mean)
        sample = (squares - np.square(total) / np.where(n > 0, n, 1)) / np.where(n > 1, n - 1, 1)
        return np.where(n > 1, sample, 0.0)


def _covariance(n, sum_x, sum_y, sum_xy):
    n = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = (sum_xy - sum_x * sum_y / np.where(n > 0, n, 1)) / np.where(n > 1, n - 1, 1)
    return np.where(n > 1, value, 0.0)


def cuped_theta(control: Sample, variant: Sample) -> float:
    """``θ = cov(x, y) / var(y)`` with both arms pooled; 0 when either variance is 0."""
    n = control.n + variant.n
    binary = control.binary
    post_var = _variance(
        n, control.sum + variant.sum, control.sum_squares + variant.sum_squares, binary
    )
    pre_var = _variance(
        n,
        control.pre_sum + variant.pre_sum,
        control.pre_sum_squares + variant.pre_sum_squares,
        binary,
    )
    if post_var <= 0 or pre_var <= 0:
        return 0.0
    cov = _covariance(
        n,
        control.sum + variant.sum,
        control.pre_sum + variant.pre_sum,
        control.sum_products + variant.sum_products,
    )
    return float(cov / pre_var)


def adjusted(sample: Sample, theta: float) -> tuple[float, float]:
    """CUPED's mean and variance of one arm for a given θ (θ = 0: the plain ones)."""
    if theta == 0:
        return sample.mean, float(sample.variance)
    pre_var = _variance(sample.n, sample.pre_sum, sample.pre_sum_squares, sample.binary)
    cov = _covariance(sample.n, sample.sum, sample.pre_sum, sample.sum_products)
    mean = sample.mean - theta * sample.pre_mean
    variance = sample.variance + theta**2 * pre_var - 2 * theta * cov
    return mean, float(variance) if sample.n > 1 else 0.0


def relative_uplift(mean_c, var_c, n_c, mean_v, var_v, n_v, base_c, base_v):
    """``(mean_v - mean_c) / base_c`` and its delta-method variance.

    ``base_*`` are the unadjusted means (equal to ``mean_*`` without CUPED).
    """
    estimate = (mean_v - mean_c) / base_c
    variance = var_v / (np.square(base_c) * n_v) + var_c * np.square(base_v) / (
        np.power(base_c, 4) * n_c
    )
    return estimate, variance


def welch_dof(var_c, n_c, var_v, n_v):
    """Welch–Satterthwaite degrees of freedom of the difference of two means."""
    a, b = var_c / n_c, var_v / n_v
    return np.square(a + b) / (np.square(a) / (n_c - 1) + np.square(b) / (n_v - 1))


def fixed_horizon(estimate, variance, dof, alpha=ALPHA):
    """Welch t-test: ``(low, high, two-sided p)`` of an estimate with its variance."""
    spread = np.sqrt(variance)
    width = scipy_stats.t.ppf(1 - alpha / 2, dof) * spread
    p_value = 2 * scipy_stats.t.sf(np.abs(estimate) / spread, dof)
    return estimate - width, estimate + width, p_value


def sequential(estimate, variance, n_total, alpha=ALPHA, tuning=SEQUENTIAL_TUNING):
    """Asymptotic confidence sequence and always-valid p-value: ``(low, high, p)``.

    ``variance`` is the estimate's variance; ``n_total`` the guests in both arms. With
    ``ρ² = (-2 log α + log(-2 log α + 1)) / N*`` the half-width is
    ``σ √(2(Nρ² + 1) log(√(Nρ² + 1) / α) / (Nρ)²)`` with ``σ² = variance × N``, and the
    p-value is the inverse of the mixture likelihood ratio, ``√(Nρ² + 1) / exp(ρ² S / 2(Nρ²+1))``
    with ``S = estimate² N / variance``, at most 1.
    """
    rho2 = (-2 * np.log(alpha) + np.log(-2 * np.log(alpha) + 1)) / tuning
    n = np.asarray(n_total, dtype=float)
    sigma2 = variance * n
    growth = n * rho2 + 1
    width = np.sqrt(sigma2) * np.sqrt(2 * growth * np.log(np.sqrt(growth) / alpha) / (n**2 * rho2))
    s2 = np.square(estimate) * n / variance
    p_value = np.minimum(np.sqrt(growth) * np.exp(-rho2 * s2 / (2 * growth)), 1.0)
    return estimate - width, estimate + width, p_value


def bayesian(estimate, variance):
    """Flat-prior normal posterior: ``(chance to beat control, expected loss of the variant,
    expected loss of keeping control)``, the losses in the estimate's units."""
    sd = np.sqrt(variance)
    z = estimate / sd
    chance = scipy_stats.norm.sf(-z)
    density = scipy_stats.norm.pdf(z)
    loss_variant = sd * density - estimate * scipy_stats.norm.cdf(-z)  # E[max(-uplift, 0)]
    loss_control = sd * density + estimate * chance  # E[max(uplift, 0)]
    return chance, loss_variant, loss_control


@dataclass(frozen=True)
class Comparison:
    """A variant against control on one metric. Relative figures are fractions (0.1 = +10 %).

    ``None`` where it cannot be computed: an empty arm, a control mean of 0 (no relative
    uplift), or an arm without variance.
    """

    control_mean: float
    variant_mean: float
    difference: float | None  # absolute, CUPED-adjusted when ``cuped``
    uplift: float | None
    uplift_low: float | None
    uplift_high: float | None
    p_value: float | None
    chance_to_beat_control: float | None
    expected_loss: float | None  # of shipping the variant, relative
    variance: float | None  # of the relative uplift (delta method)
    cuped: bool  # whether the covariate adjusted the estimate
    theta: float
    sequential: bool
    reason: str = ""  # why figures are missing


def compare(
    control: Sample,
    variant: Sample,
    *,
    alpha: float = ALPHA,
    sequential_testing: bool = True,
    cuped: bool = True,
) -> Comparison:
    """The variant against control: uplift, interval, p-value, chance to win, expected loss."""
    theta = cuped_theta(control, variant) if cuped else 0.0
    mean_c, var_c = adjusted(control, theta)
    mean_v, var_v = adjusted(variant, theta)
    missing = {
        "control_mean": control.mean,
        "variant_mean": variant.mean,
        "difference": None,
        "uplift": None,
        "uplift_low": None,
        "uplift_high": None,
        "p_value": None,
        "chance_to_beat_control": None,
        "expected_loss": None,
        "variance": None,
        "cuped": theta != 0,
        "theta": theta,
        "sequential": sequential_testing,
    }
    if control.n < 2 or variant.n < 2:
        return Comparison(**missing, reason="too few guests")
    missing["difference"] = mean_v - mean_c
    if control.mean == 0 or mean_c == 0:
        return Comparison(**missing, reason="nothing to compare with: the control's mean is 0")
    if var_c <= 0 or var_v <= 0:
        return Comparison(**missing, reason="no variation in one variant yet")
    estimate, variance = relative_uplift(
        mean_c, var_c, control.n, mean_v, var_v, variant.n, control.mean, variant.mean
    )
    if sequential_testing:
        low, high, p_value = sequential(estimate, variance, control.n + variant.n, alpha)
    else:
        dof = welch_dof(var_c, control.n, var_v, variant.n)
        low, high, p_value = fixed_horizon(estimate, variance, dof, alpha)
    chance, loss, _ = bayesian(estimate, variance)
    return Comparison(
        **{
            **missing,
            "uplift": float(estimate),
            "uplift_low": float(low),
            "uplift_high": float(high),
            "p_value": float(p_value),
            "chance_to_beat_control": float(chance),
            "expected_loss": float(loss),
            "variance": float(variance),
        }
    )


def p_values_adjust(p_values: list[float | None], method: str) -> list[float | None]:
    """Holm–Bonferroni or Benjamini–Hochberg adjusted p-values, in the order given.

    ``None`` (not computed) takes no part and stays ``None``. Holm: the i-th smallest of m
    becomes ``max over j ≤ i of min(1, (m - j + 1) p_(j))``. Benjamini–Hochberg: it becomes
    ``min over j ≥ i of min(1, m p_(j) / j)``.
    """
    if method not in CORRECTIONS:
        raise ValueError(f"no correction {method!r}; use one of {', '.join(CORRECTIONS)}")
    given = [(p, i) for i, p in enumerate(p_values) if p is not None]
    m = len(given)
    order = sorted(given)
    out: list[float | None] = [None] * len(p_values)
    if method == HOLM:
        running = 0.0
        for rank, (p, index) in enumerate(order, start=1):
            running = max(running, min(1.0, (m - rank + 1) * p))
            out[index] = running
    else:
        running = 1.0
        for rank in range(m, 0, -1):
            p, index = order[rank - 1]
            running = min(running, min(1.0, m * p / rank))
            out[index] = running
    return out


@dataclass(frozen=True)
class SampleRatio:
    chi_square: float
    p_value: float
    mismatch: bool


def sample_ratio_check(exposed: list[int], weights: list[float]) -> SampleRatio:
    """Chi-square goodness of fit of the exposed counts against the configured weights.

    Variants weighted 0 are left out (none of their guests are expected).
    """
    total, weight_sum = sum(exposed), sum(weights)
    if total == 0 or weight_sum <= 0 or len(exposed) < 2:
        return SampleRatio(chi_square=0.0, p_value=1.0, mismatch=False)
    chi = 0.0
    for observed, weight in zip(exposed, weights, strict=True):
        if weight > 0:
            expected = total * weight / weight_sum
            chi += (observed - expected) ** 2 / expected
    p_value = float(scipy_stats.chi2.sf(chi, len(exposed) - 1))
    return SampleRatio(chi_square=chi, p_value=p_value, mismatch=p_value < SRM_ALPHA)
