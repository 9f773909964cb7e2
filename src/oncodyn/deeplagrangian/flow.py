r"""The time-marched flow :math:`x = T_\theta(z, t)` and its exact log-density.

:class:`FlowChain` composes a *base* map at :math:`t_0` with one time-dependent KRnet per
time segment :math:`[t_k, t_{k+1}]`:

.. math::
    T(z, t) = G_k\big(G_{k-1}(\cdots G_0(B(z), 1)\cdots, 1), \tau\big),\qquad
    \tau = \frac{t - t_k}{t_{k+1} - t_k},

where :math:`B(z) = m + L\,H(z)` is the base: an affine map (exact for a Gaussian
:math:`p_0`, :math:`H = \mathrm{id}`) or an affine whitening after a time-independent KRnet
:math:`H` fitted by maximum likelihood. Every :math:`G_k(\cdot, 0)` is the identity, so each
segment starts exactly where the frozen chain ends. The log-density is exact:

.. math::
    \log p_\theta(x, t) = \log N(z) + \sum \log|\det \nabla(\text{inverse layers})|.

:class:`FlowSolution` is the trained model users hold: ``density(x, t)``,
``log_density(x, t)``, ``sample(n, t)`` (NumPy in and out), ``save(path)`` and
``FlowSolution.load(path)`` (``torch.load(weights_only=True)``: a weights file never runs code).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from oncodyn.core.atomic import save_torch
from oncodyn.deeplagrangian.krnet import KRnetMap, KRnetSpec

FORMAT = "oncodyn-deeplagrangian/1"


class FlowChain(nn.Module):
    """Base map plus a list of time segments; see the module docstring.

    Args:
        spec: architecture of every KRnet (segments and, if fitted, the base).
        mean: [d] base shift m (length units).
        chol: [d, d] lower-triangular base matrix L (length units).
        base_net: fit a time-independent KRnet H in the base (non-Gaussian p0).
        t0: the initial time.
    """

    def __init__(self, spec: KRnetSpec, mean: np.ndarray, chol: np.ndarray, base_net: bool = False, t0: float = 0.0):
        super().__init__()
        self.spec, self.dim, self.t0 = spec, spec.dim, float(t0)
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean, dtype=float)))
        self.register_buffer("chol", torch.as_tensor(np.asarray(chol, dtype=float)))
        self.base_net = KRnetMap(spec).to(dtype=self.mean.dtype) if base_net else None
        self.segments = nn.ModuleList()
        self.times: list[tuple[float, float]] = []

    # -- structure -------------------------------------------------------------------------
    @property
    def t_final(self) -> float:
        """End of the last segment (the trained horizon)."""
        return self.times[-1][1] if self.times else self.t0

    def add_segment(self, t_start: float, t_end: float, init_from: KRnetMap | None = None) -> KRnetMap:
        """Append a segment on [t_start, t_end] (t_start = current horizon); returns its KRnet."""
        if abs(t_start - self.t_final) > 1e-12 * max(1.0, abs(t_start)) or not t_end > t_start:
            raise ValueError(f"segment [{t_start}, {t_end}] must start at the horizon {self.t_final} and have positive length")
        g = KRnetMap(self.spec).to(dtype=self.mean.dtype, device=self.mean.device)
        if init_from is not None:
            g.load_state_dict(init_from.state_dict())
        self.segments.append(g)
        self.times.append((float(t_start), float(t_end)))
        return g

    def segment_of(self, t: float) -> int:
        """Index of the segment holding time ``t`` (-1 for t = t0)."""
        if not (self.t0 - 1e-12 <= t <= self.t_final + 1e-12 * max(1.0, abs(self.t_final))):
            raise ValueError(f"t: must be in the trained interval [{self.t0:g}, {self.t_final:g}], got {t!r}")
        if t <= self.t0 + 1e-15:
            return -1
        for k, (a, b) in enumerate(self.times):
            if t <= b + 1e-12 * max(1.0, abs(b)):
                return k
        return len(self.times) - 1  # pragma: no cover - guarded above

    def _tau(self, k: int, t, n: int) -> torch.Tensor:
        a, b = self.times[k]
        tt = torch.as_tensor(t, dtype=self.mean.dtype, device=self.mean.device)
        return ((tt - a) / (b - a)).reshape(-1, 1).expand(n, 1)

    def _ones(self, n: int) -> torch.Tensor:
        return torch.ones(n, 1, dtype=self.mean.dtype, device=self.mean.device)

    # -- maps ------------------------------------------------------------------------------
    def base_forward(self, z: torch.Tensor) -> torch.Tensor:
        """B(z): ``[N, d] -> [N, d]``."""
        if self.base_net is not None:
            z, _ = self.base_net(z, self._ones(z.shape[0]))
        return self.mean + z @ self.chol.T

    def push_frozen(self, z: torch.Tensor, k: int) -> torch.Tensor:
        """The chain at the start of segment ``k``: base then segments 0..k-1 at tau = 1."""
        x = self.base_forward(z)
        ones = self._ones(z.shape[0])
        for g in self.segments[:k]:
            x, _ = g(x, ones)
        return x

    def push(self, z: torch.Tensor, t: float) -> torch.Tensor:
        """T(z, t) for a scalar time ``t``; ``[N, d] -> [N, d]``."""
        k = self.segment_of(float(t))
        if k < 0:
            return self.base_forward(z)
        x = self.push_frozen(z, k)
        x, _ = self.segments[k](x, self._tau(k, float(t), z.shape[0]))
        return x

    def log_density_frozen(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """log p at the start of segment ``k`` (segments 0..k-1 inverted at tau = 1); ``[N]``."""
        n = x.shape[0]
        ones = self._ones(n)
        logdet = torch.zeros(n, dtype=x.dtype, device=x.device)
        for g in reversed(self.segments[:k]):
            x, ld = g.inverse(x, ones)
            logdet = logdet + ld
        L = self.chol
        z = torch.linalg.solve_triangular(L, (x - self.mean).T, upper=False).T
        logdet = logdet - torch.log(torch.diagonal(L)).sum()
        if self.base_net is not None:
            z, ld = self.base_net.inverse(z, ones)
            logdet = logdet + ld
        return -0.5 * (z * z).sum(1) - 0.5 * self.dim * math.log(2 * math.pi) + logdet

    def log_density(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """log p_theta(x, t) for a scalar ``t``; ``[N, d] -> [N]``."""
        k = self.segment_of(float(t))
        if k < 0:
            return self.log_density_frozen(x, 0)
        y, ld = self.segments[k].inverse(x, self._tau(k, float(t), x.shape[0]))
        return self.log_density_frozen(y, k) + ld


class FlowSolution:
    """A trained DeepLagrangian solution: the flow chain and what it solved.

    Attributes:
        chain: the :class:`FlowChain`.
        meta: JSON-able description (model parameters, p0, advection, training, segments).
    """

    def __init__(self, chain: FlowChain, meta: dict | None = None):
        self.chain, self.meta = chain, dict(meta or {})

    @property
    def dim(self) -> int:
        return self.chain.dim

    @property
    def t_final(self) -> float:
        return self.chain.t_final

    def _x(self, x) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(x, dtype=float), dtype=self.chain.mean.dtype, device=self.chain.mean.device)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x: must have shape [N, {self.dim}], got {tuple(x.shape)}")
        return x

    def log_density(self, x, t: float, batch: int = 65536) -> np.ndarray:
        """log p(x, t) of the probability density p = rho / M at points ``x`` ``[N, d]``; ``[N]``."""
        x = self._x(x)
        with torch.no_grad():
            return torch.cat([self.chain.log_density(x[i:i + batch], float(t)) for i in range(0, len(x), batch)]).cpu().numpy()

    def density(self, x, t: float, mass: float = 1.0) -> np.ndarray:
        """p(x, t) (``mass`` = 1) or rho = M p (mass / length^d) at ``x`` ``[N, d]``; ``[N]``."""
        return mass * np.exp(self.log_density(x, t))

    def sample(self, n: int, t: float, seed: int = 0, batch: int = 65536) -> np.ndarray:
        """``n`` samples of p(., t); ``[n, d]`` (length units)."""
        if n < 1:
            raise ValueError(f"n: must be >= 1, got {n!r}")
        g = torch.Generator().manual_seed(int(seed))
        out = []
        with torch.no_grad():
            for i in range(0, n, batch):
                z = torch.randn(min(batch, n - i), self.dim, generator=g, dtype=self.chain.mean.dtype)
                out.append(self.chain.push(z.to(self.chain.mean.device), float(t)).cpu())
        return torch.cat(out).numpy()

    # -- persistence ------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the weights and description to ``path`` (atomic: temp file, fsync, rename)."""
        path = Path(path)
        head = {"format": FORMAT, "spec": asdict(self.chain.spec), "times": self.chain.times, "t0": self.chain.t0,
                "base_net": self.chain.base_net is not None, "dtype": str(self.chain.mean.dtype).removeprefix("torch."),
                "meta": self.meta}
        state = {k: v.detach().cpu() for k, v in self.chain.state_dict().items()}
        return save_torch(path, {"head": json.dumps(head), "state": state})

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> "FlowSolution":
        """Read a file written by :meth:`save`; a damaged or foreign file raises ``ValueError``."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"weights file {path} does not exist")
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            head = json.loads(blob["head"])
            state = blob["state"]
            if head.get("format") != FORMAT:
                raise ValueError(f"format {head.get('format')!r}")
            spec = KRnetSpec(**head["spec"])
            dtype = getattr(torch, head.get("dtype", "float64"))
            chain = FlowChain(spec, np.zeros(spec.dim), np.eye(spec.dim), base_net=head["base_net"],
                              t0=head["t0"]).to(dtype=dtype)  # the file's precision before its values go in
            for a, b in head["times"]:
                chain.add_segment(a, b)
            chain.load_state_dict(state)
        except Exception as e:  # noqa: BLE001 - any failure means the file is not a valid solution
            raise ValueError(f"weights file {path} is damaged or not an oncodyn DeepLagrangian solution ({type(e).__name__}: {e})") from None
        return cls(chain.to(dtype=dtype, device=device), head.get("meta", {}))
