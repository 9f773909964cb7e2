r"""Radial reference solver of diffuse-domain Fisher--Kolmogorov growth on a disc or a sphere.

For a tumour seeded at the centre of a disc (``dim = 2``, polar) or a sphere (``dim = 3``) of
homogeneous tissue, the diffuse-domain model is radially symmetric:

.. math::
    \phi\,\partial_t u = r^{1-d}\,\partial_r\!\big(r^{d-1} D\,\phi\,\partial_r u\big)
                         + \phi\,\rho\,u(1-u), \qquad
    \phi(r) = \tfrac12 + \tfrac12\tanh\big((R - r)/w\big),

(:math:`\phi` does not depend on time, so :math:`\partial_t(\phi u) = \phi\,\partial_t u`) on
:math:`0 \le r \le r_{max}` with :math:`u(r, 0) = a\,e^{-b r^2}`, regularity (no flux) at
:math:`r = 0` and no flux at :math:`r_{max}` (default :math:`R + 10 w`). ``D = D_w d(r)``:
white matter everywhere (``FKParams.grey_ratio`` is not used), optionally scaled by a radial
relative-diffusivity profile :math:`d(r) \ge 0`. Lengths are in mm, times in days.

Space: conservative finite volumes on the uniform grid :math:`r_{i\pm1/2} = (i + \tfrac12 \pm
\tfrac12)\Delta r`, cell centres :math:`r_i = (i + \tfrac12)\Delta r`, volumes
:math:`V_i = |S^{d-1}|(r_{i+1/2}^d - r_{i-1/2}^d)/d` and face areas
:math:`A_{i+1/2} = |S^{d-1}| r_{i+1/2}^{d-1}` (:math:`|S^1| = 2\pi`, :math:`|S^2| = 4\pi`).
The unknowns are the point values :math:`u_i \approx u(r_i)`; :math:`\phi_i = \phi(r_i)` and
:math:`\kappa_i = D_i\phi_i` are sampled at the centres and the face coefficient is their
harmonic mean, :math:`\kappa_{i+1/2} = 2\kappa_i\kappa_{i+1}/(\kappa_i + \kappa_{i+1})`
(second order for smooth :math:`\kappa`). With the conductances
:math:`c_{i+1/2} = A_{i+1/2}\kappa_{i+1/2}/\Delta r` the semi-discrete system is

.. math::
    M\,\dot u = -L\,u + M\rho\,u(1-u), \qquad M = \mathrm{diag}(V_i\phi_i),\quad
    (Lu)_i = c_{i-1/2}(u_i - u_{i-1}) + c_{i+1/2}(u_i - u_{i+1}),

with :math:`c_{-1/2} = 0` (zero area at the origin) and :math:`c_{N-1/2} = 0` (no flux at
:math:`r_{max}`). :math:`L` is symmetric with zero column sums, so diffusion conserves the
discrete :math:`\int\phi u\,dV = \sum_i V_i\phi_i u_i` exactly.

**Convention where** :math:`\phi` **is tiny** (shared with the 2D/3D finite-difference
solver): a cell with :math:`\phi_i <` ``phi_min`` (default 1e-3) is *frozen*: its
:math:`u` is 0 at all times and its :math:`\phi` is set to 0 in :math:`\kappa`, so the
harmonic mean makes every face touching it carry no flux. The frozen cells are removed from
the linear systems (they would have :math:`M_{ii} = 0`, a singular row); the equation is never
divided by a small :math:`\phi`. Since :math:`\phi` decreases with r, the active cells are
:math:`r_i < R + w\,\mathrm{artanh}(1 - 2\phi_{min})` (about :math:`R + 3.45 w`), and the
domain they form has the natural no-flux boundary. ``phi_min`` must lie in (0, 1/2) so that
every cell inside the nominal radius R is active.

Time: Strang splitting with the exact logistic flow,
:math:`\mathcal R_\tau: u \mapsto u/(u + (1 - u)e^{-\rho\tau})`, as
:math:`u^{n+1} = \mathcal R_{h/2}\,\mathcal D_h\,\mathcal R_{h/2}\,u^n` (consecutive half
steps are fused into one, which is exact since :math:`\mathcal R` is a flow), and for the
diffusion :math:`\mathcal D_h` either

* ``scheme="cn"`` (default) Crank--Nicolson, :math:`(M + \tfrac h2 L)u^{+} = (M - \tfrac h2 L)u`;
* ``scheme="trbdf2"`` TR-BDF2 with :math:`\gamma = 2 - \sqrt2` (L-stable; both stages use
  the same matrix :math:`M + \tfrac{\gamma}{2} h L`), for steps so large that CN's
  undamped stiff modes would ring.

Both are second order and conserve :math:`\sum_i M_{ii}u_i` to round-off. The matrix
:math:`M + \theta h L` is symmetric positive definite, tridiagonal and constant in time: it
is factored once per step size by LAPACK ``dpttrf`` (:math:`LDL^T`) and each step is one
:math:`O(N)` ``dpttrs`` solve in compiled code -- cheaper than
:func:`scipy.linalg.solve_banded`, which would refactor at every step, and than a hand
Thomas loop in Python. A resolved run (``dr = 0.05`` mm, ``dt = 0.1`` day, T = 300 days)
takes a fraction of a second.

Output times need not be multiples of ``dt``: each interval between successive output
times is covered by ``ceil(interval / dt)`` equal steps.

Measured (published parameters D_w = 0.13 mm^2/day, rho = 0.025 /day, u0 = 0.1 e^{-0.1 r^2},
R = 50 mm, w = 1 mm; tests/tumour/test_radial_fk.py):

* max-norm errors at day 150 fall as dr^2 (fitted slope 2.01, dr = 0.6 .. 0.067 mm) and as
  dt^2 (slope 2.00, dt = 6 .. 0.75 days), in 2D and 3D, for both diffusion steps; the default
  run differs from one with dr/3, dt/4 by < 1e-5 in u and < 4e-4 mm in the contour radii;
* CN does not ring for this smooth data even at dt = 25 days (D dt / dr^2 = 1300):
  0 < u <= 1 in every active cell;
* the u = 0.5 front in a large domain moves at 0.990 c (2D) / 0.988 c (3D),
  c = 2 sqrt(D_w rho), over days 3000-4000, within 0.2% of the Bramson-corrected speed
  c - (d+2)/(2 lambda) ln(t2/t1)/(t2-t1), lambda = sqrt(rho/D_w);
* day 300, disc: max u = 0.896; the u = 0.6 / 0.5 / 0.25 / 0.01 contours at
  15.45 / 17.54 / 22.51 / 33.70 mm. Sphere: max u = 0.700; 7.87 / 11.13 / 17.52 / 30.21 mm.

The module is a pure numerical kernel: no I/O, no printing, no global state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy.linalg.lapack import dpttrf, dpttrs

from oncodyn.tumour.model import FKParams, require
from oncodyn.tumour.phasefield import tanh_profile

DIMS = (2, 3)
SCHEMES = ("cn", "trbdf2")
_GAMMA = 2.0 - math.sqrt(2.0)  # TR-BDF2 stage fraction: both stages share the matrix M + (gamma/2) h L


def sphere_area(dim: int) -> float:
    """|S^{d-1}|, the area of the unit sphere in R^d: 2 pi for d = 2, 4 pi for d = 3."""
    return 2.0 * math.pi ** (dim / 2) / math.gamma(dim / 2)


@dataclass(frozen=True)
class RadialFKOptions:
    """Domain and numerical options of :func:`solve_radial_fk`.

    Attributes:
        dim: 2 (disc, polar coordinates) or 3 (sphere).
        radius: R > 0, nominal radius of the domain, where phi = 1/2 (mm). Published 50.
        width: w > 0, interface width of the phase field (mm). Published 1.
        r_max: outer radius of the grid (mm), > 0; ``None`` means ``radius + 10 * width``.
        dr: requested cell size > 0 (mm); the grid has ``n_r = round(r_max / dr)`` (>= 8) cells
            of size ``r_max / n_r`` (see :attr:`spacing`).
        dt: largest time step > 0 (days); each interval between output times is split into
            ``ceil(interval / dt)`` equal steps.
        phi_min: cells with phi < phi_min are frozen (u = 0, no flux), in (0, 1/2).
        scheme: diffusion step, ``"cn"`` (Crank--Nicolson) or ``"trbdf2"`` (L-stable TR-BDF2).
    """

    dim: int = 2
    radius: float = 50.0
    width: float = 1.0
    r_max: float | None = None
    dr: float = 0.05
    dt: float = 0.1
    phi_min: float = 1e-3
    scheme: str = "cn"

    def __post_init__(self) -> None:
        require(self.dim in DIMS and isinstance(self.dim, (int, np.integer)), "dim", "2 or 3", self.dim)
        require(_finite_positive(self.radius), "radius", "a finite number > 0 (mm)", self.radius)
        require(_finite_positive(self.width), "width", "a finite number > 0 (mm)", self.width)
        require(self.r_max is None or _finite_positive(self.r_max), "r_max", "None or a finite number > 0 (mm)", self.r_max)
        require(_finite_positive(self.dr), "dr", "a finite number > 0 (mm)", self.dr)
        outer = self.outer_radius
        require(outer / self.dr >= 7.5, "dr", f"<= r_max / 8 = {outer / 8:g} mm (at least 8 cells)", self.dr)
        require(_finite_positive(self.dt), "dt", "a finite number > 0 (days)", self.dt)
        require(_is_number(self.phi_min) and 0 < self.phi_min < 0.5, "phi_min", "in (0, 0.5)", self.phi_min)
        require(self.scheme in SCHEMES, "scheme", "one of " + ", ".join(SCHEMES), self.scheme)

    @property
    def outer_radius(self) -> float:
        """r_max, or radius + 10 width when ``r_max`` is None (mm)."""
        return float(self.radius + 10.0 * self.width if self.r_max is None else self.r_max)

    @property
    def n_r(self) -> int:
        """Number of cells, round(outer_radius / dr)."""
        return max(1, int(round(self.outer_radius / self.dr)))

    @property
    def spacing(self) -> float:
        """The actual cell size outer_radius / n_r (mm), within half a cell of ``dr``."""
        return self.outer_radius / self.n_r


def _is_number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _finite_positive(x) -> bool:
    return _is_number(x) and math.isfinite(x) and x > 0


@dataclass(frozen=True)
class RadialFKResult:
    """Radial solution u(r, t) of :func:`solve_radial_fk`.

    Attributes:
        r: [n_r] cell centres (mm).
        t: [n_t] output times (days).
        u: [n_t, n_r] tumour cell density (0 in frozen cells).
        phi: [n_r] phase field at the cell centres.
        volumes: [n_r] cell volumes V_i (mm^dim), including the 2 pi or 4 pi factor.
        active: [n_r] bool, False for frozen cells (phi < phi_min).
        dim: 2 (disc) or 3 (sphere).
    """

    r: np.ndarray
    t: np.ndarray
    u: np.ndarray
    phi: np.ndarray
    volumes: np.ndarray
    active: np.ndarray
    dim: int

    def interpolate(self, points_radius) -> np.ndarray:
        """u at given radii by linear interpolation between cell centres (:func:`numpy.interp`).

        Below the first centre (r < dr/2) the value of the first cell is returned (u has zero
        slope at the origin); beyond the last centre, that of the last cell.

        Args:
            points_radius: radii (mm), any shape ``S``.
        Returns:
            u, shape ``[n_t, *S]``.
        """
        p = np.asarray(points_radius, dtype=float)
        flat = p.ravel()
        out = np.stack([np.interp(flat, self.r, ui) for ui in self.u])
        return out.reshape((self.t.size,) + p.shape)

    def front_radius(self, level: float = 0.5) -> np.ndarray:
        """Radius of the outermost crossing of u = level, per output time.

        The crossing lies between the outermost cell with ``u >= level`` and the next one
        and is located by linear interpolation.

        Args:
            level: threshold in (0, 1) (e.g. 0.25 oedema, 0.5, 0.6 tumour core).
        Returns:
            [n_t] radii (mm); NaN where u < level everywhere.
        """
        require(_is_number(level) and 0 < level < 1, "level", "in (0, 1)", level)
        out = np.full(self.t.size, np.nan)
        for k, uk in enumerate(self.u):
            above = np.nonzero(uk >= level)[0]
            if above.size == 0:
                continue
            i = above[-1]
            if i == uk.size - 1:
                out[k] = self.r[i]
                continue
            u0, u1 = uk[i], uk[i + 1]
            out[k] = self.r[i] + (u0 - level) / (u0 - u1) * (self.r[i + 1] - self.r[i])
        return out

    def mass(self, weighted: bool = True) -> np.ndarray:
        r"""Tumour mass :math:`\int\phi u\,dV = \sum_i V_i\phi_i u_i` per output time.

        Args:
            weighted: if False, :math:`\int u\,dV` (no phase-field weight).
        Returns:
            [n_t] mass (mm^dim, u being dimensionless).
        """
        w = self.volumes * self.phi if weighted else self.volumes
        return self.u @ w

    def growth(self, rho: float) -> np.ndarray:
        r"""The source :math:`\int\phi\rho u(1-u)\,dV` per output time (mm^dim / day).

        The exact PDE has :math:`d/dt \int\phi u\,dV` equal to this (no-flux boundaries).

        Args:
            rho: proliferation rate (1/day).
        Returns:
            [n_t] growth rate of :meth:`mass`.
        """
        return (rho * self.u * (1.0 - self.u)) @ (self.volumes * self.phi)


def _grid(options: RadialFKOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Uniform finite-volume grid: centres [n], volumes [n], interior face areas [n-1]."""
    n, h, d = options.n_r, options.spacing, options.dim
    faces = h * np.arange(n + 1, dtype=float)
    centres = h * (np.arange(n, dtype=float) + 0.5)
    sphere = sphere_area(d)
    volumes = sphere * (faces[1:] ** d - faces[:-1] ** d) / d
    areas = sphere * faces[1:-1] ** (d - 1)
    return centres, volumes, areas


