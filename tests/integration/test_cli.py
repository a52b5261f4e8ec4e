"""``nws-server`` as a real process: settings from flags and environment, graceful shutdown."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from integration_helpers import DIM, batch, packed
from nws.v1 import sketch_pb2 as pb
from nws.v1 import sketch_pb2_grpc

from nws_client import SketchClient, SketchConfig
from nws_server.embedded import EmbeddedServer

NWS_SERVER = str(Path(sys.executable).with_name("nws-server"))


def _start(
    tmp_path: Path, *flags: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], dict[str, object]]:
    ready = tmp_path / "ready.json"
    process = subprocess.Popen(
        [NWS_SERVER, "--grpc-port", "0", "--rest-port", "0", "--ready-file", str(ready), *flags],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"nws-server did not start:\n{process.communicate()[0]}")
        time.sleep(0.02)
    return process, json.loads(ready.read_text())


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_graceful_shutdown_finishes_in_flight_streams(tmp_path: Path, signum: int) -> None:
    process, info = _start(tmp_path, "--device", "cpu", "--grace-seconds", "20")
    target = str(info["target"])
    with SketchClient(target) as client:
        client.create_sketch("live", SketchConfig(dim=DIM))
    outbox: queue.Queue[pb.UpdateRequest | None] = queue.Queue()

    def requests() -> Iterator[pb.UpdateRequest]:
        while (item := outbox.get()) is not None:
            yield item

    def update(i: int) -> pb.UpdateRequest:
        x, y = batch(i, 4)
        return pb.UpdateRequest(
            name="live", embeddings=packed(x), values=y.tolist(), request_id=str(i)
        )

    with grpc.insecure_channel(target) as channel:
        acks = sketch_pb2_grpc.SketchServiceStub(channel).StreamUpdates(requests(), timeout=60)
        outbox.put(update(1))
        assert next(acks).observations == 4  # the stream is open and in flight
        process.send_signal(signum)
        # the server stops accepting: new calls fail, even on this connection
        health = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                status = health.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                if status == health_pb2.HealthCheckResponse.NOT_SERVING:
                    break
            except grpc.RpcError:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the server kept accepting calls after the signal")
        # ... but the stream in flight is still served to its end
        outbox.put(update(2))
        assert next(acks).observations == 8
        outbox.put(None)
        assert list(acks) == []
    output = process.communicate(timeout=30)[0]
    assert process.returncode == 0, output
    assert f"received {signal.Signals(signum).name}" in output
    assert not (tmp_path / "ready.json").exists()


def test_flags_override_environment(tmp_path: Path) -> None:
    process, info = _start(
        tmp_path,
        "--max-batch-rows",
        "7",
        env={"NWS_MAX_BATCH_ROWS": "3", "NWS_MICRO_BATCHING": "true", "NWS_DEVICE": "cpu"},
    )
    try:
        with SketchClient(str(info["target"])) as client:
            client.create_sketch("s", SketchConfig(dim=DIM))
            client.score("s", batch(1, 7)[0])  # 7 rows allowed: the flag won over the env
            stats = client.stats()
            assert stats.server.micro_batching and stats.server.device == "cpu"
        health = httpx.get(f"{info['rest_url']}/healthz", timeout=10)
        assert health.json() == {"status": "ok"}
    finally:
        process.terminate()
        assert process.wait(30) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--grpc-port", "70000"], "grpc_port"),
        (["--device", "tpu"], "device"),
        (["--host", "example.com"], "host"),
        (["--batch-wait-ms", "50"], "batch_wait_ms"),
    ],
)
def test_invalid_settings_exit_2(args: list[str], message: str) -> None:
    result = subprocess.run(
        [NWS_SERVER, *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert f"invalid {message}" in result.stderr


def test_a_port_in_use_exits_1(tmp_path: Path) -> None:
    from nws_server.server import SketchServer
    from nws_server.settings import Settings

    with SketchServer(Settings(grpc_port=0, rest=False, device="cpu")) as taken:
        result = subprocess.run(
            [NWS_SERVER, "--grpc-port", str(taken.grpc_port), "--no-rest", "--device", "cpu"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1, result.stderr
    assert "cannot bind gRPC" in result.stderr


def test_embedded_process_mode() -> None:
    with EmbeddedServer(mode="process", rest=True, device="cpu") as server:
        with SketchClient(server.target) as client:
            assert client.list() == []
        assert server.rest_url is not None
        assert httpx.get(server.rest_url + "/readyz", timeout=10).status_code == 200
        pid = server.pid
    with pytest.raises(ProcessLookupError):  # reaped after a graceful stop
        os.kill(pid, 0)


def test_embedded_thread_mode() -> None:
    with EmbeddedServer(mode="thread") as server, SketchClient(server.target) as client:
        client.create_sketch("t", SketchConfig(dim=4))
        assert [s.name for s in client.list()] == ["t"]
        assert server.rest_url is None


def test_embedded_server_exits_when_its_parent_dies() -> None:
    code = (
        "from nws_server.embedded import EmbeddedServer\n"
        "server = EmbeddedServer(device='cpu').start()\n"
        "print(server.pid, flush=True)\n"
        "import time; time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    server_pid = int(parent.stdout.readline())
    parent.kill()  # no chance to stop its server
    parent.wait()
    deadline = time.monotonic() + 20
    while _running(server_pid):
        assert time.monotonic() < deadline, "the orphaned embedded server kept running"
        time.sleep(0.1)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's reaping is left
