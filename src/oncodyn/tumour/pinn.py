r"""The physics-informed network (PINN) baseline: the source method, forward and inverse.

The network represents the tumour cell density with a *hard* initial condition,

.. math:: u(x, t) = \hat t\,\mathcal N(\hat x, \hat t) + u_0(x), \qquad
          u_0(x) = a\,\exp(-b\,|x - x_0|^2),

with :math:`\mathcal N` a fully connected network (published: 3 hidden layers of 100 tanh
units, Glorot initialisation, one output), and is trained on the residual of the
diffuse-domain Fisher--Kolmogorov equation (``D(x) = D_w d(x)``, ``d`` the relative
diffusivity),

.. math:: r = \phi\,u_t - D_w\big[(d\phi)\,\Delta u + \nabla(d\phi)\cdot\nabla u\big]
              - \phi\,\rho\,u(1-u),

at a fixed set of collocation points (no-flux at the brain boundary is implicit in the
diffuse-domain form, so there is no boundary loss).

**Rescaling.** Inputs: :math:`\hat x = (x - c)/L`, with ``c`` the centre of the grid box and
``L`` half its largest extent (one scalar for all axes, so :math:`\Delta = \hat\Delta / L^2`),
and :math:`\hat t = t/T`. The residual is written in these variables and multiplied by
``T`` (days), so that it is dimensionless and O(1):

.. math:: \hat r = T\,r = \phi\,u_{\hat t} - \kappa\big[(d\phi)\,\hat\Delta u
              + \hat\nabla(d\phi)\cdot\hat\nabla u\big] - \lambda\,\phi\,u(1-u),
          \qquad \kappa = D_w T / L^2,\quad \lambda = \rho T,

with :math:`\hat\nabla(d\phi) = L\,\nabla(d\phi)`. The unknowns of the inverse problem are
trained as log-multipliers, :math:`D_w = D_{ref}\,e^{\theta_D}`, :math:`\rho = \rho_{ref}\,
e^{\theta_\rho}` with the references equal to the initial guesses (so :math:`\theta = 0` at
the start and both stay O(1); the exponential also keeps them positive).

**Coefficients at points.** :math:`\phi`, :math:`d\phi` and :math:`\nabla(d\phi)` (the latter
precomputed on the grid with second-order ``np.gradient``) are evaluated at arbitrary points
by multilinear interpolation of the grid arrays (:func:`multilinear_interpolate`, grid mm:
voxel ``idx`` centred at ``idx * spacing``; points outside the grid take the border value).
Because the collocation set is fixed, this is done once, before training.

**Collocation points.** ``n_collocation`` points drawn uniformly in space--time: space
uniformly in the bounding box (padded by one voxel, clipped to the grid) of the voxels with
:math:`\phi > \phi_{min}` (default 1e-2), rejecting points whose interpolated
:math:`\phi \le \phi_{min}` -- i.e. uniform on :math:`\{\phi > \phi_{min}\}` -- and time uniform
in ``[0, T]``. The set is drawn once and never resampled (as DeepXDE does by default).
Training is full batch: each Adam epoch is one step on the loss over all collocation points
(and all observations).

**Training.** Adam (lr 1e-3, halved once after half of the Adam epochs), then L-BFGS
(``torch.optim.LBFGS``, strong-Wolfe line search, full batch, history 50, ``tolerance_change``
0 and ``tolerance_grad`` 1e-9, so it stops only at its iteration count, a zero step or a
vanishing gradient). Inverse stopping rule (published): every ``record_every`` epochs record
:math:`(D_w, \rho)`; stop Adam when, over the last ``window`` records,
:math:`\sum|\Delta D|/|D| + \sum|\Delta\rho|/|\rho| < tol` (:func:`parameter_change`), or
after ``adam_epochs``, or when ``time_budget_s`` is spent; then run L-BFGS unless the budget
is spent.

**Why plain torch and not DeepXDE.** The source used DeepXDE (TensorFlow). Writing the few hundred
lines here by hand removes one dependency, keeps the same device/dtype handling as the rest
of the package (``device='auto'|'cpu'|'cuda'``, float32 networks), and avoids the pitfalls of
DeepXDE's PyTorch backend that the spec names: unknown coefficients must be passed as
``external_trainable_variables`` (otherwise they silently stay fixed), and its L-BFGS under
PyTorch 2.x has been reported not to lower the loss. Here the unknowns are ordinary
parameters of both optimisers, and a test checks that L-BFGS lowers the loss.

Units: lengths in mm (grid mm), times in days, ``D_w`` in mm^2/day, ``rho`` in 1/day.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from oncodyn.core.device import DEVICES, resolve_device
from oncodyn.tumour.model import FKParams, require

__all__ = [
    "PINNOptions",
    "PINNProblem",
    "PINNResult",
    "FKPinn",
    "multilinear_interpolate",
    "sample_collocation",
    "residual_coefficients",
    "fk_residual",
    "parameter_change",
    "should_stop",
    "train_forward",
    "train_inverse",
]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_INITS = ("glorot_normal", "glorot_uniform")


# ----------------------------------------------------------------------------- options, data


@dataclass(frozen=True)
class PINNOptions:
    """Network, sampling and training options of the PINN.

    Attributes:
        hidden: units per hidden layer (published 100).
        layers: number of hidden layers (published 3).
        n_collocation: number of fixed space--time collocation points (published 20,000).
        adam_epochs: maximal number of full-batch Adam epochs (published 100k for the
            forward problem; the inverse runs stopped by ``tol`` or ran up to 800k).
        lbfgs_iters: maximal number of L-BFGS iterations after Adam (15,000 = DeepXDE's
            default ``maxiter``); 0 skips the stage.
        lr: Adam learning rate (published 1e-3); halved after ``adam_epochs // 2`` epochs.
        record_every: epochs between history records (and stopping-rule records).
        window: number of most recent records the inverse stopping rule looks at (>= 2).
        tol: threshold of the inverse stopping rule (published 0.04 ... 0.20).
        time_budget_s: wall-time budget (s) for the whole call, or ``None`` for no budget.
        seed: seed of the network initialisation and of the collocation sampling.
        device: ``'auto'``, ``'cpu'`` or ``'cuda'``.
        dtype: ``'float32'`` (default, as networks in this package) or ``'float64'``.
        w_residual: weight w_f of the residual loss (published 1).
        w_data: weight w_i of the data loss (published 1).
        phi_min: collocation points are kept where the phase field exceeds this, in (0, 1).
        init: ``'glorot_normal'`` or ``'glorot_uniform'`` weights (biases zero).
        lbfgs_record_every: L-BFGS iterations between history records.
        lbfgs_history: L-BFGS memory (number of stored curvature pairs).
    """

    hidden: int = 100
    layers: int = 3
    n_collocation: int = 20_000
    adam_epochs: int = 100_000
    lbfgs_iters: int = 15_000
    lr: float = 1e-3
    record_every: int = 1000
    window: int = 10
    tol: float = 0.04
    time_budget_s: float | None = None
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    w_residual: float = 1.0
    w_data: float = 1.0
    phi_min: float = 1e-2
    init: str = "glorot_normal"
    lbfgs_record_every: int = 100
    lbfgs_history: int = 50

    def __post_init__(self) -> None:
        def pos_int(name: str, lo: int) -> None:
            v = getattr(self, name)
            require(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= lo,
                    name, f"an integer >= {lo}", v)

        for name, lo in (("hidden", 1), ("layers", 1), ("n_collocation", 1), ("adam_epochs", 0),
                         ("lbfgs_iters", 0), ("record_every", 1), ("window", 2), ("seed", 0),
                         ("lbfgs_record_every", 1), ("lbfgs_history", 1)):
            pos_int(name, lo)
        require(math.isfinite(self.lr) and self.lr > 0, "lr", "a finite number > 0", self.lr)
        require(math.isfinite(self.tol) and self.tol > 0, "tol", "a finite number > 0", self.tol)
        require(self.time_budget_s is None or (math.isfinite(self.time_budget_s) and self.time_budget_s > 0),
                "time_budget_s", "None or a finite number of seconds > 0", self.time_budget_s)
        require(self.device in DEVICES, "device", f"one of {DEVICES}", self.device)
        require(self.dtype in _DTYPES, "dtype", f"one of {tuple(_DTYPES)}", self.dtype)
        require(math.isfinite(self.w_residual) and self.w_residual >= 0, "w_residual", "a finite number >= 0",
                self.w_residual)
        require(math.isfinite(self.w_data) and self.w_data >= 0, "w_data", "a finite number >= 0", self.w_data)
        require(0 < self.phi_min < 1, "phi_min", "in (0, 1)", self.phi_min)
        require(self.init in _INITS, "init", f"one of {_INITS}", self.init)


@dataclass(frozen=True, eq=False)
class PINNProblem:
    """The anatomy and the known data of a (forward or inverse) PINN problem.

    Attributes:
        phi: phase field in [0, 1], shape ``[n0, n1(, n2)]`` (every n_k >= 2).
        diffusivity: relative diffusivity d(x) >= 0 (D(x) = D_w d(x)), shape as ``phi``.
        spacing: voxel size per axis (mm), length ``ndim``.
        x0: tumour origin (grid mm), length ``ndim``.
        t_end: end time T > 0 (days).
        ic: parameters of the initial condition (``ic_amplitude`` a, ``ic_decay`` b in 1/mm^2);
            its ``D_white``, ``rho`` and ``grey_ratio`` are not used here.
    """

    phi: np.ndarray
    diffusivity: np.ndarray
    spacing: tuple[float, ...]
    x0: tuple[float, ...]
    t_end: float
    ic: FKParams = field(default_factory=FKParams)

    def __post_init__(self) -> None:
        phi = np.asarray(self.phi, dtype=np.float64)
        d = np.asarray(self.diffusivity, dtype=np.float64)
        require(phi.ndim in (2, 3), "phi", "a 2D or 3D array", f"shape {phi.shape}")
        require(all(n >= 2 for n in phi.shape), "phi", "at least 2 voxels per axis", f"shape {phi.shape}")
        require(d.shape == phi.shape, "diffusivity", f"the shape of phi {phi.shape}", f"shape {d.shape}")
        require(bool(np.all(np.isfinite(phi))) and phi.min() >= -1e-6 and phi.max() <= 1 + 1e-6, "phi",
                "finite values in [0, 1]", f"range [{np.nanmin(phi):.3g}, {np.nanmax(phi):.3g}]")
        require(bool(np.all(np.isfinite(d))) and d.min() >= 0, "diffusivity", "finite values >= 0",
                f"min {np.nanmin(d):.3g}")
        spacing = tuple(float(h) for h in np.atleast_1d(self.spacing))
        require(len(spacing) == phi.ndim and all(math.isfinite(h) and h > 0 for h in spacing), "spacing",
                f"{phi.ndim} positive voxel sizes (mm)", self.spacing)
        x0 = tuple(float(v) for v in np.atleast_1d(self.x0))
        require(len(x0) == phi.ndim and all(math.isfinite(v) for v in x0), "x0",
                f"{phi.ndim} finite coordinates (grid mm)", self.x0)
        require(math.isfinite(self.t_end) and self.t_end > 0, "t_end", "a finite number of days > 0", self.t_end)
        require(isinstance(self.ic, FKParams), "ic", "an FKParams", type(self.ic).__name__)
        object.__setattr__(self, "phi", np.clip(phi, 0.0, 1.0))
        object.__setattr__(self, "diffusivity", d)
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "x0", x0)
        object.__setattr__(self, "t_end", float(self.t_end))

    @property
    def ndim(self) -> int:
        return self.phi.ndim

    @property
    def shape(self) -> tuple[int, ...]:
        return self.phi.shape

    def coords(self) -> list[np.ndarray]:
        """Grid-mm coordinates of voxel centres per axis."""
        return [np.arange(n) * h for n, h in zip(self.shape, self.spacing)]

    def extent(self) -> np.ndarray:
        """Upper corner of the grid box ``(n_k - 1) h_k`` (mm), shape ``[ndim]`` (lower is 0)."""
        return (np.asarray(self.shape) - 1) * np.asarray(self.spacing)

    def centre_and_length(self) -> tuple[np.ndarray, float]:
        """Input scaling: centre ``c`` of the grid box (mm, ``[ndim]``) and ``L`` = half its largest extent (mm)."""
        ext = self.extent()
        return ext / 2.0, float(ext.max() / 2.0)

    def coefficient_grids(self) -> np.ndarray:
        """Channels ``[phi, d*phi, d_0(d*phi), ..., d_{ndim-1}(d*phi)]``, shape ``[2 + ndim, *shape]``.

        The gradient (1/mm) is second-order ``np.gradient`` (one-sided second order at the edges).
        """
        dphi = self.diffusivity * self.phi
        grads = np.gradient(dphi, *self.spacing, edge_order=2)
        if self.ndim == 1:  # pragma: no cover - ndim is 2 or 3
            grads = [grads]
        return np.stack([self.phi, dphi, *grads])


# ----------------------------------------------------------------------------- interpolation


def multilinear_interpolate(values: np.ndarray, spacing: Sequence[float], points: np.ndarray) -> np.ndarray:
    """Multilinear (bi-/trilinear) interpolation of grid arrays at arbitrary points.

    Grid convention: the value ``values[..., i0, i1(, i2)]`` sits at grid mm
    ``(i0 h0, i1 h1(, i2 h2))``. Points outside the grid box take the value at the nearest
    border point. Implemented with ``torch.nn.functional.grid_sample`` (``align_corners=True``,
    float64), whose last grid dimension runs over the axes in reverse order (x = last axis).

    Args:
        values: grid array(s), shape ``[*shape]`` or ``[C, *shape]`` with ``len(shape) = ndim``
            (2 or 3).
        spacing: voxel size per axis (mm), length ``ndim``.
        points: query points (grid mm), shape ``[n, ndim]``.
    Returns:
        Interpolated values, float64, shape ``[n]`` (for ``[*shape]`` input) or ``[n, C]``.
    """
    pts = np.atleast_2d(np.asarray(points, dtype=np.float64))
    ndim = pts.shape[1]
    require(ndim in (2, 3), "points", "shape [n, 2] or [n, 3]", f"shape {pts.shape}")
    vals = np.asarray(values, dtype=np.float64)
    single = vals.ndim == ndim
    if single:
        vals = vals[None]
    require(vals.ndim == ndim + 1, "values", f"shape [*shape] or [C, *shape] with {ndim} spatial axes",
            f"shape {np.shape(values)}")
    shape = np.asarray(vals.shape[1:])
    require(bool(np.all(shape >= 2)), "values", "at least 2 voxels per axis", f"shape {vals.shape}")
    h = np.asarray(spacing, dtype=np.float64)
    require(h.shape == (ndim,) and bool(np.all(h > 0)), "spacing", f"{ndim} positive voxel sizes", spacing)
    # normalised coordinates in [-1, 1] (align_corners=True: -1 and 1 are the centres of the end voxels)
    g = 2.0 * (pts / h) / (shape - 1) - 1.0
    g = g[:, ::-1].copy()  # grid_sample: x indexes the last axis
    inp = torch.from_numpy(vals)[None]  # [1, C, *shape]
    grid = torch.from_numpy(g).reshape((1,) * ndim + (len(pts), ndim))
    out = torch.nn.functional.grid_sample(inp, grid, mode="bilinear", padding_mode="border", align_corners=True)
    out = out.reshape(vals.shape[0], len(pts)).T.numpy()
    return out[:, 0].copy() if single else out.copy()


def sample_collocation(problem: PINNProblem, n: int, phi_min: float,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Collocation points uniform on ``{phi > phi_min} x [0, T]``.

    Space: uniform in the bounding box (padded by one voxel, clipped to the grid box) of the
    voxels with ``phi > phi_min``, keeping points whose interpolated phase field exceeds
    ``phi_min`` (rejection sampling; every such point lies in that box, so the result is
    uniform on the set). Time: uniform in ``[0, T]``.

    Args:
        problem: the anatomy. n: number of points. phi_min: threshold in (0, 1).
        rng: the random generator.
    Returns:
        ``(points [n, ndim] grid mm, times [n] days)``, float64.
    """
    h = np.asarray(problem.spacing)
    idx = np.argwhere(problem.phi > phi_min)
    require(len(idx) > 0, "phi", f"some voxels with phi > phi_min = {phi_min}", "none")
    lo = np.maximum(idx.min(axis=0) - 1, 0) * h
    hi = np.minimum(idx.max(axis=0) + 1, np.asarray(problem.shape) - 1) * h
    kept: list[np.ndarray] = []
    count = 0
    for _ in range(1000):
        batch = rng.uniform(lo, hi, size=(max(2 * (n - count), 1024), problem.ndim))
        ok = batch[multilinear_interpolate(problem.phi, problem.spacing, batch) > phi_min]
        kept.append(ok)
        count += len(ok)
        if count >= n:
            break
    require(count >= n, "phi", f"a region phi > {phi_min} large enough to sample", f"{count} of {n} points")
    points = np.concatenate(kept)[:n]
    times = rng.uniform(0.0, problem.t_end, size=n)
    return points, times


