"""Live monitoring data of the dashboard: recent values per sketch and a short time series.

* **Recent values.** The registry calls :meth:`Monitor.record` with the losses every update
  observes (``"observed"``) and the estimates every Score / Sample computes (``"estimated"``);
  the monitor keeps the last :attr:`Monitor.window` of each kind per sketch in a ring buffer, and
  :meth:`Monitor.histograms` bins both on one set of fixed-width bins.
* **Time series.** :meth:`Monitor.tick` samples every sketch's counters at most once per
  :attr:`Monitor.interval_s` (a background thread of the server calls it every second, and each
  request for the series calls it too); each point holds the rates *over the interval since the
  previous point*: acceptance rate, prior-hit rate, updates/s, observations/s and rows offered to
  Sample per second, plus the automatic keep ratio's gauges as they stand at the point (the last
  Sample's keep ratio and variance factor, the smoothed CV). The last :attr:`Monitor.points`
  points are kept.

Nothing here changes a sketch; the core only calls the one :meth:`~Monitor.record` hook.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nws_core.errors import InvalidArgument, NotFound
from nws_server.registry import SketchRegistry
from nws_server.results import SketchStats

KINDS = ("observed", "estimated")


class Ring:
    """The last ``capacity`` floats appended, in a preallocated array."""

    def __init__(self, capacity: int) -> None:
        self._data = np.empty(capacity, dtype=np.float64)
        self._next = 0
        self._size = 0

    def extend(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64).ravel()[-self._data.size :]
        n, cap = values.size, self._data.size
        first = min(n, cap - self._next)
        self._data[self._next : self._next + first] = values[:first]
        self._data[: n - first] = values[first:]
        self._next = (self._next + n) % cap
        self._size = min(cap, self._size + n)

    def values(self) -> np.ndarray:
        """A copy of the kept values (in no particular order)."""
        return self._data[: self._size].copy()

    def __len__(self) -> int:
        return self._size


@dataclass(frozen=True)
class Histogram:
    counts: list[int]
    """Values per bin; the first and last bins also hold the values below and above the range."""
    count: int
    """Values in the window."""
    mean: float | None
    """Mean of the values in the window; None when empty."""


@dataclass(frozen=True)
class Histograms:
    edges: list[float]
    """bins + 1 increasing bin edges, shared by both histograms."""
    observed: Histogram
    estimated: Histogram
    window: int
    """Most recent values kept per kind."""


@dataclass(frozen=True)
class Point:
    """One sample of a sketch's usage: rates over the interval since the previous sample."""

    time: float
    """Unix time of the sample."""
    acceptance_rate: float | None
    """Rows Sample kept / rows offered in the interval; None when nothing was offered."""
    prior_hit_rate: float | None
    """Scored rows that got the prior / rows scored in the interval; None when none were scored."""
    updates_per_second: float
    observations_per_second: float
    sampled_per_second: float
    """Rows offered to Sample per second."""
    observations: int
    """The sketch's observation count at the sample."""
    keep_ratio: float | None = None
    """Keep ratio of the sketch's last Sample at the sample; None before the first."""
    priority_cv: float | None = None
    """The smoothed coefficient of variation of the estimates at the sample."""
    variance_factor: float | None = None
    """Predicted variance factor of the sketch's last Sample at the sample."""


@dataclass
class _Counters:
    wall: float
    clock: float
    sampled: int
    accepted: int
    estimates: int
    prior_hits: int
    updates: int
    observations: int
    keep_ratio: float | None
    priority_cv: float | None
    variance_factor: float | None

    @classmethod
    def of(cls, status: SketchStats, wall: float, clock: float) -> _Counters:
        return cls(
            wall,
            clock,
            status.sampled,
            status.accepted,
            status.estimates,
            status.prior_hits,
            status.updates,
            status.observations,
            status.keep_ratio,
            status.priority_cv,
            status.variance_factor,
        )


class _Track:
    """What the monitor keeps of one sketch."""

    def __init__(self, window: int, points: int) -> None:
        self.recent = {kind: Ring(window) for kind in KINDS}
        self.points: deque[Point] = deque(maxlen=points)
        self.last: _Counters | None = None


