"""The strategy objects: one per name of the config's vocabulary, each deciding what it claims."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nws_trainer.budget import budget_steps, candidate_epochs, planned_steps
from nws_trainer.config import SAMPLED, SKETCHED, STRATEGIES, TRAINER_SIDE, TrainConfig
from nws_trainer.selection import KeepAll, RS2Selector, UniformSelector
from nws_trainer.strategies import STRATEGY_CLASSES, Strategy, strategy_for


def _cfg(strategy: str, **changes: object) -> TrainConfig:
    return TrainConfig(strategy=strategy, **changes).validate()  # type: ignore[arg-type]


def test_every_strategy_name_has_exactly_one_class() -> None:
    assert set(STRATEGY_CLASSES) == set(STRATEGIES)
    for name, cls in STRATEGY_CLASSES.items():
        assert cls.name == name
        assert isinstance(strategy_for(_cfg(name)), cls)


@pytest.mark.parametrize("name", sorted(SAMPLED))
def test_loader_batching_and_embeddings(name: str) -> None:
    # Trainer-side strategies take whole candidate chunks even when fill batching is asked for.
    s = strategy_for(_cfg(name, batching="fill"))
    assert s.loader_batching() == ("shrink" if name in TRAINER_SIDE else "fill")
    # Only the loader-side sketch strategy reads the static embeddings.
    assert s.needs_static_embeddings == (name == "nws")


@pytest.mark.parametrize("name", STRATEGIES)
def test_only_trainer_side_strategies_choose_after_a_forward(name: str) -> None:
    overrides_choose = type(strategy_for(_cfg(name))).choose is not Strategy.choose
    assert overrides_choose == (name in TRAINER_SIDE)
    if name not in TRAINER_SIDE:
        with pytest.raises(NotImplementedError, match="selects in the loader"):
            strategy_for(_cfg(name)).choose(None, None, None, 0)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", STRATEGIES)
def test_only_sketched_strategies_stream_and_probe(name: str) -> None:
    cls = type(strategy_for(_cfg(name)))
    assert (cls.update_rows is not Strategy.update_rows) == (name in SKETCHED)
    assert (cls.probe_rows is not Strategy.probe_rows) == (name in SKETCHED)
    if name not in SKETCHED:
        with pytest.raises(NotImplementedError, match="streams nothing"):
            strategy_for(_cfg(name)).update_rows(None, np.arange(2))  # type: ignore[arg-type]


class _Prep:
    def __init__(self, n: int) -> None:
        self.train = list(range(n))


class _Trainer:
    """What the loader-side selectors of uniform and rs2 read from a trainer."""

    def __init__(self, n: int) -> None:
        self.prep = _Prep(n)


def test_loader_selectors() -> None:
    assert isinstance(strategy_for(_cfg("full")).selector(_Trainer(10)), KeepAll)  # type: ignore[arg-type]
    u = strategy_for(_cfg("uniform", ratio=0.25)).selector(_Trainer(10))  # type: ignore[arg-type]
    assert isinstance(u, UniformSelector)
    r = strategy_for(_cfg("rs2", ratio=0.5)).selector(_Trainer(10))  # type: ignore[arg-type]
    assert isinstance(r, RS2Selector)


def test_planned_steps_of_full_are_chunks_times_epochs() -> None:
    cfg = _cfg("full", epochs=3, batch_size=32)
    assert planned_steps(cfg, 1000) == math.ceil(1000 / 32) * 3
    assert budget_steps(cfg, 1000) is None
    assert candidate_epochs(cfg, 1000) == 3


def test_planned_steps_of_sampling_scale_with_the_ratio() -> None:
    n, b = 3200, 32
    cfg = _cfg("uniform", ratio=0.25, epochs=2, batch_size=b)
    assert planned_steps(cfg, n) == math.ceil(n * 2 * 0.25 / b)
    # nws: the warm-up rows are kept whole, the rest at the ratio.
    nws = _cfg("nws", ratio=0.25, epochs=2, batch_size=b, warmup_steps=10)
    warm = 10 * b
    assert planned_steps(nws, n) == math.ceil((warm + (n * 2 - warm) * 0.25) / b)


def test_a_budget_share_fixes_the_steps_and_unbounds_the_passes() -> None:
    cfg = _cfg("nws", budget_share=1.0, epochs=2, batch_size=32)
    full = math.ceil(1000 / 32) * 2
    assert budget_steps(cfg, 1000) == full
    assert planned_steps(cfg, 1000) == full
    assert candidate_epochs(cfg, 1000) > 1000
