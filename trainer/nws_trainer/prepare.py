"""Everything a run needs before its first step, checked up front.

:func:`prepare` loads and validates the data, the model folder, the tokenizer and the output
folder, so that missing columns, unknown labels, empty files, a folder that is not a model or an
unwritable output fail with one clear :class:`~nws_trainer.config.ConfigError` before any training
(or embedding) time is spent.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nws_trainer.config import ConfigError, TrainConfig
from nws_trainer.data import (
    TextDataset,
    load_rotten_tomatoes,
    load_table,
    train_test_split,
    with_duplicates,
)
from nws_trainer.embeddings import cached_embeddings
from nws_trainer.loader import Tokens
from nws_trainer.models import (
    default_model_path,
    load_classifier,
    load_tokenizer,
    validate_model_dir,
)
from nws_trainer.selection import EmbeddingTable


@dataclass
class Prepared:
    """Validated inputs of one run."""

    config: TrainConfig
    model_dir: Path
    train: TextDataset
    test: TextDataset
    tokenizer: Any
    train_tokens: Tokens
    test_tokens: Tokens
    probe: np.ndarray
    """Training rows of the fixed probe set (same for every strategy and seed)."""

    @property
    def label_names(self) -> list[str]:
        return self.train.label_names


def _load_data(cfg: TrainConfig) -> tuple[TextDataset, TextDataset]:
    if cfg.data is None:
        if cfg.text_pair_column is not None:
            raise ConfigError("--text-pair-column needs --data (the default corpus has no pairs)")
        ds = load_rotten_tomatoes()
    else:
        ds = load_table(
            cfg.data, cfg.text_column, cfg.label_column, cfg.text_pair_column, cfg.label_names
        )
    if len(ds.label_names) < 2:
        raise ConfigError(
            f"need at least 2 classes to train a classifier, found {ds.label_names} "
            f"in column {cfg.label_column!r}"
        )
    if cfg.test_data is not None:
        test = load_table(
            cfg.test_data, cfg.text_column, cfg.label_column, cfg.text_pair_column, ds.label_names
        )
        train = ds
    else:
        size: int | float = auto_test_size(len(ds)) if cfg.test_size is None else cfg.test_size
        size = size if size < 1 else int(size)
        train, test = train_test_split(ds, size, cfg.split_seed)
    if cfg.train_size is not None:
        if cfg.train_size > len(train):
            raise ConfigError(
                f"train_size {cfg.train_size} exceeds the {len(train)} training rows available"
            )
        train = train.subset(np.arange(cfg.train_size))
    if cfg.duplicates > 0:
        train = with_duplicates(train, cfg.duplicates, cfg.split_seed)
    return train, test


AUTO_TEST_SHARE = 0.2
AUTO_TEST_MAX = 2000


def auto_test_size(n: int) -> int:
    """The default test split of an n-row file: 20 % of it, at most 2,000 rows, at least 1."""
    return max(1, min(AUTO_TEST_MAX, round(AUTO_TEST_SHARE * n)))


def _check_output(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise ConfigError(f"output folder {path} is not writable: {exc}") from exc


def prepare(cfg: TrainConfig) -> Prepared:
    """Validate ``cfg`` and load data, tokenizer and tokens; raise ConfigError on bad input."""
    cfg.validate()
    try:
        model_dir = validate_model_dir(cfg.model) if cfg.model is not None else None
        model_dir = model_dir or default_model_path()
        train, test = _load_data(cfg)
        # Loading the model once here proves the folder is a usable classifier before any cost.
        load_classifier(model_dir, len(train.label_names))
        tokenizer = load_tokenizer(model_dir)
    except ConfigError:
        raise
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(str(exc)) from exc
    _check_output(cfg.output)
    rng = np.random.default_rng([cfg.split_seed, 0x9B0BE])
    probe = np.sort(rng.permutation(len(train))[: min(cfg.probe_size, len(train))])
    return Prepared(
        config=cfg,
        model_dir=model_dir,
        train=train,
        test=test,
        tokenizer=tokenizer,
        train_tokens=Tokens.from_texts(tokenizer, train.texts, train.text_pairs, cfg.max_seq_len),
        test_tokens=Tokens.from_texts(tokenizer, test.texts, test.text_pairs, cfg.max_seq_len),
        probe=probe.astype(np.int64),
    )


@dataclass(frozen=True)
class StaticEmbeddings:
    """The frozen encoder's pooled embeddings of the training rows, and what they cost."""

    table: EmbeddingTable
    seconds: float
    """Time spent now (0 on a cache hit)."""
    compute_seconds: float
    """What computing them cost when they were made (counted in time-to-accuracy)."""
    cache_hit: bool
    fingerprint: str
    path: Path


POOLING = {"encoder": "mean", "tokens": "token-mean"}
"""--embedding-source -> the Encoder's pooling."""


def static_embeddings(prep: Prepared) -> StaticEmbeddings:
    """Compute (or reuse from the cache) the static embeddings of the training rows."""
    cfg = prep.config
    arr, info = cached_embeddings(
        prep.train,
        prep.model_dir,
        cfg.cache_dir,
        max_length=cfg.max_seq_len,
        progress=cfg.progress,
        pooling=POOLING[cfg.embedding_source],
    )
    compute = info.seconds
    if info.cache_hit:
        meta = info.path.with_suffix(".json")
        try:
            compute = float(json.loads(meta.read_text()).get("seconds", 0.0))
        except (OSError, ValueError):
            compute = 0.0
    del arr  # workers read the cached file (memory-mapped), not a pickled copy
    return StaticEmbeddings(
        table=EmbeddingTable(path=info.path),
        seconds=info.seconds,
        compute_seconds=compute,
        cache_hit=info.cache_hit,
        fingerprint=info.fingerprint,
        path=info.path,
    )


def environment() -> dict[str, Any]:
    """The machine a run happened on (for summaries and benchmark tables)."""
    import platform

    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "transformers": transformers.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
