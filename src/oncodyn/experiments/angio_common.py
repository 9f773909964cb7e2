"""What the angiogenesis (PHKS) experiments share: config fields, the side-by-side runner, figures.

Every experiment runs the FDM reference and the particle--field methods from the same initial
data and compares them at chosen times:

* ``fdm``: the conservative Scharfetter--Gummel finite volumes (:mod:`oncodyn.chemotaxis.phks_fdm`),
  always with the exact exponential c-update (it is the reference);
* ``sipf``: the classical particle--field method as published -- dense c-update, cubic-spline
  gradient (SciPy ``RectBivariateSpline`` / ``RegularGridInterpolator``);
* ``nsipf``: the neural interpolator (the shipped CNN, evaluated on local blocks where the
  particles are), dense c-update;
* ``fast``: our fastest path -- c updated only in occupied bins and a local cubic gradient
  gathered at the particles (numba), O(P) per step whatever the number of bins.

Metrics against FDM at each compared time: sliced Wasserstein-1 between the particles and the
FDM density, the mean of the three 1D-marginal W1, the relative L2 error of c, the mass and
min(c). Each method's results are saved under ``results/`` as soon as it finishes, and runs
checkpoint, so an interrupted experiment resumes without losing finished work.
"""

from __future__ import annotations

import json
from typing import Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from oncodyn.chemotaxis.phks import BinGrid, InitialData, PHKSParams
from oncodyn.config import ExperimentConfig
from oncodyn.core.atomic import save_npz
from oncodyn.core.safeload import load_npz
from oncodyn.experiments.registry import RunContext
from oncodyn.experiments.sipf_common import steps_of
from oncodyn.io.rundir import RunDir

Method = Literal["fast", "nsipf", "sipf"]
METHOD_LABELS = {"fdm": "FDM (reference)", "sipf": "classical SIPF (cubic spline)",
                 "nsipf": "NSIPF (CNN interpolator)", "fast": "fast particle-field (ours)"}
PARTICLE_KEEP = 4000  # particles saved per snapshot for the scatter figures


class AngioConfig(ExperimentConfig):
    """Model, grid and solver fields shared by the PHKS experiments.

    Attributes:
        gamma, chi, mass, length, dim: the PHKS model (γ, χ, M0, L, d).
        bins: bins per axis of the FDM grid and of the particle--field c.
        dt: time step of every method (time units); t_end: final time.
        n_particles: P.
        c_update: ``euler`` (the source's c - dt c rho) or ``exp`` (c exp(-dt rho), exact per step).
        methods: particle--field methods run beside FDM (fast, nsipf, sipf).
        compare_times: times at which the methods are compared with FDM (each a multiple of dt).
        w1_directions: random directions of the sliced W1.
    """

    gamma: float = Field(1.0, gt=0)
    chi: float = Field(1.0, ge=0)
    mass: float = Field(1.0, gt=0)
    length: float = Field(100.0, gt=0)
    dim: Literal[2, 3] = 3
    bins: int = Field(100, ge=8)
    dt: float = Field(0.1, gt=0)
    t_end: float = Field(40.0, gt=0)
    n_particles: int = Field(20_000, ge=10)
    c_update: Literal["euler", "exp"] = "euler"
    methods: list[Method] = ["fast", "nsipf"]
    compare_times: list[float] = [2.0, 40.0]
    w1_directions: int = Field(64, ge=1)

    @field_validator("methods")
    @classmethod
    def _methods(cls, v):
        if len(set(v)) != len(v):
            raise ValueError("must not repeat a method")
        return v

    @model_validator(mode="after")
    def _times(self):
        steps_of(self.t_end, self.dt)
        for t in self.compare_times:
            steps_of(t, self.dt, "compare_times")
            if t > self.t_end + 1e-12:
                raise ValueError(f"compare_times: {t} must be <= t_end={self.t_end}")
        return self

    def params(self) -> PHKSParams:
        return PHKSParams(gamma=self.gamma, chi=self.chi, mass=self.mass, length=self.length, dim=self.dim)

    def grid(self) -> BinGrid:
        return BinGrid(self.bins, self.length, self.dim)


def _stamp(cfg: AngioConfig, extra: dict | None = None) -> str:
    d = cfg.model_dump(exclude={"device", "methods", "compare_times", "w1_directions"})
    return json.dumps({**d, **(extra or {})}, sort_keys=True, default=str)


def _load_cached(rd: RunDir, key: str, stamp: str) -> dict | None:
    path = rd.subdir("results") / f"{key}.npz"
    if not path.exists():
        return None
    z = load_npz(path, "results file")
    if str(z.get("stamp")) != stamp:
        return None
    return z


