"""Stock gRPC tooling works against the server: the health client and the reflection client."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from nws.v1 import sketch_pb2

from nws_server.server import SketchServer
from nws_server.settings import Settings


@pytest.fixture
def channel(server: SketchServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.target) as ch:
        yield ch


def test_health_client_reports_serving(channel: grpc.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", "nws.v1.SketchService"):
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert response.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as info:
        stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_health_turns_not_serving_on_shutdown() -> None:
    server = SketchServer(Settings(grpc_port=0, rest=False, device="cpu")).start()
    with grpc.insecure_channel(server.target) as ch:
        watch = health_pb2_grpc.HealthStub(ch).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=10
        )
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        stopping = threading.Thread(target=server.stop, kwargs={"grace": 5.0})
        stopping.start()
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()  # the last in-flight call: stop() returns without using its grace
        stopping.join()
    assert not server.ready


def test_reflection_lists_and_describes_the_service(channel: grpc.Channel) -> None:
    database = ProtoReflectionDescriptorDatabase(channel)
    services = set(database.get_services())
    assert "nws.v1.SketchService" in services
    assert "grpc.health.v1.Health" in services
    pool = descriptor_pool.DescriptorPool(database)
    service = pool.FindServiceByName("nws.v1.SketchService")
    served = sketch_pb2.DESCRIPTOR.services_by_name["SketchService"]
    assert {m.name for m in service.methods} == {m.name for m in served.methods}
    assert {"Sample", "StreamUpdates", "MergeSketch"} <= {m.name for m in service.methods}
    tensor = pool.FindMessageTypeByName("nws.v1.Tensor")
    assert [f.name for f in tensor.fields] == ["dtype", "shape", "data"]


def test_the_grpcurl_examples_of_the_docs_work(channel: grpc.Channel) -> None:
    """Each ``grpcurl -d '<json>' ... nws.v1.SketchService/<Method>`` of docs/server.md, sent
    the way grpcurl sends it (JSON mapped to the request message by the descriptor)."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "server.md").read_text()
    calls = re.findall(
        r"-d '(\{.*?\})'\s*\\?\s*\n?\s*127\.0\.0\.1:50051 nws\.v1\.SketchService/(\w+)", docs
    )
    assert [method for _, method in calls] == ["CreateSketch", "Update", "Sample", "GetSketch"]
    service = sketch_pb2.DESCRIPTOR.services_by_name["SketchService"]
    for body, method in calls:
        rpc = service.methods_by_name[method]
        request = json_format.Parse(body, message_factory.GetMessageClass(rpc.input_type)())
        response_class = message_factory.GetMessageClass(rpc.output_type)
        call = channel.unary_unary(
            f"/nws.v1.SketchService/{method}",
            request_serializer=type(request).SerializeToString,
            response_deserializer=response_class.FromString,
        )
        response = call(request, timeout=10)
        if method == "Update":
            assert response.observations == 2
        if method == "Sample":
            assert len(response.accepted) == 1


def test_the_python_examples_of_the_docs_run(server: SketchServer) -> None:
    """Every ```python block of docs/server.md, pointed at this test's server."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "server.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", docs, flags=re.S)
    assert len(blocks) == 3
    for block in blocks:
        code = block.replace("127.0.0.1:50051", server.target)
        exec(compile(code, "docs/server.md", "exec"), {"__name__": "docs"})
