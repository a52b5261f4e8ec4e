"""scripts/gpu_check.sh --dry-run: every section of the GPU check, on the CPU with tiny sizes.

The dry run goes through the same code as the run on a GPU machine (the wheelhouse folder with
the prepared model and corpus, PYTHONPATH to the source, one process per section, the tables);
what needs CUDA (the CUDA-graph variants, the gpu-marked tests themselves) is skipped or shown
as '-'. The tests read the tables the script wrote.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from gpu_check import common, prepare  # benchmarks/gpu_check (pytest's pythonpath: benchmarks)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
TABLES = {"gpu_tests.md", "gpu_engine.md", "gpu_server.md", "gpu_finetune.md", "gpu_summary.md"}


def _run(*args: str, timeout: float = 1100) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OUT", "NWS_GPU_WHEELS")}
    env["PYTHON"] = sys.executable
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _rows(text: str, first_header: str) -> list[dict[str, str]]:
    """The rows of the markdown table whose first column is ``first_header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    headers = [h.strip() for h in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(
            dict(zip(headers, (c.strip() for c in line.strip("|").split("|")), strict=True))
        )
    return rows


def _num(cell: str) -> float:
    return float(cell.replace(",", ""))


@pytest.mark.timeout(1200)  # about a minute on 2 idle cores; more while they are busy
def test_dry_run_writes_every_table_with_numbers(tmp_path: Path, tiny_bert_dir: Path) -> None:
    sizes = common.DRY
    wheels = tmp_path / "whl"
    # the offline half of `make gpu-wheels` (no download): the float16 model copy and the corpus
    prep = subprocess.run(
        [sys.executable, "-m", "gpu_check", "--prepare", str(wheels)]
        + ["--skip-download", "--model", str(tiny_bert_dir)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "benchmarks")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert prep.returncode == 0, prep.stderr[-3000:]
    config = json.loads((wheels / "model" / "config.json").read_text())
    assert config["dtype"] == "float32"  # stored in float16, loaded as float32
    header = (wheels / "model" / "model.safetensors").read_bytes()[8:4096].decode(errors="replace")
    assert '"F16"' in header and '"F32"' not in header
    corpus = (wheels / "data" / "rotten_tomatoes.csv").read_text().splitlines()
    assert corpus[0] == "text,label" and len(corpus) > 12_000

    out = tmp_path / "tables"
    proc = _run("--dry-run", "--out", str(out), "--wheels", str(wheels))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert {p.name for p in out.glob("gpu_*.md")} == TABLES
    assert (out / "gpu_check.log").stat().st_size > 0
    text = {name: (out / name).read_text() for name in TABLES}
    for name, body in text.items():
        assert "Device: CPU (cpu), driver n/a, torch " in body and ", CUDA " in body, name
        assert "Mode: dry run (CPU, tiny sizes)" in body and "\nStatus: ok\n" in body, name

    summary = _rows(text["gpu_summary.md"], "section")
    assert [(r["section"], r["status"]) for r in summary] == [(s, "ok") for s in common.SECTIONS]

    # every gpu-marked test ran (and skipped: no CUDA here)
    tests = {r["test"].split("::")[-1]: r["outcome"] for r in _rows(text["gpu_tests.md"], "test")}
    assert tests.get("test_cpu_and_cuda_assign_identical_buckets") == "skipped"
    assert any(t.startswith("test_cpu_and_cuda_serialize_to_identical_bytes") for t in tests)
    assert set(tests.values()) == {"skipped"}

    # engine: one row per (d, K, batch), every rate a positive number, graphs CUDA-only
    engine = _rows(text["gpu_engine.md"], "d")
    expected = {(d, k, b) for d in sizes.dims for k in sizes.bits for b in sizes.batches}
    assert {(int(r["d"]), int(r["K"]), int(r["batch"])) for r in engine} == expected
    for r in engine:
        for col in ("bound fp32 M/s", "bound bf16 M/s", "estimate M/s", "update M/s"):
            assert _num(r[col]) > 0, (col, r)
        assert _num(r["kernel fp32 M/s"]) > 0 and _num(r["kernel bf16 M/s"]) > 0
        assert r["graph fp32 M/s"] == r["graph bf16 M/s"] == "-"
        assert 0.5 < _num(r["bf16 agree"]) <= 1.0
    assert re.search(
        r"Best in-process estimate rate at d = 32, R = 16, K = 4: [0-9.e+-]+ M/s",
        text["gpu_engine.md"],
    )
    assert "not evaluated (dry run)" in text["gpu_engine.md"]

    # server: load.py's RPCs all served, nothing lost, and each stage of a Sample timed
    load = {r["RPC"]: r for r in _rows(text["gpu_server.md"], "RPC")}
    assert set(load) == {"Sample", "Update", "StreamUpdates"}
    assert all(int(r["requests"]) > 0 and _num(r["rows/s"]) > 0 for r in load.values())
    assert "Errors: 0;" in text["gpu_server.md"] and "lost 0." in text["gpu_server.md"]
    stages = _rows(text["gpu_server.md"], "batch")
    assert [int(r["batch"]) for r in stages] == list(sizes.stage_batches)
    for r in stages:
        for col in ("decode us", "engine from host us", "policy us", "encode us", "round trip us"):
            assert _num(r[col]) > 0, (col, r)
        assert _num(r["rows/s (1 client)"]) > 0

    # fine-tune: both strategies trained on the prepared model and corpus, counts from summary.json
    ft = {r["strategy"]: r for r in _rows(text["gpu_finetune.md"], "strategy")}
    assert set(ft) == {"full", "nws"}
    assert f"model {wheels / 'model'}" in text["gpu_finetune.md"]
    assert "rotten_tomatoes.csv" in text["gpu_finetune.md"]
    assert sizes.max_steps is not None  # the dry run caps the steps
    for r in ft.values():
        assert 0 < int(r["steps"]) <= sizes.max_steps
        assert int(r["examples backpropagated"]) > 0 and _num(r["backpropagated/s"]) > 0
        assert int(r["examples forwarded"]) >= int(r["examples backpropagated"])
        assert r["ledger"] in ("yes", "absent")
    assert int(ft["full"]["examples backpropagated"]) == sizes.max_steps * sizes.batch_size


def test_a_failing_section_is_reported_and_fails_the_run(tmp_path: Path) -> None:
    out = tmp_path / "tables"
    # CUDA asked for on a machine without it: the engine section fails, the driver says so
    proc = _run("--dry-run", "--device", "cuda", "--sections", "engine", "--out", str(out))
    assert proc.returncode == 1
    engine = (out / "gpu_engine.md").read_text()
    assert "Status: FAILED: crashed (exit 1)" in engine and "CUDA" in engine
    summary = (out / "gpu_summary.md").read_text()
    assert "Status: FAILED: engine" in summary and "| engine | FAILED |" in summary


def test_a_missing_package_is_named_with_the_way_to_carry_it() -> None:
    with pytest.raises(common.SectionFailed, match="no_such_module_xyz.*make gpu-wheels"):
        common.require(["json", "no_such_module_xyz"])
    reqs = prepare.wheel_requirements()  # at requirements.lock's pins where it has one
    assert f"fastapi=={prepare._pinned_versions()['fastapi']}" in reqs
    assert len(reqs) == len(prepare.DEVICE_WHEELS) and all("==" in r for r in reqs)
