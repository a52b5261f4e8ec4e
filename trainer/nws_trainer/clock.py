"""The training wall-clock, which evaluation pauses."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator


class Clock:
    """Training wall-clock that can be paused (evaluation is excluded)."""

    def __init__(self) -> None:
        self._elapsed = 0.0
        self._since: float | None = None

    def start(self) -> None:
        if self._since is None:
            self._since = time.perf_counter()

    def stop(self) -> None:
        if self._since is not None:
            self._elapsed += time.perf_counter() - self._since
            self._since = None

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        running = self._since is not None
        self.stop()
        try:
            yield
        finally:
            if running:
                self.start()

    @property
    def seconds(self) -> float:
        extra = 0.0 if self._since is None else time.perf_counter() - self._since
        return self._elapsed + extra
