r"""The Fisher--Kolmogorov growth model on a diffuse domain and its parameters.

.. math::
    \partial_t(\phi u) = \nabla\cdot(D\,\phi\,\nabla u) + \phi\,\rho\,u(1-u), \qquad
    D(x) = D_w\,(p_w(x) + r_g\,p_g(x)),

with :math:`u\in[0,1]` the normalised tumour cell density, :math:`\phi` the phase field of the
brain (1 inside, 0 outside), :math:`p_w, p_g` the white/grey-matter fractions and
:math:`r_g = D_g/D_w` (0.1 by default). Lengths are in mm, times in days.

Initial condition: :math:`u_0(x) = a\,\exp(-b\,|x-x_0|^2)`, with a = 0.1 and b = 0.1 /mm^2
(the published 0.1 exp(-10 r^2) with r in cm; sigma ~ 2.2 mm).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def require(cond: bool, field: str, allowed: str, value) -> None:
    """Raise ``ValueError('<field>: must be <allowed>, got <value>')`` unless ``cond``."""
    if not cond:
        raise ValueError(f"{field}: must be {allowed}, got {value!r}")


@dataclass(frozen=True)
class FKParams:
    """Parameters of the Fisher--Kolmogorov model.

    Attributes:
        D_white: D_w > 0, diffusivity in white matter (mm^2/day). Published reference 0.13.
        rho: proliferation rate > 0 (1/day). Published reference 0.025.
        grey_ratio: D_g / D_w in [0, 1] (published 0.1).
        ic_amplitude: a in (0, 1], peak of the initial Gaussian (published 0.1).
        ic_decay: b > 0 (1/mm^2) of exp(-b |x - x0|^2) (published 0.1).
    """

    D_white: float = 0.13
    rho: float = 0.025
    grey_ratio: float = 0.1
    ic_amplitude: float = 0.1
    ic_decay: float = 0.1

    def __post_init__(self) -> None:
        require(math.isfinite(self.D_white) and self.D_white > 0, "D_white", "a finite number > 0 (mm^2/day)", self.D_white)
        require(math.isfinite(self.rho) and self.rho > 0, "rho", "a finite number > 0 (1/day)", self.rho)
        require(0 <= self.grey_ratio <= 1, "grey_ratio", "in [0, 1]", self.grey_ratio)
        require(0 < self.ic_amplitude <= 1, "ic_amplitude", "in (0, 1]", self.ic_amplitude)
        require(self.ic_decay > 0, "ic_decay", "> 0 (1/mm^2)", self.ic_decay)

    @property
    def front_speed(self) -> float:
        """Fisher front speed 2 sqrt(D_w rho) in homogeneous white matter (mm/day)."""
        return 2.0 * math.sqrt(self.D_white * self.rho)


def initial_density(coords: list[np.ndarray], x0, params: FKParams) -> np.ndarray:
    """u_0 on a tensor grid.

    Args:
        coords: per-axis 1D coordinates (mm), lengths ``shape``.
        x0: tumour origin (mm), length ``len(coords)``.
    Returns:
        u_0, shape ``[len(c) for c in coords]``.
    """
    mesh = np.meshgrid(*[np.asarray(c, float) for c in coords], indexing="ij")
    r2 = sum((m - float(x)) ** 2 for m, x in zip(mesh, x0))
    return params.ic_amplitude * np.exp(-params.ic_decay * r2)
