r"""The whole-space parabolic--elliptic Keller--Segel model with advection.

.. math::
    \rho_t + \nabla\cdot(\rho v) = \nabla\cdot(\mu\nabla\rho + \chi\rho\nabla(K*\rho)),

:math:`K(x) = \ln|x|/(2\pi)` (2D), :math:`-1/(4\pi|x|)` (3D), solved for the probability
density :math:`p = \rho/M`. The mollified kernel gradient
:func:`grad_newton_mollified` (:math:`x/(\omega_d(|x|^2+\delta^2)^{d/2})`) is the one of
:mod:`oncodyn.chemotaxis.interaction`, so the particle reference and the flow solver share
one formula.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from oncodyn.chemotaxis.interaction import OMEGA, grad_newton_mollified
from oncodyn.core.checks import require

__all__ = ["KSWholeSpace", "OMEGA", "grad_newton_mollified"]



@dataclass(frozen=True)
class KSWholeSpace:
    """Parameters of whole-space Keller--Segel.

    Attributes:
        mu: cell diffusivity, finite and > 0 (length^2 / time).
        chi: chemo-sensitivity, finite and >= 0 (length^d / (mass time)); 0 is pure
            diffusion. In 2D the critical mass is 8 pi mu / chi.
        mass: total cell mass M, finite and > 0 (mass units).
        dim: space dimension d, 2 or 3.
    """

    mu: float
    chi: float
    mass: float
    dim: int = 2

    def __post_init__(self):
        require(math.isfinite(self.mu) and self.mu > 0, "mu", "finite and > 0", self.mu)
        require(math.isfinite(self.chi) and self.chi >= 0, "chi", "finite and >= 0", self.chi)
        require(math.isfinite(self.mass) and self.mass > 0, "mass", "finite and > 0", self.mass)
        require(self.dim in (2, 3) and not isinstance(self.dim, bool), "dim", "2 or 3", self.dim)
