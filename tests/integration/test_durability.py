"""State that survives: ``nws-server`` processes on a file store and on a real Redis.

Each test runs real server processes, kills them (SIGKILL) or stops them (SIGTERM), restarts them
on the same store, and compares the restored sketch with an in-process replay of exactly the
mutations the server acknowledged. An update that was sent but not acknowledged when the server
died may or may not have become durable, but only in the order it was sent: the restored state is
the replay of the acknowledged updates plus a prefix of the unacknowledged ones.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import redis
from integration_helpers import DIM, batch, packed
from nws.v1 import sketch_pb2 as pb
from nws.v1 import sketch_pb2_grpc

from nws_client import SketchClient, SketchConfig
from nws_client.errors import FailedPrecondition
from nws_core.sketch import NWSketch
from nws_core.sketch import SketchConfig as EngineConfig
from nws_server.store import FileStore, RedisStore, StateStore

NWS_SERVER = str(Path(sys.executable).with_name("nws-server"))
ROWS = 8
CONFIG = SketchConfig(dim=DIM, rows=64, bits=6, seed=5)
ENGINE_CONFIG = EngineConfig(dim=DIM, rows=64, bits=6, seed=5)
CENTER = np.full(DIM, 0.125, np.float32)
_redis_dbs = itertools.count(1)


# ------------------------------------------------------------------------------- helpers


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    target: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        self.process.kill()  # SIGKILL: no shutdown snapshot, no flush
        self.process.wait(30)

    def terminate(self) -> int:
        self.process.terminate()
        return self.process.wait(60)


def _spawn(tmp_path: Path, store: str, *flags: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
    ready = tmp_path / f"ready-{time.monotonic_ns()}.json"
    log = ready.with_suffix(".log")
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                NWS_SERVER,
                "--grpc-port",
                "0",
                "--no-rest",
                "--device",
                "cpu",
                "--torch-threads",
                "1",
                "--workers",
                "4",
                "--store",
                store,
                "--ready-file",
                str(ready),
                *flags,
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return process, ready, log


def start(tmp_path: Path, store: str, *flags: str) -> Server:
    process, ready, log = _spawn(tmp_path, store, *flags)
    deadline = time.monotonic() + 90
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            pytest.fail(f"nws-server did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.02)
    return Server(process, json.loads(ready.read_text())["target"], log)


def start_fails(tmp_path: Path, store: str, *flags: str) -> tuple[int, str]:
    process, ready, log = _spawn(tmp_path, store, *flags)
    code = process.wait(90)
    assert not ready.exists()
    return code, log.read_text(errors="replace")


def update_request(name: str, i: int) -> pb.UpdateRequest:
    x, y = batch(7000 + i, ROWS)
    return pb.UpdateRequest(name=name, embeddings=packed(x), values=y.tolist(), request_id=f"u{i}")


class Reference:
    """The in-process replay: the engine fed exactly the mutations the server acknowledged."""

    def __init__(self) -> None:
        self.sketch = NWSketch(ENGINE_CONFIG, device="cpu")

    def update(self, i: int) -> None:
        self.sketch.update(*batch(7000 + i, ROWS))

    def digest(self) -> str:
        return self.sketch.digest()


def open_test_store(url: str) -> StateStore:
    return FileStore(url.removeprefix("file://")) if url.startswith("file://") else RedisStore(url)


def begin(client: SketchClient, name: str, ref: Reference, first: int, count: int) -> None:
    """Create, center, a few unary updates, a decay: every kind of journal record."""
    client.create_sketch(name, CONFIG, warmup=3)
    client.set_center(name, CENTER)
    ref.sketch.set_center(CENTER)
    for i in range(first, first + count):
        x, y = batch(7000 + i, ROWS)
        client.update(name, x, y, request_id=f"u{i}")
        ref.update(i)
    client.decay(name, 0.5)
    ref.sketch.decay(0.5)


@pytest.fixture(params=["file", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store of each kind: a directory, or a Redis database of its own."""
    if request.param == "file":
        return f"file://{tmp_path / 'state'}"
    base = request.getfixturevalue("redis_url").rsplit("/", 1)[0]
    url = f"{base}/{1 + (next(_redis_dbs) % 15)}"
    redis.Redis.from_url(url).flushdb()
    return url


# ------------------------------------------------------------------------------- tests


