"""Forward passes without gradients: test accuracy and loss, per-example losses, live embeddings."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from nws_trainer.loader import Tokens
from nws_trainer.loss import per_example_loss, residual_norm
from nws_trainer.models import mean_pool


@dataclass(frozen=True)
class Forward:
    """Per-example results of a no-gradient forward pass."""

    losses: np.ndarray
    """float64 [n] cross-entropy."""
    correct: np.ndarray
    """bool [n]: argmax equals the label."""
    pooled: np.ndarray | None
    """float32 [n, hidden]: mean-pooled last hidden states (when asked for)."""
    residuals: np.ndarray | None = None
    """float64 [n] ||softmax - onehot||_2 (:func:`nws_trainer.loss.residual_norm`)."""

    def feedback(self, kind: str) -> np.ndarray:
        """The per-example value a sketch learns: ``loss`` or ``grad-norm``."""
        if kind == "loss":
            return self.losses
        assert self.residuals is not None
        return self.residuals


def forward_no_grad(
    model: torch.nn.Module,
    inputs: dict[str, torch.Tensor],
    labels: torch.Tensor,
    device: torch.device,
    pooled: bool = False,
) -> Forward:
    """One batch in eval mode (no dropout); restores the model's previous mode."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            batch = {k: v.to(device) for k, v in inputs.items()}
            out = model(**batch, output_hidden_states=pooled)
            y = labels.to(device)
            losses = per_example_loss(out.logits.float(), y)
            residuals = residual_norm(out.logits.float(), y)
            emb = None
            if pooled:
                emb = mean_pool(out.hidden_states[-1], batch["attention_mask"]).float().cpu()
    finally:
        model.train(was_training)
    return Forward(
        losses=losses.double().cpu().numpy(),
        correct=(out.logits.argmax(dim=-1) == y).cpu().numpy(),
        pooled=None if emb is None else emb.numpy(),
        residuals=residuals.double().cpu().numpy(),
    )


def forward_rows(
    model: torch.nn.Module,
    tokens: Tokens,
    labels: np.ndarray,
    rows: np.ndarray,
    batch_size: int,
    device: torch.device,
    pooled: bool = False,
) -> Forward:
    """:func:`forward_no_grad` over ``rows`` of a tokenised set, in batches."""
    parts = []
    for start in range(0, rows.size, batch_size):
        idx = rows[start : start + batch_size]
        y = torch.from_numpy(labels[idx].astype(np.int64))
        parts.append(forward_no_grad(model, tokens.batch(idx), y, device, pooled))
    if not parts:
        return Forward(np.zeros(0), np.zeros(0, dtype=bool), None, np.zeros(0))
    return Forward(
        losses=np.concatenate([p.losses for p in parts]),
        correct=np.concatenate([p.correct for p in parts]),
        residuals=np.concatenate([p.residuals for p in parts if p.residuals is not None]),
        pooled=np.concatenate([p.pooled for p in parts if p.pooled is not None])
        if pooled
        else None,
    )


def evaluate(
    model: torch.nn.Module,
    tokens: Tokens,
    labels: np.ndarray,
    batch_size: int,
    device: torch.device,
) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) over a whole tokenised set.

    Rows go through in order of length, so each batch is trimmed to similar lengths: about 2x
    faster than a random order on short texts (12 s vs 27 s for 3,000 test rows with MiniLM on
    2 cores), with the same result, since both means are order-free.
    """
    rows = np.argsort(tokens.lengths(), kind="stable")
    f = forward_rows(model, tokens, labels, rows, batch_size, device)
    return float(f.correct.mean()), float(f.losses.mean())
