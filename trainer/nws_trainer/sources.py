"""Where a run's sketch lives: in this process, or behind a sketch server (embedded or remote)."""

from __future__ import annotations

from collections.abc import Callable

from nws_core.sketch import SketchConfig
from nws_trainer.backends import InProcessBackend, SketchBackend
from nws_trainer.config import TrainConfig
from nws_trainer.grpc_backend import grpc_factory

BackendFactory = Callable[[SketchConfig, int], tuple[SketchBackend, str | None]]
"""(sketch config, warm-up observations) -> (backend, endpoint shown in logs)."""


def inprocess_factory(config: SketchConfig, warmup: int) -> tuple[SketchBackend, str | None]:
    """Sketch in this process (tests): no server, no worker processes."""
    return InProcessBackend(config, warmup), None


def default_backend_factory(cfg: TrainConfig) -> BackendFactory:
    """The sketch source ``nws-train`` uses for ``cfg``."""
    if cfg.sketch_backend == "inprocess":
        return inprocess_factory
    return grpc_factory(cfg)


__all__ = ["BackendFactory", "default_backend_factory", "inprocess_factory"]
