"""The Nadaraya-Watson Sketch (NWS): an O(1) estimate of a value (a loss) at any embedding.

Two R x W arrays indexed by sign-random-projection LSH (see :mod:`nws_core.hashing`):
``update(x_i, y_i)`` adds y_i to ``top[r, h_r(x_i)]`` and 1 to ``bottom[r, h_r(x_i)]`` in every row
r; ``estimate(x) = mean_r top[r, h_r(x)] / mean_r bottom[r, h_r(x)]`` (Algorithm 5 of Daghaghi et
al.). Rows are aggregated *before* dividing; as R grows the estimate converges to the exact
Nadaraya-Watson estimator with kernel (1 - theta/pi)^K, with error O(1/sqrt(R)).

Inputs are validated once (:func:`~nws_core.inputs.as_embeddings`,
:func:`~nws_core.inputs.as_values`); a rejected call raises
:class:`~nws_core.errors.InvalidArgument` (a ``ValueError``) and changes nothing. The config is
:mod:`nws_core.config` and the serialization format :mod:`nws_core.packing`; their names are
importable from here too, where the engine's users have always found them.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

import torch

from nws_core.config import (
    MAX_BITS,
    AccumulatorDType,
    Estimator,
    SketchConfig,
    rows_for_error,
)
from nws_core.errors import DataLoss, FailedPrecondition, InvalidArgument
from nws_core.hashing import SRPHasher
from nws_core.inputs import as_embeddings, as_row, as_values, resolve_device
from nws_core.packing import checked_cells, pack, unpack


@dataclass(frozen=True)
class Estimates:
    """One entry per query row."""

    values: torch.Tensor
    """Estimated value (float64); the prior where ``prior_used``."""
    support: torch.Tensor
    """Aggregated denominator: the sketch's kernel-density estimate at the query (float64)."""
    prior_used: torch.Tensor
    """True where the denominator was 0 and the prior was returned (bool)."""


@dataclass(frozen=True)
class SketchStats:
    observations: int
    """Examples ever added (not decayed)."""
    total_weight: float
    """Decayed count of examples: what the arrays currently hold."""
    mean_value: float | None
    """Decayed mean of the observed values; None before any update."""
    occupancy: float
    """Fraction of cells of ``bottom`` that are non-zero."""
    bytes: int
    """Memory of the arrays plus hash parameters."""
    estimates: int
    """Rows ever estimated."""
    prior_hits: int
    """Estimated rows that returned the prior."""
    updates: int
    """Update calls applied."""


