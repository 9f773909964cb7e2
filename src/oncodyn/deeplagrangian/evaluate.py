r"""Measures of a trained :class:`~oncodyn.deeplagrangian.flow.FlowSolution` (pure functions).

All use exact samples and the exact log-density of the flow; ``seed`` fixes the latent
draws, and every function of several times reuses the *same* latent points at each time
(common random numbers), so differences in time (moment slopes) carry little Monte Carlo noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from oncodyn.deeplagrangian.flow import FlowSolution


def latent(sol: FlowSolution, n: int, seed: int) -> torch.Tensor:
    """The ``[n, d]`` standard-normal latent points every function here draws for ``seed``."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn(n, sol.dim, generator=g, dtype=sol.chain.mean.dtype).to(sol.chain.mean.device)


def samples_at(sol: FlowSolution, times: Sequence[float], n: int, seed: int = 0) -> list[np.ndarray]:
    """Samples ``[n, d]`` of p(., t) for each t, pushed from one latent set."""
    z = latent(sol, n, seed)
    with torch.no_grad():
        return [sol.chain.push(z, float(t)).cpu().numpy() for t in times]


def moments(sol: FlowSolution, times: Sequence[float], n: int = 100_000, seed: int = 0) -> dict[str, np.ndarray]:
    """Centre of mass ``mean`` [T, d], ``m2`` = E|X|^2 [T] and covariance trace ``var`` [T] at ``times``."""
    xs = samples_at(sol, times, n, seed)
    mean = np.array([x.mean(0) for x in xs])
    m2 = np.array([(x * x).sum(1).mean() for x in xs])
    var = np.array([x.var(0).sum() for x in xs])
    return {"mean": mean, "m2": m2, "var": var}


def kl_to(sol: FlowSolution, t: float, log_p: Callable[[np.ndarray], np.ndarray], n: int = 100_000,
          seed: int = 0) -> tuple[float, float]:
    r"""KL(p_theta(t) \| p) = E_{p_theta}[log p_theta - log p] and its Monte Carlo standard error."""
    (x,) = samples_at(sol, [t], n, seed)
    diff = sol.log_density(x, t) - log_p(x)
    return float(diff.mean()), float(diff.std() / math.sqrt(n))


def relative_l2_by_sampling(sol: FlowSolution, t: float, p: Callable[[np.ndarray], np.ndarray],
                            samples_p: np.ndarray) -> float:
    r"""Relative L2 error :math:`\|p_\theta - p\|_2/\|p\|_2`, both integrals by importance sampling
    with samples of the reference ``p``: :math:`\int f^2 = E_p[f^2/p]`."""
    pr = p(samples_p)
    pt = sol.density(samples_p, t)
    return float(math.sqrt(np.mean((pt - pr) ** 2 / pr) / np.mean(pr)))


def max_density(sol: FlowSolution, t: float, n: int = 20_000, seed: int = 0, refine: int = 50) -> float:
    """max_x p_theta(x, t): the best of ``n`` samples, refined by gradient ascent on log p (1 / length^d)."""
    (x,) = samples_at(sol, [t], n, seed)
    lp = sol.log_density(x, t)
    best = torch.as_tensor(x[np.argsort(lp)[-8:]], dtype=sol.chain.mean.dtype,
                           device=sol.chain.mean.device).requires_grad_(True)
    opt = torch.optim.Adam([best], lr=1e-2 * float(np.std(x)))
    for _ in range(refine):
        loss = -sol.chain.log_density(best, float(t)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        lp_ref = sol.chain.log_density(best, float(t)).max().item()
    return float(math.exp(max(lp.max(), lp_ref)))


def radial_profile(sol: FlowSolution, t: float, r: np.ndarray, centre: Sequence[float] | None = None,
                   n_dirs: int = 64, seed: int = 0) -> np.ndarray:
    """p_theta averaged over ``n_dirs`` directions at radii ``r`` [R] about ``centre``; ``[R]``."""
    d = sol.dim
    rng = np.random.default_rng(seed)
    if d == 2:
        ang = (np.arange(n_dirs) + rng.random()) * 2 * np.pi / n_dirs
        dirs = np.stack([np.cos(ang), np.sin(ang)], 1)
    else:  # Fibonacci sphere, randomly rotated
        i = np.arange(n_dirs) + 0.5
        phi = np.arccos(1 - 2 * i / n_dirs)
        th = np.pi * (1 + 5**0.5) * i
        dirs = np.stack([np.cos(th) * np.sin(phi), np.sin(th) * np.sin(phi), np.cos(phi)], 1)
        q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
        dirs = dirs @ q.T
    c = np.zeros(d) if centre is None else np.asarray(centre, dtype=float)
    pts = c + (np.asarray(r, dtype=float)[:, None, None] * dirs[None]).reshape(-1, d)
    return sol.density(pts, t).reshape(len(r), n_dirs).mean(1)
