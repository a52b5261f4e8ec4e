"""Fixtures of the deployment tests."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from deploy_helpers import compose


@pytest.fixture(scope="session")
def resolved() -> dict[str, Any]:
    """The whole compose file after Compose's own interpolation, merges and normalisation."""
    result = compose("config")
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config