def test_kill_9_mid_stream_loses_no_acknowledged_update(tmp_path: Path, store_url: str) -> None:
    name, ref = "job", Reference()
    # frequent scheduled snapshots: the restore uses a snapshot plus the journal after it
    server = start(tmp_path, store_url, "--snapshot-interval-s", "0.2")
    with SketchClient(server.target, timeout=30) as client:
        begin(client, name, ref, 0, 3)

    outbox: queue.Queue[pb.UpdateRequest | None] = queue.Queue()

    def requests() -> Iterator[pb.UpdateRequest]:
        while (item := outbox.get()) is not None:
            yield item

    sent: list[int] = []
    acked = 0
    window, kill_after, total = 8, 60, 400

    def send() -> None:
        i = 3 + len(sent)
        sent.append(i)
        outbox.put(update_request(name, i))

    with grpc.insecure_channel(server.target) as channel:
        acks = sketch_pb2_grpc.SketchServiceStub(channel).StreamUpdates(requests(), timeout=120)
        for _ in range(window):
            send()
        try:
            for ack in acks:
                assert ack.code == 0, ack.message
                assert ack.request_id == f"u{sent[acked]}" and not ack.duplicate
                acked += 1
                assert ack.observations == (3 + acked) * ROWS
                if acked == kill_after:
                    os.kill(server.process.pid, signal.SIGKILL)
                if len(sent) < total:
                    send()
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            outbox.put(None)
    server.process.wait(30)
    assert kill_after <= acked < len(sent), "the kill should land with updates in flight"

    server = start(tmp_path, store_url)
    try:
        assert "restored 1 sketches" in server.output()
        with SketchClient(server.target, timeout=30) as client:
            stats = client.stats().server
            assert stats.store == store_url.split(":")[0] and stats.restored_sketches == 1
            info = client.get(name, digest=True)
            durable = info.stats.observations // ROWS - 3
            # every acknowledged update survived; unacknowledged ones only as a prefix
            assert acked <= durable <= len(sent)
            for i in sent[:durable]:
                ref.update(i)
            assert info.digest == ref.digest()
            assert info.warmup == 3 and info.config.center is not None
            assert not client.create_sketch(name, CONFIG, warmup=3).created  # same config
            # the client retries everything it sent: the durable ones are not applied twice
            for k, i in enumerate(sent):
                x, y = batch(7000 + i, ROWS)
                result = client.update(name, x, y, request_id=f"u{i}")
                assert result.duplicate == (k < durable)
                if not result.duplicate:
                    ref.update(i)
            assert client.get(name, digest=True).digest == ref.digest()
            assert client.get(name).stats.observations == (3 + len(sent)) * ROWS
    finally:
        server.kill()


def test_snapshot_rpc_and_graceful_shutdown_compact_and_restore(
    tmp_path: Path, store_url: str
) -> None:
    name, ref = "snap", Reference()
    server = start(tmp_path, store_url, "--snapshot-interval-s", "0")
    with SketchClient(server.target, timeout=30) as client:
        begin(client, name, ref, 0, 10)
        # create + center + 10 updates + decay = 13 journal records, all covered now
        assert client.snapshot() == {name: 13}
        assert client.snapshot(name) == {name: 13}  # unchanged: nothing new written
        loaded = open_test_store(store_url).load(name)
        assert loaded.snapshot is not None and loaded.snapshot_seq == 13 and loaded.records == []
        for i in range(10, 15):
            x, y = batch(7000 + i, ROWS)
            client.update(name, x, y, request_id=f"u{i}")
            ref.update(i)
    assert open_test_store(store_url).load(name).records != []
    assert server.terminate() == 0  # graceful: takes a last snapshot
    loaded = open_test_store(store_url).load(name)
    assert loaded.snapshot_seq == 18 and loaded.records == []

    server = start(tmp_path, store_url)
    try:
        with SketchClient(server.target, timeout=30) as client:
            assert client.get(name, digest=True).digest == ref.digest()
            assert not client.create_sketch(name, CONFIG, warmup=3).created
            for i in range(15):  # ids from before the snapshot are remembered too
                x, y = batch(7000 + i, ROWS)
                assert client.update(name, x, y, request_id=f"u{i}").duplicate
            assert client.get(name, digest=True).digest == ref.digest()
            client.delete(name)
        server.kill()
        server = start(tmp_path, store_url)
        with SketchClient(server.target, timeout=30) as client:
            assert client.list() == []
    finally:
        server.kill()


def test_without_a_store_snapshot_is_a_failed_precondition(tmp_path: Path) -> None:
    from nws_server.embedded import EmbeddedServer

    with (
        EmbeddedServer(mode="thread", device="cpu") as server,
        SketchClient(server.target, timeout=30) as client,
        pytest.raises(FailedPrecondition, match="--store"),
    ):
        client.snapshot()


