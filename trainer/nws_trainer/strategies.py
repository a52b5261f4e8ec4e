"""The training strategies as objects: what each one decides, so the training loop asks, not tests.

A :class:`Strategy` answers the questions the :class:`~nws_trainer.train.Trainer` used to settle
with ``if cfg.strategy == ...``: which selector its loader runs, whether it needs the static
embeddings, a sketch or a loss table, whether it selects inside the trainer after a forward pass
(and how), what it streams to the sketch and what it probes the sketch with, and how its steps and
learning-rate schedule are planned. Which strategies use a sketch, a table or the trainer-side
path is the vocabulary of :mod:`nws_trainer.config` (checked there, once); these classes add the
behaviour. :func:`strategy_for` gives the object of a config.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from nws_core.keep_ratio import AutoRatio
from nws_trainer.anchors import InfoBatchSelector, LossTableSelector
from nws_trainer.batching import make_batcher
from nws_trainer.config import SAMPLED, SKETCHED, TABLED, TRAINER_SIDE, TrainConfig
from nws_trainer.evaluate import Forward, forward_no_grad
from nws_trainer.loader import collate
from nws_trainer.selection import (
    Batching,
    KeepAll,
    RS2Selector,
    SelectedChunk,
    Selector,
    SketchSelector,
    TrainBatch,
    UniformSelector,
    chunk_seed,
    from_sample,
    normalize_rows,
    select_by_scores,
)

if TYPE_CHECKING:
    from nws_trainer.train import Trainer


class Strategy:
    """The base: keep every candidate (``full``); subclasses override what they decide."""

    name: ClassVar[str]
    #: One optimizer step per candidate chunk: planned steps are chunks x epochs (exact for
    #: ``full``, an upper bound where pruning is data-dependent).
    step_per_chunk: ClassVar[bool] = False
    #: The number of steps is known before the run (the linear schedule follows steps done,
    #: not candidates consumed).
    steps_known: ClassVar[bool] = False
    #: The trainer-side forward returns mean-pooled hidden states (the live embedding).
    pooled: ClassVar[bool] = False

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg

    # -------------------------------------------------------------- the config's vocabulary
    @property
    def sampled(self) -> bool:
        """Selects a subset of the candidates (ratio, p_min and batching apply)."""
        return self.name in SAMPLED

    @property
    def uses_sketch(self) -> bool:
        return self.name in SKETCHED

    @property
    def uses_table(self) -> bool:
        return self.name in TABLED

    @property
    def selects_in_trainer(self) -> bool:
        """Selects after a no-gradient forward of the current model, in the trainer."""
        return self.name in TRAINER_SIDE

    @property
    def needs_static_embeddings(self) -> bool:
        """Scores candidates by their static embeddings (computed once, before training)."""
        return False

    def loader_batching(self) -> Batching:
        """How the loader batches: trainer-side strategies take whole candidate chunks."""
        return "shrink" if self.selects_in_trainer else self.cfg.batching

    # -------------------------------------------------------------- selection
    def selector(self, trainer: Trainer) -> Selector:
        """What the loader runs on each candidate chunk."""
        return KeepAll()

    def choose(self, trainer: Trainer, cand: TrainBatch, f: Forward, seed: int) -> SelectedChunk:
        """Trainer-side selection of one forwarded candidate chunk."""
        raise NotImplementedError(f"{self.name} selects in the loader")

    # -------------------------------------------------------------- the sketch's side
    def update_rows(self, trainer: Trainer, indices: np.ndarray) -> np.ndarray:
        """The embeddings the trained rows' observed values are streamed to the sketch with."""
        raise NotImplementedError(f"{self.name} streams nothing to a sketch")

    def probe_rows(self, trainer: Trainer, f: Forward) -> np.ndarray:
        """The embeddings the probe rows are scored with (``f``: their forward pass)."""
        raise NotImplementedError(f"{self.name} has no sketch to probe")


class Full(Strategy):
    name = "full"
    step_per_chunk = True
    steps_known = True


class Uniform(Strategy):
    name = "uniform"

    def selector(self, trainer: Trainer) -> Selector:
        return UniformSelector(self.cfg.fixed_ratio())


class RS2(Strategy):
    """A fresh random subset each epoch, without replacement across epochs (RS2, ICLR 2024)."""

    name = "rs2"

    def selector(self, trainer: Trainer) -> Selector:
        return RS2Selector(len(trainer.prep.train), self.cfg.fixed_ratio(), self.cfg.seed)


class NWS(Strategy):
    """The sketch scores each candidate chunk by its static embeddings, in the loader."""

    name = "nws"

    @property
    def needs_static_embeddings(self) -> bool:
        return True

    def selector(self, trainer: Trainer) -> Selector:
        cfg = self.cfg
        assert trainer.backend is not None and trainer.embeddings is not None
        return SketchSelector(
            trainer.backend.spec(),
            trainer.embeddings.table,
            cfg.keep_ratio,
            cfg.p_min,
            trainer.rule,
            cfg.prune_rate if cfg.sampling == "prune" else None,
            AutoRatio(cfg.ratio_min, cfg.auto_threshold) if cfg.auto else None,
        )

    def update_rows(self, trainer: Trainer, indices: np.ndarray) -> np.ndarray:
        assert trainer.embeddings is not None
        return trainer.embeddings.table.rows(indices)

    def probe_rows(self, trainer: Trainer, f: Forward) -> np.ndarray:
        assert trainer.embeddings is not None
        return trainer.embeddings.table.rows(trainer.prep.probe)


