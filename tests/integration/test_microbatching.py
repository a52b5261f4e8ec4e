"""Micro-batching: concurrent estimates on one sketch become one engine call, same answers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from nws_client import SketchClient, SketchConfig
from nws_server.batching import Coalescer
from nws_server.server import SketchServer
from nws_server.settings import Settings

DIM = 16


def _coalescer(
    lock: threading.Lock, calls: list[int], max_wait_s: float = 0.0, max_rows: int = 8192
) -> Coalescer[torch.Tensor]:
    def run(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        if (x < 0).any():
            raise ValueError("negative")
        return x.sum(dim=1)

    return Coalescer(
        lock, run, lambda r, sizes: list(r.split(sizes)), max_wait_s=max_wait_s, max_rows=max_rows
    )


def _submit_all(
    coalescer: Coalescer[torch.Tensor], inputs: list[torch.Tensor], lock: threading.Lock
) -> list[torch.Tensor | BaseException]:
    """Submit every input from its own thread while ``lock`` is held, then release it."""
    results: list[torch.Tensor | BaseException] = [torch.empty(0)] * len(inputs)

    def submit(i: int) -> None:
        try:
            results[i] = coalescer.submit(inputs[i])
        except ValueError as exc:
            results[i] = exc

    lock.acquire()  # an engine call is running: requests queue up behind it, in this order
    threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(inputs))]
    for i, t in enumerate(threads):
        t.start()
        while coalescer.pending < i + 1:
            time.sleep(0.001)
    lock.release()
    for t in threads:
        t.join()
    return results


def test_waiting_requests_run_as_one_engine_call() -> None:
    lock, calls = threading.Lock(), list[int]()
    inputs = [torch.full((i + 1, 2), float(i)) for i in range(4)]
    results = _submit_all(_coalescer(lock, calls), inputs, lock)
    assert calls == [1 + 2 + 3 + 4]
    for x, result in zip(inputs, results, strict=True):
        assert isinstance(result, torch.Tensor)
        torch.testing.assert_close(result, x.sum(dim=1))


def test_batches_respect_max_rows_in_arrival_order() -> None:
    lock, calls = threading.Lock(), list[int]()
    coalescer = _coalescer(lock, calls, max_rows=3)
    inputs = [torch.ones(1, 2), torch.ones(2, 2), torch.ones(3, 2)]
    results = _submit_all(coalescer, inputs, lock)
    assert calls == [3, 3]  # [1 + 2] then [3]
    assert all(isinstance(r, torch.Tensor) for r in results)


def test_an_engine_failure_fails_its_batch_only() -> None:
    lock, calls = threading.Lock(), list[int]()
    coalescer = _coalescer(lock, calls)
    results = _submit_all(coalescer, [torch.ones(1, 2), -torch.ones(1, 2)], lock)
    assert all(isinstance(r, ValueError) for r in results)
    torch.testing.assert_close(coalescer.submit(torch.ones(2, 2)), torch.full((2,), 2.0))


def test_bounded_wait_gathers_a_late_request() -> None:
    lock, calls = threading.Lock(), list[int]()
    coalescer = _coalescer(lock, calls, max_wait_s=5.0, max_rows=2)
    first = threading.Thread(target=coalescer.submit, args=(torch.ones(1, 2),))
    first.start()
    time.sleep(0.05)  # the first request is lingering for company
    coalescer.submit(torch.ones(1, 2))
    first.join()
    assert calls == [2]


# ------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def batching_server() -> Iterator[SketchServer]:
    settings = Settings(grpc_port=0, rest=False, device="cpu", micro_batching=True)
    with SketchServer(settings) as srv:
        yield srv


def _one_hot(seed: int, n: int) -> np.ndarray:
    """Scaled basis vectors: their projections are exact, so every batch shape hashes them
    identically (dense vectors may differ in the last bit between matmul shapes)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, DIM), np.float32)
    x[np.arange(n), rng.integers(0, DIM, n)] = rng.choice([-2.0, -0.5, 1.0, 4.0], n)
    return x


def test_concurrent_requests_get_the_answers_of_serial_ones(batching_server: SketchServer) -> None:
    with SketchClient(batching_server.target) as client:
        client.create_sketch("mb", SketchConfig(dim=DIM, rows=64, bits=6))
        client.update("mb", _one_hot(0, 256), np.random.default_rng(1).integers(0, 8, 256) / 2)
        queries = [_one_hot(10 + i, 8 + i % 5) for i in range(48)]
        want_scores = [client.score("mb", q).estimates for q in queries]
        want_samples = [client.sample("mb", q, 0.5, seed=i).accepted for i, q in enumerate(queries)]
        errors: list[BaseException] = []

        def work(t: int) -> None:
            try:
                for i in range(t, len(queries), 6):
                    np.testing.assert_array_equal(
                        client.score("mb", queries[i]).estimates, want_scores[i]
                    )
                    got = client.sample("mb", queries[i], 0.5, seed=i).accepted
                    np.testing.assert_array_equal(got, want_samples[i])
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[0]
    families = {
        f.name: f for f in text_string_to_metric_families(batching_server.metrics.render().decode())
    }
    counts = [
        s.value for s in families["nws_microbatch_requests"].samples if s.name.endswith("_count")
    ]
    sums = [s.value for s in families["nws_microbatch_requests"].samples if s.name.endswith("_sum")]
    assert sums == [4 * len(queries)]  # every request went through the batcher once...
    assert counts[0] <= sums[0]  # ...in as many engine calls or fewer
