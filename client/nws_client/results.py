"""What the client returns: plain frozen dataclasses holding numpy arrays and Python numbers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, Literal, Protocol, TypeVar

import numpy as np

Estimator = Literal["mean", "median_of_means"]
Accumulator = Literal["float64", "float32"]


@dataclass(frozen=True)
class SketchConfig:
    """A sketch's configuration. Fields left None take the server's defaults.

    The server's answers always have every field set. See ``nws_core.sketch.SketchConfig``
    for what each field does.
    """

    dim: int
    """Embedding dimension d (required)."""
    rows: int | None = None
    """R: independent hash rows (server default 200); the error shrinks as 1/sqrt(R)."""
    bits: int | None = None
    """K: sign bits per row (server default 10); 2^K buckets per row."""
    seed: int = 0
    """Seed of the hash functions."""
    estimator: Estimator | None = None
    """'mean' (default) or 'median_of_means'."""
    groups: int | None = None
    """Row groups of median_of_means (server default 5)."""
    prior: float | None = None
    """Estimate where the sketch has no data; None = the running mean of observed losses."""
    decay: float | None = None
    """Forgetting factor in (0, 1] applied before each update (server default 1 = none)."""
    pool: int | None = None
    """Shared pool of projection directions; None = rows * bits independent ones."""
    buckets: int | None = None
    """Memory-lean layout: cells per row; None = 2^bits."""
    accumulator: Accumulator | None = None
    """Dtype of the arrays: 'float64' (default) or 'float32'."""
    center: np.ndarray | None = field(default=None, repr=False, compare=False)
    """Centering vector [dim] subtracted before hashing; frozen once set."""


@dataclass(frozen=True)
class SketchStats:
    observations: int
    """Examples ever added (not decayed)."""
    total_weight: float
    """Decayed count of examples the arrays hold."""
    mean_value: float | None
    """Decayed mean of the observed losses; None before the first update."""
    occupancy: float
    """Fraction of non-empty cells."""
    bytes: int
    """Memory of the arrays and hash parameters."""
    estimates: int
    """Rows ever scored."""
    prior_hits: int
    """Scored rows that got the prior."""
    prior_hit_rate: float
    updates: int
    """Update calls applied."""
    sampled: int
    """Rows offered to Sample."""
    accepted: int
    """Rows Sample kept."""
    acceptance_rate: float
    updates_per_second: float
    observations_per_second: float
    in_warmup: bool
    """Sample keeps every row while this is true."""
    keep_ratio: float | None = None
    """Keep ratio of the last Sample; None before the first (not persisted by the server)."""
    priority_cv: float | None = None
    """Smoothed coefficient of variation of the estimates of recent Samples after warm-up."""
    variance_factor: float | None = None
    """Predicted variance factor of the last Sample."""


ConfigT = TypeVar("ConfigT")
"""The type of a sketch's config: :class:`SketchConfig` in the client's answers, the engine's
``nws_core.config.SketchConfig`` (every field set) in the server's core."""


@dataclass(frozen=True)
class SketchInfo(Generic[ConfigT]):
    """A sketch's description: the one type of the client's answers and of the server's core."""

    name: str
    config: ConfigT
    warmup: int
    """Observations before Sample starts to select."""
    device: str
    created_at: datetime
    stats: SketchStats
    digest: str | None = None
    """Hash of the sketch's content, not its usage counters (only when asked for)."""
    created: bool | None = None
    """From create_sketch: False when an equal sketch already existed."""


ClientInfo = SketchInfo[SketchConfig]
"""A sketch's description as the client returns it."""


@dataclass(frozen=True)
class ScoreResult:
    estimates: np.ndarray
    """Estimated loss per row (float64)."""
    prior_used: np.ndarray
    """True where the sketch had no data near the row (bool)."""
    support: np.ndarray
    """Kernel-density estimate at each row (float64)."""


