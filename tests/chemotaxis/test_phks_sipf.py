"""PHKS particle--field solver: deposition, sparse == dense, positivity, reflection, diffusion, resume."""

import numpy as np
import pytest

from oncodyn.chemotaxis.phks import Annuli, BinGrid, Gaussian, InitialData, PHKSParams
from oncodyn.chemotaxis.phks_sipf import (
    ParticleFieldOptions,
    ParticleFieldSolver,
    ParticleFieldState,
    deposit,
    deposit_sparse,
    reflect,
    simulate_particles,
)
from oncodyn.core.rng import BrownianPath


def small_problem(rng, dim=3, n=10, L=10.0, P=500, chi=5.0):
    params = PHKSParams(gamma=0.5, chi=chi, mass=2.0, length=L, dim=dim)
    grid = BinGrid(n, L, dim)
    x0 = rng.normal(L / 2, L / 8, (P, dim)).clip(0, L)
    c0 = Gaussian(((L / 2,) * dim,), L / 4, amplitude=3.0)(grid.centres())
    return params, grid, x0, c0


@pytest.mark.parametrize("dim", [2, 3])
def test_deposit_conserves_mass_and_sparse_matches_dense(rng, dim):
    grid = BinGrid(7, 3.5, dim)
    x = rng.uniform(0, 3.5, (1000, dim))
    x[:5] = 3.5  # on the far wall: the last bin
    rho = deposit(grid, x, 2.5)
    assert rho.shape == grid.shape and np.all(rho >= 0)
    assert abs(rho.sum() * grid.bin_volume - 2.5) < 1e-13
    bins, rs = deposit_sparse(grid, x, 2.5)
    assert np.all(np.diff(bins) > 0)
    np.testing.assert_array_equal(rho.ravel()[bins], rs)
    assert np.count_nonzero(rho) == bins.size
    assert abs(rs.sum() * grid.bin_volume - 2.5) < 1e-13


def test_reflect_folds_any_jump_into_the_box():
    L = 2.0
    x = np.array([-0.3, 2.2, 6.1, -4.5, 0.0, 2.0, 4.0, -1e-18, 1e9 + 0.25])
    np.testing.assert_allclose(reflect(x, L), [0.3, 1.8, 1.9, 0.5, 0.0, 2.0, 0.0, 0.0, 0.25], atol=1e-12)
    y = reflect(np.random.default_rng(0).normal(0, 50, (1000, 3)), L)
    assert np.all((y >= 0) & (y <= L))


@pytest.mark.parametrize("c_update", ["euler", "exp"])
@pytest.mark.parametrize("interp", ["local-cubic", "spline"])
def test_sparse_and_dense_steps_identical(rng, c_update, interp):
    params, grid, x0, c0 = small_problem(rng)
    path = BrownianPath(3, 500, 3, 0.05)
    states = []
    for sparse in (True, False):
        s = ParticleFieldSolver(params, grid, ParticleFieldOptions(0.05, 500, interp, c_update, sparse=sparse))
        st = s.init(x0, c0)
        for k in range(4):
            st = s.step(st, path.increment(k, 0.05))
        states.append(st)
    a, b = states
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.c, b.c)
    assert a.step == b.step == 4 and a.t == pytest.approx(0.2)
    assert not np.array_equal(a.c, c0)  # c was consumed


