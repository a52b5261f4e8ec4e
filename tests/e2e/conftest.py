"""Fixtures of the end-to-end tests: one real sketch server shared by the runs that name it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def sketch_endpoint() -> Iterator[str]:
    """HOST:PORT of a real ``nws-server`` child process on a free loopback port."""
    from nws_server.embedded import EmbeddedServer

    with EmbeddedServer(mode="process") as server:
        yield server.target