def residual_coefficients(problem: PINNProblem, points: np.ndarray) -> np.ndarray:
    """Coefficients of the scaled residual at points (see :func:`fk_residual`).

    Args:
        problem: the anatomy. points: grid mm, shape ``[n, ndim]``.
    Returns:
        ``[n, 2 + ndim]`` float64: ``phi``, ``d*phi`` and ``L * grad(d*phi)`` (dimensionless; ``L``
        from :meth:`PINNProblem.centre_and_length`), multilinearly interpolated from the grid.
    """
    coeffs = multilinear_interpolate(problem.coefficient_grids(), problem.spacing, points)
    coeffs[:, 2:] *= problem.centre_and_length()[1]
    return coeffs


# ----------------------------------------------------------------------------- network


class FKPinn(nn.Module):
    r"""``u(x, t) = t_hat * NN(x_hat, t_hat) + u_0(x)``: the PINN with a hard initial condition.

    ``NN``: ``layers`` hidden tanh layers of ``hidden`` units, Glorot weights, zero biases,
    one linear output. Inputs are the scaled ``x_hat = (x - c)/L`` ``[n, ndim]`` and
    ``t_hat = t/T`` ``[n]``; the initial condition in scaled variables is
    ``a exp(-b L^2 |x_hat - x0_hat|^2)``.

    Args:
        ndim: 2 or 3. hidden, layers: width and depth. centre: ``c`` (mm, ``[ndim]``).
        length: ``L`` (mm). t_end: ``T`` (days). x0: origin (grid mm, ``[ndim]``).
        ic_amplitude: ``a``. ic_decay: ``b`` (1/mm^2). init: ``'glorot_normal'|'glorot_uniform'``.
        generator: torch generator of the initial weights (CPU).
    """

    def __init__(self, ndim: int, hidden: int, layers: int, centre: Sequence[float], length: float,
                 t_end: float, x0: Sequence[float], ic_amplitude: float, ic_decay: float,
                 init: str = "glorot_normal", generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.ndim = int(ndim)
        self.length = float(length)
        self.t_end = float(t_end)
        self.ic_amplitude = float(ic_amplitude)
        self.ic_decay_hat = float(ic_decay) * self.length**2  # b L^2 (dimensionless)
        self.centre = np.asarray(centre, dtype=np.float64)  # kept in float64 for input scaling
        self.register_buffer("x0_hat", torch.as_tensor((np.asarray(x0, float) - np.asarray(centre, float))
                                                       / self.length))
        sizes = [self.ndim + 1] + [hidden] * layers
        mods: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            mods += [nn.Linear(a, b), nn.Tanh()]
        mods.append(nn.Linear(sizes[-1], 1))
        self.net = nn.Sequential(*mods)
        fill = nn.init.xavier_normal_ if init == "glorot_normal" else nn.init.xavier_uniform_
        for m in self.net:
            if isinstance(m, nn.Linear):
                fill(m.weight, generator=generator)
                nn.init.zeros_(m.bias)

    def initial(self, xhat: torch.Tensor) -> torch.Tensor:
        """``u_0`` at scaled points ``[n, ndim]`` -> ``[n]``."""
        r2 = ((xhat - self.x0_hat.to(xhat)) ** 2).sum(dim=-1)
        return self.ic_amplitude * torch.exp(-self.ic_decay_hat * r2)

    def forward(self, xhat: torch.Tensor, that: torch.Tensor) -> torch.Tensor:
        """``u`` at scaled points ``xhat [n, ndim]``, times ``that [n]`` -> ``[n]``."""
        nn_out = self.net(torch.cat([xhat, that[:, None]], dim=1))[:, 0]
        return that * nn_out + self.initial(xhat)

    def scale(self, points: np.ndarray | torch.Tensor, times) -> tuple[torch.Tensor, torch.Tensor]:
        """Grid mm ``[n, ndim]`` and days ``[n]`` (or a scalar) -> ``(xhat, that)`` on the model's device/dtype."""
        p = next(self.parameters())
        x = torch.as_tensor(np.asarray(points, dtype=np.float64)).reshape(-1, self.ndim)
        t = torch.as_tensor(np.asarray(times, dtype=np.float64)).reshape(-1)
        if t.numel() == 1:
            t = t.expand(x.shape[0])
        require(t.shape[0] == x.shape[0], "times", f"a scalar or {x.shape[0]} values", f"{t.shape[0]} values")
        xhat = (x - torch.from_numpy(self.centre)) / self.length
        return xhat.to(p), (t / self.t_end).to(p)


# ----------------------------------------------------------------------------- residual


def fk_residual(u_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], xhat: torch.Tensor,
                that: torch.Tensor, coeffs: torch.Tensor, kappa: torch.Tensor | float,
                lam: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Scaled diffuse-domain residual at points, by automatic differentiation.

    .. math:: \hat r = \phi\,u_{\hat t} - \kappa\big[(d\phi)\,\hat\Delta u
              + \hat\nabla(d\phi)\cdot\hat\nabla u\big] - \lambda\,\phi\,u(1-u)

    (``= T r`` for ``kappa = D_w T / L^2``, ``lam = rho T``).

    Args:
        u_fn: ``u(xhat [n, ndim], that [n]) -> [n]``, differentiable (a network or a test function).
        xhat: scaled positions ``[n, ndim]``. that: scaled times ``[n]`` (no grad required).
        coeffs: ``[n, 2 + ndim]``: ``phi``, ``d*phi`` and the *scaled* gradient
            ``L * grad(d*phi)`` at the points.
        kappa: ``D_w T / L^2`` (may carry a gradient). lam: ``rho T`` (may carry a gradient).
    Returns:
        ``(r_hat [n], u [n])``; the graph is kept (``create_graph=True``) so the residual can
        be differentiated with respect to the network parameters and the unknowns.
    """
    ndim = xhat.shape[1]
    x = xhat.detach().requires_grad_(True)
    t = that.detach().requires_grad_(True)
    u = u_fn(x, t)
    gx, gt = torch.autograd.grad(u.sum(), (x, t), create_graph=True)
    lap = torch.zeros_like(u)
    for k in range(ndim):
        lap = lap + torch.autograd.grad(gx[:, k].sum(), x, create_graph=True)[0][:, k]
    phi, dphi, grad_dphi = coeffs[:, 0], coeffs[:, 1], coeffs[:, 2:]
    r = phi * gt - kappa * (dphi * lap + (grad_dphi * gx).sum(dim=1)) - lam * phi * u * (1.0 - u)
    return r, u


# ----------------------------------------------------------------------------- stopping rule


def parameter_change(records: Sequence[tuple[float, float]], window: int) -> float:
    r"""Windowed relative change of the recorded unknowns (the published stopping statistic).

    Over the last ``window`` records :math:`(D_j, \rho_j)`,

    .. math:: S = \sum_j |D_j - D_{j-1}|/|D_j| + \sum_j |\rho_j - \rho_{j-1}|/|\rho_j|

    (``window - 1`` consecutive differences, each relative to the newer value).

    Args:
        records: sequence of ``(D_w, rho)`` in recording order.
        window: number of most recent records used (>= 2).
    Returns:
        ``S``, or ``inf`` while fewer than ``window`` records exist.
    """
    require(window >= 2, "window", "an integer >= 2", window)
    if len(records) < window:
        return math.inf
    arr = np.asarray(records[-window:], dtype=np.float64)
    return float(np.sum(np.abs(np.diff(arr, axis=0)) / np.abs(arr[1:])))


def should_stop(records: Sequence[tuple[float, float]], window: int, tol: float) -> bool:
    """True when :func:`parameter_change` over the last ``window`` records is below ``tol``."""
    return parameter_change(records, window) < tol


# ----------------------------------------------------------------------------- result


@dataclass(eq=False)
class PINNResult:
    """A trained PINN and its training record.

    Attributes:
        model: the trained :class:`FKPinn` (on the training device).
        problem: the problem it was trained on.
        options: the options used.
        history: one dict per record with ``epoch`` (Adam epochs, then + L-BFGS iterations),
            ``stage`` (``'adam'``/``'lbfgs'``), ``wall_time_s`` (since the call began),
            ``loss``, ``loss_residual``, ``loss_data`` (0 for the forward problem),
            ``D_white`` (mm^2/day), ``rho`` (1/day) and, when truths were given, ``D_err``,
            ``rho_err`` (relative errors).
        D_white, rho: final values (the given ones for the forward problem).
        loss_before_lbfgs: full-batch loss at the end of Adam (the L-BFGS starting point).
        loss_after_lbfgs: loss after the L-BFGS stage, or ``None`` when it did not run.
        stop_reason: why Adam stopped: ``'adam_epochs'``, ``'tolerance'``, ``'time_budget'`` or
            ``'non_finite'`` (the loss became NaN/inf; L-BFGS is then skipped).
        lbfgs_stop: ``'iterations'``, ``'converged'``, ``'time_budget'``, ``'non_finite'``
            (parameters restored to the pre-L-BFGS state) or ``'skipped'``.
        adam_epochs_run, lbfgs_iterations: work done in each stage.
        wall_time_s: total wall time of the call (s).
        collocation: ``(points [n, ndim] grid mm, times [n] days)`` used for training.
    """

    model: FKPinn
    problem: PINNProblem
    options: PINNOptions
    history: list[dict]
    D_white: float
    rho: float
    loss_before_lbfgs: float
    loss_after_lbfgs: float | None
    stop_reason: str
    lbfgs_stop: str
    adam_epochs_run: int
    lbfgs_iterations: int
    wall_time_s: float
    collocation: tuple[np.ndarray, np.ndarray]

    @torch.no_grad()
    def predict(self, points: np.ndarray, t, batch: int = 65536) -> np.ndarray:
        """Network density at points.

        Args:
            points: grid mm, shape ``[n, ndim]``. t: days, shape ``[n]`` or a scalar.
            batch: evaluation batch size.
        Returns:
            ``u``, float64, shape ``[n]`` (raw network output, not masked or clipped).
        """
        xhat, that = self.model.scale(points, t)
        out = [self.model(xhat[i:i + batch], that[i:i + batch]) for i in range(0, xhat.shape[0], batch)]
        return torch.cat(out).double().cpu().numpy() if out else np.zeros(0)

    def predict_grid(self, t: float, mask: bool = True) -> np.ndarray:
        """Density on the voxel grid at time ``t`` (days), shape ``[*shape]``.

        With ``mask`` the values where ``phi <= options.phi_min`` (outside the sampled domain,
        where the network is unconstrained) are set to 0.
        """
        mesh = np.meshgrid(*self.problem.coords(), indexing="ij")
        pts = np.stack([m.ravel() for m in mesh], axis=1)
        u = self.predict(pts, float(t)).reshape(self.problem.shape)
        if mask:
            u = np.where(self.problem.phi > self.options.phi_min, u, 0.0)
        return u


# ----------------------------------------------------------------------------- training


class _Trainer:
    """Shared machinery of the forward and inverse runs (setup, losses, both stages)."""

    def __init__(self, problem: PINNProblem, options: PINNOptions, D_ref: float, rho_ref: float,
                 learn: bool, observations=None, truths: tuple[float | None, float | None] = (None, None),
                 progress: bool = False) -> None:
        self.t0 = time.perf_counter()
        self.problem, self.options, self.progress = problem, options, progress
        self.device = torch.device(resolve_device(options.device))
        self.dtype = _DTYPES[options.dtype]
        rng = np.random.default_rng(options.seed)
        gen = torch.Generator().manual_seed(options.seed)
        centre, length = problem.centre_and_length()
        self.length = length
        self.model = FKPinn(problem.ndim, options.hidden, options.layers, centre, length, problem.t_end,
                            problem.x0, problem.ic.ic_amplitude, problem.ic.ic_decay, options.init,
                            generator=gen).to(device=self.device, dtype=self.dtype)
        pts, times = sample_collocation(problem, options.n_collocation, options.phi_min, rng)
        self.collocation = (pts, times)
        coeffs = residual_coefficients(problem, pts)
        self.xc, self.tc = self.model.scale(pts, times)
        self.coeffs = torch.as_tensor(coeffs).to(self.device, self.dtype)
        self.D_ref, self.rho_ref = float(D_ref), float(rho_ref)
        self.theta = nn.Parameter(torch.zeros(2, device=self.device, dtype=self.dtype), requires_grad=learn)
        self.learn = learn
        self.obs = None
        if observations is not None:
            opts, otimes, ovals = observations
            xo, to = self.model.scale(opts, otimes)
            self.obs = (xo, to, torch.as_tensor(np.asarray(ovals, np.float64)).to(self.device, self.dtype))
        self.D_true, self.rho_true = truths
        self.history: list[dict] = []

    # -- parameters and losses
    def params_phys(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.D_ref * torch.exp(self.theta[0]), self.rho_ref * torch.exp(self.theta[1])

    def trainable(self) -> list[torch.Tensor]:
        ps = list(self.model.parameters())
        return ps + [self.theta] if self.learn else ps

    def loss(self) -> tuple[torch.Tensor, float, float]:
        D, rho = self.params_phys()
        T = self.problem.t_end
        r, _ = fk_residual(self.model, self.xc, self.tc, self.coeffs, D * T / self.length**2, rho * T)
        l_res = (r**2).mean()
        total = self.options.w_residual * l_res
        l_dat = torch.zeros((), device=self.device, dtype=self.dtype)
        if self.obs is not None:
            xo, to, vo = self.obs
            l_dat = ((self.model(xo, to) - vo) ** 2).mean()
            total = total + self.options.w_data * l_dat
        return total, float(l_res.detach()), float(l_dat.detach())

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def budget_spent(self) -> bool:
        b = self.options.time_budget_s
        return b is not None and self.elapsed() >= b

    def record(self, epoch: int, stage: str, total: float, l_res: float, l_dat: float) -> dict:
        D, rho = (float(v.detach()) for v in self.params_phys())
        rec = {"epoch": epoch, "stage": stage, "wall_time_s": self.elapsed(), "loss": total,
               "loss_residual": l_res, "loss_data": l_dat, "D_white": D, "rho": rho}
        if self.D_true is not None:
            rec["D_err"] = abs(D - self.D_true) / abs(self.D_true)
        if self.rho_true is not None:
            rec["rho_err"] = abs(rho - self.rho_true) / abs(self.rho_true)
        self.history.append(rec)
        return rec

    # -- stages
    def run(self) -> PINNResult:
        from tqdm import tqdm

        o = self.options
        opt = torch.optim.Adam(self.trainable(), lr=o.lr)
        records: list[tuple[float, float]] = []
        stop_reason = "adam_epochs"
        epoch = 0
        bar = tqdm(total=o.adam_epochs, desc="PINN Adam", disable=not self.progress, leave=False)
        while True:
            total, l_res, l_dat = self.loss()
            tv = float(total.detach())
            spent = self.budget_spent()
            last = epoch >= o.adam_epochs or spent or not math.isfinite(tv)
            if epoch % o.record_every == 0 or last:
                rec = self.record(epoch, "adam", tv, l_res, l_dat)
                records.append((rec["D_white"], rec["rho"]))
                bar.set_postfix(loss=f"{tv:.3e}", D=f"{rec['D_white']:.4g}", rho=f"{rec['rho']:.4g}")
                if self.learn and should_stop(records, o.window, o.tol):
                    stop_reason = "tolerance"
                    break
            if not math.isfinite(tv):
                stop_reason = "non_finite"
                break
            if spent:
                stop_reason = "time_budget"
                break
            if last:
                break
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            epoch += 1
            bar.update(1)
            if epoch == o.adam_epochs // 2:
                for g in opt.param_groups:
                    g["lr"] = o.lr / 2
        bar.close()
        loss_before = tv
        loss_after: float | None = None
        lbfgs_stop, lbfgs_done = "skipped", 0
        if o.lbfgs_iters > 0 and not self.budget_spent() and math.isfinite(loss_before):
            lbfgs_stop, lbfgs_done, loss_after = self._lbfgs(epoch)
        D, rho = (float(v.detach()) for v in self.params_phys())
        return PINNResult(model=self.model, problem=self.problem, options=o, history=self.history,
                          D_white=D, rho=rho, loss_before_lbfgs=loss_before, loss_after_lbfgs=loss_after,
                          stop_reason=stop_reason, lbfgs_stop=lbfgs_stop, adam_epochs_run=epoch,
                          lbfgs_iterations=lbfgs_done, wall_time_s=self.elapsed(), collocation=self.collocation)

    def _lbfgs(self, adam_epochs_run: int) -> tuple[str, int, float]:
        from tqdm import tqdm

        o = self.options
        params = self.trainable()
        saved = (copy.deepcopy(self.model.state_dict()), self.theta.detach().clone())
        opt = torch.optim.LBFGS(params, lr=1.0, max_iter=o.lbfgs_record_every, history_size=o.lbfgs_history,
                                tolerance_grad=1e-9, tolerance_change=0.0, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            total, _, _ = self.loss()
            total.backward()
            return total

        done, stop = 0, "iterations"
        bar = tqdm(total=o.lbfgs_iters, desc="PINN L-BFGS", disable=not self.progress, leave=False)
        state = opt.state[params[0]]
        tv = math.nan
        while done < o.lbfgs_iters:
            chunk = min(o.lbfgs_record_every, o.lbfgs_iters - done)
            opt.param_groups[0]["max_iter"] = chunk
            opt.param_groups[0]["max_eval"] = chunk * 5 // 4 + 1
            before = state.get("n_iter", 0)
            opt.step(closure)
            ran = state.get("n_iter", 0) - before
            done += ran
            bar.update(ran)
            total, l_res, l_dat = self.loss()
            tv = float(total.detach())
            self.record(adam_epochs_run + done, "lbfgs", tv, l_res, l_dat)
            bar.set_postfix(loss=f"{tv:.3e}")
            if not math.isfinite(tv):
                stop = "non_finite"
                self.model.load_state_dict(saved[0])
                with torch.no_grad():
                    self.theta.copy_(saved[1])
                break
            if ran < chunk:
                stop = "converged"
                break
            if self.budget_spent():
                stop = "time_budget" if done < o.lbfgs_iters else "iterations"
                break
        bar.close()
        return stop, done, tv


def train_forward(problem: PINNProblem, params: FKParams, options: PINNOptions = PINNOptions(),
                  progress: bool = False) -> PINNResult:
    """Solve the forward problem with known ``D_w``, ``rho`` by training the PINN on the residual.

    Adam for ``options.adam_epochs`` epochs (or until ``time_budget_s``), then L-BFGS.

    Args:
        problem: anatomy, origin, end time and initial condition.
        params: the model parameters; ``D_white`` (mm^2/day) and ``rho`` (1/day) are used.
        options: network and training options.
        progress: show tqdm progress bars (stderr).
    Returns:
        The trained network and its history (``loss_data`` is 0).
    """
    require(isinstance(params, FKParams), "params", "an FKParams", type(params).__name__)
    tr = _Trainer(problem, options, params.D_white, params.rho, learn=False, progress=progress)
    return tr.run()


def train_inverse(problem: PINNProblem, observations: tuple[np.ndarray, np.ndarray, np.ndarray],
                  options: PINNOptions = PINNOptions(), D_init: float = 0.13, rho_init: float = 0.025,
                  D_true: float | None = None, rho_true: float | None = None,
                  progress: bool = False) -> PINNResult:
    """Infer ``(D_w, rho)`` by training the PINN and the unknowns jointly on residual + data.

    Loss ``L = w_f mean(r_hat^2) + w_i mean((u - u_obs)^2)``. The unknowns are
    ``D_w = D_init exp(theta_D)``, ``rho = rho_init exp(theta_rho)`` with ``theta`` trained by
    both optimisers. Adam stops by the windowed stopping rule (:func:`should_stop` with
    ``options.window``, ``options.tol`` on records every ``options.record_every`` epochs), at
    ``options.adam_epochs`` or when ``options.time_budget_s`` is spent; L-BFGS follows unless
    the budget is spent.

    Args:
        problem: anatomy, origin, end time and initial condition.
        observations: ``(points [n, ndim] grid mm, times [n] days, values [n])``.
        options: network and training options.
        D_init: initial guess of ``D_w`` > 0 (mm^2/day). rho_init: initial ``rho`` > 0 (1/day).
        D_true, rho_true: optional truths; the history then carries relative errors.
        progress: show tqdm progress bars (stderr).
    Returns:
        The trained network, the estimates ``D_white``, ``rho`` and the history.
    """
    require(math.isfinite(D_init) and D_init > 0, "D_init", "a finite number > 0 (mm^2/day)", D_init)
    require(math.isfinite(rho_init) and rho_init > 0, "rho_init", "a finite number > 0 (1/day)", rho_init)
    for name, v in (("D_true", D_true), ("rho_true", rho_true)):
        require(v is None or (math.isfinite(v) and v != 0), name, "None or a finite non-zero number", v)
    require(len(observations) == 3, "observations", "(points, times, values)", f"{len(observations)} items")
    pts = np.asarray(observations[0], np.float64)
    times = np.asarray(observations[1], np.float64).reshape(-1)
    vals = np.asarray(observations[2], np.float64).reshape(-1)
    n = len(vals)
    require(n > 0, "observations", "at least one observation", 0)
    require(pts.shape == (n, problem.ndim), "observations points", f"shape [{n}, {problem.ndim}] (grid mm)",
            f"shape {pts.shape}")
    require(times.shape == (n,), "observations times", f"shape [{n}] (days)", f"shape {times.shape}")
    for name, a in (("observations points", pts), ("observations times", times), ("observations values", vals)):
        require(bool(np.all(np.isfinite(a))), name, "finite", "non-finite values")
    require(bool(times.min() >= 0 and times.max() <= problem.t_end), "observations times",
            f"in [0, t_end = {problem.t_end}] days", f"range [{times.min():.4g}, {times.max():.4g}]")
    tr = _Trainer(problem, options, D_init, rho_init, learn=True, observations=(pts, times, vals),
                  truths=(D_true, rho_true), progress=progress)
    return tr.run()
