"""``nws-train``: fine-tune a text classifier with a sampling strategy.

Examples::

    nws-train --strategy full --output runs/full
    nws-train --strategy nws --ratio 0.4 --num-workers 2 --output runs/nws
    nws-train --data pairs.tsv --text-column s1 --text-pair-column s2 --label-column y \\
        --strategy nws --sketch-endpoint localhost:50051

Bad inputs (missing columns, unknown labels, empty files, a folder that is not a model, bad
settings) stop the command with one ``nws-train: error: ...`` line and exit status 2, before any
training starts.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from nws_trainer.config import STRATEGIES, ConfigError, TrainConfig


@cache
def field_docs() -> dict[str, str]:
    """The one-line docstring under every :class:`TrainConfig` field (the help texts)."""
    tree = ast.parse(inspect.getsource(TrainConfig))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = nxt.value.value.strip()
    return docs


def _h(name: str) -> str:
    default = getattr(TrainConfig(), name)
    # argparse %-formats help texts: a literal "%" in a docstring ("20 % of ...") must be doubled
    doc = field_docs().get(name, "")
    text = f"{doc} (default: {default})" if default is not None else doc
    return text.replace("%", "%%")


def _ratio(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number or auto: {text!r}") from exc


def _test_size(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    return int(value) if value >= 1 else value


def _names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated label values")
    return names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nws-train",
        description="Fine-tune a text classifier with NWS adaptive sampling (or a baseline).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Outputs in --output: metrics.jsonl (one row per evaluation), summary.json, "
        "curves.png. See docs/trainer.md.",
    )
    g = p.add_argument_group("strategy")
    g.add_argument("--strategy", choices=STRATEGIES, help=_h("strategy"))
    g.add_argument("--batching", choices=("fill", "shrink"), help=_h("batching"))
    g.add_argument("--ratio", type=_ratio, help=_h("ratio"))
    g.add_argument("--ratio-min", type=float, help=_h("ratio_min"))
    g.add_argument("--auto-threshold", type=float, help=_h("auto_threshold"))
    g.add_argument("--p-min", type=float, help=_h("p_min"))
    g.add_argument("--warmup-steps", type=int, help=_h("warmup_steps"))
    g.add_argument("--warmup-forget", type=float, help=_h("warmup_forget"))
    g.add_argument("--score-power", type=float, help=_h("score_power"))
    g.add_argument("--score-rank", action="store_true", help=_h("score_rank"))
    g.add_argument("--score-baseline", type=float, help=_h("score_baseline"))
    g.add_argument("--temper", type=float, help=_h("temper"))
    g.add_argument("--sampling", choices=("importance", "prune"), help=_h("sampling"))
    g.add_argument("--feedback", choices=("loss", "grad-norm"), help=_h("feedback"))
    g.add_argument("--prune-rate", type=float, help=_h("prune_rate"))
    g.add_argument("--anneal", type=float, help=_h("anneal"))
    g.add_argument("--infobatch-prune", type=float, help=_h("infobatch_prune"))
    g.add_argument("--infobatch-anneal", type=float, help=_h("infobatch_anneal"))
    g.add_argument(
        "--embedding-source",
        choices=("encoder", "tokens"),
        help=_h("embedding_source"),
    )

    g = p.add_argument_group("model and data")
    g.add_argument("--model", type=Path, help=_h("model"))
    g.add_argument("--data", type=Path, help=_h("data"))
    g.add_argument("--text-column", help=_h("text_column"))
    g.add_argument("--text-pair-column", help=_h("text_pair_column"))
    g.add_argument("--label-column", help=_h("label_column"))
    g.add_argument(
        "--label-names", type=_names, help=_h("label_names") + " Comma-separated, e.g. neg,pos."
    )
    g.add_argument("--test-data", type=Path, help=_h("test_data"))
    g.add_argument("--test-size", type=_test_size, help=_h("test_size"))
    g.add_argument("--train-size", type=int, help=_h("train_size"))
    g.add_argument("--split-seed", type=int, help=_h("split_seed"))
    g.add_argument("--duplicates", type=float, help=_h("duplicates"))

    g = p.add_argument_group("training")
    g.add_argument("--batch-size", type=int, help=_h("batch_size"))
    g.add_argument("--max-seq-len", type=int, help=_h("max_seq_len"))
    g.add_argument("--lr", type=float, help=_h("lr"))
    g.add_argument("--weight-decay", type=float, help=_h("weight_decay"))
    g.add_argument("--lr-schedule", choices=("constant", "linear"), help=_h("lr_schedule"))
    g.add_argument("--max-grad-norm", type=float, help=_h("max_grad_norm"))
    g.add_argument("--epochs", type=int, help=_h("epochs"))
    g.add_argument("--max-steps", type=int, help=_h("max_steps"))
    g.add_argument("--budget-steps", type=int, help=_h("budget_steps"))
    g.add_argument("--budget-share", type=float, help=_h("budget_share"))
    g.add_argument("--time-budget", type=float, help=_h("time_budget"))
    g.add_argument("--eval-every", type=int, help=_h("eval_every"))
    g.add_argument("--eval-batch-size", type=int, help=_h("eval_batch_size"))
    g.add_argument("--probe-size", type=int, help=_h("probe_size"))
    g.add_argument("--seed", type=int, help=_h("seed"))
    g.add_argument("--device", help=_h("device"))

    g = p.add_argument_group("sketch")
    g.add_argument("--sketch-endpoint", metavar="HOST:PORT", help=_h("sketch_endpoint"))
    g.add_argument("--sketch-name", help=_h("sketch_name"))
    g.add_argument("--sketch-rows", type=int, help=_h("sketch_rows"))
    g.add_argument("--sketch-bits", type=int, help=_h("sketch_bits"))
    g.add_argument("--sketch-decay", type=float, help=_h("sketch_decay"))
    g.add_argument("--sketch-backend", choices=("grpc", "inprocess"), help=_h("sketch_backend"))
    g.add_argument(
        "--sketch-on-unavailable",
        choices=("raise", "accept_all", "uniform"),
        help=_h("sketch_on_unavailable"),
    )
    g.add_argument("--num-workers", type=int, help=_h("num_workers"))
    g.add_argument("--cache-dir", type=Path, help=_h("cache_dir"))

    g = p.add_argument_group("output")
    g.add_argument("--output", type=Path, help=_h("output"))
    g.add_argument("--no-progress", action="store_true", help="Do not show progress bars.")
    # One source of defaults: TrainConfig's (the help texts above quote them too).
    defaults = TrainConfig()
    p.set_defaults(**{f.name: getattr(defaults, f.name) for f in dataclasses.fields(TrainConfig)})
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values: dict[str, Any] = {k: v for k, v in vars(args).items() if k != "no_progress"}
    values["progress"] = not args.no_progress
    return TrainConfig(**values).validate()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
        from nws_trainer.prepare import prepare
        from nws_trainer.train import Trainer

        prep = prepare(cfg)
        trainer = Trainer(prep)
    except ConfigError as exc:
        parser.exit(2, f"nws-train: error: {exc}\n")
    try:
        trainer.run()
    except KeyboardInterrupt:
        print("nws-train: interrupted", file=sys.stderr)
        return 130
    except ConfigError as exc:
        parser.exit(2, f"nws-train: error: {exc}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