@dataclass(frozen=True)
class SampleResult:
    accepted: np.ndarray
    """Which rows to keep (bool)."""
    weights: np.ndarray
    """Importance weight 1 / p of kept rows, 0 for the others (float64)."""
    probabilities: np.ndarray
    """Keep probability of every row (float64)."""
    estimates: np.ndarray
    """Estimated loss per row (float64; NaN in a fallback answer)."""
    prior_used: np.ndarray
    warmup: bool
    """The sketch was in its warm-up: every row kept with weight 1."""
    fallback: bool = False
    """The server was unreachable and the client's ``on_unavailable`` policy answered."""
    ratio: float | None = None
    """The keep ratio drawn with (the mean of ``probabilities``): the server's choice under
    ``ratio="auto"``, else the requested ratio; 1 during warm-up (and in a fallback under auto)."""
    cv: float | None = None
    """The sketch's smoothed coefficient of variation of the estimates (the predicted gain of
    importance sampling is 1 + cv**2); None in a fallback answer."""
    variance_factor: float | None = None
    """Predicted second moment of the weighted gradient relative to uniform sampling at the
    same ratio (sampling pays when it is <= ratio); 1 in a fallback answer (uniform p)."""

    @property
    def indices(self) -> np.ndarray:
        """Positions of the kept rows."""
        return np.flatnonzero(self.accepted)

    @classmethod
    def of_draw(
        cls, drawn: Drawn, estimates: np.ndarray, prior_used: np.ndarray, warmup: bool
    ) -> SampleResult:
        """The answer to a Sample whose draw is ``drawn`` (``nws_core.sampling.draw``)."""
        return cls(
            accepted=drawn.accepted,
            weights=drawn.weights,
            probabilities=drawn.probabilities,
            estimates=estimates,
            prior_used=prior_used,
            warmup=warmup,
            ratio=drawn.ratio,
            cv=drawn.cv,
            variance_factor=drawn.variance_factor,
        )


class Drawn(Protocol):
    """What a draw reports (``nws_core.sampling.Drawn``), as :meth:`SampleResult.of_draw`
    reads it."""

    @property
    def accepted(self) -> np.ndarray: ...
    @property
    def weights(self) -> np.ndarray: ...
    @property
    def probabilities(self) -> np.ndarray: ...
    @property
    def ratio(self) -> float: ...
    @property
    def cv(self) -> float: ...
    @property
    def variance_factor(self) -> float: ...


@dataclass(frozen=True)
class UpdateResult:
    request_id: str
    observations: int
    """The sketch's observation count right after this update was applied."""
    duplicate: bool
    """The request id had been applied before; nothing changed."""


@dataclass(frozen=True)
class ServerStats:
    version: str
    device: str
    started_at: datetime
    uptime_seconds: float
    sketches: int
    micro_batching: bool
    store: str = "memory"
    """Where the server keeps its state: 'memory', 'file' or 'redis'."""
    restored_sketches: int = 0
    """Sketches the server restored from its state store when it started."""
    replayed_records: int = 0
    """Journal records it replayed for them."""


@dataclass(frozen=True)
class ClientStats:
    """This process's view: calls, fallbacks and the background update buffer (rows)."""

    calls: int
    """RPCs made."""
    errors: int
    """RPCs that failed (a fallback answer counts as an error and as a fallback)."""
    fallbacks: int
    """Sample calls answered by the on_unavailable policy because the server was unreachable."""
    fallback_rows: int
    updates_buffered: int
    """Rows queued or in flight, not yet acknowledged."""
    updates_acked: int
    """Rows acknowledged by the server (duplicates included)."""
    updates_duplicate: int
    """Update messages the server had applied before (a retry after a lost ack)."""
    updates_rejected: int
    """Rows the server rejected; flush() raises the first rejection."""
    updates_dropped: int
    """Rows dropped because the buffer was full (or still buffered at close)."""
    stream_reconnects: int
    last_error: str | None


@dataclass(frozen=True)
class Stats:
    server: ServerStats
    sketches: dict[str, SketchStats]
    client: ClientStats
