"""The sketch on a gRPC sketch server: what ``nws-train`` uses, embedded or shared.

Without ``--sketch-endpoint`` the trainer starts an embedded server (``nws-server`` as a child
process on a free loopback port) and talks to it exactly as to a shared one: one code path.
Loader workers get a :class:`GrpcSpec` (an address and a sketch name, picklable) and open their
own :class:`~nws_client.SketchClient` lazily, in the worker. The trainer streams its updates in
the background (``update_async``), so a step never waits for the sketch.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from nws_client import DeadlineExceeded, NWSClientError, OnUnavailable, SketchClient, Unavailable
from nws_client import SketchConfig as WireSketchConfig
from nws_client.results import SampleResult, ScoreResult
from nws_core.keep_ratio import AutoRatio
from nws_core.policy import SamplingPolicy
from nws_core.sketch import SketchConfig
from nws_trainer.backends import BackendSpec, Ratio, SketchBackend
from nws_trainer.config import ConfigError, TrainConfig

DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class GrpcSpec:
    """Opens a handle on sketch ``name`` at ``target`` in whichever process calls :meth:`open`."""

    target: str
    name: str
    timeout: float = DEFAULT_TIMEOUT
    on_unavailable: OnUnavailable = "raise"

    def open(self) -> SketchBackend:
        client = SketchClient(self.target, timeout=self.timeout, on_unavailable=self.on_unavailable)
        return GrpcBackend(client, self.name)


class GrpcBackend:
    """:class:`~nws_trainer.backends.SketchBackend` over a :class:`~nws_client.SketchClient`."""

    def __init__(self, client: SketchClient, name: str, server: Any = None) -> None:
        self.client = client
        self.name = name
        self._server = server  # an EmbeddedServer this backend stops on close

    def sample(
        self,
        embeddings: np.ndarray,
        ratio: Ratio,
        p_min: float,
        seed: int | None,
        rule: SamplingPolicy | None = None,
        prune_rate: float | None = None,
        auto: AutoRatio | None = None,
    ) -> SampleResult:
        if prune_rate is not None:
            return self.client.sample(
                self.name, embeddings, policy="prune", prune_rate=prune_rate, seed=seed
            )
        rule = rule or SamplingPolicy()
        return self.client.sample(
            self.name,
            embeddings,
            ratio,
            p_min=p_min,
            seed=seed,
            power=rule.power,
            rank=rule.rank,
            baseline_quantile=rule.baseline_quantile,
            temper=rule.temper,
            ratio_min=None if auto is None or ratio != "auto" else auto.ratio_min,
            auto_threshold=None if auto is None or ratio != "auto" else auto.threshold,
        )

    def score(self, embeddings: np.ndarray) -> ScoreResult:
        return self.client.score(self.name, embeddings)

    def update(self, embeddings: np.ndarray, losses: np.ndarray) -> None:
        self.client.update_async(self.name, embeddings, np.asarray(losses, dtype=np.float64))

    def flush(self) -> None:
        self.client.flush()

    def set_center(self, center: np.ndarray) -> None:
        info = self.client.get(self.name)
        if info.config.center is not None:
            existing = np.asarray(info.config.center, dtype=np.float32).reshape(-1)
            if np.allclose(existing, np.asarray(center, dtype=np.float32), atol=1e-6):
                return  # a resumed sketch: same center already set
            raise ConfigError(
                f"sketch {self.name!r} already has a different center; use a new --sketch-name"
            )
        self.client.set_center(self.name, center)

    def decay(self, factor: float) -> None:
        self.client.decay(self.name, factor)

    def stats(self) -> dict[str, Any]:
        s = self.client.stats(self.name)
        out: dict[str, Any] = dataclasses.asdict(s.sketches[self.name])
        out["client"] = dataclasses.asdict(s.client)
        out["server_version"] = s.server.version
        out["server_device"] = s.server.device
        return out

    def spec(self) -> BackendSpec:
        return GrpcSpec(
            self.client.target, self.name, self.client.timeout, self.client.on_unavailable
        )

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self._server is not None:
                self._server.stop()
                self._server = None


def new_sketch_name(cfg: TrainConfig) -> str:
    """The run's sketch: ``sketch_name``, or a fresh name that says what made it."""
    return cfg.sketch_name or f"nws-train-{cfg.strategy}-s{cfg.seed}-{uuid.uuid4().hex[:8]}"


def grpc_factory(cfg: TrainConfig) -> Any:
    """A backend factory for ``cfg``: its endpoint, or an embedded server on a loopback port."""

    def factory(config: SketchConfig, warmup: int) -> tuple[SketchBackend, str | None]:
        server = None
        if cfg.sketch_endpoint is not None:
            target = cfg.sketch_endpoint
        else:
            from nws_server.embedded import EmbeddedServer

            server = EmbeddedServer(mode="process").start()
            target = server.target
        client = SketchClient(
            target, timeout=DEFAULT_TIMEOUT, on_unavailable=cfg.sketch_on_unavailable
        )
        name = new_sketch_name(cfg)
        wire = WireSketchConfig(
            dim=config.dim,
            rows=config.rows,
            bits=config.bits,
            seed=config.seed,
            decay=config.decay,
        )
        try:
            client.create_sketch(name, wire, warmup=warmup)
        except (Unavailable, DeadlineExceeded) as exc:
            client.close()
            if server is not None:
                server.stop()
            raise ConfigError(f"cannot reach the sketch server at {target}: {exc}") from exc
        except NWSClientError as exc:
            client.close()
            if server is not None:
                server.stop()
            raise ConfigError(f"cannot create sketch {name!r} at {target}: {exc}") from exc
        label = target if server is None else f"embedded server {target}"
        return GrpcBackend(client, name, server), label

    return factory
