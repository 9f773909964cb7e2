r"""Given advection fields :math:`v(x, t)` of the Keller--Segel model with transport.

Every field is incompressible (:math:`\nabla\cdot v = 0`), so the mass and the
continuity form :math:`\partial_t p + \nabla\cdot(p V) = 0` are unchanged, and it is a
frozen, picklable object that evaluates on torch tensors ``x`` ``[N, d]`` (any dtype or
device; ``t`` a float or a tensor broadcastable to ``[N, 1]``) and returns ``[N, d]``.
:meth:`Advection.numpy` evaluates on NumPy arrays for the particle reference.

* :class:`NoAdvection` -- v = 0.
* :class:`ConstantAdvection` -- v = c, a constant vector (length / time).
* :class:`CellularFlow` -- 2D: the steady cellular flow of stream function
  :math:`\psi = (A/k)\sin(kx)\sin(ky)`, :math:`v = (\partial_y\psi, -\partial_x\psi)
  = A(\sin kx\cos ky, -\cos kx\sin ky)`, cells of side :math:`\pi/k`;
  3D: the Arnold--Beltrami--Childress flow
  :math:`v = A(\sin kz + \cos ky,\ \sin kx + \cos kz,\ \sin ky + \cos kx)`, divergence-free
  and a Beltrami field (:math:`\nabla\times v = k v`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


class Advection:
    """Base: ``field(x [N, d], t) -> [N, d]``; ``dim`` None means any dimension."""

    dim: int | None = None
    name = "advection"

    def __call__(self, x: torch.Tensor, t) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def numpy(self, x: np.ndarray, t: float) -> np.ndarray:
        """The field at ``x`` ``[N, d]`` (float64 NumPy) and time ``t``; ``[N, d]``."""
        return self(torch.as_tensor(np.asarray(x, dtype=np.float64)), float(t)).numpy()

    @property
    def is_zero(self) -> bool:
        return False

    def check_dim(self, dim: int) -> None:
        if self.dim is not None and self.dim != dim:
            raise ValueError(f"advection: {self.name} is {self.dim}D, the model is {dim}D")


@dataclass(frozen=True)
class NoAdvection(Advection):
    """v = 0."""

    name = "none"

    def __call__(self, x, t):
        return torch.zeros_like(x)

    @property
    def is_zero(self) -> bool:
        return True


@dataclass(frozen=True)
class ConstantAdvection(Advection):
    """v = ``velocity`` (a tuple of d numbers, length / time)."""

    velocity: tuple[float, ...]
    name = "constant"

    def __post_init__(self):
        if len(self.velocity) not in (2, 3) or not all(math.isfinite(float(c)) for c in self.velocity):
            raise ValueError(f"advection.velocity: must be 2 or 3 finite numbers, got {self.velocity!r}")

    @property
    def dim(self) -> int:  # type: ignore[override]
        return len(self.velocity)

    def __call__(self, x, t):
        return torch.as_tensor(self.velocity, dtype=x.dtype, device=x.device).expand_as(x)


@dataclass(frozen=True)
class CellularFlow(Advection):
    """Cellular flow (2D) or ABC flow (3D) of amplitude ``amplitude`` (length / time) and
    wavenumber ``wavenumber`` (1 / length)."""

    dim_: int = 2
    amplitude: float = 1.0
    wavenumber: float = 1.0
    name = "cellular"

    def __post_init__(self):
        if self.dim_ not in (2, 3):
            raise ValueError(f"advection.dim: must be 2 or 3, got {self.dim_!r}")
        if not math.isfinite(self.amplitude):
            raise ValueError(f"advection.amplitude: must be finite, got {self.amplitude!r}")
        if not (math.isfinite(self.wavenumber) and self.wavenumber > 0):
            raise ValueError(f"advection.wavenumber: must be finite and > 0, got {self.wavenumber!r}")

    @property
    def dim(self) -> int:  # type: ignore[override]
        return self.dim_

    def __call__(self, x, t):
        a, k = self.amplitude, self.wavenumber
        if self.dim_ == 2:
            sx, cx = torch.sin(k * x[:, 0]), torch.cos(k * x[:, 0])
            sy, cy = torch.sin(k * x[:, 1]), torch.cos(k * x[:, 1])
            return a * torch.stack([sx * cy, -cx * sy], dim=1)
        kx, ky, kz = k * x[:, 0], k * x[:, 1], k * x[:, 2]
        return a * torch.stack([torch.sin(kz) + torch.cos(ky), torch.sin(kx) + torch.cos(kz),
                                torch.sin(ky) + torch.cos(kx)], dim=1)


def make_advection(kind: str, dim: int, velocity: list[float] | None = None, amplitude: float = 1.0,
                   wavenumber: float = 1.0) -> Advection:
    """The advection field named ``kind`` (``none`` | ``constant`` | ``cellular``) in ``dim`` D."""
    if kind == "none":
        return NoAdvection()
    if kind == "constant":
        if velocity is None or len(velocity) != dim:
            raise ValueError(f"advection.velocity: must list {dim} numbers for a constant field, got {velocity!r}")
        return ConstantAdvection(tuple(float(c) for c in velocity))
    if kind == "cellular":
        return CellularFlow(dim, float(amplitude), float(wavenumber))
    raise ValueError(f"advection: must be one of none, constant, cellular, got {kind!r}")
