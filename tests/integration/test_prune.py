"""policy="prune" over real gRPC: InfoBatch's rule against the sketch's observed mean, its
weights, warm-up, bad settings and the client's fallback."""

from __future__ import annotations

import math

import grpc
import numpy as np
import pytest
from integration_helpers import DIM, digest, packed
from nws.v1 import sketch_pb2 as pb
from nws.v1 import sketch_pb2_grpc

from nws_client import InvalidArgument, SketchClient, SketchConfig
from nws_server.server import SketchServer
from nws_server.settings import Settings

CONFIG = SketchConfig(dim=DIM, rows=32, bits=4)
DIRECTION = np.random.default_rng(7).standard_normal(DIM).astype(np.float32)


def cluster(sign: float, n: int, seed: int) -> np.ndarray:
    """n embeddings within 1e-4 of sign * DIRECTION: their own bucket in every row."""
    noise = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return (sign * DIRECTION + 1e-4 * noise).astype(np.float32)


def candidates(hard: int, easy: int, seed: int = 1) -> np.ndarray:
    return np.concatenate([cluster(1.0, hard, seed), cluster(-1.0, easy, seed + 1)])


@pytest.fixture
def two_levels(client: SketchClient, name: str) -> str:
    """Estimates exactly 3 near +DIRECTION and 1 near -DIRECTION; observed mean 2."""
    client.create_sketch(name, CONFIG)
    client.update(name, candidates(16, 16, seed=10), np.r_[np.full(16, 3.0), np.ones(16)])
    return name


def _stats(client: SketchClient, name: str) -> tuple[object, ...]:
    s = client.get(name).stats
    return (s.sampled, s.accepted, s.estimates, s.keep_ratio, s.priority_cv)


@pytest.mark.parametrize("rate", [0.5, 0.8])
def test_prune_skips_below_mean_rows_at_the_rate_and_weights_the_kept_ones(
    client: SketchClient, two_levels: str, rate: float
) -> None:
    hard, easy = 200, 2000
    r = client.sample(two_levels, candidates(hard, easy), policy="prune", prune_rate=rate, seed=4)
    np.testing.assert_allclose(r.estimates, np.r_[np.full(hard, 3.0), np.ones(easy)])
    assert not r.warmup
    # above the mean (2): every row kept, weight 1
    assert r.accepted[:hard].all()
    np.testing.assert_array_equal(r.weights[:hard], 1.0)
    np.testing.assert_array_equal(r.probabilities[:hard], 1.0)
    # below it: kept with probability 1 - rate, weighted 1 / (1 - rate)
    low = slice(hard, None)
    np.testing.assert_allclose(r.probabilities[low], 1.0 - rate)
    kept = r.accepted[low]
    np.testing.assert_allclose(r.weights[low][kept], 1.0 / (1.0 - rate))
    np.testing.assert_array_equal(r.weights[low][~kept], 0.0)
    sigma = math.sqrt(easy * rate * (1.0 - rate))  # binomial spread of the kept count
    assert abs(int(kept.sum()) - easy * (1.0 - rate)) <= 4 * sigma
    # so E[accepted * weight] = 1 per row: the mean of accepted * weight is 1 within 4 sigma
    unbiased = float((r.accepted[low] * r.weights[low]).mean())
    assert abs(unbiased - 1.0) <= 4 * sigma / (easy * (1.0 - rate))
    # ratio: the expected keep share; reproducible for a seed
    assert r.ratio == pytest.approx((hard + easy * (1.0 - rate)) / (hard + easy))
    again = client.sample(
        two_levels, candidates(hard, easy), policy="prune", prune_rate=rate, seed=4
    )
    np.testing.assert_array_equal(again.accepted, r.accepted)


def test_prune_rate_defaults_to_a_half_and_stats_count_the_draws(
    client: SketchClient, two_levels: str
) -> None:
    r = client.sample(two_levels, candidates(4, 60), policy="prune", seed=1)
    np.testing.assert_allclose(r.probabilities[4:], 0.5)
    np.testing.assert_allclose(r.weights[4:][r.accepted[4:]], 2.0)
    stats = client.get(two_levels).stats
    assert stats.sampled == 64 and stats.accepted == int(r.accepted.sum())
    assert stats.keep_ratio == pytest.approx((4 + 30) / 64)


