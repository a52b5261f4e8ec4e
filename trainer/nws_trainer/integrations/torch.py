"""NWS sampling for an existing PyTorch training loop, in three changed lines.

::

    nws = NWSSampler(embeddings, batch_size=16, ratio=0.5, seed=0)          # added
    loader = nws.loader(train_set, collate_fn=collate)                        # was DataLoader(...)
    loss = nws.loss(F.cross_entropy(logits, labels, reduction="none"))       # was the mean loss

:class:`NWSSampler` owns a sketch on a sketch server (an embedded one on a loopback port unless
``endpoint`` names a shared server), scores candidate examples by their embeddings, keeps the
informative ones with importance weights, and streams the losses the loop observes back to the
sketch. Two ways to select, chosen by the inputs:

- **sampler mode** (a map-style dataset and an embedding *table*, an array or tensor [n, dim]
  indexed by example index): a batch sampler scans a seeded permutation of the examples in
  candidate chunks of ``batch_size``, asks the sketch which to keep, and fills every batch with
  exactly ``batch_size`` kept examples (loss self-normalised: ``sum(w l) / sum(w)``). Rejected
  examples are never even loaded. An epoch is a fixed number of batches
  (``steps_per_epoch``, default ``ceil(n * ratio / (batch_size * world_size))``): the number of
  optimizer steps and so the learning-rate schedule do not depend on acceptance, and every
  DDP rank takes the same number of steps.
- **filter mode** (an ``IterableDataset``, or embeddings given by a *callable on the batch*):
  the DataLoader yields candidate batches as usual; each is cut down to its kept rows (loss
  ``sum(w l) / n_candidates``, the unbiased "shrink" normalisation). One step per candidate
  batch whatever the acceptance: a batch with nothing kept keeps one row with weight 0.
  With a table and an iterable dataset, every example must carry its index (``index_field``).

The batches the loader yields are the user's own (dicts of tensors, tuples, ...) with the NWS
fields removed; the indices and weights of the batch just yielded are attached as
``nws.current`` (and ``batch.nws`` on dict batches), and :meth:`NWSSampler.loss` reads them.

Determinism: every draw has a seed derived from ``seed``; before each selection the sampler
waits until the updates it streamed are applied (and, under ``torch.distributed``, until every
rank's are, with barriers around the selection), so a run is reproducible for a seed. With
``torch.distributed`` initialised, rank 0 starts the embedded server and creates the sketch, and
every rank shares it; rank r scans candidate chunks r, r + W, ... of each permutation.

:meth:`NWSSampler.state_dict` / :meth:`NWSSampler.load_state_dict` carry the sampler's position,
the batches already drawn but not yet trained (the DataLoader's look-ahead) and the sketch's
whole state (``ExportSketch``), so a resumed run continues exactly as the uninterrupted one
(see :mod:`nws_trainer.integrations.checkpoint`).

Parts: the sketch on its server (:mod:`.session`), the position a checkpoint saves
(:mod:`.position`), the loaders (:mod:`.loading`); :class:`NWSSampler` adds the selection rules.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np
import torch

from nws_client import SketchClient
from nws_core.keep_ratio import DEFAULT_RATIO_MIN
from nws_core.policy import SamplingPolicy, check_ratio
from nws_trainer.anneal import batch_annealing, check_share
from nws_trainer.config import TrainConfig
from nws_trainer.integrations.loading import (
    INDEX_KEY,
    WEIGHT_KEY,
    BatchInfo,
    IndexedDataset,
    NWSBatch,
    NWSBatchSampler,
    NWSCollate,
    NWSLoader,
    batch_len,
    embedding_source,
    get_field,
    make_loader,
    per_example_loss,
    subset_rows,
    to_numpy,
)
from nws_trainer.integrations.position import SamplerPosition
from nws_trainer.integrations.session import SketchSession, dist_info
from nws_trainer.loss import weighted_loss
from nws_trainer.selection import chunk_seed, normalize_rows

log = logging.getLogger("nws_trainer.integrations")

STATE_VERSION = 1
FILTER_STREAM = 2**32 + 1  # the draw seeds of filter mode: apart from every permutation pass

EmbeddingFn = Callable[[Any], Any]


class NWSSampler:
    """Sketch-driven example selection for a user's training loop (see the module docstring).

    Args:
        embeddings: an array / tensor [n, dim] indexed by example index (rows are L2-normalised
            and centred on their mean), or a callable mapping a collated batch to [m, dim].
        batch_size: examples per optimizer step (sampler mode) / candidates per batch (filter).
        ratio: target fraction of candidates kept, in (0, 1], or ``"auto"``: the server picks
            each draw's ratio from the predicted variance reduction (at least 0.3, every row
            while sampling would not pay; docs/sampling.md). Default ``"auto"``: it does no harm
            in every regime the benchmark protocol measures (README, "choosing the defaults").
        p_min: floor of every keep probability (unbiasedness needs > 0).
        seed: seeds the permutations and every draw.
        warmup: observations before selection starts (default ``2 * batch_size``); until then
            every candidate is kept with weight 1.
        steps_per_epoch: batches per epoch in sampler mode (default from ``ratio``; under auto
            from 1, the most it keeps).
        endpoint: ``host:port`` of a shared sketch server; None starts an embedded one (on rank 0).
        sketch_name: the sketch's name (default a fresh one; shared by every rank).
        rows, bits: the sketch's shape (default: ``nws-train``'s, R = 200, K = 10).
        power: priorities are estimate ** power (> 1 sharpens flat estimates; the weights stay
            unbiased but spread more).
        temper: weights are (1/p) ** temper; 1 is unbiased, below 1 trades a bias towards hard
            examples for lower gradient variance, 0 is pure prioritisation (weights 1).
        index_field: the key of an example's index in the items of an iterable dataset (filter
            mode with a table).
        client_timeout: deadline of every sketch call, seconds.
        anneal: the last ``anneal`` share of the run's batches keeps every candidate with
            weight 1 (:mod:`nws_trainer.anneal`; 0 = off); needs the run's length:
        epochs: passes over the loader the run makes (sampler mode: ``epochs *
            steps_per_epoch`` batches), or
        total_steps: the batches the run takes (any mode; ``NWSTrainer`` sets it from the
            Trainer's ``max_steps`` when neither is given).
    """

    def __init__(
        self,
        embeddings: np.ndarray | torch.Tensor | EmbeddingFn,
        *,
        batch_size: int,
        ratio: float | Literal["auto"] = "auto",
        p_min: float = 0.05,
        seed: int = 0,
        warmup: int | None = None,
        steps_per_epoch: int | None = None,
        endpoint: str | None = None,
        sketch_name: str | None = None,
        rows: int = TrainConfig.sketch_rows,
        bits: int = TrainConfig.sketch_bits,
        power: float = TrainConfig.score_power,
        temper: float = TrainConfig.temper,
        index_field: str | None = None,
        client_timeout: float = 30.0,
        anneal: float = 0.0,
        epochs: int | None = None,
        total_steps: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if ratio != "auto" and not isinstance(ratio, numbers.Real):
            raise ValueError(f"ratio must be in (0, 1] or 'auto', got {ratio!r}")
        # InvalidArgument is a ValueError; under auto p_min is bounded by the least ratio
        if ratio == "auto":
            check_ratio(DEFAULT_RATIO_MIN, p_min, ratio_name="ratio_min")
        else:
            check_ratio(ratio, p_min)
        self.batch_size = batch_size
        self.ratio: float | Literal["auto"] = "auto" if ratio == "auto" else float(ratio)
        planned_ratio = 1.0 if ratio == "auto" else float(ratio)
        self.p_min = float(p_min)
        self.policy = SamplingPolicy(power=power, temper=temper)  # validates: ValueError
        self.seed = int(seed)
        self.index_field = index_field
        self.rank, self.world_size = dist_info()
        self._fn, self._table = embedding_source(embeddings)
        center = None if self._table is None else self._table.mean(axis=0)
        self.n_examples = 0 if self._table is None else int(self._table.shape[0])
        per_step = batch_size * self.world_size
        self.steps_per_epoch = (
            steps_per_epoch
            if steps_per_epoch is not None
            else max(1, math.ceil(self.n_examples * planned_ratio / per_step))
        )
        self.warmup = 2 * batch_size if warmup is None else int(warmup)
        self.anneal = check_share(anneal)  # ValueError
        if epochs is not None and total_steps is not None:
            raise ValueError("give epochs or total_steps, not both")
        self.total_steps = total_steps if epochs is None else int(epochs) * self.steps_per_epoch
        self.position = SamplerPosition(self.rank, self.world_size, self.steps_per_epoch)
        """Where the sampler is in its candidate stream (what a checkpoint saves)."""
        self.session = SketchSession(
            endpoint=endpoint,
            name=sketch_name,
            dim=None if self._table is None else int(self._table.shape[1]),
            center=center,
            rows=rows,
            bits=bits,
            seed=self.seed,
            warmup=self.warmup,
            timeout=client_timeout,
            rank=self.rank,
            world_size=self.world_size,
        )
        """The sketch on its server, shared by every rank."""
        self.current: BatchInfo | None = None

    @property
    def client(self) -> SketchClient:
        """This rank's client of the sketch server."""
        return self.session.client

    @property
    def target(self) -> str:
        """``host:port`` of the sketch server."""
        return self.session.target

    @property
    def sketch_name(self) -> str:
        return self.session.name

    @property
    def has_table(self) -> bool:
        """The embeddings are a table indexed by example (sampler mode is possible)."""
        return self._table is not None

    @property
    def stats(self) -> dict[str, int]:
        """Candidates scanned, candidates accepted and batches trained so far."""
        return self.position.stats

    # ------------------------------------------------------------------ data loading
    def loader(self, dataset: Any, **dataloader_kwargs: Any) -> NWSLoader:
        """A DataLoader over ``dataset`` that yields the kept examples (module docstring).

        ``dataloader_kwargs`` go to :class:`torch.utils.data.DataLoader` (``collate_fn``,
        ``num_workers``, ...); ``batch_size``, ``shuffle`` and ``sampler`` are NWS's to set.
        """
        return make_loader(self, dataset, dataloader_kwargs)

    def batch_sampler(self) -> NWSBatchSampler:
        """The sampler-mode batch sampler (for a DataLoader over :class:`IndexedDataset`)."""
        self._require_table()
        return NWSBatchSampler(self)

    # ------------------------------------------------------------------ selection
    def draw(
        self, x: np.ndarray, stream: int, chunk: int, drawn: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(accepted, weights): which rows of ``x`` to keep. The draw's seed is fixed by the
        run's seed, the candidate stream (a permutation pass, or filter mode) and the chunk. In
        the annealed last share of the run (``drawn`` batches drawn before) every row is kept."""
        n = int(x.shape[0])
        if batch_annealing(drawn, self.total_steps, self.anneal):
            accepted, weights = np.ones(n, dtype=bool), np.ones(n)
        else:
            seed = chunk_seed(self.seed, stream, chunk)
            accepted, weights = self.session.sample(x, self.ratio, self.p_min, seed, self.policy)
        self.position.count(n, int(accepted.sum()))
        return accepted, weights

    def begin_epoch(self) -> int:
        """Sampler mode: batches the next pass over the loader yields (the rest of an
        interrupted epoch; what an abandoned iterator drew is handed out again first)."""
        return self.position.begin_epoch()

    def next_batch(self) -> list[tuple[int, float]]:
        """Sampler mode: the next full batch of (index, weight), replaying drawn ones first."""
        pos = self.position
        replayed = pos.replayed()
        if replayed is not None:
            return replayed
        table = self._require_table()
        self.session.sync()
        n, b = self.n_examples, self.batch_size
        n_chunks = -(-n // b)
        if n_chunks <= self.rank:  # this rank would never get a turn: it would wait forever
            raise ValueError(
                f"{n} examples make {n_chunks} candidate chunks of {b}, fewer than the "
                f"{self.world_size} ranks: lower batch_size or use fewer ranks"
            )
        drawn = pos.drawn()
        while len(pos.pending) < b:
            turn = pos.next_chunk(n_chunks)
            if turn is None:
                continue
            pass_, c = turn
            perm = np.random.default_rng([self.seed, pass_, 0x5EED]).permutation(n)
            rows = perm[c * b : (c + 1) * b]
            accepted, weights = self.draw(table[rows], pass_, c, drawn)
            pos.pending.extend(
                (int(i), float(wt)) for i, wt in zip(rows[accepted], weights[accepted], strict=True)
            )
        self.session.barrier()
        return pos.hand_out(b)

    def filter(self, batch: Any) -> tuple[Any, BatchInfo]:
        """Filter mode: cut a collated candidate batch down to its kept rows."""
        m = batch_len(batch)
        if self._table is not None:
            found = get_field(batch, self.index_field)
            if found is None:
                raise ValueError(f"the batch has no {self.index_field!r} field (index_field)")
            indices = to_numpy(found).astype(np.int64).reshape(-1)
            x = self._table[indices]
        else:
            if self._fn is None:  # unreachable: a sampler has a table or a callable
                raise RuntimeError("NWSSampler has neither an embedding table nor a callable")
            with torch.no_grad():
                x = normalize_rows(to_numpy(self._fn(batch)))
            found = get_field(batch, self.index_field) if self.index_field else None
            indices = (
                np.full(m, -1, np.int64)
                if found is None
                else to_numpy(found).astype(np.int64).reshape(-1)
            )
            self.session.ensure(x)
        if x.shape[0] != m:
            raise ValueError(f"the batch has {m} rows but {x.shape[0]} embeddings")
        self.session.sync()
        done = self.position.filter_batches
        accepted, weights = self.draw(x, FILTER_STREAM, done * self.world_size + self.rank, done)
        self.session.barrier()
        self.position.filter_batches += 1
        keep = np.flatnonzero(accepted)
        if keep.size == 0:  # keep the step: one row that counts for nothing
            keep, weights = np.array([0]), np.zeros(m)
        info = BatchInfo(
            indices=indices[keep],
            weights=np.asarray(weights, np.float64)[keep],
            normalizer=float(m),
            embeddings=x[keep] if self._fn is not None else None,
            candidates=m,
        )
        if isinstance(batch, Mapping) and self.index_field is not None:
            batch = {k: v for k, v in batch.items() if k != self.index_field}
        return subset_rows(batch, keep, m), info

    # ------------------------------------------------------------------ the loss
    def take(self, batch: Any) -> BatchInfo:
        """Sampler mode: pop the NWS fields off a collated dict batch; note it as consumed."""
        if not isinstance(batch, dict) or INDEX_KEY not in batch:
            raise ValueError(f"not a batch of the NWS loader: no {INDEX_KEY!r} field")
        indices = to_numpy(batch.pop(INDEX_KEY)).astype(np.int64).reshape(-1)
        weights = to_numpy(batch.pop(WEIGHT_KEY)).astype(np.float64).reshape(-1)
        self.position.take(indices.tolist())
        self.current = BatchInfo(indices, weights, None, candidates=0)
        return self.current

    def loss(self, losses: torch.Tensor, info: BatchInfo | None = None) -> torch.Tensor:
        """The importance-weighted loss of per-example ``losses`` [m] (``reduction="none"``);
        streams the observed losses to the sketch. ``info`` defaults to :attr:`current`."""
        info = info or self.current
        if info is None:
            raise RuntimeError("no NWS batch yet: iterate the loader NWSSampler.loader made")
        if losses.dim() != 1 or losses.shape[0] != info.weights.shape[0]:
            raise ValueError(
                f"loss needs one loss per example of the batch ({info.weights.shape[0]}), got "
                f"shape {list(losses.shape)}: use reduction='none'"
            )
        observed = losses.detach().double().cpu().numpy()
        if np.isfinite(observed).all():
            x = info.embeddings
            if x is None:
                x = self._require_table()[info.indices]
            self.session.update(x, observed)
        weights = torch.as_tensor(info.weights, dtype=losses.dtype, device=losses.device)
        self.position.stats["batches"] += 1
        return weighted_loss(losses, weights, info.normalizer)

    def _require_table(self) -> np.ndarray:
        if self._table is None:
            raise ValueError("this needs an embedding table, not a callable")
        return self._table

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self, *, include_sketch: bool | None = None) -> dict[str, Any]:
        """Position, look-ahead batches and (rank 0 by default) the sketch's exported state.

        Collective under ``torch.distributed``: every rank must call it."""
        include = self.rank == 0 if include_sketch is None else include_sketch
        sketch = self.session.export(include)
        return {
            "version": STATE_VERSION,
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
            **self.position.state_dict(),
            "centered": self.session.centered,
            "sketch": sketch,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (also in a new process, against a new server). Collective."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unknown NWS sampler state version {state.get('version')!r}")
        if (state["seed"], state["world_size"]) != (self.seed, self.world_size):
            raise ValueError(
                f"the state is of seed {state['seed']} on {state['world_size']} ranks, this "
                f"sampler is seed {self.seed} on {self.world_size}"
            )
        self.session.restore(state.get("sketch"))
        self.position.load_state_dict(state)
        self.session.centered = bool(state["centered"]) or self.session.centered

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Flush the updates, close the client, stop an embedded server this sampler started."""
        self.session.close()

    def __enter__(self) -> NWSSampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "BatchInfo",
    "IndexedDataset",
    "NWSBatch",
    "NWSBatchSampler",
    "NWSCollate",
    "NWSLoader",
    "NWSSampler",
    "per_example_loss",
]
