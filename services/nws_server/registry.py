"""The service core: named sketches on one device, shared by the gRPC and the REST front doors.

The registry owns the sketches, serialises access to each one with its own lock (the engine is
not thread-safe), applies the sampling policy with each sketch's warm-up, enforces the limits
(sketch count, sketch size, batch size, name pattern), deduplicates retried updates, decays and
center settings by request id (one window per sketch, persisted with it), and keeps the usage
counters (acceptance rate, prior-hit rate, update rates, and the moving average of the automatic
keep ratio, :mod:`nws_core.keep_ratio`). It raises only
:mod:`nws_core.errors`; it knows nothing of gRPC or HTTP.

Inputs are validated once, here or in the engine, before anything changes: a rejected request
leaves every sketch exactly as it was.

Durability (with a :class:`~nws_server.store.StateStore`): every accepted mutation is appended to
the sketch's journal (:mod:`nws_server.records`) under the sketch's lock, after validation and
before it is applied, so an acknowledged mutation is durable and a failed append (Unavailable)
changes nothing. :meth:`SketchRegistry.snapshot` writes snapshots that compact the journals;
:meth:`SketchRegistry.restore` rebuilds every sketch from its snapshot and journal on start.
"""

from __future__ import annotations

import builtins
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from nws_core import keep_ratio, policy
from nws_core import prune as _prune
from nws_core.errors import (
    AlreadyExists,
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    NWSError,
    ResourceExhausted,
    Unavailable,
)
from nws_core.sketch import (
    Estimates,
    NWSketch,
    SketchConfig,
    as_embeddings,
    as_values,
    resolve_device,
)
from nws_server import ops, records
from nws_server.batching import Coalescer
from nws_server.store import NAME_PATTERN, Loaded, StateStore

log = logging.getLogger(__name__)

MAX_REQUEST_ID_CHARS = 128


@dataclass(frozen=True)
class Limits:
    """What one server accepts; over a limit a request gets ResourceExhausted."""

    max_sketches: int = 64
    max_sketch_bytes: int = 2**30
    max_batch_rows: int = 65536
    idempotency_window: int = 65536


@dataclass(frozen=True)
class Batching:
    """Micro-batching of concurrent estimates on one sketch (see :mod:`nws_server.batching`)."""

    enabled: bool = False
    max_wait_s: float = 0.0
    max_rows: int = 8192


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
    """What :meth:`SketchRegistry.restore` found in the state store."""

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


