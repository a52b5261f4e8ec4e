"""ratio="auto" over real gRPC: the chosen ratio, CV and variance factor in Sample, Stats, REST
and /metrics; warm-up; bad settings; the client's fallback."""

from __future__ import annotations

import math

import grpc
import httpx
import numpy as np
import pytest
from integration_helpers import DIM, digest, packed
from nws.v1 import sketch_pb2 as pb
from nws.v1 import sketch_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from nws_client import InvalidArgument, SketchClient, SketchConfig
from nws_core import keep_ratio
from nws_server.server import SketchServer
from nws_server.settings import Settings

CONFIG = SketchConfig(dim=DIM, rows=32, bits=4)
DIRECTION = np.random.default_rng(5).standard_normal(DIM).astype(np.float32)


def cluster(sign: float, n: int, seed: int) -> np.ndarray:
    """n embeddings within 1e-4 of sign * DIRECTION: one bucket per row, never shared with the
    other sign (every sign bit flips)."""
    noise = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return (sign * DIRECTION + 1e-4 * noise).astype(np.float32)


def candidates(hard: int, easy: int, seed: int = 1) -> np.ndarray:
    return np.concatenate([cluster(1.0, hard, seed), cluster(-1.0, easy, seed + 1)])


@pytest.fixture
def two_levels(client: SketchClient, name: str) -> str:
    """A sketch whose estimates are exactly 4 near +DIRECTION and 0 near -DIRECTION."""
    client.create_sketch(name, CONFIG)
    x = candidates(32, 32, seed=10)
    client.update(name, x, np.r_[np.full(32, 4.0), np.zeros(32)])
    return name


def _stats(client: SketchClient, name: str) -> tuple[object, ...]:
    s = client.get(name).stats
    return (s.sampled, s.estimates, s.keep_ratio, s.priority_cv, s.variance_factor)


def test_auto_chooses_the_break_even_ratio_and_reports_it_everywhere(
    server: SketchServer, client: SketchClient, two_levels: str
) -> None:
    x = candidates(8, 24)  # q = 1/4 of estimate 4, the rest 0: CV^2 = (1 - q) / q = 3
    first = client.sample(two_levels, x, "auto", seed=3)
    np.testing.assert_array_equal(first.estimates, np.r_[np.full(8, 4.0), np.zeros(24)])
    # rho_0 = clip(1 / (1 + 3), 0.3, 1) = 0.3 >= q + (1 - q) p_min = 0.2875: it breaks even
    assert first.ratio == pytest.approx(0.3) and first.probabilities.mean() == pytest.approx(0.3)
    assert first.cv == pytest.approx(math.sqrt(3.0))
    np.testing.assert_array_equal(first.probabilities[:8], 1.0)  # every informative row kept
    assert first.accepted[:8].all() and not first.warmup
    assert first.variance_factor == pytest.approx(0.3)  # f = rho: exactly break-even
    # a lower floor: raised from rho_0 = 1/4 to rho* = 0.25 + 0.75 * 0.05 by the cap check
    low = client.sample(two_levels, x, "auto", ratio_min=0.1, seed=3)
    assert low.ratio == pytest.approx(0.2875) and low.cv == pytest.approx(math.sqrt(3.0))
    assert low.probabilities.mean() == pytest.approx(0.2875)
    # a threshold over the gain 1 + CV^2 = 4 keeps everything
    off = client.sample(two_levels, x, "auto", auto_threshold=3.5)
    assert off.ratio == 1.0 and off.accepted.all() and off.variance_factor == pytest.approx(1.0)
    # a fixed ratio reports itself and its predicted variance factor
    fixed = client.sample(two_levels, x, 0.5, seed=4)
    assert fixed.ratio == 0.5
    assert fixed.variance_factor == pytest.approx(
        keep_ratio.variance_factor(fixed.probabilities, fixed.estimates)
    )
    # the last Sample in Stats, REST and /metrics
    stats = client.stats(two_levels).sketches[two_levels]
    assert stats.keep_ratio == 0.5 and stats.priority_cv == pytest.approx(math.sqrt(3.0))
    assert stats.variance_factor == pytest.approx(fixed.variance_factor)
    assert server.rest_url is not None
    with httpx.Client(base_url=server.rest_url, timeout=10) as http:
        rest = http.get(f"/v1/sketches/{two_levels}").json()["stats"]
        text = http.get("/metrics").text
        points = http.get(f"/v1/sketches/{two_levels}/timeseries").json()["points"]
    assert rest["keep_ratio"] == 0.5 and rest["priority_cv"] == pytest.approx(math.sqrt(3.0))
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for metric, value in [
        ("nws_sketch_keep_ratio", 0.5),
        ("nws_sketch_priority_cv", math.sqrt(3.0)),
        ("nws_sketch_variance_factor", fixed.variance_factor),
    ]:
        (sample,) = [s for s in families[metric].samples if s.labels["sketch"] == two_levels]
        assert sample.value == pytest.approx(value), metric
    assert all("keep_ratio" in p for p in points)


