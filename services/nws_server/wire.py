"""Conversions between the wire messages of ``nws.v1`` and the core's types (server side).

Only shapes of data change here; the rules (dims, finiteness, limits) live in the core and the
engine. A packed tensor whose byte count does not match its shape and dtype is rejected here,
since only the wire format knows what the bytes mean.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime
from typing import Any

import numpy as np
import torch
from google.protobuf.timestamp_pb2 import Timestamp
from nws.v1 import sketch_pb2 as pb

from nws_core.errors import InvalidArgument
from nws_core.keep_ratio import DEFAULT_RATIO_MIN, DEFAULT_THRESHOLD, AutoRatio
from nws_core.prune import DEFAULT_PRUNE_RATE, PRUNE, Prune, check_policy
from nws_core.sketch import SketchConfig
from nws_server.results import Info, ServerInfo, SketchStats

# little-endian element type on the wire -> (numpy dtype to read it, torch dtype it becomes)
_DTYPES: dict[int, tuple[str, torch.dtype]] = {
    pb.DTYPE_FLOAT32: ("<f4", torch.float32),
    pb.DTYPE_FLOAT16: ("<f2", torch.float16),
    pb.DTYPE_BFLOAT16: ("<i2", torch.bfloat16),  # numpy has no bfloat16: read the raw bits
}
_MAX_RANK = 8  # of a packed tensor's shape
_MAX_EXTENT = 2**31 - 1  # of one of its dims
_ESTIMATORS = {
    pb.ESTIMATOR_UNSPECIFIED: "mean",
    pb.ESTIMATOR_MEAN: "mean",
    pb.ESTIMATOR_MEDIAN_OF_MEANS: "median_of_means",
}
_ACCUMULATORS = {
    pb.ACCUMULATOR_UNSPECIFIED: "float64",
    pb.ACCUMULATOR_FLOAT64: "float64",
    pb.ACCUMULATOR_FLOAT32: "float32",
}


def tensor_from_proto(msg: pb.Tensor, name: str) -> torch.Tensor:
    """The tensor a packed message describes (a fresh CPU tensor in native byte order)."""
    if msg.dtype not in _DTYPES:
        raise InvalidArgument(
            f"{name}.dtype must be DTYPE_FLOAT32, DTYPE_FLOAT16 or DTYPE_BFLOAT16, got "
            f"{pb.DType.Name(msg.dtype) if msg.dtype in pb.DType.values() else msg.dtype}"
        )
    wire_dtype, torch_dtype = _DTYPES[msg.dtype]
    shape = [int(s) for s in msg.shape]
    if len(shape) > _MAX_RANK or any(s > _MAX_EXTENT for s in shape):
        # numpy cannot even describe it (and no dim or row count comes close)
        raise InvalidArgument(
            f"{name}: shape {shape} is out of range (at most {_MAX_RANK} dims, each < 2**31)"
        )
    itemsize = np.dtype(wire_dtype).itemsize
    expected = math.prod(shape) * itemsize
    if len(msg.data) != expected:
        raise InvalidArgument(
            f"{name}: shape {shape} of {pb.DType.Name(msg.dtype)} needs {expected} bytes, "
            f"got {len(msg.data)}"
        )
    native = np.frombuffer(msg.data, dtype=wire_dtype).astype(wire_dtype[1:], copy=True)
    t = torch.from_numpy(native.reshape(shape))
    return t.view(torch.bfloat16) if torch_dtype == torch.bfloat16 else t


def tensor_to_proto(t: torch.Tensor | np.ndarray) -> pb.Tensor:
    """A float32 packed message (used for centers in configs)."""
    a = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
    a = np.ascontiguousarray(a, dtype="<f4")
    return pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=list(a.shape), data=a.tobytes())


def config_from_proto(msg: pb.SketchConfig) -> SketchConfig:
    """Engine config from the message; unset optional fields take the engine's defaults."""
    if msg.estimator not in _ESTIMATORS:
        raise InvalidArgument(f"config.estimator: unknown value {msg.estimator}")
    if msg.accumulator not in _ACCUMULATORS:
        raise InvalidArgument(f"config.accumulator: unknown value {msg.accumulator}")
    kwargs: dict[str, Any] = {
        "dim": msg.dim,
        "seed": msg.seed,
        "estimator": _ESTIMATORS[msg.estimator],
        "accumulator": _ACCUMULATORS[msg.accumulator],
    }
    for field in ("rows", "bits", "groups", "prior", "decay", "pool", "buckets"):
        if msg.HasField(field):
            kwargs[field] = getattr(msg, field)
    if msg.HasField("center"):
        center = tensor_from_proto(msg.center, "config.center").reshape(-1)
        kwargs["center"] = tuple(float(v) for v in center.to(torch.float32).tolist())
    return SketchConfig(**kwargs)


