"""Server settings: every field is an ``nws-server`` flag and an ``NWS_*`` environment variable.

Precedence: command-line flag, then environment variable, then the default below. Values are
validated when the settings are built, so a bad value stops the server before it binds a port.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


class Settings(BaseSettings):
    """Configuration of one sketch server process."""

    model_config = SettingsConfigDict(
        env_prefix="NWS_", use_attribute_docstrings=True, extra="forbid", frozen=True
    )

    host: str = "127.0.0.1"
    """Address both front doors bind. Loopback by default; a non-loopback address needs an auth
    token (or --insecure)."""
    auth_token: SecretStr | None = None
    """Bearer token every gRPC call (metadata 'authorization: Bearer <token>') and REST request
    (header 'Authorization') must carry; the health checks stay open. Unset = no
    authentication."""
    auth_token_file: Path | None = None
    """File holding the bearer token (surrounding whitespace stripped), instead of
    auth_token."""
    insecure: bool = False
    """Allow binding a non-loopback host without an auth token."""
    tls_cert_file: Path | None = None
    """PEM certificate (chain) of the server; with tls_key_file, gRPC and REST serve TLS only."""
    tls_key_file: Path | None = None
    """PEM private key of tls_cert_file."""
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
    store: str | None = None
    """State store: 'file://DIR' (snapshots plus a journal fsynced before each acknowledgement)
    or 'redis://HOST:PORT/DB' (snapshots plus a Redis Stream journal; needs Redis with
    appendonly yes and appendfsync always for the same promise). Unset = in memory only: the
    sketches are lost when the process exits (the embedded trainer default)."""
    snapshot_interval_s: Annotated[float, Field(ge=0.0)] = 60.0
    """With a store: seconds between scheduled snapshots, which compact the journals (0 = only
    on demand, with the Snapshot RPC, and at graceful shutdown)."""
    start_empty_on_corruption: bool = False
    """With a store: when a sketch's stored state is corrupt, delete it, log an error and start
    without it, instead of refusing to start."""
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

    @field_validator("store")
    @classmethod
    def _store(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"(file|redis|rediss)://.", value):
            raise ValueError(f"must be file://DIR or redis://HOST:PORT/DB, got {value!r}")
        return value

    @model_validator(mode="after")
    def _ports(self) -> Settings:
        if self.rest and self.grpc_port and self.grpc_port == self.rest_port:
            raise ValueError(f"grpc_port and rest_port are both {self.grpc_port}")
        return self

    @model_validator(mode="after")
    def _auth(self) -> Settings:
        if self.auth_token is not None and self.auth_token_file is not None:
            raise ValueError("give auth_token or auth_token_file, not both")
        if self.auth_token is not None and not self.auth_token.get_secret_value().strip():
            raise ValueError("auth_token must not be empty")
        if self.auth_token_file is not None:
            try:
                token = self.auth_token_file.read_text().strip()
            except OSError as exc:
                raise ValueError(f"cannot read auth_token_file: {exc}") from None
            if not token:
                raise ValueError(f"auth_token_file {self.auth_token_file} is empty")
        if not self.is_loopback and self.token() is None and not self.insecure:
            raise ValueError(
                f"host {self.host} is beyond loopback: set an auth token (NWS_AUTH_TOKEN or "
                "--auth-token-file), or pass --insecure to serve it unauthenticated"
            )
        return self

    @model_validator(mode="after")
    def _tls(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("give both tls_cert_file and tls_key_file, or neither")
        for path in (self.tls_cert_file, self.tls_key_file):
            if path is not None and not path.is_file():
                raise ValueError(f"TLS file {path} does not exist")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None

    def token(self) -> str | None:
        """The bearer token clients must send, or None without authentication."""
        if self.auth_token is not None:
            return self.auth_token.get_secret_value().strip()
        if self.auth_token_file is not None:
            return self.auth_token_file.read_text().strip()
        return None

    @property
    def is_loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS or (
            self.host != "localhost" and ipaddress.ip_address(self.host).is_loopback
        )

    def address(self, port: int) -> str:
        """``host:port`` with IPv6 hosts bracketed, as gRPC and URLs want it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{port}"
