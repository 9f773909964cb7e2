"""``oncodyn run glioma-patient``: the whole pipeline on the user's own NIfTI data.

From tissue maps and two or more tumour segmentations at known days since onset, estimate
D_w (mm²/day) and ρ (1/day) of the diffuse-domain Fisher--Kolmogorov model, then predict the
tumour forward and derive the radiotherapy targets:

1. load the anatomy (MNI152 or the user's maps, at ``resolution_mm``), the segmentations (each
   on the grid of the anatomy files or of the model; label values or a threshold), the origin
   x₀ (``origin_world``, or the centroid of the earliest segmentation);
2. build the diffuse domain (Cahn--Hilliard phase field of the tissue mask);
3. observations: each segmentation outlines ``{u >= level}`` (oedema/FLAIR ≈ 0.25, core/T1Gd
   ≈ 0.6), compared with the smoothed indicator σ((u - ℓ)/s) on the brain voxels (φ >= ½);
4. fit (D_w, ρ) with the differentiable FD inverse (grid start, L-BFGS-B, Laplace intervals;
   optionally emcee);
5. forward with the estimates to every segmentation day and to ``predict_days``: NIfTI of u
   (the input affine), RT plans (core + margin vs the equal-volume model plan) at the last day,
   radius/volume over time, Dice of the predicted ``{u >= level}`` against each segmentation.

Every input is checked before any expensive step (files exist, grids match, labels present,
origin in tissue, and the scans show growth: at each level a later segmentation is neither
smaller than an earlier one nor empty); a problem stops the run with one message naming the
config field. ``force: true`` turns the growth check into a warning (in the report and in
metrics.json under ``warnings``); a fit that ends at a bound of ``D_bounds``/``rho_bounds`` is
warned about the same way.

Without segmentations on the MNI152 anatomy, the run first generates a **demo patient** (a
simulation with the config's D_white/rho on a grid ``demo_factor`` times finer, thresholded
at ``demo_levels`` on ``demo_times`` and written as label images into ``<out>/input/``) and
then runs the same pipeline on those files, reporting the true parameters beside the
estimates.

A config for your own data (paths relative to the working directory)::

    anatomy: nifti
    white: patient/wm.nii.gz          # white-matter probability map in [0, 1]
    grey: patient/gm.nii.gz           # grey-matter probability map
    csf: patient/csf.nii.gz           # optional
    # or one label image instead: labels: patient/tissue_seg.nii.gz
    #                             label_values: {csf: [1], grey: [2], white: [3]}
    resolution_mm: 2.0                # the model grid (integer ratios keep volumes exact)
    segmentations:                    # BraTS labels: 1 necrosis, 2 oedema, 4 enhancing
      - {path: patient/seg_scan1.nii.gz, time: 120, labels: [1, 2, 4], level: 0.25}  # whole tumour
      - {path: patient/seg_scan1.nii.gz, time: 120, labels: [1, 4], level: 0.6}      # core
      - {path: patient/seg_scan2.nii.gz, time: 180, labels: [1, 2, 4], level: 0.25}
      - {path: patient/seg_scan2.nii.gz, time: 180, labels: [1, 4], level: 0.6}
      # a probability map instead of labels: {path: ..., time: ..., threshold: 0.5, level: 0.25}
    origin_world: null                # world mm; null = centroid of the earliest segmentation
    predict_days: [270, 360]

Segmentation files must lie on the grid of the tissue maps (same shape and affine; they are
resampled to ``resolution_mm`` like the maps) or on the model grid itself. The days are days
since tumour onset (the model starts from a small seed u₀ = 0.1 exp(-0.1 |x - x₀|²)), so they
carry the unknown onset assumption; what the data fix best are the growth between the scans
and the gap between the levels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import Field, ValidationInfo, field_validator, model_validator

from oncodyn.config import ConfigModel
from oncodyn.experiments.glioma_common import (ORIGIN_MNI, AnatomyConfig, check_origin_in_tissue, clinical_outputs,
                                               load_anatomy, origin_in_grid, tumour_series)
from oncodyn.experiments.registry import Comparison, ExperimentResult, RunContext, plotter, register
from oncodyn.io.rundir import RunDir
from oncodyn.tumour.anatomy import same_grid
from oncodyn.tumour.clinical import equivalent_radius
from oncodyn.tumour.domain import TissueMaps
from oncodyn.tumour.fk import FKDomain

#: Segmentations of the same scan (same day) are observed this many days apart, because the
#: solver's output schedule needs strictly increasing times (1e-3 d ≈ 1.4 min: no effect on u).
SAME_DAY_SHIFT = 1e-3

#: The source study's simulation values (D_w mm²/day, ρ 1/day), shown for orientation.
PUBLISHED_REFERENCE = {"D_white": 0.13, "rho": 0.025}


# ----------------------------------------------------------------------------- config


class SegmentationSpec(ConfigModel):
    """One tumour segmentation: which file, which day, which voxels, which model level.

    Attributes:
        path: NIfTI label image or probability map (relative to the working directory).
        time: days since tumour onset (> 0).
        labels: label values counted as tumour (e.g. BraTS whole tumour [1, 2, 4], core [1, 4],
            oedema [2]); each must occur in the image. Or
        threshold: voxels with value >= threshold count (probability maps).
        level: the model density ℓ this segmentation outlines, in (0, 1): about 0.25 for the
            oedema / FLAIR abnormality (whole tumour), 0.6 for the enhancing core (T1Gd).
    """

    path: str
    time: float = Field(gt=0)
    labels: list[int] | None = None
    threshold: float | None = None
    level: float = Field(gt=0, lt=1)

    @field_validator("labels")
    @classmethod
    def _labels(cls, v):
        if v is not None and not v:
            raise ValueError("must be a non-empty list of label values (e.g. [1, 4])")
        return v

    @model_validator(mode="after")
    def _one_rule(self):
        if (self.labels is None) == (self.threshold is None):
            raise ValueError("give exactly one of labels (label values counted as tumour, e.g. [1, 4]) "
                             "or threshold (value >= threshold counts, for probability maps)")
        return self


class PatientConfig(AnatomyConfig):
    """The pipeline on the user's NIfTI data (or on a generated demo patient).

    Attributes:
        segmentations: the observed tumour (:class:`SegmentationSpec`), two or more days;
            empty with ``anatomy: mni152`` generates the demo patient.
        origin_world: tumour origin x₀ (world mm); ``null`` = centroid of the earliest
            segmentation (of the union of that day's segmentations: the whole visible tumour).
        predict_days: days at which to predict u (``null`` = the last segmentation day + 90).
        resolution_mm: model voxel size (mm); 2 by default: the differentiable 3D solver keeps
            every step for the gradient, which a 1 mm brain makes too large for most machines.
        D_init, rho_init: start of the fit. D_bounds, rho_bounds: box of the fit.
        grid_size: grid start (``grid_size``² forward solves over the box; 0 = off).
        max_iter: L-BFGS-B iterations. soft_width: s of σ((u - ℓ)/s).
        fit_origin: also infer x₀ within ``origin_radius`` mm of the given/centroid origin.
        mcmc_walkers, mcmc_steps, mcmc_burn: emcee posterior (``mcmc_steps: 0`` skips it).
        n_series: output times of the radius/volume curves.
        D_white, rho: the demo patient's true values (not used with user segmentations).
        demo_times, demo_levels: days and levels of the demo segmentations.
        demo_factor: the demo data come from a grid this many times finer (1 = same grid).
        force: fit even when the scans do not show growth (a later segmentation smaller than an
            earlier one of the same level, or empty); the problem is then a warning in the report
            and in metrics.json instead of an error.
    """

    resolution_mm: float = Field(2.0, gt=0)
    origin_world: list[float] | None = None
    segmentations: list[SegmentationSpec] = []
    predict_days: list[float] | None = None
    D_bounds: tuple[float, float] = (0.01, 1.0)
    rho_bounds: tuple[float, float] = (0.002, 0.2)
    D_init: float = Field(0.05, gt=0)
    rho_init: float = Field(0.05, gt=0)
    grid_size: int = Field(5, ge=0)
    max_iter: int = Field(60, ge=1)
    soft_width: float = Field(0.05, gt=0)
    fit_origin: bool = False
    origin_radius: float = Field(10.0, gt=0)
    mcmc_walkers: int = Field(16, ge=4)
    mcmc_steps: int = Field(0, ge=0)
    mcmc_burn: int = Field(50, ge=0)
    n_series: int = Field(24, ge=2)
    demo_times: list[float] = [250.0, 300.0]
    demo_levels: list[float] = [0.25, 0.6]
    demo_factor: int = Field(2, ge=1)
    force: bool = False

    presets = {"quick": {"resolution_mm": 4.0, "grid_size": 3, "max_iter": 30, "n_series": 12}}

    @field_validator("origin_world")
    @classmethod
    def _origin(cls, v):
        if v is not None and (len(v) != 3 or not all(math.isfinite(x) for x in v)):
            raise ValueError("must be 3 finite world coordinates (mm), or null for the centroid of the "
                             "earliest segmentation")
        return v

    @field_validator("segmentations")
    @classmethod
    def _segmentations(cls, v, info: ValidationInfo):
        days = {s.time for s in v}
        if not v and info.data.get("anatomy") == "mni152":
            return v  # the demo patient
        if len(days) < 2:
            raise ValueError(
                f"at least two segmentations at two distinct times are needed to identify both D_w and rho "
                f"(one day fixes only their ratio); got {len(v)} segmentation(s) at {len(days)} distinct day(s)")
        return v

    @field_validator("predict_days", "demo_times")
    @classmethod
    def _days(cls, v):
        if v is not None and (not v or not all(math.isfinite(t) and t > 0 for t in v)):
            raise ValueError("must be a non-empty list of days > 0")
        return v

    @field_validator("demo_levels")
    @classmethod
    def _demo_levels(cls, v):
        if not v or not all(0 < lv < 1 for lv in v) or len(set(v)) != len(v):
            raise ValueError("must be a non-empty list of distinct levels in (0, 1)")
        return v

    @field_validator("D_bounds", "rho_bounds")
    @classmethod
    def _bounds(cls, v):
        if not 0 < v[0] < v[1]:
            raise ValueError("must be [low, high] with 0 < low < high")
        return v

    @field_validator("D_init", "rho_init")
    @classmethod
    def _init(cls, v, info: ValidationInfo):
        lo, hi = info.data.get("D_bounds" if info.field_name == "D_init" else "rho_bounds", (0, math.inf))
        if not lo <= v <= hi:
            raise ValueError(f"must lie within [{lo}, {hi}] (the fit's bounds)")
        return v

    @model_validator(mode="after")
    def _mcmc(self):
        need = 2 * (2 + (3 if self.fit_origin else 0))
        if self.mcmc_steps and self.mcmc_walkers < need:
            raise ValueError(f"mcmc_walkers: must be >= {need} (twice the number of unknowns), got {self.mcmc_walkers}")
        if self.mcmc_steps and self.mcmc_burn >= self.mcmc_steps:
            raise ValueError(f"mcmc_burn: must be below mcmc_steps ({self.mcmc_steps}), got {self.mcmc_burn}")
        return self


# ----------------------------------------------------------------------------- inputs


@dataclass
class PatientInputs:
    """Everything loaded and checked before the expensive steps.

    Attributes:
        maps: tissue maps on the model grid ``[n0, n1, n2]``.
        specs: segmentation specs sorted by (time, level); ``index``: their positions in the config.
        masks: the segmentations on the model grid, bool ``[n_seg, n0, n1, n2]``.
        x0: origin (grid mm, ``[3]``); origin_world: the same in world mm; origin_source: where it came from.
        resampled: config indices of segmentations brought from the anatomy files' grid to the model grid.
        warnings: problems of the data that ``force`` let through (see :func:`check_growth`).
    """

    maps: TissueMaps
    specs: list[SegmentationSpec]
    index: list[int]
    masks: np.ndarray
    x0: np.ndarray
    origin_world: list[float]
    origin_source: str
    resampled: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _seg_field(i: int, msg: str) -> str:
    """Prefix a ``'<field>: ...'`` message of a loader with ``segmentations[i].``."""
    head = msg.split(":", 1)[0]
    if head in ("path", "labels", "threshold"):
        return f"segmentations[{i}].{msg}"
    return f"segmentations[{i}].path: {msg}"


def check_files_exist(cfg: PatientConfig) -> None:
    """Every input file named by the config exists (anatomy first, then segmentations)."""
    if cfg.anatomy == "nifti":
        for name in ("white", "grey", "csf", "labels"):
            p = getattr(cfg, name)
            if p is not None and not Path(p).is_file():
                raise ValueError(f"{name}: must be an existing NIfTI file, got {p!r}")
    for i, s in enumerate(cfg.segmentations):
        if not Path(s.path).is_file():
            raise ValueError(f"segmentations[{i}].path: must be an existing NIfTI file, got {s.path!r}")


def _header(path: str, name: str):
    import nibabel as nib

    try:
        img = nib.load(path)
    except Exception as err:  # nibabel raises several kinds on unreadable files
        raise ValueError(f"{name}: must be a readable NIfTI file, got {path!r} ({err})") from err
    shape = tuple(img.shape)
    if len(shape) < 3 or any(n != 1 for n in shape[3:]):
        raise ValueError(f"{name}: must be a 3D image (trailing singleton axes allowed), got shape {shape} in {path}")
    return shape[:3], np.asarray(img.affine, float)


def source_grid(cfg: PatientConfig) -> tuple[tuple[int, ...], np.ndarray]:
    """Shape and affine of the anatomy files (the user's maps, or the 1 mm MNI152)."""
    if cfg.anatomy == "nifti":
        first = next(getattr(cfg, k) for k in ("labels", "white", "grey", "csf") if getattr(cfg, k))
        name = next(k for k in ("labels", "white", "grey", "csf") if getattr(cfg, k) == first)
        return _header(first, name)
    from oncodyn.tumour.anatomy import MNI152_SHAPE, load_mni152

    return MNI152_SHAPE, np.asarray(load_mni152(1).affine, float)


def segmentation_grids(cfg: PatientConfig, maps: TissueMaps) -> list[str]:
    """Per segmentation ``"model"`` (on the model grid) or ``"source"`` (on the anatomy files' grid).

    Reads headers only. Raises one ValueError naming ``segmentations[i].path`` for a grid that
    is neither.
    """
    src = None
    out = []
    for i, s in enumerate(cfg.segmentations):
        shape, affine = _header(s.path, f"segmentations[{i}].path")
        if same_grid(shape, affine, maps.shape, maps.affine):
            out.append("model")
            continue
        src = src or source_grid(cfg)
        if same_grid(shape, affine, *src):
            out.append("source")
            continue
        what = "the tissue maps" if cfg.anatomy == "nifti" else "the MNI152 template (1 mm)"
        grids = f"shape {tuple(src[0])}, affine {np.round(src[1], 3).tolist()}"
        if not same_grid(maps.shape, maps.affine, *src):
            grids += (f"; or the model grid at resolution_mm: shape {tuple(maps.shape)}, affine "
                      f"{np.round(maps.affine, 3).tolist()}")
        raise ValueError(
            f"segmentations[{i}].path: must lie on the grid of {what} ({grids}); got shape {shape}, affine "
            f"{np.round(affine, 3).tolist()} in {s.path} (register/resample the segmentation to the anatomy first)")
    return out


def _grid_only(shape, affine) -> TissueMaps:
    """Zero tissue maps that only carry a grid (for :func:`load_segmentation`'s ``like``)."""
    from oncodyn.tumour.anatomy import spacing_from_affine

    z = np.zeros(shape)
    return TissueMaps(white=z, grey=z, csf=z, spacing=tuple(float(h) for h in spacing_from_affine(affine)),
                      affine=np.asarray(affine, float))


def mask_to_model_grid(mask: np.ndarray, affine: np.ndarray, cfg: PatientConfig, maps: TissueMaps) -> np.ndarray:
    """A mask on the anatomy files' grid, resampled exactly as the maps were (fraction >= ½), bool ``maps.shape``."""
    from oncodyn.tumour.anatomy import resample

    g = _grid_only(mask.shape, affine)
    frac = resample(TissueMaps(white=mask.astype(float), grey=g.grey, csf=g.csf, spacing=g.spacing, affine=g.affine),
                    cfg.resolution_mm)
    if not same_grid(frac.shape, frac.affine, maps.shape, maps.affine):  # pragma: no cover - resample is shared
        raise ValueError("resolution_mm: the segmentations cannot be resampled onto the model grid")
    return frac.white >= 0.5


def load_masks(cfg: PatientConfig, maps: TissueMaps, grids: list[str]) -> tuple[np.ndarray, list[int]]:
    """The segmentations as bool masks on the model grid ``[n_seg, *maps.shape]`` (config order).

    Returns:
        (masks, indices of the segmentations that were resampled from the anatomy files' grid).
    """
    from oncodyn.tumour.anatomy import load_segmentation

    src = None
    masks, resampled = [], []
    for i, (s, g) in enumerate(zip(cfg.segmentations, grids)):
        if g == "source":
            src = src or source_grid(cfg)
        like = maps if g == "model" else _grid_only(*src)
        try:
            m = load_segmentation(s.path, like=like, labels=s.labels, threshold=s.threshold)
        except ValueError as err:
            raise ValueError(_seg_field(i, str(err))) from None
        if g == "source":
            m = mask_to_model_grid(m, src[1], cfg, maps)
            resampled.append(i)
        masks.append(m)
    return np.stack(masks), resampled


def resolve_origin(cfg: PatientConfig, maps: TissueMaps, masks: np.ndarray,
                   order: list[int]) -> tuple[np.ndarray, list[float], str]:
    """x₀ (grid mm ``[3]``), in world mm, and its source; checked inside the image and in tissue.

    Args:
        masks: segmentations in config order. order: config indices sorted by (time, level).
    """
    if cfg.origin_world is not None:
        world, source, name = list(cfg.origin_world), "origin_world (config)", "origin_world"
    else:
        nonempty = [i for i in order if masks[i].any()]
        if not nonempty:
            raise ValueError("segmentations: every segmentation is empty on the model grid; "
                             "check labels/threshold, or set origin_world")
        from scipy import ndimage

        t0 = cfg.segmentations[nonempty[0]].time
        first = [k for k in nonempty if cfg.segmentations[k].time == t0]
        union = np.any(masks[first], axis=0)  # the whole visible tumour of the first scan
        c = np.asarray(ndimage.center_of_mass(union)) * np.asarray(maps.spacing)
        world = maps.grid_to_world(c)[0].tolist()
        which = ", ".join(f"segmentations[{k}]" for k in first)
        source = f"centroid of {which} (day {t0:g})"
        name = f"origin_world (null: the centroid of {which})"
    x0 = origin_in_grid(maps, world, field=name)
    idx = tuple(int(round(v / h)) for v, h in zip(x0, maps.spacing))
    frac = float(maps.tissue()[idx])
    if frac < cfg.tissue_threshold:
        raise ValueError(f"{name}: the tumour origin must lie in brain tissue (white + grey >= tissue_threshold = "
                         f"{cfg.tissue_threshold}); world mm {np.round(world, 1).tolist()} has {frac:.2f}")
    return x0, world, source


def check_growth(specs: list[SegmentationSpec], masks: np.ndarray, voxel_mm3: float, force: bool = False) -> list[str]:
    """The scans must show growth: at each level, no later segmentation is empty or smaller than an earlier one.

    A tumour that shrinks between scans (scans swapped, days wrong, or treatment) or vanishes
    cannot identify the growth parameters of a Fisher--Kolmogorov model, whose visible region only
    grows from the seed.

    Args:
        specs: the segmentations in config order. masks: bool ``[n_seg, *shape]`` on the model grid.
        voxel_mm3: volume of one model voxel (mm³). force: return the problems instead of raising.

    Returns:
        The problems (empty when the data show growth; only non-empty with ``force``).

    Raises:
        ValueError: ``segmentations[i]: ...`` for the first problem (all are listed), unless ``force``.
    """
    n = [int(m.sum()) for m in masks]
    first_day = min(s.time for s in specs)
    problems, flagged = [], set()
    for j, s in enumerate(specs):
        if n[j] == 0 and s.time > first_day:
            flagged.add(j)
            problems.append(f"segmentations[{j}]: must not be empty on the model grid at day {s.time:g}, after the "
                            f"first scan (day {first_day:g}): a tumour that vanishes cannot identify growth")
    for j, s in enumerate(specs):
        if j in flagged:
            continue
        bigger = [i for i, e in enumerate(specs) if e.level == s.level and e.time < s.time and n[i] > n[j]]
        if bigger:
            i = max(bigger, key=lambda k: n[k])
            problems.append(
                f"segmentations[{j}]: must not be smaller than an earlier segmentation of the same level "
                f"({s.level:g}); day {s.time:g} has {n[j] * voxel_mm3 / 1000:.3g} mL, segmentations[{i}] at day "
                f"{specs[i].time:g} has {n[i] * voxel_mm3 / 1000:.3g} mL: a shrinking tumour (scans swapped or "
                "days wrong?) cannot identify growth")
    if problems and not force:
        raise ValueError("; ".join(problems) + " (check the paths and days of the segmentations, or set "
                         "force: true to fit anyway, with a warning)")
    return problems


def load_inputs(cfg: PatientConfig, ctx: RunContext) -> PatientInputs:
    """Steps 0--1: files exist, anatomy, segmentation grids and labels, origin, growth (no expensive work)."""
    check_files_exist(cfg)
    maps = load_anatomy(cfg)
    grids = segmentation_grids(cfg, maps)
    masks, resampled = load_masks(cfg, maps, grids)
    order = sorted(range(len(cfg.segmentations)), key=lambda i: (cfg.segmentations[i].time, cfg.segmentations[i].level))
    x0, world, source = resolve_origin(cfg, maps, masks, order)
    warnings = check_growth(cfg.segmentations, masks, float(np.prod(maps.spacing)), force=cfg.force)
    for w in warnings:
        ctx.log(f"warning: {w} (fitted anyway: force is true)")
    ctx.log(f"anatomy {cfg.anatomy}: {maps.shape} voxels at {maps.spacing[0]:g} mm; {len(order)} segmentations "
            f"at days {sorted({s.time for s in cfg.segmentations})}; origin {np.round(world, 1).tolist()} ({source})")
    return PatientInputs(maps=maps, specs=[cfg.segmentations[i] for i in order], index=order, masks=masks[order],
                         x0=x0, origin_world=[float(v) for v in world], origin_source=source, resampled=resampled,
                         warnings=[f"{w} (fitted anyway: force is true)" for w in warnings])


def bound_warnings(res, cfg: PatientConfig) -> list[str]:
    """Warnings for estimates that end at a bound of the fit's box (the optimum may lie outside it).

    An estimate counts as at a bound when its log lies within 0.1% of the box's log-width of it.
    """
    out = []
    for key, name, est, (lo, hi) in (("D_bounds", "D_w", res.D_white, cfg.D_bounds),
                                     ("rho_bounds", "rho", res.rho, cfg.rho_bounds)):
        tol = 1e-3 * math.log(hi / lo)
        for side, b in (("lower", lo), ("upper", hi)):
            if abs(math.log(est / b)) <= tol:
                out.append(f"{key}: the fitted {name} = {est:.4g} ends at the {side} bound {b:g}; the best fit may lie "
                           f"outside [{lo:g}, {hi:g}] (widen {key}), and its interval is not reliable")
    return out


# ----------------------------------------------------------------------------- observations and fit


def observation_times(times) -> np.ndarray:
    """Strictly increasing observation days: repeats (one scan, several levels) shifted by SAME_DAY_SHIFT."""
    out: list[float] = []
    for t in np.asarray(times, float):
        out.append(t if not out or t > out[-1] else out[-1] + SAME_DAY_SHIFT)
    return np.asarray(out)


def build_observations(domain: FKDomain, inputs: PatientInputs, cfg: PatientConfig):
    """Segmentations as :class:`~oncodyn.tumour.inverse.Observations` on the domain crop (brain voxels φ >= ½)."""
    from oncodyn.tumour.inverse import Observations

    values = np.stack([domain.crop(m) for m in inputs.masks]).astype(float)
    observed = np.broadcast_to(domain.phi >= 0.5, values.shape).copy()
    return Observations(times=observation_times([s.time for s in inputs.specs]), values=values * observed,
                        observed=observed, levels=tuple(s.level for s in inputs.specs), soft_width=cfg.soft_width)


def _progress_callback(ctx: RunContext):
    """A tqdm bar over objective evaluations (disabled when quiet); returns (callback, close)."""
    from tqdm.auto import tqdm

    bar = tqdm(desc="fit (D_w, rho)", unit="eval", disable=not ctx.progress, leave=False)

    def cb(h):
        bar.update(1)
        bar.set_postfix(stage=h["stage"], D_w=f"{h['D_white']:.4g}", rho=f"{h['rho']:.4g}")

    return cb, bar.close


def fit_parameters(domain: FKDomain, obs, x0, cfg: PatientConfig, ctx: RunContext):
    """Step 4: the FD inverse from (D_init, rho_init), Laplace intervals, optional emcee.

    Returns:
        (InverseResult, the MCMC summary dict without samples or ``None``, samples ``[n, p]`` or ``None``).
    """
    from oncodyn.tumour.inverse import FKInverse, InverseOptions

    opts = InverseOptions(D_bounds=tuple(cfg.D_bounds), rho_bounds=tuple(cfg.rho_bounds), fit_origin=cfg.fit_origin,
                          origin_radius=cfg.origin_radius, max_iter=cfg.max_iter, grid_size=cfg.grid_size,
                          scheme=cfg.scheme, cfl=cfg.cfl, device=ctx.device)
    inv = FKInverse(domain, obs, cfg.params(), x0, opts)
    ctx.log(f"fit: {len(obs.times)} segmentations, {obs.n} observed voxel values, grid start {cfg.grid_size}^2, "
            f"device {ctx.device}")
    cb, close = _progress_callback(ctx)
    try:
        res = inv.fit(cfg.D_init, cfg.rho_init, callback=cb)
    finally:
        close()
    ctx.log(f"  D_w = {res.D_white:.4g} mm^2/day, rho = {res.rho:.4g} /day ({res.n_evals} evaluations, "
            f"{res.wall_time_s:.1f} s)")
    if not cfg.mcmc_steps:
        return res, None, None
    ctx.log(f"  MCMC: {cfg.mcmc_walkers} walkers x {cfg.mcmc_steps} steps")
    mc = dict(inv.mcmc(res, n_walkers=cfg.mcmc_walkers, n_steps=cfg.mcmc_steps, burn=cfg.mcmc_burn, seed=cfg.seed,
                       progress=ctx.progress))
    samples = mc.pop("samples")
    return res, mc, samples


# ----------------------------------------------------------------------------- forecast


@dataclass
class Forecast:
    """The forward run with the estimates.

    Attributes:
        t: all output days ``[n_t]``; u: densities on the domain crop ``[n_t, *domain.shape]``.
        t_nifti: days written as NIfTI (segmentation days and predict_days), sorted.
        x0: origin used (grid mm).
    """

    t: np.ndarray
    u: np.ndarray
    t_nifti: np.ndarray
    x0: np.ndarray
    wall_time_s: float

    def at(self, day: float) -> np.ndarray:
        """u on the crop at output ``day``."""
        return self.u[int(np.argmin(np.abs(self.t - day)))]


def predict_days(cfg: PatientConfig) -> list[float]:
    """``predict_days``, or the last segmentation day + 90."""
    return list(cfg.predict_days) if cfg.predict_days else [max(s.time for s in cfg.segmentations) + 90.0]


def forecast(domain: FKDomain, D_white: float, rho: float, x0, cfg: PatientConfig, ctx: RunContext) -> Forecast:
    """Step 5: simulate with the estimates to every segmentation day, the predict days and a curve grid."""
    from oncodyn.tumour.fk import simulate

    t_nifti = np.unique(np.asarray([s.time for s in cfg.segmentations] + predict_days(cfg), float))
    grid = np.linspace(t_nifti[-1] / cfg.n_series, t_nifti[-1], cfg.n_series)
    t = np.unique(np.concatenate([grid, t_nifti]))
    sol = simulate(domain, cfg.params(D_white=D_white, rho=rho), x0, t, scheme=cfg.scheme, cfl=cfg.cfl,
                   progress=ctx.progress, desc="forecast")
    return Forecast(t=t, u=sol.u, t_nifti=t_nifti, x0=np.asarray(x0, float), wall_time_s=sol.wall_time)


def segmentation_agreement(domain: FKDomain, inputs: PatientInputs, fc: Forecast) -> list[dict]:
    """Per segmentation (sorted): observed and predicted volumes (mm³) and Dice of {u >= ℓ} on brain voxels."""
    from oncodyn.tumour.clinical import plan_overlap

    brain = domain.phi >= 0.5
    out = []
    for k, (s, m) in enumerate(zip(inputs.specs, inputs.masks)):
        obs = domain.crop(m) & brain
        pred = (fc.at(s.time) >= s.level) & brain
        ov = plan_overlap(pred, obs, domain.spacing)
        n_all = int(m.sum())
        out.append({"index": inputs.index[k], "path": s.path, "time": s.time, "level": s.level,
                    "observed_volume": ov["volume_b"], "predicted_volume": ov["volume_a"], "dice": ov["dice"],
                    "outside_brain_fraction": (n_all - int(obs.sum())) / n_all if n_all else 0.0})
    return out


# ----------------------------------------------------------------------------- demo patient


def make_demo_patient(cfg: PatientConfig, ctx: RunContext) -> tuple[PatientConfig, dict]:
    """Simulate a patient on the MNI152 anatomy and write its segmentations to ``<out>/input/``.

    The density is simulated with the config's (D_white, rho) on a grid ``demo_factor`` times
    finer (its own phase field; :func:`~oncodyn.tumour.synthetic.observe_from_finer`),
    block-averaged onto the model grid and thresholded: one label image per day, label j =
    number of ``demo_levels`` that u reaches (so ``{label >= j}`` is ``{u >= level_j}``).

    Returns:
        (the config with these segmentations, the demo's truth and files).
    """
    from oncodyn.io.nifti import save_nifti
    from oncodyn.tumour.anatomy import refine
    from oncodyn.tumour.synthetic import domain_of, observe_from_finer

    maps = load_anatomy(cfg)
    world = list(cfg.origin_world or ORIGIN_MNI)
    x0 = origin_in_grid(maps, world)
    check_origin_in_tissue(domain_of(maps, cfg.grey_ratio, cfg.phase(), cfg.phi_min), x0)
    f = cfg.demo_factor
    days = sorted(set(cfg.demo_times))
    levels = sorted(cfg.demo_levels)
    ctx.log(f"demo patient: no segmentations given; simulating D_w = {cfg.D_white}, rho = {cfg.rho} on a "
            f"{maps.spacing[0] / f:g} mm grid, segmented at u >= {levels} on days {days}")
    case = observe_from_finer(refine(maps, f) if f > 1 else maps, f, cfg.params(), x0, days, noise=0.0,
                              seed=cfg.seed, phase=cfg.phase(), phi_min=cfg.phi_min, progress=ctx.progress)
    folder = ctx.rundir.subdir("input")
    specs, files = [], []
    for t, u in zip(days, case.clean):
        full = case.domain.embed(u)
        label = sum((full >= lv).astype(np.uint8) for lv in levels)
        path = save_nifti(folder / f"seg_day{t:g}.nii.gz", label, maps)
        files.append(str(path))
        for j, lv in enumerate(levels, start=1):
            if (label >= j).any():
                specs.append({"path": str(path), "time": t, "labels": [int(v) for v in np.unique(label) if v >= j],
                              "level": lv})
            else:
                ctx.log(f"  day {t:g}: nothing reaches u >= {lv} (segmentation skipped)")
    if len({s["time"] for s in specs}) < 2:
        raise ValueError(f"demo_times: the demo tumour is visible (u >= {levels[0]}) on fewer than two of the days "
                         f"{days}; choose later days (in 3D, D_w = 0.13 and rho = 0.025 show u >= 0.25 "
                         "from about day 200)")
    new = PatientConfig.model_validate({**cfg.model_dump(), "segmentations": specs})
    info = {"truth": {"D_white": cfg.D_white, "rho": cfg.rho, "origin_world": world, "x0_grid_mm": x0.tolist()},
            "factor": f, "fine_spacing_mm": maps.spacing[0] / f, "fine_wall_time_s": case.fine_wall_time,
            "files": files, "segmentations": specs}
    return new, info


# ----------------------------------------------------------------------------- tables


def _interval(iv) -> str:
    return f"[{iv[0]:.4g}, {iv[1]:.4g}]"


def estimate_table(res, mc: dict | None, demo: dict | None) -> Comparison:
    """Estimates with 95% intervals (and the truth for the demo patient)."""
    truth = demo["truth"] if demo else {}

    def row(name, key, pub, est, iv):
        t = truth.get(key)
        return [name, pub, est, iv, t if t is not None else "unknown", 100 * abs(est / t - 1) if t else "-"]

    speed = 2 * math.sqrt(res.D_white * res.rho)
    rows = [row("D_w (mm²/day)", "D_white", PUBLISHED_REFERENCE["D_white"], res.D_white,
                _interval(res.intervals["D_white"])),
            row("ρ (1/day)", "rho", PUBLISHED_REFERENCE["rho"], res.rho, _interval(res.intervals["rho"]))]
    if mc:
        rows += [row("D_w, emcee median", "D_white", "-", mc["D_white_q"][1], _interval(mc["D_white_q"][::2])),
                 row("ρ, emcee median", "rho", "-", mc["rho_q"][1], _interval(mc["rho_q"][::2]))]
    true_speed = 2 * math.sqrt(truth["D_white"] * truth["rho"]) if truth else None
    rows.append(["front speed 2√(D_w ρ) (mm/day)", 2 * math.sqrt(0.13 * 0.025), speed, "-",
                 true_speed if true_speed else "unknown", 100 * abs(speed / true_speed - 1) if true_speed else "-"])
    who = "generated DEMO patient" if demo else "user's segmentations"
    note = ("Intervals: Laplace (Gauss--Newton) at the optimum. For segmentations the likelihood is a "
            "pseudo-likelihood (0/1 masks against the smoothed indicator σ((u - ℓ)/s), with σ estimated from the "
            f"residuals, σ̂ = {res.sigma:.3g}); voxel residuals are spatially correlated, so these intervals are "
            "indicative only (usually too narrow). The published column holds the source study's simulation values "
            "(no patient estimates were published).")
    if demo:
        note += (f" DEMO: the data were generated with D_w = {truth['D_white']}, ρ = {truth['rho']} on a "
                 f"{demo['fine_spacing_mm']:g} mm grid (no inverse crime when demo_factor > 1).")
    return Comparison(title=f"Estimated growth parameters ({who}, {res.n_obs} observed voxel values)",
                      columns=["parameter", "published reference value", "estimate", "95% interval",
                               "truth", "error (%)"], rows=rows, note=note)


def agreement_table(agree: list[dict]) -> Comparison:
    """Dice of the predicted {u >= ℓ} against each segmentation."""
    rows = [[f"segmentations[{a['index']}] ({Path(a['path']).name})", a["time"], a["level"],
             a["observed_volume"] / 1000, a["predicted_volume"] / 1000, a["dice"]] for a in agree]
    return Comparison(title="Observed segmentations vs the fitted model",
                      columns=["segmentation", "day", "level ℓ", "observed (mL)", "predicted {u ≥ ℓ} (mL)",
                               "Dice"],
                      rows=rows, note="Volumes and Dice on the brain voxels (φ ≥ ½) of the model grid.")


def prediction_table(series: dict, fc: Forecast, cm: dict, cfg: PatientConfig) -> Comparison:
    """Predicted sizes at the NIfTI days and the RT plans at the last day."""
    rows = []
    for t in fc.t_nifti:
        k = int(np.argmin(np.abs(series["t"] - t)))
        rows.append([f"day {t:g}: core / oedema volume (mL), radius u ≥ 0.01 (mm), max u",
                     f"{series['volume_core'][k] / 1000:.2f} / {series['volume_oedema'][k] / 1000:.2f}, "
                     f"{series['radius_u>=0.01'][k]:.1f}, {series['max_u'][k]:.2f}"])
    ov = cm["overlap"]
    rows += [[f"day {cm['t_plans']:g}: core (u ≥ {cfg.core_level}) volume (mL)", f"{cm['core_volume'] / 1000:.2f}"],
             [f"standard plan: core + {cfg.margin_mm:g} mm (mL)", f"{cm['standard_volume'] / 1000:.2f}"],
             ["model plan: equal-volume {u ≥ θ} (mL)",
              f"{cm['model_volume'] / 1000:.2f} (θ = {cm['threshold_model_plan']:.3g})"],
             ["plan overlap: Dice / standard inside model", f"{ov['dice']:.3f} / {ov['a_in_b']:.3f}"]]
    return Comparison(title="Predicted tumour and radiotherapy targets", columns=["quantity", "value"], rows=rows,
                      note="NIfTI in nifti/ (input affine): predicted_u (4D, one volume per day above), "
                           "predicted_{core,oedema,standard,model}_T at the last day.")


# ----------------------------------------------------------------------------- the experiment


def _notes(cfg: PatientConfig, inputs: PatientInputs, agree: list[dict], demo: dict | None) -> list[str]:
    notes = []
    if demo:
        notes.append(f"DEMO PATIENT: no segmentations were given, so one was generated on MNI152 with D_w = "
                     f"{demo['truth']['D_white']}, ρ = {demo['truth']['rho']} from world mm "
                     f"{demo['truth']['origin_world']}; its label images are in input/.")
    notes.append(f"origin x0 = world mm {np.round(inputs.origin_world, 1).tolist()} ({inputs.origin_source}); "
                 + ("fitted within origin_radius." if cfg.fit_origin else "held fixed (fit_origin: true infers it)."))
    days = [s.time for s in inputs.specs]
    if len(set(days)) < len(days):
        notes.append(f"segmentations of the same day are observed {SAME_DAY_SHIFT:g} day apart (solver schedule).")
    if inputs.resampled:
        notes.append(f"segmentations {inputs.resampled} were resampled from the anatomy files' grid to "
                     f"{cfg.resolution_mm:g} mm (voxel fraction >= 1/2).")
    for a in agree:
        if a["outside_brain_fraction"] > 0.05:
            notes.append(f"segmentations[{a['index']}]: {100 * a['outside_brain_fraction']:.0f}% of its voxels lie "
                         "outside the brain domain and were ignored (check the registration).")
        if a["observed_volume"] == 0:
            notes.append(f"segmentations[{a['index']}] is empty on the brain voxels "
                         f"(it says u < {a['level']} everywhere).")
    return notes


def _metrics(res, mc, demo, inputs: PatientInputs, domain: FKDomain, fc: Forecast, cm: dict, series: dict,
             agree: list[dict]) -> dict:
    """The JSON metrics of a run: estimates, origin, grid, agreement, RT plans, series (and truth for the demo)."""
    maps = inputs.maps
    m = {"estimates": {"D_white": res.D_white, "rho": res.rho, "intervals95": res.intervals, "sigma_hat": res.sigma,
                       "n_obs": res.n_obs, "misfit": res.misfit, "n_evals": res.n_evals,
                       "wall_time_s": res.wall_time_s, "message": res.message,
                       "x0_grid_mm": np.asarray(res.x0).tolist(), "x0_world": maps.grid_to_world(res.x0)[0].tolist()},
         "origin": {"world": inputs.origin_world, "grid_mm": inputs.x0.tolist(), "source": inputs.origin_source},
         "grid": {"shape": list(maps.shape), "spacing": list(maps.spacing), "affine": maps.affine.tolist(),
                  "domain_shape": list(domain.shape)},
         "segmentations": agree, "radiotherapy": cm, "forecast_wall_time_s": fc.wall_time_s,
         "nifti_days": fc.t_nifti.tolist(), "series": {k: v.tolist() for k, v in series.items()}}
    if mc:
        m["mcmc"] = mc
    if demo:
        m["demo"] = {**demo, "errors": {k: abs(getattr(res, k) / demo["truth"][k] - 1) for k in ("D_white", "rho")}}
    return m


def _figure_arrays(inputs: PatientInputs, domain: FKDomain, fc: Forecast, i_plans: int, cm: dict, plans: dict,
                   agree: list[dict], series: dict, samples) -> dict[str, np.ndarray]:
    """What the plotter reads (full-grid fields ``[n0, n1, n2]``, masks, series)."""
    last_seg = max(s.time for s in inputs.specs)
    arrays = {"background": inputs.maps.tissue().astype(np.float32), "spacing": np.asarray(inputs.maps.spacing),
              "t_plans": np.asarray(cm["t_plans"]), "u_T": domain.embed(fc.u[i_plans]).astype(np.float32),
              "t_last_seg": np.asarray(last_seg), "u_last_seg": domain.embed(fc.at(last_seg)).astype(np.float32),
              "plan_standard": plans["standard"], "plan_model": plans["model"], "core": plans["core"],
              "seg_masks": inputs.masks.astype(np.uint8), "seg_times": np.array([s.time for s in inputs.specs]),
              "seg_levels": np.array([s.level for s in inputs.specs]),
              "seg_volume": np.array([a["observed_volume"] for a in agree]),
              **{f"series_{k}": v for k, v in series.items()}}
    if samples is not None:
        arrays["mcmc_samples"] = samples
    return arrays


@register("glioma-patient", PatientConfig,
          "glioma: your NIfTI anatomy + >= 2 segmentations -> D_w, rho (intervals), forecast, RT plans; demo if none")
def run_patient(cfg: PatientConfig, ctx: RunContext) -> ExperimentResult:
    """Steps 1--6 of the module docstring (after generating the demo patient when there are no segmentations)."""
    from oncodyn.tumour.synthetic import domain_of

    demo = None
    if not cfg.segmentations:
        cfg, demo = make_demo_patient(cfg, ctx)
    inputs = load_inputs(cfg, ctx)
    maps = inputs.maps
    domain = domain_of(maps, cfg.grey_ratio, cfg.phase(), cfg.phi_min)
    check_origin_in_tissue(domain, inputs.x0, field="origin_world")
    obs = build_observations(domain, inputs, cfg)
    res, mc, samples = fit_parameters(domain, obs, inputs.x0, cfg, ctx)
    warnings = inputs.warnings + bound_warnings(res, cfg)
    for w in warnings[len(inputs.warnings):]:
        ctx.log(f"warning: {w}")
    fc = forecast(domain, res.D_white, res.rho, res.x0, cfg, ctx)
    idx = [int(np.argmin(np.abs(fc.t - t))) for t in fc.t_nifti]
    cm, plans = clinical_outputs(ctx.rundir, maps, domain, fc.t_nifti, fc.u[idx], cfg, tag="predicted")
    series = tumour_series(fc.t, fc.u, maps.spacing, cfg)
    agree = segmentation_agreement(domain, inputs, fc)

    metrics = _metrics(res, mc, demo, inputs, domain, fc, cm, series, agree)
    metrics["warnings"] = warnings
    if demo:
        e = metrics["demo"]["errors"]
        ctx.log(f"  demo truth D_w = {demo['truth']['D_white']}, rho = {demo['truth']['rho']}: errors "
                f"{100 * e['D_white']:.1f}%, {100 * e['rho']:.1f}%")
    ctx.rundir.write_arrays("pipeline.npz", _figure_arrays(inputs, domain, fc, idx[-1], cm, plans, agree, series,
                                                           samples))
    tables = [estimate_table(res, mc, demo), agreement_table(agree), prediction_table(series, fc, cm, cfg)]
    notes = [f"WARNING: {w}" for w in warnings] + _notes(cfg, inputs, agree, demo)
    return ExperimentResult(metrics=metrics, tables=tables, notes=notes)


# ----------------------------------------------------------------------------- figures

_SEG_COLOURS = ["cyan", "deepskyblue", "yellow", "orange", "red", "dodgerblue"]
_PAIR_COLOURS = [("cyan", "yellow"), ("deepskyblue", "orange"), ("springgreen", "red")]  # (observed, predicted)


def plot_patient(rd: RunDir) -> list:
    """Predicted u with the observed segmentations and RT plans; observed vs predicted; radius/volume vs time."""
    from oncodyn.viz import figures as fg
    from oncodyn.viz.tumour import overlay_slices

    a = rd.read_arrays("pipeline.npz")
    sp = tuple(float(h) for h in a["spacing"])
    seg = {f"observed day {t:g} (ℓ = {lv:g})": (m.astype(bool), _SEG_COLOURS[k % len(_SEG_COLOURS)])
           for k, (m, t, lv) in enumerate(zip(a["seg_masks"], a["seg_times"], a["seg_levels"]))}
    tp = float(a["t_plans"])
    out = [overlay_slices(rd.figures / "predicted_overlay.png", a["background"], a["u_T"], sp,
                          contours={**seg, "standard plan": (a["plan_standard"], "lime"),
                                    "model plan": (a["plan_model"], "magenta")},
                          title=f"predicted u at day {tp:g}, observed segmentations and RT plans")]
    tl = float(a["t_last_seg"])
    last = {}
    at_last = [(m, lv) for m, t, lv in zip(a["seg_masks"], a["seg_times"], a["seg_levels"]) if t == tl]
    for k, (m, lv) in enumerate(at_last):
        c_obs, c_pred = _PAIR_COLOURS[k % len(_PAIR_COLOURS)]
        last[f"observed ℓ = {lv:g}"] = (m.astype(bool), c_obs)
        last[f"predicted u ≥ {lv:g}"] = (a["u_last_seg"] >= lv, c_pred)
    out.append(overlay_slices(rd.figures / "observed_vs_predicted.png", a["background"], a["u_last_seg"], sp,
                              contours=last, title=f"day {tl:g}: observed vs fitted model"))
    t = a["series_t"]
    obs_r, obs_v = {}, {}
    for lv in np.unique(a["seg_levels"]):
        sel = a["seg_levels"] == lv
        obs_r[f"observed ℓ = {lv:g}"] = (a["seg_times"][sel], np.array([equivalent_radius(v, 3) for v in a["seg_volume"][sel]]))
        obs_v[f"observed ℓ = {lv:g}"] = (a["seg_times"][sel], a["seg_volume"][sel] / 1000)
    names = {"core": "core", "oedema": "oedema", "u>=0.01": "u ≥ 0.01"}
    model_r = {f"model {v}": (t, a[f"series_radius_{k}"]) for k, v in names.items()}
    out.append(fg.curves(rd.figures / "radius_vs_time.png", {"equivalent radius": {**model_r, **obs_r}},
                         "t (days)", "radius (mm)"))
    out.append(fg.curves(rd.figures / "volume_vs_time.png",
                         {"volume": {**{f"model {v}": (t, a[f"series_volume_{k}"] / 1000) for k, v in names.items()},
                                     **obs_v}}, "t (days)", "volume (mL)"))
    if "mcmc_samples" in a:
        s = np.exp(a["mcmc_samples"][:, :2])
        out.append(fg.scatter_xy(rd.figures / "posterior.png", s[:, 0], s[:, 1], "D_w (mm²/day)", "ρ (1/day)",
                                 "emcee posterior samples"))
    return out


plotter("glioma-patient")(plot_patient)
