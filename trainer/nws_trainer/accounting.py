"""What a run spent and what it reached: the compute ledger and ``summary.json``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nws_trainer.prepare import environment

if TYPE_CHECKING:
    from nws_trainer.train import Trainer


def describe(t: Trainer) -> str:
    """The line a run starts with: strategy, data, model, device, batch, steps."""
    cfg, prep = t.cfg, t.prep
    sampled = (
        f", ratio {cfg.keep_ratio}"
        + (f" (at least {cfg.ratio_min})" if cfg.auto else "")
        + f", p_min {cfg.p_min}, {cfg.batching} batching"
        if t.strategy.sampled
        else ""
    )
    split = (
        " (test split: auto, 20 % of the rows up to 2,000; --test-size to choose)"
        if cfg.test_size is None and cfg.test_data is None
        else ""
    )
    budget = f", a budget of exactly {t.budget} steps" if t.budget is not None else ""
    return (
        f"nws-train: strategy {cfg.strategy}{sampled}; {len(prep.train)} train / "
        f"{len(prep.test)} test examples{split}, labels {prep.label_names}; model "
        f"{prep.model_dir} on {t.device}; batch {cfg.batch_size}, lr {cfg.lr}, "
        f"~{t.total_steps} steps{budget}"
    )


def ledger(t: Trainer) -> dict[str, Any]:
    """The compute this run has spent so far, counted (not timed) where it can be: what the
    benchmarks price at per-unit costs calibrated on the machine (compute-normalised time).
    Evaluation and the probe are diagnostics and not counted; the embedding pass is."""
    emb = t.embeddings
    totals = t.totals
    return {
        "steps": t.step,
        "grad_examples": t.backpropagated,
        "grad_tokens": t.grad_tokens,
        "nograd_examples": t.nograd_examples,
        "nograd_tokens": t.nograd_tokens,
        # counted as tokens above, so not again here
        "select_seconds": max(0.0, totals["select"] - totals["select_forward"]),
        "update_seconds": totals["update"],
        "embedding_source": None if emb is None else t.cfg.embedding_source,
        "embedding_examples": 0 if emb is None else len(t.prep.train),
        "embedding_tokens": 0 if emb is None else t.embedding_tokens,
        "embedding_seconds": 0.0 if emb is None else emb.compute_seconds,
    }


def summary(t: Trainer, stopped_by: str, sketch_stats: dict[str, Any] | None) -> dict[str, Any]:
    """``summary.json``: the final and best accuracy, the ledger, the timing, the config."""
    cfg, prep = t.cfg, t.prep
    last = t.rows[-1]
    emb = t.embeddings
    train_seconds = t.clock.seconds
    totals = t.totals
    return {
        "strategy": cfg.strategy,
        "batching": cfg.batching,
        "seed": cfg.seed,
        "stopped_by": stopped_by,
        "steps": t.step,
        "epochs_started": t.epoch + 1,
        "final": {"test_accuracy": last["test_accuracy"], "test_loss": last["test_loss"]},
        "best_test_accuracy": max(r["test_accuracy"] for r in t.rows),
        "train_seconds": train_seconds,
        "wall_seconds": last["wall_seconds"],
        "eval_seconds": totals["eval"],
        "embedding": None
        if emb is None
        else {
            "seconds": emb.seconds,
            "compute_seconds": emb.compute_seconds,
            "cache_hit": emb.cache_hit,
            "fingerprint": emb.fingerprint,
            "path": str(emb.path),
        },
        "examples_forwarded": t.forwarded,
        "examples_backpropagated": t.backpropagated,
        "candidates_seen": t.candidates,
        "ledger": ledger(t),
        "acceptance_rate": t.accepted / t.candidates if t.candidates else None,
        "fallback_candidates": t.fallback_candidates,
        "timing": {
            "step_seconds": totals["step"],
            "loader_wait_seconds": totals["loader"],
            "select_seconds": totals["select"],
            "update_seconds": totals["update"],
            "seconds_per_step": train_seconds / t.step if t.step else None,
            "sampling_overhead": (totals["select"] + totals["update"]) / train_seconds
            if train_seconds > 0 and t.strategy.sampled
            else None,
        },
        "sketch": sketch_stats,
        "sketch_endpoint": t.endpoint,
        "train_examples": len(prep.train),
        "test_examples": len(prep.test),
        "probe_examples": int(prep.probe.size),
        "label_names": prep.label_names,
        "model": str(prep.model_dir),
        "config": cfg.to_dict(),
        "environment": environment(),
    }
