"""MergeSketch over real gRPC: sketches with the same hash functions add up.

The losses are dyadic (integers / 4), so every sum is exact in any order and "the same sketch"
can be checked with the content digest, not with a tolerance.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from integration_helpers import batch, digest

from nws_client import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    SketchClient,
    SketchConfig,
)
from nws_server.server import SketchServer
from nws_server.settings import Settings

CONFIG = SketchConfig(dim=16, rows=32, bits=5, seed=7)


@pytest.fixture
def two_servers() -> Iterator[tuple[SketchClient, SketchClient]]:
    a = SketchServer(Settings(grpc_port=0, rest_port=0, device="cpu"))
    b = SketchServer(Settings(grpc_port=0, rest_port=0, device="cpu"))
    with a, b, SketchClient(a.target, timeout=30) as ca, SketchClient(b.target, timeout=30) as cb:
        yield ca, cb


def test_merging_equals_one_sketch_that_saw_both_streams(client: SketchClient) -> None:
    for name in ("m-a", "m-b", "m-both"):
        client.create_sketch(name, CONFIG)
    first, second = batch(1, 40), batch(2, 25)
    client.update("m-a", *first)
    client.update("m-b", *second)
    client.update("m-both", *second)
    client.update("m-both", *first)
    source = digest(client, "m-a")

    info = client.merge("m-b", "m-a")

    assert info.stats.observations == 65 and info.stats.total_weight == 65.0
    assert digest(client, "m-b") == digest(client, "m-both")
    assert digest(client, "m-a") == source  # the source is unchanged
    probe = np.vstack([first[0][:5], second[0][:5]])
    np.testing.assert_array_equal(
        client.score("m-b", probe).estimates, client.score("m-both", probe).estimates
    )


def test_sketches_of_two_servers_merge_through_export_and_import(
    two_servers: tuple[SketchClient, SketchClient],
) -> None:
    on_a, on_b = two_servers
    for c in (on_a, on_b):
        c.create_sketch("job", CONFIG)
    on_a.update("job", *batch(3, 30))
    on_b.update("job", *batch(4, 20))
    on_b.import_sketch("job-from-a", on_a.export_sketch("job"))
    merged = on_b.merge("job", "job-from-a")
    assert merged.stats.observations == 50
    on_b.create_sketch("reference", CONFIG)
    on_b.update("reference", *batch(4, 20))
    on_b.update("reference", *batch(3, 30))
    assert digest(on_b, "job") == digest(on_b, "reference")


def test_a_refused_merge_names_the_problem_and_changes_nothing(client: SketchClient) -> None:
    client.create_sketch("r-a", CONFIG)
    client.create_sketch("r-other-seed", SketchConfig(dim=16, rows=32, bits=5, seed=8))
    client.update("r-a", *batch(5, 10))
    client.update("r-other-seed", *batch(6, 10))
    before = digest(client, "r-a")
    with pytest.raises(FailedPrecondition, match="merge only with equal dim, rows, bits, seed"):
        client.merge("r-a", "r-other-seed")
    with pytest.raises(InvalidArgument, match="cannot be merged into itself"):
        client.merge("r-a", "r-a")
    with pytest.raises(NotFound, match="no sketch named 'r-missing'"):
        client.merge("r-a", "r-missing")
    with pytest.raises(NotFound, match="no sketch named 'r-missing'"):
        client.merge("r-missing", "r-a")
    assert digest(client, "r-a") == before
    assert client.get("r-a").stats.observations == 10


def test_a_repeated_request_id_merges_once(client: SketchClient) -> None:
    client.create_sketch("i-a", CONFIG)
    client.create_sketch("i-b", CONFIG)
    client.update("i-a", *batch(7, 12))
    assert client.merge("i-b", "i-a", request_id="merge-1").stats.observations == 12
    assert client.merge("i-b", "i-a", request_id="merge-1").stats.observations == 12
    assert client.merge("i-b", "i-a").stats.observations == 24  # a new call
