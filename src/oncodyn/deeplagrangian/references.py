r"""Reference solutions the DeepLagrangian family is checked against (pure functions).

* :func:`radial_reference` -- the project's radial finite-volume solver
  (:func:`oncodyn.chemotaxis.radial.solve_radial`) in its whole-space parabolic--elliptic form
  (:math:`\epsilon = k = 0`) on a graded grid, for a radially symmetric Gaussian :math:`p_0`;
  its density is :math:`\rho = Mp`, so profiles are divided by M to compare with :math:`p`.
* :func:`radial_blowup_time` -- the time at which that reference's peak exceeds
  ``threshold`` times its initial peak (the numerical blow-up time; measured to move by
  < 1e-4 with the grid and first order with dt, see the radial module's tests).
* :func:`compare_radial` -- relative L2 (weight :math:`r^{d-1}`) and peak errors of a
  flow's angular-mean profile against a reference profile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from oncodyn.chemotaxis.radial import (
    RadialOptions,
    RadialResult,
    gaussian_profile,
    solve_radial,
)


@dataclass(frozen=True)
class RadialSettings:
    """Grid of the radial reference (graded: fine at the origin where the peak forms).

    Attributes:
        r_max: outer radius (length); the Gaussian's mass beyond it must be negligible.
        n_r: cells; h_min: innermost cell (length); dt: time step (time).
        threshold: blow-up when max rho exceeds this multiple of the initial peak.
    """

    r_max: float = 20.0
    n_r: int = 2000
    h_min: float = 1e-5
    dt: float = 1e-4
    threshold: float = 1e6


def radial_reference(model, std: float, t_end: float, save_times: Sequence[float] = (),
                     settings: RadialSettings = RadialSettings()) -> RadialResult:
    """Solve the radial whole-space KS from a Gaussian of ``std`` (length) to ``t_end``."""
    from oncodyn.chemotaxis.models import KellerSegelParams

    params = KellerSegelParams(mass=model.mass, mu=model.mu, chi=model.chi, eps=0.0, k=0.0, dim=model.dim)
    opts = RadialOptions(r_max=settings.r_max, n_r=settings.n_r, dt=settings.dt, t_end=t_end, grid="graded",
                         h_min=settings.h_min, r0=min(1.0, settings.r_max / 2), blowup_threshold=settings.threshold,
                         collapse_fraction=1.0, record_every=1)
    return solve_radial(params, opts, rho0=gaussian_profile(model.mass, std, model.dim),
                        save_times=list(save_times) or None)


def radial_blowup_time(model, std: float, t_max: float, settings: RadialSettings = RadialSettings()) -> float | None:
    """Numerical blow-up time of the radial reference before ``t_max``, or None if it stays regular."""
    res = radial_reference(model, std, t_max, settings=settings)
    return res.t_unstable if res.unstable else None


def compare_radial(r: np.ndarray, p_ours: np.ndarray, p_ref: np.ndarray, dim: int) -> dict[str, float]:
    """Relative L2 (weight r^{d-1}), relative L-infinity and peak errors of ``p_ours`` against ``p_ref``.

    Args:
        r: [R] radii (length), increasing; p_ours, p_ref: [R] densities there (1 / length^d).
    """
    w = np.gradient(r) * r ** (dim - 1)
    l2 = float(np.sqrt(np.sum(w * (p_ours - p_ref) ** 2) / np.sum(w * p_ref**2)))
    linf = float(np.max(np.abs(p_ours - p_ref)) / np.max(np.abs(p_ref)))
    return {"relative_l2": l2, "relative_linf": linf, "max_ours": float(p_ours.max()), "max_ref": float(p_ref.max()),
            "max_rel_error": float(abs(p_ours.max() - p_ref.max()) / p_ref.max())}
