"""A training run survives its sketch server being killed (SIGKILL) and restarted on the same store.

The trainer (``nws`` strategy, tiny random BERT) talks to an external ``nws-server`` process with
a file store. Mid-run the server is killed with SIGKILL; while it is down, sampling falls back to
uniform sampling (unbiased, same ratio) and the observed losses stay buffered; then the server is
restarted on the same port and store. The run must finish, its summary must record the outage
(fallback candidates, stream reconnects), the restarted server must hold at least every update
acknowledged before the kill, and in the end every trained example must be in the sketch exactly
once (the retried updates are deduplicated by their request ids).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from nws_client import SketchClient
from nws_trainer.config import TrainConfig
from nws_trainer.prepare import prepare
from nws_trainer.train import RunResult, Trainer

pytestmark = pytest.mark.slow

NWS_SERVER = str(Path(sys.executable).with_name("nws-server"))
SKETCH = "restart-run"
STEPS = 30


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``nws-server`` on a fixed loopback port and a file store; killed by its PID."""

    def __init__(self, tmp_path: Path, port: int, store: str) -> None:
        self.tmp_path, self.port, self.store = tmp_path, port, store
        self.process: subprocess.Popen[bytes] | None = None
        self.logs: list[Path] = []

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        ready = self.tmp_path / f"ready-{len(self.logs)}.json"
        log = ready.with_suffix(".log")
        self.logs.append(log)
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [
                    NWS_SERVER,
                    *("--grpc-port", str(self.port), "--no-rest", "--device", "cpu"),
                    *("--torch-threads", "1", "--store", self.store),
                    *("--snapshot-interval-s", "0.5", "--ready-file", str(ready)),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while not ready.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"nws-server did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.02)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # SIGKILL: no shutdown snapshot
            self.process.wait(30)


def test_a_run_survives_a_kill_9_and_restart_of_its_sketch_server(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    server = ServerProcess(tmp_path, _free_port(), f"file://{tmp_path / 'state'}")
    server.start()
    cfg = TrainConfig(
        model=tiny_bert_dir,
        strategy="nws",
        train_size=480,
        test_size=32,
        batch_size=16,
        max_seq_len=32,
        warmup_steps=1,
        eval_every=2,
        max_steps=STEPS,
        epochs=5,
        probe_size=0,
        lr=1e-3,
        output=tmp_path / "out",
        cache_dir=tmp_path / "cache",
        progress=False,
        sketch_endpoint=server.target,
        sketch_name=SKETCH,
        sketch_rows=32,
        sketch_bits=6,
        sketch_on_unavailable="uniform",
    )
    steps: list[int] = []

    def log(line: str) -> None:
        if line.strip().startswith("step"):
            steps.append(int(line.split()[1]))

    trainer = Trainer(prepare(cfg), log=log)
    outcome: dict[str, Any] = {}

    def train() -> None:
        try:
            outcome["result"] = trainer.run()
        except BaseException as exc:  # reported by the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=train, daemon=True)
    thread.start()
    try:
        _wait(lambda: bool(steps) and steps[-1] >= 6, thread, "6 steps before the kill")
        server.kill()
        assert trainer.backend is not None
        client = trainer.backend.client  # type: ignore[attr-defined]
        acked_at_kill = client.client_stats().updates_acked  # no ack can come in any more
        step_at_kill = steps[-1]
        assert acked_at_kill > 0
        time.sleep(3.0)  # the trainer goes on without its server
        server.start()
        step_at_restart = steps[-1]
        with SketchClient(server.target, timeout=30) as probe:
            restored = probe.get(SKETCH).stats.observations
            # every update acknowledged before the kill survived it (retried ones may be in too)
            assert restored >= acked_at_kill
            assert probe.stats().server.restored_sketches == 1
        thread.join(120)
        assert not thread.is_alive(), "the run did not finish"
        if "error" in outcome:
            raise outcome["error"]
        result: RunResult = outcome["result"]
    finally:
        server.kill()

    assert step_at_kill < step_at_restart  # it trained while the server was down
    summary = json.loads((cfg.output / "summary.json").read_text())
    assert summary == json.loads(json.dumps(result.summary))
    assert summary["steps"] == STEPS and summary["stopped_by"] == "max_steps"
    # the outage is on record: candidates chosen by the fallback, the update stream reconnected
    assert summary["fallback_candidates"] > 0
    client_stats = summary["sketch"]["client"]
    assert client_stats["stream_reconnects"] >= 1
    assert client_stats["updates_dropped"] == 0 and client_stats["updates_rejected"] == 0
    assert client_stats["updates_buffered"] == 0
    # every trained example is in the restarted server's sketch exactly once
    trained = summary["examples_backpropagated"]
    assert client_stats["updates_acked"] == trained
    assert summary["sketch"]["observations"] == trained
    assert "restored 1 sketches" in server.logs[-1].read_text(errors="replace")


def _wait(condition: Any, thread: threading.Thread, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert thread.is_alive(), f"the run ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
