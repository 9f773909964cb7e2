"""Glioma on a patient's axial slice (MNI152 by default): forward to day 150 and the inverse.

Published (PINN, V100, an MRI axial slice): forward T = 150 d with 20,000 collocation points,
100k Adam + BFGS in 50 min, final loss 1.3e-5, anisotropic growth along white matter, radius
≈ 1.5 cm at day 150; inverse from 26,830 observations up to day 150: after 800k epochs (≈4.2 h)
D 3.6%, ρ 1.2%; stopping tolerance 0.20 → 76 min, D 12.9%, ρ 3.9%.

The source's patient is not public; ours is the MNI152 template with the tumour origin in
deep white matter (:data:`~oncodyn.experiments.glioma_common.ORIGIN_MNI`).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from oncodyn.experiments.glioma_common import (INVERSE_COLUMNS, AnatomyConfig, InverseStudyConfig,
                                               check_origin_in_tissue, clinical_outputs, load_anatomy,
                                               origin_in_grid, pinn_problem, plot_inverse, run_inverse_study,
                                               tumour_series)
from oncodyn.experiments.registry import Comparison, ExperimentResult, RunContext, plotter, register
from oncodyn.io.rundir import RunDir
from oncodyn.tumour.anatomy import block_average, refine, slice_through
from oncodyn.tumour.fk import simulate
from oncodyn.tumour.synthetic import domain_of, observe_from_finer, to_fine_frame


def patient_slice(cfg: AnatomyConfig):
    """The axial slice through the origin, the origin in its grid mm, and the 3D maps."""
    maps3 = load_anatomy(cfg)
    sl = slice_through(maps3, cfg.origin_world, axis=2)
    return sl, origin_in_grid(sl, cfg.origin_world)


def anisotropy(u: np.ndarray, spacing, level: float = 0.01) -> float:
    """sqrt of the ratio of the largest to the smallest principal second moment of {u >= level} (1 = round)."""
    idx = np.argwhere(u >= level) * np.asarray(spacing)
    if len(idx) < 3:
        return float("nan")
    ev = np.linalg.eigvalsh(np.cov(idx.T))
    return float(np.sqrt(ev[-1] / max(ev[0], 1e-12)))


# ----------------------------------------------------------------------------- forward


class Patient2DForwardConfig(AnatomyConfig):
    """Forward on the axial slice through the origin.

    Attributes:
        t_end: days. n_out: output times. reference_factor: the same case on a grid this many
            times finer gives the discretisation error (1 skips it).
        pinn_budget_s: wall-time budget of the PINN forward baseline (0 skips it);
            pinn_collocation: its collocation points (published 20,000).
    """

    t_end: float = Field(150.0, gt=0)
    n_out: int = Field(6, ge=1)
    reference_factor: int = Field(2, ge=1)
    pinn_budget_s: float = Field(300.0, ge=0)
    pinn_collocation: int = Field(20_000, ge=100)

    presets = {"quick": {"resolution_mm": 2.0, "t_end": 60.0, "n_out": 2, "pinn_budget_s": 4.0,
                         "pinn_collocation": 500}}


@register("glioma-patient2d-forward", Patient2DForwardConfig,
          "glioma: MNI152 axial slice, FD forward to day 150 (radius, anisotropy, RT plans) + PINN baseline")
def run_patient2d_forward(cfg: Patient2DForwardConfig, ctx: RunContext) -> ExperimentResult:
    sl, x0 = patient_slice(cfg)
    p = cfg.params()
    dom = domain_of(sl, cfg.grey_ratio, cfg.phase(), cfg.phi_min)
    check_origin_in_tissue(dom, x0)
    t = np.linspace(cfg.t_end / cfg.n_out, cfg.t_end, cfg.n_out)
    ctx.log(f"patient 2D forward: slice {sl.shape} at {sl.spacing[0]:g} mm, x0 = {np.round(x0, 1).tolist()} grid mm")
    sol = simulate(dom, p, x0, t, scheme=cfg.scheme, cfl=cfg.cfl, progress=ctx.progress, desc="FD 2D")
    full = dom.embed(sol.u)
    ser = tumour_series(t, full, sl.spacing, cfg)
    m = {"shape": list(sl.shape), "spacing": list(sl.spacing), "slice_index": sl.slice_index,
         "x0_grid_mm": x0.tolist(), "wall_time_s": sol.wall_time, "n_steps": sol.n_steps,
         "series": {k: v.tolist() for k, v in ser.items()}}
    an = anisotropy(full[-1], sl.spacing)
    white_frac = float((full[-1] * sl.white).sum() / max(full[-1].sum(), 1e-12))
    m["anisotropy"], m["tumour_fraction_in_white"] = an, white_frac
    rows = [["radius at day %g: u ≥ 0.01 (mm)" % cfg.t_end, "≈ 15", ser["radius_u>=0.01"][-1]],
            ["radius, oedema u ≥ %g (mm)" % cfg.oedema_level, "-", ser["radius_oedema"][-1]],
            ["max u", "-", ser["max_u"][-1]],
            ["anisotropy (principal axes ratio of u ≥ 0.01)", "anisotropic along white matter", an],
            ["share of tumour cells in white matter / white share of the slice", "-",
             f"{white_frac:.2f} / {float(sl.white.sum() / max(sl.tissue().sum(), 1e-12)):.2f}"],
            ["FD wall time", "PINN: 50 min (V100)", f"{sol.wall_time:.2f} s ({sol.n_steps} steps)"]]
    arrays = {"t": t, "u": full, "background": sl.tissue(), "white": sl.white, **{k: v for k, v in ser.items()}}
    if cfg.reference_factor > 1:
        f = cfg.reference_factor
        fine_maps = refine(sl, f)
        fine = domain_of(fine_maps, cfg.grey_ratio, {**cfg.phase(), "width_voxels": cfg.phase_width * f}, cfg.phi_min)
        fs = simulate(fine, p, to_fine_frame(x0, f, fine_maps.spacing), [cfg.t_end], cfl=0.5, progress=ctx.progress,
                      desc=f"FD reference x{f}")
        ref = block_average(fine.embed(fs.u[0]), f)[tuple(slice(0, n) for n in full.shape[1:])]
        inside = dom.embed(dom.phi) >= 0.5
        err = float(np.linalg.norm((full[-1] - ref)[inside]) / np.linalg.norm(ref[inside]))
        m["rel_l2_vs_fine"] = err
        rows.append([f"relative L2 vs the same case on a {f}x finer grid (block-averaged)", "-", f"{100 * err:.2f}%"])
    if cfg.pinn_budget_s > 0:
        from oncodyn.tumour.pinn import PINNOptions, train_forward

        ctx.log(f"  PINN forward baseline: budget {cfg.pinn_budget_s:g} s")
        pr = train_forward(pinn_problem(dom, x0, cfg.t_end, p),
                           p, PINNOptions(n_collocation=cfg.pinn_collocation, time_budget_s=cfg.pinn_budget_s,
                                          record_every=200, seed=cfg.seed, device=ctx.device), progress=ctx.progress)
        up = dom.embed(pr.predict_grid(cfg.t_end))
        inside = dom.embed(dom.phi) >= 0.5
        perr = float(np.linalg.norm((up - full[-1])[inside]) / np.linalg.norm(full[-1][inside]))
        final_loss = pr.loss_after_lbfgs if pr.loss_after_lbfgs is not None else pr.history[-1]["loss"]
        m["pinn"] = {"wall_time_s": pr.wall_time_s, "adam_epochs": pr.adam_epochs_run, "lbfgs_iterations": pr.lbfgs_iterations,
                     "final_loss": final_loss, "rel_l2_vs_fd": perr}
        arrays["u_pinn"] = up
        rows.append([f"PINN on this CPU: {pr.adam_epochs_run} Adam + {pr.lbfgs_iterations} L-BFGS in {pr.wall_time_s:.0f} s",
                     "100k Adam + BFGS, 50 min, final loss 1.3e-5", f"loss {final_loss:.2e}, relative L2 vs FD {100 * perr:.1f}%"])
    cm, plans = clinical_outputs(ctx.rundir, sl, dom, t, sol.u, cfg)
    m["radiotherapy"] = cm
    arrays.update({"plan_standard": plans["standard"], "plan_model": plans["model"], "core": plans["core"]})
    rows.append([f"RT plans at day {cfg.t_end:g}: standard (core + {cfg.margin_mm:g} mm) vs model (equal area)", "-",
                 f"Dice {cm['overlap']['dice']:.2f}, areas {cm['standard_volume']:.0f} / {cm['model_volume']:.0f} mm², "
                 f"model threshold u ≥ {cm['threshold_model_plan']:.3g}"])
    ctx.rundir.write_arrays("fields.npz", arrays)
    table = Comparison(title=f"Patient 2D forward (axial slice z = {cfg.origin_world[2]:g} mm, D_w = {p.D_white}, ρ = {p.rho}, T = {cfg.t_end:g} d)",
                       columns=["quantity", "published", "ours"], rows=rows,
                       note="The published patient is not public; ours is the MNI152 template. Radii are equivalent radii "
                            "(area = π r²). NIfTI outputs (u over time, core/oedema, both RT plans) keep the input affine.")
    return ExperimentResult(metrics=m, tables=[table])


def plot_patient2d_forward(rd: RunDir) -> list:
    from oncodyn.viz import figures as fg
    from oncodyn.viz.tumour import overlay_slices

    a = rd.read_arrays("fields.npz")
    sp = rd.read_metrics()["spacing"]
    out = [overlay_slices(rd.figures / "u_T_overlay.png", a["background"], a["u"][-1], sp,
                          contours={"core": (a["core"], "cyan"), "standard plan": (a["plan_standard"], "lime"),
                                    "model plan": (a["plan_model"], "magenta")},
                          title=f"u at day {a['t'][-1]:g} with RT plans")]
    if "u_pinn" in a:
        out.append(fg.field_slices(rd.figures / "fd_vs_pinn.png", {"FD": a["u"][-1], "PINN": a["u_pinn"],
                                                                    "PINN - FD": a["u_pinn"] - a["u"][-1]},
                                   [0, a["u"].shape[1], 0, a["u"].shape[2]]))
    out.append(fg.curves(rd.figures / "radius_vs_time.png",
                         {"equivalent radius": {k.replace("radius_", ""): (a["t"], a[k]) for k in a if k.startswith("radius_")}},
                         "t (days)", "radius (mm)"))
    return out


plotter("glioma-patient2d-forward")(plot_patient2d_forward)


# ----------------------------------------------------------------------------- inverse


class Patient2DInverseConfig(AnatomyConfig, InverseStudyConfig):
    """Inverse on the axial slice: data simulated on a grid ``data_factor`` times finer.

    Attributes:
        obs_times: observation days. data_factor: refinement of the data grid (>= 2: no inverse crime).
    """

    obs_times: list[float] = [100.0, 150.0]
    data_factor: int = Field(2, ge=1)

    presets = {"quick": {"resolution_mm": 2.0, "obs_times": [40.0, 60.0], "grid_size": 3, "mcmc_steps": 10,
                         "mcmc_burn": 2, "mcmc_walkers": 8, "pinn_budget_s": 5.0, "pinn_collocation": 500,
                         "pinn_record_every": 20}}


PATIENT_PUBLISHED = [["published PINN, V100, tol 0.20", "76 min", 12.9, 3.9, "-", "-"],
                     ["published PINN, V100, 800k epochs", "≈4.2 h", 3.6, 1.2, "-", "-"]]


@register("glioma-patient2d-inverse", Patient2DInverseConfig,
          "glioma: MNI152 slice, (D_w, rho) from noisy densities at 2 times (finer-grid data); ours vs PINN")
def run_patient2d_inverse(cfg: Patient2DInverseConfig, ctx: RunContext) -> ExperimentResult:
    sl, x0 = patient_slice(cfg)
    truth = cfg.params()
    ctx.log(f"patient 2D inverse: data on a {cfg.data_factor}x finer grid, noise σ = {cfg.noise}")
    case = observe_from_finer(refine(sl, cfg.data_factor), cfg.data_factor, truth, x0, cfg.obs_times, noise=cfg.noise,
                              seed=cfg.seed, phase=cfg.phase(), phi_min=cfg.phi_min, progress=ctx.progress)
    check_origin_in_tissue(case.domain, x0)
    m, (rows, *tables), arrays = run_inverse_study(ctx, case.domain, case.obs, truth, x0, cfg, "patient 2D inverse",
                                                   float(max(cfg.obs_times)))
    m.update({"noise": cfg.noise, "data_factor": cfg.data_factor, "fine_wall_time_s": case.fine_wall_time,
              "acceptance": {"errors_below_5pct": all(v < 0.05 for v in m["fd"]["errors"].values()),
                             "wall_time_below_120s": m["fd"]["wall_time_s"] <= 120.0,
                             "intervals_contain_truth": all(m["fd"]["truth_inside"].values())}})
    arrays.update({"observed_last": case.domain.embed(case.obs.values[-1]), "background": case.maps.tissue()})
    ctx.rundir.write_arrays("inverse.npz", arrays)
    main = Comparison(
        title=f"Patient 2D inverse (MNI152 axial slice, {case.obs.n} observations at days {cfg.obs_times}, σ = {cfg.noise})",
        columns=INVERSE_COLUMNS, rows=rows + PATIENT_PUBLISHED,
        note=f"Data: simulated on a {cfg.data_factor}x finer grid (its own phase field, half the step), block-averaged "
             "onto the inversion grid, plus Gaussian noise. Acceptance: both errors < 5% in ≤ 2 min with 95% "
             f"intervals containing the truth: {m['acceptance']}.")
    return ExperimentResult(metrics=m, tables=[main] + tables)


plotter("glioma-patient2d-inverse")(plot_inverse)
