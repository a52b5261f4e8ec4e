"""Many clients at once: no lost updates, no torn reads, exact counts.

Several client processes send known updates (synchronous and streamed, interleaved) to one server;
the server's state must equal an in-process replay of all of them. The losses are multiples of
1/4, so float sums are exact in any order and the digests (arrays, counters, hash parameters)
must be identical, not merely close.
"""

from __future__ import annotations

import multiprocessing
import threading

import numpy as np
from integration_helpers import DIM, batch, send_known_updates

from nws_client import SketchClient, SketchConfig
from nws_core.sketch import NWSketch
from nws_core.sketch import SketchConfig as EngineConfig
from nws_server.server import SketchServer

PROCESSES = 3
UPDATES = 30
ROWS = 8


def test_client_processes_count_exactly(server: SketchServer, name: str) -> None:
    with SketchClient(server.target) as client:
        client.create_sketch(name, SketchConfig(dim=DIM, rows=64, bits=6))
        probe, values = batch(99, ROWS)
        client.update(name, probe, values)
        context = multiprocessing.get_context("spawn")
        workers = [
            context.Process(
                target=send_known_updates, args=(server.target, name, k, UPDATES, ROWS, probe)
            )
            for k in range(PROCESSES)
        ]
        for process in workers:
            process.start()
        for process in workers:
            process.join(timeout=120)
            assert process.exitcode == 0
        info = client.get(name, digest=True)

    replay = NWSketch(EngineConfig(dim=DIM, rows=64, bits=6))
    replay.update(probe, values)
    for w in range(PROCESSES):
        for i in range(UPDATES):
            replay.update(*batch(1000 * w + i, ROWS))
            replay.estimate(probe)
    assert info.stats.observations == (PROCESSES * UPDATES + 1) * ROWS
    assert info.stats.updates == PROCESSES * UPDATES + 1
    assert info.stats.estimates == PROCESSES * UPDATES * ROWS
    assert info.stats.prior_hits == 0
    assert info.digest == replay.digest()


def test_threads_share_one_client(server: SketchServer, name: str) -> None:
    """One client object used from many threads (as a trainer's callbacks might)."""
    with SketchClient(server.target) as client:
        client.create_sketch(name, SketchConfig(dim=DIM, rows=64, bits=6))
        errors: list[BaseException] = []

        def work(t: int) -> None:
            try:
                for i in range(10):
                    x, y = batch(5000 + 100 * t + i, ROWS)
                    client.update(name, x, y)
                    assert client.sample(name, x, 0.5).accepted.shape == (ROWS,)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        stats = client.get(name).stats
        assert stats.observations == 6 * 10 * ROWS
        assert stats.sampled == 6 * 10 * ROWS
        assert np.isclose(stats.mean_value or 0.0, _mean_of_batches(5000, 6, 10))


def _mean_of_batches(base: int, threads: int, per_thread: int) -> float:
    values = [batch(base + 100 * t + i, ROWS)[1] for t in range(threads) for i in range(per_thread)]
    return float(np.concatenate(values).mean())
