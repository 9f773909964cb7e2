"""The CUDA path against the CPU path (runs only where torch sees a GPU)."""

import numpy as np
import pytest
import torch

from oncodyn.chemotaxis.driver import initial_particles
from oncodyn.chemotaxis.models import KellerSegelParams
from oncodyn.chemotaxis.sipf import SIPFOptions, SIPFSolver
from oncodyn.core.rng import BrownianPath

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("variant", ["exact", "spectral"])
def test_cuda_steps_match_cpu(variant):
    p = KellerSegelParams(mass=60.0)
    opts = dict(n_modes=12, n_particles=500, variant=variant, nufft_tol=1e-10)
    cpu = SIPFSolver(p, SIPFOptions(**opts, interaction="direct"))
    gpu = SIPFSolver(p, SIPFOptions(**opts, device="cuda"))
    x0 = initial_particles(p, 500, seed=2)
    path = BrownianPath(2, 500, 3, 1e-4)
    a, b = cpu.init(x0), gpu.init(x0)
    for n in range(5):
        a, b = cpu.step(a, path.increment(n, 1e-4)), gpu.step(b, path.increment(n, 1e-4))
    assert np.max(np.abs(a.x - b.x)) < 1e-8
    assert np.allclose(a.alpha, b.alpha, atol=1e-10)
