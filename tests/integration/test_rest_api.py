"""The REST front door over real uvicorn on a loopback port: routes, errors, metrics, OpenAPI."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from integration_helpers import DIM, batch, digest
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

from nws_client import SketchClient, SketchConfig
from nws_server.metrics import Metrics
from nws_server.registry import SketchRegistry
from nws_server.rest import create_app
from nws_server.server import SketchServer


@pytest.fixture
def http(server: SketchServer) -> Iterator[httpx.Client]:
    assert server.rest_url is not None
    with httpx.Client(base_url=server.rest_url, timeout=10) as c:
        yield c


def test_list_and_get(http: httpx.Client, client: SketchClient, sketch: str) -> None:
    listed = http.get("/v1/sketches")
    assert listed.status_code == 200
    names = [s["name"] for s in listed.json()["sketches"]]
    assert sketch in names and names == sorted(names)
    client.sample(sketch, batch(1, 10)[0], 0.5, seed=0)
    one = http.get(f"/v1/sketches/{sketch}").json()
    assert one["config"] == {
        "dim": DIM,
        "rows": 64,
        "bits": 6,
        "seed": 0,
        "estimator": "mean",
        "groups": 5,
        "prior": None,
        "decay": 1.0,
        "pool": None,
        "buckets": None,
        "accumulator": "float64",
        "center": None,
    }
    stats = one["stats"]
    grpc_stats = client.get(sketch).stats
    assert stats["observations"] == grpc_stats.observations == 64
    assert stats["mean_value"] == pytest.approx(grpc_stats.mean_value)
    assert stats["sampled"] == 10 and stats["accepted"] == grpc_stats.accepted
    assert stats["acceptance_rate"] == pytest.approx(grpc_stats.accepted / 10)
    assert stats["bytes"] == grpc_stats.bytes > 0
    for key in ("prior_hit_rate", "updates_per_second", "observations_per_second", "in_warmup"):
        assert key in stats
    assert one["device"] == "cpu" and one["create_time"].endswith("Z")


def test_score_matches_grpc(http: httpx.Client, client: SketchClient, sketch: str) -> None:
    x, _ = batch(2, 5)
    response = http.post(f"/v1/sketches/{sketch}/score", json={"embeddings": x.tolist()})
    assert response.status_code == 200
    body = response.json()
    via_grpc = client.score(sketch, x)
    np.testing.assert_array_equal(body["estimates"], via_grpc.estimates)
    np.testing.assert_array_equal(body["prior_used"], via_grpc.prior_used)
    np.testing.assert_array_equal(body["support"], via_grpc.support)


def test_errors_map_to_http_statuses_and_change_nothing(
    http: httpx.Client, client: SketchClient, sketch: str
) -> None:
    before = digest(client, sketch)
    missing = http.get("/v1/sketches/nope")
    assert missing.status_code == 404
    assert missing.json() == {"code": "NOT_FOUND", "detail": "no sketch named 'nope'"}
    assert (
        http.post("/v1/sketches/nope/score", json={"embeddings": [[0.0] * DIM]}).status_code == 404
    )
    cases: list[tuple[object, int, str]] = [
        ({"embeddings": [[0.0] * 3]}, 400, f"[n, {DIM}]"),
        ({"embeddings": [[0.0] * DIM, [0.0] * 3]}, 400, "[n, dim]"),
        ('{"embeddings": [[NaN' + ", 0" * (DIM - 1) + "]]}", 400, "non-finite"),
        ({"embeddings": "not a list"}, 422, "list"),
        ({}, 422, "embeddings"),
    ]
    for body, status, message in cases:
        url = f"/v1/sketches/{sketch}/score"
        if isinstance(body, str):  # JSON with a NaN token, which httpx would refuse to write
            response = http.post(url, content=body, headers={"content-type": "application/json"})
        else:
            response = http.post(url, json=body)
        assert response.status_code == status, (body, response.text)
        assert message in response.text
    assert digest(client, sketch) == before


def test_limits_answer_413(limited_server: SketchServer, name: str) -> None:
    assert limited_server.rest_url is not None
    with (
        SketchClient(limited_server.target) as client,
        httpx.Client(base_url=limited_server.rest_url) as http,
    ):
        client.create_sketch(name, SketchConfig(dim=4))
        rows = http.post(f"/v1/sketches/{name}/score", json={"embeddings": [[0.0] * 4] * 65})
        assert rows.status_code == 413
        assert rows.json()["code"] == "RESOURCE_EXHAUSTED"
        big = http.post(f"/v1/sketches/{name}/score", json={"embeddings": [[0.0] * 4] * 20000})
        assert big.status_code == 413 and "over the limit" in big.json()["detail"]


def test_health_and_readiness(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").status_code == 200
    app = create_app(SketchRegistry(device="cpu"), Metrics(), is_ready=lambda: False)
    with TestClient(app) as test_client:
        response = test_client.get("/readyz")
    assert response.status_code == 503 and response.json() == {"status": "not ready"}


def test_metrics_parse(http: httpx.Client, client: SketchClient, sketch: str) -> None:
    client.score(sketch, batch(3, 4)[0])
    http.get(f"/v1/sketches/{sketch}")
    response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    for family in families:
        assert family.startswith("nws_"), family
    requests = families["nws_requests"]
    assert requests.type == "counter"
    samples = {
        (s.labels["transport"], s.labels["method"], s.labels["code"]): s.value
        for s in requests.samples
        if s.name == "nws_requests_total"
    }
    assert samples[("grpc", "Score", "OK")] >= 1
    assert samples[("rest", "GET /v1/sketches/{name}", "200")] >= 1
    latency = families["nws_request_duration_seconds"]
    assert latency.type == "histogram"
    assert any(
        s.name == "nws_request_duration_seconds_count" and s.labels["method"] == "Score"
        for s in latency.samples
    )
    observations = {
        s.labels["sketch"]: s.value
        for s in families["nws_sketch_observations"].samples
        if s.name == "nws_sketch_observations_total"
    }
    assert observations[sketch] == 64
    memory = {s.labels["sketch"]: s.value for s in families["nws_sketch_memory_bytes"].samples}
    assert memory[sketch] == client.get(sketch).stats.bytes
    assert families["nws_sketches"].samples[0].value >= 1


def test_openapi_document_validates(http: httpx.Client) -> None:
    spec = http.get("/openapi.json").json()
    validate(spec)
    assert {"/v1/sketches", "/v1/sketches/{name}", "/v1/sketches/{name}/score"} <= set(
        spec["paths"]
    )
    assert {"/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
    assert "post" not in spec["paths"]["/v1/sketches"]  # mutation stays on gRPC
    docs = http.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
