"""`make demo` and the time-to-accuracy harness, shrunk to the tiny BERT and a small slice."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from nws_trainer import demo

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _benchmark() -> ModuleType:
    path = ROOT / "benchmarks" / "time_to_accuracy.py"
    spec = importlib.util.spec_from_file_location("time_to_accuracy", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_compares_full_and_nws(
    tiny_bert_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--model", str(tiny_bert_dir), "--train-size", "192", "--test-size", "64"]
    argv += ["--eval-every", "4", "--warmup-steps", "2", "--output", str(tmp_path)]
    assert demo.main([*argv, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "| full |" in out and "| nws |" in out and "| full, same compute |" in out
    assert "What one seed can and cannot show" in out and "What to look at" in out
    assert (tmp_path / "comparison.png").stat().st_size > 10_000
    table = (tmp_path / "comparison.md").read_text()
    assert table.startswith("| run |") and "compute-normalised s" in table
    nws = json.loads((tmp_path / "nws" / "summary.json").read_text())
    full = json.loads((tmp_path / "full" / "summary.json").read_text())
    same = json.loads((tmp_path / "full-same-compute" / "summary.json").read_text())
    assert nws["sketch_endpoint"].startswith("embedded server 127.0.0.1:")
    assert nws["config"]["time_budget"] is None  # no wall-clock budget: one pass each
    assert nws["candidates_seen"] == full["candidates_seen"] == 192  # the same data
    assert nws["embedding"]["compute_seconds"] > 0  # charged to nws
    # The budget-aware baseline: full stopped at nws's compute, its schedule planned to end there.
    # (the tiny model's steps are so cheap that sampling overhead can outweigh them: then the
    # baseline is capped at full's own steps)
    assert same["config"]["max_steps"] == same["steps"] <= full["steps"]
    assert same["config"]["lr_schedule"] == "linear" and same["config"]["strategy"] == "full"


def test_time_to_accuracy_harness_quick(tiny_bert_dir: Path, tmp_path: Path) -> None:
    bench = _benchmark()
    argv = ["--quick", "--model", str(tiny_bert_dir), "--strategies", "full,nws,uniform:shrink"]
    argv += ["--results", str(tmp_path / "results")]
    argv += ["--runs-dir", str(tmp_path / "runs"), "--no-progress"]
    assert bench.main(argv) == 0
    text = (tmp_path / "results" / "time_to_accuracy.md").read_text()
    assert "| full |" in text and "| nws |" in text and "| uniform (shrink) |" in text
    assert "machine:" in text and "Sampling diagnostics" in text
    assert (tmp_path / "results" / "time_to_accuracy.png").stat().st_size > 10_000
    facts = json.loads((tmp_path / "results" / "time_to_accuracy.json").read_text())
    assert set(facts["facts"]) == {"full", "nws", "uniform (shrink)"}
    # --resume reuses finished runs instead of training again.
    assert bench.main([*argv, "--resume"]) == 0
    with pytest.raises(SystemExit):
        bench.build_parser().parse_args(["--strategies", "nws"])  # full sets the target


def test_time_to_accuracy_variants_and_scenario_settings(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    bench = _benchmark()
    argv = ["--quick", "--model", str(tiny_bert_dir), "--name", "ablation", "--title", "Ablation"]
    argv += ["--set", "duplicates=0.5", "--set", "max_steps=6", "--variant", "full=full"]
    argv += ["--variant", "nws-sharp=nws sketch_bits=12 score_power=2 embedding_source=tokens"]
    argv += ["--variant", "table=loss-table:shrink"]
    argv += ["--results", str(tmp_path / "results"), "--runs-dir", str(tmp_path / "runs")]
    assert bench.main([*argv, "--no-progress"]) == 0
    text = (tmp_path / "results" / "ablation.md").read_text()
    assert text.startswith("# Ablation") and "| nws-sharp |" in text and "| table |" in text
    assert "- `nws-sharp`: `nws` (fill): sketch_bits=12, score_power=2.0" in text
    summary = json.loads((tmp_path / "runs" / "nws-sharp-fill-seed0" / "summary.json").read_text())
    assert summary["config"]["sketch_bits"] == 12 and summary["config"]["duplicates"] == 0.5
    assert summary["train_examples"] == 900  # 600 + 50 % near-duplicates
    with pytest.raises(SystemExit):
        bench.build_parser().parse_args(["--variant", "x=nws no_such_field=1"])
    with pytest.raises(SystemExit, match="full"):
        bench.main(["--variant", "a=nws", "--quick", "--model", str(tiny_bert_dir)])


def test_speedup_is_full_total_time_over_time_to_target() -> None:
    """Speed-up divides full's whole run (it reaches its own final accuracy at its end) by a
    strategy's mean time to that accuracy; a strategy with a seed that never got there has none."""
    bench = _benchmark()

    def rows(accs: list[float], dt: float) -> list[dict[str, float]]:
        return [{"test_accuracy": a, "wall_seconds": i * dt} for i, a in enumerate(accs)]

    full = [rows([0.5, 0.7, 0.8, 0.8], 10.0), rows([0.5, 0.6, 0.7, 0.9], 10.0)]
    raw, smoothed = bench.targets(
        {"full": [({"final": {"test_accuracy": r[-1]["test_accuracy"]}}, r) for r in full]},
        smooth=2,
    )
    assert raw == pytest.approx(0.85) and smoothed == pytest.approx((0.8 + 0.8) / 2)
    facts = {
        "full": {"wall_seconds": [30.0, 30.0], "t": [30.0, None]},
        "fast": {"wall_seconds": [20.0, 20.0], "t": [10.0, 20.0]},
        "partial": {"wall_seconds": [20.0, 20.0], "t": [10.0, None]},
    }
    assert bench.speedup(facts, "t") == {"full": 1.0, "fast": 2.0, "partial": None}


def test_equal_time_comparison_interpolates_full_at_the_strategy_total_time() -> None:
    """'full then' reads the same seed's full curve at the strategy's total wall-clock,
    linearly between evaluations and flat after full's end; the gain is in accuracy units."""
    bench = _benchmark()

    def run(accs: list[float], dt: float) -> tuple[dict, list[dict[str, float]]]:
        rows = [{"test_accuracy": a, "wall_seconds": i * dt, "step": i} for i, a in enumerate(accs)]
        summary = {
            "final": {"test_accuracy": accs[-1]},
            "best_test_accuracy": max(accs),
            "steps": len(accs) - 1,
            "train_seconds": rows[-1]["wall_seconds"],
            "wall_seconds": rows[-1]["wall_seconds"],
            "examples_forwarded": 0,
            "examples_backpropagated": 0,
        }
        return summary, rows

    assert bench.accuracy_at(run([0.5, 0.7, 0.9], 10.0)[1], 15.0) == pytest.approx(0.8)
    runs = {
        "full": [run([0.5, 0.7, 0.9], 10.0), run([0.5, 0.6, 0.8], 10.0)],
        "half": [run([0.5, 0.75], 15.0), run([0.5, 0.85], 25.0)],
    }
    facts = bench.aggregate(runs, target=0.85, smoothed_target=0.85, smooth=1)
    assert facts["half"]["full_at_same_time"] == pytest.approx([0.8, 0.8])  # 15 s; after end
    assert facts["half"]["gain_at_same_time"] == pytest.approx([-0.05, 0.05])
    assert facts["full"]["gain_at_same_time"] == pytest.approx([0.0, 0.0])
