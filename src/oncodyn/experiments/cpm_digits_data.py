"""NeuralCPM N2 data: "cellular digits" snapshots and the digit classifier used for the Classifier Score.

Published setting (NeuralCPM N2): 50 cells, 100×100, V* = 100, J11 = J22 = 3, J12 = 8,
J(·,m) = 6; type-2 cells are drawn into the shape of a digit by an external potential (the
distance transform of the binarised digit, coupled to type 2). Digits come from the 8×8 digits
bundled with scikit-learn (no download). The lattice is the published 100×100.
"""

from __future__ import annotations

import functools

import numpy as np
from pydantic import Field

from oncodyn.core.atomic import save_npz
from oncodyn.core.safeload import load_npz
from oncodyn.cpm.lattice import CPMState, Lattice
from oncodyn.cpm.sample_metrics import DigitClassifier, classifier_score, f_frag, f_vol, volume_range
from oncodyn.cpm.scenarios import cellular_digit
from oncodyn.experiments.cpm_common import CPMConfig, build_sampler
from oncodyn.experiments.registry import Comparison, ExperimentResult, RunContext, plotter, register
from oncodyn.io.rundir import RunDir


class DigitsDataConfig(CPMConfig):
    """Snapshot generation.

    Attributes:
        n_snapshots: snapshots (digit images taken in order from scikit-learn's set, each run
            independently). held_out: fraction kept out of the classifier's training.
        shape, n_cells, target, mu, temperature, mcs: the CPM setting (``mu``, ``temperature``:
            our choice, the spec gives none).
    """

    n_snapshots: int = Field(200, ge=4)
    held_out: float = Field(0.25, gt=0, lt=1)
    shape: list[int] = [100, 100]
    n_cells: int = Field(50, ge=2)
    target: float = Field(100.0, gt=0)
    mu: float = Field(2.0, ge=0)
    temperature: float = Field(2.0, gt=0)
    mcs: float = Field(1000.0, gt=0)

    presets = {"quick": {"n_snapshots": 12, "shape": [60, 60], "n_cells": 12, "mcs": 50.0}}


@functools.lru_cache(maxsize=1)
def _digits():
    from sklearn.datasets import load_digits

    return load_digits()


def digit_snapshots(cfg: DigitsDataConfig, rd: RunDir, progress: bool = True) -> tuple[list[CPMState], list[int]]:
    """The cellular-digit snapshots of ``cfg`` (digit images in scikit-learn's order) and their labels.

    Each snapshot is saved under ``snapshots/digits`` as soon as it is done, so an interrupted run
    resumes; a rerun into the same directory loads them.
    """
    from tqdm.auto import tqdm

    digits = _digits()
    d = rd.subdir("snapshots/digits")
    states, labels = [], []
    for i in tqdm(range(cfg.n_snapshots), desc="digit snapshots", disable=not progress, leave=False):
        path = d / f"snap_{i:04d}.npz"
        if not path.exists():
            st, ham = digit_start(cfg, i)
            smp = build_sampler(cfg.sampler, st, ham, cfg.seed * 100_003 + i)
            smp.sweep(cfg.mcs)
            save_npz(path, dict(sigma=smp.state.sigma, cell_type=st.cell_type,
                                label=int(digits.target[i % len(digits.target)])))
        z = load_npz(path, "snapshot file")
        states.append(CPMState(Lattice(tuple(cfg.shape)), z["sigma"], z["cell_type"]))
        labels.append(int(z["label"]))
    return states, labels


def digit_start(cfg: DigitsDataConfig, i: int, offset: int = 0):
    """The random aggregate (and ground-truth Hamiltonian) of snapshot ``i``; ``offset`` shifts the seed."""
    images = _digits().images
    img = images[i % len(images)]
    return cellular_digit(img, tuple(cfg.shape), cfg.n_cells, cfg.target, cfg.mu, cfg.temperature,
                          cfg.seed * 100_003 + offset + i)


@register("neuralcpm-digits-data", DigitsDataConfig,
          "NeuralCPM N2 data: cellular-digit snapshots (sklearn digits) and the digit classifier for CS")
def run_digits_data(cfg: DigitsDataConfig, ctx: RunContext) -> ExperimentResult:
    states, labels = digit_snapshots(cfg, ctx.rundir, ctx.progress)
    ctx.rundir.write_arrays("snapshots_digits.npz", dict(sigma=np.stack([s.sigma for s in states]),
                            cell_type=np.stack([s.cell_type for s in states]), label=np.array(labels)))
    n_train = max(2, int(round(len(states) * (1 - cfg.held_out))))
    clf = DigitClassifier().fit(states[:n_train], labels[:n_train])
    acc = clf.accuracy(states[n_train:], labels[n_train:]) if n_train < len(states) else float("nan")
    cs = classifier_score(clf.predict_proba(states))
    vr = volume_range(states)
    rows = [["snapshots (training data)", "-", f"{f_vol(states, vr):.2f}",
             f"{f_frag(states):.2f}", f"{cs:.2f}", f"{acc:.2f}"]]
    table = Comparison(
        title=f"Cellular digits data ({cfg.shape[0]}×{cfg.shape[1]}, {cfg.n_cells} cells, V* = {cfg.target:g}, "
              f"μ = {cfg.mu:g}, T = {cfg.temperature:g}, {cfg.mcs:g} MCS, {len(states)} snapshots)",
        columns=["states", "published (N2 metrics of the six models are for issue 5's training)", "f_vol",
                 "f_frag", "classifier score", "held-out accuracy"], rows=rows,
        note="The classifier (multinomial logistic regression on 10×10 block averages of the type-2 map) is trained "
             "on the first snapshots and scores the rest; the Classifier Score of the data bounds what a model's "
             "samples can reach. Published CS of the models: cellsort 2.47, cellsort+potential 3.11, CNN 3.70, "
             "1NH+CNN 3.53, NH 4.91, NH+closure 4.35.")
    ctx.rundir.write_arrays("digits.npz", {"sigma": np.stack([s.sigma for s in states[:8]]),
                                           "cell_type": np.stack([s.cell_type for s in states[:8]]),
                                           "label": np.array(labels[:8])})
    return ExperimentResult(metrics={"classifier_accuracy": acc, "classifier_score": cs, "n": len(states)},
                            tables=[table])


def plot_digits_data(rd: RunDir) -> list:
    from oncodyn.viz.cpm import lattice_figure

    a = rd.read_arrays("digits.npz")
    return [lattice_figure(rd.figures / "digits.png",
                           {f"digit {int(y)} (#{i})": (s, c) for i, (s, c, y) in
                            enumerate(zip(a["sigma"], a["cell_type"], a["label"]))},
                           title="cellular digits: type 2 (orange) drawn into the digit")]


plotter("neuralcpm-digits-data")(plot_digits_data)
