"""What the glioma experiments share: config fields, anatomy loading, clinical outputs, the PINN baseline."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from oncodyn.config import ExperimentConfig
from oncodyn.experiments.registry import Comparison, RunContext
from oncodyn.io.rundir import RunDir
from oncodyn.tumour.domain import TissueMaps
from oncodyn.tumour.fk import FKDomain
from oncodyn.tumour.model import FKParams

#: The published tumour origin of our patient cases, in MNI world mm: deep right-hemisphere
#: white matter (p_w = 0.91 at the 1 mm voxel), chosen by us; the source's patient is not public.
ORIGIN_MNI = [22.0, -14.0, 18.0]


class GliomaConfig(ExperimentConfig):
    """Model, solver, phase-field and clinical fields.

    Attributes:
        D_white: D_w (mm^2/day). rho: ρ (1/day). grey_ratio: D_g/D_w.
        ic_amplitude, ic_decay: u0 = a exp(-b |x - x0|^2), b in 1/mm^2.
        scheme: ``heun`` (2nd order) or ``euler``. cfl: fraction of the stable step.
        phi_min: voxels with φ below it are frozen.
        tissue_threshold: the domain is {white + grey >= threshold}.
        phase_width: Cahn--Hilliard interface width (voxels). phase_steps: CH steps.
        core_level, oedema_level: visible-tumour thresholds of u. margin_mm: standard RT margin.
    """

    D_white: float = Field(0.13, gt=0)
    rho: float = Field(0.025, gt=0)
    grey_ratio: float = Field(0.1, ge=0, le=1)
    ic_amplitude: float = Field(0.1, gt=0, le=1)
    ic_decay: float = Field(0.1, gt=0)
    scheme: Literal["heun", "euler"] = "heun"
    cfl: float = Field(0.9, gt=0, le=1)
    phi_min: float = Field(1e-3, gt=0, lt=0.5)
    tissue_threshold: float = Field(0.5, gt=0, lt=1)
    phase_width: float = Field(1.0, gt=0)
    phase_steps: int = Field(100, ge=0)
    core_level: float = Field(0.6, gt=0, lt=1)
    oedema_level: float = Field(0.25, gt=0, lt=1)
    margin_mm: float = Field(15.0, ge=0)

    @model_validator(mode="after")
    def _levels(self):
        if not self.oedema_level < self.core_level:
            raise ValueError(f"oedema_level ({self.oedema_level}) must be below core_level ({self.core_level})")
        return self

    def params(self, **over) -> FKParams:
        kw = dict(D_white=self.D_white, rho=self.rho, grey_ratio=self.grey_ratio, ic_amplitude=self.ic_amplitude,
                  ic_decay=self.ic_decay)
        kw.update(over)
        return FKParams(**kw)

    def phase(self) -> dict:
        """Keyword arguments of the phase-field construction."""
        return {"threshold": self.tissue_threshold, "width_voxels": self.phase_width, "n_steps": self.phase_steps}


class AnatomyConfig(GliomaConfig):
    """Anatomy fields: MNI152 (bundled) or the user's NIfTI tissue maps.

    Attributes:
        anatomy: ``mni152`` or ``nifti``.
        white, grey, csf: probability-map NIfTI paths (``nifti``), or ``labels``: one label
            image with ``label_values`` ({"white": [...], "grey": [...], "csf": [...]}).
        resolution_mm: voxel size the model runs at (integer coarsening/refinement of the maps).
        origin_world: tumour origin x0 in world mm (the image's affine frame).
    """

    anatomy: Literal["mni152", "nifti"] = "mni152"
    white: str | None = None
    grey: str | None = None
    csf: str | None = None
    labels: str | None = None
    label_values: dict[str, list[int]] | None = None
    resolution_mm: float = Field(1.0, gt=0)
    origin_world: list[float] = list(ORIGIN_MNI)

    @field_validator("origin_world")
    @classmethod
    def _origin(cls, v):
        if len(v) != 3 or not all(math.isfinite(x) for x in v):
            raise ValueError("must be 3 finite world coordinates (mm)")
        return v

    @model_validator(mode="after")
    def _nifti(self):
        if self.anatomy == "nifti" and not (self.labels or self.white or self.grey):
            raise ValueError("anatomy=nifti needs tissue maps: set white and grey (and csf), or labels")
        return self


def load_anatomy(cfg: AnatomyConfig) -> TissueMaps:
    """The tissue maps of the config at ``cfg.resolution_mm``."""
    from oncodyn.tumour import anatomy as an

    if cfg.anatomy == "mni152":
        r = cfg.resolution_mm
        if float(r).is_integer():
            return an.load_mni152(int(r))
        return an.resample(an.load_mni152(1), r)
    maps = an.load_tissue_nifti(white=cfg.white, grey=cfg.grey, csf=cfg.csf, labels=cfg.labels,
                                label_values=cfg.label_values)
    if not np.allclose(maps.spacing, cfg.resolution_mm):
        maps = an.resample(maps, cfg.resolution_mm)
    return maps


def origin_in_grid(maps: TissueMaps, origin_world, field: str = "origin_world") -> np.ndarray:
    """x0 in grid mm, checked to lie inside the grid."""
    x0 = maps.world_to_grid(np.asarray(origin_world, float))[0]
    ext = (np.asarray(maps.shape) - 1) * np.asarray(maps.spacing)
    if np.any(x0 < 0) or np.any(x0 > ext):
        raise ValueError(f"{field}: {list(origin_world)} (world mm) lies outside the image "
                         f"(grid mm {np.round(x0, 1).tolist()}, extent {ext.tolist()})")
    return x0


def check_origin_in_tissue(domain: FKDomain, x0, field: str = "origin_world") -> None:
    """The origin must lie inside the domain (φ >= 1/2 at its voxel)."""
    idx = tuple(int(round(v / h)) - o for v, h, o in zip(x0, domain.spacing, domain.offset))
    inside = all(0 <= i < n for i, n in zip(idx, domain.shape)) and domain.phi[idx] >= 0.5
    if not inside:
        raise ValueError(f"{field}: the tumour origin must lie in brain tissue (phi >= 0.5); "
                         f"grid mm {np.round(np.asarray(x0), 1).tolist()} is outside")


def tumour_series(t: np.ndarray, us: np.ndarray, spacing, cfg: GliomaConfig) -> dict[str, np.ndarray]:
    """Volumes and equivalent radii of the visible tumour (core/oedema) and of u >= 0.01 over time.

    Args:
        us: densities ``[n_t, *shape]``.
    """
    from oncodyn.tumour.clinical import equivalent_radius, volume

    out: dict[str, list] = {}
    nd = us.ndim - 1
    for name, lv in (("core", cfg.core_level), ("oedema", cfg.oedema_level), ("u>=0.01", 0.01)):
        v = [volume(u >= lv, spacing) for u in us]
        out[f"volume_{name}"] = v
        out[f"radius_{name}"] = [equivalent_radius(x, nd) for x in v]
    out["max_u"] = [float(u.max()) for u in us]
    return {k: np.asarray(v, float) for k, v in out.items()} | {"t": np.asarray(t, float)}


def clinical_outputs(rd, maps: TissueMaps, domain: FKDomain, t: np.ndarray, u_crop: np.ndarray, cfg: GliomaConfig,
                     tag: str = "") -> dict:
    """Write u(t) (NIfTI with the input affine, and NetCDF via xarray) and the RT plans; return the plan metrics at the last time.

    Args:
        u_crop: densities on the domain crop ``[n_t, *domain.shape]``.
    """
    from oncodyn.io.nifti import save_mask, save_nifti
    from oncodyn.tumour.clinical import radiotherapy_plans

    full = domain.embed(u_crop)
    nd = rd.subdir("nifti")
    pre = f"{tag}_" if tag else ""
    save_nifti(nd / f"{pre}u.nii.gz", np.moveaxis(full, 0, -1), maps)
    import xarray as xr

    axes = ["x", "y", "z"][: maps.ndim]
    ds = xr.Dataset({"u": (("t", *axes), full.astype(np.float32))},
                    coords={"t": ("t", np.asarray(t, float), {"units": "days"}),
                            **{a: (a, c, {"units": "grid mm"}) for a, c in zip(axes, maps.coords())}},
                    attrs={"affine": maps.affine.ravel().tolist(), "description": "tumour cell density u(x, t)"})
    rd.write_dataset(f"{pre}u.nc", ds)
    brain = domain.embed(domain.phi) >= 0.5
    plans = radiotherapy_plans(full[-1], maps.spacing, brain_mask=brain, core=cfg.core_level, margin_mm=cfg.margin_mm)
    for k in ("core", "standard", "model"):
        save_mask(nd / f"{pre}{k}_T.nii.gz", plans[k], maps)
    save_mask(nd / f"{pre}oedema_T.nii.gz", full[-1] >= cfg.oedema_level, maps)
    return {"t_plans": float(t[-1]), "threshold_model_plan": plans["threshold"],
            "core_volume": plans["core_volume"], "standard_volume": plans["standard_volume"],
            "model_volume": plans["model_volume"], "overlap": plans["overlap"],
            "nifti": sorted(p.name for p in nd.iterdir())}, plans


def pinn_problem(domain: FKDomain, x0, t_end: float, params: FKParams):
    """The PINN problem on the domain's crop (x0 converted to crop mm)."""
    from oncodyn.tumour.pinn import PINNProblem

    shift = np.asarray(domain.offset) * np.asarray(domain.spacing)
    return PINNProblem(phi=domain.phi, diffusivity=domain.d, spacing=domain.spacing,
                       x0=tuple(np.asarray(x0, float) - shift), t_end=t_end, ic=params)


def observation_points(domain: FKDomain, obs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Observed voxels as PINN data ``(points [n, ndim] crop mm, times [n], values [n])``."""
    pts, ts, vals = [], [], []
    for k, t in enumerate(obs.times):
        idx = np.nonzero(obs.observed[k])
        pts.append(np.stack(idx, axis=1) * np.asarray(domain.spacing))
        ts.append(np.full(len(idx[0]), float(t)))
        vals.append(obs.values[k][idx])
    return np.concatenate(pts), np.concatenate(ts), np.concatenate(vals)


class InverseStudyConfig(ExperimentConfig):
    """Fields of an inverse study (ours and the PINN baseline).

    Attributes:
        noise: std of the Gaussian noise on observed densities.
        D_init, rho_init: initial guesses. grid_size: grid start of the FD inverse (0: off).
        mcmc_walkers, mcmc_steps, mcmc_burn: emcee (0 steps skips MCMC).
        pinn_budget_s: wall-time budget of the PINN baseline (0 skips it).
        pinn_collocation, pinn_record_every, pinn_tol: PINN settings (published 20,000 / 1000 / 0.04).
    """

    noise: float = Field(0.02, ge=0)
    D_init: float = Field(0.05, gt=0)
    rho_init: float = Field(0.05, gt=0)
    grid_size: int = Field(5, ge=0)
    mcmc_walkers: int = Field(16, ge=4)
    mcmc_steps: int = Field(60, ge=0)
    mcmc_burn: int = Field(20, ge=0)
    pinn_budget_s: float = Field(600.0, ge=0)
    pinn_collocation: int = Field(20_000, ge=100)
    pinn_record_every: int = Field(100, ge=1)
    pinn_tol: float = Field(0.04, gt=0)


INVERSE_COLUMNS = ["method (ours / published)", "wall time", "D_w error (%)", "ρ error (%)", "D_w 95% interval", "ρ 95% interval"]


def run_inverse_study(ctx: RunContext, domain: FKDomain, obs, truth: FKParams, x0, cfg, label: str,
                      pinn_t_end: float) -> tuple[dict, list[Comparison], dict]:
    """Our FD inverse (+ Laplace, + MCMC) and the PINN baseline on the same observations.

    Returns ``(metrics, tables, arrays)``; ``cfg`` has the fields of :class:`SimpleInverseConfig`.
    """
    from oncodyn.tumour.inverse import FKInverse, InverseOptions

    inv = FKInverse(domain, obs, truth, x0, InverseOptions(grid_size=cfg.grid_size, scheme=cfg.scheme, cfl=cfg.cfl,
                                                            device=ctx.device))
    ctx.log(f"{label}: FD inverse on {domain.shape} voxels, {obs.n} observations at days {list(obs.times)}")
    res = inv.fit(cfg.D_init, cfg.rho_init)
    err = res.errors(truth.D_white, truth.rho)
    inside = {k: res.intervals[k][0] <= getattr(truth, k) <= res.intervals[k][1] for k in ("D_white", "rho")}
    m = {"fd": {"D_white": res.D_white, "rho": res.rho, "errors": err, "intervals95": res.intervals,
                "truth_inside": inside, "wall_time_s": res.wall_time_s, "n_evals": res.n_evals,
                "sigma_hat": res.sigma, "n_obs": res.n_obs, "message": res.message}}
    ctx.log(f"  D_w = {res.D_white:.4f} ({100 * err['D_white']:.2f}%), rho = {res.rho:.5f} ({100 * err['rho']:.2f}%), "
            f"{res.wall_time_s:.1f} s")
    rows = [["ours: FD inverse + Laplace", f"{res.wall_time_s:.1f} s", 100 * err["D_white"], 100 * err["rho"],
             f"[{res.intervals['D_white'][0]:.4f}, {res.intervals['D_white'][1]:.4f}]",
             f"[{res.intervals['rho'][0]:.5f}, {res.intervals['rho'][1]:.5f}]"]]
    arrays = {"fd_wall": np.array([h["wall_time_s"] for h in res.history]),
              "fd_D_err": np.array([abs(h["D_white"] / truth.D_white - 1) for h in res.history]),
              "fd_rho_err": np.array([abs(h["rho"] / truth.rho - 1) for h in res.history])}
    if cfg.mcmc_steps:
        ctx.log(f"  MCMC: {cfg.mcmc_walkers} walkers x {cfg.mcmc_steps} steps")
        mc = inv.mcmc(res, n_walkers=cfg.mcmc_walkers, n_steps=cfg.mcmc_steps, burn=min(cfg.mcmc_burn, cfg.mcmc_steps - 1),
                      seed=cfg.seed, progress=ctx.progress)
        samples = mc.pop("samples")
        arrays["mcmc_samples"] = samples
        m["mcmc"] = mc
        rows.append(["ours: emcee posterior (median, 95% CI)", f"+{mc['wall_time_s']:.1f} s",
                     100 * abs(mc["D_white_q"][1] / truth.D_white - 1), 100 * abs(mc["rho_q"][1] / truth.rho - 1),
                     f"[{mc['D_white_q'][0]:.4f}, {mc['D_white_q'][2]:.4f}]", f"[{mc['rho_q'][0]:.5f}, {mc['rho_q'][2]:.5f}]"])
    tables = []
    if cfg.pinn_budget_s > 0:
        from oncodyn.tumour.pinn import PINNOptions, train_inverse

        opts = PINNOptions(n_collocation=cfg.pinn_collocation, record_every=cfg.pinn_record_every, tol=cfg.pinn_tol,
                           time_budget_s=cfg.pinn_budget_s, seed=cfg.seed, device=ctx.device)
        ctx.log(f"  PINN baseline: budget {cfg.pinn_budget_s:g} s, {cfg.pinn_collocation} collocation points")
        pres = train_inverse(pinn_problem(domain, x0, pinn_t_end, truth), observation_points(domain, obs), opts,
                             D_init=cfg.D_init, rho_init=cfg.rho_init, D_true=truth.D_white, rho_true=truth.rho,
                             progress=ctx.progress)
        perr = (abs(pres.D_white / truth.D_white - 1), abs(pres.rho / truth.rho - 1))
        m["pinn"] = {"D_white": pres.D_white, "rho": pres.rho, "errors": {"D_white": perr[0], "rho": perr[1]},
                     "wall_time_s": pres.wall_time_s, "adam_epochs": pres.adam_epochs_run,
                     "lbfgs_iterations": pres.lbfgs_iterations, "stop_reason": pres.stop_reason,
                     "history": pres.history}
        rows.append([f"PINN baseline on this CPU ({pres.adam_epochs_run} Adam epochs + {pres.lbfgs_iterations} L-BFGS)",
                     f"{pres.wall_time_s:.1f} s", 100 * perr[0], 100 * perr[1], "-", "-"])
        arrays["pinn_wall"] = np.array([h["wall_time_s"] for h in pres.history])
        arrays["pinn_D_err"] = np.array([abs(h["D_white"] / truth.D_white - 1) for h in pres.history])
        arrays["pinn_rho_err"] = np.array([abs(h["rho"] / truth.rho - 1) for h in pres.history])
        tables.append(Comparison(title=f"{label}: PINN baseline error against wall time (this machine)",
                                 columns=["stage", "epoch", "wall (s)", "D_w error (%)", "ρ error (%)"],
                                 rows=pinn_curve_rows(pres.history, truth),
                                 note="The published stopping rule (window of 10 records) needs 10 x record_every "
                                      "epochs before it can fire; the wall-time budget usually ends the run first on a CPU."))
    return m, [rows] + tables, arrays


def plot_inverse(rd: RunDir) -> list:
    """Error against wall time (ours and the PINN), and the MCMC posterior."""
    from oncodyn.viz import figures as fg

    name = "inverse.npz"
    a = rd.read_arrays(name)
    series = {"FD inverse D_w": (a["fd_wall"], np.maximum(a["fd_D_err"], 1e-6)),
              "FD inverse ρ": (a["fd_wall"], np.maximum(a["fd_rho_err"], 1e-6))}
    if "pinn_wall" in a:
        series["PINN D_w"] = (a["pinn_wall"], np.maximum(a["pinn_D_err"], 1e-6))
        series["PINN ρ"] = (a["pinn_wall"], np.maximum(a["pinn_rho_err"], 1e-6))
    out = [fg.curves(rd.figures / "error_vs_time.png", {"relative error vs wall time": series}, "wall time (s)",
                     "relative error", logy=True)]
    if "mcmc_samples" in a:
        s = np.exp(a["mcmc_samples"][:, :2])
        out.append(fg.scatter_xy(rd.figures / "posterior.png", s[:, 0], s[:, 1], "D_w (mm²/day)", "ρ (1/day)",
                                 "emcee posterior samples"))
    return out


def pinn_curve_rows(history: list[dict], truth: FKParams) -> list[list]:
    """Rows (stage, epoch, wall s, D err %, ρ err %) of a PINN inverse history."""
    rows = []
    for h in history:
        rows.append([h["stage"], h["epoch"], h["wall_time_s"], 100 * abs(h["D_white"] / truth.D_white - 1),
                     100 * abs(h["rho"] / truth.rho - 1)])
    return rows
