"""benchmarks/protocol.py end to end on its smoke scenario with the tiny BERT (one seed)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import protocol
import pytest

from nws_trainer.compute import UnitCosts, price

pytestmark = pytest.mark.slow


def test_smoke_scenario_writes_the_protocol_tables(tiny_bert_dir: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    argv = ["--scenario", "smoke", "--model", str(tiny_bert_dir), "--seeds", "0"]
    argv += ["--results", str(results), "--calibration-reps", "2"]
    assert protocol.main(argv) == 0
    scenario = protocol.SCENARIOS["smoke"]
    text = (results / "protocol_smoke.md").read_text()
    for arm in scenario.arms:
        assert f"| {arm.label} |" in text
    assert "compute-normalised s" in text and "unit costs" in text and "machine:" in text
    assert (results / "protocol_smoke.png").stat().st_size > 10_000
    data = json.loads((results / "protocol_smoke.json").read_text())
    facts, meta = data["facts"], data["meta"]
    assert data["seeds"] == [0]
    full_steps = meta["full_steps"]
    assert full_steps == math.ceil(96 / 32) * 2
    runs = results / "protocol" / "smoke"
    for arm in scenario.arms:
        summary = json.loads((runs / f"{arm.slug}-seed0" / "summary.json").read_text())
        cfg = summary["config"]
        if arm.family == "full":
            # Budgets: full stops at its share of the steps, its linear schedule planned for it.
            assert summary["steps"] == max(1, round(arm.budget * full_steps))
            assert cfg["lr_schedule"] == "linear"
        if arm.family in ("uniform", "rs2"):
            assert cfg["ratio"] == arm.budget
        if arm.family == "rs2":
            assert summary["ledger"]["grad_examples"] == 2 * round(arm.budget * 96)
        # Every run is priced from its own ledger with the invocation's costs.
        costs = UnitCosts.from_dict(data["costs"])
        assert facts[arm.label]["compute"]["mean"] == pytest.approx(
            price(summary["ledger"], costs)["total"]
        )
    # The frontier is full's, so full@100 % is its own reference: 100 % of its compute.
    assert facts["full@100%"]["compute_share"]["mean"] == pytest.approx(1.0)
    assert facts["full@25%"]["compute"]["mean"] < facts["full@100%"]["compute"]["mean"]
    assert facts["selective-backprop"]["records"][0]["nograd_examples"] == 2 * 96

    # --resume reuses every finished run; --report-only trains nothing and agrees.
    before = {p: p.stat().st_mtime for p in runs.glob("*/summary.json")}
    assert protocol.main([*argv, "--resume"]) == 0
    assert json.loads((results / "protocol_smoke.json").read_text())["meta"]["reused"] == len(
        scenario.arms
    )
    assert protocol.main([*argv, "--report-only"]) == 0
    assert {p: p.stat().st_mtime for p in runs.glob("*/summary.json")} == before


def test_a_subset_of_arms_is_judged_at_equal_epochs_only(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    argv = ["--scenario", "smoke", "--model", str(tiny_bert_dir), "--seeds", "0"]
    argv += ["--results", str(tmp_path), "--calibration-reps", "2", "--arms", "nws auto"]
    assert protocol.main(argv) == 0
    # Its own table: the scenario's full table (with its frontier) is not overwritten by it.
    assert not (tmp_path / "protocol_smoke.md").exists()
    text = (tmp_path / "protocol_smoke_no-harm.md").read_text()
    assert "A subset of the arms" in text
    rows = [line for line in text.splitlines() if line.startswith("| nws auto |")]
    assert len(rows) == 2  # the result table and the ledger
    assert "| n/a | n/a |" in rows[0]  # no frontier: no equal-compute difference, no speed-up
    data = json.loads((tmp_path / "protocol_smoke_no-harm.json").read_text())
    assert sorted(data["facts"]) == ["full@100%", "nws auto"]
    assert data["meta"]["frontier"] is False
    assert data["facts"]["nws auto"]["vs_equal_compute"] is None
    assert sorted(p.name for p in (tmp_path / "protocol" / "smoke").glob("*-seed0")) == [
        "full-b100-seed0",
        "nws_auto-seed0",
    ]
    summary = json.loads(
        (tmp_path / "protocol" / "smoke" / "nws_auto-seed0" / "summary.json").read_text()
    )
    assert summary["config"]["ratio"] == "auto"


def test_an_unknown_arm_is_named() -> None:
    with pytest.raises(SystemExit, match="no arm 'nws@0.7' in scenario 'smoke'"):
        protocol.main(["--scenario", "smoke", "--arms", "nws@0.7", "--report-only"])


def test_report_only_needs_a_finished_seed(tiny_bert_dir: Path, tmp_path: Path) -> None:
    argv = ["--scenario", "smoke", "--model", str(tiny_bert_dir), "--results", str(tmp_path)]
    with pytest.raises(SystemExit):
        protocol.main([*argv, "--report-only"])


def test_every_arm_order_is_a_rotation() -> None:
    arms = protocol.SCENARIOS["paper"].arms
    orders = [protocol.order(arms, k) for k in range(len(arms))]
    assert all(sorted(a.label for a in o) == sorted(a.label for a in arms) for o in orders)
    assert len({o[0].label for o in orders}) == len(arms)  # each arm leads one seed


def test_a_subset_with_the_whole_frontier_is_a_partial_table() -> None:
    scenario = protocol.SCENARIOS["paper"]
    frontier = {f"full@{b:.0%}": [] for b in (*protocol.BUDGETS, 1.0)}
    subset = protocol.select_arms(scenario, ["nws"])
    assert protocol.table_suffix(scenario.arms, scenario, {**frontier, "nws": []}) == ""
    assert protocol.table_suffix(subset, scenario, {"full@100%": [], "nws": []}) == "_no-harm"
    assert protocol.table_suffix(subset, scenario, {**frontier, "nws": []}) == "_partial"


def test_study_arms_run_only_when_named_into_their_own_table() -> None:
    scenario = protocol.SCENARIOS["redundant-2x"]
    assert not {a.label for a in protocol.STUDY_ARMS} & {a.label for a in scenario.arms}
    study = protocol.select_arms(scenario, ["nws", "nws K14", "nws grad-norm"])
    assert [a.label for a in study] == ["full@100%", "nws", "nws K14", "nws grad-norm"]
    frontier = {f"full@{b:.0%}": [] for b in (*protocol.BUDGETS, 1.0)}
    assert protocol.table_suffix(study, scenario, frontier) == "_study"
    with pytest.raises(SystemExit, match="no arm 'nws K99'"):
        protocol.select_arms(scenario, ["nws K99"])
