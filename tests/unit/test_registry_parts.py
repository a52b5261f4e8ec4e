"""The registry's parts on their own: the catalog's limits, a served sketch's idempotency window,
the usage counters, and the durability layer's round trip of a whole state."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from nws_core.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from nws_core.sketch import NWSketch, SketchConfig
from nws_server import ops, records
from nws_server.catalog import Catalog, Limits, check_name, check_request_id, estimated_bytes
from nws_server.durable import Durability
from nws_server.live import LiveSketch
from nws_server.usage import RateMeter, Usage

CONFIG = SketchConfig(dim=8, rows=16, bits=4, seed=1)


def live(name: str = "s", window: int = 3) -> LiveSketch:
    return LiveSketch(name, NWSketch(CONFIG), CONFIG, 0, created_at=1.0, window=window)


def rows(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.standard_normal((n, CONFIG.dim)).astype(np.float32))
    return x, torch.from_numpy(rng.gamma(2.0, 1.0, n))


@pytest.mark.parametrize(
    "config",
    [
        CONFIG,
        SketchConfig(dim=8, rows=16, bits=6, pool=20),
        SketchConfig(dim=8, bits=10, buckets=64),
    ],
    ids=["plain", "pool", "buckets"],
)
def test_the_size_limit_predicts_the_sketchs_real_memory(config: SketchConfig) -> None:
    assert estimated_bytes(config) == NWSketch(config).stats.bytes


def test_the_catalog_enforces_its_limits_and_names_them() -> None:
    catalog = Catalog(Limits(max_sketches=1, max_sketch_bytes=10_000, max_batch_rows=4))
    catalog.check_room()
    catalog.add(live("a"))
    with pytest.raises(ResourceExhausted, match="maximum of 1 sketches"):
        catalog.check_room()
    with pytest.raises(ResourceExhausted, match="over the limit of 10,000"):
        catalog.check_size("b", SketchConfig(dim=8, rows=200, bits=10))
    with pytest.raises(ResourceExhausted, match="at most 4 rows, got 5"):
        catalog.check_rows(torch.zeros(5, 8))
    assert catalog.check_rows(torch.zeros(4, 8)).shape == (4, 8)
    with pytest.raises(NotFound, match="'b'"):
        catalog.get("b")
    catalog.remove("a")
    assert len(catalog) == 0 and catalog.find("a") is None


@pytest.mark.parametrize("name", ["", "a b", "x" * 129, "ünï"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidArgument, match="sketch name must match"):
        check_name(name)


def test_a_request_id_is_bounded() -> None:
    check_request_id("r" * 128)
    with pytest.raises(InvalidArgument, match="at most 128 characters, got 129"):
        check_request_id("r" * 129)


def test_the_idempotency_window_keeps_the_newest_ids() -> None:
    entry, durable = live(window=3), Durability(None, torch.device("cpu"), _new)
    x, y = rows(2)
    for k in range(5):
        assert durable.mutate(entry, ops.Update(x, y, f"u{k}"))
    assert list(entry.applied) == ["u2", "u3", "u4"]
    assert entry.applied["u4"] == 10  # the observation count right after it
    assert not durable.mutate(entry, ops.Update(x, y, "u4"))  # in the window: not applied again
    assert durable.mutate(entry, ops.Update(x, y, "u0"))  # evicted: a new call
    assert entry.sketch.observations == 12
    assert not entry.has_applied("")  # an empty id is never deduplicated
    assert durable.mutate(entry, ops.Update(x, y, "")) and durable.mutate(entry, ops.Update(x, y))


def test_usage_counts_concurrent_samples_exactly() -> None:
    usage = Usage()

    def sample() -> None:
        for _ in range(1000):
            usage.count_sample(3, 1)

    threads = [threading.Thread(target=sample) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reading = usage.read()
    assert (reading.sampled, reading.accepted) == (12_000, 4_000) == usage.counts()
    assert reading.acceptance_rate == pytest.approx(1 / 3)
    assert Usage().read().acceptance_rate == 0.0 and Usage().read().keep_ratio is None


def test_a_rate_meter_counts_over_its_window() -> None:
    now = [100.0]
    meter = RateMeter(window_s=10.0, clock=lambda: now[0])
    assert meter.rate() == 0.0
    for _ in range(20):
        meter.add(5)
        now[0] += 1.0
    # at t = 120 the buckets of seconds 110-119 are inside the window (those <= 109 are
    # dropped): 10 buckets of 5 over a 10 s span
    assert meter.rate() == pytest.approx(5.0)
    now[0] += 60.0
    assert meter.rate() == 0.0


def test_a_whole_state_round_trips_through_the_durability_layer() -> None:
    durable = Durability(None, torch.device("cpu"), _new)
    entry = live(window=10)
    x, y = rows(6)
    durable.mutate(entry, ops.Update(x, y, "u"))
    entry.usage.count_sample(10, 4)
    back = durable.from_state("t", records.decode(durable.state_bytes(entry)))
    assert back.name == "t" and back.requested == CONFIG and back.created_at == 1.0
    assert back.usage.counts() == (10, 4) and dict(back.applied) == {"u": 6}
    assert back.sketch.serialize() == entry.sketch.serialize()
    with pytest.raises(FailedPrecondition, match="no state store"):
        durable.snapshot([entry])
    assert durable.kind == "memory" and durable.append("s", b"ignored") == 0


def _new(
    name: str, sketch: NWSketch, requested: SketchConfig, warmup: int, at: float
) -> LiveSketch:
    return LiveSketch(name, sketch, requested, warmup, created_at=at, window=10)
