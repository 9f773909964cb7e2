"""Periodic Fourier grids on the box Omega = [-L/2, L/2)^d.

A :class:`FourierGrid` names the truncated mode set
``H = {j : -H/2 <= j_i <= H/2 - 1}`` with wave vectors ``omega_j = 2 pi j / L``. Arrays of
Fourier coefficients have shape ``[H] * d`` with axis index ``i`` holding mode ``j = i - H/2``
(the "centred" order of finufft's ``modeord=0``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class FourierGrid:
    """Truncated Fourier basis on a periodic box.

    Attributes:
        n_modes: H, modes per dimension (even, >= 2).
        length: L, box side (length units); the box is [-L/2, L/2)^d.
        dim: d, spatial dimension (2 or 3).
    """

    n_modes: int
    length: float
    dim: int = 3

    def __post_init__(self) -> None:
        if self.n_modes < 2 or self.n_modes % 2:
            raise ValueError(f"n_modes (H) must be an even integer >= 2, got {self.n_modes}")
        if not self.length > 0:
            raise ValueError(f"length (L) must be > 0, got {self.length}")
        if self.dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {self.dim}")

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of a coefficient array, ``[H] * d``."""
        return (self.n_modes,) * self.dim

    @property
    def spacing(self) -> float:
        """Grid spacing h = L / H (length units)."""
        return self.length / self.n_modes

    @property
    def volume(self) -> float:
        """|Omega| = L^d."""
        return self.length**self.dim

    @cached_property
    def wavenumbers_1d(self) -> np.ndarray:
        """Wavenumbers along one axis, ``2 pi (i - H/2) / L``, shape ``[H]`` (1/length)."""
        j = np.arange(self.n_modes) - self.n_modes // 2
        return 2.0 * np.pi * j / self.length

    @cached_property
    def wavevectors(self) -> tuple[np.ndarray, ...]:
        """Per-axis wavenumber arrays broadcast to ``shape`` (d arrays of shape ``[H]*d``)."""
        return tuple(np.meshgrid(*([self.wavenumbers_1d] * self.dim), indexing="ij"))

    @cached_property
    def omega_squared(self) -> np.ndarray:
        """|omega|^2 on the mode set, shape ``[H]*d``."""
        return sum(w * w for w in self.wavevectors)

    @property
    def zero_index(self) -> tuple[int, ...]:
        """Array index of the mean mode omega = 0."""
        return (self.n_modes // 2,) * self.dim

    def clip(self, x: np.ndarray) -> np.ndarray:
        """Clip points ``[n, d]`` to the closed box (in place, returns ``x``)."""
        half = self.length / 2
        np.clip(x, -half, half, out=x)
        return x
