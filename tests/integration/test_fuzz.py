"""Fuzzing both front doors of a real in-process server with generated, mostly malformed requests.

gRPC: Hypothesis builds requests of every method with wrong dtypes, shapes and byte counts,
NaN / inf, huge shape claims, bad names, ratios and configs, and also sends random bytes as the
serialized request. REST: schemathesis generates requests from the app's own OpenAPI document.
Whatever comes in, the answer is a deliberate status (never INTERNAL / UNKNOWN, never a 5xx), and
a rejected request leaves the state of a pre-existing sketch bit-for-bit unchanged (its digest).
Derandomized (fixed seed) and bounded, so the file runs in well under a minute.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from integration_helpers import DIM, batch, packed
from nws.v1 import sketch_pb2 as pb
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from nws_client import SketchClient, SketchConfig
from nws_server.server import SketchServer
from nws_server.settings import Settings

BASE = "fuzz-base"
SERVICE = "/nws.v1.SketchService/"
#: Every status a request may deliberately get; INTERNAL and UNKNOWN mean an unhandled error.
EXPECTED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
}
FUZZ = settings(
    derandomize=True,
    deadline=None,
    max_examples=600,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
U32, U64 = 2**32 - 1, 2**64 - 1

# ------------------------------------------------------------------------------ fixtures


class Target:
    """The fuzzed server: a raw channel, a client for digests, and the base sketch's digest."""

    def __init__(self, server: SketchServer) -> None:
        self.server = server
        self.channel = grpc.insecure_channel(server.target)
        self.client = SketchClient(server.target, timeout=30)
        self.client.create_sketch(BASE, SketchConfig(dim=DIM, rows=64, bits=6, seed=3), warmup=8)
        x, y = batch(11, 64)
        self.client.update(BASE, x, y)
        self.digest = self.current_digest()
        self.rejected = 0
        self.accepted = 0

    def current_digest(self) -> str:
        digest = self.client.get(BASE, digest=True).digest
        assert digest
        return digest

    def call(self, method: str, request: bytes) -> grpc.StatusCode:
        """Send serialized bytes to ``method``; the status code it got."""
        rpc = self.channel.unary_unary(SERVICE + method)  # identity (de)serializers
        try:
            rpc(request, timeout=30)
        except grpc.RpcError as exc:
            assert isinstance(exc, grpc.Call)
            return exc.code()
        return grpc.StatusCode.OK

    def check(self, code: grpc.StatusCode, what: str) -> None:
        """The status is deliberate; a rejection left the base sketch unchanged."""
        assert code in EXPECTED, f"{what} got {code.name}"
        now = self.current_digest()
        if code == grpc.StatusCode.OK:
            self.accepted += 1
            self.digest = now  # a valid request may change the base sketch (an update)
        else:
            self.rejected += 1
            assert now == self.digest, f"rejected {what} ({code.name}) changed the sketch"


@pytest.fixture(scope="module")
def server() -> Iterator[SketchServer]:
    """gRPC + REST in this process, on free loopback ports; default limits but for the size of
    one sketch (64 MiB, not 1 GiB): valid generated configs must not eat a shared machine."""
    settings = Settings(grpc_port=0, rest_port=0, device="cpu", max_sketch_bytes=64 * 2**20)
    with SketchServer(settings) as srv:
        yield srv


@pytest.fixture(scope="module")
def target(server: SketchServer) -> Iterator[Target]:
    t = Target(server)
    yield t
    t.client.close()
    t.channel.close()


# ------------------------------------------------------------------------------ strategies

names = st.one_of(
    st.sampled_from([BASE, BASE, "no-such-sketch", "", "bad name!", "x" * 129, "../etc", "a\x00b"]),
    st.text(max_size=40),
)
odd_floats = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, 0.5, -1.0, 1e-300, 1e300, math.inf, -math.inf, math.nan]),
    st.floats(allow_nan=True, allow_infinity=True),
)
dims = st.sampled_from([0, 1, DIM - 1, DIM, DIM + 1, 2**20, 2**31, U32, 2**63, U64])


