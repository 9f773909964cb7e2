"""Tumour figures: density overlays on the anatomy (several slices per figure) and size curves.

Each function takes arrays, writes one PNG (via :mod:`oncodyn.viz.figures` helpers, Agg
backend) and returns its path. Panels are drawn in grid mm with the first remaining voxel
axis horizontal and the second vertical (axial slices of a RAS volume: x right, y anterior up).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from oncodyn.viz.figures import _plt, _save, curves

_AXIS_NAMES = {0: "sagittal", 1: "coronal", 2: "axial"}


def overlay_slices(path, background: np.ndarray, u: np.ndarray, spacing: Sequence[float],
                   slices: Sequence[int] | None = None, axis: int = 2,
                   contours: Mapping[str, tuple[np.ndarray, str]] | None = None, title: str = "",
                   u_min: float = 0.01, cmap: str = "inferno", alpha: float = 0.7, n_cols: int = 4) -> Path:
    """Tumour density over a grey anatomy, with masks as contours.

    Args:
        path: PNG to write.
        background: anatomy (e.g. ``maps.tissue()`` or white matter), ``[n0, n1(, n2)]``.
        u: density in [0, 1], same shape; drawn where ``u >= u_min``, colour scale [0, 1].
        spacing: voxel size per axis (mm).
        slices: for 3D input, indices along ``axis`` (default 6 evenly spaced through the
            extent of ``u >= u_min``, or through the volume if that is empty). Ignored in 2D.
        axis: voxel axis cut for 3D input (2 axial, 1 coronal, 0 sagittal).
        contours: ``{label: (mask, colour)}`` masks of ``u``'s shape (thresholds, plans).
        title: figure title. u_min, cmap, alpha: overlay style. n_cols: panels per row.
    Returns:
        the path written.
    """
    background, u = np.asarray(background, float), np.asarray(u, float)
    if background.shape != u.shape or u.ndim not in (2, 3):
        raise ValueError(f"u: must be a 2D or 3D array of the background's shape {background.shape}, got {u.shape}")
    if len(spacing) != u.ndim:
        raise ValueError(f"spacing: must have {u.ndim} voxel sizes (mm), got {spacing!r}")
    contours = dict(contours or {})
    for label, (mask, _) in contours.items():
        if np.shape(mask) != u.shape:
            raise ValueError(f"contours[{label!r}]: must be a mask of shape {u.shape}, got {np.shape(mask)}")
    if u.ndim == 2:
        panels = [("", background, u, {k: (np.asarray(m), c) for k, (m, c) in contours.items()}, tuple(spacing))]
    else:
        if axis not in (0, 1, 2):
            raise ValueError(f"axis: must be 0, 1 or 2, got {axis!r}")
        idx = _default_slices(u, axis, u_min) if slices is None else [int(k) for k in slices]
        if not idx:
            raise ValueError("slices: must be a non-empty list of indices, got []")
        for k in idx:
            if not 0 <= k < u.shape[axis]:
                raise ValueError(f"slices: must be indices in [0, {u.shape[axis] - 1}], got {k}")
        h2 = tuple(h for a, h in enumerate(spacing) if a != axis)
        panels = [(f"{_AXIS_NAMES[axis]} {k}", np.take(background, k, axis), np.take(u, k, axis),
                   {lab: (np.take(np.asarray(m), k, axis), c) for lab, (m, c) in contours.items()}, h2)
                  for k in idx]
    grey_range = (float(np.nanmin(background)), float(np.nanmax(background)))
    return _draw_panels(Path(path), panels, title, u_min, cmap, alpha, n_cols, grey_range)


def radius_volume_curves(path, t: np.ndarray, series: Mapping[str, np.ndarray], ylabel: str,
                         title: str = "") -> Path:
    """Tumour radius or volume against time: one panel, one labelled curve per series.

    Args:
        t: times (days), ``[n_t]``. series: ``{label: values [n_t]}``. ylabel: e.g. "radius (mm)".
    """
    lines = {label: (np.asarray(t, float), np.asarray(y, float)) for label, y in series.items()}
    return curves(Path(path), {ylabel: lines}, xlabel="t (days)", ylabel=ylabel, title=title)


def _default_slices(u: np.ndarray, axis: int, u_min: float, n: int = 6) -> list[int]:
    other = tuple(a for a in range(u.ndim) if a != axis)
    hit = np.flatnonzero((u >= u_min).any(axis=other))
    lo, hi = (int(hit[0]), int(hit[-1])) if hit.size else (0, u.shape[axis] - 1)
    return sorted({int(round(x)) for x in np.linspace(lo, hi, min(n, hi - lo + 1))})


def _draw_panels(path: Path, panels: list, title: str, u_min: float, cmap: str, alpha: float, n_cols: int,
                 grey_range: tuple[float, float]) -> Path:
    plt = _plt()
    from matplotlib.lines import Line2D

    n = len(panels)
    cols = max(1, min(n_cols, n))
    rows = math.ceil(n / cols)
    fig = plt.figure(figsize=(3.4 * cols + 0.9, 3.3 * rows))
    grid = fig.add_gridspec(rows, cols + 1, width_ratios=[1.0] * cols + [0.05])
    axes = [fig.add_subplot(grid[i // cols, i % cols]) for i in range(n)]
    image = None
    for ax, (label, bg, u, masks, h) in zip(axes, panels):
        extent = (-0.5 * h[0], (bg.shape[0] - 0.5) * h[0], -0.5 * h[1], (bg.shape[1] - 0.5) * h[1])
        ax.imshow(bg.T, origin="lower", extent=extent, cmap="gray", vmin=grey_range[0], vmax=grey_range[1],
                  interpolation="nearest")
        image = ax.imshow(np.ma.masked_less(u, u_min).T, origin="lower", extent=extent, cmap=cmap, vmin=0.0,
                          vmax=1.0, alpha=alpha, interpolation="nearest")
        for mask, colour in masks.values():
            if np.any(mask) and not np.all(mask):
                ax.contour(np.asarray(mask, float).T, levels=[0.5], colors=[colour], linewidths=1.0,
                           origin="lower", extent=extent)
        if label:
            ax.set_title(label, fontsize=9)
        ax.set_xlabel("mm")
        ax.set_aspect("equal")
    if panels and panels[0][3]:
        handles = [Line2D([], [], color=c, label=lab) for lab, (_, c) in panels[0][3].items()]
        axes[0].legend(handles=handles, loc="upper right", fontsize=7, framealpha=0.6)
    fig.colorbar(image, cax=fig.add_subplot(grid[:, -1]), label="u")
    return _save(fig, path, title)