def test_the_mean_is_the_sketchs_not_the_requests(client: SketchClient, two_levels: str) -> None:
    # every row of this request has estimate 1, its own mean: still below the sketch's mean 2
    r = client.sample(two_levels, candidates(0, 400), policy="prune", prune_rate=0.5, seed=5)
    np.testing.assert_allclose(r.probabilities, 0.5)
    assert abs(int(r.accepted.sum()) - 200) <= 4 * math.sqrt(400 * 0.25)
    # losses of 0 on the other cluster pull the observed mean to 64 / 96 < 1: none below it
    client.update(two_levels, cluster(1.0, 64, seed=11), np.zeros(64))
    after = client.sample(two_levels, candidates(0, 40), policy="prune", seed=5)
    assert after.accepted.all() and after.ratio == 1.0


def test_warmup_keeps_every_row_with_weight_one(client: SketchClient, name: str) -> None:
    client.create_sketch(name, CONFIG, warmup=1000)
    client.update(name, candidates(16, 16, seed=10), np.r_[np.full(16, 3.0), np.ones(16)])
    r = client.sample(name, candidates(8, 40), policy="prune", prune_rate=0.9, seed=2)
    assert r.warmup and r.accepted.all() and r.ratio == 1.0
    np.testing.assert_array_equal(r.weights, 1.0)
    np.testing.assert_array_equal(r.probabilities, 1.0)


def test_an_empty_sketch_has_no_mean_and_prunes_nothing(client: SketchClient, name: str) -> None:
    client.create_sketch(name, CONFIG)
    r = client.sample(name, candidates(8, 8), policy="prune", seed=2)
    assert r.accepted.all() and r.ratio == 1.0 and not r.warmup


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"policy": "fast"}, "policy"),
        ({"policy": "prune", "prune_rate": 1.0}, "prune_rate"),
        ({"policy": "prune", "prune_rate": -0.1}, "prune_rate"),
        ({"policy": "prune", "prune_rate": float("nan")}, "prune_rate"),
        ({"ratio": 0.5, "prune_rate": 0.5}, "prune_rate"),
        ({"policy": "importance", "ratio": 0.5, "prune_rate": 0.5}, "prune_rate"),
        ({"policy": "prune", "auto_ratio": True}, "auto_ratio"),
        ({"policy": "prune", "p_min": 0.1}, "p_min"),
        ({"policy": "prune", "power": 2.0}, "power"),
        ({"policy": "prune", "temper": 0.5}, "temper"),
        ({"policy": "prune", "ratio": 2.0}, "ratio"),
    ],
)
def test_bad_prune_settings_are_invalid_argument_and_change_nothing(
    stub: sketch_pb2_grpc.SketchServiceStub,
    client: SketchClient,
    two_levels: str,
    fields: dict[str, object],
    named: str,
) -> None:
    x = candidates(8, 24)
    client.sample(two_levels, x, policy="prune", seed=1)
    before, state = digest(client, two_levels), _stats(client, two_levels)
    request = pb.SampleRequest(name=two_levels, embeddings=packed(x), **fields)  # type: ignore[arg-type]
    with pytest.raises(grpc.RpcError) as err:
        stub.Sample(request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert named in (err.value.details() or "")
    assert digest(client, two_levels) == before and _stats(client, two_levels) == state


def test_importance_sampling_still_needs_a_ratio(client: SketchClient, two_levels: str) -> None:
    with pytest.raises(InvalidArgument, match="ratio"):
        client.sample(two_levels, candidates(2, 2))
    plain = client.sample(two_levels, candidates(8, 24), 0.5, policy="importance", seed=3)
    assert plain.ratio == 0.5


def test_fallback_keeps_everything_under_prune() -> None:
    with SketchServer(Settings(grpc_port=0, rest_port=0, device="cpu")) as gone:
        target = gone.target
    with SketchClient(target, timeout=0.5, on_unavailable="uniform") as client:
        r = client.sample("any", candidates(8, 24), policy="prune", prune_rate=0.5, seed=1)
        assert r.fallback and r.ratio == 1.0 and r.accepted.all()
        np.testing.assert_array_equal(r.weights, 1.0)
        with pytest.raises(InvalidArgument, match="prune_rate"):
            client.sample("any", candidates(1, 1), policy="prune", prune_rate=1.5)
