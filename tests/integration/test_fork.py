"""Forked children (DataLoader workers) use the client while the parent's channel is busy.

The parent keeps streaming updates from a background thread while it forks; each child uses the
*same* client object (it makes its own channel) for reads and writes. The final count must be
exactly the parent's updates plus the children's: nothing lost, nothing sent twice (a child must
not replay the parent's queued updates). The server runs in its own process, as a shared server
does, so that this process holds no gRPC server threads.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from integration_helpers import DIM, batch

from nws_client import SketchClient, SketchConfig
from nws_server.embedded import EmbeddedServer

CONFIG = SketchConfig(dim=DIM, rows=64, bits=6)
_client: SketchClient | None = None  # the parent's client, inherited by forked pool workers


@dataclass
class Busy:
    client: SketchClient
    stop: Callable[[], int]
    """Stops the parent's stream of updates; returns the rows it queued."""


@pytest.fixture
def busy(process_server: EmbeddedServer, name: str) -> Iterator[Busy]:
    """A client whose background update stream is kept busy by a thread of the parent."""
    client = SketchClient(process_server.target, timeout=20)
    client.create_sketch(name, CONFIG)
    client.update(name, *batch(1, 8))  # the channel is live before any fork
    sent = [8]
    stop = threading.Event()

    def stream() -> None:
        i = 0
        while not stop.is_set():
            client.update_async(name, *batch(100 + i, 8))
            sent[0] += 8
            i += 1
            time.sleep(0.001)

    def stop_streaming() -> int:
        stop.set()
        thread.join()
        return sent[0]

    thread = threading.Thread(target=stream, daemon=True)
    thread.start()
    try:
        yield Busy(client, stop_streaming)
    finally:
        stop_streaming()
        client.close()


def _wait(pid: int, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail(f"forked child {pid} hung")


def test_forked_children_while_the_parent_streams(busy: Busy, name: str) -> None:
    client = busy.client
    children = 6
    probe, _ = batch(2, 8)
    for k in range(children):
        pid = os.fork()
        if pid == 0:  # the child: the parent's client object, a channel of its own
            code = 1
            try:
                result = client.score(name, probe)
                client.update(name, *batch(900 + k, 4))
                client.update_async(name, *batch(950 + k, 4))
                client.flush(timeout=20)
                code = 0 if result.estimates.shape == (8,) else 3
            finally:
                os._exit(code)
        assert _wait(pid) == 0
    sent = busy.stop()
    client.flush(timeout=30)
    assert client.get(name).stats.observations == sent + children * 8
    stats = client.client_stats()
    assert stats.updates_acked == sent - 8 and stats.updates_rejected == 0


def test_fork_pool_workers_sample(busy: Busy, name: str) -> None:
    global _client
    _client = busy.client
    with multiprocessing.get_context("fork").Pool(2) as pool:
        kept = pool.map(_sample_in_worker, [(name, seed) for seed in range(8)])
    assert all(0 < k <= 16 for k in kept)


def _sample_in_worker(args: tuple[str, int]) -> int:
    name, seed = args
    assert _client is not None
    return int(_client.sample(name, batch(seed, 16)[0], 0.5).accepted.sum())


def test_exact_count_after_forks(process_server: EmbeddedServer, name: str) -> None:
    """Forks while updates are queued and in flight: the child drops the parent's queue."""
    with SketchClient(process_server.target, timeout=20) as client:
        client.create_sketch(name, CONFIG)
        for i in range(20):
            client.update_async(name, *batch(300 + i, 8))
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                client.update_async(name, *batch(999, 5))
                client.flush(timeout=20)
                code = 0 if client.client_stats().updates_acked == 5 else 3
            finally:
                os._exit(code)
        assert _wait(pid) == 0
        client.flush(timeout=20)
        assert client.get(name).stats.observations == 20 * 8 + 5
        assert np.isfinite(client.score(name, batch(1, 4)[0]).estimates).all()