def test_step_follows_the_algorithm(rng):
    """One step by hand: gradient of the pre-update c, Euler c-update, EM move, reflection."""
    from oncodyn.chemotaxis.interpolate import catmull_rom_gradient

    params, grid, x0, c0 = small_problem(rng, dim=2)
    s = ParticleFieldSolver(params, grid, ParticleFieldOptions(0.1, 500, in_place=False))
    st = s.init(x0, c0)
    noise = 0.3 * rng.standard_normal((500, 2))
    new = s.step(st, noise)
    rho = deposit(grid, x0, params.mass)
    np.testing.assert_allclose(new.c, c0 - 0.1 * c0 * rho, rtol=0, atol=1e-14)
    x = x0 + params.chi * 0.1 * catmull_rom_gradient(c0, grid.h, x0) + np.sqrt(2 * params.gamma) * noise
    np.testing.assert_allclose(new.x, reflect(x, params.length), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(st.c, c0)  # in_place=False leaves the input alone


def test_exp_update_stays_positive_where_euler_fails():
    """dt * rho > 1: the source's explicit Euler drives c negative, the exponential update cannot."""
    params = PHKSParams(gamma=1.0, chi=0.0, mass=1.0, length=4.0, dim=2)
    grid = BinGrid(4, 4.0, 2)  # h = 1: all mass in one bin -> rho = 1
    x0 = np.full((100, 2), 1.5)
    c0 = np.ones(grid.shape)
    out = {}
    for upd in ("euler", "exp"):
        s = ParticleFieldSolver(params, grid, ParticleFieldOptions(2.0, 100, c_update=upd))
        out[upd] = s.step(s.init(x0, c0), np.zeros((100, 2))).c
    assert out["euler"][1, 1] == pytest.approx(-1.0)  # 1 - dt * rho = 1 - 2
    assert out["exp"][1, 1] == pytest.approx(np.exp(-2.0))
    assert out["exp"].min() > 0


def test_particles_stay_in_box_under_large_jumps(rng):
    params = PHKSParams(gamma=50.0, chi=1.0, mass=1.0, length=5.0, dim=3)
    grid = BinGrid(5, 5.0, 3)
    s = ParticleFieldSolver(params, grid, ParticleFieldOptions(1.0, 300))
    st = s.init(rng.uniform(0, 5, (300, 3)), np.ones(grid.shape))
    for k in range(3):
        st = s.step(st, rng.standard_normal((300, 3)))  # jumps of ~10 L
        assert np.all((st.x >= 0) & (st.x <= 5.0))


def test_pure_diffusion_variance_grows_as_2_gamma_t():
    """chi = 0, walls far away: per-axis variance 2 gamma t. P = 20000 -> relative sd of the
    sample variance sqrt(2/P) = 1%; tolerance 5% (5 sd)."""
    P, gamma, T = 20_000, 0.5, 2.0
    params = PHKSParams(gamma=gamma, chi=0.0, mass=1.0, length=100.0, dim=3)
    grid = BinGrid(8, 100.0, 3)
    init = InitialData(Gaussian(((50.0,) * 3,), 1.0))
    r = simulate_particles(params, grid, init, ParticleFieldOptions(0.25, P), T, seed=4,
                           x0=np.full((P, 3), 50.0), diag_every=8)
    var = r.state.x.var(axis=0)
    np.testing.assert_allclose(var, 2 * gamma * T, rtol=0.05)
    assert np.all(np.abs(r.state.x.mean(axis=0) - 50.0) < 5 * np.sqrt(2 * gamma * T / P))


def test_simulate_series_snapshots_and_interpolator_override(rng):
    params = PHKSParams(gamma=1.0, chi=2.0, mass=1.5, length=20.0, dim=3)
    grid = BinGrid(10, 20.0, 3)
    init = InitialData(Gaussian(((10.0, 10.0, 10.0),), 3.0), Annuli((10.0, 10.0, 10.0), (5.0,), 1.5, 2.0))
    opts = ParticleFieldOptions(0.1, 800, c_update="exp")
    r = simulate_particles(params, grid, init, opts, 1.0, seed=1, save_times=(0.0, 0.5, 1.0), diag_every=1)
    assert sorted(r.particles) == sorted(r.c) == [0.0, 0.5, 1.0]
    assert r.particles[1.0].shape == (800, 3) and r.c[0.5].shape == grid.shape
    np.testing.assert_array_equal(r.particles[1.0], r.state.x)
    np.testing.assert_allclose(r.c[0.0], init.c_on_grid(grid))
    s = r.series
    assert len(s["t"]) == 11 and s["t"][-1] == pytest.approx(1.0)
    np.testing.assert_allclose(s["mass"], 1.5, rtol=1e-13)
    assert np.all(np.diff(s["c_total"]) <= 0) and np.all(s["min_c"] >= 0)
    assert r.info["wall_time"] > 0

    class ZeroGrad:
        name = "zero"

        def gradient(self, field, h, x):
            return np.zeros_like(x)

    a = simulate_particles(params, grid, init, opts, 0.3, seed=1, interpolator=ZeroGrad())
    b = simulate_particles(PHKSParams(1.0, 0.0, 1.5, 20.0, 3), grid, init, opts, 0.3, seed=1)
    np.testing.assert_array_equal(a.state.x, b.state.x)
    assert a.solver.interpolator.name == "zero"


def test_resume_from_checkpoint_is_exact(tmp_path):
    params = PHKSParams(gamma=1.0, chi=3.0, mass=1.0, length=20.0, dim=2)
    grid = BinGrid(16, 20.0, 2)
    init = InitialData(Gaussian(((8.0, 12.0),), 2.0), Gaussian(((10.0, 10.0),), 4.0, amplitude=2.0))
    opts = ParticleFieldOptions(0.1, 400)
    full = simulate_particles(params, grid, init, opts, 1.2, seed=7, save_times=(0.4, 1.2), diag_every=1)
    ck = str(tmp_path / "run.npz")

    class Crash(BrownianPath):
        """The same path, but the process 'dies' while computing step 7 (after the step-6 checkpoint)."""

        def increment(self, step, dt):
            if step == 7:
                raise KeyboardInterrupt
            return super().increment(step, dt)

    with pytest.raises(KeyboardInterrupt):
        simulate_particles(params, grid, init, opts, 1.2, seed=7, save_times=(0.4, 1.2), checkpoint_path=ck,
                           checkpoint_every=3, brownian=Crash(7, 400, 2, 0.1), diag_every=1)
    rest = simulate_particles(params, grid, init, opts, 1.2, seed=7, save_times=(0.4, 1.2), checkpoint_path=ck,
                              checkpoint_every=3, diag_every=1)
    assert rest.info["resumed_from"] == 6
    np.testing.assert_array_equal(rest.state.x, full.state.x)
    np.testing.assert_array_equal(rest.state.c, full.state.c)
    for k in full.series:
        np.testing.assert_array_equal(rest.series[k], full.series[k])
    for t in (0.4, 1.2):
        np.testing.assert_array_equal(rest.particles[t], full.particles[t])
        np.testing.assert_array_equal(rest.c[t], full.c[t])


def test_state_roundtrip(rng):
    st = ParticleFieldState(rng.uniform(size=(5, 2)), rng.uniform(size=(4, 4)), 0.3, 3)
    back = ParticleFieldState.from_arrays(st.to_arrays())
    np.testing.assert_array_equal(back.x, st.x)
    np.testing.assert_array_equal(back.c, st.c)
    assert (back.t, back.step) == (0.3, 3)


def test_validation_errors(rng):
    params, grid, x0, c0 = small_problem(rng, dim=3)
    with pytest.raises(ValueError, match="dt"):
        ParticleFieldOptions(0.0)
    with pytest.raises(ValueError, match="c_update"):
        ParticleFieldOptions(0.1, c_update="rk4")
    with pytest.raises(ValueError, match="n_particles"):
        ParticleFieldOptions(0.1, 0)
    with pytest.raises(ValueError, match="local-cubic"):
        ParticleFieldSolver(params, grid, ParticleFieldOptions(0.1, 500, interpolator="nope"))
    with pytest.raises(ValueError, match="grid.dim"):
        ParticleFieldSolver(params, BinGrid(10, 10.0, 2), ParticleFieldOptions(0.1, 500))
    with pytest.raises(ValueError, match="grid.length"):
        ParticleFieldSolver(params, BinGrid(10, 11.0, 3), ParticleFieldOptions(0.1, 500))
    s = ParticleFieldSolver(params, grid, ParticleFieldOptions(0.1, 500))
    with pytest.raises(ValueError, match="x0"):
        s.init(x0[:10], c0)
    bad = x0.copy()
    bad[0, 0] = -1.0
    with pytest.raises(ValueError, match="inside the box"):
        s.init(bad, c0)
    with pytest.raises(ValueError, match="c0"):
        s.init(x0, c0[:5])
    with pytest.raises(ValueError, match="noise"):
        s.step(s.init(x0, c0), np.zeros((500, 2)))
    init = InitialData(Gaussian(((5.0,) * 3,), 1.0))
    with pytest.raises(ValueError, match="t_end"):
        simulate_particles(params, grid, init, ParticleFieldOptions(0.1, 500), 0.25)
    with pytest.raises(ValueError, match="save_times"):
        simulate_particles(params, grid, init, ParticleFieldOptions(0.1, 500), 0.2, save_times=(0.3,))
