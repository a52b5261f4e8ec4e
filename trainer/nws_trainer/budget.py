"""How long a run is: its step budget, the candidate passes it may make, its planned steps."""

from __future__ import annotations

import math

from nws_trainer.config import TrainConfig
from nws_trainer.strategies import strategy_for

UNBOUNDED_PASSES = 10**6
"""Candidate passes under a step budget: the stream is lazy, the budget is what stops it."""


def budget_steps(cfg: TrainConfig, n_train: int) -> int | None:
    """The run's step budget (``budget_steps``, or ``budget_share`` of full's steps), if any."""
    if cfg.budget_steps is not None:
        return cfg.budget_steps
    if cfg.budget_share is not None:
        full = math.ceil(n_train / cfg.batch_size) * cfg.epochs
        return max(1, round(cfg.budget_share * full))
    return None


def candidate_epochs(cfg: TrainConfig, n_train: int) -> int:
    """Passes the candidate stream may make: ``epochs``, or unbounded under a step budget."""
    return cfg.epochs if budget_steps(cfg, n_train) is None else UNBOUNDED_PASSES


def planned_steps(cfg: TrainConfig, n_train: int) -> int:
    """Expected optimizer steps (for progress bars and the linear learning-rate schedule)."""
    budget = budget_steps(cfg, n_train)
    if budget is not None:
        return budget if cfg.max_steps is None else min(budget, cfg.max_steps)
    strategy = strategy_for(cfg)
    b = cfg.batch_size
    chunks = math.ceil(n_train / b)
    if strategy.step_per_chunk or cfg.batching == "shrink" or cfg.sampling == "prune":
        total = chunks * cfg.epochs  # infobatch, prune: an upper bound (pruning is data-dependent)
    else:
        warm = min(cfg.warmup_steps * b, n_train) if strategy.uses_sketch else 0
        full = n_train * cfg.epochs * cfg.anneal  # the annealed last share keeps every candidate
        # auto: an upper bound (it keeps every candidate while sampling would not pay)
        kept = warm + max(n_train * cfg.epochs - full - warm, 0) * cfg.fixed_ratio() + full
        total = math.ceil(kept / b)
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    return max(total, 1)
