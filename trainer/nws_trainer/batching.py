"""Batching the kept examples: a *batcher* turns the stream of selected chunks
(:class:`~nws_trainer.selection.SelectedChunk`) into training batches
(:class:`~nws_trainer.selection.TrainBatch`), in one of two modes:

- ``fill``: kept examples accumulate until a full batch, so every optimizer step trains
  ``batch_size`` informative examples; the loss is self-normalised (see :mod:`nws_trainer.loss`).
- ``shrink`` (the paper's): every candidate chunk becomes one batch made of its kept part, so steps
  get cheaper; the loss is divided by the chunk's candidate count.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np

from nws_trainer.diagnostics import ChunkStats
from nws_trainer.selection import Batching, SelectedChunk, TrainBatch


class Batcher(Protocol):
    def add(self, chunk: SelectedChunk) -> Iterator[TrainBatch]: ...

    def finish(self) -> Iterator[TrainBatch]: ...


def _rows(chunk: SelectedChunk) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    keep = chunk.accepted
    est = (
        chunk.estimates[keep]
        if chunk.estimates is not None
        else np.full(int(keep.sum()), np.nan, dtype=np.float64)
    )
    warm = np.full(int(keep.sum()), chunk.warmup, dtype=bool)
    return chunk.indices[keep], chunk.weights[keep], est, warm


class FillBatcher:
    """Accumulate kept examples into full batches of ``batch_size`` (self-normalised loss)."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._pending = 0
        self._stats = ChunkStats()

    def add(self, chunk: SelectedChunk) -> Iterator[TrainBatch]:
        self._stats.add(chunk.stats())
        part = _rows(chunk)
        if part[0].size:
            self._parts.append(part)
            self._pending += int(part[0].size)
        while self._pending >= self.batch_size:
            yield self._take(self.batch_size)

    def finish(self) -> Iterator[TrainBatch]:
        """Emit the last, partial batch (if any kept examples remain)."""
        if self._pending:
            yield self._take(self._pending)

    def _take(self, m: int) -> TrainBatch:
        idx, w, est, warm = (np.concatenate(c) for c in zip(*self._parts, strict=True))
        rest = (idx[m:], w[m:], est[m:], warm[m:])
        self._parts = [rest] if rest[0].size else []
        self._pending = int(rest[0].size)
        stats, self._stats = self._stats, ChunkStats()
        return TrainBatch(
            indices=idx[:m].astype(np.int64),
            weights=w[:m].astype(np.float32),
            estimates=est[:m],
            warmup=warm[:m],
            normalizer=None,
            stats=stats,
        )


class ShrinkBatcher:
    """One batch per candidate chunk, made of its kept part; loss divided by the chunk size.

    A chunk with nothing kept yields no batch; its statistics ride on the next batch.
    """

    def __init__(self) -> None:
        self._stats = ChunkStats()

    def add(self, chunk: SelectedChunk) -> Iterator[TrainBatch]:
        self._stats.add(chunk.stats())
        idx, w, est, warm = _rows(chunk)
        if not idx.size:
            return
        stats, self._stats = self._stats, ChunkStats()
        yield TrainBatch(
            indices=idx.astype(np.int64),
            weights=w.astype(np.float32),
            estimates=est,
            warmup=warm,
            normalizer=float(chunk.indices.size),
            stats=stats,
        )

    def finish(self) -> Iterator[TrainBatch]:
        return iter(())


def make_batcher(batching: Batching, batch_size: int) -> Batcher:
    if batching == "fill":
        return FillBatcher(batch_size)
    if batching == "shrink":
        return ShrinkBatcher()
    raise ValueError(f"batching must be 'fill' or 'shrink', got {batching!r}")
