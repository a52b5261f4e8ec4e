"""``docker-compose up`` for real: the images built offline, the cpu profile started, a short
training job through the compose network, the sketch read over REST, the sketch server killed
(every acknowledged update must come back from Redis), ``down`` / ``up`` with the volume kept,
and ``down -v``. Marked ``docker``: not part of ``make test``; ``make compose-test`` (called by
``.ci/run``) runs it. It measures what it does into ``benchmarks/results/compose.md``.

The gpu profile is validated with ``docker-compose config`` only (tests/deploy/): no GPU here.
"""

from __future__ import annotations

import json
import socket
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from docker_engine import ROOT, docker_engine, image_mb, need, run, wait_healthy

from _common import markdown_table, write_result
from nws_client import SketchClient, SketchConfig

pytestmark = [pytest.mark.docker, pytest.mark.timeout(3600)]

TOKEN = "compose-stack-test-token-0123456789"
PROJECT = "nwsci"
IMAGES = {
    "base": "nws-base:bookworm",
    "redis": "nws-redis:bookworm",
    "sketch server": "nws-sketch-server:cpu",
    "trainer": "nws-trainer:cpu",
}
SERVER, TRAINER = "sketch-server-cpu", "trainer-cpu"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _rest(port: int, path: str, token: str | None = TOKEN) -> tuple[int, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None


def _digests(client: SketchClient) -> dict[str, tuple[str | None, int]]:
    return {
        info.name: (client.get(info.name, digest=True).digest, info.stats.observations)
        for info in client.list()
    }


def test_compose_stack_builds_runs_and_keeps_every_acknowledged_update(tmp_path: Path) -> None:
    compose_exe = need("docker-compose", "apt-get install -y docker-compose")
    measured: dict[str, Any] = {}
    with docker_engine() as env:
        # 1. images: a Debian base, Redis from Debian, a wheelhouse, the two roles' images
        timings = Path(env.get("TMPDIR", "/tmp")) / f"nws-build-{time.time_ns()}.jsonl"
        start = time.monotonic()
        run(
            [str(ROOT / "deploy/build-offline.sh"), "--timings", str(timings)],
            {"PYTHON": sys.executable, **env},  # its pip downloads the wheelhouse
            timeout=2400,
        )
        measured["build_seconds"] = time.monotonic() - start
        measured["build_steps"] = [json.loads(line) for line in timings.read_text().splitlines()]
        timings.unlink()
        measured["image_mb"] = {role: image_mb(image, env) for role, image in IMAGES.items()}
        # the server image holds the server's role only; the trainer's has transformers too
        probe = "import importlib.util as u; print(bool(u.find_spec('transformers')))"
        for image, expected in ((IMAGES["sketch server"], "False"), (IMAGES["trainer"], "True")):
            out = run(["docker", "run", "--rm", "--entrypoint", "python", image, "-c", probe], env)
            assert out.stdout.strip() == expected, image

        grpc_port, rest_port = _free_port(), _free_port()
        env |= {
            "NWS_AUTH_TOKEN": TOKEN,
            "NWS_GRPC_PORT": str(grpc_port),
            "NWS_REST_PORT": str(rest_port),
            "NWS_BASE_IMAGE": IMAGES["base"],
            "NWS_REDIS_IMAGE": IMAGES["redis"],
            "NWS_WHEELHOUSE": "deploy/wheelhouse",
        }
        compose = [compose_exe, "-p", PROJECT, "-f", "docker-compose.yml"]
        compose += ["-f", "deploy/compose.smoke.yml", "--profile", "cpu"]

        def container(service: str) -> str:
            cid = run([*compose, "ps", "-q", service], env).stdout.strip()
            assert cid, f"no container for {service}"
            return cid

        try:
            # 2. up: Redis, then the sketch server once Redis is healthy, then the trainer
            start = time.monotonic()
            run([*compose, "up", "-d"], env, timeout=600)
            wait_healthy(container(SERVER), env)
            measured["healthy_after_up_s"] = time.monotonic() - start

            # 3. the trainer's short job, through the compose network with its loader workers
            trainer = container(TRAINER)
            start = time.monotonic()
            code = run(["docker", "wait", trainer], env, timeout=1200).stdout.strip()
            measured["trainer_job_s"] = time.monotonic() - start
            logs = run(["docker", "logs", trainer], env).stderr
            assert code == "0", logs[-4000:]
            copied = tmp_path / "summary.json"
            run(["docker", "cp", f"{trainer}:/runs/smoke/summary.json", str(copied)], env)
            summary = json.loads(copied.read_text())
            assert summary["strategy"] == "nws" and summary["steps"] > 0
            assert summary["sketch_endpoint"] == "sketch-server:50051"
            measured["trainer"] = {
                "steps": summary["steps"],
                "candidates_seen": summary["candidates_seen"],
                "examples_backpropagated": summary["examples_backpropagated"],
                "acceptance_rate": round(summary["acceptance_rate"], 3),
                "best_test_accuracy": summary["best_test_accuracy"],
            }

            # 4. the sketch over REST (the token is required; the probes are open)
            assert _rest(rest_port, "/v1/sketches/compose-nws", token=None)[0] == 401
            status, sketch = _rest(rest_port, "/v1/sketches/compose-nws")
            assert status == 200, sketch
            stats = sketch["stats"]
            # the losses of what was trained came back: at least the two warm-up batches, at
            # most every candidate of the one pass
            assert 2 * 32 <= stats["observations"] <= summary["candidates_seen"], stats
            assert stats["updates"] > 0, stats
            assert stats["sampled"] > stats["accepted"] > 0, stats  # the workers sampled
            measured["sketch_stats"] = {
                k: stats[k] for k in ("observations", "updates", "sampled", "accepted")
            }
            assert _rest(rest_port, "/readyz", token=None)[0] == 200

            # 5. acknowledged updates from this host, then SIGKILL: all come back from Redis
            client = SketchClient(f"127.0.0.1:{grpc_port}", auth_token=TOKEN, timeout=30)
            client.create_sketch("restart-check", SketchConfig(dim=32, rows=64, bits=8))
            rng = np.random.default_rng(0)
            acked = 0
            for _ in range(20):
                client.update("restart-check", rng.normal(size=(50, 32)), rng.uniform(0, 3, 50))
                acked += 50
            before = _digests(client)
            client.close()
            assert before["restart-check"][1] == acked == 1000

            def up_again(key: str) -> dict[str, tuple[str | None, int]]:
                """``up -d`` the server, time it to healthy, and read every sketch's digest."""
                start = time.monotonic()
                run([*compose, "up", "-d", SERVER], env, timeout=300)
                wait_healthy(container(SERVER), env)
                measured[key] = time.monotonic() - start
                with SketchClient(f"127.0.0.1:{grpc_port}", auth_token=TOKEN, timeout=30) as c:
                    return _digests(c)

            run(["docker", "kill", "--signal", "KILL", container(SERVER)], env)
            # same content digests, same observation counts
            assert up_again("healthy_after_kill_s") == before
            measured["restart_check"] = {"acknowledged_rows": acked, "sketches": len(before)}

            # 6. down (volumes kept) and up again: the sketches are in the redis-data volume
            run([*compose, "down"], env, timeout=300)
            assert up_again("healthy_after_down_up_s") == before
        finally:
            run([*compose, "down", "-v"], env, timeout=300, check=False)
        label = f"label=com.docker.compose.project={PROJECT}"
        volumes = run(["docker", "volume", "ls", "-q", "--filter", label], env)
        assert volumes.stdout.strip() == "", volumes.stdout
    _write(measured)


def _write(m: dict[str, Any]) -> None:
    steps = [
        [s["step"], "reused" if s["skipped"] else f"{s['seconds']:.0f}"] for s in m["build_steps"]
    ]
    sizes = [[role, IMAGES[role], f"{mb:,.0f}"] for role, mb in m["image_mb"].items()]
    times = [
        ["`up -d` until the sketch server is healthy", f"{m['healthy_after_up_s']:.1f}"],
        ["the trainer's smoke job (deploy/compose.smoke.yml)", f"{m['trainer_job_s']:.1f}"],
        ["SIGKILL, `up -d` until healthy again", f"{m['healthy_after_kill_s']:.1f}"],
        ["`down`, `up -d` until healthy again", f"{m['healthy_after_down_up_s']:.1f}"],
    ]
    body = "\n\n".join(
        [
            "`python -m pytest -m docker tests/docker` (`make compose-test`): the cpu profile of "
            "docker-compose.yml, built by `deploy/build-offline.sh` (Debian bookworm base from "
            "debootstrap, Debian's redis-server, a wheelhouse from the host), one sample each.",
            f"Build: {m['build_seconds']:.0f} s in all\n\n"
            + markdown_table(["step", "seconds"], steps),
            "Image sizes (uncompressed, as `docker image inspect` reports them)\n\n"
            + markdown_table(["role", "image", "MB"], sizes),
            "Times\n\n" + markdown_table(["what", "seconds"], times),
            f"Trainer job: {json.dumps(m['trainer'])}; the sketch it left, over REST: "
            f"{json.dumps(m['sketch_stats'])}.",
            f"Restart check: {m['restart_check']['acknowledged_rows']} rows acknowledged by "
            f"Update from the host, the server container killed with SIGKILL: all "
            f"{m['restart_check']['sketches']} sketches came back from Redis with the same "
            "content digests and observation counts, and again after `down` / `up`; "
            "`down -v` left no volume.",
        ]
    )
    write_result("compose", "docker-compose, for real (cpu profile)", body)
    (ROOT / "benchmarks/results/compose.json").write_text(json.dumps(m, indent=2) + "\n")
