"""One checkpoint for a run with NWS sampling: model, optimizer, scheduler, RNG, sampler, sketch.

::

    save_checkpoint(path, model=model, optimizer=opt, scheduler=sched, nws=nws, step=step)
    ...  # a new process, new objects, maybe a new sketch server
    step = load_checkpoint(path, model=model, optimizer=opt, scheduler=sched, nws=nws)["step"]

The sampler's state holds its position in the candidate stream, the batches it drew ahead of
the loop (replayed first on resume) and, from rank 0, the sketch's whole exported state
(``ExportSketch``; imported back with ``ImportSketch``). With the RNG states restored too, a
resumed run draws the same examples and reaches the same parameters as the uninterrupted one.

Under ``torch.distributed`` both calls are collective; every rank writes and reads its own file
``{path}.rank{r}`` (the sketch is in rank 0's only).
"""

from __future__ import annotations

import io
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nws_trainer.integrations.torch import NWSSampler


def _rank_path(path: str | os.PathLike[str], nws: NWSSampler) -> Path:
    path = Path(path)
    return path if nws.world_size == 1 else path.with_name(f"{path.name}.rank{nws.rank}")


def rng_state() -> dict[str, Any]:
    """The Python, numpy and torch (CPU and CUDA) generator states."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002 (the legacy global generator)
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    nws: NWSSampler,
    step: int = 0,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write everything a resumed run needs (atomically: a temporary file, then a rename)."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "nws": nws.state_dict(),
        "rng": rng_state(),
        "step": int(step),
        "extra": extra or {},
    }
    target = _rank_path(path, nws)
    target.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    tmp = target.with_name(target.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(buffer.getvalue())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)
    return target


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    nws: NWSSampler,
) -> dict[str, Any]:
    """Restore what :func:`save_checkpoint` wrote into fresh objects; returns the checkpoint
    (``step``, ``extra``). The RNG states are restored last, so nothing here consumes them."""
    state = torch.load(_rank_path(path, nws), map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    if optimizer is not None and state["optimizer"] is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    nws.load_state_dict(state["nws"])
    set_rng_state(state["rng"])
    return state