def _save_cached(rd: RunDir, key: str, stamp: str, arrays: dict) -> None:
    save_npz(rd.subdir("results") / f"{key}.npz", {"stamp": np.array(stamp), **arrays})


def run_fdm_reference(cfg: AngioConfig, initial: InitialData, ctx: RunContext, times: list[float],
                      key: str = "fdm", bins: int | None = None, dt: float | None = None) -> dict:
    """FDM fields at ``times`` (cached in ``results/<key>.npz``).

    Returns ``{"times", "rho" [nt, n]*d, "c" [nt, n]*d, "wall_time", "substeps", "mass", "min_rho",
    "min_c"}``.
    """
    from oncodyn.chemotaxis.phks_fdm import run_fdm

    grid = BinGrid(bins or cfg.bins, cfg.length, cfg.dim)
    dt = dt or cfg.dt
    stamp = _stamp(cfg, {"bins": grid.n, "dt": dt, "times": list(times), "kind": "fdm"})
    cached = _load_cached(ctx.rundir, key, stamp)
    if cached is not None:
        return cached
    from oncodyn.core.device import resolve_device

    res = run_fdm(cfg.params(), grid, initial, dt, max(times), save_times=times, device=resolve_device(cfg.device),
                  progress=ctx.progress, checkpoint_path=ctx.rundir.checkpoint(key))
    snaps = [res.snapshots[_nearest(res.snapshots, t)] for t in times]
    out = {"times": np.asarray(times, float), "rho": np.stack([s[0] for s in snaps]),
           "c": np.stack([s[1] for s in snaps]), "wall_time": np.array(res.info["wall_time"])}
    for k in ("mass", "min_rho", "min_c", "t"):
        if k in res.series:
            out[f"series_{k}"] = np.asarray(res.series[k])
    _save_cached(ctx.rundir, key, stamp, out)
    return out


def _nearest(d: dict, t: float):
    return min(d, key=lambda s: abs(float(s) - t))


def make_interpolator(method: str, dim: int, device: str = "cpu"):
    """The interpolator object of a particle method (``None``: the solver's own by name).

    NSIPF loads the shipped network for ``dim`` and runs it on ``device`` (``cpu``/``cuda``).
    """
    if method == "nsipf":
        from oncodyn.chemotaxis.nsipf import CNNInterpolator, load_shipped

        model, _ = load_shipped(dim, device=device)
        return CNNInterpolator(model, device=device)
    return None


def particle_options(cfg: AngioConfig, method: str, n_particles: int | None = None, dt: float | None = None):
    """Solver options of a particle method (the fast path is sparse + local cubic)."""
    from oncodyn.chemotaxis.phks_sipf import ParticleFieldOptions

    interp = {"fast": "local-cubic", "sipf": "spline", "nsipf": "local-cubic"}[method]
    return ParticleFieldOptions(dt=dt or cfg.dt, n_particles=n_particles or cfg.n_particles, interpolator=interp,
                                c_update=cfg.c_update, sparse=(method == "fast"))


def run_particles(cfg: AngioConfig, initial: InitialData, ctx: RunContext, method: str, times: list[float],
                  key: str | None = None, n_particles: int | None = None, dt: float | None = None,
                  seed: int | None = None, brownian=None) -> dict:
    """A particle--field run saved at ``times`` (cached in ``results/<key>.npz``).

    Returns ``{"times", "x" [nt, P, d], "c" [nt, n]*d, "wall_time", series...}``.
    """
    from oncodyn.chemotaxis.phks_sipf import simulate_particles
    from oncodyn.core.device import resolve_device

    key = key or method
    opts = particle_options(cfg, method, n_particles, dt)
    seed = cfg.seed if seed is None else seed
    stamp = _stamp(cfg, {"method": method, "P": opts.n_particles, "dt": opts.dt, "times": list(times), "seed": seed})
    cached = _load_cached(ctx.rundir, key, stamp)
    if cached is not None:
        return cached
    res = simulate_particles(cfg.params(), cfg.grid(), initial, opts, max(times), seed=seed, save_times=times,
                             progress=ctx.progress, checkpoint_path=ctx.rundir.checkpoint(key), brownian=brownian,
                             interpolator=make_interpolator(method, cfg.dim, resolve_device(cfg.device)))
    out = {"times": np.asarray(times, float),
           "x": np.stack([res.particles[_nearest(res.particles, t)] for t in times]),
           "c": np.stack([res.c[_nearest(res.c, t)] for t in times]),
           "wall_time": np.array(res.info["wall_time"])}
    for k, v in res.series.items():
        out[f"series_{k}"] = np.asarray(v)
    _save_cached(ctx.rundir, key, stamp, out)
    return out


