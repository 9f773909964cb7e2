"""Cellular Potts figures: lattice images, lattice panels, animations and observable curves.

Each figure function takes arrays, writes one file (via :mod:`oncodyn.viz.figures` helpers,
Agg backend) and returns its path. Lattices are drawn with the first axis of ``sigma``
vertical (rows) and the second horizontal; 3D lattices ``[D, H, W]`` are shown by central
slices. Medium is white, each cell type has a fixed colour, cell borders are dark.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

# RGB per type: medium white, 1 dark slate blue, 2 orange, then green, red, purple, brown, pink, olive
PALETTE = np.array([
    [1.00, 1.00, 1.00],
    [0.30, 0.45, 0.80],
    [0.97, 0.62, 0.22],
    [0.35, 0.65, 0.35],
    [0.84, 0.25, 0.25],
    [0.58, 0.45, 0.75],
    [0.55, 0.38, 0.30],
    [0.90, 0.55, 0.75],
    [0.65, 0.65, 0.25],
])
BORDER_SHADE = 0.45  # border sites keep this fraction of their type colour


def _as_pair(entry):
    """``(sigma, cell_type)`` from a tuple or a :class:`~oncodyn.cpm.lattice.CPMState`."""
    if hasattr(entry, "sigma") and hasattr(entry, "cell_type"):
        return np.asarray(entry.sigma), np.asarray(entry.cell_type)
    sigma, cell_type = entry
    return np.asarray(sigma), np.asarray(cell_type)


def _central_slices(sigma: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """The three orthogonal central slices of a ``[D, H, W]`` lattice, labelled."""
    d, h, w = sigma.shape
    return [(f"z={d // 2}", sigma[d // 2]), (f"y={h // 2}", sigma[:, h // 2]), (f"x={w // 2}", sigma[:, :, w // 2])]


def lattice_image(sigma, cell_type, borders: bool = True, palette=None) -> np.ndarray:
    """RGB picture of a 2D CPM lattice, float ``[H, W, 3]`` in [0, 1].

    Args:
        sigma: cell ids ``[H, W]`` (0 = medium).
        cell_type: type per id ``[n_cells + 1]`` (entry 0 = 0).
        borders: darken a cell site whose upper or left neighbour has a different id, so each
            interface is drawn one site wide (the medium is never darkened). The image edge is
            not a border.
        palette: RGB rows per type ``[n, 3]`` (row 0 = medium); default :data:`PALETTE`. Types
            beyond the palette reuse its colours cyclically (skipping the medium's).
    """
    sigma = np.asarray(sigma)
    cell_type = np.asarray(cell_type)
    if sigma.ndim != 2:
        raise ValueError(f"sigma must be a 2D id image [H, W], got shape {sigma.shape} (slice 3D lattices first)")
    pal = np.asarray(PALETTE if palette is None else palette, float)
    if pal.ndim != 2 or pal.shape[1] != 3 or len(pal) < 2:
        raise ValueError(f"palette must be [n >= 2, 3] RGB rows, got shape {pal.shape}")
    types = cell_type[sigma]
    idx = np.where(types == 0, 0, 1 + (types - 1) % (len(pal) - 1))
    img = pal[idx].copy()
    if borders:
        edge = np.zeros(sigma.shape, bool)
        diff0 = sigma[1:] != sigma[:-1]
        diff1 = sigma[:, 1:] != sigma[:, :-1]
        edge[1:] |= diff0  # one side of each interface only: borders one site wide
        edge[:, 1:] |= diff1
        edge &= sigma != 0
        img[edge] *= BORDER_SHADE
    return img


def _show(ax, sigma, cell_type, label: str = ""):
    ax.imshow(lattice_image(sigma, cell_type), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if label:
        ax.set_title(label, fontsize=9)


def lattice_figure(path, states: Mapping[str, object], title: str = "") -> Path:
    """One panel per labelled lattice; a 3D lattice gets a row of its three central slices.

    Args:
        path: PNG to write.
        states: ``{label: (sigma, cell_type)}`` (or ``{label: CPMState}``); sigma ``[H, W]`` or
            ``[D, H, W]``.
        title: figure title.
    Returns:
        the path written.
    """
    from oncodyn.viz.figures import _plt, _save

    plt = _plt()
    items = [(label, *_as_pair(e)) for label, e in states.items()]
    if not items:
        raise ValueError("states must hold at least one lattice")
    for label, sigma, _ in items:
        if sigma.ndim not in (2, 3):
            raise ValueError(f"states[{label!r}]: sigma must be 2D or 3D, got shape {sigma.shape}")
    if all(s.ndim == 2 for _, s, _ in items):
        n = len(items)
        cols = min(n, 4)
        rows = math.ceil(n / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.6 * rows), squeeze=False)
        for ax in axes.ravel():
            ax.axis("off")
        for ax, (label, sigma, ct) in zip(axes.ravel(), items):
            ax.axis("on")
            _show(ax, sigma, ct, label)
        return _save(fig, path, title)
    fig, axes = plt.subplots(len(items), 3, figsize=(3.4 * 3, 3.4 * len(items)), squeeze=False)
    for row, (label, sigma, ct) in zip(axes, items):
        for ax in row:
            ax.axis("off")
        panels = [("", sigma)] if sigma.ndim == 2 else _central_slices(sigma)
        for ax, (where, sl) in zip(row, panels):
            ax.axis("on")
            _show(ax, sl, ct, f"{label} {where}".strip())
    return _save(fig, path, title)


def _time_label(t) -> str:
    return f"MCS {t:g}" if isinstance(t, (int, float, np.number)) else str(t)


def animation(path, frames: Sequence[object], times: Sequence[float] | None = None, fps: int = 8) -> Path:
    """An animation of 2D lattices (3D: the central ``z`` slice).

    Args:
        path: ``.gif`` (Pillow) or ``.mp4`` (ffmpeg). Without ffmpeg an ``.mp4`` request is
            written as a GIF next to it (same name, ``.gif``); any other suffix becomes ``.gif``.
        frames: ``[(sigma, cell_type), ...]`` (or CPMStates), all of one shape.
        times: label per frame (e.g. MCS); default the frame index.
        fps: frames per second.
    Returns:
        the path actually written.
    """
    from matplotlib import animation as manim

    from oncodyn.core.atomic import atomic_path
    from oncodyn.viz.figures import _plt

    plt = _plt()
    pairs = [_as_pair(f) for f in frames]
    if not pairs:
        raise ValueError("frames must hold at least one lattice")
    times = list(range(len(pairs))) if times is None else list(times)
    if len(times) != len(pairs):
        raise ValueError(f"times has {len(times)} entries, frames {len(pairs)}")

    def image(k):
        sigma, ct = pairs[k]
        if sigma.ndim == 3:
            sigma = sigma[sigma.shape[0] // 2]
        return lattice_image(sigma, ct)

    path = Path(path)
    if path.suffix.lower() == ".mp4" and manim.writers.is_available("ffmpeg"):
        writer = manim.FFMpegWriter(fps=fps)
    else:
        path = path.with_suffix(".gif")
        writer = manim.PillowWriter(fps=fps)
    first = image(0)
    h, w = first.shape[:2]
    scale = 4.5 / max(h, w)
    fig, ax = plt.subplots(figsize=(max(2.5, w * scale), max(2.5, h * scale) + 0.4))
    im = ax.imshow(first, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    label = ax.set_title(_time_label(times[0]))
    fig.tight_layout()

    def update(k):
        im.set_data(image(k))
        label.set_text(_time_label(times[k]))
        return im, label

    anim = manim.FuncAnimation(fig, update, frames=len(pairs), blit=False)
    try:
        with atomic_path(path) as tmp:  # the temporary name ends in path's, so the format is the same
            anim.save(str(tmp), writer=writer, dpi=100)
    finally:
        plt.close(fig)
    return path


def observables_figure(path, times, series: Mapping[str, Mapping[str, np.ndarray]], xlabel: str = "MCS",
                       logx: bool = False, title: str = "") -> Path:
    """One panel per observable, one labelled curve per run or condition.

    Args:
        path: PNG to write.
        times: ``[n_times]`` x values shared by every curve.
        series: ``{observable: {label: y}}`` with ``y`` ``[n_times]`` (one curve) or
            ``[n_seeds, n_times]`` (the mean over seeds, NaNs ignored, with a shaded min–max band).
        xlabel: x-axis label. logx: logarithmic x axis (non-positive times are not drawn).
        title: figure title.
    Returns:
        the path written.
    """
    from oncodyn.viz.figures import _plt, _save

    plt = _plt()
    t = np.asarray(times, float)
    n = len(series)
    if n == 0:
        raise ValueError("series must hold at least one observable")
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    for ax, (name, curves) in zip(axes.ravel(), series.items()):
        for label, y in curves.items():
            y = np.asarray(y, float)
            if y.shape[-1] != len(t) or y.ndim not in (1, 2):
                raise ValueError(f"series[{name!r}][{label!r}] must be [{len(t)}] or [n_seeds, {len(t)}], "
                                 f"got shape {y.shape}")
            if y.ndim == 2:
                with np.errstate(all="ignore"), _quiet():
                    mean, lo, hi = np.nanmean(y, 0), np.nanmin(y, 0), np.nanmax(y, 0)
                (line,) = ax.plot(t, mean, label=f"{label} (n={len(y)})")
                ax.fill_between(t, lo, hi, color=line.get_color(), alpha=0.2, lw=0)
            else:
                ax.plot(t, y, label=label, marker="o" if len(t) < 20 else None, ms=3)
        if logx:
            ax.set_xscale("log")
        ax.set_title(name)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        if curves:
            ax.legend(fontsize=8)
    return _save(fig, path, title)


@contextmanager
def _quiet():
    """Silence NumPy's all-NaN-slice warnings (seeds that have no value at some time)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield
