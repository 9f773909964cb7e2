"""NeuralCPM N3 "bipolar axis": can a learned Hamiltonian make type-2 cells gather at two opposite poles?

Published (NeuralCPM N3; 40 cells, V* = 150, a GPU): the NH + closure model forms a bipolar axis
from random starts and keeps f_vol 0.77, f_frag 1.00; analytic Hamiltonians cannot (the poles lie
on a random axis in each snapshot, so no fixed energy of cell types and positions makes them).

Ours: the snapshots of :mod:`oncodyn.experiments.cpm_bipolar_data` (regenerated into this run);
the analytic baselines (cellsort; cellsort + a learned potential) and the NH + closure trained by
PCD (:mod:`oncodyn.experiments.cpm_neural_models`); samples from fresh random clusters after
``eval_mcs`` MCS (1,000; the data ran 5,000), scored by the variance ratio (:func:`oncodyn.cpm.sample_metrics.bipolar_ratio`:
> 1 when type 2 sits at both ends of its axis, about 1.15 for random types at this size), f_vol
and f_frag. The network is the spec's ``bipolar`` architecture (embed 5, pools 2, 1, 2, 1, 2, 1)
at half its widths by default (8, 16, 16, 32, 32, 32 instead of 16, 32, 32, 64, 64, 64), which
halves the cost of a ΔH on a CPU; ``--set widths=[16,32,32,64,64,64]`` restores it.

``--preset published`` is NeuralCPM's own training for a GPU: full widths, 10⁴ iterations of
batch 16 at 1 MCS each with the exact network ΔH in the approximate sampler, rotated snapshots
(:data:`~oncodyn.experiments.cpm_neural_models.PUBLISHED_TRAINING`).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from oncodyn.cpm.lattice import CPMState, Lattice
from oncodyn.cpm.observables import fragmented_cells
from oncodyn.cpm.sample_metrics import f_frag, f_vol, mean_bipolar_ratio, volume_range
from oncodyn.cpm.scenarios import bipolar_types
from oncodyn.experiments.cpm_bipolar_data import BipolarDataConfig, bipolar_snapshots, bipolar_start
from oncodyn.experiments.cpm_neural_models import (PUBLISHED_TRAINING, ModelsConfig, figure_arrays, ground_truth_samples,
                                                   plot_models, sampler_note, states_of, train_models,
                                                   training_seconds)
from oncodyn.experiments.registry import Comparison, ExperimentResult, RunContext, plotter, register
from oncodyn.io.rundir import RunDir

PUBLISHED = {"cellsort": "not bipolar", "cellsort+potential": "not bipolar", "cnn": "-", "1nh+cnn": "-",
             "nh": "-", "nh+closure": "bipolar; f_vol 0.77, f_frag 1.00"}


class BipolarModelsConfig(BipolarDataConfig, ModelsConfig):
    """N3: the data setting of ``neuralcpm-bipolar-data`` plus the training of ``ModelsConfig``."""

    models: list[str] = ["cellsort", "cellsort+potential", "nh+closure"]
    widths: list[int] = [8, 16, 16, 32, 32, 32]
    pools: list[int] = [2, 1, 2, 1, 2, 1]
    potential_grid: int = Field(12, ge=1)

    presets = {"quick": {"n_snapshots": 6, "shape": [80, 80], "n_cells": 12, "mcs": 1000.0, "iterations": 3,
                         "analytic_iterations": 6, "batch": 2, "widths": [4, 4, 4, 4, 4, 4], "eval_samples": 3,
                         "eval_mcs": 2.0, "network_eval_mcs": 2.0, "trajectory_frames": 3,
                         "potential_grid": 4},
               # NeuralCPM's training (see PUBLISHED_TRAINING), its bipolar widths, 1 MCS per iteration,
               # resets at 0.025 per iteration, rotated snapshots, a potential per site; a GPU run
               "published": {**PUBLISHED_TRAINING, "widths": [16, 32, 32, 64, 64, 64], "mcs_per_iter": 1.0,
                             "reset_prob": 0.025, "augment": True, "potential_grid": 120}}


@register("neuralcpm-bipolar", BipolarModelsConfig,
          "NeuralCPM N3: analytic vs NH + closure on bipolar-axis tissue; variance ratio, f_vol, f_frag")
def run_bipolar(cfg: BipolarModelsConfig, ctx: RunContext) -> ExperimentResult:
    data_states, starts, _ = bipolar_snapshots(cfg, ctx.rundir, ctx.progress)
    data = {"sigma": np.stack([s.sigma for s in data_states]),
            "cell_type": np.stack([s.cell_type for s in data_states])}
    vr = volume_range(data_states)

    def start(i: int) -> CPMState:
        st = bipolar_start(cfg, i, offset=50_000)[0]
        return CPMState(Lattice(tuple(cfg.shape)), st.sigma, bipolar_types(st.cell_type))

    eval_starts = [start(i) for i in range(cfg.eval_samples)]

    def row(label, published, states, mcs, extra=("-", "-")):
        return [label, published, f"{mcs:g}", f"{mean_bipolar_ratio(states):.2f}", f"{f_vol(states, vr):.2f}",
                f"{f_frag(states):.2f}", f"{np.mean([fragmented_cells(s, 2) for s in states]):.2f}",
                f"{np.mean([fragmented_cells(s, 1) for s in states]):.2f}", *extra]

    truth = ground_truth_samples(cfg, lambda i: bipolar_start(cfg, i, offset=50_000), cfg.sampler, ctx, bipolar_types)
    rows = [row("data (snapshots)", "bipolar", data_states, cfg.mcs), row("random starts", "-", eval_starts, 0),
            row("ground truth H, sampled like the models", "-", truth, cfg.eval_mcs)]
    metrics = {"ratio_data": mean_bipolar_ratio(data_states), "ratio_start": mean_bipolar_ratio(eval_starts),
               "ratio_truth": mean_bipolar_ratio(truth)}
    arrays = {}
    for kind, res in train_models(cfg, data, start, cfg.target, ctx):
        samples = states_of(res)
        rows.append(row(kind, PUBLISHED[kind], samples, float(res["eval_mcs"]),
                        (f"{training_seconds(res):.0f} s", f"{float(res['sample_s']):.0f} s")))
        metrics[f"{kind}_ratio"] = mean_bipolar_ratio(samples)
        metrics[f"{kind}_f_vol"], metrics[f"{kind}_f_frag"] = f_vol(samples, vr), f_frag(samples)
        arrays.update(figure_arrays(kind, res))
    arrays["models"] = np.array([k.replace("+", "_") for k in cfg.models])
    arrays["data_sigma"], arrays["data_cell_type"] = data["sigma"][:3], data["cell_type"][:3]
    ctx.rundir.write_arrays("n3.npz", arrays)
    table = Comparison(
        title=f"N3 bipolar axis ({cfg.shape[0]}×{cfg.shape[1]}, {cfg.n_cells} cells, V* = {cfg.target:g}; "
              f"{cfg.n_snapshots} snapshots; PCD {cfg.iterations} iterations (networks) / {cfg.analytic_iterations} "
              f"(analytic), batch {cfg.batch}; NH widths {cfg.widths}; {cfg.eval_samples} samples from random "
              f"clusters)",
        columns=["model", "published", "MCS from the start", "variance ratio", "f_vol", "f_frag",
                 "fragmented cells / state", "(4-connected)", "training", "sampling"], rows=rows,
        note="Variance ratio (bipolar_ratio): variance of the type-2 sites along their principal axis over that of "
             "all cell sites, mean over samples — the data's value is the target, the random starts' the baseline, "
             "and the ground-truth row (the data's own "
             "Hamiltonian and kinetics from the same starts for the same MCS) what this sampling length allows. "
             f"{sampler_note(cfg)} Reduced: iterations, sampling length and (by default) the network widths. "
             "Fragments: pieces joined through the CPM's Moore neighbourhood (the published f_frag's); the "
             "4-connected count also splits cells whose parts touch only at a corner.")
    return ExperimentResult(metrics=metrics, tables=[table])


def plot_bipolar(rd: RunDir) -> list:
    a = rd.read_arrays("n3.npz")
    panels = {f"data #{j}": (a["data_sigma"][j], a["data_cell_type"][j]) for j in range(len(a["data_sigma"]))}
    return plot_models(rd, "n3.npz", "N3", "random clusters", panels)


plotter("neuralcpm-bipolar")(plot_bipolar)
