"""The catalog: which named sketches a server holds, and the limits on what it accepts.

Names follow :data:`~nws_server.store.NAME_PATTERN`; over a limit a request gets
ResourceExhausted, naming the limit. Lookups read the name table directly; adding and removing
sketches happens under :attr:`Catalog.lock`, which the registry also holds while it checks that
a name is free.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch

from nws_core.errors import InvalidArgument, NotFound, ResourceExhausted
from nws_core.sketch import SketchConfig
from nws_server.live import LiveSketch
from nws_server.store import NAME_PATTERN

MAX_REQUEST_ID_CHARS = 128


@dataclass(frozen=True)
class Limits:
    """What one server accepts; over a limit a request gets ResourceExhausted."""

    max_sketches: int = 64
    max_sketch_bytes: int = 2**30
    max_batch_rows: int = 65536
    idempotency_window: int = 65536


class Catalog:
    """Named sketches and the server's limits (thread-safe)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.lock = threading.Lock()
        """Held to add or remove a sketch (and while checking that a name is free)."""
        self._entries: dict[str, LiveSketch] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str) -> LiveSketch:
        entry = self._entries.get(name)
        if entry is None:
            raise NotFound(f"no sketch named {name!r}")
        return entry

    def find(self, name: str) -> LiveSketch | None:
        return self._entries.get(name)

    def all(self) -> list[LiveSketch]:
        """Every sketch, by name."""
        with self.lock:
            return [entry for _, entry in sorted(self._entries.items())]

    def add(self, entry: LiveSketch) -> None:
        """Hold :attr:`lock` and check :meth:`check_room` first."""
        self._entries[entry.name] = entry

    def remove(self, name: str) -> None:
        """Hold :attr:`lock`."""
        del self._entries[name]

    def check_room(self) -> None:
        if len(self._entries) >= self.limits.max_sketches:
            raise ResourceExhausted(
                f"this server holds its maximum of {self.limits.max_sketches} sketches; "
                "delete one first"
            )

    def check_size(self, name: str, config: SketchConfig, hint: str = "") -> None:
        size = estimated_bytes(config)
        if size > self.limits.max_sketch_bytes:
            raise ResourceExhausted(
                f"sketch {name!r} would take {size:,} bytes, over the limit of "
                f"{self.limits.max_sketch_bytes:,}{hint}"
            )

    def check_rows(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > self.limits.max_batch_rows:
            raise ResourceExhausted(
                f"a request may carry at most {self.limits.max_batch_rows} rows, got "
                f"{x.shape[0]}; split the batch"
            )
        return x


def estimated_bytes(config: SketchConfig) -> int:
    """Memory of a sketch with this config: the two arrays plus the hash parameters."""
    directions = config.pool if config.pool is not None else config.rows * config.bits
    total = config.array_bytes + 4 * config.dim * directions
    if config.pool is not None:
        total += 8 * config.rows * config.bits
    if config.buckets is not None:
        total += 16 * config.rows
    return total


def check_name(name: str) -> None:
    if not (isinstance(name, str) and NAME_PATTERN.fullmatch(name)):
        raise InvalidArgument(
            f"sketch name must match {NAME_PATTERN.pattern} (letters, digits, '.', '_', '-'; "
            f"at most 128 characters), got {name!r}"
        )


def check_request_id(request_id: str) -> None:
    if len(request_id) > MAX_REQUEST_ID_CHARS:
        raise InvalidArgument(
            f"request_id must be at most {MAX_REQUEST_ID_CHARS} characters, got {len(request_id)}"
        )
