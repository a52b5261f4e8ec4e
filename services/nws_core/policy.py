"""Importance-sampling policy (Algorithm 7 of Daghaghi et al., made precise).

Given scores s_1..s_n >= 0 (estimated losses) and a target ratio rho, the acceptance
probabilities are p_i = clip(c * s_i, p_min, 1), with c chosen by water-filling so that
mean(p) = rho (items capped at 1 hand their excess to the rest). Item i is accepted with
probability p_i and then carries weight 1 / p_i, so E[accepted_i * weight_i] = 1 for every item:
the weighted loss is an unbiased estimate of the full-data loss.

Negative scores carry no priority (they are treated as 0). With ``p_min = 0`` an item of score 0
is never accepted, which makes the estimate biased for such items; keep ``p_min > 0`` for
unbiasedness.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from nws_core.errors import InvalidArgument

DEFAULT_P_MIN = 0.05


def check_ratio(ratio: float, p_min: float, *, ratio_name: str = "ratio") -> None:
    """InvalidArgument unless 0 < ratio <= 1 and 0 <= p_min <= ratio (numpy scalars count as
    numbers; ``ratio_name`` names the bound in the message, e.g. ratio_min under auto)."""
    if not (_is_number(ratio) and 0.0 < ratio <= 1.0):
        raise InvalidArgument(f"{ratio_name} must be in (0, 1], got {ratio!r}")
    if not (_is_number(p_min) and 0.0 <= p_min <= ratio):
        raise InvalidArgument(f"p_min must be in [0, {ratio_name}={ratio}], got {p_min!r}")


def _is_number(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _validate(scores: np.ndarray, ratio: float, p_min: float) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise InvalidArgument(f"scores must be 1-D, got shape {list(s.shape)}")
    if not np.isfinite(s).all():
        raise InvalidArgument("scores contain non-finite values")
    check_ratio(ratio, p_min)
    return np.maximum(s, 0.0)


def probabilities(scores: np.ndarray, ratio: float, p_min: float = DEFAULT_P_MIN) -> np.ndarray:
    """Acceptance probabilities p_i = clip(c * s_i, p_min, 1) with mean(p) = ratio.

    Exact up to float error whenever feasible. If the positive scores cannot absorb the budget
    even at p = 1 (too few positive items), they get 1 and the zero-score items share the rest
    equally, so the mean is still ``ratio`` and p stays monotone in the score.
    """
    s = _validate(scores, ratio, p_min)
    n = s.shape[0]
    if n == 0:
        return np.zeros(0)
    target = ratio * n
    if ratio >= 1.0:
        return np.ones(n)
    if p_min >= ratio or float(s.max()) <= 0:
        return np.full(n, ratio)
    # scale invariance: normalise to max 1; scores 1e300 times below the top count as zero
    s = s / float(s.max())
    s[s < 1e-300] = 0.0
    positive = s > 0
    n_pos = int(positive.sum())
    if n_pos + (n - n_pos) * p_min >= target:
        c = _water_fill(s, p_min, target)
        return np.clip(c * s, p_min, 1.0)
    p = np.ones(n)
    p[~positive] = (target - n_pos) / (n - n_pos)
    return p


def _water_fill(s: np.ndarray, p_min: float, target: float) -> float:
    """Solve sum_i clip(c * s_i, p_min, 1) = target for c > 0, exactly, in O(n log n).

    The sum is piecewise linear and non-decreasing in c, with kinks at c = 1/s_i (item i caps)
    and c = p_min/s_i (item i leaves the floor). All kinks are evaluated at once with sorted
    scores and prefix sums; on the segment where the sum crosses ``target`` the capped and
    floored sets are fixed, and c follows from one linear equation.
    """
    n = s.shape[0]
    s_asc = np.sort(s)
    prefix = np.concatenate([[0.0], np.cumsum(s_asc)])
    pos = s_asc[s_asc > 0]
    kinks = np.unique(np.concatenate([1.0 / pos, p_min / pos]) if p_min > 0 else 1.0 / pos)

    def regime(c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with np.errstate(over="ignore", divide="ignore"):
            hi = np.searchsorted(s_asc, 1.0 / c, side="left")  # s >= 1/c: capped at 1
            lo = np.searchsorted(s_asc, p_min / c, side="right")  # s <= p_min/c: on the floor
        lo = np.minimum(lo, hi)
        return n - hi, lo, prefix[hi] - prefix[lo]

    n_cap, n_floor, s_mid = regime(kinks)
    totals = n_cap + kinks * s_mid + p_min * n_floor
    j = int(np.searchsorted(totals, target * (1 - 1e-15), side="left"))
    j = min(j, len(kinks) - 1)
    left = kinks[j - 1] if j > 0 else 0.0
    c_mid = np.array([0.5 * (left + kinks[j])])
    cap, floor, mid = (float(v[0]) for v in regime(c_mid))
    if mid > 0:
        return (target - cap - p_min * floor) / mid
    return float(kinks[j])


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``x`` with ties sharing their average rank (like ``scipy.stats.rankdata``)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    # Start of every run of equal values, then the average rank of each run.
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], x.size]
    avg = (starts + ends + 1) / 2.0
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def transform_scores(
    scores: np.ndarray,
    *,
    power: float = 1.0,
    baseline_quantile: float | None = None,
    rank: bool = False,
) -> np.ndarray:
    """Turn estimated losses into priorities before :func:`probabilities`.

    - ``rank``: replace scores by their normalised ranks in (0, 1] (ties share the mean rank):
      insensitive to the scale and flatness of the estimates.
    - ``baseline_quantile``: subtract that quantile of the scores (floor 0), so only the part of a
      loss above the typical one buys priority.
    - ``power``: sharpen (> 1) or flatten (< 1): priority = score ** power.

    Any transform keeps the sampling unbiased as long as the weights are 1/p (``temper=1``).
    """
    s = np.maximum(np.asarray(scores, dtype=np.float64), 0.0)
    if not (math.isfinite(power) and power > 0):
        raise InvalidArgument(f"power must be > 0, got {power}")
    if s.size == 0:
        return s
    if not np.isfinite(s).all():
        raise InvalidArgument("scores contain non-finite values")
    if rank:
        s = rankdata(s) / s.size
    if baseline_quantile is not None:
        if not 0.0 <= baseline_quantile < 1.0:
            raise InvalidArgument(f"baseline_quantile must be in [0, 1), got {baseline_quantile}")
        s = np.maximum(s - float(np.quantile(s, baseline_quantile)), 0.0)
    return s**power if power != 1.0 else s


def importance_weights(accepted: np.ndarray, p: np.ndarray, temper: float = 1.0) -> np.ndarray:
    """Weights (1/p)^temper for accepted items, 0 for the others.

    ``temper = 1`` is unbiased: E[accepted * weight] = 1 per item. ``temper = 0`` is pure
    prioritisation (weight 1). In between, E[accepted * weight] = p^(1 - temper) < 1, so items
    that are rarely chosen (low estimated loss) are under-counted: a bias towards hard examples
    traded for lower variance.
    """
    if not (math.isfinite(temper) and 0.0 <= temper <= 1.0):
        raise InvalidArgument(f"temper must be in [0, 1], got {temper}")
    safe = np.where(p > 0, p, 1.0)
    return np.where(accepted, safe ** (-temper), 0.0)


def sample(
    scores: np.ndarray,
    ratio: float,
    p_min: float = DEFAULT_P_MIN,
    generator: np.random.Generator | None = None,
    *,
    temper: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw acceptances. Returns (accepted mask, weights (1/p)^temper for accepted else 0, p).

    Apply :func:`transform_scores` to the scores first to sharpen, rank or baseline them.
    """
    p = probabilities(scores, ratio, p_min)
    rng = generator if generator is not None else np.random.default_rng()
    accepted = rng.random(p.shape[0]) < p
    return accepted, importance_weights(accepted, p, temper), p


