r"""Radial finite-volume solver of the PHKS (angiogenesis) system, and radial-to-grid reconstruction.

For radially symmetric data in d = 2, 3 dimensions the system
:math:`\rho_t = \nabla\cdot(\gamma\nabla\rho - \chi\rho\nabla c)`, :math:`c_t = -c\rho` reads

.. math::
    \rho_t = r^{1-d}\partial_r\!\left(r^{d-1}(\gamma\rho_r - \chi\rho c_r)\right), \qquad
    c_t = -c\rho, \qquad 0 \le r \le R,

with no flux at :math:`r = R` and regularity at :math:`r = 0`. Expanded in 3D:
:math:`\rho_t = \gamma(\rho_{rr} + \tfrac{2}{r}\rho_r) - \chi(\rho_r c_r + \rho(c_{rr} + \tfrac{2}{r}c_r))`
(the chemotactic term enters with a minus sign, as the divergence form dictates).

Discretisation: the uniform finite-volume grid of :mod:`oncodyn.chemotaxis.radial`
(:meth:`~oncodyn.chemotaxis.radial.RadialGrid.from_faces`, cells of width R/N, unknowns are
cell averages, :math:`\sum_i V_i\rho_i` is the mass) and its Scharfetter--Gummel fluxes. One
step of size :math:`\delta t` (Lie splitting, as the grid solver
:mod:`oncodyn.chemotaxis.phks_fdm`):

1. :math:`\rho_{n+1}` by one linearly implicit Euler step with :math:`c_n` frozen
   (:func:`~oncodyn.chemotaxis.radial.sg_implicit_density_step`): its matrix is a tridiagonal
   M-matrix with column sums :math:`V_i/\delta t`, so :math:`\rho \ge 0` and the mass is
   conserved to round-off for every :math:`\delta t`;
2. :math:`c_{n+1} = c_n e^{-\delta t\rho_n}` (exact for frozen :math:`\rho`, keeps :math:`c \ge 0`).

First order in :math:`\delta t`, second order in :math:`\Delta r` for smooth data.

Why by hand: the same SG flux as the 2D/3D reference (so the two agree to discretisation
error, which validates both), positivity and exact mass for any step, and O(N) per step --
thousands of cheap profiles are needed as training data for the neural interpolator.
:func:`radial_to_grid` rebuilds a field on the 2D/3D :class:`~oncodyn.chemotaxis.phks.BinGrid`
from a radial profile.

The module is a pure numerical kernel: no I/O, no printing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from oncodyn.chemotaxis.models import _require
from oncodyn.chemotaxis.phks import BinGrid
from oncodyn.chemotaxis.radial import DIMS, RadialGrid, sg_implicit_density_step

Profile = np.ndarray | Callable[[np.ndarray], np.ndarray]


@dataclass
class PHKSRadialResult:
    """Output of :func:`solve_phks_radial`.

    Attributes:
        r: [n_r] cell centres (length).
        volumes: [n_r] cell volumes V_i (length^d); ``volumes @ rho[k]`` is the mass.
        t: [nt] recording times (time).
        rho: [nt, n_r] density cell averages (mass / length^d).
        c: [nt, n_r] attractant cell averages (concentration).
        mass: [nt] Σ V_i ρ_i (mass).
        dt: time step used (time).
        n_steps: number of steps to t_end.
        grid: the radial grid.
    """

    r: np.ndarray
    volumes: np.ndarray
    t: np.ndarray
    rho: np.ndarray
    c: np.ndarray
    mass: np.ndarray
    dt: float = 0.0
    n_steps: int = 0
    grid: RadialGrid | None = field(default=None, repr=False)


def _profile(value: Profile, grid: RadialGrid, name: str) -> np.ndarray:
    arr = grid.cell_average(value) if callable(value) else np.array(value, dtype=float)
    _require(arr.shape == (grid.n,), f"{name} (shape)", f"({grid.n},) (one value per cell)", arr.shape)
    _require(bool(np.all(np.isfinite(arr))), name, "finite everywhere", "non-finite values")
    _require(bool(np.all(arr >= 0)), name, ">= 0 everywhere", f"min {arr.min():g}")
    return arr


def solve_phks_radial(
    gamma: float,
    chi: float,
    r_max: float,
    n_r: int,
    rho0: Profile,
    c0: Profile,
    t_end: float,
    dt: float,
    save_times=None,
    dim: int = 3,
    mass: float | None = None,
) -> PHKSRadialResult:
    r"""Solve the radial PHKS system on [0, r_max] to ``t_end``.

    Args:
        gamma: γ > 0 (length^2 / time).
        chi: χ >= 0 (length^2 / (concentration · time)).
        r_max: R > 0, outer radius (length); no flux there.
        n_r: number of uniform cells (>= 4).
        rho0: initial density, cell averages [n_r] or a vectorised function of r (cell
            averaged with weight r^{d-1}); >= 0 (mass / length^d).
        c0: initial attractant, likewise; >= 0 (concentration).
        t_end: final time, a positive integer multiple of ``dt``.
        dt: time step (time), > 0.
        save_times: times (multiples of dt in [0, t_end]) to record; ``None``: every step.
        dim: d, 2 or 3.
        mass: if given (> 0), ρ0 is rescaled so that Σ V_i ρ0_i = mass.

    Returns:
        :class:`PHKSRadialResult`.

    Raises:
        ValueError: invalid argument (the message names it and the allowed values).
    """
    _require(gamma > 0, "gamma", "> 0", gamma)
    _require(chi >= 0, "chi", ">= 0", chi)
    _require(r_max > 0, "r_max", "> 0", r_max)
    _require(isinstance(n_r, (int, np.integer)) and n_r >= 4, "n_r", "an integer >= 4", n_r)
    _require(dim in DIMS, "dim", "2 or 3", dim)
    _require(math.isfinite(dt) and dt > 0, "dt", "a finite number > 0", dt)
    _require(math.isfinite(t_end) and t_end > 0, "t_end", "a finite number > 0", t_end)
    n_steps = round(t_end / dt)
    _require(n_steps >= 1 and abs(n_steps * dt - t_end) <= 1e-9 * max(1.0, t_end), "t_end",
             f"a positive integer multiple of dt = {dt!r}", t_end)
    if save_times is None:
        save_steps = list(range(n_steps + 1))
    else:
        save_steps = []
        for t in save_times:
            k = round(float(t) / dt)
            _require(abs(k * dt - float(t)) <= 1e-9 * max(1.0, abs(float(t))) and 0 <= k <= n_steps,
                     "save_times", f"integer multiples of dt = {dt!r} in [0, t_end = {t_end!r}]", t)
            save_steps.append(k)
    grid = RadialGrid.from_faces(np.linspace(0.0, float(r_max), int(n_r) + 1), int(dim))
    rho = _profile(rho0, grid, "rho0")
    c = _profile(c0, grid, "c0")
    V = grid.volumes
    if mass is not None:
        _require(mass > 0, "mass", "> 0", mass)
        total = float(V @ rho)
        _require(total > 0, "rho0", "not identically 0 when mass is given", total)
        rho = rho * (mass / total)

    v_dt = V / dt
    tr = grid.areas * gamma / grid.spacing
    chi_gamma = chi / gamma
    ab = np.empty((3, grid.n))
    want = set(save_steps)
    recorded: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    if 0 in want:
        recorded[0] = (rho.copy(), c.copy())
    for step in range(1, n_steps + 1):
        rho_new = sg_implicit_density_step(rho, c, v_dt, tr, chi_gamma, ab)
        c = c * np.exp(-dt * rho)
        rho = rho_new
        if step in want:
            recorded[step] = (rho.copy(), c.copy())
    rho_rec = np.stack([recorded[k][0] for k in save_steps])
    c_rec = np.stack([recorded[k][1] for k in save_steps])
    return PHKSRadialResult(r=grid.centres, volumes=V, t=np.asarray(save_steps, float) * dt, rho=rho_rec,
                            c=c_rec, mass=rho_rec @ V, dt=float(dt), n_steps=n_steps, grid=grid)


def radial_to_grid(r: np.ndarray, profile: np.ndarray, grid: BinGrid, center) -> np.ndarray:
    """A radial profile on the bins: linear interpolation in ``|x - center|``.

    Constant ``profile[0]`` inside the first centre (the profile is even in r) and
    ``profile[-1]`` beyond the last.

    Args:
        r: [N] increasing radii (length), e.g. :attr:`PHKSRadialResult.r`.
        profile: [N] values at ``r``.
        grid: target bins (2D or 3D).
        center: [d] centre of symmetry (length).

    Returns:
        Array of shape ``grid.shape``.
    """
    r = np.asarray(r, dtype=float)
    profile = np.asarray(profile, dtype=float)
    _require(r.ndim == 1 and r.size >= 2 and bool(np.all(np.diff(r) > 0)), "r", "1-D increasing, >= 2 values", r.shape)
    _require(profile.shape == r.shape, "profile (shape)", f"equal to r's shape {r.shape}", profile.shape)
    center = np.asarray(center, dtype=float)
    _require(center.shape == (grid.dim,), "center (shape)", f"({grid.dim},)", center.shape)
    x = grid.centres_1d
    # |x - center|^2 by broadcasting open 1-D axes (no [n]^d x d coordinate array)
    dist2 = np.zeros(grid.shape)
    for ax in range(grid.dim):
        shape = [1] * grid.dim
        shape[ax] = grid.n
        dist2 = dist2 + ((x - center[ax]) ** 2).reshape(shape)
    return np.interp(np.sqrt(dist2), r, profile)
