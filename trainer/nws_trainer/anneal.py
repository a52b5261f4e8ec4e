"""Annealing: the last share of a run trains on every candidate with weight 1.

InfoBatch (Qin et al., ICLR 2024) trains its last epochs (12.5 % of the run by default) on the
full data, which removes the small bias its pruning leaves and lets the model settle on the true
data distribution. The same option for the sketch strategies is ``anneal`` (a share of the run in
[0, 1); 0, the default, is off until measurements say otherwise):

- ``nws-train`` (:class:`Anneal`, applied by :class:`~nws_trainer.loader.CandidateStream`): a run
  over ``epochs`` passes anneals by *candidate position*: chunk c of epoch e (of C chunks per
  epoch) skips the selector and keeps every candidate once (e * C + c) / (epochs * C) >= 1 -
  anneal, exactly and in every loader worker (each knows the chunk numbers it owns). Under a step
  budget the stream is unbounded, so progress is the trainer's share of the budget done, which
  the trainer publishes after every step into shared memory that loader workers read: exact with
  ``--num-workers 0``; with workers, annealing starts up to the loader's look-ahead (2 batches per
  worker) late.
- :class:`~nws_trainer.integrations.torch.NWSSampler` anneals by the batches it has drawn out of
  the run's total (``epochs`` or ``total_steps``); the Hugging Face ``NWSTrainer`` tells it the
  total from the Trainer's ``max_steps``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch


def check_share(anneal: float) -> float:
    """``anneal`` as a float in [0, 1); ValueError otherwise."""
    ok = isinstance(anneal, (int, float)) and not isinstance(anneal, bool)
    if not (ok and math.isfinite(anneal) and 0.0 <= anneal < 1.0):
        raise ValueError(f"anneal must be in [0, 1), got {anneal!r}")
    return float(anneal)


def annealing(progress: float, anneal: float) -> bool:
    """Whether a point ``progress`` in [0, 1] of a run falls in its last ``anneal`` share."""
    return anneal > 0 and progress >= 1.0 - anneal - 1e-12


def batch_annealing(drawn: int, total: int | None, anneal: float) -> bool:
    """Whether the batch after ``drawn`` drawn ones, of a run of ``total``, keeps every
    candidate (:class:`~nws_trainer.integrations.torch.NWSSampler`)."""
    if anneal <= 0:
        return False
    if total is None:
        raise ValueError("anneal needs the run's length: give NWSSampler epochs or total_steps")
    return annealing(drawn / max(total, 1), anneal)


@dataclass
class Anneal:
    """When :class:`~nws_trainer.loader.CandidateStream` bypasses its selector (module
    docstring). Picklable for spawned loader workers: the step share lives in shared memory."""

    share: float
    budget: int | None = None
    """The run's step budget; None: anneal by candidate position."""
    _done: torch.Tensor = field(
        default_factory=lambda: torch.zeros(1, dtype=torch.float64).share_memory_(), repr=False
    )

    def __post_init__(self) -> None:
        check_share(self.share)

    def steps_done(self, steps: int) -> None:
        """The trainer's progress under a step budget (call after every step)."""
        if self.budget:
            self._done[0] = steps / self.budget

    def active(self, epoch: int, chunk: int, chunks: int, epochs: int) -> bool:
        """Whether candidate chunk ``chunk`` (of ``chunks``) of ``epoch`` (of ``epochs``)
        keeps every candidate."""
        if self.budget is not None:
            progress = float(self._done[0])
        else:
            progress = (epoch * chunks + chunk) / max(epochs * chunks, 1)
        return annealing(progress, self.share)


def for_run(share: float, budget: int | None) -> Anneal | None:
    """The annealing of an ``nws-train`` run: None when off."""
    return Anneal(share, budget) if share > 0 else None
