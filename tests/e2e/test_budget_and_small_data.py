"""Step budgets (a sampled run trains exactly as many steps as full) and small user files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from e2e_helpers import tiny_config

from nws_trainer.budget import planned_steps
from nws_trainer.cli import main
from nws_trainer.config import ConfigError
from nws_trainer.prepare import auto_test_size, prepare
from nws_trainer.train import Trainer

pytestmark = pytest.mark.slow


def _rows(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("strategy", ["uniform", "nws", "infobatch"])
def test_a_step_budget_trains_exactly_that_many_steps(
    tiny_bert_dir: Path, tmp_path: Path, strategy: str
) -> None:
    # 160 rows / 16 = 10 steps of full per epoch; budget_share 1.0 at 2 epochs = 20 steps, which a
    # sampled run keeping ~40 % of its candidates reaches only by scanning about 5 passes.
    cfg = tiny_config(
        tiny_bert_dir,
        tmp_path,
        strategy=strategy,
        sketch_backend="inprocess",
        epochs=2,
        max_steps=None,
        budget_share=1.0,
        lr_schedule="linear",
        eval_every=5,
        ratio=0.4 if strategy == "nws" else None,  # nws's default, auto, would keep every row
    )
    assert planned_steps(cfg, 160) == 20
    result = Trainer(prepare(cfg), log=lambda _m: None).run()
    s = result.summary
    assert s["steps"] == 20 and s["stopped_by"] == "budget_steps"
    # Every step is a full batch but the last of each pass (fill batching flushes per pass).
    passes = s["epochs_started"]
    assert (20 - passes) * 16 < s["examples_backpropagated"] <= 20 * 16
    if strategy != "infobatch":  # infobatch keeps most rows: it may need only its 2 passes
        assert s["candidates_seen"] > 2 * 160  # it scanned past the epochs it was given
    rows = _rows(cfg.output)
    for row in rows[1:]:  # the schedule is planned over the budget's steps
        assert row["lr"] == pytest.approx(cfg.lr * (1 - row["step"] / 20), abs=1e-12)
    assert rows[-1]["lr"] == 0.0


def test_budget_settings_are_checked(tiny_bert_dir: Path, tmp_path: Path) -> None:
    base = tiny_config(tiny_bert_dir, tmp_path, strategy="uniform")
    for bad in (
        {"budget_steps": 0},
        {"budget_share": -1.0},
        {"budget_steps": 5, "budget_share": 1.0},
        {"budget_steps": 5, "batching": "shrink"},
    ):
        with pytest.raises(ConfigError):
            base.replace(**bad).validate()


def test_small_files_work_with_the_default_test_split(
    tiny_bert_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A user's 240-row file used to fail with "test_size gives 2000 test rows out of 240".
    rows = "\n".join(f"review {i} {'great' if i % 3 else 'awful'} film,{i % 3}" for i in range(240))
    data = tmp_path / "small.csv"
    data.write_text("text,label\n" + rows + "\n", encoding="utf-8")
    out = tmp_path / "run"
    argv = ["--model", str(tiny_bert_dir), "--data", str(data), "--strategy", "full"]
    argv += ["--max-steps", "2", "--batch-size", "16", "--output", str(out), "--no-progress"]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_examples"] == auto_test_size(240) == 48
    assert summary["train_examples"] == 240 - 48
    assert "test split: auto" in capsys.readouterr().out
    assert auto_test_size(12_808) == 2000 and auto_test_size(3) == 1
