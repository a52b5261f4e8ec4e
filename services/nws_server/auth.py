"""Bearer-token authentication of both front doors.

With a token configured (``--auth-token`` / ``NWS_AUTH_TOKEN``, or ``--auth-token-file``), every
gRPC call must carry the metadata ``authorization: Bearer <token>`` and every REST request the
header ``Authorization: Bearer <token>``; otherwise the call fails with UNAUTHENTICATED (HTTP 401)
before any handler runs. Open without a token: the gRPC health service and REST ``/healthz`` and
``/readyz``, so that orchestrators can probe liveness. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

import grpc

GRPC_OPEN_PREFIXES = ("/grpc.health.v1.Health/",)
REST_OPEN_PATHS = frozenset({"/healthz", "/readyz"})
UNAUTHENTICATED_MESSAGE = "missing or wrong bearer token (send 'authorization: Bearer <token>')"


class TokenCheck:
    """Whether an ``authorization`` value carries the expected bearer token."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("the auth token must not be empty")
        self._expected = f"Bearer {token}".encode()

    def __call__(self, authorization: str | None) -> bool:
        if authorization is None:
            return False
        return hmac.compare_digest(authorization.encode(), self._expected)


class AuthInterceptor(grpc.ServerInterceptor):
    """Rejects gRPC calls without the bearer token (health stays open)."""

    def __init__(self, check: TokenCheck) -> None:
        self._check = check

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        if method.startswith(GRPC_OPEN_PREFIXES):
            return continuation(handler_call_details)
        metadata = handler_call_details.invocation_metadata or ()
        token = next((str(v) for k, v in metadata if k == "authorization"), None)
        if self._check(token):
            return continuation(handler_call_details)
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        return _deny(handler)


def _deny(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    def abort(_: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort)
    return grpc.unary_unary_rpc_method_handler(abort)
