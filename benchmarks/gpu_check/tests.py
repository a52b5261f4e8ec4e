"""Section ``tests``: the ``gpu``-marked tests under ``pytest -m gpu``, one row per test."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from _common import markdown_table

from .common import ROOT, SectionFailed, Sizes, require

TITLE = "GPU tests"


def gpu_test_files() -> list[Path]:
    """Test files that hold a ``gpu``-marked test (what ``grep -rn "mark.gpu" tests`` finds)."""
    return sorted(
        p
        for p in (ROOT / "tests").rglob("test_*.py")
        if "mark.gpu" in p.read_text(errors="replace")
    )


def run(args: argparse.Namespace, sizes: Sizes) -> str:
    require(("pytest",))
    files = gpu_test_files()
    if not files:
        raise SectionFailed("no gpu-marked tests found under tests/")
    with tempfile.TemporaryDirectory(prefix="nws-gpu-tests-") as tmp:
        junit = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider"]
        cmd += ["-o", "addopts=-ra --strict-markers", f"--junitxml={junit}"]
        cmd += [str(f.relative_to(ROOT)) for f in files]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        print(proc.stdout[-6000:], proc.stderr[-3000:], flush=True)
        if not junit.exists():
            raise SectionFailed(f"pytest wrote no report (exit {proc.returncode})")
        cases = ET.parse(junit).getroot().iter("testcase")
        rows: list[list[object]] = []
        outcomes: list[str] = []
        for case in cases:
            outcome, note = "passed", ""
            for tag in ("failure", "error", "skipped"):
                el = case.find(tag)
                if el is not None:
                    outcome = {"failure": "FAILED", "error": "ERROR", "skipped": "skipped"}[tag]
                    note = " ".join((el.get("message") or "").split())[:120].replace("|", "/")
                    break
            outcomes.append(outcome)
            name = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name')}"
            rows.append([name, outcome, float(case.get("time") or 0.0), note])
    body = (
        'The `gpu`-marked tests (`grep -rn "mark.gpu" tests`), run with `pytest -m gpu`. '
        "Without CUDA they skip; on a GPU every one must pass.\n\n"
        + markdown_table(["test", "outcome", "seconds", "note"], rows)
    )
    if not rows:
        raise SectionFailed("pytest collected no gpu-marked test\n\n" + body)
    bad = [o for o in outcomes if o in ("FAILED", "ERROR")]
    if bad or (args.device.startswith("cuda") and "skipped" in outcomes):
        raise SectionFailed(f"{len(bad)} failed, {outcomes.count('skipped')} skipped\n\n" + body)
    return body
