"""Run loop: an interrupted run resumes from its checkpoint and ends where an uninterrupted one does."""

import numpy as np

from oncodyn.chemotaxis.driver import simulate
from oncodyn.chemotaxis.models import KellerSegelParams
from oncodyn.chemotaxis.sipf import SIPFOptions
from oncodyn.core.rng import BrownianPath


def test_resume_reproduces_uninterrupted_run(tmp_path):
    p = KellerSegelParams(mass=60.0)
    o = SIPFOptions(n_modes=8, dt=1e-3, n_particles=200, variant="spectral")
    full = simulate(p, o, t_end=0.02, seed=3, diag_every=5, progress=False)
    ck = str(tmp_path / "ck.npz")
    part = simulate(p, o, t_end=0.01, seed=3, diag_every=5, progress=False, checkpoint_path=ck, checkpoint_every=5)
    assert part.state.step == 10
    resumed = simulate(p, o, t_end=0.02, seed=3, diag_every=5, progress=False, checkpoint_path=ck, checkpoint_every=5)
    assert resumed.info["resumed_from"] == 10
    assert np.array_equal(resumed.state.x, full.state.x)
    assert np.array_equal(resumed.state.alpha, full.state.alpha)
    assert np.allclose(resumed.series["c_inf"], full.series["c_inf"])


def test_brownian_path_coarse_increment_is_sum_of_fine():
    bp = BrownianPath(1, 5, 3, 0.25)
    assert np.allclose(bp.increment(1, 1.0), sum(bp.fine_increment(i) for i in range(4, 8)))
    # increments have variance dt
    big = BrownianPath(2, 200_000, 1, 0.01).increment(0, 0.04)
    assert abs(big.var() / 0.04 - 1) < 0.02  # 5 sigma of the sample variance at n = 2e5
