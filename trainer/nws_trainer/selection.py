"""Selecting candidates and batching the kept ones: the reusable core of every sampled strategy.

A *selector* looks at a chunk of candidate examples and decides which to keep and with what
importance weight (:class:`SelectedChunk`). A *batcher* turns the stream of selected chunks into
training batches (:class:`TrainBatch`), in one of two modes:

- ``fill``: kept examples accumulate until a full batch, so every optimizer step trains
  ``batch_size`` informative examples; the loss is self-normalised (see :mod:`nws_trainer.loss`).
- ``shrink`` (the paper's): every candidate chunk becomes one batch made of its kept part, so steps
  get cheaper; the loss is divided by the chunk's candidate count.

Selectors that need only embeddings (keep-all, uniform, the sketch) run in loader workers; the
ones that need the current model (``nws-live``, ``selective-backprop``) run in the trainer and use
:func:`select_by_scores` / :func:`from_sample` with the same batchers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch

from nws_client.results import SampleResult
from nws_core import policy
from nws_core.keep_ratio import AutoRatio
from nws_trainer.backends import BackendSpec, Ratio, SketchBackend
from nws_trainer.diagnostics import ChunkStats, coefficient_of_variation

Batching = Literal["fill", "shrink"]


@dataclass
class SelectedChunk:
    """A chunk of candidates after selection; one entry per candidate."""

    indices: np.ndarray
    """int64 [n]: dataset row of every candidate."""
    accepted: np.ndarray
    """bool [n]."""
    weights: np.ndarray
    """float64 [n]: importance weight of kept rows (0 for the others)."""
    estimates: np.ndarray | None = None
    """float64 [n]: the score the decision used (a sketch estimate or a true loss)."""
    prior_used: np.ndarray | None = None
    """bool [n]: the estimate is the sketch's prior."""
    warmup: bool = False
    """Everything kept with weight 1 because the sketch is warming up."""
    fallback: bool = False
    """The sketch server was unreachable: the client's fallback policy chose, without scores."""
    seconds: float = 0.0
    """Time the selection took."""
    ratio: float | None = None
    """The keep ratio the sketch drew with (its choice under ``ratio="auto"``); None when it
    does not say (warm-up, fallback, prune, the strategies without a sketch)."""

    def stats(self) -> ChunkStats:
        n = int(self.indices.size)
        s = ChunkStats(candidates=n, accepted=int(self.accepted.sum()), select_seconds=self.seconds)
        if self.estimates is not None:
            s.scored = n
            if self.prior_used is not None:
                s.prior_hits = int(self.prior_used.sum())
            cv = None if self.warmup else coefficient_of_variation(self.estimates)
            if cv is not None:
                s.cv_sum, s.cv_chunks = cv, 1
        if self.ratio is not None and not self.warmup:
            s.ratio_sum, s.ratio_chunks = float(self.ratio), 1
        if self.warmup:
            s.warmup_candidates = n
        if self.fallback:
            s.fallback_candidates = n
        return s


@dataclass
class TrainBatch:
    """The examples one optimizer step trains on, with their weights and provenance."""

    indices: np.ndarray
    """int64 [m]: dataset rows."""
    weights: np.ndarray
    """float32 [m]: importance weights."""
    estimates: np.ndarray
    """float64 [m]: the score each row was selected on (NaN where there was none)."""
    warmup: np.ndarray
    """bool [m]: the row was kept by the warm-up rule, not by its score."""
    normalizer: float | None
    """What the weighted loss sum is divided by: None = sum of weights (fill), else a count."""
    stats: ChunkStats = field(default_factory=ChunkStats)
    """Selection statistics of the candidate chunks consumed since the previous batch."""
    epoch: int = 0
    inputs: dict[str, Any] | None = None
    """Model inputs (``input_ids``, ``attention_mask``, ...) once collated."""
    labels: Any = None
    """int64 tensor [m] once collated."""

    def __len__(self) -> int:
        return int(self.indices.size)


