"""Brain anatomy for the tumour solvers: MNI152 templates, user NIfTI maps, resampling, slices.

Everything here works offline:

* :func:`load_mni152` -- the ICBM 2009a grey/white-matter templates and brain mask bundled in
  the ``nilearn`` wheel (1 mm, 197 x 233 x 189, RAS), coarsened by block averages for 2 mm.
* :func:`load_tissue_nifti` -- user tissue maps (three probability maps or one label image),
  :func:`load_segmentation` -- tumour segmentations (configurable label values or a threshold).
* :func:`coarsen` / :func:`block_average`, :func:`refine`, :func:`resample` -- grid changes
  that keep the NIfTI affine consistent (voxel centres stay where the data say they are).
* :func:`slice_maps` and the :func:`axial_slice` / :func:`coronal_slice` /
  :func:`sagittal_slice` / :func:`slice_through` wrappers -- 2D maps that remember where they
  were cut, so 2D results map back into the volume (:func:`volume_geometry`, :func:`take_slice`).

Conventions: voxel ``idx`` of a grid with spacing ``h`` has its centre at world
``affine @ [idx, 1]``. Coarsening by ``f`` puts the new centre at the mean of the block's
centres, i.e. ``affine_new = affine @ [[f, 0, 0, (f-1)/2], ...]``; refining by ``f`` puts
fine centres at old index ``(j - (f-1)/2) / f`` (so coarsening a refined grid returns the
original affine exactly). A general resampling to spacing ``h'`` uses
``old = (new + 1/2) h'/h - 1/2`` per axis, which contains both cases and keeps the field of
view. Interpolation is multilinear with edge clamping (``map_coordinates(order=1,
mode='nearest')`` semantics), done axis by axis because the grids are tensor products: the
result is identical and needs no ``[ndim, n_points]`` coordinate array for a 1 mm brain.

Every bad user input fails with one ``ValueError('<field>: must be <allowed>, got <value>')``
(see :func:`oncodyn.tumour.model.require`) before any array work.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from oncodyn.tumour.domain import TissueMaps
from oncodyn.tumour.model import require

TISSUES = ("white", "grey", "csf")
"""Tissue classes of :class:`TissueMaps`, in field order."""

FAST_LABELS: dict[str, list[int]] = {"csf": [1], "grey": [2], "white": [3]}
"""FSL FAST ``*_seg`` convention (0 = background), the default of :func:`load_tissue_nifti`."""

BRATS_CORE = [1, 4]
"""BraTS (2017--2021) tumour core: necrosis/non-enhancing (1) + enhancing (4). BraTS 2023 uses 3 for enhancing."""
BRATS_OEDEMA = [2]
"""BraTS peritumoural oedema label."""
BRATS_WHOLE = [1, 2, 4]
"""BraTS whole tumour (core + oedema), 2017--2021 labels."""

MNI152_SHAPE = (197, 233, 189)
"""Grid of the 1 mm MNI152 (ICBM 2009a) templates shipped with nilearn."""

SLICE_AXES = {"sagittal": 0, "coronal": 1, "axial": 2}
"""Voxel axis cut by each named slice on a RAS grid such as MNI152."""

_PROB_TOL = 1e-4
"""Probability maps may exceed [0, 1] by this much (float32 round-off of tools); then clipped."""
_AFFINE_ATOL = 1e-4
"""Affines agree when all entries agree to this (mm)."""


# --------------------------------------------------------------------------------------------
# MNI152
# --------------------------------------------------------------------------------------------
def load_mni152(resolution_mm: int = 1) -> TissueMaps:
    """MNI152 (ICBM 2009a) white/grey/CSF fractions, from the templates bundled in nilearn.

    white/grey are the nilearn templates (rescaled to [0, 1]) times the brain mask, rescaled
    where white + grey > 1 (round-off of the uint8 templates) so that white + grey <= 1;
    csf = mask * clip(1 - grey - white, 0, 1). No network access.

    Args:
        resolution_mm: integer voxel size (mm). 1 gives the native 197 x 233 x 189 grid;
            ``r > 1`` gives ``coarsen(load_mni152(1), r)`` (block averages, so an r mm grid is
            exactly the block average of the 1 mm grid; not nilearn's resampled template).
    Returns:
        TissueMaps with shape ``[197, 233, 189]`` (1 mm) or ``[197 // r, 233 // r, 189 // r]``,
        spacing ``(r, r, r)`` mm, the template affine (updated for r > 1) and header.
        The arrays are fresh copies (the in-process cache itself is read-only).
    """
    require(isinstance(resolution_mm, (int, np.integer)) and not isinstance(resolution_mm, bool)
            and resolution_mm >= 1, "resolution_mm", "an integer >= 1 (mm)", resolution_mm)
    cached = _mni152_cached(int(resolution_mm))
    return _replace(cached, *(np.array(getattr(cached, k)) for k in TISSUES),
                    header=_copy_header(cached.header))


@functools.lru_cache(maxsize=4)
def _mni152_cached(resolution_mm: int) -> TissueMaps:
    """The (read-only) MNI152 maps at ``resolution_mm``, computed once per process."""
    if resolution_mm == 1:
        maps = _load_mni152_1mm()
    else:
        maps = coarsen(_mni152_cached(1), resolution_mm)
    for k in TISSUES:
        getattr(maps, k).flags.writeable = False
    return maps


def _load_mni152_1mm() -> TissueMaps:
    from nilearn import datasets

    gm_img = datasets.load_mni152_gm_template(resolution=1)
    wm = np.asarray(datasets.load_mni152_wm_template(resolution=1).get_fdata(), float)
    mask = np.asarray(datasets.load_mni152_brain_mask(resolution=1).get_fdata(), float) > 0
    gm = np.asarray(gm_img.get_fdata(), float)
    white = np.clip(wm * mask, 0.0, 1.0)
    grey = np.clip(gm * mask, 0.0, 1.0)
    white, grey = _normalise_pair(white, grey)
    csf = mask * np.clip(1.0 - white - grey, 0.0, 1.0)
    h = tuple(float(z) for z in spacing_from_affine(gm_img.affine))
    return TissueMaps(white=white, grey=grey, csf=csf, spacing=h, affine=np.array(gm_img.affine, float),
                      header=_copy_header(gm_img.header))


def _normalise_pair(white: np.ndarray, grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale white and grey down where their sum exceeds 1, so that white + grey <= 1."""
    s = white + grey
    scale = np.where(s > 1.0, 1.0 / np.maximum(s, 1.0), 1.0)
    return white * scale, grey * scale


# --------------------------------------------------------------------------------------------
# grid changes
# --------------------------------------------------------------------------------------------
def block_average(array: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor^ndim`` blocks; trailing voxels that do not fill a block are cropped.

    Args:
        array: any ``[n0, n1(, n2, ...)]`` array (bool is averaged as 0/1).
        factor: integer block size >= 1.
    Returns:
        float64 array of shape ``[n0 // f, n1 // f, ...]``; ``sum(result) * f^ndim`` equals the
        sum over the cropped input (to round-off).
    """
    require(isinstance(factor, (int, np.integer)) and factor >= 1, "factor", "an integer >= 1", factor)
    a = np.asarray(array, dtype=float)
    f = int(factor)
    require(all(n >= f for n in a.shape), "factor", f"<= every axis length {a.shape}", f)
    a = a[tuple(slice(0, (n // f) * f) for n in a.shape)]
    blocks = [d for n in a.shape for d in (n // f, f)]
    return a.reshape(blocks).mean(axis=tuple(range(1, 2 * a.ndim, 2)))


def coarsen(maps: TissueMaps, factor: int) -> TissueMaps:
    """Block-average the tissue maps onto a grid ``factor`` times coarser.

    Args:
        maps: 2D or 3D maps. factor: integer >= 1.
    Returns:
        TissueMaps of shape ``[n // f for n in shape]`` (remainders cropped), spacing ``* f``,
        affine ``maps.affine @ S`` with ``S = [[f, 0, 0, (f-1)/2], ...]`` on the grid axes
        (for a 2D slice only the two in-plane axes; slice_axis/slice_index keep their meaning).
    """
    arrays = [block_average(getattr(maps, k), factor) for k in TISSUES]
    return _regridded(maps, arrays, [float(factor)] * maps.ndim)


def refine(maps: TissueMaps, factor: int) -> TissueMaps:
    """Multilinear interpolation onto a grid ``factor`` times finer.

    Fine voxel ``j`` samples old index ``(j - (f-1)/2) / f`` (edge-clamped), so the mean of the
    ``f`` fine centres in a block is the coarse centre and ``coarsen(refine(m, f), f)`` has the
    original grid and affine.

    Args:
        maps: 2D or 3D maps. factor: integer >= 1.
    Returns:
        TissueMaps of shape ``[n * f for n in shape]``, spacing ``/ f``, affine updated.
    """
    require(isinstance(factor, (int, np.integer)) and factor >= 1, "factor", "an integer >= 1", factor)
    f = int(factor)
    ratios = [1.0 / f] * maps.ndim
    shape = [n * f for n in maps.shape]
    return _regridded(maps, [_interp_grid(getattr(maps, k), shape, ratios) for k in TISSUES], ratios)


def resample(maps: TissueMaps, spacing_mm: float | Sequence[float]) -> TissueMaps:
    """Resample the tissue maps to a new voxel size.

    Integer coarsening ratios use :func:`coarsen` (block averages, volume-preserving), integer
    refinements :func:`refine`; any other ratio interpolates multilinearly onto the grid
    ``old = (new + 1/2) h'/h - 1/2`` with ``floor(n h / h')`` voxels per axis (same field of
    view). Linear interpolation of a finer grid onto a non-integer coarser one does not
    average whole blocks (some aliasing); use integer ratios where volumes matter.
    Fractions stay in [0, 1] (and white + grey <= 1): interpolation is a convex combination.

    Args:
        spacing_mm: new voxel size (mm), one number or one per axis.
    Returns:
        TissueMaps on the new grid, affine and spacing updated.
    """
    new = np.broadcast_to(np.asarray(spacing_mm, float), (maps.ndim,)) if np.ndim(spacing_mm) == 0 \
        else np.asarray(spacing_mm, float)
    require(new.shape == (maps.ndim,) and bool(np.all(np.isfinite(new))) and bool(np.all(new > 0)),
            "spacing_mm", f"one or {maps.ndim} positive voxel sizes (mm)", spacing_mm)
    ratios = new / np.asarray(maps.spacing, float)
    r = float(ratios[0])
    if np.allclose(ratios, r, rtol=1e-9, atol=0):
        if abs(r - round(r)) < 1e-9 and round(r) >= 1:
            return coarsen(maps, int(round(r)))
        if abs(1 / r - round(1 / r)) < 1e-9:
            return refine(maps, int(round(1 / r)))
    shape = [max(1, math.floor(n / q + 1e-9)) for n, q in zip(maps.shape, ratios)]
    arrays = [np.clip(_interp_grid(getattr(maps, k), shape, list(ratios)), 0.0, 1.0) for k in TISSUES]
    return _regridded(maps, arrays, list(ratios))


def _interp_grid(array: np.ndarray, shape: Sequence[int], ratios: Sequence[float]) -> np.ndarray:
    """Separable multilinear interpolation, new index j -> old (j + 1/2) r - 1/2, edge-clamped."""
    out = np.asarray(array, float)
    for axis, (n_new, r) in enumerate(zip(shape, ratios)):
        n = out.shape[axis]
        x = np.clip((np.arange(n_new) + 0.5) * r - 0.5, 0.0, n - 1)
        i0 = np.minimum(np.floor(x).astype(int), max(n - 2, 0))
        i1 = np.minimum(i0 + 1, n - 1)
        w = (x - i0).reshape([-1 if a == axis else 1 for a in range(out.ndim)])
        out = (1.0 - w) * np.take(out, i0, axis=axis) + w * np.take(out, i1, axis=axis)
    return out


def _grid_axes(maps: TissueMaps) -> list[int]:
    """Axes of the parent volume that the maps' array axes run along."""
    if maps.ndim == 3:
        return [0, 1, 2]
    cut = 2 if maps.slice_axis is None else maps.slice_axis
    return [a for a in range(3) if a != cut]


def _regridded(maps: TissueMaps, arrays: list[np.ndarray], ratios: Sequence[float]) -> TissueMaps:
    """New maps on a grid whose voxel j samples old index (j + 1/2) r - 1/2 per axis."""
    S = np.eye(4)
    for a, r in zip(_grid_axes(maps), ratios):
        S[a, a] = r
        S[a, 3] = (r - 1.0) / 2.0
    spacing = tuple(float(h * r) for h, r in zip(maps.spacing, ratios))
    return _replace(maps, *arrays, spacing=spacing, affine=np.asarray(maps.affine, float) @ S,
                    header=_copy_header(maps.header))


def _replace(maps: TissueMaps, white, grey, csf, **changes) -> TissueMaps:
    return dataclasses.replace(maps, white=white, grey=grey, csf=csf, **changes)


def _copy_header(header):
    return None if header is None else header.copy()


def spacing_from_affine(affine: np.ndarray) -> np.ndarray:
    """Voxel sizes (mm): norms of the affine's columns."""
    return np.sqrt((np.asarray(affine, float)[:3, :3] ** 2).sum(axis=0))


# --------------------------------------------------------------------------------------------
# slices
# --------------------------------------------------------------------------------------------
def slice_maps(maps: TissueMaps, axis: int, index: int | None = None, world: float | None = None) -> TissueMaps:
    """A 2D slice of 3D maps, remembering where it was cut.

    Args:
        maps: 3D maps. axis: voxel axis to cut (2 = axial, 1 = coronal, 0 = sagittal on RAS).
        index: voxel index along ``axis``; default the middle slice.
        world: instead of ``index``, the world coordinate (mm) along world axis ``axis``
            (requires that world axis to depend on voxel axis ``axis`` only, as on MNI152);
            the nearest slice is taken.
    Returns:
        2D TissueMaps (arrays ``[n_a, n_b]`` for the two remaining axes a < b), in-plane
        spacing, the parent affine, ``slice_axis=axis``, ``slice_index=index``.
    """
    require(maps.ndim == 3, "maps", "3D tissue maps to slice", f"{maps.ndim}D maps")
    require(axis in (0, 1, 2), "axis", "0 (sagittal), 1 (coronal) or 2 (axial)", axis)
    require(index is None or world is None, "index/world", "one of them, not both", (index, world))
    if world is not None:
        index = _index_of_world_coordinate(maps, axis, world)
    elif index is None:
        index = maps.shape[axis] // 2
    require(isinstance(index, (int, np.integer)) and 0 <= index < maps.shape[axis], "index",
            f"an integer in [0, {maps.shape[axis] - 1}] along axis {axis}", index)
    arrays = [np.take(getattr(maps, k), int(index), axis=axis) for k in TISSUES]
    spacing = tuple(h for a, h in enumerate(maps.spacing) if a != axis)
    return _replace(maps, *arrays, spacing=spacing, affine=np.array(maps.affine, float), slice_axis=axis,
                    slice_index=int(index), header=_copy_header(maps.header))


def axial_slice(maps: TissueMaps, index: int | None = None, world_z: float | None = None) -> TissueMaps:
    """Axial slice (voxel axis 2) by index or world z (mm); default the middle one."""
    return slice_maps(maps, 2, index, world_z)


def coronal_slice(maps: TissueMaps, index: int | None = None, world_y: float | None = None) -> TissueMaps:
    """Coronal slice (voxel axis 1) by index or world y (mm); default the middle one."""
    return slice_maps(maps, 1, index, world_y)


def sagittal_slice(maps: TissueMaps, index: int | None = None, world_x: float | None = None) -> TissueMaps:
    """Sagittal slice (voxel axis 0) by index or world x (mm); default the middle one."""
    return slice_maps(maps, 0, index, world_x)


def slice_through(maps: TissueMaps, world_point, axis: int = 2) -> TissueMaps:
    """The slice along voxel ``axis`` whose voxels contain ``world_point`` (mm, length 3).

    E.g. the axial slice through the tumour origin x0: ``slice_through(maps, x0_world)``.
    """
    p = np.asarray(world_point, float).reshape(-1)
    require(p.shape == (3,) and bool(np.all(np.isfinite(p))), "world_point", "3 finite world coordinates (mm)",
            world_point)
    require(maps.ndim == 3, "maps", "3D tissue maps to slice", f"{maps.ndim}D maps")
    require(axis in (0, 1, 2), "axis", "0 (sagittal), 1 (coronal) or 2 (axial)", axis)
    idx = np.linalg.solve(np.asarray(maps.affine, float)[:3, :3], p - np.asarray(maps.affine, float)[:3, 3])
    k = int(np.floor(idx[axis] + 0.5))
    require(0 <= k < maps.shape[axis], "world_point", f"inside the volume along axis {axis} "
            f"(voxel index in [0, {maps.shape[axis] - 1}])", f"{tuple(p)} (index {idx[axis]:.2f})")
    return slice_maps(maps, axis, k)


def _index_of_world_coordinate(maps: TissueMaps, axis: int, coord: float) -> int:
    A = np.asarray(maps.affine, float)
    others = [j for j in range(3) if j != axis]
    require(bool(np.allclose(A[axis, others], 0.0)) and A[axis, axis] != 0, "world",
            f"usable only when world axis {axis} depends on voxel axis {axis} alone (use slice_through)",
            A[:3, :3].tolist())
    require(math.isfinite(float(coord)), "world", "a finite coordinate (mm)", coord)
    return int(np.floor((float(coord) - A[axis, 3]) / A[axis, axis] + 0.5))


def volume_geometry(maps: TissueMaps) -> tuple[tuple[int, ...], np.ndarray]:
    """Shape and affine of the volume the maps occupy in their parent's world.

    3D maps: ``(maps.shape, maps.affine)``. 2D maps: a one-voxel-thick volume (1 inserted at
    the slice axis) whose affine puts it at the slice position, so a 2D result written with
    it overlays the parent volume in any viewer.
    """
    A = np.array(maps.affine, float)
    if maps.ndim == 3:
        return tuple(maps.shape), A
    cut = 2 if maps.slice_axis is None else maps.slice_axis
    k = 0 if maps.slice_index is None else maps.slice_index
    shape = list(maps.shape)
    shape.insert(cut, 1)
    A[:3, 3] = A[:3, :3] @ np.eye(3)[cut] * k + A[:3, 3]
    return tuple(shape), A


def take_slice(volume: np.ndarray, like: TissueMaps) -> np.ndarray:
    """Cut a 3D array (parent grid of 2D ``like``) at ``like``'s slice.

    Args:
        volume: ``[n0, n1, n2]`` array on the grid ``like`` was sliced from.
        like: 2D maps with slice_axis/slice_index.
    Returns:
        ``[*like.shape]`` array.
    """
    volume = np.asarray(volume)
    require(like.ndim == 2, "like", "2D (sliced) tissue maps", f"{like.ndim}D maps")
    require(volume.ndim == 3, "volume", "a 3D array", f"shape {volume.shape}")
    cut = 2 if like.slice_axis is None else like.slice_axis
    k = 0 if like.slice_index is None else like.slice_index
    in_plane = tuple(n for a, n in enumerate(volume.shape) if a != cut)
    require(in_plane == tuple(like.shape) and k < volume.shape[cut], "volume",
            f"a 3D array whose in-plane shape is {like.shape} and with > {k} voxels along axis {cut}",
            f"shape {volume.shape}")
    return np.take(volume, k, axis=cut)


# --------------------------------------------------------------------------------------------
# user NIfTI data
# --------------------------------------------------------------------------------------------
def load_tissue_nifti(white=None, grey=None, csf=None, labels=None,
                      label_values: Mapping[str, Sequence[int]] | None = None) -> TissueMaps:
    """User tissue maps from NIfTI files: three probability maps, or one label image.

    Probability maps (``white``, ``grey``, optional ``csf``): values must be finite and in
    [0, 1] (a round-off excess up to 1e-4 is clipped). Where white + grey > 1 both are scaled
    down so that white + grey <= 1. Without ``csf``, csf = clip(1 - white - grey, 0, 1) where
    white + grey > 0 and 0 elsewhere (the tissue's complement inside the tissue support; the
    background stays empty). Either way CSF only marks where tumour cannot grow.

    Label image (``labels``, integer-valued): class fractions are 0/1 by ``label_values``,
    default the FSL FAST convention ``{"csf": [1], "grey": [2], "white": [3]}`` (0 =
    background). ``white`` and ``grey`` entries are required, ``csf`` optional; every
    configured value must occur in the image and belong to one class only.

    All files must be 3D (trailing singleton axes are dropped) with equal shapes and affines
    (to 1e-4 mm). The output keeps the (first) input's affine and header; spacing is the
    affine's column norms.

    Args:
        white, grey, csf: paths of probability maps. labels: path of a label image.
        label_values: ``{class: [label, ...]}`` for ``labels``.
    Returns:
        3D TissueMaps (float64 fractions).
    Raises:
        ValueError: naming the offending argument (missing file, not 3D, shape/affine
            mismatch, values outside [0, 1] or non-finite, non-integer labels, a configured
            label absent from the image, neither or both input forms).
    """
    probs = {k: v for k, v in (("white", white), ("grey", grey), ("csf", csf)) if v is not None}
    if labels is None:
        require(bool(probs), "white/grey/labels", "probability maps (white=, grey=, optional csf=) or a label "
                "image (labels=)", "none of them")
        missing = [k for k in ("white", "grey") if k not in probs]
        require(not missing, missing[0] if missing else "white", "given with the other probability maps "
                "(white and grey are required; csf is optional)", None)
        require(label_values is None, "label_values", "None unless labels= is given", label_values)
        images = _open_images(probs)
        return _from_probabilities(images)
    require(not probs, "labels", "given alone (not together with white/grey/csf probability maps)",
            f"labels plus {sorted(probs)}")
    values = _check_label_values(FAST_LABELS if label_values is None else label_values)
    images = _open_images({"labels": labels})
    return _from_labels(images["labels"], values, str(labels))


def load_segmentation(path, like: TissueMaps, labels: Sequence[int] | None = None,
                      threshold: float | None = None) -> np.ndarray:
    """A tumour segmentation as a boolean mask on ``like``'s grid.

    Args:
        path: NIfTI label image or probability map.
        like: the maps the mask must match: for 3D maps the file must have the same shape and
            affine; for 2D sliced maps either the parent 3D volume (same affine, the slice is
            taken) or the one-voxel-thick volume of :func:`volume_geometry` (as written by
            :func:`oncodyn.io.nifti.save_nifti`).
        labels: label values that count as tumour (e.g. :data:`BRATS_CORE` = [1, 4],
            :data:`BRATS_OEDEMA` = [2]); each must occur in the image.
        threshold: instead of labels, ``value >= threshold`` of a probability map.
            Neither given: every non-zero voxel.
    Returns:
        bool mask of shape ``like.shape``.
    """
    require(isinstance(like, TissueMaps), "like", "TissueMaps", type(like).__name__)
    require(labels is None or threshold is None, "labels/threshold", "one of them, not both", (labels, threshold))
    if labels is not None:
        labels = list(np.atleast_1d(labels))
        require(len(labels) > 0 and all(_is_int(v) for v in labels), "labels", "a non-empty list of integers",
                labels)
    if threshold is not None:
        require(isinstance(threshold, (int, float, np.floating, np.integer)) and math.isfinite(threshold),
                "threshold", "a finite number", threshold)
    img = _open_images({"path": path})["path"]
    data = _segmentation_on_grid(img, like, str(path))
    require(bool(np.all(np.isfinite(data))), "path", "an image with finite values", f"non-finite values in {path}")
    if threshold is not None:
        return data >= float(threshold)
    if labels is None:
        return data != 0
    present = np.unique(np.round(data)).astype(np.int64)
    for v in labels:
        require(int(v) in present, "labels", f"values present in {path} (found {present.tolist()})", int(v))
    return np.isin(np.round(data).astype(np.int64), np.asarray(labels, np.int64))


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _segmentation_on_grid(img, like: TissueMaps, path: str) -> np.ndarray:
    """Check the segmentation's grid against ``like`` and return its data there (float)."""
    shape = tuple(img.shape[:3])
    if like.ndim == 3:
        _require_same_grid("path", shape, img.affine, "like", like.shape, like.affine)
        return np.asarray(img.get_fdata(), float).reshape(shape)
    slab_shape, slab_affine = volume_geometry(like)
    if shape == slab_shape and np.allclose(img.affine, slab_affine, atol=_AFFINE_ATOL):
        return np.asarray(img.get_fdata(), float).reshape(like.shape)
    cut = 2 if like.slice_axis is None else like.slice_axis
    k = 0 if like.slice_index is None else like.slice_index
    in_plane = tuple(n for a, n in enumerate(shape) if a != cut)
    require(in_plane == tuple(like.shape) and k < shape[cut], "path",
            f"a volume whose grid matches the 2D maps 'like' (in-plane shape {like.shape}, > {k} voxels "
            f"along axis {cut}) or their one-slice volume {slab_shape}", f"shape {shape} in {path}")
    _require_same_grid("path", shape, img.affine, "like", shape, like.affine)
    return np.take(np.asarray(img.get_fdata(), float).reshape(shape), k, axis=cut)


def same_grid(shape, affine, ref_shape, ref_affine) -> bool:
    """Equal shapes and affines equal to within ``_AFFINE_ATOL`` mm."""
    return tuple(shape) == tuple(ref_shape) and bool(np.allclose(affine, ref_affine, atol=_AFFINE_ATOL))


def _require_same_grid(name, shape, affine, ref_name, ref_shape, ref_affine) -> None:
    require(tuple(shape) == tuple(ref_shape), name, f"of the same shape as {ref_name} {tuple(ref_shape)}",
            f"shape {tuple(shape)}")
    require(bool(np.allclose(affine, ref_affine, atol=_AFFINE_ATOL)), name,
            f"on the same affine as {ref_name} {np.round(ref_affine, 4).tolist()}",
            np.round(np.asarray(affine, float), 4).tolist())


def _open_images(paths: Mapping[str, object]) -> dict:
    """nibabel images (headers only) by argument name; checks existence, 3D and equal grids."""
    import nibabel as nib

    for name, p in paths.items():
        require(isinstance(p, (str, Path)) and Path(p).is_file(), name, "an existing NIfTI file", str(p))
    images = {}
    for name, p in paths.items():
        try:
            images[name] = nib.load(str(p))
        except Exception as err:  # nibabel raises several kinds on unreadable files
            raise ValueError(f"{name}: must be a readable NIfTI file, got {str(p)!r} ({err})") from err
        shape = tuple(images[name].shape)
        require(len(shape) >= 3 and all(n == 1 for n in shape[3:]), name,
                "a 3D image (trailing singleton axes allowed)", f"shape {shape} in {p}")
    first = next(iter(images))
    for name, img in images.items():
        _require_same_grid(name, img.shape[:3], img.affine, first, images[first].shape[:3], images[first].affine)
    return images


def _read_probability(img, name: str) -> np.ndarray:
    a = np.asarray(img.get_fdata(), float).reshape(img.shape[:3])
    require(bool(np.all(np.isfinite(a))), name, "finite probabilities", f"non-finite values in {img.get_filename()}")
    lo, hi = float(a.min()), float(a.max())
    require(lo >= -_PROB_TOL and hi <= 1 + _PROB_TOL, name, "probabilities in [0, 1]",
            f"range [{lo:.4g}, {hi:.4g}] in {img.get_filename()}")
    return np.clip(a, 0.0, 1.0)


def _from_probabilities(images: dict) -> TissueMaps:
    data = {k: _read_probability(img, k) for k, img in images.items()}
    white, grey = _normalise_pair(data["white"], data["grey"])
    if "csf" in data:
        csf = data["csf"]
    else:
        s = white + grey
        csf = np.where(s > 0, np.clip(1.0 - s, 0.0, 1.0), 0.0)
    return _maps_from(images["white"], white, grey, csf)


def _check_label_values(label_values) -> dict[str, list[int]]:
    require(isinstance(label_values, Mapping), "label_values", "a dict {class: [label, ...]}",
            type(label_values).__name__)
    unknown = sorted(set(label_values) - set(TISSUES))
    require(not unknown, "label_values", f"a dict with keys among {list(TISSUES)}", unknown)
    out: dict[str, list[int]] = {}
    for cls in TISSUES:
        if cls not in label_values:
            require(cls == "csf", "label_values", "a dict with 'white' and 'grey' entries ('csf' optional)",
                    dict(label_values))
            continue
        vals = label_values[cls]
        vals = [vals] if _is_int(vals) else list(vals)
        require(len(vals) > 0 and all(_is_int(v) for v in vals), f"label_values['{cls}']",
                "a non-empty list of integers", label_values[cls])
        out[cls] = [int(v) for v in vals]
    seen: dict[int, str] = {}
    for cls, vals in out.items():
        for v in vals:
            require(v not in seen, f"label_values['{cls}']", f"labels not also used by '{seen.get(v)}'", v)
            seen[v] = cls
    return out


def _from_labels(img, values: dict[str, list[int]], path: str) -> TissueMaps:
    a = np.asarray(img.get_fdata(), float).reshape(img.shape[:3])
    require(bool(np.all(np.isfinite(a))), "labels", "a label image with finite values", f"non-finite values in {path}")
    r = np.round(a)
    require(bool(np.all(np.abs(a - r) < 1e-3)), "labels", "an integer-valued label image",
            f"non-integer values in {path}")
    r = r.astype(np.int64)
    present = np.unique(r)
    for cls, vals in values.items():
        for v in vals:
            require(v in present, f"label_values['{cls}']", f"labels present in {path} (found {present.tolist()})", v)
    frac = {cls: np.isin(r, values[cls]).astype(float) if cls in values else np.zeros(r.shape) for cls in TISSUES}
    return _maps_from(img, frac["white"], frac["grey"], frac["csf"])


def _maps_from(img, white, grey, csf) -> TissueMaps:
    affine = np.array(img.affine, float)
    spacing = tuple(float(h) for h in spacing_from_affine(affine))
    return TissueMaps(white=white, grey=grey, csf=csf, spacing=spacing, affine=affine,
                      header=_copy_header(img.header))
