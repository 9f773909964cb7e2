"""A6 (convergence): the particle--field errors against a fine FDM reference, in P and in δt.

Published (NSIPF paper): relative L2 error of ρ ~ P^-0.47, of c ~ δt^1.01.

Our setting (the source does not state its own): a Gaussian blob σ = 5 at the centre, an
attractant Gaussian σ = 10 of amplitude ``c_amplitude``, M0 = ``mass`` (large enough that the
cells consume a visible part of c by T, otherwise the c error is below the sampling noise),
T = ``t_end``, with our fast particle--field path.

* ρ against P: particle density binned on a coarse ``eval_bins`` grid against the FDM density
  (fine dt) block-averaged to it, at dt = min(dts); one seed per P.
* c against δt: c on the bins at T against the FDM c (dt = min(dts)/``ref_refine``), with P =
  ``dt_particles`` and one Brownian path shared by all δt (coarse increments are sums of fine
  ones), so that the sampling error is common to all δt and the δt error shows.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from oncodyn.chemotaxis.phks import BinGrid, Gaussian, InitialData, centred
from oncodyn.core.fitting import fit_slope
from oncodyn.core.rng import BrownianPath
from oncodyn.experiments.angio_common import AngioConfig, Method, run_fdm_reference, run_particles
from oncodyn.experiments.registry import Comparison, ExperimentResult, RunContext, register
from oncodyn.io.rundir import RunDir


class ConvergenceConfig(AngioConfig):
    """A6 fields.

    Attributes:
        particles: the P of the ρ study.
        dts: the δt of the c study (each a multiple of the smallest).
        dt_particles: P of the c study.
        eval_bins: bins per axis of the grid on which ρ errors are measured (divides ``bins``).
        ref_refine: the FDM reference uses dt = min(dts) / ref_refine and 3 × bins per axis (each
            coarse bin centre is a fine bin centre, so c is compared point by point; ρ is
            block-averaged).
        rho_dt: time step of the ρ study (small, so that the sampling error shows).
        c_amplitude, mass: the attractant peak and the cell mass.
    """

    dim: Literal[2, 3] = 2
    bins: int = 50
    mass: float = Field(50.0, gt=0)
    t_end: float = 5.0
    compare_times: list[float] = [5.0]
    particles: list[int] = [1000, 4000, 16000, 64000, 256000]
    dts: list[float] = [0.5, 0.25, 0.125, 0.0625]
    dt_particles: int = Field(1_000_000, ge=10)
    eval_bins: int = Field(10, ge=2)
    ref_refine: int = Field(4, ge=1)
    rho_dt: float = Field(0.03125, gt=0)
    c_amplitude: float = Field(10.0, ge=0)
    methods: list[Method] = ["fast"]

    @model_validator(mode="after")
    def _dts(self):
        if not self.dts or min(self.dts) <= 0:
            raise ValueError("dts: must list time steps > 0")
        dmin = min(self.dts)
        for d in self.dts:
            if abs(d / dmin - round(d / dmin)) > 1e-9:
                raise ValueError(f"dts: each must be an integer multiple of the smallest ({dmin}), got {d}")
            if abs(self.t_end / d - round(self.t_end / d)) > 1e-9:
                raise ValueError(f"dts: t_end={self.t_end} must be an integer multiple of each, got {d}")
        if abs(self.t_end / self.rho_dt - round(self.t_end / self.rho_dt)) > 1e-9:
            raise ValueError(f"rho_dt: t_end={self.t_end} must be an integer multiple of it, got {self.rho_dt}")
        if self.bins % self.eval_bins:
            raise ValueError(f"eval_bins: must divide bins={self.bins}, got {self.eval_bins}")
        return self

    presets = {"quick": {"particles": [500, 2000, 8000], "dts": [0.4, 0.2, 0.1], "dt_particles": 20000, "t_end": 0.8, "rho_dt": 0.1,
                         "compare_times": [0.8], "bins": 20}}


def block_average(field: np.ndarray, m: int) -> np.ndarray:
    """Average over blocks of ``m``^d bins (each axis length divisible by m)."""
    shape = []
    for n in field.shape:
        shape += [n // m, m]
    return field.reshape(shape).mean(axis=tuple(range(1, 2 * field.ndim, 2)))


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def plot_convergence(rd: RunDir) -> list:
    from oncodyn.viz import figures as fg

    a = rd.read_arrays("convergence.npz")
    return [fg.loglog_fit(rd.figures / "rho_vs_P.png", {"ρ rel. L2": (a["particles"], a["rho_err"])}, "P",
                          "relative L2 error of ρ", title="ρ against P (published slope -0.47)"),
            fg.loglog_fit(rd.figures / "c_vs_dt.png", {"c rel. L2": (a["dts"], a["c_err"])}, "δt",
                          "relative L2 error of c", title="c against δt (published slope 1.01)")]



@register("angio-convergence", ConvergenceConfig, "A6: relative L2 errors vs fine FDM: ρ against P, c against δt (slopes)",
          plot=plot_convergence)
def run_convergence(cfg: ConvergenceConfig, ctx: RunContext) -> ExperimentResult:
    dmin = min(cfg.dts)
    c0 = centred(cfg.dim, cfg.length)
    initial = InitialData(rho=Gaussian((c0,), 5.0), c=Gaussian((c0,), 10.0, amplitude=cfg.c_amplitude))
    T = cfg.t_end
    fdm = run_fdm_reference(cfg, initial, ctx, [T], key="fdm_reference", dt=dmin / cfg.ref_refine, bins=3 * cfg.bins)
    rho_ref = block_average(fdm["rho"][0], 3 * cfg.bins // cfg.eval_bins)
    c_ref = fdm["c"][0][(slice(1, None, 3),) * cfg.dim]
    coarse = BinGrid(cfg.eval_bins, cfg.length, cfg.dim)
    from oncodyn.chemotaxis.phks_metrics import binned_density

    rho_err = []
    for P in cfg.particles:
        r = run_particles(cfg, initial, ctx, "fast", [T], key=f"rho_P{P}", n_particles=P, dt=cfg.rho_dt)
        rho_err.append(_rel(binned_density(r["x"][0], coarse, cfg.mass), rho_ref))
    path = BrownianPath(cfg.seed, cfg.dt_particles, cfg.dim, dmin)
    c_err = []
    for d in cfg.dts:
        r = run_particles(cfg, initial, ctx, "fast", [T], key=f"c_dt{d:g}", n_particles=cfg.dt_particles, dt=d,
                          brownian=path)
        c_err.append(_rel(r["c"][0], c_ref))
    s_rho = fit_slope(np.array(cfg.particles, float), np.array(rho_err))
    s_c = fit_slope(np.array(cfg.dts, float), np.array(c_err))
    ctx.rundir.write_arrays("convergence.npz", {"particles": np.array(cfg.particles), "rho_err": np.array(rho_err),
                                                "dts": np.array(cfg.dts), "c_err": np.array(c_err)})
    rows = [["ρ against P", "-0.47", s_rho, ", ".join(f"{e:.3g}" for e in rho_err)],
            ["c against δt", "1.01", s_c, ", ".join(f"{e:.3g}" for e in c_err)]]
    table = Comparison(
        title=f"A6 convergence: {cfg.dim}D, {cfg.bins}^{cfg.dim} bins, M0 = {cfg.mass:g}, c0 amplitude {cfg.c_amplitude:g}, "
              f"T = {T:g}, c-update {cfg.c_update}; FDM reference {3 * cfg.bins}^{cfg.dim} bins, dt = {dmin / cfg.ref_refine:g}",
        columns=["error", "published slope", "our slope", "errors (in the order of P / δt)"], rows=rows,
        note=f"ρ on {cfg.eval_bins}^{cfg.dim} evaluation bins at P = {cfg.particles}, dt = {cfg.rho_dt:g}; c at "
             f"δt = {cfg.dts} with P = {cfg.dt_particles:,} and one shared Brownian path. Slopes are least-squares fits "
             "in log-log.")
    return ExperimentResult(metrics={"slope_rho_vs_P": s_rho, "slope_c_vs_dt": s_c}, tables=[table])
