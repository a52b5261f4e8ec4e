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
"""

from __future__ import annotations

import logging
import math
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, IterableDataset
from torch.utils.data.dataloader import default_collate

from nws_client import SketchClient, SketchConfig
from nws_core.keep_ratio import DEFAULT_RATIO_MIN
from nws_core.policy import SamplingPolicy
from nws_trainer.anneal import batch_annealing, check_share
from nws_trainer.config import TrainConfig
from nws_trainer.loss import weighted_loss
from nws_trainer.selection import chunk_seed, normalize_rows

log = logging.getLogger("nws_trainer.integrations")

INDEX_KEY = "nws_index"
WEIGHT_KEY = "nws_weight"
STATE_VERSION = 1
FILTER_STREAM = 2**32 + 1  # the draw seeds of filter mode: apart from every permutation pass

EmbeddingFn = Callable[[Any], Any]


@dataclass
class BatchInfo:
    """What NWS knows about the batch a loader just yielded; one entry per row."""

    indices: np.ndarray
    """int64 [m]: example indices (-1 where unknown)."""
    weights: np.ndarray
    """float64 [m]: importance weights (0 for a filler row of an all-rejected batch)."""
    normalizer: float | None
    """None: self-normalised (sampler mode); else the candidate count (filter mode)."""
    embeddings: np.ndarray | None = None
    """float32 [m, dim]: the rows' embeddings when they came from a callable."""
    candidates: int = 0
    """Candidates scanned to make this batch."""


# --------------------------------------------------------------------------- distributed


