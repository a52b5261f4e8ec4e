"""One named sketch being served: the engine behind its lock, with its warm-up, its idempotency
window, its durability positions and its usage.

The engine is not thread-safe: every engine call on a sketch holds :attr:`LiveSketch.lock`
(concurrent estimates may share one call, :mod:`nws_server.batching`). Usage is counted apart
(:mod:`nws_server.usage`), so counting never waits for the engine.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import torch

from nws_core import policy
from nws_core.errors import NotFound
from nws_core.sketch import Estimates, NWSketch, SketchConfig
from nws_server.batching import Coalescer
from nws_server.results import Info, SketchInfo, SketchStats
from nws_server.usage import Usage


@dataclass(frozen=True)
class Batching:
    """Micro-batching of concurrent estimates on one sketch (see :mod:`nws_server.batching`)."""

    enabled: bool = False
    max_wait_s: float = 0.0
    max_rows: int = 8192


class LiveSketch:
    """A named sketch with its lock, warm-up, idempotency window and usage."""

    def __init__(
        self,
        name: str,
        sketch: NWSketch,
        requested: SketchConfig,
        warmup: int,
        *,
        created_at: float | None = None,
        window: int = 65536,
        batching: Batching | None = None,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        self.name = name
        self.sketch = sketch
        self.requested = requested  # the config of the create call, for idempotent re-creates
        self.warmup = warmup
        self.created_at = time.time() if created_at is None else created_at
        self.lock = threading.Lock()  # serialises every engine call on this sketch
        # idempotency window of Update, Decay, SetCenter, Merge: request id -> observations after
        self.applied: OrderedDict[str, int] = OrderedDict()
        self.window = window
        # durability: the last journal record written, the last one a snapshot covers; the
        # snapshot lock orders snapshot writes (and delete) of this sketch; taken before `lock`
        self.seq = 0
        self.snapshot_seq = 0
        self.snapshot_lock = threading.Lock()
        self.deleted = False
        self.usage = Usage()
        self._coalescer: Coalescer[tuple[Estimates, int]] | None = None
        batching = batching or Batching()
        if batching.enabled:
            self._coalescer = Coalescer(
                self.lock,
                self._estimate_locked,
                _split_estimates,
                max_wait_s=batching.max_wait_s,
                max_rows=batching.max_rows,
                on_batch=on_batch,
            )

    # ------------------------------------------------------------------ the idempotency window
    def has_applied(self, request_id: str) -> bool:
        """The request id is in the idempotency window (an empty id never is)."""
        return bool(request_id) and request_id in self.applied

    def remember(self, request_id: str) -> None:
        """Put an applied request id in the window, with the observation count after it; the
        caller holds the lock."""
        if request_id and self.window:
            self.applied[request_id] = self.sketch.observations
            while len(self.applied) > self.window:
                self.applied.popitem(last=False)

    def check_live(self) -> None:
        """Raise NotFound if the sketch was deleted while a request waited for its lock."""
        if self.deleted:
            raise NotFound(f"no sketch named {self.name!r}")

    # ------------------------------------------------------------------ reads
    def estimate(self, x: torch.Tensor) -> tuple[Estimates, int]:
        """Estimates of rows validated at the boundary (not checked again), with the
        observation count they were computed at."""
        if self._coalescer is not None:
            return self._coalescer.submit(x)
        with self.lock:
            return self._estimate_locked(x)

    def _estimate_locked(self, x: torch.Tensor) -> tuple[Estimates, int]:
        return self.sketch.estimate(x, validated=True), self.sketch.observations

    def stats(self) -> SketchStats:
        with self.lock:
            s = self.sketch.stats
        u = self.usage.read()
        return SketchStats(
            **dataclasses.asdict(s),  # what the engine holds, then how the sketch is used
            prior_hit_rate=s.prior_hits / s.estimates if s.estimates else 0.0,
            sampled=u.sampled,
            accepted=u.accepted,
            acceptance_rate=u.acceptance_rate,
            updates_per_second=u.updates_per_second,
            observations_per_second=u.observations_per_second,
            in_warmup=policy.in_warmup(s.observations, self.warmup),
            keep_ratio=u.keep_ratio,
            priority_cv=u.priority_cv,
            variance_factor=u.variance_factor,
        )

    def info(self, *, digest: bool = False) -> Info:
        stats = self.stats()
        state_digest = None
        if digest:
            with self.lock:
                state_digest = self.sketch.digest()
        return SketchInfo(
            name=self.name,
            config=self.sketch.config,
            warmup=self.warmup,
            device=str(self.sketch.device),
            created_at=datetime.fromtimestamp(self.created_at, tz=timezone.utc),
            stats=stats,
            digest=state_digest,
        )

    # ------------------------------------------------------------------ import
    def take_state(self, new: LiveSketch) -> None:
        """Take the state of ``new`` (an import); the caller holds :attr:`lock`. The usage
        statistics are the new state's (its persisted counts; the rates start afresh)."""
        self.sketch = new.sketch
        self.requested = new.requested
        self.warmup = new.warmup
        self.created_at = new.created_at
        self.applied = new.applied
        self.usage = new.usage

    def differences(self, config: SketchConfig, warmup: int) -> str:
        """What differs between this sketch's create call and another one, for AlreadyExists."""
        old, new = self.requested.to_dict(), config.to_dict()
        diffs = [f"{k}: {old[k]!r} != {new[k]!r}" for k in old if old[k] != new[k]]
        if self.warmup != warmup:
            diffs.append(f"warmup: {self.warmup} != {warmup}")
        return ", ".join(diffs)


def _split_estimates(
    result: tuple[Estimates, int], sizes: list[int]
) -> list[tuple[Estimates, int]]:
    est, observations = result
    parts = zip(
        est.values.split(sizes),
        est.support.split(sizes),
        est.prior_used.split(sizes),
        strict=True,
    )
    return [(Estimates(v, s, p), observations) for v, s, p in parts]
