"""The diffuse-domain FD solver: agreement of the three implementations, invariants, the Fisher
front speed, convergence against the radial reference, gradients and parameter recovery."""

import math

import numpy as np
import pytest
import torch

from oncodyn.core.fitting import fit_slope
from oncodyn.tumour.fk import (FKSolver, FKState, TorchFK, initial_state, prepare_domain, rhs_numpy, schedule,
                               simulate, time_grid)
from oncodyn.tumour.inverse import FKInverse, InverseOptions, Observations
from oncodyn.tumour.model import FKParams
from oncodyn.tumour.phasefield import ball_phase_field
from oncodyn.tumour.radial import RadialFKOptions, solve_radial_fk


def disc_domain(h: float, radius: float = 25.0, width: float = 1.0, half: float | None = None):
    """A disc of homogeneous white matter centred in a square of side 2*half (mm); returns (domain, centre)."""
    half = half or radius + 8 * width
    n = int(round(2 * half / h)) + 1
    coords = [np.arange(n) * h] * 2
    centre = ((n - 1) / 2 * h,) * 2
    phi = ball_phase_field(coords, centre, radius, width)
    return prepare_domain(phi, np.ones_like(phi), (h, h)), centre


def heterogeneous_domain(rng, shape=(24, 20, 18)):
    phi = np.zeros(shape)
    phi[2:-2, 2:-2, 2:-2] = rng.uniform(0.0, 1.0, tuple(s - 4 for s in shape))
    phi[phi < 0.05] = 0.0  # some frozen voxels inside
    d = rng.uniform(0.1, 1.0, shape)
    return prepare_domain(phi, d, (1.0, 0.8, 1.2))


def test_implementations_agree(rng):
    """numba (fast), NumPy (reference) and torch run the same scheme: equal to round-off, 2D and 3D."""
    dom3 = heterogeneous_domain(rng)
    dom2, c2 = disc_domain(1.0, radius=10.0)
    for dom, x0 in ((dom3, (10.0, 8.0, 10.0)), (dom2, c2)):
        p = FKParams(D_white=0.3, rho=0.05)
        a = simulate(dom, p, x0, [5.0, 20.0], backend="numba").u
        b = simulate(dom, p, x0, [5.0, 20.0], backend="numpy").u
        dts, steps = schedule(dom, p.D_white, p.rho, [5.0, 20.0])
        c = torch.stack(TorchFK(dom).simulate(0.3, 0.05, x0, p, dts, steps)).numpy()
        assert np.abs(a - b).max() < 1e-13
        assert np.abs(a - c).max() < 1e-13


@pytest.mark.parametrize("scheme", ["euler", "heun"])
def test_no_flux_identity(rng, scheme):
    """Σ φ u changes per step only by the reaction: the fluxes cancel in pairs (to round-off)."""
    dom = heterogeneous_domain(rng)
    p = FKParams(D_white=0.5, rho=0.1)
    u = rng.uniform(0, 1, dom.shape) * dom.active
    dt = dom.stable_dt(p.D_white, p.rho)
    solver = FKSolver(dom, p, np.array([dt]), backend="numpy", scheme=scheme)
    new = solver.step(FKState(u=u.copy())).u
    react = lambda v: rho_term(dom, p, v)  # noqa: E731
    if scheme == "euler":
        expected = dt * react(u)
    else:
        u1 = u + dt * rhs_numpy(u, dom, p.D_white, p.rho)
        expected = 0.5 * dt * (react(u) + react(u1))
    change = float((dom.phi * (new - u)).sum())
    assert change == pytest.approx(expected, rel=1e-12, abs=1e-12)


def rho_term(dom, p, u):
    return float((dom.phi * p.rho * u * (1 - u)).sum())


def test_positivity_and_bound(rng):
    """0 <= u <= 1 at the stable step, even started from u = 1 next to u = 0 with sharp φ."""
    dom = heterogeneous_domain(rng)
    p = FKParams(D_white=1.0, rho=0.2)
    u = (rng.uniform(0, 1, dom.shape) > 0.5).astype(float) * dom.active
    solver = FKSolver(dom, p, np.full(200, dom.stable_dt(p.D_white, p.rho)), backend="numba")
    s = FKState(u=u)
    for _ in range(200):
        s = solver.step(s)
        assert s.u.min() >= 0.0 and s.u.max() <= 1.0 + 1e-12


def test_fisher_front_speed():
    """A planar front in homogeneous tissue travels at 2 sqrt(D rho) (within 5%).

    Channel 600 mm long, front level u = 0.5 tracked over days 1500--3000. The Bramson
    correction (3/(2 lambda t) for a planar front) is ~0.6% of c there; 5% is the issue's bound.
    """
    h = 0.5
    phi = np.zeros((1400, 3))
    phi[1:-1, 1] = 1.0
    dom = prepare_domain(phi, np.ones_like(phi), (h, h))
    p = FKParams()
    sol = simulate(dom, p, (h, h), [1500.0, 3000.0])
    x = dom.coords()[0]

    def front(u):
        line = u[:, 1]
        i = int(np.nonzero(line >= 0.5)[0].max())
        return x[i] + (line[i] - 0.5) / (line[i] - line[i + 1]) * h

    speed = (front(sol.u[1]) - front(sol.u[0])) / 1500.0
    assert speed == pytest.approx(p.front_speed, rel=0.05)
    assert speed == pytest.approx(p.front_speed, rel=0.015)  # the Bramson lag explains the rest