def _dist() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def _broadcast(value: Any, world: int) -> Any:
    if world <= 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# --------------------------------------------------------------------------- the sampler


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
        if ratio == "auto":
            if not 0.0 <= p_min <= DEFAULT_RATIO_MIN:
                raise ValueError(
                    f"p_min must be in [0, {DEFAULT_RATIO_MIN}] under auto, got {p_min}"
                )
        elif not (isinstance(ratio, (int, float)) and 0.0 < ratio <= 1.0):
            raise ValueError(f"ratio must be in (0, 1] or 'auto', got {ratio!r}")
        elif not 0.0 <= p_min <= ratio:
            raise ValueError(f"p_min must be in [0, ratio], got {p_min}")
        self.batch_size = batch_size
        self.ratio: float | Literal["auto"] = "auto" if ratio == "auto" else float(ratio)
        planned_ratio = 1.0 if ratio == "auto" else float(ratio)
        self.p_min = float(p_min)
        self.policy = SamplingPolicy(power=power, temper=temper)  # validates: ValueError
        self.seed = int(seed)
        self.index_field = index_field
        self.rank, self.world_size = _dist()
        self._fn: EmbeddingFn | None = None
        self._table: np.ndarray | None = None
        center: np.ndarray | None = None
        if callable(embeddings) and not isinstance(embeddings, (np.ndarray, torch.Tensor)):
            self._fn = embeddings
        else:
            table = embeddings
            if isinstance(table, torch.Tensor):
                table = table.detach().cpu().numpy()
            self._table = normalize_rows(np.asarray(table))
            if self._table.ndim != 2 or self._table.shape[0] == 0:
                raise ValueError(f"embeddings must be [n, dim], got {list(self._table.shape)}")
            center = self._table.mean(axis=0)
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
        self._server: Any = None
        self._client_timeout = client_timeout
        target, self.sketch_name = self._open_sketch(endpoint, sketch_name, rows, bits, center)
        self.target = target
        self.client = SketchClient(target, timeout=client_timeout)
        self.current: BatchInfo | None = None
        self._centered = center is not None
        # sampler-mode position: permutation pass, next chunk of it, kept rows not yet batched
        self._pass = 0
        self._chunk = self.rank  # rank r scans chunks r, r + W, ... of every pass
        self._pending: list[tuple[int, float]] = []
        self._epoch = 0
        self._consumed = 0  # batches of the current epoch handed to the loop
        self._inflight: deque[list[tuple[int, float]]] = deque()  # drawn, not yet consumed
        self._replay: deque[list[tuple[int, float]]] = deque()  # to hand out again first
        self._candidates_inflight: deque[int] = deque()
        self._filter_batches = 0
        self.stats = {"candidates": 0, "accepted": 0, "batches": 0}

    # ------------------------------------------------------------------ the sketch
    def _open_sketch(
        self,
        endpoint: str | None,
        name: str | None,
        rows: int,
        bits: int,
        center: np.ndarray | None,
    ) -> tuple[str, str]:
        """Rank 0 starts the server (if needed) and creates the sketch; every rank learns both.

        With a callable source the sketch is created on the first batch (its width unknown)."""
        self._pending_create = (rows, bits)
        opened: tuple[str, str] | None = None
        failure: BaseException | None = None
        if self.rank == 0:
            try:
                if endpoint is None:
                    from nws_server.embedded import EmbeddedServer

                    self._server = EmbeddedServer(mode="process").start()
                    endpoint = self._server.target
                name = name or f"nws-{uuid.uuid4().hex[:12]}"
                if self._table is not None:
                    self._create(endpoint, name, self._table.shape[1], rows, bits, center)
                opened = (endpoint, name)
            except Exception as exc:  # every rank must leave the broadcast before raising
                failure = exc
                if self._server is not None:
                    self._server.stop()
                    self._server = None
        shared = _broadcast(opened if failure is None else repr(failure), self.world_size)
        if failure is not None:
            raise failure
        if not isinstance(shared, tuple):
            raise RuntimeError(f"rank 0 could not open the sketch: {shared}")
        return shared

    def _create(self, target: str, name: str, dim: int, rows: int, bits: int, center: Any) -> None:
        with SketchClient(target, timeout=self._client_timeout) as client:
            config = SketchConfig(dim=int(dim), rows=rows, bits=bits, seed=self.seed)
            client.create_sketch(name, config, warmup=self.warmup)
            if center is not None:
                info = client.get(name)
                if info.config.center is None:
                    client.set_center(name, center)

    # ------------------------------------------------------------------ data loading
    def loader(self, dataset: Any, **dataloader_kwargs: Any) -> NWSLoader:
        """A DataLoader over ``dataset`` that yields the kept examples (module docstring).

        ``dataloader_kwargs`` go to :class:`torch.utils.data.DataLoader` (``collate_fn``,
        ``num_workers``, ...); ``batch_size``, ``shuffle`` and ``sampler`` are NWS's to set.
        """
        for key in ("batch_size", "shuffle", "sampler", "batch_sampler", "drop_last"):
            if key in dataloader_kwargs:
                raise ValueError(f"NWSSampler.loader sets {key!r} itself; leave it out")
        collate = dataloader_kwargs.pop("collate_fn", None) or default_collate
        # Each new DataLoader iterator draws a base seed for its workers: from a generator of
        # its own, so that starting (or resuming) an epoch leaves the global torch RNG, and
        # with it the model's dropout, as it was.
        dataloader_kwargs.setdefault("generator", torch.Generator().manual_seed(self.seed))
        if self._table is not None and not isinstance(dataset, IterableDataset):
            if len(dataset) != self.n_examples:
                raise ValueError(
                    f"the dataset has {len(dataset)} examples but embeddings has "
                    f"{self.n_examples} rows"
                )
            inner = DataLoader(
                IndexedDataset(dataset),
                batch_sampler=self.batch_sampler(),
                collate_fn=NWSCollate(collate),
                **dataloader_kwargs,
            )
            return NWSLoader(self, inner, filter_mode=False)
        if self._table is not None and self.index_field is None:
            raise ValueError(
                "an iterable dataset with an embedding table needs index_field: the key of each "
                "example's index"
            )
        inner = DataLoader(
            dataset, batch_size=self.batch_size, collate_fn=collate, **dataloader_kwargs
        )
        return NWSLoader(self, inner, filter_mode=True)

    def batch_sampler(self) -> NWSBatchSampler:
        """The sampler-mode batch sampler (for a DataLoader over :class:`IndexedDataset`)."""
        if self._table is None:
            raise ValueError("a batch sampler needs an embedding table, not a callable")
        return NWSBatchSampler(self)

    # ------------------------------------------------------------------ selection
    def _sync_before_select(self) -> None:
        self.client.flush()
        _barrier(self.world_size)

    def _draw(
        self, x: np.ndarray, stream: int, chunk: int, drawn: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Ask the sketch which rows of ``x`` to keep; the draw's seed is fixed by the run's
        seed, the candidate stream (a permutation pass, or filter mode) and the chunk. In the
        annealed last share of the run (``drawn`` batches drawn before) every row is kept."""
        if batch_annealing(drawn, self.total_steps, self.anneal):
            self.stats["candidates"] += int(x.shape[0])
            self.stats["accepted"] += int(x.shape[0])
            return np.ones(x.shape[0], dtype=bool), np.ones(x.shape[0])
        seed = chunk_seed(self.seed, stream, chunk)
        r = self.client.sample(
            self.sketch_name,
            x,
            self.ratio,
            p_min=self.p_min,
            seed=seed,
            power=self.policy.power,
            temper=self.policy.temper,
        )
        self.stats["candidates"] += int(x.shape[0])
        self.stats["accepted"] += int(r.accepted.sum())
        return r.accepted, r.weights

    def _next_batch(self) -> list[tuple[int, float]]:
        """Sampler mode: the next full batch of (index, weight), replaying drawn ones first."""
        if self._replay:
            batch = self._replay.popleft()
            self._inflight.append(batch)
            return batch
        assert self._table is not None
        self._sync_before_select()
        n, b, w = self.n_examples, self.batch_size, self.world_size
        n_chunks = -(-n // b)
        drawn = self._epoch * self.steps_per_epoch + self._consumed + len(self._inflight)
        while len(self._pending) < b:
            if self._chunk >= n_chunks:
                self._pass, self._chunk = self._pass + 1, self.rank
            c = self._chunk
            self._chunk += w
            if c >= n_chunks:
                continue
            perm = np.random.default_rng([self.seed, self._pass, 0x5EED]).permutation(n)
            rows = perm[c * b : (c + 1) * b]
            accepted, weights = self._draw(self._table[rows], self._pass, c, drawn)
            self._pending.extend(
                (int(i), float(wt)) for i, wt in zip(rows[accepted], weights[accepted], strict=True)
            )
        batch, self._pending = self._pending[:b], self._pending[b:]
        _barrier(self.world_size)
        self._inflight.append(batch)
        return batch

    def _filter(self, batch: Any) -> tuple[Any, BatchInfo]:
        """Filter mode: cut a collated candidate batch down to its kept rows."""
        m = _batch_len(batch)
        if self._table is not None:
            assert self.index_field is not None
            found = _get(batch, self.index_field)
            if found is None:
                raise ValueError(f"the batch has no {self.index_field!r} field (index_field)")
            indices = _to_numpy(found).astype(np.int64).reshape(-1)
            x = self._table[indices]
        else:
            assert self._fn is not None
            with torch.no_grad():
                x = normalize_rows(_to_numpy(self._fn(batch)))
            found = _get(batch, self.index_field) if self.index_field else None
            indices = (
                np.full(m, -1, np.int64)
                if found is None
                else _to_numpy(found).astype(np.int64).reshape(-1)
            )
            self._ensure_sketch(x)
        if x.shape[0] != m:
            raise ValueError(f"the batch has {m} rows but {x.shape[0]} embeddings")
        self._sync_before_select()
        key = self._filter_batches * self.world_size + self.rank
        accepted, weights = self._draw(x, FILTER_STREAM, key, self._filter_batches)
        _barrier(self.world_size)
        self._filter_batches += 1
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
        return _subset(batch, keep, m), info

    def _ensure_sketch(self, x: np.ndarray) -> None:
        """Callable source: create the sketch (rank 0) on the first batch, centred on it."""
        if self._centered:
            return
        if self.rank == 0:
            rows, bits = self._pending_create
            self._create(self.target, self.sketch_name, x.shape[1], rows, bits, x.mean(axis=0))
        _barrier(self.world_size)
        self._centered = True

    # ------------------------------------------------------------------ the loss
    def take(self, batch: Any) -> BatchInfo:
        """Sampler mode: pop the NWS fields off a collated dict batch; note it as consumed."""
        if not isinstance(batch, dict) or INDEX_KEY not in batch:
            raise ValueError(f"not a batch of the NWS loader: no {INDEX_KEY!r} field")
        indices = _to_numpy(batch.pop(INDEX_KEY)).astype(np.int64).reshape(-1)
        weights = _to_numpy(batch.pop(WEIGHT_KEY)).astype(np.float64).reshape(-1)
        if self._inflight:
            drawn = self._inflight.popleft()
            if [i for i, _ in drawn] != indices.tolist():
                raise RuntimeError("batches arrived out of order (use in_order=True)")
        self._consumed += 1
        if self._consumed >= self.steps_per_epoch:
            self._epoch, self._consumed = self._epoch + 1, 0
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
            x = info.embeddings if info.embeddings is not None else self._rows(info.indices)
            self.client.update_async(self.sketch_name, x, observed)
        weights = torch.as_tensor(info.weights, dtype=losses.dtype, device=losses.device)
        self.stats["batches"] += 1
        return weighted_loss(losses, weights, info.normalizer)

    def _rows(self, indices: np.ndarray) -> np.ndarray:
        assert self._table is not None
        return self._table[indices]

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self, *, include_sketch: bool | None = None) -> dict[str, Any]:
        """Position, look-ahead batches and (rank 0 by default) the sketch's exported state.

        Collective under ``torch.distributed``: every rank must call it."""
        self.client.flush()
        _barrier(self.world_size)
        include = self.rank == 0 if include_sketch is None else include_sketch
        sketch = self.client.export_sketch(self.sketch_name) if include else None
        _barrier(self.world_size)
        return {
            "version": STATE_VERSION,
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
            "pass": self._pass,
            "chunk": self._chunk,
            "pending": list(self._pending),
            "epoch": self._epoch,
            "consumed": self._consumed,
            "replay": [list(b) for b in (*self._inflight, *self._replay)],
            "filter_batches": self._filter_batches,
            "centered": self._centered,
            "stats": dict(self.stats),
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
        if state.get("sketch") is not None:
            self.client.import_sketch(self.sketch_name, state["sketch"], replace=True)
        _barrier(self.world_size)
        self._pass, self._chunk = int(state["pass"]), int(state["chunk"])
        self._pending = [(int(i), float(w)) for i, w in state["pending"]]
        self._epoch, self._consumed = int(state["epoch"]), int(state["consumed"])
        self._inflight.clear()
        self._replay = deque([[(int(i), float(w)) for i, w in b] for b in state["replay"]])
        self._filter_batches = int(state["filter_batches"])
        self._centered = bool(state["centered"]) or self._centered
        self.stats = dict(state["stats"])

    def _begin_epoch(self) -> int:
        """Batches the next pass over the loader yields: the rest of an interrupted epoch."""
        self._replay.extendleft(reversed(self._inflight))  # drawn by an abandoned iterator
        self._inflight.clear()
        return self.steps_per_epoch - self._consumed

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Flush the updates, close the client, stop an embedded server this sampler started."""
        try:
            self.client.close()
        finally:
            _barrier(self.world_size)
            if self._server is not None:
                self._server.stop()
                self._server = None

    def __enter__(self) -> NWSSampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- sampler mode


class NWSBatchSampler:
    """Yields ``steps_per_epoch`` full batches of ``(index, weight)`` keys per epoch."""

    def __init__(self, nws: NWSSampler) -> None:
        self.nws = nws

    def __len__(self) -> int:
        return self.nws.steps_per_epoch

    def __iter__(self) -> Iterator[list[tuple[int, float]]]:
        for _ in range(self.nws._begin_epoch()):
            yield self.nws._next_batch()


class IndexedDataset(Dataset):
    """A map-style dataset whose items carry their index and weight (dict items get the keys
    ``nws_index`` / ``nws_weight``; other items become ``(item, index, weight)``)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Any) -> Any:
        index, weight = (key, 1.0) if isinstance(key, (int, np.integer)) else key
        item = self.dataset[int(index)]
        if isinstance(item, Mapping):
            return {**item, INDEX_KEY: int(index), WEIGHT_KEY: float(weight)}
        return (item, int(index), float(weight))


class NWSCollate:
    """The user's collate function on the items without the NWS fields; the fields are put back
    into the batch as tensors (so they survive workers, pinning and device moves)."""

    def __init__(self, collate: Callable[[list[Any]], Any]) -> None:
        self.collate = collate

    def __call__(self, items: list[Any]) -> Any:
        if items and isinstance(items[0], Mapping):
            indices = [it[INDEX_KEY] for it in items]
            weights = [it[WEIGHT_KEY] for it in items]
            plain = [
                {k: v for k, v in it.items() if k not in (INDEX_KEY, WEIGHT_KEY)} for it in items
            ]
        else:
            indices = [it[1] for it in items]
            weights = [it[2] for it in items]
            plain = [it[0] for it in items]
        batch = self.collate(plain)
        if not isinstance(batch, Mapping):
            batch = {"batch": batch}
        batch = dict(batch)
        batch[INDEX_KEY] = torch.tensor(indices, dtype=torch.int64)
        batch[WEIGHT_KEY] = torch.tensor(weights, dtype=torch.float64)
        return batch


class NWSLoader:
    """Iterates a DataLoader and yields the user's batches; NWS's view is ``nws.current``."""

    def __init__(self, nws: NWSSampler, loader: DataLoader, *, filter_mode: bool) -> None:
        self.nws = nws
        self.loader = loader
        self.filter_mode = filter_mode

    def __len__(self) -> int:
        return len(self.loader)

    def loss(self, losses: torch.Tensor, info: BatchInfo | None = None) -> torch.Tensor:
        """:meth:`NWSSampler.loss`: the weighted loss of the batch just yielded."""
        return self.nws.loss(losses, info)

    def state_dict(self) -> dict[str, Any]:
        return self.nws.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.nws.load_state_dict(state)

    def __iter__(self) -> Iterator[Any]:
        nws = self.nws
        for batch in self.loader:
            if self.filter_mode:
                batch, info = nws._filter(batch)
                nws.current = info
            else:
                info = nws.take(batch)
                if set(batch) == {"batch"}:  # a non-dict collate result, wrapped
                    batch = batch["batch"]
            if isinstance(batch, dict):
                batch = NWSBatch(batch)
                batch.nws = info
            yield batch


class NWSBatch(dict):
    """A dict batch with NWS's :class:`BatchInfo` attached as ``.nws``."""

    nws: BatchInfo | None = None


# --------------------------------------------------------------------------- losses


def per_example_loss(
    logits: torch.Tensor, labels: torch.Tensor, *, causal: bool = True
) -> torch.Tensor:
    """One loss per example: cross-entropy for classification logits [n, c]; the mean over
    the valid tokens (labels != -100) for language-model logits [n, t, v] (shifted by one for
    causal models)."""
    if logits.dim() == 2:
        return F.cross_entropy(logits.float(), labels, reduction="none")
    if causal:
        logits, labels = logits[:, :-1], labels[:, 1:]
    tokens = F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]),
        labels.reshape(-1),
        reduction="none",
        ignore_index=-100,
    ).view(labels.shape)
    valid = (labels != -100).to(tokens.dtype)
    return (tokens * valid).sum(dim=1) / valid.sum(dim=1).clamp_min(1.0)


