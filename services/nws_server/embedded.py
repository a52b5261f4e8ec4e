"""The embedded default: a private sketch server on a loopback port, started by its user.

With no endpoint given, the trainer starts one of these and talks to it over the same gRPC path
as to a shared server::

    with EmbeddedServer() as server:
        client = SketchClient(server.target)

``mode="process"`` (the default) runs ``nws-server`` as a child process on free loopback ports:
the server keeps its own interpreter (no GIL contention with the training loop), and the trainer
process holds no gRPC server threads when PyTorch forks its DataLoader workers. The child exits
when the parent does, even without :meth:`~EmbeddedServer.stop`. ``mode="thread"`` serves from
this process (quick to start; for tests and notebooks; do not fork while it runs).
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from pydantic import SecretStr

from nws_server.settings import Settings

Mode = Literal["process", "thread"]


class EmbeddedServer:
    """A sketch server on 127.0.0.1 with OS-chosen ports; ``settings`` are Settings fields."""

    def __init__(
        self,
        *,
        mode: Mode = "process",
        rest: bool = False,
        startup_timeout: float = 120.0,
        **settings: Any,
    ) -> None:
        if mode not in ("process", "thread"):
            raise ValueError(f"mode must be 'process' or 'thread', got {mode!r}")
        self.mode = mode
        self.settings = Settings(
            **{"log_level": "WARNING", **settings},
            host="127.0.0.1",
            grpc_port=0,
            rest_port=0,
            rest=rest,
        )
        self._startup_timeout = startup_timeout
        self._thread_server: Any = None
        self._process: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._info: dict[str, Any] = {}

    # ----------------------------------------------------------------- addresses
    @property
    def target(self) -> str:
        """``127.0.0.1:PORT``, the gRPC address for :class:`nws_client.SketchClient`."""
        return str(self._require("target"))

    @property
    def rest_url(self) -> str | None:
        url = self._require("rest_url")
        return None if url is None else str(url)

    @property
    def pid(self) -> int:
        return int(self._require("pid"))

    @property
    def log_file(self) -> Path | None:
        """The child's log (process mode)."""
        return None if self._tmp is None else Path(self._tmp.name) / "server.log"

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> EmbeddedServer:
        if self._info:
            return self
        if self.mode == "thread":
            from nws_server.server import SketchServer

            server = SketchServer(self.settings).start()
            self._thread_server = server
            self._info = {"target": server.target, "rest_url": server.rest_url, "pid": os.getpid()}
        else:
            self._start_process()
        atexit.register(self.stop)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully (SIGTERM for the child, then SIGKILL after ``timeout``)."""
        if self._thread_server is not None:
            self._thread_server.stop(grace=min(timeout, 1.0))
            self._thread_server = None
        if self._process is not None:
            if self._process.poll() is None:
                self._process.terminate()
                try:
                    self._process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            self._process = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        self._info = {}
        atexit.unregister(self.stop)

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ----------------------------------------------------------------- internals
    def _start_process(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="nws-embedded-")
        ready = Path(self._tmp.name) / "ready.json"
        env = dict(os.environ)
        for name, value in self.settings.model_dump(exclude_none=True).items():
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[f"NWS_{name.upper()}"] = str(value)
        env["NWS_READY_FILE"] = str(ready)
        env["NWS_PARENT_PID"] = str(os.getpid())
        log_file = Path(self._tmp.name) / "server.log"
        with open(log_file, "wb") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "nws_server.cli"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + self._startup_timeout
        while not ready.exists():
            code = self._process.poll()
            if code is not None or time.monotonic() > deadline:
                log_tail = log_file.read_text(errors="replace")[-4000:]
                self.stop()
                why = f"exited with {code}" if code is not None else "did not start in time"
                raise RuntimeError(f"the embedded sketch server {why}:\n{log_tail}")
            time.sleep(0.02)
        self._info = json.loads(ready.read_text())

    def _require(self, key: str) -> Any:
        if not self._info:
            raise RuntimeError("the embedded server is not running; call start() first")
        return self._info[key]