def config_to_proto(config: SketchConfig) -> pb.SketchConfig:
    msg = pb.SketchConfig(
        dim=config.dim,
        rows=config.rows,
        bits=config.bits,
        seed=config.seed,
        estimator=(
            pb.ESTIMATOR_MEDIAN_OF_MEANS
            if config.estimator == "median_of_means"
            else pb.ESTIMATOR_MEAN
        ),
        groups=config.groups,
        decay=config.decay,
        accumulator=(
            pb.ACCUMULATOR_FLOAT32 if config.accumulator == "float32" else pb.ACCUMULATOR_FLOAT64
        ),
    )
    for field in ("prior", "pool", "buckets"):
        value = getattr(config, field)
        if value is not None:
            setattr(msg, field, value)
    if config.center is not None:
        msg.center.CopyFrom(tensor_to_proto(np.asarray(config.center, dtype=np.float32)))
    return msg


def auto_ratio_from_proto(msg: pb.SampleRequest) -> AutoRatio | None:
    """The automatic keep ratio's settings of a Sample request; None without auto_ratio (then
    ratio_min and auto_threshold must be unset)."""
    if not msg.auto_ratio:
        for field in ("ratio_min", "auto_threshold"):
            if msg.HasField(field):
                raise InvalidArgument(f"{field} applies only with auto_ratio = true")
        return None
    return AutoRatio(
        ratio_min=msg.ratio_min if msg.HasField("ratio_min") else DEFAULT_RATIO_MIN,
        threshold=msg.auto_threshold if msg.HasField("auto_threshold") else DEFAULT_THRESHOLD,
    )


def prune_from_proto(msg: pb.SampleRequest) -> Prune | None:
    """The ``prune`` policy's settings of a Sample request; None for the importance policy (then
    prune_rate must be unset)."""
    if check_policy(msg.policy) != PRUNE:
        if msg.HasField("prune_rate"):
            raise InvalidArgument("prune_rate applies only with policy 'prune'")
        return None
    return Prune(msg.prune_rate if msg.HasField("prune_rate") else DEFAULT_PRUNE_RATE)


def stats_to_proto(s: SketchStats) -> pb.SketchStats:
    """Every field of the API type, by name (tests/unit/test_api_types.py keeps the two sets
    equal); an optional field left None stays unset."""
    values = {f.name: getattr(s, f.name) for f in dataclasses.fields(s)}
    return pb.SketchStats(**{k: v for k, v in values.items() if v is not None})


def info_to_proto(info: Info) -> pb.Sketch:
    return pb.Sketch(
        name=info.name,
        config=config_to_proto(info.config),
        warmup=info.warmup,
        device=info.device,
        create_time=_datetime_timestamp(info.created_at),
        stats=stats_to_proto(info.stats),
        digest=info.digest or "",
    )


def server_to_proto(info: ServerInfo, version: str) -> pb.ServerStats:
    return pb.ServerStats(
        version=version,
        device=info.device,
        start_time=_timestamp(info.started_at),
        uptime_seconds=info.uptime_seconds,
        sketches=info.sketches,
        micro_batching=info.micro_batching,
        store=info.store,
        restored_sketches=info.restored_sketches,
        replayed_records=info.replayed_records,
    )


def values_from_proto(values: Any) -> np.ndarray:
    """A repeated double field as a float64 array."""
    return np.array(values, dtype=np.float64)


def _datetime_timestamp(at: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(at)  # exact to the microsecond, like the REST answer's create_time
    return ts


def _timestamp(unix: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(unix * 1e9))
    return ts
