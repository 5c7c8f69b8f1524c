"""Assignment: deterministic across processes, fair by weight, monotonic in allocation."""

import subprocess
import sys
import uuid

import pytest
from scipy import stats

from experiences.assignment import takes_part, variant_pick

REFS = [str(uuid.UUID(int=i * 7919 + 13)) for i in range(100_000)]


def test_the_same_guest_gets_the_same_variant_in_another_process():
    sample = REFS[:50]
    here = [variant_pick("seed-1", ref, [50, 30, 20]) for ref in sample]
    code = (
        "from experiences.assignment import variant_pick\n"
        f"print([variant_pick('seed-1', ref, [50, 30, 20]) for ref in {sample!r}])"
    )
    there = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
        cwd=".",
    ).stdout
    assert there.strip() == str(here)


@pytest.mark.parametrize("weights", [[50, 50], [90, 10]])
def test_100k_guests_split_by_weight_pass_a_chi_square_test(weights):
    counts = [0] * len(weights)
    for ref in REFS:
        counts[variant_pick("exp-seed", ref, weights)] += 1
    expected = [len(REFS) * w / sum(weights) for w in weights]

    assert stats.chisquare(counts, expected).pvalue > 0.001


def test_raising_allocation_moves_nobody_already_in():
    at_50 = {ref for ref in REFS[:20_000] if takes_part("exp-seed", ref, 50)}
    at_80 = {ref for ref in REFS[:20_000] if takes_part("exp-seed", ref, 80)}
    at_100 = {ref for ref in REFS[:20_000] if takes_part("exp-seed", ref, 100)}

    assert at_50 <= at_80 <= at_100
    assert len(at_100) == 20_000
    assert abs(len(at_50) - 10_000) < 400


def test_different_experiences_split_independently():
    a = [variant_pick("seed-a", ref, [50, 50]) for ref in REFS[:10_000]]
    b = [variant_pick("seed-b", ref, [50, 50]) for ref in REFS[:10_000]]
    same = sum(x == y for x, y in zip(a, b, strict=True))
    assert 4_700 < same < 5_300
