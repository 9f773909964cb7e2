"""Graner–Glazier (1992) cell sorting in 2D (several seeds) and a 3D sorting run on a 60³ lattice.

Published (Graner & Glazier 1992, one MCS = 16 N attempts): the heterotypic boundary fraction
falls roughly logarithmically in time, ≈ 0.40 at 1 MCS, ≈ 0.12 at 10³ MCS, ≈ 0.05 at 10⁴ MCS.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from oncodyn.cpm.driver import record_times, simulate
from oncodyn.cpm.observables import heterotypic_fraction, sorting_index, summary
from oncodyn.cpm.scenarios import GG_PAPER_MCS, graner_glazier
from oncodyn.core.fitting import fit_slope
from oncodyn.experiments.cpm_common import CPMConfig, build_sampler, cached_result, interp_log
from oncodyn.experiments.registry import Comparison, ExperimentResult, RunContext, plotter, register
from oncodyn.io.rundir import RunDir

PUBLISHED = {1.0: 0.40, 1e3: 0.12, 1e4: 0.05}


def sorting_observables(state) -> dict[str, float]:
    """Heterotypic fraction (cell–cell border, and with the medium border), sorting index; 4-neighbour pairs."""
    return {"heterotypic": heterotypic_fraction(state, order=1),
            "heterotypic_with_medium": heterotypic_fraction(state, order=1, include_medium=True),
            "sorting_index": sorting_index(state, order=1)}


class GGSortingConfig(CPMConfig):
    """Graner–Glazier sorting.

    Attributes:
        shape: lattice (sites). n_cells: cells in the aggregate (half dark, half light).
        target: target area (sites). paper_mcs: duration in the paper's MCS (16 lattice-MCS each).
        n_seeds: independent runs (seeds ``seed .. seed + n_seeds − 1``). n_records: log-spaced records.
        contact_order: neighbourhood order of the contact energy (2 = Moore; see
            :func:`oncodyn.cpm.scenarios.graner_glazier` for why not 4).
        frames: keep every record of the first seed for the animation.
    """

    shape: list[int] = [100, 100]
    n_cells: int = Field(150, ge=2)
    target: float = Field(40.0, gt=0)
    paper_mcs: float = Field(1000.0, gt=0)
    n_seeds: int = Field(5, ge=1)
    n_records: int = Field(30, ge=2)
    contact_order: int = Field(2, ge=1, le=4)
    frames: bool = True

    presets = {"quick": {"shape": [50, 50], "n_cells": 40, "paper_mcs": 20.0, "n_seeds": 2, "n_records": 8},
               "full": {"paper_mcs": 10000.0, "n_records": 40}}


@register("cpm-sorting", GGSortingConfig,
          "CPM: Graner-Glazier 1992 cell sorting, heterotypic boundary fraction vs time over seeds")
def run_gg_sorting(cfg: GGSortingConfig, ctx: RunContext) -> ExperimentResult:
    times = record_times(cfg.paper_mcs * GG_PAPER_MCS, cfg.n_records, log=True, t_first=1.0)
    per_seed = []
    for k in range(cfg.n_seeds):
        seed = cfg.seed + k

        def one(seed=seed, k=k):
            state, ham = graner_glazier(tuple(cfg.shape), cfg.n_cells, cfg.target, contact_order=cfg.contact_order,
                                        seed=seed)
            smp = build_sampler(cfg.sampler, state, ham, seed)
            snap = range(len(times)) if (k == 0 and cfg.frames) else (0, len(times) // 2, len(times) - 1)
            series, snaps, info = simulate(smp, times, sorting_observables, snapshot_at=snap, progress=ctx.progress,
                                           desc=f"GG sorting seed {seed}",
                                           checkpoint=ctx.rundir.checkpoint(f"gg_seed{seed}"))
            idx = sorted(snaps)
            return {**{f"series_{n}": v for n, v in series.items()}, "snap_index": np.array(idx),
                    "snaps": np.stack([snaps[i] for i in idx]), "cell_type": state.cell_type,
                    "attempts": np.array(smp.attempts), "wall_time": np.array(info["wall_time"])}

        per_seed.append(cached_result(ctx.rundir, f"gg_seed{seed}", one))
    paper_t = times / GG_PAPER_MCS
    het = np.stack([r["series_heterotypic"] for r in per_seed])
    hetm = np.stack([r["series_heterotypic_with_medium"] for r in per_seed])
    rows = []
    marks = [m for m in (1.0, 10.0, 100.0, 1e3, 1e4) if m <= cfg.paper_mcs * (1 + 1e-9)]
    for m in marks:
        vals = np.array([interp_log(paper_t, h, m) for h in het])
        valm = np.array([interp_log(paper_t, h, m) for h in hetm])
        pub = PUBLISHED.get(m)
        rows.append([f"{m:g}", "-" if pub is None else f"≈ {pub:.2f}", f"{vals.mean():.3f} ± {vals.std(ddof=1) if len(vals) > 1 else 0:.3f}",
                     f"{vals.min():.3f} – {vals.max():.3f}", f"{valm.mean():.3f}",
                     "-" if pub is None else f"{vals.mean() - pub:+.3f}"])
    keep = (paper_t >= 1.0)
    slope = fit_slope(np.log10(paper_t[keep]), het.mean(0)[keep]) if keep.sum() > 2 else float("nan")
    wall = float(sum(float(r["wall_time"]) for r in per_seed))
    att = float(sum(float(r["attempts"]) for r in per_seed))
    table = Comparison(
        title=f"Graner–Glazier sorting: heterotypic boundary fraction ({cfg.shape[0]}×{cfg.shape[1]}, {cfg.n_cells} cells "
              f"of area {cfg.target:g}, {cfg.n_seeds} seeds, {cfg.sampler} kinetics)",
        columns=["paper MCS (16 N attempts)", "published", f"ours (mean ± sd, {cfg.n_seeds} seeds)", "ours min – max",
                 "ours, medium border in the denominator", "ours − published"], rows=rows,
        note="Heterotypic fraction = dark–light border / all cell–cell border (4-neighbour pairs, medium excluded); "
             "the next column adds the cell–medium border to the denominator. The published values were read off "
             f"the paper's figure. Fitted fall per decade of time (paper MCS ≥ 1): {slope:.3f}. "
             f"{att:.3g} copy attempts in {wall:.1f} s over all seeds.")
    metrics = {"heterotypic_at": {f"{m:g}": float(np.mean([interp_log(paper_t, h, m) for h in het])) for m in marks},
               "slope_per_decade": slope, "wall_time_s": wall, "attempts": att, "sampler": cfg.sampler}
    ctx.rundir.write_arrays("sorting.npz", {"paper_t": paper_t, "het": het, "het_medium": hetm,
                                            "sorting_index": np.stack([r["series_sorting_index"] for r in per_seed]),
                                            "snaps": per_seed[0]["snaps"], "snap_index": per_seed[0]["snap_index"],
                                            "cell_type": per_seed[0]["cell_type"]})
    return ExperimentResult(metrics=metrics, tables=[table])


def plot_gg_sorting(rd: RunDir) -> list:
    from oncodyn.viz import cpm as vc

    a = rd.read_arrays("sorting.npz")
    t, ct, snaps, idx = a["paper_t"], a["cell_type"], a["snaps"], a["snap_index"]
    pos = t > 0
    out = [vc.observables_figure(rd.figures / "heterotypic_vs_time.png", t[pos],
                                 {"heterotypic boundary fraction": {"ours (cell–cell border)": a["het"][:, pos],
                                                                    "ours (with medium border)": a["het_medium"][:, pos],
                                                                    "published (points joined in log t)": _published_curve(t[pos])},
                                  "sorting index": {"ours": a["sorting_index"][:, pos]}},
                                 xlabel="paper MCS", logx=True, title="Graner–Glazier cell sorting")]
    pick = [0, len(idx) // 2, len(idx) - 1]
    out.append(vc.lattice_figure(rd.figures / "lattice.png",
                                 {f"t = {t[idx[i]]:.3g} paper MCS": (snaps[i], ct) for i in pick},
                                 title="dark (type 1) and light (type 2) cells"))
    if len(idx) > 3:
        out.append(vc.animation(rd.figures / "sorting.gif", [(s, ct) for s in snaps], times=t[idx]))
    return [p for p in out if str(p).endswith(".png")] + [p for p in out if not str(p).endswith(".png")]


def _published_curve(t: np.ndarray) -> np.ndarray:
    """The published points joined linearly in log time (NaN outside 1 … 10⁴)."""
    pt = np.array(sorted(PUBLISHED))
    pv = np.array([PUBLISHED[k] for k in pt])
    y = np.interp(np.log10(t), np.log10(pt), pv)
    y[(t < pt[0]) | (t > pt[-1])] = np.nan
    return y


plotter("cpm-sorting")(plot_gg_sorting)


# ----------------------------------------------------------------------------- 3D


class Sorting3DConfig(CPMConfig):
    """Cell sorting on a cubic lattice with the Graner–Glazier energies.

    Attributes:
        shape: lattice (60³ by default). n_cells, target: cells and their target volume (sites).
        mcs: lattice MCS. n_records: log-spaced records. contact_order, copy_order: 3D neighbourhoods
            (order 1 = 6 neighbours, 2 = 18).
    """

    shape: list[int] = [60, 60, 60]
    n_cells: int = Field(600, ge=2)
    target: float = Field(60.0, gt=0)
    mcs: float = Field(2000.0, gt=0)
    n_records: int = Field(12, ge=2)
    contact_order: int = Field(1, ge=1, le=3)
    copy_order: int = Field(2, ge=1, le=3)

    presets = {"quick": {"shape": [24, 24, 24], "n_cells": 40, "target": 60.0, "mcs": 40.0, "n_records": 4}}


@register("cpm-sorting-3d", Sorting3DConfig, "CPM: 3D cell sorting (Graner-Glazier energies) on a 60^3 lattice, slices")
def run_sorting_3d(cfg: Sorting3DConfig, ctx: RunContext) -> ExperimentResult:
    state, ham = graner_glazier(tuple(cfg.shape), cfg.n_cells, cfg.target, contact_order=cfg.contact_order,
                                copy_order=cfg.copy_order, seed=cfg.seed)
    smp = build_sampler(cfg.sampler, state, ham, cfg.seed)
    times = record_times(cfg.mcs, cfg.n_records, log=True, t_first=1.0)
    series, snaps, info = simulate(smp, times, sorting_observables, snapshot_at=(0, len(times) - 1),
                                   progress=ctx.progress, desc="3D sorting",
                                   checkpoint=ctx.rundir.checkpoint("sorting3d"))
    end = summary(smp.state, order=1)
    het = series["heterotypic"]
    rows = [["heterotypic fraction, start → end", "2D: ≈ 0.40 → 0.12 (10³ paper MCS); no 3D figure",
             f"{het[0]:.3f} → {het[-1]:.3f}"],
            ["type-2 (light) share of border with the medium", "light cells outside (sorting with engulfment)",
             f"{end['medium_contact_t2']:.3f} (type 1: {end['medium_contact_t1']:.3f})"],
            ["mean cell volume (target)", f"{cfg.target:g}", f"{end['mean_volume']:.1f} ± {end['std_volume']:.1f}"],
            ["copy attempts per second", "-", f"{smp.attempts / info['wall_time']:.3g}"]]
    table = Comparison(title=f"3D sorting ({'×'.join(map(str, cfg.shape))}, {cfg.n_cells} cells of volume {cfg.target:g}, "
                             f"{cfg.mcs:g} MCS, {cfg.sampler} kinetics)",
                       columns=["quantity", "published / expected", "ours"], rows=rows,
                       note="Graner–Glazier energies (J(d,d)=2, J(d,l)=11, J(l,l)=14, J(·,m)=16, λ=1, T=10) with "
                            f"contact order {cfg.contact_order} and copy order {cfg.copy_order}. Sorting is the "
                            "expected qualitative outcome: dark cells cluster inside, light cells cover the surface.")
    ctx.rundir.write_arrays("sorting3d.npz", {"mcs": series["mcs"], "het": het, "sorting_index": series["sorting_index"],
                                              "start": snaps[0], "end": snaps[len(times) - 1],
                                              "cell_type": state.cell_type})
    return ExperimentResult(metrics={"heterotypic_start": float(het[0]), "heterotypic_end": float(het[-1]),
                                     "wall_time_s": info["wall_time"], "attempts": smp.attempts, **end},
                            tables=[table])


def plot_sorting_3d(rd: RunDir) -> list:
    from oncodyn.viz import cpm as vc

    a = rd.read_arrays("sorting3d.npz")
    t = a["mcs"]
    return [vc.lattice_figure(rd.figures / "slices.png", {"start": (a["start"], a["cell_type"]),
                                                          f"{t[-1]:g} MCS": (a["end"], a["cell_type"])},
                              title="3D sorting: central slices"),
            vc.observables_figure(rd.figures / "observables.png", t[1:],
                                  {"heterotypic boundary fraction": {"ours": a["het"][1:]},
                                   "sorting index": {"ours": a["sorting_index"][1:]}}, xlabel="MCS", logx=True)]


plotter("cpm-sorting-3d")(plot_sorting_3d)