def _harmonic_mean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """2ab/(a+b), and 0 where a + b = 0 (a, b >= 0)."""
    s = a + b
    return np.divide(2.0 * a * b, s, out=np.zeros_like(s), where=s > 0)


class _Diffusion:
    """Step of M du/dt = -L u on the active cells, with factorisations cached per step size."""

    def __init__(self, mass_diag: np.ndarray, conductance: np.ndarray, scheme: str) -> None:
        self.m = mass_diag  # [n_a] V_i phi_i > 0
        self.c = conductance  # [n_a - 1] c_{i+1/2} >= 0
        self.ldiag = np.zeros_like(mass_diag)
        self.ldiag[:-1] += conductance
        self.ldiag[1:] += conductance
        self.scheme = scheme
        self._cache: dict[float, tuple[np.ndarray, np.ndarray]] = {}

    def apply_l(self, u: np.ndarray) -> np.ndarray:
        """L u, [n_a]: the outward diffusive flow out of each cell."""
        g = self.c * np.diff(u)
        lu = np.zeros_like(u)
        lu[:-1] -= g
        lu[1:] += g
        return lu

    def _factor(self, theta_h: float) -> tuple[np.ndarray, np.ndarray]:
        fac = self._cache.get(theta_h)
        if fac is None:
            d, e, info = dpttrf(self.m + theta_h * self.ldiag, -theta_h * self.c)
            if info != 0:  # pragma: no cover - SPD by construction (M > 0, L >= 0)
                raise np.linalg.LinAlgError(f"diffusion matrix not positive definite (info={info})")
            fac = (d, e)
            self._cache[theta_h] = fac
        return fac

    def _solve(self, theta_h: float, rhs: np.ndarray) -> np.ndarray:
        d, e = self._factor(theta_h)
        x, info = dpttrs(d, e, rhs)
        if info != 0:  # pragma: no cover
            raise np.linalg.LinAlgError(f"dpttrs failed (info={info})")
        return x

    def step(self, u: np.ndarray, h: float) -> np.ndarray:
        """One diffusion step of size h (days) from u [n_a]."""
        if u.size == 1:
            return u.copy()
        if self.scheme == "cn":
            return self._solve(0.5 * h, self.m * u - 0.5 * h * self.apply_l(u))
        gh = _GAMMA * h
        ustar = self._solve(0.5 * gh, self.m * u - 0.5 * gh * self.apply_l(u))
        a = 1.0 / (_GAMMA * (2.0 - _GAMMA))
        b = (1.0 - _GAMMA) ** 2 / (_GAMMA * (2.0 - _GAMMA))
        return self._solve(0.5 * gh, self.m * (a * ustar - b * u))


