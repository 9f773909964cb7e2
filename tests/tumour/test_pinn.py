"""Tests of the PINN baseline (oncodyn.tumour.pinn) on tiny problems (the suite runs in seconds on 2 cores).

The network is reduced (1-2 hidden layers of 16-32 units) and the collocation set is 1-2k
points here only to keep the tests fast; the published sizes are the defaults.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from oncodyn.tumour.model import FKParams, initial_density
from oncodyn.tumour.phasefield import ball_phase_field
from oncodyn.tumour.pinn import (
    PINNOptions,
    PINNProblem,
    fk_residual,
    multilinear_interpolate,
    parameter_change,
    residual_coefficients,
    sample_collocation,
    should_stop,
    train_forward,
    train_inverse,
)


def disc_problem(n: int = 24, h: float = 2.0, t_end: float = 100.0) -> PINNProblem:
    """A 2D disc (R = 18 mm, w = 1 mm) on an n x n grid of spacing h, origin at the centre."""
    coords = [np.arange(n) * h] * 2
    c = (n - 1) * h / 2
    phi = ball_phase_field(coords, (c, c), 18.0, 1.0)
    return PINNProblem(phi, np.ones_like(phi), (h, h), (c, c), t_end, FKParams())


TINY = dict(hidden=32, layers=2, n_collocation=1500, record_every=20, lbfgs_record_every=20)


# ----------------------------------------------------------------------------- interpolation


@pytest.mark.parametrize("shape,spacing", [((5, 7), (1.5, 0.75)), ((4, 6, 5), (2.0, 1.0, 0.5))])
def test_interpolation_nodes_and_linear_exact(shape, spacing, rng):
    """Grid values are reproduced at nodes (axes not swapped on a non-square, anisotropic grid),
    and a linear function is reproduced exactly (to rounding) at random points."""
    ndim = len(shape)
    vals = rng.normal(size=shape)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, ndim)
    nodes = idx * np.asarray(spacing)
    got = multilinear_interpolate(vals, spacing, nodes)
    np.testing.assert_allclose(got, vals[tuple(idx.T)], rtol=0, atol=1e-12)

    coef = rng.normal(size=ndim)
    coords = [np.arange(n) * hh for n, hh in zip(shape, spacing)]
    mesh = np.meshgrid(*coords, indexing="ij")
    lin = 0.3 + sum(a * m for a, m in zip(coef, mesh))
    ext = (np.asarray(shape) - 1) * np.asarray(spacing)
    pts = rng.uniform(0, 1, size=(200, ndim)) * ext
    # several channels at once: [C, *shape] -> [n, C]
    out = multilinear_interpolate(np.stack([lin, 2 * lin]), spacing, pts)
    exact = 0.3 + pts @ coef
    np.testing.assert_allclose(out[:, 0], exact, rtol=0, atol=1e-12)
    np.testing.assert_allclose(out[:, 1], 2 * exact, rtol=0, atol=1e-12)
    # outside the grid box: the border value (clamped coordinates)
    far = np.full((1, ndim), -5.0)
    np.testing.assert_allclose(multilinear_interpolate(lin, spacing, far), [0.3], atol=1e-12)


def test_collocation_inside_domain_and_seeded():
    prob = disc_problem()
    pts, times = sample_collocation(prob, 1000, 1e-2, np.random.default_rng(1))
    assert pts.shape == (1000, 2) and times.shape == (1000,)
    assert np.all(multilinear_interpolate(prob.phi, prob.spacing, pts) > 1e-2)
    assert times.min() >= 0 and times.max() <= prob.t_end
    # roughly uniform on the disc of radius ~18 mm (+ part of the interface): mean near the centre
    assert np.all(np.abs(pts.mean(0) - np.asarray(prob.x0)) < 1.5)
    pts2, _ = sample_collocation(prob, 1000, 1e-2, np.random.default_rng(1))
    np.testing.assert_array_equal(pts, pts2)


# ----------------------------------------------------------------------------- network and residual


def test_hard_initial_condition_is_exact():
    """u(x, 0) = IC(x): exactly the IC term of the model, and equal to initial_density (float64)."""
    prob = disc_problem()
    opts = PINNOptions(**TINY, adam_epochs=3, lbfgs_iters=0, dtype="float64")
    res = train_forward(prob, FKParams(), opts)
    coords = prob.coords()
    mesh = np.meshgrid(*coords, indexing="ij")
    pts = np.stack([m.ravel() for m in mesh], 1)
    u0 = res.predict(pts, 0.0)
    ic = initial_density(coords, prob.x0, prob.ic).ravel()
    np.testing.assert_allclose(u0, ic, rtol=1e-12, atol=1e-15)
    xhat, that = res.model.scale(pts, 0.0)
    with torch.no_grad():
        assert torch.equal(res.model(xhat, that), res.model.initial(xhat))
    # at t > 0 the network contributes
    assert np.max(np.abs(res.predict(pts, 50.0) - ic)) > 1e-6


def test_residual_of_manufactured_function_with_scaling():
    r"""The scaled residual equals T * the physical residual of a known function.

    u(x, t) = g(t) exp(-|x - a|^2 / s^2), phi linear, d constant, so d*phi is linear: the
    interpolation and np.gradient are exact and
    r = phi u_t - D[(d phi) Lap u + grad(d phi).grad u] - phi rho u (1 - u) is analytic.
    Tolerance 1e-9 (float64 rounding of second autograd derivatives, O(1) values).
    """
    n, h, T, D, rho, d0 = 20, 1.5, 120.0, 0.13, 0.025, 0.8
    coords = [np.arange(n) * h] * 2
    X, Y = np.meshgrid(*coords, indexing="ij")
    beta = np.array([0.012, -0.007])
    phi = 0.5 + beta[0] * (X - 14) + beta[1] * (Y - 14)
    prob = PINNProblem(phi, np.full_like(phi, d0), (h, h), (14.0, 14.0), T, FKParams())
    c, L = prob.centre_and_length()
    a, s = np.array([12.0, 16.0]), 6.0

    def g(t):
        return 0.3 + 0.2 * np.sin(t / 50.0)

    def dg(t):
        return 0.2 / 50.0 * np.cos(t / 50.0)

    def u_fn(xhat, that):  # torch, scaled variables
        x = torch.as_tensor(c) + L * xhat
        t = T * that
        q = ((x - torch.as_tensor(a)) ** 2).sum(1) / s**2
        return (0.3 + 0.2 * torch.sin(t / 50.0)) * torch.exp(-q)

    rng = np.random.default_rng(3)
    pts = rng.uniform(1.0, (n - 2) * h, size=(300, 2))
    times = rng.uniform(0, T, size=300)
    xa = pts - a
    e = np.exp(-(xa**2).sum(1) / s**2)
    u = g(times) * e
    grad_u = -2 * xa / s**2 * u[:, None]
    lap_u = (4 * (xa**2).sum(1) / s**4 - 2 * 2 / s**2) * u
    phi_p = 0.5 + (pts - 14) @ beta
    r_phys = phi_p * dg(times) * e - D * (d0 * phi_p * lap_u + grad_u @ (d0 * beta)) - phi_p * rho * u * (1 - u)

    coeffs = torch.as_tensor(residual_coefficients(prob, pts))
    np.testing.assert_allclose(coeffs[:, 0].numpy(), phi_p, atol=1e-12)
    np.testing.assert_allclose(coeffs[:, 2:].numpy(), np.tile(L * d0 * beta, (300, 1)), atol=1e-12)
    xhat = torch.as_tensor((pts - c) / L)
    that = torch.as_tensor(times / T)
    r_hat, u_t = fk_residual(u_fn, xhat, that, coeffs, D * T / L**2, rho * T)
    np.testing.assert_allclose(u_t.detach().numpy(), u, atol=1e-12)
    np.testing.assert_allclose(r_hat.detach().numpy(), T * r_phys, rtol=0, atol=1e-9)


# ----------------------------------------------------------------------------- training


def test_lbfgs_lowers_the_loss():
    """Acceptance item: the L-BFGS stage after Adam lowers the full-batch loss (forward problem)."""
    prob = disc_problem()
    opts = PINNOptions(**TINY, adam_epochs=150, lbfgs_iters=60)
    res = train_forward(prob, FKParams(D_white=0.13, rho=0.025), opts)
    assert res.stop_reason == "adam_epochs" and res.adam_epochs_run == 150
    assert res.lbfgs_iterations > 0 and res.lbfgs_stop in ("iterations", "converged")
    assert math.isfinite(res.loss_before_lbfgs) and res.loss_after_lbfgs is not None
    assert res.loss_after_lbfgs < res.loss_before_lbfgs
    stages = [r["stage"] for r in res.history]
    assert stages[0] == "adam" and stages[-1] == "lbfgs"
    assert res.history[-1]["loss"] == pytest.approx(res.loss_after_lbfgs)
    # Adam lowered the loss too, and the grid prediction is a sane density
    assert res.loss_before_lbfgs < res.history[0]["loss"]
    u = res.predict_grid(prob.t_end)
    assert u.shape == prob.shape and np.all(np.isfinite(u)) and np.all(u[prob.phi <= 1e-2] == 0)


def test_parameter_change_statistic():
    recs = [(1.0, 2.0)] * 5
    assert parameter_change(recs, 5) == 0.0
    assert parameter_change(recs[:3], 5) == math.inf and not should_stop(recs[:3], 5, 1.0)
    # one relative jump of 10% in D and 5% in rho inside the window, relative to the newer value
    recs = [(1.0, 2.0), (1.0, 2.0), (1.1, 2.1), (1.1, 2.1)]
    expected = 0.1 / 1.1 + 0.1 / 2.1
    assert parameter_change(recs, 4) == pytest.approx(expected)
    assert should_stop(recs, 4, expected + 1e-9) and not should_stop(recs, 4, expected - 1e-9)
    # the jump falls out of a window of 2 (only the last difference counts)
    assert parameter_change(recs, 2) == 0.0
    # a converging sequence D_k = 1 + 0.5^k eventually meets tol, a drifting one never does
    conv = [(1 + 0.5**k, 0.02 * (1 + 0.5**k)) for k in range(40)]
    first = next(i for i in range(len(conv)) if should_stop(conv[: i + 1], 10, 0.04))
    assert 10 <= first < 40
    drift = [(1.0 + 0.01 * k, 0.02) for k in range(40)]
    assert not any(should_stop(drift[: i + 1], 10, 0.04) for i in range(len(drift)))


def _observations(prob: PINNProblem, times=(40.0, 80.0), n_per=150, seed=5):
    """Synthetic observations of a spreading Gaussian (values only need to be plausible here)."""
    rng = np.random.default_rng(seed)
    pts, ts, vals = [], [], []
    for t in times:
        p, _ = sample_collocation(prob, n_per, 0.5, rng)
        sig2 = 5.0 + 4 * 0.13 * t
        r2 = ((p - np.asarray(prob.x0)) ** 2).sum(1)
        pts.append(p)
        ts.append(np.full(n_per, t))
        vals.append(0.1 * np.exp(0.025 * t) * 5.0 / sig2 * np.exp(-r2 / sig2))
    return np.concatenate(pts), np.concatenate(ts), np.concatenate(vals)


def test_tiny_inverse_history():
    prob = disc_problem()
    obs = _observations(prob)
    opts = PINNOptions(**TINY, adam_epochs=100, lbfgs_iters=20, tol=1e-6)
    res = train_inverse(prob, obs, opts, D_init=0.2, rho_init=0.04, D_true=0.13, rho_true=0.025)
    walls = [r["wall_time_s"] for r in res.history]
    assert len(walls) >= 5 and all(b > a for a, b in zip(walls[:-1], walls[1:]))
    epochs = [r["epoch"] for r in res.history]
    assert all(b > a for a, b in zip(epochs[:-1], epochs[1:]))
    assert res.stop_reason == "adam_epochs"
    assert math.isfinite(res.D_white) and res.D_white > 0 and math.isfinite(res.rho) and res.rho > 0
    # the unknowns are trained (they moved from the initial guess) and errors are recorded
    assert res.history[0]["D_white"] == pytest.approx(0.2, rel=1e-6)
    assert res.D_white != pytest.approx(0.2, rel=1e-4)
    last = res.history[-1]
    assert last["D_err"] == pytest.approx(abs(last["D_white"] - 0.13) / 0.13)
    assert last["loss_data"] > 0 and last["loss"] == pytest.approx(last["loss_residual"] + last["loss_data"], rel=1e-5)


def test_inverse_stops_by_tolerance_and_budget():
    prob = disc_problem()
    obs = _observations(prob, n_per=50)
    # a huge tol: stops as soon as `window` records exist (records at 0, 10, 20 -> epoch 20)
    opts = PINNOptions(hidden=16, layers=1, n_collocation=500, adam_epochs=1000, lbfgs_iters=0,
                       record_every=10, window=3, tol=10.0)
    res = train_inverse(prob, obs, opts, D_init=0.1, rho_init=0.02)
    assert res.stop_reason == "tolerance" and res.adam_epochs_run == 20 and res.lbfgs_stop == "skipped"
    # a spent budget: stops at once and skips L-BFGS
    opts = PINNOptions(hidden=16, layers=1, n_collocation=500, adam_epochs=1000, lbfgs_iters=10,
                       time_budget_s=1e-9)
    res = train_inverse(prob, obs, opts, D_init=0.1, rho_init=0.02)
    assert res.stop_reason == "time_budget" and res.lbfgs_stop == "skipped" and res.loss_after_lbfgs is None


# ----------------------------------------------------------------------------- validation


def test_validation_names_the_field():
    with pytest.raises(ValueError, match="hidden"):
        PINNOptions(hidden=0)
    with pytest.raises(ValueError, match="window"):
        PINNOptions(window=1)
    with pytest.raises(ValueError, match="dtype"):
        PINNOptions(dtype="float16")
    with pytest.raises(ValueError, match="time_budget_s"):
        PINNOptions(time_budget_s=-1.0)
    prob = disc_problem()
    with pytest.raises(ValueError, match="diffusivity"):
        PINNProblem(prob.phi, np.ones((3, 3)), (1.0, 1.0), (0.0, 0.0), 10.0)
    with pytest.raises(ValueError, match="spacing"):
        PINNProblem(prob.phi, prob.diffusivity, (1.0,), (0.0, 0.0), 10.0)
    with pytest.raises(ValueError, match="x0"):
        PINNProblem(prob.phi, prob.diffusivity, (1.0, 1.0), (0.0,), 10.0)
    with pytest.raises(ValueError, match="observations points"):
        train_inverse(prob, (np.zeros((4, 3)), np.zeros(4), np.zeros(4)), PINNOptions(adam_epochs=0))
    with pytest.raises(ValueError, match="observations times"):
        train_inverse(prob, (np.zeros((4, 2)), np.full(4, 1e3), np.zeros(4)), PINNOptions(adam_epochs=0))
