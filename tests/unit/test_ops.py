"""The mutations as values (nws_server.ops): a journal record decodes to the same op, and the op
applied from its record changes a sketch exactly as the op it was recorded from."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nws_core.sketch import NWSketch, SketchConfig
from nws_server import ops, records

CONFIG = SketchConfig(dim=6, rows=16, bits=4, seed=3)


def _ops() -> list[ops.Op]:
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((20, 6)).astype(np.float32))
    y = torch.from_numpy(rng.gamma(2.0, 1.0, 20))
    center = torch.from_numpy(rng.standard_normal(6).astype(np.float32))
    other = NWSketch(CONFIG)
    other.set_center(center)
    other.update(x[:7], y[:7])
    return [
        ops.SetCenter(center, "c-1"),
        ops.Update(x, y, "u-1"),
        ops.Decay(0.5, "d-1"),
        ops.Merge(other.serialize(), "m-1"),
    ]


@pytest.mark.parametrize("op", _ops(), ids=lambda o: o.op)
def test_a_record_decodes_to_the_same_op(op: ops.Op) -> None:
    rec = records.decode(op.record())
    assert rec.op == op.op and rec.op in ops.MUTATIONS
    back = ops.from_record(rec)
    assert type(back) is type(op) and back.request_id == op.request_id
    for name in op.__dataclass_fields__:
        a, b = getattr(op, name), getattr(back, name)
        if isinstance(a, torch.Tensor):
            assert a.dtype == b.dtype and torch.equal(a, b)
        else:
            assert a == b


def test_replayed_ops_rebuild_the_live_sketch_bit_for_bit() -> None:
    live, replayed = NWSketch(CONFIG), NWSketch(CONFIG)
    journal = []
    for op in _ops():
        journal.append(op.record())
        op.apply(live)
    for data in journal:
        ops.from_record(records.decode(data)).apply(replayed)
    assert live.observations == replayed.observations == 27
    assert live.serialize() == replayed.serialize()


def test_older_journals_without_request_ids_still_decode() -> None:
    rec = records.decode(records.encode("decay", {"factor": 0.25}))
    assert ops.from_record(rec) == ops.Decay(0.25, "")


def test_a_record_that_is_not_a_mutation_is_refused() -> None:
    with pytest.raises(KeyError):
        ops.from_record(records.decode(records.encode("delete")))