def _logistic(u: np.ndarray, decay: float) -> np.ndarray:
    """Exact logistic flow u / (u + (1 - u) e^{-rho tau}), with decay = e^{-rho tau}."""
    return u / (u + (1.0 - u) * decay)


def solve_radial_fk(
    params: FKParams,
    options: RadialFKOptions = RadialFKOptions(),
    t_out: Sequence[float] = (300.0,),
    relative_diffusivity: Callable[[np.ndarray], np.ndarray] | None = None,
) -> RadialFKResult:
    r"""Solve the radial diffuse-domain Fisher--Kolmogorov equation (see the module docstring).

    Args:
        params: D_white (mm^2/day), rho (1/day), ic_amplitude a, ic_decay b (1/mm^2);
            ``grey_ratio`` is not used (homogeneous tissue).
        options: domain and numerics.
        t_out: [n_t] output times (days), finite, >= 0, non-decreasing; t = 0 gives the
            initial condition.
        relative_diffusivity: optional d(r) >= 0 (vectorised, r in mm), D = D_w d(r) sampled at
            the cell centres; default d = 1.
    Returns:
        The solution at the output times on the cell centres.
    """
    if not isinstance(params, FKParams):
        raise ValueError(f"params: must be an FKParams, got {type(params).__name__}")
    if not isinstance(options, RadialFKOptions):
        raise ValueError(f"options: must be a RadialFKOptions, got {type(options).__name__}")
    times = np.atleast_1d(np.asarray(t_out, dtype=float))
    require(times.ndim == 1 and times.size >= 1, "t_out", "a non-empty 1D sequence of times (days)", t_out)
    require(bool(np.all(np.isfinite(times)) and np.all(times >= 0)), "t_out", "finite and >= 0 (days)", t_out)
    require(bool(np.all(np.diff(times) >= 0)), "t_out", "non-decreasing", t_out)

    r, volumes, areas = _grid(options)
    phi = tanh_profile(options.radius - r, options.width)
    active = phi >= options.phi_min
    n_a = int(active.sum())
    # phi is decreasing in r and phi(r < R) > 1/2 > phi_min: the active cells are a prefix
    if n_a == 0:
        raise ValueError(f"dr: must be small enough that the first cell centre (dr/2 = {r[0]:g} mm) has phi >= phi_min, got {options.dr!r}")
    if not np.all(active[:n_a]):  # pragma: no cover - phi is decreasing in r
        raise ValueError("phi_min: the active cells must be a prefix of the grid")

    d_rel = np.ones_like(r)
    if relative_diffusivity is not None:
        d_rel = np.broadcast_to(np.asarray(relative_diffusivity(r), dtype=float), r.shape).copy()
        bad = ~(np.isfinite(d_rel) & (d_rel >= 0))
        require(not bad.any(), "relative_diffusivity", "finite and >= 0 at every cell centre", d_rel[bad][:3].tolist())

    kappa = params.D_white * d_rel * np.where(active, phi, 0.0)
    conductance = areas * _harmonic_mean(kappa[:-1], kappa[1:]) / options.spacing
    diffusion = _Diffusion((volumes * phi)[:n_a], conductance[: n_a - 1], options.scheme)

    u = params.ic_amplitude * np.exp(-params.ic_decay * r[:n_a] ** 2)
    out = np.zeros((times.size, r.size))
    t_now = 0.0
    rho = params.rho
    for k, t_next in enumerate(times):
        span = t_next - t_now
        if span > 0:
            n_steps = max(1, math.ceil(span / options.dt - 1e-9))
            h = span / n_steps
            half, full = math.exp(-0.5 * rho * h), math.exp(-rho * h)
            u = _logistic(u, half)
            for step in range(n_steps):
                u = diffusion.step(u, h)
                u = _logistic(u, half if step == n_steps - 1 else full)
            t_now = float(t_next)
        out[k, :n_a] = u
    return RadialFKResult(r=r, t=times, u=out, phi=phi, volumes=volumes, active=active, dim=options.dim)
