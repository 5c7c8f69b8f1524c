"""The promise of sequential testing, by simulation: A/A experiments looked at every day.

Each simulated experiment gives both arms the same true conversion rate, gets new guests
every day, and is checked at the end of every day; it "finds a winner" the first day its
p-value falls below α. With a fixed-horizon test that peeking finds far more than α of false
winners; with the sequential test (Footprint's default) at most α. The same functions
``experiences.stats.compare`` uses run on numpy arrays of all the experiments at once.
"""

from __future__ import annotations

import numpy as np

from experiences.stats import (
    ALPHA,
    _variance,
    fixed_horizon,
    relative_uplift,
    sequential,
    welch_dof,
)

EXPERIMENTS, DAYS, GUESTS_PER_DAY, RATE = 4000, 28, 150, 0.08


def daily_p_values(rng, *, binary: bool):
    """Fixed-horizon and sequential p-values of every experiment at the end of every day."""
    shape = (EXPERIMENTS, DAYS)
    n = np.cumsum(np.full(shape, GUESTS_PER_DAY, dtype=float), axis=1)
    arms = []
    for _ in range(2):
        if binary:
            daily = rng.binomial(GUESTS_PER_DAY, RATE, size=shape).astype(float)
            total, squares = np.cumsum(daily, axis=1), None
        else:
            # Orders per guest: a Poisson count per guest, summed per day (and its squares).
            per_guest = rng.poisson(RATE * 3, size=(*shape, GUESTS_PER_DAY)).astype(float)
            total = np.cumsum(per_guest.sum(axis=2), axis=1)
            squares = np.cumsum(np.square(per_guest).sum(axis=2), axis=1)
        mean = total / n
        arms.append((mean, _variance(n, total, squares if squares is not None else total, binary)))
    (mean_c, var_c), (mean_v, var_v) = arms
    estimate, variance = relative_uplift(mean_c, var_c, n, mean_v, var_v, n, mean_c, mean_v)
    _, _, fixed = fixed_horizon(estimate, variance, welch_dof(var_c, n, var_v, n))
    _, _, always_valid = sequential(estimate, variance, 2 * n)
    return fixed, always_valid


def false_positive_rates(p_values):
    """Share of experiments called significant on any day, and on the last day only."""
    return float(np.mean((p_values < ALPHA).any(axis=1))), float(np.mean(p_values[:, -1] < ALPHA))


def test_peeking_daily_keeps_the_sequential_test_at_alpha_and_not_the_fixed_horizon_one():
    fixed, always_valid = daily_p_values(np.random.default_rng(17), binary=True)
    fixed_any_day, fixed_last_day = false_positive_rates(fixed)
    sequential_any_day, _ = false_positive_rates(always_valid)
    print(
        f"\nA/A conversion, {EXPERIMENTS} experiments x {DAYS} daily looks: false positives "
        f"fixed-horizon {fixed_any_day:.1%} (one look at the end: {fixed_last_day:.1%}), "
        f"sequential {sequential_any_day:.1%}"
    )
    # The fixed-horizon test is right when looked at once...
    assert 0.03 < fixed_last_day < 0.075
    # ...but checked every day it calls far more than α of these A/A tests.
    assert fixed_any_day > 2 * ALPHA
    # The sequential test stays at or below α however often it is looked at.
    assert sequential_any_day <= ALPHA


def test_the_same_holds_for_a_count_per_guest():
    fixed, always_valid = daily_p_values(np.random.default_rng(18), binary=False)
    fixed_any_day, _ = false_positive_rates(fixed)
    sequential_any_day, _ = false_positive_rates(always_valid)
    print(
        f"\nA/A count per guest: false positives fixed-horizon {fixed_any_day:.1%}, "
        f"sequential {sequential_any_day:.1%}"
    )
    assert fixed_any_day > 2 * ALPHA
    assert sequential_any_day <= ALPHA


def test_the_sequential_test_still_finds_a_real_difference():
    """Not a test that never rejects: with a true +40 % lift most experiments find it."""
    rng = np.random.default_rng(19)
    shape = (1000, DAYS)
    n = np.cumsum(np.full(shape, GUESTS_PER_DAY, dtype=float), axis=1)
    c = np.cumsum(rng.binomial(GUESTS_PER_DAY, RATE, size=shape), axis=1)
    v = np.cumsum(rng.binomial(GUESTS_PER_DAY, RATE * 1.4, size=shape), axis=1)
    mean_c, mean_v = c / n, v / n
    estimate, variance = relative_uplift(
        mean_c, mean_c * (1 - mean_c), n, mean_v, mean_v * (1 - mean_v), n, mean_c, mean_v
    )
    _, _, p_values = sequential(estimate, variance, 2 * n)
    found, _ = false_positive_rates(p_values)
    print(f"\n+40 % lift: the sequential test finds it in {found:.1%} of experiments")
    assert found > 0.8
