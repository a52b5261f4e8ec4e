"""The linear learning-rate schedule ends exactly when a run's data ends, in every mode.

In ``fill`` mode the number of optimizer steps depends on how many candidates are kept (warm-up,
an acceptance rate above or below ``ratio``, infobatch's data-dependent pruning), so a schedule
planned in steps would reach 0 early (the rest of the run trains at rate 0) or never reach it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from e2e_helpers import tiny_config

from nws_trainer.prepare import prepare
from nws_trainer.train import Trainer

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("strategy", "batching"),
    [("full", "fill"), ("nws", "fill"), ("infobatch", "fill"), ("uniform", "shrink")],
)
def test_linear_rate_decays_with_the_data_and_ends_at_zero(
    tiny_bert_dir: Path, tmp_path: Path, strategy: str, batching: str
) -> None:
    cfg = tiny_config(
        tiny_bert_dir,
        tmp_path,
        strategy=strategy,
        batching=batching,
        sketch_backend="inprocess",
        epochs=3,
        max_steps=None,
        eval_every=2,
        lr_schedule="linear",
    )
    Trainer(prepare(cfg)).run()
    rows = [json.loads(x) for x in (cfg.output / "metrics.jsonl").read_text().splitlines()]
    n = 160 * 3
    for row in rows[1:-1]:
        # every evaluation before the end trains at a positive rate that follows the data
        assert row["lr"] > 0, (strategy, row["step"], row["lr"])
        if strategy == "full" or batching == "shrink":
            expected = 1 - row["step"] / (10 * 3)  # 10 chunks of 16 per epoch
        else:
            expected = 1 - row["candidates_seen"] / n
        assert row["lr"] == pytest.approx(cfg.lr * expected, rel=1e-6, abs=1e-12)
    assert rows[-1]["candidates_seen"] == n
    assert rows[-1]["lr"] == pytest.approx(0.0, abs=1e-12)
