"""The client library: background updates, deadlines, the server-down policies, wire dtypes."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from integration_helpers import DIM, batch, digest

from nws_client import (
    DeadlineExceeded,
    NotFound,
    NWSClientError,
    OnUnavailable,
    SketchClient,
    SketchConfig,
    Unavailable,
)
from nws_client._wire import to_bfloat16_bits
from nws_core.sketch import SketchConfig as EngineConfig
from nws_server.server import SketchServer
from nws_server.settings import Settings

CONFIG = SketchConfig(dim=DIM, rows=64, bits=6)


def test_importing_the_client_needs_neither_torch_nor_the_server() -> None:
    code = textwrap.dedent(
        """
        import sys
        import nws_client
        client = nws_client.SketchClient("127.0.0.1:9", timeout=0.2)
        try:
            client.get("x")
        except nws_client.NWSClientError:  # nothing listens there
            pass
        client.close()
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "nws_server"))
        assert not leaked, leaked
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_update_async_then_flush(client: SketchClient, name: str) -> None:
    client.create_sketch(name, CONFIG)
    sent = 0
    for i in range(20):
        x, y = batch(100 + i, 16)
        client.update_async(name, x, y)
        sent += 16
    client.flush()
    assert client.get(name).stats.observations == sent
    stats = client.client_stats()
    assert stats.updates_acked == sent and stats.updates_buffered == 0
    assert stats.updates_dropped == 0 and stats.updates_rejected == 0


def test_a_rejected_background_update_is_raised_by_flush(client: SketchClient, name: str) -> None:
    client.create_sketch(name, CONFIG)
    client.update_async(name, *batch(1, 4))
    client.update_async(name + "-missing", *batch(2, 4))
    client.update_async(name, *batch(3, 4))
    with pytest.raises(NotFound, match="missing"):
        client.flush()
    client.flush()  # reported once
    assert client.get(name).stats.observations == 8
    assert client.client_stats().updates_rejected == 4


def test_background_updates_equal_synchronous_ones(client: SketchClient, name: str) -> None:
    client.create_sketch(name + "-sync", CONFIG)
    client.create_sketch(name + "-async", CONFIG)
    for i in range(10):
        x, y = batch(200 + i, 8)
        client.update(name + "-sync", x, y)
        client.update_async(name + "-async", x, y)
    client.flush()
    sync, background = (
        client.get(name + "-sync", digest=True),
        client.get(name + "-async", digest=True),
    )
    assert sync.digest == background.digest


def test_deadline_exceeded() -> None:
    # a peer that accepts the TCP connection and never speaks HTTP/2: the call can only time out
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        target = f"127.0.0.1:{silent.getsockname()[1]}"
        with SketchClient(target, timeout=0.3) as hurried, pytest.raises(DeadlineExceeded):
            hurried.score("any", batch(4, 256)[0])


def test_wire_dtypes_agree(server: SketchServer, client: SketchClient, sketch: str) -> None:
    # values exactly representable in float16 and bfloat16: every wire dtype scores the same
    x = (np.random.default_rng(5).integers(-64, 64, (32, DIM)) / 16).astype(np.float32)
    want = client.score(sketch, x).estimates
    for wire in ("float16", "bfloat16"):
        with SketchClient(server.target, wire_dtype=wire) as c:
            np.testing.assert_array_equal(c.score(sketch, x).estimates, want)
    np.testing.assert_array_equal(client.score(sketch, x.astype(np.float16)).estimates, want)


def test_bfloat16_rounding_matches_torch() -> None:
    x = np.random.default_rng(6).standard_normal(10_000).astype(np.float32) * 1e3
    x[:4] = [np.inf, -np.inf, 0.0, -0.0]
    ours = to_bfloat16_bits(x)
    theirs = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(ours, theirs)
    assert np.isnan(
        torch.from_numpy(to_bfloat16_bits(np.array([np.nan], np.float32)).view(np.int16))
        .view(torch.bfloat16)
        .float()
        .numpy()
    ).all()


