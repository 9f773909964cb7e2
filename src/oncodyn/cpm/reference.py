r"""The exact CPM sampler in plain Python: the readable reference and the benchmark baseline.

This is the Metropolis–Hastings chain of :mod:`oncodyn.cpm.kernels` written the way one would
write it by hand, with no compiled code and no border-list tricks:

1. pick a site x uniformly among all N sites and a neighbour y uniformly among the first
   ``n_prop`` neighbours of x (the copy neighbourhood); the proposal is σ(x): b → a, with
   b = σ(x), a = σ(y);
2. no-ops: a wall neighbour (index N, id ``n_cells + 1``), the same id (a = b), and the
   zero-volume veto (a cell of one site may not lose it);
3. ΔH from the local formulas (neighbours of x, and the kept volumes and perimeters of a and b):

   - contact over the first ``n_contact`` neighbours z:
     :math:`\sum_z J(\tau_a,\tau_z)[\sigma_z\ne a] - J(\tau_b,\tau_z)[\sigma_z\ne b]`;
   - volume: :math:`\lambda_a((V_a+1-V^*_a)^2-(V_a-V^*_a)^2) + \lambda_b((V_b-1-V^*_b)^2-(V_b-V^*_b)^2)`;
   - perimeter, with :math:`m^P_c` = neighbours of x with id c in the perimeter neighbourhood of
     size ``n_perim``: :math:`\Delta P_a = n_{perim} - 2m^P_a`, :math:`\Delta P_b = 2m^P_b - n_{perim}`;
   - external potential :math:`\Phi(x)(\mu_{\tau_a}-\mu_{\tau_b})`;
   - chemotaxis, form "copy": :math:`-\chi_{\tau_a}(c(x)-c(y))`; form "potential":
     :math:`-c(x)(\chi_{\tau_a}-\chi_{\tau_b})`;

   (the medium, id 0, has no volume or perimeter term);
4. accept with probability :math:`\min(1, e^{-\Delta H/T}\, m_b/m_a)`, where :math:`m_c` counts
   the neighbours of x with id c in the copy neighbourhood (the Hastings factor: the proposal
   picks a with probability ∝ m_a, the reverse move picks b ∝ m_b); if m_b = 0 the reverse
   move is impossible and the copy is rejected. ``hastings=False`` gives the classic CPM
   acceptance :math:`\min(1, e^{-\Delta H/T})`.

The state is held in Python lists (ids with one extra wall entry, a neighbour table as lists of
lists, the Hamiltonian's arrays from :meth:`Hamiltonian.compile` as floats), and the volumes and
perimeters are updated incrementally on every accepted copy. One MCS is N attempts. A test holds
this chain to the Boltzmann law on an enumerable lattice and its ΔH to :meth:`Hamiltonian.delta`;
``oncodyn bench cpm`` uses it as the "pure Python" baseline.
"""

from __future__ import annotations

import math

import numpy as np

from oncodyn.cpm.hamiltonians import Hamiltonian, Perimeter
from oncodyn.cpm.lattice import CPMState


class PythonMetropolis:
    """A CPM state as Python lists and the exact sampler's attempt loop over them.

    ``sigma`` [N + 1] (last entry = the wall id), ``nbr`` [N][n], ``vol`` and ``perim`` per id
    [n_cells + 2] (the medium's and the wall's entries unused). :meth:`write_back` copies the
    ids into ``state.sigma``.
    """

    def __init__(self, state: CPMState, hamiltonian: Hamiltonian, hastings: bool = True):
        p = hamiltonian.compile(state)
        self.state, self.hastings = state, bool(hastings)
        self.n_sites = state.lattice.n_sites
        self.wall = state.n_cells + 1
        self.sigma = state.sigma.ravel().tolist() + [self.wall]
        self.nbr = p.nbr.tolist()
        self.ctype = p.ctype.tolist()
        self.J = p.J.tolist()
        self.lam_v, self.v_t = p.lam_v.tolist(), p.v_t.tolist()
        self.lam_p, self.p_t = p.lam_p.tolist(), p.p_t.tolist()
        self.phi, self.mu = p.phi.tolist(), p.mu.tolist()
        self.chem, self.chi = p.chem.tolist(), p.chi.tolist()
        self.cfield = p.cfield.tolist()
        self.n_prop, self.n_contact, self.n_perim = p.n_prop, p.n_contact, p.n_perim
        self.chem_form, self.temperature = p.chem_form, p.temperature
        self.vol = np.bincount(state.sigma.ravel(), minlength=state.n_cells + 2).tolist()
        per = hamiltonian.term(Perimeter)
        self.perim = (per.perimeters(state).tolist() if per is not None else [0] * (state.n_cells + 1)) + [0]

    def delta(self, x: int, y: int) -> tuple[float, int, int]:
        """(ΔH, m_a, m_b) of copying a = σ(y) into x (b = σ(x))."""
        return local_delta_python(self, x, y)

    def flip(self, x: int, a: int, b: int) -> None:
        """Set σ(x) = a (was b) and update the volumes and perimeters of a and b."""
        self.sigma[x] = a
        mpa = mpb = 0
        for z in self.nbr[x][: self.n_perim]:
            if self.sigma[z] == a:
                mpa += 1
            elif self.sigma[z] == b:
                mpb += 1
        if a != 0:
            self.vol[a] += 1
            self.perim[a] += self.n_perim - 2 * mpa
        if b != 0:
            self.vol[b] -= 1
            self.perim[b] += 2 * mpb - self.n_perim

    def run(self, n_attempts: int, rng: np.random.Generator, chunk: int = 65536) -> tuple[int, int]:
        """``n_attempts`` random-site attempts; returns (attempts whose neighbour held another
        cell id or the medium, i.e. not the same id and not the wall; accepted copies)."""
        sigma, nbr, vol = self.sigma, self.nbr, self.vol
        inv_t = 1.0 / self.temperature
        proposed = accepted = 0
        done = 0
        while done < n_attempts:
            n = min(chunk, n_attempts - done)
            done += n
            # random numbers drawn in blocks (one call per attempt would dominate the time)
            xs = rng.integers(0, self.n_sites, n).tolist()
            js = rng.integers(0, self.n_prop, n).tolist()
            us = rng.random(n).tolist()
            for x, j, u in zip(xs, js, us):
                y = nbr[x][j]
                a, b = sigma[y], sigma[x]
                if a == b or a == self.wall:
                    continue
                proposed += 1
                if b != 0 and vol[b] <= 1:
                    continue  # a copy may not delete a cell
                dh, ma, mb = local_delta_python(self, x, y)
                if self.hastings:
                    if mb == 0:
                        continue  # the reverse copy could never be proposed
                    w = -dh * inv_t + math.log(mb / ma)
                else:
                    w = -dh * inv_t
                if w < 0.0 and u >= math.exp(w):
                    continue
                self.flip(x, a, b)
                accepted += 1
        return proposed, accepted

    def write_back(self) -> None:
        """Copy the ids into ``state.sigma`` (in place)."""
        self.state.sigma.ravel()[:] = self.sigma[: self.n_sites]


