"""Engine throughput: estimate and update examples/s beside the hashing bound of the same run.

Hashing one example costs 2*d*R*K FLOP (one matrix product with R*K directions). The bound is
this run's measured float32 matrix-product rate at the same shapes divided by that cost; the
goal is estimate >= 50 % of it. Also measured: the pooled-projection variant (rows draw their K
bits from a shared pool of P directions: 2*d*P FLOP), wide kernels (K = 16) and the lean layout.

    python benchmarks/engine_throughput.py [--batch 1024] [--repeats 15]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, write_result  # noqa: E402
from nws_core.sketch import NWSketch, SketchConfig  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def interleaved(
    fns: dict[str, Callable[[], object]], device: torch.device, repeats: int
) -> dict[str, float]:
    """Median seconds per call of each function, timed round-robin so that load from other
    processes hits all of them alike (the ratios stay meaningful on a noisy machine)."""
    for fn in fns.values():
        fn()
        fn()
    _sync(device)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def run_case(cfg: SketchConfig, device: torch.device, batch: int, repeats: int) -> dict[str, float]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, cfg.dim, generator=gen).to(device)
    y = torch.rand(batch, generator=gen, dtype=torch.float64).to(device)
    sketch = NWSketch(cfg, device=device)
    sketch.update(x, y)
    n_dirs = cfg.pool if cfg.pool is not None else cfg.rows * cfg.bits
    proj = torch.randn(cfg.dim, n_dirs, generator=gen).to(device)
    t = interleaved(
        {
            "matmul": lambda: x @ proj,
            "estimate": lambda: sketch.estimate(x),
            "update": lambda: sketch.update(x, y),
        },
        device,
        repeats,
    )
    flop_per_example = 2 * cfg.dim * n_dirs
    return {
        "gflops": flop_per_example * batch / t["matmul"] / 1e9,
        "bound": batch / t["matmul"],
        "estimate": batch / t["estimate"],
        "update": batch / t["update"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()

    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    cases = []
    for d in (384, 768):
        cases.append((f"d={d}, R=200, K=10", SketchConfig(dim=d, rows=200, bits=10)))
        cases.append(
            (f"d={d}, R=200, K=10, pool=512", SketchConfig(dim=d, rows=200, bits=10, pool=512))
        )
    cases.append(("d=384, R=200, K=16", SketchConfig(dim=384, rows=200, bits=16)))
    cases.append(
        (
            "d=384, R=200, K=16, buckets=4096, float32",
            SketchConfig(dim=384, rows=200, bits=16, buckets=4096, accumulator="float32"),
        )
    )
    rows = []
    for device in devices:
        for name, cfg in cases:
            r = run_case(cfg, device, args.batch, args.repeats)
            rows.append(
                [
                    device.type,
                    name,
                    f"{cfg.array_bytes / 2**20:.1f}",
                    r["gflops"],
                    r["bound"],
                    r["estimate"],
                    r["estimate"] / r["bound"],
                    r["update"],
                ]
            )
            print(rows[-1], flush=True)
    table = markdown_table(
        [
            "device",
            "sketch",
            "arrays MiB",
            "matmul GFLOP/s",
            "hashing bound ex/s",
            "estimate ex/s",
            "estimate / bound",
            "update ex/s",
        ],
        rows,
    )
    body = (
        f"Batch {args.batch}, median of {args.repeats} calls after 2 warm-up calls, timed "
        "round-robin; the bound is "
        "this run's matrix product x @ P at the same shapes (2*d*R*K FLOP per example, "
        "2*d*P with a pool), so the ratio does not depend on the machine's speed.\n\n" + table
    )
    write_result("engine_throughput", "Engine throughput", body)


if __name__ == "__main__":
    main()
