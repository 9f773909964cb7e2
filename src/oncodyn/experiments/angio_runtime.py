"""A4 (run time against resolution) and A5 (run time against P): the published seconds beside ours.

Published (NSIPF paper, 3D, dt = 0.1): FDM 7.31 / 56.89 / 742.24 s at 50³ / 100³ / 200³;
classical SIPF (P = 20k) 2955.73 / 3919.37 / 7599.54 s; NSIPF 8.69 / 33.12 / 243.86 s; against
P = 1,000 / 5,000 / 10,000 the classical SIPF takes 211.27 / 998.38 / 1959.34 s and NSIPF
31.97 / 32.21 / 32.42 s.

The measurement is :func:`oncodyn.bench.angiogenesis.bench_angiogenesis` (also ``oncodyn bench
angiogenesis``); this experiment stores it in a run directory with the two tables.
"""

from __future__ import annotations

import json

import numpy as np
from pydantic import Field

from oncodyn.bench.angiogenesis import bench_angiogenesis
from oncodyn.config import ExperimentConfig
from oncodyn.core.atomic import write_json
from oncodyn.experiments.registry import Comparison, ExperimentResult, RunContext, register
from oncodyn.io.rundir import RunDir


class RuntimeConfig(ExperimentConfig):
    """A4/A5 fields (see the benchmark's docstring).

    Attributes:
        bins: A4 resolutions (bins per axis); particles: A5 particle counts; a5_bins: A5 resolution.
        n_particles: P of A4; t_end, dt: the run the totals are projected to.
        steps, classical_steps: timed steps per method (classical SIPF separately: its steps are slow).
        full_run: also run our fast path end to end at 200³ bins, P = n_particles, T = t_end.
    """

    bins: list[int] = [50, 100, 200]
    particles: list[int] = [1000, 5000, 10000, 20000]
    a5_bins: int = Field(50, ge=8)
    n_particles: int = Field(20_000, ge=10)
    t_end: float = Field(50.0, gt=0)
    dt: float = Field(0.1, gt=0)
    steps: int = Field(5, ge=1)
    classical_steps: int = Field(1, ge=1)
    full_run: bool = True

    presets = {"quick": {"bins": [16, 24], "particles": [500, 1000], "a5_bins": 16, "n_particles": 1000, "steps": 1,
                         "full_run": False}}


def plot_runtime(rd: RunDir) -> list:
    from oncodyn.viz import figures as fg

    rows = json.loads((rd.path / "timings.json").read_text())
    panels: dict[str, dict] = {"A4: time per step against bins per axis": {}, "A5: time per step against P": {}}
    for table, panel, key in [("A4", "A4: time per step against bins per axis", "n"),
                              ("A5", "A5: time per step against P", "P")]:
        for m in dict.fromkeys(r["method"] for r in rows if r["table"] == table):
            pts = [(r[key], r["time_per_step_s"]) for r in rows if r["table"] == table and r["method"] == m]
            panels[panel][m] = (np.array([p[0] for p in pts], float), np.array([p[1] for p in pts]))
    out = []
    for i, (title, lines) in enumerate(panels.items()):
        out.append(fg.loglog_fit(rd.figures / f"runtime_{'bins' if i == 0 else 'particles'}.png", lines,
                                 "bins per axis" if i == 0 else "P", "seconds per step", title=title))
    return out


@register("angio-runtime", RuntimeConfig, "A4/A5: run time of FDM, classical SIPF, NSIPF and our fast path vs bins and P",
          plot=plot_runtime)
def run_runtime(cfg: RuntimeConfig, ctx: RunContext) -> ExperimentResult:
    sets = [f"bins={cfg.bins}", f"a5_particles={cfg.particles}", f"a5_bins={cfg.a5_bins}",
            f"n_particles={cfg.n_particles}", f"t_end={cfg.t_end}", f"dt={cfg.dt}", f"steps={cfg.steps}",
            f"classical_steps={cfg.classical_steps}", f"full_run={str(cfg.full_run).lower()}", f"device={ctx.device}"]
    res = bench_angiogenesis(sets=sets, progress=ctx.progress)
    write_json(ctx.rundir.path / "timings.json", [{**r, "n": int(str(r["bins"]).split("^")[0])} for r in res["rows"]],
               indent=1)
    cols = ["method", "bins", "P", "published total (s)", "our time per step (s)", "our projected total (s)",
            "speed-up vs classical SIPF", "speed-up vs FDM"]
    tables = []
    for name, title in [("A4", "A4 run time against resolution"), ("A5", f"A5 run time against P ({cfg.a5_bins}³ bins)")]:
        rows = [[r["method"], r["bins"], r["P"], r["published_total_s"], r["time_per_step_s"], r["projected_total_s"],
                 r["ratio_vs_baseline"], r["ratio_vs_fdm"]] for r in res["rows"] if r["table"] == name]
        tables.append(Comparison(title=f"{title}: dt = {cfg.dt:g}, T = {cfg.t_end:g}, device {res['setting']['device']}",
                                 columns=cols, rows=rows, note=res["extra"]["note"]))
    metrics = {f"{r['table']}_{r['method']}_{r['bins']}_P{r['P']}_s_per_step": r["time_per_step_s"] for r in res["rows"]}
    metrics.update({k: v for k, v in res["extra"].items() if k != "note"})
    return ExperimentResult(metrics=metrics, tables=tables)
