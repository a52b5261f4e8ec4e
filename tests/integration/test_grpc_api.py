"""Every RPC of nws.v1.SketchService end to end, and every error code it promises.

Each rejected request is followed by a digest check: a rejection changes nothing.
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from integration_helpers import DIM, batch, digest, packed
from nws.v1 import sketch_pb2 as pb
from nws.v1 import sketch_pb2_grpc

from nws_client import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    SketchClient,
    SketchConfig,
)
from nws_core.sketch import NWSketch
from nws_core.sketch import SketchConfig as EngineConfig
from nws_server.server import SketchServer

CONFIG = SketchConfig(dim=DIM, rows=64, bits=6)


# ------------------------------------------------------------------- lifecycle of sketches
def test_create_is_idempotent_for_an_equal_config(client: SketchClient, name: str) -> None:
    first = client.create_sketch(name, CONFIG, warmup=10)
    again = client.create_sketch(name, CONFIG, warmup=10)
    assert first.created and not again.created
    assert again.config.rows == 64 and again.config.bits == 6 and again.warmup == 10
    # unset fields come back as the engine's defaults
    assert again.config.estimator == "mean" and again.config.decay == 1.0
    assert again.config.prior is None and again.config.accumulator == "float64"


def test_create_with_another_config_is_already_exists(client: SketchClient, name: str) -> None:
    client.create_sketch(name, CONFIG)
    before = digest(client, name)
    with pytest.raises(AlreadyExists, match="rows: 64 != 32"):
        client.create_sketch(name, SketchConfig(dim=DIM, rows=32, bits=6))
    with pytest.raises(AlreadyExists, match="warmup: 0 != 5"):
        client.create_sketch(name, CONFIG, warmup=5)
    assert digest(client, name) == before


def test_get_list_delete(client: SketchClient, name: str) -> None:
    client.create_sketch(name + "-b", CONFIG)
    client.create_sketch(name + "-a", CONFIG)
    info = client.get(name + "-a")
    assert info.name == name + "-a" and info.device == "cpu" and info.stats.observations == 0
    names = [s.name for s in client.list()]
    assert names == sorted(names)
    assert {name + "-a", name + "-b"} <= set(names)
    client.delete(name + "-a")
    client.delete(name + "-b")
    with pytest.raises(NotFound, match="no sketch named"):
        client.get(name + "-a")
    with pytest.raises(NotFound):
        client.delete(name + "-a")
    assert name + "-a" not in [s.name for s in client.list()]


def test_full_config_round_trips(client: SketchClient, name: str) -> None:
    center = np.linspace(-1, 1, DIM).astype(np.float32)
    config = SketchConfig(
        dim=DIM,
        rows=20,
        bits=5,
        seed=7,
        estimator="median_of_means",
        groups=4,
        prior=0.5,
        decay=0.99,
        pool=16,
        buckets=24,
        accumulator="float32",
        center=center,
    )
    info = client.create_sketch(name, config)
    got = info.config
    assert (got.rows, got.bits, got.seed, got.estimator, got.groups) == (
        20,
        5,
        7,
        "median_of_means",
        4,
    )
    assert (got.prior, got.decay, got.pool, got.buckets, got.accumulator) == (
        0.5,
        0.99,
        16,
        24,
        "float32",
    )
    assert got.center is not None
    np.testing.assert_array_equal(got.center, center)
    assert not client.create_sketch(name, config).created  # equal, center included


# ------------------------------------------------------------------- the verbs
def test_score_matches_the_engine(client: SketchClient, name: str) -> None:
    client.create_sketch(name, CONFIG)
    x, y = batch(1, 200)
    client.update(name, x, y)
    engine = NWSketch(EngineConfig(dim=DIM, rows=64, bits=6))
    engine.update(x, y)
    queries, _ = batch(2, 50)
    queries[0] = x[0]
    got = client.score(name, queries)
    want = engine.estimate(queries)
    np.testing.assert_array_equal(got.estimates, want.values.numpy())
    np.testing.assert_array_equal(got.prior_used, want.prior_used.numpy())
    np.testing.assert_array_equal(got.support, want.support.numpy())


def test_score_of_an_empty_sketch_uses_the_prior(client: SketchClient, name: str) -> None:
    client.create_sketch(name, SketchConfig(dim=DIM, prior=0.75))
    result = client.score(name, batch(3, 5)[0])
    assert result.prior_used.all()
    np.testing.assert_array_equal(result.estimates, 0.75)
    assert client.score(name, np.zeros((0, DIM), np.float32)).estimates.shape == (0,)


def test_sample_honours_warmup_then_selects(client: SketchClient, name: str) -> None:
    client.create_sketch(name, CONFIG, warmup=100)
    x, y = batch(4, 64)
    warm = client.sample(name, x, 0.25)
    assert warm.warmup and warm.accepted.all()
    np.testing.assert_array_equal(warm.weights, 1.0)
    assert client.get(name).stats.in_warmup
    client.update(name, x, y)
    client.update(name, *batch(5, 64))
    assert not client.get(name).stats.in_warmup
    result = client.sample(name, x, 0.25, p_min=0.01, seed=11)
    assert not result.warmup
    assert result.probabilities.mean() == pytest.approx(0.25, abs=1e-9)
    assert (result.probabilities >= 0.01 - 1e-12).all()
    kept = result.accepted
    np.testing.assert_allclose(result.weights[kept], 1.0 / result.probabilities[kept])
    assert (result.weights[~kept] == 0).all()
    # higher estimated loss, higher keep probability
    order = np.argsort(result.estimates)
    assert np.all(np.diff(result.probabilities[order]) >= -1e-12)
    # a seed makes the draw reproducible
    again = client.sample(name, x, 0.25, p_min=0.01, seed=11)
    np.testing.assert_array_equal(again.accepted, result.accepted)
    stats = client.get(name).stats
    assert stats.sampled == 3 * 64
    assert stats.accepted == 64 + int(result.accepted.sum()) + int(again.accepted.sum())
    assert stats.acceptance_rate == pytest.approx(stats.accepted / stats.sampled)


def test_sample_default_p_min_follows_small_ratios(client: SketchClient, sketch: str) -> None:
    result = client.sample(sketch, batch(6, 100)[0], 0.02, seed=1)
    assert result.probabilities.mean() == pytest.approx(0.02, abs=1e-9)


def test_update_request_ids_are_applied_once(client: SketchClient, name: str) -> None:
    client.create_sketch(name, CONFIG)
    x, y = batch(7, 10)
    first = client.update(name, x, y, request_id="job-1")
    before = digest(client, name)
    again = client.update(name, x, y, request_id="job-1")
    assert (first.observations, first.duplicate) == (10, False)
    assert (again.observations, again.duplicate) == (10, True)
    assert digest(client, name) == before
    client.update(name, x, y, request_id="job-2")
    assert client.get(name).stats.observations == 20


def test_stream_updates_acks_each_in_order(
    stub: sketch_pb2_grpc.SketchServiceStub, client: SketchClient, name: str
) -> None:
    client.create_sketch(name, CONFIG)
    x, y = batch(8, 8)
    good = pb.UpdateRequest(name=name, embeddings=packed(x), values=y.tolist(), request_id="a")
    wrong_dim = pb.UpdateRequest(
        name=name, embeddings=packed(x[:, :4]), values=y.tolist(), request_id="b"
    )
    missing = pb.UpdateRequest(
        name=name + "-nope", embeddings=packed(x), values=y.tolist(), request_id="c"
    )
    second = pb.UpdateRequest(name=name, embeddings=packed(x), values=y.tolist(), request_id="d")
    acks = list(stub.StreamUpdates(iter([good, wrong_dim, missing, good, second]), timeout=10))
    assert [a.request_id for a in acks] == ["a", "b", "c", "a", "d"]
    assert [grpc.StatusCode.OK.value[0] == a.code for a in acks] == [
        True,
        False,
        False,
        True,
        True,
    ]
    assert acks[1].code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert f"[n, {DIM}]" in acks[1].message
    assert acks[2].code == grpc.StatusCode.NOT_FOUND.value[0]
    assert acks[3].duplicate and acks[3].observations == 8
    assert acks[4].observations == 16
    assert client.get(name).stats.observations == 16


def test_decay_and_set_center(client: SketchClient, name: str) -> None:
    client.create_sketch(name, CONFIG)
    info = client.set_center(name, np.full(DIM, 0.5))
    assert info.config.center is not None
    np.testing.assert_array_equal(info.config.center, 0.5)
    x, y = batch(9, 16)
    client.update(name, x, y)
    decayed = client.decay(name, 0.5)
    assert decayed.stats.total_weight == pytest.approx(8.0)
    assert decayed.stats.observations == 16


def test_stats(client: SketchClient, sketch: str) -> None:
    stats = client.stats()
    assert sketch in stats.sketches and stats.server.sketches >= 1
    assert stats.server.device == "cpu" and stats.server.uptime_seconds > 0
    one = client.stats(sketch)
    assert list(one.sketches) == [sketch]
    s = one.sketches[sketch]
    assert s.observations == 64 and s.updates == 1 and s.mean_value is not None
    assert s.updates_per_second > 0 and s.observations_per_second > 0
    assert one.client.calls >= 2


# ------------------------------------------------------------------- error codes
def _code(exc: grpc.RpcError) -> grpc.StatusCode:
    assert isinstance(exc, grpc.Call)
    return exc.code()


def test_invalid_argument_is_reported_and_changes_nothing(
    stub: sketch_pb2_grpc.SketchServiceStub, client: SketchClient, sketch: str
) -> None:
    x, y = batch(10, 4)
    nan = x.copy()
    nan[2, 3] = np.nan
    short = packed(x)
    short.data = short.data[:-4]
    bad_requests: list[tuple[str, object, str]] = [
        ("Score", pb.ScoreRequest(name=sketch, embeddings=packed(x[:, :5])), f"[n, {DIM}]"),
        ("Score", pb.ScoreRequest(name=sketch, embeddings=packed(x[0])), f"[n, {DIM}]"),
        ("Score", pb.ScoreRequest(name=sketch, embeddings=packed(nan)), "non-finite"),
        ("Score", pb.ScoreRequest(name=sketch, embeddings=short), "needs 256 bytes, got 252"),
        (
            "Score",
            pb.ScoreRequest(name=sketch, embeddings=pb.Tensor(shape=[1, DIM], data=b"\0" * 64)),
            "DTYPE_UNSPECIFIED",
        ),
        ("Sample", pb.SampleRequest(name=sketch, embeddings=packed(x), ratio=0.0), "ratio"),
        ("Sample", pb.SampleRequest(name=sketch, embeddings=packed(x), ratio=1.5), "ratio"),
        (
            "Sample",
            pb.SampleRequest(name=sketch, embeddings=packed(x), ratio=0.1, p_min=0.5),
            "p_min",
        ),
        (
            "Update",
            pb.UpdateRequest(name=sketch, embeddings=packed(x), values=[1.0, 2.0]),
            "shape [4]",
        ),
        (
            "Update",
            pb.UpdateRequest(name=sketch, embeddings=packed(x), values=[1, 2, float("inf"), 4]),
            "non-finite",
        ),
        (
            "Update",
            pb.UpdateRequest(name=sketch, embeddings=packed(x[:0]), values=[]),
            "at least one row",
        ),
        (
            "Update",
            pb.UpdateRequest(
                name=sketch, embeddings=packed(x), values=y.tolist(), request_id="r" * 200
            ),
            "request_id",
        ),
        ("Decay", pb.DecayRequest(name=sketch, factor=0.0), "factor"),
        ("Decay", pb.DecayRequest(name=sketch, factor=1.5), "factor"),
        (
            "CreateSketch",
            pb.CreateSketchRequest(name="bad name!", config=pb.SketchConfig(dim=4)),
            "sketch name",
        ),
        (
            "CreateSketch",
            pb.CreateSketchRequest(name=sketch + "-x", config=pb.SketchConfig(dim=4, bits=0)),
            "bits",
        ),
        (
            "CreateSketch",
            pb.CreateSketchRequest(name=sketch + "-x", config=pb.SketchConfig(dim=0)),
            "dim",
        ),
    ]
    before = digest(client, sketch)
    for method, request, message in bad_requests:
        with pytest.raises(grpc.RpcError) as info:
            getattr(stub, method)(request, timeout=10)
        assert _code(info.value) == grpc.StatusCode.INVALID_ARGUMENT, (method, request)
        assert message in (info.value.details() or ""), (method, info.value.details())
        assert digest(client, sketch) == before, (method, message)
    assert sketch + "-x" not in [s.name for s in client.list()]


def test_client_side_invalid_argument(client: SketchClient, sketch: str) -> None:
    x, _ = batch(11, 3)
    with pytest.raises(InvalidArgument, match="2-D"):
        client.score(sketch, x[0])
    with pytest.raises(InvalidArgument, match="floats"):
        client.score(sketch, x.astype(np.int32))
    with pytest.raises(InvalidArgument, match="one per row"):
        client.update(sketch, x, [1.0])
    with pytest.raises(InvalidArgument, match="non-finite"):
        client.update_async(sketch, x, [1.0, np.nan, 2.0])


def test_not_found(stub: sketch_pb2_grpc.SketchServiceStub, client: SketchClient) -> None:
    x, y = batch(12, 2)
    missing = "no-such-sketch"
    calls = [
        ("GetSketch", pb.GetSketchRequest(name=missing)),
        ("DeleteSketch", pb.DeleteSketchRequest(name=missing)),
        ("Score", pb.ScoreRequest(name=missing, embeddings=packed(x))),
        ("Sample", pb.SampleRequest(name=missing, embeddings=packed(x), ratio=0.5)),
        ("Update", pb.UpdateRequest(name=missing, embeddings=packed(x), values=y.tolist())),
        ("Decay", pb.DecayRequest(name=missing, factor=0.5)),
        ("SetCenter", pb.SetCenterRequest(name=missing, center=packed(x[:1]))),
        ("Stats", pb.StatsRequest(name=missing)),
    ]
    for method, request in calls:
        with pytest.raises(grpc.RpcError) as info:
            getattr(stub, method)(request, timeout=10)
        assert _code(info.value) == grpc.StatusCode.NOT_FOUND, method
        assert "no sketch named 'no-such-sketch'" in (info.value.details() or "")
    with pytest.raises(NotFound):
        client.score(missing, x)


def test_failed_precondition(client: SketchClient, sketch: str) -> None:
    before = digest(client, sketch)
    with pytest.raises(FailedPrecondition, match="already holds data"):
        client.set_center(sketch, np.zeros(DIM))
    assert digest(client, sketch) == before
    empty = sketch + "-empty"
    client.create_sketch(empty, CONFIG)
    client.set_center(empty, np.zeros(DIM))
    centered = digest(client, empty)
    with pytest.raises(FailedPrecondition, match="frozen"):
        client.set_center(empty, np.ones(DIM))
    assert digest(client, empty) == centered


def test_resource_exhausted(limited_server: SketchServer, name: str) -> None:
    with SketchClient(limited_server.target) as client:
        client.create_sketch(name, CONFIG)
        client.update(name, *batch(13, 8))
        before = digest(client, name)
        too_many_rows, values = batch(14, 65)
        for call in (
            lambda: client.score(name, too_many_rows),
            lambda: client.sample(name, too_many_rows, 0.5),
            lambda: client.update(name, too_many_rows, values),
        ):
            with pytest.raises(ResourceExhausted, match="at most 64 rows"):
                call()
        # over the message size limit (64 KiB): rejected by gRPC before it reaches the core
        with pytest.raises(ResourceExhausted):
            client.score(name, np.zeros((64, 512), np.float32))
        assert digest(client, name) == before
        # a sketch over max_sketch_bytes (4 MiB)
        with pytest.raises(ResourceExhausted, match="over the limit"):
            client.create_sketch(name + "-big", SketchConfig(dim=DIM, rows=200, bits=12))
        # the sketch count (3)
        client.create_sketch(name + "-2", CONFIG)
        client.create_sketch(name + "-3", CONFIG)
        with pytest.raises(ResourceExhausted, match="maximum of 3 sketches"):
            client.create_sketch(name + "-4", CONFIG)
        assert len(client.list()) == 3
        assert digest(client, name) == before
