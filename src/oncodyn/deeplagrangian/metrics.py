r"""Distances between two sample sets ``a`` ``[N, d]`` and ``b`` ``[M, d]`` (length units).

* :func:`sliced_wasserstein` -- :math:`SW_2(a, b) = (E_\theta W_2^2(\theta\cdot a,
  \theta\cdot b))^{1/2}` over random unit directions :math:`\theta`; each 1D :math:`W_2` is
  exact for the two empirical measures (sorted samples matched on the merged quantile grid,
  so N != M is allowed). For a shift m of one distribution, :math:`SW_2 = |m|/\sqrt d`.
* :func:`energy_distance` -- :math:`2E|X-Y| - E|X-X'| - E|Y-Y'|` of the two empirical
  measures (on subsamples), >= 0 and 0 only when they coincide.
* :func:`centre_of_mass` -- the empirical mean ``[d]``. (The second moment is
  :func:`oncodyn.core.particles.second_moment` with ``mass=1``.)

They are hand-written: each is a few lines of NumPy/SciPy, whereas POT (the usual optimal
transport library) would add a large compiled dependency for two formulas.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist


def _rng(rng: np.random.Generator | None) -> np.random.Generator:
    return np.random.default_rng(0) if rng is None else rng


def _check_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or len(a) == 0 or len(b) == 0:
        raise ValueError(f"a, b: must be non-empty [N, d] and [M, d] arrays, got {a.shape} and {b.shape}")
    return a, b


def centre_of_mass(x: np.ndarray) -> np.ndarray:
    """The mean of the samples ``x`` ``[N, d]``; ``[d]`` (length units)."""
    return np.asarray(x, dtype=np.float64).mean(axis=0)


def _quantile_matching(n: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Interval widths ``[K]`` of the merged grid {i/n} U {j/m} and the sorted-sample index of
    each empirical quantile function on every interval (``[K]``, ``[K]``)."""
    u = np.union1d(np.arange(1, n + 1) / n, np.arange(1, m + 1) / m)
    w = np.diff(u, prepend=0.0)
    mid = u - 0.5 * w
    return w, np.minimum((mid * n).astype(np.int64), n - 1), np.minimum((mid * m).astype(np.int64), m - 1)


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, n_projections: int = 200,
                       rng: np.random.Generator | None = None, chunk: int = 32) -> float:
    """Sliced 2-Wasserstein distance of the empirical measures of ``a`` and ``b``.

    Args:
        a: samples ``[N, d]``; b: samples ``[M, d]`` (length units).
        n_projections: number of random unit directions (uniform on the sphere).
        rng: generator of the directions (None: a fixed seed, so repeated calls agree).
        chunk: directions processed at once (memory ``chunk * (N + M)`` floats).

    Returns:
        ``SW_2`` (length units): the square root of the mean over directions of the 1D
        squared W2 between the projected samples. Its Monte Carlo error over directions is
        relative ~ ``1/sqrt(n_projections)`` of the spread of the 1D values.
    """
    a, b = _check_pair(a, b)
    if n_projections < 1:
        raise ValueError(f"n_projections: must be >= 1, got {n_projections!r}")
    theta = _rng(rng).standard_normal((n_projections, a.shape[1]))
    theta /= np.linalg.norm(theta, axis=1, keepdims=True)
    w, ia, ib = _quantile_matching(len(a), len(b))
    total = 0.0
    for s in range(0, n_projections, chunk):
        pa = np.sort(a @ theta[s : s + chunk].T, axis=0)  # [N, c]
        pb = np.sort(b @ theta[s : s + chunk].T, axis=0)
        total += float(w @ ((pa[ia] - pb[ib]) ** 2).sum(axis=1))
    return float(np.sqrt(total / n_projections))


def _mean_distance(a: np.ndarray, b: np.ndarray, chunk: int = 1024) -> float:
    """E|X - Y| over all pairs of rows of ``a`` and ``b`` (diagonal included), in row chunks."""
    return sum(float(cdist(a[s : s + chunk], b).sum()) for s in range(0, len(a), chunk)) / (len(a) * len(b))


def energy_distance(a: np.ndarray, b: np.ndarray, max_samples: int = 4000,
                    rng: np.random.Generator | None = None) -> float:
    """Energy distance ``2E|X-Y| - E|X-X'| - E|Y-Y'|`` of the empirical measures of ``a``, ``b``.

    Args:
        a: samples ``[N, d]``; b: samples ``[M, d]`` (length units).
        max_samples: each set larger than this is replaced by a random subsample of this
            size without replacement (cost O(max_samples^2 d)).
        rng: generator of the subsamples (None: a fixed seed).

    Returns:
        The energy distance (length units), the V-statistic (pairs of a point with itself
        included), so it is >= 0 exactly; for two samples of one distribution it is of order
        ``E|X-X'| (1/N + 1/M)``, not 0.
    """
    a, b = _check_pair(a, b)
    if max_samples < 1:
        raise ValueError(f"max_samples: must be >= 1, got {max_samples!r}")
    g = _rng(rng)
    if len(a) > max_samples:
        a = a[g.choice(len(a), max_samples, replace=False)]
    if len(b) > max_samples:
        b = b[g.choice(len(b), max_samples, replace=False)]
    e = 2.0 * _mean_distance(a, b) - _mean_distance(a, a) - _mean_distance(b, b)
    return max(e, 0.0)
