"""``SketchClient``: the Python client of the NWS sketch service. numpy in, numpy out.

Safe in forked DataLoader workers: the gRPC channel is made lazily in the process that uses it
(a child notices the new pid and makes its own), and a fork waits until no client thread is
inside a gRPC call (see :mod:`nws_client._fork`). Every call has a deadline; UNAVAILABLE is
retried by gRPC itself as declared in the channel's service config, for every method that is
safe to retry (:data:`RETRIED_METHODS`: reads, and writes the server deduplicates by request
id); DeleteSketch and ImportSketch are not retried. Errors are
:class:`~nws_client.errors.NWSClientError` subclasses named after the status codes.

When the server cannot be reached, ``on_unavailable`` decides what :meth:`SketchClient.sample` does
(after gRPC's retries and within the call's deadline): ``"raise"`` (default) raises
:class:`~nws_client.errors.Unavailable` (or DeadlineExceeded); ``"accept_all"`` and ``"uniform"``
answer without the server (:mod:`nws_client.fallback`), with ``fallback=True``, counted in
:meth:`SketchClient.client_stats`. Background updates (:meth:`SketchClient.update_async`) stay
buffered, up to ``max_buffered_updates`` rows, and are streamed once the server is back; with a
fallback policy the oldest buffered updates are dropped (and counted) when the buffer is full, with
``"raise"`` ``update_async`` waits for room up to the timeout and then raises. Everything else
(create, get, score, update, ...) always raises when the server cannot be reached.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Literal

import numpy as np
from nws.v1 import sketch_pb2 as pb

from nws_client import _wire
from nws_client._channel import (
    NOT_RETRIED_METHODS,
    RETRIED_METHODS,
    SERVICE_CONFIG,
    channel_options,
)
from nws_client._connection import Connection
from nws_client.errors import DeadlineExceeded, NWSClientError, Unavailable
from nws_client.fallback import (
    ON_UNAVAILABLE,
    OnUnavailable,
    fallback_ratio,
    fallback_sample,
    is_auto,
)
from nws_client.results import (
    ClientInfo,
    ClientStats,
    SampleResult,
    ScoreResult,
    SketchConfig,
    Stats,
    UpdateResult,
)

Ratio = float | Literal["auto"]
SketchInfos = list[ClientInfo]


class SketchClient:
    """Client of one sketch server at ``target`` (``host:port``).

    Args:
        target: the server's gRPC address, e.g. ``"127.0.0.1:50051"``.
        timeout: deadline in seconds of every call (and default of :meth:`flush`).
        on_unavailable: what :meth:`sample` does when the server cannot be reached (module doc).
        max_buffered_updates: rows of background updates kept while the server is slow or down
            (65,536 rows of dim 384 in float32 take about 100 MB).
        wire_dtype: element type of embeddings on the wire; None keeps float16 / bfloat16 arrays
            as they are and sends other floats as float32; "float16" / "bfloat16" halve the
            bytes at a precision cost.
        max_message_bytes: largest message sent or received.
        options: extra gRPC channel options.
        auth_token: bearer token of a server started with one; None reads the environment
            variable ``NWS_AUTH_TOKEN`` (unset: no token is sent).
        tls: False for a plaintext channel; True for TLS verified against the system's root
            certificates; a path to a PEM file of the CA (or the server's self-signed
            certificate) to trust instead.
    """

    def __init__(
        self,
        target: str,
        *,
        timeout: float = 10.0,
        on_unavailable: OnUnavailable = "raise",
        max_buffered_updates: int = 65_536,
        wire_dtype: _wire.WireDType | None = None,
        max_message_bytes: int = 64 * 2**20,
        options: Sequence[tuple[str, Any]] = (),
        auth_token: str | None = None,
        tls: bool | str | os.PathLike[str] = False,
    ) -> None:
        if on_unavailable not in ON_UNAVAILABLE:
            raise ValueError(
                f"on_unavailable must be 'raise', 'accept_all' or 'uniform', got {on_unavailable!r}"
            )
        if wire_dtype is not None and wire_dtype not in _wire.WIRE_DTYPES:
            raise ValueError(f"wire_dtype must be one of {_wire.WIRE_DTYPES}, got {wire_dtype!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        if max_buffered_updates < 1:
            raise ValueError(f"max_buffered_updates must be >= 1, got {max_buffered_updates}")
        self.target = target
        roots: bytes | None = None
        if tls is not True and tls is not False:
            with open(tls, "rb") as f:
                roots = f.read()
        token = auth_token if auth_token is not None else os.environ.get("NWS_AUTH_TOKEN")
        self._on_unavailable: OnUnavailable = on_unavailable
        self._max_buffered_updates = max_buffered_updates
        self.wire_dtype = wire_dtype
        # the channel, the update stream and the counters, per process (made lazily)
        self._link = Connection(
            target,
            timeout=float(timeout),
            options=channel_options(max_message_bytes, options),
            metadata=(
                (("authorization", f"Bearer {token.strip()}"),) if token and token.strip() else ()
            ),
            tls=tls is not False,
            roots=roots,
            max_buffered_updates=max_buffered_updates,
            drop_oldest=on_unavailable != "raise",
        )

    @property
    def timeout(self) -> float:
        """Deadline of every call, in seconds (and default of :meth:`flush`)."""
        return self._link.timeout

    @timeout.setter
    def timeout(self, seconds: float) -> None:
        if not seconds > 0:
            raise ValueError(f"timeout must be > 0, got {seconds}")
        self._link.timeout = float(seconds)

    @property
    def on_unavailable(self) -> OnUnavailable:
        """What :meth:`sample` does when the server cannot be reached (fixed at construction)."""
        return self._on_unavailable

    @property
    def max_buffered_updates(self) -> int:
        """Rows of background updates kept while the server is slow or down (fixed)."""
        return self._max_buffered_updates

    # ----------------------------------------------------------------- sketches
    def create_sketch(self, name: str, config: SketchConfig, *, warmup: int = 0) -> ClientInfo:
        """Create a sketch (idempotent for an equal config and warm-up; ``created`` says which).

        Raises AlreadyExists if ``name`` exists with a different config or warm-up.
        """
        request = pb.CreateSketchRequest(
            name=name, config=_wire.config_to_proto(config), warmup=warmup
        )
        response = self._call("CreateSketch", request)
        return _wire.info_from_proto(response.sketch, created=response.created)

    def get(self, name: str, *, digest: bool = False) -> ClientInfo:
        """A sketch's config, warm-up and statistics; ``digest`` also hashes its content."""
        response = self._call("GetSketch", pb.GetSketchRequest(name=name, include_digest=digest))
        return _wire.info_from_proto(response)

    def list(self) -> SketchInfos:
        """Every sketch of the server, by name."""
        response = self._call("ListSketches", pb.ListSketchesRequest())
        return [_wire.info_from_proto(s) for s in response.sketches]

    def delete(self, name: str) -> None:
        """Delete a sketch and its state. Not retried on UNAVAILABLE (the delete may have been
        applied: a second call would report NotFound)."""
        self._call("DeleteSketch", pb.DeleteSketchRequest(name=name))

    def decay(self, name: str, factor: float, *, request_id: str | None = None) -> ClientInfo:
        """Multiply the sketch's arrays by ``factor`` in (0, 1]: forget old losses. A repeated
        ``request_id`` is applied once (the default id is fresh, so retries by gRPC are safe)."""
        request = pb.DecayRequest(
            name=name,
            factor=factor,
            request_id=self._next_request_id() if request_id is None else request_id,
        )
        return _wire.info_from_proto(self._call("Decay", request))

    def set_center(self, name: str, center: Any, *, request_id: str | None = None) -> ClientInfo:
        """Fix the centering vector [dim]; only once, and only while the sketch is empty. A
        repeated ``request_id`` answers with the sketch instead of failing (FailedPrecondition)."""
        vector = np.asarray(center, dtype=np.float32).reshape(1, -1)
        request = pb.SetCenterRequest(
            name=name,
            center=self._tensor(vector),
            request_id=self._next_request_id() if request_id is None else request_id,
        )
        return _wire.info_from_proto(self._call("SetCenter", request))

    def merge(self, name: str, source: str, *, request_id: str | None = None) -> ClientInfo:
        """Add sketch ``source`` into sketch ``name``, both on this server (``source`` is
        unchanged). Sketches with the same hash functions (dim, rows, bits, seed, pool, buckets,
        center) are linear: the result is the sketch of both streams of updates. To combine two
        servers' sketches, :meth:`export_sketch` one and :meth:`import_sketch` it here first. A
        repeated ``request_id`` is applied once (the default id is fresh: retries are safe)."""
        request = pb.MergeSketchRequest(
            name=name,
            source=source,
            request_id=self._next_request_id() if request_id is None else request_id,
        )
        return _wire.info_from_proto(self._call("MergeSketch", request))

    # ----------------------------------------------------------------- the verbs
    def score(self, name: str, embeddings: Any) -> ScoreResult:
        """Estimated loss of each row of ``embeddings`` [n, dim]."""
        x = _wire.as_batch(embeddings)
        response = self._call("Score", pb.ScoreRequest(name=name, embeddings=self._tensor(x)))
        return _wire.score_from_proto(response)

    def sample(
        self,
        name: str,
        embeddings: Any,
        ratio: Ratio | None = None,
        *,
        policy: _wire.Policy = "importance",
        prune_rate: float | None = None,
        p_min: float | None = None,
        seed: int | None = None,
        power: float | None = None,
        rank: bool = False,
        baseline_quantile: float | None = None,
        temper: float | None = None,
        ratio_min: float | None = None,
        auto_threshold: float | None = None,
    ) -> SampleResult:
        """Which rows to keep, with importance weights: ``mean(probabilities) == ratio``.

        ``ratio="auto"`` lets the server choose the keep ratio of this request from the predicted
        variance reduction of the estimates (docs/sampling.md): at least ``ratio_min`` (server
        default 0.3), and 1 while the predicted gain is under 1 + ``auto_threshold`` (default
        0.05); the result's ``ratio``, ``cv`` and ``variance_factor`` say what it chose and why.
        ``p_min`` floors every keep probability (server default min(0.05, ratio), under auto
        min(0.05, ratio_min)); ``seed`` makes the draw reproducible. During the sketch's warm-up
        every row is kept with weight 1 (``ratio`` 1). Policy levers (server defaults: the
        paper's p ∝ estimate, weights 1/p): ``power`` sharpens the priorities (estimate **
        power), ``rank`` uses the estimates' ranks within the batch, ``baseline_quantile``
        subtracts that quantile first, ``temper`` in [0, 1] makes the weights (1/p) ** temper
        (below 1: biased towards hard examples, lower variance).

        ``policy="prune"`` (docs/sampling.md) is InfoBatch's rule on the estimates: a row whose
        estimate is below the mean of the sketch's observed losses is skipped with probability
        ``prune_rate`` (server default 0.5) and weighted 1 / (1 - prune_rate) when kept, every
        other row kept with weight 1; leave ``ratio`` out (the result's ``ratio`` is the
        expected keep share). A fallback answer for it keeps every row with weight 1.
        """
        x = _wire.as_batch(embeddings)
        prune = _wire.is_prune(policy, ratio)
        auto = ratio is not None and is_auto(ratio)
        target = 0.0 if auto or ratio is None else float(ratio)  # 0: unset, the server chooses
        request = pb.SampleRequest(
            name=name, embeddings=self._tensor(x), ratio=target, rank=rank, auto_ratio=auto
        )
        _wire.set_optional(
            request,
            ratio_min=ratio_min,
            auto_threshold=auto_threshold,
            p_min=p_min,
            seed=seed,
            power=power,
            baseline_quantile=baseline_quantile,
            temper=temper,
        )
        _wire.set_policy(request, policy, prune_rate)
        try:
            response = self._call("Sample", request)
        except (Unavailable, DeadlineExceeded) as exc:
            if self.on_unavailable == "raise":
                raise
            drawn_with = fallback_ratio(
                target,
                auto=auto,
                prune=prune,
                prune_rate=prune_rate,
                ratio_min=ratio_min,
                auto_threshold=auto_threshold,
                exc=exc,
            )
            answer = fallback_sample(self.on_unavailable, x.shape[0], drawn_with, seed, exc)
            self._link.count_fallback(x.shape[0], exc, self.on_unavailable)
            return answer
        return _wire.sample_from_proto(response, target)

    def update(
        self, name: str, embeddings: Any, values: Any, *, request_id: str | None = None
    ) -> UpdateResult:
        """Add observed losses now; returns once applied. A repeated ``request_id`` is applied
        once (the default id is fresh, so retries by gRPC are safe too)."""
        rid = self._next_request_id() if request_id is None else request_id
        request = _wire.update_request(name, embeddings, values, rid, self.wire_dtype)
        return _wire.update_from_proto(self._call("Update", request))

    def update_async(self, name: str, embeddings: Any, values: Any) -> str:
        """Queue observed losses for the background stream; returns the request id at once.

        The input is checked here (shape, dtype, finiteness), so what fails later is only what
        the server alone can tell (an unknown sketch, a wrong dim): :meth:`flush` raises that.
        """
        request = _wire.update_request(
            name, embeddings, values, self._next_request_id(), self.wire_dtype, check_finite=True
        )
        self._link.updates().put(request, request.embeddings.shape[0])
        return request.request_id

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued update is acknowledged.

        Raises DeadlineExceeded if that takes longer than ``timeout`` (default: the client's
        timeout), and the first update the server rejected since the last flush, if any.
        """
        self._link.flush(self.timeout if timeout is None else timeout)

    def snapshot(self, name: str | None = None) -> dict[str, int]:
        """Have the server snapshot every sketch (or ``name``) to its state store and compact
        the journals; returns, per sketch, the last journal sequence number its snapshot covers.
        Fails with FailedPrecondition when the server keeps no store."""
        response = self._call("Snapshot", pb.SnapshotRequest(name=name or ""))
        return {s.name: s.seq for s in response.sketches}

    def export_sketch(self, name: str, *, chunk_bytes: int = 2**20) -> bytes:
        """The sketch's whole state as bytes (config, warm-up, counters and the engine's
        versioned, checksummed serialization), e.g. to save in a training checkpoint. Streamed
        in chunks of ``chunk_bytes`` (keep it below the server's and this client's message-size
        limits), so a sketch of any size can be exported."""
        if chunk_bytes < 1:
            raise ValueError(f"chunk_bytes must be >= 1, got {chunk_bytes}")
        request = pb.ExportSketchRequest(name=name, chunk_bytes=chunk_bytes)
        chunks = self._call("ExportSketch", request, collect=True)
        data = b"".join(chunk.data for chunk in chunks)
        if chunks and len(data) != chunks[0].total_bytes:
            raise NWSClientError(
                f"ExportSketch sent {len(data)} bytes of a {chunks[0].total_bytes}-byte state"
            )
        return data

    def import_sketch(
        self, name: str, data: bytes, *, replace: bool = False, chunk_bytes: int = 2**20
    ) -> ClientInfo:
        """Restore bytes :meth:`export_sketch` produced as sketch ``name`` (durably, when the
        server keeps a store). An existing sketch is overwritten only with ``replace``
        (AlreadyExists otherwise). Not retried on UNAVAILABLE (the import may have been applied)."""
        if chunk_bytes < 1:
            raise ValueError(f"chunk_bytes must be >= 1, got {chunk_bytes}")
        data = bytes(data)
        requests = [
            pb.ImportSketchRequest(data=data[i : i + chunk_bytes])
            for i in range(0, max(len(data), 1), chunk_bytes)
        ]
        requests[0].name, requests[0].replace = name, replace
        response = self._call("ImportSketch", iter(requests))
        return _wire.info_from_proto(response.sketch)

    # ----------------------------------------------------------------- statistics
    def stats(self, name: str | None = None) -> Stats:
        """Server statistics, those of every sketch (or of ``name``), and this client's."""
        response = self._call("Stats", pb.StatsRequest(name=name or ""))
        return Stats(
            server=_wire.server_from_proto(response.server),
            sketches={k: _wire.stats_from_proto(v) for k, v in response.sketches.items()},
            client=self.client_stats(),
        )

    def client_stats(self) -> ClientStats:
        """This process's counters; no network."""
        return self._link.stats()

    # ----------------------------------------------------------------- lifecycle
    def close(self, timeout: float | None = None) -> None:
        """Flush background updates (within ``timeout``), then close the channel."""
        self._link.close(self.timeout if timeout is None else timeout)

    def __enter__(self) -> SketchClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"SketchClient({self.target!r}, timeout={self.timeout}, "
            f"on_unavailable={self.on_unavailable!r})"
        )

    # ----------------------------------------------------------------- internals
    def _call(self, method: str, request: Any, *, collect: bool = False) -> Any:
        return self._link.call(method, request, collect=collect)

    def _next_request_id(self) -> str:
        return self._link.next_request_id()

    def _tensor(self, x: np.ndarray) -> pb.Tensor:
        return _wire.encode_tensor(x, self.wire_dtype)


__all__ = [
    "NOT_RETRIED_METHODS",
    "RETRIED_METHODS",
    "SERVICE_CONFIG",
    "OnUnavailable",
    "Ratio",
    "SketchClient",
]
