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
    g.set_frame(torch.full((dim,), 0.2, dtype=torch.float64), 0.7)  # a frame off the origin
    return g


#: the three forms of a segment: gated affine, anchored, gated affine + spline couplings
FORMS = [{"anchored": False}, {"anchored": True}, {"spline_bins": 8, "spline_halfwidth": 3.0, "spline_stretch": 2.0}]
FORM_IDS = ["gated", "anchored", "spline"]


@pytest.mark.parametrize("form", FORMS, ids=FORM_IDS)
@pytest.mark.parametrize("dim", [2, 3])
def test_inverse_is_exact(dim, form):
    g = _random_map(dim, **form)
    x = 1.5 * torch.randn(500, dim, dtype=torch.float64)
    tau = torch.rand(500, 1, dtype=torch.float64)
    y, ld = g(x, tau)
    xb, ldi = g.inverse(y, tau)
    assert torch.allclose(xb, x, atol=1e-11)
    assert torch.allclose(ld, -ldi, atol=1e-11)
    assert not torch.allclose(y, x, atol=1e-2)  # the map is not trivially the identity


@pytest.mark.parametrize("form", FORMS, ids=FORM_IDS)
@pytest.mark.parametrize("dim", [2, 3])
def test_logdet_matches_autograd_jacobian(dim, form):
    g = _random_map(dim, seed=1, **form)
    x = 1.2 * torch.randn(12, dim, dtype=torch.float64)
    tau = torch.rand(12, 1, dtype=torch.float64)
    _, ld = g(x, tau)
    for i in range(12):
        J = torch.autograd.functional.jacobian(lambda u: g(u[None], tau[i:i + 1])[0][0], x[i])
        sign, logabs = torch.linalg.slogdet(J)
        assert sign > 0  # orientation preserving: alpha < 1 keeps every Jacobian positive
        assert abs(float((logabs - ld[i]).detach())) < 1e-10


@pytest.mark.parametrize("spline_bins", [0, 8])
@pytest.mark.parametrize("dim", [2, 3])
def test_inverse_agrees_with_numerical_inversion(dim, spline_bins):
    """A root finder (scipy's hybrid Powell, autograd Jacobian) on G(x) = y finds the closed-form inverse."""
    from scipy.optimize import root

    g = _random_map(dim, seed=2, spline_bins=spline_bins)
    y = torch.randn(6, dim, dtype=torch.float64)
    tau = torch.full((6, 1), 0.7, dtype=torch.float64)
    x_closed, _ = g.inverse(y, tau)

    def residual(u, i):
        with torch.no_grad():
            return (g(torch.as_tensor(u)[None], tau[:1])[0][0] - y[i]).numpy()

    def jac(u, i):
        return torch.autograd.functional.jacobian(lambda v: g(v[None], tau[:1])[0][0], torch.as_tensor(u)).numpy()

    # the spline couplings are only C^1 and piecewise: Powell's method is started near the
    # answer there (0.1 away), from y itself for the smooth affine stack
    gen = np.random.default_rng(0)
    for i in range(6):
        start = y[i].numpy() if not spline_bins else x_closed[i].detach().numpy() + 0.1 * gen.standard_normal(dim)
        sol = root(residual, start, args=(i,), jac=jac, method="hybr", tol=1e-14)
        assert np.abs(residual(sol.x, i)).max() < 1e-12
        assert np.allclose(sol.x, x_closed[i].detach().numpy(), atol=1e-9)


@pytest.mark.parametrize("form", FORMS, ids=FORM_IDS)
@pytest.mark.parametrize("dim", [2, 3])
def test_identity_at_segment_start(dim, form):
    anchored = form.get("anchored", False)
    g = _random_map(dim, seed=3, scale=1.0 if not anchored else 0.3, **form)
    x = 3 * torch.randn(300, dim, dtype=torch.float64)
    zero = torch.zeros(300, 1, dtype=torch.float64)
    y, ld = g(x, zero)
    # anchored: H(H^{-1}(x)) = x, and spline: c + s (x - c)/s = x, to round-off
    tol = 1e-11 if anchored else 1e-13 if form.get("spline_bins") else 1e-15
    assert torch.allclose(y, x, atol=tol, rtol=0)
    assert torch.allclose(ld, torch.zeros_like(ld), atol=tol)
    y1, _ = g(x, torch.ones(300, 1, dtype=torch.float64))
    assert not torch.allclose(y1, x, atol=1e-3)  # ... and a real map at tau = 1


