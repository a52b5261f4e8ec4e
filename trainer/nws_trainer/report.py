"""Comparing runs: time to a target accuracy, and the tables the demo and the benchmark print."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

Row = Mapping[str, Any]


def time_to_accuracy(
    rows: Sequence[Row], target: float, key: str = "wall_seconds", smooth: int = 1
) -> float | None:
    """``rows[i][key]`` at the first evaluation whose accuracy reaches ``target``; else None.

    ``smooth > 1`` compares the mean accuracy of the last ``smooth`` evaluations instead of the
    raw one (less sensitive to one lucky evaluation).
    """
    acc = [float(r["test_accuracy"]) for r in rows]
    for i, row in enumerate(rows):
        window = acc[max(0, i - smooth + 1) : i + 1]
        if float(np.mean(window)) >= target:
            return float(row[key])
    return None


def mean_sd(values: Sequence[float | None], fmt: str = "{:.3f}") -> str:
    """'mean ± sd' over the values that exist ('n/a' when none; 'k/n' notes missing ones)."""
    present = [float(v) for v in values if v is not None]
    if not present:
        return "n/a"
    text = fmt.format(np.mean(present))
    if len(present) > 1:
        text += " ± " + fmt.format(np.std(present, ddof=1))
    if len(present) < len(values):
        text += f" ({len(present)}/{len(values)})"
    return text


def _last(rows: Sequence[Row], key: str) -> Any:
    for row in reversed(rows):
        if row.get(key) is not None:
            return row[key]
    return None


def _window_mean(rows: Sequence[Row], key: str) -> float | None:
    """Mean of a per-window diagnostic over the evaluations that have it."""
    values = [float(r[key]) for r in rows if r.get(key) is not None]
    return float(np.mean(values)) if values else None


def run_facts(summary: Mapping[str, Any], rows: Sequence[Row], target: float | None) -> dict:
    """The numbers a comparison table shows for one run."""
    emb = summary.get("embedding") or {}
    timing = summary.get("timing") or {}
    return {
        "final_accuracy": summary["final"]["test_accuracy"],
        "best_accuracy": summary["best_test_accuracy"],
        "steps": summary["steps"],
        "train_seconds": summary["train_seconds"],
        "embedding_seconds": emb.get("compute_seconds", 0.0) if emb else 0.0,
        "wall_seconds": summary["wall_seconds"],
        "forwarded": summary["examples_forwarded"],
        "backpropagated": summary["examples_backpropagated"],
        "seconds_per_step": timing.get("seconds_per_step"),
        "sampling_overhead": timing.get("sampling_overhead"),
        "acceptance_rate": summary.get("acceptance_rate"),
        "time_to_target": None if target is None else time_to_accuracy(rows, target),
        "steps_to_target": None if target is None else time_to_accuracy(rows, target, "step"),
        "estimate_cv": _window_mean(rows, "estimate_cv"),
        "ess_fraction": _window_mean(rows, "ess_fraction"),
        "max_weight": max((r["max_weight"] for r in rows if r.get("max_weight")), default=None),
        "prior_hit_rate": _window_mean(rows, "prior_hit_rate"),
        "spearman_trained": _window_mean(rows, "spearman_trained"),
        "probe_spearman": _last(rows, "probe_spearman"),
    }


def _fmt(value: Any, fmt: str) -> str:
    return "n/a" if value is None else fmt.format(value)


def comparison_table(runs: Mapping[str, Mapping[str, Any]], target: float | None) -> str:
    """A Markdown table of single runs (label -> run_facts)."""
    head = (
        "| run | final acc | steps | train s | + embeddings s | examples fwd / bwd "
        "| time to target s | accept | est. CV | rho(est, loss) | rho(probe) |"
    )
    lines = [head, _rule(head)]
    for label, f in runs.items():
        lines.append(
            f"| {label} | {f['final_accuracy']:.4f} | {f['steps']} | {f['train_seconds']:.0f} "
            f"| {f['embedding_seconds']:.0f} | {f['forwarded']} / {f['backpropagated']} "
            f"| {_fmt(f['time_to_target'], '{:.0f}')} | {_fmt(f['acceptance_rate'], '{:.2f}')} "
            f"| {_fmt(f['estimate_cv'], '{:.2f}')} | {_fmt(f['spearman_trained'], '{:.2f}')} "
            f"| {_fmt(f['probe_spearman'], '{:.2f}')} |"
        )
    if target is not None:
        lines.append("")
        lines.append(
            f"Target: {target:.4f} test accuracy. Time to target counts training wall-clock "
            "(evaluation excluded) plus the one-time embedding pass."
        )
    return "\n".join(lines)


def _rule(head: str) -> str:
    return "|" + "---|" * (head.count("|") - 1)
