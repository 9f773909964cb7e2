"""Tests of the 2D/3D PHKS finite-volume reference (oncodyn.chemotaxis.phks_fdm).

Small grids (16^2..256^2, 12^3..20^3) and short runs keep the file at a few seconds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.fft import dctn, idctn

from oncodyn.chemotaxis.phks import BinGrid, Gaussian, InitialData, PHKSParams
from oncodyn.chemotaxis.phks_fdm import (
    PHKSFDM,
    SAFETY,
    FDMState,
    bernoulli_torch,
    flux_substep_reference,
    run_fdm,
)
from oncodyn.chemotaxis.radial import bernoulli


def _strong(dim: int, n: int = 16, amplitude: float = 40.0):
    """Box of side n (h = 1), c0 a narrow tall Gaussian off-centre: |P| up to ~15, several substeps."""
    L = float(n)
    params = PHKSParams(gamma=1.0, chi=1.0, mass=50.0, length=L, dim=dim)
    grid = BinGrid(n, L, dim)
    ini = InitialData(rho=Gaussian(((0.3 * L,) * dim, (0.7 * L,) + (0.4 * L,) * (dim - 1)), 2.0),
                      c=Gaussian(((0.55 * L,) * dim,), 1.6, amplitude=amplitude))
    return params, grid, ini


def _step_n(solver: PHKSFDM, state: FDMState, n: int) -> list[FDMState]:
    out = [state]
    for _ in range(n):
        out.append(solver.step(out[-1]))
    return out


# --------------------------------------------------------------------------- Bernoulli & substep kernel


def test_bernoulli_torch_matches_numpy():
    # |x| up to 700 (beyond, B(|x|) is subnormal and the torch form returns 0): a few ulps
    x = np.concatenate([-np.logspace(-300, np.log10(700), 500), [0.0], np.logspace(-300, np.log10(700), 500)])
    a = bernoulli(x)
    b = bernoulli_torch(torch.tensor(x)).numpy()
    assert np.all(np.isfinite(b))
    np.testing.assert_allclose(b, a, rtol=1e-15, atol=0)
    assert bernoulli_torch(torch.tensor([0.0], dtype=torch.float64)).item() == 1.0
    assert bernoulli_torch(torch.tensor([0.0], dtype=torch.float32)).item() == 1.0
    # overflow-free far out: B(-1e4) = 1e4 exactly up to rounding, B(1e4) = 0
    far = bernoulli_torch(torch.tensor([-1e4, 1e4])).numpy()
    assert far[0] == pytest.approx(1e4, rel=1e-15) and far[1] == 0.0


@pytest.mark.parametrize("dim", [2, 3])
def test_torch_substep_equals_numpy_reference(dim):
    rng = np.random.default_rng(dim)
    n = 12
    grid = BinGrid(n, 6.0, dim)  # h = 0.5
    params = PHKSParams(gamma=0.7, chi=1.3, length=6.0, dim=dim)
    solver = PHKSFDM(params, grid, dt=0.1)
    rho = rng.random(grid.shape)
    c = 8.0 * rng.random(grid.shape)  # |P| up to ~15: central and upwind regimes
    c[: n // 3] = 2.0                 # a flat slab: P = 0 exactly on its faces
    tau = 0.013
    got = solver.flux_substep(rho, c, tau).numpy()
    ref = flux_substep_reference(rho, c, params.gamma, params.chi, grid.h, tau)
    # same operator, different summation order: round-off of the O(1) terms only
    assert np.max(np.abs(got - ref)) <= 1e-13 * np.max(np.abs(rho))
    # and not trivially: the substep changed rho by O(1e-1)
    assert np.max(np.abs(ref - rho)) > 1e-2


# --------------------------------------------------------------------------- conservation & positivity


@pytest.mark.parametrize("dim,n_steps", [(2, 60), (3, 25)])
def test_mass_round_off_and_positivity_strong_chemotaxis(dim, n_steps):
    params, grid, ini = _strong(dim)
    solver = PHKSFDM(params, grid, dt=0.5)
    state = solver.init(ini.rho_on_grid(grid, params.mass), ini.c_on_grid(grid))
    m0 = solver.mass(state)
    assert m0 == pytest.approx(params.mass, rel=1e-13)
    m_first = solver.substeps(state)
    assert m_first >= 5  # strong drift: the step is split into several substeps
    states = _step_n(solver, state, n_steps)
    masses = np.array([solver.mass(s) for s in states])
    # every substep is a matrix with unit column sums: only round-off (~1e-16 per substep)
    assert np.max(np.abs(masses - m0)) / m0 < 1e-12
    for s in states:
        # all substep weights are >= 0, so no negative value even at round-off level
        assert float(s.rho.min()) >= 0.0 and float(s.c.min()) >= 0.0
    # and the dynamics is not trivial: the cells aggregate on the attractant (peak x8 in 2D,
    # x14 in 3D, before the consumed attractant lets them spread again)
    assert max(float(s.rho.max()) for s in states) > 5 * float(state.rho.max())
    assert solver.last_substeps >= 1


def test_substep_count_formula():
    params, grid, ini = _strong(3, n=12)
    solver = PHKSFDM(params, grid, dt=0.5)
    c = ini.c_on_grid(grid)
    state = solver.init(ini.rho_on_grid(grid, params.mass), c)
    # max over bins of the summed outflow rates gamma B(-/+P) / h^2, by plain numpy
    P = [params.chi * np.diff(c, axis=ax) / params.gamma for ax in range(3)]
    D = np.zeros(grid.shape)
    for ax, p in enumerate(P):
        up = [slice(None)] * 3
        dn = [slice(None)] * 3
        up[ax], dn[ax] = slice(0, -1), slice(1, None)
        D[tuple(up)] += bernoulli(-p)
        D[tuple(dn)] += bernoulli(p)
    rate = params.gamma / grid.h**2 * D.max()
    assert solver.substeps(state) == math.ceil(0.5 * rate / SAFETY)


# --------------------------------------------------------------------------- c update


def test_exp_c_update_is_c0_times_exp_of_summed_rho():
    params, grid, ini = _strong(2, n=16)
    solver = PHKSFDM(params, grid, dt=0.25)
    state = solver.init(ini.rho_on_grid(grid, params.mass), ini.c_on_grid(grid))
    states = _step_n(solver, state, 40)
    rho_sum = sum(s.rho.numpy() for s in states[:-1])  # rho_0 .. rho_{N-1}
    expected = state.c.numpy() * np.exp(-0.25 * rho_sum)
    # a product of 40 correctly rounded exps vs one exp of the sum: ~40 ulp
    np.testing.assert_allclose(states[-1].c.numpy(), expected, rtol=1e-13, atol=0)
    assert np.min(expected / state.c.numpy()) < 0.5  # the attractant was really consumed


def test_euler_c_update_is_the_source_rule():
    params, grid, ini = _strong(2, n=16)
    solver = PHKSFDM(params, grid, dt=0.25, c_update="euler")
    state = solver.init(ini.rho_on_grid(grid, params.mass), ini.c_on_grid(grid))
    new = solver.step(state)
    rho0, c0 = state.rho.numpy(), state.c.numpy()
    np.testing.assert_allclose(new.c.numpy(), c0 - 0.25 * c0 * rho0, rtol=1e-15, atol=1e-300)
    # the density part does not depend on the c rule
    exp_new = PHKSFDM(params, grid, dt=0.25).step(state)
    assert torch.equal(new.rho, exp_new.rho)


# --------------------------------------------------------------------------- pure diffusion


def test_chi_zero_is_the_discrete_heat_semigroup():
    """chi = 0: every substep is I + tau*gamma*Lap_h (Neumann), diagonal in the DCT-II basis."""
    n, L, gamma, dt, n_steps = 24, 6.0, 0.8, 0.05, 20
    params = PHKSParams(gamma=gamma, chi=0.0, length=L, dim=2)
    grid = BinGrid(n, L, 2)
    rng = np.random.default_rng(1)
    rho0 = np.exp(-np.sum((grid.centres() - [2.0, 3.5]) ** 2, axis=-1)) + 0.1 * rng.random(grid.shape)
    c0 = 50.0 * rng.random(grid.shape)  # irrelevant when chi = 0
    solver = PHKSFDM(params, grid, dt)
    state = solver.init(rho0, c0)
    m = solver.substeps(state)
    assert m == math.ceil(dt * 4 * gamma / grid.h**2 / SAFETY)
    final = _step_n(solver, state, n_steps)[-1].rho.numpy()

    k = np.arange(n)
    lam1 = 4.0 / grid.h**2 * np.sin(np.pi * k / (2 * n)) ** 2  # -eigenvalues of the 1D Neumann Laplacian
    lam = gamma * (lam1[:, None] + lam1[None, :])
    hat = dctn(rho0, type=2, norm="ortho")
    euler = idctn(hat * (1 - dt / m * lam) ** (m * n_steps), type=2, norm="ortho")
    exact = idctn(hat * np.exp(-dt * n_steps * lam), type=2, norm="ortho")
    # identical operator: round-off only
    assert np.max(np.abs(final - euler)) <= 1e-13 * np.max(rho0)
    # and a first-order-in-tau approximation of the exact semi-discrete heat flow
    err = np.max(np.abs(final - exact)) / np.max(np.abs(exact))
    assert err < 2e-2
    assert np.max(np.abs(final - rho0)) > 0.1 * np.max(rho0)


# --------------------------------------------------------------------------- convergence in h


def _block(a: np.ndarray, f: int) -> np.ndarray:
    n = a.shape[0] // f
    return a.reshape(n, f, n, f).mean(axis=(1, 3))


def test_second_order_in_h_2d():
    """Smooth data; errors vs the 256^2 solution restricted by block averaging.

    Measured: rho errors 2.4e-2, 4.6e-3, 9.0e-4 on 16^2, 32^2, 64^2 (ratios 5.2, 5.2: order
    ~2.3; the restriction of point values to block means adds its own O(h^2)). The bound
    1.8 leaves room, but excludes a first-order scheme (ratio 2) clearly.
    """
    L, T, dt = 10.0, 1.0, 0.01
    params = PHKSParams(gamma=1.0, chi=1.0, mass=10.0, length=L, dim=2)
    ini = InitialData(rho=Gaussian(((4.0, 5.5),), 1.0), c=Gaussian(((5.5, 4.5),), 1.5, amplitude=3.0))
    sol = {n: run_fdm(params, BinGrid(n, L, 2), ini, dt, T, save_times=(T,)).snapshots[T] for n in (16, 32, 64, 256)}
    errs = {}
    for n in (16, 32, 64):
        f = 256 // n
        ref = [_block(sol[256][i], f) for i in (0, 1)]
        errs[n] = [np.linalg.norm(sol[n][i] - ref[i]) / np.linalg.norm(ref[i]) for i in (0, 1)]
    for i in (0, 1):  # rho, c
        o1 = math.log2(errs[16][i] / errs[32][i])
        o2 = math.log2(errs[32][i] / errs[64][i])
        assert o1 > 1.8 and o2 > 1.8, (i, o1, o2)
    assert errs[64][0] < 2e-3 and errs[64][1] < 2e-3


# --------------------------------------------------------------------------- driver, state, validation


def test_run_fdm_series_snapshots_and_resume(tmp_path):
    params, grid, ini = _strong(2, n=16, amplitude=5.0)
    full = run_fdm(params, grid, ini, dt=0.2, t_end=2.0, save_times=(0.0, 1.0, 2.0))
    assert set(full.snapshots) == {0.0, 1.0, 2.0}
    np.testing.assert_array_equal(full.snapshots[2.0][0], full.state.rho.numpy())
    s = full.series
    assert len(s["t"]) == 11 and s["t"][-1] == pytest.approx(2.0)
    assert np.max(np.abs(s["mass"] - params.mass)) < 1e-12 * params.mass
    assert np.all(s["min_rho"] >= 0) and np.all(s["min_c"] >= 0)
    assert np.all(np.diff(s["c_total"]) < 0)  # the attractant is consumed
    assert full.info["wall_time"] > 0
    # interrupted at t = 1 with a checkpoint, resumed to t = 2: identical result
    path = str(tmp_path / "ckpt.npz")
    run_fdm(params, grid, ini, dt=0.2, t_end=1.0, save_times=(0.0, 1.0), checkpoint_path=path)
    resumed = run_fdm(params, grid, ini, dt=0.2, t_end=2.0, save_times=(0.0, 1.0, 2.0), checkpoint_path=path)
    assert resumed.info["resumed_from"] == 5
    assert torch.equal(resumed.state.rho, full.state.rho) and torch.equal(resumed.state.c, full.state.c)
    np.testing.assert_array_equal(resumed.series["mass"], full.series["mass"])
    np.testing.assert_array_equal(resumed.snapshots[1.0][1], full.snapshots[1.0][1])


def test_state_round_trip():
    params, grid, ini = _strong(2, n=8)
    solver = PHKSFDM(params, grid, dt=0.1)
    st = solver.step(solver.init(ini.rho_on_grid(grid, 1.0), ini.c_on_grid(grid)))
    back = FDMState.from_arrays(st.to_arrays())
    assert back.step == 1 and back.t == pytest.approx(0.1)
    assert torch.equal(back.rho, st.rho) and torch.equal(back.c, st.c)


def test_validation_errors_name_the_field():
    params = PHKSParams(length=10.0, dim=2)
    grid = BinGrid(8, 10.0, 2)
    with pytest.raises(ValueError, match="dt"):
        PHKSFDM(params, grid, dt=0.0)
    with pytest.raises(ValueError, match="grid.dim"):
        PHKSFDM(params, BinGrid(8, 10.0, 3), dt=0.1)
    with pytest.raises(ValueError, match="grid.length"):
        PHKSFDM(params, BinGrid(8, 12.0, 2), dt=0.1)
    with pytest.raises(ValueError, match="c_update.*'exp', 'euler'"):
        PHKSFDM(params, grid, dt=0.1, c_update="rk4")
    with pytest.raises(ValueError, match="device"):
        PHKSFDM(params, grid, dt=0.1, device="tpu")
    solver = PHKSFDM(params, grid, dt=0.1)
    with pytest.raises(ValueError, match=r"rho0 \(shape\)"):
        solver.init(np.ones((8, 9)), np.ones((8, 8)))
    with pytest.raises(ValueError, match="c0.*>= 0"):
        solver.init(np.ones((8, 8)), -np.ones((8, 8)))
    ini = InitialData(rho=Gaussian(((5.0, 5.0),), 1.0), c=Gaussian(((5.0, 5.0),), 2.0))
    with pytest.raises(ValueError, match="t_end.*multiple of dt"):
        run_fdm(params, grid, ini, dt=0.3, t_end=1.0)
    with pytest.raises(ValueError, match="save_times"):
        run_fdm(params, grid, ini, dt=0.25, t_end=1.0, save_times=(0.3,))
    with pytest.raises(ValueError, match="save_times"):
        run_fdm(params, grid, ini, dt=0.25, t_end=1.0, save_times=(1.5,))


@pytest.mark.parametrize("amplitude,dt,parity", [(5.0, 0.3, 0), (40.0, 0.5, 1)])  # m = 2 and m = 9
@pytest.mark.parametrize("c_update", ["exp", "euler"])
def test_inplace_steps_equal_immutable_steps(amplitude, dt, parity, c_update):
    """The recycled-buffer path gives bit-identical states, for both parities of the ping-pong."""
    params, grid, ini = _strong(2, n=16, amplitude=amplitude)
    a = PHKSFDM(params, grid, dt=dt, c_update=c_update)
    b = PHKSFDM(params, grid, dt=dt, c_update=c_update, inplace=True)
    sa = a.init(ini.rho_on_grid(grid, 1.0), ini.c_on_grid(grid))
    sb = b.init(ini.rho_on_grid(grid, 1.0), ini.c_on_grid(grid))
    first = sa
    for k in range(5):
        sa, sb = a.step(sa), b.step(sb)
        if k == 0:  # m of the first step depends on c0 only
            assert a.last_substeps % 2 == parity
        assert torch.equal(sa.rho, sb.rho) and torch.equal(sa.c, sb.c) and sa.step == sb.step
    assert first.step == 0 and torch.equal(first.rho, torch.as_tensor(ini.rho_on_grid(grid, 1.0)))  # untouched
