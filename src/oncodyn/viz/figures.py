"""Figure helpers: particle scatter, field slices, curves, log-log fits.

Each function takes arrays, writes one PNG and returns its path. matplotlib is imported
here only, with the non-interactive Agg backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from oncodyn.core.atomic import save_figure
from oncodyn.core.fitting import fit_slope


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, title: str = "") -> Path:
    """Title, tight layout, write the PNG atomically (:func:`oncodyn.core.atomic.save_figure`),
    close; returns the path."""
    plt = _plt()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        save_figure(fig, path, dpi=110)
    finally:
        plt.close(fig)
    return Path(path)


def scatter_particles(path: Path, clouds: Mapping[str, np.ndarray], half_width: float | None = None,
                      max_points: int = 4000, title: str = "") -> Path:
    """One 3D (or 2D) scatter panel per labelled cloud ``[P, d]``."""
    plt = _plt()
    n = len(clouds)
    d = next(iter(clouds.values())).shape[1]
    fig = plt.figure(figsize=(4.2 * n, 4))
    for i, (label, x) in enumerate(clouds.items()):
        x = x[:: max(1, len(x) // max_points)]
        if d == 3:
            ax = fig.add_subplot(1, n, i + 1, projection="3d")
            ax.scatter(x[:, 0], x[:, 1], x[:, 2], s=1, alpha=0.5)
            if half_width:
                for f in (ax.set_xlim, ax.set_ylim, ax.set_zlim):
                    f(-half_width, half_width)
        else:
            ax = fig.add_subplot(1, n, i + 1)
            ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.5)
            ax.set_aspect("equal")
            if half_width:
                ax.set_xlim(-half_width, half_width)
                ax.set_ylim(-half_width, half_width)
        ax.set_title(label)
    return _save(fig, path, title)


def field_slices(path: Path, slices: Mapping[str, np.ndarray], extent: Sequence[float], title: str = "") -> Path:
    """One image panel per labelled 2D array (e.g. c at z = 0)."""
    plt = _plt()
    n = len(slices)
    fig, axes = plt.subplots(1, n, figsize=(4.4 * n, 3.8), squeeze=False)
    for ax, (label, a) in zip(axes[0], slices.items()):
        im = ax.imshow(np.asarray(a).T, origin="lower", extent=extent, cmap="viridis")
        ax.set_title(label)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        fig.colorbar(im, ax=ax, shrink=0.85)
    return _save(fig, path, title)


def curves(path: Path, panels: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]], xlabel: str,
           ylabel: str, logy: bool = False, hline: float | None = None, title: str = "") -> Path:
    """Panels of labelled curves: ``{panel: {label: (x, y)}}``."""
    plt = _plt()
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 3.6), squeeze=False)
    for ax, (ptitle, lines) in zip(axes[0], panels.items()):
        for label, (x, y) in lines.items():
            ax.plot(x, y, label=label, marker="o" if len(x) < 20 else None, ms=3)
        if hline is not None:
            ax.axhline(hline, color="k", lw=0.8, ls="--")
        if logy:
            ax.set_yscale("log")
        ax.set_title(ptitle)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return _save(fig, path, title)


def scatter_xy(path: Path, x: np.ndarray, y: np.ndarray, xlabel: str, ylabel: str, title: str = "",
               max_points: int = 5000) -> Path:
    """A plain scatter of paired samples (e.g. posterior draws of two parameters)."""
    plt = _plt()
    step = max(1, len(x) // max_points)
    fig, ax = plt.subplots(figsize=(4.6, 4))
    ax.scatter(np.asarray(x)[::step], np.asarray(y)[::step], s=3, alpha=0.4)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return _save(fig, path, title)


def loglog_fit(path: Path, series: Mapping[str, tuple[np.ndarray, np.ndarray]], xlabel: str, ylabel: str,
               title: str = "") -> Path:
    """Log-log plot of labelled (x, y) with the least-squares slope in each legend entry."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    for label, (x, y) in series.items():
        x, y = np.asarray(x, float), np.asarray(y, float)
        slope = fit_slope(x, y)
        ax.loglog(x, y, marker="o", label=f"{label} (slope {slope:.2f})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return _save(fig, path)
