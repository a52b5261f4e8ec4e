"""Where a sampler is in its candidate stream, and what it has handed out: the part of
:class:`~nws_trainer.integrations.torch.NWSSampler` that a checkpoint saves.

Sampler mode scans seeded permutations of the examples (one *pass* after another) in candidate
chunks; rank r of W scans chunks r, r + W, ... of every pass. Kept rows wait in ``pending`` until
a full batch is there. An epoch is ``steps_per_epoch`` batches; a batch is *in flight* from the
moment the batch sampler yields it until the loop takes it (a DataLoader draws ahead), and the
batches in flight when an iterator is abandoned (a checkpoint, an interrupted epoch) are
*replayed* first by the next one, so a resumed run trains exactly the batches the uninterrupted
one would.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

Batch = list[tuple[int, float]]
"""A sampler-mode batch: (example index, importance weight) per row."""


class SamplerPosition:
    """A sampler's position (sampler and filter mode) and its running counts."""

    def __init__(self, rank: int, world_size: int, steps_per_epoch: int) -> None:
        self.rank, self.world_size = rank, world_size
        self.steps_per_epoch = steps_per_epoch
        self.pass_ = 0
        """The permutation pass being scanned."""
        self.chunk = rank
        """The next chunk of it this rank scans."""
        self.pending: Batch = []
        """Kept rows not yet in a batch."""
        self.epoch = 0
        self.consumed = 0
        """Batches of the current epoch the loop has taken."""
        self.inflight: deque[Batch] = deque()
        self.replay: deque[Batch] = deque()
        self.filter_batches = 0
        """Candidate batches filtered so far (filter mode)."""
        self.stats = {"candidates": 0, "accepted": 0, "batches": 0}

    # ------------------------------------------------------------------ sampler mode
    def begin_epoch(self) -> int:
        """Batches the next pass over the loader yields: the rest of an interrupted epoch. The
        batches an abandoned iterator drew are handed out again first."""
        self.replay.extendleft(reversed(self.inflight))
        self.inflight.clear()
        return self.steps_per_epoch - self.consumed

    def drawn(self) -> int:
        """Batches drawn so far in the run (taken, and in flight)."""
        return self.epoch * self.steps_per_epoch + self.consumed + len(self.inflight)

    def replayed(self) -> Batch | None:
        """The next batch to hand out again, now in flight; None when there is none."""
        if not self.replay:
            return None
        batch = self.replay.popleft()
        self.inflight.append(batch)
        return batch

    def next_chunk(self, n_chunks: int) -> tuple[int, int] | None:
        """(pass, chunk) of this rank's next candidate chunk; None when this rank's turn falls
        past the end of the pass (more ranks than chunks: skip it)."""
        if self.chunk >= n_chunks:
            self.pass_, self.chunk = self.pass_ + 1, self.rank
        c = self.chunk
        self.chunk += self.world_size
        return None if c >= n_chunks else (self.pass_, c)

    def hand_out(self, size: int) -> Batch:
        """The next full batch of ``size`` pending rows, now in flight."""
        batch, self.pending = self.pending[:size], self.pending[size:]
        self.inflight.append(batch)
        return batch

    def take(self, indices: list[int]) -> None:
        """The loop took the batch of these indices: the oldest one in flight."""
        if self.inflight:
            drawn = self.inflight.popleft()
            if [i for i, _ in drawn] != indices:
                raise RuntimeError("batches arrived out of order (use in_order=True)")
        self.consumed += 1
        if self.consumed >= self.steps_per_epoch:
            self.epoch, self.consumed = self.epoch + 1, 0

    def count(self, candidates: int, accepted: int) -> None:
        self.stats["candidates"] += candidates
        self.stats["accepted"] += accepted

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "pass": self.pass_,
            "chunk": self.chunk,
            "pending": list(self.pending),
            "epoch": self.epoch,
            "consumed": self.consumed,
            "replay": [list(b) for b in (*self.inflight, *self.replay)],
            "filter_batches": self.filter_batches,
            "stats": dict(self.stats),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.pass_, self.chunk = int(state["pass"]), int(state["chunk"])
        self.pending = [(int(i), float(w)) for i, w in state["pending"]]
        self.epoch, self.consumed = int(state["epoch"]), int(state["consumed"])
        self.inflight.clear()
        self.replay = deque([[(int(i), float(w)) for i, w in b] for b in state["replay"]])
        self.filter_batches = int(state["filter_batches"])
        self.stats = dict(state["stats"])
