"""Helpers shared by the integration tests (imported as a plain module)."""

from __future__ import annotations

import numpy as np
from nws.v1 import sketch_pb2 as pb

from nws_client import SketchClient

DIM = 16


def batch(seed: int, n: int, dim: int = DIM) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings (float32) and dyadic losses: sums of them are exact in any order."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, dim)).astype(np.float32), rng.integers(0, 16, n) / 4.0


def packed(x: np.ndarray) -> pb.Tensor:
    a = np.ascontiguousarray(x, dtype="<f4")
    return pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=a.shape, data=a.tobytes())


def digest(client: SketchClient, name: str) -> str:
    d = client.get(name, digest=True).digest
    assert d
    return d


def send_known_updates(
    target: str, name: str, worker: int, updates: int, rows: int, probe: np.ndarray
) -> None:
    """A client process's known updates: every second one synchronous, the others streamed,
    each followed by reads (of ``probe``, already in the sketch, so never a prior hit, whatever
    the order). Cheap to spawn: imports the client only."""
    with SketchClient(target, timeout=30) as client:
        seen = 0
        for i in range(updates):
            x, y = batch(1000 * worker + i, rows)
            if i % 2:
                client.update(name, x, y)
            else:
                client.update_async(name, x, y)
            assert not client.score(name, probe).prior_used.any()
            observations = client.get(name).stats.observations
            assert observations >= seen and observations % rows == 0  # never a torn read
            seen = observations
        client.flush(timeout=30)
