"""One error hierarchy for the core; each transport maps it once to its own status codes.

The engine, the policy and the sketch registry raise only these. The gRPC servicer maps them to
status codes and the REST app to HTTP statuses; nothing in the core imports grpc or fastapi.
"""

from __future__ import annotations


class NWSError(Exception):
    """Root of every error the NWS core raises."""


class InvalidArgument(NWSError, ValueError):
    """The request is malformed: wrong shape, dtype, non-finite values, bad config, ..."""


class NotFound(NWSError, KeyError):
    """A named sketch does not exist."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class AlreadyExists(NWSError):
    """A sketch of that name exists with a different configuration."""


class ResourceExhausted(NWSError):
    """A batch, message or sketch count is over a configured limit."""


class FailedPrecondition(NWSError):
    """The operation is valid but not in the sketch's current state (e.g. re-centering)."""


class Unavailable(NWSError):
    """A dependency (the state store) cannot be reached right now; retrying may help."""


class Unauthenticated(NWSError):
    """Missing or wrong credentials."""


class DataCorruption(NWSError):
    """Persisted state failed its checksum or could not be parsed."""
