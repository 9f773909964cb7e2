"""Reproductions of published SIPF results (slow: make test-slow)."""

import numpy as np
import pytest

from oncodyn.chemotaxis.models import KellerSegelParams, critical_mass_2d
from oncodyn.chemotaxis.sipf import SIPFOptions, SIPFSolver
from oncodyn.config import load_config
from oncodyn.experiments.registry import RunContext
from oncodyn.experiments.sipf_convergence import PUBLISHED_DT, DtConvergenceConfig, run_dt
from oncodyn.io.rundir import RunDir

pytestmark = pytest.mark.slow


def test_s3_dt_convergence_spectral(tmp_path):
    """S3 at full size (P = 1e4, H = 24, reference dt = 2^-11 T), spectral variant (~1 minute)."""
    cfg = load_config(DtConvergenceConfig, preset="spectral")
    res = run_dt(cfg, RunContext(RunDir(tmp_path), progress=False, log=lambda s: None))
    m = res.metrics
    for e, err in zip(cfg.exponents, m["err_c"]):
        assert PUBLISHED_DT[e][0] / 3 < err < 3 * PUBLISHED_DT[e][0]
    assert abs(m["order_c"] - 1.0) < 0.15
    assert m["err_cbar"][-1] <= 2e-3


def test_2d_parabolic_elliptic_critical_mass_near_8pi(rng):
    """2D, eps = k = 0, exact pair interaction: the second moment's drift changes sign at 8 pi P/(P-1).

    m2(t) is measured from simulated particles (Euler--Maruyama with noise) over a short window;
    its fitted slope, linear in M0, crosses zero at the critical mass.
    """
    P, T, dt = 1000, 0.02, 1e-4
    masses = np.array([0.6, 0.8, 1.2, 1.4]) * critical_mass_2d()
    slopes = []
    for M in masses:
        p = KellerSegelParams(mass=M, eps=0.0, k=0.0, dim=2, length=200.0)
        s = SIPFSolver(p, SIPFOptions(n_modes=8, dt=dt, n_particles=P, variant="exact"))
        state = s.init(rng.standard_normal((P, 2)) * 2.0)
        m2 = []
        for n in range(int(T / dt)):
            m2.append(M * np.mean(np.sum(state.x**2, 1)))
            state = s.step(state, np.sqrt(dt) * rng.standard_normal((P, 2)))
        slopes.append(np.polyfit(np.arange(len(m2)) * dt, m2, 1)[0])
    fit = np.polyfit(masses, np.array(slopes) / masses, 1)  # slope/M0 = 4 - M0 (P-1)/(2 pi P)
    m_crit = -fit[1] / fit[0]
    assert m_crit == pytest.approx(critical_mass_2d(), rel=0.05)


def test_s6_radial_fd_instability_mass_near_published():
    """S6 reference: the radial FD scheme turns unstable by T = 1 at a mass within 3 % of (47.6, 47.8)."""
    from oncodyn.chemotaxis import radial

    opts = radial.RadialOptions(n_r=2000, dt=1e-4, t_end=1.0, grid="graded")
    res = radial.instability_threshold(KellerSegelParams(mass=47.0), opts, 46.0, 50.0, 0.05)
    assert 47.6 * 0.97 < res.m_lo and res.m_hi < 47.8 * 1.03
