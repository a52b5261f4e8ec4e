"""numpy <-> ``nws.v1`` messages, on the client side (no torch)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import Any, Literal

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp
from nws.v1 import sketch_pb2 as pb

from nws_client.errors import InvalidArgument
from nws_client.results import (
    ClientInfo,
    SampleResult,
    ScoreResult,
    ServerStats,
    SketchConfig,
    SketchInfo,
    SketchStats,
    UpdateResult,
)

WireDType = Literal["float32", "float16", "bfloat16"]
WIRE_DTYPES: tuple[WireDType, ...] = ("float32", "float16", "bfloat16")

_ESTIMATORS = {"mean": pb.ESTIMATOR_MEAN, "median_of_means": pb.ESTIMATOR_MEDIAN_OF_MEANS}
_ACCUMULATORS = {"float64": pb.ACCUMULATOR_FLOAT64, "float32": pb.ACCUMULATOR_FLOAT32}


Policy = Literal["importance", "prune"]


def is_prune(policy: str, ratio: object) -> bool:
    """Whether a Sample request is for the prune policy; a request for importance sampling
    needs a ratio. An unknown policy name goes to the server, which names it in its error."""
    if policy != "prune" and ratio is None:
        raise InvalidArgument(f"ratio is required with policy {policy!r}")
    return policy == "prune"


def set_policy(request: pb.SampleRequest, policy: str, prune_rate: float | None) -> None:
    """Fill the policy fields of a Sample request (the server validates them)."""
    if policy != "importance":
        request.policy = policy
    if prune_rate is not None:
        request.prune_rate = prune_rate


def set_optional(request: Any, **fields: float | int | None) -> None:
    """Set the optional fields of a request that are not None (unset: the server's default)."""
    for name, value in fields.items():
        if value is not None:
            setattr(request, name, value)


def sample_from_proto(msg: pb.SampleResponse, ratio: float) -> SampleResult:
    """The answer to a Sample request made with ``ratio`` (0: unset, the server chose)."""
    return SampleResult(
        accepted=np.array(msg.accepted, dtype=bool),
        weights=np.array(msg.weights, dtype=np.float64),
        probabilities=np.array(msg.probabilities, dtype=np.float64),
        estimates=np.array(msg.estimates, dtype=np.float64),
        prior_used=np.array(msg.prior_used, dtype=bool),
        warmup=msg.warmup,
        # a server from before the automatic ratio answers 0: the ratio it drew with
        ratio=msg.ratio or (1.0 if msg.warmup else ratio),
        cv=msg.cv,
        variance_factor=msg.variance_factor or 1.0,
    )


def server_from_proto(msg: pb.ServerStats) -> ServerStats:
    fields = {
        f.name: getattr(msg, f.name)
        for f in dataclasses.fields(ServerStats)
        if f.name != "started_at"
    }
    return ServerStats(started_at=timestamp(msg.start_time), **fields)


def as_batch(embeddings: Any, name: str = "embeddings") -> np.ndarray:
    """A 2-D float array; anything array-like (lists, numpy, CPU torch tensors) is accepted."""
    a = np.asarray(embeddings)
    if a.ndim != 2:
        raise InvalidArgument(
            f"{name} must be a 2-D [n, dim] array (one row per example; a single example is "
            f"x[None, :]), got shape {list(a.shape)}"
        )
    if a.dtype.kind != "f" and a.dtype.name != "bfloat16":
        raise InvalidArgument(f"{name} must be floats, got dtype {a.dtype}")
    return a


def as_values(values: Any, n: int) -> np.ndarray:
    v = np.asarray(values)
    if v.ndim != 1 or v.shape[0] != n:
        raise InvalidArgument(f"values must have shape [{n}] (one per row), got {list(v.shape)}")
    if v.dtype.kind not in "fiu":
        raise InvalidArgument(f"values must be real numbers, got dtype {v.dtype}")
    return v.astype(np.float64, copy=False)


def update_request(
    name: str,
    embeddings: Any,
    values: Any,
    request_id: str,
    wire: WireDType | None,
    *,
    check_finite: bool = False,
) -> pb.UpdateRequest:
    """An Update of ``values`` at ``embeddings``; ``check_finite`` checks here what the server
    would refuse (an empty batch, non-finite numbers), for updates sent in the background."""
    x = as_batch(embeddings)
    v = as_values(values, x.shape[0])
    if check_finite:
        if x.shape[0] == 0:
            raise InvalidArgument("update needs at least one row, got an empty batch")
        if not np.isfinite(v).all():
            raise InvalidArgument("values contain non-finite numbers")
        if x.dtype.name != "bfloat16" and not np.isfinite(x).all():
            raise InvalidArgument("embeddings contain non-finite numbers")
    return pb.UpdateRequest(
        name=name, embeddings=encode_tensor(x, wire), values=v.tolist(), request_id=request_id
    )


def encode_tensor(a: np.ndarray, wire: WireDType | None = None) -> pb.Tensor:
    """Pack a float array little-endian. ``wire`` None keeps float16 / bfloat16 and sends
    other floats as float32."""
    if a.dtype.name == "bfloat16" and wire in (None, "bfloat16"):  # e.g. an ml_dtypes array
        return _packed(np.ascontiguousarray(a).view(np.uint16).astype("<u2"), pb.DTYPE_BFLOAT16)
    if wire is None:
        wire = "float16" if a.dtype == np.float16 else "float32"
    if wire == "float32":
        return _packed(np.ascontiguousarray(a, dtype="<f4"), pb.DTYPE_FLOAT32)
    if wire == "float16":
        return _packed(np.ascontiguousarray(a, dtype="<f2"), pb.DTYPE_FLOAT16)
    if wire == "bfloat16":
        return _packed(to_bfloat16_bits(a), pb.DTYPE_BFLOAT16)
    raise InvalidArgument(f"wire dtype must be one of {WIRE_DTYPES}, got {wire!r}")


def to_bfloat16_bits(a: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16, little-endian) of ``a``, rounded to nearest even."""
    f = np.ascontiguousarray(a, dtype="<f4")
    bits = f.view("<u4").astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2")
    return np.where(np.isnan(f), np.uint16(0x7FC0), rounded).astype("<u2")


def _packed(a: np.ndarray, dtype: int) -> pb.Tensor:
    return pb.Tensor(dtype=dtype, shape=a.shape, data=a.tobytes())


def config_to_proto(config: SketchConfig) -> pb.SketchConfig:
    msg = pb.SketchConfig(dim=config.dim, seed=config.seed)
    for name in ("rows", "bits", "groups", "prior", "decay", "pool", "buckets"):
        value = getattr(config, name)
        if value is not None:
            setattr(msg, name, value)
    if config.estimator is not None:
        if config.estimator not in _ESTIMATORS:
            raise InvalidArgument(f"estimator must be one of {sorted(_ESTIMATORS)}")
        msg.estimator = _ESTIMATORS[config.estimator]
    if config.accumulator is not None:
        if config.accumulator not in _ACCUMULATORS:
            raise InvalidArgument(f"accumulator must be one of {sorted(_ACCUMULATORS)}")
        msg.accumulator = _ACCUMULATORS[config.accumulator]
    if config.center is not None:
        msg.center.CopyFrom(encode_tensor(np.asarray(config.center, dtype=np.float32)))
    return msg


def config_from_proto(msg: pb.SketchConfig) -> SketchConfig:
    center = None
    if msg.HasField("center"):
        center = np.frombuffer(msg.center.data, dtype="<f4").astype(np.float32)
    return SketchConfig(
        dim=msg.dim,
        rows=msg.rows,
        bits=msg.bits,
        seed=msg.seed,
        estimator=("median_of_means" if msg.estimator == pb.ESTIMATOR_MEDIAN_OF_MEANS else "mean"),
        groups=msg.groups,
        prior=msg.prior if msg.HasField("prior") else None,
        decay=msg.decay,
        pool=msg.pool if msg.HasField("pool") else None,
        buckets=msg.buckets if msg.HasField("buckets") else None,
        accumulator="float32" if msg.accumulator == pb.ACCUMULATOR_FLOAT32 else "float64",
        center=center,
    )


def stats_from_proto(msg: pb.SketchStats) -> SketchStats:
    """Every field of the API type, by name (tests/unit/test_api_types.py keeps the two sets
    equal); an optional field the server left unset is None."""
    return SketchStats(**_fields(msg, SketchStats))


def _fields(msg: Any, cls: Any) -> dict[str, Any]:
    """The scalar fields of ``msg`` named like the fields of the dataclass ``cls`` (None for an
    unset field with presence)."""
    out = {}
    for f in dataclasses.fields(cls):
        present = not msg.DESCRIPTOR.fields_by_name[f.name].has_presence or msg.HasField(f.name)
        out[f.name] = getattr(msg, f.name) if present else None
    return out


def info_from_proto(msg: pb.Sketch, created: bool | None = None) -> ClientInfo:
    return SketchInfo(
        name=msg.name,
        config=config_from_proto(msg.config),
        warmup=msg.warmup,
        device=msg.device,
        created_at=msg.create_time.ToDatetime(tzinfo=timezone.utc),
        stats=stats_from_proto(msg.stats),
        digest=msg.digest or None,
        created=created,
    )


def score_from_proto(msg: pb.ScoreResponse) -> ScoreResult:
    return ScoreResult(
        estimates=np.array(msg.estimates, dtype=np.float64),
        prior_used=np.array(msg.prior_used, dtype=bool),
        support=np.array(msg.support, dtype=np.float64),
    )


def update_from_proto(msg: pb.UpdateResponse) -> UpdateResult:
    return UpdateResult(**_fields(msg, UpdateResult))


def timestamp(msg: Timestamp) -> datetime:
    return msg.ToDatetime(tzinfo=timezone.utc)
