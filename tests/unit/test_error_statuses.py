"""Each core error class carries its status; gRPC, HTTP and the client derive theirs from it."""

from __future__ import annotations

import inspect

import grpc
import pytest

from nws_client import errors as client_errors
from nws_core import errors
from nws_server.grpc_service import status_of

CORE_ERRORS = [
    cls
    for _, cls in inspect.getmembers(errors, inspect.isclass)
    if issubclass(cls, errors.NWSError) and cls is not errors.NWSError
]


def test_the_core_has_the_error_classes_the_contract_names() -> None:
    names = {cls.__name__ for cls in CORE_ERRORS}
    assert {"InvalidArgument", "NotFound", "ResourceExhausted", "DataLoss"} <= names


@pytest.mark.parametrize("cls", CORE_ERRORS, ids=lambda c: c.__name__)
def test_grpc_status_is_the_one_the_class_carries(cls: type[errors.NWSError]) -> None:
    code, message = status_of(cls("what to change"))
    assert code is grpc.StatusCode[cls.code]
    assert message == "what to change"


@pytest.mark.parametrize("cls", CORE_ERRORS, ids=lambda c: c.__name__)
def test_client_raises_the_class_of_the_same_name(cls: type[errors.NWSError]) -> None:
    # one vocabulary: the server's DataLoss arrives as the client's DataLoss, and so on
    raised = client_errors.error_for(grpc.StatusCode[cls.code], "m")
    assert type(raised).__name__ == cls.__name__
    assert raised.code is grpc.StatusCode[cls.code]


@pytest.mark.parametrize("cls", CORE_ERRORS, ids=lambda c: c.__name__)
def test_http_status_is_a_client_or_server_error(cls: type[errors.NWSError]) -> None:
    assert 400 <= cls.http_status < 600
    # a retryable condition is a 5xx and a caller's mistake a 4xx
    assert (cls.http_status >= 500) == (cls.code in {"UNAVAILABLE", "DATA_LOSS", "INTERNAL"})


def test_anything_else_is_internal_and_says_where_to_look() -> None:
    code, message = status_of(KeyError("boom"))
    assert code is grpc.StatusCode.INTERNAL
    assert "KeyError" in message and "server log" in message
    # the root class itself has no specific status
    assert status_of(errors.NWSError("x"))[0] is grpc.StatusCode.INTERNAL
