r"""Initial probability densities :math:`p_0 = \rho_0 / M` with exact samples and log-densities.

Each is a frozen dataclass with ``sample(n, generator) -> [n, d]``, ``log_prob(x [N, d]) -> [N]``
(torch, any dtype/device), ``mean() -> [d]``, ``cov() -> [d, d]`` (NumPy) and
``second_moment()`` (:math:`E|X|^2`, length^2). Lengths are in the model's length units.

* :class:`GaussianP0` -- isotropic Gaussian :math:`N(m, s^2 I)`; the time-marching base is
  the exact affine map :math:`x = m + s z`.
* :class:`GaussianMixtureP0` -- :math:`\sum_k w_k N(m_k, s_k^2 I)` (merging clusters).
* :class:`UniformBallP0` -- uniform in the ball of radius :math:`R` at :math:`m`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from oncodyn.core.checks import require


@dataclass(frozen=True)
class GaussianP0:
    """N(mean, std^2 I) in d = len(mean) dimensions.

    Attributes:
        mean: centre (length units), d numbers.
        std: standard deviation per coordinate, > 0 (length units).
    """

    mean: tuple[float, ...]
    std: float

    def __post_init__(self):
        require(len(self.mean) in (2, 3), "p0.mean", "2 or 3 numbers", self.mean)
        require(math.isfinite(self.std) and self.std > 0, "p0.std", "finite and > 0", self.std)

    @property
    def dim(self) -> int:
        return len(self.mean)

    def sample(self, n: int, generator: torch.Generator, dtype=torch.float64, device="cpu") -> torch.Tensor:
        z = torch.randn(n, self.dim, generator=generator, dtype=dtype, device="cpu").to(device)
        return torch.as_tensor(self.mean, dtype=dtype, device=device) + self.std * z

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        d = self.dim
        r2 = ((x - torch.as_tensor(self.mean, dtype=x.dtype, device=x.device)) ** 2).sum(1)
        return -0.5 * r2 / self.std**2 - 0.5 * d * math.log(2 * math.pi * self.std**2)

    def mean_(self) -> np.ndarray:
        return np.asarray(self.mean, dtype=float)

    def cov(self) -> np.ndarray:
        return self.std**2 * np.eye(self.dim)

    def second_moment(self) -> float:
        return float(np.sum(self.mean_() ** 2) + self.dim * self.std**2)

    def max_density(self) -> float:
        return (2 * math.pi * self.std**2) ** (-self.dim / 2)


@dataclass(frozen=True)
class GaussianMixtureP0:
    """sum_k w_k N(means[k], stds[k]^2 I).

    Attributes:
        means: K centres of d numbers each (length units).
        stds: K standard deviations, > 0 (length units).
        weights: K weights > 0 (normalised to sum 1).
    """

    means: tuple[tuple[float, ...], ...]
    stds: tuple[float, ...]
    weights: tuple[float, ...]

    def __post_init__(self):
        K = len(self.means)
        require(K >= 1, "p0.means", "at least one centre", self.means)
        require(all(len(m) == len(self.means[0]) for m in self.means) and len(self.means[0]) in (2, 3),
               "p0.means", "centres of 2 or 3 numbers each, all of one dimension", self.means)
        require(len(self.stds) == K and all(math.isfinite(s) and s > 0 for s in self.stds), "p0.stds",
               f"{K} finite numbers > 0", self.stds)
        require(len(self.weights) == K and all(math.isfinite(w) and w > 0 for w in self.weights), "p0.weights",
               f"{K} finite numbers > 0", self.weights)

    @property
    def dim(self) -> int:
        return len(self.means[0])

    def _w(self) -> np.ndarray:
        w = np.asarray(self.weights, dtype=float)
        return w / w.sum()

    def sample(self, n: int, generator: torch.Generator, dtype=torch.float64, device="cpu") -> torch.Tensor:
        w = torch.as_tensor(self._w())
        comp = torch.multinomial(w, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=dtype)
        m = torch.as_tensor(self.means, dtype=dtype)[comp]
        s = torch.as_tensor(self.stds, dtype=dtype)[comp, None]
        return (m + s * z).to(device)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        d = self.dim
        m = torch.as_tensor(self.means, dtype=x.dtype, device=x.device)
        s = torch.as_tensor(self.stds, dtype=x.dtype, device=x.device)
        lw = torch.log(torch.as_tensor(self._w(), dtype=x.dtype, device=x.device))
        r2 = ((x[:, None, :] - m[None]) ** 2).sum(-1)
        comp = lw - 0.5 * r2 / s**2 - 0.5 * d * torch.log(2 * math.pi * s**2)
        return torch.logsumexp(comp, dim=1)

    def mean_(self) -> np.ndarray:
        return self._w() @ np.asarray(self.means, dtype=float)

    def cov(self) -> np.ndarray:
        w, m, s = self._w(), np.asarray(self.means, dtype=float), np.asarray(self.stds, dtype=float)
        mu = w @ m
        c = sum(wk * (sk**2 * np.eye(self.dim) + np.outer(mk - mu, mk - mu)) for wk, mk, sk in zip(w, m, s))
        return np.asarray(c)

    def second_moment(self) -> float:
        return float(np.trace(self.cov()) + np.sum(self.mean_() ** 2))


@dataclass(frozen=True)
class UniformBallP0:
    """Uniform density in the ball of ``radius`` (> 0, length units) at ``centre`` (d numbers)."""

    centre: tuple[float, ...]
    radius: float

    def __post_init__(self):
        require(len(self.centre) in (2, 3), "p0.centre", "2 or 3 numbers", self.centre)
        require(math.isfinite(self.radius) and self.radius > 0, "p0.radius", "finite and > 0", self.radius)

    @property
    def dim(self) -> int:
        return len(self.centre)

    def _volume(self) -> float:
        d = self.dim
        return math.pi ** (d / 2) / math.gamma(d / 2 + 1) * self.radius**d

    def sample(self, n: int, generator: torch.Generator, dtype=torch.float64, device="cpu") -> torch.Tensor:
        g = torch.randn(n, self.dim, generator=generator, dtype=dtype)
        g = g / g.norm(dim=1, keepdim=True)
        r = self.radius * torch.rand(n, 1, generator=generator, dtype=dtype) ** (1.0 / self.dim)
        return (torch.as_tensor(self.centre, dtype=dtype) + g * r).to(device)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        r = (x - torch.as_tensor(self.centre, dtype=x.dtype, device=x.device)).norm(dim=1)
        inside = torch.full_like(r, -math.log(self._volume()))
        return torch.where(r <= self.radius, inside, torch.full_like(r, -math.inf))

    def mean_(self) -> np.ndarray:
        return np.asarray(self.centre, dtype=float)

    def cov(self) -> np.ndarray:
        return self.radius**2 / (self.dim + 2) * np.eye(self.dim)

    def second_moment(self) -> float:
        return float(np.trace(self.cov()) + np.sum(self.mean_() ** 2))


P0 = GaussianP0 | GaussianMixtureP0 | UniformBallP0
