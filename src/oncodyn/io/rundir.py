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
    checkpoints/      resumable state of unfinished simulations (each carries the hash of
                      config.yaml and a checksum; see :class:`oncodyn.core.runloop.Checkpointer`)

Every file is written atomically (:mod:`oncodyn.core.atomic`): it appears complete or not at all.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from oncodyn.core import atomic
from oncodyn.core.runloop import CheckpointPath
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
    """Atomic JSON write (NumPy scalars and arrays as plain values, inf/nan as strings)."""
    atomic.write_json(path, _jsonable(data), indent=2)


def config_hash(text: str) -> str:
    """The hash a run's checkpoints carry: SHA-256 of its resolved ``config.yaml`` text."""
    return hashlib.sha256(text.encode()).hexdigest()


class RunDir:
    """A run's output directory (created on construction)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        (self.path / "figures").mkdir(parents=True, exist_ok=True)
        self.t0 = time.perf_counter()
        self._config_hash: str | None = None

    @property
    def figures(self) -> Path:
        return self.path / "figures"

    @property
    def config_hash(self) -> str | None:
        """Hash of the config written by :meth:`write_config` (else of an existing config.yaml)."""
        if self._config_hash is None and (self.path / "config.yaml").is_file():
            self._config_hash = config_hash((self.path / "config.yaml").read_text())
        return self._config_hash

    def checkpoint(self, name: str) -> CheckpointPath:
        """Path of a named checkpoint file (its folder is created).

        The path (a ``str``) carries :attr:`config_hash`, which a
        :class:`~oncodyn.core.runloop.Checkpointer` stores in the file and checks on resuming.
        """
        d = self.path / "checkpoints"
        d.mkdir(exist_ok=True)
        return CheckpointPath(d / f"{name}.npz", config_hash=self.config_hash)

    def write_config(self, text: str) -> None:
        atomic.write_text(self.path / "config.yaml", text)
        self._config_hash = config_hash(text)

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
            with atomic.atomic_dir(p) as tmp:
                ds.to_zarr(tmp, mode="w")
            return p
        p = p if name.endswith(".nc") else p.with_suffix(".nc")
        with atomic.atomic_path(p) as tmp:
            ds.to_netcdf(tmp)
        return p

    def read_dataset(self, name: str):
        import xarray as xr

        p = self.path / name
        return xr.open_zarr(p) if name.endswith(".zarr") else xr.load_dataset(p)

    def write_arrays(self, name: str, arrays: dict[str, np.ndarray]) -> None:
        """Named arrays as one compressed ``<name>`` (``.npz`` appended if missing)."""
        atomic.save_npz(self.path / (name if name.endswith(".npz") else f"{name}.npz"), arrays)

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
        atomic.write_text(self.path / "report.md", text)

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0
