"""Compute-normalised time: a run's counted work priced at unit costs measured on this machine.

One run's wall-clock on a shared 2-core machine swings ~1.8x on identical work, so the
benchmarks compare runs by the work they did (the trainer's ledger, :meth:`Trainer.ledger`)
priced at per-unit costs that :func:`calibrate` measures once per invocation, on the same machine
and model, with training steps and no-gradient forwards interleaved so that a disturbance hits
both alike. The price of a run:

    seconds = grad_tokens * grad_per_token + steps * optimizer_step
            + nograd_tokens * nograd_per_token
            + select_seconds + update_seconds            (sampling overhead, as measured)
            + embedding pass (encoder: its tokens * nograd_per_token; tokens: as measured)

Tokens are padded tokens (each batch is trimmed to its longest row), so a strategy that keeps
long rows pays for them; the embedding pass counts its unpadded tokens. Evaluation and the probe
are diagnostics and are not priced. Not priced either: the sketch server's own work on streamed
updates (the trainer times only handing them to the client's queue; a ``Sample`` is a round trip
and is timed whole). With an embedded server on the same cores that work competes with training,
which shows in wall-clock, not in compute-normalised time.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, cast

import numpy as np
import torch

from nws_trainer.loss import per_example_loss
from nws_trainer.models import load_classifier
from nws_trainer.prepare import Prepared


@dataclass(frozen=True)
class UnitCosts:
    """Seconds per unit of work, measured by :func:`calibrate`."""

    grad_per_token: float
    """Forward + backward of a training batch, per padded token."""
    optimizer_step: float
    """Gradient clipping + AdamW step + zero_grad, per optimizer step."""
    nograd_per_token: float
    """A no-gradient forward (eval mode), per padded token."""
    batch_size: int
    reps: int
    grad_per_token_spread: float
    """Relative spread (interquartile range / median) of the per-token training cost."""
    nograd_per_token_spread: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> UnitCosts:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


def _spread(values: list[float]) -> float:
    q1, med, q3 = np.percentile(values, [25, 50, 75])
    return float((q3 - q1) / med) if med > 0 else 0.0


def calibrate(
    prep: Prepared,
    batch_size: int,
    reps: int = 8,
    warmup: int = 2,
    device: torch.device | None = None,
    seed: int = 0,
) -> UnitCosts:
    """Measure :class:`UnitCosts` with ``prep``'s model and training rows at ``batch_size``.

    Each repetition times one training step (forward + backward, then the optimizer step) and
    one no-gradient forward on random batches of training rows, back to back; the first
    ``warmup`` repetitions are discarded, the medians of the rest kept.
    """
    device = device or torch.device("cpu")
    torch.manual_seed(seed)
    model = cast(torch.nn.Module, load_classifier(prep.model_dir, len(prep.label_names)))
    model.to(device)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=prep.config.lr)
    rng = np.random.default_rng(seed)
    n = len(prep.train)
    labels = prep.train.labels
    grad, step, nograd = [], [], []
    for rep in range(warmup + reps):
        batches = [rng.choice(n, size=min(batch_size, n), replace=False) for _ in range(2)]
        inputs = prep.train_tokens.batch(batches[0])
        y = torch.from_numpy(labels[batches[0]].astype(np.int64)).to(device)
        inputs = {k: v.to(device) for k, v in inputs.items()}
        t0 = time.perf_counter()
        loss = per_example_loss(model(**inputs).logits.float(), y).mean()
        loss.backward()
        t1 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        t2 = time.perf_counter()
        tokens = prep.train_tokens.batch(batches[1])
        tokens = {k: v.to(device) for k, v in tokens.items()}
        model.eval()
        t3 = time.perf_counter()
        with torch.inference_mode():
            model(**tokens)
        t4 = time.perf_counter()
        model.train()
        if rep >= warmup:
            grad.append((t1 - t0) / inputs["input_ids"].numel())
            step.append(t2 - t1)
            nograd.append((t4 - t3) / tokens["input_ids"].numel())
    return UnitCosts(
        grad_per_token=float(np.median(grad)),
        optimizer_step=float(np.median(step)),
        nograd_per_token=float(np.median(nograd)),
        batch_size=batch_size,
        reps=reps,
        grad_per_token_spread=_spread(grad),
        nograd_per_token_spread=_spread(nograd),
    )


def price(ledger: Mapping[str, Any], costs: UnitCosts) -> dict[str, float]:
    """Compute-normalised seconds of a ledger, by part, and their ``total``."""
    if ledger.get("embedding_source") == "encoder":
        embedding = float(ledger["embedding_tokens"]) * costs.nograd_per_token
    else:
        embedding = float(ledger.get("embedding_seconds") or 0.0)
    parts = {
        "train": float(ledger["grad_tokens"]) * costs.grad_per_token
        + float(ledger["steps"]) * costs.optimizer_step,
        "selection_forward": float(ledger["nograd_tokens"]) * costs.nograd_per_token,
        "sampling": float(ledger["select_seconds"]) + float(ledger["update_seconds"]),
        "embedding": embedding,
    }
    parts["total"] = sum(parts.values())
    return parts