def test_convergence_against_radial_reference():
    """Disc R = 25 mm, day 120: relative L2 error against the resolved radial solution falls at order ~2 in h."""
    p = FKParams(D_white=0.3, rho=0.05)
    ref = solve_radial_fk(p, RadialFKOptions(dim=2, radius=25.0, width=1.0, dr=0.02, dt=0.05), [120.0])
    hs, errs = [2.0, 1.0, 0.5], []
    for h in hs:
        dom, c = disc_domain(h, radius=25.0)
        u = simulate(dom, p, c, [120.0], cfl=0.5).u[0]
        X, Y = np.meshgrid(*dom.coords(), indexing="ij")
        r = np.hypot(X - c[0], Y - c[1])
        exact = ref.interpolate(r)[0] * dom.active
        errs.append(np.linalg.norm(u - exact) / np.linalg.norm(exact))
    slope = fit_slope(np.array(hs), np.array(errs))
    assert errs[-1] < 2e-3
    assert 1.7 < slope < 2.5, (errs, slope)


def test_time_grid_hits_outputs():
    dts = time_grid([10.0, 25.0, 26.0], 4.0)
    assert np.cumsum(dts)[-1] == pytest.approx(26.0)
    assert dts.max() <= 4.0
    assert set(np.round(np.cumsum(dts), 9)) >= {10.0, 25.0, 26.0}


def test_gradient_matches_finite_differences():
    """The autograd gradient of the misfit in (log D, log rho, x0) agrees with central differences."""
    dom, c = disc_domain(1.0, radius=12.0)
    p = FKParams(D_white=0.2, rho=0.04)
    truth = simulate(dom, p, c, [20.0, 40.0]).u
    obs = Observations(np.array([20.0, 40.0]), truth * 0.9, np.broadcast_to(dom.active, truth.shape).copy(), (None, None))
    inv = FKInverse(dom, obs, p, c, InverseOptions(fit_origin=True))
    th = np.array([math.log(0.15), math.log(0.05), c[0] + 0.4, c[1] - 0.3])
    f, g = inv.objective(th)
    for i in range(4):
        e = np.zeros(4)
        e[i] = 1e-5
        fd = (inv.objective(th + e)[0] - inv.objective(th - e)[0]) / 2e-5
        assert g[i] == pytest.approx(fd, rel=1e-5, abs=1e-9)


def test_recovers_parameters_from_clean_data():
    """Noise-free observations at two times from a finer grid (0.5 mm) pin D_w and rho within 1% on 1 mm."""
    p = FKParams(D_white=0.2, rho=0.04)
    fine, cf = disc_domain(0.5, radius=15.0, half=23.0)
    coarse, cc = disc_domain(1.0, radius=15.0, half=23.0)
    times = [30.0, 60.0]
    uf = simulate(fine, p, cf, times, cfl=0.5).u
    # fine voxel 2i sits on coarse voxel i: sample the fine solution there
    full = fine.embed(uf)[:, ::2, ::2]
    y = np.stack([coarse.crop(v) for v in full])
    mask = np.broadcast_to(coarse.phi > 0.5, y.shape).copy()
    inv = FKInverse(coarse, Observations(np.array(times), y, mask, (None, None)), p, cc)
    res = inv.fit(0.08, 0.1)
    err = res.errors(0.2, 0.04)
    assert err["D_white"] < 0.01 and err["rho"] < 0.01, err


def test_bad_inputs_fail_clearly():
    phi = np.ones((6, 6)) * 0.5
    with pytest.raises(ValueError, match="diffusivity"):
        prepare_domain(phi, -np.ones_like(phi), (1, 1))
    with pytest.raises(ValueError, match="spacing"):
        prepare_domain(phi, np.ones_like(phi), (1,))
    with pytest.raises(ValueError, match="phi"):
        prepare_domain(phi * 3, np.ones_like(phi), (1, 1))
    with pytest.raises(ValueError, match="D_white"):
        FKParams(D_white=-0.1)
    dom, c = disc_domain(1.0, radius=5.0)
    with pytest.raises(ValueError, match="x0"):
        initial_state(dom, FKParams(), (1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="times"):
        simulate(dom, FKParams(), c, [5.0, 3.0])


@pytest.mark.parametrize("scheme", ["heun", "euler"])
def test_adjoint_gradient_equals_autograd(rng, scheme):
    """The compiled discrete adjoint gives torch autograd's gradient to round-off (densities and segmentations, 3D)."""
    dom = heterogeneous_domain(rng)
    p = FKParams(D_white=0.3, rho=0.06)
    x0 = (11.0, 8.0, 10.0)
    truth = simulate(dom, p, x0, [6.0, 12.0]).u
    obs = Observations(np.array([6.0, 12.0]), truth * 0.8 + 0.01, np.broadcast_to(dom.active, truth.shape).copy(),
                       (None, 0.05))
    th = np.array([math.log(0.25), math.log(0.05), 10.6, 8.3, 9.7])
    out = {}
    for g in ("adjoint", "autograd"):
        inv = FKInverse(dom, obs, p, x0, InverseOptions(fit_origin=True, gradient=g, scheme=scheme))
        out[g] = inv.objective(th)
    assert out["adjoint"][0] == pytest.approx(out["autograd"][0], rel=1e-12)
    np.testing.assert_allclose(out["adjoint"][1], out["autograd"][1], rtol=1e-9, atol=1e-12)
