"""The automatic keep ratio: the variance factor, the break-even ratio, the moving average."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from nws_core import keep_ratio as kr
from nws_core import policy
from nws_core.errors import InvalidArgument
from nws_core.sketch import SketchConfig
from nws_server.registry import SketchRegistry

SLACK = 1e-9
priorities_st = arrays(
    np.float64, st.integers(2, 150), elements=st.one_of(st.just(0.0), st.floats(1e-3, 1e3))
)
auto_st = st.builds(kr.AutoRatio, st.floats(0.05, 1.0), st.floats(0.0, 0.5))


def two_point(n_a: int, n_b: int, a: float, b: float) -> np.ndarray:
    return np.r_[np.full(n_a, a), np.full(n_b, b)]


@given(st.integers(1, 50), st.integers(1, 50), st.floats(0.01, 100.0), st.floats(0.0, 100.0))
def test_cv2_of_a_two_point_mixture_and_the_formula(n_a, n_b, a, b):
    q = n_a / (n_a + n_b)
    expected = q * (1 - q) * (a - b) ** 2 / (q * a + (1 - q) * b) ** 2
    got = kr.cv2(two_point(n_a, n_b, a, b))
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)
    auto = kr.AutoRatio(ratio_min=0.2, threshold=0.05)
    rho = kr.formula_ratio(got, auto)
    assert rho == (1.0 if got < 0.05 else min(1.0, max(0.2, 1 / (1 + got))))


@settings(max_examples=100, deadline=None)
@given(st.floats(1e-3, 1e3), st.integers(2, 200), auto_st, st.floats(0.0, 50.0))
def test_flat_priorities_keep_everything(value, n, auto, stale_cv2):
    s = np.full(n, value)
    state = kr.KeepRatioState()
    plan = kr.plan(state, s, 1.0, auto.p_min(None), None, auto, warm=False)
    assert plan.ratio == 1.0 and plan.cv == pytest.approx(0.0, abs=1e-6)
    # even a stale, high CV_hat: dropping a positive flat row never breaks even
    assert kr.choose(s, stale_cv2, auto, auto.p_min(None)) == (1.0, 1.0)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 60), st.integers(1, 60), st.floats(0.01, 100.0), auto_st, st.data())
def test_two_levels_a_and_zero_break_even_at_q_plus_the_floor(n_a, n_0, a, auto, data):
    """Levels a and 0: CV^2 = (1 - q) / q; rho* = q + (1 - q) p_min, where every a row is kept."""
    p_min = data.draw(st.floats(0.0, auto.ratio_min))
    s = two_point(n_a, n_0, a, 0.0)
    q = n_a / (n_a + n_0)
    cv2 = (1 - q) / q
    rho, f = kr.choose(s, cv2, auto, p_min)
    if cv2 < auto.threshold:
        assert rho == 1.0
    else:
        expected = min(1.0, max(auto.ratio_min, 1 / (1 + cv2), q + (1 - q) * p_min))
        assert rho == pytest.approx(expected, abs=1e-12)
    assert f <= rho * (1 + SLACK)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 60), st.integers(1, 60), st.floats(0.01, 100.0), st.floats(0.01, 0.99))
def test_two_positive_levels_never_break_even_below_one(n_a, n_b, b, shrink):
    s = two_point(n_a, n_b, b / shrink, b)  # a > b > 0
    auto = kr.AutoRatio(ratio_min=0.05, threshold=0.0)
    assert kr.choose(s, 10.0, auto, 0.05)[0] == 1.0


@settings(max_examples=200, deadline=None)
@given(priorities_st, st.floats(0.01, 1.0), st.floats(0.0, 1.0))
def test_variance_factor_over_rho_is_at_least_one_and_one_only_when_positives_are_kept(
    s, ratio, p_min_frac
):
    p = policy.probabilities(s, ratio, ratio * p_min_frac)
    f = kr.variance_factor(p, s)
    assert f >= ratio * (1 - SLACK)
    if (s > 0).any():  # f / rho - 1 = sum s^2 (1/p - 1) / sum s^2: > 0 unless positives have p 1
        pos = s > 0
        excess = float((s[pos] ** 2 * (1 / p[pos] - 1)).sum() / (s**2).sum())
        assert f / (p.mean()) - 1 == pytest.approx(excess, rel=1e-6, abs=1e-12)
        assert (excess > 0) == bool((p[pos] < 1).any())
    assert kr.variance_factor(np.full(s.size, ratio), s) == pytest.approx(1.0)


def test_variance_factor_of_uncapped_proportional_p_is_one_over_one_plus_cv2():
    s = np.array([1.0, 2.0, 3.0, 4.0])
    p = 0.2 * s / s.mean()  # max 0.32: no caps, no floor
    assert kr.variance_factor(p, s) == pytest.approx(1 / (1 + kr.cv2(s)))
    assert kr.variance_factor(np.ones(3), np.zeros(3)) == 1.0


@settings(max_examples=150, deadline=None)
@given(
    priorities_st,
    auto_st,
    st.floats(0.0, 20.0),
    st.floats(0.0, 20.0),
    st.sampled_from([policy.SamplingPolicy(), policy.SamplingPolicy(power=2.0)]),
)
def test_rho_is_bounded_pays_and_is_monotone_in_cv_hat(s, auto, g1, g2, rule):
    p_min = auto.p_min(None)
    low, high = sorted((g1, g2))
    rho_low, f_low = kr.choose(s, low, auto, p_min, rule)
    rho_high, f_high = kr.choose(s, high, auto, p_min, rule)
    for rho, f in ((rho_low, f_low), (rho_high, f_high)):
        assert auto.ratio_min <= rho <= 1.0
        assert f <= rho * (1 + SLACK)  # never a ratio that does not break even
    # a larger CV_hat never keeps more, up to the bisection's resolution: choose returns the
    # smallest paying ratio to within kr.TOLERANCE, and searches from two starting ratios may
    # stop at different points of that interval (seen: 1.0 vs 1 - 1e-12)
    assert rho_high <= rho_low + kr.TOLERANCE


def test_the_final_probabilities_have_mean_rho_and_unbiased_weights():
    """E[accepted * weight] = 1 per row at auto's ratio. accepted * weight is 1/p with
    probability p, else 0: variance 1/p - 1, so over T draws the mean's standard error is
    sqrt((1/p - 1) / T); 4.5 of them per row (60 rows: < 1e-3 false alarms)."""
    rng = np.random.default_rng(42)
    s = np.where(rng.random(60) < 0.4, rng.gamma(2.0, 1.0, 60), 0.0)  # 40 % informative rows
    auto = kr.AutoRatio(ratio_min=0.1, threshold=0.05)
    p_min = auto.p_min(None)
    rho, _ = kr.choose(s, kr.cv2(s), auto, p_min)
    q = np.count_nonzero(s) / s.size
    assert rho == pytest.approx(max(0.1, q + (1 - q) * p_min)) and rho < 1
    trials = 20_000
    total = np.zeros(s.size)
    kept = 0
    for _ in range(trials):
        accepted, weights, p = policy.sample(s, rho, p_min, rng)
        total += accepted * weights
        kept += int(accepted.sum())
    assert p.mean() == pytest.approx(rho, rel=1e-9)
    se = np.sqrt((1 / p - 1) / trials)
    assert np.all(np.abs(total / trials - 1) <= 4.5 * se + 1e-12)
    sd = math.sqrt((p * (1 - p)).sum()) / (s.size * math.sqrt(trials))
    assert abs(kept / (trials * s.size) - rho) <= 4.5 * sd


def test_moving_average_of_cv2() -> None:
    state = kr.KeepRatioState(smoothing=0.5)
    assert state.read() == (None, None, None) and state.observe(None) == 0.0
    assert state.observe(4.0) == 4.0  # the first request sets it
    assert state.observe(None) == 4.0  # a 1-row request leaves it
    assert state.observe(0.0) == 2.0
    state.record(0.5, 0.7)
    assert state.read() == (0.5, math.sqrt(2.0), 0.7)
    assert kr.cv2(np.array([3.0])) is None and kr.cv2(np.zeros(4)) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"ratio_min": 0.0}, "ratio_min"),
        ({"ratio_min": 1.5}, "ratio_min"),
        ({"ratio_min": float("nan")}, "ratio_min"),
        ({"threshold": -0.1}, "auto_threshold"),
        ({"threshold": float("inf")}, "auto_threshold"),
        ({"threshold": float("nan")}, "auto_threshold"),
    ],
)
def test_bad_settings_name_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(InvalidArgument, match=field):
        kr.AutoRatio(**kwargs)


def test_registry_warmup_says_ratio_one_and_bad_p_min_changes_nothing() -> None:
    registry = SketchRegistry(device="cpu")
    registry.create("job", SketchConfig(dim=4, rows=8, bits=3), warmup=100)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 4)).astype(np.float32)
    registry.update("job", x, rng.gamma(0.5, 1.0, 32))
    auto = kr.AutoRatio(ratio_min=0.3)
    warm = registry.sample("job", x, 0.0, auto=auto)
    assert warm.warmup and warm.ratio == 1.0 and warm.variance_factor == 1.0
    assert warm.accepted.all() and warm.cv == 0.0  # warm-up does not feed the average
    status = registry.get("job").stats
    assert status.keep_ratio == 1.0 and status.priority_cv is None
    with pytest.raises(InvalidArgument, match="p_min"):
        registry.sample("job", x, 0.0, p_min=0.5, auto=auto)
    with pytest.raises(InvalidArgument, match="ratio"):
        registry.sample("job", x, 2.0, auto=auto)
    after = registry.get("job").stats
    assert (after.sampled, after.estimates, after.keep_ratio) == (
        status.sampled,
        status.estimates,
        status.keep_ratio,
    )
