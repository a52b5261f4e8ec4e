"""Validation of what enters the engine, done once at the boundary: embeddings, values and the
device. A rejected input raises :class:`~nws_core.errors.InvalidArgument` (a ``ValueError``)
naming the problem and the expected shape."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from nws_core.errors import InvalidArgument

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check(ok: bool, message: str) -> None:
    if not ok:
        raise InvalidArgument(message)


def as_row(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return np.asarray(v, dtype=np.float32).reshape(1, -1)
    if isinstance(v, (np.ndarray, torch.Tensor)) and v.ndim == 1:
        return v.reshape(1, -1)
    return v


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' picks CUDA when present, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidArgument(f"device {device!r} requested but CUDA is not available")
    return dev


def as_embeddings(x: Any, dim: int, name: str = "embeddings") -> torch.Tensor:
    """Validate a float [n, dim] array (numpy or torch) and return it as a CPU/device tensor."""
    if isinstance(x, np.ndarray):
        if x.dtype.kind != "f":
            raise InvalidArgument(f"{name} must be a float array, got dtype {x.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(x))
    elif isinstance(x, torch.Tensor):
        if x.dtype not in _FLOAT_DTYPES:
            raise InvalidArgument(f"{name} must be a float tensor, got dtype {x.dtype}")
        t = x
    else:
        raise InvalidArgument(f"{name} must be a numpy array or torch tensor, got {type(x)}")
    if t.ndim != 2 or t.shape[1] != dim:
        raise InvalidArgument(
            f"{name} must be [n, {dim}] floats, got {list(t.shape)} ({t.dtype})".replace(
                "torch.", ""
            )
        )
    # a finite sum proves every entry finite (NaN and inf propagate); only on a non-finite sum
    # (bad data, or an overflow of huge finite values) is the elementwise check needed
    if not bool(torch.isfinite(t.sum())) and not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).any(dim=1).nonzero()[0, 0])
        raise InvalidArgument(f"{name} contain non-finite values (first at row {bad})")
    return t


def as_values(y: Any, n: int, name: str = "values") -> torch.Tensor:
    """Validate n finite real values and return them as a float64 tensor."""
    if isinstance(y, (list, tuple)):
        y = np.asarray(y)
    if isinstance(y, np.ndarray):
        if y.dtype.kind not in "fiu":
            raise InvalidArgument(f"{name} must be real numbers, got dtype {y.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(y))
    elif isinstance(y, torch.Tensor):
        if y.dtype == torch.bool or y.is_complex():
            raise InvalidArgument(f"{name} must be real numbers, got dtype {y.dtype}")
        t = y
    else:
        raise InvalidArgument(f"{name} must be a numpy array or torch tensor, got {type(y)}")
    if t.ndim != 1 or t.shape[0] != n:
        raise InvalidArgument(
            f"{name} must have shape [{n}] (one per embedding row), got {list(t.shape)}"
        )
    t = t.to(torch.float64)
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).nonzero()[0, 0])
        raise InvalidArgument(f"{name} contain non-finite values (first at index {bad})")
    return t
