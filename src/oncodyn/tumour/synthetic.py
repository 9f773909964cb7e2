"""Synthetic observations without the inverse crime.

The "patient" is simulated on a grid ``factor`` times finer than the inversion grid, with
its own phase field, at a smaller step (``cfl_fine``). What the scanner sees on the
inversion grid is the block average of the fine density over each coarse voxel (partial
volume), plus Gaussian noise of stated standard deviation (not clipped, so the noise has
zero mean), or the segmentation ``{u >= level}`` of the clean block average.

Grid frames: coarse voxel i is the block of fine voxels f i ... f i + f - 1, whose mean
centre is the coarse centre, so a point at coarse grid mm ``x`` sits at fine grid mm
``x + (f - 1) h_f / 2`` (:func:`to_fine_frame`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from oncodyn.tumour.anatomy import block_average, coarsen
from oncodyn.tumour.domain import TissueMaps
from oncodyn.tumour.fk import FKDomain, prepare_domain, simulate
from oncodyn.tumour.inverse import Observations
from oncodyn.tumour.model import FKParams, require
from oncodyn.tumour.phasefield import brain_phase_field


def to_fine_frame(x_coarse, factor: int, fine_spacing) -> np.ndarray:
    """Coarse grid mm -> fine grid mm (see the module docstring)."""
    return np.asarray(x_coarse, float) + (factor - 1) / 2 * np.asarray(fine_spacing, float)


def phase_field(maps: TissueMaps, phase: dict) -> np.ndarray:
    """Cahn--Hilliard phase field of the tissue mask (cached on disk by content, see :mod:`oncodyn.io.cache`).

    Args:
        phase: keyword arguments of :func:`~oncodyn.tumour.phasefield.brain_phase_field`
            (``threshold``, ``width_voxels``, ``n_steps``, ...).
    """
    from oncodyn.io.cache import cached_array, key_of

    threshold = phase.get("threshold", 0.5)
    key = key_of(maps.tissue_mask(threshold), maps.spacing, sorted(phase.items()))
    return cached_array("phase", key, lambda: brain_phase_field(maps, **phase)).astype(float)


def domain_of(maps: TissueMaps, grey_ratio: float, phase: dict, phi_min: float = 1e-3) -> FKDomain:
    """The FD domain of tissue maps: the phase field of the tissue mask and d = p_w + r_g p_g."""
    return prepare_domain(phase_field(maps, phase), maps.relative_diffusivity(grey_ratio), maps.spacing, phi_min)


@dataclass
class SyntheticCase:
    """A synthetic patient: the inversion domain, the observations and the truth.

    Attributes:
        domain: inversion (coarse) domain. fine: the domain the data came from.
        obs: observations on ``domain``'s crop. clean: noise-free block averages ``[n_t, *shape]``.
        params: the true parameters. x0: origin (coarse grid mm). noise: noise std.
        maps: coarse tissue maps (for output and figures).
    """

    domain: FKDomain
    fine: FKDomain
    obs: Observations
    clean: np.ndarray
    params: FKParams
    x0: np.ndarray
    noise: float
    maps: TissueMaps
    fine_wall_time: float


def observe_from_finer(fine_maps: TissueMaps, factor: int, params: FKParams, x0, times, noise: float = 0.02,
                       seed: int = 0, levels=None, phase: dict | None = None, observe_phi: float = 0.5,
                       cfl_fine: float = 0.5, phi_min: float = 1e-3, progress: bool = False) -> SyntheticCase:
    """Simulate on ``fine_maps`` and observe on ``coarsen(fine_maps, factor)``.

    Args:
        fine_maps: the patient's anatomy on the fine grid.
        factor: integer coarsening of the inversion grid (>= 2 avoids the inverse crime).
        x0: tumour origin in *coarse* grid mm.
        times: observation times (days).
        noise: std of the additive Gaussian noise on densities (ignored for segmentations).
        levels: ``None`` (densities at every time) or one level per time (segmentations).
        phase: phase-field options; ``width_voxels`` is given in coarse voxels and scaled by
            ``factor`` on the fine grid so both interfaces have the same width in mm.
        observe_phi: voxels with φ >= this on the coarse grid are observed.
    """
    require(int(factor) == factor and factor >= 1, "factor", "an integer >= 1", factor)
    require(noise >= 0, "noise", ">= 0", noise)
    times = np.asarray(times, float)
    levels = tuple([None] * len(times)) if levels is None else tuple(levels)
    phase = dict(phase or {})
    coarse_maps = coarsen(fine_maps, factor)
    domain = domain_of(coarse_maps, params.grey_ratio, phase, phi_min)
    fine_phase = {**phase, "width_voxels": phase.get("width_voxels", 1.0) * factor}
    fine = domain_of(fine_maps, params.grey_ratio, fine_phase, phi_min)
    x0 = np.asarray(x0, float)
    sol = simulate(fine, params, to_fine_frame(x0, factor, fine_maps.spacing), times, cfl=cfl_fine,
                   progress=progress, desc="patient (fine grid)")
    full = fine.embed(sol.u)
    clean = np.stack([domain.crop(block_average(u, factor)) for u in full])
    rng = np.random.default_rng(seed)
    values = clean.copy()
    for k, lv in enumerate(levels):
        if lv is None:
            values[k] = clean[k] + noise * rng.standard_normal(clean[k].shape)
        else:
            values[k] = (clean[k] >= lv).astype(float)
    observed = np.broadcast_to(domain.phi >= observe_phi, values.shape).copy()
    obs = Observations(times=times, values=values * observed, observed=observed, levels=levels)
    return SyntheticCase(domain=domain, fine=fine, obs=obs, clean=clean, params=params, x0=x0, noise=noise,
                         maps=coarse_maps, fine_wall_time=sol.wall_time)
