"""N3 diagnostic: which extra energy lets the CPM sampler form N3's bipolar axis in the evaluation's budget?

The N3 closure is sampled from fresh random clusters for ``eval_mcs`` MCS (1,000). Before asking
a network to learn the missing part of the energy, this asks whether a known, ideal one would do
it within that budget, and with which sampler. Each row starts from the N3 evaluation clusters
(:func:`oncodyn.experiments.cpm_bipolar_data.bipolar_start`, offset 50,000, types 3 → 2) and runs
the data's contact and volume energy without its directed motion (J(·,m) = J(1,2) = 16, J(same)
= 6, λ, V*, T as the data; classic kinetics) plus:

- ``none``: nothing (what an analytic cellsort model can do at best);
- ``ratio correction (block sampler)``: −c · bipolar ratio of the whole state, the very score
  of the evaluation, applied by the closure's block sampler
  (:class:`~oncodyn.cpm.block_sampler.BlockSampler`, blocks of ``block_mcs`` MCS accepted or
  rejected by it);
- ``axial force f``: an external potential −f · ((x − c)·u / R)² on type 2
  (:func:`oncodyn.cpm.sample_metrics.principal_axis_field`: the squared coordinate along the
  type's own principal axis, about 1 at the cluster's edge), refreshed every ``refresh_mcs`` MCS:
  the kind of per-copy pull that the guided closure sampler
  (:func:`oncodyn.cpm.ebm.advance_guided`) lets a network exert.

Scored by the variance ratio (:func:`oncodyn.cpm.sample_metrics.bipolar_ratio`) at a few times
and f_frag at the end. The energies are hand-made, not learned: the table bounds what a perfect
closure could reach with each sampler; it does not reproduce a published number.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from oncodyn.cpm.block_sampler import BlockSampler
from oncodyn.cpm.hamiltonians import Contact, ExternalPotential, Hamiltonian, Volume
from oncodyn.cpm.lattice import CPMState, Lattice
from oncodyn.cpm.sample_metrics import bipolar_ratio, f_frag, principal_axis_field
from oncodyn.cpm.samplers import MetropolisSampler
from oncodyn.cpm.scenarios import BIPOLAR_J, bipolar_types
from oncodyn.experiments.cpm_bipolar_data import BipolarDataConfig, bipolar_start
from oncodyn.experiments.cpm_common import cached_result
from oncodyn.experiments.registry import Comparison, ExperimentResult, RunContext, plotter, register
from oncodyn.io.rundir import RunDir


class BipolarOracleConfig(BipolarDataConfig):
    """The N3 data setting plus the extra energies tried.

    Attributes:
        forces: strengths f of the axial force on type 2 (energy at the cluster's edge; T is the
            data's). refresh_mcs: MCS between refreshes of its axis.
        ratio_weights: weights c of the −c · ratio correction run by the block sampler; block_mcs:
            its block length.
        eval_samples, eval_mcs: starts and MCS per start (N3's evaluation: 1,000 MCS).
        checkpoints: fractions of ``eval_mcs`` at which the ratio is reported.
    """

    forces: list[float] = [4.0, 16.0]
    refresh_mcs: float = Field(5.0, gt=0)
    ratio_weights: list[float] = [200.0, 2000.0]
    block_mcs: float = Field(2.0, gt=0)
    eval_samples: int = Field(6, ge=1)
    eval_mcs: float = Field(1000.0, gt=0)
    checkpoints: list[float] = [0.25, 0.5, 1.0]

    presets = {"quick": {"shape": [80, 80], "n_cells": 12, "eval_samples": 2, "eval_mcs": 20.0, "forces": [16.0],
                         "ratio_weights": [200.0]}}


def contact_volume(cfg: BipolarDataConfig) -> Hamiltonian:
    """The data's contact and volume energy over the two biological types, without the directed motion
    (the generator's :data:`~oncodyn.cpm.scenarios.BIPOLAR_J` restricted to medium, type 1 and type 2)."""
    return Hamiltonian((Contact(BIPOLAR_J[:3, :3], order=2), Volume(lam=cfg.lam, target=cfg.target)),
                       temperature=cfg.temperature, copy_order=2)


def run_axial_force(state: CPMState, base: Hamiltonian, force: float, mcs: float, refresh: float, seed: int,
                    cell_type: int = 2) -> CPMState:
    """``mcs`` classic MCS under ``base`` plus −force · :func:`principal_axis_field` on ``cell_type``,
    the field recomputed from the current state every ``refresh`` MCS."""
    rng = np.random.default_rng(seed)
    mu = np.zeros(int(state.cell_type.max()) + 1)
    mu[cell_type] = -force
    st, left = state.copy(), float(mcs)
    while left > 1e-12:
        m = min(refresh, left)
        pot = ExternalPotential(principal_axis_field(st, cell_type), mu)
        ham = Hamiltonian(base.terms + (pot,), temperature=base.temperature, copy_order=base.copy_order)
        smp = MetropolisSampler(st, ham, seed=int(rng.integers(2**62)), hastings=False)
        smp.sweep(m)
        st, left = smp.state.copy(), left - m
    return st


@register("neuralcpm-bipolar-oracle", BipolarOracleConfig,
          "N3 diagnostic: hand-made extra energies (ratio correction by the block sampler, axial force) "
          "from N3's starts")
def run_bipolar_oracle(cfg: BipolarOracleConfig, ctx: RunContext) -> ExperimentResult:
    shape = tuple(cfg.shape)
    base = contact_volume(cfg)
    times = [f * cfg.eval_mcs for f in sorted(cfg.checkpoints)]
    if not times or times[0] <= 0 or times[-1] > cfg.eval_mcs:
        raise ValueError(f"checkpoints must be fractions in (0, 1], got {cfg.checkpoints}")

    def start(i: int) -> CPMState:
        st = bipolar_start(cfg, i, offset=50_000)[0]
        return CPMState(Lattice(shape), st.sigma, bipolar_types(st.cell_type))

    def advance(kind: str, value: float, st: CPMState, mcs: float, seed: int) -> CPMState:
        if kind == "none":
            smp = MetropolisSampler(st, base, seed=seed, hastings=False)
            smp.sweep(mcs)
            return smp.state.copy()
        if kind == "force":
            return run_axial_force(st, base, value, mcs, cfg.refresh_mcs, seed)
        smp = BlockSampler(st, base, lambda s: -value * bipolar_ratio(s), cfg.block_mcs, "classic", seed)
        return smp.sweep(mcs).copy()

    settings = [("none", 0.0)] + [("ratio", c) for c in cfg.ratio_weights] + [("force", f) for f in cfg.forces]
    rows, metrics, arrays = [], {}, {"times": np.array(times), "labels": []}
    for kind, value in settings:
        key = f"{kind}_{value:g}"

        def compute(kind=kind, value=value) -> dict[str, np.ndarray]:
            ratios, finals = np.zeros((cfg.eval_samples, len(times))), []
            for i in range(cfg.eval_samples):
                st, t = start(i), 0.0
                for j, tj in enumerate(times):
                    st = advance(kind, value, st, tj - t, cfg.seed * 1_000_003 + 97 * i + j)
                    t = tj
                    ratios[i, j] = bipolar_ratio(st)
                finals.append(st)
            return {"ratio": ratios, "sigma": np.stack([s.sigma for s in finals]),
                    "cell_type": np.stack([s.cell_type for s in finals])}

        res = cached_result(ctx.rundir, f"oracle_{key}", compute)
        finals = [CPMState(Lattice(shape), s, c) for s, c in zip(res["sigma"], res["cell_type"])]
        label = {"none": "none (contact + volume only)", "ratio": f"ratio correction c = {value:g} (block sampler)",
                 "force": f"axial force f = {value:g}"}[kind]
        mean = res["ratio"].mean(0)
        published = "analytic Hamiltonians: not bipolar" if kind == "none" else "-"
        rows.append([label, published, *[f"{r:.2f}" for r in mean], f"{f_frag(finals):.2f}"])
        arrays["labels"].append(label)
        arrays.update({f"{key}_ratio": mean, f"{key}_sigma": res["sigma"][:3],
                       f"{key}_cell_type": res["cell_type"][:3]})
        metrics[f"ratio_{key}"] = float(mean[-1])
    arrays["keys"] = np.array([f"{k}_{v:g}" for k, v in settings])
    arrays["labels"] = np.array(arrays["labels"])
    ctx.rundir.write_arrays("oracle.npz", arrays)
    starts = [start(i) for i in range(cfg.eval_samples)]
    metrics["ratio_start"] = float(np.mean([bipolar_ratio(s) for s in starts]))
    table = Comparison(
        title=f"N3 oracle ({shape[0]}×{shape[1]}, {cfg.n_cells} cells, V* = {cfg.target:g}, T = {cfg.temperature:g}; "
              f"{cfg.eval_samples} of N3's random starts, variance ratio {metrics['ratio_start']:.2f} at 0 MCS)",
        columns=["extra energy", "published", *[f"ratio at {t:g} MCS" for t in times], "f_frag"], rows=rows,
        note="Hand-made energies on top of the data's contact + volume terms, classic kinetics. The N3 data reach "
             "1.8 and the data's own Hamiltonian ≈ 1.7 in 1,000 MCS (`oncodyn run neuralcpm-bipolar`). Not a "
             "published experiment: it bounds what a perfect closure could reach with each sampler.")
    return ExperimentResult(metrics=metrics, tables=[table])


@plotter("neuralcpm-bipolar-oracle")
def plot_bipolar_oracle(rd: RunDir) -> list:
    from oncodyn.viz.cpm import lattice_figure, observables_figure

    a = rd.read_arrays("oracle.npz")
    keys, labels = [str(k) for k in a["keys"]], [str(x) for x in a["labels"]]
    panels = {f"{lab} #{j}": (a[f"{k}_sigma"][j], a[f"{k}_cell_type"][j]) for k, lab in zip(keys, labels)
              for j in range(len(a[f"{k}_sigma"]))}
    t = a["times"]
    return [lattice_figure(rd.figures / "samples.png", panels, title=f"N3 oracle: states after {t[-1]:g} MCS"),
            observables_figure(rd.figures / "ratio.png", t, {"variance ratio": {lab: a[f"{k}_ratio"]
                                                                                for k, lab in zip(keys, labels)}},
                               xlabel="MCS", title="N3 oracle: variance ratio from random clusters")]