@dataclass(frozen=True)
class SamplingPolicy:
    """How estimated losses become keep probabilities and weights (the policy levers).

    The default (power 1, no rank, no baseline, temper 1) is the paper's rule: p ∝ estimate, with
    unbiased 1/p weights. ``power``, ``rank`` and ``baseline_quantile`` reshape the priorities
    (:func:`transform_scores`) and keep the weights unbiased; ``temper < 1`` shrinks the weights to
    (1/p)^temper, trading a bias towards hard examples for lower variance.
    """

    power: float = 1.0
    rank: bool = False
    baseline_quantile: float | None = None
    temper: float = 1.0

    def __post_init__(self) -> None:
        if not (isinstance(self.power, (int, float)) and math.isfinite(self.power)):
            raise InvalidArgument(f"power must be a finite number > 0, got {self.power!r}")
        if self.power <= 0:
            raise InvalidArgument(f"power must be > 0, got {self.power}")
        q = self.baseline_quantile
        if q is not None and not (isinstance(q, (int, float)) and 0.0 <= q < 1.0):
            raise InvalidArgument(f"baseline_quantile must be in [0, 1), got {q!r}")
        t = self.temper
        if not (isinstance(t, (int, float)) and math.isfinite(t) and 0.0 <= t <= 1.0):
            raise InvalidArgument(f"temper must be in [0, 1], got {t!r}")

    def sample(
        self,
        scores: np.ndarray,
        ratio: float,
        p_min: float = DEFAULT_P_MIN,
        generator: np.random.Generator | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:func:`transform_scores` then :func:`sample`: (accepted, weights, p)."""
        s = transform_scores(
            scores, power=self.power, baseline_quantile=self.baseline_quantile, rank=self.rank
        )
        return sample(s, ratio, p_min, generator, temper=self.temper)

    def draw(
        self, scores: np.ndarray, ratio: float, p_min: float, seed: int | None, *, warm: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What every sampling source does: during warm-up (``warm``) keep every row with weight
        and probability 1, else :meth:`sample` with a generator seeded by ``seed``."""
        if warm:
            n = np.shape(scores)[0]
            return np.ones(n, dtype=bool), np.ones(n), np.ones(n)
        return self.sample(scores, ratio, p_min, np.random.default_rng(seed))


def in_warmup(observations: int, warmup: int) -> bool:
    """During warm-up (fewer than ``warmup`` observations) everything is accepted with weight 1."""
    return observations < warmup


@dataclass
class UpdateSchedule:
    """The paper's decaying update frequency: every step at first, then exponentially rarer.

    Steps ``0 .. dense_steps - 1`` all update. After that the gap between updates starts at 1 and
    is multiplied by ``growth`` after every update, capped at ``max_interval``.
    """

    dense_steps: int = 100
    growth: float = 1.0
    max_interval: int = 1

    def __post_init__(self) -> None:
        if self.dense_steps < 0:
            raise InvalidArgument(f"dense_steps must be >= 0, got {self.dense_steps}")
        if not (math.isfinite(self.growth) and self.growth >= 1.0):
            raise InvalidArgument(f"growth must be >= 1, got {self.growth}")
        if self.max_interval < 1:
            raise InvalidArgument(f"max_interval must be >= 1, got {self.max_interval}")
        self._next = 0
        self._gap = 1.0

    def due(self, step: int) -> bool:
        """Whether the trainer should stream losses to the sketch at ``step`` (call in order)."""
        if step < self.dense_steps:
            self._next = step + 1
            return True
        if step < self._next:
            return False
        self._next = step + max(1, min(self.max_interval, int(self._gap)))
        self._gap *= self.growth
        return True
