"""The protocol's statistics (benchmarks/_stats.py): t intervals and full's budget frontier."""

from __future__ import annotations

import numpy as np
import pytest
from _stats import accuracy_at, compute_for, t_interval
from scipy import stats

# One seed's frontier: the untrained model, then full at 25 / 50 / 75 / 100 % of its compute.
FRONTIER = [(0.0, 0.50), (25.0, 0.70), (50.0, 0.76), (75.0, 0.75), (100.0, 0.80)]


def test_t_interval_matches_the_textbook_formula() -> None:
    x = [0.01, -0.02, 0.03, 0.00, 0.02]
    iv = t_interval(x)
    half = stats.t.ppf(0.975, 4) * np.std(x, ddof=1) / np.sqrt(5)
    assert iv.mean == pytest.approx(np.mean(x))
    assert (iv.low, iv.high) == pytest.approx((np.mean(x) - half, np.mean(x) + half))
    assert iv.n == 5 and iv.verdict == "inside the noise"


def test_verdict_needs_the_interval_to_exclude_zero() -> None:
    assert t_interval([0.010, 0.012, 0.011, 0.013, 0.009]).verdict == "gain"
    assert t_interval([-0.010, -0.012, -0.011, -0.013, -0.009]).verdict == "loss"
    assert t_interval([0.05, -0.04, 0.03, -0.02, 0.01]).verdict == "inside the noise"
    assert t_interval([0.05]).verdict == "one seed: no interval"
    with pytest.raises(ValueError):
        t_interval([])


def test_interval_covers_the_mean_at_its_nominal_rate() -> None:
    # 95 % intervals of 5 normal draws: coverage within 3 binomial standard errors of 0.95.
    rng = np.random.default_rng(7)
    trials = 4000
    hits = sum(
        (iv := t_interval(rng.normal(1.0, 2.0, size=5))).low <= 1.0 <= iv.high
        for _ in range(trials)
    )
    se = np.sqrt(0.95 * 0.05 / trials)
    assert abs(hits / trials - 0.95) < 3 * se


def test_accuracy_at_interpolates_the_running_maximum_and_holds_past_the_last_budget() -> None:
    assert accuracy_at(FRONTIER, 12.5) == pytest.approx(0.60)
    # 75 %'s 0.75 is below 50 %'s 0.76: the frontier stays at 0.76 there, then rises to 0.80.
    assert accuracy_at(FRONTIER, 62.5) == pytest.approx(0.76)
    assert accuracy_at(FRONTIER, 87.5) == pytest.approx(0.78)
    assert accuracy_at(FRONTIER, 150.0) == pytest.approx(0.80)  # full not measured past 100 %


def test_compute_for_reads_the_running_maximum_of_the_frontier() -> None:
    c, reached = compute_for(FRONTIER, 0.73)
    assert reached and c == pytest.approx(37.5)
    # 0.755 is first reached at 50 -> 0.76 (the dip at 75 % does not make it cost more).
    c, reached = compute_for(FRONTIER, 0.755)
    assert reached and c == pytest.approx(25 + (0.755 - 0.70) / 0.06 * 25)
    c, reached = compute_for(FRONTIER, 0.78)  # between the 0.76 plateau and 100 %'s 0.80
    assert reached and c == pytest.approx(75 + (0.78 - 0.76) / 0.04 * 25)
    assert compute_for(FRONTIER, 0.45) == (0.0, True)  # the untrained model already does it
    assert compute_for(FRONTIER, 0.85) == (100.0, False)  # beyond full: a lower bound


def test_a_frontier_needs_two_points() -> None:
    with pytest.raises(ValueError):
        accuracy_at([(0.0, 0.5)], 1.0)
