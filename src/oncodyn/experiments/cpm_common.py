"""Shared pieces of the CPM experiments: sampler choice, per-seed results that survive a restart."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from pydantic import field_validator

from oncodyn.config import ExperimentConfig
from oncodyn.core.atomic import save_npz
from oncodyn.core.safeload import load_npz
from oncodyn.cpm.samplers import ApproxParallelSampler, MetropolisSampler, ParallelMetropolisSampler
from oncodyn.io.rundir import RunDir

SAMPLER_KINDS = ("classic", "exact", "parallel", "approx")


class CPMConfig(ExperimentConfig):
    """Base of the CPM experiments.

    Attributes:
        sampler: ``classic`` (sequential Metropolis with the classic CPM acceptance, the published
            kinetics of Graner–Glazier/Morpheus/Artistoo), ``exact`` (sequential Metropolis–Hastings,
            exactly Boltzmann), ``parallel`` (exact, all cores), ``approx`` (NeuralCPM's batched sampler).
    """

    sampler: str = "classic"

    @field_validator("sampler")
    @classmethod
    def _sampler(cls, v: str) -> str:
        if v not in SAMPLER_KINDS:
            raise ValueError(f"must be one of {', '.join(SAMPLER_KINDS)}")
        return v


def build_sampler(kind: str, state, hamiltonian, seed: int, connectivity: bool = False):
    """The sampler named ``kind`` (see :class:`CPMConfig`)."""
    if kind == "classic":
        return MetropolisSampler(state, hamiltonian, seed=seed, hastings=False, connectivity=connectivity)
    if kind == "exact":
        return MetropolisSampler(state, hamiltonian, seed=seed, connectivity=connectivity)
    if kind == "parallel":
        return ParallelMetropolisSampler(state, hamiltonian, seed=seed, connectivity=connectivity)
    if kind == "approx":
        return ApproxParallelSampler(state, hamiltonian, seed=seed, k_frac=0.01)
    raise ValueError(f"sampler must be one of {SAMPLER_KINDS}, got {kind!r}")


def cached_result(rd: RunDir, name: str, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """``compute()``'s arrays, saved as ``results/<name>.npz``; a rerun into the same directory loads them.

    This is how a multi-seed experiment resumes: finished seeds are never recomputed.
    """
    path = rd.subdir("results") / f"{name}.npz"
    if path.exists():
        return load_npz(path, "results file")
    arrays = compute()
    save_npz(path, arrays)
    return arrays


def interp_log(t: np.ndarray, y: np.ndarray, at: float) -> float:
    """``y`` at time ``at`` by linear interpolation in log time (t > 0 entries only)."""
    keep = t > 0
    return float(np.interp(np.log(at), np.log(t[keep]), y[keep]))
