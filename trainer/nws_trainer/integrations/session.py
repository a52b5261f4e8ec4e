"""The sampler's sketch on a sketch server, shared by every rank of a run.

Rank 0 starts an embedded server (unless an endpoint names a shared one) and creates the sketch;
every rank learns the server and the sketch's name by broadcast and talks to it through its own
:class:`~nws_client.SketchClient`. With a callable embedding source the sketch's width is known
only at the first batch: the sketch is created then (:meth:`SketchSession.ensure`), centred on
that batch. Under ``torch.distributed`` the calls that order selection (:meth:`sync`) are
collective.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

import numpy as np
import torch.distributed as dist

from nws_client import SketchClient, SketchConfig
from nws_core.policy import SamplingPolicy


def dist_info() -> tuple[int, int]:
    """(rank, world size): (0, 1) without an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def broadcast(value: Any, world: int) -> Any:
    """Rank 0's ``value`` on every rank."""
    if world <= 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class SketchSession:
    """One sketch on one server for every rank; the server too, if rank 0 started it."""

    def __init__(
        self,
        *,
        endpoint: str | None,
        name: str | None,
        dim: int | None,
        center: np.ndarray | None,
        rows: int,
        bits: int,
        seed: int,
        warmup: int,
        timeout: float,
        rank: int,
        world_size: int,
    ) -> None:
        """``dim`` None: a callable source, the sketch is created by :meth:`ensure`."""
        self.rank, self.world_size = rank, world_size
        self._shape = (rows, bits)
        self._seed, self._warmup, self._timeout = seed, warmup, timeout
        self._server: Any = None
        self.target, self.name = self._open(endpoint, name, dim, center)
        self.client = SketchClient(self.target, timeout=timeout)
        self.centered = center is not None
        """The sketch exists with its center (a table's from the start; a callable's after the
        first batch)."""

    def _open(
        self, endpoint: str | None, name: str | None, dim: int | None, center: np.ndarray | None
    ) -> tuple[str, str]:
        opened: tuple[str, str] | None = None
        failure: BaseException | None = None
        if self.rank == 0:
            try:
                if endpoint is None:
                    from nws_server.embedded import EmbeddedServer

                    self._server = EmbeddedServer(mode="process").start()
                    endpoint = self._server.target
                name = name or f"nws-{uuid.uuid4().hex[:12]}"
                if dim is not None:
                    self._create(endpoint, name, dim, center)
                opened = (endpoint, name)
            except Exception as exc:  # every rank must leave the broadcast before raising
                failure = exc
                self._stop_server()
        shared = broadcast(opened if failure is None else repr(failure), self.world_size)
        if failure is not None:
            raise failure
        if not isinstance(shared, tuple):
            raise RuntimeError(f"rank 0 could not open the sketch: {shared}")
        return shared

    def _create(self, target: str, name: str, dim: int, center: np.ndarray | None) -> None:
        rows, bits = self._shape
        with SketchClient(target, timeout=self._timeout) as client:
            config = SketchConfig(dim=int(dim), rows=rows, bits=bits, seed=self._seed)
            client.create_sketch(name, config, warmup=self._warmup)
            if center is not None and client.get(name).config.center is None:
                client.set_center(name, center)

    def ensure(self, x: np.ndarray) -> None:
        """Callable source: create the sketch (rank 0) on the first batch, centred on it."""
        if self.centered:
            return
        if self.rank == 0:
            self._create(self.target, self.name, x.shape[1], x.mean(axis=0))
        barrier(self.world_size)
        self.centered = True

    def sync(self) -> None:
        """Wait until this rank's streamed updates are applied, then for every rank (so a
        draw sees the same sketch on every rank and in every rerun)."""
        self.client.flush()
        barrier(self.world_size)

    def barrier(self) -> None:
        barrier(self.world_size)

    def sample(
        self,
        x: np.ndarray,
        ratio: float | Literal["auto"],
        p_min: float,
        seed: int,
        policy: SamplingPolicy,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(accepted, weights) of the sketch's draw over the rows of ``x``."""
        r = self.client.sample(
            self.name, x, ratio, p_min=p_min, seed=seed, power=policy.power, temper=policy.temper
        )
        return r.accepted, r.weights

    def update(self, x: np.ndarray, losses: np.ndarray) -> None:
        """Stream observed losses (applied before the next :meth:`sync` returns)."""
        self.client.update_async(self.name, x, losses)

    def export(self, include: bool) -> bytes | None:
        """The sketch's whole state when ``include`` (None otherwise). Collective."""
        self.sync()
        state = self.client.export_sketch(self.name) if include else None
        barrier(self.world_size)
        return state

    def restore(self, state: bytes | None) -> None:
        """Replace the sketch by an exported state (None: keep it). Collective."""
        if state is not None:
            self.client.import_sketch(self.name, state, replace=True)
        barrier(self.world_size)

    def close(self) -> None:
        """Flush the updates, close the client, stop an embedded server this rank started."""
        try:
            self.client.close()
        finally:
            barrier(self.world_size)
            self._stop_server()

    def _stop_server(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
