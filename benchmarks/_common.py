"""Shared helpers for the benchmarks: machine description and result tables."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    """One line naming the machine a benchmark ran on."""
    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores ({torch.get_num_threads()} torch threads), {gpu}; "
        f"Python {platform.python_version()}, torch {torch.__version__}; "
        f"{_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}"
    )


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_result(name: str, title: str, body: str) -> Path:
    """Write ``benchmarks/results/<name>.md`` with the machine line and print it."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = f"# {title}\n\nMachine: {machine()}\n\n{body.rstrip()}\n"
    path = RESULTS / f"{name}.md"
    path.write_text(text)
    print(text)
    print(f"wrote {path.relative_to(RESULTS.parent.parent)}")
    return path


# Where a run's files live (and its embedding cache) is not part of what it computed: a record
# made in another checkout or worktree is the same run.
_LOCATION_FIELDS = ("output", "cache_dir")


def finished_run(cfg: Any) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """(summary, metric rows) of a finished run of exactly ``cfg`` (a ``TrainConfig``) in
    ``cfg.output``, or None. A field added to TrainConfig since the run was recorded counts at
    its default value; the run's location does not count."""
    from nws_trainer.config import TrainConfig

    path = cfg.output / "summary.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())

    def comparable(d: dict[str, Any]) -> Any:
        kept = {k: v for k, v in d.items() if k not in _LOCATION_FIELDS}
        return json.loads(json.dumps(kept))

    recorded = {**TrainConfig().to_dict(), **summary.get("config", {})}
    if comparable(recorded) != comparable(cfg.to_dict()):
        return None
    lines = (cfg.output / "metrics.jsonl").read_text().splitlines()
    return summary, [json.loads(x) for x in lines if x]


def seed_list(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2] (the benchmarks' --seeds)."""
    return [int(s) for s in text.split(",") if s.strip()]
