"""The six cell-sorting regimes (Glazier & Graner 1993, as tabulated in Morpheus' simplified
cell-sorting model), each run to its end state and named automatically from observables."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from oncodyn.cpm.scenarios import REGIMES, classify_regime, regime_features, sorting_regime
from oncodyn.experiments.cpm_common import CPMConfig, build_sampler, cached_result
from oncodyn.experiments.registry import Comparison, ExperimentResult, RunContext, plotter, register
from oncodyn.io.rundir import RunDir

EXPECTED = {
    "checkerboard": "mixed, unlike neighbours preferred",
    "separation": "sorted, both types at the surface",
    "engulfment": "type 1 spreads over type 2",
    "reversal": "type 2 encloses type 1",
    "dispersal 1": "type-1 layer encloses type 2 completely",
    "dispersal 2": "type-1 cells leave into the medium",
}


def tensions(r) -> dict[str, float]:
    """Surface tensions γ₁₂ = J₁₂ − (J₁₁+J₂₂)/2, γ₁ₘ = J₁ₘ − J₁₁/2, γ₂ₘ = J₂ₘ − J₂₂/2."""
    return {"g12": r.j12 - (r.j11 + r.j22) / 2, "g1m": r.j1m - r.j11 / 2, "g2m": r.j2m - r.j22 / 2}


class RegimesConfig(CPMConfig):
    """Six regimes at a reduced size.

    Attributes:
        shape: lattice. n_cells: cells of the aggregate (half of each type). target: target area.
        mcs: lattice MCS per run (T = 2 regimes coarsen slowly). n_seeds: runs per regime.
        regimes: which rows of the table to run.
    """

    shape: list[int] = [60, 60]
    n_cells: int = Field(40, ge=4)
    target: float = Field(30.0, gt=0)
    mcs: float = Field(30000.0, gt=0)
    n_seeds: int = Field(3, ge=1)
    regimes: list[str] = list(REGIMES)

    presets = {"quick": {"shape": [40, 40], "n_cells": 16, "mcs": 500.0, "n_seeds": 1}}


@register("cpm-regimes", RegimesConfig, "CPM: the six sorting regimes, end states named automatically from observables")
def run_regimes(cfg: RegimesConfig, ctx: RunContext) -> ExperimentResult:
    unknown = [r for r in cfg.regimes if r not in REGIMES]
    if unknown:
        raise ValueError(f"regimes: unknown {unknown}; known: {list(REGIMES)}")
    rows, metrics, arrays = [], {}, {}
    n_ok = n_runs = 0
    for name in cfg.regimes:
        labels, feats = [], []
        for k in range(cfg.n_seeds):
            seed = cfg.seed + k

            def one(name=name, seed=seed):
                state, ham = sorting_regime(name, tuple(cfg.shape), cfg.n_cells, cfg.target, seed=seed)
                smp = build_sampler(cfg.sampler, state, ham, seed)
                steps = max(1, int(np.ceil(cfg.mcs / 1000)))
                from tqdm.auto import tqdm

                for _ in tqdm(range(steps), desc=f"{name} seed {seed}", disable=not ctx.progress, leave=False):
                    smp.sweep(cfg.mcs / steps)
                f = regime_features(smp.state)
                return {"sigma": smp.state.sigma.copy(), "cell_type": state.cell_type,
                        **{key: np.array(v) for key, v in f.items()}}

            res = cached_result(ctx.rundir, f"{name.replace(' ', '_')}_seed{seed}", one)
            f = {key: float(res[key]) for key in ("heterotypic_fraction", "medium_contact_t1", "medium_contact_t2",
                                                  "surface_share_t2", "n_fragmented")}
            labels.append(classify_regime(f))
            feats.append(f)
            if k == 0:
                arrays[f"{name}_sigma"], arrays[f"{name}_types"] = res["sigma"], res["cell_type"]
        ok = sum(lb == name for lb in labels)
        n_ok += ok
        n_runs += len(labels)
        mean = {key: float(np.mean([f[key] for f in feats])) for key in feats[0]}
        r = REGIMES[name]
        g = tensions(r)
        rows.append([name, f"{r.j11:g}/{r.j22:g}/{r.j12:g}/{r.j1m:g}/{r.j2m:g}, T={r.temperature:g}",
                     f"{g['g12']:g}/{g['g1m']:g}/{g['g2m']:g}", EXPECTED[name], ", ".join(labels), f"{ok}/{len(labels)}",
                     f"{mean['heterotypic_fraction']:.3f}", f"{mean['medium_contact_t1']:.3f}",
                     f"{mean['medium_contact_t2']:.3f}", f"{mean['surface_share_t2']:.3f}"])
        metrics[name] = {"labels": labels, "features": mean}
    table = Comparison(
        title=f"Six sorting regimes ({cfg.shape[0]}×{cfg.shape[1]}, {cfg.n_cells} cells of area {cfg.target:g}, "
              f"{cfg.mcs:g} MCS, {cfg.n_seeds} seeds, {cfg.sampler} kinetics)",
        columns=["regime", "J11/J22/J12/J1m/J2m (published table)", "γ12/γ1m/γ2m", "expected end state (published parameters)",
                 "ours: named from observables", "agree", "heterotypic", "type-1 medium border",
                 "type-2 medium border", "type-2 share of surface"], rows=rows,
        note="Names come from oncodyn.cpm.scenarios.classify_regime (a decision list on the observables; γ are the "
             "surface tensions of the contact energies). At T = 2 the aggregates coarsen slowly and the runs stop "
             "before the final state: in engulfment type 2 still reaches the surface in places, in separation the "
             "light clumps are still leaving the dark cluster. Reduced size (the published runs are larger).")
    metrics["agreement"] = f"{n_ok}/{n_runs}"
    ctx.rundir.write_arrays("regimes.npz", arrays)
    return ExperimentResult(metrics=metrics, tables=[table])


def plot_regimes(rd: RunDir) -> list:
    from oncodyn.viz import cpm as vc

    a = rd.read_arrays("regimes.npz")
    names = [k[: -len("_sigma")] for k in a if k.endswith("_sigma")]
    return [vc.lattice_figure(rd.figures / "end_states.png", {n: (a[f"{n}_sigma"], a[f"{n}_types"]) for n in names},
                              title="end states (first seed); type 1 dark, type 2 light")]


plotter("cpm-regimes")(plot_regimes)
