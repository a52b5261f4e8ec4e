"""nws-train with the server's prune policy and with annealing (tiny random BERT)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from e2e_helpers import tiny_config

from nws_trainer.budget import planned_steps
from nws_trainer.cli import build_parser, config_from_args
from nws_trainer.config import ConfigError, TrainConfig
from nws_trainer.loader import epoch_permutation
from nws_trainer.train import run

pytestmark = pytest.mark.slow


def _config(tiny_bert_dir: Path, tmp_path: Path, **changes: Any) -> TrainConfig:
    base = {"strategy": "nws", "sketch_backend": "inprocess", "max_steps": None}
    return tiny_config(tiny_bert_dir, tmp_path, **{**base, **changes})


def test_a_prune_run_through_the_server_trains_and_reports_its_acceptance(
    tiny_bert_dir: Path, tmp_path: Path, sketch_endpoint: str
) -> None:
    args = ["--strategy", "nws", "--sampling", "prune", "--prune-rate", "0.5", "--epochs", "2"]
    cfg = config_from_args(build_parser().parse_args(args))
    assert (cfg.sampling, cfg.prune_rate) == ("prune", 0.5)
    cfg = _config(
        tiny_bert_dir,
        tmp_path,
        sampling="prune",
        epochs=2,
        eval_every=100,
        sketch_backend="grpc",
        sketch_endpoint=sketch_endpoint,
    )
    assert planned_steps(cfg, 160) == 20  # an upper bound, like infobatch's
    result = run(cfg, log=lambda _: None)
    s = result.summary
    assert s["candidates_seen"] == 2 * 160 and s["stopped_by"] == "epochs"
    # warm-up kept 32; after it only below-mean rows are pruned, each with probability 1/2
    assert 0.5 < s["acceptance_rate"] < 1.0
    assert s["examples_backpropagated"] == round(s["acceptance_rate"] * 320)
    assert s["sketch"]["accepted"] == s["examples_backpropagated"]
    assert s["config"]["sampling"] == "prune"
    weights = {r["max_weight"] for r in result.metrics if r["max_weight"] is not None}
    assert max(weights) == pytest.approx(2.0)  # a kept below-mean row: 1 / (1 - 0.5)
    assert np.isfinite(result.metrics[-1]["test_loss"])


def test_the_annealed_last_share_of_an_epoch_run_keeps_every_candidate(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    cfg = _config(tiny_bert_dir, tmp_path, epochs=2, anneal=0.25, ratio=0.4, eval_every=2)
    result = run(cfg, log=lambda _: None)
    rows = result.trained_rows
    # chunks 15..19 of the 20 (epoch 1, chunks 5..9) are the last quarter: all of them trained
    last_quarter = epoch_permutation(160, cfg.seed, 1)[5 * 16 :]
    assert set(last_quarter.tolist()) <= set(rows[1])
    assert len(rows[0]) < 160 and len(rows[1]) < 160  # the rest was sampled
    last = result.metrics[-1]
    assert last["acceptance_rate"] == 1.0 and last["max_weight"] == 1.0
    assert result.summary["candidates_seen"] == 320


def test_annealing_under_a_step_budget_follows_the_trainers_steps(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    cfg = _config(tiny_bert_dir, tmp_path, budget_steps=8, anneal=0.5, ratio=0.4, eval_every=2)
    result = run(cfg, log=lambda _: None)
    assert result.summary["steps"] == 8
    by_step = {r["step"]: r for r in result.metrics}
    # from step 4 on (half the budget) every candidate is kept; step 5 may still finish the
    # batch of rows selected before, so the windows after step 6 are all annealed
    assert by_step[8]["acceptance_rate"] == 1.0 and by_step[8]["max_weight"] == 1.0
    assert by_step[4]["acceptance_rate"] < 1.0  # sampling before it


def test_prune_and_anneal_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="prune_rate"):
        TrainConfig(sampling="prune", prune_rate=1.0).validate()
    with pytest.raises(ConfigError, match="nws strategy"):
        TrainConfig(strategy="uniform", sampling="prune").validate()
    with pytest.raises(ConfigError, match="anneal"):
        TrainConfig(anneal=1.0).validate()
    with pytest.raises(ConfigError, match="nws strategy"):
        TrainConfig(strategy="full", anneal=0.1).validate()
