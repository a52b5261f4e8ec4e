"""Comparing runs: time to a target accuracy and the mean ± sd cells of the tables."""

from __future__ import annotations

from nws_trainer.clock import Clock
from nws_trainer.report import mean_sd, time_to_accuracy

ROWS = [
    {"step": 0, "wall_seconds": 5.0, "test_accuracy": 0.50},
    {"step": 10, "wall_seconds": 15.0, "test_accuracy": 0.81},
    {"step": 20, "wall_seconds": 25.0, "test_accuracy": 0.78},
    {"step": 30, "wall_seconds": 35.0, "test_accuracy": 0.82},
]


def test_time_to_accuracy_raw_and_smoothed() -> None:
    assert time_to_accuracy(ROWS, 0.80) == 15.0
    assert time_to_accuracy(ROWS, 0.80, key="step") == 10
    assert time_to_accuracy(ROWS, 0.80, smooth=2) == 35.0  # (0.78 + 0.82) / 2 = 0.80
    assert time_to_accuracy(ROWS, 0.90) is None


def test_mean_sd_cells() -> None:
    assert mean_sd([1.0, 3.0], "{:.1f}") == "2.0 ± 1.4"
    assert mean_sd([2.0], "{:.1f}") == "2.0"
    assert mean_sd([None, 2.0, 4.0], "{:.0f}") == "3 ± 1 (2/3)"
    assert mean_sd([None]) == "n/a"


def test_clock_pauses() -> None:
    clock = Clock()
    assert clock.seconds == 0.0
    clock.start()
    with clock.paused():
        paused_at = clock.seconds
        assert clock.seconds == paused_at  # frozen while paused
    clock.stop()
    assert clock.seconds >= paused_at
