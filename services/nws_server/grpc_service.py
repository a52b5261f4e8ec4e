"""The gRPC front door: converts ``nws.v1`` messages, calls the core, maps errors to status codes.

No logic lives here. Every handler decodes its request (:mod:`nws_server.wire`), delegates to the
:class:`~nws_server.registry.SketchRegistry`, and encodes the result; core errors become status
codes through the one table :data:`STATUS_CODES`, and every request is counted and timed.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
from nws.v1 import sketch_pb2 as pb
from nws.v1 import sketch_pb2_grpc

from nws_server import errors, wire
from nws_server.metrics import Metrics
from nws_server.registry import SketchRegistry, UpdateResult

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SketchService"].full_name

#: The core's errors as gRPC status codes; anything else is INTERNAL.
STATUS_CODES: dict[type[errors.NWSError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.DataCorruption: grpc.StatusCode.DATA_LOSS,
}


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """Status code and message for an exception raised while handling a request."""
    for cls in type(exc).__mro__:
        if cls in STATUS_CODES:
            return STATUS_CODES[cls], str(exc)
    log.exception("unexpected error while handling a request", exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); see the server log"


Handler = TypeVar("Handler", bound=Callable[..., Any])


def _unary(handler: Handler) -> Handler:
    """Time, count and map the errors of one unary handler ``handler(self, request)``."""
    method = handler.__name__

    @functools.wraps(handler)
    def wrapper(self: SketchServicer, request: Any, context: grpc.ServicerContext) -> Any:
        start = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            return handler(self, request)
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
        )
        return pb.SampleResponse(
            accepted=result.accepted.tolist(),
            weights=result.weights.tolist(),
            probabilities=result.probabilities.tolist(),
            estimates=result.estimates.tolist(),
            prior_used=result.prior_used.tolist(),
            warmup=result.warmup,
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
        return wire.info_to_proto(self.registry.decay(request.name, request.factor))

    @_unary
    def SetCenter(self, request: pb.SetCenterRequest) -> pb.Sketch:
        center = wire.tensor_from_proto(request.center, "center")
        return wire.info_to_proto(self.registry.set_center(request.name, center))

    @_unary
    def Stats(self, request: pb.StatsRequest) -> pb.StatsResponse:
        infos = [self.registry.get(request.name)] if request.name else self.registry.list()
        return pb.StatsResponse(
            server=wire.server_to_proto(self.registry.server_info(), self.version),
            sketches={info.name: wire.status_to_proto(info.status) for info in infos},
        )

    @_unary
    def Snapshot(self, request: pb.SnapshotRequest) -> pb.SnapshotResponse:
        results = self.registry.snapshot(request.name or None)
        return pb.SnapshotResponse(
            sketches=[pb.SnapshotResult(name=r.name, seq=r.seq, written=r.written) for r in results]
        )

    def _update(self, request: pb.UpdateRequest) -> UpdateResult:
        x = wire.tensor_from_proto(request.embeddings, "embeddings")
        values = wire.values_from_proto(request.values)
        return self.registry.update(request.name, x, values, request.request_id)


def _rows(request: Any) -> int:
    embeddings = getattr(request, "embeddings", None)
    return int(embeddings.shape[0]) if embeddings is not None and embeddings.shape else 0
