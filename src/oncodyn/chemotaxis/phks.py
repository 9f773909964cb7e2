r"""The parabolic--hyperbolic Keller--Segel (PHKS) model of angiogenesis: parameters, bins, initial data.

.. math::
    \rho_t = \nabla\cdot(\gamma\nabla\rho - \chi\rho\nabla c), \qquad c_t = -c\rho

on the box :math:`\Omega = [0, L]^d` (d = 2, 3) with no-flux walls. :math:`\rho` is the
density of endothelial/tumour cells (mass / length^d), :math:`c` the attractant they consume
(concentration). The mass :math:`M_0 = \int\rho` is conserved; :math:`\rho, c \ge 0`, and
:math:`c(x, t) = c_0(x)\exp(-\int_0^t\rho(x, s)\,ds)`.

Every PHKS solver (grid FDM, radial FDM, particle--field) works on the same cell-centred
:class:`BinGrid`: ``n`` bins of side ``h = L / n`` per axis, bin ``i`` centred at
``(i + 1/2) h``. Fields on it are arrays of shape ``[n] * d`` indexed ``[i_x, i_y(, i_z)]``.
Initial data are :class:`Gaussian` blobs for the density (normalised to ``M0`` on the box)
and :class:`Gaussian` or :class:`Annuli` profiles for the attractant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from oncodyn.chemotaxis.models import _require


@dataclass(frozen=True)
class PHKSParams:
    """Parameters of the PHKS system.

    Attributes:
        gamma: cell diffusivity γ > 0 (length^2 / time).
        chi: chemo-sensitivity χ >= 0 (length^2 / (concentration · time)).
        mass: total cell mass M0 > 0 (mass).
        length: side L > 0 of the box [0, L]^d (length).
        dim: d, 2 or 3.
    """

    gamma: float = 1.0
    chi: float = 1.0
    mass: float = 1.0
    length: float = 100.0
    dim: int = 3

    def __post_init__(self) -> None:
        _require(self.gamma > 0, "gamma", "> 0", self.gamma)
        _require(self.chi >= 0, "chi", ">= 0", self.chi)
        _require(self.mass > 0, "mass", "> 0", self.mass)
        _require(self.length > 0, "length", "> 0", self.length)
        _require(self.dim in (2, 3), "dim", "2 or 3", self.dim)


@dataclass(frozen=True)
class BinGrid:
    """Cell-centred grid of ``n`` bins per axis on [0, L]^d.

    Attributes:
        n: bins per axis (>= 4).
        length: L (length).
        dim: d (2 or 3).
    """

    n: int
    length: float
    dim: int = 3

    def __post_init__(self) -> None:
        _require(isinstance(self.n, (int, np.integer)) and self.n >= 4, "n (bins per axis)", "an integer >= 4", self.n)
        _require(self.length > 0, "length", "> 0", self.length)
        _require(self.dim in (2, 3), "dim", "2 or 3", self.dim)

    @property
    def h(self) -> float:
        """Bin side L / n (length)."""
        return self.length / self.n

    @property
    def shape(self) -> tuple[int, ...]:
        """``[n] * d``."""
        return (self.n,) * self.dim

    @property
    def bin_volume(self) -> float:
        """h^d (length^d)."""
        return self.h**self.dim

    @property
    def size(self) -> int:
        """Number of bins n^d."""
        return self.n**self.dim

    @cached_property
    def centres_1d(self) -> np.ndarray:
        """Bin centres (i + 1/2) h along one axis, shape ``[n]`` (length)."""
        return (np.arange(self.n) + 0.5) * self.h

    def centres(self) -> np.ndarray:
        """Coordinates of all bin centres, shape ``[n]*d + [d]`` (length)."""
        return np.stack(np.meshgrid(*([self.centres_1d] * self.dim), indexing="ij"), axis=-1)

    def bin_index(self, x: np.ndarray) -> np.ndarray:
        """Integer bin of each point ``x`` ``[P, d]`` (clipped to the box), shape ``[P, d]``."""
        return np.clip(np.floor(x / self.h).astype(np.int64), 0, self.n - 1)

    def flat_index(self, x: np.ndarray) -> np.ndarray:
        """Row-major flat bin number of each point ``x`` ``[P, d]``, shape ``[P]``."""
        return np.ravel_multi_index(tuple(self.bin_index(x).T), self.shape)


@dataclass(frozen=True)
class Gaussian:
    """A sum of isotropic Gaussians ``sum_k w_k exp(-|x - x_k|^2 / (2 sigma^2))``.

    Attributes:
        centers: blob centres, ``[K][d]`` (length).
        sigma: common standard deviation (length), > 0.
        weights: relative weights of the blobs ``[K]`` (default equal), > 0.
        amplitude: peak value of the attractant profile (concentration); for a density the
            profile is rescaled to the model's mass instead and this is ignored.
    """

    centers: tuple[tuple[float, ...], ...]
    sigma: float
    weights: tuple[float, ...] | None = None
    amplitude: float = 1.0

    def __post_init__(self) -> None:
        _require(len(self.centers) >= 1, "centers", "at least one centre", self.centers)
        _require(self.sigma > 0, "sigma", "> 0", self.sigma)
        if self.weights is not None:
            _require(len(self.weights) == len(self.centers) and all(w > 0 for w in self.weights),
                     "weights", "one positive weight per centre", self.weights)
        _require(self.amplitude >= 0, "amplitude", ">= 0", self.amplitude)

    @property
    def _w(self) -> np.ndarray:
        w = np.ones(len(self.centers)) if self.weights is None else np.asarray(self.weights, float)
        return w / w.max()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Profile at points ``x`` ``[..., d]`` (peak weight scaled to ``amplitude``), shape ``[...]``."""
        out = np.zeros(x.shape[:-1])
        for c, w in zip(self.centers, self._w):
            out += w * np.exp(-np.sum((x - np.asarray(c)) ** 2, axis=-1) / (2 * self.sigma**2))
        return self.amplitude * out

    def sample(self, rng: np.random.Generator, n: int, length: float) -> np.ndarray:
        """``n`` points ``[n, d]`` from the normalised mixture restricted to [0, L]^d (rejection)."""
        centers = np.asarray(self.centers, float)
        p = self._w / self._w.sum()
        out = np.empty((0, centers.shape[1]))
        while out.shape[0] < n:
            m = int(1.1 * (n - out.shape[0])) + 16
            k = rng.choice(len(p), size=m, p=p)
            y = centers[k] + self.sigma * rng.standard_normal((m, centers.shape[1]))
            out = np.concatenate([out, y[np.all((y >= 0) & (y <= length), axis=1)]])
        return out[:n]


