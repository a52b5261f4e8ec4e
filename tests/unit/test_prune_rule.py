"""The prune policy's rule (nws_core.prune) without a server."""

from __future__ import annotations

import numpy as np
import pytest

from nws_core.errors import InvalidArgument
from nws_core.policy import SamplingPolicy
from nws_core.prune import Prune, check_alone, check_policy, keep_share


def test_rows_at_or_above_the_mean_are_kept_and_the_rest_unbiased() -> None:
    rule = Prune(0.75)
    s = np.array([0.1, 1.0, 2.0, 3.0])
    p = rule.probabilities(s, mean=1.0)
    np.testing.assert_array_equal(p, [0.25, 1.0, 1.0, 1.0])  # equal to the mean: kept
    accepted, weights, probs = rule.draw(s, 1.0, seed=3, warm=False)
    np.testing.assert_array_equal(probs, p)
    assert accepted[1:].all()
    np.testing.assert_allclose(weights[accepted], 1.0 / p[accepted])
    np.testing.assert_allclose(p * (1.0 / p), 1.0)  # E[accepted * weight] = 1 per row
    assert keep_share(p) == pytest.approx(3.25 / 4)


def test_no_mean_and_warmup_keep_everything() -> None:
    s = np.array([0.0, 5.0])
    np.testing.assert_array_equal(Prune().probabilities(s, None), 1.0)
    accepted, weights, _ = Prune(0.9).draw(s, 10.0, seed=1, warm=True)
    assert accepted.all() and (weights == 1).all()
    assert keep_share(np.zeros(0)) == 1.0


@pytest.mark.parametrize("rate", [1.0, -0.1, float("nan"), True])
def test_bad_rates_and_names_are_refused(rate: float) -> None:
    with pytest.raises(InvalidArgument, match="prune_rate"):
        Prune(rate)


def test_policy_names_and_exclusive_settings() -> None:
    assert check_policy("") == "importance" and check_policy("prune") == "prune"
    with pytest.raises(InvalidArgument, match="policy"):
        check_policy("Prune")
    check_alone(0.0, None, SamplingPolicy(), None)
    with pytest.raises(InvalidArgument, match="temper"):
        check_alone(0.0, None, SamplingPolicy(temper=0.5), None)
