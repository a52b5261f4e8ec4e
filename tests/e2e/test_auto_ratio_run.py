"""nws-train with ``--ratio auto`` through a real sketch server (tiny random BERT)."""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e_helpers import tiny_config

from nws_trainer.budget import planned_steps
from nws_trainer.train import run

pytestmark = pytest.mark.slow


def test_an_auto_run_keeps_every_candidate_whose_estimate_is_positive(
    tiny_bert_dir: Path, tmp_path: Path, sketch_endpoint: str
) -> None:
    cfg = tiny_config(
        tiny_bert_dir,
        tmp_path,
        strategy="nws",
        ratio="auto",
        max_steps=None,
        eval_every=100,
        sketch_endpoint=sketch_endpoint,
    ).validate()
    assert planned_steps(cfg, 160) == 10  # every candidate: an upper bound
    result = run(cfg, log=lambda _: None)
    s = result.summary
    # cross-entropy losses are > 0, so every estimate is: auto drops nothing (docs/sampling.md)
    assert s["candidates_seen"] == 160 and s["examples_backpropagated"] == 160
    assert s["steps"] == 10 and s["config"]["ratio"] == "auto"
    assert s["sketch"]["keep_ratio"] == 1.0
    assert s["sketch"]["sampled"] == s["sketch"]["accepted"] == 160
    # the metric rows say which ratio the server chose (None only for windows in warm-up)
    chosen = [r["keep_ratio"] for r in result.metrics if r["step"] > 0]
    assert chosen and all(c in (None, 1.0) for c in chosen) and 1.0 in chosen


def test_the_default_nws_run_is_auto_and_a_fixed_ratio_is_logged(
    tiny_bert_dir: Path, tmp_path: Path, sketch_endpoint: str
) -> None:
    """No --ratio: nws runs under auto (the default); a fixed ratio shows as itself."""
    base = tiny_config(
        tiny_bert_dir, tmp_path, strategy="nws", eval_every=100, sketch_endpoint=sketch_endpoint
    )
    assert base.ratio is None and base.validate().auto
    s = run(base.validate(), log=lambda _: None).summary
    assert s["config"]["ratio"] == "auto" and s["sketch"]["keep_ratio"] == 1.0
    fixed = run(base.replace(ratio=0.5, output=tmp_path / "fixed").validate(), log=lambda _: None)
    logged = [r["keep_ratio"] for r in fixed.metrics if r["keep_ratio"] is not None]
    assert fixed.summary["config"]["ratio"] == 0.5 and logged and set(logged) == {0.5}
