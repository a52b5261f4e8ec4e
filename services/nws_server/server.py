"""Assembles one server process: the core, the gRPC front door, the REST front door.

* :func:`create_grpc_server` is the factory: a bound, not yet started ``grpc.Server`` and its
  port (port 0 binds any free port, which the tests use), with the sketch service, the standard
  ``grpc.health.v1`` health service and server reflection.
* :class:`SketchServer` runs both front doors over one :class:`SketchRegistry`, with readiness,
  health and a graceful :meth:`~SketchServer.stop`.
* :func:`serve` is the ``nws-server`` main loop: start, wait for SIGTERM / SIGINT (or the parent
  process to exit), stop accepting, let in-flight requests finish, return 0.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import FrameType, TracebackType

import grpc
import torch
import uvicorn
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from nws_core.errors import NWSError
from nws_server.auth import AuthInterceptor, TokenCheck
from nws_server.catalog import Limits
from nws_server.grpc_service import SERVICE_NAME, SketchServicer, add_servicer
from nws_server.live import Batching
from nws_server.metrics import Metrics
from nws_server.monitor import Monitor
from nws_server.registry import SketchRegistry
from nws_server.rest import create_app
from nws_server.settings import Settings
from nws_server.store import open_store

log = logging.getLogger("nws_server")

try:
    VERSION = version("nws")
except PackageNotFoundError:  # running from a source tree that is not installed
    VERSION = "0+unknown"


def registry_from_settings(
    settings: Settings, metrics: Metrics | None = None, monitor: Monitor | None = None
) -> SketchRegistry:
    """The core configured by ``settings`` (device, limits, micro-batching, state store), with
    the hooks of ``metrics`` and ``monitor``."""
    return SketchRegistry(
        store=open_store(settings.store) if settings.store else None,
        device=settings.device,
        limits=Limits(
            max_sketches=settings.max_sketches,
            max_sketch_bytes=settings.max_sketch_bytes,
            max_batch_rows=settings.max_batch_rows,
            idempotency_window=settings.idempotency_window,
        ),
        batching=Batching(
            enabled=settings.micro_batching,
            max_wait_s=settings.batch_wait_ms / 1000.0,
            max_rows=settings.batch_max_rows,
        ),
        on_batch=metrics.observe_batch if metrics is not None else None,
        on_values=monitor.record if monitor is not None else None,
    )


def create_grpc_server(
    registry: SketchRegistry,
    settings: Settings,
    *,
    metrics: Metrics | None = None,
    health_servicer: health.HealthServicer | None = None,
) -> tuple[grpc.Server, int]:
    """A bound, not yet started gRPC server over ``registry`` and the port it bound."""
    token = settings.token()
    server = grpc.server(
        ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="nws-grpc"),
        interceptors=[AuthInterceptor(TokenCheck(token))] if token else None,
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            ("grpc.so_reuseport", 0),  # never share a port with another server
        ],
    )
    servicer = SketchServicer(registry, metrics or Metrics(registry), VERSION)
    add_servicer(servicer, server)  # undecodable requests: INVALID_ARGUMENT, not INTERNAL
    health_servicer = health_servicer or health.HealthServicer()
    health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    address = settings.address(settings.grpc_port)
    try:
        if settings.tls_cert_file is not None and settings.tls_key_file is not None:
            credentials = grpc.ssl_server_credentials(
                [(settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())]
            )
            port = server.add_secure_port(address, credentials)
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise OSError(f"cannot bind gRPC to {address}: {exc}") from exc
    return server, port


class SketchServer:
    """gRPC and (optionally) REST over one registry, in this process. Binds on construction."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.metrics = Metrics()
        self.monitor = Monitor()
        self.registry = registry_from_settings(self.settings, self.metrics, self.monitor)
        self._stopping = threading.Event()  # stops the snapshot schedule
        self._restore()
        self.metrics.watch(self.registry)
        self.monitor.watch(self.registry)
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._snapshotter: threading.Thread | None = None
        self._sampler = threading.Thread(
            target=self.monitor.run, args=(self._stopping,), name="nws-monitor", daemon=True
        )
        self._health = health.HealthServicer()
        self._grpc, self.grpc_port = create_grpc_server(
            self.registry, self.settings, metrics=self.metrics, health_servicer=self._health
        )
        self.rest_port: int | None = None
        self._rest: _RestThread | None = None
        if self.settings.rest:
            app = create_app(
                self.registry,
                self.metrics,
                monitor=self.monitor,
                is_ready=self._ready.is_set,
                max_body_bytes=self.settings.max_message_bytes,
                version=VERSION,
                auth_token=self.settings.token(),
            )
            self._rest = _RestThread(app, self.settings)
            self.rest_port = self._rest.port

    @property
    def target(self) -> str:
        """The gRPC address clients dial."""
        return self.settings.address(self.grpc_port)

    @property
    def rest_url(self) -> str | None:
        if self.rest_port is None:
            return None
        scheme = "https" if self.settings.tls else "http"
        return f"{scheme}://{self.settings.address(self.rest_port)}"

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def start(self) -> SketchServer:
        self._grpc.start()
        if self._rest is not None:
            self._rest.start()
        if self.registry.store is not None and self.settings.snapshot_interval_s > 0:
            self._snapshotter = threading.Thread(
                target=self._snapshot_loop, name="nws-snapshots", daemon=True
            )
            self._snapshotter.start()
        self._sampler.start()
        self._ready.set()
        if self.settings.ready_file is not None:
            _write_json(
                self.settings.ready_file,
                {
                    "pid": os.getpid(),
                    "target": self.target,
                    "grpc_port": self.grpc_port,
                    "rest_port": self.rest_port,
                    "rest_url": self.rest_url,
                    "tls": self.settings.tls,
                },
            )
        log.info(
            "serving gRPC%s on %s%s, device %s",
            " (TLS)" if self.settings.tls else "",
            self.target,
            f" and REST on {self.rest_url}" if self.rest_url else "",
            self.registry.device,
        )
        if not self.settings.is_loopback and self.settings.token() is None:
            log.warning(
                "bound to %s, beyond loopback, WITHOUT authentication (--insecure): expose it "
                "only on a trusted network",
                self.settings.host,
            )
        return self

    def stop(self, grace: float | None = None) -> None:
        """Stop accepting, let in-flight requests finish within ``grace`` seconds, release."""
        if self._stopped.is_set():
            return
        grace = self.settings.grace_seconds if grace is None else grace
        self._ready.clear()
        self._health.enter_graceful_shutdown()
        if self._rest is not None:
            self._rest.begin_stop()
        self._grpc.stop(grace).wait()
        if self._rest is not None:
            self._rest.join(grace + 5.0)
        self._stopping.set()
        if self._snapshotter is not None:
            self._snapshotter.join()
        if self._sampler.is_alive():
            self._sampler.join()
        if self.registry.store is not None:
            self._take_snapshots("shutdown")
            self.registry.store.close()
        if self.settings.ready_file is not None:
            self.settings.ready_file.unlink(missing_ok=True)
        self._stopped.set()
        log.info("stopped")

    def _restore(self) -> None:
        if self.registry.store is None:
            return
        report = self.registry.restore(discard_corrupt=self.settings.start_empty_on_corruption)
        log.info(
            "restored %d sketches from the state store (%d from a snapshot; %d journal records "
            "replayed; %d torn unacknowledged records dropped; %d corrupt sketches discarded)",
            report.sketches,
            report.snapshots,
            report.records,
            report.dropped_tails,
            len(report.discarded),
        )

    def _snapshot_loop(self) -> None:
        while not self._stopping.wait(self.settings.snapshot_interval_s):
            self._take_snapshots("scheduled")

    def _take_snapshots(self, why: str) -> None:
        try:
            written = [r for r in self.registry.snapshot() if r.written]
        except (NWSError, OSError) as exc:
            log.error("%s snapshot failed (the journal still holds every update): %s", why, exc)
            return
        if written:
            log.info("%s snapshot of %d sketches", why, len(written))

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stopped; True if it was."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> SketchServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop(grace=0.5)