class Monitor:
    """Recent values and a usage time series of every sketch of one registry (thread-safe)."""

    def __init__(
        self,
        window: int = 4096,
        points: int = 300,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if window < 1 or points < 1 or interval_s < 0:
            raise ValueError("window and points must be >= 1, interval_s >= 0")
        self.window = window
        self.points = points
        self.interval_s = interval_s
        self._clock = clock
        self._registry: SketchRegistry | None = None
        self._tracks: dict[str, _Track] = {}
        self._lock = threading.Lock()
        self._last_tick: float | None = None

    def watch(self, registry: SketchRegistry) -> None:
        """Sample the sketches of ``registry`` in :meth:`tick`."""
        self._registry = registry

    # ----------------------------------------------------------------- the registry's hook
    def record(self, name: str, kind: str, values: np.ndarray) -> None:
        """Keep ``values`` (the losses an update observed, or estimates computed) of ``name``."""
        with self._lock:
            track = self._tracks.get(name)
            if track is None:
                track = self._tracks[name] = _Track(self.window, self.points)
            track.recent[kind].extend(values)

    # ----------------------------------------------------------------- reads
    def histograms(self, name: str, bins: int = 20, upper: float | None = None) -> Histograms:
        """Both kinds of recent values of ``name`` on ``bins`` equal bins over [lower, upper].

        lower is min(0, smallest value); upper defaults to the largest value (values beyond it
        land in the last bin)."""
        self._check_sketch(name)
        if not (isinstance(bins, int) and 1 <= bins <= 1000):
            raise InvalidArgument(f"bins must be an integer in [1, 1000], got {bins!r}")
        if upper is not None and not math.isfinite(upper):
            raise InvalidArgument(f"upper must be a finite number, got {upper!r}")
        with self._lock:
            track = self._tracks.get(name)
            values = {kind: track.recent[kind].values() if track else np.empty(0) for kind in KINDS}
        both = np.concatenate(list(values.values()))
        lower = min(0.0, float(both.min())) if both.size else 0.0
        top = upper if upper is not None else (float(both.max()) if both.size else 1.0)
        if top <= lower:
            top = lower + 1.0
        edges = np.linspace(lower, top, bins + 1)
        out = {}
        for kind, v in values.items():
            counts, _ = np.histogram(np.clip(v, lower, top), bins=edges)
            out[kind] = Histogram(
                counts=[int(c) for c in counts],
                count=int(v.size),
                mean=float(v.mean()) if v.size else None,
            )
        return Histograms(
            edges=[float(e) for e in edges],
            observed=out["observed"],
            estimated=out["estimated"],
            window=self.window,
        )

    def series(self, name: str) -> list[Point]:
        """The time series of ``name``, oldest first (samples first if one is due)."""
        self._check_sketch(name)
        self.tick()
        with self._lock:
            track = self._tracks.get(name)
            return list(track.points) if track else []

    # ----------------------------------------------------------------- sampling
    def tick(self, force: bool = False) -> bool:
        """Sample every sketch if :attr:`interval_s` has passed since the last sample (or
        ``force``); True if it sampled. Forgets sketches that no longer exist."""
        if self._registry is None:
            return False
        now = self._clock()
        with self._lock:
            if (
                not force
                and self._last_tick is not None
                and now - self._last_tick < self.interval_s
            ):
                return False
            self._last_tick = now
        infos = self._registry.list()
        wall = time.time()
        with self._lock:
            for gone in set(self._tracks) - {info.name for info in infos}:
                del self._tracks[gone]
            for info in infos:
                track = self._tracks.get(info.name)
                if track is None:
                    track = self._tracks[info.name] = _Track(self.window, self.points)
                current = _Counters.of(info.stats, wall, now)
                if track.last is not None:
                    track.points.append(_point(track.last, current))
                track.last = current
        return True

    def run(self, stop: threading.Event) -> None:
        """Call :meth:`tick` every :attr:`interval_s` until ``stop`` is set (a thread target)."""
        while not stop.wait(self.interval_s or 1.0):
            self.tick()

    def _check_sketch(self, name: str) -> None:
        if self._registry is not None:
            self._registry.get(name)  # NotFound for a sketch that does not exist
        elif name not in self._tracks:
            raise NotFound(f"no sketch named {name!r}")


def _point(before: _Counters, after: _Counters) -> Point:
    seconds = max(after.clock - before.clock, 1e-9)
    sampled = after.sampled - before.sampled
    estimates = after.estimates - before.estimates
    return Point(
        time=after.wall,
        acceptance_rate=(after.accepted - before.accepted) / sampled if sampled > 0 else None,
        prior_hit_rate=(
            (after.prior_hits - before.prior_hits) / estimates if estimates > 0 else None
        ),
        updates_per_second=max(0, after.updates - before.updates) / seconds,
        observations_per_second=max(0, after.observations - before.observations) / seconds,
        sampled_per_second=max(0, sampled) / seconds,
        observations=after.observations,
        keep_ratio=after.keep_ratio,
        priority_cv=after.priority_cv,
        variance_factor=after.variance_factor,
    )
