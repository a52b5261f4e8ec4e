"""Bearer-token authentication on both front doors, and the refusal to serve beyond loopback
without it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from integration_helpers import DIM, batch, packed
from nws.v1 import sketch_pb2 as pb
from nws.v1 import sketch_pb2_grpc
from pydantic import ValidationError

from nws_client import SketchClient, SketchConfig
from nws_client.errors import Unauthenticated
from nws_server.embedded import EmbeddedServer
from nws_server.server import SketchServer
from nws_server.settings import Settings

TOKEN = "s3cret-token"
NWS_SERVER = str(Path(sys.executable).with_name("nws-server"))


@pytest.fixture(scope="module")
def secured() -> Iterator[SketchServer]:
    settings = Settings(grpc_port=0, rest_port=0, device="cpu", auth_token=TOKEN)
    with SketchServer(settings) as srv:
        yield srv


@pytest.mark.parametrize("token", [None, "wrong", ""])
def test_grpc_calls_without_the_right_token_are_unauthenticated(
    secured: SketchServer, token: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NWS_AUTH_TOKEN", raising=False)
    with SketchClient(secured.target, timeout=10, auth_token=token) as client:
        with pytest.raises(Unauthenticated, match="bearer token"):
            client.list()
        with pytest.raises(Unauthenticated):
            client.update("any", *batch(0, 4))
    metadata = () if token is None else (("authorization", f"Bearer {token}"),)
    x, y = batch(1, 4)
    request = pb.UpdateRequest(name="any", embeddings=packed(x), values=y.tolist())
    with grpc.insecure_channel(secured.target) as channel:
        stub = sketch_pb2_grpc.SketchServiceStub(channel)
        with pytest.raises(grpc.RpcError) as unary:
            stub.ListSketches(pb.ListSketchesRequest(), timeout=10, metadata=metadata)
        assert unary.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as stream:
            list(stub.StreamUpdates(iter([request]), timeout=10, metadata=metadata))
        assert stream.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # health stays open
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_the_right_token_works_on_grpc_from_argument_and_environment(
    secured: SketchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SketchClient(secured.target, timeout=10, auth_token=TOKEN) as client:
        client.create_sketch("authed", SketchConfig(dim=DIM, rows=16, bits=4))
        client.update_async("authed", *batch(0, 8))  # the update stream carries it too
        client.flush()
        assert client.get("authed").stats.observations == 8
    monkeypatch.setenv("NWS_AUTH_TOKEN", TOKEN)
    with SketchClient(secured.target, timeout=10) as client:
        assert [info.name for info in client.list()] == ["authed"]
        assert TOKEN not in repr(client)


def test_rest_needs_the_token_except_for_health(secured: SketchServer) -> None:
    url = secured.rest_url
    assert url is not None
    with httpx.Client(base_url=url, timeout=10) as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            for path in ("/v1/sketches", "/metrics", "/openapi.json"):
                response = http.get(path, headers=headers)
                assert response.status_code == 401, path
                assert response.headers["www-authenticate"] == "Bearer"
                assert response.json()["code"] == "UNAUTHENTICATED"
        response = http.get("/v1/sketches", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200


def test_non_loopback_needs_a_token_or_insecure(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="--insecure"):
        Settings(host="0.0.0.0")
    assert Settings(host="0.0.0.0", insecure=True).token() is None
    token_file = tmp_path / "token"
    token_file.write_text(f"  {TOKEN}\n")
    assert Settings(host="0.0.0.0", auth_token_file=token_file).token() == TOKEN
    assert Settings(host="0.0.0.0", auth_token=TOKEN).token() == TOKEN
    with pytest.raises(ValidationError, match="not both"):
        Settings(auth_token=TOKEN, auth_token_file=token_file)
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValidationError, match="empty"):
        Settings(auth_token_file=tmp_path / "empty")
    # the command refuses before binding anything (exit status 2: invalid settings)
    result = subprocess.run(
        [NWS_SERVER, "--host", "0.0.0.0", "--grpc-port", "0", "--rest-port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "--insecure" in result.stderr


def test_an_embedded_server_with_a_token_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    with EmbeddedServer(mode="thread", device="cpu", auth_token_file=token_file) as server:
        with SketchClient(server.target, timeout=10, auth_token=TOKEN) as client:
            assert client.list() == []
        with (
            SketchClient(server.target, timeout=10, auth_token="nope") as client,
            pytest.raises(Unauthenticated),
        ):
            client.list()
