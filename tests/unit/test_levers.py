"""The policy levers and the O(N) anchors: SamplingPolicy, LossTable, loss-table, infobatch,
and the redundant-stream builder."""

from __future__ import annotations

import numpy as np
import pytest

from nws_core import policy
from nws_core.errors import InvalidArgument
from nws_trainer.anchors import InfoBatchSelector, LossTable, LossTableSelector
from nws_trainer.data import TextDataset, with_duplicates


@pytest.mark.parametrize(
    "kwargs",
    [
        {"power": 0.0},
        {"power": -1.0},
        {"power": float("nan")},
        {"baseline_quantile": 1.0},
        {"baseline_quantile": -0.1},
        {"temper": 1.5},
        {"temper": -0.1},
    ],
)
def test_sampling_policy_rejects_bad_levers(kwargs: dict[str, float]) -> None:
    with pytest.raises(InvalidArgument, match=next(iter(kwargs))):
        policy.SamplingPolicy(**kwargs)  # type: ignore[arg-type]


def test_default_policy_is_the_papers_rule() -> None:
    s = np.random.default_rng(0).gamma(2.0, size=500)
    a = policy.SamplingPolicy().sample(s, 0.3, 0.05, np.random.default_rng(1))
    b = policy.sample(s, 0.3, 0.05, np.random.default_rng(1))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_power_sharpens_and_temper_shrinks_weights() -> None:
    s = np.linspace(0.1, 1.0, 200)
    acc, w, p = policy.SamplingPolicy(power=2.0).sample(s, 0.2, 0.0, np.random.default_rng(0))
    assert p.mean() == pytest.approx(0.2)
    inner = (p > 0) & (p < 1)
    # p ∝ s^2 where neither clipped: p_i / s_i^2 is constant.
    np.testing.assert_allclose(p[inner] / s[inner] ** 2, (p[inner] / s[inner] ** 2)[0])
    np.testing.assert_allclose(w[acc], 1.0 / p[acc])
    acc, w, p = policy.SamplingPolicy(temper=0.0).sample(s, 0.2, 0.0, np.random.default_rng(0))
    np.testing.assert_array_equal(w[acc], 1.0)
    acc, w, p = policy.SamplingPolicy(temper=0.5).sample(s, 0.2, 0.0, np.random.default_rng(0))
    np.testing.assert_allclose(w[acc], p[acc] ** -0.5)


def test_rank_policy_ignores_the_scale_of_the_estimates() -> None:
    s = np.random.default_rng(3).random(100)
    rule = policy.SamplingPolicy(rank=True)
    _, _, p1 = rule.sample(s, 0.4, 0.05, np.random.default_rng(0))
    _, _, p2 = rule.sample(1.0 + 1e-3 * s, 0.4, 0.05, np.random.default_rng(0))  # nearly flat
    np.testing.assert_allclose(p1, p2)
    _, _, flat = policy.SamplingPolicy().sample(1.0 + 1e-3 * s, 0.4, 0.05)
    assert np.ptp(p2) > 10 * np.ptp(flat)  # ranks spread what flat estimates cannot


def test_loss_table_scores_latest_losses_with_the_mean_as_prior() -> None:
    t = LossTable(5)
    assert t.mean() is None and t.observations == 0
    scores, unseen = t.scores(np.arange(5))
    assert unseen.all() and (scores == 1.0).all()
    t.update(np.array([0, 1]), np.array([2.0, 4.0]))
    t.update(np.array([1]), np.array([1.0]))  # the latest loss wins
    scores, unseen = t.scores(np.arange(5))
    np.testing.assert_allclose(scores, [2.0, 1.0, 1.5, 1.5, 1.5])
    np.testing.assert_array_equal(unseen, [False, False, True, True, True])
    assert t.observations == 3


