"""The engine's oracle: NWS estimates converge to the exact Nadaraya-Watson estimator.

The oracle below is written independently of the engine: it computes angles directly and uses
the closed-form SRP kernel k(x, y) = (1 - theta(x, y) / pi)^K.

Where the tolerance comes from. For one hash row r, let T_r = top[r, h_r(x)] and
B_r = bottom[r, h_r(x)]. Over the random hash, E[T_r] = N = sum_i y_i k(x, x_i) and
E[B_r] = D = sum_i k(x, x_i), so with f = N / D the variable Z_r = T_r - f B_r has mean 0 and

    Var(Z_r) = sum_{i, j} (y_i - f)(y_j - f) P(h_r(x) = h_r(x_i) = h_r(x_j)).

For sign random projections the three-way collision probability of one bit is
1 - (theta(x, x_i) + theta(x, x_j) + theta(x_i, x_j)) / (2 pi), so with K bits per row it is that
to the power K: Var(Z_r) is computable exactly. The engine returns
f_hat = mean_r T_r / mean_r B_r, hence f_hat - f = mean_r Z_r / mean_r B_r, which by the CLT
(rows are independent) and mean_r B_r -> D is approximately N(0, Var(Z_r) / (R D^2)).
So for each query, |f_hat - f| <= c(x) / sqrt(R) with c(x) = z_{0.995} sd(Z_r) / D holds with
probability 0.99, and the fraction of queries violating it is Binomial(n_queries, 0.01).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nws_core.sketch import NWSketch, SketchConfig

Z_995 = 2.5758  # two-sided 99 % normal quantile


def _angles(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a = a / a.norm(dim=1, keepdim=True)
    b = b / b.norm(dim=1, keepdim=True)
    return torch.arccos((a @ b.T).clamp(-1.0, 1.0))


def exact_nw(train_x, train_y, query_x, bits):
    """Exact NW estimate f, density D and sd(Z_r) for every query (float64)."""
    tx = torch.as_tensor(train_x, dtype=torch.float64)
    ty = torch.as_tensor(train_y, dtype=torch.float64)
    qx = torch.as_tensor(query_x, dtype=torch.float64)
    theta_q = _angles(qx, tx)  # [m, n]
    theta_tt = _angles(tx, tx)  # [n, n]
    k = (1 - theta_q / math.pi) ** bits
    d = k.sum(1)
    f = (k * ty).sum(1) / d
    sd = torch.empty_like(f)
    for q in range(qx.shape[0]):
        a = theta_q[q]
        p3 = (1 - (a[:, None] + a[None, :] + theta_tt) / (2 * math.pi)).clamp_min(0) ** bits
        r = ty - f[q]
        sd[q] = torch.sqrt((r[:, None] * p3 * r[None, :]).sum())
    return f.numpy(), d.numpy(), sd.numpy()


@pytest.fixture(scope="module")
def regression_data():
    rng = np.random.default_rng(7)
    dim, n, m, clusters = 12, 1200, 300, 6
    centers = rng.normal(size=(clusters, dim))
    w = rng.normal(size=dim)

    def draw(count):
        c = centers[rng.integers(0, clusters, count)]
        x = c + 0.6 * rng.normal(size=(count, dim))
        y = 1 / (1 + np.exp(-(x @ w) / 2 + 0.3 * rng.normal(size=count)))
        return x.astype(np.float32), y

    tx, ty = draw(n)
    qx, _ = draw(m)
    return tx, ty, qx


@pytest.mark.slow
def test_estimates_converge_to_exact_nadaraya_watson(regression_data):
    tx, ty, qx = regression_data
    bits = 6
    f, dens, sd = exact_nw(tx, ty, qx, bits)
    c = Z_995 * sd / dens
    m = len(qx)
    # Binomial(m, 0.01) upper tail: mean + 3 sd
    allowed = m * 0.01 + 3 * math.sqrt(m * 0.01 * 0.99)
    p99 = {}
    for rows in (25, 100, 400):
        sketch = NWSketch(SketchConfig(dim=tx.shape[1], rows=rows, bits=bits, seed=rows))
        sketch.update(tx, ty)
        est = sketch.estimate(qx)
        assert not est.prior_used.any()
        err = np.abs(est.values.numpy() - f)
        violations = int((err > c / math.sqrt(rows)).sum())
        assert violations <= allowed, (rows, violations, allowed)
        p99[rows] = float(np.quantile(err, 0.99))
        # the headline form: the 99th-percentile error is within c / sqrt(R), c = p99 of c(x)
        assert p99[rows] <= float(np.quantile(c, 0.99)) / math.sqrt(rows)
    # O(1/sqrt(R)): 16x the rows should shrink the error about 4x (slope -1/2 on log-log)
    slope = math.log(p99[400] / p99[25]) / math.log(16)
    assert -0.75 <= slope <= -0.3, (p99, slope)


def test_exact_oracle_agrees_with_brute_force_kernel():
    """Guard the oracle itself: its kernel equals the empirical SRP collision rate."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2, 8))
    theta = math.acos(float(x @ y / np.linalg.norm(x) / np.linalg.norm(y)))
    a = rng.normal(size=(200_000, 8))
    same = np.mean(np.sign(a @ x) == np.sign(a @ y))
    assert abs(same - (1 - theta / math.pi)) < 4 * math.sqrt(0.25 / 200_000)
