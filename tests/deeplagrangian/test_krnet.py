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


@pytest.mark.parametrize("dim", [2, 3])
def test_inverse_is_exact(dim):
    g = _random_map(dim)
    x = 1.5 * torch.randn(500, dim, dtype=torch.float64)
    tau = torch.rand(500, 1, dtype=torch.float64)
    y, ld = g(x, tau)
    xb, ldi = g.inverse(y, tau)
    assert torch.allclose(xb, x, atol=1e-11)
    assert torch.allclose(ld, -ldi, atol=1e-11)
    assert not torch.allclose(y, x, atol=1e-2)  # the map is not trivially the identity


@pytest.mark.parametrize("dim", [2, 3])
def test_logdet_matches_autograd_jacobian(dim):
    g = _random_map(dim, seed=1)
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


@pytest.mark.parametrize("dim", [2, 3])
def test_identity_at_segment_start(dim):
    g = _random_map(dim, seed=3, scale=1.0)
    x = 3 * torch.randn(300, dim, dtype=torch.float64)
    zero = torch.zeros(300, 1, dtype=torch.float64)
    y, ld = g(x, zero)
    assert torch.equal(y, x) or torch.allclose(y, x, atol=1e-15, rtol=0)
    assert torch.allclose(ld, torch.zeros_like(ld), atol=1e-15)


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
