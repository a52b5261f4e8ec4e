"""Time to accuracy: several strategies side by side, over several seeds, on one split and model.

Every run uses the same train / test split, model and hyper-parameters; only the strategy (and
its batching mode) and the seed change. The target is ``full``'s final test accuracy (mean over
seeds); each strategy reports the training wall-clock and steps at which it first reaches it,
with ``nws``'s one-time embedding pass counted in its wall-clock (and also shown apart).

Writes ``<results>/time_to_accuracy.md`` (the table, the settings and the machine),
``time_to_accuracy.png`` (curves of every run) and ``time_to_accuracy.json`` (raw numbers).
Each run keeps its own folder under ``--runs-dir``; ``--resume`` reuses runs already finished.

    python benchmarks/time_to_accuracy.py --quick                 # a few minutes: smoke test
    python benchmarks/time_to_accuracy.py --seeds 0,1,2           # the committed table
    python benchmarks/time_to_accuracy.py --strategies full,nws:shrink,uniform:shrink
    python benchmarks/time_to_accuracy.py --name ablation --set duplicates=1 \
        --variant full=full --variant "nws-k16=nws sketch_bits=16 score_power=2"

``--variant LABEL=STRATEGY[:BATCHING] [FIELD=VALUE ...]`` (repeatable) runs a strategy with its
own settings (any ``TrainConfig`` field); ``--set FIELD=VALUE`` (repeatable) changes the scenario
for every run (e.g. ``epochs=3``, ``lr_schedule=linear``, ``duplicates=1``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from _common import finished_run, seed_list
from nws_trainer.config import STRATEGIES, TrainConfig
from nws_trainer.plots import plot_curves
from nws_trainer.prepare import environment, prepare
from nws_trainer.report import mean_sd, run_facts, time_to_accuracy
from nws_trainer.train import Trainer

ROOT = Path(__file__).resolve().parent
_D = TrainConfig()  # the trainer's defaults are the benchmark's


def parse_strategies(text: str, need_full: bool = True) -> list[tuple[str, str]]:
    """'full,nws,uniform:shrink' -> [(strategy, batching), ...] (batching defaults to fill)."""
    out = []
    for item in text.split(","):
        name, _, batching = item.strip().partition(":")
        batching = batching or "fill"
        if name not in STRATEGIES:
            raise argparse.ArgumentTypeError(f"unknown strategy {name!r}; one of {STRATEGIES}")
        if batching not in ("fill", "shrink"):
            raise argparse.ArgumentTypeError(f"batching must be fill or shrink, got {batching!r}")
        out.append((name, batching))
    if need_full and not any(s == "full" for s, _ in out):
        raise argparse.ArgumentTypeError("the strategies must include full (it sets the target)")
    return out


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def parse_setting(text: str) -> tuple[str, Any]:
    """'sketch_bits=16' -> ('sketch_bits', 16), typed by the TrainConfig field's default."""
    key, sep, raw = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or key not in _FIELDS:
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE with a TrainConfig field: {text!r}")
    kind = str(_FIELDS[key].type)  # e.g. "int | None" (annotations are strings here)
    value: Any
    if raw.lower() in ("none", "null") and "None" in kind:
        value = None
    elif kind.startswith("bool"):
        value = raw.lower() in ("1", "true", "yes", "on")
    elif kind.startswith("int"):
        value = int(raw)
    elif kind.startswith("float"):
        value = float(raw)
    elif kind.startswith("Path"):
        value = Path(raw)
    else:
        value = raw
    return key, value


