"""SIPF: spectral kernels against exact results, invariants, fast path against the faithful algorithm."""

import numpy as np
import pytest

from oncodyn.chemotaxis import interaction
from oncodyn.chemotaxis.driver import initial_particles, simulate
from oncodyn.chemotaxis.models import KellerSegelParams, total_concentration_exact
from oncodyn.chemotaxis.sipf import SIPFOptions, SIPFSolver
from oncodyn.chemotaxis.sipf_reference import SIPFReference
from oncodyn.core.rng import BrownianPath
from oncodyn.core.fitting import fit_slope

BASE = KellerSegelParams(mass=40.0)


def single_mode(grid, j):
    a = np.zeros(grid.shape, dtype=complex)
    a[tuple(grid.n_modes // 2 + np.array(j))] = 1.0
    return a


def test_grad_of_green_convolution_single_mode(rng):
    """grad(K * e^{i w.x}) = i w e^{i w.x} / (|w|^2 + beta^2), exactly (to NUFFT tolerance)."""
    s = SIPFSolver(BASE, SIPFOptions(n_modes=12, n_particles=50))
    x = rng.uniform(-4, 4, (50, 3))
    j = np.array([1, -2, 3])
    w = 2 * np.pi * j / BASE.length
    got = s.grad_field(s.green_hat * single_mode(s.grid, j), x)
    exact = np.real(1j * w[None, :] * np.exp(1j * x @ w)[:, None]) / (w @ w + s.beta2)
    assert np.max(np.abs(got - exact)) < 1e-8


def test_shifted_quadrature_converges_to_exact_convolution(rng):
    """The published quadrature of grad(K * c) converges to the exact Fourier value as h = L/H -> 0."""
    x = rng.uniform(-4, 4, (40, 3))
    j = np.array([1, 0, -1])
    errs, hs = [], []
    for H in (8, 16, 32):
        o = SIPFOptions(n_modes=H, n_particles=40)
        fast, ref = SIPFSolver(BASE, o), SIPFReference(BASE, o)
        a = single_mode(fast.grid, j)
        exact = fast.grad_field(fast.green_hat * a, x)
        errs.append(np.max(np.abs(ref.smooth_convolution_gradient(a, x) - exact)) / np.max(np.abs(exact)))
        hs.append(fast.grid.spacing)
    assert errs[-1] < 1.5e-2, errs
    # midpoint-type rule on a 1/r^2-singular kernel: observed order ~1.6 (>= 1 required)
    assert fit_slope(np.array(hs), np.array(errs)) > 1.0, errs


def test_fmm_interaction_matches_direct_sum(rng):
    x = rng.uniform(-1, 1, (800, 3))
    x[:10] = 1e-4 * rng.standard_normal((10, 3))  # a tight cluster
    ref = interaction.interaction_direct(x, 1.0, 0.01)
    for tol in (1e-3, 1e-6):
        fmm = interaction.interaction_fmm(x, 1.0, 0.01, tol=tol)
        # the FMM tolerance is relative to the field's scale; measured as the relative l2 error
        assert np.linalg.norm(fmm - ref) / np.linalg.norm(ref) < 10 * tol


def test_direct_interaction_matches_analytic_pair():
    x = np.array([[0.0, 0.0, 0.0], [0.3, 0.4, 0.0]])
    r, beta = 0.5, 2.0
    f = interaction.interaction_direct(x, beta, 1.0)
    mag = np.exp(-beta * r) * (1 + beta * r) / (4 * np.pi * r**2)
    assert np.allclose(f[0], mag * np.array([0.6, 0.8, 0.0]))  # attracted towards the other particle
    assert np.allclose(f[0], -f[1])
    f2 = interaction.interaction_direct(x[:, :2], 0.0, 1.0)  # 2D Newtonian: -x/(2 pi r^2)
    assert np.allclose(f2[0], np.array([0.3, 0.4]) / (2 * np.pi * r**2))


def test_random_batch_is_unbiased(rng):
    x = rng.uniform(-1, 1, (60, 3))
    exact = interaction.interaction_direct(x, 1.0, 1.0)
    est = np.mean([interaction.interaction_random_batch(x, 1.0, 1.0, 10, rng) for _ in range(3000)], axis=0)
    # 3000 independent batchings: the average is within a few percent of the full sum
    assert np.linalg.norm(est - exact) / np.linalg.norm(exact) < 0.05


def test_spectral_self_force_vanishes():
    p = KellerSegelParams(mass=10.0)
    s = SIPFSolver(p, SIPFOptions(n_modes=16, n_particles=2, variant="spectral"))
    x = np.array([[0.3, -0.2, 0.1], [0.3, -0.2, 0.1]])  # two particles at one point
    a = s.rho_hat(x) * s.green_hat
    assert np.max(np.abs(s.grad_field(a, x))) < 1e-9


@pytest.mark.parametrize("variant", ["exact", "spectral", "random_batch"])
def test_mass_and_total_concentration(variant):
    """rho_hat(0) L^d = M0 every step, and c-bar follows the implicit-Euler recursion of the exact ODE."""
    p = KellerSegelParams(mass=30.0)
    o = SIPFOptions(n_modes=8, dt=1e-4, n_particles=300, variant=variant, batch_size=20)
    run = simulate(p, o, t_end=0.004, seed=1, diag_every=1, progress=False)
    s = run.solver
    assert s.rho_hat(run.state.x)[s.grid.zero_index].real * s.grid.volume == pytest.approx(30.0, rel=1e-12)
    assert np.all(np.abs(run.state.x) <= 4.0)
    r = p.eps / o.dt / s.beta2
    cbar = np.zeros(len(run.series["t"]))
    for n in range(1, len(cbar)):
        cbar[n] = r * cbar[n - 1] + p.mass / s.beta2
    assert np.allclose(run.series["c_total"], cbar, rtol=1e-12)


def test_total_concentration_first_order_in_dt():
    """The c-bar recursion converges to the exact ODE solution at order 1 (deterministic: no particles needed)."""
    p, T = BASE, 0.01
    errs = []
    for n in (16, 32, 64, 128):
        dt = T / n
        beta2 = p.beta2(dt)
        c, cs = 0.0, [0.0]
        for _ in range(n):
            c = (p.eps / dt * c + p.mass) / beta2
            cs.append(c)
        t = np.linspace(0, T, n + 1)
        ex = total_concentration_exact(t, p)
        errs.append(np.sqrt(np.mean(((np.array(cs) - ex)[1:] / ex[1:]) ** 2)))
    slope = fit_slope(T / np.array([16, 32, 64, 128]), np.array(errs))
    assert 0.9 < slope < 1.1


def test_fast_exact_path_agrees_with_faithful_algorithm():
    """Same particles and noise: the fast exact path (NUFFT + FMM) follows the published algorithm.

    The only approximation that differs is the source's quadrature of the smooth part
    (about 2 % of that part at H = 12, see the convergence test above) and the FMM tolerance,
    so positions agree to far below one noise increment (sqrt(2 dt) = 0.014).
    """
    p = KellerSegelParams(mass=60.0)
    o = SIPFOptions(n_modes=12, dt=1e-4, n_particles=300, nufft_tol=1e-10)
    fast, ref = SIPFSolver(p, o), SIPFReference(p, o)
    x0 = initial_particles(p, 300, seed=5)
    assert np.max(np.abs(fast.rho_hat(x0) - ref.rho_hat(x0))) < 1e-10
    path = BrownianPath(5, 300, 3, o.dt)
    a, b = fast.init(x0), ref.init(x0)
    for n in range(15):
        dW = path.increment(n, o.dt)
        a, b = fast.step(a, dW), ref.step(b, dW)
    assert np.max(np.abs(a.x - b.x)) < 2e-4
    assert np.linalg.norm(a.alpha - b.alpha) / np.linalg.norm(b.alpha) < 5e-5
    # and the particle drift pieces themselves agree to the FMM tolerance
    f1 = fast.particle_interaction(a.x)
    f2 = interaction.interaction_direct(a.x, fast.beta, fast.weight)
    assert np.linalg.norm(f1 - f2) / np.linalg.norm(f2) < 1e-8


def test_2d_virial_identity_parabolic_elliptic(rng):
    """2D, eps = k = 0: d/dt m2 = 4 M0 mu - chi M0^2 (P-1)/(2 pi P) for the exact pair interaction.

    The drift part of the identity is exact for any configuration: sum_p x_p . F_p is constant.
    """
    p = KellerSegelParams(mass=40.0, eps=0.0, k=0.0, dim=2, length=40.0)
    s = SIPFSolver(p, SIPFOptions(n_modes=8, dt=1e-4, n_particles=400, variant="exact"))
    x = rng.standard_normal((400, 2))
    F = s.particle_interaction(x)
    lhs = 2 * p.chi * np.sum(x * F) * s.weight  # d/dt m2 from the drift
    assert lhs == pytest.approx(-p.chi * p.mass**2 * 399 / (2 * np.pi * 400), rel=1e-10)


def test_compiled_direct_sum_matches_array_direct_sum(rng):
    x = rng.uniform(-1, 1, (500, 3))
    x[:5] = 1e-6 * rng.standard_normal((5, 3))
    a = interaction.interaction_direct_compiled(x, 0.7, 0.02)
    b = interaction.interaction_direct(x, 0.7, 0.02)
    assert np.max(np.abs(a - b)) < 1e-9 * np.max(np.abs(b))


def test_bisection_finds_a_known_threshold():
    from oncodyn.chemotaxis.blowup import bisect_critical_mass

    res = bisect_critical_mass(lambda m: 1.0 if m < 47.7 else 2.0, 40.0, 56.0, tol=0.1)
    assert res.bracketed and res.lower < 47.7 <= res.upper and res.upper - res.lower <= 0.1
    bad = bisect_critical_mass(lambda m: 1.0, 40.0, 56.0, tol=0.1)
    assert not bad.bracketed and len(bad.evaluations) == 2


def test_softened_pair_force_matches_between_backends_and_is_bounded(rng):
    x = rng.uniform(-1, 1, (300, 3))
    x[1] = x[0] + 1e-7  # a nearly coincident pair
    a = interaction.interaction_direct_compiled(x, 1.0, 0.01, softening=0.05)
    b = interaction.interaction_direct(x, 1.0, 0.01, softening=0.05)
    assert np.max(np.abs(a - b)) < 1e-9 * np.max(np.abs(b))
    exact = interaction.interaction_direct_compiled(x, 1.0, 0.01)
    assert np.abs(exact[0]).max() > 1e6 * np.abs(a[0]).max()  # the exact force of the close pair is huge
    assert np.abs(a[0]).max() < 0.01 * 300 / (4 * np.pi * 0.05**2)  # softened force is bounded by w P / (4 pi delta^2)
    with pytest.raises(ValueError, match="softening"):
        SIPFOptions(softening=0.1, interaction="fmm")
