"""One error hierarchy for the core; each class carries its status, and each transport reads it.

The engine, the policy and the sketch registry raise only these. Every class names its status
once: ``code`` (the gRPC status name, which is also the ``code`` field of a REST error body) and
``http_status``. The gRPC servicer (``grpc.StatusCode[cls.code]``) and the REST app
(``cls.http_status``) derive their tables from them; nothing in the core imports grpc or fastapi.
"""

from __future__ import annotations


class NWSError(Exception):
    """Root of every error the NWS core raises."""

    #: The gRPC status name (``grpc.StatusCode[code]``); REST error bodies carry it as ``code``.
    code: str = "INTERNAL"
    #: The HTTP status the REST app answers with.
    http_status: int = 500


class InvalidArgument(NWSError, ValueError):
    """The request is malformed: wrong shape, dtype, non-finite values, bad config, ..."""

    code = "INVALID_ARGUMENT"
    http_status = 400


class NotFound(NWSError, KeyError):
    """A named sketch does not exist."""

    code = "NOT_FOUND"
    http_status = 404

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class AlreadyExists(NWSError):
    """A sketch of that name exists with a different configuration."""

    code = "ALREADY_EXISTS"
    http_status = 409


class ResourceExhausted(NWSError):
    """A batch, message or sketch count is over a configured limit."""

    code = "RESOURCE_EXHAUSTED"
    http_status = 413


class FailedPrecondition(NWSError):
    """The operation is valid but not in the sketch's current state (e.g. re-centering)."""

    code = "FAILED_PRECONDITION"
    http_status = 400


class Unavailable(NWSError):
    """A dependency (the state store) cannot be reached right now; retrying may help."""

    code = "UNAVAILABLE"
    http_status = 503


class Unauthenticated(NWSError):
    """Missing or wrong credentials."""

    code = "UNAUTHENTICATED"
    http_status = 401


class DataLoss(NWSError):
    """Persisted state failed its checksum or could not be parsed."""

    code = "DATA_LOSS"
    http_status = 500


def status_class(exc: BaseException) -> type[NWSError] | None:
    """The NWS error class an exception answers as (its nearest in the MRO), or None."""
    return next((c for c in type(exc).__mro__ if issubclass(c, NWSError)), None)
