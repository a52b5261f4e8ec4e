"""State stores: the file store here, the Redis store against a real redis-server."""

from __future__ import annotations

import pytest

from nws_core.errors import DataLoss, InvalidArgument
from nws_server.store import FileStore, RedisStore, StateStore, open_store


@pytest.fixture(params=["file", "redis"])
def store(request, tmp_path) -> StateStore:
    if request.param == "file":
        s: StateStore = FileStore(tmp_path / "state")
    else:
        url = request.getfixturevalue("redis_url")
        s = RedisStore(url, prefix=f"test-{tmp_path.name}")
    yield s
    s.close()


def test_append_then_load_returns_every_record_in_order(store):
    seqs = [store.append("job-1", f"record {i}".encode()) for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    loaded = store.load("job-1")
    assert loaded.snapshot is None and loaded.snapshot_seq == 0
    assert loaded.records == [(i + 1, f"record {i}".encode()) for i in range(5)]
    assert store.names() == ["job-1"]


def test_snapshot_compacts_the_journal_and_sequence_continues(store):
    for i in range(4):
        store.append("s", bytes([i]))
    store.snapshot("s", b"state after 3", upto_seq=3)
    loaded = store.load("s")
    assert loaded.snapshot == b"state after 3" and loaded.snapshot_seq == 3
    assert loaded.records == [(4, bytes([3]))]
    assert store.append("s", b"next") == 5
    assert [seq for seq, _ in store.load("s").records] == [4, 5]


def test_a_fresh_store_object_resumes_the_sequence(store, tmp_path):
    store.append("s", b"a")
    store.append("s", b"b")
    if isinstance(store, FileStore):
        again: StateStore = FileStore(store.root)
    else:
        again = RedisStore(store.url, prefix=store.prefix)
    assert again.append("s", b"c") == 3
    assert [p for _, p in again.load("s").records] == [b"a", b"b", b"c"]


def test_delete_removes_everything(store):
    store.append("gone", b"x")
    store.snapshot("gone", b"snap", 1)
    store.delete("gone")
    assert "gone" not in store.names()
    assert store.load("gone").snapshot is None and store.load("gone").records == []


def test_bad_names_are_rejected(store):
    for bad in ("", "../etc", "a b", "x" * 200, "-lead", "name\n"):
        with pytest.raises(InvalidArgument, match="sketch name"):
            store.append(bad, b"x")


# --------------------------------------------------------------------------- file specifics


def test_torn_final_record_is_dropped_as_unacknowledged(tmp_path):
    s = FileStore(tmp_path)
    s.append("s", b"acknowledged")
    s.append("s", b"torn")
    journal = tmp_path / "s" / "journal.log"
    raw = journal.read_bytes()
    journal.write_bytes(raw[:-3])  # the crash happened before the last fsync returned
    loaded = FileStore(tmp_path).load("s")
    assert loaded.records == [(1, b"acknowledged")]
    assert loaded.dropped_tail


def test_corruption_inside_the_journal_is_detected(tmp_path):
    s = FileStore(tmp_path)
    s.append("s", b"first record")
    s.append("s", b"second record")
    journal = tmp_path / "s" / "journal.log"
    raw = bytearray(journal.read_bytes())
    raw[14] ^= 0xFF  # inside the first record's payload
    journal.write_bytes(bytes(raw))
    with pytest.raises(DataLoss, match="checksum"):
        FileStore(tmp_path).load("s")


def test_corrupt_snapshot_is_detected(tmp_path):
    s = FileStore(tmp_path)
    s.snapshot("s", b"x" * 100, 0)
    snap = tmp_path / "s" / "snapshot.bin"
    raw = bytearray(snap.read_bytes())
    raw[-1] ^= 0x01
    snap.write_bytes(bytes(raw))
    with pytest.raises(DataLoss, match="snapshot"):
        FileStore(tmp_path).load("s")


def test_leftover_temporary_files_from_a_crash_are_ignored(tmp_path):
    s = FileStore(tmp_path)
    s.append("s", b"a")
    s.snapshot("s", b"good", 1)
    (tmp_path / "s" / "snapshot.bin.tmp").write_bytes(b"half written")
    loaded = FileStore(tmp_path).load("s")
    assert loaded.snapshot == b"good" and loaded.records == []


def test_redis_corruption_is_detected(redis_url):
    import redis

    s = RedisStore(redis_url, prefix="corrupt")
    s.append("s", b"payload")
    redis.Redis.from_url(redis_url).xadd("corrupt:s:journal", {"data": b"x", "crc": "1"}, id="2-1")
    with pytest.raises(DataLoss, match="corrupt"):
        RedisStore(redis_url, prefix="corrupt").load("s")


def test_open_store_by_url(tmp_path, redis_url):
    assert isinstance(open_store(f"file://{tmp_path}/st"), FileStore)
    assert isinstance(open_store(redis_url), RedisStore)
    with pytest.raises(InvalidArgument, match="file:// or redis://"):
        open_store("s3://bucket")
