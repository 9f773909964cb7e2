r"""NSIPF: the neural interpolator of the PHKS particle--field method.

In the particle--field solver of the parabolic--hyperbolic Keller--Segel (PHKS) model the
attractant :math:`c` lives on the bins of a :class:`~oncodyn.chemotaxis.phks.BinGrid` and
:math:`\nabla c` is needed at every particle. NSIPF (spec ``angiogenesis-nsipf.md``, Method 4)
first passes the binned -- coarse, noisy -- field through a small convolutional network
(:class:`InterpolatorCNN`) that returns a smooth field on the same bins, then differentiates a
smooth interpolant of that output at the particles (here the local Catmull--Rom cubic,
:func:`~oncodyn.chemotaxis.interpolate.catmull_rom_gradient`).

Pieces:

* :class:`InterpolatorCNN` -- the spec's encoder--decoder: 3-kernels 1->16->32->32->32 (ReLU
  each), the 2nd conv's output added to the 4th's (skip), 32->16 (ReLU), 16->1 (ReLU, c >= 0);
  replicate padding (no-flux walls); Conv3d (d = 3, the spec) or Conv2d (d = 2).
  Receptive field: 6 layers of 3-kernels, so an output bin depends on the input within 6 bins
  (the *halo*, :data:`HALO`).
* amplitude normalisation (our choice, not the source's): the network sees ``c / s`` and its
  output is multiplied by ``s``, ``s`` = the maximum of its input region, so one network serves
  every amplitude of c (A2 scales c0 far above the training data).
* training data (:func:`radial_snapshots`, :func:`patch_from_radial`, :func:`augment`,
  :func:`make_dataset`): the cheap 3D radial PHKS (γ = χ = 1, M0 = 1, r in [0, 100],
  t in [0, 50]) from random radial initial data; patches rebuilt on a Cartesian grid around a
  shifted centre; input = down-sampled (2-4), blurred (σ 0-0.5) patch, target = clean patch.
* :func:`train` with :class:`TrainOptions` (MSE, Adam, resumable per-epoch checkpoint) and the
  weights artefact (:func:`save_weights`, :func:`load_weights`, :func:`shipped_weights_path`,
  :func:`load_shipped`).
* :class:`CNNInterpolator` -- the interpolator object (registered as ``"cnn"`` in
  :mod:`oncodyn.chemotaxis.interpolate`) that runs the network only where the particles are.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from oncodyn.chemotaxis.interpolate import catmull_rom_gradient, register_interpolator
from oncodyn.chemotaxis.models import _require
from oncodyn.core.atomic import save_torch
from oncodyn.core.safeload import load_torch

#: Receptive-field half-width of :class:`InterpolatorCNN` in bins: 6 layers of 3-kernels.
HALO = 6
#: Default channel widths (the spec's): conv1..conv5 outputs; conv6 maps to 1 channel.
WIDTHS = (16, 32, 32, 32, 16)
#: ``format`` tag and ``version`` of the weights artefact written by :func:`save_weights`.
WEIGHTS_FORMAT = "oncodyn-nsipf-cnn"
WEIGHTS_VERSION = 1
CHECKPOINT_FORMAT = "oncodyn-nsipf-checkpoint"
#: Name of the resumable training checkpoint inside ``out_dir``.
CHECKPOINT_NAME = "cnn_checkpoint.pt"
#: The command that produces the shipped weights.
TRAIN_COMMAND = "oncodyn run nsipf-train"


# ========================================================================================
# The network
# ========================================================================================


class InterpolatorCNN(nn.Module):
    """The NSIPF encoder--decoder: field ``[B, 1, n_1, ..., n_d]`` -> smooth field, same shape.

    Layers (kernel 3, padding 1, ``padding_mode="replicate"`` -- the no-flux walls -- stride 1,
    so the output has the input's shape)::

        h1 = relu(conv1(x))          1  -> w0 (16)
        h2 = relu(conv2(h1))         w0 -> w1 (32)
        h3 = relu(conv3(h2))         w1 -> w2 (32)
        h4 = relu(conv4(h3)) + h2    w2 -> w3 (32), skip connection (needs w3 == w1)
        h5 = relu(conv5(h4))         w3 -> w4 (16)
        y  = relu(conv6(h5))         w4 -> 1   (c >= 0)

    Receptive field: 6 layers of 3-kernels, so every output bin depends on the input bins
    within :data:`HALO` = 6 bins of it (per axis); away from the walls the map is translation
    equivariant, and the output on a block of bins is determined by the block plus a 6-bin halo.

    Amplitude normalisation (our choice; the source trained on raw values): :meth:`forward`
    divides the input by ``s`` and multiplies the network's output by ``s``, with ``s`` the
    maximum of each sample's input region unless ``scale`` is given (s <= 0 -> output 0).
    The map is therefore exactly positively homogeneous, ``net(a c) = a net(c)`` for a > 0, and
    one network serves every amplitude of c. :class:`CNNInterpolator` passes the maximum of the
    whole field as ``scale`` so that local evaluation equals the full-field pass.

    Args:
        dim: 3 (Conv3d, the spec) or 2 (Conv2d, same widths, for 2D runs).
        widths: output channels of conv1..conv5 (default :data:`WIDTHS`); ``widths[1] ==
            widths[3]`` (the skip connection).

    Initialisation: PyTorch's default, except that conv6 starts with non-negative weights and
    a bias of 0.01, so that its ReLU is active everywhere at the start (its input h5 is >= 0).
    With the default init the whole output is sometimes 0 with zero gradient -- a dead
    network that never trains (2 of 5 seeds of a small 2D run).

    The parameters are float32; ``.double()`` gives a float64 model (tests).
    """

    def __init__(self, dim: int = 3, widths: tuple[int, ...] = WIDTHS):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        _require(dim in (2, 3), "dim", "2 or 3", dim)
        _require(len(widths) == 5 and all(w >= 1 for w in widths), "widths", "5 positive channel counts", widths)
        _require(widths[1] == widths[3], "widths", "widths[1] == widths[3] (skip connection)", widths)
        self.dim = dim
        self.widths = widths
        conv = nn.Conv3d if dim == 3 else nn.Conv2d
        chans = (1,) + widths + (1,)
        self.convs = nn.ModuleList(
            conv(chans[k], chans[k + 1], kernel_size=3, padding=1, padding_mode="replicate") for k in range(6))
        with torch.no_grad():  # output ReLU alive at initialisation (see the class docstring)
            self.convs[-1].weight.abs_()
            self.convs[-1].bias.fill_(0.01)

    def network(self, x: torch.Tensor) -> torch.Tensor:
        """The bare network on an already normalised input ``[B, 1, *spatial]``."""
        c = self.convs
        h2 = torch.relu(c[1](torch.relu(c[0](x))))
        h4 = torch.relu(c[3](torch.relu(c[2](h2)))) + h2
        return torch.relu(c[5](torch.relu(c[4](h4))))

    def forward(self, x: torch.Tensor, scale: torch.Tensor | float | None = None) -> torch.Tensor:
        """Smooth ``x`` ``[B, 1, *spatial]`` (d spatial axes); returns the same shape.

        Args:
            x: input fields (c >= 0).
            scale: amplitude ``s``: ``None`` (each sample's maximum), a number, or a tensor
                broadcastable to ``[B, 1, 1, ..., 1]``.
        """
        if x.ndim != self.dim + 2 or x.shape[1] != 1:
            raise ValueError(f"x: must have shape [B, 1, {', '.join(['n'] * self.dim)}], got {tuple(x.shape)}")
        if scale is None:
            s = x.amax(dim=tuple(range(2, x.ndim)), keepdim=True)
        else:
            s = torch.as_tensor(scale, dtype=x.dtype, device=x.device)
            s = s.reshape(s.shape + (1,) * (x.ndim - s.ndim)) if s.ndim else s
        s = s.clamp(min=0)
        safe = torch.where(s > 0, s, torch.ones_like(s))
        return self.network(x / safe) * s


def n_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ========================================================================================
# Training data
# ========================================================================================


@dataclass(frozen=True)
class RadialSnapshots:
    """Attractant profiles c(r) of radial PHKS runs at random times (the training set).

    Attributes:
        r: radii ``[n_r]`` (length).
        c: profiles ``[n_snapshots, n_r]`` (concentration).
        t: time of each snapshot ``[n_snapshots]``.
        run: run of each snapshot ``[n_snapshots]`` (index into ``runs``).
        runs: the initial data of every run (dicts: ``rho_sigma``, ``c_kind`` "gaussian" |
            "shell", ``c_amplitude``, ``c_sigma`` or ``c_radius`` / ``c_width``).
    """

    r: np.ndarray
    c: np.ndarray
    t: np.ndarray
    run: np.ndarray
    runs: tuple[dict, ...]

    def __len__(self) -> int:
        return self.c.shape[0]


def _random_run(rng: np.random.Generator, r_max: float) -> dict:
    """Random radially symmetric initial data: Gaussian ρ0, Gaussian-blob or shell c0."""
    spec: dict[str, Any] = {"rho_sigma": float(rng.uniform(3.0, 12.0)),
                            "c_amplitude": float(np.exp(rng.uniform(np.log(0.5), np.log(50.0))))}
    if rng.random() < 0.5:
        spec.update(c_kind="gaussian", c_sigma=float(rng.uniform(4.0, 25.0)))
    else:
        spec.update(c_kind="shell", c_radius=float(rng.uniform(8.0, 0.5 * r_max)), c_width=float(rng.uniform(2.0, 8.0)))
    return spec


def _profiles(spec: dict):
    """Vectorised ρ0(r), c0(r) of a run (ρ0 unnormalised: the solver rescales it to M0)."""
    s, a = spec["rho_sigma"], spec["c_amplitude"]

    def rho0(r):
        return np.exp(-np.asarray(r) ** 2 / (2 * s**2))

    if spec["c_kind"] == "gaussian":
        sc = spec["c_sigma"]

        def c0(r):
            return a * np.exp(-np.asarray(r) ** 2 / (2 * sc**2))
    else:
        rc, w = spec["c_radius"], spec["c_width"]

        def c0(r):
            return a * np.exp(-(np.asarray(r) - rc) ** 2 / (2 * w**2))
    return rho0, c0


def radial_snapshots(n_snapshots: int = 50, seed: int = 0, r_max: float = 100.0, n_r: int = 400,
                     t_end: float = 50.0, dt: float = 0.05, n_runs: int = 25, gamma: float = 1.0,
                     chi: float = 1.0, mass: float = 1.0) -> RadialSnapshots:
    """Training profiles: ``n_snapshots`` random (run, time) c-profiles of the 3D radial PHKS.

    ``n_runs`` runs of :func:`~oncodyn.chemotaxis.phks_radial.solve_phks_radial` (γ, χ, M0 as
    given; the spec's 1, 1, 1) on r in [0, r_max] (``n_r`` cells; the solver's linearly implicit
    steps are stable for any ``dt``), t in [0, t_end], each from random radial
    initial data: ρ0 a Gaussian of σ ~ U(3, 12); c0 with probability 1/2 a Gaussian blob
    (σ ~ U(4, 25)) and otherwise a shell exp(-(r - R)^2 / 2w^2) (R ~ U(8, r_max/2),
    w ~ U(2, 8)), amplitude log-uniform in [0.5, 50] -- blobs and annuli-like profiles, weak
    and strong chemotaxis. Each snapshot picks a run uniformly and a time uniformly among the
    multiples of ``dt`` in [0, t_end]; each run is solved once, up to its last snapshot.

    Args:
        n_snapshots: number of profiles (>= 1).
        seed: seed of all the random choices.
        r_max, n_r, t_end, dt: radial grid, horizon and time step (passed to the solver).
        n_runs: number of random initial data (>= 1).
        gamma, chi, mass: PHKS parameters.
    """
    from oncodyn.chemotaxis.phks_radial import solve_phks_radial

    _require(n_snapshots >= 1, "n_snapshots", ">= 1", n_snapshots)
    _require(n_runs >= 1, "n_runs", ">= 1", n_runs)
    rng = np.random.default_rng(seed)
    runs = tuple(_random_run(rng, r_max) for _ in range(n_runs))
    run = rng.integers(0, n_runs, n_snapshots)
    n_steps = round(t_end / dt)
    t = rng.integers(0, n_steps + 1, n_snapshots) * dt  # the solver saves at multiples of dt
    c = np.empty((n_snapshots, n_r))
    r = None
    for k in range(n_runs):
        sel = np.flatnonzero(run == k)
        if sel.size == 0:
            continue
        steps = np.unique(np.round(t[sel] / dt).astype(np.int64))
        rho0, c0 = _profiles(runs[k])
        res = solve_phks_radial(gamma, chi, r_max, n_r, rho0, c0, t_end=max(int(steps.max()), 1) * dt, dt=dt,
                                save_times=steps * dt, dim=3, mass=mass)
        r = np.asarray(res.r)
        for i in sel:
            c[i] = res.c[int(np.searchsorted(steps, round(t[i] / dt)))]
    if r is None:  # pragma: no cover - every snapshot belongs to some run
        raise RuntimeError("no radial run was solved")
    return RadialSnapshots(r=r, c=c, t=t, run=run, runs=runs)


def patch_from_radial(r: np.ndarray, c_r: np.ndarray, size: int, spacing: float,
                      offset: np.ndarray | tuple[float, ...] = (0.0, 0.0, 0.0), dim: int | None = None) -> np.ndarray:
    """A Cartesian patch ``[size]^d`` of the radial profile c(r).

    The patch is a cell-centred grid of ``size`` bins of side ``spacing`` per axis (bin ``i``
    at ``(i + 1/2 - size/2) * spacing`` from the patch centre); the profile's centre sits at
    ``offset * spacing`` from the patch centre (``offset`` in grid units, the spec's shift).
    Values come from :func:`~oncodyn.chemotaxis.phks_radial.radial_to_grid`.

    Args:
        r: radii ``[n_r]`` (length); ``c_r``: profile ``[n_r]``.
        size: bins per axis (>= 4); spacing: bin side (length).
        offset: centre shift ``[d]`` in grid units.
        dim: 2 or 3 (default ``len(offset)``).
    """
    from oncodyn.chemotaxis.phks import BinGrid
    from oncodyn.chemotaxis.phks_radial import radial_to_grid

    offset = np.asarray(offset, dtype=float).ravel()
    dim = offset.size if dim is None else dim
    if offset.size != dim:
        raise ValueError(f"offset: must have {dim} entries, got {offset.size}")
    grid = BinGrid(n=int(size), length=float(size * spacing), dim=dim)
    center = tuple(float(v) for v in grid.length / 2 + offset * spacing)
    return np.asarray(radial_to_grid(np.asarray(r, float), np.asarray(c_r, float), grid, center), dtype=float)


def _down_up(patch: np.ndarray, factor: int) -> np.ndarray:
    """Block-average by ``factor`` (edge-padded to a multiple), resize back (tri/bilinear)."""
    import torch.nn.functional as F

    d, shape = patch.ndim, patch.shape
    m = tuple(-(-s // factor) * factor for s in shape)
    p = np.pad(patch, [(0, mi - s) for mi, s in zip(m, shape)], mode="edge")
    coarse = p.reshape(sum(((mi // factor, factor) for mi in m), ())).mean(axis=tuple(range(1, 2 * d, 2)))
    up = F.interpolate(torch.from_numpy(np.ascontiguousarray(coarse))[None, None], size=m,
                       mode="trilinear" if d == 3 else "bilinear", align_corners=False)
    return up[0, 0].numpy()[tuple(slice(0, s) for s in shape)]


def augment(patch: np.ndarray, rng: np.random.Generator, factors: tuple[int, ...] = (2, 3, 4),
            blur: tuple[float, float] = (0.0, 0.5)) -> tuple[np.ndarray, np.ndarray]:
    """One training pair from a clean patch: ``(input, target)``, both of the patch's shape.

    Input: random down-sampling by a factor drawn from ``factors`` (block average, then resized
    back to the patch grid by tri/bilinear interpolation, ``align_corners=False``), then a
    Gaussian blur of σ ~ U(blur) bins (``scipy.ndimage.gaussian_filter``, mode ``nearest``).
    The spec's shift (-20...20 grid units) is applied when the patch is rebuilt
    (:func:`patch_from_radial`'s ``offset``). Target: a copy of the clean patch (the argument
    is not modified).
    """
    from scipy.ndimage import gaussian_filter

    patch = np.asarray(patch, dtype=float)
    f = int(rng.choice(np.asarray(factors)))
    x = _down_up(patch, f) if f > 1 else patch.copy()
    sigma = float(rng.uniform(*blur))
    if sigma > 0:
        x = gaussian_filter(x, sigma, mode="nearest")
    return x, patch.copy()


def make_dataset(snapshots: RadialSnapshots, size: int = 32, samples_per_snapshot: int = 4, seed: int = 0,
                 dim: int = 3, spacing: tuple[float, float] = (0.5, 2.0), shift: float = 20.0,
                 factors: tuple[int, ...] = (2, 3, 4), blur: tuple[float, float] = (0.0, 0.5),
                 dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Augmented (input, target) patches, ``[N, 1] + [size] * d`` each, N = snapshots x samples.

    Sample ``i`` comes from snapshot ``i // samples_per_snapshot``. Per sample: bin side
    log-uniform in ``spacing`` (the network is reused at resolutions h = 0.25...2 of L = 100),
    centre shift uniform in [-shift, shift] grid units per axis, then :func:`augment`.
    Each pair is divided by the maximum of its input (the amplitude normalisation of
    :class:`InterpolatorCNN`, so the network is trained on what it sees at run time).

    Args:
        snapshots: radial profiles (:func:`radial_snapshots`).
        size: patch bins per axis; samples_per_snapshot: augmented samples per profile.
        seed: seed of the sampling generator; dim: 2 or 3.
        spacing, shift, factors, blur: augmentation ranges (see above).
    """
    _require(dim in (2, 3), "dim", "2 or 3", dim)
    _require(samples_per_snapshot >= 1, "samples_per_snapshot", ">= 1", samples_per_snapshot)
    rng = np.random.default_rng(seed)
    n = len(snapshots) * samples_per_snapshot
    inputs = np.empty((n, 1) + (size,) * dim)
    targets = np.empty_like(inputs)
    lo, hi = np.log(spacing[0]), np.log(spacing[1])
    for i in range(n):
        c_r = snapshots.c[i // samples_per_snapshot]
        h = float(np.exp(rng.uniform(lo, hi)))
        offset = rng.uniform(-shift, shift, dim)
        clean = patch_from_radial(snapshots.r, c_r, size, h, offset, dim)
        x, y = augment(clean, rng, factors, blur)
        s = x.max()
        if s > 0:
            x, y = x / s, y / s
        inputs[i, 0], targets[i, 0] = x, y
    return torch.from_numpy(inputs).to(dtype), torch.from_numpy(targets).to(dtype)


# ========================================================================================
# Training
# ========================================================================================


@dataclass(frozen=True)
class TrainOptions:
    """Options of :func:`train` (defaults: the spec's setting).

    Attributes:
        epochs: training epochs (spec 100).
        batch_size: mini-batch size (spec 4).
        lr: Adam learning rate (spec 1e-3).
        val_fraction: fraction of the *snapshots* held out for validation (spec 0.2; split by
            snapshot so no profile appears on both sides).
        patch: patch bins per axis.
        n_snapshots: radial profiles (spec 50).
        samples_per_snapshot: augmented patches per profile.
        seed: seed of the data, the split, the initial weights and the shuffling.
        dim: 3 (spec) or 2.
        device: ``cpu``, ``cuda`` or ``auto``.
        widths: channel widths of :class:`InterpolatorCNN`.
        spacing: range of the patches' bin side (length; log-uniform).
        n_runs: radial runs (random initial data) the snapshots are drawn from.
        n_r: radial cells on [0, 100]; radial_dt: radial time step (a divisor of 50).
    """

    epochs: int = 100
    batch_size: int = 4
    lr: float = 1e-3
    val_fraction: float = 0.2
    patch: int = 32
    n_snapshots: int = 50
    samples_per_snapshot: int = 4
    seed: int = 0
    dim: int = 3
    device: str = "cpu"
    widths: tuple[int, ...] = WIDTHS
    spacing: tuple[float, float] = (0.5, 2.0)
    n_runs: int = 25
    n_r: int = 400
    radial_dt: float = 0.05

    def __post_init__(self) -> None:
        from oncodyn.core.device import DEVICES

        _require(isinstance(self.epochs, int) and self.epochs >= 1, "epochs", "an integer >= 1", self.epochs)
        _require(isinstance(self.batch_size, int) and self.batch_size >= 1, "batch_size", "an integer >= 1", self.batch_size)
        _require(self.lr > 0, "lr", "> 0", self.lr)
        _require(0 < self.val_fraction < 1, "val_fraction", "in (0, 1)", self.val_fraction)
        _require(isinstance(self.patch, int) and self.patch >= 2 * HALO + 1, "patch", f"an integer >= {2 * HALO + 1}", self.patch)
        _require(isinstance(self.n_snapshots, int) and self.n_snapshots >= 2, "n_snapshots", "an integer >= 2", self.n_snapshots)
        _require(isinstance(self.samples_per_snapshot, int) and self.samples_per_snapshot >= 1,
                 "samples_per_snapshot", "an integer >= 1", self.samples_per_snapshot)
        _require(self.dim in (2, 3), "dim", "2 or 3", self.dim)
        _require(self.device in DEVICES, "device", f"one of {DEVICES}", self.device)
        _require(len(self.spacing) == 2 and 0 < self.spacing[0] <= self.spacing[1], "spacing", "(lo, hi) with 0 < lo <= hi", self.spacing)
        _require(self.n_runs >= 1, "n_runs", ">= 1", self.n_runs)
        _require(self.n_r >= 8, "n_r", ">= 8", self.n_r)
        _require(self.radial_dt > 0, "radial_dt", "> 0", self.radial_dt)
        InterpolatorCNN(self.dim, self.widths)  # validates widths
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))

    def as_dict(self) -> dict:
        """Plain-Python view (lists for tuples) -- stored in checkpoints and weights."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


#: Options that may differ between a checkpoint and the resuming run.
_RESUMABLE_CHANGES = ("epochs", "device")


@dataclass
class TrainResult:
    """Outcome of :func:`train`.

    Attributes:
        model: the trained network (on CPU, eval mode).
        train_mse: training MSE per epoch (all epochs, including resumed ones).
        val_mse: validation MSE per epoch.
        epochs: epochs completed.
        start_epoch: epochs already done when this call started (> 0 after a resume).
        seconds: training wall time of this call (data generation excluded).
        data_seconds: time spent building the data set.
        n_train, n_val: samples on each side of the split.
        weights_path: the weights artefact written into ``out_dir`` (None without ``out_dir``).
    """

    model: InterpolatorCNN
    train_mse: list[float]
    val_mse: list[float]
    epochs: int
    start_epoch: int
    seconds: float
    data_seconds: float
    n_train: int
    n_val: int
    weights_path: Path | None = None


def build_training_data(options: TrainOptions) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """The data set of ``options`` and its split: ``(inputs, targets, train_idx, val_idx)``."""
    o = options
    snaps = radial_snapshots(o.n_snapshots, seed=o.seed, n_r=o.n_r, dt=o.radial_dt, n_runs=o.n_runs)
    x, y = make_dataset(snaps, size=o.patch, samples_per_snapshot=o.samples_per_snapshot, seed=o.seed + 1,
                        dim=o.dim, spacing=o.spacing)
    perm = np.random.default_rng(o.seed + 2).permutation(o.n_snapshots)
    n_val = min(o.n_snapshots - 1, max(1, round(o.val_fraction * o.n_snapshots)))
    sample = np.arange(o.n_snapshots * o.samples_per_snapshot)
    is_val = np.isin(sample // o.samples_per_snapshot, perm[:n_val])
    return x, y, sample[~is_val], sample[is_val]


def _save_atomic(obj: Any, path: Path) -> None:
    save_torch(path, obj)


def _load_checkpoint(path: Path, options: TrainOptions) -> dict:
    ck = load_torch(path, "NSIPF training checkpoint")
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not an NSIPF training checkpoint")
    old, new = ck["options"], options.as_dict()
    diff = sorted(k for k in new if k not in _RESUMABLE_CHANGES and old.get(k) != new[k])
    if diff:
        raise ValueError(f"{path}: checkpoint was written with other options ({', '.join(diff)}); "
                         "use another out_dir or resume=False to start again")
    return ck


def dataset_mse(model: nn.Module, x: torch.Tensor, y: torch.Tensor, idx: np.ndarray, device: str = "cpu", batch: int = 8) -> float:
    """Mean squared error of ``model`` on samples ``idx`` of ``(x, y)`` ``[N, 1, ...]`` (per voxel)."""
    model.eval()
    total = 0.0
    with torch.no_grad():
        for k in range(0, len(idx), batch):
            b = torch.as_tensor(idx[k:k + batch])
            out = model(x[b].to(device))
            total += float(torch.sum((out - y[b].to(device)) ** 2)) / out[0].numel()
    return total / max(len(idx), 1)


def train(options: TrainOptions = TrainOptions(), out_dir: Path | str | None = None, progress: bool = True,
          resume: bool = True) -> TrainResult:
    """Train :class:`InterpolatorCNN` on augmented radial patches (MSE loss, Adam).

    Every epoch shuffles the training samples (a generator seeded by ``seed`` and the epoch,
    so an interrupted run continues exactly), takes Adam steps on mini-batches of
    ``batch_size``, and records the mean training MSE (over the epoch's batches, weighted by
    batch size) and the validation MSE (after the epoch). With ``out_dir``, the checkpoint
    ``out_dir/cnn_checkpoint.pt`` (model, optimiser, epoch, history, options) is written
    atomically after each epoch, and at the end the weights artefact
    ``out_dir/nsipf_cnn_d{dim}_v1.pt`` (:func:`save_weights`).

    Args:
        options: :class:`TrainOptions`.
        out_dir: folder for the checkpoint and the weights (created), or None (nothing written).
        progress: show a tqdm bar (stderr).
        resume: continue from an existing checkpoint (its options must equal ``options``
            except ``epochs`` and ``device``); False starts again and overwrites it.

    Returns:
        :class:`TrainResult`.
    """
    from tqdm.auto import tqdm

    from oncodyn.core.device import resolve_device

    o = options
    device = resolve_device(o.device)
    out = Path(out_dir) if out_dir is not None else None
    ck_path = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        ck_path = out / CHECKPOINT_NAME

    t0 = time.perf_counter()
    x, y, train_idx, val_idx = build_training_data(o)
    data_seconds = time.perf_counter() - t0

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(o.seed)
        model = InterpolatorCNN(o.dim, o.widths)
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=o.lr)
    history: dict[str, list[float]] = {"train_mse": [], "val_mse": []}
    start = 0
    if resume and ck_path is not None and ck_path.exists():
        ck = _load_checkpoint(ck_path, o)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        history = {k: list(v) for k, v in ck["history"].items()}
        start = int(ck["epoch"])

    t1 = time.perf_counter()
    bar = tqdm(total=o.epochs, initial=min(start, o.epochs), desc="NSIPF CNN", disable=not progress, leave=False)
    for epoch in range(start, o.epochs):
        model.train()
        g = torch.Generator().manual_seed(o.seed * 1_000_003 + epoch)
        order = train_idx[torch.randperm(len(train_idx), generator=g).numpy()]
        total = 0.0
        for k in range(0, len(order), o.batch_size):
            b = torch.as_tensor(order[k:k + o.batch_size])
            xb, yb = x[b].to(device), y[b].to(device)
            loss = torch.mean((model(xb) - yb) ** 2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
        history["train_mse"].append(total / len(order))
        history["val_mse"].append(dataset_mse(model, x, y, val_idx, device, max(o.batch_size, 8)))
        if ck_path is not None:
            _save_atomic({"format": CHECKPOINT_FORMAT, "version": 1, "options": o.as_dict(), "epoch": epoch + 1,
                          "model": model.state_dict(), "optimizer": opt.state_dict(), "history": history}, ck_path)
        bar.update(1)
        bar.set_postfix(train=f"{history['train_mse'][-1]:.2e}", val=f"{history['val_mse'][-1]:.2e}")
    bar.close()
    seconds = time.perf_counter() - t1

    model = model.to("cpu").eval()
    done = max(start, o.epochs)
    weights = None
    if out is not None:
        weights = out / shipped_weights_path(o.dim).name
        save_weights(weights, model, {"options": o.as_dict(), "epochs": done, "train_mse": history["train_mse"],
                                      "val_mse": history["val_mse"], "n_train": len(train_idx), "n_val": len(val_idx),
                                      "n_parameters": n_parameters(model), "torch": torch.__version__})
    return TrainResult(model=model, train_mse=history["train_mse"], val_mse=history["val_mse"], epochs=done,
                       start_epoch=start, seconds=seconds, data_seconds=data_seconds, n_train=len(train_idx),
                       n_val=len(val_idx), weights_path=weights)


# ========================================================================================
# Weights artefact
# ========================================================================================


def _plain(x: Any) -> Any:
    """Plain Python (dict / list / str / int / float / bool / None) for ``weights_only`` loading."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (np.ndarray, np.generic)):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, (bool, int, float)) or x is None:
        return x
    return str(x)


def save_weights(path: Path | str, model: InterpolatorCNN, meta: dict | None = None) -> Path:
    """Write the weights artefact (atomic): ``torch.save`` of ``{"format": "oncodyn-nsipf-cnn",
    "version": 1, "dim", "widths", "state_dict", "meta"}`` (tensors on CPU, float32).

    ``meta`` is converted to plain Python values (tuples and arrays to lists, other objects to
    strings) so that the file loads with ``weights_only=True``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()}
    _save_atomic({"format": WEIGHTS_FORMAT, "version": WEIGHTS_VERSION, "dim": int(model.dim),
                  "widths": list(model.widths), "state_dict": state, "meta": _plain(dict(meta or {}))}, path)
    return path


def load_weights(path: Path | str, device: str = "cpu") -> tuple[InterpolatorCNN, dict]:
    """Load a weights artefact: ``(model in eval mode on device, meta)``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not an ``oncodyn-nsipf-cnn`` artefact of version 1.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"NSIPF CNN weights not found: {path}")
    blob = load_torch(path, "NSIPF CNN weights file")
    fmt = blob.get("format") if isinstance(blob, dict) else None
    ver = blob.get("version") if isinstance(blob, dict) else None
    if fmt != WEIGHTS_FORMAT or ver != WEIGHTS_VERSION:
        raise ValueError(f"{path}: expected format {WEIGHTS_FORMAT!r} version {WEIGHTS_VERSION}, "
                         f"got format {fmt!r} version {ver!r}")
    model = InterpolatorCNN(int(blob["dim"]), tuple(blob["widths"]))
    model.load_state_dict(blob["state_dict"])
    return model.to(device).eval(), dict(blob.get("meta", {}))


def shipped_weights_path(dim: int = 3) -> Path:
    """Path of the packaged weights ``oncodyn/chemotaxis/weights/nsipf_cnn_d{dim}_v1.pt``."""
    _require(dim in (2, 3), "dim", "2 or 3", dim)
    return Path(__file__).resolve().parent / "weights" / f"nsipf_cnn_d{dim}_v{WEIGHTS_VERSION}.pt"


def load_shipped(dim: int = 3, device: str = "cpu") -> tuple[InterpolatorCNN, dict]:
    """The packaged network for ``dim``: ``(model in eval mode, meta)``, as :func:`load_weights`.

    Raises:
        FileNotFoundError: the weights have not been produced yet (names the training command).
    """
    path = shipped_weights_path(dim)
    if not path.exists():
        raise FileNotFoundError(f"the NSIPF CNN weights for dim={dim} are not installed ({path}); produce them with "
                                f"`{TRAIN_COMMAND}` (see oncodyn.chemotaxis.nsipf.train)")
    return load_weights(path, device)


# ========================================================================================
# The interpolator: local evaluation where the particles are
# ========================================================================================

STRATEGIES = ("auto", "blocks", "bbox", "full")
#: Amplitude normalisation at inference: each block window by its own maximum (``window``, the
#: default: like the training patches, each divided by its own maximum), or every window by the
#: field's maximum (``global``: all strategies give the full pass's values).
NORMALISATIONS = ("window", "global")
#: With ``window`` normalisation a field of at most this many bins per axis (the size of a
#: training patch, 32, plus its halos) is evaluated in one window.
WINDOW_FULL_MAX = 48


class CNNInterpolator:
    """NSIPF interpolator: smooth c with the CNN where the particles are, then Catmull--Rom ∇c.

    ``gradient(field, h, x)``:

    1. the bins the interpolation stencils touch: each particle's bin dilated by 2 (the 4^d
       Catmull--Rom stencil, with its wall mirroring, lies inside it);
    2. the network's output on those bins, computed locally (``strategy``):

       * ``blocks`` (the source's local patches): the grid is cut into blocks of ``block``^d
         bins; the blocks holding touched bins are each evaluated on a window of
         ``(block + 2*HALO)``^d bins and batched through the network. A block's window is the
         block plus the 6-bin halo, *moved inward* at the walls so that it ends on the wall:
         the replicate padding then happens at the same place, in every layer, as in the
         full-field pass (a one-off replicate pad of the input would not be the same thing
         -- each layer pads its own input), so the block values equal the full pass exactly
         (up to float rounding);
       * ``bbox``: one window, the bounding box of the touched bins plus the halo, clipped
         to the box (one compact cloud, e.g. a single blob);
       * ``full``: the whole field;
       * ``auto`` (default): whichever of these needs the fewest network voxels.

       The amplitude ``s`` of the normalisation (``normalise``): ``window`` (default) divides
       each block window by its own maximum, as every training patch was, so a block far
       from the peak of c (c a few per mille of its maximum there) is seen at full
       resolution; this forces the ``blocks`` strategy (a field of at most
       ``WINDOW_FULL_MAX`` bins per axis, about one training patch, is one window). With the field's maximum for every
       window (``global``) the network's error, about 1-2 % of the maximum, swamped the
       gradient in the far field: in A2 twice as many cells stayed behind as with the cubic
       interpolants (sliced W1 4.7 against 0.10 at t = 40). With ``global`` all strategies
       give the same values;
    3. the outputs overwrite a float64 copy of the field, and
       :func:`~oncodyn.chemotaxis.interpolate.catmull_rom_gradient` of it is returned.

    Args:
        model: a trained :class:`InterpolatorCNN`, or None: the shipped weights for the field's
            dimension are loaded at the first call (:func:`load_shipped`).
        device: ``cpu`` or ``cuda`` (torch device the network runs on).
        block: block side in bins (>= 6).
        strategy: one of :data:`STRATEGIES`.
        weights: a weights file to load instead of the shipped one (when ``model`` is None).
        max_batch_voxels: cap on the input voxels per network call (memory).
    """

    name = "cnn"

    def __init__(self, model: InterpolatorCNN | None = None, device: str = "cpu", block: int = 16,
                 strategy: str = "auto", weights: Path | str | None = None, max_batch_voxels: int = 2_000_000,
                 normalise: str = "window"):
        _require(isinstance(block, (int, np.integer)) and block >= HALO, "block", f"an integer >= {HALO}", block)
        _require(strategy in STRATEGIES, "strategy", f"one of {STRATEGIES}", strategy)
        _require(normalise in NORMALISATIONS, "normalise", f"one of {NORMALISATIONS}", normalise)
        self.normalise = normalise
        _require(max_batch_voxels >= 1, "max_batch_voxels", ">= 1", max_batch_voxels)
        self.device = device
        self.block = int(block)
        self.strategy = strategy
        self.weights = weights
        self.max_batch_voxels = int(max_batch_voxels)
        self._models: dict[int, InterpolatorCNN] = {}
        if model is not None:
            self._models[model.dim] = model.to(device).eval()
        #: strategy used by the last call (diagnostics).
        self.last_strategy: str | None = None
        #: network voxels evaluated by the last call.
        self.last_voxels: int = 0

    def __repr__(self) -> str:
        return f"CNNInterpolator(block={self.block}, strategy={self.strategy!r}, device={self.device!r})"

    def model(self, dim: int) -> InterpolatorCNN:
        """The network for ``dim`` (loaded on first use when none was given)."""
        if dim not in self._models:
            if self.weights is not None:
                m, _ = load_weights(self.weights, self.device)
                if m.dim != dim:
                    raise ValueError(f"weights {self.weights} are for dim={m.dim}, the field has dim={dim}")
            else:
                m, _ = load_shipped(dim, self.device)
            self._models[dim] = m
        return self._models[dim]

    # ------------------------------------------------------------------ network evaluation
    def _run(self, windows: list[np.ndarray], scale: float | None, dim: int) -> list[np.ndarray]:
        """Network output on equally shaped windows, batched under ``max_batch_voxels``
        (``scale`` None: each window divided by its own maximum)."""
        m = self.model(dim)
        p = next(m.parameters())
        vox = windows[0].size
        per = max(1, self.max_batch_voxels // vox)
        out: list[np.ndarray] = []
        with torch.inference_mode():
            for k in range(0, len(windows), per):
                xb = torch.from_numpy(np.stack(windows[k:k + per])[:, None]).to(device=p.device, dtype=p.dtype)
                out.extend(m(xb, scale=scale)[:, 0].to("cpu", torch.float64).numpy())
        self.last_voxels += vox * len(windows)
        return out

    @staticmethod
    def _check_field(field: np.ndarray) -> np.ndarray:
        field = np.asarray(field, dtype=np.float64)
        if field.ndim not in (2, 3) or len(set(field.shape)) != 1 or field.shape[0] < 4:
            raise ValueError(f"field: must have shape [n]*d with d in (2, 3) and n >= 4, got {field.shape}")
        return field

    def _tiles(self, field: np.ndarray, starts: np.ndarray, side: int, scale: float, dest: np.ndarray) -> None:
        """Evaluate the blocks ``[start, start + side)`` (``starts`` ``[K, d]``) into ``dest``."""
        n, d = field.shape[0], field.ndim
        win = side + 2 * HALO
        ws = np.clip(starts - HALO, 0, n - win)  # windows moved inward at the walls
        windows = [field[tuple(slice(a, a + win) for a in w)] for w in ws]
        for s, w, o in zip(starts, ws, self._run(windows, scale, d)):
            e = np.minimum(s + side, n)
            dest[tuple(slice(a, b) for a, b in zip(s, e))] = o[tuple(slice(a - b, c - b) for a, b, c in zip(s, w, e))]

    def smooth(self, field: np.ndarray) -> np.ndarray:
        """Network output on the whole field (float64, the field's shape); s = max(field).

        Fields larger than ``max_batch_voxels`` are evaluated in tiles with their halo
        (identical values, bounded memory).
        """
        field = self._check_field(field)
        n, d = field.shape[0], field.ndim
        self.last_voxels, scale = 0, float(field.max())
        if field.size <= self.max_batch_voxels:
            return self._run([field], scale, d)[0]
        side = max(self.block, int(self.max_batch_voxels ** (1 / d)) - 2 * HALO)
        if side + 2 * HALO > n:  # pragma: no cover - tiny max_batch_voxels
            return self._run([field], scale, d)[0]
        g = np.arange(0, n, side)
        starts = np.stack(np.meshgrid(*([g] * d), indexing="ij"), -1).reshape(-1, d)
        out = np.empty_like(field)
        self._tiles(field, starts, side, scale, out)
        return out

    def touched(self, n: int, h: float, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-particle lowest and highest bin ``[P, d]`` of its Catmull--Rom stencil (dilation 2)."""
        b = np.clip(np.floor(np.asarray(x, float) / h).astype(np.int64), 0, n - 1)
        return np.clip(b - 2, 0, n - 1), np.clip(b + 2, 0, n - 1)

    def smooth_local(self, field: np.ndarray, h: float, x: np.ndarray) -> np.ndarray:
        """A float64 copy of ``field`` with the network output on every bin the stencils at
        ``x`` ``[P, d]`` touch (and on whatever else the chosen windows cover)."""
        field = self._check_field(field)
        n, d = field.shape[0], field.ndim
        x = np.asarray(x, float)
        if x.ndim != 2 or x.shape[1] != d:
            raise ValueError(f"x: must have shape [P, {d}] for a {d}D field, got {x.shape}")
        self.last_voxels = 0
        out = field.copy()
        if x.shape[0] == 0:
            self.last_strategy = "none"
            return out
        scale = float(field.max()) if self.normalise == "global" else None
        lo, hi = self.touched(n, h, x)
        B, win = self.block, self.block + 2 * HALO
        costs = {"full": n**d}
        # bounding box of the touched bins plus the halo, clipped to the box
        blo, bhi = lo.min(0), hi.max(0)
        wlo, whi = np.maximum(blo - HALO, 0), np.minimum(bhi + HALO + 1, n)
        costs["bbox"] = int(np.prod(whi - wlo))
        blocks = None
        if win <= n:
            nb = -(-n // B)
            mark = np.zeros((nb,) * d, bool)
            klo, khi = lo // B, hi // B  # B >= 6 > 4: a stencil spans at most 2 blocks per axis
            for corner in range(2**d):
                pick = [(khi if (corner >> a) & 1 else klo)[:, a] for a in range(d)]
                mark[tuple(pick)] = True
            blocks = np.argwhere(mark) * B
            costs["blocks"] = len(blocks) * win**d
        strategy = self.strategy
        if self.normalise == "window":  # local amplitude needs local windows, unless the field is patch-sized
            strategy = "full" if (blocks is None or n <= WINDOW_FULL_MAX) else "blocks"
        elif strategy == "auto":
            strategy = min(costs, key=costs.get)
        elif strategy == "blocks" and blocks is None:
            strategy = "full"
        self.last_strategy = strategy
        if strategy == "full":
            return self._run([field], scale, d)[0]
        if strategy == "bbox":
            o = self._run([field[tuple(slice(a, b) for a, b in zip(wlo, whi))]], scale, d)[0]
            sl = tuple(slice(a, b + 1) for a, b in zip(blo, bhi))
            out[sl] = o[tuple(slice(a - w, b + 1 - w) for a, b, w in zip(blo, bhi, wlo))]
            return out
        self._tiles(field, blocks, B, scale, out)
        return out

    def gradient(self, field: np.ndarray, h: float, x: np.ndarray) -> np.ndarray:
        """∇ of the Catmull--Rom interpolant of the locally smoothed field at ``x``; ``[P, d]``."""
        return catmull_rom_gradient(self.smooth_local(field, h, x), h, x)


register_interpolator("cnn", CNNInterpolator)
