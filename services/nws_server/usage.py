"""A sketch's usage statistics: what Sample was offered and kept, update and observation rates,
and the automatic keep ratio's moving statistics (:mod:`nws_core.keep_ratio`).

Thread-safe, and apart from the sketch's lock: counting never waits for the engine. Only the
Sample counts are persisted with the sketch (in its snapshot); the rates and the keep-ratio
statistics start afresh on a restart or an import.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from nws_core import keep_ratio


class RateMeter:
    """Events per second over a sliding window, kept in one-second buckets."""

    def __init__(self, window_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self._window = window_s
        self._clock = clock
        self._buckets: deque[list[float]] = deque()  # [second, count]
        self._first: float | None = None

    def add(self, count: float = 1.0) -> None:
        now = self._clock()
        if self._first is None:
            self._first = now
        second = float(int(now))
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1][1] += count
        else:
            self._buckets.append([second, count])
        self._prune(now)

    def rate(self) -> float:
        now = self._clock()
        self._prune(now)
        if self._first is None:
            return 0.0
        span = max(1.0, min(self._window, now - self._first))
        return sum(count for _, count in self._buckets) / span

    def _prune(self, now: float) -> None:
        while self._buckets and self._buckets[0][0] <= now - self._window - 1.0:
            self._buckets.popleft()


@dataclass(frozen=True)
class UsageReading:
    """One consistent reading of a sketch's usage."""

    sampled: int
    """Rows offered to Sample."""
    accepted: int
    """Rows Sample kept."""
    updates_per_second: float
    observations_per_second: float
    keep_ratio: float | None
    """Keep ratio of the last Sample; None before the first."""
    priority_cv: float | None
    """Smoothed CV of the priorities of recent Samples after warm-up; None before."""
    variance_factor: float | None
    """Predicted variance factor of the last Sample; None before the first."""

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.sampled if self.sampled else 0.0


class Usage:
    """The counters of one sketch (thread-safe)."""

    def __init__(self, sampled: int = 0, accepted: int = 0) -> None:
        self._lock = threading.Lock()
        self._sampled, self._accepted = sampled, accepted
        self._update_rate = RateMeter()
        self._observation_rate = RateMeter()
        self.keep = keep_ratio.KeepRatioState()
        """The automatic keep ratio's state, which Sample reads and feeds."""

    def count_sample(self, offered: int, kept: int) -> None:
        with self._lock:
            self._sampled += offered
            self._accepted += kept

    def count_update(self, rows: int) -> None:
        with self._lock:
            self._update_rate.add(1)
            self._observation_rate.add(rows)

    def counts(self) -> tuple[int, int]:
        """(sampled, accepted): what a snapshot persists."""
        with self._lock:
            return self._sampled, self._accepted

    def read(self) -> UsageReading:
        with self._lock:
            sampled, accepted = self._sampled, self._accepted
            updates = self._update_rate.rate()
            observations = self._observation_rate.rate()
        last_ratio, cv, factor = self.keep.read()
        return UsageReading(sampled, accepted, updates, observations, last_ratio, cv, factor)
