import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    DTYPE_FLOAT32: _ClassVar[DType]
    DTYPE_FLOAT16: _ClassVar[DType]
    DTYPE_BFLOAT16: _ClassVar[DType]

class Estimator(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ESTIMATOR_UNSPECIFIED: _ClassVar[Estimator]
    ESTIMATOR_MEAN: _ClassVar[Estimator]
    ESTIMATOR_MEDIAN_OF_MEANS: _ClassVar[Estimator]

class Accumulator(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACCUMULATOR_UNSPECIFIED: _ClassVar[Accumulator]
    ACCUMULATOR_FLOAT64: _ClassVar[Accumulator]
    ACCUMULATOR_FLOAT32: _ClassVar[Accumulator]
DTYPE_UNSPECIFIED: DType
DTYPE_FLOAT32: DType
DTYPE_FLOAT16: DType
DTYPE_BFLOAT16: DType
ESTIMATOR_UNSPECIFIED: Estimator
ESTIMATOR_MEAN: Estimator
ESTIMATOR_MEDIAN_OF_MEANS: Estimator
ACCUMULATOR_UNSPECIFIED: Accumulator
ACCUMULATOR_FLOAT64: Accumulator
ACCUMULATOR_FLOAT32: Accumulator

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "data")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    dtype: DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, dtype: _Optional[_Union[DType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class SketchConfig(_message.Message):
    __slots__ = ("dim", "rows", "bits", "seed", "estimator", "groups", "prior", "decay", "pool", "buckets", "accumulator", "center")
    DIM_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    BITS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    ESTIMATOR_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    PRIOR_FIELD_NUMBER: _ClassVar[int]
    DECAY_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    ACCUMULATOR_FIELD_NUMBER: _ClassVar[int]
    CENTER_FIELD_NUMBER: _ClassVar[int]
    dim: int
    rows: int
    bits: int
    seed: int
    estimator: Estimator
    groups: int
    prior: float
    decay: float
    pool: int
    buckets: int
    accumulator: Accumulator
    center: Tensor
    def __init__(self, dim: _Optional[int] = ..., rows: _Optional[int] = ..., bits: _Optional[int] = ..., seed: _Optional[int] = ..., estimator: _Optional[_Union[Estimator, str]] = ..., groups: _Optional[int] = ..., prior: _Optional[float] = ..., decay: _Optional[float] = ..., pool: _Optional[int] = ..., buckets: _Optional[int] = ..., accumulator: _Optional[_Union[Accumulator, str]] = ..., center: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class SketchStats(_message.Message):
    __slots__ = ("observations", "total_weight", "mean_value", "occupancy", "bytes", "estimates", "prior_hits", "prior_hit_rate", "updates", "sampled", "accepted", "acceptance_rate", "updates_per_second", "observations_per_second", "in_warmup", "keep_ratio", "priority_cv", "variance_factor")
    OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    MEAN_VALUE_FIELD_NUMBER: _ClassVar[int]
    OCCUPANCY_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    ESTIMATES_FIELD_NUMBER: _ClassVar[int]
    PRIOR_HITS_FIELD_NUMBER: _ClassVar[int]
    PRIOR_HIT_RATE_FIELD_NUMBER: _ClassVar[int]
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    SAMPLED_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    ACCEPTANCE_RATE_FIELD_NUMBER: _ClassVar[int]
    UPDATES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    OBSERVATIONS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    IN_WARMUP_FIELD_NUMBER: _ClassVar[int]
    KEEP_RATIO_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_CV_FIELD_NUMBER: _ClassVar[int]
    VARIANCE_FACTOR_FIELD_NUMBER: _ClassVar[int]
    observations: int
    total_weight: float
    mean_value: float
    occupancy: float
    bytes: int
    estimates: int
    prior_hits: int
    prior_hit_rate: float
    updates: int
    sampled: int
    accepted: int
    acceptance_rate: float
    updates_per_second: float
    observations_per_second: float
    in_warmup: bool
    keep_ratio: float
    priority_cv: float
    variance_factor: float
    def __init__(self, observations: _Optional[int] = ..., total_weight: _Optional[float] = ..., mean_value: _Optional[float] = ..., occupancy: _Optional[float] = ..., bytes: _Optional[int] = ..., estimates: _Optional[int] = ..., prior_hits: _Optional[int] = ..., prior_hit_rate: _Optional[float] = ..., updates: _Optional[int] = ..., sampled: _Optional[int] = ..., accepted: _Optional[int] = ..., acceptance_rate: _Optional[float] = ..., updates_per_second: _Optional[float] = ..., observations_per_second: _Optional[float] = ..., in_warmup: _Optional[bool] = ..., keep_ratio: _Optional[float] = ..., priority_cv: _Optional[float] = ..., variance_factor: _Optional[float] = ...) -> None: ...

class Sketch(_message.Message):
    __slots__ = ("name", "config", "warmup", "device", "create_time", "stats", "digest")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    WARMUP_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    name: str
    config: SketchConfig
    warmup: int
    device: str
    create_time: _timestamp_pb2.Timestamp
    stats: SketchStats
    digest: str
    def __init__(self, name: _Optional[str] = ..., config: _Optional[_Union[SketchConfig, _Mapping]] = ..., warmup: _Optional[int] = ..., device: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stats: _Optional[_Union[SketchStats, _Mapping]] = ..., digest: _Optional[str] = ...) -> None: ...

class CreateSketchRequest(_message.Message):
    __slots__ = ("name", "config", "warmup")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    WARMUP_FIELD_NUMBER: _ClassVar[int]
    name: str
    config: SketchConfig
    warmup: int
    def __init__(self, name: _Optional[str] = ..., config: _Optional[_Union[SketchConfig, _Mapping]] = ..., warmup: _Optional[int] = ...) -> None: ...

class CreateSketchResponse(_message.Message):
    __slots__ = ("sketch", "created")
    SKETCH_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    sketch: Sketch
    created: bool
    def __init__(self, sketch: _Optional[_Union[Sketch, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class GetSketchRequest(_message.Message):
    __slots__ = ("name", "include_digest")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    name: str
    include_digest: bool
    def __init__(self, name: _Optional[str] = ..., include_digest: _Optional[bool] = ...) -> None: ...

class ListSketchesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSketchesResponse(_message.Message):
    __slots__ = ("sketches",)
    SKETCHES_FIELD_NUMBER: _ClassVar[int]
    sketches: _containers.RepeatedCompositeFieldContainer[Sketch]
    def __init__(self, sketches: _Optional[_Iterable[_Union[Sketch, _Mapping]]] = ...) -> None: ...

class DeleteSketchRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteSketchResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("name", "embeddings")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    name: str
    embeddings: Tensor
    def __init__(self, name: _Optional[str] = ..., embeddings: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("estimates", "prior_used", "support")
    ESTIMATES_FIELD_NUMBER: _ClassVar[int]
    PRIOR_USED_FIELD_NUMBER: _ClassVar[int]
    SUPPORT_FIELD_NUMBER: _ClassVar[int]
    estimates: _containers.RepeatedScalarFieldContainer[float]
    prior_used: _containers.RepeatedScalarFieldContainer[bool]
    support: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, estimates: _Optional[_Iterable[float]] = ..., prior_used: _Optional[_Iterable[bool]] = ..., support: _Optional[_Iterable[float]] = ...) -> None: ...

class SampleRequest(_message.Message):
    __slots__ = ("name", "embeddings", "ratio", "p_min", "seed", "power", "rank", "baseline_quantile", "temper", "auto_ratio", "ratio_min", "auto_threshold", "policy", "prune_rate")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    RATIO_FIELD_NUMBER: _ClassVar[int]
    P_MIN_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    POWER_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    BASELINE_QUANTILE_FIELD_NUMBER: _ClassVar[int]
    TEMPER_FIELD_NUMBER: _ClassVar[int]
    AUTO_RATIO_FIELD_NUMBER: _ClassVar[int]
    RATIO_MIN_FIELD_NUMBER: _ClassVar[int]
    AUTO_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    PRUNE_RATE_FIELD_NUMBER: _ClassVar[int]
    name: str
    embeddings: Tensor
    ratio: float
    p_min: float
    seed: int
    power: float
    rank: bool
    baseline_quantile: float
    temper: float
    auto_ratio: bool
    ratio_min: float
    auto_threshold: float
    policy: str
    prune_rate: float
    def __init__(self, name: _Optional[str] = ..., embeddings: _Optional[_Union[Tensor, _Mapping]] = ..., ratio: _Optional[float] = ..., p_min: _Optional[float] = ..., seed: _Optional[int] = ..., power: _Optional[float] = ..., rank: _Optional[bool] = ..., baseline_quantile: _Optional[float] = ..., temper: _Optional[float] = ..., auto_ratio: _Optional[bool] = ..., ratio_min: _Optional[float] = ..., auto_threshold: _Optional[float] = ..., policy: _Optional[str] = ..., prune_rate: _Optional[float] = ...) -> None: ...

class SampleResponse(_message.Message):
    __slots__ = ("accepted", "weights", "probabilities", "estimates", "prior_used", "warmup", "ratio", "cv", "variance_factor")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    ESTIMATES_FIELD_NUMBER: _ClassVar[int]
    PRIOR_USED_FIELD_NUMBER: _ClassVar[int]
    WARMUP_FIELD_NUMBER: _ClassVar[int]
    RATIO_FIELD_NUMBER: _ClassVar[int]
    CV_FIELD_NUMBER: _ClassVar[int]
    VARIANCE_FACTOR_FIELD_NUMBER: _ClassVar[int]
    accepted: _containers.RepeatedScalarFieldContainer[bool]
    weights: _containers.RepeatedScalarFieldContainer[float]
    probabilities: _containers.RepeatedScalarFieldContainer[float]
    estimates: _containers.RepeatedScalarFieldContainer[float]
    prior_used: _containers.RepeatedScalarFieldContainer[bool]
    warmup: bool
    ratio: float
    cv: float
    variance_factor: float
    def __init__(self, accepted: _Optional[_Iterable[bool]] = ..., weights: _Optional[_Iterable[float]] = ..., probabilities: _Optional[_Iterable[float]] = ..., estimates: _Optional[_Iterable[float]] = ..., prior_used: _Optional[_Iterable[bool]] = ..., warmup: _Optional[bool] = ..., ratio: _Optional[float] = ..., cv: _Optional[float] = ..., variance_factor: _Optional[float] = ...) -> None: ...

class UpdateRequest(_message.Message):
    __slots__ = ("name", "embeddings", "values", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    embeddings: Tensor
    values: _containers.RepeatedScalarFieldContainer[float]
    request_id: str
    def __init__(self, name: _Optional[str] = ..., embeddings: _Optional[_Union[Tensor, _Mapping]] = ..., values: _Optional[_Iterable[float]] = ..., request_id: _Optional[str] = ...) -> None: ...

class UpdateResponse(_message.Message):
    __slots__ = ("request_id", "observations", "duplicate")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    observations: int
    duplicate: bool
    def __init__(self, request_id: _Optional[str] = ..., observations: _Optional[int] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class UpdateAck(_message.Message):
    __slots__ = ("request_id", "code", "message", "observations", "duplicate")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    code: int
    message: str
    observations: int
    duplicate: bool
    def __init__(self, request_id: _Optional[str] = ..., code: _Optional[int] = ..., message: _Optional[str] = ..., observations: _Optional[int] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class DecayRequest(_message.Message):
    __slots__ = ("name", "factor", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FACTOR_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    factor: float
    request_id: str
    def __init__(self, name: _Optional[str] = ..., factor: _Optional[float] = ..., request_id: _Optional[str] = ...) -> None: ...

class MergeSketchRequest(_message.Message):
    __slots__ = ("name", "source", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    source: str
    request_id: str
    def __init__(self, name: _Optional[str] = ..., source: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class SetCenterRequest(_message.Message):
    __slots__ = ("name", "center", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CENTER_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    center: Tensor
    request_id: str
    def __init__(self, name: _Optional[str] = ..., center: _Optional[_Union[Tensor, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ServerStats(_message.Message):
    __slots__ = ("version", "device", "start_time", "uptime_seconds", "sketches", "micro_batching", "store", "restored_sketches", "replayed_records")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SKETCHES_FIELD_NUMBER: _ClassVar[int]
    MICRO_BATCHING_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    RESTORED_SKETCHES_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_RECORDS_FIELD_NUMBER: _ClassVar[int]
    version: str
    device: str
    start_time: _timestamp_pb2.Timestamp
    uptime_seconds: float
    sketches: int
    micro_batching: bool
    store: str
    restored_sketches: int
    replayed_records: int
    def __init__(self, version: _Optional[str] = ..., device: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., uptime_seconds: _Optional[float] = ..., sketches: _Optional[int] = ..., micro_batching: _Optional[bool] = ..., store: _Optional[str] = ..., restored_sketches: _Optional[int] = ..., replayed_records: _Optional[int] = ...) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("server", "sketches")
    class SketchesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: SketchStats
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[SketchStats, _Mapping]] = ...) -> None: ...
    SERVER_FIELD_NUMBER: _ClassVar[int]
    SKETCHES_FIELD_NUMBER: _ClassVar[int]
    server: ServerStats
    sketches: _containers.MessageMap[str, SketchStats]
    def __init__(self, server: _Optional[_Union[ServerStats, _Mapping]] = ..., sketches: _Optional[_Mapping[str, SketchStats]] = ...) -> None: ...

class SnapshotRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class SnapshotResult(_message.Message):
    __slots__ = ("name", "seq", "written")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    WRITTEN_FIELD_NUMBER: _ClassVar[int]
    name: str
    seq: int
    written: bool
    def __init__(self, name: _Optional[str] = ..., seq: _Optional[int] = ..., written: _Optional[bool] = ...) -> None: ...

class SnapshotResponse(_message.Message):
    __slots__ = ("sketches",)
    SKETCHES_FIELD_NUMBER: _ClassVar[int]
    sketches: _containers.RepeatedCompositeFieldContainer[SnapshotResult]
    def __init__(self, sketches: _Optional[_Iterable[_Union[SnapshotResult, _Mapping]]] = ...) -> None: ...

class ExportSketchRequest(_message.Message):
    __slots__ = ("name", "chunk_bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    chunk_bytes: int
    def __init__(self, name: _Optional[str] = ..., chunk_bytes: _Optional[int] = ...) -> None: ...

class SketchChunk(_message.Message):
    __slots__ = ("data", "total_bytes")
    DATA_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    total_bytes: int
    def __init__(self, data: _Optional[bytes] = ..., total_bytes: _Optional[int] = ...) -> None: ...

class ImportSketchRequest(_message.Message):
    __slots__ = ("name", "replace", "data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    replace: bool
    data: bytes
    def __init__(self, name: _Optional[str] = ..., replace: _Optional[bool] = ..., data: _Optional[bytes] = ...) -> None: ...

class ImportSketchResponse(_message.Message):
    __slots__ = ("sketch", "replaced")
    SKETCH_FIELD_NUMBER: _ClassVar[int]
    REPLACED_FIELD_NUMBER: _ClassVar[int]
    sketch: Sketch
    replaced: bool
    def __init__(self, sketch: _Optional[_Union[Sketch, _Mapping]] = ..., replaced: _Optional[bool] = ...) -> None: ...
