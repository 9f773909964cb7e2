"""First-order ΔH (delta_grad) of the networks, and the learned external potential of the analytic model."""

import numpy as np
import pytest
import torch

from oncodyn.cpm.hamiltonians import ExternalPotential
from oncodyn.cpm.lattice import Lattice, voronoi_blob
from oncodyn.cpm.neural import (
    AnalyticTorch,
    Closure,
    CNNHamiltonian,
    NeuralHamiltonian,
    NHCNNHamiltonian,
    delta_full,
    delta_grad,
    make_delta_fn,
)


def blob(side=36, n=8, volume=60, seed=0):
    return voronoi_blob(Lattice((side, side)), n, volume, np.random.default_rng(seed))


def border_proposals(state, k, rng):
    nb = state.lattice.neighbour_table(2)
    sig = state.sigma.ravel()
    tg, sr = [], []
    while len(tg) < k:
        x = int(rng.integers(sig.size))
        y = int(nb[x, rng.integers(nb.shape[1])])
        if sig[x] != sig[y]:
            tg.append(x)
            sr.append(y)
    return np.array(tg), np.array(sr)


def directional_derivative(model, state, t, s):
    """∇_x H · Δx by a forward-mode derivative along the exact change of the encoding (one proposal)."""
    sig, ct = model._prep(state.sigma, state.cell_type)
    x0 = model._encode(sig[None], ct[None])
    mod = sig.clone().reshape(-1)
    mod[t] = sig.reshape(-1)[s]
    dx = model._encode(mod.reshape(sig.shape)[None], ct[None]) - x0
    _, d = torch.func.jvp(model._energy_x, (x0,), (dx,))
    return float(d[0].detach())


@pytest.mark.parametrize("cls,kw", [(NeuralHamiltonian, {"widths": (4, 8), "pools": (3, 2)}),
                                    (CNNHamiltonian, {"widths": (4, 8), "pools": (3, 2)}),
                                    (NHCNNHamiltonian, {"nh_width": 4, "widths": (8,), "pools": (2,)})])
def test_delta_grad_is_the_first_order_change(cls, kw):
    st = blob()
    torch.manual_seed(0)
    m = cls(2, **kw).double()
    rng = np.random.default_rng(1)
    t, s = border_proposals(st, 40, rng)
    # include copies into and out of the medium
    med = np.flatnonzero(st.sigma.ravel() == 0)
    nb = st.lattice.neighbour_table(2)
    x = next(int(v) for v in med if np.any(st.sigma.ravel()[nb[v]] != 0))
    y = int(next(v for v in nb[x] if st.sigma.ravel()[v] != 0))
    t, s = np.r_[t, x, y], np.r_[s, y, x]
    dg = delta_grad(m, st.sigma, st.cell_type, t, s).numpy()
    ref = [directional_derivative(m, st, int(a), int(b)) for a, b in zip(t, s)]
    np.testing.assert_allclose(dg, ref, rtol=1e-9, atol=1e-12)
    # a first-order estimate of the exact ΔH: strongly correlated with it on a random network
    df = delta_full(m, st.sigma, st.cell_type, t, s).numpy()
    assert np.corrcoef(dg, df)[0, 1] > 0.6
    assert np.all(dg[t == s] == 0) if np.any(t == s) else True


def test_delta_grad_of_a_closure_keeps_the_analytic_part_exact():
    st = blob()
    torch.manual_seed(0)
    a = AnalyticTorch(2, 60.0, potential=(6, 6)).double()
    with torch.no_grad():
        a.phi.copy_(torch.randn(6, 6, dtype=torch.float64))
    n = NeuralHamiltonian(2, widths=(4, 8), pools=(3, 2)).double()
    t, s = border_proposals(st, 30, np.random.default_rng(2))
    da = delta_grad(a, st.sigma, st.cell_type, t, s)
    np.testing.assert_allclose(da.numpy(), delta_full(a, st.sigma, st.cell_type, t, s).numpy(), atol=1e-9)
    c = Closure(a, n, w1=0.5, w2=2.0).double()
    dc = delta_grad(c, st.sigma, st.cell_type, t, s)
    np.testing.assert_allclose(dc.numpy(), (0.5 * da + 2.0 * delta_grad(n, st.sigma, st.cell_type, t, s)).numpy(),
                               atol=1e-9)
    fn = make_delta_fn(c, "grad")
    np.testing.assert_allclose(fn(st, t, s), dc.numpy(), atol=1e-12)
    with pytest.raises(ValueError, match="method must be one of"):
        make_delta_fn(c, "taylor")


def test_learned_potential_matches_the_compiled_hamiltonian():
    st = blob()
    torch.manual_seed(3)
    a = AnalyticTorch(2, 60.0, potential=(4, 6)).double()
    with torch.no_grad():
        a.phi.copy_(torch.randn(4, 6, dtype=torch.float64))
    ham = a.to_hamiltonian(1.0, shape=st.sigma.shape)
    assert isinstance(ham.term(ExternalPotential), ExternalPotential)
    e = float(a(st.sigma, st.cell_type).detach())
    assert abs(e - ham.energy(st)) < 1e-8 * max(1.0, abs(e))
    # the potential acts on type 2 only, block by block
    field = a.potential_field(st.sigma.shape).detach().numpy()
    assert field.shape == st.sigma.shape and np.all(field[:6, :6] == field[0, 0])
    e0 = float(AnalyticTorch(2, 60.0).double()(st.sigma, st.cell_type).detach())
    on2 = st.cell_type[st.sigma] == 2
    assert abs((e - e0) - field[on2].sum()) < 1e-8 * max(1.0, abs(e))
    t, s = border_proposals(st, 20, np.random.default_rng(4))
    np.testing.assert_allclose(a.delta(st.sigma, st.cell_type, t, s).detach().numpy(),
                               [ham.delta(st, (int(x), int(y))) for x, y in zip(t, s)], atol=1e-9)
    loss = a(st.sigma, st.cell_type)
    loss.backward()
    assert a.phi.grad is not None and float(a.phi.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="shape"):
        a.to_hamiltonian(1.0)
    with pytest.raises(ValueError, match="potential blocks"):
        a(np.zeros((35, 36), int), st.cell_type)
    with pytest.raises(ValueError, match="potential_type"):
        AnalyticTorch(2, 60.0, potential=(2, 2), potential_type=3)
