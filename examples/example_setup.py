"""What the example loops share: data, tokenizer, model and static embeddings (all offline).

The training texts are the packaged Rotten Tomatoes snippets; the model is a local Hugging Face
folder (default: the packaged all-MiniLM-L6-v2 with a new classification head); the embeddings
are the frozen encoder's mean-pooled outputs, one row per training example, in dataset order.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import DataCollatorWithPadding

from nws_trainer.data import load_rotten_tomatoes
from nws_trainer.models import Encoder, default_model_path, load_classifier, load_tokenizer


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", type=Path, default=None, help="local model folder (default MiniLM)")
    p.add_argument("--train-size", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", type=Path, default=None, help="where to save the final model")
    return p.parse_args(argv)


class TextClassification(torch.utils.data.Dataset):
    """Map-style dataset of tokenised examples: dicts with input_ids, attention_mask, labels."""

    def __init__(self, encodings: dict[str, list[Any]], labels: np.ndarray) -> None:
        self.encodings = encodings
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = {k: v[i] for k, v in self.encodings.items()}
        item["labels"] = int(self.labels[i])
        return item


def setup(args: argparse.Namespace) -> tuple[Any, TextClassification, Any, np.ndarray]:
    """(model, train_set, collate, embeddings [n, hidden]); seeds every generator."""
    random.seed(args.seed)
    np.random.seed(args.seed)  # noqa: NPY002 (user code may use the global generator)
    torch.manual_seed(args.seed)
    model_dir = args.model or default_model_path()
    data = load_rotten_tomatoes()
    rows = np.random.default_rng(args.seed).permutation(len(data))[: args.train_size]
    data = data.subset(rows)
    tokenizer = load_tokenizer(model_dir)
    encodings = tokenizer(data.texts, truncation=True, max_length=args.max_length)
    train_set = TextClassification(dict(encodings), data.labels)
    collate = DataCollatorWithPadding(tokenizer, return_tensors="pt")
    embeddings = Encoder(model_dir).encode(data.texts, max_length=args.max_length)
    model = load_classifier(model_dir, num_labels=len(data.label_names))
    model.train()
    return model, train_set, collate, embeddings
