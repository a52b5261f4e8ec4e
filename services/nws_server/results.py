"""What the service core answers: plain frozen dataclasses of numpy arrays and Python numbers.

The registry (:mod:`nws_server.registry`) returns these; the transports convert them once each
(:mod:`nws_server.wire` to protobuf, :mod:`nws_server.rest` to JSON).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nws_core.sketch import SketchConfig


@dataclass(frozen=True)
class ScoreResult:
    estimates: np.ndarray
    """Estimated value per row (float64)."""
    prior_used: np.ndarray
    """True where the sketch had no data and returned the prior (bool)."""
    support: np.ndarray
    """Kernel-density estimate at each row; 0 where the prior was used (float64)."""


@dataclass(frozen=True)
class SampleResult:
    accepted: np.ndarray
    """Which rows to keep (bool)."""
    weights: np.ndarray
    """1 / p for kept rows, 0 for the others (float64)."""
    probabilities: np.ndarray
    """Keep probability of every row (float64)."""
    estimates: np.ndarray
    prior_used: np.ndarray
    warmup: bool
    """The sketch was in its warm-up: every row kept with weight 1."""
    ratio: float = 1.0
    """The keep ratio drawn with: the requested one, auto's choice, or 1 during warm-up."""
    cv: float = 0.0
    """The sketch's smoothed CV of the priorities after this request (:mod:`keep_ratio`)."""
    variance_factor: float = 1.0
    """Predicted second moment of the weighted gradient relative to uniform sampling."""


@dataclass(frozen=True)
class UpdateResult:
    request_id: str
    observations: int
    """The sketch's observation count right after this update was applied."""
    duplicate: bool
    """The request id had been applied before; nothing changed."""


@dataclass(frozen=True)
class SketchStatus:
    """A sketch's state (from the engine) and usage (from the registry)."""

    observations: int
    total_weight: float
    mean_value: float | None
    occupancy: float
    bytes: int
    estimates: int
    prior_hits: int
    prior_hit_rate: float
    updates: int
    sampled: int
    accepted: int
    acceptance_rate: float
    updates_per_second: float
    observations_per_second: float
    in_warmup: bool
    keep_ratio: float | None = None
    """Keep ratio of the last Sample; None before the first (not persisted)."""
    priority_cv: float | None = None
    """Smoothed CV of the priorities of recent Samples after warm-up (not persisted)."""
    variance_factor: float | None = None
    """Predicted variance factor of the last Sample (not persisted)."""


@dataclass(frozen=True)
class SketchInfo:
    name: str
    config: SketchConfig
    warmup: int
    device: str
    created_at: float
    """Unix time of creation."""
    status: SketchStatus
    digest: str | None = None


@dataclass(frozen=True)
class ServerInfo:
    device: str
    started_at: float
    uptime_seconds: float
    sketches: int
    micro_batching: bool
    store: str = "memory"
    """Where the state lives: 'memory', 'file' or 'redis'."""
    restored_sketches: int = 0
    replayed_records: int = 0


@dataclass
class RestoreReport:
    """What :meth:`~nws_server.registry.SketchRegistry.restore` found in the state store."""

    sketches: int = 0
    """Sketches restored."""
    snapshots: int = 0
    """Of them, restored from a snapshot (the others from their journal alone)."""
    records: int = 0
    """Journal records replayed."""
    dropped_tails: int = 0
    """Torn, never acknowledged final journal records dropped."""
    discarded: list[str] = field(default_factory=list)
    """Corrupt sketches discarded (only with ``discard_corrupt``)."""


@dataclass(frozen=True)
class SnapshotResult:
    name: str
    seq: int
    """The last journal sequence number the sketch's snapshot covers."""
    written: bool
    """False when nothing had changed since the previous snapshot."""
