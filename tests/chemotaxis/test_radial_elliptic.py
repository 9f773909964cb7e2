"""Tests of the whole-space parabolic--elliptic case eps = k = 0 of the radial solver.

The field is the free-space (Gauss-law) field :func:`oncodyn.chemotaxis.radial.free_space_field`.
All runs use uniform or coarse graded grids and short times (each test a few seconds at most).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from oncodyn.chemotaxis.radial import (
    REASON_COLLAPSE,
    REASON_THRESHOLD,
    RadialOptions,
    RadialParams,
    ball_volume,
    free_space_field,
    gaussian_profile,
    make_grid,
    solve_radial,
    uniform_ball,
)

MU = 1.0
NEVER = 10**6  # record_every: record only t = 0 and t_end


def _params(mass: float, chi: float, dim: int) -> RadialParams:
    return RadialParams(mass=mass, mu=MU, chi=chi, eps=0.0, k=0.0, dim=dim)


def _l2_rel(volumes: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Volume-weighted relative L2 distance of cell averages a and b (relative to b)."""
    return math.sqrt(volumes @ (a - b) ** 2 / (volumes @ b**2))


def _restrict(rho: np.ndarray, volumes: np.ndarray) -> np.ndarray:
    """Cell averages on the grid of half as many cells (pairs of cells merged): exact for averages."""
    return (volumes[0::2] * rho[0::2] + volumes[1::2] * rho[1::2]) / (volumes[0::2] + volumes[1::2])


# --------------------------------------------------------------------------- helpers


def test_gaussian_profile():
    for dim in (2, 3):
        g = make_grid(RadialOptions(r_max=10.0, n_r=400, grid="uniform"), dim)
        f = gaussian_profile(3.0, 0.7, dim)
        assert g.volumes @ g.cell_average(f) == pytest.approx(3.0, rel=1e-12)  # tail beyond 14 std: e^-100
        m2 = g.volumes @ g.cell_average(lambda r: r**2 * f(r))  # int |x|^2 rho = d s^2 M
        assert m2 == pytest.approx(dim * 0.49 * 3.0, rel=1e-12)
    assert gaussian_profile(1.0, 1.0, 2)(np.zeros((2, 3))).shape == (2, 3)
    with pytest.raises(ValueError, match="^std:"):
        gaussian_profile(1.0, 0.0, 2)


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("grid", ["uniform", "graded"])
def test_gauss_law_exact_for_piecewise_constant_density(dim, grid):
    # A uniform ball whose edge r0 is a face is piecewise constant on the grid, so the discrete
    # Gauss law is exact at the cell centres: c = -rho r^2 / (2d) inside, the point-mass
    # potential outside (-M ln r / 2 pi, M / (4 pi r)), continuous at r0.
    g = make_grid(RadialOptions(r_max=5.0, n_r=50, grid=grid, h_min=1e-3), dim)
    r0, mass = g.faces[20], 3.0
    rho_in = mass / ball_volume(r0, dim)
    r = g.centres
    if dim == 2:
        exact = np.where(r < r0, -rho_in * r**2 / 4, -rho_in * r0**2 / 4 - mass / (2 * math.pi) * np.log(r / r0))
    else:
        exact = np.where(r < r0, -rho_in * r**2 / 6, -rho_in * r0**2 / 6 + mass / (4 * math.pi) * (1 / r - 1 / r0))
    c = free_space_field(g, uniform_ball(g, mass, r0))
    assert c[-1] == 0.0  # relative to the outermost centre
    np.testing.assert_allclose(c, exact - exact[-1], rtol=0, atol=1e-13 * np.abs(exact).max())


# --------------------------------------------------------------------------- conservation


@pytest.mark.parametrize("dim, mass, chi, t_end", [(2, 10.0, 1.5 * 8 * math.pi / 10.0, 0.3), (3, 150.0, 1.0, 0.2)])
def test_mass_conservation_and_positivity(dim, mass, chi, t_end):
    # strongly aggregating (2D: chi M = 1.5 x 8 pi mu, blow-up at t ~ 0.69; 3D: at t ~ 0.25)
    # but stopped before the blow-up; large dt on purpose
    opts = RadialOptions(r_max=12.0, n_r=200, h_min=1e-3, dt=1e-2, t_end=t_end, record_every=1)
    res = solve_radial(_params(mass, chi, dim), opts, rho0=gaussian_profile(mass, 1.0, dim))
    assert not res.unstable
    assert res.mass[0] == pytest.approx(mass, rel=1e-12)  # Gaussian tail beyond 12 std: e^-72
    np.testing.assert_allclose(res.mass, res.mass[0], rtol=1e-12)  # conservative SG step
    assert res.rho.min() >= 0.0  # M-matrix: >= 0 exactly
    assert res.rho_max[-1] > res.rho_max[0]  # it aggregates
    assert np.all(np.isfinite(res.c)) and res.c[-1] == 0.0 and np.all(np.diff(res.c) <= 0)


