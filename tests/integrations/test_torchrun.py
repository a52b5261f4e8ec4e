"""torchrun / DDP: two CPU ranks (gloo) share one sketch server; same steps, reproducible."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _torchrun(examples_dir: Path, model: Path, out: Path) -> list[dict]:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(examples_dir / "torchrun_ddp.py"), "--model", str(model), "--train-size", "128",
        "--epochs", "2", "--lr", "1e-3", "--seed", "5", "--output", str(out),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def test_two_ranks_share_one_sketch_take_equal_steps_and_are_reproducible(
    examples_dir: Path, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    first = _torchrun(examples_dir, tiny_bert_dir, tmp_path / "a")
    second = _torchrun(examples_dir, tiny_bert_dir, tmp_path / "b")
    r0, r1 = first
    assert r0["steps"] == r1["steps"] == 2 * 2  # ceil(128 * 0.5 / (16 * 2)) per epoch
    assert all(len(a) == len(b) == 16 for a, b in zip(r0["trained"], r1["trained"], strict=True))
    # warm-up keeps every candidate: each rank's first batch is its own chunk of the permutation
    assert not set(r0["trained"][0]) & set(r1["trained"][0])
    assert r0["checksum"] == r1["checksum"]  # DDP kept the replicas equal
    assert first == second  # same seed: same examples on every rank, same parameters
