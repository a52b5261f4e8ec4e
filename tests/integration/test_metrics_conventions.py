"""/metrics follows the Prometheus naming conventions, and docs/server.md lists exactly what it
exposes. https://prometheus.io/docs/practices/naming/ : an application prefix (``nws_``),
snake_case, base units as suffixes (``_seconds``, ``_bytes``, ``_ratio`` for 0..1), ``_total``
on counters and only there, no reserved suffixes on gauges, HELP on every family."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from nws_client import SketchClient, SketchConfig
from nws_server.server import SketchServer
from nws_server.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs/server.md"
NAME = re.compile(r"nws_[a-z0-9]+(?:_[a-z0-9]+)*")
LABEL = re.compile(r"[a-z][a-z0-9_]*")
# Words that imply a unit, and the base-unit suffix a name that uses them must end with.
UNIT_WORDS = {
    ("duration", "latency", "time", "age", "elapsed", "uptime"): "_seconds",
    ("memory", "size", "bytes"): "_bytes",
}
NON_BASE_UNITS = (
    "_milliseconds", "_ms", "_microseconds", "_us", "_nanoseconds", "_minutes", "_hours",
    "_kilobytes", "_kb", "_megabytes", "_mb", "_kib", "_mib", "_percent", "_pct",
)  # fmt: skip


@pytest.fixture(scope="module")
def families() -> Iterator[dict[str, Metric]]:
    """Every family of a scrape after traffic on both front doors, micro-batching included."""
    settings = Settings(grpc_port=0, rest_port=0, device="cpu", micro_batching=True)
    with SketchServer(settings) as server:
        rng = np.random.default_rng(0)
        with SketchClient(server.target) as client:
            client.create_sketch("conventions", SketchConfig(dim=8, rows=16, bits=4))
            x = rng.standard_normal((32, 8)).astype(np.float32)
            client.update("conventions", x, rng.random(32))
            client.update_async("conventions", x, rng.random(32))
            client.flush()
            client.sample("conventions", x, 0.5)
            with pytest.raises(Exception, match="no sketch"):
                client.score("missing", x)
        assert server.rest_url is not None
        with httpx.Client(base_url=server.rest_url, timeout=10) as http:
            http.post("/v1/sketches/conventions/score", json={"embeddings": x[:2].tolist()})
            http.get("/v1/sketches/conventions/histograms")
            text = http.get("/metrics").text
    yield {f.name: f for f in text_string_to_metric_families(text)}


def _exposed_names(families: dict[str, Metric]) -> set[str]:
    """The names a user queries: counters with their _total, everything else as is."""
    return {f"{n}_total" if f.type == "counter" else n for n, f in families.items()}


def test_every_family_follows_the_naming_conventions(families: dict[str, Metric]) -> None:
    assert len(families) >= 15
    for name, family in families.items():
        exposed = f"{name}_total" if family.type == "counter" else name
        assert NAME.fullmatch(exposed), f"{exposed}: nws_ prefix, snake_case, no colons"
        assert family.documentation.strip(), f"{exposed}: no HELP text"
        assert family.type in ("counter", "gauge", "histogram"), (exposed, family.type)
        assert not exposed.endswith(NON_BASE_UNITS), f"{exposed}: use base units"
        if family.type == "counter":
            assert not name.endswith("_total"), f"{exposed}: _total twice"
            assert {s.name for s in family.samples} == {exposed}, family.samples
        else:
            reserved = ("_total", "_count", "_sum", "_bucket", "_created", "_info")
            assert not name.endswith(reserved), f"{name}: a {family.type} with a reserved suffix"
        for words, suffix in UNIT_WORDS.items():
            if any(re.search(rf"(^|_){w}(_|$)", name) for w in words):
                assert exposed.endswith(suffix), f"{exposed} must end with {suffix}"
        if name.endswith("_ratio"):
            assert all(0.0 <= s.value <= 1.0 for s in family.samples), exposed
        for sample in family.samples:
            for label in sample.labels:
                assert LABEL.fullmatch(label) and not label.startswith("__"), (exposed, label)
            assert np.isfinite(sample.value) or sample.labels.get("le") == "+Inf", sample


def test_histograms_have_buckets_sum_and_count(families: dict[str, Metric]) -> None:
    histograms = {n: f for n, f in families.items() if f.type == "histogram"}
    assert {
        "nws_request_duration_seconds",
        "nws_microbatch_rows",
        "nws_microbatch_requests",
    } <= set(histograms)
    for name, family in histograms.items():
        suffixes = {s.name[len(name) :] for s in family.samples}
        assert suffixes == {"_bucket", "_sum", "_count"}, (name, suffixes)
        assert any(s.labels.get("le") == "+Inf" for s in family.samples)


def test_no_created_timestamps_as_unitless_gauges(families: dict[str, Metric]) -> None:
    assert not [n for n in families if n.endswith("_created")]


def test_the_docs_list_exactly_the_exposed_metrics(families: dict[str, Metric]) -> None:
    text = DOCS.read_text()
    start = text.index("Metrics (all `nws_`-prefixed)")
    paragraph = text[start : text.index("\n\n", start)]
    documented = set(re.findall(r"`(nws_[a-z0-9_]+)", paragraph))
    assert documented == _exposed_names(families)
