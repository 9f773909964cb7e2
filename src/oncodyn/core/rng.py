"""Seeded random numbers.

Every random draw in oncodyn goes through an explicit :class:`numpy.random.Generator`.
:class:`BrownianPath` gives counter-based Brownian increments: the increment over fine
step ``i`` is a pure function of ``(seed, i)``, so runs with different time steps can share
one Brownian path (the coarse increment is the sum of the fine ones, as a convergence study
in the time step needs) and an interrupted run resumes with exactly the same noise.
"""

from __future__ import annotations

import numpy as np


def generator(seed: int | None, *stream: int) -> np.random.Generator:
    """A PCG64 generator for ``seed`` and an optional stream key (e.g. a step index)."""
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng([int(seed), *map(int, stream)])


class BrownianPath:
    """A d-dimensional Brownian path for ``n_particles`` particles on a fine time grid.

    Args:
        seed: base seed.
        n_particles: P.
        dim: d.
        fine_dt: the finest time step (time units); increments over coarser steps that are
            integer multiples of it are sums of the fine increments.
    """

    _STREAM = 0xB0B

    def __init__(self, seed: int, n_particles: int, dim: int, fine_dt: float):
        if fine_dt <= 0:
            raise ValueError(f"fine_dt must be > 0, got {fine_dt}")
        self.seed, self.n_particles, self.dim, self.fine_dt = int(seed), n_particles, dim, fine_dt

    def fine_increment(self, i: int) -> np.ndarray:
        """W(t_{i+1}) - W(t_i) on the fine grid, shape ``[P, d]``."""
        g = generator(self.seed, self._STREAM, i)
        return np.sqrt(self.fine_dt) * g.standard_normal((self.n_particles, self.dim))

    def ratio(self, dt: float) -> int:
        """Number of fine steps in one step of size ``dt`` (must be an integer multiple)."""
        r = dt / self.fine_dt
        n = int(round(r))
        if n < 1 or abs(r - n) > 1e-9 * max(1.0, r):
            raise ValueError(f"dt={dt} is not an integer multiple of the path's fine_dt={self.fine_dt}")
        return n

    def increment(self, step: int, dt: float) -> np.ndarray:
        """W(t_{n+1}) - W(t_n) for step ``n`` of size ``dt``, shape ``[P, d]``."""
        r = self.ratio(dt)
        if r == 1:
            return self.fine_increment(step)
        out = np.zeros((self.n_particles, self.dim))
        for i in range(step * r, (step + 1) * r):
            out += self.fine_increment(i)
        return out
