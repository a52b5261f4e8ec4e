"""Diagnostics: rank correlation, effective sample size, spread, and the per-window summary."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nws_trainer.diagnostics import (
    ChunkStats,
    Window,
    coefficient_of_variation,
    effective_sample_size,
    rankdata,
    spearman,
)
from nws_trainer.selection import SelectedChunk


def test_rankdata_averages_ties() -> None:
    assert rankdata(np.array([10.0, 20.0, 10.0, 30.0])).tolist() == [1.5, 3.0, 1.5, 4.0]


def test_spearman_known_values() -> None:
    x = np.arange(10.0)
    assert spearman(x, x**3) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    assert spearman(x, np.ones(10)) is None  # constant side: undefined
    assert spearman(x[:2], x[:2]) is None
    # Matches the textbook formula 1 - 6 sum d^2 / (n (n^2 - 1)) without ties.
    a, b = np.array([1.0, 2, 3, 4, 5]), np.array([2.0, 1, 4, 3, 5])
    assert spearman(a, b) == pytest.approx(1 - 6 * 4 / (5 * 24))
    with pytest.raises(ValueError):
        spearman(x, x[:3])


@given(st.lists(st.floats(-1e6, 1e6), min_size=3, max_size=40))
def test_spearman_depends_only_on_ranks(values: list[float]) -> None:
    x = np.array(values)
    y = np.arange(x.size, dtype=np.float64)
    r = spearman(x, y)
    if r is not None:
        assert -1 - 1e-9 <= r <= 1 + 1e-9
        assert spearman(rankdata(x), y) == pytest.approx(r)  # only the ranks matter
        assert spearman(-x, y) == pytest.approx(-r)


def test_effective_sample_size_and_cv() -> None:
    assert effective_sample_size(np.ones(8)) == pytest.approx(8)
    assert effective_sample_size(np.array([1.0, 0, 0, 0])) == pytest.approx(1)
    assert coefficient_of_variation(np.array([1.0, 1.0])) == 0
    assert coefficient_of_variation(np.array([1.0, 3.0])) == pytest.approx(0.5)
    assert coefficient_of_variation(np.array([1.0])) is None


def test_window_row_summarises_and_resets() -> None:
    w = Window()
    stats = ChunkStats(candidates=10, accepted=4, scored=10, prior_hits=1, cv_sum=0.2, cv_chunks=1)
    w.record_batch(
        np.array([1.0, 3.0, 1.0, 1.0]),
        np.array([0.1, 0.2, 0.3, 0.4]),
        np.array([1.0, 2.0, 3.0, 4.0]),
        stats,
        np.zeros(4, dtype=bool),
    )
    row = w.row()
    assert row["acceptance_rate"] == pytest.approx(0.4)
    assert row["prior_hit_rate"] == pytest.approx(0.1)
    assert row["estimate_cv"] == pytest.approx(0.2)
    assert row["max_weight"] == 3.0
    assert row["ess_per_batch"] == pytest.approx(36 / 12)
    assert row["spearman_trained"] == pytest.approx(1.0)
    assert row["keep_ratio"] is None  # no chunk said which ratio it drew with
    assert w.row()["acceptance_rate"] is None  # reset


def test_window_row_averages_the_ratio_the_sketch_drew_with() -> None:
    """The chosen keep ratio (auto's per-request choice) is averaged over the drawn chunks;
    warm-up chunks (everything kept, no ratio drawn) do not count."""
    idx = np.arange(4)
    chunks = [
        SelectedChunk(idx, np.ones(4, dtype=bool), np.ones(4), np.ones(4), ratio=1.0, warmup=True),
        SelectedChunk(idx, np.ones(4, dtype=bool), np.ones(4), np.ones(4), ratio=0.5),
        SelectedChunk(idx, np.ones(4, dtype=bool), np.ones(4), np.ones(4), ratio=0.8),
    ]
    w = Window()
    for c in chunks:
        w.record_batch(np.ones(4), np.ones(4), np.ones(4), c.stats(), np.zeros(4, dtype=bool))
    assert w.row()["keep_ratio"] == pytest.approx(0.65)


def test_window_leaves_warmup_rows_out_of_the_correlation() -> None:
    w = Window()
    w.record_batch(
        np.ones(4),
        np.array([4.0, 3.0, 0.1, 0.2]),
        np.array([1.0, 2.0, 3.0, 4.0]),
        ChunkStats(candidates=4, accepted=4),
        np.array([True, True, False, False]),
    )
    assert w.row()["spearman_trained"] is None  # two scored rows only
