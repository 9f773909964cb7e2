"""What the SIPF experiments share: the config fields of the model and the solver."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator

from oncodyn.chemotaxis.models import KellerSegelParams
from oncodyn.chemotaxis.sipf import SIPFOptions
from oncodyn.config import ExperimentConfig, even_modes


Variant = Literal["exact", "spectral", "random_batch"]


class SIPFConfig(ExperimentConfig):
    """Model and solver fields (the spec's base setting as defaults).

    Attributes:
        mu, chi, eps, k, length, dim: the Keller--Segel model (see ``KellerSegelParams``).
        n_modes: H, Fourier modes per dimension (even).
        dt: time step; n_particles: P; variant: exact | spectral | random_batch.
        interaction: auto | compiled | fmm | direct (the exact variant's summation method).
        batch_size: R of the random-batch variant.
        softening: small-distance treatment of the exact pair force (0 = exact kernel).
        nufft_tol, fmm_tol: requested tolerances of the NUFFT and of the FMM.
        radius0: radius of the initial uniform ball.
        diag_every: steps between diagnostics (sup norms, c-bar, second moment).
    """

    mu: float = Field(1.0, gt=0)
    chi: float = Field(1.0, gt=0)
    eps: float = Field(1e-4, ge=0)
    k: float = Field(0.1, ge=0)
    length: float = Field(8.0, gt=0)
    dim: Literal[2, 3] = 3
    n_modes: int = 24
    dt: float = Field(1e-4, gt=0)
    n_particles: int = Field(10_000, ge=2)
    variant: Variant = "exact"
    interaction: Literal["auto", "fmm", "direct", "compiled"] = "auto"
    batch_size: int = Field(100, ge=2)
    softening: float = Field(0.0, ge=0)
    nufft_tol: float = Field(1e-6, gt=0, lt=1)
    fmm_tol: float = Field(1e-6, gt=0, lt=1)
    radius0: float = Field(1.0, gt=0)
    diag_every: int = Field(10, ge=1)

    _even = field_validator("n_modes")(classmethod(lambda cls, v: even_modes(v)))

    def params(self, mass: float) -> KellerSegelParams:
        return KellerSegelParams(mass=mass, mu=self.mu, chi=self.chi, eps=self.eps, k=self.k,
                                 length=self.length, dim=self.dim)

    def options(self, device: str = "cpu", **over) -> SIPFOptions:
        kw = dict(n_modes=self.n_modes, dt=self.dt, n_particles=self.n_particles, variant=self.variant,
                  interaction=self.interaction, batch_size=self.batch_size, softening=self.softening, nufft_tol=self.nufft_tol,
                  fmm_tol=self.fmm_tol, device=device)
        kw.update(over)
        return SIPFOptions(**kw)


def modes_list(v: list[int]) -> list[int]:
    """Validator body for a list of mode counts."""
    if not v:
        raise ValueError("must list at least one mode count")
    for h in v:
        even_modes(h)
    return v


def positive_list(v: list[float]) -> list[float]:
    """Validator body for a non-empty list of positive numbers (e.g. masses)."""
    if not v or any(m <= 0 for m in v):
        raise ValueError("must be a non-empty list of numbers > 0")
    return v


def steps_of(t_end: float, dt: float, field_name: str = "t_end") -> int:
    """Number of steps ``t_end / dt``; must be a positive integer."""
    ratio = t_end / dt
    if not math.isfinite(ratio):  # inf/nan inputs, or a ratio beyond the float range
        raise ValueError(f"{field_name}: must be a positive integer multiple of dt={dt}, got {t_end}")
    n = round(ratio)
    if n < 1 or abs(n * dt - t_end) > 1e-9 * t_end:
        raise ValueError(f"{field_name}: must be a positive integer multiple of dt={dt}, got {t_end}")
    return n


def diag_every_within(diag_every: int, n_steps: int, t_end: float, dt: float) -> None:
    """Check that diagnostics are recorded during the run: 1 <= ``diag_every`` <= the run's steps."""
    if not 1 <= diag_every <= n_steps:
        raise ValueError(f"diag_every: must be in [1, {n_steps}] (the run has t_end / dt = {t_end:g} / {dt:g} = "
                         f"{n_steps} steps), got {diag_every}")
