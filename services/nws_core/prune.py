"""The ``prune`` sampling policy: InfoBatch's rule (Qin et al., ICLR 2024) on sketch estimates.

A candidate whose estimated loss is below the *running mean* is "well learned": it is skipped
with probability r (``prune_rate``, default 0.5) and, when kept, carries weight 1 / (1 - r); every
other candidate is kept with weight 1. So E[accepted_i * weight_i] = 1 for every row (the weighted
loss stays unbiased) and the expected keep share is 1 - r * (share of rows below the mean), which
the response reports as its ``ratio``.

**The running mean** is the mean of the losses the sketch has observed, ``value_sum / weight`` in
the engine (:attr:`nws_core.sketch.NWSketch.mean_value`): with forgetting it is the decayed mean,
so it follows the model as the arrays do. This is InfoBatch's "mean of the table's scores" with
the sketch in place of the table (the table's mean is over the latest loss of every row seen, the
sketch's over every observation it still holds). It is not the mean of the request's own
estimates: that would prune about half of every batch whatever the model has learned. A sketch
with no observations has no mean: nothing is pruned.

Unlike a per-row table, the sketch's estimates cover rows never trained on (by their neighbours),
so the rule prunes from the first pass on. A row in a region the sketch has not seen gets the
prior, which by default *is* the mean: not below it, so kept with weight 1.

During the sketch's warm-up everything is kept with weight 1, as for the importance policy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nws_core import policy
from nws_core.errors import InvalidArgument

IMPORTANCE = "importance"
PRUNE = "prune"
POLICIES = (IMPORTANCE, PRUNE)
DEFAULT_PRUNE_RATE = 0.5
"""InfoBatch's default pruning probability of the below-mean rows."""


def check_policy(name: str) -> str:
    """The policy's canonical name ("" means importance); InvalidArgument naming ``policy``."""
    if name == "":
        return IMPORTANCE
    if name not in POLICIES:
        raise InvalidArgument(f"policy must be one of {list(POLICIES)}, got {name!r}")
    return name


def check_alone(
    ratio: float, p_min: float | None, rule: policy.SamplingPolicy | None, auto: object
) -> None:
    """A prune request takes none of the importance policy's settings: ``ratio`` is ignored (0,
    unset, or a valid ratio), and p_min, the levers and auto_ratio are errors."""
    if ratio != 0:
        policy.check_ratio(ratio, 0.0)  # 0 (unset) or a valid ratio
    if auto is not None:
        raise InvalidArgument("auto_ratio applies only with policy 'importance'")
    if p_min is not None:
        raise InvalidArgument("p_min applies only with policy 'importance'")
    if rule is not None and rule != policy.SamplingPolicy():
        raise InvalidArgument(
            "power, rank, baseline_quantile and temper apply only with policy 'importance'"
        )


@dataclass(frozen=True)
class Prune:
    """The settings of one ``prune`` request; validated on construction (InvalidArgument)."""

    rate: float = DEFAULT_PRUNE_RATE

    def __post_init__(self) -> None:
        r = self.rate
        ok = isinstance(r, (int, float)) and not isinstance(r, bool) and math.isfinite(r)
        if not (ok and 0.0 <= r < 1.0):
            raise InvalidArgument(f"prune_rate must be in [0, 1), got {r!r}")

    def probabilities(self, estimates: np.ndarray, mean: float | None) -> np.ndarray:
        """Keep probability of every row: 1 - rate below ``mean``, else 1 (1 without a mean)."""
        s = np.asarray(estimates, dtype=np.float64)
        if mean is None or not math.isfinite(mean):
            return np.ones(s.shape[0])
        return np.where(s < mean, 1.0 - self.rate, 1.0)

    def draw(
        self, estimates: np.ndarray, mean: float | None, seed: int | None, *, warm: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(accepted, weights 1/p for kept rows else 0, p); every row kept with weight 1 during
        warm-up (``warm``). Reproducible for a seed."""
        n = np.shape(estimates)[0]
        if warm:
            return np.ones(n, dtype=bool), np.ones(n), np.ones(n)
        p = self.probabilities(estimates, mean)
        accepted = np.random.default_rng(seed).random(n) < p
        return accepted, np.where(accepted, 1.0 / p, 0.0), p


def keep_share(p: np.ndarray) -> float:
    """The expected share of rows kept (the response's ``ratio``): mean(p), 1 for no rows."""
    return float(np.mean(p)) if np.size(p) else 1.0
