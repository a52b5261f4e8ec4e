"""One exception root for the client library, with one subclass per gRPC status code.

Every error a :class:`~nws_client.SketchClient` raises is an :class:`NWSClientError`; catch the
subclass for the case you handle (``except NotFound``) and the root for everything else. The
server's message is the exception's text; the status code is in ``.code``.
"""

from __future__ import annotations

import grpc


class NWSClientError(Exception):
    """Root of every error the NWS client raises."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, *, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class InvalidArgument(NWSClientError, ValueError):
    """The request is malformed: wrong shape, dtype, non-finite values, bad config, ..."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(NWSClientError, LookupError):
    """No sketch of that name."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(NWSClientError):
    """A sketch of that name exists with a different configuration."""

    code = grpc.StatusCode.ALREADY_EXISTS


class ResourceExhausted(NWSClientError):
    """Over a limit: rows per request, message size, sketch size or count, update buffer."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(NWSClientError):
    """Valid, but not in the sketch's current state (e.g. centering a sketch that holds data)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(NWSClientError, ConnectionError):
    """The server cannot be reached (after the retries of the service config)."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(NWSClientError, TimeoutError):
    """The call (or a flush) did not finish within its deadline."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unauthenticated(NWSClientError):
    """Missing or wrong credentials."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(NWSClientError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Cancelled(NWSClientError):
    code = grpc.StatusCode.CANCELLED


class DataLoss(NWSClientError):
    """The server found its persisted state corrupt."""

    code = grpc.StatusCode.DATA_LOSS


class Internal(NWSClientError):
    """A server bug or an unexpected failure (INTERNAL, UNKNOWN, UNIMPLEMENTED, ...)."""

    code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[NWSClientError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        ResourceExhausted,
        FailedPrecondition,
        Unavailable,
        DeadlineExceeded,
        Unauthenticated,
        PermissionDenied,
        Cancelled,
        DataLoss,
        Internal,
    )
}


def error_for(code: grpc.StatusCode, message: str) -> NWSClientError:
    """The client exception for a status code (Internal for codes without their own class)."""
    return _BY_CODE.get(code, Internal)(message, code=code)


def from_rpc_error(exc: grpc.RpcError) -> NWSClientError:
    """The client exception for a failed call."""
    code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
    return error_for(code, details or code.name)


def code_from_value(value: int) -> grpc.StatusCode:
    """The StatusCode whose number is ``value`` (as in UpdateAck.code)."""
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code
    return grpc.StatusCode.UNKNOWN
