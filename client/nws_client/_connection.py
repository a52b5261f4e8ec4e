"""One client's link to a server: the channel, the background update stream and the counters.

Everything here belongs to one process. A forked DataLoader worker that uses a client inherited
from its parent notices the new pid and makes its own channel and stream lazily (the parent's
are never touched in the child), and a fork waits until no client thread is inside a gRPC call
(:mod:`nws_client._fork`). :class:`~nws_client.client.SketchClient` holds one ``Connection`` and
speaks the service's verbs through :meth:`Connection.call`.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from nws.v1 import sketch_pb2 as pb
from nws.v1 import sketch_pb2_grpc

from nws_client._channel import open_channel
from nws_client._fork import GATE
from nws_client._streamer import UpdateStreamer
from nws_client.errors import NWSClientError, from_rpc_error
from nws_client.results import ClientStats

log = logging.getLogger("nws_client")

_abandoned_channels: list[grpc.Channel] = []  # a parent's channels, never touched in a child


class Connection:
    """A lazily opened channel to ``target``, with per-process state.

    Args:
        target: the server's gRPC address.
        timeout: deadline of every call, in seconds.
        options: the channel's options (:func:`nws_client._channel.channel_options`).
        metadata: sent with every call (the bearer token, if any).
        tls: whether the channel uses TLS; ``roots`` the PEM of the CA to trust (None: the
            system's root certificates).
        max_buffered_updates: rows the background update stream buffers.
        drop_oldest: the stream drops its oldest rows when full (a fallback policy) instead of
            making :meth:`updates` callers wait.
    """

    def __init__(
        self,
        target: str,
        *,
        timeout: float,
        options: list[tuple[str, Any]],
        metadata: tuple[tuple[str, str], ...],
        tls: bool,
        roots: bytes | None,
        max_buffered_updates: int,
        drop_oldest: bool,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self._options = options
        self._metadata = metadata
        self._tls = tls
        self._roots = roots
        self._max_buffered_updates = max_buffered_updates
        self._drop_oldest = drop_oldest
        self.closed = False
        self._reset()

    def _reset(self) -> None:
        """Everything that belongs to one process: made anew in a forked child."""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._stub: sketch_pb2_grpc.SketchServiceStub | None = None
        self._streamer: UpdateStreamer | None = None
        self._request_prefix = uuid.uuid4().hex[:16]  # ids unique per process
        self._request_seq = 0
        self._calls = 0
        self._errors = 0
        self._fallbacks = 0
        self._fallback_rows = 0
        self._last_error: str | None = None
        self._outage = False  # inside a run of fallback answers (warn once per run)

    # ----------------------------------------------------------------- calls
    def call(self, method: str, request: Any, *, collect: bool = False) -> Any:
        """One call of ``method``; ``collect`` reads a streamed response into a list within the
        call. A failure is raised as the :class:`NWSClientError` of its status code."""
        rpc: Callable[..., Any] = getattr(self._get_stub(), method)
        try:
            with GATE.call():
                response = rpc(request, timeout=self.timeout, metadata=self._metadata)
                if collect:
                    response = list(response)
        except grpc.RpcError as exc:
            error = from_rpc_error(exc)
            with self._lock:
                self._calls += 1
                self._errors += 1
                self._last_error = f"{method}: {error.code.name}: {error}"
            raise error from None
        with self._lock:
            self._calls += 1
            self._outage = False
        return response

    def updates(self) -> UpdateStreamer:
        """The background update stream (opened at first use)."""
        self._get_stub()
        if self._streamer is None:
            with self._lock:
                if self._streamer is None:
                    self._streamer = UpdateStreamer(
                        self._open_stream,
                        max_rows=self._max_buffered_updates,
                        drop_oldest=self._drop_oldest,
                        put_timeout=self.timeout,
                    )
        return self._streamer

    def flush(self, timeout: float) -> None:
        """Wait until every queued update is acknowledged (nothing to wait for if none was)."""
        self.check_process()
        if self._streamer is not None:
            self._streamer.flush(timeout)

    def next_request_id(self) -> str:
        """A request id unique to this process and call."""
        self.check_process()
        with self._lock:
            self._request_seq += 1
            return f"{self._request_prefix}-{self._request_seq}"

    # ----------------------------------------------------------------- counters
    def count_fallback(self, rows: int, exc: NWSClientError, policy: str) -> None:
        """Count a fallback answer of ``rows`` rows; warn at the first of an outage."""
        with self._lock:
            warn, self._outage = not self._outage, True
            self._fallbacks += 1
            self._fallback_rows += rows
        if warn:
            log.warning(
                "sketch server unreachable (%s): sampling falls back to %r until it is back",
                exc,
                policy,
            )

    def stats(self) -> ClientStats:
        """This process's counters; no network."""
        self.check_process()
        streamer = self._streamer
        counters = streamer.counters if streamer is not None else None
        return ClientStats(
            calls=self._calls,
            errors=self._errors,
            fallbacks=self._fallbacks,
            fallback_rows=self._fallback_rows,
            updates_buffered=streamer.buffered_rows if streamer is not None else 0,
            updates_acked=counters.acked_rows if counters else 0,
            updates_duplicate=counters.duplicates if counters else 0,
            updates_rejected=counters.rejected_rows if counters else 0,
            updates_dropped=counters.dropped_rows if counters else 0,
            stream_reconnects=counters.reconnects if counters else 0,
            last_error=(streamer.last_error if streamer is not None else None) or self._last_error,
        )

    # ----------------------------------------------------------------- lifecycle
    def close(self, timeout: float) -> None:
        """Flush background updates (within ``timeout``), then close the channel."""
        if self.closed:
            return
        self.closed = True
        if os.getpid() != self._pid:  # a child that never used the client: nothing of its own
            return
        if self._streamer is not None:
            self._streamer.close(timeout)
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def check_process(self) -> None:
        """In a forked child, forget the parent's channel and stream; make our own lazily."""
        if self._pid != os.getpid():
            if self._channel is not None:
                _abandoned_channels.append(self._channel)
            self._reset()

    def _get_stub(self) -> sketch_pb2_grpc.SketchServiceStub:
        if self.closed:
            raise NWSClientError("the client is closed")
        self.check_process()
        stub = self._stub
        if stub is None:
            with self._lock:
                if self._stub is None:
                    self._channel = open_channel(
                        self.target, self._options, tls=self._tls, roots=self._roots
                    )
                    self._stub = sketch_pb2_grpc.SketchServiceStub(self._channel)
                stub = self._stub
        return stub

    def _open_stream(self, requests: Iterator[pb.UpdateRequest]) -> Iterator[pb.UpdateAck]:
        stub = self._get_stub()
        return stub.StreamUpdates(requests, timeout=120.0 + self.timeout, metadata=self._metadata)


__all__ = ["Connection"]
