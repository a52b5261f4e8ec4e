"""The Nadaraya-Watson Sketch (NWS): an O(1) estimate of a value (a loss) at any embedding.

Two R x W arrays indexed by sign-random-projection LSH (see :mod:`nws_core.hashing`):
``update(x_i, y_i)`` adds y_i to ``top[r, h_r(x_i)]`` and 1 to ``bottom[r, h_r(x_i)]`` in every row
r; ``estimate(x) = mean_r top[r, h_r(x)] / mean_r bottom[r, h_r(x)]`` (Algorithm 5 of Daghaghi et
al.). Rows are aggregated *before* dividing; as R grows the estimate converges to the exact
Nadaraya-Watson estimator with kernel (1 - theta/pi)^K, with error O(1/sqrt(R)).

Inputs are validated here, once (:func:`as_embeddings`, :func:`as_values`); a rejected call
raises :class:`~nws_core.errors.InvalidArgument` (a ``ValueError``) and changes nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from nws_core.errors import DataLoss, FailedPrecondition, InvalidArgument
from nws_core.hashing import SRPHasher

Estimator = Literal["mean", "median_of_means"]
AccumulatorDType = Literal["float64", "float32"]

MAX_BITS = 24
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


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


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' picks CUDA when present, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidArgument(f"device {device!r} requested but CUDA is not available")
    return dev


def as_embeddings(x: Any, dim: int, name: str = "embeddings") -> torch.Tensor:
    """Validate a float [n, dim] array (numpy or torch) and return it as a CPU/device tensor."""
    if isinstance(x, np.ndarray):
        if x.dtype.kind != "f":
            raise InvalidArgument(f"{name} must be a float array, got dtype {x.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(x))
    elif isinstance(x, torch.Tensor):
        if x.dtype not in _FLOAT_DTYPES:
            raise InvalidArgument(f"{name} must be a float tensor, got dtype {x.dtype}")
        t = x
    else:
        raise InvalidArgument(f"{name} must be a numpy array or torch tensor, got {type(x)}")
    if t.ndim != 2 or t.shape[1] != dim:
        raise InvalidArgument(
            f"{name} must be [n, {dim}] floats, got {list(t.shape)} ({t.dtype})".replace(
                "torch.", ""
            )
        )
    # a finite sum proves every entry finite (NaN and inf propagate); only on a non-finite sum
    # (bad data, or an overflow of huge finite values) is the elementwise check needed
    if not bool(torch.isfinite(t.sum())) and not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).any(dim=1).nonzero()[0, 0])
        raise InvalidArgument(f"{name} contain non-finite values (first at row {bad})")
    return t


def as_values(y: Any, n: int, name: str = "values") -> torch.Tensor:
    """Validate n finite real values and return them as a float64 tensor."""
    if isinstance(y, (list, tuple)):
        y = np.asarray(y)
    if isinstance(y, np.ndarray):
        if y.dtype.kind not in "fiu":
            raise InvalidArgument(f"{name} must be real numbers, got dtype {y.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(y))
    elif isinstance(y, torch.Tensor):
        if y.dtype == torch.bool or y.is_complex():
            raise InvalidArgument(f"{name} must be real numbers, got dtype {y.dtype}")
        t = y
    else:
        raise InvalidArgument(f"{name} must be a numpy array or torch tensor, got {type(y)}")
    if t.ndim != 1 or t.shape[0] != n:
        raise InvalidArgument(
            f"{name} must have shape [{n}] (one per embedding row), got {list(t.shape)}"
        )
    t = t.to(torch.float64)
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).nonzero()[0, 0])
        raise InvalidArgument(f"{name} contain non-finite values (first at index {bad})")
    return t


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
        return as_embeddings(_as_row(center), self._config.dim, "center")[0].to(torch.float32)

    def update(self, embeddings: Any, values: Any) -> None:
        """Add (embedding, value) pairs. All-or-nothing: bad input raises and changes nothing."""
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

    def estimate(self, embeddings: Any) -> Estimates:
        """Estimated value per row, with the support and whether the prior was used."""
        x = as_embeddings(embeddings, self._config.dim)
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

    def check_merge(self, other: NWSketch) -> None:
        """FailedPrecondition unless ``other`` has this sketch's hash functions."""
        if self._config.hash_key() != other._config.hash_key():
            raise FailedPrecondition(
                "sketches merge only with equal dim, rows, bits, seed, pool, buckets and center"
            )

    def merge(self, other: NWSketch) -> None:
        """Add another sketch with the same hash functions into this one (sketches are linear)."""
        self.check_merge(other)
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
        return _pack(header, arrays)

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
        header, arrays = _unpack(data)
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
                _checked_cells(arrays["cells"], sketch._top.numel()) if layout == "sparse" else None
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
        return hashlib.blake2b(_pack(header, arrays), digest_size=16).hexdigest()

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


