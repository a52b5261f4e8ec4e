"""The importance-weighted training loss, and its normalisation in each batching mode.

An example kept with probability p carries weight w = 1/p, so E[kept * w * loss] = loss for every
candidate: a weighted sum over the kept examples is an unbiased estimate of the sum over all the
candidates they were drawn from. What the sum is divided by depends on the batching mode:

- ``shrink`` (the paper's): each candidate chunk of n examples is cut down to its kept part, and
  the loss is ``sum_kept(w_i * l_i) / n``. Dividing by the *candidate* count n (a constant, not a
  random quantity) keeps the step an unbiased estimate of the full chunk's mean loss, so the
  gradient has the same expectation as a full-batch step while costing only the kept part.
- ``fill`` (loader workers accumulate kept examples into full batches): the number of
  candidates scanned to fill a batch is itself random, so the loss is self-normalised,
  ``sum(w_i * l_i) / sum(w_i)``. ``sum(w_i)`` estimates that candidate count without bias, and the
  ratio is a consistent estimate (bias O(1/batch)) of the candidates' mean loss with the gradient
  scale of an ordinary mean-loss step whatever the acceptance rate. This is what keeps the
  learning rate meaning the same thing across strategies.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def per_example_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every row, shape [n] (no reduction)."""
    return F.cross_entropy(logits, labels, reduction="none")


def residual_norm(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """||softmax(logits) - onehot(label)||_2 of every row, shape [n], in [0, sqrt(2)].

    The norm of the cross-entropy's gradient with respect to the logits: the part of an
    example's gradient norm that the example decides (the rest is the network's Jacobian, shared
    by all rows), the upper-bound proxy of Katharopoulos & Fleuret (ICML 2018). Unlike the loss
    it is bounded, so a mislabelled row the model confidently gets "wrong" weighs at most sqrt(2)
    against a typical row's ~0.1-1, instead of a loss of 5-10.
    """
    probs = torch.softmax(logits, dim=-1)
    onehot = F.one_hot(labels, num_classes=logits.shape[-1]).to(probs.dtype)
    return torch.linalg.vector_norm(probs - onehot, dim=-1)


def weighted_loss(
    losses: torch.Tensor, weights: torch.Tensor, normalizer: float | None = None
) -> torch.Tensor:
    """Reduce per-example ``losses`` with importance ``weights`` to one scalar.

    ``normalizer=None`` self-normalises (divides by ``weights.sum()``, the ``fill`` mode); a
    number divides by it (the ``shrink`` mode passes the candidate count). Weights of 1 with
    ``normalizer=None`` give the plain mean.
    """
    if losses.shape != weights.shape:
        raise ValueError(
            f"losses and weights must have the same shape, got {list(losses.shape)} "
            f"and {list(weights.shape)}"
        )
    w = weights.to(losses.dtype)
    total = (w * losses).sum()
    if normalizer is None:
        return total / w.sum().clamp_min(torch.finfo(losses.dtype).tiny)
    if normalizer <= 0:
        raise ValueError(f"normalizer must be > 0, got {normalizer}")
    return total / normalizer
