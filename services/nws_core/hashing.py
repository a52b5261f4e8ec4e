"""Sign-random-projection (SRP) hashing: one matrix product buckets a whole batch in every row.

Row r owns K Gaussian directions a_r1..a_rK; the bucket of x in row r is the K-bit code
[<a_rj, x - center> >= 0]_j, so the collision probability of x and y in one row is
k(x, y) = (1 - theta(x, y) / pi)^K.

Two ways to get the directions, both with exactly that per-row kernel:

* independent (default): R*K directions, one matrix product of cost d*R*K per example;
* pooled (``pool=P``): P shared directions, each row picks K distinct ones at random. Rows are
  then dependent (they share directions) but each row's marginal kernel is unchanged; hashing
  costs d*P per example.

Directions come from a seeded CPU generator and then move to the device, so the same seed gives
the same buckets in every process and on every device.

With ``buckets=B`` the K-bit code of each row is mapped into B cells by a 2-universal hash
(a*code + b mod p) mod B: a memory-lean layout for wide kernels (K up to 31) whose accuracy cost
is extra collisions between codes, measured in ``benchmarks/estimator_error.py``.
"""

from __future__ import annotations

import torch

_MERSENNE_31 = (1 << 31) - 1


class SRPHasher:
    """Maps float embeddings [n, d] to flat bucket indices [n, rows] of a rows x width table."""

    def __init__(
        self,
        dim: int,
        rows: int,
        bits: int,
        seed: int,
        *,
        pool: int | None = None,
        buckets: int | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.dim, self.rows, self.bits = dim, rows, bits
        self.pool, self.buckets = pool, buckets
        self.width = buckets if buckets is not None else 1 << bits
        gen = torch.Generator(device="cpu").manual_seed(seed)
        n_dirs = pool if pool is not None else rows * bits
        projections = torch.randn(dim, n_dirs, generator=gen, dtype=torch.float32)
        pool_index = None
        if pool is not None:
            pool_index = torch.stack(
                [torch.randperm(pool, generator=gen)[:bits] for _ in range(rows)]
            )
        bucket_ab = None
        if buckets is not None:
            a = torch.randint(1, _MERSENNE_31, (rows,), generator=gen, dtype=torch.int64)
            b = torch.randint(0, _MERSENNE_31, (rows,), generator=gen, dtype=torch.int64)
            bucket_ab = torch.stack([a, b])
        self.set_parameters(projections, pool_index, bucket_ab, device)

    def set_parameters(
        self,
        projections: torch.Tensor,
        pool_index: torch.Tensor | None,
        bucket_ab: torch.Tensor | None,
        device: torch.device | str,
    ) -> None:
        """Install hash parameters (freshly drawn or restored from a snapshot) on ``device``."""
        self.device = torch.device(device)
        self.projections = projections.to(self.device, torch.float32).contiguous()
        self.pool_index = None if pool_index is None else pool_index.to(self.device).reshape(-1)
        self.bucket_ab = None if bucket_ab is None else bucket_ab.to(self.device)
        self.powers = (2 ** torch.arange(self.bits, device=self.device)).to(torch.float32)
        self.offsets = torch.arange(self.rows, device=self.device, dtype=torch.int64) * self.width
        self._center_proj: torch.Tensor | None = None

    def set_center(self, center: torch.Tensor | None) -> None:
        """Hash x - center instead of x; the shift is folded into one bias per direction."""
        if center is None:
            self._center_proj = None
            return
        c = center.to(self.device, torch.float32).reshape(1, -1)
        self._center_proj = (c @ self.projections).reshape(-1)

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """Per-row bucket codes in [0, width), int64 [n, rows]."""
        proj = x @ self.projections
        if self._center_proj is not None:
            proj -= self._center_proj
        signs = proj >= 0
        if self.pool_index is not None:
            signs = signs.index_select(1, self.pool_index)
        bits = signs.reshape(x.shape[0], self.rows, self.bits).to(torch.float32)
        codes = (bits @ self.powers).to(torch.int64)
        if self.bucket_ab is not None:
            codes = (codes * self.bucket_ab[0] + self.bucket_ab[1]) % _MERSENNE_31 % self.width
        return codes

    def flat_index(self, x: torch.Tensor) -> torch.Tensor:
        """Indices into the flattened rows x width table, int64 [n, rows]."""
        return self.codes(x) + self.offsets

    @property
    def nbytes(self) -> int:
        total = self.projections.numel() * 4
        if self.pool_index is not None:
            total += self.pool_index.numel() * 8
        if self.bucket_ab is not None:
            total += self.bucket_ab.numel() * 8
        return total