# --------------------------------------------------------------------------- chi = 0: heat kernel


@pytest.mark.parametrize("dim", [2, 3])
def test_heat_kernel(dim):
    # chi = 0: the Gaussian of variance s^2 per coordinate spreads to variance s^2 + 2 mu t.
    s, t_end, mass = 1.0, 0.5, 1.0
    opts = RadialOptions(r_max=10.0, n_r=200, grid="uniform", dt=1e-4, t_end=t_end, record_every=NEVER)
    res = solve_radial(_params(mass, 0.0, dim), opts, rho0=gaussian_profile(mass, s, dim))
    exact = res.grid.cell_average(gaussian_profile(mass, math.sqrt(s * s + 2 * MU * t_end), dim))
    # measured 1.6e-4 (2D), 2.5e-4 (3D): O(dr^2) = O(2.5e-3) x small constant plus O(dt) Euler
    assert _l2_rel(res.volumes, res.rho, exact) < 5e-4


# --------------------------------------------------------------------------- 2D moment law


@pytest.mark.parametrize("factor, t_end", [(0.5, 0.5), (1.5, 0.3)])
def test_2d_moment_law(factor, t_end):
    # d/dt int |x|^2 rho = 4 mu M - chi M^2 / (2 pi) exactly in 2D free space: with chi M =
    # factor x 8 pi mu the slope of m2 = int |x|^2 rho is 4 mu M (1 - factor). Super-critical
    # runs stop at 0.3, well before the blow-up (t_unstable ~ 0.69 here, < m2(0)/2 = 1).
    mass = 1.0
    chi = factor * 8 * math.pi * MU / mass
    opts = RadialOptions(r_max=12.0, n_r=300, h_min=1e-3, dt=1e-3, t_end=t_end, record_every=NEVER)
    times = np.linspace(0.0, t_end, 11)
    res = solve_radial(_params(mass, chi, 2), opts, rho0=gaussian_profile(mass, 1.0, 2), save_times=times)
    assert not res.unstable
    np.testing.assert_allclose(res.profile_times, times, atol=1e-12)
    r2 = res.grid.cell_average(lambda r: r**2)  # exact cell averages of |x|^2
    m2 = res.profiles @ (res.volumes * r2)
    assert m2[0] == pytest.approx(2.0 * mass, rel=1e-3)  # m2(0) = 2 s^2 M up to O(dr^2)
    slope, _ = np.polyfit(res.profile_times, m2, 1)
    exact = 4 * MU * mass - chi * mass**2 / (2 * math.pi)
    # measured: -2.6e-4 (sub-), -3.4e-3 (super-critical), mostly the O(dt) Euler error
    assert slope == pytest.approx(exact, rel=1e-2), (slope, exact)


# --------------------------------------------------------------------------- convergence


@pytest.mark.parametrize("dim, mass", [(2, 10.0), (3, 10.0)])
def test_second_order_in_dr(dim, mass):
    # Sub-critical (2D: chi M = 10 < 8 pi; 3D: M = 10, mu = chi = 1, Gaussian std 1 spreads,
    # max rho 0.63 -> 0.25 by t = 0.5 vs 0.22 for chi = 0) and smooth. Uniform grids of N, 2N,
    # 4N, 8N cells, all with the same dt: the O(dt) Euler error is then (up to O(dt dr^2))
    # the same on every grid and cancels in the differences of successive solutions, which
    # isolates the spatial error. The finer solution is restricted exactly to the coarser grid
    # (cell averages of merged cells), and the differences must shrink by 2^2 per halving.
    chi = 1.0
    opts = dict(r_max=10.0, grid="uniform", dt=1e-3, t_end=0.5, record_every=NEVER)
    sols = [solve_radial(_params(mass, chi, dim), RadialOptions(n_r=n, **opts), rho0=gaussian_profile(mass, 1.0, dim))
            for n in (50, 100, 200, 400)]
    diffs = np.array([_l2_rel(a.volumes, a.rho, _restrict(b.rho, b.volumes)) for a, b in zip(sols[:-1], sols[1:])])
    orders = np.log2(diffs[:-1] / diffs[1:])
    # measured 2.00, 2.00 (2D) and 1.99, 2.00 (3D)
    assert np.all(orders >= 1.8), (diffs, orders)
    # the field matters: the converged solution differs from the chi = 0 one by far more than the error
    heat = solve_radial(_params(mass, 0.0, dim), RadialOptions(n_r=400, **opts), rho0=gaussian_profile(mass, 1.0, dim))
    assert _l2_rel(heat.volumes, heat.rho, sols[-1].rho) > 100 * diffs[-1]