class NWSLive(Strategy):
    """The sketch scores the current model's mean-pooled output, after a forward pass."""

    name = "nws-live"
    pooled = True

    def choose(self, trainer: Trainer, cand: TrainBatch, f: Forward, seed: int) -> SelectedChunk:
        assert trainer.backend is not None and f.pooled is not None
        x = trainer.center_once(normalize_rows(f.pooled))
        result = trainer.backend.sample(
            x, self.cfg.fixed_ratio(), self.cfg.p_min, seed, trainer.rule
        )
        for i, row in zip(cand.indices[result.accepted], x[result.accepted], strict=True):
            trainer.live_rows[int(i)] = row
        return from_sample(cand.indices, result, 0.0)

    def update_rows(self, trainer: Trainer, indices: np.ndarray) -> np.ndarray:
        return np.stack([trainer.live_rows.pop(int(i)) for i in indices])

    def probe_rows(self, trainer: Trainer, f: Forward) -> np.ndarray:
        assert f.pooled is not None
        return trainer.center_once(normalize_rows(f.pooled))


class SelectiveBackprop(Strategy):
    """Keeps candidates by their true loss, after a forward pass (Jiang et al., 2019)."""

    name = "selective-backprop"

    def choose(self, trainer: Trainer, cand: TrainBatch, f: Forward, seed: int) -> SelectedChunk:
        cfg = self.cfg
        return select_by_scores(
            cand.indices, f.losses, cfg.fixed_ratio(), cfg.p_min, seed, trainer.rule
        )


class LossTableStrategy(Strategy):
    """The O(N) anchor: each example's last observed loss, in a table, instead of a sketch."""

    name = "loss-table"

    def selector(self, trainer: Trainer) -> Selector:
        cfg = self.cfg
        assert trainer.table is not None
        warmup = cfg.warmup_steps * cfg.batch_size
        return LossTableSelector(trainer.table, cfg.fixed_ratio(), cfg.p_min, warmup, trainer.rule)


class InfoBatch(Strategy):
    """InfoBatch (ICLR 2024) on the loss table: prune below-mean rows, rescale, anneal."""

    name = "infobatch"
    step_per_chunk = True  # an upper bound: pruning is data-dependent

    def selector(self, trainer: Trainer) -> Selector:
        cfg = self.cfg
        assert trainer.table is not None
        epochs = cfg.epochs
        if trainer.budget is not None:  # the passes the budget is expected to take
            per_pass = math.ceil(len(trainer.prep.train) / cfg.batch_size)
            epochs = max(1, math.ceil(trainer.budget / per_pass))
        return InfoBatchSelector(trainer.table, cfg.infobatch_prune, cfg.infobatch_anneal, epochs)


STRATEGY_CLASSES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (Full, Uniform, RS2, NWS, NWSLive, SelectiveBackprop, LossTableStrategy, InfoBatch)
}


def strategy_for(cfg: TrainConfig) -> Strategy:
    """The strategy object of a (validated) config."""
    return STRATEGY_CLASSES[cfg.strategy](cfg)


def select_in_trainer(t: Trainer, candidates: Iterator[TrainBatch]) -> Iterator[TrainBatch]:
    """nws-live / selective-backprop: forward each candidate chunk, select, re-batch."""
    cfg = t.cfg
    batcher = make_batcher(cfg.batching, cfg.batch_size)
    epoch = 0
    pooled = t.strategy.pooled
    for counter, cand in enumerate(candidates):
        if cand.epoch != epoch:
            for batch in batcher.finish():
                yield _collate(t, batch, epoch)
            batcher = make_batcher(cfg.batching, cfg.batch_size)
            epoch = cand.epoch
        start = time.perf_counter()
        assert cand.inputs is not None
        f = forward_no_grad(t.model, cand.inputs, cand.labels, t.device, pooled=pooled)
        t.forwarded += len(cand)
        t.nograd_examples += len(cand)
        t.nograd_tokens += int(cand.inputs["input_ids"].numel())
        t.totals["select_forward"] += time.perf_counter() - start
        chunk = t.strategy.choose(t, cand, f, chunk_seed(cfg.seed, cand.epoch, counter))
        chunk.seconds = time.perf_counter() - start
        for batch in batcher.add(chunk):
            yield _collate(t, batch, epoch)
    for batch in batcher.finish():
        yield _collate(t, batch, epoch)


def _collate(t: Trainer, batch: TrainBatch, epoch: int) -> TrainBatch:
    batch.epoch = epoch
    return collate(batch, t.prep.train_tokens, t.train_labels)