# --------------------------------------------------------------------- helpers


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise InvalidArgument(message)


def _as_row(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return np.asarray(v, dtype=np.float32).reshape(1, -1)
    if isinstance(v, (np.ndarray, torch.Tensor)) and v.ndim == 1:
        return v.reshape(1, -1)
    return v


def _checked_cells(cells: torch.Tensor, size: int) -> torch.Tensor:
    """The cell indices of a sparse snapshot: int64, 1-D, strictly increasing, in [0, size)."""
    ok = cells.dtype == torch.int64 and cells.ndim == 1
    if ok and cells.numel():
        ok = int(cells[0]) >= 0 and int(cells[-1]) < size and bool((cells[1:] > cells[:-1]).all())
    if not ok:
        raise DataLoss("snapshot cell indices are out of range or unsorted")
    return cells


_MAGIC = b"NWSK"
_FORMAT_VERSION = 2
"""2 adds the sparse layout of the count arrays; version 1 snapshots (dense) still load."""
_READABLE_VERSIONS = (1, 2)
_DIGEST_SIZE = 32
_TORCH_TO_NP = {
    torch.float32: "<f4",
    torch.float64: "<f8",
    torch.int64: "<i8",
}


def _pack(header: dict[str, Any], arrays: dict[str, torch.Tensor]) -> bytes:
    chunks: list[bytes] = []
    specs = []
    offset = 0
    for name, t in arrays.items():
        raw = t.detach().cpu().contiguous().numpy().astype(_TORCH_TO_NP[t.dtype]).tobytes()
        specs.append(
            {"name": name, "dtype": _TORCH_TO_NP[t.dtype], "shape": list(t.shape), "offset": offset}
        )
        chunks.append(raw)
        offset += len(raw)
    header = {**header, "arrays": specs}
    head = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    body = b"".join([_MAGIC, struct.pack("<II", _FORMAT_VERSION, len(head)), head, *chunks])
    return body + hashlib.blake2b(body, digest_size=_DIGEST_SIZE).digest()


def _unpack(data: bytes) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DataLoss(f"snapshot must be bytes, got {type(data)}")
    data = bytes(data)
    if len(data) < len(_MAGIC) + 8 + _DIGEST_SIZE or data[:4] != _MAGIC:
        raise DataLoss("not an NWS sketch snapshot (bad magic or too short)")
    body, digest = data[:-_DIGEST_SIZE], data[-_DIGEST_SIZE:]
    if hashlib.blake2b(body, digest_size=_DIGEST_SIZE).digest() != digest:
        raise DataLoss("sketch snapshot checksum mismatch: the data is corrupt or truncated")
    version, head_len = struct.unpack_from("<II", body, 4)
    if version not in _READABLE_VERSIONS:
        raise DataLoss(f"unsupported snapshot format version {version}")
    start = 12 + head_len
    try:
        header = json.loads(body[12:start])
        arrays = {}
        for spec in header["arrays"]:
            dt = np.dtype(spec["dtype"])
            count = int(np.prod(spec["shape"])) if spec["shape"] else 1
            a = np.frombuffer(body, dtype=dt, count=count, offset=start + spec["offset"])
            arrays[spec["name"]] = torch.from_numpy(a.reshape(spec["shape"]).copy())
    except (ValueError, KeyError, TypeError) as exc:
        raise DataLoss(f"sketch snapshot header is invalid: {exc}") from exc
    return header, arrays