class _Entry:
    """One named sketch with its lock, warm-up, usage counters and idempotency window."""

    def __init__(
        self,
        name: str,
        sketch: NWSketch,
        requested: SketchConfig,
        warmup: int,
        batching: Batching,
        on_batch: Callable[[int, int], None] | None,
        created_at: float | None = None,
    ) -> None:
        self.name = name
        self.sketch = sketch
        self.requested = requested  # the config of the create call, for idempotent re-creates
        self.warmup = warmup
        self.created_at = time.time() if created_at is None else created_at
        self.lock = threading.Lock()  # serialises every engine call on this sketch
        # idempotency window of Update, Decay and SetCenter: request id -> observations after it
        self.applied: OrderedDict[str, int] = OrderedDict()
        # durability: the last journal record written, the last one a snapshot covers; the
        # snapshot lock orders snapshot writes (and delete) of this sketch; taken before `lock`
        self.seq = 0
        self.snapshot_seq = 0
        self.snapshot_lock = threading.Lock()
        self.deleted = False
        self._counter_lock = threading.Lock()
        self.sampled = 0
        self.accepted = 0
        self.update_rate = RateMeter()
        self.observation_rate = RateMeter()
        self.keep = keep_ratio.KeepRatioState()  # usage statistic, not persisted
        self._coalescer: Coalescer[tuple[Estimates, int]] | None = None
        if batching.enabled:
            self._coalescer = Coalescer(
                self.lock,
                self._estimate_locked,
                _split_estimates,
                max_wait_s=batching.max_wait_s,
                max_rows=batching.max_rows,
                on_batch=on_batch,
            )

    def has_applied(self, request_id: str) -> bool:
        """The request id is in the idempotency window (an empty id never is)."""
        return bool(request_id) and request_id in self.applied

    def estimate(self, x: torch.Tensor) -> tuple[Estimates, int]:
        """Estimates of validated rows, with the observation count they were computed at."""
        if self._coalescer is not None:
            return self._coalescer.submit(x)
        with self.lock:
            return self._estimate_locked(x)

    def _estimate_locked(self, x: torch.Tensor) -> tuple[Estimates, int]:
        return self.sketch.estimate(x), self.sketch.observations

    def count_sample(self, offered: int, kept: int) -> None:
        with self._counter_lock:
            self.sampled += offered
            self.accepted += kept

    def count_update(self, rows: int) -> None:
        with self._counter_lock:
            self.update_rate.add(1)
            self.observation_rate.add(rows)

    def status(self) -> SketchStatus:
        with self.lock:
            s = self.sketch.stats
        with self._counter_lock:
            sampled, accepted = self.sampled, self.accepted
            updates_per_second = self.update_rate.rate()
            observations_per_second = self.observation_rate.rate()
        last_ratio, cv, factor = self.keep.read()
        return SketchStatus(
            observations=s.observations,
            total_weight=s.total_weight,
            mean_value=s.mean_value,
            occupancy=s.occupancy,
            bytes=s.bytes,
            estimates=s.estimates,
            prior_hits=s.prior_hits,
            prior_hit_rate=s.prior_hits / s.estimates if s.estimates else 0.0,
            updates=s.updates,
            sampled=sampled,
            accepted=accepted,
            acceptance_rate=accepted / sampled if sampled else 0.0,
            updates_per_second=updates_per_second,
            observations_per_second=observations_per_second,
            in_warmup=policy.in_warmup(s.observations, self.warmup),
            keep_ratio=last_ratio,
            priority_cv=cv,
            variance_factor=factor,
        )


