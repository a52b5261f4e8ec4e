"""The compose topology run natively on loopback, from docker-compose.yml's own commands.

Redis, the sketch server and the trainer start with exactly the command, environment and health
checks that Docker Compose resolves for the ``cpu`` profile (and the images' ENTRYPOINT and ENV
from the Dockerfiles), with only what a container network provides rewritten: service host
names become 127.0.0.1, the fixed ports become free ones, container paths become temporary
folders. The trainer trains the tiny random BERT for a few steps (documented nws-train flags,
appended: the last occurrence of a flag wins). Then the server and Redis must hold the sketch,
and a restarted server must restore it from Redis.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from deploy_helpers import TOKEN, dockerfile, exec_form, stage_env, stages

from nws_client import SketchClient

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
TRAINER_OVERRIDES = [
    "--train-size", "96", "--test-size", "32", "--batch-size", "16", "--max-seq-len", "32",
    "--max-steps", "4", "--eval-every", "2", "--probe-size", "16", "--warmup-steps", "1",
    "--lr", "1e-3",
]  # fmt: skip


class Rewrite:
    """What a container network and its volumes provide, mapped onto this machine."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.hosts: dict[str, str] = {}

    def value(self, text: str) -> str:
        for container, native in self.hosts.items():
            text = text.replace(container, native)
        for path in ("/runs", "/cache", "/tmp"):
            if text == path or text.startswith(path + "/"):
                text = str(self.tmp / "fs") + text
        return text

    def args(self, args: list[str], flags: dict[str, str]) -> list[str]:
        out = [self.value(a) for a in args]
        for flag, new in flags.items():
            out[out.index(flag) + 1] = new
        return out

    def env(self, *layers: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NWS_")}
        for layer in layers:
            env.update({k: self.value(str(v)) for k, v in layer.items() if k != "PATH"})
        return env


def _image_env(target: str) -> dict[str, str]:
    return stage_env(target)


def _entrypoint(target: str) -> list[str]:
    program, *rest = exec_form(stages(dockerfile())[target], "ENTRYPOINT")
    return [str(BIN / program), *rest]


def _run_healthcheck(test: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A compose health check (``CMD`` or ``CMD-SHELL`` form), as Docker would run it."""
    kind, *command = test
    if kind == "CMD-SHELL":
        command = ["sh", "-c", command[0]]
    elif command[0] == "python":
        command[0] = sys.executable
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=30)


def _wait_healthy(test: list[str], env: dict[str, str], proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        result = _run_healthcheck(test, env)
        if result.returncode == 0:
            return
        assert proc.poll() is None, f"the process exited with {proc.returncode}"
        assert time.monotonic() < deadline, f"never healthy: {result.stdout}{result.stderr}"
        time.sleep(0.2)


def _stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=timeout)


@pytest.fixture
def topology(resolved: dict[str, Any], tmp_path: Path) -> Iterator[dict[str, Any]]:
    services = resolved["services"]
    yield {
        "redis": services["redis"],
        "server": services["sketch-server-cpu"],
        "trainer": services["trainer-cpu"],
        "rewrite": Rewrite(tmp_path),
    }


@pytest.fixture
def redis_port(topology: dict[str, Any], tmp_path: Path) -> Iterator[int]:
    """redis-server with the compose command's arguments, on a free loopback port."""
    service = topology["redis"]
    rewrite: Rewrite = topology["rewrite"]
    workdir = tmp_path / "redis"
    workdir.mkdir()
    rng = random.Random()
    for _ in range(20):
        port = rng.randint(20000, 45000)
        command = [*service["command"], "--port", str(port), "--bind", "127.0.0.1"]
        proc = subprocess.Popen(
            [*command, "--dir", str(workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        test = list(service["healthcheck"]["test"])
        test[1] = test[1].replace("redis-cli", f"redis-cli -p {port}")
        try:
            _wait_healthy(test, rewrite.env(), proc)
        except AssertionError:
            _stop(proc)
            continue  # the port was taken: try another one
        info = redis.Redis(port=port).info("server")
        if info["process_id"] != proc.pid:  # someone else's server answered
            _stop(proc)
            continue
        rewrite.hosts["redis:6379"] = f"127.0.0.1:{port}"
        try:
            yield port
        finally:
            _stop(proc)
        return
    pytest.fail("could not start redis-server on any loopback port")


class Server:
    """The sketch server started from the compose service, on free loopback ports."""

    def __init__(self, topology: dict[str, Any], tmp_path: Path, run: int) -> None:
        service = topology["server"]
        rewrite: Rewrite = topology["rewrite"]
        self.ready_file = tmp_path / f"ready-{run}.json"
        args = rewrite.args(
            service["command"], {"--host": "127.0.0.1", "--grpc-port": "0", "--rest-port": "0"}
        )
        self.env = rewrite.env(_image_env("server"), service["environment"])
        assert self.env["NWS_AUTH_TOKEN"] == TOKEN and self.env["NWS_DEVICE"] == "cpu"
        self.log = (tmp_path / f"server-{run}.log").open("wb")
        self.proc = subprocess.Popen(
            [*_entrypoint("server"), *args, "--ready-file", str(self.ready_file)],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while not self.ready_file.exists():
            assert self.proc.poll() is None, (tmp_path / f"server-{run}.log").read_text()
            assert time.monotonic() < deadline, "the server wrote no ready file"
            time.sleep(0.1)
        ready = json.loads(self.ready_file.read_text())
        self.target, self.rest_url = ready["target"], ready["rest_url"]
        test = [
            part.replace("127.0.0.1:50051", self.target) for part in service["healthcheck"]["test"]
        ]
        _wait_healthy(test, self.env, self.proc)
        self.http = httpx.Client(
            base_url=self.rest_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        )

    def stop(self) -> int:
        self.http.close()
        code = _stop(self.proc)
        self.log.close()
        return code


def test_compose_topology_runs_natively(
    topology: dict[str, Any], redis_port: int, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    rewrite: Rewrite = topology["rewrite"]
    trainer = topology["trainer"]
    server = Server(topology, tmp_path, run=1)
    try:
        # the health check says NOT healthy once the server is gone (checked at the end), and
        # the token is enforced: the compose file binds beyond loopback
        assert httpx.get(f"{server.rest_url}/v1/sketches").status_code == 401
        rewrite.hosts["sketch-server:50051"] = server.target
        args = trainer["command"]
        sketch = args[args.index("--sketch-name") + 1]
        output = Path(rewrite.value(args[args.index("--output") + 1]))
        env = rewrite.env(_image_env("trainer"), trainer["environment"])
        assert env["NWS_AUTH_TOKEN"] == TOKEN and env["HF_HUB_OFFLINE"] == "1"
        run = subprocess.run(
            [
                *_entrypoint("trainer"),
                *rewrite.args(args, {}),
                "--model",
                str(tiny_bert_dir),
                *TRAINER_OVERRIDES,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert run.returncode == 0, shlex.join(run.args) + "\n" + run.stdout + run.stderr
        summary = json.loads((output / "summary.json").read_text())
        assert summary["steps"] == 4
        assert Path(env["NWS_CACHE_DIR"]).is_dir()  # the embedding cache went to its volume

        body = server.http.get(f"/v1/sketches/{sketch}").json()
        stats = body["stats"]
        assert stats["observations"] > 0 and stats["updates"] > 0 and stats["sampled"] > 0
        histograms = server.http.get(f"/v1/sketches/{sketch}/histograms").json()
        assert histograms["observed"]["count"] > 0 and histograms["estimated"]["count"] > 0
        with SketchClient(server.target, auth_token=TOKEN) as client:
            digest = client.get(sketch, digest=True).digest
        # Redis (AOF, fsync always, from the compose command) holds the sketch's journal
        store = redis.Redis(port=redis_port)
        assert store.config_get("appendonly") == {"appendonly": "yes"}
        assert store.config_get("appendfsync") == {"appendfsync": "always"}
        assert any(sketch.encode() in key for key in store.keys("*"))
    finally:
        assert server.stop() == 0
    assert (
        _run_healthcheck(
            [
                p.replace("127.0.0.1:50051", server.target)
                for p in topology["server"]["healthcheck"]["test"]
            ],
            server.env,
        ).returncode
        == 1
    )

    restarted = Server(topology, tmp_path, run=2)
    try:
        again = restarted.http.get(f"/v1/sketches/{sketch}").json()["stats"]
        assert again["observations"] == stats["observations"]
        with SketchClient(restarted.target, auth_token=TOKEN) as client:
            assert client.get(sketch, digest=True).digest == digest
    finally:
        assert restarted.stop() == 0
