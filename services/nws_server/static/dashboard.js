// The NWS dashboard: polls the server's JSON routes and draws them with the vendored Chart.js.
//
//   GET /v1/sketches                      the table
//   GET /v1/sketches/{name}/histograms    observed vs estimated loss distributions
//   GET /v1/sketches/{name}/timeseries    acceptance rate, prior-hit rate, updates/s, keep ratio
//
// Query parameters: ?sketch=NAME charts that sketch first, ?interval=MS sets the polling period
// (default 1000). With a token-protected server open /dashboard#token=TOKEN (the fragment never
// leaves the browser; the token is kept in sessionStorage) or type it into the form.
// After every refresh #status carries data-* attributes with what was drawn (used by the tests).
"use strict";

(function () {
  const params = new URLSearchParams(window.location.search);
  const intervalMs = Math.max(200, Number(params.get("interval")) || 1000);
  let selected = params.get("sketch");
  const TOKEN_KEY = "nws-dashboard-token";

  const fragment = new URLSearchParams(window.location.hash.slice(1));
  if (fragment.get("token")) {
    sessionStorage.setItem(TOKEN_KEY, fragment.get("token"));
    history.replaceState(null, "", window.location.pathname + window.location.search);
  }

  const statusEl = document.getElementById("status");
  const tokenForm = document.getElementById("token-form");
  tokenForm.addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
    tokenForm.hidden = true;
    refresh();
  });

  class Unauthorized extends Error {}

  async function getJSON(path) {
    const headers = { Accept: "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = "Bearer " + token;
    const response = await fetch(path, { headers, cache: "no-store" });
    if (response.status === 401) throw new Unauthorized("the server wants a bearer token");
    if (!response.ok) throw new Error(path + ": HTTP " + response.status);
    return response.json();
  }

  // ------------------------------------------------------------------ formatting
  const fmt = (x, digits = 3) =>
    x === null || x === undefined ? "-" : Number(x).toLocaleString("en", { maximumFractionDigits: digits });
  const pct = (x) => (x === null || x === undefined ? "-" : (100 * x).toFixed(1) + " %");
  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return n.toFixed(i ? 1 : 0) + " " + units[i];
  }

  // ------------------------------------------------------------------ charts
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.font.size = 11;
  const BLUE = "rgb(9, 105, 218)";
  const ORANGE = "rgb(219, 109, 40)";
  const GREEN = "rgb(26, 127, 55)";
  const PURPLE = "rgb(130, 80, 223)";
  const secondsAgo = {
    type: "linear",
    max: 0,
    title: { display: true, text: "seconds ago" },
    ticks: { callback: (v) => Math.round(v) },
  };

  const histogramChart = new Chart(document.getElementById("histogram-chart"), {
    type: "bar",
    data: {
      labels: [],
      datasets: [
        { label: "observed", data: [], backgroundColor: "rgba(9, 105, 218, 0.6)", borderColor: BLUE, borderWidth: 1 },
        { label: "estimated", data: [], backgroundColor: "rgba(219, 109, 40, 0.55)", borderColor: ORANGE, borderWidth: 1 },
      ],
    },
    options: {
      datasets: { bar: { barPercentage: 1.0, categoryPercentage: 0.9 } },
      scales: {
        x: { title: { display: true, text: "loss (bin centre)" } },
        y: { title: { display: true, text: "fraction of recent values" }, beginAtZero: true },
      },
      plugins: { tooltip: { mode: "index", intersect: false } },
    },
  });

  const ratesChart = new Chart(document.getElementById("rates-chart"), {
    type: "line",
    data: {
      datasets: [
        { label: "acceptance rate", data: [], borderColor: GREEN, backgroundColor: GREEN, pointRadius: 1.5, spanGaps: true },
        { label: "prior-hit rate", data: [], borderColor: PURPLE, backgroundColor: PURPLE, pointRadius: 1.5, spanGaps: true },
      ],
    },
    options: { scales: { x: secondsAgo, y: { min: 0, max: 1 } } },
  });

  const throughputChart = new Chart(document.getElementById("throughput-chart"), {
    type: "line",
    data: {
      datasets: [
        { label: "updates/s", data: [], borderColor: BLUE, backgroundColor: BLUE, pointRadius: 1.5, yAxisID: "y" },
        { label: "observations/s", data: [], borderColor: ORANGE, backgroundColor: ORANGE, pointRadius: 1.5, yAxisID: "y1" },
      ],
    },
    options: {
      scales: {
        x: secondsAgo,
        y: { beginAtZero: true, position: "left", title: { display: true, text: "updates/s" } },
        y1: { beginAtZero: true, position: "right", grid: { drawOnChartArea: false }, title: { display: true, text: "observations/s" } },
      },
    },
  });

  const RED = "rgb(207, 34, 46)";
  const keepRatioChart = new Chart(document.getElementById("keep-ratio-chart"), {
    type: "line",
    data: {
      datasets: [
        { label: "keep ratio", data: [], borderColor: GREEN, backgroundColor: GREEN, pointRadius: 1.5, spanGaps: true, yAxisID: "y" },
        { label: "variance factor", data: [], borderColor: RED, backgroundColor: RED, pointRadius: 1.5, spanGaps: true, yAxisID: "y" },
        { label: "priority CV", data: [], borderColor: PURPLE, backgroundColor: PURPLE, pointRadius: 1.5, spanGaps: true, yAxisID: "y1" },
      ],
    },
    options: {
      scales: {
        x: secondsAgo,
        y: { min: 0, suggestedMax: 1, position: "left", title: { display: true, text: "ratio, factor" } },
        y1: { beginAtZero: true, position: "right", grid: { drawOnChartArea: false }, title: { display: true, text: "CV" } },
      },
    },
  });

  // How many of a chart's elements were drawn with a non-zero size (bars with height, points).
  function drawn(chart) {
    let n = 0;
    chart.data.datasets.forEach((_, i) => {
      for (const el of chart.getDatasetMeta(i).data) {
        if (chart.config.type === "bar" ? Math.abs(el.base - el.y) > 1e-6 : !el.skip) n += 1;
      }
    });
    return n;
  }

  // ------------------------------------------------------------------ table
  function renderTable(sketches) {
    const tbody = document.querySelector("#sketches tbody");
    tbody.replaceChildren();
    for (const s of sketches) {
      const st = s.stats;
      const c = s.config;
      const tr = document.createElement("tr");
      tr.dataset.sketch = s.name;
      if (s.name === selected) tr.className = "selected";
      const cells = [
        s.name, `${c.dim} / ${c.rows} / ${c.bits}`, s.device, fmt(st.observations), fmt(st.updates),
        st.in_warmup ? "warming up" : "done", fmt(st.mean_value, 4), pct(st.acceptance_rate),
        pct(st.prior_hit_rate), pct(st.keep_ratio), fmt(st.updates_per_second, 2), fmt(st.observations_per_second, 1),
        pct(st.occupancy), bytes(st.bytes),
      ];
      for (const text of cells) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      }
      tr.addEventListener("click", () => { selected = s.name; refresh(); });
      tbody.appendChild(tr);
    }
  }

  // ------------------------------------------------------------------ one refresh
  function renderHistograms(h) {
    const centres = h.edges.slice(0, -1).map((e, i) => (e + h.edges[i + 1]) / 2);
    histogramChart.data.labels = centres.map((x) => fmt(x, 3));
    const share = (hist) => hist.counts.map((k) => (hist.count ? k / hist.count : 0));
    histogramChart.data.datasets[0].data = share(h.observed);
    histogramChart.data.datasets[1].data = share(h.estimated);
    histogramChart.data.datasets[0].label = `observed (${h.observed.count}, mean ${fmt(h.observed.mean, 3)})`;
    histogramChart.data.datasets[1].label = `estimated (${h.estimated.count}, mean ${fmt(h.estimated.mean, 3)})`;
    histogramChart.update();
  }

  function renderSeries(series) {
    const now = Date.now() / 1000;
    const at = (p, key) => ({ x: p.time - now, y: p[key] });
    ratesChart.data.datasets[0].data = series.points.map((p) => at(p, "acceptance_rate"));
    ratesChart.data.datasets[1].data = series.points.map((p) => at(p, "prior_hit_rate"));
    throughputChart.data.datasets[0].data = series.points.map((p) => at(p, "updates_per_second"));
    throughputChart.data.datasets[1].data = series.points.map((p) => at(p, "observations_per_second"));
    keepRatioChart.data.datasets[0].data = series.points.map((p) => at(p, "keep_ratio"));
    keepRatioChart.data.datasets[1].data = series.points.map((p) => at(p, "variance_factor"));
    keepRatioChart.data.datasets[2].data = series.points.map((p) => at(p, "priority_cv"));
    ratesChart.update();
    throughputChart.update();
    keepRatioChart.update();
  }

  async function refresh() {
    try {
      const list = await getJSON("/v1/sketches");
      const names = list.sketches.map((s) => s.name);
      if (!names.includes(selected)) selected = names.length ? names[0] : null;
      renderTable(list.sketches);
      document.getElementById("selected").textContent = selected || "- (no sketches yet)";
      const status = { state: "ok", sketches: names.length, selected: selected || "" };
      if (selected) {
        const path = "/v1/sketches/" + encodeURIComponent(selected);
        const [h, series] = await Promise.all([getJSON(path + "/histograms"), getJSON(path + "/timeseries")]);
        renderHistograms(h);
        renderSeries(series);
        const row = list.sketches.find((s) => s.name === selected);
        Object.assign(status, {
          observations: row.stats.observations,
          observed: h.observed.count,
          estimated: h.estimated.count,
          bins: h.edges.length - 1,
          points: series.points.length,
          histogramBars: drawn(histogramChart),
          ratePoints: drawn(ratesChart),
          throughputPoints: drawn(throughputChart),
          keepRatioPoints: drawn(keepRatioChart),
          keepRatio: row.stats.keep_ratio ?? "",
        });
        statusEl.textContent =
          `${names.length} sketch(es) · ${selected}: ${row.stats.observations} observations, ` +
          `${h.observed.count} recent losses, ${h.estimated.count} recent estimates, ` +
          `${series.points.length} points · updated ${new Date().toLocaleTimeString()}`;
      } else {
        statusEl.textContent = "no sketches yet · updated " + new Date().toLocaleTimeString();
      }
      statusEl.dataset.refreshes = String(Number(statusEl.dataset.refreshes || 0) + 1);
      for (const [key, value] of Object.entries(status)) statusEl.dataset[key] = String(value);
    } catch (err) {
      statusEl.dataset.state = "error";
      statusEl.textContent = "error: " + err.message;
      if (err instanceof Unauthorized) tokenForm.hidden = false;
    }
  }

  refresh();
  setInterval(refresh, intervalMs);
})();
