"""A1 (one blob) and A2 (two blobs): particle--field methods beside the FDM reference.

Published (NSIPF paper, γ = χ = 1, M0 = 1, L = 100, P = 20,000):

* A1: ρ0 a Gaussian σ = 5 at the centre, c0 a Gaussian σ = 10 at the centre, T = 40: the blob
  spreads outward while consuming c.
* A2: ρ0 two Gaussians σ = 5 at (30, 30, 30) and (70, 70, 70), c0 a Gaussian σ = 10 at the centre
  "scaled much larger than ρ": both blobs aggregate at the centre and grow there (t = 0, 10, 40);
  density cross-sections agree with FDM at t = 2 and 40.

The source does not give the amplitude of c0 in A2. We take A = 500: the drift χ∇c of a
particle starting at a blob centre (r ≈ 34.6 from the middle) then brings it to the middle by
t ≈ 9 (solving dr/dt = -A r/σ² exp(-r²/2σ²)), and the explicit particle step stays stable at the
centre (χ A dt / σ² = 0.5 < 2). A1 uses A = 1.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from oncodyn.chemotaxis.phks import Gaussian, InitialData, centred
from oncodyn.experiments.angio_common import (METHOD_LABELS, AngioConfig, Method, compare, plot_comparison,
                                              run_fdm_reference, run_particles, save_figure_arrays)
from oncodyn.experiments.registry import Comparison, ExperimentResult, RunContext, register
from oncodyn.io.rundir import RunDir


class BlobsConfig(AngioConfig):
    """A1/A2 fields.

    Attributes:
        rho_sigma: σ of each density blob (length).
        c_sigma, c_amplitude: σ (length) and peak (concentration) of the attractant Gaussian.
        w1_bound, c_bound: stated bounds of the agreement with FDM (sliced W1 in length units,
            relative L2 of c); the table says whether each method is within them.
    """

    rho_sigma: float = Field(5.0, gt=0)
    c_sigma: float = Field(10.0, gt=0)
    c_amplitude: float = Field(500.0, ge=0)
    w1_bound: float = Field(2.0, gt=0)
    c_bound: float = Field(0.05, gt=0)


def _blob_centres(cfg: BlobsConfig, two: bool) -> tuple[tuple[float, ...], ...]:
    if not two:
        return (centred(cfg.dim, cfg.length),)
    return ((0.3 * cfg.length,) * cfg.dim, (0.7 * cfg.length,) * cfg.dim)


def initial_data(cfg: BlobsConfig, two: bool) -> InitialData:
    return InitialData(rho=Gaussian(_blob_centres(cfg, two), cfg.rho_sigma),
                       c=Gaussian((centred(cfg.dim, cfg.length),), cfg.c_sigma, amplitude=cfg.c_amplitude))


def run_blobs(cfg: BlobsConfig, ctx: RunContext, two: bool, published: str) -> ExperimentResult:
    initial = initial_data(cfg, two)
    times = sorted(set(cfg.compare_times) | {cfg.t_end})
    fdm = run_fdm_reference(cfg, initial, ctx, times)
    runs = {m: run_particles(cfg, initial, ctx, m, times) for m in cfg.methods}
    rows, metrics = [], {"fdm_wall_time_s": float(fdm["wall_time"])}
    for m, r in runs.items():
        metrics[f"{m}_wall_time_s"] = float(r["wall_time"])
        for i, t in enumerate(times):
            s = compare(cfg, fdm, r, i)
            ok = s["w1_sliced"] <= cfg.w1_bound and s["c_rel_l2"] <= cfg.c_bound
            rows.append([METHOD_LABELS[m], f"{t:g}", published if i == 0 else "", s["w1_sliced"], s["w1_marginal"],
                         s["c_rel_l2"], s["min_c"], float(r["wall_time"]), "yes" if ok else "NO"])
            metrics.update({f"{m}_t{t:g}_{k}": v for k, v in s.items()})
    fdm_min_rho = float(fdm["rho"].min())
    rows.append([METHOD_LABELS["fdm"], "all", "", 0.0, 0.0, 0.0, float(fdm["c"].min()), float(fdm["wall_time"]),
                 f"min ρ = {fdm_min_rho:.2e}"])
    metrics["fdm_min_rho"] = fdm_min_rho
    if "series_mass" in fdm:
        m = fdm["series_mass"]
        metrics["fdm_mass_drift"] = float(np.max(np.abs(m - m[0])) / m[0])
    grid = cfg.grid()
    table = Comparison(
        title=f"{'A2 two blobs' if two else 'A1 one blob'}: {cfg.dim}D, {grid.n}^{cfg.dim} bins, P = {cfg.n_particles:,}, "
              f"dt = {cfg.dt:g}, γ = {cfg.gamma:g}, χ = {cfg.chi:g}, c0 amplitude {cfg.c_amplitude:g}, c-update {cfg.c_update}",
        columns=["method", "t", "published", "sliced W1 vs FDM", "mean marginal W1", "c rel. L2 vs FDM", "min c",
                 "wall time (s)", f"within bounds (W1 ≤ {cfg.w1_bound:g}, c ≤ {cfg.c_bound:g})"],
        rows=rows,
        note="W1 in length units (bins are h = L/bins wide). Sliced W1 takes the FDM bins as point masses at their "
             "centres (resolution floor up to √d·h/2 even for an exact cloud); the marginal W1 reads each bin as "
             "uniform (floor h/64). Both include the sampling error of P particles. The FDM row lists min c and "
             "min ρ (positivity).")
    save_figure_arrays(ctx.rundir, cfg, fdm, runs)
    return ExperimentResult(metrics=metrics, tables=[table])


def plot_blobs(rd: RunDir) -> list:
    return plot_comparison(rd)


class OneBlobConfig(BlobsConfig):
    """A1: one blob, c0 amplitude 1."""

    c_amplitude: float = Field(1.0, ge=0)

    presets = {"quick": {"dim": 2, "bins": 32, "n_particles": 2000, "t_end": 2.0, "compare_times": [1.0, 2.0]}}


@register("angio-one-blob", OneBlobConfig, "A1: one Gaussian blob spreads while consuming c; particle methods beside FDM",
          plot=plot_blobs)
def run_one_blob(cfg: OneBlobConfig, ctx: RunContext) -> ExperimentResult:
    return run_blobs(cfg, ctx, two=False, published="the blob spreads outward while consuming c")


class TwoBlobsConfig(BlobsConfig):
    """A2: two blobs, c0 amplitude 500 (our choice, see the module docstring); all three particle methods."""

    methods: list[Method] = ["fast", "nsipf", "sipf"]
    presets = {"quick": {"dim": 2, "bins": 32, "n_particles": 2000, "t_end": 2.0, "compare_times": [1.0, 2.0]}}


@register("angio-two-blobs", TwoBlobsConfig,
          "A2: two blobs aggregate at the centre; particle methods (fast, NSIPF, SIPF) beside FDM", plot=plot_blobs)
def run_two_blobs(cfg: TwoBlobsConfig, ctx: RunContext) -> ExperimentResult:
    return run_blobs(cfg, ctx, two=True, published="both blobs aggregate at the centre; cross-sections agree with FDM at t = 2, 40")
