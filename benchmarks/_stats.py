"""Paired statistics for the protocol: t intervals over seeds, and full's budget frontier.

A *frontier* is one seed's accuracy-vs-compute curve of ``full`` trained at several budgets
(each with its learning-rate schedule planned to end at its budget), starting at the untrained
model: points (compute, accuracy) sorted by compute. Every other run of the same seed is judged
against it: its accuracy minus the frontier's at the same compute, and the compute the frontier
needs to reach its accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

Frontier = Sequence[tuple[float, float]]


@dataclass(frozen=True)
class Interval:
    """Mean of paired per-seed values and its two-sided t interval."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def verdict(self) -> str:
        """'gain' / 'loss' only when the interval excludes 0."""
        if self.n < 2:
            return "one seed: no interval"
        if self.low > 0:
            return "gain"
        if self.high < 0:
            return "loss"
        return "inside the noise"

    def text(self, fmt: str = "{:+.1f}", scale: float = 1.0) -> str:
        m = fmt.format(scale * self.mean)
        if self.n < 2:
            return m
        return f"{m} [{fmt.format(scale * self.low)}, {fmt.format(scale * self.high)}]"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of the protocol's tables (the verdict written out for readers)."""
        return {
            "mean": self.mean,
            "low": self.low,
            "high": self.high,
            "n": self.n,
            "verdict": self.verdict,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Interval:
        return cls(d["mean"], d["low"], d["high"], d["n"])


def facts_to_json(facts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A table's facts (label -> field -> Interval or plain value) in their JSON form."""
    return {
        label: {k: v.to_dict() if isinstance(v, Interval) else v for k, v in f.items()}
        for label, f in facts.items()
    }


def facts_from_json(facts: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The inverse of :func:`facts_to_json`: every interval of a table's JSON as an Interval."""
    return {
        label: {
            k: Interval.from_dict(v) if isinstance(v, dict) and "verdict" in v else v
            for k, v in f.items()
        }
        for label, f in facts.items()
    }


def t_interval(values: Sequence[float], level: float = 0.95) -> Interval:
    """Student-t interval of the mean of ``values`` (paired differences, one per seed)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("t_interval needs at least one value")
    mean = float(x.mean())
    if x.size < 2:
        return Interval(mean, mean, mean, int(x.size))
    half = float(stats.t.ppf(0.5 + level / 2, df=x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return Interval(mean, mean - half, mean + half, int(x.size))


def _sorted(frontier: Frontier) -> tuple[np.ndarray, np.ndarray]:
    pts = sorted((float(c), float(a)) for c, a in frontier)
    if len(pts) < 2:
        raise ValueError("a frontier needs at least two points")
    c, a = (np.array(v) for v in zip(*pts, strict=True))
    return c, a


def _envelope(frontier: Frontier) -> tuple[np.ndarray, np.ndarray]:
    """Compute and the running maximum of accuracy: a larger budget that scored lower (noise)
    does not make an accuracy cost more, nor the frontier at that compute lower."""
    c, a = _sorted(frontier)
    return c, np.maximum.accumulate(a)


def accuracy_at(frontier: Frontier, compute: float) -> float:
    """The frontier's accuracy at ``compute`` (its running maximum, linear between points); held
    at its last point beyond it (``full`` was not measured past its own 100 % budget)."""
    c, env = _envelope(frontier)
    return float(np.interp(compute, c, env))


def compute_for(frontier: Frontier, accuracy: float) -> tuple[float, bool]:
    """(compute the frontier needs to reach ``accuracy``, whether it reaches it at all).

    The frontier is read through its running maximum, as in :func:`accuracy_at`. Where
    ``accuracy`` is above every point, the answer is the frontier's largest compute and False:
    a lower bound on what ``full`` would need. At or below the untrained model's accuracy the
    answer is 0: such a run saved nothing (its speed-up reads 0).
    """
    c, env = _envelope(frontier)
    if accuracy > env[-1]:
        return float(c[-1]), False
    if accuracy <= env[0]:
        return float(c[0]), True
    k = int(np.argmax(env >= accuracy))  # first point at or above: segment k-1 .. k
    c0, c1, a0, a1 = c[k - 1], c[k], env[k - 1], env[k]
    if a1 == a0:
        return float(c1), True
    return float(c0 + (accuracy - a0) / (a1 - a0) * (c1 - c0)), True
