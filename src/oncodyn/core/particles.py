"""Particle ensembles: sampling initial densities.

A particle cloud is an array ``x`` of shape ``[P, d]`` (length units); every particle
carries the same weight ``M0 / P`` (mass units), so the density is
``rho ~ (M0/P) sum_p delta(x - x_p)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def sample_ball(rng: np.random.Generator, n: int, dim: int, radius: float = 1.0,
                center: Sequence[float] | None = None) -> np.ndarray:
    """``n`` i.i.d. points uniform in the ball of ``radius`` at ``center``; shape ``[n, dim]``."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if radius <= 0:
        raise ValueError(f"radius must be > 0, got {radius}")
    g = rng.standard_normal((n, dim))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    r = radius * rng.random(n) ** (1.0 / dim)
    c = np.zeros(dim) if center is None else np.asarray(center, dtype=float)
    return c + g * r[:, None]


def sample_clusters(rng: np.random.Generator, n: int, dim: int, centers: np.ndarray,
                    radii: Sequence[float], fractions: Sequence[float]) -> np.ndarray:
    """Uniform balls at ``centers`` ``[K, dim]`` holding ``fractions`` of the ``n`` points."""
    fr = np.asarray(fractions, dtype=float)
    if np.any(fr <= 0):
        raise ValueError("cluster fractions must be > 0")
    counts = np.floor(fr / fr.sum() * n).astype(int)
    counts[0] += n - counts.sum()
    parts = [sample_ball(rng, int(m), dim, r, c) for m, r, c in zip(counts, radii, centers)]
    return np.concatenate(parts, axis=0)


def second_moment(x: np.ndarray, mass: float) -> float:
    """``int |x|^2 rho dx`` of the empirical measure, ``(M0/P) sum_p |x_p|^2``."""
    return float(mass * np.mean(np.sum(x * x, axis=1)))
