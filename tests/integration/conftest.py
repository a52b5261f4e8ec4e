"""Real servers on loopback port 0 for the integration tests, and helpers to talk to them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from integration_helpers import DIM, batch
from nws.v1 import sketch_pb2_grpc

from nws_client import SketchClient, SketchConfig
from nws_server.embedded import EmbeddedServer
from nws_server.server import SketchServer
from nws_server.settings import Settings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="module")
def server() -> Iterator[SketchServer]:
    """gRPC + REST in this process, on free loopback ports, default limits."""
    with SketchServer(Settings(grpc_port=0, rest_port=0, device="cpu")) as srv:
        yield srv


@pytest.fixture(scope="module")
def limited_server() -> Iterator[SketchServer]:
    """A server with small limits, to reach RESOURCE_EXHAUSTED cheaply."""
    settings = Settings(
        grpc_port=0,
        rest_port=0,
        device="cpu",
        max_batch_rows=64,
        max_sketches=3,
        max_sketch_bytes=4 * 2**20,
        max_message_bytes=64 * 1024,
    )
    with SketchServer(settings) as srv:
        yield srv


@pytest.fixture(scope="session")
def process_server() -> Iterator[EmbeddedServer]:
    """A server in a child process (no gRPC server threads in the test process: fork tests)."""
    with EmbeddedServer(mode="process", device="cpu") as srv:
        yield srv


@pytest.fixture
def client(server: SketchServer) -> Iterator[SketchClient]:
    with SketchClient(server.target, timeout=10.0) as c:
        yield c


@pytest.fixture
def stub(server: SketchServer) -> Iterator[sketch_pb2_grpc.SketchServiceStub]:
    """The generated stub on a plain channel: for requests the client would refuse to build."""
    with grpc.insecure_channel(server.target) as channel:
        yield sketch_pb2_grpc.SketchServiceStub(channel)


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A sketch name unique to the test."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", request.node.name)[:100]


@pytest.fixture
def sketch(client: SketchClient, name: str) -> str:
    """A fresh sketch of dim DIM with some data in it; returns its name."""
    client.create_sketch(name, SketchConfig(dim=DIM, rows=64, bits=6))
    x, y = batch(0, 64)
    client.update(name, x, y)
    return name
