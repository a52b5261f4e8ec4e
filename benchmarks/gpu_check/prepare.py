"""``--prepare DIR`` (``make gpu-wheels``): what a GPU machine without network lacks, into DIR.

The missing packages' wheels (``DEVICE_WHEELS`` at requirements.lock's pins, for Python 3.12 /
manylinux x86_64, ``--no-deps --only-binary``), a float16 copy of the packaged MiniLM (DIR/model;
it loads back as float32) and the packaged Rotten Tomatoes snippets (DIR/data/...csv).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from .common import ROOT

# What the GPU machine's image lacks for the server, client and trainer (its python3 has torch,
# numpy, transformers, tokenizers, safetensors, prometheus-client, anyio, click, h11, ...).
# grpcio and protobuf are there but are carried anyway: the generated stubs (client/nws_client/
# _gen, grpc_health) refuse a runtime older than the one they were generated for.
DEVICE_WHEELS = (
    "fastapi",
    "starlette",
    "opentelemetry-api",  # fastapi imports it
    "uvicorn",
    "pydantic",
    "pydantic-core",
    "annotated-types",
    "typing-inspection",
    "typing-extensions",  # pydantic needs a newer one than some images have
    "pydantic-settings",
    "python-dotenv",
    "grpcio-health-checking",
    "grpcio-reflection",
    "grpcio",
    "protobuf",
)
PIP_PLATFORM = (
    "--only-binary=:all:",
    "--no-deps",
    "--implementation",
    "cp",
    "--python-version",
    "3.12",
    *("--platform", "manylinux_2_28_x86_64"),
    *("--platform", "manylinux_2_27_x86_64"),
    *("--platform", "manylinux_2_17_x86_64"),
    *("--platform", "manylinux2014_x86_64"),
    *("--platform", "manylinux1_x86_64"),
)


def _pinned_versions() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def wheel_requirements() -> list[str]:
    """``name==version`` of each package the GPU machine lacks: requirements.lock's pin, else
    the version installed here (the lock's packages' own dependencies)."""
    from importlib import metadata

    pins = _pinned_versions()
    return [f"{n}=={pins.get(n) or metadata.version(n)}" for n in DEVICE_WHEELS]


def export_model(source: Path, dest: Path) -> None:
    """A float16 copy of a model folder (half the bytes: the device tool carries 64 MiB), which
    loads as float32 (config dtype) like the original."""
    import torch
    from safetensors.torch import load_file, save_file

    weights = source / "model.safetensors"
    if not (source / "config.json").is_file() or not weights.is_file():
        raise SystemExit(f"{source}: export needs a model folder with one model.safetensors")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    state = load_file(str(weights))
    half = {}
    for key, t in state.items():
        if t.is_floating_point() and float(t.abs().max()) < 6e4:
            t = t.to(torch.float16)
        half[key] = t.contiguous()
    save_file(half, str(dest / "model.safetensors"), metadata={"format": "pt"})
    for f in source.iterdir():
        if f.is_file() and f.name not in ("model.safetensors", "README.md", "data_config.json"):
            shutil.copy2(f, dest / f.name)
    config = json.loads((dest / "config.json").read_text())
    config["dtype"] = config["torch_dtype"] = "float32"
    (dest / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def export_data(dest: Path) -> None:
    """The packaged Rotten Tomatoes snippets as a CSV (text, label) for ``nws-train --data``."""
    import csv

    from nws_trainer.data import load_rotten_tomatoes

    ds = load_rotten_tomatoes()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        for text, label in zip(ds.texts, ds.labels, strict=True):
            writer.writerow([text, ds.label_names[int(label)]])


def run(args: argparse.Namespace) -> int:
    dest = Path(args.prepare)
    dest.mkdir(parents=True, exist_ok=True)
    if not args.skip_download:
        reqs = wheel_requirements()
        cmd = [sys.executable, "-m", "pip", "download", *PIP_PLATFORM, "-d", str(dest), *reqs]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    if args.model:
        source = Path(args.model)
    else:
        from nws_trainer.models import default_model_path  # imports transformers

        source = default_model_path()
    export_model(source, dest / "model")
    export_data(dest / "data" / "rotten_tomatoes.csv")
    total = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
    print(f"prepared {dest}: {total / 2**20:.1f} MiB (the device tool carries 64 MiB in all)")
    return 0