def _corrupt(store_url: str, name: str, part: str) -> None:
    if store_url.startswith("file://"):
        path = Path(store_url.removeprefix("file://")) / name / f"{part}.bin"
        path = path if part == "snapshot" else path.with_name("journal.log")
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 3] ^= 0x5A  # in the middle: not a torn, unacknowledged tail
        path.write_bytes(bytes(raw))
    else:
        client = redis.Redis.from_url(store_url)
        key = f"nws:{name}:snapshot"
        data = bytearray(client.hget(key, "data") or b"")
        data[len(data) // 2] ^= 0x5A
        client.hset(key, "data", bytes(data))


@pytest.mark.parametrize(
    "store_kind, part", [("file", "snapshot"), ("file", "journal"), ("redis", "snapshot")]
)
def test_corrupt_state_refuses_to_start_unless_told_to_start_empty(
    tmp_path: Path, request: pytest.FixtureRequest, store_kind: str, part: str
) -> None:
    if store_kind == "file":
        store_url = f"file://{tmp_path / 'state'}"
    else:
        base = request.getfixturevalue("redis_url").rsplit("/", 1)[0]
        store_url = f"{base}/{1 + (next(_redis_dbs) % 15)}"
        redis.Redis.from_url(store_url).flushdb()
    server = start(tmp_path, store_url, "--snapshot-interval-s", "0")
    with SketchClient(server.target, timeout=30) as client:
        for sketch in ("intact", "broken"):
            begin(client, sketch, Reference(), 0, 4)
    if part == "snapshot":
        assert server.terminate() == 0  # writes the snapshots
    else:
        server.kill()  # the state is in the journals only
    _corrupt(store_url, "broken", part)

    code, output = start_fails(tmp_path, store_url)
    assert code != 0
    assert "corrupt state for sketch 'broken'" in output
    assert "--start-empty-on-corruption" in output

    server = start(tmp_path, store_url, "--start-empty-on-corruption")
    try:
        assert "DISCARDING the stored state of sketch 'broken'" in server.output()
        with SketchClient(server.target, timeout=30) as client:
            assert [info.name for info in client.list()] == ["intact"]
            assert client.get("intact").stats.observations == 4 * ROWS
    finally:
        server.kill()
    # what was discarded is gone: the next start is clean without the flag
    server = start(tmp_path, store_url)
    server.kill()


class OwnRedis:
    """A redis-server of this test's own (AOF, appendfsync always), to kill and restart."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        for _ in range(20):
            self.port = random.randint(20000, 45000)
            if self.start():
                return
        pytest.fail("could not start redis-server on any loopback port")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> bool:
        exe = shutil.which("redis-server")
        assert exe is not None, "redis-server is not installed"
        self.process = subprocess.Popen(
            [
                exe,
                *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir)),
                *("--appendonly", "yes", "--appendfsync", "always", "--save", ""),
                *("--pidfile", str(self.workdir / "redis.pid"), "--daemonize", "no"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(host="127.0.0.1", port=self.port)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if client.ping() and client.info("server")["process_id"] == self.process.pid:
                    return True
            except redis.ConnectionError:
                time.sleep(0.05)
        self.kill()
        return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # SIGKILL: only what the AOF fsynced survives
            self.process.wait(10)


def test_redis_restart_loses_no_acknowledged_update(tmp_path: Path) -> None:
    own = OwnRedis(tmp_path)
    name, ref = "job", Reference()
    server = start(tmp_path, own.url, "--snapshot-interval-s", "0")
    try:
        with SketchClient(server.target, timeout=60) as client:
            begin(client, name, ref, 0, 5)
            own.kill()
            # Redis is down: the update is not acknowledged and changes nothing (a plain stub:
            # the client itself would retry UNAVAILABLE a few times first)
            with (
                grpc.insecure_channel(server.target) as channel,
                pytest.raises(grpc.RpcError) as failed,
            ):
                sketch_pb2_grpc.SketchServiceStub(channel).Update(
                    update_request(name, 5), timeout=30
                )
            assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "state store" in str(failed.value.details())
            assert client.get(name).stats.observations == 5 * ROWS
            assert own.start()
            # back: the retry is applied (once), later updates flow
            for i in range(5, 20):
                x, y = batch(7000 + i, ROWS)
                assert not client.update(name, x, y, request_id=f"u{i}").duplicate
                ref.update(i)
                if i == 9:
                    assert client.snapshot() == {name: 13}  # create, center, 10 updates, decay
                if i == 12:  # a Redis crash between acknowledged updates
                    own.kill()
                    assert own.start()
            assert client.get(name, digest=True).digest == ref.digest()
            # the update stream rides out an outage longer than the server's Redis retries:
            # UNAVAILABLE acks make it send those updates again, after a backoff
            own.kill()
            for i in range(20, 26):
                client.update_async(name, *batch(7000 + i, ROWS))
                ref.update(i)
            time.sleep(4)
            assert own.start()
            client.flush(timeout=60)
            stats = client.client_stats()
            assert stats.updates_rejected == 0 and stats.updates_acked == 6 * ROWS
            assert stats.stream_reconnects >= 1
            assert client.get(name, digest=True).digest == ref.digest()
        server.kill()
        server = start(tmp_path, own.url)
        with SketchClient(server.target, timeout=30) as client:
            assert client.get(name, digest=True).digest == ref.digest()
    finally:
        server.kill()
        own.kill()