def test_positive_estimates_keep_everything_under_auto(client: SketchClient, name: str) -> None:
    """Estimates 4 and 1: once the 4s are capped the rest is flat, f(rho) > rho below 1."""
    client.create_sketch(name, CONFIG)
    client.update(name, candidates(32, 32, seed=10), np.r_[np.full(32, 4.0), np.ones(32)])
    result = client.sample(name, candidates(8, 24), "auto")
    assert result.ratio == 1.0 and result.accepted.all()
    assert result.cv == pytest.approx(math.sqrt(0.25 * 0.75 * 9 / 1.75**2))  # 0.33 > 0.05


def test_warmup_answers_ratio_one(client: SketchClient, name: str) -> None:
    client.create_sketch(name, CONFIG, warmup=10**6)
    client.update(name, candidates(4, 4), np.r_[np.full(4, 4.0), np.zeros(4)])
    result = client.sample(name, candidates(8, 24), "auto")
    assert result.warmup and result.ratio == 1.0 and result.accepted.all()
    assert result.variance_factor == 1.0 and result.cv == 0.0
    fixed = client.sample(name, candidates(8, 24), 0.4)
    assert fixed.warmup and fixed.ratio == 1.0
    stats = client.get(name).stats
    assert stats.keep_ratio == 1.0 and stats.priority_cv is None  # warm-up feeds no average


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"auto_ratio": True, "ratio_min": 0.0}, "ratio_min"),
        ({"auto_ratio": True, "ratio_min": 1.5}, "ratio_min"),
        ({"auto_ratio": True, "ratio_min": float("nan")}, "ratio_min"),
        ({"auto_ratio": True, "auto_threshold": -1.0}, "auto_threshold"),
        ({"auto_ratio": True, "auto_threshold": float("inf")}, "auto_threshold"),
        ({"ratio": 0.5, "ratio_min": 0.3}, "ratio_min"),
        ({"ratio": 0.5, "auto_threshold": 0.1}, "auto_threshold"),
        ({"auto_ratio": True, "p_min": 0.5}, "p_min"),
        ({"auto_ratio": True, "ratio": 2.0}, "ratio"),
    ],
)
def test_bad_auto_settings_are_invalid_argument_and_change_nothing(
    stub: sketch_pb2_grpc.SketchServiceStub,
    client: SketchClient,
    two_levels: str,
    fields: dict[str, object],
    named: str,
) -> None:
    x = candidates(8, 24)
    client.sample(two_levels, x, "auto")
    before, state = digest(client, two_levels), _stats(client, two_levels)
    request = pb.SampleRequest(name=two_levels, embeddings=packed(x), **fields)  # type: ignore[arg-type]
    with pytest.raises(grpc.RpcError) as err:
        stub.Sample(request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert named in (err.value.details() or "")
    assert digest(client, two_levels) == before and _stats(client, two_levels) == state


def test_client_rejects_other_ratio_words_and_bad_settings(
    client: SketchClient, two_levels: str
) -> None:
    x = candidates(2, 2)
    with pytest.raises(InvalidArgument, match="'auto'"):
        client.sample(two_levels, x, "fast")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="ratio_min"):
        client.sample(two_levels, x, "auto", ratio_min=0.0)


def test_uniform_fallback_keeps_everything_under_auto() -> None:
    with SketchServer(Settings(grpc_port=0, rest_port=0, device="cpu")) as gone:
        target = gone.target
    with SketchClient(target, timeout=0.5, on_unavailable="uniform") as client:
        result = client.sample("any", candidates(8, 24), "auto", seed=1)
        assert result.fallback and result.ratio == 1.0 and result.accepted.all()
        np.testing.assert_array_equal(result.weights, 1.0)
        assert result.variance_factor == 1.0 and result.cv is None
        fixed = client.sample("any", candidates(8, 24), 0.25, seed=1)
        assert fixed.fallback and fixed.ratio == 0.25
        with pytest.raises(InvalidArgument, match="auto_threshold"):
            client.sample("any", candidates(1, 1), "auto", auto_threshold=-1.0)
