"""Throughput and latency of Score and Sample through the gRPC server, beside the in-process engine.

For batch sizes {32, 256, 1024} and {1, 4} client processes, every client calls the server in a
closed loop for a fixed time; the table reports examples per second over all clients, and the
median and 99th percentile round trip of one call. The same sketch (dim 384 like MiniLM, the
engine's default rows and bits, 20,000 observations) is measured in this process with the engine
alone, and through the server with and without micro-batching. Each cell is measured in
``ROUNDS`` short rounds and the best round is reported, which keeps the noise of other work on a
shared machine out of the comparison. Writes benchmarks/results/server_throughput.md (with the
machine it ran on) and prints the table.

    python benchmarks/server_throughput.py            # about 2 minutes on 2 CPU cores
    python benchmarks/server_throughput.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import platform
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

DIM = 384
PREFILL = 20_000
RATIO = 0.3
ROUNDS = 3
SKETCH = "bench"
RESULTS = Path(__file__).parent / "results" / "server_throughput.md"


@dataclass
class Row:
    path: str
    method: str
    batch: int
    clients: int
    examples_per_s: float
    p50_ms: float
    p99_ms: float


def _queries(seed: int, batch: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((batch, DIM)).astype(np.float32) for _ in range(8)]


# ----------------------------------------------------------------------- the client processes
def _client_loop(target: str, conn: Connection, seed: int) -> None:
    """A spawned client: runs timed loops on command, sends back its latencies."""
    from nws_client import SketchClient

    with SketchClient(target, timeout=60) as client:
        while (job := conn.recv()) is not None:
            method, batch, start_at, seconds = job
            queries = _queries(seed, batch)
            call = (
                (lambda q: client.score(SKETCH, q))
                if method == "Score"
                else (lambda q: client.sample(SKETCH, q, RATIO))
            )
            call(queries[0])  # warm up the connection and the server's code paths
            time.sleep(max(0.0, start_at - time.time()))
            latencies, i = [], 0
            begin, wall_begin = time.perf_counter(), time.time()
            while time.perf_counter() - begin < seconds:
                t = time.perf_counter()
                call(queries[i % len(queries)])
                latencies.append(time.perf_counter() - t)
                i += 1
            conn.send((np.asarray(latencies), wall_begin, time.time()))


class Clients:
    """``n`` spawned client processes that stay up for every measurement against one server."""

    def __init__(self, target: str, n: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.conns: list[Connection] = []
        self.procs = []
        for k in range(n):
            parent, child = context.Pipe()
            proc = context.Process(target=_client_loop, args=(target, child, k), daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)

    def run(self, method: str, batch: int, clients: int, seconds: float) -> tuple[float, Any]:
        start_at = time.time() + 0.3
        for conn in self.conns[:clients]:
            conn.send((method, batch, start_at, seconds))
        results = [conn.recv() for conn in self.conns[:clients]]
        latencies = np.concatenate([lat for lat, _, _ in results])
        wall = max(end for _, _, end in results) - min(begin for _, begin, _ in results)
        return batch * latencies.size / wall, latencies

    def close(self) -> None:
        for conn in self.conns:
            conn.send(None)
        for proc in self.procs:
            proc.join(30)


# ----------------------------------------------------------------------- measurements
def _prefill() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((PREFILL, DIM)).astype(np.float32), rng.random(PREFILL)


def measure_engine(batches: list[int], seconds: float, device: str) -> list[Row]:
    from nws_core import policy
    from nws_core.sketch import NWSketch, SketchConfig

    sketch = NWSketch(SketchConfig(dim=DIM), device=device)
    sketch.update(*_prefill())
    rows = []
    for method in ("Score", "Sample"):
        for batch in batches:
            queries = _queries(0, batch)

            def call(q: np.ndarray, method: str = method) -> None:
                estimates = sketch.estimate(q).values.numpy()
                if method == "Sample":
                    policy.sample(estimates, RATIO, policy.DEFAULT_P_MIN)

            for q in queries[:3]:
                call(q)
            best: tuple[float, Any] = (0.0, None)
            for _ in range(ROUNDS):
                latencies, i = [], 0
                begin = time.perf_counter()
                while time.perf_counter() - begin < seconds:
                    t = time.perf_counter()
                    call(queries[i % len(queries)])
                    latencies.append(time.perf_counter() - t)
                    i += 1
                throughput = batch * i / (time.perf_counter() - begin)
                best = max(best, (throughput, latencies), key=lambda r: r[0])
            rows.append(_row("in-process engine", method, batch, 1, *best))
    return rows


def measure_server(
    batches: list[int], clients: list[int], seconds: float, device: str, micro_batching: bool
) -> list[Row]:
    from nws_client import SketchClient, SketchConfig
    from nws_server.embedded import EmbeddedServer

    label = f"gRPC, micro-batching {'on' if micro_batching else 'off'}"
    rows = []
    with EmbeddedServer(mode="process", device=device, micro_batching=micro_batching) as server:
        with SketchClient(server.target, timeout=60) as client:
            client.create_sketch(SKETCH, SketchConfig(dim=DIM))
            x, y = _prefill()
            for start in range(0, PREFILL, 5000):
                client.update(SKETCH, x[start : start + 5000], y[start : start + 5000])
        pool = Clients(server.target, max(clients))
        try:
            for method in ("Score", "Sample"):
                for batch in batches:
                    for n in clients:
                        rounds = [pool.run(method, batch, n, seconds) for _ in range(ROUNDS)]
                        throughput, latencies = max(rounds, key=lambda r: r[0])
                        rows.append(_row(label, method, batch, n, throughput, latencies))
                        print(_line(rows[-1]), flush=True)
        finally:
            pool.close()
    return rows


def _row(path: str, method: str, batch: int, clients: int, eps: float, lat: Any) -> Row:
    lat_ms = np.asarray(lat) * 1e3
    return Row(
        path,
        method,
        batch,
        clients,
        eps,
        float(np.percentile(lat_ms, 50)),
        float(np.percentile(lat_ms, 99)),
    )


# ----------------------------------------------------------------------- report
HEADER = (
    "| path | method | batch | clients | examples/s | p50 ms | p99 ms | vs in-process |\n"
    "|---|---|---:|---:|---:|---:|---:|---:|"
)


def _line(row: Row, baseline: float | None = None) -> str:
    ratio = f"{100 * row.examples_per_s / baseline:.0f} %" if baseline else "-"
    return (
        f"| {row.path} | {row.method} | {row.batch} | {row.clients} | "
        f"{row.examples_per_s:,.0f} | {row.p50_ms:.2f} | {row.p99_ms:.2f} | {ratio} |"
    )


def machine(device: str) -> str:
    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = ""
    if device != "cpu" and torch.cuda.is_available():
        gpu = f", GPU {torch.cuda.get_device_name(0)}"
    return (
        f"{cpu}, {os.cpu_count()} cores{gpu}; torch {torch.__version__}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}; "
        f"sketch device {device}; {datetime.date.today().isoformat()}"
    )


def report(rows: list[Row], device: str, seconds: float) -> str:
    baseline = {
        (r.method, r.batch): r.examples_per_s for r in rows if r.path == "in-process engine"
    }
    lines = [
        "# Server throughput",
        "",
        f"Machine: {machine(device)}.",
        "",
        f"Sketch: dim {DIM}, 200 rows x 10 bits (the engine's defaults), {PREFILL:,} "
        f"observations; Sample at ratio {RATIO}. Each client process calls in a closed loop; "
        f"each cell is the best of {ROUNDS} rounds of {seconds:g} s; examples/s sums all "
        "clients; latency is one call's round trip. "
        "'vs in-process' compares with the engine called directly in one process "
        "(benchmarks/server_throughput.py).",
        "",
        HEADER,
    ]
    order = {"in-process engine": 0}
    for r in sorted(rows, key=lambda r: (r.method, r.batch, order.get(r.path, 1), r.path)):
        base = None if r.path == "in-process engine" else baseline.get((r.method, r.batch))
        lines.append(_line(r, base))
    return "\n".join(lines + ["", *summary(rows, baseline)]) + "\n"


def summary(rows: list[Row], baseline: dict[tuple[str, int], float]) -> list[str]:
    """The issue's two goals and the micro-batching comparison, computed from the rows."""
    cell = {(r.path, r.method, r.batch, r.clients): r for r in rows}
    off, on = "gRPC, micro-batching off", "gRPC, micro-batching on"
    lines = ["Summary (computed from the table):", ""]
    for method in ("Score", "Sample"):
        big = [cell.get((path, method, 1024, 4)) for path in (off, on)]
        if all(big) and (method, 1024) in baseline:
            shares = [100 * r.examples_per_s / baseline[(method, 1024)] for r in big if r]
            lines.append(
                f"- {method}, batch 1024, 4 clients: {shares[0]:.0f} % (off) / {shares[1]:.0f} % "
                "(on) of the in-process engine's throughput (goal: >= 50 %)."
            )
        small, engine = (
            cell.get((off, method, 32, 1)),
            cell.get(("in-process engine", method, 32, 1)),
        )
        if small and engine:
            lines.append(
                f"- {method}, batch 32, 1 client: p50 round trip {small.p50_ms:.2f} ms (goal: "
                f"<= 1 ms); the same call in-process takes {engine.p50_ms:.2f} ms."
            )
    for clients in sorted({r.clients for r in rows if r.path == on}):
        ratios = [
            cell[(on, m, b, clients)].examples_per_s / cell[(off, m, b, clients)].examples_per_s
            for (path, m, b, c) in cell
            if path == on and c == clients and (off, m, b, c) in cell
        ]
        if ratios:
            gain = float(np.exp(np.mean(np.log(ratios))))
            lines.append(
                f"- Micro-batching on / off, {clients} client(s): x{gain:.2f} throughput "
                f"(geometric mean over {len(ratios)} cells)."
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="sketch device (default auto)")
    parser.add_argument("--seconds", type=float, default=0.6, help="measured time per round")
    parser.add_argument("--quick", action="store_true", help="a smoke run: small and short")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    batches, clients, seconds = [32, 256, 1024], [1, 4], args.seconds
    if args.quick:
        batches, clients, seconds = [32], [1, 2], 0.2
    from nws_core.sketch import resolve_device

    device = str(resolve_device(args.device))
    started = time.perf_counter()
    rows = measure_engine(batches, seconds, device)
    for r in rows:
        print(_line(r), flush=True)
    for micro_batching in (False, True):
        rows += measure_server(batches, clients, seconds, device, micro_batching)
    text = report(rows, device, seconds)
    print()
    print(text)
    print(f"({time.perf_counter() - started:.0f} s)")
    if not args.quick:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)


if __name__ == "__main__":
    main()
