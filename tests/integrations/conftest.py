"""Fixtures of the integration-with-training-loops tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="session")
def examples_dir() -> Iterator[Path]:
    """The examples folder on sys.path (the scripts import their ``example_setup`` module)."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        yield EXAMPLES
    finally:
        sys.path.remove(str(EXAMPLES))


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """A shared sketch server (child process) for tests that do not need a private one."""
    from nws_server.embedded import EmbeddedServer

    with EmbeddedServer(mode="process", device="cpu") as server:
        yield server.target
