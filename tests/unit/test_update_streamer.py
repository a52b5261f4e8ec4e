"""The client's background update stream when a stream breaks while gRPC still pulls requests.

gRPC consumes a stream's request iterator from a thread of its own, which can go on pulling after
the call has already failed. An update it pulls then must not vanish into "in flight" on a dead
stream (``flush`` would wait forever; found by benchmarks/load.py killing the server).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import grpc
from nws.v1 import sketch_pb2 as pb

from nws_client._streamer import UpdateStreamer


class Broken(grpc.RpcError):
    """The stream died (the server was killed)."""


def test_a_request_pulled_after_the_stream_broke_is_sent_again() -> None:
    opened: list[Iterator[pb.UpdateRequest]] = []
    stale: list[str] = []
    broke = threading.Event()

    def open_stream(requests: Iterator[pb.UpdateRequest]) -> Iterator[pb.UpdateAck]:
        opened.append(requests)
        if len(opened) == 1:
            next(requests)  # the first update goes out ...

            def late_consumer() -> None:  # ... and gRPC's thread pulls on after the break
                broke.wait()
                time.sleep(0.1)
                stale.extend(r.request_id for r in requests)

            threading.Thread(target=late_consumer, daemon=True).start()

            def dead() -> Iterator[pb.UpdateAck]:
                broke.set()
                raise Broken("connection reset")
                yield  # pragma: no cover

            return dead()
        return (pb.UpdateAck(request_id=r.request_id, observations=1) for r in requests)

    streamer = UpdateStreamer(
        open_stream,
        max_rows=100,
        drop_oldest=False,
        put_timeout=5,
        idle_close_s=0.05,
        backoff_s=(1.0, 1.0),  # the next stream opens well after the late pull
    )
    streamer.put(pb.UpdateRequest(name="s", request_id="a"), 3)
    streamer.flush(timeout=10)  # returns once "a" is acknowledged on the second stream
    assert stale == []  # the dead stream's iterator took nothing more
    assert len(opened) >= 2
    assert streamer.counters.acked_rows == 3 and streamer.counters.reconnects == 1
    assert streamer.buffered_rows == 0
    streamer.close(timeout=5)