def test_closed_client_refuses_calls(server: SketchServer) -> None:
    client = SketchClient(server.target)
    client.close()
    with pytest.raises(NWSClientError, match="closed"):
        client.list()


# ------------------------------------------------------------------- when the server is down
@pytest.fixture
def restartable() -> SketchServer:
    return SketchServer(Settings(grpc_port=0, rest=False, device="cpu")).start()


def _restart(old: SketchServer, sketch: str) -> SketchServer:
    """A new server on the same port with ``sketch`` already created (state is not durable
    yet): it exists before the first request can reach it."""
    new = SketchServer(Settings(grpc_port=old.grpc_port, rest=False, device="cpu"))
    new.registry.create(sketch, EngineConfig(dim=DIM, rows=64, bits=6))
    return new.start()


def test_raise_policy(restartable: SketchServer, name: str) -> None:
    client = SketchClient(restartable.target, timeout=0.5, max_buffered_updates=32)
    client.create_sketch(name, CONFIG)
    restartable.stop(grace=0)
    x, y = batch(7, 16)
    with pytest.raises((Unavailable, DeadlineExceeded)):  # whichever comes first
        client.sample(name, x, 0.5)
    client.update_async(name, x, y)
    client.update_async(name, x, y)
    start = time.monotonic()
    with pytest.raises(Unavailable, match="buffer is full"):
        client.update_async(name, x, y)  # waits for room up to the timeout
    assert time.monotonic() - start >= 0.4
    with pytest.raises(DeadlineExceeded, match="32 rows"):
        client.flush(timeout=0.3)
    restarted = _restart(restartable, name)
    try:
        client.flush(timeout=20)
        assert client.get(name).stats.observations == 32
    finally:
        client.close()
        restarted.stop(grace=0)


@pytest.mark.parametrize("policy", ["accept_all", "uniform"])
def test_fallback_policies_and_bounded_buffer(
    restartable: SketchServer, name: str, policy: OnUnavailable
) -> None:
    client = SketchClient(
        restartable.target, timeout=0.5, on_unavailable=policy, max_buffered_updates=100
    )
    client.create_sketch(name, CONFIG)
    restartable.stop(grace=0)
    x, y = batch(8, 400)
    result = client.sample(name, x, 0.25, seed=3)
    assert result.fallback and not result.warmup and np.isnan(result.estimates).all()
    if policy == "accept_all":
        assert result.accepted.all()
        np.testing.assert_array_equal(result.weights, 1.0)
    else:
        np.testing.assert_array_equal(result.probabilities, 0.25)
        assert 0.15 < result.accepted.mean() < 0.35
        np.testing.assert_array_equal(result.weights[result.accepted], 4.0)
    with pytest.raises((Unavailable, DeadlineExceeded)):
        client.score(name, x)  # only sample has a fallback
    for i in range(10):
        client.update_async(name, x[32 * i : 32 * i + 32], y[32 * i : 32 * i + 32])
    stats = client.client_stats()
    assert stats.fallbacks == 1 and stats.fallback_rows == 400
    assert stats.updates_buffered <= 100
    assert stats.updates_buffered + stats.updates_dropped == 320
    assert stats.updates_dropped > 0 and stats.last_error is not None
    restarted = _restart(restartable, name)
    try:
        client.flush(timeout=20)
        stats = client.client_stats()
        assert stats.updates_buffered == 0
        assert stats.updates_acked + stats.updates_dropped == 320
        assert client.get(name).stats.observations == stats.updates_acked
        assert not client.sample(name, x[:8], 0.5).fallback
    finally:
        client.close()
        restarted.stop(grace=0)


def test_retried_stream_updates_count_once(
    client: SketchClient, server: SketchServer, name: str
) -> None:
    """The same update sent twice (a resend after a lost ack) is applied once."""
    client.create_sketch(name, CONFIG)
    x, y = batch(9, 8)
    client.update(name, x, y, request_id="same")
    client.update(name, x, y, request_id="same")
    before = digest(client, name)
    client.update_async(name, x, y)
    client.flush()
    assert client.get(name).stats.observations == 16
    assert digest(client, name) != before