@st.composite
def tensors(draw: st.DrawFn) -> pb.Tensor:
    """A packed tensor that is right, subtly wrong, or wildly wrong."""
    dtype = draw(st.sampled_from([0, 1, 1, 1, 2, 3, 7, 2**31 - 1]))
    kind = draw(st.sampled_from(["matching", "matching", "random-bytes", "huge", "empty"]))
    if kind == "huge":  # claims far more data than it carries
        shape = draw(st.lists(dims, min_size=1, max_size=4))
        return pb.Tensor(dtype=dtype, shape=shape, data=draw(st.binary(max_size=64)))
    if kind == "empty":
        shape = draw(st.sampled_from([[], [0], [0, DIM], [DIM, 0], [0, 0], [0, U64]]))
        return pb.Tensor(dtype=dtype, shape=shape, data=b"")
    rows = draw(st.integers(0, 6))
    cols = draw(st.sampled_from([DIM, DIM, 1, DIM + 1, 3]))
    shape = draw(
        st.sampled_from([[rows, cols], [rows, cols], [cols], [rows, cols, 1], [1, rows, cols]])
    )
    itemsize = 4 if dtype in (0, 1, 7, 2**31 - 1) else 2
    if kind == "random-bytes":
        size = draw(st.sampled_from([0, 1, 3, itemsize * rows * cols, itemsize * rows * cols + 1]))
        return pb.Tensor(
            dtype=dtype, shape=shape, data=draw(st.binary(min_size=size, max_size=size))
        )
    values = draw(st.lists(odd_floats, min_size=rows * cols, max_size=rows * cols))
    a = np.asarray(values, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        data = (
            a.astype("<f2").tobytes()
            if dtype == 2
            else (a.astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()
            if dtype == 3
            else a.astype("<f4").tobytes()
        )
    return pb.Tensor(dtype=dtype, shape=shape, data=data)


def good_tensor(seed: int, n: int = 4) -> pb.Tensor:
    return packed(batch(seed, n)[0])


embeddings = st.one_of(tensors(), st.integers(0, 3).map(good_tensor))
maybe = st.one_of(st.none(), odd_floats)
u32_fields = st.one_of(st.none(), st.sampled_from([0, 1, 2, 3, 6, 8, 24, 25, 64, 2**20, U32]))


@st.composite
def configs(draw: st.DrawFn) -> pb.SketchConfig:
    msg = pb.SketchConfig(
        dim=draw(st.sampled_from([0, 1, 4, DIM, 2**20, U32])),
        seed=draw(st.sampled_from([0, 1, U64])),
        estimator=draw(st.sampled_from([0, 1, 2, 3, -1])),
        accumulator=draw(st.sampled_from([0, 1, 2, 9])),
    )
    for field in ("rows", "bits", "groups", "pool", "buckets"):
        value = draw(u32_fields)
        if value is not None:
            setattr(msg, field, value)
    for field in ("prior", "decay"):
        value = draw(maybe)
        if value is not None:
            setattr(msg, field, value)
    if draw(st.booleans()):
        msg.center.CopyFrom(draw(tensors()))
    return msg


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, Any]:
    """(method, request message) for any unary method of the service."""
    method = draw(
        st.sampled_from(
            [
                "CreateSketch",
                "GetSketch",
                "DeleteSketch",
                "Score",
                "Sample",
                "Update",
                "Decay",
                "SetCenter",
                "Stats",
                "Snapshot",
                "ListSketches",
            ]
        )
    )
    name = draw(names)
    if method == "CreateSketch":
        # never re-create the base sketch with its own config: that would be a valid no-op
        warmup = draw(st.sampled_from([0, 1, 8, U64]))
        return method, pb.CreateSketchRequest(name=name, config=draw(configs()), warmup=warmup)
    if method == "DeleteSketch" and name == BASE:
        name = "no-such-sketch"  # deleting the base sketch is valid, and ends the test
    if method in ("GetSketch", "DeleteSketch"):
        return method, getattr(pb, f"{method}Request")(name=name)
    if method == "Score":
        return method, pb.ScoreRequest(name=name, embeddings=draw(embeddings))
    if method == "Sample":
        msg = pb.SampleRequest(name=name, embeddings=draw(embeddings), ratio=draw(odd_floats))
        if (p_min := draw(maybe)) is not None:
            msg.p_min = p_min
        if (seed := draw(st.one_of(st.none(), st.sampled_from([0, 7, U64])))) is not None:
            msg.seed = seed
        return method, msg
    if method == "Update":
        x = draw(embeddings)
        n = int(x.shape[0]) if len(x.shape) and x.shape[0] < 100 else 4
        count = draw(st.sampled_from([n, n, 0, n + 1, max(n - 1, 0)]))
        values = draw(st.lists(odd_floats, min_size=count, max_size=count))
        request_id = draw(st.sampled_from(["", "r1", "x" * 300, "\u00e9\u2603"]))
        return method, pb.UpdateRequest(
            name=name, embeddings=x, values=values, request_id=request_id
        )
    if method == "Decay":
        return method, pb.DecayRequest(name=name, factor=draw(odd_floats))
    if method == "SetCenter":
        return method, pb.SetCenterRequest(name=name, center=draw(embeddings))
    if method == "Stats":
        return method, pb.StatsRequest(name=name)
    if method == "Snapshot":  # this server keeps no store: FAILED_PRECONDITION
        return method, pb.SnapshotRequest(name=name)
    return method, pb.ListSketchesRequest()


# ------------------------------------------------------------------------------ gRPC tests


def test_grpc_generated_requests_get_a_deliberate_status(target: Target) -> None:
    before = (target.accepted, target.rejected)

    @FUZZ
    @given(requests())
    def check(request: tuple[str, Any]) -> None:
        method, message = request
        code = target.call(method, message.SerializeToString())
        target.check(code, f"{method}({str(message)[:300]!r})")
        if method == "CreateSketch" and code == grpc.StatusCode.OK and message.name != BASE:
            target.client.delete(message.name)  # keep the sketch count and memory small

    check()
    # the generators are neither so wild that everything is rejected nor so tame that nothing is
    accepted, rejected = target.accepted - before[0], target.rejected - before[1]
    assert accepted >= 20 and rejected >= 300, (accepted, rejected)


@FUZZ
@given(
    st.sampled_from(
        ["CreateSketch", "Score", "Sample", "Update", "Decay", "SetCenter", "GetSketch"]
    ),
    st.one_of(
        st.binary(max_size=200),
        # a valid message with random bytes appended or spliced in: mostly undecodable
        st.tuples(st.integers(0, 3), st.binary(min_size=1, max_size=40), st.integers(0, 200)).map(
            lambda t: _splice(
                pb.UpdateRequest(
                    name=BASE, embeddings=good_tensor(t[0]), values=[1.0] * 4, request_id="r"
                ).SerializeToString(),
                t[1],
                t[2],
            )
        ),
    ),
)
def test_grpc_random_bytes_as_a_request_get_a_deliberate_status(
    target: Target, method: str, raw: bytes
) -> None:
    code = target.call(method, raw)
    target.check(code, f"{method} with raw bytes {raw[:80]!r}")


def _splice(message: bytes, noise: bytes, at: int) -> bytes:
    at = at % (len(message) + 1)
    return message[:at] + noise + message[at:]


def test_grpc_undecodable_requests_are_invalid_arguments(target: Target) -> None:
    """Bytes that are no protobuf (a truncated field, a string that is not UTF-8) are the
    client's fault: INVALID_ARGUMENT, for unary calls and inside an update stream."""
    good = pb.UpdateRequest(name=BASE, embeddings=good_tensor(0), values=[1.0] * 4)
    truncated = good.SerializeToString()[:-3]
    not_utf8 = b"\x0a\x02\xff\xfe"  # field 1 (name), 2 bytes that are not UTF-8
    for raw in (truncated, not_utf8, b"\xff"):
        assert target.call("Update", raw) == grpc.StatusCode.INVALID_ARGUMENT
        assert target.call("Score", raw) == grpc.StatusCode.INVALID_ARGUMENT
    stream = target.channel.stream_stream(SERVICE + "StreamUpdates")
    acks = list(stream(iter([truncated, good.SerializeToString(), not_utf8]), timeout=30))
    codes = [pb.UpdateAck.FromString(a).code for a in acks]
    invalid = grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert codes == [invalid, 0, invalid]
    target.digest = target.current_digest()  # the good update was applied


# ------------------------------------------------------------------------------ REST (schemathesis)


@pytest.fixture(scope="module")
def rest_schema(target: Target) -> Any:
    """The OpenAPI document the real server serves, loaded by schemathesis."""
    assert target.server.rest_url is not None
    return schemathesis.openapi.from_url(f"{target.server.rest_url}/openapi.json")


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_rest_api_conforms_and_rejects_without_side_effects(
    target: Target, rest_schema: Any, mode: GenerationMode
) -> None:
    """Requests to every operation, generated from the schema (valid ones, and ones that break
    it): no 5xx, every response as documented, and no rejected request changes any state."""
    seen: set[int] = set()

    @settings(
        derandomize=True,
        deadline=None,
        max_examples=300,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(case=rest_schema.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        params = case.path_parameters or {}
        if isinstance(params.get("name"), str) and len(params["name"]) % 2 == 0:
            params["name"] = BASE  # half of the cases reach the real sketch (deterministically)
        response = case.call(timeout=30)
        seen.add(response.status_code)
        what = f"{case.method} {case.formatted_path} -> {response.status_code}"
        assert response.status_code < 500, f"{what}: {response.text[:500]}"
        # Every check but one: a schema-valid body can still be rejected with a documented 400,
        # since a sketch's dimension (and finiteness after float32) is state the schema cannot
        # express; 400 is only ever allowed as an answer to such a score request.
        case.validate_response(response, excluded_checks=[positive_data_acceptance])
        if response.status_code == 400:
            assert case.path.endswith("/score"), what
        if response.status_code >= 400:
            assert target.current_digest() == target.digest, f"rejected {what} changed state"
        else:
            target.digest = target.current_digest()

    check()
    assert 200 in seen  # the generated requests were not all rejected
    if mode == GenerationMode.NEGATIVE:
        assert seen & {400, 404, 422}
