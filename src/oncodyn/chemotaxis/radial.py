r"""Radial finite-volume reference solver of the Keller--Segel system, and its blow-up mass.

For radially symmetric solutions in :math:`d \in \{2, 3\}` dimensions the system is

.. math::
    \rho_t = r^{1-d}\partial_r\!\left(r^{d-1}(\mu\rho_r - \chi\rho c_r)\right), \qquad
    \epsilon c_t = r^{1-d}\partial_r(r^{d-1} c_r) - k^2 c + \rho,

on :math:`0 \le r \le R` with no flux at :math:`r = R` (:math:`\mu\rho_r - \chi\rho c_r = 0`,
:math:`c_r = 0`) and regularity at :math:`r = 0`. The mass
:math:`M_0 = \int\rho\,dx = |S^{d-1}|\int_0^R \rho\, r^{d-1} dr` is conserved.

Whole-space parabolic--elliptic case :math:`\epsilon = k = 0`. The no-flux problem
:math:`-\Delta c = \rho` on the ball has no solution (its data has non-zero mean), so this case
is the free-space system instead: :math:`-\Delta c = \rho` in :math:`\mathbb{R}^d`,
:math:`c = -K*\rho` with the Newtonian kernel :math:`K = \ln|x|/(2\pi)` (d = 2),
:math:`-1/(4\pi|x|)` (d = 3). For radial :math:`\rho` Gauss's law gives the field in closed
form,

.. math::
    c_r(r) = -\frac{m(r)}{|S^{d-1}| r^{d-1}}, \qquad m(r) = |S^{d-1}|\int_0^r \rho\, s^{d-1} ds,

:math:`m(r)` the mass enclosed in the ball of radius r. Only the density is truncated at
:math:`r = R` (no flux there); the field is the free-space one of the truncated density. The
model is the whole-space one only if the mass that would lie beyond R is negligible: choose R
several widths beyond the support of :math:`\rho` (e.g. R >= 8 std for a Gaussian that stays
of that width or contracts). The classical facts are: in 2D, for mass :math:`M`,
:math:`\frac{d}{dt}\int|x|^2\rho = 4\mu M - \chi M^2/(2\pi)`, so every solution with
:math:`\chi M > 8\pi\mu` blows up before :math:`m_2(0)/(\chi M/(2\pi) - 4\mu)`
(:math:`m_2 = \int|x|^2\rho`); in 3D no such law holds, large concentrated data blow up.

Discretisation (:func:`solve_radial`):

* finite volumes in :math:`r`: cells :math:`[r_{i-1/2}, r_{i+1/2}]`, :math:`i = 0..N-1`,
  :math:`r_{-1/2} = 0`, :math:`r_{N-1/2} = R`, of volume
  :math:`V_i = |S^{d-1}|(r_{i+1/2}^d - r_{i-1/2}^d)/d` and face area
  :math:`A_{i+1/2} = |S^{d-1}| r_{i+1/2}^{d-1}`; the unknowns are cell averages, so
  :math:`\sum_i V_i\rho_i` is the mass exactly. The face at :math:`r = 0` has zero area
  (regularity) and the face at :math:`R` carries no flux;
* the chemotactic flux is Scharfetter--Gummel: with :math:`h = r_{i+1} - r_i`,
  :math:`P = \chi(c_{i+1} - c_i)/\mu` and :math:`B(x) = x/(e^x - 1)`, the outward flow
  through :math:`r_{i+1/2}` is
  :math:`\Phi_{i+1/2} = A\mu h^{-1}[B(-P)\rho_i - B(P)\rho_{i+1}]` -- central differences for
  small :math:`P`, upwind for large :math:`|P|`, exact for the discrete Boltzmann states
  :math:`\rho \propto e^{\chi c/\mu}`;
* linearly implicit Euler, Gummel-type splitting: first
  :math:`V(\epsilon/\delta t + k^2)c^{n+1} - \mathrm{div}_h\nabla_h c^{n+1} = V(\epsilon c^n/\delta t + \rho^n)`
  (symmetric tridiagonal and constant in time: factored once) -- or, for
  :math:`\epsilon = k = 0`, the discrete Gauss law below applied to :math:`\rho^n` -- then
  :math:`V\rho^{n+1}/\delta t + \mathrm{div}_h\Phi(\rho^{n+1}; c^{n+1}) = V\rho^n/\delta t`
  (tridiagonal, by :func:`scipy.linalg.solve_banded`; :func:`sg_implicit_density_step`, shared
  with the radial PHKS solver :mod:`oncodyn.chemotaxis.phks_radial`). The second matrix is an M-matrix
  whose column sums are :math:`V_i/\delta t`, so for every :math:`\delta t` the density stays
  non-negative and the mass is conserved to round-off, and the total concentration
  :math:`\bar c = \sum_i V_i c_i` obeys the implicit-Euler recursion of
  :math:`\epsilon\,d\bar c/dt = -k^2\bar c + M_0` exactly.

Discrete Gauss law (:math:`\epsilon = k = 0`, :func:`free_space_field`). The SG flux needs only
the differences :math:`c_{i+1} - c_i` between cell centres. The enclosed mass at the faces is
exact for the cell averages, :math:`m_{i+1/2} = \sum_{j\le i} V_j\rho_j`; inside cell i the
density is taken constant, :math:`m(r) = m_{i-1/2} + \rho_i|S^{d-1}|(r^d - r_{i-1/2}^d)/d`, and
:math:`c_r = -m/(|S^{d-1}|r^{d-1})` is integrated analytically from :math:`r_i` to the face
:math:`r_{i+1/2}` (with cell i's law) and from the face to :math:`r_{i+1}` (with cell i+1's):

.. math::
    \int_x^y c_r\,dr = -\Big(\frac{m_{i-1/2}}{|S^{d-1}|} - \frac{\rho_i r_{i-1/2}^d}{d}\Big) G(x, y)
    - \rho_i\frac{y^2 - x^2}{2d}, \qquad
    G(x, y) = \int_x^y r^{1-d} dr = \ln(y/x)\ (d = 2),\ 1/x - 1/y\ (d = 3).

It is exact for piecewise-constant densities and second order in :math:`\Delta r` for smooth
ones (the in-cell error of m is :math:`O(\Delta r^2 r^{d-1})`, the face values are exact, so
:math:`c_r` is wrong by :math:`O(\Delta r^2)` and nothing accumulates). :math:`c` is the cumulative
sum of the differences with :math:`c = 0` in the outermost cell (any constant is irrelevant to
the dynamics): it is the free-space potential relative to its value at :math:`r_{N-1}`. The
field is explicit (from :math:`\rho^n`, as for :math:`\epsilon = 0, k > 0`), the density step
the same implicit SG step, so positivity and exact mass hold unchanged for every
:math:`\delta t`; the scheme is first order in time.

Because the scheme is positive and conservative it cannot produce negative densities or
overflow on its own; "unstable" therefore means, in order of test: a non-finite value, a
negative density beyond round-off, :math:`\max\rho` above ``blowup_threshold`` times the
initial peak density, or more than ``collapse_fraction`` of the mass in the innermost cell
(the grid cannot represent a more concentrated state). All are the numerical signature of
the finite-time blow-up (concentration at the origin) of the PDE solution, and apply unchanged
to the whole-space case :math:`\epsilon = k = 0`: there :math:`t_\mathrm{unstable}` estimates
the blow-up time, and in 2D it must lie below the moment-law bound above. The exact solution
crosses ``blowup_threshold`` times its initial peak shortly before it blows up, so as
:math:`\delta t, \Delta r \to 0` the crossing time is a lower bound that tends to the blow-up
time as the threshold grows; at a finite :math:`\delta t` the discrete peak grows only by a
bounded factor per step once the core is unresolved in time (explicit field), so very high
thresholds add a few :math:`\delta t` per decade instead.
:func:`instability_threshold` bisects in the mass for the onset of that signature by ``t_end``.

Measured (d = 3, mu = chi = 1, eps = 1e-4, k = 0.1, r0 = 1, R = 20, t_end = 1): the
instability mass is 48.07-48.09 on every grid tried -- graded with n_r = 500..8000 and h_min
= 1e-5..1e-3, uniform with dr = 1e-2 and 1e-3 (bisected to 0.008), and uniform dr = 1e-4
(stable at 48.05, unstable at 48.10 with dt = 1e-4; stable at 47.8 with dt = 1e-5) -- it moves
with dt only (48.16 at dt = 1e-3, 48.08 at 1e-4, 48.07 at 1e-5), and not with
``blowup_threshold`` (1e3..1e8). The published radial FD reference gives (47.6, 47.8).

The module is a pure numerical kernel: no I/O, no printing, no global state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
from scipy.linalg import solve_banded
from scipy.linalg.lapack import dpttrf, dpttrs
from scipy.optimize import brentq

from oncodyn.chemotaxis.models import KellerSegelParams, _require

GRIDS = ("uniform", "graded")
DIMS = (2, 3)

# Relative size (vs max rho) of a negative density that still counts as round-off: the
# Scharfetter--Gummel matrix is an M-matrix, so the exact solution is >= 0 and LAPACK's
# tridiagonal solve can only miss by a few ulps of the largest entry.
NEGATIVE_TOL = 1e-12

REASON_NONFINITE = "non-finite"
REASON_NEGATIVE = "negative density"
REASON_THRESHOLD = "rho_max above threshold"
REASON_COLLAPSE = "mass collapsed into the innermost cell"


#: The radial solver takes the model's parameters (``length`` is not used: the domain is
#: ``RadialOptions.r_max``); any object with ``mass, mu, chi, eps, k, dim`` also works.
RadialParams = KellerSegelParams


def _check_params(p: Any) -> None:
    for name in ("mass", "mu", "chi", "eps", "k", "dim"):
        if not hasattr(p, name):
            raise ValueError(f"params: must have attribute {name!r} (mass, mu, chi, eps, k, dim), got {type(p).__name__}")
    _require(p.mass > 0, "mass", "> 0", p.mass)
    _require(p.mu > 0, "mu", "> 0", p.mu)
    _require(p.chi >= 0, "chi", ">= 0", p.chi)
    _require(p.eps >= 0, "eps", ">= 0", p.eps)
    _require(p.k >= 0, "k", ">= 0", p.k)
    _require(p.dim in DIMS, "dim", "2 or 3", p.dim)


def _is_whole_space(p: Any) -> bool:
    """eps = 0 and k = 0: the free-space parabolic--elliptic system (Gauss-law field)."""
    return float(p.eps) == 0.0 and float(p.k) == 0.0


@dataclass(frozen=True)
class RadialOptions:
    """Numerical options of :func:`solve_radial`.

    Attributes:
        r_max: R > 0, outer radius of the domain (length units); R > r0.
        n_r: number of cells N >= 10.
        dt: time step (time units), > 0; the run uses ``t_end / round(t_end / dt)``.
        t_end: final time (time units), > 0.
        grid: ``uniform`` (cells of size R/N) or ``graded`` (sizes growing geometrically from
            ``h_min`` at r = 0, so that h ~ (q - 1) r away from the origin).
        h_min: size of the innermost cell of the ``graded`` grid (length units),
            0 < h_min < R / N; ignored for ``uniform``.
        r0: radius of the initial uniform ball (length units), 0 < r0 < R.
        blowup_threshold: the run is unstable once max(rho) exceeds this multiple of the
            initial peak density, > 1.
        collapse_fraction: ... or once more than this fraction of the mass sits in the
            innermost cell, in (0, 1]; 1 switches the test off.
        record_every: record diagnostics every this many steps (>= 1); t = 0, t_end and the
            step at which the run turns unstable are always recorded.
    """

    r_max: float = 20.0
    n_r: int = 2000
    dt: float = 1e-5
    t_end: float = 1.0
    grid: str = "graded"
    h_min: float = 1e-4
    r0: float = 1.0
    blowup_threshold: float = 1e6
    collapse_fraction: float = 0.5
    record_every: int = 10

    def __post_init__(self) -> None:
        _require(self.r_max > 0, "r_max", "> 0", self.r_max)
        _require(isinstance(self.n_r, (int, np.integer)) and self.n_r >= 10, "n_r", "an integer >= 10", self.n_r)
        _require(self.dt > 0, "dt", "> 0", self.dt)
        _require(self.t_end > 0, "t_end", "> 0", self.t_end)
        _require(self.grid in GRIDS, "grid", "one of " + ", ".join(GRIDS), self.grid)
        if self.grid == "graded":
            _require(0 < self.h_min < self.r_max / self.n_r, "h_min", f"in (0, r_max / n_r = {self.r_max / self.n_r:g}) for a graded grid", self.h_min)
        _require(0 < self.r0 < self.r_max, "r0", f"in (0, r_max = {self.r_max:g})", self.r0)
        _require(self.blowup_threshold > 1, "blowup_threshold", "> 1", self.blowup_threshold)
        _require(0 < self.collapse_fraction <= 1, "collapse_fraction", "in (0, 1]", self.collapse_fraction)
        _require(isinstance(self.record_every, (int, np.integer)) and self.record_every >= 1, "record_every", "an integer >= 1", self.record_every)

    @property
    def n_steps(self) -> int:
        """Number of time steps, round(t_end / dt) (at least 1)."""
        return max(1, int(round(self.t_end / self.dt)))


@dataclass(frozen=True)
class RadialGrid:
    """Finite-volume grid on [0, R] for the radial Laplacian in d dimensions.

    Attributes:
        faces: [N+1] r_{i-1/2}, from 0 to R (length).
        centres: [N] cell midpoints (length).
        volumes: [N] V_i = |S^{d-1}| (r_{i+1/2}^d - r_{i-1/2}^d) / d (length^d).
        areas: [N-1] |S^{d-1}| r_{i+1/2}^{d-1} of the interior faces (length^{d-1}).
        spacing: [N-1] centre distances r_{i+1} - r_i (length).
        dim: d.
    """

    faces: np.ndarray
    centres: np.ndarray
    volumes: np.ndarray
    areas: np.ndarray
    spacing: np.ndarray
    dim: int

    @property
    def n(self) -> int:
        return self.centres.size

    @staticmethod
    def from_faces(faces: np.ndarray, dim: int) -> "RadialGrid":
        """Grid of the given increasing faces [N+1] (faces[0] = 0) in dimension ``dim``."""
        faces = np.asarray(faces, dtype=float)
        sphere = sphere_area(dim)
        centres = 0.5 * (faces[1:] + faces[:-1])
        volumes = sphere * (faces[1:] ** dim - faces[:-1] ** dim) / dim
        areas = sphere * faces[1:-1] ** (dim - 1)
        return RadialGrid(faces, centres, volumes, areas, np.diff(centres), dim)

    def cell_average(self, f: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        r"""Cell averages [N] of a radial function :math:`f(r)` (vectorised), weight :math:`r^{d-1}`.

        Four-point Gauss--Legendre per cell, exact when :math:`r^{d-1}f` is a polynomial of
        degree <= 7 in r.
        """
        x, w = np.polynomial.legendre.leggauss(4)
        lo, hi = self.faces[:-1, None], self.faces[1:, None]
        r = 0.5 * (hi - lo) * x[None, :] + 0.5 * (hi + lo)
        integral = (0.5 * (hi - lo) * w[None, :] * r ** (self.dim - 1) * f(r)).sum(axis=1)
        return sphere_area(self.dim) * integral / self.volumes


def sphere_area(dim: int) -> float:
    """|S^{d-1}|, the area of the unit sphere in R^d (2 pi for d = 2, 4 pi for d = 3)."""
    return 2.0 * math.pi ** (dim / 2) / math.gamma(dim / 2)


def ball_volume(radius: float, dim: int) -> float:
    """|B_r| = |S^{d-1}| r^d / d."""
    return sphere_area(dim) * radius**dim / dim


def make_grid(options: RadialOptions, dim: int) -> RadialGrid:
    """The grid of ``options`` (``uniform`` or ``graded``) in dimension ``dim``.

    The graded grid has cell sizes h_j = h_min q^j, j = 0..N-1, with q > 1 the root of
    h_min (q^N - 1) / (q - 1) = R.
    """
    n, R = options.n_r, options.r_max
    if options.grid == "uniform":
        faces = np.linspace(0.0, R, n + 1)
    else:
        h0 = options.h_min

        def excess(logq: float) -> float:  # sum of the cell sizes minus R, in units of h0
            return math.expm1(n * logq) / math.expm1(logq) - R / h0

        # excess(0+) = n - R/h0 < 0; the last cell alone reaches R at q^(n-1) = R/h0.
        logq = brentq(excess, 1e-14, math.log(R / h0) / (n - 1), xtol=1e-16, rtol=1e-14)
        sizes = h0 * np.exp(logq * np.arange(n))
        faces = np.concatenate(([0.0], np.cumsum(sizes)))
        faces *= R / faces[-1]  # remove the root-finding round-off; faces[-1] == R exactly
        faces[-1] = R
    return RadialGrid.from_faces(faces, dim)


def uniform_ball(grid: RadialGrid, mass: float, r0: float) -> np.ndarray:
    """Cell averages [N] of the indicator of the ball of radius r0 carrying ``mass``.

    The cell cut by r = r0 gets its volume fraction inside the ball (the jump is smeared over
    one cell), so the discrete mass is exactly ``mass`` (density units: mass / length^d).
    """
    d = grid.dim
    inner = np.minimum(grid.faces, r0) ** d
    frac = np.diff(inner) / np.diff(grid.faces**d)
    return (mass / ball_volume(r0, d)) * frac


def gaussian_profile(mass: float, std: float, dim: int) -> Callable[[np.ndarray], np.ndarray]:
    r"""Radial Gaussian of total mass ``mass`` and variance ``std**2`` per coordinate in R^d.

    :math:`\rho_0(r) = M (2\pi s^2)^{-d/2} e^{-r^2/(2 s^2)}`, for ``rho0=`` of
    :func:`solve_radial`; its second moment is :math:`\int|x|^2\rho_0 = d\,s^2 M`. On a
    finite domain the discrete mass is ``mass`` up to the tail beyond R (relative
    :math:`\sim e^{-R^2/(2s^2)}`) and the cell-averaging error.

    Args:
        mass: M > 0 (mass units).
        std: s > 0, standard deviation per coordinate (length units).
        dim: d, 2 or 3.

    Returns:
        Vectorised ``rho0(r)``: r of any shape (length) -> density of that shape
        (mass / length^d).

    Raises:
        ValueError: invalid argument (message names it).
    """
    _require(mass > 0, "mass", "> 0", mass)
    _require(std > 0, "std", "> 0", std)
    _require(dim in DIMS, "dim", "2 or 3", dim)
    peak = float(mass) * (2.0 * math.pi * std * std) ** (-dim / 2)
    two_var = 2.0 * std * std

    def rho0(r: np.ndarray) -> np.ndarray:
        r = np.asarray(r, dtype=float)
        return peak * np.exp(-(r * r) / two_var)

    return rho0


def _free_space_field_operator(grid: RadialGrid) -> Callable[[np.ndarray], np.ndarray]:
    """The map rho -> c of :func:`free_space_field` with the geometric factors precomputed."""
    d, n = grid.dim, grid.n
    sphere = sphere_area(d)
    inner, centres, outer = grid.faces[:-1], grid.centres, grid.faces[1:]

    def g(x: np.ndarray, y: np.ndarray) -> np.ndarray:  # int_x^y r^{1-d} dr, 0 < x < y
        return np.log1p((y - x) / x) if d == 2 else (y - x) / (x * y)

    g_out = g(centres[:-1], outer[:-1])  # [N-1] centre i -> face i+1/2, in cell i
    g_in = g(inner[1:], centres[1:])  # [N-1] face i+1/2 -> centre i+1, in cell i+1
    p_out = (outer[:-1] ** 2 - centres[:-1] ** 2) / (2 * d)
    p_in = (centres[1:] ** 2 - inner[1:] ** 2) / (2 * d)
    inner_d = inner**d / d  # [N] r_{i-1/2}^d / d (0 for the innermost cell)
    V = grid.volumes
    m_inner = np.zeros(n)

    def field(rho: np.ndarray) -> np.ndarray:
        np.cumsum(V[:-1] * rho[:-1], out=m_inner[1:])  # m_{i-1/2}, i = 0..N-1 (m_{-1/2} = 0)
        # m(r) / (|S| r^{d-1}) = q_i r^{1-d} + rho_i r / d inside cell i (q_0 = 0: regular at 0)
        q = m_inner / sphere - rho * inner_d
        dc = -(q[:-1] * g_out + rho[:-1] * p_out) - (q[1:] * g_in + rho[1:] * p_in)  # [N-1] c_{i+1} - c_i
        c = np.zeros(n)
        c[:-1] = -np.cumsum(dc[::-1])[::-1]  # c_i = c_{N-1} - sum_{j >= i} (c_{j+1} - c_j), c_{N-1} = 0
        return c

    return field


def free_space_field(grid: RadialGrid, rho: np.ndarray) -> np.ndarray:
    r"""Free-space field :math:`c = -K*\rho` of a radial density, by the discrete Gauss law.

    Solves :math:`-\Delta c = \rho` in :math:`\mathbb{R}^d` for the density that equals the
    cell average :math:`\rho_i` in cell i and vanishes beyond R: the differences
    :math:`c_{i+1} - c_i` between cell centres are the exact integrals of
    :math:`c_r = -m(r)/(|S^{d-1}|r^{d-1})` for that piecewise-constant density (see the
    module docstring), so the field is exact at the centres for piecewise-constant data and
    second order in the cell size for smooth data.

    Args:
        grid: the radial grid (N cells).
        rho: [N] density cell averages (mass / length^d).

    Returns:
        [N] c at the cell centres (concentration = mass / length^{d-2}), relative to its value
        at the outermost centre: ``c[-1] == 0``. Decreasing in r where rho > 0 (an attractant
        peaked at the origin).
    """
    rho = np.asarray(rho, dtype=float)
    if rho.shape != (grid.n,):
        raise ValueError(f"rho: must have shape ({grid.n},), got {rho.shape}")
    return _free_space_field_operator(grid)(rho)


@dataclass
class RadialResult:
    """Output of :func:`solve_radial`.

    Attributes:
        r: [N] cell centres (length).
        volumes: [N] cell volumes (length^d), so that ``(volumes * rho).sum()`` is the mass.
        t: [n_rec] recording times (time).
        rho_max: [n_rec] max_i rho_i (mass / length^d).
        c_max: [n_rec] c in the innermost cell, c at r ~ 0 (concentration); for eps = k = 0
            relative to c in the outermost cell (see :func:`free_space_field`).
        mass: [n_rec] sum_i V_i rho_i (mass).
        c_total: [n_rec] sum_i V_i c_i, the total concentration (concentration * length^d).
        rho: [N] density at the last completed step (the first unstable one, if unstable).
        c: [N] concentration at the last completed step (the field the last density step
            used: for eps = 0 that of the density one step earlier).
        unstable: whether the run was stopped as unstable.
        t_unstable: time of the first unstable step, else None.
        reason: why it is unstable (``non-finite``, ``negative density``,
            ``rho_max above threshold``, ``mass collapsed into the innermost cell``), or ``""``.
        n_steps: time steps taken.
        dt: the time step used (t_end / n_steps).
        grid: the :class:`RadialGrid`.
        profiles: [n_saved, N] density at the steps nearest to the requested ``save_times``
            (sorted increasingly, one row per requested time) that the run reached; [0, N]
            when none were requested (mass / length^d).
        profile_times: [n_saved] the times of those steps (time).
    """

    r: np.ndarray
    volumes: np.ndarray
    t: np.ndarray
    rho_max: np.ndarray
    c_max: np.ndarray
    mass: np.ndarray
    c_total: np.ndarray
    rho: np.ndarray
    c: np.ndarray
    unstable: bool = False
    t_unstable: float | None = None
    reason: str = ""
    n_steps: int = 0
    dt: float = 0.0
    grid: RadialGrid | None = field(default=None, repr=False)
    profiles: np.ndarray = field(default_factory=lambda: np.empty((0, 0)), repr=False)
    profile_times: np.ndarray = field(default_factory=lambda: np.empty(0))


def _bernoulli_abs(ax: np.ndarray) -> np.ndarray:
    """B(|x|) for ax = |x| >= 0, as |x| e^{-|x|} / (1 - e^{-|x|}): no overflow."""
    small = ax < 1e-8
    safe = np.where(small, 1.0, ax)
    return np.where(small, 1.0 - 0.5 * ax, safe * np.exp(-safe) / -np.expm1(-safe))


def bernoulli(x: np.ndarray) -> np.ndarray:
    """B(x) = x / (e^x - 1), B(0) = 1, evaluated without overflow for any |x| (any shape)."""
    x = np.asarray(x, dtype=float)
    return _bernoulli_abs(np.abs(x)) + np.maximum(-x, 0.0)  # B(-|x|) = B(|x|) + |x|


def _sg_coefficients(c: np.ndarray, chi_over_mu: float) -> tuple[np.ndarray, np.ndarray]:
    """(B(-P), B(P)) at the interior faces [N-1], P = chi (c_{i+1} - c_i) / mu."""
    p = chi_over_mu * np.diff(c)
    b = _bernoulli_abs(np.abs(p))
    return b + np.maximum(p, 0.0), b + np.maximum(-p, 0.0)


def sg_implicit_density_step(
    rho: np.ndarray,
    c: np.ndarray,
    v_dt: np.ndarray,
    tr: np.ndarray,
    chi_over_mu: float,
    ab: np.ndarray | None = None,
) -> np.ndarray:
    r"""One linearly implicit Euler step of the radial density with the field ``c`` frozen.

    Solves :math:`V\rho'/\delta t + \mathrm{div}_h\Phi(\rho'; c) = V\rho/\delta t` with the
    Scharfetter--Gummel flows :math:`\Phi_{i+1/2} = T_{i+1/2}[B(-P)\rho'_i - B(P)\rho'_{i+1}]`,
    :math:`P = (\chi/\mu)(c_{i+1} - c_i)`, no flow through r = 0 and r = R. The matrix is a
    tridiagonal M-matrix with column sums :math:`V_i/\delta t`: the new density is >= 0
    whenever the old one is, and :math:`\sum_i V_i\rho_i` is conserved to round-off, for
    every :math:`\delta t`.

    Args:
        rho: [N] density at the old time (mass / length^d).
        c: [N] field the drift is computed from (concentration).
        v_dt: [N] V_i / dt (length^d / time).
        tr: [N-1] T = A mu / h of the interior faces (length^d / time).
        chi_over_mu: chi / mu (1 / concentration).
        ab: optional [3, N] work array for the banded matrix (overwritten).

    Returns:
        [N] the new density.
    """
    n = rho.size
    if ab is None:
        ab = np.empty((3, n))
    a, g = _sg_coefficients(c, chi_over_mu)
    ta, tg = tr * a, tr * g
    ab[0, 0] = 0.0
    ab[0, 1:] = -tg  # super-diagonal
    ab[2, :-1] = -ta  # sub-diagonal
    ab[2, -1] = 0.0
    diag = ab[1]
    diag[:] = v_dt
    diag[:-1] += ta
    diag[1:] += tg
    return solve_banded((1, 1), ab, v_dt * rho, overwrite_ab=True, overwrite_b=True, check_finite=False)


def solve_radial(
    params: Any,
    options: RadialOptions,
    progress: Callable[[int, int], None] | None = None,
    *,
    rho0: np.ndarray | Callable[[np.ndarray], np.ndarray] | None = None,
    c0: np.ndarray | Callable[[np.ndarray], np.ndarray] | None = None,
    save_times: Sequence[float] | None = None,
) -> RadialResult:
    r"""Solve the radial Keller--Segel system to ``t_end`` or until the run turns unstable.

    With ``eps = 0`` and ``k = 0`` the system is the whole-space parabolic--elliptic one, the
    field the free-space (Gauss-law) field of the density (:func:`free_space_field`); the mass
    beyond ``r_max`` must be negligible for this to model the problem in R^d (see the module
    docstring).

    Args:
        params: ``mass, mu, chi, eps, k, dim`` (:class:`RadialParams`, or e.g.
            :class:`~oncodyn.chemotaxis.models.KellerSegelParams`).
        options: :class:`RadialOptions`.
        progress: optional ``progress(step, n_steps)``, called at every record.
        rho0: initial density, cell averages [N] or a vectorised function of r (averaged by
            :meth:`RadialGrid.cell_average`; e.g. :func:`gaussian_profile`); default the
            uniform ball of radius ``r0`` carrying ``params.mass``. A given profile is used as
            is (its own mass).
        c0: initial concentration, likewise; default 0. Not used when eps = k = 0 (c is then
            the field of the density, also at t = 0).
        save_times: optional times (time units) in [0, t_end] at which to store the whole
            density: the step nearest to each (ties to even) is saved in
            :attr:`RadialResult.profiles`, sorted by time; a step the run does not reach
            (it stopped unstable before) is not saved. The unstable step itself is. Default
            None: no profiles.

    Returns:
        :class:`RadialResult`. The run stops at the first unstable step.

    Raises:
        ValueError: invalid parameters or ``save_times`` (message names the field).
    """
    _check_params(params)
    d = int(params.dim)
    mu, chi = float(params.mu), float(params.chi)
    eps, k = float(params.eps), float(params.k)
    grid = make_grid(options, d)
    n = grid.n
    n_steps = options.n_steps
    dt = options.t_end / n_steps

    def initial(value, default):
        if value is None:
            return default
        arr = grid.cell_average(value) if callable(value) else np.array(value, dtype=float)
        if arr.shape != (n,):
            raise ValueError(f"initial profile: must have shape ({n},), got {arr.shape}")
        return arr

    rho = initial(rho0, None)
    if rho is None:
        rho = uniform_ball(grid, float(params.mass), options.r0)
    c = initial(c0, np.zeros(n))
    V, A, h = grid.volumes, grid.areas, grid.spacing
    mass0 = float(V @ rho)

    if save_times is None:
        save_steps = np.empty(0, dtype=int)
    else:
        req = np.sort(np.asarray(save_times, dtype=float).ravel())
        ok = req.size == 0 or (np.all(np.isfinite(req)) and req[0] >= 0 and req[-1] <= options.t_end * (1 + 1e-12))
        _require(ok, "save_times", f"finite times in [0, t_end = {options.t_end:g}]", save_times)
        save_steps = np.minimum(np.rint(req / dt).astype(int), n_steps)
    saved: list[np.ndarray] = []

    def save(step: int) -> None:  # save_steps is sorted; each step is reached once, in order
        while len(saved) < save_steps.size and save_steps[len(saved)] == step:
            saved.append(rho.copy())

    if _is_whole_space(params):
        # -- chemical: free-space field of rho by the discrete Gauss law (no linear system).
        gauss_field = _free_space_field_operator(grid)
        c = gauss_field(rho)

        def chemical(rho: np.ndarray, c: np.ndarray) -> np.ndarray:
            return gauss_field(rho)

    else:
        # -- chemical: V(eps/dt + k^2) c - div(grad c), symmetric positive definite, factored once.
        tc = A / h
        beta = eps / dt + k * k
        c_diag = V * beta
        c_diag[:-1] += tc
        c_diag[1:] += tc
        c_d, c_e, info = dpttrf(c_diag, -tc)
        if info != 0:  # pragma: no cover - SPD by construction
            raise np.linalg.LinAlgError(f"chemical matrix not positive definite (info={info})")
        eps_dt = eps / dt

        def chemical(rho: np.ndarray, c: np.ndarray) -> np.ndarray:
            return dpttrs(c_d, c_e, V * (eps_dt * c + rho))[0]

    # -- density: V/dt rho + T (a rho_i - g rho_{i+1}) fluxes, T = A mu / h.
    tr = A * mu / h
    v_dt = V / dt
    chi_mu = chi / mu
    ab = np.empty((3, n))

    rho_scale = float(rho.max())
    threshold = options.blowup_threshold * rho_scale
    collapse = options.collapse_fraction * mass0 if options.collapse_fraction < 1 else math.inf

    rec_t, rec_rmax, rec_cmax, rec_mass, rec_ctot = [], [], [], [], []

    def record(step: int) -> None:
        rec_t.append(step * dt)
        rec_rmax.append(float(rho.max()))
        rec_cmax.append(float(c[0]))
        rec_mass.append(float(V @ rho))
        rec_ctot.append(float(V @ c))
        if progress is not None:
            progress(step, n_steps)

    record(0)
    save(0)
    unstable, t_unstable, reason = False, None, ""
    step = 0
    for step in range(1, n_steps + 1):
        c_new = chemical(rho, c)
        rho = sg_implicit_density_step(rho, c_new, v_dt, tr, chi_mu, ab)
        c = c_new
        save(step)
        rmax, rmin = rho.max(), rho.min()
        if not (math.isfinite(rmax) and math.isfinite(rmin) and math.isfinite(c[0])):
            reason = REASON_NONFINITE
        elif rmin < -NEGATIVE_TOL * rmax:
            reason = REASON_NEGATIVE
        elif rmax > threshold:
            reason = REASON_THRESHOLD
        elif V[0] * rho[0] > collapse:
            reason = REASON_COLLAPSE
        if reason:
            unstable, t_unstable = True, step * dt
            record(step)
            break
        if step % options.record_every == 0 or step == n_steps:
            record(step)

    return RadialResult(
        r=grid.centres,
        volumes=V,
        t=np.asarray(rec_t),
        rho_max=np.asarray(rec_rmax),
        c_max=np.asarray(rec_cmax),
        mass=np.asarray(rec_mass),
        c_total=np.asarray(rec_ctot),
        rho=rho,
        c=c,
        unstable=unstable,
        t_unstable=t_unstable,
        reason=reason,
        n_steps=step,
        dt=dt,
        grid=grid,
        profiles=np.array(saved).reshape(len(saved), n),
        profile_times=save_steps[: len(saved)] * dt,
    )


@dataclass(frozen=True)
class ThresholdRun:
    """One run of :func:`instability_threshold`.

    Attributes:
        mass: M0 of the run (mass units).
        unstable: whether it turned unstable by ``t_end``.
        t_unstable: when, else None (time units).
        reason: :attr:`RadialResult.reason`.
        rho_max: max rho at the last recorded step (mass / length^d).
    """

    mass: float
    unstable: bool
    t_unstable: float | None
    reason: str
    rho_max: float


class ThresholdResult(NamedTuple):
    """Bracket [m_lo, m_hi] of the instability mass (m_lo stable, m_hi unstable) and the runs."""

    m_lo: float
    m_hi: float
    runs: list[ThresholdRun]


def instability_threshold(
    params: Any,
    options: RadialOptions,
    m_lo: float,
    m_hi: float,
    tol: float = 0.05,
    *,
    check_bracket: bool = True,
    max_runs: int = 60,
    progress: Callable[[ThresholdRun], None] | None = None,
) -> ThresholdResult:
    """Bisect in the mass for the smallest M0 whose run turns unstable by ``options.t_end``.

    Args:
        params: base parameters (a dataclass: the mass is changed by
            :func:`dataclasses.replace`) or a factory ``mass -> params``.
        options: :class:`RadialOptions` of every run.
        m_lo: a mass believed stable (mass units).
        m_hi: a mass believed unstable, > m_lo.
        tol: stop when m_hi - m_lo <= tol (mass units), > 0.
        check_bracket: run m_lo and m_hi first and raise ValueError if they do not bracket.
        max_runs: cap on the number of runs.
        progress: optional callable receiving each :class:`ThresholdRun` as it completes.

    Returns:
        :class:`ThresholdResult` ``(m_lo, m_hi, runs)`` with m_lo stable and m_hi unstable
        (when ``check_bracket``) and ``runs`` in the order they were made.

    Raises:
        ValueError: bad bracket/tolerance, or (``check_bracket``) endpoints that do not
            bracket the threshold.
    """
    _require(m_lo > 0, "m_lo", "> 0", m_lo)
    _require(m_hi > m_lo, "m_hi", f"> m_lo = {m_lo!r}", m_hi)
    _require(tol > 0, "tol", "> 0", tol)
    make = params if callable(params) else (lambda m: replace(params, mass=m))
    runs: list[ThresholdRun] = []

    def run(m: float) -> bool:
        res = solve_radial(make(m), options)
        rec = ThresholdRun(float(m), res.unstable, res.t_unstable, res.reason, float(res.rho_max[-1]))
        runs.append(rec)
        if progress is not None:
            progress(rec)
        return res.unstable

    if check_bracket:
        if run(m_lo):
            raise ValueError(f"m_lo: must give a stable run by t_end, got {m_lo!r} ({runs[-1].reason} at t={runs[-1].t_unstable})")
        if not run(m_hi):
            raise ValueError(f"m_hi: must give an unstable run by t_end, got {m_hi!r}")
    while m_hi - m_lo > tol and len(runs) < max_runs:
        mid = 0.5 * (m_lo + m_hi)
        if run(mid):
            m_hi = mid
        else:
            m_lo = mid
    return ThresholdResult(m_lo, m_hi, runs)
