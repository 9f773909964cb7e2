"""CPM samplers: sequential exact, parallel exact, and the NeuralCPM approximate parallel sampler.

All three share the incremental bookkeeping of :mod:`oncodyn.cpm.kernels` (flat ids with a wall
entry, volumes, perimeters, foreign-neighbour counts, border lists) and a checkpointable
xoshiro generator, so a run resumes bit-identically.

Time: one Monte Carlo step (MCS) is N random-site copy attempts (N = lattice sites). The exact
samplers skip the no-op attempts away from cell borders (see :mod:`oncodyn.cpm.kernels`), so the
work of one MCS is about |B| *border-site attempts* — the unit Artistoo counts, and the one our
``attempts`` counters and benchmarks report.

Samplers:

- :class:`MetropolisSampler` — exact (Metropolis–Hastings, reversible w.r.t. e^{−H/T}); with
  ``hastings=False`` the classic CPM acceptance min(1, e^{−ΔH/T}) used by Morpheus,
  CompuCell3D and Artistoo (not exactly Boltzmann; kinetics as published).
- :class:`ParallelMetropolisSampler` — the same chain's stationary law with ``n_threads``
  threads (slabs with random offsets; cells inside one slab move, see the kernels' docstring).
- :class:`ApproxParallelSampler` — NeuralCPM's sampler: K distinct border sites, one foreign
  neighbour each, all ΔH against the *same* state (batched; any callable can supply them, e.g.
  a neural Hamiltonian), accepted independently, applied together. **Approximate**: it is not
  detailed-balanced, because the K changes interact (a test reports its deviation).
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np

from oncodyn.core.fastrng import new_state
from oncodyn.cpm import kernels as K
from oncodyn.cpm.hamiltonians import Hamiltonian, Perimeter
from oncodyn.cpm.lattice import CPMState, neighbourhood_size


class _Engine:
    """Bookkeeping arrays of a state under a Hamiltonian (shared by the samplers).

    Args:
        state: initial state (copied; ``self.state.sigma`` is a live view of the engine's ids).
        hamiltonian: the Hamiltonian (compiled to arrays once).
        seed: random seed.
        n_streams: border lists / random streams to keep (1 for the sequential samplers, one per slab
            for the parallel one).
        hastings: exact Metropolis–Hastings acceptance (True) or the classic CPM one (False).
        connectivity: reject copies that would split a cell (or attach a site to a cell it does
            not touch) in the order-``connectivity_order`` neighbourhood.
    """

    def __init__(self, state: CPMState, hamiltonian: Hamiltonian, seed: int = 0, n_streams: int = 1,
                 hastings: bool = True, connectivity: bool = False, connectivity_order: int = 1):
        if not 1 <= connectivity_order <= hamiltonian.copy_order:
            raise ValueError(f"connectivity_order must be 1..copy_order={hamiltonian.copy_order}, got {connectivity_order}")
        vol0 = state.volumes()
        if np.any(vol0[1:] == 0):
            raise ValueError(f"cells {list(np.flatnonzero(vol0[1:] == 0) + 1)[:10]} have no site; relabel the state")
        self.hamiltonian = hamiltonian
        self.params = hamiltonian.compile(state)
        lat = state.lattice
        for o in hamiltonian.orders():
            if o:
                lat.check_order(o, "neighbourhood order")
        n = lat.n_sites
        self.n_sites, self.n_streams = n, int(n_streams)
        self.hastings, self.connectivity = bool(hastings), bool(connectivity)
        self.n_conn = neighbourhood_size(lat.ndim, connectivity_order)
        self.sigma = np.empty(n + 1, np.int32)
        self.sigma[:n] = state.sigma.ravel()
        self.sigma[n] = state.n_cells + 1  # the wall
        self.state = CPMState(lat, self.sigma[:n].reshape(lat.shape), state.cell_type.copy(), state.mcs)
        self.rng = new_state(seed, self.n_streams + 1)
        nt = self.n_streams
        self.blist = np.zeros((nt, n), np.int32)
        self.bpos = np.full(n, -1, np.int32)
        self.nborder = np.zeros(nt, np.int64)
        self.site_owner = np.zeros(n, np.int32)
        self.cell_owner = np.zeros(state.n_cells + 2, np.int32)
        m = n + 1 if self.connectivity else 1
        self.stamp = np.zeros((nt, m), np.int64)
        self.tstamp = np.zeros((nt, m), np.int64)
        self.queue = np.zeros((nt, m), np.int64)
        self.gens = np.zeros(nt, np.int64)
        self.attempts = 0
        self.accepted = 0
        self.step = 0
        self._recount()

    def _recount(self) -> None:
        """Volumes, perimeters and foreign-neighbour counts from the ids (after a load)."""
        p, n = self.params, self.n_sites
        self.vol = np.bincount(self.sigma, minlength=self.state.n_cells + 2).astype(np.int64)
        per = self.hamiltonian.term(Perimeter)
        self.perim = np.zeros(self.state.n_cells + 2, np.int64)
        if per is not None:
            self.perim[: self.state.n_cells + 1] = per.perimeters(self.state)
        self.ndiff = (self.sigma[:n, None] != self.sigma[p.nbr[:, : p.n_prop]]).sum(1).astype(np.int32)

    def _build_border(self) -> None:
        sites = np.flatnonzero(self.ndiff > 0)
        self.bpos[:] = -1
        self.blist[0, : len(sites)] = sites
        self.bpos[sites] = np.arange(len(sites))
        self.nborder[0] = len(sites)

    def _common(self):
        p = self.params
        return (p.J, p.lam_v, p.v_t, p.lam_p, p.p_t, p.phi, p.mu, p.chem, p.chi, p.cfield, p.n_prop, p.n_contact, p.n_perim,
                p.chem_form, p.temperature, self.hastings, self.connectivity, self.n_conn)

    @property
    def n_border(self) -> int:
        """Current number of border sites (sites with a foreign neighbour in the copy neighbourhood)."""
        return int(np.count_nonzero(self.ndiff > 0))

    def check(self) -> None:
        """Raise if the incremental bookkeeping differs from a recount (a debugging aid and a test)."""
        vol, perim, ndiff = self.vol.copy(), self.perim.copy(), self.ndiff.copy()
        self._recount()
        for name, kept, fresh in (("volumes", vol[1:-1], self.vol[1:-1]), ("perimeters", perim[1:-1], self.perim[1:-1]),
                                  ("foreign-neighbour counts", ndiff, self.ndiff)):
            if not np.array_equal(kept, fresh):
                raise AssertionError(f"incremental {name} differ from a recount")

    # checkpoint support -----------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"sigma": self.sigma.copy(), "rng": self.rng.copy(), "blist": self.blist.copy(), "bpos": self.bpos.copy(),
                "nborder": self.nborder.copy(), "mcs": np.array(self.state.mcs), "step": np.array(self.step),
                "counts": np.array([self.attempts, self.accepted])}

    def from_arrays(self, d: dict[str, np.ndarray]):
        self.sigma[:] = d["sigma"]
        self.rng[:] = d["rng"]
        self.blist[:] = d["blist"]
        self.bpos[:] = d["bpos"]
        self.nborder[:] = d["nborder"]
        self.state.mcs = float(d["mcs"])
        self.step = int(d["step"])
        self.attempts, self.accepted = (int(v) for v in d["counts"])
        self._recount()
        return self


class MetropolisSampler(_Engine):
    """Sequential exact Metropolis(–Hastings) on one core (see the module docstring)."""

    def __init__(self, state: CPMState, hamiltonian: Hamiltonian, seed: int = 0, hastings: bool = True,
                 connectivity: bool = False, connectivity_order: int = 1):
        super().__init__(state, hamiltonian, seed, 1, hastings, connectivity, connectivity_order)
        self._build_border()

    def sweep(self, mcs: float = 1.0) -> CPMState:
        """Advance by ``mcs`` Monte Carlo steps (``round(mcs · N)`` random-site attempts)."""
        budget = int(round(mcs * self.n_sites))
        p = self.params
        att, acc = K.sweep_sequential(budget, self.sigma, p.ctype, p.nbr, self.vol, self.perim, self.ndiff, self.blist,
                                      self.bpos, self.nborder, self.site_owner, self.cell_owner, self.rng, self.stamp,
                                      self.tstamp, self.queue, self.gens, *self._common())
        self.attempts += int(att)
        self.accepted += int(acc)
        self.state.mcs += budget / self.n_sites
        return self.state

    def from_arrays(self, d):
        super().from_arrays(d)
        return self


class ParallelMetropolisSampler(_Engine):
    """Exact parallel Metropolis(–Hastings) on slabs along axis 0, ``n_threads`` threads.

    Args:
        n_threads: threads (default: numba's thread count).
        phase_mcs: MCS per phase (per-phase overhead: one scan of the lattice).
        slabs_per_thread: slabs per thread, interleaved (default 2 when slabs stay at least twice as
            tall as the largest cell, else 1). Each slab must be taller than twice the
            neighbourhood reach plus one.

    Speed-up: the slabs get equal numbers of random-site attempts but their work is ∝ their
    border sites, so a single aggregate in one slab leaves the other thread idle (measured by
    ``oncodyn bench cpm``: 0.7× on a central 50-cell blob, 1.4× on 1,250 cells spread over
    1000×1000). Ergodicity needs every cell to fit inside one slab's interior: a cell taller than
    ``rows / n_slabs − 2·reach`` can never move.
    """

    def __init__(self, state: CPMState, hamiltonian: Hamiltonian, seed: int = 0, hastings: bool = True,
                 connectivity: bool = False, connectivity_order: int = 1, n_threads: int | None = None,
                 phase_mcs: float = 8.0, slabs_per_thread: int | None = None):
        nt = int(n_threads or numba.get_num_threads())
        if nt < 1:
            raise ValueError(f"n_threads must be >= 1, got {nt}")
        if not phase_mcs > 0:
            raise ValueError(f"phase_mcs must be > 0, got {phase_mcs}")
        lat = state.lattice
        reach = max(lat.reach(o) for o in hamiltonian.orders() if o)
        rows = lat.shape[0]
        if slabs_per_thread is None:  # 2 when the slabs stay tall enough for the cells, else 1
            mean_ext, max_ext = _cell_extents(state)
            slabs_per_thread = 2 if nt > 1 and rows // (2 * nt) - 2 * reach >= max(2 * mean_ext, max_ext + 1) else 1
        spt = int(slabs_per_thread)
        if spt < 1:
            raise ValueError(f"slabs_per_thread must be >= 1, got {spt}")
        if rows // (nt * spt) < 2 * reach + 2:
            raise ValueError(f"{nt * spt} slabs of a lattice with {rows} rows leave no interior for a neighbourhood "
                             f"reach of {reach}; use fewer threads")
        super().__init__(state, hamiltonian, seed, nt * spt, hastings, connectivity, connectivity_order)
        self.n_workers, self.n_slabs, self.reach, self.rows = nt, nt * spt, reach, rows
        self.phase_mcs = float(phase_mcs)

    def sweep(self, mcs: float = 1.0) -> CPMState:
        """Advance by about ``mcs`` MCS: ``ceil(mcs / phase_mcs)`` phases."""
        n_phases = max(1, int(np.ceil(mcs / self.phase_mcs - 1e-9)))
        frac = mcs / n_phases
        p = self.params
        old = numba.get_num_threads()
        numba.set_num_threads(min(self.n_workers, numba.config.NUMBA_NUM_THREADS))
        try:
            att, acc, rs = K.sweep_parallel(n_phases, frac, self.n_workers, self.n_slabs, self.rows, self.reach,
                                            self.state.lattice.periodic, self.sigma, p.ctype, p.nbr, self.vol,
                                            self.perim, self.ndiff, self.blist, self.bpos, self.nborder,
                                            self.site_owner, self.cell_owner, self.rng, self.stamp, self.tstamp,
                                            self.queue, self.gens, *self._common())
        finally:
            numba.set_num_threads(old)
        self.attempts += int(att)
        self.accepted += int(acc)
        self.state.mcs += rs / self.n_sites
        return self.state


def _cell_extents(state: CPMState) -> tuple[float, int]:
    """Mean and largest extent of the cells along axis 0 (sites), ignoring periodic wrap-around."""
    sig = state.sigma.reshape(state.lattice.shape[0], -1)
    rows = np.nonzero(sig)[0]
    ids = sig[sig != 0]
    if len(ids) == 0:
        return 0.0, 0
    lo = np.full(state.n_cells + 1, np.iinfo(np.int64).max)
    hi = np.full(state.n_cells + 1, -1)
    np.minimum.at(lo, ids, rows)
    np.maximum.at(hi, ids, rows)
    ext = (hi[1:] - lo[1:] + 1)
    ext = ext[ext > 0]
    return float(ext.mean()), int(ext.max())


DeltaFn = Callable[[CPMState, np.ndarray, np.ndarray], np.ndarray]


class ApproxParallelSampler(_Engine):
    """NeuralCPM's approximate parallel sampler (not detailed-balanced; see the module docstring).

    Args:
        k: proposals per step (distinct border sites).
        delta_fn: ``delta_fn(state, targets [k], sources [k]) -> ΔH [k]`` against the current
            state; default: the analytic Hamiltonian's local ΔH (compiled, batched).
        k_frac: if given, k = max(1, k_frac × the number of border sites) instead of ``k``: with
            ``delta_fn``, recomputed at every step from the current border (a state that
            fragments grows its border, and a fixed k would then need ever more steps per MCS);
            for the compiled analytic path, fixed from the initial border.
    """

    def __init__(self, state: CPMState, hamiltonian: Hamiltonian, seed: int = 0, k: int = 100,
                 delta_fn: DeltaFn | None = None, k_frac: float | None = None):
        if k < 1 or (k_frac is not None and not k_frac > 0):
            raise ValueError(f"k must be >= 1 and k_frac > 0, got {k}, {k_frac}")
        super().__init__(state, hamiltonian, seed, 1, False, False, 1)
        self._build_border()
        if k_frac is not None:
            k = max(1, int(k_frac * int(self.nborder[0])))
        self.k, self.delta_fn = int(k), delta_fn
        self.k_frac = k_frac if delta_fn is not None else None  # adaptive k (see the docstring)
        cap = self.n_sites if self.k_frac is not None else self.k
        self.mark = np.zeros(self.n_sites, np.int64)
        self.targets = np.zeros(cap, np.int64)
        self.sources = np.zeros(cap, np.int64)
        self.new_ids = np.zeros(cap, np.int32)
        self.dh = np.zeros(cap)

    def propose(self) -> int:
        """Fill ``targets``/``sources``/``new_ids`` with up to k proposals; returns how many."""
        return int(K.approx_propose(self.k, self.sigma, self.params.nbr, self.params.n_prop, self.blist,
                                    self.nborder, self.rng, self.mark, self.gens, self.targets, self.sources,
                                    self.new_ids))

    def deltas(self, n: int) -> np.ndarray:
        """ΔH of the first ``n`` proposals against the current state."""
        if self.delta_fn is not None:
            return np.asarray(self.delta_fn(self.state, self.targets[:n], self.sources[:n]), float)
        p = self.params
        K.batch_delta(n, self.targets, self.sources, self.new_ids, self.sigma, p.ctype, p.nbr, self.vol, self.perim,
                      p.J, p.lam_v, p.v_t, p.lam_p, p.p_t, p.phi, p.mu, p.chem, p.chi, p.cfield, p.n_prop, p.n_contact,
                      p.n_perim, p.chem_form, self.dh)
        return self.dh[:n]

    def step_once(self) -> int:
        """One batch: propose, evaluate, accept independently, apply; returns copies applied."""
        nb = max(int(self.nborder[0]), 1)
        if self.k_frac is not None:
            self.k = max(1, min(int(self.k_frac * nb), self.n_sites))
        n = self.propose()
        if n == 0:
            return 0
        dh = self.deltas(n)
        u = self.rng_uniform(n)
        accept = np.log(np.maximum(u, 1e-300)) < -dh / self.params.temperature
        done = K.approx_apply(n, self.targets, self.new_ids, accept, self.sigma, self.params.nbr, self.vol, self.perim,
                              self.ndiff, self.params.n_prop, self.params.n_perim, self.site_owner, self.blist,
                              self.bpos, self.nborder)
        self.attempts += n
        self.accepted += int(done)
        # each border-site proposal stands for N / |B| random-site attempts
        self.state.mcs += n / nb
        return int(done)

    def rng_uniform(self, n: int) -> np.ndarray:
        from oncodyn.core.fastrng import uniform_array

        return uniform_array(self.rng, 0, n)

    def sweep(self, mcs: float = 1.0) -> CPMState:
        """Batches until ``mcs`` more MCS have elapsed (each batch adds k / |B| MCS)."""
        if self.delta_fn is None:  # the whole loop compiled
            p = self.params
            props, applied, done = K.approx_sweep(mcs, self.k, self.sigma, p.ctype, p.nbr, self.vol, self.perim,
                                                  self.ndiff, self.blist, self.bpos, self.nborder, self.site_owner,
                                                  self.rng, self.mark, self.gens, self.targets, self.sources,
                                                  self.new_ids, self.dh, p.J, p.lam_v, p.v_t, p.lam_p, p.p_t, p.phi,
                                                  p.mu, p.chem, p.chi, p.cfield, p.n_prop, p.n_contact, p.n_perim, p.chem_form,
                                                  p.temperature)
            self.attempts += int(props)
            self.accepted += int(applied)
            self.state.mcs += mcs if self.nborder[0] == 0 else float(done)
            return self.state
        end = self.state.mcs + mcs
        while self.state.mcs < end - 1e-12:
            if self.nborder[0] == 0:
                self.state.mcs = end
                break
            self.step_once()
        return self.state


SAMPLERS = {"exact": MetropolisSampler, "parallel": ParallelMetropolisSampler, "approx": ApproxParallelSampler}


def make_sampler(kind: str, state: CPMState, hamiltonian: Hamiltonian, seed: int = 0, **kw) -> _Engine:
    """A sampler by name: ``exact`` | ``parallel`` | ``approx`` (keyword options as the classes)."""
    if kind not in SAMPLERS:
        raise ValueError(f"sampler must be one of {sorted(SAMPLERS)}, got {kind!r}")
    return SAMPLERS[kind](state, hamiltonian, seed=seed, **kw)
