"""``ratio="auto"`` on the trainer's side: settings, the command line, the in-process backend."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nws_core.keep_ratio import AutoRatio
from nws_core.sketch import SketchConfig
from nws_trainer.backends import InProcessBackend
from nws_trainer.budget import planned_steps
from nws_trainer.cli import build_parser, config_from_args
from nws_trainer.config import DEFAULT_RATIO, ConfigError, TrainConfig

DIM = 8
DIRECTION = np.random.default_rng(5).standard_normal(DIM).astype(np.float32)


def cluster(sign: float, n: int, seed: int) -> np.ndarray:
    """Rows within 1e-4 of sign * DIRECTION: opposite signs never share a bucket (every sign bit
    flips), so the sketch's estimates are exactly the values stored near each."""
    noise = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return (sign * DIRECTION + 1e-4 * noise).astype(np.float32)


def test_the_command_line_takes_auto_or_a_number() -> None:
    parse = build_parser().parse_args
    cfg = config_from_args(parse(["--ratio", "auto", "--ratio-min", "0.5"]))
    assert cfg.ratio == "auto" and cfg.auto and cfg.ratio_min == 0.5 and cfg.fixed_ratio() == 1.0
    cfg = config_from_args(parse(["--ratio", "0.25"]))
    assert cfg.ratio == 0.25 and not cfg.auto and cfg.fixed_ratio() == 0.25
    with pytest.raises(SystemExit):
        parse(["--ratio", "half"])


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"strategy": "uniform"}, "ratio auto applies to the nws strategy"),
        ({"sampling": "prune"}, "ratio auto applies to the nws strategy"),
        ({"ratio_min": 0.0}, "ratio_min must be in (0, 1]"),
        ({"auto_threshold": math.inf}, "auto_threshold must be a finite number"),
        ({"p_min": 0.4}, "p_min must be in [0, ratio_min]"),
    ],
)
def test_bad_auto_settings_are_named(changes: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace("(", r"\(").replace("[", r"\[")):
        TrainConfig(ratio="auto", **changes).validate()


@pytest.mark.parametrize(
    ("changes", "resolved"),
    [
        ({}, "auto"),  # nws with importance sampling: the default does no harm (README)
        ({"sampling": "prune"}, DEFAULT_RATIO),  # prune ignores the ratio; auto would be refused
        ({"strategy": "uniform"}, DEFAULT_RATIO),
        ({"strategy": "rs2"}, DEFAULT_RATIO),
        ({"strategy": "nws-live"}, DEFAULT_RATIO),
        ({"strategy": "infobatch"}, DEFAULT_RATIO),
        ({"ratio": 0.25}, 0.25),  # an explicit ratio wins, for every strategy
        ({"strategy": "uniform", "ratio": 0.7}, 0.7),
    ],
)
def test_an_unset_ratio_is_the_strategys_default(
    changes: dict[str, object], resolved: float | str
) -> None:
    cfg = TrainConfig(**changes).validate()  # type: ignore[arg-type]
    assert cfg.keep_ratio == resolved
    assert cfg.auto == (resolved == "auto")
    assert cfg.fixed_ratio() == (1.0 if resolved == "auto" else resolved)
    assert cfg.to_dict()["ratio"] == resolved  # the record says which ratio the run used


def test_the_default_follows_a_change_of_strategy() -> None:
    """The benchmarks derive every arm from one base config: a base with the default ratio must
    stay valid when its strategy changes (auto is refused by the others)."""
    base = TrainConfig().validate()
    assert base.auto
    for strategy in ("full", "uniform", "rs2", "selective-backprop", "loss-table"):
        cfg = base.replace(strategy=strategy).validate()
        assert cfg.keep_ratio == DEFAULT_RATIO and not cfg.auto
    # an explicit auto is not silently dropped: it is refused where it does not apply
    with pytest.raises(ConfigError, match="ratio auto applies"):
        base.replace(ratio="auto", strategy="uniform").validate()


def test_other_ratio_words_are_rejected() -> None:
    with pytest.raises(ConfigError, match="ratio must be in"):
        TrainConfig(ratio="half").validate()


def test_auto_plans_the_steps_of_every_candidate() -> None:
    """Auto keeps at most every candidate: its planned steps are full's (an upper bound)."""
    auto = TrainConfig(ratio="auto", batch_size=32, epochs=2, warmup_steps=2)
    keep_all = auto.replace(ratio=1.0)
    assert planned_steps(auto, 1000) == planned_steps(keep_all, 1000) == math.ceil(2000 / 32)
    assert planned_steps(auto.replace(ratio=0.5), 1000) < math.ceil(2000 / 32)


def test_the_in_process_backend_chooses_the_break_even_ratio() -> None:
    """Estimates 4 (a share q of the rows) and 0: CV^2 = (1 - q) / q; with q = 1/2 the formula
    gives 1 / (1 + 1) = 0.5, below the break-even q + (1 - q) p_min = 0.525 (p_min 0.05), which
    keeps every informative row for sure and the zeros with probability p_min."""
    backend = InProcessBackend(SketchConfig(dim=DIM, rows=32, bits=4), warmup=0)
    backend.update(
        np.concatenate([cluster(1, 32, 10), cluster(-1, 32, 11)]),
        np.r_[np.full(32, 4.0), np.zeros(32)],
    )
    x = np.concatenate([cluster(1, 16, 1), cluster(-1, 16, 2)])
    r = backend.sample(x, "auto", 0.05, seed=3)
    np.testing.assert_array_equal(r.estimates, np.r_[np.full(16, 4.0), np.zeros(16)])
    assert r.ratio == pytest.approx(0.525)
    assert r.accepted[:16].all() and (r.weights[:16] == 1.0).all()
    np.testing.assert_allclose(r.weights[16:][r.accepted[16:]], 20.0)  # 1 / p_min
    # a ratio floor above the break-even is honoured
    floored = backend.sample(x, "auto", 0.05, seed=3, auto=AutoRatio(ratio_min=0.75))
    assert floored.ratio == pytest.approx(0.75)
    # a fixed ratio is drawn as asked
    assert backend.sample(x, 0.5, 0.05, seed=3).ratio == 0.5


def test_positive_estimates_keep_every_row_under_auto() -> None:
    backend = InProcessBackend(SketchConfig(dim=DIM, rows=32, bits=4), warmup=0)
    backend.update(
        np.concatenate([cluster(1, 32, 10), cluster(-1, 32, 11)]),
        np.r_[np.full(32, 4.0), np.ones(32)],
    )
    r = backend.sample(np.concatenate([cluster(1, 8, 1), cluster(-1, 24, 2)]), "auto", 0.05, 3)
    assert r.ratio == 1.0 and r.accepted.all() and (r.weights == 1.0).all()


def test_warmup_keeps_everything_under_auto() -> None:
    backend = InProcessBackend(SketchConfig(dim=DIM, rows=32, bits=4), warmup=10**6)
    backend.update(cluster(1, 4, 10), np.full(4, 4.0))
    r = backend.sample(np.concatenate([cluster(1, 8, 1), cluster(-1, 24, 2)]), "auto", 0.05, 3)
    assert r.warmup and r.ratio == 1.0 and r.accepted.all()
