"""Background updates: a bounded queue streamed over ``StreamUpdates`` by one thread.

``put`` queues an update and returns at once; the thread sends queued updates on a stream (a
bounded number unacknowledged at a time) and matches the server's acks by request id. When the
stream breaks (server restart, network), or the server acks an update with UNAVAILABLE (its state
store is down, so nothing was applied), the unacknowledged updates go back to the front of the
queue with their request ids and are sent again on the next stream, after a backoff; the server
applies an id only once, so nothing is counted twice and nothing acknowledged is lost. ``flush``
waits until every queued update is acknowledged. The buffer holds at most ``max_rows`` rows:
beyond that ``put`` either drops the oldest queued updates (``drop_oldest``, counted) or waits for
room and then raises.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc
from nws.v1 import sketch_pb2 as pb

from nws_client._fork import GATE
from nws_client.errors import (
    DeadlineExceeded,
    NWSClientError,
    ResourceExhausted,
    Unavailable,
    code_from_value,
    error_for,
)

log = logging.getLogger("nws_client")

_UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]

OpenStream = Callable[[Iterator[pb.UpdateRequest]], Iterator[pb.UpdateAck]]


@dataclass
class Pending:
    request: pb.UpdateRequest
    rows: int


@dataclass
class StreamerCounters:
    acked_rows: int = 0
    duplicates: int = 0
    rejected_rows: int = 0
    dropped_rows: int = 0
    reconnects: int = 0


class UpdateStreamer:
    """Queues updates and streams them from a background thread; see the module docstring."""

    def __init__(
        self,
        open_stream: OpenStream,
        *,
        max_rows: int,
        drop_oldest: bool,
        put_timeout: float,
        max_in_flight: int = 32,
        idle_close_s: float = 2.0,
        max_stream_s: float = 60.0,
        backoff_s: tuple[float, float] = (0.05, 2.0),
    ) -> None:
        self._open_stream = open_stream
        self._max_rows = max_rows
        self._drop_oldest = drop_oldest
        self._put_timeout = put_timeout
        self._max_in_flight = max_in_flight
        self._idle_close_s = idle_close_s
        self._max_stream_s = max_stream_s
        self._backoff_s = backoff_s
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[Pending] = deque()
        self._in_flight: dict[str, Pending] = {}
        self._buffered_rows = 0
        self._pauses = 0  # > 0 while a fork is being prepared: no stream may be open
        self._closed = False
        self._thread: threading.Thread | None = None
        self._acked_in_stream = False
        self._stream_id = 0  # bumped when a stream ends: its request generator stops taking
        self._last_ack: float | None = None
        self._first_rejection: NWSClientError | None = None
        self.last_error: str | None = None
        self.counters = StreamerCounters()
        GATE.add_listener(self)

    @property
    def buffered_rows(self) -> int:
        return self._buffered_rows

    # ----------------------------------------------------------------- producer side
    def put(self, request: pb.UpdateRequest, rows: int) -> None:
        item = Pending(request, rows)
        deadline = time.monotonic() + self._put_timeout
        with self._cond:
            if self._closed:
                raise NWSClientError("the client is closed")
            while self._buffered_rows + rows > self._max_rows:
                if self._drop_oldest:
                    if not self._queue:  # what is left is in flight: drop the newcomer
                        self.counters.dropped_rows += rows
                        return
                    old = self._queue.popleft()
                    self._buffered_rows -= old.rows
                    self.counters.dropped_rows += old.rows
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0 or rows > self._max_rows:
                    raise self._full_error(rows)
                self._cond.wait(remaining)
            self._queue.append(item)
            self._buffered_rows += rows
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="nws-client-updates", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def flush(self, timeout: float) -> None:
        """Wait until every queued update is acknowledged; raise the first rejection, if any."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DeadlineExceeded(
                        f"flush: {self._buffered_rows} rows of updates still unacknowledged "
                        f"after {timeout:g} s (last error: {self.last_error or 'none'})"
                    )
                self._cond.wait(remaining)
            rejection, self._first_rejection = self._first_rejection, None
        if rejection is not None:
            raise rejection

    def close(self, timeout: float) -> None:
        """Flush within ``timeout``, then stop the thread; what is left is counted as dropped."""
        try:
            self.flush(timeout)
        except NWSClientError as exc:
            log.warning("closing the client: %s", exc)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=max(1.0, timeout))
        with self._cond:
            self.counters.dropped_rows += self._buffered_rows
            self._queue.clear()
            self._in_flight.clear()
            self._buffered_rows = 0

    # ----------------------------------------------------------------- fork hooks
    def pause_for_fork(self) -> None:
        with self._cond:
            self._pauses += 1  # forks from several threads may overlap
            self._cond.notify_all()

    def resume_after_fork(self) -> None:
        with self._cond:
            self._pauses = max(0, self._pauses - 1)
            self._cond.notify_all()

    # ----------------------------------------------------------------- the thread
    def _run(self) -> None:
        failures = 0
        while True:
            with self._cond:
                while not self._closed and (self._pauses or not self._queue):
                    self._cond.wait()
                if self._closed:
                    return
            self._acked_in_stream = False
            try:
                with GATE.call():
                    self._stream()
            except grpc.RpcError as exc:
                self._on_stream_error(exc)
            failures = 0 if self._acked_in_stream else failures + 1
            if failures:
                low, high = self._backoff_s
                delay = min(high, low * 2 ** (failures - 1)) * random.uniform(0.5, 1.0)
                with self._cond:
                    self._cond.wait_for(lambda: self._closed, delay)

    def _stream(self) -> None:
        """One stream: send queued updates until idle, paused, closed or old; match the acks."""
        with self._cond:
            self._stream_id += 1
            stream_id = self._stream_id
        try:
            self._match_acks(self._open_stream(self._requests(stream_id)))
        finally:
            # gRPC pulls requests from another thread, which may still be inside _requests when
            # the call ends: retire this stream's generator first, so that it can take no more
            # updates into flight, then send again what it took but got no ack for.
            with self._cond:
                self._stream_id += 1
                self._requeue_in_flight()
                self._cond.notify_all()

    def _match_acks(self, call: Iterator[pb.UpdateAck]) -> None:
        for ack in call:
            with self._cond:
                item = self._in_flight.pop(ack.request_id, None)
                if item is None:
                    continue
                if ack.code == _UNAVAILABLE:
                    # the server is up but cannot make the update durable (its state store is
                    # down): nothing was applied. Send it again, first, after a backoff.
                    self._requeue_in_flight()
                    self._queue.appendleft(item)
                    self._acked_in_stream = False
                    self.last_error = f"UNAVAILABLE: {ack.message}"
                    self.counters.reconnects += 1
                    cancel = getattr(call, "cancel", None)
                    if cancel is not None:
                        cancel()
                    break
                self._buffered_rows -= item.rows
                self._acked_in_stream = True
                self._last_ack = time.monotonic()
                self.last_error = None
                if ack.code == 0:
                    self.counters.acked_rows += item.rows
                    self.counters.duplicates += int(ack.duplicate)
                else:
                    self.counters.rejected_rows += item.rows
                    if self._first_rejection is None:
                        self._first_rejection = error_for(
                            code_from_value(ack.code),
                            f"update {ack.request_id} rejected: {ack.message}",
                        )
                self._cond.notify_all()

    def _requests(self, stream_id: int) -> Iterator[pb.UpdateRequest]:
        started = time.monotonic()
        while True:
            with self._cond:
                idle_since = time.monotonic()
                while True:
                    if self._pauses or self._closed or self._stream_id != stream_id:
                        return
                    if time.monotonic() - started > self._max_stream_s:
                        return  # rotate long streams well before their deadline
                    if self._queue and len(self._in_flight) < self._max_in_flight:
                        item = self._queue.popleft()
                        self._in_flight[item.request.request_id] = item
                        break
                    idle = not self._queue and not self._in_flight
                    if idle and time.monotonic() - idle_since >= self._idle_close_s:
                        return  # idle: let the stream (and its server thread) go
                    self._cond.wait(self._idle_close_s)
            yield item.request

    def _on_stream_error(self, exc: grpc.RpcError) -> None:
        code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
        details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
        with self._cond:
            self.last_error = f"{code.name}: {details}"
            self.counters.reconnects += 1
            self._requeue_in_flight()
            self._cond.notify_all()
        log.debug("update stream broke (%s); retrying", self.last_error)

    def _requeue_in_flight(self) -> None:
        if self._in_flight:
            self._queue.extendleft(reversed(list(self._in_flight.values())))
            self._in_flight.clear()

    def _full_error(self, rows: int) -> NWSClientError:
        message = (
            f"the update buffer is full ({self._buffered_rows} of {self._max_rows} rows buffered, "
            f"{rows} more offered)"
        )
        silent = self._last_ack is None or time.monotonic() - self._last_ack > self._put_timeout
        if self.last_error or silent:
            why = self.last_error or f"no acknowledgement for {self._put_timeout:g} s"
            return Unavailable(f"{message}; the server is unreachable ({why})")
        return ResourceExhausted(f"{message}: the server does not keep up")