class SketchRegistry:
    """Named sketches on one device; thread-safe; the one core behind both front doors."""

    def __init__(
        self,
        device: str = "auto",
        limits: Limits | None = None,
        batching: Batching | None = None,
        on_batch: Callable[[int, int], None] | None = None,
        store: StateStore | None = None,
        on_values: Callable[[str, str, np.ndarray], None] | None = None,
    ) -> None:
        """``on_values(name, kind, values)`` (a monitoring hook, e.g.
        :meth:`nws_server.monitor.Monitor.record`) gets the losses every update applies
        (kind ``"observed"``) and the estimates every Score / Sample computes (``"estimated"``)."""
        self.device = resolve_device(device)
        self.limits = limits or Limits()
        self.batching = batching or Batching()
        self.store = store
        self.restored = RestoreReport()
        self.started_at = time.time()
        self._on_batch = on_batch
        self._on_values = on_values
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()  # guards create / delete; lookups read the dict directly

    # ----------------------------------------------------------------- lifecycle of sketches
    def create(self, name: str, config: SketchConfig, warmup: int = 0) -> tuple[SketchInfo, bool]:
        """Create a sketch; returns (info, created). Idempotent for an equal config and warm-up."""
        _check_name(name)
        if not (isinstance(warmup, int) and warmup >= 0):
            raise InvalidArgument(f"warmup must be an integer >= 0, got {warmup!r}")
        with self._lock:
            existing = self._entries.get(name)
            if existing is not None:
                if existing.requested == config and existing.warmup == warmup:
                    return self._info(existing), False
                raise AlreadyExists(
                    f"sketch {name!r} already exists with a different configuration "
                    f"({_differences(existing, config, warmup)}); delete it first or pick "
                    "another name"
                )
            if len(self._entries) >= self.limits.max_sketches:
                raise ResourceExhausted(
                    f"this server holds its maximum of {self.limits.max_sketches} sketches; "
                    "delete one first"
                )
            size = estimated_bytes(config)
            if size > self.limits.max_sketch_bytes:
                raise ResourceExhausted(
                    f"sketch {name!r} would take {size:,} bytes, over the limit of "
                    f"{self.limits.max_sketch_bytes:,} (lower rows, bits or dim, or set buckets)"
                )
            sketch = NWSketch(config, device=self.device)
            created_at = time.time()
            seq = self._journal(
                name,
                records.encode(
                    "create",
                    {"config": config.to_dict(), "warmup": warmup, "created_at": created_at},
                ),
            )
            entry = self._new_entry(name, sketch, config, warmup, created_at)
            entry.seq = seq
            self._entries[name] = entry
        log.info("created sketch %r: %s, warmup %d", name, config, warmup)
        return self._info(entry), True

    def get(self, name: str, *, digest: bool = False) -> SketchInfo:
        return self._info(self._entry(name), digest=digest)

    def list(self) -> list[SketchInfo]:
        with self._lock:
            entries = [entry for _, entry in sorted(self._entries.items())]
        return [self._info(entry) for entry in entries]

    def delete(self, name: str) -> None:
        with self._lock:
            entry = self._entry(name)
            with entry.snapshot_lock, entry.lock:
                self._journal(name, records.encode("delete"))
                entry.deleted = True
            del self._entries[name]
            if self.store is not None:  # under the lock: a re-create must not race the wipe
                try:  # the durable delete record already counts; this only frees the space
                    self.store.delete(name)
                except (NWSError, OSError) as exc:
                    log.warning("sketch %r deleted; its stored state stays for now: %s", name, exc)
        log.info("deleted sketch %r", name)

    def server_info(self) -> ServerInfo:
        return ServerInfo(
            device=str(self.device),
            started_at=self.started_at,
            uptime_seconds=time.time() - self.started_at,
            sketches=len(self._entries),
            micro_batching=self.batching.enabled,
            store=self.store.kind if self.store is not None else "memory",
            restored_sketches=self.restored.sketches,
            replayed_records=self.restored.records,
        )

    # ----------------------------------------------------------------- the verbs
    def score(self, name: str, embeddings: Any) -> ScoreResult:
        entry = self._entry(name)
        est, _ = entry.estimate(self._batch(entry, embeddings))
        if self._on_values is not None:
            self._on_values(name, "estimated", est.values.numpy())
        return ScoreResult(
            estimates=est.values.numpy(),
            prior_used=est.prior_used.numpy(),
            support=est.support.numpy(),
        )

    def sample(
        self,
        name: str,
        embeddings: Any,
        ratio: float,
        p_min: float | None = None,
        seed: int | None = None,
        rule: policy.SamplingPolicy | None = None,
        auto: keep_ratio.AutoRatio | None = None,
        prune: _prune.Prune | None = None,
    ) -> SampleResult:
        """Score and draw; p_min defaults to min(policy.DEFAULT_P_MIN, ratio).

        ``rule`` shapes priorities and weights (:class:`policy.SamplingPolicy`); default: the
        paper's p ∝ estimate with 1/p weights. With ``auto`` the keep ratio is chosen per
        request (:mod:`nws_core.keep_ratio`): ``ratio`` is ignored (0 or a valid ratio) and
        p_min defaults to min(policy.DEFAULT_P_MIN, auto.ratio_min). With ``prune`` the draw is
        InfoBatch's rule against the sketch's observed mean (:mod:`nws_core.prune`), and the
        importance policy's settings must be left unset."""
        entry = self._entry(name)
        if prune is not None:
            _prune.check_alone(ratio, p_min, rule, auto)
            ratio, p_min = 1.0, 1.0
        if auto is not None:
            if ratio != 0:
                policy.probabilities(np.empty(0), ratio, 0.0)  # 0 (unset) or a valid ratio
            p_min = auto.p_min(p_min)
            ratio = 1.0
        elif p_min is None:
            p_min = min(policy.DEFAULT_P_MIN, ratio) if isinstance(ratio, (int, float)) else 0.0
        # Validate ratio and p_min before the sketch is touched: an empty batch checks only them.
        policy.probabilities(np.empty(0), ratio, p_min)
        x = self._batch(entry, embeddings)
        est, observations = entry.estimate(x)
        scores = est.values.numpy()
        if self._on_values is not None:
            self._on_values(name, "estimated", scores)
        n = scores.shape[0]
        warm = policy.in_warmup(observations, entry.warmup)
        plan = keep_ratio.plan(entry.keep, scores, ratio, p_min, rule, auto, warm=warm)
        if prune is not None:
            with entry.lock:
                mean = entry.sketch.mean_value
            accepted, weights, probs = prune.draw(scores, mean, seed, warm=warm)
            plan = keep_ratio.Plan(_prune.keep_share(probs), 1.0, plan.cv)
        else:
            accepted, weights, probs = (rule or policy.SamplingPolicy()).draw(
                scores, plan.ratio, plan.p_min, seed, warm=warm
            )
        factor = keep_ratio.variance_factor(probs, keep_ratio.priorities(scores))
        entry.keep.record(plan.ratio, factor)
        entry.count_sample(n, int(accepted.sum()))
        return SampleResult(
            accepted=accepted,
            weights=weights,
            probabilities=probs,
            estimates=scores,
            prior_used=est.prior_used.numpy(),
            warmup=warm,
            ratio=plan.ratio,
            cv=plan.cv,
            variance_factor=factor,
        )

    def update(self, name: str, embeddings: Any, values: Any, request_id: str = "") -> UpdateResult:
        """Apply observed values; a request id applied before is acknowledged, not re-applied."""
        entry = self._entry(name)
        _check_request_id(request_id)
        x = self._batch(entry, embeddings)
        if x.shape[0] == 0:
            raise InvalidArgument("update needs at least one row, got an empty batch")
        y = as_values(values, x.shape[0])
        with entry.lock:
            self._check_live(entry)
            if not self._mutate(entry, ops.Update(x, y, request_id)):
                return UpdateResult(request_id, entry.applied[request_id], duplicate=True)
            observations = entry.sketch.observations
        entry.count_update(x.shape[0])
        if self._on_values is not None:
            self._on_values(name, "observed", y.numpy())
        return UpdateResult(request_id, observations, duplicate=False)

    def decay(self, name: str, factor: float, request_id: str = "") -> SketchInfo:
        """Multiply the sketch's arrays by ``factor``; a request id applied before (an Update,
        Decay or SetCenter id of this sketch's window) is answered without decaying again."""
        entry = self._entry(name)
        _check_request_id(request_id)
        if not (isinstance(factor, (int, float)) and 0.0 < factor <= 1.0):
            raise InvalidArgument(f"decay factor must be in (0, 1], got {factor}")
        with entry.lock:
            self._check_live(entry)
            self._mutate(entry, ops.Decay(float(factor), request_id))
        return self._info(entry)

    def set_center(self, name: str, center: Any, request_id: str = "") -> SketchInfo:
        """Fix the centering vector; a request id applied before (the retry of the call that set
        it) is answered with the sketch as it is rather than FailedPrecondition."""
        entry = self._entry(name)
        _check_request_id(request_id)
        with entry.lock:
            self._check_live(entry)
            if not entry.has_applied(request_id):  # a retry is answered, not checked again
                self._mutate(entry, ops.SetCenter(entry.sketch.check_center(center), request_id))
        return self._info(entry)

    # ----------------------------------------------------------------- export / import
    def export(self, name: str) -> bytes:
        """A sketch's whole state as bytes (the payload of a snapshot: requested config, warm-up,
        usage counters, idempotency window and the engine's checksummed serialization)."""
        entry = self._entry(name)
        with entry.lock:
            self._check_live(entry)
            return self._snapshot_bytes(entry)

    def import_state(
        self, name: str, data: bytes, replace: bool = False
    ) -> tuple[SketchInfo, bool]:
        """Restore bytes :meth:`export` produced as sketch ``name``; returns (info, replaced).

        A new name creates the sketch; an existing one needs ``replace`` (else AlreadyExists)
        and has its state overwritten in place. Journaled (an ``import`` record) before it is
        applied, like every write. Bytes that are not an exported state: InvalidArgument.
        """
        _check_name(name)
        try:
            rec = records.decode(bytes(data))
            if rec.op != "snapshot":
                raise DataLoss(f"it holds a {rec.op} record")
            new = self._entry_from_record(name, rec)
        except DataLoss as exc:
            raise InvalidArgument(f"not an exported sketch state: {exc}") from exc
        size = estimated_bytes(new.sketch.config)
        if size > self.limits.max_sketch_bytes:
            raise ResourceExhausted(
                f"sketch {name!r} would take {size:,} bytes, over the limit of "
                f"{self.limits.max_sketch_bytes:,}"
            )
        record = records.encode("import", rec.fields, **rec.arrays)
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                if len(self._entries) >= self.limits.max_sketches:
                    raise ResourceExhausted(
                        f"this server holds its maximum of {self.limits.max_sketches} sketches; "
                        "delete one first"
                    )
                new.seq = self._journal(name, record)
                self._entries[name] = new
                log.info("imported sketch %r (%d observations)", name, new.sketch.observations)
                return self._info(new), False
            if not replace:
                raise AlreadyExists(
                    f"sketch {name!r} already exists; import with replace to overwrite it"
                )
            with entry.snapshot_lock, entry.lock:
                self._check_live(entry)
                entry.seq = self._journal(name, record)
                _take_state(entry, new)
        log.info("replaced sketch %r by an imported state", name)
        return self._info(entry), True

    # ----------------------------------------------------------------- durability
    def snapshot(self, name: str | None = None) -> builtins.list[SnapshotResult]:
        """Write a snapshot of every sketch (or of ``name``) and compact its journal.

        A sketch with no mutation since its previous snapshot is skipped (``written`` False).
        """
        if self.store is None:
            raise FailedPrecondition("this server keeps no state store (start it with --store)")
        if name:
            entries = [self._entry(name)]
        else:
            with self._lock:
                entries = [entry for _, entry in sorted(self._entries.items())]
        results: builtins.list[SnapshotResult] = []
        for entry in entries:
            with entry.snapshot_lock:
                if entry.deleted:
                    continue
                with entry.lock:
                    upto = entry.seq
                    if upto == entry.snapshot_seq:
                        results.append(SnapshotResult(entry.name, upto, written=False))
                        continue
                    data = self._snapshot_bytes(entry)
                try:
                    self.store.snapshot(entry.name, data, upto)
                except OSError as exc:
                    raise Unavailable(f"state store write failed: {exc}") from exc
                entry.snapshot_seq = upto
            results.append(SnapshotResult(entry.name, upto, written=True))
        return results

    def restore(self, *, discard_corrupt: bool = False) -> RestoreReport:
        """Rebuild every sketch of the store: its latest snapshot plus the journal after it.

        Called once, before serving. Corrupt state raises :class:`DataLoss`, unless
        ``discard_corrupt``: then the corrupt sketch's stored state is deleted and it is left out.
        """
        report = RestoreReport()
        if self.store is None:
            return report
        for name in self.store.names():
            try:
                loaded = self.store.load(name)
                entry, replayed, from_snapshot = self._rebuild(name, loaded)
            except DataLoss as exc:
                if not discard_corrupt:
                    raise DataLoss(
                        f"the state store holds corrupt state for sketch {name!r}: {exc}. "
                        "Refusing to start rather than serve wrong state; restore the store "
                        "from a backup, or pass --start-empty-on-corruption to discard the "
                        "corrupt sketches"
                    ) from exc
                log.error(
                    "DISCARDING the stored state of sketch %r, which is corrupt (%s): "
                    "--start-empty-on-corruption is set",
                    name,
                    exc,
                )
                self.store.delete(name)
                report.discarded.append(name)
                continue
            report.records += replayed
            report.dropped_tails += int(loaded.dropped_tail)
            if entry is None:  # its last record is a delete: finish the clean-up
                self.store.delete(name)
                continue
            with self._lock:
                self._entries[name] = entry
            report.sketches += 1
            report.snapshots += int(from_snapshot)
        self.restored = report
        return report

    def _snapshot_bytes(self, entry: _Entry) -> bytes:
        """The snapshot payload of an entry; the caller holds its lock."""
        with entry._counter_lock:
            sampled, accepted = entry.sampled, entry.accepted
        return records.encode(
            "snapshot",
            {
                "requested": entry.requested.to_dict(),
                "warmup": entry.warmup,
                "created_at": entry.created_at,
                "sampled": sampled,
                "accepted": accepted,
                "applied": [[k, v] for k, v in entry.applied.items()],
            },
            sketch=np.frombuffer(entry.sketch.serialize(), dtype=np.uint8),
        )

    def _rebuild(self, name: str, loaded: Loaded) -> tuple[_Entry | None, int, bool]:
        """(entry or None if deleted, records replayed, whether a snapshot was used)."""
        decoded = [(seq, records.decode(payload)) for seq, payload in loaded.records]
        deletes = [i for i, (_, rec) in enumerate(decoded) if rec.op == "delete"]
        entry: _Entry | None = None
        from_snapshot = False
        if deletes:
            decoded = decoded[deletes[-1] + 1 :]  # the snapshot and older records are void
        elif loaded.snapshot is not None:
            entry = self._entry_from_snapshot(name, loaded.snapshot)
            entry.seq = entry.snapshot_seq = loaded.snapshot_seq
            from_snapshot = True
        for seq, rec in decoded:
            try:
                if rec.op == "create":
                    if entry is not None:
                        raise DataLoss("a create record for a sketch that exists")
                    f = rec.fields
                    config = SketchConfig.from_dict(f["config"])
                    sketch = NWSketch(config, device=self.device)
                    entry = self._new_entry(
                        name, sketch, config, int(f["warmup"]), float(f["created_at"])
                    )
                elif rec.op == "import":  # the whole state, replacing whatever was there
                    entry = self._entry_from_record(name, rec)
                elif entry is None:
                    raise DataLoss(f"a {rec.op} record before the sketch's create record")
                elif rec.op in ops.MUTATIONS:
                    # as live, through the same apply: a request id already applied is not
                    # applied again (a record of an append that failed on its way back, then
                    # retried, is in twice)
                    self._mutate(entry, ops.from_record(rec), journal=False)
                else:
                    raise DataLoss(f"unexpected {rec.op} record in a journal")
            except (NWSError, KeyError, TypeError, ValueError) as exc:
                if isinstance(exc, DataLoss):
                    raise DataLoss(f"journal record {seq}: {exc}") from exc
                raise DataLoss(f"journal record {seq} cannot be replayed: {exc}") from exc
            entry.seq = seq
        return entry, len(decoded), from_snapshot

    def _entry_from_snapshot(self, name: str, data: bytes) -> _Entry:
        rec = records.decode(data)
        if rec.op != "snapshot":
            raise DataLoss(f"the snapshot holds a {rec.op} record")
        return self._entry_from_record(name, rec)

    def _entry_from_record(self, name: str, rec: records.Record) -> _Entry:
        """A new entry from the fields and array of a snapshot (or import) record."""
        try:
            f = rec.fields
            sketch = NWSketch.deserialize(rec.arrays["sketch"].tobytes(), device=self.device)
            requested = SketchConfig.from_dict(f["requested"])
            entry = self._new_entry(
                name, sketch, requested, int(f["warmup"]), float(f["created_at"])
            )
            entry.sampled, entry.accepted = int(f["sampled"]), int(f["accepted"])
            for request_id, observations in f["applied"]:
                entry.applied[str(request_id)] = int(observations)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataLoss(f"the snapshot's content is invalid: {exc}") from exc
        return entry

    def _new_entry(
        self, name: str, sketch: NWSketch, requested: SketchConfig, warmup: int, created_at: float
    ) -> _Entry:
        return _Entry(
            name, sketch, requested, warmup, self.batching, self._on_batch, created_at=created_at
        )

    def _mutate(self, entry: _Entry, op: ops.Mutation, *, journal: bool = True) -> bool:
        """Apply a validated mutation once: False (nothing done) if its request id is in the
        sketch's window; else journal it (live path, with a store), apply it and remember its id.
        Live requests and journal replay both come here; the caller holds the lock."""
        if entry.has_applied(op.request_id):
            return False
        if journal and self.store is not None:
            entry.seq = self._journal(entry.name, op.record())
        op.apply(entry.sketch)
        self._remember(entry, op.request_id)
        return True

    def _remember(self, entry: _Entry, request_id: str) -> None:
        """Put an applied request id in the sketch's idempotency window; the caller holds the
        lock."""
        window = self.limits.idempotency_window
        if request_id and window:
            entry.applied[request_id] = entry.sketch.observations
            while len(entry.applied) > window:
                entry.applied.popitem(last=False)

    def _journal(self, name: str, record: bytes) -> int:
        """Append a record to the sketch's journal; durable on return. 0 without a store."""
        if self.store is None:
            return 0
        try:
            return self.store.append(name, record)
        except OSError as exc:
            raise Unavailable(f"state store write failed: {exc}") from exc

    @staticmethod
    def _check_live(entry: _Entry) -> None:
        if entry.deleted:  # deleted while this request waited for the lock
            raise NotFound(f"no sketch named {entry.name!r}")

    # ----------------------------------------------------------------- internals
    def _entry(self, name: str) -> _Entry:
        entry = self._entries.get(name)
        if entry is None:
            raise NotFound(f"no sketch named {name!r}")
        return entry

    def _batch(self, entry: _Entry, embeddings: Any) -> torch.Tensor:
        """Validate a batch against the sketch's dim and the row limit; float32, on the CPU."""
        x = as_embeddings(embeddings, entry.sketch.config.dim)
        if x.shape[0] > self.limits.max_batch_rows:
            raise ResourceExhausted(
                f"a request may carry at most {self.limits.max_batch_rows} rows, got "
                f"{x.shape[0]}; split the batch"
            )
        return x.to(torch.float32)

    def _info(self, entry: _Entry, *, digest: bool = False) -> SketchInfo:
        status = entry.status()
        state_digest = None
        if digest:
            with entry.lock:
                state_digest = entry.sketch.digest()
        return SketchInfo(
            name=entry.name,
            config=entry.sketch.config,
            warmup=entry.warmup,
            device=str(entry.sketch.device),
            created_at=entry.created_at,
            status=status,
            digest=state_digest,
        )


