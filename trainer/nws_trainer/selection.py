"""Selecting candidates: the reusable core of every sampled strategy.

A *selector* looks at a chunk of candidate examples and decides which to keep and with what
importance weight (:class:`SelectedChunk`); a *batcher* (:mod:`nws_trainer.batching`) turns the
stream of selected chunks into training batches (:class:`TrainBatch`). The O(N) selectors the
sketch is measured against (a table of last losses, InfoBatch) are :mod:`nws_trainer.anchors`.

Selectors that need only embeddings (keep-all, uniform, the sketch) run in loader workers; the
ones that need the current model (``nws-live``, ``selective-backprop``) run in the trainer and use
:func:`select_by_scores` / :func:`from_sample` with the same batchers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

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
