"""benchmarks/load.py, shrunk: 2 client processes x 3 s, steady and across a kill -9 + restart."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _load_benchmark(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    # imported by name (not from a file spec): its spawned client processes import it again
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    return importlib.import_module("load")


def test_load_benchmark_smoke_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = _load_benchmark(monkeypatch)
    output = tmp_path / "load.md"
    args = bench.parse_args(["--clients", "2", "--seconds", "3", "--output", str(output)])
    steady, killed = bench.run(args)
    for scenario in (steady, killed):
        assert scenario.errors == []
        assert scenario.lost == 0 and scenario.ok
        assert scenario.acked_rows > 0
        assert scenario.observations == scenario.acked_rows  # exact: nothing lost or doubled
        assert all(scenario.requests[rpc] > 0 for rpc in bench.RPCS)
    assert steady.acked_at_kill is None and steady.update_retries == 0
    # the kill landed while clients were working, and the restart restored what was acked
    assert killed.acked_at_kill is not None and killed.restored is not None
    assert 0 < killed.acked_at_kill <= killed.restored <= killed.observations
    assert killed.server_down_seconds is not None and killed.server_down_seconds > 0
    # the clients saw the outage: as failed calls (a span of unavailability) or, when they sat
    # in a flush for the whole of it (a loaded machine), as reconnects of their update streams
    assert killed.unavailable_seconds is not None
    assert killed.unavailable_seconds > 0 or killed.stream_reconnects > 0
    text = output.read_text()
    assert text.startswith("# Load\n\nMachine: ") and "CPU cores" in text
    assert "| steady | Sample |" in text and "| kill -9 + restart | StreamUpdates |" in text
