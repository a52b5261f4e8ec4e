"""A sketch's configuration: everything that defines it, validated once when it is made, and
the sizing rule :func:`rows_for_error` (rows for an error at a confidence)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from nws_core.inputs import check as _check

Estimator = Literal["mean", "median_of_means"]
AccumulatorDType = Literal["float64", "float32"]

MAX_BITS = 24


@dataclass(frozen=True)
class SketchConfig:
    """Everything that defines a sketch; persisted with it and compared on merge."""

    dim: int
    """Embedding dimension d."""
    rows: int = 200
    """R: independent hash rows; the estimate's error shrinks as 1/sqrt(R)."""
    bits: int = 10
    """K: sign bits per row; each row has 2^K buckets and kernel (1 - theta/pi)^K."""
    seed: int = 0
    """Seed of the hash functions; sketches merge only with the same seed."""
    estimator: Estimator = "mean"
    """'mean' (Algorithm 5) or 'median_of_means' over ``groups`` row groups."""
    groups: int = 5
    """Row groups for median_of_means; must divide ``rows``."""
    prior: float | None = None
    """Estimate returned where no row has data; None = running mean of observed values."""
    decay: float = 1.0
    """Forgetting factor in (0, 1] applied to both arrays before each update; 1 = none."""
    pool: int | None = None
    """Shared pool of P projection directions (rows draw K each); None = R*K independent."""
    buckets: int | None = None
    """Memory-lean layout: hash each row's K-bit code into this many cells; None = 2^K."""
    accumulator: AccumulatorDType = "float64"
    """Dtype of the two arrays; float32 halves memory at a measured precision cost."""
    center: tuple[float, ...] | None = field(default=None, repr=False)
    """Centering vector subtracted before hashing; frozen once set (see ``set_center``)."""

    def __post_init__(self) -> None:
        _check(isinstance(self.dim, int) and self.dim >= 1, f"dim must be >= 1, got {self.dim}")
        _check(isinstance(self.rows, int) and self.rows >= 1, f"rows must be >= 1, got {self.rows}")
        _check(
            isinstance(self.bits, int) and 1 <= self.bits <= MAX_BITS,
            f"bits must be in [1, {MAX_BITS}], got {self.bits}",
        )
        _check(isinstance(self.seed, int) and self.seed >= 0, f"seed must be >= 0: {self.seed}")
        _check(
            self.estimator in ("mean", "median_of_means"),
            f"estimator must be 'mean' or 'median_of_means', got {self.estimator!r}",
        )
        if self.estimator == "median_of_means":
            _check(
                isinstance(self.groups, int) and 1 <= self.groups <= self.rows,
                f"groups must be in [1, rows={self.rows}], got {self.groups}",
            )
            _check(
                self.rows % self.groups == 0,
                f"groups ({self.groups}) must divide rows ({self.rows})",
            )
        _check(
            self.prior is None or math.isfinite(self.prior),
            f"prior must be finite, got {self.prior}",
        )
        _check(
            isinstance(self.decay, (int, float)) and 0.0 < self.decay <= 1.0,
            f"decay must be in (0, 1], got {self.decay}",
        )
        if self.pool is not None:
            _check(
                isinstance(self.pool, int) and self.pool >= self.bits,
                f"pool must be >= bits ({self.bits}), got {self.pool}",
            )
        if self.buckets is not None:
            _check(
                isinstance(self.buckets, int) and self.buckets >= 1,
                f"buckets must be >= 1, got {self.buckets}",
            )
        _check(
            self.accumulator in ("float64", "float32"),
            f"accumulator must be 'float64' or 'float32', got {self.accumulator!r}",
        )
        if self.center is not None:
            _check(
                len(self.center) == self.dim,
                f"center must have {self.dim} entries, got {len(self.center)}",
            )
            _check(all(math.isfinite(v) for v in self.center), "center must be finite")

    @property
    def width(self) -> int:
        """Cells per row: 2^bits, or ``buckets`` in the memory-lean layout."""
        return self.buckets if self.buckets is not None else 1 << self.bits

    @property
    def array_bytes(self) -> int:
        """Bytes of the two count arrays."""
        itemsize = 8 if self.accumulator == "float64" else 4
        return 2 * self.rows * self.width * itemsize

    def hash_key(self) -> tuple[Any, ...]:
        """The fields that decide bucket assignment; merge requires them equal."""
        return (self.dim, self.rows, self.bits, self.seed, self.pool, self.buckets, self.center)

    def to_dict(self, *, with_center: bool = True) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if not with_center:
            d.pop("center")
        elif self.center is not None:
            d["center"] = list(self.center)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SketchConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        _check(not unknown, f"unknown sketch config fields: {sorted(unknown)}")
        d = dict(d)
        if d.get("center") is not None:
            d["center"] = tuple(float(v) for v in d["center"])
        return cls(**d)


def rows_for_error(eps: float, delta: float, spread: float = 1.0) -> int:
    """Rows R so that |estimate - NW estimate| <= eps with probability >= 1 - delta.

    Corollary 2.2's O(log(1/delta) / eps^2), made explicit: the estimate minus its target is
    (to first order) the mean over R independent rows of Z_r / D, where Z_r = top_r - f * bottom_r
    has mean 0 and D = E[bottom_r] is the kernel density at x. With ``spread`` the sub-Gaussian
    scale of Z_r / D (for values in [0, 1] it is at most sqrt(E[bottom_r^2]) / D, about 1 where
    the query sits in a populated region), a sub-Gaussian tail bound gives
    R >= 2 * spread^2 * ln(2 / delta) / eps^2.
    """
    _check(eps > 0, f"eps must be > 0, got {eps}")
    _check(0 < delta < 1, f"delta must be in (0, 1), got {delta}")
    _check(spread > 0, f"spread must be > 0, got {spread}")
    return math.ceil(2.0 * spread**2 * math.log(2.0 / delta) / eps**2)