# --------------------------------------------------------------------------- helpers


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _get(batch: Any, key: str | None) -> Any:
    if key is None:
        return None
    if isinstance(batch, Mapping):
        return batch.get(key)
    return getattr(batch, key, None)


def _batch_len(batch: Any) -> int:
    if isinstance(batch, Mapping):
        first = next(iter(batch.values()))
        return len(first)
    if isinstance(batch, (list, tuple)):
        return len(batch[0])
    return len(batch)


def _subset(batch: Any, keep: np.ndarray, m: int) -> Any:
    """Rows ``keep`` of every per-row field (tensors, arrays, lists of length m)."""
    idx = torch.from_numpy(keep)

    def cut(v: Any) -> Any:
        if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == m:
            return v.index_select(0, idx.to(v.device))
        if isinstance(v, np.ndarray) and v.ndim > 0 and v.shape[0] == m:
            return v[keep]
        if isinstance(v, list) and len(v) == m:
            return [v[i] for i in keep]
        return v

    if isinstance(batch, Mapping):
        return {k: cut(v) for k, v in batch.items()}
    if isinstance(batch, tuple):
        return tuple(cut(v) for v in batch)
    if isinstance(batch, list) and not (len(batch) == m and not isinstance(batch[0], Sequence)):
        return [cut(v) for v in batch]
    return cut(batch)


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