def chunk_seed(seed: int, epoch: int, chunk: int) -> int:
    """A well-mixed 63-bit draw seed for one candidate chunk (reproducible for a run seed)."""
    state = np.random.SeedSequence([seed, epoch, chunk]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


# ---------------------------------------------------------------------------------- batchers


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


# --------------------------------------------------------------------------------- selectors


class Selector(Protocol):
    """Picklable; called in whichever process iterates the candidates."""

    def __call__(self, indices: np.ndarray, seed: int, epoch: int = 0) -> SelectedChunk: ...


@dataclass
class KeepAll:
    """The ``full`` strategy: every candidate, weight 1."""

    def __call__(self, indices: np.ndarray, seed: int, epoch: int = 0) -> SelectedChunk:
        n = indices.size
        return SelectedChunk(indices, np.ones(n, dtype=bool), np.ones(n))


@dataclass
class UniformSelector:
    """The ``uniform`` strategy: keep each candidate with probability ``ratio``, weight 1/ratio."""

    ratio: float

    def __call__(self, indices: np.ndarray, seed: int, epoch: int = 0) -> SelectedChunk:
        rng = np.random.default_rng(seed)
        accepted = rng.random(indices.size) < self.ratio
        weights = np.where(accepted, 1.0 / self.ratio, 0.0)
        return SelectedChunk(indices, accepted, weights)


@dataclass
class RS2Selector:
    """The ``rs2`` strategy (Okanovic et al., "Repeated Random Sampling for Minimizing the
    Time-to-Accuracy of Learning", ICLR 2024), without replacement: every epoch trains a fresh
    random subset of ``ratio * n`` rows, weight 1, drawn so that no row repeats until every row
    has been drawn once. The draws walk seeded permutations of the rows one after another; an
    epoch that reaches the end of one permutation completes its subset from the next, skipping
    rows it already holds (a skipped row uses up its place in that permutation, so in that cycle
    it is drawn once fewer)."""

    n: int
    ratio: float
    seed: int
    _epoch: int = field(default=-1, init=False, repr=False)
    _position: int = field(default=0, init=False, repr=False)
    _mask: np.ndarray = field(default_factory=lambda: np.zeros(0, bool), init=False, repr=False)

    def per_epoch(self) -> int:
        return min(self.n, max(1, round(self.ratio * self.n)))

    def _permutation(self, cycle: int) -> np.ndarray:
        return np.random.default_rng([self.seed, cycle, 0x2520]).permutation(self.n)

    def subset(self, epoch: int) -> np.ndarray:
        """bool [n]: the rows epoch ``epoch`` trains (epochs are walked in order, from 0)."""
        if epoch < self._epoch:
            self._epoch, self._position = -1, 0  # asked for an earlier epoch: walk again
        while self._epoch < epoch:
            mask = np.zeros(self.n, dtype=bool)
            need = self.per_epoch()
            while need > 0:
                cycle, offset = divmod(self._position, self.n)
                segment = self._permutation(cycle)[offset : offset + need]
                self._position += segment.size
                fresh = segment[~mask[segment]]
                mask[fresh] = True
                need -= fresh.size
            self._epoch, self._mask = self._epoch + 1, mask
        return self._mask

    def __call__(self, indices: np.ndarray, seed: int, epoch: int = 0) -> SelectedChunk:
        start = time.perf_counter()
        accepted = self.subset(epoch)[indices]
        weights = accepted.astype(np.float64)
        return SelectedChunk(indices, accepted, weights, seconds=time.perf_counter() - start)


class EmbeddingTable:
    """Static embeddings by dataset row, L2-normalised on read; picklable by path when cached."""

    def __init__(self, array: np.ndarray | None = None, path: str | Path | None = None) -> None:
        if (array is None) == (path is None):
            raise ValueError("give exactly one of array and path")
        self._path = None if path is None else str(path)
        self._array = array

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            assert self._path is not None
            self._array = np.load(self._path, mmap_mode="r", allow_pickle=False)
        return self._array

    @property
    def dim(self) -> int:
        return int(self.array.shape[1])

    def rows(self, indices: np.ndarray) -> np.ndarray:
        return normalize_rows(np.asarray(self.array[indices]))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self._path is not None:
            state["_array"] = None
        return state


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """L2-normalise every row (float32); all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


class SketchSelector:
    """The ``nws`` strategy: ask the sketch server to sample by estimated loss (importance
    sampling at ``ratio``, a number or ``"auto"``, or with ``prune_rate`` the server's ``prune``
    policy).

    Holds a :class:`BackendSpec`, not a connection: each process that calls it opens its own
    handle lazily (so forked or spawned loader workers never inherit a live channel).
    """

    def __init__(
        self,
        spec: BackendSpec,
        embeddings: EmbeddingTable,
        ratio: Ratio,
        p_min: float,
        rule: policy.SamplingPolicy | None = None,
        prune_rate: float | None = None,
        auto: AutoRatio | None = None,
    ) -> None:
        self.spec = spec
        self.embeddings = embeddings
        self.ratio = ratio
        self.auto = auto  # ratio "auto": its settings (None: the server's defaults)
        self.p_min = p_min
        self.rule = rule or policy.SamplingPolicy()
        self.prune_rate = prune_rate  # not None: the server's prune policy (nws_core.prune)
        self._backend: SketchBackend | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_backend"] = None
        return state

    @property
    def backend(self) -> SketchBackend:
        if self._backend is None:
            self._backend = self.spec.open()
        return self._backend

    def __call__(self, indices: np.ndarray, seed: int, epoch: int = 0) -> SelectedChunk:
        x = self.embeddings.rows(indices)
        start = time.perf_counter()
        if self.prune_rate is not None:
            result = self.backend.sample(x, 1.0, 0.0, seed, prune_rate=self.prune_rate)
        else:
            result = self.backend.sample(x, self.ratio, self.p_min, seed, self.rule, auto=self.auto)
        # prune draws with no keep ratio (its answer's ratio is the expected keep share)
        return from_sample(
            indices, result, time.perf_counter() - start, ratio=self.prune_rate is None
        )


def from_sample(
    indices: np.ndarray, result: SampleResult, seconds: float, *, ratio: bool = True
) -> SelectedChunk:
    """Wrap a backend's :class:`SampleResult` for the batchers (a fallback has no scores);
    ``ratio`` False: the draw had no keep ratio to log (prune)."""
    return SelectedChunk(
        indices=indices,
        accepted=result.accepted,
        weights=result.weights,
        estimates=None if result.fallback else result.estimates,
        prior_used=None if result.fallback else result.prior_used,
        warmup=result.warmup,
        fallback=result.fallback,
        seconds=seconds,
        ratio=result.ratio if ratio and not (result.fallback or result.warmup) else None,
    )


def select_by_scores(
    indices: np.ndarray,
    scores: np.ndarray,
    ratio: float,
    p_min: float,
    seed: int,
    rule: policy.SamplingPolicy | None = None,
) -> SelectedChunk:
    """Keep candidates by known scores (e.g. true losses) with the sketch's sampling policy."""
    start = time.perf_counter()
    accepted, weights, _ = (rule or policy.SamplingPolicy()).sample(
        scores, ratio, p_min, np.random.default_rng(seed)
    )
    return SelectedChunk(
        indices,
        accepted,
        weights,
        estimates=np.asarray(scores, dtype=np.float64),
        seconds=time.perf_counter() - start,
    )


# ------------------------------------------------------------------ O(N) anchors of the sketch


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