def estimated_bytes(config: SketchConfig) -> int:
    """Memory of a sketch with this config: the two arrays plus the hash parameters."""
    directions = config.pool if config.pool is not None else config.rows * config.bits
    total = config.array_bytes + 4 * config.dim * directions
    if config.pool is not None:
        total += 8 * config.rows * config.bits
    if config.buckets is not None:
        total += 16 * config.rows
    return total


def _check_request_id(request_id: str) -> None:
    if len(request_id) > MAX_REQUEST_ID_CHARS:
        raise InvalidArgument(
            f"request_id must be at most {MAX_REQUEST_ID_CHARS} characters, got {len(request_id)}"
        )


def _check_name(name: str) -> None:
    if not (isinstance(name, str) and NAME_PATTERN.fullmatch(name)):
        raise InvalidArgument(
            f"sketch name must match {NAME_PATTERN.pattern} (letters, digits, '.', '_', '-'; "
            f"at most 128 characters), got {name!r}"
        )


def _differences(entry: _Entry, config: SketchConfig, warmup: int) -> str:
    old, new = entry.requested.to_dict(), config.to_dict()
    diffs = [f"{k}: {old[k]!r} != {new[k]!r}" for k in old if old[k] != new[k]]
    if entry.warmup != warmup:
        diffs.append(f"warmup: {entry.warmup} != {warmup}")
    return ", ".join(diffs)


def _take_state(entry: _Entry, new: _Entry) -> None:
    """Give ``entry`` the state of ``new`` (an import); the caller holds ``entry.lock``."""
    entry.sketch = new.sketch
    entry.requested = new.requested
    entry.warmup = new.warmup
    entry.created_at = new.created_at
    entry.applied = new.applied
    entry.keep = new.keep  # the usage statistics of the new state start afresh
    with entry._counter_lock:
        entry.sampled, entry.accepted = new.sampled, new.accepted


def _split_estimates(
    result: tuple[Estimates, int], sizes: list[int]
) -> list[tuple[Estimates, int]]:
    est, observations = result
    parts = zip(
        est.values.split(sizes),
        est.support.split(sizes),
        est.prior_used.split(sizes),
        strict=True,
    )
    return [(Estimates(v, s, p), observations) for v, s, p in parts]


__all__ = [
    "Batching",
    "Limits",
    "RateMeter",
    "RestoreReport",
    "SampleResult",
    "ScoreResult",
    "ServerInfo",
    "SketchInfo",
    "SketchRegistry",
    "SketchStatus",
    "SnapshotResult",
    "UpdateResult",
    "estimated_bytes",
]
