"""NWSSampler with ``ratio="auto"``: the server chooses, the sampler plans for every row."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nws_trainer.integrations import NWSSampler

pytestmark = pytest.mark.slow


def test_bad_ratios_are_named_before_any_server_is_started() -> None:
    table = np.random.default_rng(0).standard_normal((40, 8)).astype(np.float32)
    with pytest.raises(ValueError, match="ratio must be in"):
        NWSSampler(table, batch_size=8, ratio="half")
    with pytest.raises(ValueError, match="p_min must be in"):
        NWSSampler(table, batch_size=8, ratio="auto", p_min=0.5)


def test_auto_plans_every_row_and_draws_through_the_server(endpoint: str) -> None:
    table = np.random.default_rng(0).standard_normal((120, 8)).astype(np.float32)
    nws = NWSSampler(table, batch_size=16, ratio="auto", warmup=0, endpoint=endpoint, seed=1)
    try:
        assert nws.steps_per_epoch == math.ceil(120 / 16)
        x = table[:32] / np.linalg.norm(table[:32], axis=1, keepdims=True)
        nws.client.update(nws.sketch_name, x, np.linspace(0.5, 2.0, 32))  # every estimate > 0
        accepted, weights = nws.draw(x, stream=0, chunk=0, drawn=0)
        # positive estimates: auto keeps every row with weight 1 (docs/sampling.md)
        assert accepted.all() and np.allclose(weights, 1.0)
        assert nws.client.get(nws.sketch_name).stats.keep_ratio == 1.0
    finally:
        nws.close()
