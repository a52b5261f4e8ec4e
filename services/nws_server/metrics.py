"""Prometheus metrics of one server: requests per RPC / route, latencies, and sketch gauges.

Names follow Prometheus conventions: ``nws_`` prefix, base units as suffixes (``_seconds``,
``_bytes``, ``_ratio`` for 0..1 fractions), ``_total`` on counters and only on counters
(checked by tests/integration/test_metrics_conventions.py). The client library's ``*_created``
series are turned off: in the text format they appear as extra gauges (``nws_requests_created``)
that hold a Unix time without a unit suffix and double the size of a scrape.

Each server owns its own :class:`~prometheus_client.CollectorRegistry` (several servers can live
in one process, as in the tests); sketch metrics are read from the registry at scrape time, so
they are never stale and cost nothing between scrapes.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from nws_server.registry import SketchRegistry

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

disable_created_metrics()  # process-wide switch of prometheus_client; see the module docstring

# Loopback round trips take a fraction of a millisecond; big batches on a CPU take seconds.
_LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
)  # fmt: skip
_BATCH_BUCKETS = (1, 8, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 65536)


class Metrics:
    """Request metrics recorded by the front doors, plus sketch metrics read from the core."""

    def __init__(self, registry: SketchRegistry | None = None) -> None:
        self.collector_registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "nws_requests",
            "Requests handled, by transport, method (gRPC method or REST route) and status code; "
            "each message of a StreamUpdates stream counts as one request.",
            ["transport", "method", "code"],
            registry=self.collector_registry,
        )
        self.latency = Histogram(
            "nws_request_duration_seconds",
            "Time to handle one request (one message for streams), by transport and method.",
            ["transport", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=self.collector_registry,
        )
        self.rows = Counter(
            "nws_request_rows",
            "Embedding rows carried by successful requests, by method.",
            ["method"],
            registry=self.collector_registry,
        )
        self.coalesced_rows = Histogram(
            "nws_microbatch_rows",
            "Rows per engine call when micro-batching coalesces concurrent Score / Sample calls.",
            buckets=_BATCH_BUCKETS,
            registry=self.collector_registry,
        )
        self.coalesced_requests = Histogram(
            "nws_microbatch_requests",
            "Requests per engine call when micro-batching coalesces concurrent calls.",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32, 64),
            registry=self.collector_registry,
        )
        if registry is not None:
            self.watch(registry)

    def watch(self, registry: SketchRegistry) -> None:
        """Export the sketches of ``registry`` (read at every scrape)."""
        self.collector_registry.register(_SketchCollector(registry))

    def observe(
        self, transport: str, method: str, code: str, seconds: float, rows: int = 0
    ) -> None:
        """Record one handled request."""
        self.requests.labels(transport, method, code).inc()
        self.latency.labels(transport, method).observe(seconds)
        if rows and code == "OK":
            self.rows.labels(method).inc(rows)

    def observe_batch(self, requests: int, rows: int) -> None:
        """Record one coalesced engine call (the registry's ``on_batch`` hook)."""
        self.coalesced_requests.observe(requests)
        self.coalesced_rows.observe(rows)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.collector_registry)


class _SketchCollector(Collector):
    """Sketch metrics, one sample per sketch, read from the registry at scrape time."""

    def __init__(self, registry: SketchRegistry) -> None:
        self._registry = registry

    def describe(self) -> Iterator[Metric]:
        return iter(())  # sketches come and go; nothing to describe up front

    def collect(self) -> Iterator[Metric]:
        infos = self._registry.list()
        sketches = GaugeMetricFamily("nws_sketches", "Sketches held by this server.")
        sketches.add_metric([], len(infos))
        yield sketches
        counters = {
            "observations": "Examples ever added to the sketch.",
            "updates": "Update calls applied to the sketch.",
            "estimates": "Rows ever scored.",
            "prior_hits": "Scored rows that got the prior (no data near them).",
            "sampled": "Rows offered to Sample.",
            "accepted": "Rows Sample kept.",
        }
        gauges = {
            "total_weight": ("nws_sketch_weight", "Decayed count of examples the arrays hold."),
            "mean_value": ("nws_sketch_mean_value", "Decayed mean of the observed losses."),
            "occupancy": ("nws_sketch_occupancy_ratio", "Fraction of non-empty cells."),
            "bytes": ("nws_sketch_memory_bytes", "Memory of the arrays and hash parameters."),
            "acceptance_rate": ("nws_sketch_acceptance_ratio", "Kept / offered rows of Sample."),
            "prior_hit_rate": ("nws_sketch_prior_hit_ratio", "Prior hits / scored rows."),
            "keep_ratio": (
                "nws_sketch_keep_ratio",
                "Keep ratio of the last Sample (auto's choice, the requested one, 1 in warm-up).",
            ),
            "priority_cv": (
                "nws_sketch_priority_cv",
                "Smoothed coefficient of variation of the estimates of recent Samples.",
            ),
            "variance_factor": (
                "nws_sketch_variance_factor",
                "Predicted variance factor of the last Sample, relative to uniform sampling.",
            ),
        }
        counter_families = {
            key: CounterMetricFamily(f"nws_sketch_{key}", doc, labels=["sketch"])
            for key, doc in counters.items()
        }
        gauge_families = {
            key: GaugeMetricFamily(name, doc, labels=["sketch"])
            for key, (name, doc) in gauges.items()
        }
        in_warmup = GaugeMetricFamily(
            "nws_sketch_in_warmup", "1 while the sketch is in its warm-up.", labels=["sketch"]
        )
        for info in infos:
            status = info.stats
            for key, counter in counter_families.items():
                counter.add_metric([info.name], getattr(status, key))
            for key, gauge in gauge_families.items():
                value = getattr(status, key)
                if value is not None:
                    gauge.add_metric([info.name], value)
            in_warmup.add_metric([info.name], float(status.in_warmup))
        yield from counter_families.values()
        yield from gauge_families.values()
        yield in_warmup
