"""Delayed-acceptance block sampler of closures: exact for exp(−(H_a + H_c)/T) with exact blocks."""

import numpy as np
import pytest

from oncodyn.cpm.block_sampler import BlockSampler
from oncodyn.cpm.exactness import exactness, two_cells_3x3
from oncodyn.cpm.lattice import CPMState


def correction(state: CPMState) -> float:
    """A non-local energy the analytic part does not have: 6 per site of cell 1 in the top row."""
    return 6.0 * float(np.sum(state.sigma[0] == 1))


def test_block_sampler_is_exact_for_the_closure():
    c = two_cells_3x3()
    e_a = np.log(c.probs) * -c.hamiltonian.temperature
    e_c = np.array([correction(CPMState(c.start.lattice, s.reshape(3, 3), c.start.cell_type)) for s in c.states])
    w = np.exp(-(e_a + e_c - (e_a + e_c).min()) / c.hamiltonian.temperature)
    p = w / w.sum()
    smp = BlockSampler(c.start, c.hamiltonian, correction, block_mcs=10.0, kinetics="exact", seed=0)
    r = exactness(smp, c.states, p, n_samples=6000, thin_mcs=20.0)
    assert r.unseen == 0 and r.p_value > 0.01, r
    # and it is not the analytic law alone: the correction matters
    r0 = exactness(BlockSampler(c.start, c.hamiltonian, correction, 10.0, "exact", seed=1), c.states, c.probs,
                   n_samples=3000, thin_mcs=20.0)
    assert r0.p_value < 1e-6
    assert 0 < smp.acceptance < 1


def test_block_sampler_without_correction_accepts_every_block():
    c = two_cells_3x3()
    smp = BlockSampler(c.start, c.hamiltonian, lambda s: 0.0, block_mcs=1.0, kinetics="classic", seed=0)
    st = smp.sweep(5.5)
    assert smp.blocks == 6 and smp.acceptance == 1.0 and abs(st.mcs - (c.start.mcs + 5.5)) < 1e-9
    with pytest.raises(ValueError, match="block_mcs"):
        BlockSampler(c.start, c.hamiltonian, lambda s: 0.0, block_mcs=0.0)
    with pytest.raises(ValueError, match="kinetics"):
        BlockSampler(c.start, c.hamiltonian, lambda s: 0.0, kinetics="approx")
