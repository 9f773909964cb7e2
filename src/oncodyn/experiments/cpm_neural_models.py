"""NeuralCPM model comparison: train the analytic and neural Hamiltonians by PCD, sample them, score them.

Shared by N2 (cellular digits, :mod:`oncodyn.experiments.cpm_digits`) and N3 (bipolar axis).
Six kinds of model (:data:`MODEL_KINDS`):

- ``cellsort``: the analytic contact + volume Hamiltonian with trainable J and λ;
- ``cellsort+potential``: the same plus a trainable external potential on type 2 (a coarse grid);
- ``cnn``: a plain CNN on the type map; ``1nh+cnn``: one NH layer, sum over cells, a CNN;
- ``nh``: the Neural Hamiltonian; ``nh+closure``: w₁·cellsort + w₂·NH, the analytic part started
  from the trained ``cellsort`` model when the run has one.

Analytic models train and sample with a compiled sampler of the data's kinetics
(``analytic_sampler``; N1 showed that a fitting sampler other than the data's biases the fit).
Networks train and sample with NeuralCPM's approximate parallel sampler; their ΔH is ``delta`` (``grad``: first order from one backward pass per batch of
proposals, the CPU default; ``auto``: exact and local, practical on a GPU). The spec's energy
regulariser α bounds the networks (in a closure, its network part only); the analytic models use
α = 0 (an analytic energy of order 10⁴ makes α·H² dominate the gradient, see N1). Without it a
closure's network diverges (energies past 10²⁰ within 60 iterations); with α = 10⁻³ a plain CNN
separates data (H ≈ −400) from its chains (H ≈ +500), which then cannot reach the data — the
default α = 10⁻² keeps the networks' energies within tens.

Every model's training checkpoints (resumable) and its finished samples are saved in the run
directory, so an interrupted run continues and a rerun reuses finished models.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from oncodyn.config import ExperimentConfig
from oncodyn.cpm.lattice import CPMState, Lattice
from oncodyn.experiments.cpm_common import cached_result
from oncodyn.experiments.registry import RunContext

MODEL_KINDS = ("cellsort", "cellsort+potential", "cnn", "1nh+cnn", "nh", "nh+closure")
ANALYTIC_KINDS = ("cellsort", "cellsort+potential")


#: NeuralCPM's published training of the networks (its public configurations of the digits and
#: bipolar experiments), common to N2 and N3: 10⁴ PCD iterations of batch 16, α = 5·10⁻⁴; the
#: approximate parallel sampler with the exact network ΔH for every network and the closure
#: (``delta="auto"``: local where the architecture allows it; its flips per batch stay
#: ``k_frac``, where NeuralCPM flips 50 sites at a time); a closure whose analytic weight starts
#: at 0.25 and whose analytic part trains with the network, its chains starting from
#: type-permuted snapshots. The analytic baselines keep the compiled sampler of the data's
#: kinetics. Each experiment's ``published`` preset adds its own widths, MCS per iteration and
#: reset rate.
#: This is a GPU configuration: ``oncodyn bench neuralcpm`` projects it at hundreds of days on a
#: 2-core CPU.
PUBLISHED_TRAINING: dict = {"iterations": 10_000, "analytic_iterations": 10_000, "batch": 16, "alpha": 5e-4,
                            "lr": 1e-3, "ema": 0.99, "delta": "auto", "closure_sampler": "approx",
                            "closure_w1": 0.25, "closure_analytic_lr": None, "closure_warm_chains": False,
                            "network_eval_mcs": 1000.0}


class ModelsConfig(ExperimentConfig):
    """Training and sampling of the compared models.

    Attributes:
        models: kinds to train (:data:`MODEL_KINDS`), in order (``nh+closure`` starts from
            ``cellsort`` if that comes first).
        iterations: PCD iterations of a network; analytic_iterations: of an analytic model
            (cheap, compiled sampler). batch: chains and data snapshots per iteration.
        alpha: the energy regulariser of the networks (the spec gives no value; see above).
        lr: Adam learning rate of the networks (the spec's). analytic_lr: of the analytic models
            (the spec's 1e-3 by default; Adam then moves a raw parameter about 1 in 1,000 steps, so
            they get ``analytic_iterations`` = 3,000). At 1e-2 (the default before) the fits to N2
            and N3 data ran away: J12 and J(2,m) rose without bound while λ and the same-type J
            fell (N3: J12 9.3, λ 0.05 after 1,000 steps), the chains lagging ever further behind
            the data; the samples then lost volume control (N3 f_vol 0.69 against 1.00 now).
            ema, reset_prob: PCD options.
        mcs_per_iter, analytic_mcs_per_iter: sampler MCS per chain per iteration (networks,
            analytic models; the compiled samplers afford more mixing). k_frac: proposals per batch of the
            approximate sampler, as a fraction of the border sites. delta: network ΔH
            (``grad`` | ``auto``, see the module docstring).
        widths, pools, embed: the NH architecture (the CNN baselines use the same widths/pools).
        analytic_sampler: ``classic`` | ``exact``: the compiled sampler of the analytic models (the
            data's kinetics).
        closure_sampler: ``block`` (the closure's chains run blocks of ``block_mcs`` MCS of its
            compiled analytic part with ``analytic_sampler`` kinetics, each accepted by the
            network: one forward pass per block, see :mod:`oncodyn.cpm.block_sampler`) or
            ``guided`` (blocks of ``block_mcs`` MCS of the compiled sequential sampler under the
            analytic part plus the network linearised at the block's start: the network acts as a
            force on every copy, see :func:`oncodyn.cpm.ebm.advance_guided`) or ``approx`` (the
            approximate sampler with ΔH ``delta`` for every proposal).
            closure_mcs_per_iter: MCS per chain per iteration with the block or guided sampler.
            closure_reset_relax_mcs: MCS of the closure's compiled analytic part run on a chain
            reset to a type-permuted snapshot (:class:`~oncodyn.cpm.ebm.PCDOptions`). Off by
            default (the spec's resets): in N2, 200 MCS left the chains' energy gap to the data
            (~2,300) and the samples (f_vol 1.00, f_frag 0.44, CS 1.67) as they were.
            closure_analytic_lr: Adam learning rate of the closure's analytic part and ``w1``
            (``None``: ``lr``; 0, the default: frozen at the ``cellsort`` fit, so only the network
            and ``w2`` train — the analytic part has been fitted by PCD already, and trained
            jointly it resumed the runaway above: w1 1.0 → 1.2 and J12 up in 200 N3 iterations).
            closure_warm_chains: start the closure's persistent chains from the final chains of the
            ``cellsort`` fit (near the analytic part's equilibrium) rather than type-permuted
            snapshots, so the network's first gradients compare data with what the analytic part
            makes, not with unsorted tissue (default on; resets still draw type-permuted data).
            closure_w1: the initial weight w1 of the closure's analytic part (NeuralCPM's bipolar
            closure starts at 0.25: a weakened analytic prior that leaves the network room to act).
            closure_w2: the initial weight w2 of the closure's network; closure_w2_lr: its Adam
            learning rate (``None``: ``lr``).
        augment: train on the snapshots under random rotations and reflections of the lattice
            (:func:`oncodyn.cpm.ebm.lattice_symmetry`), as NeuralCPM's bipolar experiment does.
        potential_grid: blocks per side of the learned potential of ``cellsort+potential``.
        learn_target: the analytic parts train their target volumes V* too (per type, from the
            data's V*; see :class:`~oncodyn.cpm.neural.AnalyticTorch`).
        eval_samples: samples per model, each from a fresh random aggregate. eval_mcs: MCS run
            from each start by the compiled samplers (analytic models, block-sampled closures, the
            ground truth) — the data's own length by default; network_eval_mcs: by the
            approximate sampler with a network ΔH per proposal (costly on a CPU).
            trajectory_frames: recorded states of the first sample's run.
    """

    models: list[str] = list(MODEL_KINDS)
    iterations: int = Field(200, ge=1)
    analytic_iterations: int = Field(3000, ge=1)
    batch: int = Field(8, ge=1)
    lr: float = Field(1e-3, gt=0)
    analytic_lr: float = Field(1e-3, gt=0)
    ema: float = Field(0.99, ge=0, lt=1)
    reset_prob: float = Field(0.01, ge=0, le=1)
    alpha: float = Field(1e-2, ge=0)
    mcs_per_iter: float = Field(0.5, gt=0)
    analytic_mcs_per_iter: float = Field(20.0, gt=0)
    k_frac: float = Field(0.2, gt=0, le=1)
    delta: Literal["grad", "auto"] = "grad"
    analytic_sampler: Literal["classic", "exact"] = "classic"
    closure_sampler: Literal["block", "guided", "approx"] = "block"
    block_mcs: float = Field(2.0, gt=0)
    closure_mcs_per_iter: float = Field(10.0, gt=0)
    closure_reset_relax_mcs: float = Field(0.0, ge=0)
    closure_analytic_lr: float | None = Field(0.0, ge=0)
    closure_warm_chains: bool = True
    closure_w1: float = Field(1.0, gt=0)
    closure_w2: float = Field(1.0, gt=0)
    closure_w2_lr: float | None = Field(None, gt=0)
    learn_target: bool = False
    augment: bool = False
    widths: list[int] = [8, 16, 32, 32]
    pools: list[int] = [2, 2, 1, 1]
    embed: int = Field(5, ge=1)
    potential_grid: int = Field(10, ge=1)
    eval_samples: int = Field(16, ge=2)
    eval_mcs: float = Field(1000.0, gt=0)
    network_eval_mcs: float = Field(100.0, gt=0)
    trajectory_frames: int = Field(5, ge=2)

    @field_validator("models")
    @classmethod
    def _models(cls, v: list[str]) -> list[str]:
        bad = [m for m in v if m not in MODEL_KINDS]
        if bad or not v:
            raise ValueError(f"unknown model(s) {bad}; choose from {', '.join(MODEL_KINDS)}")
        return v


def build_model(kind: str, cfg: ModelsConfig, n_types: int, target: float, shape: Sequence[int],
                warm: dict | None = None):
    """A fresh model of ``kind`` (float32), its lattice-shape checks done before any work."""
    from oncodyn.cpm.neural import AnalyticTorch, Closure, CNNHamiltonian, NeuralHamiltonian, NHCNNHamiltonian

    arch = {"widths": cfg.widths, "pools": cfg.pools, "embed": cfg.embed}
    if len(cfg.widths) != len(cfg.pools):
        raise ValueError(f"widths and pools must have the same length, got {cfg.widths}, {cfg.pools}")
    lt = {"learn_target": cfg.learn_target}
    if kind == "cellsort":
        m = AnalyticTorch(n_types, target, **lt)
    elif kind == "cellsort+potential":
        m = AnalyticTorch(n_types, target, potential=(cfg.potential_grid, cfg.potential_grid), **lt)
    elif kind == "cnn":
        m = CNNHamiltonian(n_types, **arch)
    elif kind == "1nh+cnn":
        m = NHCNNHamiltonian(n_types, nh_width=cfg.widths[0], nh_pool=cfg.pools[0], widths=cfg.widths[1:],
                             pools=cfg.pools[1:], embed=cfg.embed)
    elif kind == "nh":
        m = NeuralHamiltonian(n_types, **arch)
    elif kind == "nh+closure":
        kw = {} if warm is None else {"J_init": warm["J"], "lam_init": float(warm["lam"])}
        tv = warm["target"] if warm is not None and "target" in warm else target
        m = Closure(AnalyticTorch(n_types, tv, **kw, **lt), NeuralHamiltonian(n_types, **arch), w1=cfg.closure_w1,
                    w2=cfg.closure_w2)
    else:
        raise ValueError(f"model kind must be one of {MODEL_KINDS}, got {kind!r}")
    m._check_shape(*shape)
    return m


def _record(model) -> dict:
    from oncodyn.cpm.neural import AnalyticTorch, Closure

    out = {}
    if isinstance(model, Closure):
        out.update({"w1": float(model.w1.detach()), "w2": float(model.w2.detach())})
        model = model.analytic
    if isinstance(model, AnalyticTorch):
        p = model.parameters_dict()
        out.update({"J11": p["J"][1, 1], "J12": p["J"][1, 2], "J22": p["J"][2, 2], "J1m": p["J"][0, 1],
                    "J2m": p["J"][0, 2], "lambda": p["lam"]})
        if "target" in p:
            out.update({f"V{t}": v for t, v in enumerate(p["target"]) if t > 0})
    return out


def train_and_sample(kind: str, cfg: ModelsConfig, data: dict[str, np.ndarray], start: Callable[[int], CPMState],
                     target: float, ctx: RunContext, warm: dict | None = None) -> dict[str, np.ndarray]:
    """Train model ``kind`` on ``data`` by PCD, then sample it from ``cfg.eval_samples`` random starts.

    Args:
        data: snapshots ``{"sigma": [n, H, W], "cell_type": [n, n_cells + 1]}``.
        start: ``start(i) -> CPMState``, the i-th random initial state of the evaluation.
        target: V* of the analytic parts. warm: ``{"J", "lam"}`` to start a closure's analytic part.

    Returns (saved as ``results/model_<kind>.npz``, reloaded on a rerun):
        ``sigma [eval_samples, H, W]``, ``cell_type [eval_samples, n_cells + 1]``, the training
        curves (``loss``, ``e_data``, ``e_model``, ``wall``, ``extra_*``), ``traj_sigma
        [frames, H, W]``, ``traj_mcs [frames]``, ``sample_s`` (seconds of sampling) and, for
        analytic parts, ``J`` and ``lam``.
    """
    import time

    import torch
    from tqdm.auto import tqdm

    from oncodyn.cpm.ebm import PCDOptions, PCDTrainer, advance
    from oncodyn.cpm.neural import AnalyticTorch, Closure

    shape = data["sigma"].shape[1:]
    n_types = int(data["cell_type"].max())

    def compute() -> dict[str, np.ndarray]:
        torch.manual_seed(cfg.seed)
        model = build_model(kind, cfg, n_types, target, shape, warm)
        device = "cuda" if ctx.device == "cuda" else "cpu"
        model = model.to(device)
        analytic = kind in ANALYTIC_KINDS
        blockwise = kind == "nh+closure" and cfg.closure_sampler in ("block", "guided")  # compiled, in blocks
        if analytic:
            sampler, mcs = cfg.analytic_sampler, cfg.analytic_mcs_per_iter
        else:
            sampler, mcs = (cfg.closure_sampler, cfg.closure_mcs_per_iter) if blockwise else ("approx", cfg.mcs_per_iter)
        opts = PCDOptions(iterations=cfg.analytic_iterations if analytic else cfg.iterations, batch=cfg.batch,
                          lr=cfg.analytic_lr if analytic else cfg.lr, ema=cfg.ema, reset_prob=cfg.reset_prob,
                          alpha=0.0 if analytic else cfg.alpha, mcs_per_iter=mcs, k_frac=cfg.k_frac, delta=cfg.delta,
                          sampler=sampler, block_mcs=cfg.block_mcs, block_kinetics=cfg.analytic_sampler,
                          reset_relax_mcs=cfg.closure_reset_relax_mcs if blockwise else 0.0, seed=cfg.seed,
                          analytic_lr=cfg.closure_analytic_lr, w2_lr=cfg.closure_w2_lr,
                          augment=cfg.augment)
        chains = None
        if kind == "nh+closure" and cfg.closure_warm_chains and warm is not None and "chain_sigma" in warm:
            chains = states_of({"sigma": warm["chain_sigma"], "cell_type": warm["chain_cell_type"]})
        trainer = PCDTrainer(model, data, opts, record=_record, chains=chains)
        log = trainer.train(checkpoint=ctx.rundir.checkpoint(f"pcd_{kind}"), progress=ctx.progress,
                            desc=f"PCD {kind}")
        ema = trainer.ema.eval()
        t0 = time.perf_counter()
        samples, traj, traj_t = [], [], []
        eval_mcs = cfg.network_eval_mcs if sampler == "approx" and not analytic else cfg.eval_mcs
        frames = np.linspace(0, eval_mcs, cfg.trajectory_frames)
        for i in tqdm(range(cfg.eval_samples), desc=f"sample {kind}", disable=not ctx.progress, leave=False):
            st = start(i)
            seed = cfg.seed * 1_000_003 + i
            if i == 0:  # the trajectory of the first sample, frame by frame
                traj.append(st.sigma.copy())
                traj_t.append(0.0)
                for j in range(1, len(frames)):
                    st = advance(ema, st, frames[j] - frames[j - 1], opts, seed + j)
                    traj.append(st.sigma.copy())
                    traj_t.append(frames[j])
            else:
                st = advance(ema, st, eval_mcs, opts, seed)
            samples.append(st)
        out = {"sigma": np.stack([s.sigma for s in samples]), "cell_type": np.stack([s.cell_type for s in samples]),
               "traj_sigma": np.stack(traj), "traj_cell_type": samples[0].cell_type, "traj_mcs": np.array(traj_t),
               "sample_s": np.array(time.perf_counter() - t0), "eval_mcs": np.array(eval_mcs), **log.arrays()}
        part = ema.analytic if isinstance(ema, Closure) else ema
        if isinstance(part, AnalyticTorch):
            p = part.parameters_dict()
            out.update({"J": p["J"], "lam": np.array(p["lam"])})
            if "target" in p:
                out["target"] = p["target"]
            if analytic:  # the final persistent chains, to warm-start a closure's chains
                out.update({"chain_sigma": np.stack([c.sigma for c in trainer.chains]),
                            "chain_cell_type": np.stack([c.cell_type for c in trainer.chains])})
            if "phi" in p:
                out["phi"] = p["phi"]
        return out

    return cached_result(ctx.rundir, f"model_{kind.replace('+', '_')}", compute)


def sampler_note(cfg: ModelsConfig) -> str:
    """One sentence for a results table: which sampler each kind of model trained and sampled with."""
    approx = (f"the approximate parallel sampler (k = {cfg.k_frac:g} of the border sites per batch) and "
              f"ΔH '{cfg.delta}'")
    closure = {"block": f"the block sampler (blocks of {cfg.block_mcs:g} MCS of its compiled analytic part, each "
                        "accepted by the network)",
               "guided": f"the guided sampler (the network linearised every {cfg.block_mcs:g} MCS as a force on "
                         "every copy of the compiled analytic sampler)",
               "approx": approx}[cfg.closure_sampler]
    return (f"Analytic models sample with the compiled '{cfg.analytic_sampler}' sampler, the pure networks with "
            f"{approx}, the closure with {closure}.")


def train_models(cfg: ModelsConfig, data: dict[str, np.ndarray], start: Callable[[int], CPMState], target: float,
                 ctx: RunContext) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """``(kind, results)`` of every model of ``cfg.models`` in order (:func:`train_and_sample`); a
    trained ``cellsort`` starts the analytic part of a later ``nh+closure``."""
    warm = None
    for kind in cfg.models:
        res = train_and_sample(kind, cfg, data, start, target, ctx, warm)
        if kind == "cellsort":
            warm = {k: res[k] for k in ("J", "lam", "target", "chain_sigma", "chain_cell_type") if k in res}
        yield kind, res


def states_of(arrays: dict[str, np.ndarray], periodic: bool = True) -> list[CPMState]:
    """``CPMState`` list from stacked ``sigma [n, H, W]`` and ``cell_type [n, n_cells + 1]``."""
    lat = Lattice(arrays["sigma"].shape[1:], periodic)
    return [CPMState(lat, s.astype(np.int32), c.astype(np.int32)) for s, c in zip(arrays["sigma"], arrays["cell_type"])]


def training_seconds(res: dict[str, np.ndarray]) -> float:
    return float(np.sum(res["wall"]))


def figure_arrays(kind: str, res: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What the figures of a model need from its results (a few samples, the trajectory, the curves)."""
    key = kind.replace("+", "_")
    extra = {f"{key}_block_acceptance": res["extra_block_acceptance"]} if "extra_block_acceptance" in res else {}
    return {**extra, f"{key}_sigma": res["sigma"][:4], f"{key}_cell_type": res["cell_type"][:4],
            f"{key}_traj": res["traj_sigma"], f"{key}_traj_ct": res["traj_cell_type"],
            f"{key}_traj_mcs": res["traj_mcs"], f"{key}_loss": res["loss"],
            f"{key}_e_data": res["e_data"], f"{key}_e_model": res["e_model"]}


def plot_models(rd, arrays_name: str, label: str, start_name: str, panels: dict | None = None) -> list:
    """Figures of a model comparison: samples per model (after ``panels``), trajectories, training curves."""
    from oncodyn.viz.cpm import lattice_figure, observables_figure

    a = rd.read_arrays(arrays_name)
    models = [str(m) for m in a["models"]]
    panels = dict(panels or {})
    panels.update({f"{m} #{j}": (a[f"{m}_sigma"][j], a[f"{m}_cell_type"][j]) for m in models
                   for j in range(min(3, len(a[f"{m}_sigma"])))})
    out = [lattice_figure(rd.figures / "samples.png", panels, title=f"{label} samples from {start_name}, per model")]
    traj = {f"{m} at {t:g} MCS": (s, a[f"{m}_traj_ct"]) for m in models
            for s, t in zip(a[f"{m}_traj"], a[f"{m}_traj_mcs"])}
    out.append(lattice_figure(rd.figures / "trajectories.png", traj, title=f"{label} trajectories from {start_name}"))
    for m in models:
        it = np.arange(1, len(a[f"{m}_loss"]) + 1)
        series = {"loss": {m: a[f"{m}_loss"]},
                  "energy / T": {"data": a[f"{m}_e_data"], "samples": a[f"{m}_e_model"]}}
        if f"{m}_block_acceptance" in a:
            series["accepted blocks"] = {m: a[f"{m}_block_acceptance"]}
        out.append(observables_figure(rd.figures / f"training_{m}.png", it, series, xlabel="iteration",
                                      title=f"{label} {m}: PCD training"))
    return out


def ground_truth_samples(cfg: ModelsConfig, make: Callable[[int], tuple], sampler: str, ctx: RunContext,
                         types: Callable[[np.ndarray], np.ndarray] = lambda t: t) -> list[CPMState]:
    """The data's own Hamiltonian sampled like the models: ``eval_mcs`` MCS of the data's kinetics from
    each evaluation start (``make(i) -> (state, hamiltonian)``); what the protocol lets any model reach.

    ``types`` maps the generator's cell types to the snapshots' (e.g. the bipolar pole groups → 2).
    """
    from oncodyn.experiments.cpm_common import build_sampler

    def compute() -> dict[str, np.ndarray]:
        out = []
        for i in range(cfg.eval_samples):
            st, ham = make(i)
            smp = build_sampler(sampler, st, ham, cfg.seed * 1_000_003 + i)
            smp.sweep(cfg.eval_mcs)
            out.append(CPMState(st.lattice, smp.state.sigma.copy(), types(st.cell_type)))
        return {"sigma": np.stack([s.sigma for s in out]), "cell_type": np.stack([s.cell_type for s in out])}

    return states_of(cached_result(ctx.rundir, "ground_truth", compute))
