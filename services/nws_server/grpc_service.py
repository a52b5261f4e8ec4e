"""The gRPC front door: converts ``nws.v1`` messages, calls the core, maps errors to status codes.

No logic lives here. Every handler decodes its request (:mod:`nws_server.wire`), delegates to the
:class:`~nws_server.registry.SketchRegistry`, and encodes the result; core errors become the
status codes their classes carry (:func:`status_of`), and every request is counted and timed.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError
from google.protobuf.message_factory import GetMessageClass
from nws.v1 import sketch_pb2 as pb
from nws.v1 import sketch_pb2_grpc

from nws_core import errors, policy
from nws_server import wire
from nws_server.metrics import Metrics
from nws_server.registry import SketchRegistry
from nws_server.results import UpdateResult

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SketchService"].full_name
#: Data per ExportSketch chunk unless the request asks for another size.
EXPORT_CHUNK_BYTES = 2**20
#: What an imported state may take beyond the sketch-size limit (hash parameters, headers).
IMPORT_OVERHEAD_BYTES = 16 * 2**20


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """Status code and message for an exception raised while handling a request.

    The code is the one the error class carries (:mod:`nws_core.errors`); anything that is not
    an NWS error is INTERNAL, and logged.
    """
    cls = errors.status_class(exc)
    if cls is not None and cls is not errors.NWSError:
        return grpc.StatusCode[cls.code], str(exc)
    log.exception("unexpected error while handling a request", exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); see the server log"


Handler = TypeVar("Handler", bound=Callable[..., Any])


class Undecodable:
    """A request whose bytes are no valid message (truncated, a string that is not UTF-8, ...).

    gRPC answers INTERNAL when a request deserializer raises; :func:`add_servicer` hands such a
    request to the handler as this marker instead, and the handler rejects it (INVALID_ARGUMENT).
    """

    request_id = ""

    def __init__(self, type_name: str, error: Exception) -> None:
        self.message = f"the request is not a valid {type_name} message: {error}"


def _lenient(cls: Any) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return cls.FromString(data)
        except DecodeError as exc:
            return Undecodable(cls.DESCRIPTOR.full_name, exc)

    return parse


def _decoded(request: Any) -> Any:
    """``request`` (or an iterator of requests); an Undecodable one raises INVALID_ARGUMENT."""
    if isinstance(request, Undecodable):
        raise errors.InvalidArgument(request.message)
    if isinstance(request, Iterator):
        return (_decoded(item) for item in request)
    return request


def add_servicer(servicer: SketchServicer, server: grpc.Server) -> None:
    """Register ``servicer`` like the generated ``add_SketchServiceServicer_to_server``, but an
    undecodable request gets INVALID_ARGUMENT (the client's fault) rather than INTERNAL."""
    kinds = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    handlers = {}
    for method in pb.DESCRIPTOR.services_by_name["SketchService"].methods:
        kind = kinds[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = kind(
            getattr(servicer, method.name),
            request_deserializer=_lenient(GetMessageClass(method.input_type)),
            response_serializer=GetMessageClass(method.output_type).SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


def _unary(handler: Handler) -> Handler:
    """Time, count and map the errors of one unary handler ``handler(self, request)``."""
    method = handler.__name__

    @functools.wraps(handler)
    def wrapper(self: SketchServicer, request: Any, context: grpc.ServicerContext) -> Any:
        start = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            return handler(self, _decoded(request))
        except Exception as exc:
            code, message = status_of(exc)
            context.abort(code, message)
        finally:
            self.metrics.observe(
                "grpc", method, code.name, time.perf_counter() - start, _rows(request)
            )

    return wrapper  # type: ignore[return-value]


class SketchServicer(sketch_pb2_grpc.SketchServiceServicer):
    """``nws.v1.SketchService`` over a :class:`SketchRegistry`."""

    def __init__(self, registry: SketchRegistry, metrics: Metrics, version: str) -> None:
        self.registry = registry
        self.metrics = metrics
        self.version = version

    @_unary
    def CreateSketch(self, request: pb.CreateSketchRequest) -> pb.CreateSketchResponse:
        config = wire.config_from_proto(request.config)
        info, created = self.registry.create(request.name, config, request.warmup)
        return pb.CreateSketchResponse(sketch=wire.info_to_proto(info), created=created)

    @_unary
    def GetSketch(self, request: pb.GetSketchRequest) -> pb.Sketch:
        return wire.info_to_proto(self.registry.get(request.name, digest=request.include_digest))

    @_unary
    def ListSketches(self, request: pb.ListSketchesRequest) -> pb.ListSketchesResponse:
        return pb.ListSketchesResponse(
            sketches=[wire.info_to_proto(info) for info in self.registry.list()]
        )

    @_unary
    def DeleteSketch(self, request: pb.DeleteSketchRequest) -> pb.DeleteSketchResponse:
        self.registry.delete(request.name)
        return pb.DeleteSketchResponse()

    @_unary
    def Score(self, request: pb.ScoreRequest) -> pb.ScoreResponse:
        x = wire.tensor_from_proto(request.embeddings, "embeddings")
        result = self.registry.score(request.name, x)
        return pb.ScoreResponse(
            estimates=result.estimates.tolist(),
            prior_used=result.prior_used.tolist(),
            support=result.support.tolist(),
        )

    @_unary
    def Sample(self, request: pb.SampleRequest) -> pb.SampleResponse:
        x = wire.tensor_from_proto(request.embeddings, "embeddings")
        result = self.registry.sample(
            request.name,
            x,
            request.ratio,
            p_min=request.p_min if request.HasField("p_min") else None,
            seed=request.seed if request.HasField("seed") else None,
            rule=policy.SamplingPolicy(
                power=request.power if request.HasField("power") else 1.0,
                rank=request.rank,
                baseline_quantile=(
                    request.baseline_quantile if request.HasField("baseline_quantile") else None
                ),
                temper=request.temper if request.HasField("temper") else 1.0,
            ),
            auto=wire.auto_ratio_from_proto(request),
            prune=wire.prune_from_proto(request),
        )
        return pb.SampleResponse(
            accepted=result.accepted.tolist(),
            weights=result.weights.tolist(),
            probabilities=result.probabilities.tolist(),
            estimates=result.estimates.tolist(),
            prior_used=result.prior_used.tolist(),
            warmup=result.warmup,
            ratio=result.ratio,
            cv=result.cv,
            variance_factor=result.variance_factor,
        )

    @_unary
    def Update(self, request: pb.UpdateRequest) -> pb.UpdateResponse:
        result = self._update(request)
        return pb.UpdateResponse(
            request_id=result.request_id,
            observations=result.observations,
            duplicate=result.duplicate,
        )

    def StreamUpdates(
        self, request_iterator: Iterator[pb.UpdateRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.UpdateAck]:
        """One ack per update, in order; a rejected update is reported in its ack only."""
        for request in request_iterator:
            start = time.perf_counter()
            try:
                result = self._update(request)
                ack = pb.UpdateAck(
                    request_id=result.request_id,
                    observations=result.observations,
                    duplicate=result.duplicate,
                )
                code = grpc.StatusCode.OK
            except Exception as exc:
                code, message = status_of(exc)
                ack = pb.UpdateAck(
                    request_id=request.request_id, code=code.value[0], message=message
                )
            self.metrics.observe(
                "grpc", "StreamUpdates", code.name, time.perf_counter() - start, _rows(request)
            )
            yield ack

    @_unary
    def Decay(self, request: pb.DecayRequest) -> pb.Sketch:
        info = self.registry.decay(request.name, request.factor, request.request_id)
        return wire.info_to_proto(info)

    @_unary
    def SetCenter(self, request: pb.SetCenterRequest) -> pb.Sketch:
        center = wire.tensor_from_proto(request.center, "center")
        info = self.registry.set_center(request.name, center, request.request_id)
        return wire.info_to_proto(info)

    @_unary
    def MergeSketch(self, request: pb.MergeSketchRequest) -> pb.Sketch:
        info = self.registry.merge(request.name, request.source, request.request_id)
        return wire.info_to_proto(info)

    @_unary
    def Stats(self, request: pb.StatsRequest) -> pb.StatsResponse:
        infos = [self.registry.get(request.name)] if request.name else self.registry.list()
        return pb.StatsResponse(
            server=wire.server_to_proto(self.registry.server_info(), self.version),
            sketches={info.name: wire.stats_to_proto(info.stats) for info in infos},
        )

    @_unary
    def Snapshot(self, request: pb.SnapshotRequest) -> pb.SnapshotResponse:
        results = self.registry.snapshot(request.name or None)
        return pb.SnapshotResponse(
            sketches=[pb.SnapshotResult(name=r.name, seq=r.seq, written=r.written) for r in results]
        )

    @_unary
    def ExportSketch(self, request: pb.ExportSketchRequest) -> Iterator[pb.SketchChunk]:
        data = self.registry.export(request.name)
        step = request.chunk_bytes or EXPORT_CHUNK_BYTES
        total = len(data)
        return iter(
            [
                pb.SketchChunk(data=data[i : i + step], total_bytes=total)
                for i in range(0, max(total, 1), step)
            ]
        )

    @_unary
    def ImportSketch(self, requests: Iterator[pb.ImportSketchRequest]) -> pb.ImportSketchResponse:
        first: pb.ImportSketchRequest | None = None
        parts: list[bytes] = []
        size = 0
        limit = self.registry.limits.max_sketch_bytes + IMPORT_OVERHEAD_BYTES
        for request in requests:
            first = first or request
            size += len(request.data)
            if size > limit:
                raise errors.ResourceExhausted(
                    f"an imported state may take at most {limit:,} bytes (the sketch-size limit)"
                )
            parts.append(request.data)
        if first is None:
            raise errors.InvalidArgument("ImportSketch needs at least one message")
        info, replaced = self.registry.import_state(first.name, b"".join(parts), first.replace)
        return pb.ImportSketchResponse(sketch=wire.info_to_proto(info), replaced=replaced)

    def _update(self, request: pb.UpdateRequest) -> UpdateResult:
        request = _decoded(request)
        x = wire.tensor_from_proto(request.embeddings, "embeddings")
        values = wire.values_from_proto(request.values)
        return self.registry.update(request.name, x, values, request.request_id)


def _rows(request: Any) -> int:
    embeddings = getattr(request, "embeddings", None)
    return int(embeddings.shape[0]) if embeddings is not None and embeddings.shape else 0