def _radial_fit_error(form, steps=100, n=64):
    """Relative squared error of the best starting velocity d/dtau G(x, 0) found in ``steps``
    Adam steps for the radial field -x |x| in 3D (a small network: a quick form)."""
    torch.manual_seed(0)
    x = torch.randn(n, 3, dtype=torch.float64)
    target = -x * x.norm(dim=1, keepdim=True)
    g = KRnetMap(KRnetSpec(dim=3, cdf_bins=8, n_couplings=2, width=16, **form)).double()
    with torch.no_grad():
        for p in g.parameters():
            p.add_(0.3 * torch.randn_like(p))
    opt = torch.optim.Adam(g.parameters(), lr=3e-3)
    for _ in range(steps):
        tau = torch.zeros(n, 1, dtype=torch.float64, requires_grad=True)
        y, _ = g(x, tau)
        v = torch.stack([torch.autograd.grad(y[:, i].sum(), tau, create_graph=True)[0][:, 0] for i in range(3)], 1)
        loss = ((v - target) ** 2).sum(1).mean() / (target**2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(loss.detach())


def test_anchored_and_spline_segments_start_with_a_radial_velocity():
    """The gated affine form's starting velocity is a sum of single-layer generators
    x2 f(x1) + g(x1), which cannot be radial; the anchored form's is a composition and the
    spline couplings' a general function of all coordinates: both fit -x |x| much closer."""
    gated = _radial_fit_error({"anchored": False})
    assert _radial_fit_error({"anchored": True}) < 0.5 * gated
    assert _radial_fit_error({"spline_bins": 8}) < 0.5 * gated


def test_spline_frame_follows_the_segment_and_is_saved():
    """set_frame moves every spline coupling's frame; the frame is part of the state dict."""
    g = _random_map(3, seed=4, spline_bins=8)
    from oncodyn.deeplagrangian.krnet import SplineCoupling

    splines = [m for m in g.layers if isinstance(m, SplineCoupling)]
    assert splines and all(torch.allclose(m.scale, torch.tensor([0.7], dtype=torch.float64)) for m in splines)
    state = g.state_dict()
    assert any(k.endswith("centre") for k in state) and any(k.endswith("scale") for k in state)
    h = KRnetMap(KRnetSpec(dim=3, cdf_bins=8, cdf_halfwidth=2.0, spline_bins=8)).double()
    h.load_state_dict(state)
    x = torch.randn(50, 3, dtype=torch.float64)
    tau = torch.full((50, 1), 0.6, dtype=torch.float64)
    assert torch.allclose(h(x, tau)[0], g(x, tau)[0], atol=1e-14)
    g.set_frame(torch.zeros(3, dtype=torch.float64), 2.0)  # another frame: another map
    assert not torch.allclose(h(x, tau)[0], g(x, tau)[0], atol=1e-6)


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


@pytest.mark.parametrize("stretch", [0.0, 3.0])
def test_spline_cdf_on_graded_knots(stretch):
    """pq_forward on (graded) knots: identity for zero logits, monotone, C^1, closed-form inverse."""
    from oncodyn.deeplagrangian.krnet import pq_forward, pq_grid, pq_inverse

    knots = pq_grid(8, 2.0, stretch)
    assert knots[0] == -2.0 and knots[-1] == 2.0 and torch.all(torch.diff(knots) > 0)
    if stretch:
        assert torch.diff(knots)[4] < 0.5 * torch.diff(knots)[0]  # finer at the centre
    x = torch.linspace(-3, 3, 2001, dtype=torch.float64)[:, None]
    y0, ld0 = pq_forward(x, torch.zeros(2001, 1, 7, dtype=torch.float64), knots)
    assert torch.allclose(y0, x, atol=1e-14) and torch.allclose(ld0, torch.zeros_like(ld0), atol=1e-14)
    logits = torch.tensor([1.0, -2.0, 0.5, 2.0, -1.0, 0.3, 1.5], dtype=torch.float64).expand(2001, 1, 7)
    y, ld = pq_forward(x, logits, knots)
    assert torch.all(torch.diff(y[:, 0]) > 0)
    assert np.max(np.abs(np.diff(torch.exp(ld)[:, 0].numpy()))) < 0.05  # C^1
    xb, ldi = pq_inverse(y, logits, knots)
    assert torch.allclose(xb, x, atol=1e-12) and torch.allclose(ldi, -ld, atol=1e-12)


def test_spec_rejects_bad_values():
    with pytest.raises(ValueError, match="dim: must be 2 or 3"):
        KRnetSpec(dim=4)
    with pytest.raises(ValueError, match="alpha"):
        KRnetSpec(alpha=1.0)
    with pytest.raises(ValueError, match="n_couplings"):
        KRnetSpec(n_couplings=3)
    with pytest.raises(ValueError, match="spline_bins: must be 0 or >= 2"):
        KRnetSpec(spline_bins=1)
    with pytest.raises(ValueError, match="spline_halfwidth"):
        KRnetSpec(spline_halfwidth=0.0)
    with pytest.raises(ValueError, match="spline_stretch"):
        KRnetSpec(spline_stretch=-1.0)
