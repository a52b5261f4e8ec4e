"""The sketch engine's verbs, read like a tutorial: update, estimate, merge, decay, serialize."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from nws_core.errors import DataLoss, FailedPrecondition, InvalidArgument
from nws_core.sketch import NWSketch, SketchConfig, rows_for_error

DIM = 8
SMALL = SketchConfig(dim=DIM, rows=16, bits=6, seed=3)

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def batches(draw, min_n=1, max_n=20):
    n = draw(st.integers(min_n, max_n))
    x = draw(arrays(np.float32, (n, DIM), elements=finite))
    y = draw(arrays(np.float64, (n,), elements=st.floats(0, 100)))
    return x, y


def _arrays_equal(a: NWSketch, b: NWSketch) -> bool:
    return torch.equal(a.top, b.top) and torch.equal(a.bottom, b.bottom)


# ----------------------------------------------------------------- properties


@settings(max_examples=40, deadline=None)
@given(batches(), batches())
def test_merge_equals_updating_one_sketch_with_both_streams(b1, b2):
    one, two, both = NWSketch(SMALL), NWSketch(SMALL), NWSketch(SMALL)
    one.update(*b1)
    two.update(*b2)
    both.update(*b1)
    both.update(*b2)
    one.merge(two)
    assert torch.allclose(one.top, both.top, rtol=1e-12, atol=1e-9)
    assert torch.equal(one.bottom, both.bottom)
    assert one.observations == both.observations


@settings(max_examples=30, deadline=None)
@given(batches(), st.sampled_from(["mean", "median_of_means"]), st.booleans())
def test_serialize_deserialize_is_bit_exact(batch, estimator, pooled):
    cfg = SketchConfig(
        dim=DIM,
        rows=20,
        bits=5,
        seed=11,
        estimator=estimator,
        groups=4,
        pool=12 if pooled else None,
    )
    sketch = NWSketch(cfg)
    sketch.update(*batch)
    data = sketch.serialize()
    restored = NWSketch.deserialize(data)
    assert restored.serialize() == data
    assert restored.config == sketch.config
    assert _arrays_equal(restored, sketch)
    q = batch[0]
    assert torch.equal(restored.estimate(q).values, sketch.estimate(q).values)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, (1, DIM), elements=finite), st.floats(0, 1e6))
def test_a_point_inserted_alone_is_estimated_as_its_value(x, y):
    sketch = NWSketch(SMALL)
    sketch.update(x, np.array([y]))
    est = sketch.estimate(x)
    assert not bool(est.prior_used[0])
    assert math.isclose(float(est.values[0]), y, rel_tol=1e-12, abs_tol=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    arrays(np.float32, (1, DIM), elements=finite),
    st.floats(0, 100),
    st.floats(0.01, 1.0),
)
def test_decay_scales_both_arrays_and_keeps_a_lone_points_estimate(x, y, factor):
    sketch = NWSketch(SMALL)
    sketch.update(x, np.array([y]))
    top, bottom = sketch.top.clone(), sketch.bottom.clone()
    sketch.decay(factor)
    assert torch.allclose(sketch.top, top * factor, rtol=1e-15)
    assert torch.allclose(sketch.bottom, bottom * factor, rtol=1e-15)
    assert math.isclose(float(sketch.estimate(x).values[0]), y, rel_tol=1e-9, abs_tol=1e-12)


# ----------------------------------------------------------------- behaviour


def test_repeated_buckets_within_one_batch_all_count():
    x = np.ones((5, DIM), dtype=np.float32)
    sketch = NWSketch(SMALL)
    sketch.update(x, np.arange(5.0))
    assert float(sketch.bottom.sum()) == 5 * SMALL.rows
    assert float(sketch.top.sum()) == 10.0 * SMALL.rows
    assert float(sketch.estimate(x[:1]).values[0]) == pytest.approx(2.0)


def test_unseen_region_returns_the_running_mean_prior_and_reports_it():
    cfg = SketchConfig(dim=2, rows=4, bits=12, seed=0)
    sketch = NWSketch(cfg)
    sketch.update(np.array([[1.0, 0.0], [1.0, 0.01]], dtype=np.float32), np.array([2.0, 4.0]))
    est = sketch.estimate(np.array([[-1.0, 0.0], [1.0, 0.0]], dtype=np.float32))
    assert est.prior_used.tolist() == [True, False]
    assert float(est.values[0]) == pytest.approx(3.0)  # mean of observed values
    assert float(est.support[0]) == 0.0
    assert sketch.stats.prior_hits == 1


def test_configured_prior_is_returned_for_empty_sketch():
    sketch = NWSketch(SketchConfig(dim=DIM, rows=4, bits=4, prior=7.5))
    est = sketch.estimate(np.zeros((3, DIM), dtype=np.float32) + 1)
    assert est.prior_used.all()
    assert torch.all(est.values == 7.5)


def test_decay_config_forgets_old_values():
    x = np.ones((1, DIM), dtype=np.float32)
    sketch = NWSketch(SketchConfig(dim=DIM, rows=8, bits=4, decay=0.5))
    sketch.update(x, [10.0])
    sketch.update(x, [0.0])
    # old value weighted 0.5, new value 1: (5 + 0) / 1.5
    assert float(sketch.estimate(x).values[0]) == pytest.approx(5 / 1.5)
    assert sketch.stats.total_weight == pytest.approx(1.5)


def test_median_of_means_matches_mean_for_a_single_point():
    cfg = SketchConfig(dim=DIM, rows=20, bits=6, estimator="median_of_means", groups=5)
    sketch = NWSketch(cfg)
    x = np.random.default_rng(0).normal(size=(1, DIM)).astype(np.float32)
    sketch.update(x, [3.0])
    assert float(sketch.estimate(x).values[0]) == pytest.approx(3.0)


def test_center_is_frozen_once_set_and_only_on_an_empty_sketch():
    sketch = NWSketch(SketchConfig(dim=DIM, rows=4, bits=4))
    sketch.set_center(np.full(DIM, 0.5, dtype=np.float32))
    assert sketch.config.center == tuple([0.5] * DIM)
    with pytest.raises(FailedPrecondition, match="frozen"):
        sketch.set_center(np.zeros(DIM, dtype=np.float32))
    other = NWSketch(SketchConfig(dim=DIM, rows=4, bits=4))
    other.update(np.ones((1, DIM), dtype=np.float32), [1.0])
    with pytest.raises(FailedPrecondition, match="already holds data"):
        other.set_center(np.zeros(DIM, dtype=np.float32))


def test_centering_separates_points_that_share_an_orthant():
    rng = np.random.default_rng(1)
    base = np.full(DIM, 10.0, dtype=np.float32)
    x = base + rng.normal(size=(200, DIM)).astype(np.float32)
    plain = NWSketch(SketchConfig(dim=DIM, rows=8, bits=8))
    centered = NWSketch(SketchConfig(dim=DIM, rows=8, bits=8, center=tuple(base.tolist())))
    for s in (plain, centered):
        s.update(x, np.zeros(200))
    # uncentered, all points share a few buckets; centered, they spread out
    assert centered.stats.occupancy > 4 * plain.stats.occupancy


def test_stats_report_counts_mean_occupancy_and_bytes():
    sketch = NWSketch(SMALL)
    assert sketch.stats.mean_value is None
    sketch.update(np.eye(DIM, dtype=np.float32), np.arange(DIM, dtype=np.float64))
    st_ = sketch.stats
    assert st_.observations == DIM and st_.updates == 1
    assert st_.mean_value == pytest.approx((DIM - 1) / 2)
    assert 0 < st_.occupancy <= DIM / SMALL.width
    assert st_.bytes == SMALL.array_bytes + DIM * SMALL.rows * SMALL.bits * 4


def test_memory_lean_layout_and_float32_accumulators():
    wide = SketchConfig(dim=DIM, rows=10, bits=16)
    lean = SketchConfig(dim=DIM, rows=10, bits=16, buckets=4096, accumulator="float32")
    assert lean.array_bytes * 32 == wide.array_bytes
    sketch = NWSketch(lean)
    x = np.random.default_rng(0).normal(size=(50, DIM)).astype(np.float32)
    sketch.update(x, np.ones(50))
    assert sketch.top.dtype == torch.float32
    assert int(sketch.bottom.sum()) == 500
    assert torch.allclose(sketch.estimate(x).values, torch.ones(50, dtype=torch.float64))


def test_pooled_projections_keep_the_lone_point_property():
    sketch = NWSketch(SketchConfig(dim=DIM, rows=30, bits=6, pool=24))
    x = np.random.default_rng(2).normal(size=(3, DIM)).astype(np.float32)
    sketch.update(x[:1], [4.0])
    assert float(sketch.estimate(x[:1]).values[0]) == pytest.approx(4.0)


def test_rows_for_error_follows_log_over_eps_squared():
    assert rows_for_error(0.1, 0.05) == math.ceil(2 * math.log(40) / 0.01)
    assert rows_for_error(0.05, 0.05) >= 4 * rows_for_error(0.1, 0.05) - 1
    with pytest.raises(InvalidArgument):
        rows_for_error(0, 0.1)


# ----------------------------------------------------------------- bad input changes nothing

BAD_UPDATES = [
    (np.ones((3, DIM + 1), dtype=np.float32), np.ones(3), r"must be \[n, 8\] floats, got \[3, 9\]"),
    (np.ones((3, DIM), dtype=np.int32), np.ones(3), "must be a float array"),
    (np.ones(DIM, dtype=np.float32), np.ones(1), r"must be \[n, 8\]"),
    (np.full((2, DIM), np.nan, dtype=np.float32), np.ones(2), "non-finite"),
    (np.ones((2, DIM), dtype=np.float32), np.array([1.0, np.inf]), "values contain non-finite"),
    (np.ones((2, DIM), dtype=np.float32), np.ones(3), r"values must have shape \[2\]"),
    (np.ones((2, DIM), dtype=np.float32), np.array(["a", "b"]), "must be real numbers"),
    (np.ones((0, DIM), dtype=np.float32), np.ones(0), "empty batch"),
    ([[1.0] * DIM], [1.0], "numpy array or torch tensor"),
]


@pytest.mark.parametrize(("x", "y", "message"), BAD_UPDATES)
def test_bad_update_raises_value_error_and_changes_nothing(x, y, message):
    sketch = NWSketch(SMALL)
    sketch.update(np.ones((2, DIM), dtype=np.float32), [1.0, 2.0])
    before = sketch.digest()
    with pytest.raises(ValueError, match=message):
        sketch.update(x, y)
    assert sketch.digest() == before


def test_estimate_rejects_bad_embeddings_and_accepts_an_empty_batch():
    sketch = NWSketch(SMALL)
    with pytest.raises(InvalidArgument, match="non-finite"):
        sketch.estimate(np.array([[np.inf] * DIM], dtype=np.float32))
    assert sketch.estimate(np.zeros((0, DIM), dtype=np.float32)).values.shape == (0,)
    # half precision is accepted (it is what clients send on the wire)
    est = sketch.estimate(torch.ones(2, DIM, dtype=torch.bfloat16))
    assert est.values.shape == (2,)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dim": 0}, "dim must be"),
        ({"rows": 0}, "rows must be"),
        ({"bits": 25}, "bits must be"),
        ({"decay": 0.0}, "decay must be"),
        ({"decay": 1.5}, "decay must be"),
        ({"estimator": "median"}, "estimator must be"),
        ({"estimator": "median_of_means", "groups": 3}, "must divide rows"),
        ({"prior": float("nan")}, "prior must be finite"),
        ({"pool": 4}, "pool must be"),
        ({"accumulator": "float16"}, "accumulator must be"),
        ({"center": (1.0,)}, "center must have 8"),
    ],
)
def test_bad_config_is_rejected_with_a_clear_message(kwargs, message):
    params = {"dim": DIM, "rows": 20, "bits": 8, **kwargs}
    with pytest.raises(InvalidArgument, match=message):
        SketchConfig(**params)


def test_merge_refuses_different_hash_functions():
    a = NWSketch(SketchConfig(dim=DIM, rows=4, bits=4, seed=1))
    b = NWSketch(SketchConfig(dim=DIM, rows=4, bits=4, seed=2))
    with pytest.raises(FailedPrecondition, match="merge only"):
        a.merge(b)


@pytest.mark.parametrize("damage", ["truncate", "flip", "magic"])
def test_corrupt_snapshots_are_detected(damage):
    sketch = NWSketch(SMALL)
    sketch.update(np.ones((2, DIM), dtype=np.float32), [1.0, 2.0])
    data = bytearray(sketch.serialize())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        data[:4] = b"XXXX"
    with pytest.raises(DataLoss):
        NWSketch.deserialize(bytes(data))


def test_wide_sketches_serialize_their_occupied_cells_only():
    """K = 16 gives 65,536 cells a row; a few hundred points fill a sliver of them, so the
    snapshot holds (index, top, bottom) of the occupied cells: exact, and far smaller."""
    cfg = SketchConfig(dim=DIM, rows=20, bits=16, seed=4)
    sketch = NWSketch(cfg)
    rng = np.random.default_rng(0)
    sketch.update(rng.normal(size=(300, DIM)).astype(np.float32), rng.random(300))
    sketch.decay(0.5)
    data = sketch.serialize()
    dense_bytes = 2 * cfg.rows * cfg.width * 8
    occupied = int(torch.count_nonzero(sketch.bottom))
    assert occupied <= cfg.rows * 300
    assert len(data) < 3 * occupied * 8 + 100_000 < dense_bytes // 50
    restored = NWSketch.deserialize(data)
    assert _arrays_equal(restored, sketch) and restored.serialize() == data
    q = rng.normal(size=(50, DIM)).astype(np.float32)
    assert torch.equal(restored.estimate(q).values, sketch.estimate(q).values)


def test_full_sketches_stay_dense_and_version_1_snapshots_still_load():
    from nws_core import packing

    small = NWSketch(SketchConfig(dim=DIM, rows=4, bits=2, seed=1))
    small.update(np.random.default_rng(1).normal(size=(200, DIM)).astype(np.float32), [1.0] * 200)
    assert int(torch.count_nonzero(small.bottom)) == 16  # every cell occupied: dense is smaller
    dense = small.serialize()
    assert _arrays_equal(NWSketch.deserialize(dense), small)
    # A snapshot written before the sparse layout existed (format 1: no layout, dense arrays).
    header, arrays_ = packing.unpack(dense)
    header.pop("layout")
    header.pop("arrays")
    old = packing.pack(header, arrays_, version=1)
    assert _arrays_equal(NWSketch.deserialize(old), small)


@pytest.mark.parametrize("damage", ["out_of_range", "unsorted", "short_values"])
def test_sparse_snapshots_with_bad_cells_are_refused(damage):
    from nws_core import packing

    sketch = NWSketch(SketchConfig(dim=DIM, rows=8, bits=12, seed=2))
    sketch.update(np.random.default_rng(2).normal(size=(20, DIM)).astype(np.float32), [2.0] * 20)
    header, arrays_ = packing.unpack(sketch.serialize())
    assert header["layout"] == "sparse"
    header.pop("arrays")
    cells = arrays_["cells"]
    if damage == "out_of_range":
        cells[-1] = 8 * 4096
    elif damage == "unsorted":
        cells[0], cells[1] = cells[1].clone(), cells[0].clone()
    else:
        arrays_["top"] = arrays_["top"][:-1]
    with pytest.raises(DataLoss):
        NWSketch.deserialize(packing.pack(header, arrays_))


# ----------------------------------------------------------------- determinism

_CHILD = """
import sys, numpy as np
from nws_core.sketch import NWSketch, SketchConfig
rng = np.random.default_rng(5)
s = NWSketch(SketchConfig(dim=16, rows=32, bits=10, seed=42))
s.update(rng.normal(size=(500, 16)).astype(np.float32), rng.random(500))
sys.stdout.write(s.digest())
"""


def test_same_seed_gives_identical_sketches_in_separate_processes():
    digests = {
        subprocess.run(
            [sys.executable, "-c", _CHILD], capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    }
    assert len(digests) == 1 and len(next(iter(digests))) == 32


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cpu_and_cuda_assign_identical_buckets():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2000, 64)).astype(np.float32)
    y = rng.random(2000)
    cfg = SketchConfig(dim=64, rows=50, bits=10, seed=9)
    cpu, gpu = NWSketch(cfg, "cpu"), NWSketch(cfg, "cuda")
    cpu.update(x, y)
    gpu.update(x, y)
    assert torch.equal(cpu.bottom, gpu.bottom.cpu())
    assert torch.allclose(cpu.estimate(x).values, gpu.estimate(x).values, rtol=1e-9)


def test_the_digest_covers_the_content_not_the_read_counters():
    sketch = NWSketch(SMALL)
    x, y = np.random.default_rng(0).standard_normal((12, DIM)).astype(np.float32), np.arange(12.0)
    sketch.update(x, y)
    before, serialized = sketch.digest(), sketch.serialize()
    sketch.estimate(x)  # reads: counted in the usage statistics ...
    sketch.estimate(-x[:3] * 100)
    assert sketch.stats.estimates == 15
    assert sketch.serialize() != serialized  # ... which the serialization keeps
    assert sketch.digest() == before  # but the digest leaves them out
    restored = NWSketch.deserialize(serialized)
    assert restored.stats.estimates == 0 and restored.digest() == before
    # equal content fed in other batches has an equal digest (update calls are usage too)
    split = NWSketch(SMALL)
    split.update(x[:5], y[:5])
    split.update(x[5:], y[5:])
    assert split.stats.updates == 2 and split.digest() == before
    # every part of the content changes it
    for change in (
        lambda s: s.update(x[:1], y[:1]),
        lambda s: s.decay(0.5),
        lambda s: s.merge(NWSketch.deserialize(serialized)),
    ):
        other = NWSketch.deserialize(serialized)
        change(other)
        assert other.digest() != before
    centered, plain = NWSketch(SMALL), NWSketch(SMALL)
    centered.set_center(np.full(DIM, 0.5, np.float32))
    assert centered.digest() != plain.digest()
    assert NWSketch(SketchConfig(dim=DIM, rows=16, bits=6, seed=4)).digest() != plain.digest()


def test_a_batch_validated_at_the_boundary_is_not_checked_again_and_acts_the_same():
    from nws_core.sketch import as_embeddings, as_values

    rng = np.random.default_rng(9)
    x, y = rng.normal(size=(30, DIM)).astype(np.float32), rng.gamma(2.0, 1.0, 30)
    checked, trusted = (NWSketch(SketchConfig(dim=DIM, rows=16, bits=6, seed=4)) for _ in "ab")
    checked.update(x, y)
    trusted.update(as_embeddings(x, DIM), as_values(y, 30), validated=True)
    assert checked.serialize() == trusted.serialize()
    q = as_embeddings(rng.normal(size=(10, DIM)).astype(np.float32), DIM)
    assert torch.equal(checked.estimate(q).values, trusted.estimate(q, validated=True).values)
    with pytest.raises(ValueError, match="non-finite"):  # unvalidated input is still checked
        checked.update(np.full((1, DIM), np.nan, np.float32), [1.0])
