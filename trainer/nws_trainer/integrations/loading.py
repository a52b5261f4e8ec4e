"""The data-loading side of NWS sampling: how kept examples reach a user's loop.

Sampler mode: :class:`NWSBatchSampler` yields batches of ``(index, weight)`` keys,
:class:`IndexedDataset` loads those examples and tags them, :class:`NWSCollate` runs the user's
collate function on the plain items and puts the tags back as tensors, and :class:`NWSLoader`
takes them off again before the batch reaches the loop (the sampler notes what it took). Filter
mode: :class:`NWSLoader` cuts each candidate batch down to its kept rows. Either way the loop
sees its own batches, and NWS's view of the batch is a :class:`BatchInfo`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, IterableDataset
from torch.utils.data.dataloader import default_collate

from nws_trainer.selection import normalize_rows

if TYPE_CHECKING:
    from nws_trainer.integrations.torch import NWSSampler

INDEX_KEY = "nws_index"
WEIGHT_KEY = "nws_weight"


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


class NWSBatchSampler:
    """Yields ``steps_per_epoch`` full batches of ``(index, weight)`` keys per epoch."""

    def __init__(self, nws: NWSSampler) -> None:
        self.nws = nws

    def __len__(self) -> int:
        return self.nws.steps_per_epoch

    def __iter__(self) -> Iterator[list[tuple[int, float]]]:
        for _ in range(self.nws.begin_epoch()):
            yield self.nws.next_batch()


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
                batch, info = nws.filter(batch)
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


def make_loader(nws: NWSSampler, dataset: Any, dataloader_kwargs: dict[str, Any]) -> NWSLoader:
    """:meth:`NWSSampler.loader`: sampler mode for a map-style dataset with a table, else filter
    mode."""
    for key in ("batch_size", "shuffle", "sampler", "batch_sampler", "drop_last"):
        if key in dataloader_kwargs:
            raise ValueError(f"NWSSampler.loader sets {key!r} itself; leave it out")
    collate = dataloader_kwargs.pop("collate_fn", None) or default_collate
    # Each new DataLoader iterator draws a base seed for its workers: from a generator of
    # its own, so that starting (or resuming) an epoch leaves the global torch RNG, and
    # with it the model's dropout, as it was.
    dataloader_kwargs.setdefault("generator", torch.Generator().manual_seed(nws.seed))
    if nws.has_table and not isinstance(dataset, IterableDataset):
        if len(dataset) != nws.n_examples:
            raise ValueError(
                f"the dataset has {len(dataset)} examples but embeddings has {nws.n_examples} rows"
            )
        inner = DataLoader(
            IndexedDataset(dataset),
            batch_sampler=nws.batch_sampler(),
            collate_fn=NWSCollate(collate),
            **dataloader_kwargs,
        )
        return NWSLoader(nws, inner, filter_mode=False)
    if nws.has_table and nws.index_field is None:
        raise ValueError(
            "an iterable dataset with an embedding table needs index_field: the key of each "
            "example's index"
        )
    inner = DataLoader(dataset, batch_size=nws.batch_size, collate_fn=collate, **dataloader_kwargs)
    return NWSLoader(nws, inner, filter_mode=True)


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


def to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def get_field(batch: Any, key: str | None) -> Any:
    if key is None:
        return None
    if isinstance(batch, Mapping):
        return batch.get(key)
    return getattr(batch, key, None)


def batch_len(batch: Any) -> int:
    if isinstance(batch, Mapping):
        first = next(iter(batch.values()))
        return len(first)
    if isinstance(batch, (list, tuple)):
        return len(batch[0])
    return len(batch)


def subset_rows(batch: Any, keep: np.ndarray, m: int) -> Any:
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


def embedding_source(
    embeddings: np.ndarray | torch.Tensor | Callable[[Any], Any],
) -> tuple[Callable[[Any], Any] | None, np.ndarray | None]:
    """An NWSSampler's embeddings: (callable, None) or (None, the L2-normalised table [n, dim])."""
    if callable(embeddings) and not isinstance(embeddings, (np.ndarray, torch.Tensor)):
        return embeddings, None
    if isinstance(embeddings, torch.Tensor):
        embeddings = embeddings.detach().cpu().numpy()
    table = normalize_rows(np.asarray(embeddings))
    if table.ndim != 2 or table.shape[0] == 0:
        raise ValueError(f"embeddings must be [n, dim], got {list(table.shape)}")
    return None, table
