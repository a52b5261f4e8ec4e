"""What every section shares: the paths, the sizes of each mode, the table header, ``require``."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import platform
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from _common import machine

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
SECTIONS = ("tests", "engine", "server", "finetune")
SERVER_MODULES = (
    "grpc",
    "fastapi",
    "uvicorn",
    "pydantic_settings",
    "grpc_health",
    "grpc_reflection",
)


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Every size of one mode: the real check on a GPU, or the dry run's tiny copy of it."""

    timeouts: dict[str, int]
    dims: tuple[int, ...]
    bits: tuple[int, ...]
    rows: int
    batches: tuple[int, ...]
    repeats: int
    prefill: int
    clients: int
    load_seconds: float
    roundtrip_calls: int
    stage_batches: tuple[int, ...]
    stage_repeats: int
    train_size: int
    test_size: int
    batch_size: int
    max_seq_len: int
    warmup_steps: int
    probe_size: int
    max_steps: int | None


FULL = Sizes(
    timeouts={"tests": 90, "engine": 120, "server": 110, "finetune": 180},
    dims=(384, 768),
    bits=(10, 16),
    rows=200,
    batches=(1024, 4096, 16384, 65536),
    repeats=20,
    prefill=65536,
    clients=8,
    load_seconds=15.0,
    roundtrip_calls=300,
    stage_batches=(32, 1024),
    stage_repeats=50,
    train_size=4000,
    test_size=1000,
    batch_size=32,
    max_seq_len=64,
    warmup_steps=20,
    probe_size=256,
    max_steps=None,
)
DRY = Sizes(
    timeouts={"tests": 180, "engine": 180, "server": 240, "finetune": 300},  # a busy CPU
    dims=(32,),
    bits=(4, 6),
    rows=16,
    batches=(64, 256),
    repeats=3,
    prefill=512,
    clients=1,
    load_seconds=1.0,
    roundtrip_calls=20,
    stage_batches=(32,),
    stage_repeats=3,
    train_size=64,
    test_size=32,
    batch_size=16,
    max_seq_len=32,
    warmup_steps=1,
    probe_size=16,
    max_steps=3,
)


class SectionFailed(Exception):
    """A section could not run or missed a correctness goal; the message goes into its table."""


def environment(device: str) -> dict[str, str]:
    """The device, driver, torch and CUDA versions of this run."""
    import torch

    env = {
        "device": device,
        "device name": "CPU",
        "driver": "n/a",
        "torch": torch.__version__,
        "CUDA": str(torch.version.cuda),
        "python": platform.python_version(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        env["device name"] = torch.cuda.get_device_name(0)
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            ).stdout.strip()
            if out:
                env["driver"] = out.splitlines()[0].split(",")[-1].strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
    return env


def header(title: str, device: str, dry_run: bool, status: str) -> str:
    env = environment(device)
    return (
        f"# {title}\n\nMachine: {machine()}\n\n"
        f"Device: {env['device name']} ({env['device']}), driver {env['driver']}, "
        f"torch {env['torch']}, CUDA {env['CUDA']}, Python {env['python']}\n\n"
        f"Mode: {'dry run (CPU, tiny sizes)' if dry_run else 'full'}\n\n"
        f"Status: {status}\n"
    )


def write_table(
    out: Path, section: str, title: str, body: str, args: argparse.Namespace, status: str
) -> Path:
    """``out/gpu_<section>.md``: the header, then ``body``; printed too."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"gpu_{section}.md"
    path.write_text(header(title, args.device, args.dry_run, status) + "\n" + body.rstrip() + "\n")
    print(path.read_text(), flush=True)
    return path


def require(names: Sequence[str]) -> None:
    """Fail the section, naming the way to carry them, when any of these modules is missing."""
    missing = [n for n in names if importlib.util.find_spec(n) is None]
    if missing:
        raise SectionFailed(
            f"missing Python packages: {', '.join(missing)} (carry them as wheels: `make "
            "gpu-wheels` on a machine with network, then `scripts/gpu_check.sh --wheels .whl`)"
        )
