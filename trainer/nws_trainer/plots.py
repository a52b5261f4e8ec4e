"""Training curves like the paper's Figure 3: accuracy and loss against wall-clock and steps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

Rows = Sequence[Mapping[str, Any]]


def plot_curves(
    runs: Mapping[str, Rows | Sequence[Rows]],
    path: str | Path,
    title: str = "",
    target: float | None = None,
) -> Path:
    """Write a 2x2 figure for ``runs`` (label -> metrics rows, or a list of row lists for seeds).

    Rows need ``step``, ``wall_seconds``, ``test_accuracy`` and ``test_loss``. Several row lists
    under one label (seeds) are drawn thin with the same colour. ``target`` draws a horizontal
    line on the accuracy panels (e.g. ``full``'s final accuracy).
    """
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharey="row")
    panels = [
        (axes[0, 0], "wall_seconds", "test_accuracy"),
        (axes[0, 1], "step", "test_accuracy"),
        (axes[1, 0], "wall_seconds", "test_loss"),
        (axes[1, 1], "step", "test_loss"),
    ]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, rows_or_runs) in enumerate(runs.items()):
        seeds = _as_seed_list(rows_or_runs)
        colour = colours[i % len(colours)]
        for j, rows in enumerate(seeds):
            for ax, x, y in panels:
                xs = [r[x] for r in rows if r.get(y) is not None]
                ys = [r[y] for r in rows if r.get(y) is not None]
                ax.plot(
                    xs,
                    ys,
                    color=colour,
                    marker="o" if len(seeds) == 1 else None,
                    markersize=3,
                    linewidth=1.6 if len(seeds) == 1 else 1.0,
                    alpha=1.0 if len(seeds) == 1 else 0.7,
                    label=label if j == 0 else None,
                )
    for ax, x, y in panels:
        ax.set_xlabel(
            "wall-clock (s): training + embedding pass, no evaluation" if x != "step" else "step"
        )
        ax.set_ylabel("test accuracy" if y == "test_accuracy" else "test loss")
        ax.grid(alpha=0.3)
        if target is not None and y == "test_accuracy":
            ax.axhline(target, color="grey", linestyle="--", linewidth=1)
    axes[0, 0].legend(loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _as_seed_list(value: Rows | Sequence[Rows]) -> list[Rows]:
    if value and isinstance(value[0], Mapping):
        return [value]  # type: ignore[list-item]
    return list(value)  # type: ignore[arg-type]
