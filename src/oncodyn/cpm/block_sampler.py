r"""Delayed-acceptance sampler for a closure Hamiltonian ``H = H_a + H_c`` (analytic + network correction).

A closure's analytic part is cheap (compiled, local ΔH) and its network part is expensive (one
forward pass per energy). Proposing single-site copies and evaluating the network for each costs
a network ΔH per proposal. Here the analytic part proposes and the network only accepts:

1. from the current state ``x``, run ``block_mcs`` MCS of the compiled CPM sampler under ``H_a``
   (a fixed number of attempts), giving ``y``;
2. accept ``y`` with probability :math:`\min(1, e^{-(H_c(y) - H_c(x))/T})`, else stay at ``x``.

If the block kernel :math:`K_a` is reversible with respect to :math:`\pi_a \propto e^{-H_a/T}` (the
exact Metropolis–Hastings sampler: each random-site update is reversible, hence so is any power of
it), this is a Metropolis–Hastings chain whose stationary law is exactly
:math:`\propto e^{-(H_a + H_c)/T}` (the proposal ratio :math:`K_a(y,x)/K_a(x,y) = \pi_a(x)/\pi_a(y)`
cancels the analytic energy). With the classic CPM kinetics as the block kernel (not reversible
with respect to a Boltzmann law) the chain targets the classic kinetics' stationary law reweighted
by :math:`e^{-H_c/T}` — the natural closure of data made by classic kinetics.

The network is evaluated once per block, so a chain can run tens of MCS for the price of a few
forward passes; the acceptance rate (:attr:`BlockSampler.accepted` / :attr:`BlockSampler.blocks`)
falls as blocks grow or the correction steepens.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from oncodyn.cpm.hamiltonians import Hamiltonian
from oncodyn.cpm.lattice import CPMState
from oncodyn.cpm.samplers import MetropolisSampler


class BlockSampler:
    """Blocks of the compiled analytic CPM accepted by a correction energy (see the module docstring).

    Args:
        state: the start (copied).
        analytic: the compiled analytic Hamiltonian ``H_a`` at temperature ``T`` (its
            ``temperature`` is the T of the acceptance too).
        correction: ``correction(state) -> float``, the energy ``H_c`` (same units as ``H_a``).
        block_mcs: MCS per block (> 0).
        kinetics: ``exact`` (Metropolis–Hastings; the chain is then exact) or ``classic``.
        seed: random seed.
    """

    def __init__(self, state: CPMState, analytic: Hamiltonian, correction: Callable[[CPMState], float],
                 block_mcs: float = 1.0, kinetics: str = "exact", seed: int = 0):
        if not block_mcs > 0:
            raise ValueError(f"block_mcs must be > 0, got {block_mcs}")
        if kinetics not in ("exact", "classic"):
            raise ValueError(f"kinetics must be 'exact' or 'classic', got {kinetics!r}")
        self.state, self.analytic, self.correction = state.copy(), analytic, correction
        self.block_mcs, self.kinetics = float(block_mcs), kinetics
        self.rng = np.random.default_rng(seed)
        self.e_c = float(correction(self.state))
        self.blocks = 0
        self.accepted = 0

    def sweep(self, mcs: float) -> CPMState:
        """Blocks until ``mcs`` MCS have been proposed (the last block is shortened to fit)."""
        left = float(mcs)
        while left > 1e-12:
            m = min(self.block_mcs, left)
            smp = MetropolisSampler(self.state.copy(), self.analytic, seed=int(self.rng.integers(2**62)),
                                    hastings=self.kinetics == "exact")
            smp.sweep(m)
            y = smp.state
            e_y = float(self.correction(y))
            self.blocks += 1
            if math.log(max(self.rng.random(), 1e-300)) < -(e_y - self.e_c) / self.analytic.temperature:
                self.state.sigma[...] = y.sigma  # in place: callers may hold the lattice array
                self.e_c = e_y
                self.accepted += 1
            self.state.mcs += m
            left -= m
        return self.state

    @property
    def acceptance(self) -> float:
        """Fraction of accepted blocks so far (NaN before the first)."""
        return self.accepted / self.blocks if self.blocks else float("nan")
