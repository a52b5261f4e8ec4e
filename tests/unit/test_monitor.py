"""The dashboard's data: recent-value rings, fixed-bin histograms and the usage time series,
over a real registry (CPU) with a hand-driven clock."""

from __future__ import annotations

import numpy as np
import pytest

from nws_core.errors import InvalidArgument, NotFound
from nws_core.sketch import SketchConfig
from nws_server.monitor import Monitor, Ring
from nws_server.registry import SketchRegistry


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def monitored(clock: Clock) -> tuple[SketchRegistry, Monitor]:
    monitor = Monitor(window=64, points=3, interval_s=1.0, clock=clock)
    registry = SketchRegistry(device="cpu", on_values=monitor.record)
    monitor.watch(registry)
    registry.create("job", SketchConfig(dim=4, rows=16, bits=3))
    return registry, monitor


def test_ring_keeps_the_last_values() -> None:
    ring = Ring(5)
    ring.extend(np.arange(3.0))
    assert sorted(ring.values()) == [0.0, 1.0, 2.0] and len(ring) == 3
    ring.extend(np.arange(3.0, 7.0))  # wraps around
    assert sorted(ring.values()) == [2.0, 3.0, 4.0, 5.0, 6.0] and len(ring) == 5
    ring.extend(np.arange(10.0, 22.0))  # more than the capacity at once
    assert sorted(ring.values()) == [17.0, 18.0, 19.0, 20.0, 21.0]


def test_histograms_of_what_the_registry_saw(monitored: tuple[SketchRegistry, Monitor]) -> None:
    registry, monitor = monitored
    empty = monitor.histograms("job", bins=4)
    assert empty.edges == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert empty.observed.counts == [0, 0, 0, 0] and empty.observed.mean is None
    rng = np.random.default_rng(0)
    losses = np.array([0.1, 0.2, 1.5, 3.9, 4.0])
    registry.update("job", rng.standard_normal((5, 4)), losses)
    estimates = registry.score("job", rng.standard_normal((7, 4))).estimates
    h = monitor.histograms("job", bins=4)
    assert h.edges == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert h.observed.counts == [2, 1, 0, 2] and h.observed.count == 5
    assert h.observed.mean == pytest.approx(losses.mean())
    assert h.estimated.count == 7
    assert h.estimated.counts == np.histogram(estimates, bins=h.edges)[0].tolist()
    registry.update("job", rng.standard_normal((100, 4)), np.full(100, 2.5))  # window is 64
    assert monitor.histograms("job", bins=4).observed.counts == [0, 0, 64, 0]
    with pytest.raises(InvalidArgument, match="bins"):
        monitor.histograms("job", bins=0)
    with pytest.raises(NotFound):
        monitor.histograms("nope")


def test_series_rates_per_interval(monitored: tuple[SketchRegistry, Monitor], clock: Clock) -> None:
    registry, monitor = monitored
    rng = np.random.default_rng(1)
    assert monitor.tick() and monitor.series("job") == []  # the first sample is the baseline
    registry.update("job", rng.standard_normal((30, 4)), rng.random(30))
    registry.update("job", rng.standard_normal((30, 4)), rng.random(30))
    result = registry.sample("job", rng.standard_normal((50, 4)), ratio=0.4, seed=0)
    clock.now += 2.0
    (point,) = monitor.series("job")  # a request samples when an interval has passed
    assert point.acceptance_rate == pytest.approx(result.accepted.sum() / 50)
    assert point.prior_hit_rate == pytest.approx(result.prior_used.sum() / 50)
    assert point.updates_per_second == pytest.approx(1.0)
    assert point.observations_per_second == pytest.approx(30.0)
    assert point.sampled_per_second == pytest.approx(25.0) and point.observations == 60
    clock.now += 0.5
    assert not monitor.tick() and len(monitor.series("job")) == 1  # not due yet
    clock.now += 0.5
    (_, idle) = monitor.series("job")
    assert idle.acceptance_rate is None and idle.prior_hit_rate is None
    assert idle.updates_per_second == 0.0
    for _ in range(3):
        clock.now += 1.0
        monitor.tick()
    assert len(monitor.series("job")) == 3  # only the last `points` are kept
    registry.delete("job")
    monitor.tick(force=True)
    with pytest.raises(NotFound):
        monitor.series("job")
