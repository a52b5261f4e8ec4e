"""Loader side: pre-tokenised examples, and an iterable dataset whose workers select and batch.

:class:`CandidateStream` walks a seeded permutation of the training rows, epoch after epoch, in
candidate chunks of ``batch_size``. With ``num_workers`` loader processes, worker k takes chunks
k, k + W, k + 2W, ... of every epoch's permutation, so no example appears twice within an epoch.
Each worker runs its own selector (for ``nws`` that is a sketch client it opens lazily, inside
the worker) and its own batcher, and yields collated :class:`~nws_trainer.selection.TrainBatch`
objects ready for the model.

Workers start with the ``spawn`` multiprocessing context: the trainer holds a live gRPC channel,
and gRPC is not fork-safe once a channel has been used (grpc/grpc issue 32992).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from nws_trainer.anneal import Anneal
from nws_trainer.batching import make_batcher
from nws_trainer.selection import Batching, KeepAll, Selector, TrainBatch, chunk_seed

_INT_DTYPES = {"input_ids": np.int32, "attention_mask": np.int8, "token_type_ids": np.int8}


@dataclass
class Tokens:
    """Every example tokenised once, padded to ``max_length``; batches are trimmed on output."""

    arrays: dict[str, np.ndarray]
    """Model input name -> [n, max_length] integer array."""
    padding_side: str = "right"

    @classmethod
    def from_texts(
        cls,
        tokenizer: Any,
        texts: Sequence[str],
        text_pairs: Sequence[str] | None,
        max_length: int,
    ) -> Tokens:
        enc = tokenizer(
            list(texts),
            None if text_pairs is None else list(text_pairs),
            padding="max_length",
            truncation=True,
            max_length=max_length,
            return_tensors="np",
        )
        arrays = {
            name: np.asarray(value).astype(_INT_DTYPES.get(name, np.int32))
            for name, value in enc.items()
        }
        return cls(arrays, str(getattr(tokenizer, "padding_side", "right")))

    def __len__(self) -> int:
        return int(self.arrays["input_ids"].shape[0])

    def lengths(self) -> np.ndarray:
        """Tokens per example (the full width where there is no attention mask)."""
        mask = self.arrays.get("attention_mask")
        if mask is None:
            return np.full(len(self), self.arrays["input_ids"].shape[1], dtype=np.int64)
        return mask.sum(axis=1).astype(np.int64)

    def batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        """Model inputs for ``indices``, trimmed to the longest example among them."""
        rows = {name: a[indices] for name, a in self.arrays.items()}
        mask = rows.get("attention_mask")
        if mask is not None and mask.size:
            width = int(mask.sum(axis=1).max())
            cols = slice(None, width) if self.padding_side == "right" else slice(-width, None)
            rows = {name: a[:, cols] for name, a in rows.items()}
        return {name: torch.from_numpy(a.astype(np.int64)) for name, a in rows.items()}


def collate(batch: TrainBatch, tokens: Tokens, labels: np.ndarray) -> TrainBatch:
    """Attach model inputs and label tensor to ``batch`` (in place) and return it."""
    batch.inputs = tokens.batch(batch.indices)
    batch.labels = torch.from_numpy(labels[batch.indices].astype(np.int64))
    return batch


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order in which an epoch visits the training rows (reproducible for a seed)."""
    return np.random.default_rng([seed, epoch, 0x5EED]).permutation(n)


class CandidateStream(IterableDataset):
    """Yields collated training batches for ``epochs`` epochs (see the module docstring)."""

    def __init__(
        self,
        tokens: Tokens,
        labels: np.ndarray,
        selector: Selector,
        batching: Batching,
        batch_size: int,
        epochs: int,
        seed: int,
        anneal: Anneal | None = None,
    ) -> None:
        super().__init__()
        self.anneal = anneal  # the run's last share keeps every candidate (nws_trainer.anneal)
        self.tokens = tokens
        self.labels = np.asarray(labels, dtype=np.int64)
        self.selector = selector
        self.batching = batching
        self.batch_size = batch_size
        self.epochs = epochs
        self.seed = seed

    def chunks(self, epoch: int, worker: int, workers: int) -> Iterator[tuple[int, np.ndarray]]:
        """(chunk number, rows) of the candidate chunks that ``worker`` of ``workers`` owns."""
        perm = epoch_permutation(len(self.tokens), self.seed, epoch)
        n_chunks = -(-perm.size // self.batch_size)
        for c in range(worker, n_chunks, workers):
            yield c, perm[c * self.batch_size : (c + 1) * self.batch_size]

    def __iter__(self) -> Iterator[TrainBatch]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        n_chunks = -(-len(self.tokens) // self.batch_size)
        for epoch in range(self.epochs):
            batcher = make_batcher(self.batching, self.batch_size)
            for c, rows in self.chunks(epoch, worker, workers):
                if self.anneal is not None and self.anneal.active(epoch, c, n_chunks, self.epochs):
                    selected = KeepAll()(rows, 0, epoch)
                else:
                    selected = self.selector(rows, chunk_seed(self.seed, epoch, c), epoch)
                for batch in batcher.add(selected):
                    batch.epoch = epoch
                    yield collate(batch, self.tokens, self.labels)
            for batch in batcher.finish():
                batch.epoch = epoch
                yield collate(batch, self.tokens, self.labels)


def _passthrough(batch: Any) -> Any:
    return batch


def _worker_init(worker_id: int) -> None:
    # Loader workers only index arrays and talk to the sketch server; leave the cores to the
    # trainer's forward and backward passes.
    torch.set_num_threads(1)


def make_loader(stream: CandidateStream, num_workers: int) -> DataLoader:
    """A DataLoader over ``stream``: in this process, or in ``spawn``-started worker processes."""
    if num_workers <= 0:
        return DataLoader(stream, batch_size=None, collate_fn=_passthrough)
    return DataLoader(
        stream,
        batch_size=None,
        collate_fn=_passthrough,
        num_workers=num_workers,
        multiprocessing_context="spawn",
        worker_init_fn=_worker_init,
        prefetch_factor=2,
    )
