"""The Sample RPC's policy levers (power, rank, baseline_quantile, temper) over real gRPC."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from integration_helpers import DIM, batch, digest, packed
from nws.v1 import sketch_pb2 as pb
from nws.v1 import sketch_pb2_grpc

from nws_client import InvalidArgument, SketchClient, SketchConfig
from nws_core import policy


@pytest.fixture
def trained(client: SketchClient, name: str) -> str:
    client.create_sketch(name, SketchConfig(dim=DIM, rows=64, bits=4))
    x, y = batch(0, 512)
    client.update(name, x, y)
    return name


def test_levers_reach_the_policy(client: SketchClient, trained: str) -> None:
    x, _ = batch(1, 256)
    est = client.score(trained, x).estimates
    for kwargs, rule in [
        ({}, policy.SamplingPolicy()),
        ({"power": 3.0}, policy.SamplingPolicy(power=3.0)),
        ({"rank": True}, policy.SamplingPolicy(rank=True)),
        (
            {"baseline_quantile": 0.5, "temper": 0.5},
            policy.SamplingPolicy(baseline_quantile=0.5, temper=0.5),
        ),
        ({"temper": 0.0}, policy.SamplingPolicy(temper=0.0)),
    ]:
        got = client.sample(trained, x, 0.3, p_min=0.02, seed=7, **kwargs)
        acc, w, p = rule.sample(est, 0.3, 0.02, np.random.default_rng(7))
        np.testing.assert_allclose(got.probabilities, p, rtol=1e-9)
        np.testing.assert_array_equal(got.accepted, acc)
        np.testing.assert_allclose(got.weights, w, rtol=1e-9)
    sharp = client.sample(trained, x, 0.3, power=3.0, seed=1).probabilities
    plain = client.sample(trained, x, 0.3, seed=1).probabilities
    assert sharp.std() > plain.std()  # sharpening spreads the keep probabilities


@pytest.mark.parametrize(
    "field", [("power", 0.0), ("power", float("inf")), ("baseline_quantile", 1.0), ("temper", 2.0)]
)
def test_bad_levers_are_invalid_argument_and_change_nothing(
    server: object, client: SketchClient, trained: str, field: tuple[str, float]
) -> None:
    before = digest(client, trained)
    x, _ = batch(2, 8)
    request = pb.SampleRequest(
        name=trained, embeddings=packed(x), ratio=0.5, **{field[0]: field[1]}
    )
    with grpc.insecure_channel(server.target) as channel:  # type: ignore[attr-defined]
        stub = sketch_pb2_grpc.SketchServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.Sample(request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field[0] in (err.value.details() or "")
    with pytest.raises(InvalidArgument):
        client.sample(trained, x, 0.5, **{field[0]: field[1]})
    assert digest(client, trained) == before
