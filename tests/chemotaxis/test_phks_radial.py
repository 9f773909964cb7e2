"""Tests of the radial PHKS solver and the radial-to-grid reconstruction (oncodyn.chemotaxis.phks_radial).

1D runs are milliseconds; the one 3D comparison uses 20^3 and 40^3 bins (about 0.3 s).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from oncodyn.chemotaxis.phks import BinGrid, Gaussian, InitialData, PHKSParams
from oncodyn.chemotaxis.phks_fdm import run_fdm
from oncodyn.chemotaxis.phks_radial import radial_to_grid, solve_phks_radial


def _gauss(sigma: float, amplitude: float = 1.0):
    return lambda r: amplitude * np.exp(-(r**2) / (2 * sigma**2))


# --------------------------------------------------------------------------- conservation, positivity, c rule


@pytest.mark.parametrize("dim", [2, 3])
def test_mass_round_off_positivity_and_exact_c(dim):
    # strong chemotaxis (c amplitude 30 over sigma 2: |P| up to ~10 per cell) and a large dt
    res = solve_phks_radial(1.0, 1.0, 20.0, 200, _gauss(3.0), _gauss(2.0, 30.0), t_end=20.0, dt=0.5,
                            dim=dim, mass=40.0)
    assert res.rho.shape == (41, 200) and res.c.shape == (41, 200) and res.t[-1] == pytest.approx(20.0)
    assert res.mass[0] == pytest.approx(40.0, rel=1e-14)  # rescaled to the requested mass
    # M-matrix with column sums V/dt: mass conserved to round-off
    assert np.max(np.abs(res.mass - 40.0)) / 40.0 < 1e-12
    # the exact solution of the linear system is >= 0; LAPACK can only miss by ulps of max rho
    assert res.rho.min() >= -1e-14 * res.rho.max()
    assert res.c.min() >= 0.0
    # aggregation really happened (peak density at the origin grew)
    assert res.rho[:, 0].max() > 5 * res.rho[0, 0]
    # c_N = c_0 exp(-dt sum_{n<N} rho_n), to a few ulps per step
    expected = res.c[0] * np.exp(-res.dt * res.rho[:-1].sum(axis=0))
    np.testing.assert_allclose(res.c[-1], expected, rtol=1e-13, atol=0)


def test_save_times_and_array_input():
    n_r = 50
    rho0 = np.linspace(1.0, 0.0, n_r)
    c0 = np.full(n_r, 2.0)
    res = solve_phks_radial(1.0, 0.5, 10.0, n_r, rho0, c0, t_end=1.0, dt=0.1, save_times=(0.0, 0.5, 1.0))
    np.testing.assert_allclose(res.t, [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(res.rho[0], rho0)  # arrays are used as given (no mass given)
    assert res.r.shape == (n_r,) and res.volumes.shape == (n_r,)
    assert res.volumes.sum() == pytest.approx(4 / 3 * math.pi * 10.0**3, rel=1e-12)
    assert res.n_steps == 10


def test_chi_zero_is_radial_heat_flow():
    """chi = 0, 3D: a Gaussian of variance s^2 spreads to variance s^2 + 2 gamma t (free space;
    the wall at R = 30 is 10 standard deviations away). Errors: O(dt) (implicit Euler,
    dt = 1e-3) and O(dr^2) (dr = 0.05), both ~1e-4 relative."""
    gamma, s2, t = 0.7, 4.0, 1.0
    res = solve_phks_radial(gamma, 0.0, 30.0, 600, _gauss(2.0), _gauss(1.0, 3.0), t_end=t, dt=1e-3,
                            save_times=(t,), mass=1.0)
    v = s2 + 2 * gamma * t
    exact = np.exp(-res.r**2 / (2 * v)) / (2 * math.pi * v) ** 1.5
    assert np.max(np.abs(res.rho[-1] - exact)) / exact.max() < 1e-3


# --------------------------------------------------------------------------- convergence in n_r


def _restrict(fine: np.ndarray, v_fine: np.ndarray, f: int) -> np.ndarray:
    """Volume-weighted block averages (the exact restriction of cell averages)."""
    return (fine * v_fine).reshape(-1, f).sum(axis=1) / v_fine.reshape(-1, f).sum(axis=1)


def test_second_order_in_n_r():
    """Same dt for all grids (time error common to leading order); errors vs n_r = 1280.

    Measured max errors for n_r = 40, 80, 160: rho 8.1e-3, 2.0e-3, 5.1e-4; c 4.3e-3, 1.1e-3,
    2.8e-4 (order 2.0 for both). Bound 1.8.
    """
    kw = {"gamma": 1.0, "chi": 1.0, "r_max": 20.0, "rho0": _gauss(2.0), "c0": _gauss(3.0, 5.0),
          "t_end": 2.0, "dt": 0.01, "save_times": (2.0,), "mass": 100.0}
    sol = {n: solve_phks_radial(n_r=n, **kw) for n in (40, 80, 160, 1280)}
    ref = sol[1280]
    err = {}
    for n in (40, 80, 160):
        f = 1280 // n
        r_rho = _restrict(ref.rho[-1], ref.volumes, f)
        r_c = _restrict(ref.c[-1], ref.volumes, f)
        err[n] = (np.max(np.abs(sol[n].rho[-1] - r_rho)) / r_rho.max(), np.max(np.abs(sol[n].c[-1] - r_c)) / r_c.max())
    for i in (0, 1):
        assert math.log2(err[40][i] / err[80][i]) > 1.8
        assert math.log2(err[80][i] / err[160][i]) > 1.8
    assert err[160][0] < 1e-3


# --------------------------------------------------------------------------- radial vs 3D FDM


def test_radial_matches_3d_fdm():
    """Radially symmetric data centred in the box [0, 40]^3: rho Gaussian sigma 4 with mass 500
    (peak ~1, so c is consumed by ~40 % at the centre by t = 2), c Gaussian sigma 6 amplitude 5.

    The radial solution (R = 36 > the half-diagonal, dr = 0.05) is the reference; the cube's
    walls are 5 sigma away, so the domains agree up to ~1e-5. Measured relative L2 errors of
    the 3D solution at t = 2 (dt = 0.02): rho 6.7e-3 (20^3), 1.2e-3 (40^3); c 4.6e-4, 7.6e-5:
    the O(h^2) error of the FDM. Bounds: 40^3 within 3e-3 (rho) and 3e-4 (c), and the
    20^3 -> 40^3 reduction at least 3x (second order would be 4x; first order 2x).
    """
    L, M, dt, T = 40.0, 500.0, 0.02, 2.0
    centre = (20.0, 20.0, 20.0)
    rad = solve_phks_radial(1.0, 1.0, 36.0, 720, _gauss(4.0), _gauss(6.0, 5.0), T, dt, save_times=(0.0, T), mass=M)
    params = PHKSParams(gamma=1.0, chi=1.0, mass=M, length=L, dim=3)
    ini = InitialData(rho=Gaussian((centre,), 4.0), c=Gaussian((centre,), 6.0, amplitude=5.0))
    errs = {}
    for n in (20, 40):
        grid = BinGrid(n, L, 3)
        rho_f, c_f = run_fdm(params, grid, ini, dt, T, save_times=(T,)).snapshots[T]
        rho_r = radial_to_grid(rad.r, rad.rho[-1], grid, centre)
        c_r = radial_to_grid(rad.r, rad.c[-1], grid, centre)
        errs[n] = (np.linalg.norm(rho_f - rho_r) / np.linalg.norm(rho_r),
                   np.linalg.norm(c_f - c_r) / np.linalg.norm(c_r))
        if n == 40:
            # the test is not vacuous: both fields changed by far more than the error
            rho0 = radial_to_grid(rad.r, rad.rho[0], grid, centre)
            assert np.linalg.norm(rho_r - rho0) / np.linalg.norm(rho_r) > 0.05
            assert np.linalg.norm(c_r - ini.c_on_grid(grid)) / np.linalg.norm(c_r) > 0.3
            # the line through the centre along x agrees pointwise too
            line_f, line_r = rho_f[:, n // 2, n // 2], rho_r[:, n // 2, n // 2]
            assert np.max(np.abs(line_f - line_r)) < 5e-3 * line_r.max()
    assert errs[40][0] < 3e-3 and errs[40][1] < 3e-4
    assert errs[20][0] / errs[40][0] > 3 and errs[20][1] / errs[40][1] > 3


# --------------------------------------------------------------------------- radial_to_grid


def test_radial_to_grid_interpolates_linearly_in_distance():
    grid = BinGrid(10, 10.0, 3)
    centre = (4.0, 5.0, 6.0)
    r = np.linspace(0.5, 6.0, 12)
    out = radial_to_grid(r, 2.0 * r + 1.0, grid, centre)  # linear profile: exact inside [r0, r_last]
    dist = np.linalg.norm(grid.centres() - np.asarray(centre), axis=-1)
    inside = (dist >= r[0]) & (dist <= r[-1])
    np.testing.assert_allclose(out[inside], 2.0 * dist[inside] + 1.0, rtol=1e-14)
    assert np.all(out[dist > r[-1]] == 13.0) and np.all(out[dist < r[0]] == 2.0)
    grid2 = BinGrid(8, 4.0, 2)
    assert radial_to_grid(r, np.full(12, 3.5), grid2, (2.0, 2.0)).shape == (8, 8)


# --------------------------------------------------------------------------- validation


def test_validation_errors_name_the_field():
    ok = {"gamma": 1.0, "chi": 1.0, "r_max": 10.0, "n_r": 20, "rho0": _gauss(1.0), "c0": _gauss(2.0),
          "t_end": 1.0, "dt": 0.1}
    for field, bad, pattern in [("gamma", 0.0, "gamma"), ("chi", -1.0, "chi"), ("n_r", 2, "n_r"),
                                ("dt", -0.1, "dt"), ("t_end", 1.05, "t_end.*multiple of dt"),
                                ("rho0", np.ones(7), r"rho0 \(shape\)"), ("c0", -np.ones(20), "c0.*>= 0")]:
        with pytest.raises(ValueError, match=pattern):
            solve_phks_radial(**{**ok, field: bad})
    with pytest.raises(ValueError, match="dim"):
        solve_phks_radial(**ok, dim=1)
    with pytest.raises(ValueError, match="mass"):
        solve_phks_radial(**ok, mass=0.0)
    with pytest.raises(ValueError, match="save_times"):
        solve_phks_radial(**ok, save_times=(0.25,))
    with pytest.raises(ValueError, match=r"center \(shape\)"):
        radial_to_grid(np.arange(1.0, 4.0), np.ones(3), BinGrid(8, 4.0, 3), (1.0, 1.0))
