"""Hamiltonian terms: the local ΔH equals the difference of two full energies, and the
compiled kernel's ΔH equals the readable one."""

import numpy as np
import pytest

from oncodyn.cpm import kernels as K
from oncodyn.cpm.hamiltonians import CellField, Chemotaxis, Contact, ExternalPotential, Hamiltonian, Perimeter, Volume
from oncodyn.cpm.lattice import CPMState, Lattice
from oncodyn.cpm.samplers import MetropolisSampler

J = np.array([[0.0, 3.0, 2.0], [3.0, 1.0, 2.5], [2.0, 2.5, 1.5]])
CASES = [((7, 6), True, 2), ((5, 4), False, 4), ((8, 8), True, 4), ((4, 5, 6), False, 2), ((5, 5, 5), True, 1)]


def hamiltonian(shape, order, rng, form="potential"):
    phi, c = rng.normal(size=shape), rng.normal(size=shape)
    terms = (Contact(J, order=order, scale=0.7), Volume(lam=[0, 0.5, 0.3], target=[0, 4, 5]),
             Perimeter(lam=[0, 0.05, 0.02], target=[0, 10, 12], order=max(1, order - 1)),
             ExternalPotential(phi, [0.1, 0.5, -0.3]), Chemotaxis(c, [0.0, 1.0, 2.0], form=form),
             CellField(rng.normal(size=(6, *shape))))  # a field per id of random_state's six
    return terms, Hamiltonian(terms, temperature=2.0, copy_order=order)


def random_copies(state, order, rng, n):
    nb = state.lattice.neighbour_table(order)
    sig = state.sigma.ravel()
    out = []
    while len(out) < n:
        x = int(rng.integers(state.lattice.n_sites))
        y = int(nb[x, rng.integers(nb.shape[1])])
        if y < state.lattice.n_sites and sig[y] != sig[x]:
            out.append((x, y))
    return out


def random_state(shape, periodic, rng):
    sigma = rng.integers(0, 6, size=shape)
    sigma.ravel()[:6] = np.arange(6)
    return CPMState(Lattice(shape, periodic), sigma, np.array([0, 1, 2, 1, 2, 2]))


@pytest.mark.parametrize("shape,periodic,order", CASES)
def test_delta_equals_energy_difference(shape, periodic, order, rng):
    terms, ham = hamiltonian(shape, order, rng)
    for _ in range(3):
        st = random_state(shape, periodic, rng)
        for x, y in random_copies(st, order, rng, 15):
            new = st.copy()
            new.sigma.ravel()[x] = st.sigma.ravel()[y]
            for t in terms:  # each term on its own, then the sum
                assert t.delta(st, (x, y)) == pytest.approx(t.energy(new) - t.energy(st), abs=1e-9)
            assert ham.delta(st, (x, y)) == pytest.approx(ham.energy(new) - ham.energy(st), abs=1e-9)


@pytest.mark.parametrize("shape,periodic,order", CASES)
def test_compiled_delta_equals_readable(shape, periodic, order, rng):
    for form in ("potential", "copy"):
        _, ham = hamiltonian(shape, order, rng, form)
        st = random_state(shape, periodic, rng)
        eng = MetropolisSampler(st, ham)
        p = eng.params
        for x, y in random_copies(st, order, rng, 30):
            dk, ma, mb = K.local_delta(x, y, eng.sigma[y], eng.sigma[x], eng.sigma, p.ctype, p.nbr, eng.vol, eng.perim,
                                       p.J, p.lam_v, p.v_t, p.lam_p, p.p_t, p.phi, p.mu, p.chem, p.chi, p.cfield, p.n_prop,
                                       p.n_contact, p.n_perim, p.chem_form)
            assert dk == pytest.approx(ham.delta(st, (x, y)), abs=1e-9)
            nbx = eng.sigma[p.nbr[x, : p.n_prop]]
            assert (ma, mb) == (np.count_nonzero(nbx == eng.sigma[y]), np.count_nonzero(nbx == eng.sigma[x]))


def test_chemotaxis_copy_form(rng):
    st = random_state((6, 6), True, rng)
    c = rng.normal(size=(6, 6))
    term = Chemotaxis(c, [0.0, 1.5, -2.0], form="copy")
    with pytest.raises(TypeError, match="driving force"):
        term.energy(st)
    x, y = random_copies(st, 2, rng, 1)[0]
    chi_src = term.chi[st.cell_type[st.sigma.ravel()[y]]]
    assert term.delta(st, (x, y)) == pytest.approx(-chi_src * (c.ravel()[x] - c.ravel()[y]))


def test_contact_pair_normalisation():
    """Each unordered pair once: two single-site cells side by side on a walled 1×2 strip... (here 2×2)."""
    st = CPMState(Lattice((2, 2), periodic=False), np.array([[1, 2], [0, 0]]), np.array([0, 1, 2]))
    j = np.array([[0, 5.0, 7.0], [5.0, 0, 3.0], [7.0, 3.0, 0]])
    # order 1: pairs 1-2 (J=3), 1-0 below (5), 2-0 below (7); walls count as medium: cell 1 has 2
    # wall pairs (5 each), cell 2 has 2 (7 each); medium sites' wall pairs are medium-medium (0)
    assert Contact(j, order=1).energy(st) == pytest.approx(3 + 5 + 7 + 2 * 5 + 2 * 7)
    assert Contact(j, order=1, scale=0.25).energy(st) == pytest.approx(0.25 * 39)


@pytest.mark.parametrize("make,match", [
    (lambda: Contact(np.array([[0, 1.0], [2.0, 0]])), "symmetric"),
    (lambda: Contact(J, order=5), "order"),
    (lambda: Volume(lam=[0, 1.0], target=[0, 1, 2]), "n_types"),
    (lambda: Volume(lam=-1.0), ">= 0"),
    (lambda: Hamiltonian((), temperature=0.0), "temperature"),
    (lambda: Chemotaxis(np.zeros((3, 3)), [0, 1.0], form="gradient"), "form"),
])
def test_bad_parameters_name_the_field(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_state_validation():
    lat = Lattice((4, 4))
    with pytest.raises(ValueError, match="cell_type"):
        CPMState(lat, np.zeros((4, 4), int), np.array([1, 1]))
    with pytest.raises(ValueError, match="ids outside"):
        CPMState(lat, np.full((4, 4), 3), np.array([0, 1]))
    with pytest.raises(ValueError, match="periodic lattice needs"):
        Lattice((4, 4)).neighbour_table(4)
