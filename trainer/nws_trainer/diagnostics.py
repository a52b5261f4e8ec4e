"""Sampling diagnostics: rank correlation, weight quality, estimate spread, and a per-window log.

Every sampled run records, per evaluation window: the acceptance rate; the spread of the
estimates within candidate chunks (coefficient of variation); the keep ratio the sketch drew
with (its choice under ratio auto); the effective sample size of the
weights per batch and the largest weight; the prior-hit rate; and the Spearman correlation
between the sketch's estimate (taken at sampling time, before the update) and the loss then
observed on the trained example.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from nws_core.policy import rankdata


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman rank correlation of two equal-length vectors; None when undefined.

    Undefined means fewer than 3 pairs, or one side constant (no ranking to compare).
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"spearman needs equal lengths, got {a.size} and {b.size}")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if a.size < 3:
        return None
    ra, rb = rankdata(a), rankdata(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = math.sqrt(float(ra @ ra) * float(rb @ rb))
    if denom == 0.0:
        return None
    return float(ra @ rb) / denom


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size (sum w)^2 / sum w^2: n for equal weights, less when skewed."""
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    sq = float(w @ w)
    return float(w.sum()) ** 2 / sq if sq > 0 else 0.0


def coefficient_of_variation(x: np.ndarray) -> float | None:
    """std / mean of ``x``; None for fewer than 2 values or a non-positive mean."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.size < 2:
        return None
    mean = float(x.mean())
    if mean <= 0:
        return None
    return float(x.std()) / mean


@dataclass
class ChunkStats:
    """What selection did to the candidate chunks behind one training batch (summable)."""

    candidates: int = 0
    """Candidates offered to selection."""
    accepted: int = 0
    """Candidates kept."""
    scored: int = 0
    """Candidates that got an estimate (sketch or true loss)."""
    prior_hits: int = 0
    """Estimates that fell back to the sketch's prior (empty buckets)."""
    warmup_candidates: int = 0
    """Candidates seen while the sketch was in its warm-up (all kept, weight 1)."""
    fallback_candidates: int = 0
    """Candidates selected by the client's fallback policy: the sketch server was unreachable."""
    cv_sum: float = 0.0
    """Sum over scored, non-warm-up chunks of the estimates' coefficient of variation."""
    cv_chunks: int = 0
    """Number of chunks in ``cv_sum``."""
    select_seconds: float = 0.0
    """Time spent in selection calls (sketch Sample, scoring forward)."""
    ratio_sum: float = 0.0
    """Sum over the non-warm-up chunks the sketch drew of the keep ratio it drew with."""
    ratio_chunks: int = 0
    """Number of chunks in ``ratio_sum``."""

    def add(self, other: ChunkStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


@dataclass
class Window:
    """Diagnostics accumulated between two evaluations; :meth:`row` summarises and resets."""

    steps: int = 0
    chunks: ChunkStats = field(default_factory=ChunkStats)
    trained: int = 0
    ess: list[float] = field(default_factory=list)
    ess_fraction: list[float] = field(default_factory=list)
    max_weight: float = 0.0
    estimates: list[np.ndarray] = field(default_factory=list)
    observed: list[np.ndarray] = field(default_factory=list)
    step_seconds: float = 0.0
    loader_seconds: float = 0.0
    update_seconds: float = 0.0
    train_loss_sum: float = 0.0

    def record_batch(
        self,
        weights: np.ndarray,
        estimates: np.ndarray,
        losses: np.ndarray,
        chunks: ChunkStats,
        warmup: np.ndarray,
        observed: np.ndarray | None = None,
    ) -> None:
        """Record one optimizer step's batch.

        ``estimates`` is NaN where a row had none; rows kept by the warm-up rule (``warmup``
        True) are left out of the estimate-vs-observed correlation. ``observed``: the values
        the sketch learned (``--feedback``); None = the losses.
        """
        observed = losses if observed is None else observed
        self.steps += 1
        self.chunks.add(chunks)
        self.trained += int(weights.size)
        self.train_loss_sum += float(np.mean(losses)) if losses.size else 0.0
        if weights.size:
            ess = effective_sample_size(weights)
            self.ess.append(ess)
            self.ess_fraction.append(ess / weights.size)
            self.max_weight = max(self.max_weight, float(weights.max()))
        scored = ~np.asarray(warmup, dtype=bool)
        if scored.any():
            self.estimates.append(np.asarray(estimates, dtype=np.float64)[scored])
            self.observed.append(np.asarray(observed, dtype=np.float64)[scored])

    def row(self) -> dict[str, float | int | None]:
        """The window's diagnostics (None where undefined), then reset for the next window."""
        c = self.chunks
        est = np.concatenate(self.estimates) if self.estimates else np.zeros(0)
        obs = np.concatenate(self.observed) if self.observed else np.zeros(0)
        steps = max(self.steps, 1)
        out: dict[str, float | int | None] = {
            "window_steps": self.steps,
            "train_loss": self.train_loss_sum / steps if self.steps else None,
            "candidates": c.candidates,
            "acceptance_rate": c.accepted / c.candidates if c.candidates else None,
            "warmup_fraction": c.warmup_candidates / c.candidates if c.candidates else None,
            "estimate_cv": c.cv_sum / c.cv_chunks if c.cv_chunks else None,
            "keep_ratio": c.ratio_sum / c.ratio_chunks if c.ratio_chunks else None,
            "prior_hit_rate": c.prior_hits / c.scored if c.scored else None,
            "ess_per_batch": _mean(self.ess),
            "ess_fraction": _mean(self.ess_fraction),
            "max_weight": self.max_weight if self.ess else None,
            "spearman_trained": spearman(est, obs) if est.size else None,
            "batch_size_mean": self.trained / steps if self.steps else None,
            "select_seconds_per_step": c.select_seconds / steps if self.steps else None,
            "update_seconds_per_step": self.update_seconds / steps if self.steps else None,
            "loader_wait_seconds_per_step": self.loader_seconds / steps if self.steps else None,
            "step_seconds_per_step": self.step_seconds / steps if self.steps else None,
        }
        self.__init__()  # type: ignore[misc]
        return out
