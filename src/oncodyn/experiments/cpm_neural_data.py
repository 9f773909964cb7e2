"""Training data for NeuralCPM: cell-sorting snapshots of types A and B from their analytic Hamiltonians.

Published setting (NeuralCPM, experiment N1): 200×200 lattice, 100 cells (50 + 50), V* = 200,
T = 1, 500 MCS from a random start; type A: J(1,m) = J(2,m) = 0.5, J11 = 0.3333, J12 = 0.2,
J22 = 0.2667, λ = 0.1; type B: J(1,m) = 2.5, J(2,m) = 1, J11 = 1, J12 = 4.5, J22 = 1, λ = 0.5.

Every snapshot is an independent run (its own seed); each is written to
``snapshots/type_<K>/snap_<i>.npz`` as soon as it is done, so an interrupted generation resumes
where it stopped, and the whole set is gathered in ``snapshots_<K>.npz`` (``sigma [n, H, W]``,
``cell_type [n, n_cells + 1]``) for training.
"""

from __future__ import annotations


import numpy as np
from pydantic import Field

from oncodyn.core.atomic import save_npz
from oncodyn.core.safeload import load_npz
from oncodyn.cpm.observables import summary
from oncodyn.cpm.scenarios import NEURALCPM_LAMBDA, NEURALCPM_TYPES, neuralcpm_sorting
from oncodyn.experiments.cpm_common import CPMConfig, build_sampler
from oncodyn.experiments.registry import Comparison, ExperimentResult, RunContext, plotter, register
from oncodyn.io.rundir import RunDir


class NeuralDataConfig(CPMConfig):
    """Snapshot generation.

    Attributes:
        kinds: which ground truths (``A``, ``B``). n_snapshots: independent runs per kind.
        shape, n_cells, target, temperature, mcs: the published setting by default.
    """

    sampler: str = "exact"
    kinds: list[str] = ["A", "B"]
    n_snapshots: int = Field(32, ge=1)
    shape: list[int] = [200, 200]
    n_cells: int = Field(100, ge=2)
    target: float = Field(200.0, gt=0)
    temperature: float = Field(1.0, gt=0)
    mcs: float = Field(500.0, gt=0)

    presets = {"quick": {"n_snapshots": 2, "shape": [60, 60], "n_cells": 12, "mcs": 30.0}}


def sorting_snapshot(kind: str, cfg, index: int, temperature: float = 1.0):
    """Snapshot ``index`` of ground truth ``kind``: an independent run of ``cfg.mcs`` MCS with
    ``cfg.sampler`` from its own seed. Returns ``(final state, seed)``; ``cfg`` supplies ``seed``,
    ``shape``, ``n_cells``, ``target``, ``mcs`` and ``sampler``."""
    seed = cfg.seed * 100_003 + index
    state, ham = neuralcpm_sorting(kind, tuple(cfg.shape), cfg.n_cells, cfg.target, temperature, seed)
    smp = build_sampler(cfg.sampler, state, ham, seed)
    smp.sweep(cfg.mcs)
    return smp.state, seed


def snapshot_dir(rd: RunDir, kind: str):
    return rd.subdir(f"snapshots/type_{kind}")


def load_snapshots(path: str) -> dict[str, np.ndarray]:
    """The gathered snapshots of one kind: ``sigma [n, H, W]``, ``cell_type [n, n_cells + 1]``."""
    return load_npz(path, "snapshot file")


@register("cpm-neural-data", NeuralDataConfig,
          "CPM: NeuralCPM cell-sorting snapshots (types A and B) written to disk for training")
def run_neural_data(cfg: NeuralDataConfig, ctx: RunContext) -> ExperimentResult:
    from tqdm.auto import tqdm

    bad = [k for k in cfg.kinds if k not in NEURALCPM_TYPES]
    if bad:
        raise ValueError(f"kinds: unknown {bad}; known: {list(NEURALCPM_TYPES)}")
    rows, metrics, arrays = [], {}, {}
    for kind in cfg.kinds:
        d = snapshot_dir(ctx.rundir, kind)
        sig, types, obs = [], [], []
        for i in tqdm(range(cfg.n_snapshots), desc=f"type {kind} snapshots", disable=not ctx.progress, leave=False):
            path = d / f"snap_{i:04d}.npz"
            if not path.exists():
                end, seed = sorting_snapshot(kind, cfg, i, cfg.temperature)
                save_npz(path, dict(sigma=end.sigma, cell_type=end.cell_type, mcs=end.mcs, seed=seed))
            z = load_npz(path, "snapshot file")
            sig.append(z["sigma"])
            types.append(z["cell_type"])
            from oncodyn.cpm.lattice import CPMState, Lattice

            obs.append(summary(CPMState(Lattice(tuple(cfg.shape)), sig[-1], types[-1]), order=1))
        ctx.rundir.write_arrays(f"snapshots_{kind}.npz", dict(sigma=np.stack(sig), cell_type=np.stack(types)))
        mean = {k: float(np.mean([o[k] for o in obs])) for k in obs[0]}
        metrics[kind] = mean
        arrays[f"{kind}_sigma"], arrays[f"{kind}_types"] = np.stack(sig[:4]), np.stack(types[:4])
        J = NEURALCPM_TYPES[kind]
        rows.append([kind, f"J11={J[1, 1]:g}, J12={J[1, 2]:g}, J22={J[2, 2]:g}, J1m={J[0, 1]:g}, J2m={J[0, 2]:g}, "
                           f"λ={NEURALCPM_LAMBDA[kind]:g}",
                     f"{cfg.shape[0]}×{cfg.shape[1]}, {cfg.n_cells} cells, V*={cfg.target:g}, T={cfg.temperature:g}, "
                     f"{cfg.mcs:g} MCS", cfg.n_snapshots, f"{mean['heterotypic_fraction']:.3f}",
                     f"{mean['mean_volume']:.1f} ± {mean['std_volume']:.1f}", f"{mean['n_fragmented']:.1f}"])
    table = Comparison(
        title="NeuralCPM cell-sorting data (experiment N1 ground truth)",
        columns=["type", "published Hamiltonian", "setting (published: 200×200, 100 cells, V*=200, T=1, 500 MCS)",
                 "snapshots", "heterotypic fraction (mean)", "cell volume (mean ± sd)", "fragmented cells (mean)"],
        rows=rows,
        note=f"Each snapshot is an independent run with the {cfg.sampler} sampler from a confluent random aggregate; "
             "files: snapshots_<type>.npz (sigma [n, H, W], cell_type [n, cells + 1]) and snapshots/type_<type>/.")
    ctx.rundir.write_arrays("neural_data.npz", arrays)
    return ExperimentResult(metrics=metrics, tables=[table])


def plot_neural_data(rd: RunDir) -> list:
    from oncodyn.viz import cpm as vc

    a = rd.read_arrays("neural_data.npz")
    kinds = [k[0] for k in a if k.endswith("_sigma")]
    panels = {}
    for k in kinds:
        for i in range(min(3, len(a[f"{k}_sigma"]))):
            panels[f"type {k}, snapshot {i}"] = (a[f"{k}_sigma"][i], a[f"{k}_types"][i])
    return [vc.lattice_figure(rd.figures / "snapshots.png", panels, title="NeuralCPM training snapshots")]


plotter("cpm-neural-data")(plot_neural_data)
