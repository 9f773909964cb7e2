"""D4/D5: Gaussian clusters that merge -- two in 2D, four (a tetrahedron) in 3D -- against the
regularised interacting-particle reference, without (D4) and with (D5) a cellular flow.

Both methods start from exact samples of the same mixture p0 and use the same mollifier δ.
At ``n_compare`` times up to the end of the flow's run: sliced Wasserstein-2 and energy
distance between the flow's samples and the particles, max ρ of each (the flow: its exact
density maximised; the particles: a Gaussian KDE, which reads a sharp peak low), and the
time of concentration: when max ρ first reaches ``concentration_factor`` × its initial value
(linear interpolation between comparison times). Particle runs are cached under
``results/`` so a rerun reuses them.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator

from oncodyn.deeplagrangian import evaluate as ev
from oncodyn.deeplagrangian.initial import GaussianMixtureP0
from oncodyn.deeplagrangian.metrics import energy_distance, sliced_wasserstein
from oncodyn.deeplagrangian.model import KSWholeSpace
from oncodyn.deeplagrangian.particles import ParticleOptions, simulate_particles
from oncodyn.deeplagrangian.velocity import make_advection
from oncodyn.experiments.deeplagrangian.common import QUICK, DLConfig, subset_of, train_case, wall_time
from oncodyn.experiments.registry import Comparison, ExperimentResult, RunContext, register
from oncodyn.io.rundir import RunDir

D4, D5 = "deeplagrangian-merging", "deeplagrangian-advection"
ADVECTIONS = ("none", "cellular")


class MergingConfig(DLConfig):
    """D4/D5 cases.

    Attributes:
        dims: 2 (two clusters) and/or 3 (four clusters).
        advections: ``none`` and/or ``cellular`` (2D cellular flow, 3D ABC flow).
        amplitude, wavenumber: the cellular flow's speed (length/time) and k (1/length).
        separation: distance of each cluster centre from the origin (length).
        cluster_std: standard deviation of each cluster (length).
        chi_mass_2d, chi_mass_3d: χM of the whole mixture (M = 1 in 2D; χ = 1 in 3D).
        t_end: final time (time units); a multiple of ``dt_particles``.
        n_particles: P of the particle reference; dt_particles its time step.
        n_compare: comparison times, evenly spaced over (0, T].
        concentration_factor: the time of concentration is when max ρ reaches this × max ρ(0).
    """

    dims: list[int] = [2, 3]
    advections: list[str] = ["none"]
    amplitude: float = Field(2.0, allow_inf_nan=False)
    wavenumber: float = Field(math.pi / 2, gt=0, allow_inf_nan=False)
    separation: float = Field(0.75, gt=0, allow_inf_nan=False)
    cluster_std: float = Field(0.35, gt=0, allow_inf_nan=False)
    chi_mass_2d: float = Field(12 * math.pi, gt=0, allow_inf_nan=False)
    chi_mass_3d: float = Field(120.0, gt=0, allow_inf_nan=False)
    t_end: float = Field(0.15, gt=0, allow_inf_nan=False)
    segment: float = Field(0.05, gt=0, allow_inf_nan=False)
    n_particles: int = Field(100_000, ge=100)
    dt_particles: float = Field(0.005, gt=0, allow_inf_nan=False)
    n_compare: int = Field(4, ge=1)
    concentration_factor: float = Field(3.0, gt=1, allow_inf_nan=False)
    base_iterations: int = Field(1500, ge=1)

    presets = {"quick": {**QUICK, "dims": [2], "t_end": 0.02, "segment": 0.01, "n_particles": 2000,
                         "dt_particles": 0.005, "n_compare": 2}}

    _dims = field_validator("dims")(classmethod(lambda cls, v: subset_of(v, (2, 3), "dimensions")))
    _adv = field_validator("advections")(classmethod(lambda cls, v: subset_of(v, ADVECTIONS, "advections")))

    @model_validator(mode="after")
    def _times(self):
        self.times()
        return self

    def times(self) -> list[float]:
        n = round(self.t_end / self.dt_particles)
        if n < 1 or abs(n * self.dt_particles - self.t_end) > 1e-9 * self.t_end:
            raise ValueError(f"t_end: must be a positive multiple of dt_particles = {self.dt_particles}, got {self.t_end}")
        steps = sorted({max(1, round(n * (i + 1) / self.n_compare)) for i in range(self.n_compare)})
        return [s * self.dt_particles for s in steps]

    def setup(self, dim: int) -> tuple[KSWholeSpace, GaussianMixtureP0]:
        a = self.separation
        if dim == 2:
            centres = ((-a, 0.0), (a, 0.0))
            model = KSWholeSpace(mu=self.mu, chi=self.chi_mass_2d, mass=1.0, dim=2)
        else:
            s = a / math.sqrt(3)
            centres = ((s, s, s), (s, -s, -s), (-s, s, -s), (-s, -s, s))
            model = KSWholeSpace(mu=self.mu, chi=1.0, mass=self.chi_mass_3d, dim=3)
        k = len(centres)
        return model, GaussianMixtureP0(centres, (self.cluster_std,) * k, (1.0,) * k)


class AdvectionConfig(MergingConfig):
    """D5: D4 with and without the cellular flow, side by side. 2D by default (about a quarter
    hour on 2 cores); ``--set dims=[2,3]`` adds the 3D ABC-flow cases (the particle reference
    at P = 10^5 costs about 20 s per 3D step on 2 cores)."""

    dims: list[int] = [2]
    advections: list[str] = ["none", "cellular"]


def concentration_time(t: np.ndarray, peak: np.ndarray, factor: float) -> float | None:
    """First time ``peak`` reaches ``factor * peak[0]`` (linear interpolation), or None."""
    target = factor * peak[0]
    above = np.nonzero(peak >= target)[0]
    if not above.size:
        return None
    i = int(above[0])
    if i == 0:
        return float(t[0])
    return float(t[i - 1] + (target - peak[i - 1]) * (t[i] - t[i - 1]) / (peak[i] - peak[i - 1]))


def _particles(cfg: MergingConfig, ctx: RunContext, case: str, model, p0, adv, times) -> dict:
    """The particle reference of a case, cached under results/<case>-particles.npz."""
    name = f"results/{case}-particles.npz"
    if (ctx.rundir.path / name).exists():
        return ctx.rundir.read_arrays(name)
    ctx.rundir.subdir("results")
    g = torch.Generator().manual_seed(cfg.seed + 17)
    x0 = p0.sample(cfg.n_particles, g).numpy()
    opts = ParticleOptions(n_particles=cfg.n_particles, dt=cfg.dt_particles, t_end=cfg.t_end, delta=cfg.delta,
                           seed=cfg.seed, record_times=(0.0, *times), kde_samples=min(cfg.n_particles, 50_000))
    ctx.log(f"  particle reference: P = {cfg.n_particles}, dt = {cfg.dt_particles:g}, {opts.n_steps} steps")
    res = simulate_particles(model, opts, adv, x0, progress=ctx.progress, checkpoint_path=ctx.rundir.checkpoint(f"{case}-particles"))
    out = {"times": res.times, "snapshots": res.snapshots, "max_density": res.max_density,
           "wall_time": np.array(res.wall_time)}
    ctx.rundir.write_arrays(name, out)
    return out


def plot_merging(rd: RunDir) -> list:
    from oncodyn.viz import figures as fg

    z = rd.read_arrays("curves.npz")
    cases = sorted({k.split("/")[0] for k in z})
    out = [fg.curves(rd.figures / "max_density.png",
                     {c: {"particles + KDE": (z[f"{c}/t"], z[f"{c}/peak_particles"]),
                          "DeepLagrangian": (z[f"{c}/t"], z[f"{c}/peak_flow"])} for c in cases}, "t", "max p", logy=True)]
    out.append(fg.curves(rd.figures / "distances.png",
                         {"sliced W2": {c: (z[f"{c}/t"][1:], z[f"{c}/sw2"][1:]) for c in cases},
                          "energy distance": {c: (z[f"{c}/t"][1:], np.maximum(z[f"{c}/energy"][1:], 1e-8)) for c in cases}},
                         "t", "distance to the particles"))
    clouds = {}
    for c in cases:
        clouds[f"{c}: flow, t={z[f'{c}/t'][-1]:.3g}"] = z[f"{c}/flow_final"]
        clouds[f"{c}: particles"] = z[f"{c}/particles_final"]
    out.append(fg.scatter_particles(rd.figures / "final_clouds.png", clouds, half_width=2.0, title="final samples"))
    return out


def _run(cfg: MergingConfig, ctx: RunContext, label: str) -> ExperimentResult:
    rows, metrics, curves = [], {}, {}
    times = cfg.times()
    for dim in cfg.dims:
        for adv_kind in cfg.advections:
            case = f"d{dim}-{adv_kind}"
            model, p0 = cfg.setup(dim)
            adv = make_advection(adv_kind, dim, amplitude=cfg.amplitude, wavenumber=cfg.wavenumber)
            ref = _particles(cfg, ctx, case, model, p0, adv, times)
            res = train_case(cfg, ctx, case, model, p0, adv, cfg.t_end)
            sol = res.solution
            t_all = [0.0] + [t for t in times if t <= sol.t_final + 1e-12]
            flow_x = ev.samples_at(sol, t_all, min(cfg.n_eval, cfg.n_particles), seed=cfg.seed + 1)
            rng = np.random.default_rng(cfg.seed)
            sw, ed, peak_f = [], [], []
            for i, t in enumerate(t_all):
                part = ref["snapshots"][i]
                sw.append(sliced_wasserstein(flow_x[i], part, rng=rng))
                ed.append(energy_distance(flow_x[i], part, rng=rng))
                peak_f.append(ev.max_density(sol, t, n=min(cfg.n_eval, 20_000), seed=cfg.seed + 2))
            peak_p = ref["max_density"][: len(t_all)]
            tc_f = concentration_time(np.array(t_all), np.array(peak_f), cfg.concentration_factor)
            tc_p = concentration_time(np.array(t_all), peak_p, cfg.concentration_factor)
            curves.update({f"{case}/t": np.array(t_all), f"{case}/sw2": np.array(sw), f"{case}/energy": np.array(ed),
                           f"{case}/peak_flow": np.array(peak_f), f"{case}/peak_particles": peak_p,
                           f"{case}/flow_final": flow_x[-1][:4000], f"{case}/particles_final": ref["snapshots"][len(t_all) - 1][:4000]})
            wt, wp = wall_time(res), float(ref["wall_time"])
            metrics[case] = {"t": t_all, "sliced_w2": sw, "energy_distance": ed, "max_p_flow": peak_f,
                             "max_p_particles": peak_p.tolist(), "concentration_time_flow": tc_f,
                             "concentration_time_particles": tc_p, "t_reached": sol.t_final, "stopped": res.stopped,
                             "train_time_s": wt, "particle_time_s": wp, "base_fit": res.base}
            fmt = (lambda v: "not reached" if v is None else f"{v:.4g}")
            rows.append([case, fmt(tc_p), fmt(tc_f), float(peak_p[-1]), peak_f[-1], sw[-1], ed[-1], sol.t_final, wp, wt])
    ctx.rundir.write_arrays("curves.npz", curves)
    table = Comparison(
        title=f"{label}: merging clusters (separation {cfg.separation:g}, std {cfg.cluster_std:g}), δ = {cfg.delta:g}; "
              f"reference: {cfg.n_particles} interacting particles, dt = {cfg.dt_particles:g}",
        columns=["case", "concentration time, particles (reference; no published table)", "concentration time, ours",
                 "max p at T, particles + KDE", "max p at T, ours", "sliced W2 at T", "energy distance at T", "t reached",
                 "particle wall time (s)", "train time (s)"],
        rows=rows,
        note=f"Concentration time: max p first ≥ {cfg.concentration_factor:g} × its initial value. The particles' max p "
             "is a Gaussian KDE (Scott's rule), which reads a sharp peak low; ours is the flow's exact density "
             "maximised. Distances are between equal numbers of samples; at t = 0 they measure only sampling noise "
             "and the fit of p0 (metrics.json).")
    return ExperimentResult(metrics=metrics, tables=[table])


@register(D4, MergingConfig, "D4: DeepLagrangian vs interacting particles on merging clusters (2 in 2D, 4 in 3D)",
          plot=plot_merging)
def run_merging(cfg: MergingConfig, ctx: RunContext) -> ExperimentResult:
    return _run(cfg, ctx, "D4")


@register(D5, AdvectionConfig, "D5: D4 with a cellular (2D) / ABC (3D) flow, with and without advection side by side",
          plot=plot_merging)
def run_advection(cfg: AdvectionConfig, ctx: RunContext) -> ExperimentResult:
    return _run(cfg, ctx, "D5")
