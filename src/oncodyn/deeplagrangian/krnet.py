r"""The time-dependent KRnet: an invertible map :math:`x = G_\theta(y, \tau)` of
:math:`\mathbb R^d`, :math:`d \in \{2, 3\}`, for every gate time :math:`\tau \in [0, 1]`.

Layers (each maps ``x`` ``[N, d]`` and a per-sample gate ``tau`` ``[N, 1]`` to ``(y, logdet)``
with ``logdet`` ``[N]`` the log-determinant of its Jacobian, and has a closed-form inverse):

* :class:`LULinear` -- an invertible linear layer :math:`y = L(\tau)U(\tau)x + \tau b`,
  :math:`L = I + \tau\,\mathrm{tril}(A, -1)` unit lower triangular,
  :math:`U = \mathrm{diag}(e^{\tau s}) + \tau\,\mathrm{triu}(B, 1)`;
  inverse by forward and back substitution (d <= 3 rows).
* :class:`AffineCoupling` -- :math:`x_2 \leftarrow x_2\odot(1 + \alpha\tanh(\tau a))
  + e^{s}\odot\tanh(\tau b)` with :math:`(a, b) = \mathrm{MLP}([x_1, \phi(\tau)])`,
  :math:`0 < \alpha < 1` so the Jacobian stays positive; smooth activations (tanh or SiLU)
  because the loss needs :math:`\partial_t` and the score.
* :class:`TimeActNorm` -- :math:`y = x\odot e^{\tau\sigma(\tau)} + \tau m(\tau)`, the scale
  and shift affine functions of the time features :math:`\phi(\tau)`.
* :class:`MonotoneCDF` -- element-wise: on :math:`[-a, a]` the map
  :math:`y = -a + 2aF(x)` with :math:`F` the CDF of a piecewise-linear density on ``bins``
  equal bins (so :math:`y` is piecewise quadratic and monotone), the identity outside; the
  knot values at :math:`\pm a` are fixed at :math:`1/(2a)` so the map is :math:`C^1`, and the
  interior knots are :math:`\propto\mathrm{softmax}(\tau\theta)`. It lets the flow sharpen
  or widen the tails that affine couplings reach only slowly.

:class:`KRnetMap` stacks them in Knothe--Rosenblatt stages: in 2D one stage; in 3D two, the
last coordinate frozen (it only conditions the couplings) after the first. Every layer is
the identity at :math:`\tau = 0`: with :math:`\tau = (t - t_k)/(t_{k+1} - t_k)` a time-marching
segment starts exactly at the frozen map it is composed onto. With :math:`\tau \equiv 1` the
same class is a time-independent KRnet (the fit of the initial density).

The layer details follow the KRnet papers (Tang, Wan, Liao; He, Tang, Wan); the code is
ours and written from the equations above.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from oncodyn.core.checks import require

N_TIME_FEATURES = 3
#: gate value at which an anchored segment's stack is inverted (KRnetSpec.anchored)
ANCHOR = 0.5


def time_features(tau: torch.Tensor) -> torch.Tensor:
    r""":math:`\phi(\tau) = [\tau, \sin\pi\tau, \cos\pi\tau]`, ``[N, 1] -> [N, 3]``."""
    return torch.cat([tau, torch.sin(math.pi * tau), torch.cos(math.pi * tau)], dim=1)


@dataclass(frozen=True)
class KRnetSpec:
    """Architecture of a :class:`KRnetMap`.

    Attributes:
        dim: d, 2 or 3.
        n_couplings: affine coupling steps per stage (even, >= 2; the split alternates).
        width: hidden width of each coupling MLP.
        depth: hidden layers of each coupling MLP (>= 1).
        alpha: coupling scale bound, 0 < alpha < 1.
        activation: ``tanh`` or ``silu``.
        cdf_bins: bins of the final monotone layer (>= 2; 0 switches it off).
        cdf_halfwidth: a > 0, half-width of its interval (length units).
        anchored: the segment form. False (gated): every layer's departure from the identity
            is multiplied by tau, so G(., 0) = id, but the velocity at the segment's start,
            d/dtau G at tau = 0, is then a sum of single-layer generators (per coupling:
            x2 * f(x1) + g(x1)), which cannot express a radial field -x phi(|x|). True:
            G(x, tau) = H(H^{-1}(x, 1/2), 1/2 + tau/2) with H the gated stack, also the identity
            at tau = 0, whose starting velocity is a full chain-rule composition (twice the cost),
            but only once H(., 1/2) has moved away from the identity, which training barely does.
        spline_bins: bins of a :class:`SplineCoupling` after every affine coupling (0: none).
            With them each coordinate's starting velocity is a general function of all
            coordinates (in 3D the first stage then splits [x0, x1 | x2], so that x2 is moved
            by a coupling conditioned on both others before it is frozen).
        spline_halfwidth: their interval half-width a, in units of the segment frame's scale.
        spline_stretch: >= 0, their knot grading (:func:`pq_grid`; 0: uniform bins; 3: central
            bins 3.3x finer than uniform ones, edge bins 3x coarser).
    """

    dim: int = 2
    n_couplings: int = 4
    width: int = 32
    depth: int = 2
    alpha: float = 0.6
    activation: str = "tanh"
    cdf_bins: int = 16
    cdf_halfwidth: float = 4.0
    anchored: bool = False
    spline_bins: int = 0
    spline_halfwidth: float = 4.0
    spline_stretch: float = 0.0

    def __post_init__(self):
        require(self.dim in (2, 3), "dim", "2 or 3", self.dim)
        require(self.n_couplings >= 2 and self.n_couplings % 2 == 0, "n_couplings", "an even integer >= 2", self.n_couplings)
        require(self.width >= 1, "width", ">= 1", self.width)
        require(self.depth >= 1, "depth", ">= 1", self.depth)
        require(0 < self.alpha < 1, "alpha", "in (0, 1)", self.alpha)
        require(self.activation in ("tanh", "silu"), "activation", "tanh or silu", self.activation)
        require(self.cdf_bins == 0 or self.cdf_bins >= 2, "cdf_bins", "0 or >= 2", self.cdf_bins)
        require(self.cdf_halfwidth > 0 and math.isfinite(self.cdf_halfwidth), "cdf_halfwidth", "finite and > 0", self.cdf_halfwidth)
        require(self.spline_bins == 0 or self.spline_bins >= 2, "spline_bins", "0 or >= 2", self.spline_bins)
        require(self.spline_halfwidth > 0 and math.isfinite(self.spline_halfwidth), "spline_halfwidth", "finite and > 0",
                self.spline_halfwidth)
        require(0 <= self.spline_stretch <= 10, "spline_stretch", "in [0, 10]", self.spline_stretch)



class LULinear(nn.Module):
    """Invertible linear layer on the coordinates ``idx``, identity at tau = 0."""

    def __init__(self, dim: int, idx: list[int]):
        super().__init__()
        self.idx = list(idx)
        k = len(idx)
        self.lower = nn.Parameter(torch.zeros(k, k))
        self.upper = nn.Parameter(torch.zeros(k, k))
        self.log_diag = nn.Parameter(torch.zeros(k))
        self.bias = nn.Parameter(torch.zeros(k))
        self.register_buffer("mask_l", torch.tril(torch.ones(k, k), -1))
        self.register_buffer("mask_u", torch.triu(torch.ones(k, k), 1))

    def forward(self, x, tau):
        u = x[:, self.idx]
        A, B = self.lower * self.mask_l, self.upper * self.mask_u
        w = u * torch.exp(tau * self.log_diag) + tau * (u @ B.T)
        y = w + tau * (w @ A.T) + tau * self.bias
        out = x.clone()
        out[:, self.idx] = y
        return out, (tau[:, 0] * self.log_diag.sum())

    def inverse(self, y, tau):
        v = y[:, self.idx] - tau * self.bias
        A, B = self.lower * self.mask_l, self.upper * self.mask_u
        k = len(self.idx)
        w = []
        for i in range(k):  # L w = v, unit lower triangular
            acc = v[:, i]
            for j in range(i):
                acc = acc - tau[:, 0] * A[i, j] * w[j]
            w.append(acc)
        x = [None] * k
        for i in reversed(range(k)):  # U x = w
            acc = w[i]
            for j in range(i + 1, k):
                acc = acc - tau[:, 0] * B[i, j] * x[j]
            x[i] = acc / torch.exp(tau[:, 0] * self.log_diag[i])
        out = y.clone()
        out[:, self.idx] = torch.stack(x, dim=1)
        return out, -(tau[:, 0] * self.log_diag.sum())


def _mlp(n_in: int, n_out: int, width: int, depth: int, activation: str) -> nn.Sequential:
    act = nn.Tanh if activation == "tanh" else nn.SiLU
    layers: list[nn.Module] = [nn.Linear(n_in, width), act()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), act()]
    last = nn.Linear(width, n_out)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


class AffineCoupling(nn.Module):
    """``x[trans] <- x[trans] (1 + alpha tanh(tau a)) + e^s tanh(tau b)``, (a, b) from x[cond] and time."""

    def __init__(self, cond: list[int], trans: list[int], width: int, depth: int, alpha: float, activation: str):
        super().__init__()
        self.cond, self.trans, self.alpha = list(cond), list(trans), float(alpha)
        self.net = _mlp(len(cond) + N_TIME_FEATURES, 2 * len(trans), width, depth, activation)
        self.log_shift_scale = nn.Parameter(torch.zeros(len(trans)))

    def _ab(self, x, tau):
        h = self.net(torch.cat([x[:, self.cond], time_features(tau)], dim=1))
        a, b = h.chunk(2, dim=1)
        return 1.0 + self.alpha * torch.tanh(tau * a), torch.exp(self.log_shift_scale) * torch.tanh(tau * b)

    def forward(self, x, tau):
        scale, shift = self._ab(x, tau)
        out = x.clone()
        out[:, self.trans] = x[:, self.trans] * scale + shift
        return out, torch.log(scale).sum(1)

    def inverse(self, y, tau):
        scale, shift = self._ab(y, tau)
        out = y.clone()
        out[:, self.trans] = (y[:, self.trans] - shift) / scale
        return out, -torch.log(scale).sum(1)


class TimeActNorm(nn.Module):
    """``y = x e^{tau sigma(tau)} + tau m(tau)``, (sigma, m) affine in the time features."""

    def __init__(self, dim: int):
        super().__init__()
        self.lin = nn.Linear(N_TIME_FEATURES, 2 * dim)
        nn.init.zeros_(self.lin.weight)
        nn.init.zeros_(self.lin.bias)

    def _sm(self, tau):
        s, m = self.lin(time_features(tau)).chunk(2, dim=1)
        return tau * s, tau * m

    def forward(self, x, tau):
        s, m = self._sm(tau)
        return x * torch.exp(s) + m, s.sum(1)

    def inverse(self, y, tau):
        s, m = self._sm(tau)
        return (y - m) * torch.exp(-s), -s.sum(1)


def pq_grid(bins: int, a: float, stretch: float = 0.0) -> torch.Tensor:
    """Knot positions ``[bins+1]`` on [-a, a]: uniform for ``stretch`` 0, else
    a sinh(stretch s)/sinh(stretch) for s uniform on [-1, 1] (bins about stretch/sinh(stretch)
    as wide at the centre as uniform ones, wider at the edges: fine where a density concentrates)."""
    s = torch.linspace(-1.0, 1.0, bins + 1, dtype=torch.float64)
    k = a * s if stretch == 0 else a * torch.sinh(stretch * s) / math.sinh(stretch)
    k[0], k[-1] = -a, a
    return k


def _pq_knots(logits: torch.Tensor, knots: torch.Tensor):
    """Knot densities and bin-start CDF values ``[N, k, bins+1]`` of a piecewise-linear density
    on the knots ``[bins+1]`` (spanning [-a, a]); ``logits`` ``[N, k, bins-1]``. Zero logits give
    the uniform density 1/(2a), the identity map: the inner weights are a softmax shifted by
    the log of each inner knot's share of the interval."""
    a = float(knots[-1])
    h = torch.diff(knots)
    share = 0.5 * (h[1:] + h[:-1])  # [bins-1], the interval each inner knot stands for
    inner = torch.softmax(logits + torch.log(share / share.sum()), dim=-1) * (share.sum() / (2 * a)) / share
    edge = torch.full_like(inner[..., :1], 1.0 / (2 * a))
    v = torch.cat([edge, inner, edge], dim=-1)
    areas = 0.5 * h * (v[..., 1:] + v[..., :-1])
    cdf = torch.cat([torch.zeros_like(areas[..., :1]), torch.cumsum(areas, dim=-1)], dim=-1)
    return v, cdf, h


