"""The radial finite-volume solver and 3D SIPF agree on radial data (coarse, statistical check)."""

import numpy as np

from oncodyn.chemotaxis import radial
from oncodyn.chemotaxis.driver import simulate
from oncodyn.chemotaxis.models import KellerSegelParams
from oncodyn.chemotaxis.sipf import SIPFOptions


def test_radial_fd_and_sipf_agree_for_the_uniform_ball():
    """M0 = 60, T = 0.05 (strong aggregation, before blow-up): second moment and the mass inside r = 0.5.

    SIPF (exact variant, P = 2000) is a Monte Carlo estimate: the tolerance is 3 standard errors of
    the particle averages plus 1 % for the two discretisations (H = 16 vs a graded radial grid;
    the periodic box vs the ball of radius 20 barely matter at this time). Pure diffusion would give
    a second moment ~50 % larger, so the check sees the chemotactic drift.
    """
    M, T, dt, P = 60.0, 0.05, 2.5e-4, 2000
    p = KellerSegelParams(mass=M)
    rad = radial.solve_radial(p, radial.RadialOptions(n_r=400, dt=dt, t_end=T, grid="graded"))
    m2_rad = np.sum(rad.volumes * rad.rho * rad.r**2)
    frac_rad = np.sum((rad.volumes * rad.rho)[rad.r < 0.5]) / M

    run = simulate(p, SIPFOptions(n_modes=16, dt=dt, n_particles=P), T, seed=1, progress=False, diag_every=10**6)
    r2 = np.sum(run.state.x**2, axis=1)
    m2 = M * r2.mean()
    frac = np.mean(r2 < 0.25)
    se_m2 = M * r2.std() / np.sqrt(P)
    se_frac = np.sqrt(frac * (1 - frac) / P)
    assert abs(m2 - m2_rad) < 3 * se_m2 + 0.01 * m2_rad
    assert abs(frac - frac_rad) < 3 * se_frac + 0.01
    assert m2_rad < 0.8 * (0.6 * M + 6 * T * M)  # far from pure diffusion