class NWSketch:
    """A Nadaraya-Watson Sketch on a torch device. Not thread-safe: callers serialise access."""

    def __init__(self, config: SketchConfig, device: str | torch.device = "cpu") -> None:
        self._config = config
        self.device = resolve_device(device)
        self._hasher = SRPHasher(
            config.dim,
            config.rows,
            config.bits,
            config.seed,
            pool=config.pool,
            buckets=config.buckets,
            device=self.device,
        )
        self._set_center_tensor(config.center)
        dtype = torch.float64 if config.accumulator == "float64" else torch.float32
        size = config.rows * config.width
        self._top = torch.zeros(size, dtype=dtype, device=self.device)
        self._bottom = torch.zeros(size, dtype=dtype, device=self.device)
        self._observations = 0
        self._weight = 0.0
        self._value_sum = 0.0
        self._estimates = 0
        self._prior_hits = 0
        self._updates = 0

    # ----------------------------------------------------------------- properties
    @property
    def config(self) -> SketchConfig:
        return self._config

    @property
    def top(self) -> torch.Tensor:
        """Read-only view [rows, width] of the value sums."""
        return self._top.view(self._config.rows, self._config.width)

    @property
    def bottom(self) -> torch.Tensor:
        """Read-only view [rows, width] of the counts."""
        return self._bottom.view(self._config.rows, self._config.width)

    @property
    def observations(self) -> int:
        return self._observations

    @property
    def prior(self) -> float:
        """The value an estimate with an empty denominator returns right now."""
        if self._config.prior is not None:
            return float(self._config.prior)
        return self._value_sum / self._weight if self._weight > 0 else 0.0

    @property
    def mean_value(self) -> float | None:
        """Mean of the observed values the arrays hold (decayed with them); None when empty."""
        return self._value_sum / self._weight if self._weight > 0 else None

    @property
    def stats(self) -> SketchStats:
        occupied = int(torch.count_nonzero(self._bottom))
        return SketchStats(
            observations=self._observations,
            total_weight=self._weight,
            mean_value=self._value_sum / self._weight if self._weight > 0 else None,
            occupancy=occupied / self._bottom.numel(),
            bytes=self._config.array_bytes + self._hasher.nbytes,
            estimates=self._estimates,
            prior_hits=self._prior_hits,
            updates=self._updates,
        )

    # ----------------------------------------------------------------- verbs
    def set_center(self, center: Any) -> None:
        """Fix the centering vector. Allowed once, and only while the sketch is empty."""
        c = self.check_center(center)
        self._config = dataclasses.replace(self._config, center=tuple(float(v) for v in c.tolist()))
        self._set_center_tensor(self._config.center)

    def check_center(self, center: Any) -> torch.Tensor:
        """Validate ``center`` for :meth:`set_center` and return it as the float32 vector [dim]
        that would be fixed; changes nothing."""
        if self._config.center is not None:
            raise FailedPrecondition("the sketch's center is already set and is frozen")
        if self._observations > 0:
            raise FailedPrecondition(
                "cannot set the center of a sketch that already holds data "
                f"({self._observations} observations): its buckets would no longer match"
            )
        return as_embeddings(as_row(center), self._config.dim, "center")[0].to(torch.float32)

    def update(self, embeddings: Any, values: Any, *, validated: bool = False) -> None:
        """Add (embedding, value) pairs. All-or-nothing: bad input raises and changes nothing.

        ``validated``: the caller has checked the batch with :func:`as_embeddings` (a non-empty
        [n, dim] float tensor) and :func:`as_values` (n finite float64), as a server does once
        at its boundary; the engine then trusts it instead of checking it again."""
        if validated:
            x, y = embeddings, values
            n = x.shape[0]
        else:
            x = as_embeddings(embeddings, self._config.dim)
            n = x.shape[0]
            if n == 0:
                raise InvalidArgument("update needs at least one row, got an empty batch")
            y = as_values(values, n)
        idx = self._hasher.flat_index(x.to(self.device, torch.float32)).reshape(-1)
        rows = self._config.rows
        y_dev = y.to(self.device, self._top.dtype)
        if self._config.decay < 1.0:
            self._apply_decay(self._config.decay)
        self._top.index_add_(0, idx, y_dev.repeat_interleave(rows))
        self._bottom.index_add_(0, idx, torch.ones_like(idx, dtype=self._bottom.dtype))
        self._observations += n
        self._weight += float(n)
        self._value_sum += float(y.sum())
        self._updates += 1

    def estimate(self, embeddings: Any, *, validated: bool = False) -> Estimates:
        """Estimated value per row, with the support and whether the prior was used
        (``validated``: as in :meth:`update`, the batch was checked by :func:`as_embeddings`)."""
        x = embeddings if validated else as_embeddings(embeddings, self._config.dim)
        n = x.shape[0]
        if n == 0:
            empty = torch.zeros(0, dtype=torch.float64)
            return Estimates(empty, empty.clone(), torch.zeros(0, dtype=torch.bool))
        idx = self._hasher.flat_index(x.to(self.device, torch.float32)).reshape(-1)
        shape = (n, self._config.rows)
        top = self._top.index_select(0, idx).view(shape).to(torch.float64)
        bottom = self._bottom.index_select(0, idx).view(shape).to(torch.float64)
        num, den = self._aggregate(top), self._aggregate(bottom)
        empty_den = den <= 0
        values = torch.where(
            empty_den, torch.full_like(num, self.prior), num / den.clamp_min(1e-300)
        )
        self._estimates += n
        hits = int(empty_den.sum())
        self._prior_hits += hits
        return Estimates(values.cpu(), den.cpu(), empty_den.cpu())

    def decay(self, factor: float) -> None:
        """Multiply both arrays (and the running totals) by ``factor`` in (0, 1]."""
        if not (isinstance(factor, (int, float)) and 0.0 < factor <= 1.0):
            raise InvalidArgument(f"decay factor must be in (0, 1], got {factor}")
        self._apply_decay(float(factor))

    def check_merge(self, other: SketchConfig) -> None:
        """FailedPrecondition unless a sketch of config ``other`` has this one's hash functions."""
        if self._config.hash_key() != other.hash_key():
            raise FailedPrecondition(
                "sketches merge only with equal dim, rows, bits, seed, pool, buckets and center"
            )

    def merge(self, other: NWSketch) -> None:
        """Add another sketch with the same hash functions into this one (sketches are linear)."""
        self.check_merge(other.config)
        self._top += other._top.to(self.device, self._top.dtype)
        self._bottom += other._bottom.to(self.device, self._bottom.dtype)
        self._observations += other._observations
        self._weight += other._weight
        self._value_sum += other._value_sum
        self._updates += other._updates

    def copy(self) -> NWSketch:
        return NWSketch.deserialize(self.serialize(), device=self.device)

    # ----------------------------------------------------------------- persistence
    def serialize(self) -> bytes:
        """Versioned, checksummed bytes: config, counters, hash parameters, center, arrays."""
        header, arrays = self._content()
        header["counters"].update(
            estimates=self._estimates, prior_hits=self._prior_hits, updates=self._updates
        )
        return pack(header, arrays)

    def _content(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """The header and arrays of the sketch's content: config (with seed and center), hash
        parameters, the two arrays and the observation totals; no usage counters."""
        arrays: dict[str, torch.Tensor] = {"projections": self._hasher.projections}
        if self._hasher.pool_index is not None:
            arrays["pool_index"] = self._hasher.pool_index
        if self._hasher.bucket_ab is not None:
            arrays["bucket_ab"] = self._hasher.bucket_ab
        # Wide sketches are mostly empty (K = 16: 65,536 cells a row for a few thousand points),
        # so the occupied cells go as (index, top, bottom) when that is smaller than both arrays.
        cells = torch.nonzero((self._bottom != 0) | (self._top != 0)).flatten()
        layout = "sparse" if 3 * cells.numel() < 2 * self._top.numel() else "dense"
        if layout == "sparse":
            arrays["cells"] = cells.to(torch.int64)
            arrays["top"] = self._top[cells]
            arrays["bottom"] = self._bottom[cells]
        else:
            arrays["top"] = self._top
            arrays["bottom"] = self._bottom
        header: dict[str, Any] = {
            "layout": layout,
            "config": self._config.to_dict(),
            "counters": {
                "observations": self._observations,
                "weight": self._weight,
                "value_sum": self._value_sum,
            },
        }
        return header, arrays

    @classmethod
    def deserialize(cls, data: bytes, device: str | torch.device = "cpu") -> NWSketch:
        """Inverse of :meth:`serialize`; raises :class:`DataLoss` on any damage."""
        header, arrays = unpack(data)
        try:
            config = SketchConfig.from_dict(header["config"])
            counters = header["counters"]
            sketch = cls(config, device=device)
            sketch._hasher.set_parameters(
                arrays["projections"],
                arrays.get("pool_index"),
                arrays.get("bucket_ab"),
                sketch.device,
            )
            sketch._set_center_tensor(config.center)
            layout = header.get("layout", "dense")
            if layout not in ("dense", "sparse"):
                raise DataLoss(f"unknown snapshot layout {layout!r}")
            cells = (
                checked_cells(arrays["cells"], sketch._top.numel()) if layout == "sparse" else None
            )
            for name in ("top", "bottom"):
                src = arrays[name]
                dst = getattr(sketch, f"_{name}")
                want = dst.shape if cells is None else cells.shape
                if src.shape != want or src.dtype != dst.dtype:
                    raise DataLoss(f"snapshot array {name} has the wrong shape or dtype")
                if cells is None:
                    dst.copy_(src)
                else:
                    dst.zero_()
                    dst[cells.to(dst.device)] = src.to(dst.device)
            sketch._observations = int(counters["observations"])
            sketch._weight = float(counters["weight"])
            sketch._value_sum = float(counters["value_sum"])
            sketch._estimates = int(counters["estimates"])
            sketch._prior_hits = int(counters["prior_hits"])
            sketch._updates = int(counters["updates"])
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, DataLoss):
                raise
            raise DataLoss(f"snapshot content is invalid: {exc}") from exc
        return sketch

    def digest(self) -> str:
        """A hash of the sketch's content, for equality checks: config (seed, center), hash
        parameters, the two arrays and the observation totals (count, decayed weight and value
        sum). Usage counters (estimates, prior hits, update calls) are left out: reads do not
        change the digest, and equal content fed in different batches has equal digests where the
        sums are exact (floating-point sums of other values may differ in their last bits)."""
        header, arrays = self._content()
        return hashlib.blake2b(pack(header, arrays), digest_size=16).hexdigest()

    # ----------------------------------------------------------------- internals
    def _set_center_tensor(self, center: tuple[float, ...] | None) -> None:
        self._hasher.set_center(
            None if center is None else torch.tensor(center, dtype=torch.float32)
        )

    def _apply_decay(self, factor: float) -> None:
        self._top.mul_(factor)
        self._bottom.mul_(factor)
        self._weight *= factor
        self._value_sum *= factor

    def _aggregate(self, per_row: torch.Tensor) -> torch.Tensor:
        """[n, rows] -> [n]: mean over rows, or median over groups of row means."""
        if self._config.estimator == "mean":
            return per_row.mean(dim=1)
        g = self._config.groups
        means = per_row.reshape(per_row.shape[0], g, -1).mean(dim=2)
        return torch.quantile(means, 0.5, dim=1)


__all__ = [
    "MAX_BITS",
    "AccumulatorDType",
    "Estimates",
    "Estimator",
    "NWSketch",
    "SketchConfig",
    "SketchStats",
    "as_embeddings",
    "as_values",
    "resolve_device",
    "rows_for_error",
]