@dataclass(frozen=True)
class Annuli:
    """Attractant on spherical (3D) or circular (2D) shells: ``A sum_k exp(-(|x - x0| - R_k)^2 / (2 w^2))``.

    Attributes:
        center: common centre x0, ``[d]`` (length).
        radii: shell radii R_k (length), > 0.
        width: shell half-width w (length), > 0.
        amplitude: A (concentration), >= 0.
    """

    center: tuple[float, ...]
    radii: tuple[float, ...]
    width: float
    amplitude: float = 1.0

    def __post_init__(self) -> None:
        _require(len(self.radii) >= 1 and all(r > 0 for r in self.radii), "radii", "one or more radii > 0", self.radii)
        _require(self.width > 0, "width", "> 0", self.width)
        _require(self.amplitude >= 0, "amplitude", ">= 0", self.amplitude)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Profile at points ``x`` ``[..., d]``, shape ``[...]``."""
        r = np.sqrt(np.sum((x - np.asarray(self.center)) ** 2, axis=-1))
        return self.amplitude * sum(np.exp(-((r - rk) ** 2) / (2 * self.width**2)) for rk in self.radii)


@dataclass(frozen=True)
class InitialData:
    """Initial density and attractant of a PHKS run.

    Attributes:
        rho: density profile (its blobs; rescaled to the model's mass M0).
        c: attractant profile c0.
    """

    rho: Gaussian
    c: Gaussian | Annuli = field(default_factory=lambda: Gaussian(((50.0, 50.0, 50.0),), 10.0))

    def rho_on_grid(self, grid: BinGrid, mass: float) -> np.ndarray:
        """Density at the bin centres, scaled so that ``sum * h^d == mass`` exactly; shape ``grid.shape``."""
        r = self.rho(grid.centres())
        return r * (mass / (r.sum() * grid.bin_volume))

    def c_on_grid(self, grid: BinGrid) -> np.ndarray:
        """c0 at the bin centres, shape ``grid.shape`` (concentration)."""
        return self.c(grid.centres())

    def particles(self, rng: np.random.Generator, n: int, length: float) -> np.ndarray:
        """``n`` particles ``[n, d]`` drawn from the density (restricted to the box)."""
        return self.rho.sample(rng, n, length)


def centred(dim: int, length: float) -> tuple[float, ...]:
    """The box centre (L/2, ..., L/2)."""
    return (length / 2,) * dim
