"""The sampling policy: water-filled probabilities, unbiased weights, warm-up, update schedule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from nws_core import policy
from nws_core.errors import InvalidArgument
from nws_core.policy import (
    UpdateSchedule,
    importance_weights,
    in_warmup,
    probabilities,
    sample,
    transform_scores,
)

# losses: zero or between 1e-6 and 1e4 (the policy treats scores 1e300 below the top as zero)
scores_st = arrays(
    np.float64,
    st.integers(1, 200),
    elements=st.one_of(st.just(0.0), st.floats(1e-6, 1e4)),
)


@settings(max_examples=200, deadline=None)
@given(scores_st, st.floats(0.01, 1.0), st.floats(0.0, 1.0))
def test_mean_probability_equals_the_ratio_and_bounds_hold(scores, ratio, p_min_frac):
    p_min = ratio * p_min_frac
    p = probabilities(scores, ratio, p_min)
    assert p.shape == scores.shape
    assert math.isclose(p.mean(), ratio, rel_tol=1e-9, abs_tol=1e-12)
    assert np.all(p <= 1.0 + 1e-12)
    positive = scores > 0
    # the floor holds everywhere; zero-score items only rise above it when the positives are full
    assert np.all(p >= p_min - 1e-12)
    # monotone in the score
    order = np.argsort(scores, kind="stable")
    assert np.all(np.diff(p[order]) >= -1e-12)
    if positive.any() and (p[positive] < 1).any():
        # proportional to the score strictly between floor and cap
        inside = positive & (p > p_min + 1e-9) & (p < 1 - 1e-9)
        if inside.sum() >= 2:
            c = p[inside] / scores[inside]
            assert np.allclose(c, c[0], rtol=1e-9)


def test_water_filling_hands_the_capped_excess_to_the_rest():
    scores = np.array([100.0, 1.0, 1.0, 1.0])
    p = probabilities(scores, ratio=0.5, p_min=0.0)
    assert p[0] == 1.0
    assert np.allclose(p[1:], (2.0 - 1.0) / 3)


def test_uniform_when_scores_are_all_zero_and_ones_at_ratio_one():
    assert np.allclose(probabilities(np.zeros(10), 0.3, 0.05), 0.3)
    assert np.allclose(probabilities(np.arange(10.0), 1.0, 0.05), 1.0)


def test_too_few_positive_items_share_the_budget_with_the_zeros():
    p = probabilities(np.array([5.0, 0.0, 0.0, 0.0]), ratio=0.5, p_min=0.05)
    assert p[0] == 1.0
    assert np.allclose(p[1:], 1.0 / 3)
    assert math.isclose(p.mean(), 0.5)


def test_negative_scores_count_as_zero():
    p = probabilities(np.array([-3.0, 0.0, 2.0, 2.0]), ratio=0.5, p_min=0.1)
    assert p[0] == p[1] == pytest.approx(0.1)


def test_weights_are_unbiased_per_item():
    """E[accepted_i * weight_i] = 1 for every item.

    accepted_i * weight_i is 1/p_i with probability p_i and 0 otherwise, so its variance is
    1/p_i - 1. Over T independent draws the mean has standard error sqrt((1/p_i - 1) / T); we
    allow 4.5 standard errors per item (with 60 items the chance that any one exceeds it under
    the null is 60 * 6.8e-6 < 1e-3).
    """
    rng = np.random.default_rng(1234)
    scores = rng.gamma(0.7, 1.0, size=60)
    ratio, p_min, trials = 0.3, 0.05, 20_000
    total = np.zeros(60)
    accepted_count = np.zeros(60)
    for _ in range(trials):
        acc, w, p = sample(scores, ratio, p_min, rng)
        total += acc * w
        accepted_count += acc
    mean = total / trials
    se = np.sqrt((1 / p - 1) / trials)
    assert np.all(np.abs(mean - 1) <= 4.5 * se), np.max(np.abs(mean - 1) / se)
    # the realised acceptance rate is the ratio: sd of the pooled rate is
    # sqrt(sum p(1-p)) / (n * sqrt(T))
    rate = accepted_count.sum() / (trials * 60)
    sd = math.sqrt((p * (1 - p)).sum()) / (60 * math.sqrt(trials))
    assert abs(rate - ratio) <= 4.5 * sd


def test_sampling_is_reproducible_with_a_seed():
    scores = np.linspace(0, 1, 50)
    a = sample(scores, 0.4, 0.05, np.random.default_rng(9))
    b = sample(scores, 0.4, 0.05, np.random.default_rng(9))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    acc, w, p = a
    assert np.all(w[~acc] == 0) and np.allclose(w[acc], 1 / p[acc])


@pytest.mark.parametrize(
    ("scores", "ratio", "p_min", "message"),
    [
        (np.array([1.0, np.nan]), 0.5, 0.1, "non-finite"),
        (np.ones((2, 2)), 0.5, 0.1, "1-D"),
        (np.ones(3), 0.0, 0.0, "ratio must be"),
        (np.ones(3), 1.5, 0.1, "ratio must be"),
        (np.ones(3), 0.3, 0.4, "p_min must be"),
        (np.ones(3), 0.3, -0.1, "p_min must be"),
    ],
)
def test_bad_policy_input_is_rejected(scores, ratio, p_min, message):
    with pytest.raises(InvalidArgument, match=message):
        probabilities(scores, ratio, p_min)


def test_warmup_accepts_everything_until_enough_observations():
    assert in_warmup(0, 100) and in_warmup(99, 100)
    assert not in_warmup(100, 100)
    assert not in_warmup(0, 0)


def test_update_schedule_is_dense_then_exponentially_sparser():
    sched = UpdateSchedule(dense_steps=5, growth=2.0, max_interval=8)
    due = [s for s in range(60) if sched.due(s)]
    assert due[:5] == [0, 1, 2, 3, 4]
    gaps = np.diff(due[4:])
    assert list(gaps[:6]) == [1, 1, 2, 4, 8, 8]
    assert all(g == 8 for g in gaps[4:])
    always = UpdateSchedule(dense_steps=0)
    assert all(always.due(s) for s in range(20))
    with pytest.raises(InvalidArgument):
        UpdateSchedule(growth=0.5)


def test_transform_scores_sharpens_ranks_and_subtracts_a_baseline():
    s = np.array([1.0, 2.0, 2.0, 4.0])
    assert np.allclose(transform_scores(s, power=2), [1, 4, 4, 16])
    assert np.allclose(transform_scores(s, rank=True), [0.25, 0.625, 0.625, 1.0])
    assert np.allclose(transform_scores(s, baseline_quantile=0.5), [0, 0, 0, 2])
    # sharpening spreads the probabilities of flat estimates
    flat = np.linspace(0.9, 1.1, 100)
    spread = probabilities(transform_scores(flat, power=8), 0.4, 0.05)
    assert np.ptp(spread) > 3 * np.ptp(probabilities(flat, 0.4, 0.05))
    with pytest.raises(InvalidArgument, match="power"):
        transform_scores(s, power=0)
    with pytest.raises(InvalidArgument, match="baseline_quantile"):
        transform_scores(s, baseline_quantile=1.0)


def test_tempered_weights_follow_p_to_the_one_minus_temper():
    """E[accepted * (1/p)^beta] = p^(1 - beta): biased below 1 unless beta = 1, checked within
    4.5 standard errors (sd of accepted * w is sqrt(p (1 - p)) * p^-beta)."""
    rng = np.random.default_rng(5)
    scores = np.array([0.1, 0.5, 1.0, 3.0])
    trials, beta = 40_000, 0.5
    total = np.zeros(4)
    for _ in range(trials):
        acc, w, p = sample(scores, 0.5, 0.05, rng, temper=beta)
        total += acc * w
    expected = p ** (1 - beta)
    se = np.sqrt(p * (1 - p)) * p**-beta / np.sqrt(trials)
    assert np.all(np.abs(total / trials - expected) <= 4.5 * se + 1e-12)
    acc, w, _ = sample(scores, 0.5, 0.05, rng, temper=0.0)
    assert np.all(w[acc] == 1.0)
    with pytest.raises(InvalidArgument, match="temper"):
        importance_weights(acc, p, temper=2.0)


def test_check_ratio_takes_numpy_scalars_and_names_its_bound() -> None:
    policy.check_ratio(np.float32(0.5), np.float32(0.05))  # numpy scalars are numbers
    with pytest.raises(InvalidArgument, match=r"ratio must be in \(0, 1\], got True"):
        policy.check_ratio(True, 0.0)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match=r"p_min must be in \[0, ratio_min=0.3\], got 0.4"):
        policy.check_ratio(0.3, 0.4, ratio_name="ratio_min")
