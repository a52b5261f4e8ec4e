"""Durability of the served sketches: the journal, snapshots and recovery.

With a :class:`~nws_server.store.StateStore`, every accepted mutation is appended to its sketch's
journal (:mod:`nws_server.records`) under the sketch's lock, after validation and before it is
applied, so an acknowledged mutation is durable and a failed append (Unavailable) changes
nothing. Snapshots hold a sketch's whole state and compact its journal; recovery rebuilds each
sketch from its latest snapshot plus the journal after it, through the same
:meth:`Durability.mutate` as the live path (:mod:`nws_server.ops`), so replay cannot drift from
what was served. Without a store (``memory``) appends are no-ops and nothing is recovered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import numpy as np
import torch

from nws_core.errors import DataLoss, FailedPrecondition, NWSError, Unavailable
from nws_core.sketch import NWSketch, SketchConfig
from nws_server import ops, records
from nws_server.live import LiveSketch
from nws_server.results import RestoreReport, SnapshotResult
from nws_server.store import Loaded, StateStore
from nws_server.usage import Usage

log = logging.getLogger(__name__)

NewSketch = Callable[[str, NWSketch, SketchConfig, int, float], LiveSketch]
"""Makes a served sketch: (name, engine, requested config, warm-up, created_at)."""


class Durability:
    """The journal, snapshots and recovery of one registry's sketches."""

    def __init__(
        self, store: StateStore | None, device: torch.device, new_sketch: NewSketch
    ) -> None:
        self.store = store
        self._device = device
        self._new = new_sketch

    @property
    def kind(self) -> str:
        """Where the state lives: 'memory', 'file' or 'redis'."""
        return self.store.kind if self.store is not None else "memory"

    def require_store(self) -> StateStore:
        """The store; FailedPrecondition on a server that keeps none."""
        if self.store is None:
            raise FailedPrecondition("this server keeps no state store (start it with --store)")
        return self.store

    # ------------------------------------------------------------------ the live path
    def append(self, name: str, record: bytes) -> int:
        """Append a record to the sketch's journal; durable on return. 0 without a store."""
        if self.store is None:
            return 0
        try:
            return self.store.append(name, record)
        except OSError as exc:
            raise Unavailable(f"state store write failed: {exc}") from exc

    def mutate(self, entry: LiveSketch, op: ops.Mutation, *, journal: bool = True) -> bool:
        """Apply a validated mutation once: False (nothing done) if its request id is in the
        sketch's window; else journal it (live path, with a store), apply it and remember its id.
        Live requests and journal replay both come here; the caller holds the sketch's lock."""
        if entry.has_applied(op.request_id):
            return False
        if journal and self.store is not None:
            entry.seq = self.append(entry.name, op.record())
        op.apply(entry.sketch)
        entry.remember(op.request_id)
        return True

    def forget(self, name: str) -> None:
        """Free a deleted sketch's stored state (its durable delete record already counts)."""
        if self.store is None:
            return
        try:
            self.store.delete(name)
        except (NWSError, OSError) as exc:
            log.warning("sketch %r deleted; its stored state stays for now: %s", name, exc)

    # ------------------------------------------------------------------ whole states
    def state_bytes(self, entry: LiveSketch) -> bytes:
        """A sketch's whole state (a snapshot record: requested config, warm-up, usage counts,
        idempotency window and the engine's checksummed serialization); the caller holds its
        lock."""
        sampled, accepted = entry.usage.counts()
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

    def from_state(self, name: str, rec: records.Record) -> LiveSketch:
        """A new sketch from a snapshot (or import) record; DataLoss if its content is invalid."""
        try:
            f = rec.fields
            sketch = NWSketch.deserialize(rec.arrays["sketch"].tobytes(), device=self._device)
            requested = SketchConfig.from_dict(f["requested"])
            entry = self._new(name, sketch, requested, int(f["warmup"]), float(f["created_at"]))
            entry.usage = Usage(int(f["sampled"]), int(f["accepted"]))
            for request_id, observations in f["applied"]:
                entry.applied[str(request_id)] = int(observations)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataLoss(f"the snapshot's content is invalid: {exc}") from exc
        return entry

    # ------------------------------------------------------------------ snapshots
    def snapshot(self, entries: Iterable[LiveSketch]) -> list[SnapshotResult]:
        """Snapshot each sketch that changed since its previous snapshot; compacts journals."""
        store = self.require_store()
        results: list[SnapshotResult] = []
        for entry in entries:
            with entry.snapshot_lock:
                if entry.deleted:
                    continue
                with entry.lock:
                    upto = entry.seq
                    if upto == entry.snapshot_seq:
                        results.append(SnapshotResult(entry.name, upto, written=False))
                        continue
                    data = self.state_bytes(entry)
                try:
                    store.snapshot(entry.name, data, upto)
                except OSError as exc:
                    raise Unavailable(f"state store write failed: {exc}") from exc
                entry.snapshot_seq = upto
            results.append(SnapshotResult(entry.name, upto, written=True))
        return results

    # ------------------------------------------------------------------ recovery
    def restore(self, *, discard_corrupt: bool = False) -> tuple[RestoreReport, list[LiveSketch]]:
        """Every sketch of the store, rebuilt from its latest snapshot plus the journal after it.

        Corrupt state raises :class:`DataLoss`, unless ``discard_corrupt``: then the corrupt
        sketch's stored state is deleted and it is left out.
        """
        report = RestoreReport()
        restored: list[LiveSketch] = []
        if self.store is None:
            return report, restored
        for name in self.store.names():
            try:
                loaded = self.store.load(name)
                entry, replayed, from_snapshot = self.rebuild(name, loaded)
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
            restored.append(entry)
            report.sketches += 1
            report.snapshots += int(from_snapshot)
        return report, restored

    def rebuild(self, name: str, loaded: Loaded) -> tuple[LiveSketch | None, int, bool]:
        """(sketch or None if deleted, records replayed, whether a snapshot was used)."""
        decoded = [(seq, records.decode(payload)) for seq, payload in loaded.records]
        deletes = [i for i, (_, rec) in enumerate(decoded) if rec.op == "delete"]
        entry: LiveSketch | None = None
        from_snapshot = False
        if deletes:
            decoded = decoded[deletes[-1] + 1 :]  # the snapshot and older records are void
        elif loaded.snapshot is not None:
            rec = records.decode(loaded.snapshot)
            if rec.op != "snapshot":
                raise DataLoss(f"the snapshot holds a {rec.op} record")
            entry = self.from_state(name, rec)
            entry.seq = entry.snapshot_seq = loaded.snapshot_seq
            from_snapshot = True
        for seq, rec in decoded:
            try:
                entry = self._replay(name, entry, rec)
            except (NWSError, KeyError, TypeError, ValueError) as exc:
                if isinstance(exc, DataLoss):
                    raise DataLoss(f"journal record {seq}: {exc}") from exc
                raise DataLoss(f"journal record {seq} cannot be replayed: {exc}") from exc
            entry.seq = seq
        return entry, len(decoded), from_snapshot

    def _replay(self, name: str, entry: LiveSketch | None, rec: records.Record) -> LiveSketch:
        """The sketch after one journal record."""
        if rec.op == "create":
            if entry is not None:
                raise DataLoss("a create record for a sketch that exists")
            f = rec.fields
            config = SketchConfig.from_dict(f["config"])
            sketch = NWSketch(config, device=self._device)
            return self._new(name, sketch, config, int(f["warmup"]), float(f["created_at"]))
        if rec.op == "import":  # the whole state, replacing whatever was there
            return self.from_state(name, rec)
        if entry is None:
            raise DataLoss(f"a {rec.op} record before the sketch's create record")
        if rec.op not in ops.MUTATIONS:
            raise DataLoss(f"unexpected {rec.op} record in a journal")
        # as live, through the same apply: a request id already applied is not applied again
        # (a record of an append that failed on its way back, then retried, is in twice)
        self.mutate(entry, ops.from_record(rec), journal=False)
        return entry
