"""ExportSketch / ImportSketch: a sketch's whole state out of one server and into another."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from integration_helpers import DIM, batch

from nws_client import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    SketchClient,
    SketchConfig,
    Unauthenticated,
)
from nws_server.registry import SketchRegistry
from nws_server.server import SketchServer
from nws_server.settings import Settings
from nws_server.store import open_store

CONFIG = SketchConfig(dim=DIM, rows=32, bits=6, seed=3)


def _settings(**changes: object) -> Settings:
    return Settings(grpc_port=0, rest=False, device="cpu", **changes)  # gRPC only


@pytest.fixture(scope="module")
def grpc_server() -> Iterator[SketchServer]:
    with SketchServer(_settings()) as srv:
        yield srv


@pytest.fixture
def client(grpc_server: SketchServer) -> Iterator[SketchClient]:
    with SketchClient(grpc_server.target, timeout=10.0) as c:
        yield c


def _fill(client: SketchClient, name: str, updates: int = 4) -> None:
    client.create_sketch(name, CONFIG, warmup=5)
    client.set_center(name, np.full(DIM, 0.1, dtype=np.float32))
    for i in range(updates):
        x, y = batch(100 + i, 20)
        client.update(name, x, y, request_id=f"r{i}")
    client.sample(name, batch(99, 10)[0], 0.5, seed=1)


def test_export_then_import_into_another_server_is_the_same_sketch(
    client: SketchClient, tmp_path: Path
) -> None:
    _fill(client, "src")
    data = client.export_sketch("src")
    source = client.get("src", digest=True)
    probe = batch(7, 30)[0]
    with (
        SketchServer(_settings()) as other,
        SketchClient(other.target, timeout=10) as dst,
    ):
        # small chunks: the state travels in many messages
        info = dst.import_sketch("copy", data, chunk_bytes=4096)
        assert info.stats.observations == source.stats.observations == 80
        assert info.warmup == 5 and info.stats.sampled == 10
        assert dst.get("copy", digest=True).digest == source.digest
        np.testing.assert_array_equal(
            dst.score("copy", probe).estimates, client.score("src", probe).estimates
        )
        # the idempotency window travels too: a retried update is not applied twice
        x, y = batch(100, 20)
        assert dst.update("copy", x, y, request_id="r0").duplicate
        # sampling continues identically from the same state and seed
        a = dst.sample("copy", probe, 0.4, seed=5)
        b = client.sample("src", probe, 0.4, seed=5)
        np.testing.assert_array_equal(a.accepted, b.accepted)
        np.testing.assert_array_equal(a.weights, b.weights)


def test_import_refuses_an_existing_name_unless_replace(client: SketchClient) -> None:
    _fill(client, "a", updates=2)
    _fill(client, "b", updates=5)
    data_b = client.export_sketch("b")
    with pytest.raises(AlreadyExists, match="replace"):
        client.import_sketch("a", data_b)
    assert client.get("a").stats.observations == 40  # unchanged
    info = client.import_sketch("a", data_b, replace=True)
    assert info.stats.observations == 100
    assert client.get("a", digest=True).digest == client.get("b", digest=True).digest


def test_bad_bytes_and_unknown_names_are_rejected(client: SketchClient) -> None:
    _fill(client, "good", updates=1)
    data = bytearray(client.export_sketch("good"))
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(InvalidArgument, match="not an exported sketch state"):
        client.import_sketch("bad", bytes(data))
    with pytest.raises(InvalidArgument):
        client.import_sketch("bad", b"")
    with pytest.raises(InvalidArgument, match="name"):
        client.import_sketch("no spaces allowed", client.export_sketch("good"))
    with pytest.raises(NotFound):
        client.export_sketch("missing")
    assert "bad" not in {s.name for s in client.list()}


def test_states_over_the_message_limit_stream_in_chunks_and_the_size_limit_holds(
    client: SketchClient,
) -> None:
    medium = SketchConfig(dim=DIM, rows=64, bits=8, seed=0)  # 64 * 256 * 16 B = 256 KiB
    big = SketchConfig(dim=DIM, rows=400, bits=12, seed=0)  # 400 * 4096 * 16 B = 26 MB
    client.create_sketch("medium", medium)
    client.update("medium", *batch(1, 50))
    client.create_sketch("big", big)
    medium_data, big_data = client.export_sketch("medium"), client.export_sketch("big")
    assert len(medium_data) > 64 * 1024  # over the limited server's message size: chunks
    # An empty sketch exports as its occupied cells only (a few bytes of counts), yet the limit
    # is on the memory it would take (26 MB), so the limited server still refuses it.
    assert len(big_data) < 2**20
    limited = _settings(max_sketch_bytes=4 * 2**20, max_message_bytes=64 * 1024)
    with SketchServer(limited) as srv, SketchClient(srv.target, timeout=30) as small:
        info = small.import_sketch("medium", medium_data, chunk_bytes=32 * 1024)
        assert info.stats.observations == 50
        assert small.export_sketch("medium", chunk_bytes=32 * 1024) == medium_data
        with pytest.raises(ResourceExhausted, match="limit"):
            small.import_sketch("big", big_data, chunk_bytes=32 * 1024)
        assert [s.name for s in small.list()] == ["medium"]


def test_export_import_need_the_token() -> None:
    with SketchServer(_settings(auth_token="s3cret-token-123")) as srv:
        with SketchClient(srv.target, timeout=10, auth_token="s3cret-token-123") as ok:
            _fill(ok, "t", updates=1)
            data = ok.export_sketch("t")
        with SketchClient(srv.target, timeout=10, auth_token="wrong") as bad:
            with pytest.raises(Unauthenticated):
                bad.export_sketch("t")
            with pytest.raises(Unauthenticated):
                bad.import_sketch("t2", data)


def test_an_import_is_journaled_and_survives_a_restart(
    client: SketchClient, tmp_path: Path
) -> None:
    _fill(client, "journaled", updates=3)
    data = client.export_sketch("journaled")
    digest = client.get("journaled", digest=True).digest
    url = f"file://{tmp_path / 'store'}"
    registry = SketchRegistry(device="cpu", store=open_store(url))
    registry.import_state("fresh", data)
    registry.create("other", _engine())
    registry.import_state("other", data, replace=True)
    x, y = batch(500, 10)
    registry.update("other", x, y, "after-import")
    expected_other = registry.get("other", digest=True).digest
    # no snapshot was taken: a new registry rebuilds both from their journals alone
    restored = SketchRegistry(device="cpu", store=open_store(url))
    report = restored.restore()
    assert report.sketches == 2 and report.snapshots == 0
    assert restored.get("fresh", digest=True).digest == digest
    assert restored.get("other", digest=True).digest == expected_other
    # and from a snapshot taken after the import
    restored.snapshot()
    again = SketchRegistry(device="cpu", store=open_store(url))
    assert again.restore().snapshots == 2
    assert again.get("other", digest=True).digest == expected_other


def _engine():  # the engine's config of CONFIG
    from nws_core.sketch import SketchConfig as EngineConfig

    return EngineConfig(dim=DIM, rows=32, bits=6, seed=3)
