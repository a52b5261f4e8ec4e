"""The automatic keep ratio (``ratio="auto"``): keep only as few rows as still pays.

**The variance factor.** Each candidate i has a priority s_i >= 0, a proxy for the norm of its
gradient |g_i| (the sketch's estimated loss, floored at 0), and a keep probability p_i; a kept row
carries weight 1/p_i. The importance-weighted gradient sum_i (accepted_i / p_i) g_i is unbiased,
and its second moment, relative to what uniform sampling at the same mean keep probability
achieves, is

    f = (sum_i p_i) (sum_i s_i^2 / p_i) / (n sum_i s_i^2)

(with |g_i| proportional to s_i; uniform p gives f = 1). With p_i proportional to s_i and no caps,
f = (E s)^2 / E[s^2] = 1 / (1 + CV^2), CV being the priorities' coefficient of variation.

**Break-even.** A keep ratio rho (fill mode: rho n of n candidates are trained) saves a factor rho
of the compute per step, and, in the noise-dominated regime, needs 1 / rho as many steps for the
same gradient noise at uniform sampling, f / rho as many with importance sampling. So sampling
pays when f(rho) <= rho; uncapped this is rho >= 1 / (1 + CV^2) (CV 0.04: keep everything; CV 0.4:
rho >= 0.86; CV 1.2: rho >= 0.41).

**Caps and floors: the formula is never reached.** The policy's probabilities are water-filled,
p_i = clip(c s_i, p_min, 1) with mean rho, and p_i <= 1 makes

    f(rho) / rho = (sum_i s_i^2 / p_i) / (sum_i s_i^2) >= 1,

with equality exactly when every row of positive priority has p_i = 1. So, once the caps are
accounted for, f(rho) <= rho holds *only* at keep ratios where every positive-priority row is
kept for sure, and only rows of priority 0 are dropped: the smallest such ratio is
rho* = (n_+ + (n - n_+) p_min) / n, n_+ the rows of positive priority (and 1 when the policy
levers give a positive-priority row a shaped priority of 0). The uncapped formula 1 / (1 + CV^2)
is optimistic for every batch: at that ratio the largest rows are already capped, since
E[s^2] <= max(s) E[s]. In other words: at equal data (fill mode, noise-dominated), subsampling
with 1/p weights never lowers the gradient noise below keeping every informative row; what it
saves is backward passes. Examples: priorities a and 0 (a share q of a rows) break even at
rho* = q + (1 - q) p_min; two levels a > b > 0, or any batch of positive estimates, only at 1.

**The rule**, per Sample request, after the sketch's warm-up:

1. CV^2 of the request's priorities (population moments, 0 when their mean is 0; requests of
   fewer than 2 rows leave the average alone) updates the sketch's exponential moving average,
   CV_hat^2 <- (1 - alpha) CV_hat^2 + alpha CV^2 (:data:`DEFAULT_SMOOTHING`; the first request
   sets it). Every Sample request after warm-up feeds it, automatic or not.
2. When the predicted gain 1 + CV_hat^2 is under 1 + ``threshold``: rho = 1 (nothing dropped).
3. Otherwise rho_0 = clip(1 / (1 + CV_hat^2), ``ratio_min``, 1), and where the request's own
   water-filled probabilities give f(rho_0) > rho_0, rho is raised to the smallest value with
   f(rho) <= rho: max(rho_0, rho*) exactly for the default levers; with power, rank or a
   baseline, numerically (the first point of a fixed grid of step 1/16 that satisfies it, then
   bisection towards the last one that does not, to 1e-4; f(1) = 1, so 1 always qualifies).

So the rule is safe by construction (it never picks a ratio the break-even criterion rejects),
and by the argument above it keeps every row whose estimate is positive: with a sketch whose
estimates are losses > 0, ``auto`` switches sampling off, and only the reported ``cv`` and
``variance_factor`` say what sampling would trade. A ratio below 1 for such batches needs another
cost model than equal data (e.g. equal backward passes with data to spare: f <= 1, which holds for
every p proportional to s); that choice is left to the benchmarks.

The probabilities come from the request's policy levers (:class:`~nws_core.policy.
SamplingPolicy`: power, rank, baseline), the priorities s of f and of CV from the raw estimates:
levers reshape p, not the gradients it should follow. f assumes the unbiased weights 1/p
(``temper = 1``). Rows with p = 0 (possible only with ``p_min = 0``) are never kept: they bias
the estimate instead of adding variance, and are left out of f.

The moving average is a usage statistic, like the sample counters, but it is *not* kept in
snapshots or exports: a restarted or imported sketch starts it afresh with its next Sample.

The defaults (:data:`DEFAULT_RATIO_MIN`, :data:`DEFAULT_THRESHOLD`, :data:`DEFAULT_SMOOTHING`) are
provisional, to be set from benchmarks.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from nws_core import policy
from nws_core.errors import InvalidArgument

DEFAULT_RATIO_MIN = 0.3
"""Lowest keep ratio auto chooses (provisional)."""
DEFAULT_THRESHOLD = 0.05
"""Keep everything while the predicted gain 1 + CV_hat^2 is under 1 + this (provisional)."""
DEFAULT_SMOOTHING = 0.1
"""Weight of the newest request in the moving average of CV^2 (provisional)."""
GRID_STEP = 1.0 / 16
TOLERANCE = 1e-4
_SLACK = 1e-9  # relative float slack of the test f(rho) <= rho


@dataclass(frozen=True)
class AutoRatio:
    """The settings of one automatic request; validated on construction (InvalidArgument)."""

    ratio_min: float = DEFAULT_RATIO_MIN
    threshold: float = DEFAULT_THRESHOLD

    def __post_init__(self) -> None:
        r = self.ratio_min
        if not (_real(r) and 0.0 < r <= 1.0):
            raise InvalidArgument(f"ratio_min must be in (0, 1], got {r!r}")
        t = self.threshold
        if not (_real(t) and math.isfinite(t) and t >= 0.0):
            raise InvalidArgument(f"auto_threshold must be a finite number >= 0, got {t!r}")

    def p_min(self, p_min: float | None) -> float:
        """The floor of the keep probabilities: default min(policy.DEFAULT_P_MIN, ratio_min);
        a given one must lie in [0, ratio_min] (every ratio auto may choose)."""
        if p_min is None:
            return min(policy.DEFAULT_P_MIN, self.ratio_min)
        if not (_real(p_min) and 0.0 <= p_min <= self.ratio_min):
            raise InvalidArgument(
                f"p_min must be in [0, ratio_min={self.ratio_min}] under auto_ratio, got {p_min!r}"
            )
        return float(p_min)


def _real(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and not math.isnan(x)


def priorities(estimates: np.ndarray) -> np.ndarray:
    """The |g| proxies: estimates floored at 0, as float64."""
    return np.maximum(np.asarray(estimates, dtype=np.float64), 0.0)


def cv2(s: np.ndarray) -> float | None:
    """Squared coefficient of variation (population moments); 0 when the mean is 0; None for
    fewer than 2 values."""
    s = np.asarray(s, dtype=np.float64)
    if s.size < 2:
        return None
    mean = float(s.mean())
    if not mean > 0:
        return 0.0
    return float(np.mean(np.square(s - mean))) / (mean * mean)  # two passes: no cancellation


def variance_factor(p: np.ndarray, s: np.ndarray) -> float:
    """f = (sum p)(sum s^2/p) / (n sum s^2): the weighted gradient's second moment relative to
    uniform sampling; 1 when every s is 0 or the batch is empty. Rows with p = 0 are left out."""
    p = np.asarray(p, dtype=np.float64)
    s2 = np.square(np.asarray(s, dtype=np.float64))
    total = float(s2.sum())
    if p.size == 0 or not total > 0:
        return 1.0
    kept = p > 0
    return float(p.sum() * float((s2[kept] / p[kept]).sum()) / (p.size * total))


def formula_ratio(cv2_hat: float, auto: AutoRatio) -> float:
    """Step 2 and the first guess of step 3: 1 below the threshold, else
    clip(1 / (1 + CV_hat^2), ratio_min, 1)."""
    if cv2_hat < auto.threshold:
        return 1.0
    return min(1.0, max(auto.ratio_min, 1.0 / (1.0 + cv2_hat)))


def break_even_ratio(s: np.ndarray, p_min: float) -> float:
    """rho* = (n_+ + (n - n_+) p_min) / n: the smallest ratio at which the default policy keeps
    every row of positive priority for sure, the only ratios with f(rho) <= rho (1 if empty)."""
    n = s.shape[0]
    if n == 0:
        return 1.0
    positive = int(np.count_nonzero(s > 0))
    return (positive + (n - positive) * p_min) / n


def choose(
    estimates: np.ndarray,
    cv2_hat: float,
    auto: AutoRatio,
    p_min: float,
    rule: policy.SamplingPolicy | None = None,
) -> tuple[float, float]:
    """(rho, f(rho)) for one request: :func:`formula_ratio`, raised where this request's
    water-filled probabilities do not break even (module docstring, step 3)."""
    s = priorities(estimates)
    rule = rule or policy.SamplingPolicy()
    shaped = policy.transform_scores(
        s, power=rule.power, baseline_quantile=rule.baseline_quantile, rank=rule.rank
    )

    def f(rho: float) -> float:
        return variance_factor(policy.probabilities(shaped, rho, min(p_min, rho)), s)

    def pays(rho: float, value: float) -> bool:
        return value <= rho * (1.0 + _SLACK)

    rho = formula_ratio(cv2_hat, auto)
    if rule == policy.SamplingPolicy() and rho < 1.0:
        rho = min(1.0, max(rho, break_even_ratio(s, p_min)))
    value = f(rho)
    if rho >= 1.0 or pays(rho, value):
        return rho, value
    low = rho  # does not pay
    k = math.floor(rho / GRID_STEP) + 1
    while True:
        high = min(1.0, k * GRID_STEP)
        high_value = f(high)
        if high >= 1.0 or pays(high, high_value):
            break
        low, k = high, k + 1
    while high - low > TOLERANCE:
        mid = 0.5 * (low + high)
        mid_value = f(mid)
        if pays(mid, mid_value):
            high, high_value = mid, mid_value
        else:
            low = mid
    return high, high_value


class KeepRatioState:
    """One sketch's moving average of CV^2 and its last Sample's keep ratio and variance factor
    (thread-safe; not persisted)."""

    def __init__(self, smoothing: float = DEFAULT_SMOOTHING) -> None:
        if not 0.0 < smoothing <= 1.0:
            raise ValueError(f"smoothing must be in (0, 1], got {smoothing}")
        self.smoothing = smoothing
        self._lock = threading.Lock()
        self._cv2: float | None = None
        self._ratio: float | None = None
        self._factor: float | None = None

    def observe(self, value: float | None) -> float:
        """Feed one request's CV^2 (None: leave the average alone); the average after it."""
        with self._lock:
            if value is not None:
                a = self.smoothing
                self._cv2 = value if self._cv2 is None else (1 - a) * self._cv2 + a * value
            return self._cv2 if self._cv2 is not None else 0.0

    def cv2(self) -> float:
        with self._lock:
            return self._cv2 if self._cv2 is not None else 0.0

    def record(self, ratio: float, factor: float) -> None:
        """The keep ratio and variance factor a Sample request used."""
        with self._lock:
            self._ratio, self._factor = ratio, factor

    def read(self) -> tuple[float | None, float | None, float | None]:
        """(last keep ratio, CV_hat, last variance factor); None before the first Sample (CV_hat:
        before the first Sample after warm-up)."""
        with self._lock:
            cv = math.sqrt(self._cv2) if self._cv2 is not None else None
            return self._ratio, cv, self._factor


@dataclass(frozen=True)
class Plan:
    """What one Sample request draws with, and what it reports."""

    ratio: float
    p_min: float
    cv: float
    """CV_hat after this request (sqrt of the moving average of CV^2)."""


def plan(
    state: KeepRatioState,
    estimates: np.ndarray,
    ratio: float,
    p_min: float,
    rule: policy.SamplingPolicy | None,
    auto: AutoRatio | None,
    *,
    warm: bool,
) -> Plan:
    """The keep ratio of one validated request: 1 during warm-up (the average is not fed), the
    requested one without ``auto``, else :func:`choose`; feeds the moving average."""
    if warm:
        return Plan(1.0, min(p_min, 1.0), math.sqrt(state.cv2()))
    cv2_hat = state.observe(cv2(priorities(estimates)))
    if auto is not None:
        ratio, _ = choose(estimates, cv2_hat, auto, p_min, rule)
    return Plan(ratio, min(p_min, ratio), math.sqrt(cv2_hat))
