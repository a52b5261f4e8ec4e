"""``make demo``: full-data training against NWS sampling, on the same wall-clock budget.

1. ``full`` fine-tunes the packaged all-MiniLM-L6-v2 on a subset of the packaged Rotten
   Tomatoes snippets for one epoch (the paper's baseline), and its training time sets the budget.
2. ``nws`` gets the same budget, with the one-time embedding pass charged to it: a sketch server
   (embedded, on a loopback port, reached over gRPC like a shared one) scores every candidate
   from a static embedding of its text (by default the mean of the model's input token
   embeddings: no transformer pass), the loader keeps about 40 % of them with importance
   weights, and the trainer streams the losses it observes back into the sketch. It runs with
   ``nws-train``'s defaults, chosen from the benchmarks (README, "Choosing the defaults").
3. A table and ``comparison.png`` compare them; each run's folder holds its ``metrics.jsonl``,
   ``summary.json`` and ``curves.png``.

Sized for about three minutes on 2 CPU cores (181 s measured).
``python -m nws_trainer.demo --help`` for options.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from nws_trainer.config import TrainConfig
from nws_trainer.plots import plot_curves
from nws_trainer.report import comparison_table, run_facts

_D = TrainConfig()  # nws-train's defaults, which the demo shows


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m nws_trainer.demo", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--output", type=Path, default=Path("runs/demo"), help="where runs go")
    p.add_argument("--model", type=Path, help="local model folder (default: packaged MiniLM)")
    p.add_argument("--train-size", type=int, default=2400, help="training examples")
    p.add_argument("--test-size", type=int, default=800, help="test examples")
    p.add_argument("--eval-every", type=int, default=20, help="steps between evaluations")
    p.add_argument("--warmup-steps", type=int, default=_D.warmup_steps, help="sketch warm-up steps")
    p.add_argument("--ratio", type=float, default=_D.ratio, help="fraction of candidates kept")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sketch-endpoint", help="HOST:PORT of a running server (default: embedded)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _say(text: str = "") -> None:
    print(text, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out: Path = args.output
    base = TrainConfig(
        model=args.model,
        train_size=args.train_size,
        test_size=args.test_size,
        eval_every=args.eval_every,
        warmup_steps=args.warmup_steps,
        ratio=args.ratio,
        seed=args.seed,
        probe_size=min(256, args.train_size),
        sketch_endpoint=args.sketch_endpoint,
        progress=not args.no_progress,
    )
    from nws_trainer.config import ConfigError
    from nws_trainer.prepare import prepare, static_embeddings
    from nws_trainer.train import Trainer

    started = time.perf_counter()
    _say("NWS demo: does sampling by estimated loss reach full-data accuracy sooner?")
    _say(
        f"  {args.train_size} training / {args.test_size} test Rotten Tomatoes snippets, "
        f"batch {base.batch_size}, lr {base.lr}, one epoch of full data sets the budget."
    )
    try:
        full_cfg = base.replace(strategy="full", output=out / "full")
        full_prep = prepare(full_cfg)
        _say("\n[1/2] full: every example, plain shuffled minibatches")
        full = Trainer(full_prep).run()
        budget = full.summary["train_seconds"]

        # Enough epochs for the budget; the time budget is what stops nws.
        nws_cfg = base.replace(strategy="nws", epochs=4, output=out / "nws")
        nws_prep = prepare(nws_cfg)
        _say("\n[2/2] nws: the sketch server picks informative examples (same budget)")
        _say(
            f"  nws-train's defaults: sketch R={nws_cfg.sketch_rows} rows x "
            f"K={nws_cfg.sketch_bits} bits, priority = estimate^{nws_cfg.score_power:g}, "
            f"{nws_cfg.embedding_source} embeddings, warm-up {nws_cfg.warmup_steps} steps, "
            f"keep ratio {nws_cfg.ratio}, {nws_cfg.batching} batching"
        )
        emb = static_embeddings(nws_prep)  # computed once, cached; charged to nws below
        remaining = max(budget - emb.compute_seconds, 0.2 * budget)
        _say(
            f"  budget {budget:.0f} s = {emb.compute_seconds:.0f} s embedding pass "
            f"+ {remaining:.0f} s of training"
        )
        nws_prep = dataclasses.replace(nws_prep, config=nws_cfg.replace(time_budget=remaining))
        nws = Trainer(nws_prep).run()
    except ConfigError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2

    target = full.summary["final"]["test_accuracy"]
    facts = {
        "full": run_facts(full.summary, full.metrics, target),
        "nws": run_facts(nws.summary, nws.metrics, target),
    }
    png = plot_curves(
        {"full": full.metrics, "nws": nws.metrics},
        out / "comparison.png",
        title="full vs nws: test accuracy and loss (dashed: full's final accuracy)",
        target=target,
    )
    table = comparison_table(facts, target)
    (out / "comparison.md").write_text(table + "\n")
    _say("\n" + table)
    f, n = facts["full"], facts["nws"]
    _say(
        f"\nnws trained {n['backpropagated']} examples in {n['steps']} steps "
        f"({nws.summary['epochs_started']} passes over the data, {n['acceptance_rate']:.0%} of "
        f"the {nws.summary['candidates_seen']} candidates kept), full {f['backpropagated']} in "
        f"{f['steps']} steps."
    )
    if n["time_to_target"] is not None:
        _say(
            f"nws reached full's final accuracy after {n['time_to_target']:.0f} s "
            f"(full: {f['time_to_target']:.0f} s)."
        )
    else:
        _say("nws did not reach full's final accuracy within the budget on this run.")
    _say(
        f"""
What to look at:
  {png}  accuracy and loss against wall-clock and steps (the paper's Figure 3).
  {out / "nws" / "metrics.jsonl"}  one row per evaluation. The sampling diagnostics:
    acceptance_rate   share of candidates kept (target {base.ratio})
    estimate_cv       spread of the sketch's estimates within a candidate chunk; near 0 means
                      the sketch cannot tell examples apart and nws behaves like uniform sampling
    spearman_trained  rank correlation of estimated vs observed loss of trained examples
    probe_spearman    the same against the current model's true loss on a fixed probe set
    ess_fraction, max_weight  how uneven the importance weights are
  {out / "nws" / "summary.json"}  totals, timing (sampling_overhead) and the sketch's statistics.
One seed on a small subset is noisy (about +/-1.5 points of accuracy); benchmarks/
time_to_accuracy.py runs several strategies over several seeds. Demo took
{time.perf_counter() - started:.0f} s."""
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