def parse_variant(text: str) -> tuple[str, str, str, dict[str, Any]]:
    """'nws-k16=nws:fill sketch_bits=16' -> (label, strategy, batching, overrides)."""
    name, sep, spec = text.partition("=")
    parts = spec.split()
    if not sep or not name.strip() or not parts:
        raise argparse.ArgumentTypeError(f"expected LABEL=STRATEGY[:BATCHING] [F=V ...]: {text!r}")
    [(strategy, batching)] = parse_strategies(parts[0], need_full=False)
    return name.strip(), strategy, batching, dict(parse_setting(p) for p in parts[1:])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--strategies",
        type=parse_strategies,
        default=parse_strategies("full,uniform,nws,selective-backprop"),
        help="comma-separated strategy[:fill|shrink] (default: full,uniform,nws,"
        "selective-backprop)",
    )
    p.add_argument(
        "--variant",
        type=parse_variant,
        action="append",
        default=[],
        help="LABEL=STRATEGY[:BATCHING] [FIELD=VALUE ...]; repeatable; replaces --strategies "
        "(one label must be 'full')",
    )
    p.add_argument(
        "--set",
        type=parse_setting,
        action="append",
        default=[],
        dest="settings",
        help="FIELD=VALUE applied to every run (the scenario); repeatable",
    )
    p.add_argument("--name", default="time_to_accuracy", help="stem of the result files")
    p.add_argument("--title", default="Time to accuracy", help="heading of the table")
    p.add_argument(
        "--smooth", type=int, default=3, help="evaluations averaged for the smoothed target time"
    )
    p.add_argument("--seeds", type=seed_list, default=[0, 1, 2], help="comma-separated run seeds")
    p.add_argument("--model", type=Path, help="local model folder (default: packaged MiniLM)")
    p.add_argument("--train-size", type=int, default=6000)
    p.add_argument("--test-size", type=int, default=3000)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--time-budget", type=float, help="stop every run after this many seconds")
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--batch-size", type=int, default=_D.batch_size)
    p.add_argument("--max-seq-len", type=int, default=_D.max_seq_len)
    p.add_argument("--lr", type=float, default=_D.lr)
    p.add_argument("--lr-schedule", choices=("constant", "linear"), default="constant")
    p.add_argument(
        "--ratio",
        type=float,
        default=0.4,
        help="keep ratio of every sampled strategy (the tables were measured at 0.4)",
    )
    p.add_argument("--p-min", type=float, default=_D.p_min)
    p.add_argument("--warmup-steps", type=int, default=_D.warmup_steps)
    p.add_argument("--probe-size", type=int, default=_D.probe_size)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--sketch-endpoint", help="HOST:PORT (default: an embedded server per run)")
    p.add_argument("--results", type=Path, default=ROOT / "results", help="table + png folder")
    p.add_argument("--runs-dir", type=Path, default=Path("runs/time_to_accuracy"))
    p.add_argument("--resume", action="store_true", help="reuse runs that already finished")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke-test size: 600 train / 300 test, seed 0, eval every 5, warm-up 5",
    )
    p.add_argument("--no-progress", action="store_true")
    return p


def base_config(args: argparse.Namespace) -> TrainConfig:
    return (
        TrainConfig(
            model=args.model,
            train_size=args.train_size,
            test_size=args.test_size,
            epochs=args.epochs,
            time_budget=args.time_budget,
            eval_every=args.eval_every,
            batch_size=args.batch_size,
            max_seq_len=args.max_seq_len,
            lr=args.lr,
            lr_schedule=args.lr_schedule,
            ratio=args.ratio,
            p_min=args.p_min,
            warmup_steps=args.warmup_steps,
            probe_size=args.probe_size,
            num_workers=args.num_workers,
            sketch_endpoint=args.sketch_endpoint,
            progress=not args.no_progress,
        )
        .replace(**dict(args.settings))
        .validate()
    )


