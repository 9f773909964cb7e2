r"""Blow-up analysis: sup norms of the Fourier field, the indicator R(t), critical-mass bisection.

For a concentrating solution the sup norm of the H-mode field grows with H (O(H) for a
delta-type singularity in 3D, O(log H) for a |x|^{-2} profile), while it converges for a
smooth solution. Hence the indicator

.. math:: R(t) = \|c\|_\infty(H=24) / \|c\|_\infty(H=12)

from two runs that share everything else: R ~ 1 while smooth, R jumps towards 2 at blow-up.
The critical mass is where R(T) jumps; :func:`bisect_critical_mass` brackets and bisects it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from oncodyn.core.grid import FourierGrid
from oncodyn.core.spectral import evaluate_on_grid

#: R(T) above this marks blow-up (R ~ 1 smooth, ~ 2 for a delta in 3D: the midpoint).
BLOWUP_THRESHOLD = 1.5


def c_max_on_grid(grid: FourierGrid, alpha: np.ndarray, n_points: int | None = None) -> float:
    """max_x c(x) of the Fourier series on a uniform grid of ``n_points`` (default 2H) per axis."""
    return float(evaluate_on_grid(grid, alpha, n_points or 2 * grid.n_modes).max())


def c_max_at_points(nufft, alpha: np.ndarray, x: np.ndarray) -> float:
    """max_p c(x_p) of the Fourier series at the particles ``x`` ``[P, d]`` (one type-2 NUFFT)."""
    return float(np.real(nufft.type2(x, alpha)).max())


def indicator(c_inf_fine: np.ndarray, c_inf_coarse: np.ndarray) -> np.ndarray:
    """R(t) = ||c||_inf(fine H) / ||c||_inf(coarse H), element-wise on matching times."""
    a, b = np.asarray(c_inf_fine, float), np.asarray(c_inf_coarse, float)
    n = min(len(a), len(b))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b[:n] > 0, a[:n] / b[:n], np.nan)


@dataclass
class Bisection:
    """Result of :func:`bisect_critical_mass`: the final bracket and every evaluation."""

    lower: float
    upper: float
    evaluations: list[tuple[float, float]] = field(default_factory=list)  # (M0, R(T))
    bracketed: bool = True  # False: R(T) did not cross the threshold between the initial bounds

    @property
    def interval(self) -> tuple[float, float]:
        return (self.lower, self.upper)


def bisect_critical_mass(r_final: Callable[[float], float], lower: float, upper: float, tol: float,
                         threshold: float = BLOWUP_THRESHOLD, max_iter: int = 20) -> Bisection:
    """Bisect the mass at which ``r_final(M0) = R(T)`` crosses ``threshold``.

    Args:
        r_final: runs the paired simulations at mass M0 and returns R(T).
        lower, upper: initial bracket: R(T) <= threshold at ``lower`` and > threshold at
            ``upper``. Both are evaluated first; if they do not bracket the jump the result has
            ``bracketed=False`` and holds those two evaluations (no bisection).
        tol: stop when ``upper - lower <= tol`` (mass units).
    """
    if not lower < upper:
        raise ValueError(f"bracket must satisfy lower < upper, got ({lower}, {upper})")
    res = Bisection(lower, upper)
    for m in (lower, upper):
        res.evaluations.append((m, float(r_final(m))))
    if res.evaluations[0][1] > threshold or res.evaluations[1][1] <= threshold:
        res.bracketed = False
        return res
    for _ in range(max_iter):
        if res.upper - res.lower <= tol:
            break
        mid = 0.5 * (res.lower + res.upper)
        r = float(r_final(mid))
        res.evaluations.append((mid, r))
        if r > threshold:
            res.upper = mid
        else:
            res.lower = mid
    return res
