"""Fork safety: no client thread is inside a gRPC call when this process forks.

gRPC's own fork handlers keep a child usable only if no other thread is inside a gRPC call at the
moment of ``fork()``; otherwise the child can crash or hang (grpc/grpc issue 32992, and
doc/fork_support.md in grpc/grpc). PyTorch's DataLoader forks its workers while the trainer
streams losses from a background thread, which is exactly that case. So every RPC of every
:class:`~nws_client.SketchClient` runs inside :meth:`ForkGate.call`, and an
``os.register_at_fork`` hook makes ``fork()`` first ask background streams to wind down, then
wait until the calls in flight have finished (each has a deadline; at most ``MAX_WAIT_S``), and
hold new calls until the fork is done. Each process then makes its own channel lazily (see
:class:`nws_client._connection.Connection`), so a child never touches its parent's connections.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

log = logging.getLogger("nws_client")

MAX_WAIT_S = 10.0


class ForkListener(Protocol):
    def pause_for_fork(self) -> None: ...

    def resume_after_fork(self) -> None: ...


class ForkGate:
    """Counts the gRPC calls in flight in this process and holds fork() until there are none."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._active = 0
        self._forking = False
        self._listeners: weakref.WeakSet[ForkListener] = weakref.WeakSet()

    def add_listener(self, listener: ForkListener) -> None:
        """``listener`` is asked to close its streams before a fork and may resume after."""
        self._listeners.add(listener)

    @contextmanager
    def call(self) -> Iterator[None]:
        """Wraps one gRPC call (or a whole stream)."""
        with self._cond:
            while self._forking:
                self._cond.wait()
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                if self._active == 0:
                    self._cond.notify_all()

    @property
    def active(self) -> int:
        return self._active

    # os.register_at_fork hooks ------------------------------------------------------------
    def before_fork(self) -> None:
        for listener in list(self._listeners):
            listener.pause_for_fork()
        self._cond.acquire()  # held across fork(): no call starts or ends its bookkeeping
        self._forking = True
        deadline = time.monotonic() + MAX_WAIT_S
        while self._active:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning(
                    "forking with %d gRPC call(s) still in flight; the child may be unable to "
                    "use gRPC (start DataLoader workers with the 'spawn' or 'forkserver' method)",
                    self._active,
                )
                break
            self._cond.wait(remaining)

    def after_fork_in_parent(self) -> None:
        self._forking = False
        self._cond.notify_all()
        self._cond.release()
        for listener in list(self._listeners):
            listener.resume_after_fork()

    def after_fork_in_child(self) -> None:
        self._reset()  # the child has one thread and no calls; its clients start afresh


GATE = ForkGate()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=GATE.before_fork,
        after_in_parent=GATE.after_fork_in_parent,
        after_in_child=GATE.after_fork_in_child,
    )
