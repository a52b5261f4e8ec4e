"""The monitoring routes and the /dashboard page, rendered by a real headless Chromium.

The page and its scripts come from the package (no CDN); after each refresh it writes what it
drew into #status's data-* attributes, which the tests read back from Chromium's dumped DOM and
compare with the server's own JSON. A screenshot is kept in tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import numpy as np
import pytest

from nws_client import SketchClient, SketchConfig
from nws_server.rest import STATIC_DIR
from nws_server.server import SketchServer
from nws_server.settings import Settings

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
TOKEN = "dashboard-test-token"
DIM = 16


def chromium() -> str:
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("chromium is not installed: run `make install` (apt-get install chromium)")
    return exe


def render(url: str, tmp_path: Path, *, screenshot: Path | None = None) -> str:
    """The DOM of ``url`` after 4 s of (virtual) time in headless Chromium; or a screenshot."""
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--virtual-time-budget=4000",
        "--window-size=1400,1000",
        f"--screenshot={screenshot}" if screenshot else "--dump-dom",
        url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


class _Elements(HTMLParser):
    """Every element's tag and attributes, and the text of each <td>."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.cells: list[str] = []
        self._in_td = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        self._in_td = tag == "td"
        if self._in_td:
            self.cells.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in_td = False if tag == "td" else self._in_td

    def handle_data(self, data: str) -> None:
        if self._in_td:
            self.cells[-1] += data


def parse(dom: str) -> _Elements:
    parsed = _Elements()
    parsed.feed(dom)
    return parsed


def status_of(parsed: _Elements) -> dict[str, str]:
    (attrs,) = [a for tag, a in parsed.elements if a.get("id") == "status"]
    return {k[5:]: v or "" for k, v in attrs.items() if k.startswith("data-")}


@pytest.fixture(scope="module")
def served() -> Iterator[SketchServer]:
    """A server with one busy sketch (a few update / sample rounds, sampled once per round)
    and one empty sketch."""
    with SketchServer(Settings(grpc_port=0, rest_port=0, device="cpu")) as server:
        rng = np.random.default_rng(0)
        with SketchClient(server.target) as client:
            client.create_sketch("busy-job", SketchConfig(dim=DIM, rows=32, bits=4), warmup=64)
            client.create_sketch("empty-job", SketchConfig(dim=8))
            server.monitor.tick(force=True)
            for _ in range(4):
                x = rng.standard_normal((256, DIM)).astype(np.float32)
                client.update("busy-job", x, rng.gamma(2.0, 0.4, 256))
                client.sample("busy-job", rng.standard_normal((128, DIM)).astype(np.float32), 0.4)
                time.sleep(0.25)  # spread the points a little (for the screenshot)
                server.monitor.tick(force=True)
        yield server


@pytest.fixture
def http(served: SketchServer) -> Iterator[httpx.Client]:
    assert served.rest_url is not None
    with httpx.Client(base_url=served.rest_url, timeout=10) as client:
        yield client


# ----------------------------------------------------------------------------- the JSON routes
def test_histograms_bin_the_recent_losses_and_estimates(served: SketchServer) -> None:
    assert served.rest_url is not None
    with (
        SketchClient(served.target) as client,
        httpx.Client(base_url=served.rest_url, timeout=10) as http,
    ):
        client.create_sketch("hist", SketchConfig(dim=4, rows=16, bits=3))
        rng = np.random.default_rng(1)
        losses = rng.uniform(0.0, 3.0, 50)
        client.update("hist", rng.standard_normal((50, 4)).astype(np.float32), losses)
        scored = client.score("hist", rng.standard_normal((30, 4)).astype(np.float32)).estimates
        body = http.get("/v1/sketches/hist/histograms", params={"bins": 6}).json()
        edges = np.asarray(body["edges"])
        assert edges.size == 7 and edges[0] == 0.0 and np.all(np.diff(edges) > 0)
        assert edges[-1] == pytest.approx(max(losses.max(), scored.max()))
        expected_observed, _ = np.histogram(losses, bins=edges)
        expected_estimated, _ = np.histogram(scored, bins=edges)
        assert body["observed"]["counts"] == expected_observed.tolist()
        assert body["estimated"]["counts"] == expected_estimated.tolist()
        assert body["observed"]["count"] == 50 and body["estimated"]["count"] == 30
        assert body["observed"]["mean"] == pytest.approx(losses.mean())
        # a fixed upper edge: values beyond it land in the last bin
        capped = http.get("/v1/sketches/hist/histograms", params={"bins": 2, "upper": 1.0})
        counts = capped.json()["observed"]["counts"]
        assert counts == [int((losses < 0.5).sum()), int((losses >= 0.5).sum())]
        assert http.get("/v1/sketches/nope/histograms").status_code == 404
        assert http.get("/v1/sketches/hist/histograms", params={"bins": 0}).status_code == 422
        client.delete("hist")