@pytest.mark.parametrize("dim", [2, 3])
def test_first_order_in_dt(dim):
    # Same grid, dt halved three times: successive differences shrink by 2^1 (implicit Euler
    # with the field from rho^n). The spatial error is the same for all dt and cancels.
    mass, chi = 10.0, 1.0
    sols = [solve_radial(_params(mass, chi, dim),
                         RadialOptions(r_max=10.0, n_r=100, grid="uniform", dt=dt, t_end=0.4, record_every=NEVER),
                         rho0=gaussian_profile(mass, 1.0, dim))
            for dt in (0.04, 0.02, 0.01, 0.005)]
    diffs = np.array([_l2_rel(a.volumes, a.rho, b.rho) for a, b in zip(sols[:-1], sols[1:])])
    orders = np.log2(diffs[:-1] / diffs[1:])
    # measured 0.95, 0.97 (2D) and 0.96, 0.98 (3D): 1 - O(dt)
    assert np.all(orders >= 0.9), (diffs, orders)


# --------------------------------------------------------------------------- blow-up


def test_2d_supercritical_blows_up_before_moment_law_time():
    # chi M = 1.5 x 8 pi mu, Gaussian std s = 1: m2(0) = 2 s^2 M and dm2/dt = M(4 mu - chi M / (2 pi))
    # = -2 M, so the solution must blow up before t* = m2(0) / (chi M / (2 pi) - 4 mu) = 1.
    mass, s = 1.0, 1.0
    t_star = 2 * s * s / (1.5 * 8 * math.pi * MU / (2 * math.pi) - 4 * MU)
    assert t_star == pytest.approx(1.0)
    opts = RadialOptions(r_max=12.0, n_r=300, h_min=1e-4, dt=1e-3, t_end=t_star, record_every=NEVER)
    sup = solve_radial(_params(mass, 1.5 * 8 * math.pi, 2), opts, rho0=gaussian_profile(mass, s, 2))
    assert sup.unstable and sup.reason in (REASON_THRESHOLD, REASON_COLLAPSE)
    # measured 0.716 here (fine grids and dt: ~0.69)
    assert 0.3 < sup.t_unstable < t_star
    sub = solve_radial(_params(mass, 0.5 * 8 * math.pi, 2), opts, rho0=gaussian_profile(mass, s, 2))
    assert not sub.unstable and sub.rho_max[-1] < sub.rho_max[0]  # diffusion wins


# --------------------------------------------------------------------------- save_times


def test_save_times():
    p = _params(1.0, 1.5 * 8 * math.pi, 2)
    opts = RadialOptions(r_max=12.0, n_r=100, h_min=1e-3, dt=0.01, t_end=1.0, record_every=7)
    base = solve_radial(p, opts, rho0=gaussian_profile(1.0, 1.0, 2))
    assert base.profiles.shape == (0, 100) and base.profile_times.shape == (0,)
    assert base.unstable and base.t_unstable < 0.95
    res = solve_radial(p, opts, rho0=gaussian_profile(1.0, 1.0, 2), save_times=[0.2, 0.0, 0.0449, 0.95, 1.0])
    # sorted, nearest steps, only up to the unstable step; diagnostics unchanged
    np.testing.assert_allclose(res.profile_times, [0.0, 0.04, 0.2])
    assert res.profiles.shape == (3, 100)
    np.testing.assert_array_equal(res.profiles[0], res.grid.cell_average(gaussian_profile(1.0, 1.0, 2)))
    np.testing.assert_array_equal(res.t, base.t)
    np.testing.assert_array_equal(res.rho, base.rho)
    every = solve_radial(p, replace(opts, record_every=1), rho0=gaussian_profile(1.0, 1.0, 2))
    assert res.profiles[1].max() == every.rho_max[4] and res.profiles[2].max() == every.rho_max[20]
    # the last step is saved when reached; the saved profile is the state, not a reference
    stable = solve_radial(_params(1.0, 1.0, 2), opts, rho0=gaussian_profile(1.0, 1.0, 2), save_times=[1.0, 0.5])
    np.testing.assert_array_equal(stable.profiles[-1], stable.rho)
    assert not np.array_equal(stable.profiles[0], stable.profiles[1])
    with pytest.raises(ValueError, match="^save_times:"):
        solve_radial(p, opts, save_times=[1.5])
    with pytest.raises(ValueError, match="^save_times:"):
        solve_radial(p, opts, save_times=[-0.1])
