"""``oncodyn bench neuralcpm``: ΔH of K proposals by the local recomputation vs full forward passes.

For each Neural Hamiltonian preset and lattice, K border-site proposals (as NeuralCPM's sampler
draws them) are evaluated by :func:`oncodyn.cpm.neural.delta_full` (one forward pass of the
modified lattice per proposal, batched) and by :func:`oncodyn.cpm.neural.delta_local` (only the
window a single-site change reaches); both in the same process on the same proposals, with the
largest difference between them. Untrained weights: the cost does not depend on their values.

Each row also projects the published training with the exact ΔH onto this machine: NeuralCPM's
sampler prices every proposal exactly, and a PCD iteration runs ``mcs`` sweeps (sites × mcs
proposals) on each of ``batch`` chains for ``iterations`` iterations (published: 10⁴ iterations,
batch 16, 0.5 MCS per iteration for the digits and 1 for the bipolar experiment: the
``published`` presets of ``neuralcpm-digits`` and ``neuralcpm-bipolar``). The projection is the
measured per-proposal time times that count: a cost estimate, not a run.
"""

from __future__ import annotations

import numpy as np

from oncodyn.config import apply_sets
from oncodyn.cpm.hamiltonians import Hamiltonian
from oncodyn.cpm.lattice import Lattice, voronoi_blob
from oncodyn.cpm.samplers import ApproxParallelSampler
from oncodyn.experiments.cpm_bipolar import BipolarModelsConfig
from oncodyn.experiments.cpm_digits import DigitsModelsConfig
from oncodyn.experiments.cpm_neural_models import PUBLISHED_TRAINING


def bench_neuralcpm(quick: bool = False, sets: list[str] | None = None, progress: bool = True) -> dict:
    """Run the benchmark; ``sets`` overrides ``cases`` ([preset, side, cells] triples), ``k``, ``repeats``, ``dtype``,
    and the projected training (``train_iterations``, ``train_batch``, ``train_mcs`` per preset)."""
    import torch

    from oncodyn.cpm.neural import NeuralHamiltonian, time_delta

    cfg = {"cases": [["digits", 36, 8]] if quick else [["digits", 108, 50], ["digits", 216, 50], ["bipolar", 120, 40],
                                                       ["bipolar", 200, 100]],
           "k": 16 if quick else 64, "repeats": 1 if quick else 3, "dtype": "float32", "seed": 0,
           "train_iterations": PUBLISHED_TRAINING["iterations"], "train_batch": PUBLISHED_TRAINING["batch"],
           "train_mcs": {"digits": DigitsModelsConfig.presets["published"]["mcs_per_iter"],
                         "bipolar": BipolarModelsConfig.presets["published"]["mcs_per_iter"]}}
    cfg = apply_sets(cfg, sets, "bench neuralcpm")
    dtype = {"float32": torch.float32, "float64": torch.float64}.get(cfg["dtype"])
    if dtype is None:
        raise ValueError(f"bench neuralcpm: dtype must be float32 or float64, got {cfg['dtype']!r}")
    missing = sorted({str(c[0]) for c in cfg["cases"]} - set(cfg["train_mcs"]))
    if missing:
        raise ValueError(f"bench neuralcpm: train_mcs has no entry for preset(s) {missing}; "
                         f"it has {sorted(cfg['train_mcs'])}")
    rows = []
    for preset, side, cells in cfg["cases"]:
        side, cells = int(side), int(cells)
        torch.manual_seed(int(cfg["seed"]))
        model = NeuralHamiltonian.preset(preset, n_types=2).to(dtype)
        if side % model.stride:
            raise ValueError(f"bench neuralcpm: side {side} is not a multiple of the {preset} stride {model.stride}")
        rng = np.random.default_rng(int(cfg["seed"]))
        st = voronoi_blob(Lattice((side, side)), cells, 0.45 * side * side / cells, rng)
        smp = ApproxParallelSampler(st, Hamiltonian((), copy_order=2), seed=int(cfg["seed"]), k=int(cfg["k"]))
        n = smp.propose()
        tg, sr = smp.targets[:n].copy(), smp.sources[:n].copy()
        if progress:
            print(f"bench neuralcpm: {preset} {side}x{side}, {cells} cells, K={n}")
        proposals = (side * side * float(cfg["train_mcs"][preset])
                     * int(cfg["train_batch"]) * int(cfg["train_iterations"]))
        r = time_delta(model, st.sigma, st.cell_type, tg, sr, repeats=int(cfg["repeats"]))
        g = _first_order(model, st, tg, sr, int(cfg["repeats"]))
        per_proposal_s = r["local_s"] / n
        rows.append({"method": f"{preset} {side}x{side}, {cells} cells", "k": n,
                     "full_passes_s": r["full_s"], "local_s": r["local_s"], "ratio_vs_full": r["speedup"],
                     "per_proposal_local_ms": 1e3 * per_proposal_s, "max_abs_diff": r["max_abs_diff"],
                     "training_proposals": proposals,
                     "training_exact_days": proposals * per_proposal_s / 86400.0,
                     "grad_s": g["grad_s"], "grad_ratio_vs_full": r["full_s"] / g["grad_s"],
                     "grad_corr_vs_exact": g["corr"], "grad_rel_err": g["rel_err"]})
    extra = {"note": "full = one forward pass of the modified lattice per proposal (batched); local = the window a "
                     "single-site change reaches through the embedding, NH layers and pooling, then the read-out "
                     "MLP on the old global vector plus its change; ratio = full / local time, same proposals. "
                     "grad = the first-order ΔH of all K proposals from one forward and one backward pass "
                     "(approximate: its correlation with the exact ΔH and mean relative error are given; its cost "
                     "does not grow with K). training_exact_days = per-proposal local time × the proposals of "
                     "the published training (lattice sites × train_mcs × train_batch × train_iterations), "
                     "at the torch threads given here",
             "torch threads": torch.get_num_threads()}
    return {"benchmark": "neuralcpm", "setting": {"dtype": cfg["dtype"], "repeats": cfg["repeats"]}, "rows": rows,
            "extra": extra}


def _first_order(model, st, tg, sr, repeats: int) -> dict:
    """Time and accuracy of :func:`oncodyn.cpm.neural.delta_grad` against the exact local ΔH."""
    import time

    from oncodyn.cpm.neural import delta_grad, delta_local

    best = float("inf")
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        dg = delta_grad(model, st.sigma, st.cell_type, tg, sr)
        best = min(best, time.perf_counter() - t0)
    ex = delta_local(model, st.sigma, st.cell_type, tg, sr)
    dg, ex = dg.double().numpy(), ex.double().numpy()
    return {"grad_s": best, "corr": float(np.corrcoef(dg, ex)[0, 1]),
            "rel_err": float(np.abs(dg - ex).mean() / max(np.abs(ex).mean(), 1e-300))}
