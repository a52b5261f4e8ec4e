"""One Sample draw, the same wherever it runs: the sketch server's registry and the trainer's
in-process backend both call :func:`draw` on estimates they have validated.

The draw plans the keep ratio (:func:`nws_core.keep_ratio.plan`: 1 in warm-up, the requested
ratio, or auto's choice, feeding the sketch's moving CV), draws with the importance policy
(:class:`nws_core.policy.SamplingPolicy`) or InfoBatch's rule (:class:`nws_core.prune.Prune`),
and records the ratio and the predicted variance factor in the sketch's keep-ratio state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nws_core import keep_ratio, policy
from nws_core.prune import Prune, keep_share


@dataclass(frozen=True)
class Drawn:
    """What one draw kept, and what it reports."""

    accepted: np.ndarray
    """Which rows to keep (bool)."""
    weights: np.ndarray
    """1 / p for kept rows, 0 for the others (float64)."""
    probabilities: np.ndarray
    """Keep probability of every row (float64)."""
    ratio: float
    """The keep ratio drawn with (prune: the expected keep share)."""
    cv: float
    """The sketch's smoothed CV of the priorities after this draw."""
    variance_factor: float
    """Predicted second moment of the weighted gradient relative to uniform sampling."""


def draw(
    state: keep_ratio.KeepRatioState,
    scores: np.ndarray,
    ratio: float,
    p_min: float,
    *,
    seed: int | None,
    warm: bool,
    rule: policy.SamplingPolicy | None = None,
    auto: keep_ratio.AutoRatio | None = None,
    prune: Prune | None = None,
    mean: float | None = None,
) -> Drawn:
    """Draw from validated ``scores`` (the sketch's estimates); ``mean`` is the sketch's mean
    observed value, which ``prune`` compares every score with."""
    plan = keep_ratio.plan(state, scores, ratio, p_min, rule, auto, warm=warm)
    if prune is not None:
        accepted, weights, probs = prune.draw(scores, mean, seed, warm=warm)
        plan = keep_ratio.Plan(keep_share(probs), 1.0, plan.cv)
    else:
        accepted, weights, probs = (rule or policy.SamplingPolicy()).draw(
            scores, plan.ratio, plan.p_min, seed, warm=warm
        )
    factor = keep_ratio.variance_factor(probs, keep_ratio.priorities(scores))
    state.record(plan.ratio, factor)
    return Drawn(accepted, weights, probs, plan.ratio, plan.cv, factor)