def compare(cfg: AngioConfig, fdm: dict, run: dict, i: int) -> dict[str, float]:
    """Metrics of particle run ``run`` against ``fdm`` at compared time index ``i``."""
    from oncodyn.chemotaxis.phks_metrics import relative_l2, sliced_w1, w1_marginals

    grid = cfg.grid()
    x, rho, c_ref, c = run["x"][i], fdm["rho"][i], fdm["c"][i], run["c"][i]
    return {"w1_sliced": float(sliced_w1(x, rho, grid, n_directions=cfg.w1_directions, seed=cfg.seed)),
            "w1_marginal": float(np.mean(w1_marginals(x, rho, grid))),
            "c_rel_l2": float(relative_l2(c, c_ref)), "min_c": float(c.min())}


def marginal_profiles(x: np.ndarray, grid: BinGrid, mass: float, axis: int = 0) -> np.ndarray:
    """1D marginal density of a particle cloud along ``axis``, ``[n]`` (mass / length)."""
    counts = np.bincount(grid.bin_index(x)[:, axis], minlength=grid.n)
    return counts * (mass / len(x)) / grid.h


def field_marginal(rho: np.ndarray, grid: BinGrid, axis: int = 0) -> np.ndarray:
    """1D marginal of a bin density along ``axis``, ``[n]`` (mass / length)."""
    other = tuple(a for a in range(rho.ndim) if a != axis)
    return rho.sum(axis=other) * grid.h ** (grid.dim - 1)


def central_slice(field: np.ndarray) -> np.ndarray:
    """The mid-plane ``[:, :, n/2]`` of a 3D field (a 2D field is returned as is)."""
    return field[:, :, field.shape[2] // 2] if field.ndim == 3 else field


def save_figure_arrays(rd: RunDir, cfg: AngioConfig, fdm: dict, runs: dict[str, dict], name: str = "fields.npz") -> None:
    """Slices, projections, marginals and particle subsets for the figures (one file)."""
    grid = cfg.grid()
    out = {"times": fdm["times"], "length": np.array(cfg.length), "methods": np.array(list(runs))}
    out["fdm_c_slice"] = np.stack([central_slice(c) for c in fdm["c"]])
    out["fdm_rho_proj"] = np.stack([r.sum(axis=2) * grid.h if r.ndim == 3 else r for r in fdm["rho"]])
    out["fdm_marginal"] = np.stack([field_marginal(r, grid) for r in fdm["rho"]])
    for m, r in runs.items():
        out[f"{m}_c_slice"] = np.stack([central_slice(c) for c in r["c"]])
        out[f"{m}_marginal"] = np.stack([marginal_profiles(x, grid, cfg.mass) for x in r["x"]])
        keep = max(1, r["x"].shape[1] // PARTICLE_KEEP)
        out[f"{m}_x"] = r["x"][:, ::keep]
    rd.write_arrays(name, out)


def plot_comparison(rd: RunDir, name: str = "fields.npz", prefix: str = "") -> list:
    """Particle scatter per method and time, c slices beside FDM, density marginals beside FDM."""
    from oncodyn.viz import figures as fg

    a = rd.read_arrays(name)
    times, L = a["times"], float(a["length"])
    methods = [str(m) for m in a["methods"]]
    out = []
    for m in methods:
        clouds = {f"t = {t:g}": a[f"{m}_x"][i] - L / 2 for i, t in enumerate(times)}
        out.append(fg.scatter_particles(rd.figures / f"{prefix}particles_{m}.png", clouds, half_width=L / 2,
                                        title=f"{METHOD_LABELS[m]}: particles (centred coordinates)"))
    ext = [0, L, 0, L]
    for i, t in enumerate(times):
        slices = {f"FDM c, t = {t:g}": a["fdm_c_slice"][i]}
        slices.update({f"{m} c": a[f"{m}_c_slice"][i] for m in methods})
        out.append(fg.field_slices(rd.figures / f"{prefix}c_slice_t{t:g}.png", slices, ext,
                                   title=f"c on the mid-plane at t = {t:g}"))
    n = a["fdm_marginal"].shape[1]
    xs = (np.arange(n) + 0.5) * L / n
    panels = {}
    for i, t in enumerate(times):
        lines = {"FDM": (xs, a["fdm_marginal"][i])}
        lines.update({METHOD_LABELS[m]: (xs, a[f"{m}_marginal"][i]) for m in methods})
        panels[f"t = {t:g}"] = lines
    out.append(fg.curves(rd.figures / f"{prefix}density_marginal.png", panels, "x", "∫ρ dy dz",
                         title="density cross-sections (marginal along x): particles beside FDM"))
    return out
