"""Run directories: everything a run produced, next to how it was produced.

Layout of ``<out>/``::

    config.yaml       resolved configuration
    meta.json         experiment, versions, seed, device, command, wall time, status
                      (running, finished, failed with its error, interrupted)
    error.log         traceback of a run that failed (``oncodyn run``)
    metrics.json      scalar results and comparison tables
    series.nc         time series (xarray -> NetCDF)
    fields.nc         fields, e.g. c on a slice (xarray -> NetCDF, or .zarr)
    particles.npz     particle snapshots [P, d] by name
    figures/*.png     figures
    report.md         the comparison tables and figure list
    checkpoints/      resumable state of unfinished simulations
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from oncodyn.core.safeload import load_npz


def versions() -> dict[str, str]:
    """Versions of Python and of the numerical libraries in use."""
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for mod in ("oncodyn", "numpy", "scipy", "torch", "finufft", "fmm3dpy", "xarray", "matplotlib"):
        try:
            m = __import__(mod)
            out[mod] = getattr(m, "__version__", "?")
        except Exception:  # pragma: no cover - optional module missing
            out[mod] = "not installed"
    return out


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, float) and not np.isfinite(x):
        return str(x)
    return x


def write_json(path: Path, data: Any) -> None:
    """Atomic JSON write."""
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(_jsonable(data), indent=2))
    os.replace(tmp, path)


class RunDir:
    """A run's output directory (created on construction)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        (self.path / "figures").mkdir(parents=True, exist_ok=True)
        self.t0 = time.perf_counter()

    @property
    def figures(self) -> Path:
        return self.path / "figures"

    def checkpoint(self, name: str) -> str:
        """Path of a named checkpoint file (its folder is created)."""
        d = self.path / "checkpoints"
        d.mkdir(exist_ok=True)
        return str(d / f"{name}.npz")

    def write_config(self, text: str) -> None:
        (self.path / "config.yaml").write_text(text)

    def write_meta(self, **meta) -> None:
        meta = {"versions": versions(), "command": " ".join(sys.argv), **meta}
        write_json(self.path / "meta.json", meta)

    def read_meta(self) -> dict:
        return json.loads((self.path / "meta.json").read_text())

    def write_metrics(self, metrics: dict) -> None:
        write_json(self.path / "metrics.json", metrics)

    def read_metrics(self) -> dict:
        return json.loads((self.path / "metrics.json").read_text())

    def write_dataset(self, name: str, ds) -> Path:
        """Write an ``xarray.Dataset`` as ``<name>.nc`` (or ``.zarr`` if name ends so)."""
        p = self.path / name
        if name.endswith(".zarr"):
            ds.to_zarr(p, mode="w")
        else:
            ds.to_netcdf(p if name.endswith(".nc") else p.with_suffix(".nc"))
        return p

    def read_dataset(self, name: str):
        import xarray as xr

        p = self.path / name
        return xr.open_zarr(p) if name.endswith(".zarr") else xr.load_dataset(p)

    def write_arrays(self, name: str, arrays: dict[str, np.ndarray]) -> None:
        """Named arrays as one compressed ``.npz``."""
        np.savez_compressed(self.path / name, **arrays)

    def read_arrays(self, name: str) -> dict[str, np.ndarray]:
        """The arrays of ``<name>`` (``.npz``), read without pickle (see :mod:`oncodyn.core.safeload`)."""
        return load_npz(self.path / name, "results file")

    def write_particles(self, arrays: dict[str, np.ndarray], name: str = "particles.npz") -> None:
        self.write_arrays(name, arrays)

    def read_particles(self, name: str = "particles.npz") -> dict[str, np.ndarray]:
        return self.read_arrays(name)

    def subdir(self, name: str) -> Path:
        """A folder inside the run (created), e.g. ``nifti``."""
        d = self.path / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def write_report(self, text: str) -> None:
        (self.path / "report.md").write_text(text)

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0
