r"""The Keller--Segel model and its parameters.

.. math::
    \rho_t = \nabla\cdot(\mu\nabla\rho - \chi\rho\nabla c), \qquad
    \epsilon c_t = \Delta c - k^2 c + \rho

on the box :math:`\Omega = [-L/2, L/2)^d` (periodic for the Fourier field). Mass
:math:`M_0 = \int\rho` is conserved, and the total concentration :math:`\bar c = \int c`
obeys :math:`\epsilon\,d\bar c/dt = -k^2\bar c + M_0` (:func:`total_concentration_exact`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def _require(cond: bool, field: str, allowed: str, value) -> None:
    if not cond:
        raise ValueError(f"{field}: must be {allowed}, got {value!r}")


@dataclass(frozen=True)
class KellerSegelParams:
    """Parameters of the Keller--Segel system.

    Attributes:
        mass: M0 > 0, total cell mass (mass units).
        mu: mobility (diffusivity of cells), > 0 (length^2 / time).
        chi: chemo-sensitivity, >= 0 (0: pure diffusion).
        eps: epsilon >= 0, time-scale ratio of the chemical; 0 gives the parabolic--elliptic
            system.
        k: decay rate of the chemical, >= 0 (1 / length).
        length: L > 0, side of the periodic box (length units).
        dim: 2 or 3.
    """

    mass: float
    mu: float = 1.0
    chi: float = 1.0
    eps: float = 1e-4
    k: float = 0.1
    length: float = 8.0
    dim: int = 3

    def __post_init__(self) -> None:
        _require(self.mass > 0, "mass", "> 0", self.mass)
        _require(self.mu > 0, "mu", "> 0", self.mu)
        _require(self.chi >= 0, "chi", ">= 0", self.chi)
        _require(self.eps >= 0, "eps", ">= 0", self.eps)
        _require(self.k >= 0, "k", ">= 0", self.k)
        _require(self.length > 0, "length", "> 0", self.length)
        _require(self.dim in (2, 3), "dim", "2 or 3", self.dim)

    def beta2(self, dt: float) -> float:
        """beta^2 = k^2 + eps/dt, the screening of the implicit-Euler Green's function."""
        return self.k**2 + self.eps / dt


def total_concentration_exact(t: np.ndarray, params: KellerSegelParams, c0_total: float = 0.0) -> np.ndarray:
    r"""Exact :math:`\bar c(t) = (\bar c(0) - M_0/k^2) e^{-k^2 t/\epsilon} + M_0/k^2`.

    Needs ``k > 0`` and ``eps > 0``. ``t`` any shape (time units).
    """
    if params.k <= 0 or params.eps <= 0:
        raise ValueError("the total-concentration ODE has this closed form only for k > 0 and eps > 0")
    ss = params.mass / params.k**2
    return (c0_total - ss) * np.exp(-params.k**2 * np.asarray(t) / params.eps) + ss


def critical_mass_2d(mu: float = 1.0, chi: float = 1.0) -> float:
    """Critical mass 8 pi mu / chi of the 2D parabolic--elliptic system (free space)."""
    return 8.0 * math.pi * mu / chi
