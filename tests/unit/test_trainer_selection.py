"""Selection, batching and the weighted loss: the pieces every sampled strategy is made of."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nws_core.policy import sample
from nws_core.sketch import SketchConfig
from nws_trainer.backends import InProcessBackend, SketchBackend
from nws_trainer.batching import FillBatcher, ShrinkBatcher, make_batcher
from nws_trainer.loader import CandidateStream, Tokens, epoch_permutation
from nws_trainer.loss import weighted_loss
from nws_trainer.selection import (
    EmbeddingTable,
    KeepAll,
    SelectedChunk,
    SketchSelector,
    UniformSelector,
    chunk_seed,
    select_by_scores,
)


def _chunk(indices: list[int], accepted: list[bool], warmup: bool = False) -> SelectedChunk:
    acc = np.array(accepted)
    est = np.arange(len(indices), dtype=np.float64) + 1.0
    return SelectedChunk(
        indices=np.array(indices),
        accepted=acc,
        weights=np.where(acc, 2.0, 0.0),
        estimates=est,
        prior_used=np.zeros(len(indices), dtype=bool),
        warmup=warmup,
    )


def test_fill_batcher_emits_full_batches_then_the_rest() -> None:
    b = FillBatcher(batch_size=3)
    assert list(b.add(_chunk([0, 1, 2, 3], [True, False, True, False]))) == []
    (first,) = b.add(_chunk([4, 5, 6, 7], [True, True, False, True]))
    assert first.indices.tolist() == [0, 2, 4]
    assert first.weights.tolist() == [2.0, 2.0, 2.0]
    assert first.normalizer is None  # fill: self-normalised
    assert first.stats.candidates == 8 and first.stats.accepted == 5
    (rest,) = b.finish()
    assert rest.indices.tolist() == [5, 7]
    assert rest.stats.candidates == 0  # the chunks' statistics went with the first batch
    assert list(b.finish()) == []


def test_shrink_batcher_divides_by_the_candidate_count() -> None:
    b = ShrinkBatcher()
    (batch,) = b.add(_chunk([0, 1, 2, 3], [True, False, False, True]))
    assert batch.indices.tolist() == [0, 3] and batch.normalizer == 4.0
    # An empty chunk makes no step; its statistics ride on the next batch.
    assert list(b.add(_chunk([4, 5], [False, False]))) == []
    (nxt,) = b.add(_chunk([6, 7], [True, True]))
    assert nxt.stats.candidates == 4 and nxt.normalizer == 2.0
    with pytest.raises(ValueError, match="batching"):
        make_batcher("both", 4)  # type: ignore[arg-type]


def test_warmup_rows_are_flagged_and_chunk_stats_count_priors() -> None:
    chunk = _chunk([0, 1, 2], [True, True, True], warmup=True)
    assert chunk.stats().warmup_candidates == 3 and chunk.stats().cv_chunks == 0
    (batch,) = ShrinkBatcher().add(chunk)
    assert batch.warmup.all()
    scored = _chunk([0, 1, 2], [True, False, True])
    assert scored.stats().cv_chunks == 1 and scored.stats().scored == 3


def test_weighted_loss_normalisations() -> None:
    losses = torch.tensor([1.0, 2.0, 3.0, 6.0])
    ones = torch.ones(4)
    assert weighted_loss(losses, ones).item() == pytest.approx(3.0)  # plain mean
    w = torch.tensor([1.0, 3.0, 0.0, 0.0])
    assert weighted_loss(losses, w).item() == pytest.approx((1 + 6) / 4)  # self-normalised
    assert weighted_loss(losses, w, normalizer=8).item() == pytest.approx(7 / 8)
    with pytest.raises(ValueError, match="same shape"):
        weighted_loss(losses, torch.ones(3))
    with pytest.raises(ValueError, match="normalizer"):
        weighted_loss(losses, ones, normalizer=0)


def test_shrink_loss_is_an_unbiased_estimate_of_the_chunk_mean() -> None:
    """E[sum_kept(w * l) / n] = mean(l) under the sampling policy (the shrink normalisation)."""
    rng = np.random.default_rng(0)
    losses = rng.gamma(1.0, 1.0, size=32)
    scores = losses + rng.normal(0, 0.3, size=32).clip(-0.5, 0.5)  # noisy estimates
    draws = []
    for _ in range(4000):
        accepted, weights, _ = sample(scores, 0.4, 0.05, rng)
        draws.append(
            weighted_loss(torch.tensor(losses), torch.tensor(weights), normalizer=32).item()
        )
    assert np.mean(draws) == pytest.approx(losses.mean(), rel=0.02)


def test_uniform_selector_and_trainer_side_selection() -> None:
    idx = np.arange(1000)
    u = UniformSelector(0.3)(idx, seed=1)
    assert 0.25 < u.accepted.mean() < 0.35
    assert np.all(u.weights[u.accepted] == pytest.approx(1 / 0.3))
    assert np.array_equal(UniformSelector(0.3)(idx, 1).accepted, u.accepted)  # seeded
    full = KeepAll()(idx[:5], seed=0)
    assert full.accepted.all() and (full.weights == 1).all()
    s = select_by_scores(idx, np.linspace(0.01, 2, 1000), 0.3, 0.05, seed=2)
    assert s.estimates is not None
    assert s.accepted[500:].mean() > s.accepted[:500].mean()  # high loss kept more often


def test_chunk_seeds_differ_and_repeat() -> None:
    seeds = {chunk_seed(0, e, c) for e in range(3) for c in range(100)}
    assert len(seeds) == 300
    assert chunk_seed(5, 1, 2) == chunk_seed(5, 1, 2)


def test_workers_own_disjoint_chunks_covering_the_epoch() -> None:
    tokens = Tokens({"input_ids": np.zeros((103, 4), np.int32)})
    stream = CandidateStream(tokens, np.zeros(103), KeepAll(), "fill", 10, 2, seed=3)
    for epoch in range(2):
        seen = [np.concatenate([rows for _, rows in stream.chunks(epoch, w, 3)]) for w in range(3)]
        allrows = np.concatenate(seen)
        assert sorted(allrows.tolist()) == list(range(103))
    assert not np.array_equal(epoch_permutation(103, 3, 0), epoch_permutation(103, 3, 1))


def test_tokens_trim_batches_to_the_longest_example() -> None:
    ids = np.array([[1, 2, 0, 0], [1, 2, 3, 0], [1, 0, 0, 0]], np.int32)
    tokens = Tokens({"input_ids": ids, "attention_mask": (ids > 0).astype(np.int8)})
    batch = tokens.batch(np.array([0, 2]))
    assert batch["input_ids"].tolist() == [[1, 2], [1, 0]]
    assert batch["input_ids"].dtype == torch.int64


def test_sketch_selector_over_the_in_process_backend() -> None:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(200, 16)).astype(np.float32)
    backend = InProcessBackend(SketchConfig(dim=16, rows=50, bits=4, seed=1), warmup=40)
    assert isinstance(backend, SketchBackend)
    selector = SketchSelector(backend.spec(), EmbeddingTable(emb), ratio=0.5, p_min=0.05)
    first = selector(np.arange(20), seed=0)
    assert first.warmup and first.accepted.all() and (first.weights == 1).all()
    table = EmbeddingTable(emb)
    # Loss is high where the first coordinate is positive.
    losses = np.where(emb[:, 0] > 0, 2.0, 0.1)
    backend.update(table.rows(np.arange(200)), losses)
    chosen = selector(np.arange(200), seed=1)
    assert not chosen.warmup
    assert chosen.accepted[losses > 1].mean() > chosen.accepted[losses < 1].mean()
    kept = chosen.weights[chosen.accepted]
    assert (kept >= 1).all() and np.isfinite(kept).all()
    backend.close()
    with pytest.raises(RuntimeError, match="cannot be shared"):
        backend.spec().open()


def test_rs2_trains_a_fresh_subset_each_epoch_without_replacement() -> None:
    from nws_trainer.selection import RS2Selector

    n, ratio = 103, 0.25
    sel = RS2Selector(n, ratio, seed=3)
    m = sel.per_epoch()
    assert m == round(ratio * n)
    seen: list[np.ndarray] = []
    for epoch in range(8):
        # The loader hands the selector an epoch's permutation in chunks: the subset is the
        # same whatever the chunking.
        perm = np.random.default_rng(epoch).permutation(n)
        parts = [sel(perm[i : i + 16], seed=0, epoch=epoch) for i in range(0, n, 16)]
        kept = np.concatenate([c.indices[c.accepted] for c in parts])
        assert kept.size == m and np.unique(kept).size == m
        assert all(np.array_equal(c.weights, c.accepted.astype(float)) for c in parts)  # weight 1
        seen.append(np.sort(kept))
    # No row repeats until every row has been drawn once: the first 4 epochs (4 * 26 = 104 >= 103
    # draws) cover every row, with exactly one repeat where the walk wraps into a new permutation.
    first = np.concatenate(seen[:4])
    assert np.unique(first).size == n and first.size == n + 1
    assert np.unique(np.concatenate(seen[:3])).size == 3 * m
    # Reproducible for a seed, different for another.
    again = RS2Selector(n, ratio, seed=3)
    assert np.array_equal(np.flatnonzero(again.subset(5)), seen[5])
    assert not np.array_equal(np.flatnonzero(RS2Selector(n, ratio, seed=4).subset(0)), seen[0])
