"""The particle reference of whole-space Keller--Segel: conservation laws, moments, resume, KDE."""

import math

import numpy as np
import pytest

from oncodyn.chemotaxis import interaction
from oncodyn.core.rng import BrownianPath
from oncodyn.core.runloop import run
from oncodyn.deeplagrangian import model
from oncodyn.deeplagrangian.model import KSWholeSpace
from oncodyn.deeplagrangian.particles import (ParticleOptions, ParticleSolver, kde_density, kde_max_density,
                                              simulate_particles)
from oncodyn.deeplagrangian.velocity import CellularFlow, ConstantAdvection


def _opts(**kw):
    base = dict(n_particles=400, dt=1e-3, t_end=0.02, delta=0.05, seed=5, diag_every=1, max_density=False)
    return ParticleOptions(**{**base, **kw})


def _brownian_mean(o: ParticleOptions, dim: int, n: int) -> np.ndarray:
    """(1/P) sum_p W_p(t_n), ``[d]``, of the path simulate_particles uses."""
    path = BrownianPath(o.seed, o.n_particles, dim, o.dt)
    return sum(path.increment(k, o.dt) for k in range(n)).mean(axis=0)


def test_interaction_alone_conserves_the_centre(rng):
    """Without noise and advection the pair forces are antisymmetric: the centre stays to round-off."""
    m, o = KSWholeSpace(mu=1.0, chi=1.0, mass=40 * math.pi, dim=3), _opts(n_particles=300)
    solver = ParticleSolver(m, o)
    x0 = rng.standard_normal((300, 3)) + 2.0
    state, _ = run(solver, solver.init(x0), 30, lambda n: np.zeros((300, 3)), progress=False)
    assert np.mean(np.linalg.norm(state.x - x0, axis=1)) > 0.03  # the particles did move
    assert np.max(np.abs(state.x.mean(0) - x0.mean(0))) < 1e-13


def test_centre_is_the_mean_brownian_path(rng):
    """With noise, com(t) - com(0) = sqrt(2 mu) (1/P) sum_p W_p(t) exactly (round-off), and its
    increments over dt are N(0, 2 mu dt / P) per component."""
    m = KSWholeSpace(mu=0.7, chi=1.0, mass=4 * math.pi, dim=2)
    o = _opts(n_particles=500, t_end=0.4, record_times=(0.4,))
    x0 = rng.standard_normal((500, 2))
    r = simulate_particles(m, o, None, x0)
    drift = r.x.mean(0) - x0.mean(0)
    assert np.max(np.abs(drift - math.sqrt(2 * m.mu) * _brownian_mean(o, 2, 400))) < 1e-12
    inc = np.diff(np.stack([r.series["com_x"], r.series["com_y"]]), axis=1).ravel()  # 800 samples
    ratio = inc.var() / (2 * m.mu * o.dt / o.n_particles)
    assert abs(ratio - 1) < 5 * math.sqrt(2 / inc.size)  # 5 standard errors of a sample variance
    assert abs(inc.mean()) < 5 * math.sqrt(2 * m.mu * o.dt / o.n_particles / inc.size)


def test_constant_advection_moves_the_centre_by_ct(rng):
    m = KSWholeSpace(mu=0.5, chi=2.0, mass=1.0, dim=3)
    o = _opts(t_end=0.05)
    x0 = rng.standard_normal((400, 3))
    c = np.array([1.0, -2.0, 0.5])
    r = simulate_particles(m, o, ConstantAdvection(tuple(c)), x0)
    moved = r.x.mean(0) - x0.mean(0) - math.sqrt(2 * m.mu) * _brownian_mean(o, 3, 50)
    assert np.max(np.abs(moved - c * 0.05)) < 1e-12