def test_timeseries_has_the_rates_of_each_interval(served: SketchServer) -> None:
    # The server's own sampler thread ticks every second as well, so an interval may end
    # anywhere between these calls; each call's counts still land in exactly one interval.
    assert served.rest_url is not None
    with (
        SketchClient(served.target) as client,
        httpx.Client(base_url=served.rest_url, timeout=10) as http,
    ):
        client.create_sketch("series", SketchConfig(dim=4, rows=16, bits=3))
        rng = np.random.default_rng(2)
        served.monitor.tick(force=True)
        client.update("series", rng.standard_normal((40, 4)).astype(np.float32), rng.random(40))
        client.update("series", rng.standard_normal((40, 4)).astype(np.float32), rng.random(40))
        s = client.sample("series", rng.standard_normal((100, 4)).astype(np.float32), 0.3)
        served.monitor.tick(force=True)
        client.score("series", 50 + rng.standard_normal((10, 4)).astype(np.float32))
        served.monitor.tick(force=True)
        body = http.get("/v1/sketches/series/timeseries").json()
        assert body["name"] == "series" and body["interval_seconds"] == 1.0
        points = body["points"]
        assert len(points) >= 2
        assert [p["time"] for p in points] == sorted(p["time"] for p in points)
        sampled = [p["acceptance_rate"] for p in points if p["acceptance_rate"] is not None]
        assert sampled == [pytest.approx(s.accepted.sum() / 100)]
        assert points[-1]["observations"] == 80
        assert any(p["updates_per_second"] > 0 for p in points)
        assert points[-1]["updates_per_second"] == 0.0  # no update since the previous tick
        hits = [p["prior_hit_rate"] for p in points if p["prior_hit_rate"] is not None]
        assert hits and all(0.0 <= h <= 1.0 for h in hits)
        assert (client.get("series").stats.prior_hits > 0) == any(h > 0 for h in hits)
        assert http.get("/v1/sketches/nope/timeseries").status_code == 404
        client.delete("series")


def test_root_redirects_and_the_pages_load_nothing_from_elsewhere(http: httpx.Client) -> None:
    root = http.get("/", follow_redirects=False)
    assert root.status_code == 307 and root.headers["location"] == "/dashboard"
    page = http.get("/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    docs = http.get("/docs").text
    for html in (page.text, docs):
        sources = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert sources and all(s.startswith(("/", "data:")) for s in sources), sources
        for source in sources:
            if source.startswith("/static/"):
                assert http.get(source).status_code == 200, source
    assert (STATIC_DIR / "vendor/chart.js-4.6.1/LICENSE.md").exists()
    assert (STATIC_DIR / "vendor/swagger-ui-dist-5.35.0/LICENSE").exists()
    assert http.get("/static/../rest.py").status_code == 404


# ----------------------------------------------------------------------------- in Chromium
def test_dashboard_renders_the_servers_data_in_chromium(
    served: SketchServer, http: httpx.Client, tmp_path: Path
) -> None:
    url = f"{served.rest_url}/dashboard?sketch=busy-job"
    parsed = parse(render(url, tmp_path))
    status = status_of(parsed)
    api = http.get("/v1/sketches/busy-job/histograms").json()
    series = http.get("/v1/sketches/busy-job/timeseries").json()
    stats = http.get("/v1/sketches/busy-job").json()["stats"]
    assert status["state"] == "ok" and int(status["refreshes"]) >= 2
    assert status["sketches"] == "2" and status["selected"] == "busy-job"
    assert int(status["observations"]) == stats["observations"] == 1024
    assert int(status["observed"]) == api["observed"]["count"] == 1024
    assert int(status["estimated"]) == api["estimated"]["count"] == 512
    assert int(status["bins"]) == len(api["edges"]) - 1 == 20
    assert int(status["points"]) >= 4 and len(series["points"]) >= 4
    # what Chart.js drew: bars with a height, and points on both line charts
    nonempty = sum(c > 0 for c in api["observed"]["counts"] + api["estimated"]["counts"])
    assert int(status["histogram-bars"]) == nonempty > 0
    assert int(status["rate-points"]) >= 4 and int(status["throughput-points"]) >= 8
    canvases = [a["id"] for tag, a in parsed.elements if tag == "canvas"]
    assert canvases == ["histogram-chart", "rates-chart", "throughput-chart", "keep-ratio-chart"]
    # keep ratio, variance factor and CV of every point after the first Sample
    assert int(status["keep-ratio-points"]) >= 12
    assert float(status["keep-ratio"]) == stats["keep_ratio"] == 0.4
    rows = [
        a.get("data-sketch") for tag, a in parsed.elements if tag == "tr" and "data-sketch" in a
    ]
    assert rows == ["busy-job", "empty-job"]
    assert parsed.cells[:5] == ["busy-job", f"{DIM} / 32 / 4", "cpu", "1,024", "4"]

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    shot.unlink(missing_ok=True)
    render(url, tmp_path, screenshot=shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_swagger_ui_renders_offline_in_chromium(served: SketchServer, tmp_path: Path) -> None:
    dom = render(f"{served.rest_url}/docs", tmp_path)
    assert 'class="swagger-ui' in dom
    for path in ("/v1/sketches/{name}/histograms", "/v1/sketches/{name}/timeseries", "/dashboard"):
        assert f'data-path="{path}"' in dom, path


def test_dashboard_with_a_token_protected_server(tmp_path: Path) -> None:
    settings = Settings(grpc_port=0, rest_port=0, device="cpu", auth_token=TOKEN)
    with SketchServer(settings) as server:
        with SketchClient(server.target, auth_token=TOKEN) as client:
            client.create_sketch("secret-job", SketchConfig(dim=4))
        with httpx.Client(base_url=str(server.rest_url), timeout=10) as http:
            for open_path in ("/dashboard", "/static/dashboard.js"):
                assert http.get(open_path).status_code == 200, open_path
            for closed in (
                "/v1/sketches/secret-job/histograms",
                "/v1/sketches/secret-job/timeseries",
            ):
                assert http.get(closed).status_code == 401, closed
        without = status_of(parse(render(f"{server.rest_url}/dashboard", tmp_path)))
        assert without["state"] == "error"
        token_url = f"{server.rest_url}/dashboard#token={TOKEN}"
        with_token = status_of(parse(render(token_url, tmp_path)))
        assert with_token["state"] == "ok" and with_token["selected"] == "secret-job"
