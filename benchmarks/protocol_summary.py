"""The protocol's regimes side by side: ``results/protocol_summary.md`` from their full tables.

Each regime's own table (``protocol_<scenario>.json``, written by ``protocol.py`` once every arm
has run for every seed) holds every arm's paired facts against that regime's ``full``. This puts
them in four tables, one row an arm and one column a regime, so that where sampling pays (and
where it costs) reads at a glance:

- *equal compute*: the difference to ``full``'s budget-aware frontier at the run's compute, in
  points with its 95 % interval, the run's compute as a share of ``full``'s, and the speed-up at
  equal accuracy (bold: a gain, the interval above 0; struck: a loss);
- *equal epochs*: the difference to ``full``@100 % over the same passes, the no-harm check
  (a run passes it when its interval's lower end is above -0.5 points);
- *paired comparisons*: one arm minus another, seed by seed (:data:`PAIRS`);
- *best saving*: per regime, the arm with the largest mean speed-up at equal accuracy.

Nothing else is recomputed: every other number is the regime table's. A regime whose full
table does not exist yet is listed as missing (its ``_partial`` table, if any, is named
instead).

    python benchmarks/protocol_summary.py            # after protocol.py, which also calls it
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _stats import Interval, facts_from_json, t_interval

ROOT = Path(__file__).resolve().parent
REGIMES = ("paper", "long", "redundant-2x", "redundant-8x")
"""The protocol's scenarios that are results (``smoke`` is the test suite's)."""
NO_HARM = -0.005
"""The no-harm rule: the lower end of the equal-epochs interval above -0.5 points."""
PAIRS = (("nws", "loss-table"), ("nws", "uniform@50%"))
"""Arms compared seed by seed: the sketch against the O(N) table of last losses it stands in
for, and against keeping rows at random at about the same compute."""
PAIRS_INTRO = (
    "Accuracy of one arm minus another's, seed by seed (the same split and initial head), in "
    "points with the 95 % t interval, computed from the run records in the regimes' tables: "
    "`nws` at 0.4 against the O(N) table of last losses it stands in for, and against "
    "`uniform` at about the same compute."
)


def _pts(iv: Interval) -> str:
    return iv.text("{:+.1f}", 100)


def _speedup(fact: dict[str, Any]) -> str:
    return ("≥ " if fact.get("speedup_is_bound") else "") + fact["speedup"].text("{:.2f}x")


def _mark(text: str, verdict: str) -> str:
    return f"**{text}**" if verdict == "gain" else f"~~{text}~~" if verdict == "loss" else text


def equal_compute_cell(fact: dict[str, Any]) -> str:
    diff, share = fact.get("vs_equal_compute"), fact["compute_share"].mean
    if diff is None:
        return "n/a"
    cell = f"{_mark(_pts(diff), diff.verdict)} at {share:.0%}"
    return cell + (f"; {_speedup(fact)}" if fact.get("speedup") is not None else "")


def equal_epochs_cell(fact: dict[str, Any]) -> str:
    diff, share = fact["vs_same_epochs"], fact["compute_share"].mean
    ok = "meets no-harm" if diff.low > NO_HARM else "fails no-harm"
    return f"{_mark(_pts(diff), diff.verdict)} at {share:.0%} ({ok})"


def paired_difference(facts: dict[str, dict[str, Any]], a: str, b: str) -> Interval | None:
    """Accuracy of arm ``a`` minus arm ``b``, seed by seed (their i-th records share seed i)."""
    if a not in facts or b not in facts:
        return None
    pairs = zip(facts[a]["records"], facts[b]["records"], strict=True)
    return t_interval([ra["accuracy"] - rb["accuracy"] for ra, rb in pairs])


def load(results: Path) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """regime -> its full table's data; regime -> why it is missing."""
    found: dict[str, dict[str, Any]] = {}
    missing: dict[str, str] = {}
    for name in REGIMES:
        path = results / f"protocol_{name}.json"
        if path.is_file():
            data = json.loads(path.read_text())
            found[name] = {**data, "facts": facts_from_json(data["facts"])}
            continue
        partial = sorted(p.name for p in results.glob(f"protocol_{name}_*.json"))
        missing[name] = (
            f"not every arm measured yet (see {', '.join(partial)})" if partial else "not run"
        )
    return found, missing


def arm_order(found: dict[str, dict[str, Any]]) -> list[str]:
    """Every arm of the regimes, in the order of their tables (first seen first)."""
    labels: list[str] = []
    for data in found.values():
        labels += [label for label in data["facts"] if label not in labels]
    return labels


