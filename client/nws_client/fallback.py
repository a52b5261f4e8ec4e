"""What :meth:`~nws_client.SketchClient.sample` answers when the sketch server cannot be reached
(the client's ``on_unavailable``; see :mod:`nws_client.client`).

* ``"accept_all"``: keep every row with weight 1 and probability 1: plain training on the full
  candidate batch, unbiased, no selection; the estimates are NaN;
* ``"uniform"``: keep each row with probability ``ratio`` and weight ``1 / ratio``: unbiased,
  and the compute saving of the target ratio is kept. Under ``ratio="auto"`` there is no target
  ratio to keep (the server chooses it from estimates the client does not have), so ``"uniform"``
  keeps every row (ratio 1, weight 1): the safe choice, since sampling without priorities never
  pays in the noise-dominated regime. The prune policy's fallback keeps every row too.

Before answering, the request's settings get the checks the server
would have made, so a bad request fails the same way with the server up or down.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from nws_client.errors import InvalidArgument, NWSClientError
from nws_client.results import SampleResult

OnUnavailable = Literal["raise", "accept_all", "uniform"]
ON_UNAVAILABLE: tuple[OnUnavailable, ...] = ("raise", "accept_all", "uniform")


def is_auto(ratio: object) -> bool:
    """Whether a ratio is ``"auto"``; any other string is refused."""
    if isinstance(ratio, str):
        if ratio != "auto":
            raise InvalidArgument(f"ratio must be a number in (0, 1] or 'auto', got {ratio!r}")
        return True
    return False


def fallback_ratio(
    target: float,
    *,
    auto: bool,
    prune: bool,
    prune_rate: float | None,
    ratio_min: float | None,
    auto_threshold: float | None,
    exc: Exception,
) -> float:
    """The keep ratio of a fallback answer, after the server's checks of the request's other
    settings (InvalidArgument, chained to the ``exc`` that made the fallback)."""
    if prune:
        r = prune_rate
        if r is not None and not (isinstance(r, (int, float)) and 0.0 <= r < 1.0):
            raise InvalidArgument(f"prune_rate must be in [0, 1), got {r!r}") from exc
        return 1.0
    if not auto:
        if ratio_min is not None or auto_threshold is not None:
            raise InvalidArgument("ratio_min and auto_threshold need ratio='auto'") from exc
        return target
    if ratio_min is not None and not (
        isinstance(ratio_min, (int, float)) and 0.0 < ratio_min <= 1.0
    ):
        raise InvalidArgument(f"ratio_min must be in (0, 1], got {ratio_min!r}") from exc
    if auto_threshold is not None and not (
        isinstance(auto_threshold, (int, float)) and 0.0 <= auto_threshold < float("inf")
    ):
        raise InvalidArgument(
            f"auto_threshold must be a finite number >= 0, got {auto_threshold!r}"
        ) from exc
    return 1.0


def fallback_sample(
    policy: OnUnavailable, n: int, ratio: float, seed: int | None, exc: NWSClientError
) -> SampleResult:
    """The answer of ``policy`` for ``n`` rows at keep ratio ``ratio`` (``fallback`` True)."""
    if not (isinstance(ratio, (int, float)) and 0.0 < ratio <= 1.0):
        raise InvalidArgument(f"ratio must be in (0, 1], got {ratio}") from exc
    if policy == "accept_all":
        accepted = np.ones(n, dtype=bool)
        probabilities = np.ones(n)
    else:
        accepted = np.random.default_rng(seed).random(n) < ratio
        probabilities = np.full(n, float(ratio))
    return SampleResult(
        accepted=accepted,
        weights=np.where(accepted, 1.0 / probabilities, 0.0),
        probabilities=probabilities,
        estimates=np.full(n, np.nan),
        prior_used=np.zeros(n, dtype=bool),
        warmup=False,
        fallback=True,
        ratio=float(probabilities[0]) if n else float(ratio),
        variance_factor=1.0,
    )
