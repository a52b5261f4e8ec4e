"""Load: many client processes mixing Sample and Update (streamed and synchronous) on one server.

One real ``nws-server`` process (a file store, loopback, started here) serves ``--clients``
spawned client processes for ``--seconds``. Each client loops: Sample a batch, Update a batch
synchronously (with its own request id), queue a batch on the background update stream, and
every fourth round flush the stream (wait for its acks). Reported: throughput (requests/s and
rows/s over all clients), p50 / p99 latency per RPC, errors (goal 0), and the exact final count:
the server's observations must equal the update rows the clients got acknowledged.

Second scenario (``--kill-restart``, on by default, after the first): the same load, but the
server is killed with SIGKILL half-way through and restarted on the same port and store. Clients
sample with the uniform fallback while it is down, keep their streamed updates buffered, and
retry their synchronous update with the same request id until it is acknowledged. Reported:
acknowledged update rows lost (goal 0: the restarted server's count against what the clients had
acknowledged before the kill, and again at the end), and how long clients were unavailable.

    python benchmarks/load.py                              # 16 clients x 60 s, both scenarios
    python benchmarks/load.py --clients 2 --seconds 3 --output /tmp/load.md   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine, markdown_table  # noqa: E402

DIM = 384  # MiniLM's embedding size
BATCH = 32  # rows per Sample / Update request
RATIO = 0.4
SKETCH = "load"
# the server as this interpreter runs it (no installed `nws-server` script needed: the GPU check
# runs the project from source on a machine with its own Python)
NWS_SERVER = (sys.executable, "-m", "nws_server.cli")
RPCS = ("Sample", "Update", "StreamUpdates")


# ----------------------------------------------------------------------------- the server
class ServerProcess:
    """``nws-server`` on a fixed loopback port and a file store; stopped or killed by its PID."""

    def __init__(self, workdir: Path, device: str = "cpu") -> None:
        self.workdir = workdir
        self.device = device
        self.store = f"file://{workdir / 'state'}"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / f"server-{self.starts}.log"

    def start(self) -> float:
        """Start and wait until it serves; the seconds that took."""
        self.starts += 1
        ready = self.workdir / f"ready-{self.starts}.json"
        begin = time.monotonic()
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [
                    *NWS_SERVER,
                    *("--grpc-port", str(self.port), "--no-rest", "--device", self.device),
                    *("--store", self.store, "--snapshot-interval-s", "5"),
                    *("--workers", "64", "--torch-threads", "1", "--ready-file", str(ready)),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        while not ready.exists():
            if self.process.poll() is not None or time.monotonic() - begin > 120:
                self.kill()
                raise RuntimeError(f"nws-server did not start:\n{self.log.read_text()}")
            time.sleep(0.02)
        return time.monotonic() - begin

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # SIGKILL: no shutdown snapshot, nothing flushed
            self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()


# ----------------------------------------------------------------------------- the clients
@dataclass
class ClientReport:
    latencies: dict[str, list[float]]
    requests: dict[str, int]
    errors: list[str]
    acked_rows: int  # synchronous + streamed update rows the server acknowledged
    fallback_samples: int
    update_retries: int
    dropped_rows: int
    stream_reconnects: int
    outages: list[tuple[float, float]]  # (first failure, next success), time.time()


def _client(target: str, k: int, seconds: float, acked: Any, conn: Connection) -> None:
    """A spawned client process: the mixed loop, then its report over ``conn``."""
    from nws_client import DeadlineExceeded, NWSClientError, SketchClient, Unavailable

    rng = np.random.default_rng(1000 + k)
    xs = [rng.standard_normal((BATCH, DIM)).astype(np.float32) for _ in range(8)]
    ys = [rng.random(BATCH) for _ in range(8)]
    latencies: dict[str, list[float]] = {rpc: [] for rpc in RPCS}
    requests = dict.fromkeys(RPCS, 0)
    errors: list[str] = []
    outages: list[tuple[float, float]] = []
    down_since: float | None = None
    fallback_samples = retries = sync_rows = 0

    def failed() -> None:
        nonlocal down_since
        down_since = down_since or time.time()

    def succeeded() -> None:
        nonlocal down_since
        if down_since is not None:
            outages.append((down_since, time.time()))
            down_since = None

    with SketchClient(target, timeout=10, on_unavailable="uniform") as client:
        client.get(SKETCH)  # connected and warm
        conn.send("ready")
        time.sleep(max(0.0, conn.recv() - time.time()))
        end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < end:
            x, y = xs[i % 8], ys[i % 8]
            t = time.perf_counter()
            try:
                result = client.sample(SKETCH, x, RATIO)
                requests["Sample"] += 1
                if result.fallback:
                    fallback_samples += 1
                    failed()
                else:
                    latencies["Sample"].append(time.perf_counter() - t)
                    succeeded()
            except NWSClientError as exc:
                errors.append(f"Sample: {type(exc).__name__}: {exc}")
            request_id = f"client{k}-update{i}"
            while True:  # a synchronous update is retried, same id, until acknowledged
                t = time.perf_counter()
                try:
                    client.update(SKETCH, x, y, request_id=request_id)
                except (Unavailable, DeadlineExceeded):
                    retries += 1
                    failed()
                    if time.monotonic() > end + 120:
                        errors.append("Update: still unavailable 120 s after the end")
                        break
                    time.sleep(0.05)
                    continue
                except NWSClientError as exc:
                    errors.append(f"Update: {type(exc).__name__}: {exc}")
                    break
                latencies["Update"].append(time.perf_counter() - t)
                requests["Update"] += 1
                sync_rows += BATCH
                succeeded()
                break
            try:
                client.update_async(SKETCH, x, y)
                requests["StreamUpdates"] += 1
                if i % 4 == 3:  # the acks of everything queued so far
                    t = time.perf_counter()
                    client.flush(timeout=120)
                    latencies["StreamUpdates"].append(time.perf_counter() - t)
            except NWSClientError as exc:
                errors.append(f"StreamUpdates: {type(exc).__name__}: {exc}")
            acked[k] = sync_rows + client.client_stats().updates_acked
            i += 1
        try:
            client.flush(timeout=120)
        except NWSClientError as exc:
            errors.append(f"final flush: {type(exc).__name__}: {exc}")
        stats = client.client_stats()
    acked[k] = sync_rows + stats.updates_acked
    conn.send(
        ClientReport(
            latencies,
            requests,
            errors,
            sync_rows + stats.updates_acked,
            fallback_samples,
            retries,
            stats.updates_dropped,
            stats.stream_reconnects,
            outages,
        )
    )


# ----------------------------------------------------------------------------- a scenario
@dataclass
class Scenario:
    name: str
    clients: int
    seconds: float
    wall_seconds: float = 0.0
    requests: dict[str, int] = field(default_factory=dict)
    latencies: dict[str, np.ndarray] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    acked_rows: int = 0
    observations: int = 0
    fallback_samples: int = 0
    update_retries: int = 0
    dropped_rows: int = 0
    stream_reconnects: int = 0
    # kill-restart only
    acked_at_kill: int | None = None
    restored: int | None = None
    server_down_seconds: float | None = None
    unavailable_seconds: float | None = None

    @property
    def lost(self) -> int:
        """Acknowledged update rows the server does not have (at the restart and at the end)."""
        at_restart = (
            max(0, self.acked_at_kill - self.restored)
            if self.acked_at_kill is not None and self.restored is not None
            else 0
        )
        return max(at_restart, self.acked_rows - self.observations, 0)

    @property
    def ok(self) -> bool:
        return not self.errors and self.lost == 0 and self.observations == self.acked_rows


def measure(clients: int, seconds: float, kill_restart: bool, device: str = "cpu") -> Scenario:
    """One scenario against a fresh server (sketches on ``device``) and store."""
    from nws_client import SketchClient, SketchConfig

    name = "kill -9 + restart" if kill_restart else "steady"
    scenario = Scenario(name, clients, seconds)
    workdir = Path(tempfile.mkdtemp(prefix="nws-load-"))
    server = ServerProcess(workdir, device)
    context = multiprocessing.get_context("spawn")
    acked = context.Array("q", clients, lock=False)
    procs, conns = [], []
    try:
        server.start()
        with SketchClient(server.target, timeout=30) as admin:
            admin.create_sketch(SKETCH, SketchConfig(dim=DIM), warmup=0)
        for k in range(clients):
            parent, child = context.Pipe()
            proc = context.Process(
                target=_client, args=(server.target, k, seconds, acked, child), daemon=True
            )
            proc.start()
            procs.append(proc)
            conns.append(parent)
        for conn in conns:
            if conn.recv() != "ready":
                raise RuntimeError("a client did not start")
        start_at = time.time() + 0.5
        for conn in conns:
            conn.send(start_at)
        if kill_restart:
            time.sleep(max(0.0, start_at + seconds / 2 - time.time()))
            killed = time.time()
            server.kill()
            scenario.acked_at_kill = int(sum(acked))  # no ack can arrive any more
            server.start()
            scenario.server_down_seconds = time.time() - killed
            with SketchClient(server.target, timeout=30) as admin:
                scenario.restored = admin.get(SKETCH).stats.observations
        reports: list[ClientReport] = [conn.recv() for conn in conns]
        scenario.wall_seconds = time.time() - start_at
        with SketchClient(server.target, timeout=30) as admin:
            scenario.observations = admin.get(SKETCH).stats.observations
        for proc in procs:
            proc.join(30)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    for rpc in RPCS:
        scenario.requests[rpc] = sum(r.requests[rpc] for r in reports)
        scenario.latencies[rpc] = np.asarray([v for r in reports for v in r.latencies[rpc]])
    scenario.errors = [e for r in reports for e in r.errors]
    scenario.acked_rows = sum(r.acked_rows for r in reports)
    scenario.fallback_samples = sum(r.fallback_samples for r in reports)
    scenario.update_retries = sum(r.update_retries for r in reports)
    scenario.dropped_rows = sum(r.dropped_rows for r in reports)
    scenario.stream_reconnects = sum(r.stream_reconnects for r in reports)
    if kill_restart:
        spans = [end - begin for r in reports for begin, end in r.outages]
        scenario.unavailable_seconds = max(spans, default=0.0)
    return scenario


# ----------------------------------------------------------------------------- report
def _ms(values: np.ndarray, q: float) -> float | str:
    return float(np.percentile(values, q) * 1e3) if values.size else "-"


def report(scenarios: list[Scenario]) -> str:
    rpc_rows = []
    for s in scenarios:
        for rpc in RPCS:
            n = s.requests.get(rpc, 0)
            rpc_rows.append(
                [
                    s.name,
                    rpc,
                    n,
                    n / s.wall_seconds,
                    n * BATCH / s.wall_seconds,
                    _ms(s.latencies[rpc], 50),
                    _ms(s.latencies[rpc], 99),
                ]
            )
    summary_rows = []
    for s in scenarios:
        total = sum(s.requests.values())
        summary_rows.append(
            [
                s.name,
                s.clients,
                f"{s.seconds:g}",
                total / s.wall_seconds,
                total * BATCH / s.wall_seconds,
                len(s.errors),
                s.acked_rows,
                s.observations,
                s.lost,
                "-" if s.acked_at_kill is None else f"{s.acked_at_kill} / {s.restored}",
                s.fallback_samples,
                s.update_retries,
                s.dropped_rows,
                "-" if s.server_down_seconds is None else f"{s.server_down_seconds:.1f}",
                "-" if s.unavailable_seconds is None else f"{s.unavailable_seconds:.1f}",
            ]
        )
    cores = os.cpu_count()
    lines = [
        f"One `nws-server` process (file store, loopback, 64 gRPC workers, 1 torch thread) and "
        f"{scenarios[0].clients} spawned client processes, {scenarios[0].seconds:g} s per "
        f"scenario. Sketch dim {DIM}, 200 rows x 10 bits; every request carries {BATCH} rows. "
        "Each client loops: Sample (ratio 0.4), a synchronous Update, one update queued on the "
        "background stream, and every 4th round a flush; StreamUpdates latency is that flush "
        "(until every queued update is acknowledged), Sample and Update latencies are single "
        "round trips (successful ones). `python benchmarks/load.py`.",
        "",
        f"Note: this machine has {cores} CPU cores, shared by the server, all clients and other "
        "work running at the same time, so the numbers are a floor, not the server's capacity.",
        "",
        "## Per RPC",
        "",
        markdown_table(
            ["scenario", "RPC", "requests", "requests/s", "rows/s", "p50 ms", "p99 ms"], rpc_rows
        ),
        "",
        "## Totals and counts",
        "",
        markdown_table(
            [
                "scenario",
                "clients",
                "s",
                "requests/s",
                "rows/s",
                "errors",
                "acked update rows",
                "server observations",
                "acked rows lost",
                "acked at kill / restored",
                "fallback samples",
                "update retries",
                "dropped rows",
                "server down s",
                "client unavailable s (max)",
            ],
            summary_rows,
        ),
        "",
        "Goals: 0 errors; server observations == acknowledged update rows (exact); 0 "
        "acknowledged rows lost across the kill (the restarted server restores at least what "
        "was acknowledged before it; 'acked at kill' is each client's last reported count, a "
        "lower bound). 'client unavailable' is the longest span from a client's first failed "
        "call (a fallback sample, an UNAVAILABLE update) to its next successful one; it "
        "includes the server's restart (process start, torch import, restore).",
    ]
    for s in scenarios:
        if s.errors:
            lines += ["", f"Errors in '{s.name}' (first 5):", ""]
            lines += [f"- {e}" for e in s.errors[:5]]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16, help="client processes (default 16)")
    parser.add_argument("--seconds", type=float, default=60.0, help="per scenario (default 60)")
    parser.add_argument(
        "--kill-restart",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the kill -9 + restart scenario (default: on)",
    )
    parser.add_argument("--device", default="cpu", help="the server's torch device (default cpu)")
    parser.add_argument("--output", type=Path, default=RESULTS / "load.md")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> list[Scenario]:
    """Every scenario; writes the table to ``args.output`` and prints it."""
    scenarios = []
    for kill in (False, True) if args.kill_restart else (False,):
        print(
            f"load: {'kill -9 + restart' if kill else 'steady'}, {args.clients} clients x "
            f"{args.seconds:g} s ...",
            flush=True,
        )
        scenarios.append(measure(args.clients, args.seconds, kill, args.device))
    text = f"# Load\n\nMachine: {machine()}\n\n{report(scenarios)}"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text)
    print(f"wrote {args.output}")
    for s in scenarios:
        print(
            json.dumps(
                {
                    "scenario": s.name,
                    "errors": len(s.errors),
                    "lost": s.lost,
                    "acked_rows": s.acked_rows,
                    "observations": s.observations,
                }
            )
        )
    return scenarios


def main(argv: list[str] | None = None) -> int:
    scenarios = run(parse_args(argv))
    return 0 if all(s.ok for s in scenarios) else 1


if __name__ == "__main__":
    sys.exit(main())
