"""The O(N) anchors the sketch is measured against: each example's last observed loss in a
table (:class:`LossTable`), the ``loss-table`` strategy that samples from it like ``nws`` does
from the sketch, and the ``infobatch`` strategy (Qin et al., ICLR 2024) on the same table."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from nws_core import policy
from nws_trainer.selection import SelectedChunk


class LossTable:
    """Each training example's last observed loss: O(N) memory, the sketch's yardstick.

    Backed by a torch tensor in shared memory, so spawned loader workers read the values the
    trainer writes. Rows never trained on have no loss; :meth:`scores` gives them the mean of the
    observed ones (the sketch's prior, for a like-for-like comparison).
    """

    def __init__(self, n: int) -> None:
        self._values = torch.full((n,), float("nan"), dtype=torch.float64).share_memory_()
        self._count = torch.zeros(1, dtype=torch.int64).share_memory_()

    def __len__(self) -> int:
        return int(self._values.shape[0])

    @property
    def observations(self) -> int:
        """Losses written so far (repeats included)."""
        return int(self._count.item())

    def update(self, indices: np.ndarray, losses: np.ndarray) -> None:
        idx = torch.from_numpy(np.asarray(indices, dtype=np.int64))
        self._values[idx] = torch.from_numpy(np.asarray(losses, dtype=np.float64))
        self._count += int(idx.numel())

    def mean(self) -> float | None:
        """Mean of the latest loss of every row seen so far; None before any."""
        v = self._values.numpy()
        seen = ~np.isnan(v)
        return float(v[seen].mean()) if seen.any() else None

    def lookup(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(latest losses with NaN for unseen rows, unseen mask)."""
        v = self._values.numpy()[np.asarray(indices, dtype=np.int64)]
        return v, np.isnan(v)

    def scores(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(scores, prior used): the latest loss, or the mean of the seen rows where unseen."""
        v, unseen = self.lookup(indices)
        prior = self.mean()
        return np.where(unseen, 1.0 if prior is None else prior, v), unseen


@dataclass
class LossTableSelector:
    """The ``loss-table`` strategy: ``nws``'s policy, fed by a :class:`LossTable`, not a sketch.

    Same warm-up (everything kept with weight 1 until ``warmup`` losses were observed), same
    water-filled probabilities, floor and weights; isolates what the sketch's estimates add.
    """

    table: LossTable
    ratio: float
    p_min: float
    warmup: int
    rule: policy.SamplingPolicy = field(default_factory=policy.SamplingPolicy)

    def __call__(self, indices: np.ndarray, seed: int, epoch: int = 0) -> SelectedChunk:
        start = time.perf_counter()
        scores, unseen = self.table.scores(indices)
        warm = policy.in_warmup(self.table.observations, self.warmup)
        accepted, weights, _ = self.rule.draw(scores, self.ratio, self.p_min, seed, warm=warm)
        return SelectedChunk(
            indices,
            accepted,
            weights,
            scores,
            unseen,
            warmup=warm,
            seconds=time.perf_counter() - start,
        )


@dataclass
class InfoBatchSelector:
    """The ``infobatch`` strategy (Qin et al., ICLR 2024), as an epoch-level rule.

    Each example's score is its last observed loss (a :class:`LossTable`). In every epoch before
    ``anneal * epochs``, an example whose score is below the mean score is pruned with probability
    ``prune`` and, if kept, trained with weight 1 / (1 - prune) (unbiased); examples at or above
    the mean, and examples never trained on, are always kept. The last epochs train on everything.
    The mean is taken over the table when a chunk is drawn (the paper takes it at the epoch's
    start: the same up to the losses written during the epoch).
    """

    table: LossTable
    prune: float
    anneal: float
    epochs: int

    def __call__(self, indices: np.ndarray, seed: int, epoch: int = 0) -> SelectedChunk:
        start = time.perf_counter()
        n = indices.size
        values, unseen = self.table.lookup(indices)
        mean = self.table.mean()
        if epoch >= self.anneal * self.epochs or mean is None or self.prune == 0:
            return SelectedChunk(indices, np.ones(n, dtype=bool), np.ones(n))
        well_learned = ~unseen & (np.nan_to_num(values, nan=np.inf) < mean)
        dropped = well_learned & (np.random.default_rng(seed).random(n) < self.prune)
        accepted = ~dropped
        weights = np.where(accepted, np.where(well_learned, 1.0 / (1.0 - self.prune), 1.0), 0.0)
        return SelectedChunk(indices, accepted, weights, seconds=time.perf_counter() - start)
