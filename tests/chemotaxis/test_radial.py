"""Tests of the radial finite-volume Keller--Segel reference solver (oncodyn.chemotaxis.radial).

All runs use coarse grids and short times so that the file takes a few seconds.
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
    bernoulli,
    instability_threshold,
    make_grid,
    solve_radial,
    sphere_area,
    uniform_ball,
)

# A coarse graded grid: 200 cells, innermost 1e-3, outer radius 20 (the published domain).
COARSE = RadialOptions(n_r=200, h_min=1e-3, dt=1e-3, t_end=1.0, record_every=1)


# --------------------------------------------------------------------------- grid & helpers


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("grid", ["uniform", "graded"])
def test_grid_geometry(dim, grid):
    g = make_grid(replace(COARSE, grid=grid), dim)
    assert g.faces[0] == 0.0 and g.faces[-1] == COARSE.r_max
    assert np.all(np.diff(g.faces) > 0)
    # the cell volumes tile the ball of radius R (telescoping sum: round-off only)
    assert g.volumes.sum() == pytest.approx(ball_volume(COARSE.r_max, dim), rel=1e-12)
    if grid == "graded":
        sizes = np.diff(g.faces)
        assert sizes[0] == pytest.approx(COARSE.h_min, rel=1e-9)  # rescaling to R is round-off
        ratios = sizes[1:] / sizes[:-1]
        assert np.ptp(ratios) < 1e-9 and ratios[0] > 1  # geometric


def test_sphere_area():
    assert sphere_area(2) == pytest.approx(2 * math.pi)
    assert sphere_area(3) == pytest.approx(4 * math.pi)


def test_cell_average_exact_for_polynomials():
    g = make_grid(COARSE, 3)
    avg = g.cell_average(lambda r: r**2)
    # exact: int r^2 r^2 dr / int r^2 dr over each cell
    a, b = g.faces[:-1], g.faces[1:]
    exact = (b**5 - a**5) / 5 / ((b**3 - a**3) / 3)
    np.testing.assert_allclose(avg, exact, rtol=1e-12)


def test_uniform_ball_has_exact_mass():
    g = make_grid(RadialOptions(n_r=137, grid="uniform"), 3)  # r0 = 1 cuts a cell
    rho = uniform_ball(g, 47.7, 1.0)
    assert g.volumes @ rho == pytest.approx(47.7, rel=1e-13)
    assert rho.max() == pytest.approx(47.7 / ball_volume(1.0, 3), rel=1e-13)


def test_bernoulli():
    x = np.array([-800.0, -30.0, -1.0, -1e-12, 0.0, 1e-12, 1.0, 30.0, 800.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # no overflow, no nan
        b = bernoulli(x)
    ref = np.array([800.0, 30 / (1 - math.exp(-30)), 1 / (1 - math.exp(-1)), 1.0, 1.0, 1.0,
                    1 / (math.e - 1), 30 * math.exp(-30) / (1 - math.exp(-30)), 0.0])
    np.testing.assert_allclose(b, ref, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(bernoulli(-x) - bernoulli(x), x, rtol=1e-12, atol=1e-15)  # B(-x) = B(x) + x, atol: cancellation near 0


# --------------------------------------------------------------------------- conservation


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("eps", [0.0, 1e-4, 1.0])
def test_mass_conservation_and_positivity(dim, eps):
    p = RadialParams(mass=40.0, eps=eps, dim=dim)
    res = solve_radial(p, replace(COARSE, t_end=0.2, dt=1e-2))  # large dt on purpose
    assert not res.unstable
    # conservative fluxes: mass changes only by the round-off of the tridiagonal solves
    # (~1e-16 per step relative, 20 steps).
    np.testing.assert_allclose(res.mass, 40.0, rtol=1e-12)
    # the Scharfetter--Gummel matrix is a column-diagonally-dominant M-matrix, so LAPACK's
    # elimination pivots nowhere and every operation keeps the sign: exactly >= 0.
    assert res.rho.min() >= 0.0
    assert np.all(np.isfinite(res.c))


def test_mass_conservation_long_run():
    # 1000 steps up to t = 1 at a mass that concentrates strongly but stays bounded
    res = solve_radial(RadialParams(mass=30.0), COARSE)
    assert not res.unstable
    # relative 1e-10: round-off accumulated over 1000 steps stays far below this
    assert np.max(np.abs(res.mass / 30.0 - 1)) < 1e-10
    assert res.rho.min() >= 0.0


def test_positivity_under_strong_drift():
    # mass 150 concentrates violently; positivity must hold up to the unstable step
    res = solve_radial(RadialParams(mass=150.0), replace(COARSE, dt=1e-2))
    assert res.rho.min() >= 0.0
    assert abs(res.mass[-1] / 150.0 - 1) < 1e-10


# --------------------------------------------------------------------------- total concentration


def _cbar_exact(t, mass, eps, k):
    ss = mass / k**2
    return -ss * np.exp(-(k**2) * t / eps) + ss  # c_bar(0) = 0


def test_total_concentration_discrete_recursion():
    p = RadialParams(mass=20.0, eps=0.1, k=1.0)
    opts = replace(COARSE, t_end=0.3, dt=0.01)
    res = solve_radial(p, opts)
    # implicit Euler of eps dC/dt = -k^2 C + M: (eps/dt + k^2) C_{n+1} = eps/dt C_n + M.
    # The FV diffusion of c has zero column sums, so this holds to round-off.
    beta = p.eps / res.dt + p.k**2
    pred = (p.eps / res.dt * res.c_total[:-1] + res.mass[:-1]) / beta
    np.testing.assert_allclose(res.c_total[1:], pred, rtol=1e-12)


def test_total_concentration_first_order_in_dt():
    p = RadialParams(mass=20.0, eps=0.1, k=1.0)
    errs = []
    dts = [0.02, 0.01, 0.005]
    for dt in dts:
        res = solve_radial(p, replace(COARSE, t_end=0.2, dt=dt, record_every=1000))
        errs.append(abs(res.c_total[-1] - _cbar_exact(0.2, p.mass, p.eps, p.k)))
    order = np.polyfit(np.log(dts), np.log(errs), 1)[0]
    # implicit Euler is first order; the slope over dt in [0.005, 0.02] is 1 +- O(dt k^2/eps)
    assert 0.9 < order < 1.15, (errs, order)
    assert errs[-1] / _cbar_exact(0.2, p.mass, p.eps, p.k) < 0.02


def test_elliptic_limit_total_concentration():
    # eps = 0: k^2 C = M at every step, exactly
    p = RadialParams(mass=20.0, eps=0.0, k=0.5)
    res = solve_radial(p, replace(COARSE, t_end=0.05, dt=0.01))
    np.testing.assert_allclose(res.c_total[1:], 20.0 / 0.25, rtol=1e-12)


# --------------------------------------------------------------------------- pure diffusion


@pytest.mark.parametrize("dim", [2, 3])
def test_heat_kernel_second_order_in_dr(dim):
    mu, t0, t_end, mass = 1.0, 0.05, 0.05, 1.0

    def gauss(t):
        return lambda r: mass * (4 * math.pi * mu * t) ** (-dim / 2) * np.exp(-(r**2) / (4 * mu * t))

    p = RadialParams(mass=mass, mu=mu, chi=0.0, eps=1.0, k=1.0, dim=dim)
    hs, errs = [], []
    for n in (40, 80, 160):
        # R = 3: the Gaussian (variance 2 mu t <= 0.2) is e^-22 at the wall; dt = 1e-5 makes
        # the O(dt) Euler error (~1e-5 relative) small against the O(h^2) error (>= 1e-4).
        opts = RadialOptions(r_max=3.0, n_r=n, grid="uniform", dt=1e-5, t_end=t_end, record_every=10**6)
        res = solve_radial(p, opts, rho0=gauss(t0))
        exact = res.grid.cell_average(gauss(t0 + t_end))
        hs.append(3.0 / n)
        errs.append(res.volumes @ np.abs(res.rho - exact) / mass)  # relative L1
    order = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    # cell-centred FV with two-point fluxes on a uniform grid: second order
    assert 1.8 < order < 2.2, (errs, order)
    assert errs[-1] < 1e-3


def test_graded_grid_second_order_for_keller_segel():
    # Self-convergence of the full system (chi > 0) on graded grids with a smooth initial
    # Gaussian (the cell-averaged step of the default ball makes the error erratic in h).
    mass, var = 20.0, 0.1
    p = RadialParams(mass=mass)

    def gauss(r):
        return mass * (2 * math.pi * var) ** -1.5 * np.exp(-(r**2) / (2 * var))

    base = RadialOptions(dt=1e-3, t_end=0.1, record_every=10**6)
    vals = []
    for n, h0 in ((100, 4e-3), (200, 2e-3), (400, 1e-3), (800, 5e-4), (3200, 1.25e-4)):
        res = solve_radial(p, replace(base, n_r=n, h_min=h0), rho0=gauss)
        vals.append((res.c_max[-1], res.rho_max[-1]))
    vals = np.array(vals)
    errs = np.abs(vals[:-1] / vals[-1] - 1)  # the same dt everywhere: time error cancels
    hs = [4e-3, 2e-3, 1e-3, 5e-4]
    for j in range(2):
        order = np.polyfit(np.log(hs), np.log(errs[:, j]), 1)[0]
        # SG fluxes and the FV Laplacian are second order on a smoothly graded grid
        assert 1.8 < order < 2.3, (errs, order)


# --------------------------------------------------------------------------- stability


def test_small_mass_stays_stable_and_spreads():
    res = solve_radial(RadialParams(mass=10.0), COARSE)
    assert not res.unstable and res.reason == "" and res.t_unstable is None
    assert res.t[-1] == pytest.approx(1.0)
    assert res.rho_max[-1] < 0.5 * res.rho_max[0]  # diffusion wins
    # the density has left the initial ball
    outside = res.volumes[res.r > 1.5] @ res.rho[res.r > 1.5]
    assert outside > 0.3 * 10.0


def test_large_mass_turns_unstable_before_t1():
    calls = []
    res = solve_radial(RadialParams(mass=150.0), COARSE, progress=lambda s, n: calls.append((s, n)))
    assert res.unstable
    assert res.reason in (REASON_THRESHOLD, REASON_COLLAPSE)
    assert 0 < res.t_unstable < 1.0
    assert res.t[-1] == pytest.approx(res.t_unstable)  # the unstable step is recorded
    assert res.rho_max[-1] > 100 * res.rho_max[0]
    assert calls[0] == (0, 1000) and calls[-1][0] == res.n_steps


@pytest.mark.parametrize("factor, blows_up", [(0.9, False), (1.5, True)])
def test_2d_critical_mass(factor, blows_up):
    # 2D: radial solutions blow up iff M0 > 8 pi mu / chi (parabolic--elliptic limit; here
    # eps = 1e-4, k = 0.1 are small perturbations). 0.9 and 1.5 x 8 pi are far enough from
    # the critical mass for T = 1 (the T = 1 threshold of this setup is ~27.9 = 1.11 x 8 pi).
    mass = factor * 8 * math.pi
    res = solve_radial(RadialParams(mass=mass, dim=2), replace(COARSE, dt=1e-2))
    assert res.unstable == blows_up, (res.reason, res.t_unstable)


def test_collapse_detected_on_coarse_uniform_grid():
    # a uniform grid cannot hold 1e6 x the initial density (all mass in cell 0 is ~1e5 x):
    # the collapse test must catch the blow-up instead
    opts = replace(COARSE, grid="uniform", n_r=400, dt=1e-2)
    res = solve_radial(RadialParams(mass=150.0), opts)
    assert res.unstable and res.reason == REASON_COLLAPSE


def test_instability_threshold_brackets():
    runs_seen = []
    lo, hi, runs = instability_threshold(RadialParams(mass=1.0), replace(COARSE, dt=1e-2), 10.0, 150.0, tol=20.0,
                                         progress=runs_seen.append)
    assert hi - lo <= 20.0 and 10.0 <= lo < hi <= 150.0
    assert runs == runs_seen and len(runs) == 2 + 3  # endpoints + ceil(log2(140 / 20))
    assert not runs[0].unstable and runs[1].unstable
    for r in runs:
        assert r.unstable == (r.mass >= hi)
    # a factory works as well as a dataclass
    lo2, hi2, _ = instability_threshold(lambda m: RadialParams(mass=m), replace(COARSE, dt=1e-2), 10.0, 150.0, 20.0)
    assert (lo2, hi2) == (lo, hi)


def test_instability_threshold_bad_bracket():
    with pytest.raises(ValueError, match="^m_hi:"):
        instability_threshold(RadialParams(mass=1.0), replace(COARSE, dt=1e-2, t_end=0.05), 5.0, 10.0, 1.0)
    with pytest.raises(ValueError, match="^m_hi:"):
        instability_threshold(RadialParams(mass=1.0), COARSE, 5.0, 4.0, 1.0)
    with pytest.raises(ValueError, match="^tol:"):
        instability_threshold(RadialParams(mass=1.0), COARSE, 5.0, 10.0, 0.0)


def test_accepts_keller_segel_params():
    models = pytest.importorskip("oncodyn.chemotaxis.models")
    ks = getattr(models, "KellerSegelParams", None)
    if ks is None:
        pytest.skip("KellerSegelParams not available")
    opts = replace(COARSE, t_end=0.05, dt=1e-2)
    a = solve_radial(ks(mass=10.0), opts)
    b = solve_radial(RadialParams(mass=10.0, mu=ks(mass=10.0).mu, chi=ks(mass=10.0).chi,
                                  eps=ks(mass=10.0).eps, k=ks(mass=10.0).k, dim=ks(mass=10.0).dim), opts)
    np.testing.assert_array_equal(a.rho, b.rho)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "field, value",
    [
        ("r_max", 0.0),
        ("n_r", 5),
        ("n_r", 100.5),
        ("dt", 0.0),
        ("t_end", -1.0),
        ("grid", "chebyshev"),
        ("h_min", 0.5),  # >= r_max / n_r = 0.1 for the graded default n_r = 200
        ("r0", 25.0),
        ("blowup_threshold", 1.0),
        ("collapse_fraction", 0.0),
        ("record_every", 0),
    ],
)
def test_bad_options_raise(field, value):
    with pytest.raises(ValueError, match=f"^{field}:"):
        replace(COARSE, **{field: value})


@pytest.mark.parametrize(
    "field, value",
    [("mass", 0.0), ("mu", -1.0), ("chi", -1.0), ("eps", -1.0), ("k", -0.1), ("dim", 4)],
)
def test_bad_params_raise(field, value):
    with pytest.raises(ValueError, match=f"^{field}:"):
        RadialParams(**{"mass": 1.0, field: value})


def test_elliptic_without_decay_is_whole_space():
    """eps = k = 0 is accepted: the whole-space case (free-space Gauss-law field), not a no-flux one."""
    p = RadialParams(mass=10.0, eps=0.0, k=0.0)
    res = solve_radial(p, replace(COARSE, t_end=0.1, dt=1e-2))
    assert not res.unstable
    np.testing.assert_allclose(res.mass, 10.0, rtol=1e-12)  # conservative SG step, as for eps > 0
    assert res.rho.min() >= 0.0
    # c is relative to the outermost cell and decreases outwards (attractant peaked at 0)
    assert res.c[-1] == 0.0 and np.all(np.diff(res.c) <= 0) and res.c_max[-1] > 0


def test_bad_initial_profile_shape():
    with pytest.raises(ValueError, match="^initial profile:"):
        solve_radial(RadialParams(mass=1.0), COARSE, rho0=np.ones(7))
