"""Exactness of CPM samplers on lattices small enough to enumerate every state.

The stationary law of an exact sampler is the Boltzmann distribution p(σ) ∝ exp(−H(σ)/T) over
the states it can reach. On a tiny lattice we list those states, compute their weights from
:meth:`Hamiltonian.energy`, run a sampler, and compare the visit frequencies with a χ² test
(bins with an expected count below 5 are pooled). The total-variation distance between the
empirical and the Boltzmann law is reported for every sampler, including the approximate one.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy import stats

from oncodyn.cpm.hamiltonians import Hamiltonian
from oncodyn.cpm.lattice import CPMState, Lattice
from oncodyn.cpm.observables import components_per_cell


def enumerate_states(lattice: Lattice, cell_type: np.ndarray, ids, max_volume: int | None = None,
                     connected: bool = False) -> np.ndarray:
    """Every id map over ``ids`` in which each cell (id ≥ 1 in ``ids``) has 1..max_volume sites.

    Returns ``[n_states, n_sites]`` int32. ``connected`` keeps only states whose cells are each
    one 4-/6-connected component (for the connectivity constraint).
    """
    n = lattice.n_sites
    ids = np.asarray(sorted(ids), np.int32)
    cells = [int(c) for c in ids if c > 0]
    if connected and max_volume is not None and list(ids) == [0, cells[0]] and len(cells) == 1:
        return _connected_sets(lattice, cells[0], int(max_volume))
    if max_volume is not None and 0 in ids:
        out = _sparse_states(n, cells, int(max_volume))
    else:
        if len(ids) ** n > 5e6:
            raise ValueError(f"{len(ids)}^{n} states are too many to enumerate")
        allst = np.array(list(itertools.product(ids, repeat=n)), np.int32)
        keep = np.ones(len(allst), bool)
        for c in ids[ids > 0]:
            v = (allst == c).sum(1)
            keep &= v >= 1
            if max_volume is not None:
                keep &= v <= max_volume
        out = allst[keep]
    if connected:
        ok = [np.all(components_per_cell(CPMState(lattice, s.reshape(lattice.shape), cell_type))[1:] <= 1) for s in out]
        out = out[np.array(ok, bool)]
    return out


def _connected_sets(lattice: Lattice, cell: int, max_volume: int) -> np.ndarray:
    """One cell on every 4-/6-connected site set of 1..max_volume sites, medium elsewhere."""
    nbr = lattice.neighbour_table(1)
    n = lattice.n_sites
    level = {frozenset([x]) for x in range(n)}
    found = set(level)
    for _ in range(max_volume - 1):
        nxt = set()
        for cset in level:
            for x in cset:
                for z in nbr[x]:
                    if z < n and z not in cset:
                        nxt.add(cset | {int(z)})
        nxt -= found
        found |= nxt
        level = nxt
    out = np.zeros((len(found), n), np.int32)
    for i, cset in enumerate(sorted(found, key=lambda c: (len(c), sorted(c)))):
        out[i, list(cset)] = cell
    return out


def _sparse_states(n: int, cells: list[int], max_volume: int) -> np.ndarray:
    """Medium everywhere except the cells, each on 1..max_volume sites (disjoint site sets)."""
    out: list[np.ndarray] = []

    def place(sigma: np.ndarray, i: int) -> None:
        if i == len(cells):
            out.append(sigma.copy())
            return
        free = np.flatnonzero(sigma == 0)
        for v in range(1, max_volume + 1):
            for sites in itertools.combinations(free, v):
                sigma[list(sites)] = cells[i]
                place(sigma, i + 1)
                sigma[list(sites)] = 0

    place(np.zeros(n, np.int32), 0)
    return np.array(out, np.int32)


def boltzmann(states: np.ndarray, lattice: Lattice, cell_type: np.ndarray, ham: Hamiltonian) -> np.ndarray:
    """Normalised exp(−H/T) over ``states`` ``[n_states, n_sites]``."""
    e = np.array([ham.energy(CPMState(lattice, s.reshape(lattice.shape), cell_type)) for s in states])
    w = np.exp(-(e - e.min()) / ham.temperature)
    return w / w.sum()


@dataclass
class ExactnessResult:
    """Outcome of one sampler run on an enumerable lattice.

    Attributes:
        chi2, dof, p_value: Pearson χ² test of the visit counts against the Boltzmann law.
        tv_distance: ½ Σ |p̂ − p| over the states.
        n_samples: recorded states; unseen: states reached that are not in the enumeration (0 if exact).
    """

    chi2: float
    dof: int
    p_value: float
    tv_distance: float
    n_samples: int
    unseen: int


def chi2_against(counts: np.ndarray, probs: np.ndarray, min_expected: float = 5.0) -> tuple[float, int, float]:
    """Pearson χ² of ``counts`` against ``probs``, pooling the bins expected below ``min_expected``."""
    n = counts.sum()
    exp = probs * n
    big = exp >= min_expected
    obs_b, exp_b = list(counts[big]), list(exp[big])
    if (~big).any():
        obs_b.append(counts[~big].sum())
        exp_b.append(exp[~big].sum())
    obs_b, exp_b = np.array(obs_b, float), np.array(exp_b)
    chi2 = float(((obs_b - exp_b) ** 2 / exp_b).sum())
    dof = len(obs_b) - 1
    return chi2, dof, float(stats.chi2.sf(chi2, dof))


def sample_frequencies(sampler, states: np.ndarray, n_samples: int, thin_mcs: float, burn_mcs: float = 20.0
                       ) -> tuple[np.ndarray, int]:
    """Run ``sampler`` and count visits of each enumerated state every ``thin_mcs`` MCS.

    Returns (counts ``[n_states]``, number of recorded states not in the enumeration).
    """
    index = {row.tobytes(): i for i, row in enumerate(np.ascontiguousarray(states, np.int32))}
    counts = np.zeros(len(states), np.int64)
    unseen = 0
    sampler.sweep(burn_mcs)
    sig = sampler.state.sigma.ravel()
    for _ in range(n_samples):
        sampler.sweep(thin_mcs)
        i = index.get(sig.astype(np.int32).tobytes())
        if i is None:
            unseen += 1
        else:
            counts[i] += 1
    return counts, unseen


def translation_classes(states: np.ndarray, lattice: Lattice) -> np.ndarray:
    """Class id per state ``[n_states]``: states equal up to a lattice translation share a class.

    On a periodic lattice H is translation invariant, so comparing class frequencies tests the
    shape statistics without waiting for the slow diffusion of positions.
    """
    if not lattice.periodic:
        raise ValueError("translation classes need a periodic lattice")
    grids = np.ascontiguousarray(states, np.int32).reshape(len(states), *lattice.shape)
    axes = tuple(range(1, lattice.ndim + 1))
    best = [None] * len(states)
    for shift in itertools.product(*[range(s) for s in lattice.shape]):
        rolled = np.ascontiguousarray(np.roll(grids, shift, axis=axes)).reshape(len(states), -1)
        for i, row in enumerate(rolled):
            key = row.tobytes()
            if best[i] is None or key < best[i]:
                best[i] = key
    return np.unique(best, return_inverse=True)[1]


def exactness(sampler, states: np.ndarray, probs: np.ndarray, n_samples: int, thin_mcs: float = 2.0,
              classes: np.ndarray | None = None) -> ExactnessResult:
    """χ² test and total-variation distance of a sampler against the Boltzmann law ``probs``.

    ``classes`` (optional, ``[n_states]`` ints) pools the states into classes first.
    """
    counts, unseen = sample_frequencies(sampler, states, n_samples, thin_mcs)
    if classes is not None:
        counts = np.bincount(classes, weights=counts).astype(np.int64)
        probs = np.bincount(classes, weights=probs)
    chi2, dof, p = chi2_against(counts, probs)
    tv = 0.5 * float(np.abs(counts / max(counts.sum(), 1) - probs).sum())
    return ExactnessResult(chi2, dof, p, tv, int(counts.sum()), unseen)


# ----------------------------------------------------------------------------- the enumerable cases


@dataclass
class EnumerableCase:
    """A tiny CPM whose states are listed: start state, Hamiltonian, states, Boltzmann law, classes."""

    name: str
    start: CPMState
    hamiltonian: Hamiltonian
    states: np.ndarray
    probs: np.ndarray
    classes: np.ndarray | None = None
    connectivity: bool = False
    thin_mcs: float = 20.0


def two_cells_3x3() -> EnumerableCase:
    """3×3 walled lattice filled by two cells (510 states): contact + volume + perimeter, T = 8."""
    from oncodyn.cpm.hamiltonians import Contact, Perimeter, Volume

    lat = Lattice((3, 3), periodic=False)
    ct = np.array([0, 1, 2])
    j = np.array([[0, 3, 2], [3, 1, 2.5], [2, 2.5, 1.0]])
    ham = Hamiltonian((Contact(j, order=2), Volume(lam=[0, 0.5, 0.3], target=[0, 4, 5]),
                       Perimeter(lam=[0, 0.05, 0.02], target=[0, 10, 12], order=2)), temperature=8.0, copy_order=2)
    states = enumerate_states(lat, ct, [1, 2])
    start = CPMState(lat, np.array([[1, 1, 1], [1, 2, 2], [2, 2, 2]]), ct)
    return EnumerableCase("3×3 walled, two cells, no medium", start, ham, states, boltzmann(states, lat, ct, ham),
                          thin_mcs=40.0)


def one_cell_strip(rows: int = 12) -> EnumerableCase:
    """``rows``×3 periodic lattice, one connected cell of 1..6 sites in medium (152 shapes).

    12 rows hold two slabs of the parallel sampler, 24 rows four (two per thread, interleaved);
    states are compared up to translation.
    """
    from oncodyn.cpm.hamiltonians import Contact, Perimeter, Volume

    lat = Lattice((rows, 3), periodic=True)
    ct = np.array([0, 1])
    ham = Hamiltonian((Contact(np.array([[0, 1.0], [1.0, 0]]), order=1), Volume(lam=1.0, target=3, n_types=1),
                       Perimeter(lam=0.1, target=6, order=1, n_types=1)), temperature=1.5, copy_order=1)
    states = enumerate_states(lat, ct, [0, 1], max_volume=6, connected=True)
    start = CPMState(lat, np.array([[1, 1, 0]] + [[0, 0, 0]] * (rows - 1)), ct)
    return EnumerableCase(f"{rows}×3 periodic, one connected cell in medium (by shape)", start, ham, states,
                          boltzmann(states, lat, ct, ham), translation_classes(states, lat), connectivity=True,
                          thin_mcs=20.0)
