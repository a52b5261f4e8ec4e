"""Helpers shared by the end-to-end tests (imported as a plain module)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nws_trainer.config import TrainConfig


def tiny_config(tiny_bert_dir: Path, tmp_path: Path, **changes: Any) -> TrainConfig:
    """A few steps of the tiny random BERT on a small slice of the packaged corpus."""
    base = TrainConfig(
        model=tiny_bert_dir,
        train_size=160,
        test_size=48,
        batch_size=16,
        max_seq_len=32,
        warmup_steps=2,
        eval_every=3,
        max_steps=6,
        probe_size=32,
        lr=1e-3,
        output=tmp_path / "out",
        cache_dir=tmp_path / "cache",
        progress=False,
    )
    return base.replace(**changes)
