"""A Docker engine of the test's own, and docker / docker-compose commands against it.

The engine runs as root with its own data root (kept between runs, so that a second run reuses
the images and Docker's layer cache: ``NWS_DOCKER_ROOT``, default ``.cache/docker`` of the
checkout) and its own exec root, socket and pidfile in a fresh temporary folder; it is stopped by
its pid when the test ends.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def need(tool: str, hint: str) -> str:
    found = shutil.which(tool)
    if found is None:
        pytest.fail(f"{tool} is not installed: {hint}")
    return found


@contextmanager
def docker_engine() -> Iterator[dict[str, str]]:
    """Start ``dockerd``; yield the environment (``DOCKER_HOST``) that reaches it."""
    if os.geteuid() != 0:
        pytest.fail("the compose test starts a Docker engine and runs debootstrap: run it as root")
    dockerd = need("dockerd", "apt-get install -y docker.io (make compose-test does)")
    need("docker", "apt-get install -y docker.io")
    data_root = Path(os.environ.get("NWS_DOCKER_ROOT", ROOT / ".cache" / "docker"))
    data_root.mkdir(parents=True, exist_ok=True)
    # a short path: containerd's sockets live under the exec root (108-byte socket path limit)
    run_dir = Path(tempfile.mkdtemp(prefix="nws-dockerd-", dir="/tmp"))
    socket = run_dir / "docker.sock"
    log_path = run_dir / "dockerd.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NWS_", "COMPOSE_"))}
    env["DOCKER_HOST"] = f"unix://{socket}"
    with log_path.open("wb") as log:
        engine = subprocess.Popen(
            [
                dockerd,
                "--data-root",
                str(data_root),
                "--exec-root",
                str(run_dir / "exec"),
                "--host",
                env["DOCKER_HOST"],
                "--pidfile",
                str(run_dir / "docker.pid"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            ok = subprocess.run(
                ["docker", "version", "--format", "{{.Server.Version}}"],
                env=env,
                capture_output=True,
                check=False,
            )
            if ok.returncode == 0:
                break
            if engine.poll() is not None or time.monotonic() > deadline:
                pytest.fail("dockerd did not start:\n" + log_path.read_text()[-3000:])
            time.sleep(0.5)
        yield env
    finally:
        engine.send_signal(signal.SIGTERM)
        try:
            engine.wait(timeout=60)
        except subprocess.TimeoutExpired:
            engine.kill()
            engine.wait(timeout=30)
        shutil.rmtree(run_dir, ignore_errors=True)


def run(
    argv: list[str], env: dict[str, str], *, timeout: float = 300, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(argv)} exited {result.returncode}:\n{result.stderr[-4000:]}")
    return result


def inspect(container: str, env: dict[str, str]) -> dict[str, Any]:
    out = run(["docker", "inspect", container], env).stdout
    info: dict[str, Any] = json.loads(out)[0]
    return info


def wait_healthy(container: str, env: dict[str, str], timeout: float = 240) -> float:
    """Seconds until ``container``'s health check says healthy (fails on unhealthy / exit)."""
    start = time.monotonic()
    while True:
        state = inspect(container, env)["State"]
        health = state.get("Health", {}).get("Status")
        if health == "healthy":
            return time.monotonic() - start
        if health == "unhealthy" or state["Status"] == "exited":
            logs = run(["docker", "logs", "--tail", "50", container], env, check=False)
            pytest.fail(f"{container} is {health or state['Status']}:\n{logs.stderr[-3000:]}")
        if time.monotonic() - start > timeout:
            pytest.fail(f"{container} not healthy after {timeout:.0f} s")
        time.sleep(0.5)


def image_mb(image: str, env: dict[str, str]) -> float:
    size = run(["docker", "image", "inspect", "--format", "{{.Size}}", image], env).stdout
    return int(size) / 1e6
