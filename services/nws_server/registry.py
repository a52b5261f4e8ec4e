"""The service core: named sketches on one device, shared by the gRPC and the REST front doors.

The registry answers the service's verbs (create, score, sample, update, decay, set_center,
merge, export, import, delete, snapshot) from small parts, each with one job:

- :mod:`nws_server.catalog`: which names exist, and the limits (sketch count and size, batch
  rows, name pattern, request ids);
- :mod:`nws_server.live`: one served sketch, its lock, warm-up and idempotency window;
- :mod:`nws_server.ops`: each mutation as a value with one ``apply``;
- :mod:`nws_server.durable`: the journal, snapshots and recovery (with a state store);
- :mod:`nws_server.usage`: the usage counters and rates;
- :mod:`nws_server.results`: what the verbs return.

It raises only :mod:`nws_core.errors` and knows nothing of gRPC or HTTP. Inputs are validated
once, here or in the engine, before anything changes: a rejected request leaves every sketch
exactly as it was.
"""

from __future__ import annotations

import builtins
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from nws_core import keep_ratio, policy, sampling
from nws_core import prune as _prune
from nws_core.errors import AlreadyExists, DataLoss, InvalidArgument
from nws_core.sketch import NWSketch, SketchConfig, as_embeddings, as_values, resolve_device
from nws_server import ops, records
from nws_server.catalog import Catalog, Limits, check_name, check_request_id, estimated_bytes
from nws_server.durable import Durability
from nws_server.live import Batching, LiveSketch
from nws_server.results import (
    Info,
    RestoreReport,
    SampleResult,
    ScoreResult,
    ServerInfo,
    SketchStats,
    SnapshotResult,
    UpdateResult,
)
from nws_server.store import StateStore

