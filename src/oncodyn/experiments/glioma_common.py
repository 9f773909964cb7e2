"""What the glioma experiments share: config fields, anatomy loading, clinical outputs, the PINN baseline."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from oncodyn.config import ExperimentConfig
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
    """Write u(t) and the RT plans as NIfTI (input affine) and return the plan metrics at the last time.

    Args:
        u_crop: densities on the domain crop ``[n_t, *domain.shape]``.
    """
    from oncodyn.io.nifti import save_mask, save_nifti
    from oncodyn.tumour.clinical import radiotherapy_plans

    full = domain.embed(u_crop)
    nd = rd.subdir("nifti")
    pre = f"{tag}_" if tag else ""
    save_nifti(nd / f"{pre}u.nii.gz", np.moveaxis(full, 0, -1), maps)
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


def pinn_curve_rows(history: list[dict], truth: FKParams) -> list[list]:
    """Rows (stage, epoch, wall s, D err %, ρ err %) of a PINN inverse history."""
    rows = []
    for h in history:
        rows.append([h["stage"], h["epoch"], h["wall_time_s"], 100 * abs(h["D_white"] / truth.D_white - 1),
                     100 * abs(h["rho"] / truth.rho - 1)])
    return rows
