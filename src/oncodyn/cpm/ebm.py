r"""Energy-based training of CPM Hamiltonians from snapshots (NeuralCPM): persistent contrastive divergence.

A Hamiltonian :math:`H_\theta` defines :math:`p_\theta(\sigma) \propto e^{-H_\theta(\sigma)/T}`; the
gradient of the negative log-likelihood of the data is
:math:`\mathbb{E}_{data}[\nabla H] - \mathbb{E}_{p_\theta}[\nabla H]`, estimated with samples from
persistent Markov chains (PCD). One iteration:

1. advance every persistent chain by ``mcs_per_iter`` MCS of the CPM sampler under the current
   Hamiltonian (NeuralCPM's approximate parallel sampler by default; the exact sampler for an
   analytic model if asked); with probability ``reset_prob`` a chain first restarts from a data
   snapshot whose cell types are randomly permuted;
2. loss = mean H(data batch) − mean H(chains) + α (mean H(data)² + mean H(chains)²) — the
   spec's loss and regulariser (for a closure the regulariser acts on its network part
   ``w2 · H_NN`` only); no gradient flows through the sampler; a non-finite loss stops the run
   with an error;
3. an Adam step, then an exponential moving average of the weights (decay 0.99).

The model is any ``torch.nn.Module`` with ``energies(states) -> Tensor [B]`` (states: a list of
``(sigma, cell_type)``) and one of ``to_hamiltonian(temperature)`` (an analytic model: the
compiled samplers run it) or ``delta_fn(state, targets, sources) -> ΔH`` (a network). Training
state (model, EMA, optimiser, chains, curves, iteration) is checkpointed atomically, so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from oncodyn.cpm.lattice import CPMState, Lattice
from oncodyn.cpm.samplers import ApproxParallelSampler, MetropolisSampler


SAMPLERS = ("approx", "exact", "classic", "block", "guided")
CHECKPOINT_FORMAT = "oncodyn-pcd-checkpoint-v2"  # tensors and plain data only (weights_only loading)


@dataclass(frozen=True)
class PCDOptions:
    """Training options (defaults: the spec's).

    Attributes:
        iterations: optimiser steps. batch: data snapshots and chains per step.
        lr: Adam learning rate. ema: decay of the weight average. alpha: energy regulariser α.
        mcs_per_iter: sampler MCS per chain per step. k_frac: proposals per approximate-sampler
            batch as a fraction of the border sites. reset_prob: chance per step that a chain
            restarts from a type-permuted data snapshot. temperature: T of p ∝ exp(−H/T).
        sampler: ``approx`` (NeuralCPM); analytic models only: ``exact`` (Metropolis–Hastings, exactly
            Boltzmann) or ``classic`` (the classic CPM acceptance) — PCD's fixed point is unbiased
            only when the chains run the kinetics that made the data; closures only: ``block``
            (:class:`~oncodyn.cpm.block_sampler.BlockSampler`: blocks of ``block_mcs`` MCS of the
            compiled analytic part with ``block_kinetics``, each accepted by the network) or ``guided``
            (blocks of ``block_mcs`` MCS of the compiled sampler with ``block_kinetics`` under the
            exact analytic part plus the network linearised at the block's start, see
            :func:`advance_guided`).
        delta: ΔH of the proposals for a network (see :func:`oncodyn.cpm.neural.make_delta_fn`):
            ``auto`` (exact, local where the architecture allows it), ``grad`` (first order, one
            backward pass per batch of proposals: the CPU default of the NeuralCPM experiments).
        reset_relax_mcs: MCS of the model's compiled analytic part (analytic models and closures)
            run on a chain when it is reset to a type-permuted snapshot, so that it starts near the
            model's equilibrium rather than in the permuted, unsorted state (0: off, the spec's).
        w2_lr: closures only: Adam learning rate of the network's weight ``w2`` (``None``: ``lr``), so
            the network's energy scale can grow faster than its weights move.
        analytic_lr: closures only: Adam learning rate of the analytic part and its weight ``w1``
            (``None``: ``lr``; 0: frozen at their start, so only the network and ``w2`` train).
        augment: draw every data snapshot (batches and chain resets) under a random symmetry of
            the lattice (:func:`lattice_symmetry`: the 8 rotations and reflections of a square
            lattice, the 4 reflections of a rectangular one), as NeuralCPM does for its bipolar
            experiment: the data's distribution is symmetric, a handful of snapshots is not.
        checkpoint_every: steps between checkpoints. seed: random seed.
    """

    iterations: int = 10_000
    batch: int = 16
    lr: float = 1e-3
    ema: float = 0.99
    alpha: float = 1e-3
    mcs_per_iter: float = 1.0
    k_frac: float = 0.05
    reset_prob: float = 0.05
    temperature: float = 1.0
    sampler: str = "approx"
    delta: str = "auto"
    block_mcs: float = 1.0
    block_kinetics: str = "classic"
    reset_relax_mcs: float = 0.0
    analytic_lr: float | None = None
    w2_lr: float | None = None
    augment: bool = False
    checkpoint_every: int = 50
    seed: int = 0

    def __post_init__(self):
        for name in ("iterations", "batch", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"PCDOptions.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "mcs_per_iter", "k_frac", "temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"PCDOptions.{name} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.ema < 1 or not 0 <= self.reset_prob <= 1 or self.alpha < 0:
            raise ValueError("PCDOptions: ema must be in [0, 1), reset_prob in [0, 1], alpha >= 0")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"PCDOptions.sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        for name in ("analytic_lr", "w2_lr"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ValueError(f"PCDOptions.{name} must be >= 0 or None, got {getattr(self, name)}")
        if self.reset_relax_mcs < 0:
            raise ValueError(f"PCDOptions.reset_relax_mcs must be >= 0, got {self.reset_relax_mcs}")
        if not self.block_mcs > 0 or self.block_kinetics not in ("classic", "exact"):
            raise ValueError("PCDOptions: block_mcs must be > 0 and block_kinetics 'classic' or 'exact'")
        if self.delta not in ("auto", "local", "full", "grad"):
            raise ValueError(f"PCDOptions.delta must be one of auto, local, full, grad, got {self.delta!r}")


@dataclass
class TrainingLog:
    """Curves recorded every step: loss, mean energies of data and samples, extra scalars (e.g. learned parameters)."""

    loss: list = field(default_factory=list)
    e_data: list = field(default_factory=list)
    e_model: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    wall: list = field(default_factory=list)

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"loss": np.array(self.loss), "e_data": np.array(self.e_data), "e_model": np.array(self.e_model),
               "wall": np.array(self.wall)}
        out.update({f"extra_{k}": np.array(v) for k, v in self.extra.items()})
        return out


def permute_types(cell_type: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same cells with their types shuffled among them (type counts kept)."""
    ct = cell_type.copy()
    ct[1:] = rng.permutation(ct[1:])
    return ct