def _at(table: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``table[..., k]`` entry-wise: table ``[N, c, m]`` or ``[m]``, k ``[N, c]``."""
    if table.dim() == 1:
        return table[k]
    return table.gather(-1, k[..., None])[..., 0]


def pq_forward(x: torch.Tensor, logits: torch.Tensor, knots: torch.Tensor):
    """Monotone piecewise-quadratic map of each column of ``x`` ``[N, k]`` on [-a, a] (identity
    outside, C^1) with the knots ``[bins+1]`` of :func:`pq_grid`; returns ``(y, log y')``, both
    ``[N, k]``."""
    a = float(knots[-1])
    v, cdf, h = _pq_knots(logits, knots)
    inside = (x > -a) & (x < a)
    xc = torch.where(inside, x, torch.zeros_like(x))
    k = torch.searchsorted(knots[1:-1].contiguous(), xc.detach().contiguous(), right=True)
    hk = _at(h, k)
    xi = (xc - _at(knots, k)) / hk
    vk, vk1 = _at(v, k), _at(v, k + 1)
    F = _at(cdf, k) + hk * (vk * xi + 0.5 * (vk1 - vk) * xi * xi)
    deriv = 2 * a * (vk + (vk1 - vk) * xi)
    y = torch.where(inside, -a + 2 * a * F, x)
    return y, torch.where(inside, torch.log(deriv), torch.zeros_like(x))


def pq_inverse(y: torch.Tensor, logits: torch.Tensor, knots: torch.Tensor):
    """Inverse of :func:`pq_forward` in closed form (a quadratic per entry); ``(x, log x')``."""
    a = float(knots[-1])
    v, cdf, h = _pq_knots(logits, knots)
    inside = (y > -a) & (y < a)
    F = (torch.where(inside, y, torch.zeros_like(y)) + a) / (2 * a)
    n, d = y.shape
    k = torch.searchsorted(cdf.detach().expand(n, d, -1).reshape(n * d, -1)[:, 1:-1].contiguous(),
                           F.detach().reshape(n * d, 1), right=True).reshape(n, d)
    hk = _at(h, k)
    vk, vk1, ck = _at(v, k), _at(v, k + 1), _at(cdf, k)
    c = ((F - ck) / hk).clamp_min(0.0)
    dv = vk1 - vk
    xi = 2 * c / (vk + torch.sqrt(torch.clamp(vk * vk + 2 * dv * c, min=1e-300)))
    x = torch.where(inside, _at(knots, k) + hk * xi, y)
    deriv = 2 * a * (vk + dv * xi)
    return x, torch.where(inside, -torch.log(deriv), torch.zeros_like(y))


class MonotoneCDF(nn.Module):
    """Element-wise monotone piecewise-quadratic map on [-a, a], identity outside; C^1."""

    def __init__(self, dim: int, bins: int, halfwidth: float):
        super().__init__()
        self.bins, self.a = int(bins), float(halfwidth)
        self.theta = nn.Parameter(torch.zeros(dim, bins - 1))
        self.register_buffer("knots", pq_grid(self.bins, self.a).float(), persistent=False)

    def forward(self, x, tau):
        y, ld = pq_forward(x, tau[:, :, None] * self.theta[None], self.knots)
        return y, ld.sum(1)

    def inverse(self, y, tau):
        x, ld = pq_inverse(y, tau[:, :, None] * self.theta[None], self.knots)
        return x, ld.sum(1)


class SplineCoupling(nn.Module):
    r"""Conditional monotone coupling: each ``x[trans]`` entry mapped by a piecewise-quadratic
    CDF whose knot logits are :math:`\tau\,\mathrm{MLP}(x_{cond}, \phi(\tau))`, in the
    segment's frame :math:`u = (x - c)/s` on :math:`[-a, a]` (identity outside), with knots
    :func:`pq_grid` (``stretch`` > 0: finer at the frame's centre, where a density collapses).

    Its generator at :math:`\tau = 0` is a general function of *all* coordinates (the cond ones
    and the entry's own), where an affine coupling's is only :math:`x_2 f(x_1) + g(x_1)`: this
    is what lets a segment start with a radial velocity :math:`x\,\phi(|x|)`. The frame
    (``centre`` [d], ``scale`` [1], length units) is set per segment from its start points
    (:meth:`KRnetMap.set_frame`), so the bins follow the density as it concentrates.
    """

    def __init__(self, dim: int, cond: list[int], trans: list[int], width: int, depth: int, activation: str,
                 bins: int, halfwidth: float, stretch: float = 0.0):
        super().__init__()
        self.cond, self.trans, self.bins, self.a = list(cond), list(trans), int(bins), float(halfwidth)
        self.net = _mlp(len(cond) + N_TIME_FEATURES, len(trans) * (bins - 1), width, depth, activation)
        self.register_buffer("centre", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(1))
        self.register_buffer("knots", pq_grid(self.bins, self.a, stretch).float(), persistent=False)

    def _logits(self, x, tau):
        u = (x[:, self.cond] - self.centre[self.cond]) / self.scale
        h = self.net(torch.cat([u, time_features(tau)], dim=1))
        return tau[:, :, None] * h.reshape(x.shape[0], len(self.trans), self.bins - 1)

    def forward(self, x, tau):
        c, s = self.centre[self.trans], self.scale
        u, ld = pq_forward((x[:, self.trans] - c) / s, self._logits(x, tau), self.knots)
        out = x.clone()
        out[:, self.trans] = c + s * u
        return out, ld.sum(1)

    def inverse(self, y, tau):
        c, s = self.centre[self.trans], self.scale
        u, ld = pq_inverse((y[:, self.trans] - c) / s, self._logits(y, tau), self.knots)
        out = y.clone()
        out[:, self.trans] = c + s * u
        return out, ld.sum(1)


class KRnetMap(nn.Module):
    """A time-dependent KRnet ``G(x, tau)`` of R^d (see the module docstring).

    ``forward(x [N, d], tau [N, 1]) -> (y [N, d], logdet [N])``; ``inverse`` likewise.
    """

    def __init__(self, spec: KRnetSpec):
        super().__init__()
        self.spec = spec
        d = spec.dim
        layers: list[nn.Module] = []
        stages = [list(range(d))] if d == 2 else [list(range(3)), [0, 1]]
        for active in stages:
            frozen = [i for i in range(d) if i not in active]
            layers.append(LULinear(d, active))
            half = len(active) // 2 if len(active) > 2 else 1
            if spec.spline_bins and len(active) == 3:
                half = 2
            splits = [(active[:half], active[half:]), (active[half:], active[:half])]
            for j in range(spec.n_couplings):
                x1, x2 = splits[j % 2]
                layers.append(AffineCoupling(x1 + frozen, x2, spec.width, spec.depth, spec.alpha, spec.activation))
                if spec.spline_bins:
                    layers.append(SplineCoupling(d, x1 + frozen, x2, spec.width, spec.depth, spec.activation,
                                                 spec.spline_bins, spec.spline_halfwidth, spec.spline_stretch))
                layers.append(TimeActNorm(d))
        if spec.cdf_bins:
            layers.append(MonotoneCDF(d, spec.cdf_bins, spec.cdf_halfwidth))
        self.layers = nn.ModuleList(layers)

    def set_frame(self, centre: torch.Tensor, scale: float) -> None:
        """Centre ``[d]`` and scale (length) of the spline couplings' frame (no-op without them)."""
        for layer in self.layers:
            if isinstance(layer, SplineCoupling):
                layer.centre.copy_(centre.to(layer.centre))
                layer.scale.fill_(float(scale))

    def _forward(self, x, tau):
        logdet = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for layer in self.layers:
            x, ld = layer(x, tau)
            logdet = logdet + ld
        return x, logdet

    def _inverse(self, y, tau):
        logdet = torch.zeros(y.shape[0], dtype=y.dtype, device=y.device)
        for layer in reversed(self.layers):
            y, ld = layer.inverse(y, tau)
            logdet = logdet + ld
        return y, logdet

    def forward(self, x: torch.Tensor, tau: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.spec.anchored:
            return self._forward(x, tau)
        z, ld0 = self._inverse(x, torch.full_like(tau, ANCHOR))
        y, ld1 = self._forward(z, ANCHOR + (1 - ANCHOR) * tau)
        return y, ld0 + ld1

    def inverse(self, y: torch.Tensor, tau: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.spec.anchored:
            return self._inverse(y, tau)
        z, ld1 = self._inverse(y, ANCHOR + (1 - ANCHOR) * tau)
        x, ld0 = self._forward(z, torch.full_like(tau, ANCHOR))
        return x, ld0 + ld1
