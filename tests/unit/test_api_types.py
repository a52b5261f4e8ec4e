"""One set of API types: their fields are derived from the wire contract (proto/nws/v1), so a new
field cannot be forgotten on one side.

The API types (``nws_client.results``) are what the server's core builds, what the client returns
and what the trainer uses; the REST models are the HTTP transport's schema of the same answers.
Each test reads the proto's descriptor and compares field names (and, for optional scalars,
presence with ``None``).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import pytest
from nws.v1 import sketch_pb2 as pb

from nws_client import results
from nws_core.config import SketchConfig
from nws_server import rest_models as rest
from nws_server import results as server_results

#: Fields that exist on one side only, by design: (API type, proto message) -> API-only fields.
CLIENT_ONLY = {
    # answered by the client's on_unavailable policy when the server is unreachable
    ("SampleResult", "SampleResponse"): {"fallback"},
    # the client's view of create_sketch (False when an equal sketch existed)
    ("SketchInfo", "Sketch"): {"created"},
}
#: Names that differ between the Python types and the proto (Python's datetime vs the proto's
#: Timestamp convention, and the Sketch message's nested messages).
RENAMED = {
    ("SketchInfo", "Sketch"): {"created_at": "create_time"},
    ("ServerStats", "ServerStats"): {"started_at": "start_time"},
}
PAIRS = [
    ("SketchStats", "SketchStats"),
    ("ScoreResult", "ScoreResponse"),
    ("SampleResult", "SampleResponse"),
    ("UpdateResult", "UpdateResponse"),
    ("SketchConfig", "SketchConfig"),
    ("SketchInfo", "Sketch"),
    ("ServerStats", "ServerStats"),
]


def proto_fields(message: str) -> dict[str, Any]:
    return dict(getattr(pb, message).DESCRIPTOR.fields_by_name)


def api_fields(cls: type) -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(cls)}


@pytest.mark.parametrize(("api", "message"), PAIRS, ids=[a for a, _ in PAIRS])
def test_every_api_type_has_the_fields_of_its_message(api: str, message: str) -> None:
    renamed = RENAMED.get((api, message), {})
    ours = {renamed.get(name, name) for name in api_fields(getattr(results, api))}
    ours -= CLIENT_ONLY.get((api, message), set())
    assert ours == set(proto_fields(message))


@pytest.mark.parametrize("api", ["SketchStats", "SketchConfig"])
def test_an_optional_scalar_is_none_exactly_where_the_proto_tracks_presence(api: str) -> None:
    hints = typing.get_type_hints(getattr(results, api))
    for name, field in proto_fields(api).items():
        if field.message_type is not None:  # a nested message (the center), not a scalar
            continue
        nullable = type(None) in typing.get_args(hints[name])
        # the client's config leaves every server default unset (None); the answers' stats set
        # a field to None only where the proto can say "unset"
        assert nullable == field.has_presence or (api == "SketchConfig" and nullable), name


def test_the_server_answers_with_the_api_types() -> None:
    for name in ("SampleResult", "ScoreResult", "UpdateResult", "SketchStats", "SketchInfo"):
        assert getattr(server_results, name) is getattr(results, name)
    # a sketch's description in the server is the API type holding the engine's config
    assert typing.get_origin(server_results.Info) is results.SketchInfo
    assert typing.get_args(server_results.Info) == (SketchConfig,)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (rest.SketchStats, "SketchStats"),
        (rest.SketchConfig, "SketchConfig"),
        (rest.ScoreResponse, "ScoreResponse"),
        (rest.Sketch, "Sketch"),
    ],
    ids=lambda v: v if isinstance(v, str) else v.__name__,
)
def test_every_rest_model_has_the_fields_of_its_message(model: Any, message: str) -> None:
    fields = set(proto_fields(message))
    if message == "Sketch":
        fields.discard("digest")  # asked for over gRPC only (GetSketch with_digest)
    assert set(model.model_fields) == fields


def test_the_engine_config_has_the_fields_of_the_wire_config() -> None:
    from nws_core.sketch import SketchConfig as EngineConfig

    assert set(api_fields(EngineConfig)) == set(proto_fields("SketchConfig"))
    assert set(api_fields(EngineConfig)) == set(api_fields(results.SketchConfig))


def test_the_engine_statistics_are_a_part_of_the_api_statistics() -> None:
    """The served stats are the engine's own (what its arrays hold) spread by name, then the
    usage counters: every engine field must exist, with the same meaning, in the API type."""
    from nws_core.sketch import SketchStats as EngineStats

    engine = {f.name for f in dataclasses.fields(EngineStats)}
    api = {f.name for f in dataclasses.fields(results.SketchStats)}
    assert engine < api
    assert engine <= set(proto_fields("SketchStats"))
