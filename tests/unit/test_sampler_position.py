"""The sampler's position on its own (nws_trainer.integrations.position): how ranks split the
candidate chunks, what an abandoned iterator's batches become, and a checkpoint's round trip."""

from __future__ import annotations

import pytest

from nws_trainer.integrations.position import SamplerPosition


def test_ranks_scan_disjoint_chunks_and_wrap_into_the_next_pass() -> None:
    turns = {}
    for rank in range(3):
        pos = SamplerPosition(rank, 3, steps_per_epoch=4)
        turns[rank] = [pos.next_chunk(7) for _ in range(4)]
    # 7 chunks a pass: rank 0 takes 0, 3, 6; rank 1 takes 1, 4; rank 2 takes 2, 5; then pass 1
    assert turns[0] == [(0, 0), (0, 3), (0, 6), (1, 0)]
    assert turns[1] == [(0, 1), (0, 4), (1, 1), (1, 4)]
    assert turns[2] == [(0, 2), (0, 5), (1, 2), (1, 5)]
    # more ranks than chunks: a rank past the end has no turn (it skips, never repeats a chunk)
    idle = SamplerPosition(2, 3, steps_per_epoch=4)
    assert [idle.next_chunk(2) for _ in range(3)] == [None, None, None]


def test_batches_in_flight_when_an_iterator_is_abandoned_are_handed_out_again() -> None:
    pos = SamplerPosition(0, 1, steps_per_epoch=3)
    pos.pending = [(i, 1.0) for i in range(6)]
    assert pos.begin_epoch() == 3
    pos.hand_out(3)
    second = pos.hand_out(3)
    pos.take([0, 1, 2])
    assert pos.drawn() == 2  # one taken, one in flight
    assert pos.begin_epoch() == 2  # a new iterator: the rest of the epoch ...
    assert pos.replayed() == second  # ... starts with the batch the old one drew
    assert pos.replayed() is None
    pos.take([3, 4, 5])
    assert (pos.epoch, pos.consumed) == (0, 2)
    with pytest.raises(RuntimeError, match="out of order"):
        pos.hand_out(1)
        pos.take([9])


def test_an_epoch_ends_after_its_steps() -> None:
    pos = SamplerPosition(0, 1, steps_per_epoch=2)
    for _ in range(5):
        pos.take([])
    assert (pos.epoch, pos.consumed, pos.drawn()) == (2, 1, 5)


def test_a_checkpoint_round_trips_with_the_look_ahead_as_replay() -> None:
    pos = SamplerPosition(1, 2, steps_per_epoch=5)
    pos.pending = [(7, 2.5)]
    pos.inflight.append([(1, 1.0), (2, 0.5)])
    pos.replay.append([(3, 4.0)])
    pos.next_chunk(10)
    pos.filter_batches = 4
    pos.count(10, 4)
    back = SamplerPosition(1, 2, steps_per_epoch=5)
    back.load_state_dict(pos.state_dict())
    assert back.state_dict() == pos.state_dict()
    assert list(back.inflight) == []
    assert list(back.replay) == [[(1, 1.0), (2, 0.5)], [(3, 4.0)]]  # in flight first
    assert (back.pass_, back.chunk, back.pending) == (0, 3, [(7, 2.5)])
    assert back.stats == {"candidates": 10, "accepted": 4, "batches": 0}