def lattice_symmetry(sigma: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``sigma [H, W]`` under a uniformly drawn symmetry of its lattice (a C-contiguous array).

    Square lattices: one of the 8 elements of the dihedral group (rotations by multiples of 90°,
    each optionally transposed); rectangular: one of the 4 reflections (identity, up–down,
    left–right, both). Cell ids and volumes are unchanged; a periodic lattice stays periodic.
    """
    s = sigma
    if s.shape[0] == s.shape[1]:
        if rng.random() < 0.5:
            s = s.T
        s = np.rot90(s, int(rng.integers(4)))
    else:
        s = s[:: 1 - 2 * int(rng.integers(2)), :: 1 - 2 * int(rng.integers(2))]
    return np.ascontiguousarray(s)


def advance(model, state: CPMState, mcs: float, opts: PCDOptions, seed: int, stats: dict | None = None
            ) -> CPMState:
    """``mcs`` MCS of the sampler of ``opts`` under ``model`` from ``state``; returns the new state.

    An analytic model (``to_hamiltonian``) runs compiled (``opts.sampler``); a network runs the
    approximate sampler with ``opts.delta``'s ΔH. No gradient flows through the sampler.
    ``stats`` (optional) receives ``block_acceptance`` from the block sampler.
    """
    import torch

    from oncodyn.cpm.neural import make_delta_fn

    if opts.sampler == "block":
        return _advance_block(model, state, mcs, opts, seed, stats)
    if opts.sampler == "guided":
        return advance_guided(model, state, mcs, opts, seed)
    if hasattr(model, "to_hamiltonian"):
        ham, kin = _analytic_part(model, state, opts)
        if opts.sampler in ("exact", "classic"):
            smp = MetropolisSampler(state, ham, seed=seed, hastings=kin == "exact")
        else:
            smp = ApproxParallelSampler(state, ham, seed=seed, k_frac=opts.k_frac)
    else:
        from oncodyn.cpm.hamiltonians import Hamiltonian

        ham = Hamiltonian((), temperature=opts.temperature, copy_order=2)
        smp = ApproxParallelSampler(state, ham, seed=seed, k_frac=opts.k_frac,
                                    delta_fn=make_delta_fn(model, opts.delta))
    with torch.no_grad():
        smp.sweep(mcs)
    return smp.state.copy()


def _closure_weights(model, sampler: str) -> tuple[float, float]:
    """``(w1, w2)`` of a closure that a closure-only ``sampler`` can run (w1 > 0), else a clear error."""
    from oncodyn.cpm.neural import Closure

    if not isinstance(model, Closure):
        raise ValueError(f"sampler {sampler!r} needs a Closure (analytic + network), got {type(model).__name__}")
    w1, w2 = float(model.w1.detach()), float(model.w2.detach())
    if not w1 > 0:
        raise ValueError(f"sampler {sampler!r} needs the closure's analytic weight w1 > 0, got {w1}")
    return w1, w2


def _advance_block(model, state: CPMState, mcs: float, opts: PCDOptions, seed: int,
                   stats: dict | None = None) -> CPMState:
    """A closure's chain by the delayed-acceptance block sampler (``opts.sampler == "block"``)."""
    import torch

    from oncodyn.cpm.block_sampler import BlockSampler

    w1, w2 = _closure_weights(model, "block")
    ham, _ = _analytic_part(model, state, opts)

    def correction(st: CPMState) -> float:  # w2·H_NN in units of H_a (the block sampler's temperature T / w1)
        with torch.no_grad():
            return w2 * float(model.network(st.sigma, st.cell_type)) / w1

    smp = BlockSampler(state, ham, correction, opts.block_mcs, opts.block_kinetics, seed)
    out = smp.sweep(mcs).copy()
    if stats is not None:
        stats["block_acceptance"] = smp.acceptance
    return out


def advance_guided(model, state: CPMState, mcs: float, opts: PCDOptions, seed: int) -> CPMState:
    r"""A closure's chain with the network as a force: ``mcs`` MCS in blocks of ``opts.block_mcs``.

    At the start of each block the network is linearised (:func:`oncodyn.cpm.neural.gradient_field`,
    one forward and one backward pass): ``H_NN(σ') ≈ H_NN(σ) + Σ_x F[σ'_x, x] − F[σ_x, x]``. The block
    then runs the compiled CPM sampler (``opts.block_kinetics``, single-site copies in random order)
    under the exact analytic part plus this linear part (a
    :class:`~oncodyn.cpm.hamiltonians.CellField`), at the closure's temperature:
    :math:`(w_1 ΔH_a + w_2 ΔH_{NN}) / T`. Every copy feels the network's pull, as in NeuralCPM's
    approximate sampler with first-order ΔH, but the analytic part is exact and sequential, so the
    cells keep the kinetics the analytic part was fitted with. Approximate: the field is refreshed
    once per block and is first order (``oncodyn bench neuralcpm`` reports the error of first-order
    ΔH). Unlike the block sampler (:mod:`oncodyn.cpm.block_sampler`), which can only accept or
    reject what the analytic part proposes, this one moves cells where the network's energy
    falls; it costs one forward and backward pass per block.
    """
    from oncodyn.cpm.hamiltonians import CellField, Hamiltonian
    from oncodyn.cpm.neural import gradient_field

    w1, w2 = _closure_weights(model, "guided")
    ham, kin = _analytic_part(model, state, opts)  # H_a at T / w1
    rng = np.random.default_rng(seed)
    st, left = state.copy(), float(mcs)
    while left > 1e-12:
        m = min(opts.block_mcs, left)
        f = gradient_field(model.network, st.sigma, st.cell_type).cpu().double().numpy() * (w2 / w1)
        h = Hamiltonian(ham.terms + (CellField(f),), temperature=ham.temperature, copy_order=ham.copy_order)
        smp = MetropolisSampler(st, h, seed=int(rng.integers(2**62)), hastings=kin == "exact")
        smp.sweep(m)
        st = smp.state
        left -= m
    return st.copy()


def _analytic_part(model, state: CPMState, opts: PCDOptions):
    """The compiled analytic part of ``model`` at the model's temperature and its kinetics, or ``None``.

    An analytic model: itself at T with ``opts.sampler`` (classic for ``approx``); a closure
    ``w1·H_a + w2·H_NN``: ``H_a`` at ``T / w1`` (so its weights are ``w1 H_a / T``) with
    ``opts.block_kinetics``, ``None`` if ``w1 <= 0``; a network: ``None``.
    """
    from oncodyn.cpm.neural import Closure

    shape = state.sigma.shape
    if isinstance(model, Closure):
        w1 = float(model.w1.detach())
        if not w1 > 0:
            return None
        return model.analytic.to_hamiltonian(opts.temperature / w1, shape=shape), opts.block_kinetics
    if hasattr(model, "to_hamiltonian"):
        kin = opts.sampler if opts.sampler in ("exact", "classic") else "classic"
        return model.to_hamiltonian(opts.temperature, shape=shape), kin
    return None


def _relax(model, state: CPMState, opts: PCDOptions, seed: int) -> CPMState:
    """``opts.reset_relax_mcs`` MCS of the compiled analytic part (current parameters) on a reset chain."""
    part = _analytic_part(model, state, opts)
    if part is None:
        return state  # a pure network has no cheap part to relax with
    ham, kin = part
    smp = MetropolisSampler(state, ham, seed=seed, hastings=kin == "exact")
    smp.sweep(opts.reset_relax_mcs)
    return smp.state.copy()


def _param_groups(model, opts: PCDOptions) -> list[dict]:
    """Adam parameter groups: a closure's analytic part and ``w1`` at ``opts.analytic_lr`` (left out
    when it is 0), its ``w2`` at ``opts.w2_lr``, everything else at ``opts.lr``."""
    from oncodyn.cpm.neural import Closure

    params = [p for p in model.parameters() if p.requires_grad]
    if not isinstance(model, Closure):
        return [{"params": params}]
    slow_ids = set() if opts.analytic_lr is None else {id(p) for p in model.analytic.parameters()} | {id(model.w1)}
    w2_ids = set() if opts.w2_lr is None else {id(model.w2)}
    groups = [{"params": [p for p in params if id(p) not in slow_ids | w2_ids]}]
    slow = [p for p in params if id(p) in slow_ids]
    if opts.analytic_lr == 0:
        for p in slow:  # frozen: no gradients accumulate on them
            p.requires_grad_(False)
    elif slow:
        groups.append({"params": slow, "lr": opts.analytic_lr})
    if w2_ids:
        groups.append({"params": [model.w2], "lr": opts.w2_lr})
    return groups


def _energies_and_reg(model, states):
    """``(energies, regularised part)``: a model may regularise only part of its energy (a closure)."""
    if hasattr(model, "energies_and_reg"):
        return model.energies_and_reg(states)
    e = model.energies(states)
    return e, e


class PCDTrainer:
    """Persistent contrastive divergence for a CPM Hamiltonian (see the module docstring).

    Args:
        model: the Hamiltonian to fit (``torch.nn.Module``).
        data: snapshots, ``sigma [n, H, W]`` and ``cell_type [n, n_cells + 1]``.
        opts: :class:`PCDOptions`.
        periodic: lattice boundary of the snapshots.
        record: ``record(model) -> {name: float}`` logged every step (e.g. learned parameters).
        chains: starting states of the persistent chains (default: type-permuted data snapshots),
            e.g. the final chains of an analytic model that warm-starts a closure, so its chains
            begin near the analytic part's equilibrium instead of unsorted; cycled to ``batch``.
    """

    def __init__(self, model, data: dict[str, np.ndarray], opts: PCDOptions, periodic: bool = True, record=None,
                 chains: list[CPMState] | None = None):
        import torch

        sig = np.asarray(data["sigma"])
        if sig.ndim != 3 or len(sig) < 1:
            raise ValueError(f"data['sigma'] must be [n, H, W] with n >= 1, got shape {sig.shape}")
        self.model, self.opts, self.record = model, opts, record
        self.sigma, self.cell_type = sig.astype(np.int32), np.asarray(data["cell_type"]).astype(np.int32)
        self.lattice = Lattice(sig.shape[1:], periodic)
        self.rng = np.random.default_rng(opts.seed)
        self.ema = copy.deepcopy(model)
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.opt = torch.optim.Adam(_param_groups(model, opts), lr=opts.lr)
        if chains is not None and (not chains or any(c.sigma.shape != sig.shape[1:] for c in chains)):
            raise ValueError(f"chains must be a non-empty list of states of the data's shape {sig.shape[1:]}")
        self.chains = ([chains[j % len(chains)].copy() for j in range(opts.batch)] if chains is not None
                       else [self._from_data() for _ in range(opts.batch)])
        self.it = 0
        self.log = TrainingLog()

    def _snapshot(self, i: int) -> np.ndarray:
        """Snapshot ``i``'s ``sigma``, under a random lattice symmetry if ``opts.augment``."""
        return lattice_symmetry(self.sigma[i], self.rng) if self.opts.augment else self.sigma[i]

    def _from_data(self) -> CPMState:
        i = int(self.rng.integers(len(self.sigma)))
        st = CPMState(self.lattice, self._snapshot(i).copy(), permute_types(self.cell_type[i], self.rng))
        if self.opts.reset_relax_mcs > 0:
            st = _relax(self.model, st, self.opts, int(self.rng.integers(2**62)))
        return st

    def step(self) -> float:
        """One PCD iteration; returns the loss."""
        import torch

        o = self.opts
        t0 = time.perf_counter()
        acc = []
        for j in range(o.batch):
            if self.rng.random() < o.reset_prob:
                self.chains[j] = self._from_data()
            seed = int(self.rng.integers(2**62))
            stats: dict = {}
            self.chains[j] = advance(self.model, self.chains[j], o.mcs_per_iter, o, seed, stats)
            if "block_acceptance" in stats:
                acc.append(stats["block_acceptance"])
        idx = self.rng.integers(len(self.sigma), size=o.batch)
        data = [(self._snapshot(i), self.cell_type[i]) for i in idx]
        samples = [(c.sigma, c.cell_type) for c in self.chains]
        e_d, r_d = (e / o.temperature for e in _energies_and_reg(self.model, data))
        e_m, r_m = (e / o.temperature for e in _energies_and_reg(self.model, samples))
        loss = e_d.mean() - e_m.mean() + o.alpha * ((r_d ** 2).mean() + (r_m ** 2).mean())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"PCD diverged at iteration {self.it + 1}: loss {float(loss)} (energies of data "
                                     f"{float(e_d.mean())}, samples {float(e_m.mean())}); raise alpha or lower lr")
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        with torch.no_grad():
            for pe, pm in zip(self.ema.parameters(), self.model.parameters()):
                pe.mul_(o.ema).add_(pm.detach(), alpha=1 - o.ema)
        self.it += 1
        self.log.loss.append(float(loss.detach()))
        self.log.e_data.append(float(e_d.mean().detach()))
        self.log.e_model.append(float(e_m.mean().detach()))
        self.log.wall.append(time.perf_counter() - t0)
        if acc:  # how often the network accepted the analytic blocks (the chains move only then)
            self.log.extra.setdefault("block_acceptance", []).append(float(np.mean(acc)))
        if self.record is not None:
            for k, v in self.record(self.model).items():
                self.log.extra.setdefault(k, []).append(float(v))
        return self.log.loss[-1]

    # -------------------------------------------------------------------------------- checkpoints
    def save(self, path: str) -> None:
        """Atomic checkpoint of everything the run needs to continue.

        The file holds tensors and plain data only (chains as int32 tensors, the generator state
        and the curves as dicts of ints, floats and lists), so :meth:`load` reads it with
        ``torch.load(weights_only=True)``.
        """
        import torch

        from oncodyn.core.atomic import save_torch

        blob = {"format": CHECKPOINT_FORMAT, "it": int(self.it), "model": self.model.state_dict(),
                "ema": self.ema.state_dict(), "opt": self.opt.state_dict(),
                "chains": [{"sigma": torch.from_numpy(c.sigma.copy()), "cell_type": torch.from_numpy(c.cell_type.copy()),
                            "mcs": float(c.mcs)} for c in self.chains],
                "rng": self.rng.bit_generator.state, "log": asdict(self.log)}
        save_torch(path, blob)

    def load(self, path: str) -> bool:
        """Restore from ``path`` if it exists; returns whether it did.

        Raises:
            ValueError: the file is not a PCD checkpoint of this format (damaged, foreign, written
                by an older version, or holding objects other than tensors and plain data); the
                message names the file.
        """
        from oncodyn.core.safeload import load_torch

        if not os.path.exists(path):
            return False
        blob = load_torch(path, "PCD checkpoint")
        if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"PCD checkpoint {path} is not in the format {CHECKPOINT_FORMAT!r} (an older version "
                             "or another file); remove it to start the training afresh")
        self.it = int(blob["it"])
        self.model.load_state_dict(blob["model"])
        self.ema.load_state_dict(blob["ema"])
        self.opt.load_state_dict(blob["opt"])
        self.chains = [CPMState(self.lattice, c["sigma"].numpy(), c["cell_type"].numpy(), mcs=float(c["mcs"]))
                       for c in blob["chains"]]
        self.rng.bit_generator.state = blob["rng"]
        self.log = TrainingLog(**blob["log"])
        return True

    def train(self, checkpoint: str | None = None, progress: bool = True, desc: str = "PCD") -> TrainingLog:
        """Run to ``opts.iterations`` steps, resuming from and writing ``checkpoint``."""
        from tqdm.auto import tqdm

        if checkpoint is not None:
            self.load(checkpoint)
        with tqdm(total=self.opts.iterations, initial=self.it, desc=desc, disable=not progress, leave=False) as bar:
            while self.it < self.opts.iterations:
                loss = self.step()
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3g}")
                if checkpoint is not None and (self.it % self.opts.checkpoint_every == 0
                                               or self.it == self.opts.iterations):
                    self.save(checkpoint)
        return self.log


def best_fit_scale(learned: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    """RMSE of ``learned`` vs ``truth`` as learned, and after the best common rescaling.

    The data fix H/T only up to the temperature, so a learned H = c·H_true fits equally well; the
    "best-fit temperature" rescales the learned parameters by the least-squares c.
    Returns ``(rmse_at_T, c, rmse_at_best_c)``.
    """
    learned, truth = np.asarray(learned, float), np.asarray(truth, float)
    rmse = float(np.sqrt(np.mean((learned - truth) ** 2)))
    c = float(learned @ truth / (learned @ learned)) if learned @ learned > 0 else 1.0
    return rmse, c, float(np.sqrt(np.mean((c * learned - truth) ** 2)))
