"""Micro-batching: concurrent estimate requests on one sketch become one engine call.

No extra thread. Every request appends itself to a pending list and then takes the sketch's lock;
whoever holds the lock runs *everything* pending (up to ``max_rows``) as one batch, so requests
that arrived while a batch was running are served together by the next lock holder, and a request
that finds its result ready when it gets the lock just returns it. Alone, a request pays nothing
extra; under load, batches grow by themselves. ``max_wait_s`` optionally lets the lock holder
linger a little for more requests before it runs (a bounded wait).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

import torch

R = TypeVar("R")


class _Job(Generic[R]):
    __slots__ = ("done", "error", "result", "x")

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x
        self.done = False
        self.result: R | None = None
        self.error: BaseException | None = None


class Coalescer(Generic[R]):
    """Runs ``run(batch)`` for concatenated requests and hands each its own slice.

    ``run`` receives [sum n_i, d] rows and returns one result for the whole batch; ``split``
    cuts that result back into per-request results of sizes n_i. ``lock`` is the lock that
    serialises access to the underlying engine; ``run`` is always called with it held.
    """

    def __init__(
        self,
        lock: threading.Lock,
        run: Callable[[torch.Tensor], R],
        split: Callable[[R, list[int]], list[R]],
        *,
        max_wait_s: float = 0.0,
        max_rows: int = 8192,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        self._lock = lock
        self._run = run
        self._split = split
        self._max_wait_s = max_wait_s
        self._max_rows = max_rows
        self._on_batch = on_batch
        self._pending: list[_Job[R]] = []
        self._pending_rows = 0
        self._arrived = threading.Condition()

    @property
    def pending(self) -> int:
        """Requests waiting for the next batch."""
        return len(self._pending)

    def submit(self, x: torch.Tensor) -> R:
        """The result for ``x`` (already validated); blocks until some batch has computed it."""
        job: _Job[R] = _Job(x)
        with self._arrived:
            self._pending.append(job)
            self._pending_rows += x.shape[0]
            self._arrived.notify()
        with self._lock:
            while not job.done:
                if self._max_wait_s > 0:
                    self._linger()
                self._run_pending()
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]

    def _linger(self) -> None:
        deadline = time.monotonic() + self._max_wait_s
        with self._arrived:
            while self._pending_rows < self._max_rows:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._arrived.wait(remaining):
                    break

    def _run_pending(self) -> None:
        with self._arrived:
            jobs: list[_Job[R]] = []
            rows = 0
            while self._pending and (
                not jobs or rows + self._pending[0].x.shape[0] <= self._max_rows
            ):
                job = self._pending.pop(0)
                jobs.append(job)
                rows += job.x.shape[0]
            self._pending_rows -= rows
        sizes = [job.x.shape[0] for job in jobs]
        try:
            batch = jobs[0].x if len(jobs) == 1 else torch.cat([job.x for job in jobs])
            results = self._split(self._run(batch), sizes) if len(jobs) > 1 else [self._run(batch)]
            for job, result in zip(jobs, results, strict=True):
                job.result = result
        except BaseException as exc:  # one engine failure fails every request of the batch
            for job in jobs:
                job.error = exc
        finally:
            for job in jobs:
                job.done = True
        if self._on_batch is not None:
            self._on_batch(len(jobs), rows)
