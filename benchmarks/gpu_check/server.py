"""Section ``server``: ``nws-server --device DEV`` under load, and where a Sample's time goes.

benchmarks/load.py's steady scenario against a real server (its ``ServerProcess``), one
client's Sample round trip per batch size, and each stage of one Sample timed alone in this
process (decode, host-to-device copy, the engine, the policy, the encode).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from _common import markdown_table

from .common import SERVER_MODULES, SectionFailed, Sizes, require

TITLE = "GPU sketch server under load"


def _stages(device_name: str, batch: int, repeats: int) -> dict[str, float]:
    """Median seconds of each stage of one Sample request, in this process (no gRPC), timed
    round-robin with a device sync after each call (engine_throughput.py's ``interleaved``)."""
    import numpy as np
    import torch
    from engine_throughput import interleaved
    from nws.v1 import sketch_pb2 as pb

    from nws_core import policy
    from nws_core.sketch import NWSketch, SketchConfig
    from nws_server import wire

    rng = np.random.default_rng(0)
    sketch = NWSketch(SketchConfig(dim=384), device=device_name)  # load.py's sketch
    sketch.update(rng.standard_normal((4096, 384)).astype(np.float32), rng.random(4096))
    x = rng.standard_normal((batch, 384)).astype(np.float32)
    raw = pb.SampleRequest(
        name="s", embeddings=wire.tensor_to_proto(x), ratio=0.4
    ).SerializeToString()
    xt = torch.from_numpy(x)
    x_dev = xt.to(sketch.device)
    est = sketch.estimate(xt)
    scores = est.values.numpy()
    rule = policy.SamplingPolicy()
    acc, w, p = rule.draw(scores, 0.4, 0.05, None, warm=False)

    def encode() -> bytes:
        return pb.SampleResponse(
            accepted=acc.tolist(),
            weights=w.tolist(),
            probabilities=p.tolist(),
            estimates=scores.tolist(),
            prior_used=est.prior_used.numpy().tolist(),
        ).SerializeToString()

    fns: dict[str, Callable[[], object]] = {
        "decode": lambda: wire.tensor_from_proto(pb.SampleRequest.FromString(raw).embeddings, "e"),
        "host to device": lambda: xt.to(sketch.device),
        "engine on device": lambda: sketch.estimate(x_dev),
        "engine from host": lambda: sketch.estimate(xt),
        "policy": lambda: rule.draw(scores, 0.4, 0.05, None, warm=False),
        "encode": encode,
    }
    return interleaved(fns, sketch.device, repeats)


def _roundtrips(device_name: str, batches: Sequence[int], calls: int) -> dict[int, float]:
    """Median seconds of one Sample per batch size through a real server, one client, closed
    loop (load.py's server process, sketches on ``device_name``)."""
    import load
    import numpy as np

    from nws_client import SketchClient, SketchConfig

    rng = np.random.default_rng(1)
    result: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="nws-gpu-rt-") as tmp:
        server = load.ServerProcess(Path(tmp), device_name)
        try:
            server.start()
            with SketchClient(server.target, timeout=60) as client:
                client.create_sketch("rt", SketchConfig(dim=384), warmup=0)
                fill = rng.standard_normal((4096, 384)).astype(np.float32)
                client.update("rt", fill, rng.random(4096))
                for batch in batches:
                    x = rng.standard_normal((batch, 384)).astype(np.float32)
                    times = []
                    for i in range(calls + 5):
                        t0 = time.perf_counter()
                        client.sample("rt", x, 0.4)
                        if i >= 5:
                            times.append(time.perf_counter() - t0)
                    result[batch] = statistics.median(times)
        finally:
            server.stop()
    return result


def run(args: argparse.Namespace, sizes: Sizes) -> str:
    require(SERVER_MODULES)
    import load

    scenario = load.measure(sizes.clients, sizes.load_seconds, False, device=args.device)
    load_rows = []
    for rpc in load.RPCS:
        n = scenario.requests.get(rpc, 0)
        lat = scenario.latencies[rpc]
        load_rows.append(
            [
                rpc,
                n,
                n / scenario.wall_seconds,
                n * load.BATCH / scenario.wall_seconds,
                load._ms(lat, 50),
                load._ms(lat, 99),
            ]
        )
    stage_rows = []
    roundtrips = _roundtrips(args.device, sizes.stage_batches, sizes.roundtrip_calls)
    for batch in sizes.stage_batches:
        st = _stages(args.device, batch, sizes.stage_repeats)
        rt = roundtrips[batch]
        served = st["decode"] + st["engine from host"] + st["policy"] + st["encode"]
        stage_rows.append(
            [
                batch,
                *(st[k] * 1e6 for k in ("decode", "host to device", "engine on device")),
                *(st[k] * 1e6 for k in ("engine from host", "policy", "encode")),
                served * 1e6,
                rt * 1e6,
                max(rt - served, 0.0) * 1e6,
                batch / rt,
            ]
        )
        print(stage_rows[-1], flush=True)
    body = (
        f"`nws-server --device {args.device}` (file store, loopback, no REST) under "
        f"`benchmarks/load.py`'s steady scenario: {sizes.clients} client processes x "
        f"{sizes.load_seconds:g} s, {load.BATCH} rows per request, dim 384, R = 200, K = 10.\n\n"
        + markdown_table(["RPC", "requests", "requests/s", "rows/s", "p50 ms", "p99 ms"], load_rows)
        + f"\n\nErrors: {len(scenario.errors)}; acknowledged update rows {scenario.acked_rows}, "
        f"server observations {scenario.observations}, lost {scenario.lost}.\n\n"
        "## Where the time of one Sample goes\n\n"
        "Each stage timed alone in this process (median, microseconds): protobuf decode of the "
        "request with its packed embeddings; the host-to-device copy alone; the engine's "
        "estimate on a device tensor (hash, gather, results back to the host) and from the "
        "host tensor as the server calls it (copy included); the sampling policy; the "
        "response encode. `served` = decode + engine from host + policy + encode; `round "
        "trip`: one client's median Sample through a real server; `gRPC + rest`: what the "
        "stages do not explain (transport, threads, client-side encode and decode).\n\n"
        + markdown_table(
            [
                "batch",
                "decode us",
                "host to device us",
                "engine on device us",
                "engine from host us",
                "policy us",
                "encode us",
                "served us",
                "round trip us",
                "gRPC + rest us",
                "rows/s (1 client)",
            ],
            stage_rows,
        )
        + "\n"
    )
    if not scenario.ok:
        raise SectionFailed(
            f"load run not clean: {len(scenario.errors)} errors, {scenario.lost} rows lost "
            f"(first: {scenario.errors[:1]})\n\n" + body
        )
    return body
