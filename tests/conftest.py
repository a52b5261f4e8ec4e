"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT folder (2 layers, hidden 128) with the MiniLM tokenizer."""
    from nws_trainer.models import make_tiny_bert

    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory):
    """A real redis-server on a loopback port (AOF on, appendfsync always), stopped by PID.

    Ports are tried at random in a high range until one binds; a port in use makes redis-server
    exit at once, and the next one is tried (no bind-and-release race).
    """
    import random
    import shutil
    import subprocess
    import time

    import redis

    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail(
            "redis-server is not installed: run `make install` (apt-get install redis-server)"
        )
    workdir = tmp_path_factory.mktemp("redis")
    rng = random.Random()
    for _ in range(20):
        port = rng.randint(20000, 45000)
        proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(workdir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--pidfile",
                str(workdir / "redis.pid"),
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if client.ping() and client.info("server")["process_id"] == proc.pid:
                    break
                proc.wait(timeout=2)  # someone else's server answered: ours must have failed
            except (redis.ConnectionError, subprocess.TimeoutExpired):
                time.sleep(0.05)
        if proc.poll() is None:
            try:
                yield f"redis://127.0.0.1:{port}/0"
            finally:
                proc.terminate()
                proc.wait(timeout=10)
            return
    pytest.fail("could not start redis-server on any loopback port")
