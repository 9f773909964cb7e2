"""The time-dependent KRnet: exact inverse, log-determinant, identity at the segment start."""

import numpy as np
import pytest
import torch

from oncodyn.deeplagrangian.krnet import KRnetMap, KRnetSpec, MonotoneCDF


def _random_map(dim, seed=0, scale=0.3, **kw):
    torch.manual_seed(seed)
    g = KRnetMap(KRnetSpec(dim=dim, cdf_bins=8, cdf_halfwidth=2.0, **kw)).double()
    with torch.no_grad():
        for p in g.parameters():  # away from the identity initialisation
            p.add_(scale * torch.randn_like(p))
    return g


@pytest.mark.parametrize("anchored", [False, True])
@pytest.mark.parametrize("dim", [2, 3])
def test_inverse_is_exact(dim, anchored):
    g = _random_map(dim, anchored=anchored)
    x = 1.5 * torch.randn(500, dim, dtype=torch.float64)
    tau = torch.rand(500, 1, dtype=torch.float64)
    y, ld = g(x, tau)
    xb, ldi = g.inverse(y, tau)
    assert torch.allclose(xb, x, atol=1e-11)
    assert torch.allclose(ld, -ldi, atol=1e-11)
    assert not torch.allclose(y, x, atol=1e-2)  # the map is not trivially the identity


@pytest.mark.parametrize("anchored", [False, True])
@pytest.mark.parametrize("dim", [2, 3])
def test_logdet_matches_autograd_jacobian(dim, anchored):
    g = _random_map(dim, seed=1, anchored=anchored)
    x = 1.2 * torch.randn(12, dim, dtype=torch.float64)
    tau = torch.rand(12, 1, dtype=torch.float64)
    _, ld = g(x, tau)
    for i in range(12):
        J = torch.autograd.functional.jacobian(lambda u: g(u[None], tau[i:i + 1])[0][0], x[i])
        sign, logabs = torch.linalg.slogdet(J)
        assert sign > 0  # orientation preserving: alpha < 1 keeps every Jacobian positive
        assert abs(float((logabs - ld[i]).detach())) < 1e-10


@pytest.mark.parametrize("dim", [2, 3])
def test_inverse_agrees_with_numerical_inversion(dim):
    """A root finder (scipy's hybrid Powell, autograd Jacobian) on G(x) = y finds the closed-form inverse."""
    from scipy.optimize import root

    g = _random_map(dim, seed=2)
    y = torch.randn(6, dim, dtype=torch.float64)
    tau = torch.full((6, 1), 0.7, dtype=torch.float64)
    x_closed, _ = g.inverse(y, tau)

    def residual(u, i):
        with torch.no_grad():
            return (g(torch.as_tensor(u)[None], tau[:1])[0][0] - y[i]).numpy()

    def jac(u, i):
        return torch.autograd.functional.jacobian(lambda v: g(v[None], tau[:1])[0][0], torch.as_tensor(u)).numpy()

    for i in range(6):
        sol = root(residual, y[i].numpy(), args=(i,), jac=jac, method="hybr", tol=1e-14)
        assert np.abs(residual(sol.x, i)).max() < 1e-12
        assert np.allclose(sol.x, x_closed[i].detach().numpy(), atol=1e-9)


@pytest.mark.parametrize("anchored", [False, True])
@pytest.mark.parametrize("dim", [2, 3])
def test_identity_at_segment_start(dim, anchored):
    g = _random_map(dim, seed=3, scale=1.0 if not anchored else 0.3, anchored=anchored)
    x = 3 * torch.randn(300, dim, dtype=torch.float64)
    zero = torch.zeros(300, 1, dtype=torch.float64)
    y, ld = g(x, zero)
    tol = 1e-15 if not anchored else 1e-11  # anchored: H(H^{-1}(x)) = x to round-off
    assert torch.allclose(y, x, atol=tol, rtol=0)
    assert torch.allclose(ld, torch.zeros_like(ld), atol=tol)
    y1, _ = g(x, torch.ones(300, 1, dtype=torch.float64))
    assert not torch.allclose(y1, x, atol=1e-3)  # ... and a real map at tau = 1


def test_anchored_segment_starts_with_a_radial_velocity():
    """The gated form's starting velocity is a sum of single-layer generators; the anchored
    form's is a composition: fitted to the radial field -x |x| it gets much closer."""
    torch.manual_seed(0)
    x = torch.randn(128, 3, dtype=torch.float64)
    target = -x * x.norm(dim=1, keepdim=True)
    errs = {}
    for anchored in (False, True):
        g = KRnetMap(KRnetSpec(dim=3, cdf_bins=8, anchored=anchored)).double()
        with torch.no_grad():
            for p in g.parameters():
                p.add_(0.3 * torch.randn_like(p))
        opt = torch.optim.Adam(g.parameters(), lr=3e-3)
        for _ in range(100):
            tau = torch.zeros(128, 1, dtype=torch.float64, requires_grad=True)
            y, _ = g(x, tau)
            v = torch.stack([torch.autograd.grad(y[:, i].sum(), tau, create_graph=True)[0][:, 0] for i in range(3)], 1)
            loss = ((v - target) ** 2).sum(1).mean() / (target**2).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        errs[anchored] = float(loss.detach())
    assert errs[True] < 0.5 * errs[False]


def test_monotone_cdf_is_c1_and_identity_outside():
    layer = MonotoneCDF(1, 6, 2.0).double()
    with torch.no_grad():
        layer.theta.copy_(torch.tensor([[1.0, -2.0, 0.5, 2.0, -1.0]]))
    x = torch.linspace(-3, 3, 2001, dtype=torch.float64)[:, None]
    tau = torch.ones_like(x)
    with torch.no_grad():
        y, ld = layer(x, tau)
    slope = torch.exp(ld)
    outside = x[:, 0].abs() >= 2.0
    assert torch.allclose(y[outside], x[outside])
    assert torch.all(torch.diff(y[:, 0]) > 0)  # monotone
    assert np.max(np.abs(np.diff(slope.numpy()))) < 0.05  # no jump in the derivative (C^1)


def test_spec_rejects_bad_values():
    with pytest.raises(ValueError, match="dim: must be 2 or 3"):
        KRnetSpec(dim=4)
    with pytest.raises(ValueError, match="alpha"):
        KRnetSpec(alpha=1.0)
    with pytest.raises(ValueError, match="n_couplings"):
        KRnetSpec(n_couplings=3)