def test_loss_table_selector_warms_up_then_prefers_high_losses() -> None:
    n = 400
    t = LossTable(n)
    sel = LossTableSelector(t, ratio=0.25, p_min=0.02, warmup=100)
    idx = np.arange(n)
    first = sel(idx, seed=0)
    assert first.warmup and first.accepted.all() and (first.weights == 1).all()
    losses = np.where(idx < 40, 5.0, 0.1)
    t.update(idx, losses)
    kept = np.zeros(n)
    for seed in range(200):
        chunk = sel(idx, seed=seed)
        assert not chunk.warmup
        kept += chunk.accepted
    rate = kept / 200
    assert rate[:40].mean() > 0.95 and rate[40:].mean() < 0.2


def _infobatch(prune: float = 0.5, epochs: int = 4) -> tuple[InfoBatchSelector, LossTable]:
    t = LossTable(100)
    return InfoBatchSelector(t, prune=prune, anneal=0.875, epochs=epochs), t


def test_infobatch_keeps_everything_before_losses_and_in_the_annealing_epochs() -> None:
    sel, t = _infobatch(epochs=8)
    idx = np.arange(100)
    assert sel(idx, seed=1, epoch=0).accepted.all()  # nothing observed yet
    t.update(idx, np.linspace(0.0, 1.0, 100))
    assert not sel(idx, seed=1, epoch=1).accepted.all()
    assert sel(idx, seed=1, epoch=7).accepted.all()  # 7 >= 0.875 * 8: full data
    assert not sel(idx, seed=1, epoch=6).accepted.all()


def test_infobatch_prunes_only_below_mean_and_stays_unbiased() -> None:
    sel, t = _infobatch(prune=0.5)
    idx = np.arange(100)
    losses = np.linspace(0.0, 1.0, 100)  # mean 0.5: rows 0..49 are "well learned"
    t.update(idx, losses)
    draws = 4000
    total = np.zeros(100)
    for seed in range(draws):
        chunk = sel(idx, seed=seed, epoch=1)
        assert chunk.accepted[losses >= 0.5].all()
        np.testing.assert_array_equal(chunk.weights[losses >= 0.5], 1.0)
        total += chunk.accepted * chunk.weights
    mean = total / draws
    # Below the mean each draw is 2 with probability 1/2 else 0: sd 1 per draw, so the mean of
    # 4000 has sd 1/sqrt(4000) = 0.0158; 5 sd over 50 rows leaves a ~3e-5 false-alarm chance.
    assert np.abs(mean[:50] - 1.0).max() < 5 / np.sqrt(draws)
    np.testing.assert_array_equal(mean[50:], 1.0)


def _dataset(n: int) -> TextDataset:
    texts = [f"a{i} b{i} c{i} d{i} e{i}" for i in range(n)]  # any 4 words still name row i
    return TextDataset(texts, np.arange(n) % 2, ["rotten", "fresh"])


def test_with_duplicates_builds_a_zipf_redundant_stream() -> None:
    ds = _dataset(1000)
    out = with_duplicates(ds, 1.5, seed=0)
    assert len(out) == 2500 and out.texts[:1000] == ds.texts
    originals = {t: i for i, t in enumerate(ds.texts)}
    counts = np.zeros(1000)
    near = 0
    for text, label in zip(out.texts[1000:], out.labels[1000:], strict=True):
        if text in originals:
            src = originals[text]
        else:  # one word dropped: find the original it came from by its number
            near += 1
            words = text.split()
            assert len(words) == 4
            src = int(words[0][1:])
            assert set(words) < set(ds.texts[src].split())
        assert label == ds.labels[src]
        counts[src] += 1
    assert 0.4 < near / 1500 < 0.6
    top = np.sort(counts)[::-1]
    assert top[0] > 50 and (counts == 0).sum() > 500  # a popular head, a long tail never copied
    again = with_duplicates(ds, 1.5, seed=0)
    assert again.texts == out.texts
    assert with_duplicates(ds, 1.5, seed=1).texts != out.texts
    assert with_duplicates(ds, 0.0) is ds
    with pytest.raises(ValueError, match="fraction"):
        with_duplicates(ds, -1.0)
