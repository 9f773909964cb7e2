"""Tissue maps on a regular voxel grid: the anatomy every tumour solver runs on.

Grid coordinates: the centre of voxel ``idx`` lies at ``idx * spacing`` (mm) in *grid mm*;
world (scanner/MNI) mm follow from the NIfTI ``affine``. A 2D slice keeps its parent volume's
affine with ``slice_axis``/``slice_index``, so results map back to the volume.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from oncodyn.tumour.model import require


@dataclass(frozen=True, eq=False)
class TissueMaps:
    """White/grey/CSF fractions on a 2D or 3D voxel grid.

    Attributes:
        white, grey, csf: fractions in [0, 1], shape ``[n0, n1(, n2)]``, float64.
        spacing: voxel size per axis (mm), length ``ndim``.
        affine: 4x4 voxel -> world (mm) of the 3D volume the maps come from.
        slice_axis, slice_index: for a 2D slice, which axis of the parent volume was cut
            and where (voxel index); ``None`` for 3D maps.
        header: the NIfTI header of the source image (kept for output), or ``None``.
    """

    white: np.ndarray
    grey: np.ndarray
    csf: np.ndarray
    spacing: tuple[float, ...]
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))
    slice_axis: int | None = None
    slice_index: int | None = None
    header: object | None = None

    def __post_init__(self) -> None:
        shape = self.white.shape
        require(len(shape) in (2, 3), "tissue maps", "2D or 3D arrays", f"shape {shape}")
        for name in ("grey", "csf"):
            a = getattr(self, name)
            require(a.shape == shape, name, f"the same shape as white {shape}", f"shape {a.shape}")
        for name in ("white", "grey", "csf"):
            a = getattr(self, name)
            require(bool(np.all(np.isfinite(a))), name, "finite", "non-finite values")
            require(float(a.min()) >= -1e-6 and float(a.max()) <= 1 + 1e-6, name,
                    "fractions in [0, 1]", f"range [{a.min():.3g}, {a.max():.3g}]")
        require(len(self.spacing) == len(shape) and all(h > 0 for h in self.spacing), "spacing",
                f"{len(shape)} positive voxel sizes (mm)", self.spacing)
        require(np.shape(self.affine) == (4, 4), "affine", "a 4x4 matrix", np.shape(self.affine))
        if len(shape) == 2:
            require(self.slice_axis in (0, 1, 2, None), "slice_axis", "0, 1, 2 or None", self.slice_axis)

    @property
    def ndim(self) -> int:
        return self.white.ndim

    @property
    def shape(self) -> tuple[int, ...]:
        return self.white.shape

    def tissue(self) -> np.ndarray:
        """White + grey fraction, the brain tissue tumour cells can invade."""
        return np.clip(self.white + self.grey, 0.0, 1.0)

    def tissue_mask(self, threshold: float = 0.5) -> np.ndarray:
        """Boolean mask of voxels whose tissue fraction is >= ``threshold``."""
        return self.tissue() >= threshold

    def relative_diffusivity(self, grey_ratio: float = 0.1) -> np.ndarray:
        """d(x) = p_w + r_g p_g, so that D(x) = D_w d(x). Shape ``shape``."""
        return self.white + grey_ratio * self.grey

    def coords(self) -> list[np.ndarray]:
        """Grid-mm coordinates of voxel centres per axis."""
        return [np.arange(n) * h for n, h in zip(self.shape, self.spacing)]

    def voxel_volume(self) -> float:
        """mm^3 per voxel (mm^2 for a 2D slice)."""
        return float(np.prod(self.spacing))

    def _full_index(self, idx: np.ndarray) -> np.ndarray:
        idx = np.atleast_2d(np.asarray(idx, float))
        if self.ndim == 3:
            return idx
        ax = 2 if self.slice_axis is None else self.slice_axis
        k = 0 if self.slice_index is None else self.slice_index
        return np.insert(idx, ax, k, axis=1)

    def grid_to_world(self, x) -> np.ndarray:
        """Grid mm ``[n, ndim]`` (or one point) -> world mm ``[n, 3]``."""
        idx = np.atleast_2d(np.asarray(x, float)) / np.asarray(self.spacing)
        full = self._full_index(idx)
        return full @ self.affine[:3, :3].T + self.affine[:3, 3]

    def world_to_grid(self, x) -> np.ndarray:
        """World mm ``[n, 3]`` (or one point) -> grid mm ``[n, ndim]``."""
        x = np.atleast_2d(np.asarray(x, float))
        full = np.linalg.solve(self.affine[:3, :3], (x - self.affine[:3, 3]).T).T
        if self.ndim == 2:
            ax = 2 if self.slice_axis is None else self.slice_axis
            full = np.delete(full, ax, axis=1)
        return full * np.asarray(self.spacing)
