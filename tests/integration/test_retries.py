"""Every mutating RPC is safe to retry, or is not retried: replies lost after the server applied.

A real gRPC server on loopback whose interceptor lets the servicer apply the first call of each
chosen method, then drops the reply (the client sees UNAVAILABLE, as after a connection that broke
on the way back). The client's declared retry policy resends the call; a write that carries a
request id is applied once and its retry answers success; a write without one is not retried.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from integration_helpers import DIM, batch
from nws.v1 import sketch_pb2 as pb

from nws_client import SketchClient, SketchConfig
from nws_client.client import NOT_RETRIED_METHODS, RETRIED_METHODS, SERVICE_CONFIG
from nws_client.errors import Unavailable
from nws_server.grpc_service import SketchServicer, add_servicer
from nws_server.metrics import Metrics
from nws_server.registry import SketchRegistry
from nws_server.store import FileStore

CONFIG = SketchConfig(dim=DIM, rows=32, bits=5)


class DropFirstReply(grpc.ServerInterceptor):
    """Runs the handler of each method in ``methods`` (the mutation is applied), then, for the
    first call of that method only, throws the reply away and answers UNAVAILABLE."""

    def __init__(self, methods: set[str]) -> None:
        self.methods = methods
        self.requests: dict[str, list[Any]] = defaultdict(list)
        self._lock = threading.Lock()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method.rsplit("/", 1)[-1]  # type: ignore[attr-defined]
        if handler is None or method not in self.methods:
            return handler

        def drop_first(response: Any, request: Any, context: grpc.ServicerContext) -> Any:
            with self._lock:
                self.requests[method].append(request)
                first = len(self.requests[method]) == 1
            if first:
                context.abort(grpc.StatusCode.UNAVAILABLE, "reply lost after the server applied")
            return response

        if handler.unary_unary is not None:
            inner = handler.unary_unary

            def unary(request: Any, context: grpc.ServicerContext) -> Any:
                return drop_first(inner(request, context), request, context)

            return grpc.unary_unary_rpc_method_handler(
                unary, handler.request_deserializer, handler.response_serializer
            )
        assert handler.stream_unary is not None, method
        inner_stream = handler.stream_unary

        def stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            seen: list[Any] = []
            response = inner_stream((seen.append(r) or r for r in requests), context)
            return drop_first(response, seen[0] if seen else None, context)

        return grpc.stream_unary_rpc_method_handler(
            stream, handler.request_deserializer, handler.response_serializer
        )


@pytest.fixture
def lossy(tmp_path: Path) -> Iterator[tuple[SketchClient, DropFirstReply, SketchRegistry]]:
    """A durable registry behind a gRPC server that drops the first reply of every write."""
    interceptor = DropFirstReply(
        {
            "Update",
            "Decay",
            "SetCenter",
            "MergeSketch",
            "DeleteSketch",
            "ImportSketch",
            "CreateSketch",
        }
    )
    registry = SketchRegistry(device="cpu", store=FileStore(tmp_path))
    server = grpc.server(ThreadPoolExecutor(max_workers=4), interceptors=[interceptor])
    add_servicer(SketchServicer(registry, Metrics(registry), "test"), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with SketchClient(f"127.0.0.1:{port}", timeout=30) as client:
            yield client, interceptor, registry
    finally:
        server.stop(None)


def test_every_method_is_either_retried_or_not() -> None:
    service = pb.DESCRIPTOR.services_by_name["SketchService"]
    methods = {m.name for m in service.methods}
    assert set(RETRIED_METHODS) | set(NOT_RETRIED_METHODS) == methods
    assert not set(RETRIED_METHODS) & set(NOT_RETRIED_METHODS)
    (config,) = SERVICE_CONFIG["methodConfig"]
    assert {n["method"] for n in config["name"]} == set(RETRIED_METHODS)
    # every retried write carries a request id
    for method in ("Update", "Decay", "SetCenter", "MergeSketch"):
        assert "request_id" in service.methods_by_name[method].input_type.fields_by_name


def test_a_retried_decay_is_applied_once(
    lossy: tuple[SketchClient, DropFirstReply, SketchRegistry],
) -> None:
    client, interceptor, registry = lossy
    assert client.create_sketch("s", CONFIG).name == "s"  # the retry finds it: created False
    x, y = batch(1, 16)
    assert client.update("s", x, y).observations == 16  # retried, applied once
    info = client.decay("s", 0.5)  # applied, reply dropped, retried: applied once
    assert info.stats.total_weight == 8.0  # not 4.0
    first, retry = interceptor.requests["Decay"]
    assert first.request_id and retry.request_id == first.request_id  # the same logical call
    sketch = registry.catalog.get("s").sketch
    np.testing.assert_array_equal(sketch.bottom.sum(dim=1).numpy(), np.full(CONFIG.rows, 8.0))
    assert client.decay("s", 0.5).stats.total_weight == 4.0  # a new call gets a fresh id
    assert client.get("s").stats.observations == 16
    (u1, u2) = interceptor.requests["Update"]
    assert u1.request_id == u2.request_id
    # the id survives a restart: a registry restored from the store still knows it
    restored = SketchRegistry(device="cpu", store=registry.store)
    restored.restore()
    assert restored.get("s").stats.total_weight == 4.0
    assert restored.decay("s", 0.5, first.request_id).stats.total_weight == 4.0
    assert restored.get("s", digest=True).digest == client.get("s", digest=True).digest


def test_a_retried_set_center_succeeds_once(
    lossy: tuple[SketchClient, DropFirstReply, SketchRegistry],
) -> None:
    client, interceptor, _ = lossy
    client.create_sketch("c", CONFIG)
    center = np.linspace(-1, 1, DIM, dtype=np.float32)
    info = client.set_center("c", center)  # the retry answers success, not FailedPrecondition
    assert info.config.center is not None
    np.testing.assert_allclose(info.config.center, center)
    first, retry = interceptor.requests["SetCenter"]
    assert first.request_id and retry.request_id == first.request_id


def test_a_retried_merge_is_applied_once_also_after_a_restart(
    lossy: tuple[SketchClient, DropFirstReply, SketchRegistry],
) -> None:
    client, interceptor, registry = lossy
    client.create_sketch("a", CONFIG)
    client.create_sketch("b", CONFIG)
    client.update("a", *batch(3, 16))
    client.update("b", *batch(4, 8))
    info = client.merge("b", "a")  # applied, reply dropped, retried: applied once
    assert info.stats.observations == 24 and info.stats.total_weight == 24.0  # not 40
    first, retry = interceptor.requests["MergeSketch"]
    assert first.request_id and retry.request_id == first.request_id
    assert client.get("a").stats.observations == 16  # the source is unchanged
    restored = SketchRegistry(device="cpu", store=registry.store)
    restored.restore()
    assert restored.merge("b", "a", first.request_id).stats.observations == 24
    assert restored.get("b", digest=True).digest == client.get("b", digest=True).digest


def test_delete_and_import_are_not_retried(
    lossy: tuple[SketchClient, DropFirstReply, SketchRegistry],
) -> None:
    client, interceptor, registry = lossy
    client.create_sketch("d", CONFIG)
    client.update("d", *batch(2, 4))
    state = client.export_sketch("d")
    with pytest.raises(Unavailable):
        client.delete("d")  # applied; its reply lost; not resent (it would say NOT_FOUND)
    assert len(interceptor.requests["DeleteSketch"]) == 1
    assert [info.name for info in client.list()] == []
    with pytest.raises(Unavailable):
        client.import_sketch("d", state)  # applied; not resent (it would say ALREADY_EXISTS)
    assert len(interceptor.requests["ImportSketch"]) == 1
    assert client.get("d").stats.observations == 4
    assert registry.get("d").stats.observations == 4