log = logging.getLogger(__name__)


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
        self.catalog = Catalog(self.limits)
        self.durable = Durability(store, self.device, self._new_sketch)
        self.restored = RestoreReport()
        self.started_at = time.time()
        self._on_batch = on_batch
        self._on_values = on_values

    @property
    def store(self) -> StateStore | None:
        return self.durable.store

    # ----------------------------------------------------------------- lifecycle of sketches
    def create(self, name: str, config: SketchConfig, warmup: int = 0) -> tuple[Info, bool]:
        """Create a sketch; returns (info, created). Idempotent for an equal config and warm-up."""
        check_name(name)
        if not (isinstance(warmup, int) and warmup >= 0):
            raise InvalidArgument(f"warmup must be an integer >= 0, got {warmup!r}")
        with self.catalog.lock:
            existing = self.catalog.find(name)
            if existing is not None:
                if existing.requested == config and existing.warmup == warmup:
                    return existing.info(), False
                raise AlreadyExists(
                    f"sketch {name!r} already exists with a different configuration "
                    f"({existing.differences(config, warmup)}); delete it first or pick "
                    "another name"
                )
            self.catalog.check_room()
            self.catalog.check_size(name, config, " (lower rows, bits or dim, or set buckets)")
            sketch = NWSketch(config, device=self.device)
            created_at = time.time()
            seq = self.durable.append(
                name,
                records.encode(
                    "create",
                    {"config": config.to_dict(), "warmup": warmup, "created_at": created_at},
                ),
            )
            entry = self._new_sketch(name, sketch, config, warmup, created_at)
            entry.seq = seq
            self.catalog.add(entry)
        log.info("created sketch %r: %s, warmup %d", name, config, warmup)
        return entry.info(), True

    def get(self, name: str, *, digest: bool = False) -> Info:
        return self.catalog.get(name).info(digest=digest)

    def list(self) -> builtins.list[Info]:
        return [entry.info() for entry in self.catalog.all()]

    def delete(self, name: str) -> None:
        with self.catalog.lock:
            entry = self.catalog.get(name)
            with entry.snapshot_lock, entry.lock:
                self.durable.append(name, records.encode("delete"))
                entry.deleted = True
            self.catalog.remove(name)
            self.durable.forget(name)  # under the lock: a re-create must not race the wipe
        log.info("deleted sketch %r", name)

    def server_info(self) -> ServerInfo:
        return ServerInfo(
            device=str(self.device),
            started_at=self.started_at,
            uptime_seconds=time.time() - self.started_at,
            sketches=len(self.catalog),
            micro_batching=self.batching.enabled,
            store=self.durable.kind,
            restored_sketches=self.restored.sketches,
            replayed_records=self.restored.records,
        )

    # ----------------------------------------------------------------- the verbs
    def score(self, name: str, embeddings: Any) -> ScoreResult:
        entry = self.catalog.get(name)
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
        entry = self.catalog.get(name)
        if prune is not None:
            _prune.check_alone(ratio, p_min, rule, auto)
            ratio, p_min = 1.0, 1.0
        if auto is not None:
            if ratio != 0:
                policy.check_ratio(ratio, 0.0)  # 0 (unset) or a valid ratio
            p_min = auto.p_min(p_min)
            ratio = 1.0
        elif p_min is None:
            p_min = min(policy.DEFAULT_P_MIN, ratio) if isinstance(ratio, (int, float)) else 0.0
        policy.check_ratio(ratio, p_min)  # before the sketch is touched
        x = self._batch(entry, embeddings)
        est, observations = entry.estimate(x)
        scores = est.values.numpy()
        if self._on_values is not None:
            self._on_values(name, "estimated", scores)
        warm = policy.in_warmup(observations, entry.warmup)
        mean = None
        if prune is not None:
            with entry.lock:
                mean = entry.sketch.mean_value
        d = sampling.draw(
            entry.usage.keep,
            scores,
            ratio,
            p_min,
            seed=seed,
            warm=warm,
            rule=rule,
            auto=auto,
            prune=prune,
            mean=mean,
        )
        entry.usage.count_sample(scores.shape[0], int(d.accepted.sum()))
        return SampleResult.of_draw(d, scores, est.prior_used.numpy(), warm)

    def update(self, name: str, embeddings: Any, values: Any, request_id: str = "") -> UpdateResult:
        """Apply observed values; a request id applied before is acknowledged, not re-applied."""
        entry = self.catalog.get(name)
        check_request_id(request_id)
        x = self._batch(entry, embeddings)
        if x.shape[0] == 0:
            raise InvalidArgument("update needs at least one row, got an empty batch")
        y = as_values(values, x.shape[0])
        with entry.lock:
            entry.check_live()
            if not self.durable.mutate(entry, ops.Update(x, y, request_id)):
                return UpdateResult(request_id, entry.applied[request_id], duplicate=True)
            observations = entry.sketch.observations
        entry.usage.count_update(x.shape[0])
        if self._on_values is not None:
            self._on_values(name, "observed", y.numpy())
        return UpdateResult(request_id, observations, duplicate=False)

    def decay(self, name: str, factor: float, request_id: str = "") -> Info:
        """Multiply the sketch's arrays by ``factor``; a request id applied before (an Update,
        Decay or SetCenter id of this sketch's window) is answered without decaying again."""
        entry = self.catalog.get(name)
        check_request_id(request_id)
        if not (isinstance(factor, (int, float)) and 0.0 < factor <= 1.0):
            raise InvalidArgument(f"decay factor must be in (0, 1], got {factor}")
        with entry.lock:
            entry.check_live()
            self.durable.mutate(entry, ops.Decay(float(factor), request_id))
        return entry.info()

    def set_center(self, name: str, center: Any, request_id: str = "") -> Info:
        """Fix the centering vector; a request id applied before (the retry of the call that set
        it) is answered with the sketch as it is rather than FailedPrecondition."""
        entry = self.catalog.get(name)
        check_request_id(request_id)
        with entry.lock:
            entry.check_live()
            if not entry.has_applied(request_id):  # a retry is answered, not checked again
                op = ops.SetCenter(entry.sketch.check_center(center), request_id)
                self.durable.mutate(entry, op)
        return entry.info()

    def merge(self, name: str, source: str, request_id: str = "") -> Info:
        """Add sketch ``source`` into sketch ``name`` (sketches with the same hash functions are
        linear); a request id applied before is answered without adding again."""
        entry, other = self.catalog.get(name), self.catalog.get(source)
        check_request_id(request_id)
        if entry is other:
            raise InvalidArgument(f"sketch {name!r} cannot be merged into itself")
        with other.lock:  # its bytes, so that no two sketch locks are ever held together
            other.check_live()
            state, config = other.sketch.serialize(), other.sketch.config
        with entry.lock:
            entry.check_live()
            if not entry.has_applied(request_id):  # a retry is answered, not checked again
                entry.sketch.check_merge(config)  # before the journal: a refusal changes nothing
                self.durable.mutate(entry, ops.Merge(state, request_id))
        return entry.info()

    # ----------------------------------------------------------------- export / import
    def export(self, name: str) -> bytes:
        """A sketch's whole state as bytes (the payload of a snapshot: requested config, warm-up,
        usage counters, idempotency window and the engine's checksummed serialization)."""
        entry = self.catalog.get(name)
        with entry.lock:
            entry.check_live()
            return self.durable.state_bytes(entry)

    def import_state(self, name: str, data: bytes, replace: bool = False) -> tuple[Info, bool]:
        """Restore bytes :meth:`export` produced as sketch ``name``; returns (info, replaced).

        A new name creates the sketch; an existing one needs ``replace`` (else AlreadyExists)
        and has its state overwritten in place. Journaled (an ``import`` record) before it is
        applied, like every write. Bytes that are not an exported state: InvalidArgument.
        """
        check_name(name)
        try:
            rec = records.decode(bytes(data))
            if rec.op != "snapshot":
                raise DataLoss(f"it holds a {rec.op} record")
            new = self.durable.from_state(name, rec)
        except DataLoss as exc:
            raise InvalidArgument(f"not an exported sketch state: {exc}") from exc
        self.catalog.check_size(name, new.sketch.config)
        record = records.encode("import", rec.fields, **rec.arrays)
        with self.catalog.lock:
            entry = self.catalog.find(name)
            if entry is None:
                self.catalog.check_room()
                new.seq = self.durable.append(name, record)
                self.catalog.add(new)
                log.info("imported sketch %r (%d observations)", name, new.sketch.observations)
                return new.info(), False
            if not replace:
                raise AlreadyExists(
                    f"sketch {name!r} already exists; import with replace to overwrite it"
                )
            with entry.snapshot_lock, entry.lock:
                entry.check_live()
                entry.seq = self.durable.append(name, record)
                entry.take_state(new)
        log.info("replaced sketch %r by an imported state", name)
        return entry.info(), True

    # ----------------------------------------------------------------- durability
    def snapshot(self, name: str | None = None) -> builtins.list[SnapshotResult]:
        """Write a snapshot of every sketch (or of ``name``) and compact its journal.

        A sketch with no mutation since its previous snapshot is skipped (``written`` False).
        """
        self.durable.require_store()
        entries = [self.catalog.get(name)] if name else self.catalog.all()
        return self.durable.snapshot(entries)

    def restore(self, *, discard_corrupt: bool = False) -> RestoreReport:
        """Rebuild every sketch of the store: its latest snapshot plus the journal after it.

        Called once, before serving. Corrupt state raises :class:`DataLoss`, unless
        ``discard_corrupt``: then the corrupt sketch's stored state is deleted and it is left out.
        """
        report, restored = self.durable.restore(discard_corrupt=discard_corrupt)
        with self.catalog.lock:
            for entry in restored:
                self.catalog.add(entry)
        self.restored = report
        return report

    # ----------------------------------------------------------------- internals
    def _new_sketch(
        self, name: str, sketch: NWSketch, requested: SketchConfig, warmup: int, created_at: float
    ) -> LiveSketch:
        return LiveSketch(
            name,
            sketch,
            requested,
            warmup,
            created_at=created_at,
            window=self.limits.idempotency_window,
            batching=self.batching,
            on_batch=self._on_batch,
        )

    def _batch(self, entry: LiveSketch, embeddings: Any) -> torch.Tensor:
        """Validate a batch against the sketch's dim and the row limit; float32, on the CPU."""
        x = as_embeddings(embeddings, entry.sketch.config.dim)
        return self.catalog.check_rows(x).to(torch.float32)


__all__ = [
    "Batching",
    "Limits",
    "RestoreReport",
    "SampleResult",
    "ScoreResult",
    "ServerInfo",
    "Info",
    "SketchRegistry",
    "SketchStats",
    "SnapshotResult",
    "UpdateResult",
    "estimated_bytes",
]