def test_particles_and_mass_are_conserved(rng):
    """A super-critical 2D run (chi M = 2 x 8 pi mu) with a small delta: P and the weights M/P never
    change, and every particle stays finite."""
    m = KSWholeSpace(mu=1.0, chi=1.0, mass=16 * math.pi, dim=2)
    o = _opts(n_particles=600, t_end=0.1, delta=0.01, diag_every=5, record_times=(0.0, 0.05, 0.1))
    r = simulate_particles(m, o, None, 0.5 * rng.standard_normal((600, 2)))
    assert r.info["stopped"] is None and r.t == pytest.approx(0.1)
    assert np.array_equal(r.times, [0.0, 0.05, 0.1])
    assert r.snapshots.shape == (3, 600, 2) and np.all(np.isfinite(r.snapshots))
    assert np.all(r.series["mass"] == m.mass)  # M times the fraction of finite particles
    assert len(r.series["t"]) == 21
    assert r.series["variance"][-1] < 0.5 * r.series["variance"][0]  # it does collapse


def test_pure_diffusion_variance(rng):
    """chi = 0, x0 ~ N(m, s^2 I): the sample variance per coordinate at t is s^2 + 2 mu t, within
    5 standard errors (the sample variance of n normal values has relative SE sqrt(2/n))."""
    m = KSWholeSpace(mu=0.8, chi=0.0, mass=1.0, dim=2)
    o = _opts(n_particles=20_000, t_end=0.25, dt=0.01, diag_every=5, record_times=(0.25,))
    s = 0.6
    x0 = np.array([1.0, -1.0]) + s * rng.standard_normal((20_000, 2))
    r = simulate_particles(m, o, None, x0)
    x = r.snapshots[-1]
    var = np.concatenate([x[:, 0] - x[:, 0].mean(), x[:, 1] - x[:, 1].mean()]).var()
    assert abs(var / (s**2 + 2 * m.mu * 0.25) - 1) < 5 * math.sqrt(2 / x.size)


def test_second_moment_slope_2d(rng):
    r"""2D, v = 0, chi M sub-critical: d/dt E|X|^2 = 4 mu - chi M/(2 pi) (1 - 1/P)(1 - b_delta),
    b_delta = E[delta^2 / (r^2 + delta^2)] over pairs (the mollifier's bias, 0.2 % here).

    The raw slope scatters by the noise 2 X . sqrt(2 mu) dW: its standard error, estimated from
    the per-particle increments of |X|^2, allows 5 of them. The same run with chi = 0 (same x0,
    same Brownian path) carries almost the same noise, so the difference of the two slopes is
    -chi M / (2 pi) up to the coupling of drift and noise: 3 % (measured scatter ~0.5 %).
    """
    P, T, delta = 2000, 0.05, 0.05
    x0 = rng.standard_normal((P, 2))
    o = _opts(n_particles=P, t_end=T, delta=delta, record_times=(0.0, T))
    runs = {chi: simulate_particles(KSWholeSpace(1.0, chi, 4 * math.pi, 2), o, None, x0) for chi in (0.0, 1.0)}
    r = runs[1.0]
    dx2 = np.sum(r.snapshots[1] ** 2, 1) - np.sum(r.snapshots[0] ** 2, 1)
    slope, se = dx2.mean() / T, dx2.std() / math.sqrt(P) / T
    r2 = np.sum((x0[:, None] - x0[None]) ** 2, -1)[np.triu_indices(P, 1)]
    b = np.mean(delta**2 / (r2 + delta**2))
    expect_interaction = -4 * math.pi / (2 * math.pi) * (1 - 1 / P) * (1 - b)
    assert abs(slope - (4.0 + expect_interaction)) < 5 * se
    slopes = {chi: np.polyfit(run.series["t"], run.series["second_moment"], 1)[0] for chi, run in runs.items()}
    assert slopes[1.0] - slopes[0.0] == pytest.approx(expect_interaction, rel=0.03)


