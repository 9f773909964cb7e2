r"""Error metrics of PHKS solutions: particle clouds against bin densities, fields against references.

A particle cloud ``x`` ``[P, d]`` (length, equal weights) is compared with a density ``rho``
on a :class:`~oncodyn.chemotaxis.phks.BinGrid` (``grid.shape``, mass / length^d) by
Wasserstein-1 distances of *normalised* distributions, the bins taken as point masses at
their centres:

* :func:`w1_marginals` -- the exact 1D W1 of each axis' marginal (``[d]``, length), the bin
  density read as constant within each bin;
* :func:`sliced_w1` -- the mean 1D W1 of the projections on random unit directions (length).

Both use :func:`scipy.stats.wasserstein_distance` (exact in 1D, O(N log N)), so no optimal-
transport package is needed. Because each particle sits within h/2 (per axis) of its bin
centre, the W1 of a cloud against its own histogram is at most h/2 per marginal and
``sqrt(d) h / 2`` sliced: the resolution floor of these metrics.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import wasserstein_distance

from oncodyn.chemotaxis.phks import BinGrid
from oncodyn.chemotaxis.phks_sipf import deposit


def binned_density(x: np.ndarray, grid: BinGrid, mass: float) -> np.ndarray:
    """Density ``grid.shape`` (mass / length^d) of particles ``x`` ``[P, d]`` of total ``mass``.

    :func:`oncodyn.chemotaxis.phks_sipf.deposit` with the arguments in metric order.
    """
    return deposit(grid, x, mass)


def _check(x: np.ndarray, rho: np.ndarray, grid: BinGrid) -> None:
    if x.ndim != 2 or x.shape[1] != grid.dim:
        raise ValueError(f"x: must have shape [P, {grid.dim}], got {x.shape}")
    if rho.shape != grid.shape:
        raise ValueError(f"rho: must have shape {grid.shape}, got {rho.shape}")
    if np.any(rho < 0) or not rho.sum() > 0:
        raise ValueError("rho: must be >= 0 with a positive total")


def w1_marginals(x: np.ndarray, rho: np.ndarray, grid: BinGrid, subdivide: int = 16) -> np.ndarray:
    """Per-axis Wasserstein-1 between the cloud's and the bin density's 1D marginals.

    The bin density is read as constant within each bin: each bin's marginal mass is spread
    over ``subdivide`` equal point masses at the centres of its sub-intervals, so the
    representation error is at most h / (4 subdivide) (``subdivide=1``: bins as point masses
    at their centres, error up to h/4 even for an exact cloud).

    Args:
        x: particles ``[P, d]`` (length), equal weights.
        rho: density on the bins ``grid.shape`` (any positive scale: both are normalised).
        grid: the bins.
        subdivide: sub-intervals per bin (>= 1).

    Returns:
        ``[d]`` (length).
    """
    _check(x, rho, grid)
    if subdivide < 1:
        raise ValueError(f"subdivide: must be >= 1, got {subdivide}")
    offsets = ((np.arange(subdivide) + 0.5) / subdivide - 0.5) * grid.h
    pts = (grid.centres_1d[:, None] + offsets[None, :]).ravel()
    out = np.empty(grid.dim)
    for a in range(grid.dim):
        marginal = rho.sum(axis=tuple(b for b in range(grid.dim) if b != a))
        out[a] = wasserstein_distance(x[:, a], pts, v_weights=np.repeat(marginal, subdivide))
    return out


def random_directions(dim: int, n: int, seed: int = 0) -> np.ndarray:
    """``n`` unit vectors ``[n, dim]`` uniform on the sphere (a pure function of ``seed``)."""
    v = np.random.default_rng(seed).standard_normal((n, dim))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def sliced_w1(x: np.ndarray, rho: np.ndarray, grid: BinGrid, n_directions: int = 64, seed: int = 0) -> float:
    """Sliced Wasserstein-1: mean over random unit directions θ of W1(θ·x, θ·bins).

    Only occupied bins enter (empty bins weigh nothing), so the cost is O(n_directions (P + K)
    log(P + K)) with K the occupied bins.

    Args:
        x: particles ``[P, d]`` (length).
        rho: density ``grid.shape`` (normalised internally).
        grid: the bins.
        n_directions: number of directions (>= 1).
        seed: seed of the directions (:func:`random_directions`).

    Returns:
        the sliced W1 (length).
    """
    _check(x, rho, grid)
    if n_directions < 1:
        raise ValueError(f"n_directions: must be >= 1, got {n_directions}")
    occ = rho > 0
    pts = grid.centres()[occ]  # [K, d]
    w = rho[occ]
    dirs = random_directions(grid.dim, n_directions, seed)
    return float(np.mean([wasserstein_distance(x @ th, pts @ th, v_weights=w) for th in dirs]))


def relative_l2(a: np.ndarray, b_ref: np.ndarray) -> float:
    """``||a - b_ref|| / ||b_ref||`` (Euclidean over all entries; same shapes)."""
    a, b_ref = np.asarray(a, float), np.asarray(b_ref, float)
    if a.shape != b_ref.shape:
        raise ValueError(f"a: must have the shape of b_ref {b_ref.shape}, got {a.shape}")
    nb = np.linalg.norm(b_ref)
    if nb == 0:
        raise ValueError("b_ref: must be non-zero for a relative error")
    return float(np.linalg.norm(a - b_ref) / nb)


def total_mass(rho: np.ndarray, grid: BinGrid) -> float:
    """``sum rho h^d`` (mass)."""
    return float(np.sum(rho) * grid.bin_volume)


def min_value(a: np.ndarray) -> float:
    """Smallest entry (e.g. to check c >= 0)."""
    return float(np.min(a))
