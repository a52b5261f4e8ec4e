"""Server settings: every field is an ``nws-server`` flag and an ``NWS_*`` environment variable.

Precedence: command-line flag, then environment variable, then the default below. Values are
validated when the settings are built, so a bad value stops the server before it binds a port.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


class Settings(BaseSettings):
    """Configuration of one sketch server process."""

    model_config = SettingsConfigDict(
        env_prefix="NWS_", use_attribute_docstrings=True, extra="forbid", frozen=True
    )

    host: str = "127.0.0.1"
    """Address both front doors bind. Loopback by default: the service has no authentication of
    its own yet, so expose it beyond this machine only behind a trusted network."""
    grpc_port: Annotated[int, Field(ge=0, le=65535)] = 50051
    """Port of the gRPC API (0 = any free port; the bound port is logged and written to the
    ready file)."""
    rest_port: Annotated[int, Field(ge=0, le=65535)] = 8000
    """Port of the REST monitoring API (0 = any free port)."""
    rest: bool = True
    """Serve the REST monitoring API next to gRPC."""
    device: str = "auto"
    """Torch device of the sketches: 'auto' (CUDA when present, else CPU), 'cpu', 'cuda',
    'cuda:N'."""
    torch_threads: Annotated[int | None, Field(ge=1, le=1024)] = None
    """Intra-op threads of torch on the CPU (None = torch's default, one per core). On a machine
    shared with trainers, 1 avoids oversubscribing the cores. Set by nws-server only: an
    in-process server leaves its host's torch settings alone."""
    workers: Annotated[int, Field(ge=1, le=1024)] = 32
    """gRPC handler threads. Each open StreamUpdates stream holds one while it is open."""
    max_message_bytes: Annotated[int, Field(ge=1024)] = 64 * 2**20
    """Largest gRPC message accepted or sent; larger ones get RESOURCE_EXHAUSTED."""
    max_batch_rows: Annotated[int, Field(ge=1)] = 65536
    """Most rows (embeddings) in one request; more get RESOURCE_EXHAUSTED."""
    max_sketches: Annotated[int, Field(ge=1)] = 64
    """Most sketches one server holds."""
    max_sketch_bytes: Annotated[int, Field(ge=1024)] = 2**30
    """Largest memory of one sketch (arrays plus hash parameters)."""
    idempotency_window: Annotated[int, Field(ge=0)] = 65536
    """Update request ids remembered per sketch, so a retried update is not applied twice."""
    micro_batching: bool = False
    """Coalesce concurrent Score / Sample requests on one sketch into one engine call. Off by
    default: on 2 CPU cores it changed throughput by a few percent at most (see
    benchmarks/results/server_throughput.md), and off, a request's estimates never depend on
    which other requests shared its matrix product (float rounding near a hash boundary)."""
    batch_wait_ms: Annotated[float, Field(ge=0.0, le=10.0)] = 0.0
    """With micro_batching: how long a batch may wait for more requests before it runs
    (0 = never wait; requests that arrive while a batch runs still join the next one)."""
    batch_max_rows: Annotated[int, Field(ge=1)] = 8192
    """With micro_batching: most rows coalesced into one engine call."""
    grace_seconds: Annotated[float, Field(ge=0.0)] = 10.0
    """On SIGTERM / SIGINT: how long in-flight requests may take to finish."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Log level of the server's logger."""
    ready_file: Path | None = None
    """Once serving, write the bound ports as JSON to this file (for supervisors and the
    embedded mode)."""
    parent_pid: Annotated[int | None, Field(ge=1)] = None
    """Shut down gracefully when the process with this id exits (used by the embedded mode)."""

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not _DEVICE.fullmatch(value):
            raise ValueError(f"must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {value!r}")
        return value

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if value != "localhost":
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise ValueError(f"must be an IP address or 'localhost', got {value!r}") from None
        return value

    @model_validator(mode="after")
    def _ports(self) -> Settings:
        if self.rest and self.grpc_port and self.grpc_port == self.rest_port:
            raise ValueError(f"grpc_port and rest_port are both {self.grpc_port}")
        return self

    @property
    def is_loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS or (
            self.host != "localhost" and ipaddress.ip_address(self.host).is_loopback
        )

    def address(self, port: int) -> str:
        """``host:port`` with IPv6 hosts bracketed, as gRPC and URLs want it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{port}"
