"""The pure-Python reference sampler: bookkeeping, local ΔH, and exactness on an enumerable lattice."""

import numpy as np
import pytest

from oncodyn.cpm import exactness as exactness_cases
from oncodyn.cpm.exactness import chi2_against
from oncodyn.cpm.hamiltonians import CellField, Chemotaxis, Contact, ExternalPotential, Hamiltonian, Perimeter, Volume
from oncodyn.cpm.lattice import Lattice, voronoi_blob
from oncodyn.cpm.reference import PythonMetropolis, metropolis_python


def two_cells_3x3():
    c = exactness_cases.two_cells_3x3()
    return c.start, c.hamiltonian, c.states, c.probs


def full_case(shape, periodic, chem_form="copy", seed=3):
    """A blob with every term: contact (order 2), volume, perimeter (order 3), potential, chemotaxis."""
    lat = Lattice(shape, periodic)
    rng = np.random.default_rng(seed)
    st = voronoi_blob(lat, 8, 25, rng)
    j = np.array([[0, 16, 12], [16, 2, 11], [12, 11, 14.0]])
    ham = Hamiltonian((Contact(j, order=2), Volume(lam=[0, 1.0, 0.7], target=[0, 25, 30]),
                       Perimeter(lam=[0, 0.2, 0.1], target=[0, 18, 22], order=3),
                       ExternalPotential(rng.normal(size=shape), mu=[0.3, -1.0, 2.0]),
                       Chemotaxis(rng.uniform(0, 5, size=shape), chi=[0.5, 3.0, -2.0], form=chem_form),
                       CellField(rng.normal(size=(st.n_cells + 1, *shape)))),
                      temperature=12.0, copy_order=2)
    return st, ham


@pytest.mark.parametrize("shape,periodic", [((24, 20), True), ((18, 22), False)])
def test_kept_volumes_and_perimeters_match_recount(shape, periodic):
    st, ham = full_case(shape, periodic)
    m = PythonMetropolis(st, ham)
    rng = np.random.default_rng(0)
    proposed, accepted = m.run(40 * st.lattice.n_sites, rng)
    assert accepted > 0 and proposed >= accepted
    m.write_back()
    n = st.n_cells
    assert m.vol[1:n + 1] == st.volumes()[1:].tolist()
    assert m.perim[1:n + 1] == ham.term(Perimeter).perimeters(st)[1:].tolist()
    assert np.all(st.volumes()[1:] >= 1)  # zero-volume veto


@pytest.mark.parametrize("chem_form", ["copy", "potential"])
@pytest.mark.parametrize("periodic", [True, False])
def test_local_delta_matches_hamiltonian_delta(chem_form, periodic):
    st, ham = full_case((16, 18), periodic, chem_form)
    rng = np.random.default_rng(1)
    metropolis_python(st, ham, 20 * st.lattice.n_sites, rng)  # move off the initial state
    m = PythonMetropolis(st, ham)
    N, checked = st.lattice.n_sites, 0
    while checked < 200:
        x = int(rng.integers(N))
        y = m.nbr[x][int(rng.integers(m.n_prop))]
        if y == N or m.sigma[y] == m.sigma[x]:
            continue
        dh, ma, mb = m.delta(x, y)
        assert dh == pytest.approx(ham.delta(st, (x, y)), abs=1e-9)
        nbx = [m.sigma[z] for z in m.nbr[x][: m.n_prop]]
        assert (ma, mb) == (nbx.count(m.sigma[y]), nbx.count(m.sigma[x]))
        checked += 1


def sample_3x3(hastings, n_samples=3000, thin=20, seed=7):
    """χ² p-value of the reference's visits (every ``thin`` MCS) against the Boltzmann law."""
    start, ham, states, probs = two_cells_3x3()
    state = start.copy()
    n = state.lattice.n_sites
    rng = np.random.default_rng(seed)
    code = {tuple(s): i for i, s in enumerate(states.tolist())}
    counts = np.zeros(len(states), np.int64)
    metropolis_python(state, ham, 20 * n, rng, hastings)  # burn in
    for _ in range(n_samples):
        metropolis_python(state, ham, thin * n, rng, hastings)
        counts[code[tuple(state.sigma.ravel().tolist())]] += 1
    assert state.mcs == pytest.approx(20 + n_samples * thin)
    return chi2_against(counts, probs)


def test_reference_matches_boltzmann_on_3x3():
    chi2, dof, p = sample_3x3(hastings=True)
    assert p > 0.01, (chi2, dof, p)


def test_classic_acceptance_deviates_on_3x3():
    """The same test at the same size sees the classic acceptance's bias (it has power)."""
    chi2, dof, p = sample_3x3(hastings=False)
    assert p < 1e-6, (chi2, dof, p)