def local_delta_python(m: PythonMetropolis, x: int, y: int) -> tuple[float, int, int]:
    """ΔH of σ(x): b → a = σ(y), and (m_a, m_b) in the copy neighbourhood, from ``m``'s lists."""
    sigma, ctype = m.sigma, m.ctype
    a, b = sigma[y], sigma[x]
    ta, tb = ctype[a], ctype[b]
    dh = 0.0
    for z in m.nbr[x][: m.n_contact]:  # contact: pairs (x, z) gained by a, lost by b
        s = sigma[z]
        if s != a:
            dh += m.J[ta][ctype[s]]
        if s != b:
            dh -= m.J[tb][ctype[s]]
    copy_ids = [sigma[z] for z in m.nbr[x][: m.n_prop]]
    ma, mb = copy_ids.count(a), copy_ids.count(b)
    if a != 0:  # volume: a gains a site, b loses one
        dh += m.lam_v[a] * ((m.vol[a] + 1 - m.v_t[a]) ** 2 - (m.vol[a] - m.v_t[a]) ** 2)
    if b != 0:
        dh += m.lam_v[b] * ((m.vol[b] - 1 - m.v_t[b]) ** 2 - (m.vol[b] - m.v_t[b]) ** 2)
    if m.n_perim > 0:
        perim_ids = [sigma[z] for z in m.nbr[x][: m.n_perim]]
        if a != 0:
            dpa = m.n_perim - 2 * perim_ids.count(a)
            dh += m.lam_p[a] * ((m.perim[a] + dpa - m.p_t[a]) ** 2 - (m.perim[a] - m.p_t[a]) ** 2)
        if b != 0:
            dpb = 2 * perim_ids.count(b) - m.n_perim
            dh += m.lam_p[b] * ((m.perim[b] + dpb - m.p_t[b]) ** 2 - (m.perim[b] - m.p_t[b]) ** 2)
    if m.phi:  # external potential
        dh += m.phi[x] * (m.mu[ta] - m.mu[tb])
    if m.cfield:  # a field per cell id
        dh += m.cfield[a][x] - m.cfield[b][x]
    if m.chem:  # chemotaxis
        if m.chem_form == 0:
            dh -= m.chi[ta] * (m.chem[x] - m.chem[y])
        else:
            dh -= m.chem[x] * (m.chi[ta] - m.chi[tb])
    return dh, ma, mb


def metropolis_python(state: CPMState, hamiltonian: Hamiltonian, n_attempts: int, rng: np.random.Generator,
                      hastings: bool = True) -> tuple[int, int]:
    """``n_attempts`` random-site Metropolis(–Hastings) attempts on ``state`` in plain Python.

    Modifies ``state.sigma`` in place and advances ``state.mcs`` by ``n_attempts / N``. Returns
    (attempts with a different id at the chosen neighbour, accepted copies).
    """
    m = PythonMetropolis(state, hamiltonian, hastings)
    out = m.run(int(n_attempts), rng)
    m.write_back()
    state.mcs += int(n_attempts) / m.n_sites
    return out
