"""What the service core answers: plain frozen dataclasses of numpy arrays and Python numbers.

The answers that clients see are the API types of :mod:`nws_client.results` (numpy only), the
same objects the client returns and the trainer uses: the registry builds them, the transports
convert them once each (:mod:`nws_server.wire` to protobuf, :mod:`nws_server.rest` to JSON) and
the client converts them back; a sketch's description is the API's ``SketchInfo`` holding the
engine's config (:data:`Info`). The types here are the server's own: the server's description,
and what restore and snapshot report.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nws_client.results import SampleResult, ScoreResult, SketchInfo, SketchStats, UpdateResult
from nws_core.sketch import SketchConfig

Info = SketchInfo[SketchConfig]
"""A sketch's description in the server: the API type, with the engine's config."""


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


__all__ = [
    "Info",
    "RestoreReport",
    "SampleResult",
    "ScoreResult",
    "ServerInfo",
    "SketchInfo",
    "SketchStats",
    "SnapshotResult",
    "UpdateResult",
]
