"""Python client of the NWS sketch service: ``SketchClient(target)``; numpy in, numpy out.

Needs neither torch nor the server package. See :mod:`nws_client.client` for fork safety, retries
and what happens when the server cannot be reached.
"""

from nws_client.client import SERVICE_CONFIG, OnUnavailable, SketchClient
from nws_client.errors import (
    AlreadyExists,
    Cancelled,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    NWSClientError,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from nws_client.results import (
    ClientInfo,
    ClientStats,
    SampleResult,
    ScoreResult,
    ServerStats,
    SketchConfig,
    SketchInfo,
    SketchStats,
    Stats,
    UpdateResult,
)

__all__ = [
    "SERVICE_CONFIG",
    "AlreadyExists",
    "Cancelled",
    "ClientStats",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "NWSClientError",
    "NotFound",
    "OnUnavailable",
    "PermissionDenied",
    "ResourceExhausted",
    "SampleResult",
    "ScoreResult",
    "ServerStats",
    "SketchClient",
    "SketchConfig",
    "ClientInfo",
    "SketchInfo",
    "SketchStats",
    "Stats",
    "Unauthenticated",
    "Unavailable",
    "UpdateResult",
]
