"""The probe: how well the sketch (or the loss table) ranks the current model's true losses.

At every evaluation a fixed sample of training rows is forwarded without gradient and their
true values (loss, or the streamed ``--feedback``) are compared with what the run would select
them by: the sketch's estimates, or the table's latest losses. Diagnostics only: not counted in
the compute ledger, and the training clock is paused around it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from nws_client import DeadlineExceeded, Unavailable
from nws_trainer.diagnostics import coefficient_of_variation, spearman
from nws_trainer.evaluate import forward_rows

if TYPE_CHECKING:
    from nws_trainer.train import Trainer

EMPTY: dict[str, Any] = {
    "probe_spearman": None,
    "probe_estimate_cv": None,
    "probe_loss_cv": None,
    "probe_prior_hit_rate": None,
    "sketch_observations": None,
}


def probe(trainer: Trainer) -> dict[str, Any]:
    """The probe columns of a metrics row (all None without a sketch, a table or a probe)."""
    t, cfg, prep = trainer, trainer.cfg, trainer.prep
    if prep.probe.size == 0 or (t.table is None and t.backend is None):
        return dict(EMPTY)
    f = forward_rows(
        t.model,
        prep.train_tokens,
        t.train_labels,
        prep.probe,
        cfg.eval_batch_size,
        t.device,
        pooled=t.strategy.pooled,
    )
    if t.table is not None:
        scores, unseen = t.table.scores(prep.probe)
        return probe_row(scores, f.losses, unseen, t.table.observations)
    assert t.backend is not None
    x = t.strategy.probe_rows(t, f)
    try:
        t.backend.flush()
        answer = t.backend.score(x)
        stats = t.backend.stats()
    except (Unavailable, DeadlineExceeded) as exc:
        if cfg.sketch_on_unavailable == "raise":
            raise
        t.log(f"nws-train: probe skipped, the sketch server is unreachable: {exc}")
        return dict(EMPTY)
    truth = f.feedback(cfg.feedback)
    return probe_row(answer.estimates, truth, answer.prior_used, stats.get("observations"))


def probe_row(
    estimates: np.ndarray, losses: np.ndarray, prior_used: np.ndarray, observations: Any
) -> dict[str, Any]:
    """The probe columns of a metrics row: estimates (or table scores) against true losses."""
    return {
        "probe_spearman": spearman(estimates, losses),
        "probe_estimate_cv": coefficient_of_variation(estimates),
        "probe_loss_cv": coefficient_of_variation(losses),
        "probe_prior_hit_rate": float(np.mean(prior_used)),
        "sketch_observations": observations,
    }
