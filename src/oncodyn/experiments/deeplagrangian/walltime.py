"""D6: accuracy against wall time -- DeepLagrangian vs the interacting-particle method + KDE on
D3's super-critical 2D case, in one run.

The radial finite-volume reference gives p(r, T) at T = ``fraction`` × its blow-up time T*.
The flow is trained with each iteration budget of ``budgets``; the particle method runs with
each P of ``particle_counts`` (same δ); each gets its wall time, the relative error of max p
at T and the relative L2 error of its radial profile at T (the particles' through a Gaussian
KDE averaged over directions). The table ends with a plain statement, per measure, of which
method is more accurate at comparable wall time.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from pydantic import Field, field_validator

from oncodyn.deeplagrangian import evaluate as ev
from oncodyn.deeplagrangian.initial import GaussianP0
from oncodyn.deeplagrangian.particles import ParticleOptions, kde_density, kde_max_density, simulate_particles
from oncodyn.deeplagrangian.references import compare_radial, radial_blowup_time, radial_reference
from oncodyn.deeplagrangian.velocity import NoAdvection
from oncodyn.experiments.deeplagrangian.common import QUICK, train_case, wall_time
from oncodyn.experiments.deeplagrangian.radial import CASES, RadialConfig
from oncodyn.experiments.registry import Comparison, ExperimentResult, RunContext, register
from oncodyn.io.rundir import RunDir

NAME = "deeplagrangian-walltime"


class WallTimeConfig(RadialConfig):
    """D6 settings (D3's fields for the model and the reference).

    Attributes:
        case: the D3 case compared (default 2d-super).
        budgets: training iterations per segment of each flow run.
        particle_counts: P of each particle run.
        dt_particles: time step of the particle runs (time units).
    """

    case: str = "2d-super"
    budgets: list[int] = [50, 150]
    particle_counts: list[int] = [1000, 4000, 16000, 64000]
    dt_particles: float = Field(0.005, gt=0, allow_inf_nan=False)

    presets = {"quick": {**QUICK, "case": "2d-sub", "t_end": 0.05, "segment": 0.05, "budgets": [10, 30],
                         "particle_counts": [200, 800], "dt_particles": 0.01, "ref_cells": 400, "ref_h_min": 1e-3,
                         "ref_dt": 1e-3, "n_dirs": 8}}

    @field_validator("budgets", "particle_counts")
    @classmethod
    def _pos(cls, v):
        if not v or any(int(b) != b or b < 1 for b in v):
            raise ValueError("must be a non-empty list of integers >= 1")
        return v

    @field_validator("case")
    @classmethod
    def _case(cls, v):
        if v not in CASES:
            raise ValueError(f"must be one of {', '.join(CASES)}")
        return v


def plot_walltime(rd: RunDir) -> list:
    from oncodyn.viz import figures as fg

    z = rd.read_arrays("walltime.npz")
    panels = {}
    for key, label in (("max_err", "relative error of max p"), ("l2_err", "relative L2 error of p(r)")):
        panels[label] = {"DeepLagrangian": (z["flow_time"], z[f"flow_{key}"]),
                         "particles + KDE": (z["part_time"], z[f"part_{key}"])}
    return [fg.curves(rd.figures / "accuracy_vs_walltime.png", panels, "wall time (s)", "error", logy=True)]


def _verdict(measure: str, ft, fe, pt, pe) -> str:
    """Which method is more accurate at comparable wall time, in words."""
    parts = []
    for t, e in zip(ft, fe):
        cheaper = [(pe[j], pt[j]) for j in range(len(pt)) if pt[j] <= t]
        if not cheaper:
            parts.append(f"no particle run was as cheap as the flow's {t:.3g} s")
            continue
        best_e, best_t = min(cheaper)
        who = "DeepLagrangian wins" if e < best_e else "the particles win"
        parts.append(f"at {t:.3g} s {who} ({e:.3g} against {best_e:.3g}, the best particle run within that time, "
                     f"{best_t:.3g} s)")
    return f"{measure}: " + "; ".join(parts)


@register(NAME, WallTimeConfig, "D6: accuracy vs wall time, DeepLagrangian vs particles + KDE on D3's super-critical case",
          plot=plot_walltime)
def run_walltime(cfg: WallTimeConfig, ctx: RunContext) -> ExperimentResult:
    model = cfg.model(cfg.case)
    dim = model.dim
    settings = cfg.settings()
    if cfg.case.endswith("super"):
        t_max = 5.0
        t_star = radial_blowup_time(model, cfg.std, t_max, settings)
        if t_star is None:
            raise ValueError(f"{cfg.case}: the radial reference does not blow up before t = {t_max:g}")
        T = cfg.fraction * t_star
    else:
        t_star, T = None, cfg.t_end
    T = max(cfg.dt_particles, round(T / cfg.dt_particles) * cfg.dt_particles)  # on the particles' time grid
    ref = radial_reference(model, cfg.std, T, save_times=[T], settings=settings)
    keep = ref.r < 6 * cfg.std
    r = ref.r[keep][np.unique(np.geomspace(1, keep.sum(), 200).astype(int) - 1)]
    p_ref = ref.profiles[-1][np.searchsorted(ref.r, r)] / model.mass
    p0 = GaussianP0(tuple([0.0] * dim), cfg.std)
    rows, flow, part = [], {"time": [], "max_err": [], "l2_err": []}, {"time": [], "max_err": [], "l2_err": []}
    metrics = {"T": T, "t_star_reference": t_star, "reference_max_p": float(p_ref.max()), "flow": [], "particles": []}
    for b in cfg.budgets:
        res = train_case(cfg, ctx, f"flow-{b}", model, p0, NoAdvection(), T, iterations=b)
        sol = res.solution
        t0 = time.perf_counter()
        if sol.t_final < T - 1e-9:
            ctx.log(f"  flow with {b} iterations stopped at t = {sol.t_final:g} < T = {T:g}; not compared")
            continue
        cmp_ = compare_radial(r, ev.radial_profile(sol, T, r, n_dirs=cfg.n_dirs, seed=cfg.seed), p_ref, dim)
        peak = ev.max_density(sol, T, n=20_000, seed=cfg.seed)
        eval_s = time.perf_counter() - t0
        wt = wall_time(res) + eval_s
        max_err = abs(peak - p_ref.max()) / p_ref.max()
        flow["time"].append(wt)
        flow["max_err"].append(max_err)
        flow["l2_err"].append(cmp_["relative_l2"])
        metrics["flow"].append({"iterations": b, "wall_s": wt, "max_p": peak, "max_rel_error": max_err,
                                "relative_l2": cmp_["relative_l2"], "segments": len(res.segments)})
        rows.append([f"DeepLagrangian, {b} iterations/segment", wt, peak, max_err, cmp_["relative_l2"]])
    for P in cfg.particle_counts:
        g = torch.Generator().manual_seed(cfg.seed + P)
        opts = ParticleOptions(n_particles=P, dt=cfg.dt_particles, t_end=T, delta=cfg.delta, seed=cfg.seed,
                               record_times=(T,), max_density=False, checkpoint_every=10**9)
        t0 = time.perf_counter()
        pres = simulate_particles(model, opts, NoAdvection(), p0.sample(P, g).numpy(), progress=ctx.progress)
        x = pres.snapshots[-1]
        peak = kde_max_density(x, rng=np.random.default_rng(cfg.seed))
        ang = (np.arange(cfg.n_dirs) + 0.5) * 2 * np.pi / cfg.n_dirs
        if dim == 2:
            dirs = np.stack([np.cos(ang), np.sin(ang)], 1)
        else:
            dirs = np.random.default_rng(cfg.seed).standard_normal((cfg.n_dirs, 3))
            dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        pts = (r[:, None, None] * dirs[None]).reshape(-1, dim)
        prof = kde_density(x, pts, rng=np.random.default_rng(cfg.seed)).reshape(len(r), -1).mean(1)
        wt = time.perf_counter() - t0
        cmp_ = compare_radial(r, prof, p_ref, dim)
        max_err = abs(peak - p_ref.max()) / p_ref.max()
        part["time"].append(wt)
        part["max_err"].append(max_err)
        part["l2_err"].append(cmp_["relative_l2"])
        metrics["particles"].append({"P": P, "wall_s": wt, "max_p": peak, "max_rel_error": max_err,
                                     "relative_l2": cmp_["relative_l2"]})
        rows.append([f"particles + KDE, P = {P}", wt, peak, max_err, cmp_["relative_l2"]])
    ctx.rundir.write_arrays("walltime.npz", {**{f"flow_{k}": np.array(v) for k, v in flow.items()},
                                             **{f"part_{k}": np.array(v) for k, v in part.items()}})
    verdicts = [_verdict("max p", flow["time"], flow["max_err"], part["time"], part["max_err"]),
                _verdict("profile L2", flow["time"], flow["l2_err"], part["time"], part["l2_err"])]
    metrics["verdicts"] = verdicts
    title = (f"D6: {cfg.case} (χM = {model.chi * model.mass:.4g}), compared at T = {T:.4g}"
             + (f" = {T / t_star:.3f} T* (radial T* = {t_star:.4g})" if t_star else ""))
    table = Comparison(
        title=title,
        columns=["method (reference: radial FV; no published table)", "wall time (s)", "max p at T",
                 "rel. error of max p", "rel. L2 of p(r, T)"],
        rows=[["radial FV reference", None, float(p_ref.max()), 0.0, 0.0], *rows],
        note="Wall time: the flow's training plus its evaluation; the particles' simulation plus the KDE. "
             + " ".join(verdicts))
    return ExperimentResult(metrics=metrics, tables=[table], notes=verdicts)
