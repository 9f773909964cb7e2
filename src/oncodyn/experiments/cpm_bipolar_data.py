"""NeuralCPM N3 data: "bipolar axis" snapshots, type-2 cells gathered at two opposite poles of a cluster.

Published setting (NeuralCPM N3): 40 cells (20 + 20) from a random cluster, J(·,m) = 16,
J(same type) = 6, J(1,2) = 16, V* = 150; the type-2 cells move towards assigned poles
("synthetic: directed motion"). Our generator (:func:`oncodyn.cpm.scenarios.bipolar_axis`)
writes the directed motion as a pull μ·|r − P±| on two groups of type-2 cells (generator types 2
and 3, one biological type); the snapshots keep two types (3 → 2). The random starting clusters
(the same starts before any MCS) are the baseline of the variance ratio
(:func:`oncodyn.cpm.sample_metrics.bipolar_ratio`: > 1 when type 2 sits at both ends of its axis).
"""

from __future__ import annotations

import json

import numpy as np
from pydantic import Field, field_validator

from oncodyn.core.atomic import save_npz
from oncodyn.core.safeload import load_npz
from oncodyn.cpm.lattice import CPMState, Lattice
from oncodyn.cpm.observables import fragmented_cells
from oncodyn.cpm.sample_metrics import f_frag, f_vol, mean_bipolar_ratio, volume_range
from oncodyn.cpm.scenarios import bipolar_axis, bipolar_types
from oncodyn.experiments.cpm_common import CPMConfig, build_sampler
from oncodyn.experiments.registry import (
    Comparison,
    ExperimentResult,
    RunContext,
    plotter,
    register,
)
from oncodyn.io.rundir import RunDir

PUBLISHED = "NH+closure f_vol 0.77, f_frag 1.00, bipolar from random starts; analytic Hamiltonians: not bipolar"


class BipolarDataConfig(CPMConfig):
    """Snapshot generation.

    Attributes:
        n_snapshots: snapshots, each an independent run from its own random cluster.
        shape, n_cells, target: lattice, cells (even: half type 1, half type 2), V*.
        mu, temperature, lam, pole_distance, mcs: our choice (the spec gives none): pull per site
            per site of distance, T, λ_V, the poles' distance from the cluster centre as a
            fraction of the cluster radius, and MCS per snapshot
            (see :func:`oncodyn.cpm.scenarios.bipolar_axis` for the sweep).
    """

    n_snapshots: int = Field(64, ge=2)
    shape: list[int] = [120, 120]
    n_cells: int = Field(40, ge=4)
    target: float = Field(150.0, gt=0)
    mu: float = Field(2.0, ge=0)
    temperature: float = Field(4.0, gt=0)
    lam: float = Field(1.0, gt=0)
    pole_distance: float = Field(0.8, ge=0)
    mcs: float = Field(5000.0, gt=0)

    presets = {"quick": {"n_snapshots": 6, "shape": [80, 80], "n_cells": 12, "mcs": 1000.0}}

    @field_validator("n_cells")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise ValueError("must be even (half type 1, half type 2)")
        return v


def _state(shape, sigma, cell_type) -> CPMState:
    return CPMState(Lattice(tuple(shape)), sigma, cell_type)


def bipolar_snapshots(cfg: BipolarDataConfig, rd: RunDir, progress: bool = True):
    """The snapshots of ``cfg``, their random starts and poles: ``(data, starts, poles)``.

    Each snapshot is saved under ``snapshots/bipolar`` as soon as it is done (resumable) and
    stamped with the setting: a rerun with other values regenerates it instead of reusing it.
    """
    from tqdm.auto import tqdm

    d = rd.subdir("snapshots/bipolar")
    fields = set(BipolarDataConfig.model_fields) - {"n_snapshots", "device"}  # also when cfg is a subclass
    setting = json.dumps(cfg.model_dump(mode="json", include=fields), sort_keys=True)
    data, starts, poles = [], [], []
    for i in tqdm(range(cfg.n_snapshots), desc="bipolar snapshots", disable=not progress, leave=False):
        path = d / f"snap_{i:04d}.npz"
        if path.exists():
            z = load_npz(path, "snapshot file")
            if "setting" not in z or str(z["setting"]) != setting:
                path.unlink()
        if not path.exists():
            st, ham = bipolar_start(cfg, i)
            sigma0 = st.sigma.copy()
            smp = build_sampler(cfg.sampler, st, ham, cfg.seed * 100_003 + i)
            smp.sweep(cfg.mcs)
            save_npz(path, dict(sigma=smp.state.sigma, sigma_start=sigma0, cell_type=bipolar_types(st.cell_type),
                                poles=st.meta["poles"], setting=np.array(setting)))
        z = load_npz(path, "snapshot file")
        data.append(_state(cfg.shape, z["sigma"], z["cell_type"]))
        starts.append(_state(cfg.shape, z["sigma_start"], z["cell_type"]))
        poles.append(z["poles"])
    return data, starts, poles


def bipolar_start(cfg: BipolarDataConfig, i: int, offset: int = 0):
    """The random cluster and ground-truth Hamiltonian of snapshot ``i`` (generator types 1, 2, 3)."""
    return bipolar_axis(tuple(cfg.shape), cfg.n_cells, cfg.target, cfg.mu, cfg.temperature, cfg.lam,
                        cfg.pole_distance, cfg.seed * 100_003 + offset + i)


@register("neuralcpm-bipolar-data", BipolarDataConfig,
          "NeuralCPM N3 data: bipolar-axis snapshots (type 2 pulled to two opposite poles) and their random starts")
def run_bipolar_data(cfg: BipolarDataConfig, ctx: RunContext) -> ExperimentResult:
    data, starts, poles = bipolar_snapshots(cfg, ctx.rundir, ctx.progress)
    ctx.rundir.write_arrays("snapshots_bipolar.npz", dict(sigma=np.stack([s.sigma for s in data]),
                            cell_type=np.stack([s.cell_type for s in data]),
                            sigma_start=np.stack([s.sigma for s in starts]), poles=np.stack(poles)))
    vr = volume_range(data)
    r_data, r_start = mean_bipolar_ratio(data), mean_bipolar_ratio(starts)
    rows = []
    for label, states, r in (("snapshots (training data)", data, r_data),
                             ("random starting clusters (0 MCS)", starts, r_start)):
        rows.append([label, PUBLISHED if states is data else "-", f"{f_vol(states, vr):.2f}", f"{f_frag(states):.2f}",
                     f"{r:.2f}", f"{np.mean([fragmented_cells(s, 2) for s in states]):.2f}"])
    table = Comparison(
        title=f"Bipolar-axis data ({cfg.shape[0]}×{cfg.shape[1]}, {cfg.n_cells} cells, V* = {cfg.target:g}, "
              f"μ = {cfg.mu:g}, T = {cfg.temperature:g}, λ = {cfg.lam:g}, poles at {cfg.pole_distance:g} R, "
              f"{cfg.mcs:g} {cfg.sampler} MCS, {len(data)} snapshots)",
        columns=["states", "published (N3 metrics of the models are for the N3 training)", "f_vol", "f_frag",
                 "variance ratio (bipolar)", "fragmented cells / state (Moore pieces)"], rows=rows,
        note="Variance ratio: variance of the type-2 sites along their principal axis over that of all cell sites "
             "(> 1: type 2 at both ends of the axis; ≈ 1 (here ≈ 1.15, the principal axis of a random half picks "
             "its largest spread) for random types; < 1: one compact pole or a core). f_vol uses the snapshots' own "
             "volume range ±10 % of the mean volume, so it is 1 for the data by construction; the starts are "
             "Voronoi cells of uneven size.")
    n_fig = min(6, len(data))
    ctx.rundir.write_arrays("bipolar.npz", {"sigma": np.stack([s.sigma for s in data[:n_fig]]),
                                            "cell_type": np.stack([s.cell_type for s in data[:n_fig]])})
    return ExperimentResult(metrics={"bipolar_ratio_data": r_data, "bipolar_ratio_start": r_start,
                                     "f_frag_data": f_frag(data), "n": len(data)}, tables=[table])


def plot_bipolar_data(rd: RunDir) -> list:
    from oncodyn.viz.cpm import lattice_figure

    a = rd.read_arrays("bipolar.npz")
    return [lattice_figure(rd.figures / "bipolar.png",
                           {f"snapshot {i}": (s, c) for i, (s, c) in enumerate(zip(a["sigma"], a["cell_type"]))},
                           title="bipolar axis: type 2 (orange) at two opposite poles")]


plotter("neuralcpm-bipolar-data")(plot_bipolar_data)
