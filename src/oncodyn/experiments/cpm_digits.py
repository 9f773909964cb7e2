"""NeuralCPM N2 "cellular digits": six Hamiltonians learned from digit-shaped tissue, scored by f_vol, f_frag, CS.

Published (NeuralCPM N2; 100×100, 50 cells, V* = 100, 10⁴ PCD iterations on a GPU), (f_vol,
f_frag, CS): cellsort 1.00/1.00/2.47; cellsort+potential 1.00/1.00/3.11; CNN 0.00/0.05/3.70;
1NH+CNN 0.06/0.87/3.53; NH 0.11/0.99/4.91; NH+closure 1.00/1.00/4.35.

Ours: the same lattice and tissue; the snapshots of :mod:`oncodyn.experiments.cpm_digits_data`
(regenerated into this run); every model trained by PCD (:mod:`oncodyn.experiments.cpm_neural_models`)
for far fewer iterations, networks with the first-order ΔH on a CPU; samples from fresh random
aggregates (the data's starting distribution) after ``eval_mcs`` MCS (the data's 1,000; the pure
networks, sampled with a network ΔH per proposal, ``network_eval_mcs`` = 100); the Classifier Score from
the digit classifier trained on the snapshots. The NH architecture uses embed 5 and pools 2, 2,
1, 1 (total stride 20) so that the published 100×100 lattice fits (the spec's 3, 2, 1, 1 with
embed 3 has stride 18).

``--preset published`` is NeuralCPM's own training for a GPU: its architecture on 108×108, 10⁴
iterations of batch 16 with the exact network ΔH in the approximate sampler
(:data:`~oncodyn.experiments.cpm_neural_models.PUBLISHED_TRAINING`).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from oncodyn.cpm.sample_metrics import DigitClassifier, classifier_score, f_frag, f_vol, volume_range
from oncodyn.experiments.cpm_digits_data import DigitsDataConfig, digit_snapshots, digit_start
from oncodyn.experiments.cpm_neural_models import (PUBLISHED_TRAINING, ModelsConfig, figure_arrays, ground_truth_samples,
                                                   plot_models, sampler_note, states_of, train_models,
                                                   training_seconds)
from oncodyn.experiments.registry import Comparison, ExperimentResult, RunContext, plotter, register
from oncodyn.io.rundir import RunDir

PUBLISHED = {"cellsort": (1.00, 1.00, 2.47), "cellsort+potential": (1.00, 1.00, 3.11), "cnn": (0.00, 0.05, 3.70),
             "1nh+cnn": (0.06, 0.87, 3.53), "nh": (0.11, 0.99, 4.91), "nh+closure": (1.00, 1.00, 4.35)}


class DigitsModelsConfig(DigitsDataConfig, ModelsConfig):
    """N2: the data setting of ``neuralcpm-digits-data`` plus the training of ``ModelsConfig``."""

    n_snapshots: int = Field(128, ge=4)

    presets = {"quick": {"n_snapshots": 12, "shape": [60, 60], "n_cells": 12, "mcs": 50.0, "iterations": 4,
                         "analytic_iterations": 8, "batch": 2, "widths": [4, 4, 4, 4], "eval_samples": 3,
                         "eval_mcs": 2.0, "network_eval_mcs": 2.0, "trajectory_frames": 3,
                         "potential_grid": 6},
               # NeuralCPM's training (see PUBLISHED_TRAINING), its digits architecture (total stride 18,
               # so 108² in place of its 100²), 0.5 MCS per iteration, resets at 0.0125, a potential per
               # site; a GPU run
               "published": {**PUBLISHED_TRAINING, "shape": [108, 108], "widths": [8, 16, 32, 32],
                             "pools": [3, 2, 1, 1], "embed": 3, "mcs_per_iter": 0.5, "reset_prob": 0.0125,
                             "potential_grid": 108}}


@register("neuralcpm-digits", DigitsModelsConfig,
          "NeuralCPM N2: six Hamiltonians trained on cellular digits; f_vol, f_frag and Classifier Score")
def run_digits(cfg: DigitsModelsConfig, ctx: RunContext) -> ExperimentResult:
    states, labels = digit_snapshots(cfg, ctx.rundir, ctx.progress)
    data = {"sigma": np.stack([s.sigma for s in states]), "cell_type": np.stack([s.cell_type for s in states])}
    clf = DigitClassifier().fit(states, labels)
    vr = volume_range(states)
    rows, metrics, arrays = [], {}, {}

    def scores(states_) -> tuple[float, float, float, float]:
        return (f_vol(states_, vr), f_frag(states_), f_frag(states_, connectivity_order=1),
                classifier_score(clf.predict_proba(states_)))

    def row(label, published, mcs, sc, extra=("-", "-")):
        return [label, published, f"{mcs:g}", *(f"{v:.2f}" for v in sc), *extra]

    rows.append(row("data (snapshots)", "-", cfg.mcs, scores(states)))

    def start(i: int):
        return digit_start(cfg, i, offset=50_000)[0]

    truth = ground_truth_samples(cfg, lambda i: digit_start(cfg, i, offset=50_000), cfg.sampler, ctx)
    sc = scores(truth)
    rows.append(row("ground truth H, sampled like the models", "-", cfg.eval_mcs, sc))
    metrics["truth_cs"] = sc[3]

    for kind, res in train_models(cfg, data, start, cfg.target, ctx):
        fv, ff, ff4, cs = sc = scores(states_of(res))
        pub = PUBLISHED[kind]
        rows.append(row(kind, f"{pub[0]:.2f} / {pub[1]:.2f} / {pub[2]:.2f}", float(res["eval_mcs"]), sc,
                        (f"{training_seconds(res):.0f} s", f"{float(res['sample_s']):.0f} s")))
        metrics[f"{kind}_f_vol"], metrics[f"{kind}_f_frag"], metrics[f"{kind}_cs"] = fv, ff, cs
        metrics[f"{kind}_f_frag_4conn"] = ff4
        arrays.update(figure_arrays(kind, res))
    arrays["models"] = np.array([k.replace("+", "_") for k in cfg.models])
    ctx.rundir.write_arrays("n2.npz", arrays)
    table = Comparison(
        title=f"N2 cellular digits ({cfg.shape[0]}×{cfg.shape[1]}, {cfg.n_cells} cells, V* = {cfg.target:g}; "
              f"{cfg.n_snapshots} snapshots; PCD {cfg.iterations} iterations (networks) / {cfg.analytic_iterations} "
              f"(analytic), batch {cfg.batch}; {cfg.eval_samples} samples from random aggregates; published: 10⁴ "
              f"iterations, batch 16)",
        columns=["model", "published f_vol / f_frag / CS", "MCS from the start", "f_vol", "f_frag",
                 "f_frag (4-connected)", "CS", "training", "sampling"],
        rows=rows,
        note=f"Reduced: iterations and sampling length (title). {sampler_note(cfg)} CS uses a logistic-regression "
             "digit classifier trained on all snapshots; the data row is the target, and the ground-truth row (the "
             "data's own Hamiltonian and kinetics, run from the same starts for the same MCS) is what this sampling "
             "length lets any model reach; f_vol uses "
             "the snapshots' volume range ± 10 % of the mean volume; f_frag: at most 3 cells in pieces, pieces joined "
             "through the CPM's Moore neighbourhood (the published metric's); the 4-connected column also splits "
             "cells whose parts touch only at a corner.")
    return ExperimentResult(metrics=metrics, tables=[table])


def plot_digits(rd: RunDir) -> list:
    return plot_models(rd, "n2.npz", "N2", "random aggregates")


plotter("neuralcpm-digits")(plot_digits)
