"""Where sampling decisions come from: the :class:`SketchBackend` protocol and its in-process form.

A backend scores candidate embeddings with a Nadaraya-Watson sketch, draws which to keep
(:meth:`SketchBackend.sample`) and learns from the losses the trainer observes
(:meth:`SketchBackend.update`). Two implementations exist:

- :class:`~nws_trainer.grpc_backend.GrpcBackend`: a sketch on a gRPC sketch server (an embedded
  one on a loopback port by default). This is what ``nws-train`` uses; loader worker processes
  each open their own client lazily from a picklable :class:`BackendSpec`.
- :class:`InProcessBackend`: the engine and the policy called directly in this process. It
  cannot be shared with loader worker processes; it exists for unit tests and notebooks.

Both answer with the API types of :mod:`nws_client.results` (the objects the client returns),
so a Sample answer reaches the trainer's batchers as the one type it has everywhere.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import threading
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

import nws_core.keep_ratio as keep_ratio
import nws_core.policy as policy
import nws_core.sampling as sampling
from nws_client.results import SampleResult, ScoreResult
from nws_core.prune import Prune
from nws_core.sketch import NWSketch, SketchConfig

Ratio = float | Literal["auto"]
"""A keep ratio in (0, 1], or ``"auto"``: the sketch's side picks it per request."""


@runtime_checkable
class SketchBackend(Protocol):
    """The sampling source the trainer and its loader workers talk to."""

    def sample(
        self,
        embeddings: np.ndarray,
        ratio: Ratio,
        p_min: float,
        seed: int | None,
        rule: policy.SamplingPolicy | None = None,
        prune_rate: float | None = None,
        auto: keep_ratio.AutoRatio | None = None,
    ) -> SampleResult:
        """Score ``embeddings`` [n, dim] and draw which rows to keep (reproducible for a seed);
        ``rule``: the policy levers (default: p ∝ estimate, weights 1/p); ``ratio="auto"``: the
        keep ratio chosen per request (:mod:`nws_core.keep_ratio`; ``auto`` its settings,
        default ratio_min 0.3, threshold 0.05); ``prune_rate``: the ``prune`` policy instead
        (:mod:`nws_core.prune`; ratio, p_min and rule unused)."""
        ...

    def score(self, embeddings: np.ndarray) -> ScoreResult:
        """Estimated loss of every row, without drawing."""
        ...

    def update(self, embeddings: np.ndarray, losses: np.ndarray) -> None:
        """Add observed (embedding, loss) pairs; may return before they are applied."""
        ...

    def flush(self) -> None:
        """Wait until every update handed to :meth:`update` has been applied."""
        ...

    def set_center(self, center: np.ndarray) -> None:
        """Fix the sketch's centering vector (once, while the sketch is empty)."""
        ...

    def decay(self, factor: float) -> None:
        """Multiply everything the sketch holds by ``factor`` (forget the past)."""
        ...

    def stats(self) -> dict[str, Any]:
        """The sketch's statistics as plain JSON-able values."""
        ...

    def spec(self) -> BackendSpec:
        """A picklable recipe that opens a handle on the same sketch in another process."""
        ...

    def close(self) -> None:
        """Release connections (not the sketch)."""
        ...


class BackendSpec(Protocol):
    """Picklable: what a loader worker needs to open its own handle on the trainer's sketch."""

    def open(self) -> SketchBackend: ...


# ------------------------------------------------------------------------- in-process backend

_LOCAL: dict[int, InProcessBackend] = {}
_LOCAL_IDS = itertools.count()


@dataclass(frozen=True)
class LocalSpec:
    """Reopens an :class:`InProcessBackend`, but only inside the process that created it."""

    key: int
    pid: int

    def open(self) -> SketchBackend:
        if os.getpid() != self.pid or self.key not in _LOCAL:
            raise RuntimeError(
                "the in-process sketch backend cannot be shared with loader worker processes; "
                "use a sketch server (the default) or --num-workers 0"
            )
        return _LOCAL[self.key]


class InProcessBackend:
    """A sketch engine and the sampling policy in this process (tests, notebooks)."""

    def __init__(self, config: SketchConfig, warmup: int = 0, device: str = "cpu") -> None:
        self._sketch = NWSketch(config, device=device)
        self._warmup = int(warmup)
        self._lock = threading.Lock()
        self._sampled = 0
        self._accepted = 0
        self._keep = keep_ratio.KeepRatioState()
        self._key = next(_LOCAL_IDS)
        _LOCAL[self._key] = self

    @property
    def sketch(self) -> NWSketch:
        return self._sketch

    def sample(
        self,
        embeddings: np.ndarray,
        ratio: Ratio,
        p_min: float,
        seed: int | None,
        rule: policy.SamplingPolicy | None = None,
        prune_rate: float | None = None,
        auto: keep_ratio.AutoRatio | None = None,
    ) -> SampleResult:
        if ratio == "auto":
            auto = auto or keep_ratio.AutoRatio()
            p_min, target = auto.p_min(p_min), 1.0
        else:
            auto, target = None, float(ratio)
        with self._lock:
            est = self._sketch.estimate(embeddings)
            warm = policy.in_warmup(self._sketch.observations, self._warmup)
            mean = self._sketch.mean_value
        values = est.values.numpy()
        n = values.shape[0]
        d = sampling.draw(
            self._keep,
            values,
            target,
            p_min,
            seed=seed,
            warm=warm,
            rule=rule,
            auto=auto,
            prune=None if prune_rate is None else Prune(prune_rate),
            mean=mean,
        )
        self._sampled += n
        self._accepted += int(d.accepted.sum())
        return SampleResult.of_draw(d, values, est.prior_used.numpy(), warm)

    def score(self, embeddings: np.ndarray) -> ScoreResult:
        with self._lock:
            est = self._sketch.estimate(embeddings)
        return ScoreResult(est.values.numpy(), est.prior_used.numpy(), est.support.numpy())

    def update(self, embeddings: np.ndarray, losses: np.ndarray) -> None:
        with self._lock:
            self._sketch.update(embeddings, np.asarray(losses, dtype=np.float64))

    def flush(self) -> None:
        return None

    def set_center(self, center: np.ndarray) -> None:
        with self._lock:
            self._sketch.set_center(np.asarray(center, dtype=np.float32))

    def decay(self, factor: float) -> None:
        with self._lock:
            self._sketch.decay(factor)

    def stats(self) -> dict[str, Any]:
        """The engine's statistics (every field of :class:`~nws_core.sketch.SketchStats`) and
        this backend's Sample counts."""
        return {
            **dataclasses.asdict(self._sketch.stats),
            "sampled": self._sampled,
            "accepted": self._accepted,
        }

    def spec(self) -> BackendSpec:
        return LocalSpec(self._key, os.getpid())

    def close(self) -> None:
        _LOCAL.pop(self._key, None)