def markdown(found: dict[str, dict[str, Any]], missing: dict[str, str]) -> str:
    regimes = list(found)
    head = "| arm | " + " | ".join(f"`{r}`" for r in regimes) + " |"
    rule = "|---|" + "---|" * len(regimes)
    lines = [
        "# Protocol: the regimes side by side",
        "",
        "Every number but the paired comparisons is copied from the regime's own table "
        "(linked), where the ledger, the diagnostics, the unit costs and the machine are. "
        "Means over the paired seeds, with the 95 % t interval of the paired difference in "
        "brackets, in points of accuracy; "
        "**bold**: a gain (the interval above 0), ~~struck~~: a loss (below 0), plain: inside "
        "the noise. The share is the run's compute-normalised time over `full`@100 %'s. "
        "'not run': the arm is not part of that regime (InfoBatch prunes only rows it has "
        "seen, so in one pass it is `full`).",
        "",
        "| regime | seeds | `full`@25 / 50 / 75 / 100 % | table | machine |",
        "|---|---|---|---|---|",
    ]
    for name, data in found.items():
        acc = " / ".join(
            f"{data['facts'][f'full@{b}%']['accuracy'].mean:.3f}" for b in (25, 50, 75, 100)
        )
        meta = data["meta"]
        env = meta.get("env", {})
        lines.append(
            f"| `{name}`: {meta['train_rows']:,} training rows, {meta['full_steps']} "
            f"steps for `full` | {len(data['seeds'])} | {acc} | "
            f"[protocol_{name}](protocol_{name}.md) | {env.get('cpu', '?')}, "
            f"{env.get('cpu_count', '?')} CPUs |"
        )
    for name, why in missing.items():
        lines.append(f"| `{name}` | — | — | {why} | |")
    if not found:
        return "\n".join(lines) + "\n"
    labels = [x for x in arm_order(found) if not x.startswith("full@")]

    def table(title: str, intro: str, cell: Any) -> None:
        lines.extend(["", f"## {title}", "", intro, "", head, rule])
        for label in labels:
            cells = [
                cell(data["facts"][label]) if label in data["facts"] else "not run"
                for data in found.values()
            ]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")

    table(
        "Equal compute: against `full`'s budget-aware frontier",
        "The run's accuracy minus `full`'s frontier at the run's compute, the run's compute, and "
        "the speed-up at equal accuracy (the compute the frontier needs for the run's accuracy "
        "over the run's; '≥' where the run beats every budget of `full`).",
        equal_compute_cell,
    )
    table(
        "Equal epochs: against `full`@100 % (the no-harm check)",
        "The run's accuracy minus `full`'s over the same passes over the data, and its compute; "
        "'meets no-harm' where the interval's lower end is above -0.5 points.",
        equal_epochs_cell,
    )
    lines.extend(["", "## Paired comparisons", "", PAIRS_INTRO, "", head, rule])
    for a, b in PAIRS:
        diffs = [paired_difference(data["facts"], a, b) for data in found.values()]
        cells = ["not run" if d is None else _mark(_pts(d), d.verdict) for d in diffs]
        lines.append(f"| {a} − {b} | " + " | ".join(cells) + " |")
    lines.extend(
        [
            "",
            "## Best saving at equal accuracy",
            "",
            "| regime | arm | speed-up | vs frontier, equal compute |",
            "|---|---|---|---|",
        ]
    )
    for name, data in found.items():
        ranked = [f for f in data["facts"].values() if f.get("speedup") and f["family"] != "full"]
        if not ranked:
            continue
        best = max(ranked, key=lambda f: f["speedup"].mean)
        diff = best["vs_equal_compute"]
        lines.append(
            f"| `{name}` | {best['arm']} | {_speedup(best)} | {_mark(_pts(diff), diff.verdict)} |"
        )
    return "\n".join(lines) + "\n"


def write(results: Path) -> Path | None:
    """Write ``protocol_summary.md`` when at least one regime has its full table."""
    found, missing = load(results)
    if not found:
        return None
    out = results / "protocol_summary.md"
    out.write_text(markdown(found, missing))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, default=ROOT / "results")
    args = p.parse_args(argv)
    out = write(args.results)
    if out is None:
        print(f"protocol_summary: no regime has its full table in {args.results}", file=sys.stderr)
        return 1
    print(out.read_text())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
