"""The engine's serialization format: a versioned header, raw little-endian arrays and a BLAKE2b
checksum of the whole (no pickle). Damage of any kind raises :class:`~nws_core.errors.DataLoss`."""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

import numpy as np
import torch

from nws_core.errors import DataLoss


def checked_cells(cells: torch.Tensor, size: int) -> torch.Tensor:
    """The cell indices of a sparse snapshot: int64, 1-D, strictly increasing, in [0, size)."""
    ok = cells.dtype == torch.int64 and cells.ndim == 1
    if ok and cells.numel():
        ok = int(cells[0]) >= 0 and int(cells[-1]) < size and bool((cells[1:] > cells[:-1]).all())
    if not ok:
        raise DataLoss("snapshot cell indices are out of range or unsorted")
    return cells


MAGIC = b"NWSK"
FORMAT_VERSION = 2
"""2 adds the sparse layout of the count arrays; version 1 snapshots (dense) still load."""
READABLE_VERSIONS = (1, 2)
_DIGEST_SIZE = 32
_TORCH_TO_NP = {
    torch.float32: "<f4",
    torch.float64: "<f8",
    torch.int64: "<i8",
}


def pack(
    header: dict[str, Any], arrays: dict[str, torch.Tensor], *, version: int = FORMAT_VERSION
) -> bytes:
    """The bytes of a header and its arrays (``version``: the format to write; older ones only
    for tests of reading them)."""
    chunks: list[bytes] = []
    specs = []
    offset = 0
    for name, t in arrays.items():
        raw = t.detach().cpu().contiguous().numpy().astype(_TORCH_TO_NP[t.dtype]).tobytes()
        specs.append(
            {"name": name, "dtype": _TORCH_TO_NP[t.dtype], "shape": list(t.shape), "offset": offset}
        )
        chunks.append(raw)
        offset += len(raw)
    header = {**header, "arrays": specs}
    head = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    body = b"".join([MAGIC, struct.pack("<II", version, len(head)), head, *chunks])
    return body + hashlib.blake2b(body, digest_size=_DIGEST_SIZE).digest()


def unpack(data: bytes) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The header and arrays of bytes :func:`pack` wrote; DataLoss for anything else."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DataLoss(f"snapshot must be bytes, got {type(data)}")
    data = bytes(data)
    if len(data) < len(MAGIC) + 8 + _DIGEST_SIZE or data[:4] != MAGIC:
        raise DataLoss("not an NWS sketch snapshot (bad magic or too short)")
    body, digest = data[:-_DIGEST_SIZE], data[-_DIGEST_SIZE:]
    if hashlib.blake2b(body, digest_size=_DIGEST_SIZE).digest() != digest:
        raise DataLoss("sketch snapshot checksum mismatch: the data is corrupt or truncated")
    version, head_len = struct.unpack_from("<II", body, 4)
    if version not in READABLE_VERSIONS:
        raise DataLoss(f"unsupported snapshot format version {version}")
    start = 12 + head_len
    try:
        header = json.loads(body[12:start])
        arrays = {}
        for spec in header["arrays"]:
            dt = np.dtype(spec["dtype"])
            count = int(np.prod(spec["shape"])) if spec["shape"] else 1
            a = np.frombuffer(body, dtype=dt, count=count, offset=start + spec["offset"])
            arrays[spec["name"]] = torch.from_numpy(a.reshape(spec["shape"]).copy())
    except (ValueError, KeyError, TypeError) as exc:
        raise DataLoss(f"sketch snapshot header is invalid: {exc}") from exc
    return header, arrays
