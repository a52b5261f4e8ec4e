"""The client's gRPC channel: which methods gRPC retries, and the channel's options.

UNAVAILABLE is retried by gRPC itself (gRFC A6) for the methods that are safe to retry
(:data:`RETRIED_METHODS`), as declared in the channel's service config (:data:`SERVICE_CONFIG`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import grpc

SERVICE = "nws.v1.SketchService"

#: Methods whose UNAVAILABLE is retried (gRFC A6): those that only read, CreateSketch (idempotent:
#: a retry finds the sketch it created and answers ``created`` False), Snapshot (writes the
#: current state again at most), and the mutations that carry a request id the server
#: deduplicates, also across a restart (Update, StreamUpdates, Decay, SetCenter, MergeSketch: the
#: client makes one fresh id per call, and a retry resends the same request bytes, so the same id).
RETRIED_METHODS = (
    "CreateSketch",
    "GetSketch",
    "ListSketches",
    "Score",
    "Sample",
    "Update",
    "StreamUpdates",
    "Decay",
    "SetCenter",
    "MergeSketch",
    "Stats",
    "Snapshot",
    "ExportSketch",
)
#: Mutations without a request id, never retried: a retry after a lost reply would find the
#: change applied and report an error (NOT_FOUND, ALREADY_EXISTS) for a call that succeeded.
#: Their UNAVAILABLE reaches the caller, who can check the sketch (get / list) and call again.
NOT_RETRIED_METHODS = ("DeleteSketch", "ImportSketch")

#: Retries declared to gRPC: UNAVAILABLE of the :data:`RETRIED_METHODS` is retried with
#: exponential backoff within the call's deadline. The other methods get no retry policy (gRPC
#: still transparently retries a call that never reached the server's application).
SERVICE_CONFIG = {
    "methodConfig": [
        {
            "name": [{"service": SERVICE, "method": method} for method in RETRIED_METHODS],
            "retryPolicy": {
                "maxAttempts": 5,
                "initialBackoff": "0.05s",
                "maxBackoff": "1s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ]
}


def channel_options(
    max_message_bytes: int, extra: Sequence[tuple[str, Any]] = ()
) -> list[tuple[str, Any]]:
    """The options of every channel the client makes (``extra`` last: they win)."""
    return [
        ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
        ("grpc.enable_retries", 1),
        # A channel of its own, never a subchannel shared through the global pool (which a
        # forked child would otherwise inherit from its parent).
        ("grpc.use_local_subchannel_pool", 1),
        # Notice a restarted server within seconds (gRPC's default waits up to 2 minutes).
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 2000),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        *extra,
    ]


def open_channel(
    target: str, options: Sequence[tuple[str, Any]], *, tls: bool, roots: bytes | None
) -> grpc.Channel:
    """A plaintext channel, or with ``tls`` one verified against ``roots`` (None: the system's
    root certificates)."""
    if tls:
        return grpc.secure_channel(target, grpc.ssl_channel_credentials(roots), options=options)
    return grpc.insecure_channel(target, options=options)
