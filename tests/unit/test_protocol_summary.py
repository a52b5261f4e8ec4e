"""benchmarks/protocol_summary.py: the regimes side by side, copied from their own tables."""

from __future__ import annotations

import json
from pathlib import Path

import protocol_summary
from _stats import facts_from_json, t_interval
from protocol_summary import equal_compute_cell, equal_epochs_cell, markdown


def iv(mean: float, low: float, high: float) -> dict[str, float | int | str]:
    verdict = "gain" if low > 0 else "loss" if high < 0 else "inside the noise"
    return {"mean": mean, "low": low, "high": high, "n": 5, "verdict": verdict}


def fact(
    label: str,
    family: str,
    share: float,
    same: tuple,
    equal: tuple,
    speedup: tuple,
    accuracies: tuple = (0.70,) * 5,
) -> dict:
    """One arm's facts in the JSON form of a regime table, with a record per seed."""
    return {
        "arm": label,
        "family": family,
        "accuracy": iv(0.7, 0.69, 0.71),
        "compute_share": iv(share, share - 0.01, share + 0.01),
        "vs_same_epochs": iv(*same),
        "vs_equal_compute": iv(*equal),
        "speedup": iv(*speedup),
        "speedup_is_bound": False,
        "records": [{"accuracy": a} for a in accuracies],
    }


def read(f: dict) -> dict:
    """An arm's facts as the summary reads them from a table (its intervals as Intervals)."""
    return facts_from_json({"arm": f})["arm"]


def regime(name: str, extra: dict[str, dict]) -> dict:
    facts = {
        f"full@{b}%": fact(f"full@{b}%", "full", b / 100, (0, 0, 0), (0, 0, 0), (1, 1, 1))
        | {"accuracy": iv(0.5 + b / 1000, 0, 1)}
        for b in (100, 75, 50, 25)
    }
    meta = {"train_rows": 1500, "full_steps": 141, "env": {"cpu": "TestCPU", "cpu_count": 2}}
    return {"scenario": name, "seeds": [0, 1, 2, 3, 4], "meta": meta, "facts": facts | extra}


def test_cells_mark_gains_losses_and_the_no_harm_rule() -> None:
    gain = read(
        fact("nws", "nws", 0.52, (-0.033, -0.037, -0.029), (0.027, 0.017, 0.036), (1.2, 1.13, 1.26))
    )
    assert equal_compute_cell(gain) == "**+2.7 [+1.7, +3.6]** at 52%; 1.20x [1.13x, 1.26x]"
    assert equal_epochs_cell(gain) == "~~-3.3 [-3.7, -2.9]~~ at 52% (fails no-harm)"
    # The no-harm rule is the lower end above -0.5 points, whatever the mean.
    tie = read(fact("nws auto", "nws", 1.01, (0.0, -0.004, 0.004), (0, -0.001, 0.001), (1, 1, 1)))
    assert equal_epochs_cell(tie).endswith("at 101% (meets no-harm)")
    wide = read(
        fact("nws prune", "nws", 0.85, (-0.012, -0.025, 0.002), (0, -0.001, 0.001), (1, 1, 1))
    )
    assert equal_epochs_cell(wide) == "-1.2 [-2.5, +0.2] at 85% (fails no-harm)"
    assert equal_compute_cell({**gain, "speedup_is_bound": True}).endswith(
        "; ≥ 1.20x [1.13x, 1.26x]"
    )


def test_the_summary_puts_every_regime_beside_the_others(tmp_path: Path) -> None:
    accs = (0.70, 0.72, 0.71, 0.69, 0.73)
    nws = fact("nws", "nws", 0.5, (-0.05, -0.06, -0.04), (0.02, 0.01, 0.03), (1.2, 1.1, 1.3), accs)
    # The table is 1 point behind on every seed but the last, where it is 1 ahead.
    table_accs = (0.69, 0.71, 0.70, 0.68, 0.74)
    table = fact(
        "loss-table",
        "loss-table",
        0.5,
        (-0.05, -0.06, -0.04),
        (0.0, -0.01, 0.01),
        (1.4, 0.9, 1.9),
        table_accs,
    )
    info = fact(
        "infobatch",
        "infobatch",
        0.84,
        (-0.006, -0.01, -0.001),
        (0, -0.002, 0.01),
        (1.07, 0.99, 1.15),
    )
    data = {
        "paper": regime("paper", {"nws": nws, "infobatch": info}),
        "long": regime("long", {"nws": nws, "loss-table": table}),
    }
    for name, d in data.items():
        (tmp_path / f"protocol_{name}.json").write_text(json.dumps(d))
    (tmp_path / "protocol_redundant-8x_partial.json").write_text("{}")

    out = protocol_summary.write(tmp_path)
    assert out == tmp_path / "protocol_summary.md"
    text = out.read_text()
    assert "| `paper` | `long` |" in text  # one column a regime, in the protocol's order
    # An arm absent from a regime says so; the others carry their own regime's numbers.
    rows = [line for line in text.splitlines() if line.startswith("| infobatch |")]
    assert len(rows) == 2 and all(r.endswith("| not run |") for r in rows)
    assert "| loss-table | not run | +0.0 [-1.0, +1.0] at 50%; 1.40x [0.90x, 1.90x] |" in text
    # The regimes without a full table are named, with their partial table where one exists.
    assert (
        "| `redundant-8x` | — | — | not every arm measured yet "
        "(see protocol_redundant-8x_partial.json)" in text
    )
    assert "| `redundant-2x` | — | — | not run |" in text
    # Paired comparisons: computed seed by seed from the records, where both arms ran.
    diffs = [a - b for a, b in zip(accs, table_accs, strict=True)]
    expected = t_interval(diffs).text("{:+.1f}", 100)
    assert expected == "+0.6 [-0.5, +1.7]"  # inside the noise: not bold
    assert f"| nws − loss-table | not run | {expected} |" in text
    assert "| nws − uniform@50% | not run | not run |" in text
    # Best saving per regime: the largest mean speed-up of a non-full arm.
    assert "| `paper` | nws | 1.20x [1.10x, 1.30x] | **+2.0 [+1.0, +3.0]** |" in text
    assert "| `long` | loss-table | 1.40x [0.90x, 1.90x] | +0.0 [-1.0, +1.0] |" in text
    assert (
        "| `paper`: 1,500 training rows, 141 steps for `full` | 5 | 0.525 / 0.550 / 0.575 / 0.600 |"
        in text
    )


def test_nothing_is_written_without_a_full_table(tmp_path: Path) -> None:
    (tmp_path / "protocol_long_partial.json").write_text("{}")
    assert protocol_summary.write(tmp_path) is None
    assert not (tmp_path / "protocol_summary.md").exists()
    empty = markdown({}, {"long": "not run"})
    assert "| `long` | — | — | not run |" in empty and "## Equal compute" not in empty
