"""The bytes the server keeps in its state store: journal records and snapshots (no pickle).

One container format for both: ``b"NWSR"``, a little-endian ``u32`` format version, a ``u32``
header length, a UTF-8 JSON header (an object with ``"op"`` and the fields of that op, and
``"arrays"``: the name, dtype and shape of each raw array that follows), the arrays' raw
little-endian bytes in that order, and a ``u32`` CRC-32 of everything before it. Only the dtypes
of :data:`DTYPES` are accepted, and the sizes must add up exactly, so a damaged or truncated
record is detected and raises :class:`~nws_core.errors.DataLoss`.

The ops (one journal record per accepted mutation, in the order the sketch's lock applied them):

* ``create``: ``config`` (the requested :class:`SketchConfig` as a dict), ``warmup``,
  ``created_at``.
* ``update``: ``request_id``; arrays ``embeddings`` (``<f4`` [n, dim], after validation) and
  ``values`` (``<f8`` [n]).
* ``decay``: ``factor``, ``request_id`` (empty or absent: none).
* ``set_center``: ``request_id`` (empty or absent: none); array ``center`` (``<f4`` [dim]).
* ``merge``: ``request_id``; array ``sketch`` (``|u1``: the added sketch's
  :meth:`NWSketch.serialize` bytes, whole, since the source may change before a replay).
* ``delete``: nothing; the sketch's earlier records and snapshot no longer count.
* ``snapshot`` (the snapshot's payload, not a journal record): ``requested``, ``warmup``,
  ``created_at``, ``sampled``, ``accepted``, ``applied`` (the idempotency window as
  ``[request_id, observations]`` pairs, oldest first: the ids of updates, decays,
  center settings and merges); array ``sketch`` (``|u1``: the engine's own
  checksummed :meth:`NWSketch.serialize` bytes).
* ``import``: a journal record with the fields and array of a ``snapshot``: the sketch's whole
  state, as restored by ``ImportSketch`` (it replaces whatever the sketch held before).
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nws_core.errors import DataLoss

MAGIC = b"NWSR"
VERSION = 1
OPS = ("create", "update", "decay", "set_center", "merge", "delete", "snapshot", "import")
DTYPES = ("<f4", "<f8", "|u1")
_HEAD = struct.Struct("<4sII")  # magic, version, header length
_CRC = struct.Struct("<I")


@dataclass
class Record:
    """A decoded record: its op, its JSON fields and its arrays."""

    op: str
    fields: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def encode(op: str, fields: dict[str, Any] | None = None, **arrays: np.ndarray) -> bytes:
    """The bytes of one record (see the module docstring)."""
    if op not in OPS:
        raise ValueError(f"unknown record op {op!r}")
    specs, chunks = [], []
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        dtype = a.dtype.newbyteorder("<").str
        if dtype not in DTYPES:
            raise ValueError(f"array {name!r} has unsupported dtype {a.dtype}")
        specs.append({"name": name, "dtype": dtype, "shape": list(a.shape)})
        chunks.append(a.astype(dtype, copy=False).tobytes())
    header = {**(fields or {}), "op": op, "arrays": specs}
    head = json.dumps(header, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()
    body = b"".join([_HEAD.pack(MAGIC, VERSION, len(head)), head, *chunks])
    return body + _CRC.pack(zlib.crc32(body))


def decode(data: bytes) -> Record:
    """Inverse of :func:`encode`; raises :class:`DataLoss` on any damage."""
    data = bytes(data)
    if len(data) < _HEAD.size + _CRC.size:
        raise DataLoss("record is truncated")
    body = data[: -_CRC.size]
    (crc,) = _CRC.unpack_from(data, len(body))
    if zlib.crc32(body) != crc:
        raise DataLoss("record failed its checksum")
    magic, version, head_len = _HEAD.unpack_from(body)
    if magic != MAGIC:
        raise DataLoss("not an NWS record (bad magic)")
    if version != VERSION:
        raise DataLoss(f"unsupported record format version {version} (this server: {VERSION})")
    start = _HEAD.size + head_len
    try:
        header = json.loads(body[_HEAD.size : start])
        if not isinstance(header, dict) or header.get("op") not in OPS:
            raise ValueError("the header is not an object with a known op")
        arrays: dict[str, np.ndarray] = {}
        offset = start
        for spec in header.pop("arrays"):
            if spec["dtype"] not in DTYPES:
                raise ValueError(f"unsupported dtype {spec['dtype']!r}")
            dtype = np.dtype(spec["dtype"])
            shape = tuple(int(s) for s in spec["shape"])
            count = int(np.prod(shape)) if shape else 1
            nbytes = count * dtype.itemsize
            if min(shape, default=0) < 0 or offset + nbytes > len(body):
                raise ValueError(f"array {spec['name']!r} runs past the end of the record")
            a = np.frombuffer(body, dtype=dtype, count=count, offset=offset).reshape(shape)
            arrays[str(spec["name"])] = a.copy()
            offset += nbytes
        if offset != len(body):
            raise ValueError(f"{len(body) - offset} unexpected bytes after the arrays")
    except (ValueError, KeyError, TypeError) as exc:
        raise DataLoss(f"record header is invalid: {exc}") from exc
    op = header.pop("op")
    return Record(op=op, fields=header, arrays=arrays)