class _RestThread:
    """uvicorn serving the REST app from a socket bound now, in a background thread."""

    def __init__(self, app: object, settings: Settings) -> None:
        family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((settings.host, settings.rest_port))
        except OSError as exc:
            self._sock.close()
            raise OSError(
                f"cannot bind REST to {settings.address(settings.rest_port)}: {exc}"
            ) from exc
        self._sock.listen(256)
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(
            app,  # type: ignore[arg-type]
            log_config=None,  # leave logging to the host process
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=max(1, int(settings.grace_seconds)),
            ssl_certfile=settings.tls_cert_file,
            ssl_keyfile=settings.tls_key_file,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name="nws-rest", daemon=True
        )

    def start(self, timeout: float = 30.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the REST server did not start")
            time.sleep(0.005)

    def begin_stop(self) -> None:
        self._server.should_exit = True

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        self._sock.close()


def serve(settings: Settings) -> int:
    """Run until SIGTERM / SIGINT (or the parent process exits), then stop gracefully. Returns 0."""
    stop = threading.Event()
    received: list[int] = []

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)  # only flag it: logging from a signal handler can deadlock
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    if settings.torch_threads is not None:
        torch.set_num_threads(settings.torch_threads)
    try:
        server = SketchServer(settings).start()
        if settings.parent_pid is not None:
            _watch_parent(settings.parent_pid, stop)
        while not stop.wait(0.5):  # wake up now and then so signals are handled promptly
            pass
        if received:
            log.info("received %s: shutting down", signal.Signals(received[0]).name)
        server.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _watch_parent(pid: int, stop: threading.Event) -> None:
    direct = os.getppid() == pid  # a direct parent that exits leaves us re-parented

    def gone() -> bool:
        if direct:
            return os.getppid() != pid
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        return False

    def watch() -> None:
        while not stop.wait(1.0):
            if gone():
                log.info("parent process %d is gone: shutting down", pid)
                stop.set()

    threading.Thread(target=watch, name="nws-parent-watch", daemon=True).start()


def _write_json(path: Path, data: dict[str, object]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)  # atomic: readers never see a partial file