def variants(args: argparse.Namespace) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(label, strategy, batching, overrides) of every run of a seed."""
    if args.variant:
        return list(args.variant)
    return [(label(s, b), s, b, {}) for s, b in args.strategies]


def label(strategy: str, batching: str) -> str:
    return strategy if strategy == "full" or batching == "fill" else f"{strategy} ({batching})"


def run_one(cfg: TrainConfig, resume: bool) -> tuple[dict[str, Any], list[dict[str, Any]], bool]:
    """(summary, metric rows, whether the run was reused from an earlier invocation)."""
    found = finished_run(cfg) if resume else None
    if found is not None:
        print(f"reusing {cfg.output}", flush=True)
        return found[0], found[1], True
    result = Trainer(prepare(cfg)).run()
    return result.summary, result.metrics, False


def targets(
    runs: dict[str, list[tuple[dict[str, Any], list[dict[str, Any]]]]], smooth: int
) -> tuple[float, float]:
    """(raw, smoothed) target: ``full``'s mean final accuracy, raw and smoothed over its last
    ``smooth`` evaluations (each curve is compared with the target of its own kind)."""
    full = runs["full"]
    raw = float(np.mean([s["final"]["test_accuracy"] for s, _ in full]))
    return raw, float(np.mean([smoothed_final(rows, smooth) for _, rows in full]))


def smoothed_final(rows: list[dict[str, Any]], smooth: int) -> float:
    """Mean test accuracy of a run's last ``smooth`` evaluations."""
    return float(np.mean([r["test_accuracy"] for r in rows[-smooth:]]))


def accuracy_at(rows: list[dict[str, Any]], seconds: float) -> float:
    """A run's test accuracy at ``seconds`` of its wall-clock, interpolated linearly between
    evaluations (its final accuracy after its end)."""
    t = [float(r["wall_seconds"]) for r in rows]
    return float(np.interp(seconds, t, [float(r["test_accuracy"]) for r in rows]))


def aggregate(
    runs: dict[str, list[tuple[dict[str, Any], list[dict[str, Any]]]]],
    target: float,
    smoothed_target: float,
    smooth: int = 3,
) -> dict[str, dict[str, list[Any]]]:
    """label -> fact name -> one value per seed (the i-th run of every label is seed i).

    ``full_at_same_time``: the same seed's ``full`` run's accuracy at this run's total
    wall-clock, the equal-time comparison (``full`` stopped there, its schedule unchanged)."""
    table: dict[str, dict[str, list[Any]]] = {}
    full_rows = [rows for _, rows in runs["full"]]
    for name, seed_runs in runs.items():
        per_seed = []
        for i, (s, rows) in enumerate(seed_runs):
            f = run_facts(s, rows, target)
            f["smoothed_time_to_target"] = time_to_accuracy(rows, smoothed_target, smooth=smooth)
            f["smoothed_final_accuracy"] = smoothed_final(rows, smooth)
            f["full_at_same_time"] = accuracy_at(full_rows[i], float(f["wall_seconds"]))
            f["gain_at_same_time"] = float(f["final_accuracy"]) - f["full_at_same_time"]
            per_seed.append(f)
        table[name] = {k: [f[k] for f in per_seed] for k in per_seed[0]}
    return table


def speedup(facts: dict[str, dict[str, list[Any]]], key: str) -> dict[str, float | None]:
    """full's mean total wall-clock (the time it takes to reach its own final accuracy) / a
    strategy's mean time to the target; None unless every seed of the strategy reached it.
    ``full`` is the reference (1x)."""
    full_time = float(np.mean(facts["full"]["wall_seconds"]))
    out: dict[str, float | None] = {}
    for name, f in facts.items():
        if name == "full":
            out[name] = 1.0
        elif None in f[key]:
            out[name] = None
        else:
            out[name] = full_time / max(float(np.mean(f[key])), 1e-9)
    return out


def _pct(values: list[Any]) -> str:
    return mean_sd([None if v is None else 100 * v for v in values], "{:.1f} %")


