"""Each mutation of a live sketch as a value: its journal record and its one ``apply``.

The registry's live path builds an op from a validated request and hands it to
:meth:`nws_server.durable.Durability.mutate`, which journals ``op.record()`` and calls
``op.apply(sketch)``; journal replay decodes the same op with :func:`from_record` and goes through
the same ``mutate``. A state change is therefore written once, and replay cannot drift from what
the live path did. Deduplication by request id (the sketch's idempotency window,
:mod:`nws_server.live`) decides whether an op is applied; the op only says how.

The ops here are the sketch's mutations after its creation (``update``, ``decay``,
``set_center``, ``merge``); ``create``, ``import`` and ``delete`` replace or drop the whole
sketch and are handled by the registry (see :mod:`nws_server.records` for every record's fields).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np
import torch

from nws_core.sketch import NWSketch
from nws_server import records


class Mutation(Protocol):
    """A change to an existing sketch that its journal records."""

    op: ClassVar[str]

    @property
    def request_id(self) -> str:
        """The client's id for deduplication ("" = none)."""
        ...

    def record(self) -> bytes:
        """The journal record of this op."""
        ...

    def apply(self, sketch: NWSketch) -> None:
        """Change ``sketch``; the caller holds its lock and has validated the op."""
        ...


@dataclass(frozen=True)
class Update:
    """Add observed values at validated embeddings (``<f4`` [n, dim], ``<f8`` [n]): checked
    once at the boundary (or, replayed, when they were journaled), not again by the engine."""

    embeddings: torch.Tensor
    values: torch.Tensor
    request_id: str = ""
    op: ClassVar[str] = "update"

    def record(self) -> bytes:
        return records.encode(
            self.op,
            {"request_id": self.request_id},
            embeddings=self.embeddings.numpy(),
            values=self.values.numpy(),
        )

    def apply(self, sketch: NWSketch) -> None:
        sketch.update(self.embeddings, self.values, validated=True)

    @classmethod
    def from_record(cls, rec: records.Record) -> Update:
        return cls(
            torch.from_numpy(rec.arrays["embeddings"]),
            torch.from_numpy(rec.arrays["values"]),
            str(rec.fields["request_id"]),
        )


@dataclass(frozen=True)
class Decay:
    """Multiply the sketch's arrays by ``factor`` in (0, 1]."""

    factor: float
    request_id: str = ""
    op: ClassVar[str] = "decay"

    def record(self) -> bytes:
        return records.encode(self.op, {"factor": self.factor, "request_id": self.request_id})

    def apply(self, sketch: NWSketch) -> None:
        sketch.decay(self.factor)

    @classmethod
    def from_record(cls, rec: records.Record) -> Decay:
        # no request id in journals written before decays had one
        return cls(float(rec.fields["factor"]), str(rec.fields.get("request_id", "")))


@dataclass(frozen=True)
class SetCenter:
    """Fix the centering vector (``<f4`` [dim], checked by :meth:`NWSketch.check_center`)."""

    center: torch.Tensor
    request_id: str = ""
    op: ClassVar[str] = "set_center"

    def record(self) -> bytes:
        return records.encode(self.op, {"request_id": self.request_id}, center=self.center.numpy())

    def apply(self, sketch: NWSketch) -> None:
        sketch.set_center(self.center)

    @classmethod
    def from_record(cls, rec: records.Record) -> SetCenter:
        # no request id in journals written before center settings had one
        return cls(torch.from_numpy(rec.arrays["center"]), str(rec.fields.get("request_id", "")))


@dataclass(frozen=True)
class Merge:
    """Add another sketch, checked by :meth:`NWSketch.check_merge`, given as its serialization
    (the record holds it whole: the source may change or go before the journal is replayed)."""

    state: bytes
    request_id: str = ""
    op: ClassVar[str] = "merge"

    def record(self) -> bytes:
        return records.encode(
            self.op,
            {"request_id": self.request_id},
            sketch=np.frombuffer(self.state, dtype=np.uint8),
        )

    def apply(self, sketch: NWSketch) -> None:
        sketch.merge(NWSketch.deserialize(self.state, device=sketch.device))

    @classmethod
    def from_record(cls, rec: records.Record) -> Merge:
        return cls(rec.arrays["sketch"].tobytes(), str(rec.fields["request_id"]))


Op = Update | Decay | SetCenter | Merge
"""Every mutation of an existing sketch."""

MUTATIONS: dict[str, type[Op]] = {cls.op: cls for cls in (Update, Decay, SetCenter, Merge)}
"""The journal ops that are mutations of an existing sketch, by record op."""


def from_record(rec: records.Record) -> Op:
    """The mutation a journal record holds (KeyError, TypeError or ValueError if malformed)."""
    return MUTATIONS[rec.op].from_record(rec)
