"""NIfTI output of tumour fields and masks on the anatomy's grid (nibabel).

Written images keep the anatomy's affine and a copy of its header (data type, shape and
voxel sizes updated, intensity scaling reset), so they overlay the input in any viewer. A 2D
slice is written as a one-voxel-thick volume placed at the slice position of its parent volume
(:func:`oncodyn.tumour.anatomy.volume_geometry`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from oncodyn.core.atomic import atomic_path
from oncodyn.tumour.anatomy import volume_geometry
from oncodyn.tumour.domain import TissueMaps
from oncodyn.tumour.model import require


def save_nifti(path, array: np.ndarray, maps: TissueMaps) -> Path:
    """Write a field as float32 NIfTI on the grid of ``maps``.

    Args:
        path: output file (``.nii`` or ``.nii.gz``); parent folders are created.
        array: ``[*maps.shape]`` (one field) or ``[*maps.shape, n_t]`` (a time stack, 4D
            output; for 2D maps ``[n0, n1, n_t]``), finite or not (written as is).
        maps: the anatomy whose affine/header the output takes.
    Returns:
        the path written.
    """
    return _write(path, np.asarray(array, dtype=np.float32), maps, "array")


def save_mask(path, mask: np.ndarray, maps: TissueMaps) -> Path:
    """Write a boolean mask (e.g. a visible tumour or a radiotherapy plan) as uint8 0/1 NIfTI.

    Args:
        mask: bool ``[*maps.shape]`` (or ``[*maps.shape, n_t]``).
    Returns:
        the path written.
    """
    m = np.asarray(mask)
    require(m.dtype == bool or bool(np.isin(m, (0, 1)).all()), "mask", "a boolean (0/1) array",
            f"dtype {m.dtype}")
    return _write(path, m.astype(np.uint8), maps, "mask")


def _write(path, data: np.ndarray, maps: TissueMaps, name: str) -> Path:
    import nibabel as nib

    require(isinstance(maps, TissueMaps), "maps", "TissueMaps", type(maps).__name__)
    shape = tuple(maps.shape)
    ok = data.shape == shape or (data.ndim == maps.ndim + 1 and data.shape[:-1] == shape)
    require(ok, name, f"shape {shape} (or {shape + ('n_t',)} for a time stack) matching the maps",
            f"shape {data.shape}")
    vol_shape, affine = volume_geometry(maps)
    extra = data.shape[maps.ndim:]
    data = data.reshape(vol_shape + extra)
    header = _nifti1_header(maps.header)
    img = nib.Nifti1Image(data, affine, header=header)
    img.set_data_dtype(data.dtype)
    img.header.set_slope_inter(1.0, 0.0)
    img.header["cal_min"], img.header["cal_max"] = 0.0, 0.0
    if header is None:
        img.set_qform(affine, code="scanner")
        img.set_sform(affine, code="scanner")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:  # the temporary name ends in ``.nii``/``.nii.gz`` like path's
        nib.save(img, str(tmp))
    return path


def _nifti1_header(header):
    """A NIfTI-1 copy of the source header (NIfTI-2/Analyze converted), or None."""
    import nibabel as nib

    if header is None:
        return None
    try:
        return nib.Nifti1Header.from_header(header)
    except Exception:  # not a nibabel header: write a fresh one
        return None
