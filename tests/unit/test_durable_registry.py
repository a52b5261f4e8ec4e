"""The registry over a state store, in process: journal records, snapshots, restore, failures.

The record format (:mod:`nws_server.records`) and the registry's durability contract: a rejected
request writes nothing, a failed append changes nothing, and a restore equals the registry that
wrote the store.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nws_core.errors import (
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from nws_core.sketch import SketchConfig
from nws_server import records
from nws_server.catalog import Limits
from nws_server.registry import SketchRegistry
from nws_server.store import FileStore, Loaded, RedisStore, StateStore

DIM = 8
CONFIG = SketchConfig(dim=DIM, rows=16, bits=4, seed=3)


def _batch(seed: int, n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, DIM)).astype(np.float32), rng.integers(0, 8, n) / 4.0


def _registry(store: StateStore | None) -> SketchRegistry:
    return SketchRegistry(device="cpu", store=store, limits=Limits(idempotency_window=100))


def _digest(registry: SketchRegistry, name: str = "s") -> str:
    digest = registry.get(name, digest=True).digest
    assert digest is not None
    return digest


class FlakyStore(StateStore):
    """A FileStore whose appends and snapshots fail while ``down`` is set."""

    def __init__(self, root: Path) -> None:
        self.inner = FileStore(root)
        self.down = False
        self.appends = 0

    def append(self, name: str, payload: bytes) -> int:
        if self.down:
            raise Unavailable("store is down")
        self.appends += 1
        return self.inner.append(name, payload)

    def snapshot(self, name: str, data: bytes, upto_seq: int) -> None:
        if self.down:
            raise Unavailable("store is down")
        self.inner.snapshot(name, data, upto_seq)

    def load(self, name: str) -> Loaded:
        return self.inner.load(name)

    def names(self) -> list[str]:
        return self.inner.names()

    def delete(self, name: str) -> None:
        self.inner.delete(name)


# ------------------------------------------------------------------------- record format


def test_records_round_trip_and_detect_damage() -> None:
    x, y = _batch(0)
    data = records.encode("update", {"request_id": "r1"}, embeddings=x, values=y)
    rec = records.decode(data)
    assert rec.op == "update" and rec.fields == {"request_id": "r1"}
    np.testing.assert_array_equal(rec.arrays["embeddings"], x)
    np.testing.assert_array_equal(rec.arrays["values"], y)
    assert rec.arrays["embeddings"].dtype == np.float32 and rec.arrays["values"].dtype == np.float64
    assert b"pickle" not in data and data[:4] == records.MAGIC
    for bad in (data[:-1], data[:10], b"", data[:20] + bytes([data[20] ^ 1]) + data[21:]):
        with pytest.raises(DataLoss):
            records.decode(bad)
    with pytest.raises(ValueError):
        records.encode("update", flags=np.zeros(2, dtype=bool))


# ------------------------------------------------------------------------- the registry


def test_restore_equals_the_registry_that_wrote_the_store(tmp_path: Path) -> None:
    live = _registry(FileStore(tmp_path))
    live.create("s", CONFIG, warmup=7)
    live.set_center("s", np.full(DIM, 0.25, np.float32))
    for i in range(4):
        live.update("s", *_batch(i), request_id=f"r{i}")
    live.snapshot()
    live.decay("s", 0.5)
    live.update("s", *_batch(9), request_id="r9")
    live.create("gone", CONFIG)
    live.update("gone", *_batch(1))
    live.delete("gone")

    restored = _registry(FileStore(tmp_path))
    report = restored.restore()
    assert (report.sketches, report.snapshots, report.records) == (1, 1, 2)
    assert [info.name for info in restored.list()] == ["s"]
    assert _digest(restored) == _digest(live)
    info = restored.get("s")
    assert info.warmup == 7 and info.config.center == tuple([0.25] * DIM)
    # request ids from the snapshot and from the journal are both remembered
    for rid, seed in (("r1", 1), ("r9", 9)):
        assert restored.update("s", *_batch(seed), request_id=rid).duplicate
    assert _digest(restored) == _digest(live)
    # and a re-create after the delete starts from scratch
    restored.create("gone", CONFIG)
    again = _registry(FileStore(tmp_path))
    again.restore()
    assert again.get("gone").stats.observations == 0


def test_a_sketch_restored_from_its_journal_has_the_live_digest_after_reads(
    tmp_path: Path,
) -> None:
    """Reads (Score, Sample) are not journaled, and the digest does not cover them."""
    live = _registry(FileStore(tmp_path))
    live.create("s", CONFIG)
    live.set_center("s", np.full(DIM, 0.25, np.float32))
    x, y = _batch(0)
    live.update("s", x, y, request_id="r0")
    before = _digest(live)
    live.score("s", x)
    live.score("s", -x * 50)  # prior hits too
    live.sample("s", x, 0.5, seed=1)
    live.decay("s", 0.5)
    live.update("s", *_batch(1))
    live.score("s", x)
    assert live.get("s").stats.estimates == 3 * x.shape[0] + x.shape[0]
    restored = _registry(FileStore(tmp_path))
    assert restored.restore().snapshots == 0  # from the journal alone
    assert restored.get("s").stats.estimates == 0
    assert _digest(restored) == _digest(live) != before
    live.score("s", x)
    assert _digest(restored) == _digest(live)


@pytest.mark.parametrize("snapshot", [False, True])
def test_retried_decay_and_set_center_apply_once_also_after_a_restart(
    tmp_path: Path, snapshot: bool
) -> None:
    """A Decay or SetCenter whose reply was lost, sent again with its request id: applied once,
    whether the retry reaches the same registry or one restored from the store."""
    live = _registry(FileStore(tmp_path))
    live.create("s", CONFIG)
    center = np.full(DIM, 0.25, np.float32)
    live.set_center("s", center, request_id="c1")
    # the retry of the call that set the center succeeds instead of FailedPrecondition
    assert live.set_center("s", center, request_id="c1").config.center == tuple([0.25] * DIM)
    with pytest.raises(FailedPrecondition, match="frozen"):
        live.set_center("s", center, request_id="c2")  # another call is still refused
    x, y = _batch(0, 8)
    live.update("s", x, y, request_id="u1")
    assert live.decay("s", 0.5, request_id="d1").stats.total_weight == 4.0
    assert live.decay("s", 0.5, request_id="d1").stats.total_weight == 4.0  # not 2.0
    once = _digest(live)
    if snapshot:
        live.snapshot()
    restored = _registry(FileStore(tmp_path))
    assert restored.restore().snapshots == int(snapshot)
    assert _digest(restored) == once
    assert restored.decay("s", 0.5, request_id="d1").stats.total_weight == 4.0
    assert restored.set_center("s", center, request_id="c1").stats.observations == 8
    assert restored.update("s", x, y, request_id="u1").duplicate
    assert _digest(restored) == once
    assert restored.decay("s", 0.5, request_id="d2").stats.total_weight == 2.0  # a new id
    assert live.decay("s", 0.5, request_id="").stats.total_weight == 2.0  # no id: no dedup
    assert live.decay("s", 0.5).stats.total_weight == 1.0
    with pytest.raises(InvalidArgument, match="request_id"):
        live.decay("s", 0.5, request_id="x" * 200)


def test_rejected_requests_write_nothing(tmp_path: Path) -> None:
    store = FlakyStore(tmp_path)
    registry = _registry(store)
    registry.create("s", CONFIG)
    registry.update("s", *_batch(0))
    before = store.appends
    x, y = _batch(1)
    with pytest.raises(InvalidArgument):
        registry.update("s", x, y[:-1])
    with pytest.raises(InvalidArgument):
        registry.update("s", x[:, :-1], y)
    with pytest.raises(InvalidArgument):
        registry.update("s", x, np.full_like(y, np.nan))
    with pytest.raises(InvalidArgument):
        registry.decay("s", 1.5)
    with pytest.raises(FailedPrecondition):
        registry.set_center("s", np.zeros(DIM, np.float32))  # it holds data already
    with pytest.raises(NotFound):
        registry.update("missing", x, y)
    registry.create("other-seed", SketchConfig(dim=DIM, rows=16, bits=4, seed=4))
    before = store.appends
    with pytest.raises(FailedPrecondition):
        registry.merge("s", "other-seed")  # other hash functions
    with pytest.raises(InvalidArgument):
        registry.merge("s", "s")
    assert store.appends == before


def test_a_failed_append_is_unavailable_and_changes_nothing(tmp_path: Path) -> None:
    store = FlakyStore(tmp_path)
    registry = _registry(store)
    registry.create("s", CONFIG)
    registry.update("s", *_batch(0), request_id="a")
    digest = _digest(registry)
    store.down = True
    with pytest.raises(Unavailable):
        registry.update("s", *_batch(1), request_id="b")
    with pytest.raises(Unavailable):
        registry.decay("s", 0.5)
    with pytest.raises(Unavailable):
        registry.create("t", CONFIG)
    with pytest.raises(Unavailable):
        registry.snapshot()
    with pytest.raises(Unavailable):
        registry.delete("s")
    assert _digest(registry) == digest and [i.name for i in registry.list()] == ["s"]
    store.down = False
    # the failed request id was not remembered: its retry is applied now
    assert not registry.update("s", *_batch(1), request_id="b").duplicate
    restored = _registry(FileStore(tmp_path))
    restored.restore()
    assert _digest(restored) == _digest(registry)


def test_corrupt_state_refuses_restore_or_is_discarded(tmp_path: Path) -> None:
    live = _registry(FileStore(tmp_path))
    for name in ("good", "bad"):
        live.create(name, CONFIG)
        live.update(name, *_batch(0))
        live.update(name, *_batch(1))
    journal = tmp_path / "bad" / "journal.log"
    raw = bytearray(journal.read_bytes())
    raw[40] ^= 0xFF  # inside the first record: not a torn tail
    journal.write_bytes(bytes(raw))
    with pytest.raises(DataLoss, match="'bad'.*--start-empty-on-corruption"):
        _registry(FileStore(tmp_path)).restore()
    registry = _registry(FileStore(tmp_path))
    report = registry.restore(discard_corrupt=True)
    assert report.discarded == ["bad"] and [i.name for i in registry.list()] == ["good"]
    assert FileStore(tmp_path).names() == ["good"]


def test_snapshot_needs_a_store_and_skips_unchanged_sketches(tmp_path: Path) -> None:
    with pytest.raises(FailedPrecondition):
        _registry(None).snapshot()
    registry = _registry(FileStore(tmp_path))
    registry.create("s", CONFIG)
    registry.update("s", *_batch(0))
    assert [(r.seq, r.written) for r in registry.snapshot()] == [(2, True)]
    assert [(r.seq, r.written) for r in registry.snapshot("s")] == [(2, False)]
    assert FileStore(tmp_path).load("s").records == []


# ------------------------------------------------------------------------- unknown outcomes


def test_a_record_appended_twice_is_replayed_once(tmp_path: Path) -> None:
    """An append that landed but failed on its way back, then retried: in the journal twice."""
    store = FileStore(tmp_path)
    x, y = _batch(0)
    update = records.encode("update", {"request_id": "r1"}, embeddings=x, values=y)
    create = {"config": CONFIG.to_dict(), "warmup": 0, "created_at": 0.0}
    for payload in (records.encode("create", create), update, update):
        store.append("s", payload)
    registry = _registry(FileStore(tmp_path))
    assert registry.restore().records == 3
    assert registry.get("s").stats.observations == x.shape[0]


def test_a_failed_file_append_leaves_no_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    store = FileStore(tmp_path)
    assert store.append("s", b"one") == 1
    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        store.append("s", b"lost")
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert store.append("s", b"two") == 2
    assert FileStore(tmp_path).load("s").records == [(1, b"one"), (2, b"two")]


def test_redis_append_moves_past_a_record_whose_reply_was_lost(redis_url: str) -> None:
    import redis

    store = RedisStore(redis_url, prefix=f"ghost-{np.random.default_rng().integers(1 << 30)}")
    try:
        assert store.append("s", b"one") == 1
        # another append landed at seq 2, but its reply never came back to this store
        redis.Redis.from_url(redis_url).xadd(
            f"{store.prefix}:s:journal", {"data": b"ghost", "crc": "0"}, id="2-1"
        )
        assert store.append("s", b"two") == 3
        # a retried XADD of the same record that did land is one record, not two
        redis.Redis.from_url(redis_url).xadd(
            f"{store.prefix}:s:journal", {"data": b"four", "crc": "0"}, id="4-1"
        )
        assert store.append("s", b"four") == 4
        assert redis.Redis.from_url(redis_url).xlen(f"{store.prefix}:s:journal") == 4
    finally:
        store.close()
