"""Clinical read-outs of a simulated tumour density: visible tumour, sizes, radiotherapy targets.

* Visible tumour by thresholds of the cell density u (core u >= 0.6, oedema u >= 0.25 by
  default, the imaging detection thresholds of the spec; configurable).
* Volume (mm^3; mm^2 on a 2D slice) and the equivalent radius of a mask.
* Radiotherapy targets: the **standard plan** -- the visible core grown by a fixed margin
  (15 mm, Euclidean distance on the voxel grid, optionally restricted to the brain) -- and a
  **model plan** -- the superlevel set {u >= theta} of the simulated density whose volume is
  closest to the standard plan's, i.e. the same treated volume shaped by the predicted
  infiltration -- and their overlap (Dice, Jaccard, inclusion fractions).

Pure functions of numpy arrays; lengths in mm.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from oncodyn.tumour.model import require


def visible_tumour(u: np.ndarray, core: float = 0.6, oedema: float = 0.25) -> dict[str, np.ndarray]:
    """Threshold masks of the visible tumour.

    Args:
        u: tumour cell density in [0, 1], any shape.
        core: density threshold of the enhancing core (T1Gd), in (oedema, 1).
        oedema: density threshold of the oedema (T2/FLAIR), in (0, core).
    Returns:
        ``{"core": u >= core, "oedema": u >= oedema}`` (bool, ``u``'s shape). The oedema mask
        is the whole FLAIR-visible region and so contains the core; the oedema shell alone is
        ``oedema & ~core``.
    """
    require(0 < oedema < core < 1, "core/oedema", "thresholds with 0 < oedema < core < 1", (core, oedema))
    u = np.asarray(u)
    return {"core": u >= core, "oedema": u >= oedema}


def volume(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """Volume of a mask: voxel count times voxel volume (mm^3 in 3D, mm^2 in 2D).

    Args:
        mask: bool ``[n0, n1(, n2)]``. spacing: voxel size per axis (mm), length ``mask.ndim``.
    """
    m = np.asarray(mask)
    _check_spacing(spacing, m.ndim)
    return float(np.count_nonzero(m)) * float(np.prod(np.asarray(spacing, float)))


def equivalent_radius(volume: float, ndim: int) -> float:
    """Radius (mm) of the disc (ndim 2: sqrt(A / pi)) or ball (ndim 3: cbrt(3 V / (4 pi))) of that size."""
    require(ndim in (2, 3), "ndim", "2 or 3", ndim)
    require(math.isfinite(volume) and volume >= 0, "volume", "a finite number >= 0 (mm^ndim)", volume)
    if ndim == 2:
        return math.sqrt(volume / math.pi)
    return (3.0 * volume / (4.0 * math.pi)) ** (1.0 / 3.0)


def standard_plan(core_mask: np.ndarray, spacing: Sequence[float], margin_mm: float = 15.0,
                  brain_mask: np.ndarray | None = None) -> np.ndarray:
    """The standard radiotherapy target: the core grown by a margin.

    A voxel is in the plan when its centre is within ``margin_mm`` (Euclidean, anisotropic
    spacing respected) of a core voxel centre:
    ``distance_transform_edt(~core, sampling=spacing) <= margin_mm``, then ``& brain_mask``.

    Args:
        core_mask: bool ``[n0, n1(, n2)]``. spacing: voxel size per axis (mm).
        margin_mm: margin >= 0 (mm). brain_mask: optional bool mask of the same shape.
    Returns:
        bool plan, the core's shape (empty if the core is empty).
    """
    core = np.asarray(core_mask, bool)
    _check_spacing(spacing, core.ndim)
    require(math.isfinite(margin_mm) and margin_mm >= 0, "margin_mm", "a finite number >= 0 (mm)", margin_mm)
    brain = _check_brain(brain_mask, core.shape)
    if not core.any():
        return np.zeros(core.shape, bool)
    plan = ndimage.distance_transform_edt(~core, sampling=[float(h) for h in spacing]) <= margin_mm
    return plan if brain is None else plan & brain


def model_plan(u: np.ndarray, target_volume: float, spacing: Sequence[float],
               brain_mask: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """The superlevel set of u (within the brain) whose volume is closest to ``target_volume``.

    Exact in voxel counts: the candidate thresholds are the distinct values of u in the brain;
    {u >= theta} of each has a known count (ties included), and the count closest to
    ``target_volume / voxel_volume`` wins (on a tie of distances, the smaller set). Voxels
    outside ``brain_mask`` are never counted nor included.

    Args:
        u: density ``[n0, n1(, n2)]``. target_volume: mm^3 (mm^2 in 2D), >= 0.
        spacing: voxel size per axis (mm). brain_mask: optional bool mask of ``u``'s shape.
    Returns:
        (plan mask, theta). When the empty set is closest (a target below half the
        smallest superlevel set, e.g. 0) or the brain is empty: an empty plan and theta = inf.
    """
    u = np.asarray(u, float)
    _check_spacing(spacing, u.ndim)
    require(math.isfinite(target_volume) and target_volume >= 0, "target_volume", "a finite number >= 0 (mm^ndim)",
            target_volume)
    brain = _check_brain(brain_mask, u.shape)
    values = u[brain] if brain is not None else u.ravel()
    require(bool(np.all(np.isfinite(values))), "u", "finite values", "non-finite values")
    n_target = target_volume / float(np.prod(np.asarray(spacing, float)))
    if values.size == 0:
        return np.zeros(u.shape, bool), math.inf
    distinct, counts = _superlevel_counts(values)
    score = np.abs(counts - n_target)
    if n_target <= score.min():  # the empty set (theta = inf) is at least as close
        return np.zeros(u.shape, bool), math.inf
    best = int(np.flatnonzero(score == score.min())[-1])  # ties: the larger theta, the smaller set
    theta = float(distinct[best])
    plan = u >= theta
    return (plan if brain is None else plan & brain), theta


def _superlevel_counts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values d (ascending) and #{values >= d} for each, from one sort."""
    s = np.sort(values)
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    return s[starts], s.size - starts


def plan_overlap(a: np.ndarray, b: np.ndarray, spacing: Sequence[float]) -> dict[str, float]:
    """Overlap of two masks.

    Returns:
        ``dice`` 2|a&b|/(|a|+|b|), ``jaccard`` |a&b|/|a|b|, ``volume_a``, ``volume_b`` (mm^ndim),
        ``a_in_b`` |a&b|/|a| (fraction of a covered by b), ``b_in_a`` |a&b|/|b|. Ratios with a
        zero denominator (empty masks) are nan.
    """
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    require(a.shape == b.shape, "b", f"the shape of a {a.shape}", f"shape {b.shape}")
    _check_spacing(spacing, a.ndim)
    na, nb = int(np.count_nonzero(a)), int(np.count_nonzero(b))
    both = int(np.count_nonzero(a & b))
    union = na + nb - both
    vox = float(np.prod(np.asarray(spacing, float)))
    return {"dice": _ratio(2 * both, na + nb), "jaccard": _ratio(both, union), "volume_a": na * vox,
            "volume_b": nb * vox, "a_in_b": _ratio(both, na), "b_in_a": _ratio(both, nb)}


def radiotherapy_plans(u: np.ndarray, spacing: Sequence[float], brain_mask: np.ndarray | None = None,
                       core: float = 0.6, margin_mm: float = 15.0) -> dict:
    """Standard (core + margin) and model-based (equal-volume superlevel set) plans of one density.

    Args:
        u: density ``[n0, n1(, n2)]`` in [0, 1]. spacing: voxel size per axis (mm).
        brain_mask: optional bool mask; both plans are restricted to it.
        core: core threshold in (0, 1). margin_mm: standard margin (mm).
    Returns:
        dict with ``core`` (mask), ``standard`` (mask), ``model`` (mask), ``threshold`` (theta
        of the model plan), ``core_volume``, ``standard_volume``, ``model_volume`` (mm^ndim),
        ``core_radius`` (equivalent radius, mm) and ``overlap`` (:func:`plan_overlap` of
        standard vs model: ``a_in_b`` = fraction of the standard plan inside the model plan).
    """
    u = np.asarray(u, float)
    require(0 < core < 1, "core", "in (0, 1)", core)
    core_mask = u >= core
    if brain_mask is not None:
        core_mask &= _check_brain(brain_mask, u.shape)
    standard = standard_plan(core_mask, spacing, margin_mm, brain_mask)
    v_std = volume(standard, spacing)
    model, theta = model_plan(u, v_std, spacing, brain_mask)
    v_core = volume(core_mask, spacing)
    return {"core": core_mask, "standard": standard, "model": model, "threshold": theta,
            "core_volume": v_core, "standard_volume": v_std, "model_volume": volume(model, spacing),
            "core_radius": equivalent_radius(v_core, u.ndim) if u.ndim in (2, 3) else math.nan,
            "overlap": plan_overlap(standard, model, spacing)}


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else math.nan


def _check_spacing(spacing: Sequence[float], ndim: int) -> None:
    h = np.asarray(spacing, float).reshape(-1)
    require(h.size == ndim and bool(np.all(np.isfinite(h))) and bool(np.all(h > 0)), "spacing",
            f"{ndim} positive voxel sizes (mm)", spacing)


def _check_brain(brain_mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if brain_mask is None:
        return None
    b = np.asarray(brain_mask, bool)
    require(b.shape == tuple(shape), "brain_mask", f"shape {tuple(shape)}", f"shape {b.shape}")
    return b