def test_resume_is_bit_identical(tmp_path, rng):
    m = KSWholeSpace(mu=0.5, chi=2.0, mass=3.0, dim=2)
    x0 = rng.standard_normal((300, 2))
    flow = CellularFlow(2, 1.5, 2.0)
    kw = dict(n_particles=300, diag_every=3, checkpoint_every=5)
    full = simulate_particles(m, _opts(**kw, t_end=0.03, record_times=(0.005, 0.01, 0.03)), flow, x0)
    ck = str(tmp_path / "ck.npz")
    part = simulate_particles(m, _opts(**kw, t_end=0.012, record_times=(0.005, 0.01)), flow, x0,
                              checkpoint_path=ck)
    assert part.info["steps_run"] == 12  # saved at steps 5, 10 and at the end, 12
    resumed = simulate_particles(m, _opts(**kw, t_end=0.03, record_times=(0.005, 0.01, 0.03)), flow, x0,
                                 checkpoint_path=ck)
    assert resumed.info["resumed_from"] == 12 and resumed.info["steps_run"] == 18
    assert np.array_equal(resumed.x, full.x)
    assert np.array_equal(resumed.times, full.times) and np.array_equal(resumed.snapshots, full.snapshots)
    assert resumed.series.keys() == full.series.keys()
    assert all(np.array_equal(resumed.series[k], full.series[k]) for k in full.series)
    with pytest.raises(ValueError, match="checkpoint_path"):  # a different run refuses the checkpoint
        simulate_particles(m, _opts(**kw, t_end=0.03, seed=6), flow, x0, checkpoint_path=ck)


def test_max_density_at_record_times(rng):
    m = KSWholeSpace(mu=1.0, chi=0.0, mass=1.0, dim=2)
    o = _opts(n_particles=5000, t_end=0.01, dt=0.01, record_times=(0.0, 0.01), max_density=True)
    r = simulate_particles(m, o, None, rng.standard_normal((5000, 2)))
    assert r.max_density.shape == (2,)
    assert r.max_density[0] == pytest.approx(1 / (2 * math.pi), rel=0.15)
    assert r.max_density[1] == pytest.approx(1 / (2 * math.pi * 1.02), rel=0.15)


@pytest.mark.parametrize("dim,max_samples", [(2, 50_000), (3, 100_000)])
def test_kde_max_density_of_a_gaussian(rng, dim, max_samples):
    """Within 10 % of (2 pi s^2)^(-d/2) at P = 1e5: Scott's rule smooths the peak by -3 % (2D),
    -4 % (3D, all samples); the sampling scatter is 1.5-2 %."""
    s = 0.5
    x = 1.0 + s * rng.standard_normal((100_000, dim))
    est = kde_max_density(x, max_samples=max_samples, rng=rng)
    assert est == pytest.approx((2 * math.pi * s**2) ** (-dim / 2), rel=0.10)


def test_kde_density_integrates_to_one(rng):
    x = rng.standard_normal((3000, 2))
    g = np.linspace(-6, 6, 121)
    pts = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    assert kde_density(x, pts).sum() * (g[1] - g[0]) ** 2 == pytest.approx(1.0, abs=1e-3)
    narrow = kde_density(x, np.zeros((1, 2)), bandwidth=0.05)
    assert narrow.shape == (1,) and narrow[0] > kde_density(x, np.zeros((1, 2)))[0]


def test_model_and_options_validation():
    assert model.grad_newton_mollified is interaction.grad_newton_mollified  # one shared formula
    for kw, field in [(dict(mu=0.0), "mu"), (dict(mu=math.inf), "mu"), (dict(chi=-1.0), "chi"),
                      (dict(mass=0.0), "mass"), (dict(dim=4), "dim")]:
        with pytest.raises(ValueError, match=f"^{field}: must be"):
            KSWholeSpace(**{**dict(mu=1.0, chi=1.0, mass=1.0, dim=2), **kw})
    for kw, field in [(dict(n_particles=1), "n_particles"), (dict(dt=0.0), "dt"), (dict(t_end=0.0105), "t_end"),
                      (dict(delta=0.0), "delta"), (dict(record_times=(0.01, 0.005)), "record_times"),
                      (dict(record_times=(0.0105,)), "record_times"), (dict(record_times=(0.03,)), "record_times"),
                      (dict(method="fmm"), "method"), (dict(diag_every=0), "diag_every")]:
        with pytest.raises(ValueError, match=f"^{field}: must be"):
            _opts(**kw)
    with pytest.raises(ValueError, match="x0"):
        simulate_particles(KSWholeSpace(1.0, 1.0, 1.0, 2), _opts(), None, np.zeros((400, 3)))
    with pytest.raises(ValueError, match="advection"):
        ParticleSolver(KSWholeSpace(1.0, 1.0, 1.0, 3), _opts(), CellularFlow(2))
