"""nws-train's levers end to end (tiny random BERT): forgetting the warm-up, sharpened and
tempered sampling, cheap token embeddings, the O(N) anchors and a redundant stream."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from e2e_helpers import tiny_config

from nws_trainer.config import TrainConfig
from nws_trainer.train import run

pytestmark = pytest.mark.slow


def _config(tiny_bert_dir: Path, tmp_path: Path, **changes: Any) -> TrainConfig:
    base = {"eval_every": 4, "max_steps": 8, "sketch_backend": "inprocess"}
    return tiny_config(tiny_bert_dir, tmp_path, **{**base, **changes})


def test_nws_levers_forget_the_warmup_and_shape_the_weights(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    cfg = _config(
        tiny_bert_dir,
        tmp_path,
        strategy="nws",
        warmup_forget=0.25,
        score_power=2.0,
        temper=0.0,
        embedding_source="tokens",
    )
    result = run(cfg, log=lambda _: None)
    s = result.summary
    sketch = s["sketch"]
    warm = cfg.warmup_steps * cfg.batch_size  # 32: reached exactly after step 2 (fill batching)
    assert sketch["observations"] == s["examples_backpropagated"]
    assert sketch["total_weight"] == pytest.approx(0.25 * warm + sketch["observations"] - warm)
    # temper 0: pure prioritisation, every trained example weighs 1
    assert all(r["max_weight"] in (None, 1.0) for r in result.metrics)
    assert s["config"]["embedding_source"] == "tokens"
    assert (
        s["embedding"]["fingerprint"]
        != run(
            cfg.replace(embedding_source="encoder", max_steps=1, output=tmp_path / "enc"),
            log=lambda _: None,
        ).summary["embedding"]["fingerprint"]
    )


def test_loss_table_anchor_scores_from_the_table(tiny_bert_dir: Path, tmp_path: Path) -> None:
    cfg = _config(tiny_bert_dir, tmp_path, strategy="loss-table", epochs=2, max_steps=None)
    result = run(cfg, log=lambda _: None)
    s = result.summary
    assert s["sketch"] is None and s["sketch_endpoint"] is None  # no sketch anywhere
    assert 0.2 < s["acceptance_rate"] < 1.0  # warm-up kept all, then about the ratio
    last = result.metrics[-1]
    assert last["sketch_observations"] == s["examples_backpropagated"]
    assert last["probe_spearman"] is not None and last["probe_prior_hit_rate"] < 1.0


def test_infobatch_trains_everything_first_then_prunes_learned_examples(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    cfg = _config(
        tiny_bert_dir, tmp_path, strategy="infobatch", epochs=3, max_steps=None, eval_every=100
    )
    result = run(cfg, log=lambda _: None)
    rows = result.trained_rows
    assert sorted(rows[0]) == list(range(160))  # epoch 0: no losses known, all kept
    assert 80 <= len(rows[1]) < 160 and len(set(rows[1])) == len(rows[1])
    assert result.summary["candidates_seen"] == 3 * 160


def test_redundant_stream_grows_the_training_split(tiny_bert_dir: Path, tmp_path: Path) -> None:
    cfg = _config(tiny_bert_dir, tmp_path, strategy="uniform", duplicates=1.0, max_steps=2)
    result = run(cfg, log=lambda _: None)
    assert result.summary["train_examples"] == 320
    assert np.isfinite(result.metrics[-1]["test_loss"])