def markdown(
    facts: dict[str, dict[str, list[Any]]],
    target: tuple[float, float],
    args: argparse.Namespace,
    cfg: TrainConfig,
    env: dict[str, Any],
    seconds: float,
    reused: tuple[int, int] = (0, 0),
) -> str:
    n = len(args.seeds)
    raw, smooth = speedup(facts, "time_to_target"), speedup(facts, "smoothed_time_to_target")
    lines = [
        f"# {args.title}",
        "",
        f"Target: `full`'s final test accuracy, mean over {n} seed(s): **{target[0]:.4f}** "
        f"(smoothed: **{target[1]:.4f}**, the mean of each run's last {args.smooth} "
        "evaluations). Wall-clock is training time with evaluation excluded, plus (for the "
        "sketch strategies) the one-time embedding pass. 'reached' counts the seeds whose raw "
        "curve got to the raw target; the smoothed columns compare each run's moving mean of "
        f"{args.smooth} evaluations with the smoothed target. Speed-up = `full`'s mean total "
        "wall-clock (the time it takes to reach its own final accuracy) / the strategy's mean "
        "time to the target (raw / smoothed), shown when every seed reached it. "
        "'`full` then' is the same seed's `full` run's accuracy at the strategy's total "
        "wall-clock (interpolated between evaluations; `full`'s learning-rate schedule is not "
        "shortened), and 'gain then' the strategy's final accuracy minus it, in points: the "
        "equal-time comparison.",
        "",
        "| strategy | final accuracy | smoothed final | wall-clock to target (s) | reached "
        "| smoothed to target (s) | speed-up (raw / smoothed) | steps to target "
        "| total wall-clock (s) | `full` then | gain then (points) | of which embeddings (s) "
        "| examples fwd | examples bwd | s / step | sampling overhead |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, f in facts.items():
        reached = sum(v is not None for v in f["time_to_target"])
        ratios = " / ".join("n/a" if r is None else f"{r:.2f}x" for r in (raw[name], smooth[name]))
        lines.append(
            f"| {name} | {mean_sd(f['final_accuracy'], '{:.4f}')} "
            f"| {mean_sd(f['smoothed_final_accuracy'], '{:.4f}')} "
            f"| {mean_sd(f['time_to_target'], '{:.0f}')} | {reached}/{n} "
            f"| {mean_sd(f['smoothed_time_to_target'], '{:.0f}')} | {ratios} "
            f"| {mean_sd(f['steps_to_target'], '{:.0f}')} "
            f"| {mean_sd(f['wall_seconds'], '{:.0f}')} "
            f"| {mean_sd(f['full_at_same_time'], '{:.4f}')} "
            f"| {mean_sd([100 * g for g in f['gain_at_same_time']], '{:.1f}')} "
            f"| {mean_sd(f['embedding_seconds'], '{:.0f}')} "
            f"| {mean_sd(f['forwarded'], '{:.0f}')} | {mean_sd(f['backpropagated'], '{:.0f}')} "
            f"| {mean_sd(f['seconds_per_step'], '{:.2f}')} | {_pct(f['sampling_overhead'])} |"
        )
    lines += [
        "",
        "## Sampling diagnostics",
        "",
        "Means over evaluation windows, then over seeds. est. CV: spread of the estimates "
        "within a candidate chunk; ESS: effective sample size of a batch's weights as a share "
        "of its size; rho(est, loss): Spearman between the estimate taken at sampling time and "
        "the loss then observed on trained examples; rho(probe): Spearman between the sketch's "
        "estimates and the current model's true losses on a fixed probe set at the end.",
        "",
        "| strategy | acceptance | est. CV | ESS / batch | max weight | prior hits "
        "| rho(est, loss) | rho(probe) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, f in facts.items():
        if name == "full":
            continue
        lines.append(
            f"| {name} | {mean_sd(f['acceptance_rate'], '{:.2f}')} "
            f"| {mean_sd(f['estimate_cv'], '{:.3f}')} | {mean_sd(f['ess_fraction'], '{:.3f}')} "
            f"| {mean_sd(f['max_weight'], '{:.1f}')} | {_pct(f['prior_hit_rate'])} "
            f"| {mean_sd(f['spearman_trained'], '{:.2f}')} "
            f"| {mean_sd(f['probe_spearman'], '{:.2f}')} |"
        )
    settings = {
        k: v
        for k, v in cfg.to_dict().items()
        if k
        in (
            "train_size",
            "test_size",
            "epochs",
            "time_budget",
            "batch_size",
            "max_seq_len",
            "lr",
            "lr_schedule",
            "ratio",
            "p_min",
            "warmup_steps",
            "eval_every",
            "sketch_rows",
            "sketch_bits",
            "num_workers",
            "duplicates",
            "embedding_source",
        )
    }
    lines += [
        "",
        "## Settings and machine",
        "",
        f"- command: `{' '.join(shlex.quote(a) for a in sys.argv)}`",
        f"- date: {dt.datetime.now().astimezone().isoformat(timespec='seconds')}; "
        f"benchmark took {seconds / 60:.0f} min"
        + (
            f"; {reused[0]} of {reused[1]} runs reused from earlier invocations "
            "(`--resume`; each run's own date and timing are in its summary.json)"
            if reused[0]
            else ""
        ),
        f"- model: {cfg.model or 'packaged all-MiniLM-L6-v2'}; data: packaged Rotten Tomatoes "
        f"(split seed {cfg.split_seed}); seeds: {args.seeds}",
        "- settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()),
        *(
            f"- `{name}`: `{strategy}` ({batching})"
            + (": " + ", ".join(f"{k}={v}" for k, v in over.items()) if over else "")
            for name, strategy, batching, over in variants(args)
        ),
        f"- machine: {env['cpu']}, {env['cpu_count']} CPUs, torch {env['torch']} "
        f"({env['torch_threads']} threads), {env['platform']}"
        + (f", GPU {env['cuda']}" if env.get("cuda") else ""),
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.train_size, args.test_size, args.seeds = 600, 300, args.seeds[:1]
        args.eval_every, args.warmup_steps, args.probe_size = 5, 5, 128
    cfg = base_config(args)
    plan = variants(args)
    if "full" not in [name for name, *_ in plan]:
        raise SystemExit("time_to_accuracy: one variant must be labelled 'full' (the target)")
    started = time.perf_counter()
    runs: dict[str, list[tuple[dict[str, Any], list[dict[str, Any]]]]] = {}
    total = len(plan) * len(args.seeds)
    k = n_reused = 0
    for seed in args.seeds:
        for name, strategy, batching, over in plan:
            k += 1
            folder = args.runs_dir / f"{name.replace(' ', '_')}-{batching}-seed{seed}"
            print(f"\n=== [{k}/{total}] {name}, seed {seed} -> {folder}", flush=True)
            run_cfg = cfg.replace(
                strategy=strategy, batching=batching, seed=seed, output=folder, **over
            ).validate()
            summary, rows, was_reused = run_one(run_cfg, args.resume)
            runs.setdefault(name, []).append((summary, rows))
            n_reused += was_reused
    target, smoothed_target = targets(runs, args.smooth)
    facts = aggregate(runs, target, smoothed_target, args.smooth)
    seconds = time.perf_counter() - started
    env = environment()
    args.results.mkdir(parents=True, exist_ok=True)
    text = markdown(facts, (target, smoothed_target), args, cfg, env, seconds, (n_reused, total))
    (args.results / f"{args.name}.md").write_text(text)
    (args.results / f"{args.name}.json").write_text(
        json.dumps(
            {
                "target": target,
                "smoothed_target": smoothed_target,
                "facts": facts,
                "environment": env,
            },
            indent=2,
        )
        + "\n"
    )
    plot_curves(
        {name: [rows for _, rows in seed_runs] for name, seed_runs in runs.items()},
        args.results / f"{args.name}.png",
        title=f"{args.title} ({len(args.seeds)} seed(s); dashed: full's final accuracy)",
        target=target,
    )
    print("\n" + text)
    print(f"wrote {args.results / args.name}.md and {args.name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
