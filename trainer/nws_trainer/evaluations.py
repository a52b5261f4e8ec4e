"""One evaluation of a training run: test accuracy and loss (the clock paused), the sketch's
probe, the compute ledger so far; a row of ``metrics.jsonl`` and a log line."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, TextIO

from nws_trainer import accounting
from nws_trainer.evaluate import evaluate
from nws_trainer.probe import probe

if TYPE_CHECKING:
    from nws_trainer.train import Trainer


def record_evaluation(t: Trainer, metrics: TextIO) -> None:
    """Evaluate on the test set (the clock paused), probe the sketch, append the row with the
    ledger so far to ``metrics`` and to ``t.rows``, and log a line."""
    cfg = t.cfg
    with t.clock.paused():
        start = time.perf_counter()
        acc, loss = evaluate(
            t.model,
            t.prep.test_tokens,
            t.test_labels,
            cfg.eval_batch_size,
            t.device,
        )
        probe_row = probe(t)
        eval_seconds = time.perf_counter() - start
    t.totals["eval"] += eval_seconds
    emb_seconds = t.embeddings.compute_seconds if t.embeddings is not None else 0.0
    row: dict[str, Any] = {
        "step": t.step,
        "epoch": t.epoch,
        "train_seconds": t.clock.seconds,
        "wall_seconds": t.clock.seconds + emb_seconds,
        "eval_seconds": eval_seconds,
        "examples_forwarded": t.forwarded,
        "examples_backpropagated": t.backpropagated,
        "candidates_seen": t.candidates,
        "ledger": accounting.ledger(t),
        "test_accuracy": acc,
        "test_loss": loss,
        "lr": t.scheduler.get_last_lr()[0],
        **t.window.row(),
        **probe_row,
    }
    t.rows.append(row)
    metrics.write(json.dumps(row) + "\n")
    metrics.flush()
    parts = [
        f"step {t.step:5d}",
        f"{row['train_seconds']:7.1f} s",
        f"acc {acc:.4f}",
        f"loss {loss:.4f}",
    ]
    if row["acceptance_rate"] is not None and t.strategy.sampled:
        parts.append(f"accept {row['acceptance_rate']:.2f}")
    if row["spearman_trained"] is not None:
        parts.append(f"rho(est,loss) {row['spearman_trained']:.2f}")
    if row.get("probe_spearman") is not None:
        parts.append(f"rho(probe) {row['probe_spearman']:.2f}")
    t.log("  " + " | ".join(parts))
