"""CPU and CUDA sketches of the same seed end in bit-identical serialized state (needs CUDA).

Run on a GPU machine by scripts/gpu_check.sh (its `tests` section); skipped without CUDA. The
inputs are chosen so that bit-identity is a fair demand of any correct engine, not luck: each
embedding has two non-zero entries in {±1, ±2}, so every projection <a, x> is one exactly
rounded sum of two exact products (the same bits on any device and in any summation order),
and every value is a multiple of 1/256, so the count arrays' sums are exact in any order of the
device's atomic adds. What remains to differ is the engine itself: hash parameters on the
device, codes, bucket offsets, scatter-adds, decay and the snapshot format.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nws_core.sketch import NWSketch, SketchConfig

DIM = 48
CONFIGS = {
    "independent": SketchConfig(dim=DIM, rows=40, bits=10, seed=11),
    "pooled": SketchConfig(dim=DIM, rows=40, bits=10, seed=11, pool=96),
    "lean float32": SketchConfig(
        dim=DIM, rows=24, bits=16, seed=11, buckets=1000, accumulator="float32"
    ),
    "decayed": SketchConfig(dim=DIM, rows=40, bits=8, seed=11, decay=0.5),
}


def exact_batches(n_batches: int, n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Embeddings with two entries in {±1, ±2} per row, values in multiples of 1/256."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_batches):
        x = np.zeros((n, DIM), dtype=np.float32)
        cols = np.stack([rng.choice(DIM, size=2, replace=False) for _ in range(n)])
        x[np.arange(n)[:, None], cols] = rng.choice([-2.0, -1.0, 1.0, 2.0], size=(n, 2))
        out.append((x, rng.integers(0, 256, size=n) / 256.0))
    return out


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", list(CONFIGS))
def test_cpu_and_cuda_serialize_to_identical_bytes(name: str) -> None:
    cfg = CONFIGS[name]
    cpu, gpu = NWSketch(cfg, "cpu"), NWSketch(cfg, "cuda")
    for x, y in exact_batches(5, 400, seed=3):
        cpu.update(x, y)
        gpu.update(torch.from_numpy(x).cuda(), y)
    assert torch.equal(cpu.bottom, gpu.bottom.cpu())  # identical buckets
    assert gpu.serialize() == cpu.serialize()  # and bit-identical state
    # a CUDA snapshot restores on the CPU, and a CPU one on CUDA, to the same state
    assert NWSketch.deserialize(gpu.serialize(), "cpu").digest() == cpu.digest()
    assert NWSketch.deserialize(cpu.serialize(), "cuda").digest() == gpu.digest()
    probe = exact_batches(1, 300, seed=4)[0][0]
    assert torch.allclose(cpu.estimate(probe).values, gpu.estimate(probe).values, rtol=1e-12)
