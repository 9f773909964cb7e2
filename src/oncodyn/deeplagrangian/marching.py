r"""Time marching: fit :math:`p_0`, then train one KRnet segment after another.

* Segment 0 (the base): for a Gaussian :math:`p_0` the exact affine map :math:`x = m + sz`;
  otherwise an affine whitening (mean and Cholesky factor of :math:`p_0`'s covariance) after
  a time-independent KRnet fitted by maximum likelihood on exact samples of :math:`p_0`.
* Segment k on :math:`[t_k, t_k + h_k]`: a new time-dependent KRnet composed onto the frozen
  chain, the identity at :math:`t_k` (:mod:`oncodyn.deeplagrangian.krnet`), trained on the
  segment loss (:mod:`oncodyn.deeplagrangian.losses`) with AdamW and an exponentially decaying
  learning rate for a fixed number of iterations; warm-started from the previous segment's
  weights.
* Segment lengths shrink as the density concentrates:
  :math:`h_{k+1} = h_0\,(\max p(t_0)/\max p(t_{k+1}))^{s/d}`, clipped to
  ``[min_segment, segment]``: with ``shrink`` s = 1 in proportion to the peak's width
  (:math:`\propto (\max p)^{-1/d}`, the default), with s = 2 to its diffusive time; the run stops before the singularity,
  and says why, once the next segment would be shorter than ``min_segment`` or
  :math:`\max p` exceeds ``density_cap``.
* After each finished segment the chain is saved (atomically) to ``checkpoint``; a rerun with
  the same settings resumes from the last finished segment.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from oncodyn.core.checks import require
from oncodyn.deeplagrangian.flow import FlowChain, FlowSolution
from oncodyn.deeplagrangian.initial import GaussianP0
from oncodyn.deeplagrangian.krnet import KRnetSpec
from oncodyn.deeplagrangian.losses import (
    LossSetup,
    build_pool,
    characteristic_residual,
    velocity_residual,
)


@dataclass(frozen=True)
class MarchOptions:
    """Training and marching settings.

    Attributes:
        t_end: final time T > 0 (time units).
        segment: initial (and longest) segment length h_0 > 0 (time units).
        min_segment: shortest segment; the run stops before the singularity when the next one
            would be shorter, 0 < min_segment <= segment.
        adaptive: shorten segments as max p grows (else every segment has length ``segment``).
        shrink: exponent s of the shortening rule (module docstring), > 0.
        iterations: optimiser steps per segment (>= 1).
        lr, lr_final: initial and final learning rate (exponential decay), > 0.
        weight_decay: AdamW weight decay, >= 0.
        n_z: points per batch (>= n_t, a multiple of n_t is used).
        n_t: distinct times per batch (>= 1).
        n_r: interaction samples per time (>= 2).
        pool: start points held per segment (>= n_z).
        delta: mollifier width of the interaction kernel (length units), > 0.
        loss: ``A`` (velocity matching) or ``B`` (log-density along RK4 characteristics).
        density_cap: stop once max p exceeds this (1 / length^d); ``inf`` disables.
        base_iterations, base_samples: maximum-likelihood fit of a non-Gaussian p0.
        grad_clip: gradient-norm clip (> 0).
        threads: torch CPU threads while training (>= 1). The tensors are small (a few
            thousand points, d <= 3, widths of tens), so one thread is the default: measured on
            the 2-core machine with other jobs running, one 2D loss-A iteration took 37 ms at
            1 thread and 730 ms at 2 (thread oversubscription).
        seed: seed of every random draw of training.
    """

    t_end: float = 1.0
    segment: float = 0.1
    min_segment: float = 1e-3
    adaptive: bool = True
    shrink: float = 1.0
    iterations: int = 300
    lr: float = 3e-3
    lr_final: float = 3e-4
    weight_decay: float = 1e-6
    n_z: int = 1024
    n_t: int = 8
    n_r: int = 256
    pool: int = 16384
    delta: float = 0.02
    loss: str = "A"
    density_cap: float = math.inf
    base_iterations: int = 1500
    base_samples: int = 20000
    grad_clip: float = 10.0
    threads: int = 1
    seed: int = 0

    def __post_init__(self):
        require(math.isfinite(self.t_end) and self.t_end > 0, "t_end", "finite and > 0", self.t_end)
        require(math.isfinite(self.segment) and self.segment > 0, "segment", "finite and > 0", self.segment)
        require(0 < self.min_segment <= self.segment, "min_segment", f"in (0, segment = {self.segment}]", self.min_segment)
        require(math.isfinite(self.shrink) and self.shrink > 0, "shrink", "finite and > 0", self.shrink)
        require(self.iterations >= 1, "iterations", ">= 1", self.iterations)
        require(self.lr > 0 and self.lr_final > 0, "lr", "> 0 (and lr_final > 0)", (self.lr, self.lr_final))
        require(self.weight_decay >= 0, "weight_decay", ">= 0", self.weight_decay)
        require(self.n_t >= 1, "n_t", ">= 1", self.n_t)
        require(self.n_z >= self.n_t, "n_z", f">= n_t = {self.n_t}", self.n_z)
        require(self.n_r >= 2, "n_r", ">= 2", self.n_r)
        require(self.pool >= self.n_z, "pool", f">= n_z = {self.n_z}", self.pool)
        require(math.isfinite(self.delta) and self.delta > 0, "delta", "finite and > 0", self.delta)
        require(self.loss in ("A", "B"), "loss", "A or B", self.loss)
        require(self.density_cap > 0, "density_cap", "> 0", self.density_cap)
        require(self.base_iterations >= 1 and self.base_samples >= 100, "base_iterations",
               ">= 1 (and base_samples >= 100)", (self.base_iterations, self.base_samples))
        require(self.grad_clip > 0, "grad_clip", "> 0", self.grad_clip)
        require(self.threads >= 1, "threads", ">= 1", self.threads)


@dataclass
class MarchResult:
    """A marched solution and how it was obtained.

    Attributes:
        solution: the trained :class:`FlowSolution`.
        segments: one dict per segment (t_start, t_end, loss, max_p, mean, m2, wall_s).
        base: the fit of p0 (``exact`` or the ML fit's KL and wall time).
        stopped: why the run ended before ``t_end`` (``""`` if it reached it).
        train_time_s: wall time of the training in this call (resumed work not counted).
    """

    solution: FlowSolution
    segments: list[dict]
    base: dict
    stopped: str = ""
    train_time_s: float = 0.0


def _lr_schedule(opt, opts: MarchOptions):
    gamma = (opts.lr_final / opts.lr) ** (1.0 / max(1, opts.iterations))
    return torch.optim.lr_scheduler.ExponentialLR(opt, gamma)


def fit_base(p0, spec: KRnetSpec, opts: MarchOptions, dtype=torch.float64, device: str = "cpu",
             progress: bool = False) -> tuple[FlowChain, dict]:
    """The chain's base for ``p0``: exact for a Gaussian, else ML-fitted (see the module docstring)."""
    t0 = time.perf_counter()
    if isinstance(p0, GaussianP0):
        chain = FlowChain(spec, p0.mean_(), p0.std * np.eye(p0.dim)).to(dtype=dtype, device=device)
        return chain, {"kind": "exact affine map", "kl": 0.0, "wall_s": time.perf_counter() - t0}
    from tqdm.auto import tqdm

    chol = np.linalg.cholesky(p0.cov())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(opts.seed + 7919)  # the weights' initialisation, reproducibly
        chain = FlowChain(spec, p0.mean_(), chol, base_net=True).to(dtype=dtype, device=device)
    g = torch.Generator().manual_seed(opts.seed + 7919)
    data = p0.sample(opts.base_samples, g, dtype=dtype, device=device)
    test = p0.sample(min(20000, opts.base_samples), g, dtype=dtype, device=device)
    net = chain.base_net
    optim = torch.optim.AdamW(net.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    sched = _lr_schedule(optim, opts.__class__(**{**asdict(opts), "iterations": opts.base_iterations}))
    batch = min(2048, opts.base_samples)
    for _ in tqdm(range(opts.base_iterations), desc="fit p0", disable=not progress, leave=False, mininterval=0.5):
        idx = torch.randint(0, data.shape[0], (batch,), generator=g).to(device)
        loss = -chain.log_density_frozen(data[idx], 0).mean()
        optim.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), opts.grad_clip)
        optim.step()
        sched.step()
    with torch.no_grad():
        kl = float((p0.log_prob(test) - chain.log_density_frozen(test, 0)).mean())
    for p in net.parameters():
        p.requires_grad_(False)
    return chain, {"kind": "maximum likelihood KRnet", "kl": kl, "wall_s": time.perf_counter() - t0}


#: median of |z| for z ~ N(0, I_d), d = 2, 3
_MEDIAN_CHI = {2: math.sqrt(2 * math.log(2)), 3: 1.5381722}


def segment_frame(y: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Frame of a segment's spline couplings from its start points ``y`` [P, d]: their mean
    (length) and a robust scale, the median distance to it over that of a standard normal
    (length), so a concentrating core keeps its resolution despite wide tails."""
    c = y.mean(0)
    r = torch.linalg.vector_norm(y - c, dim=1)
    return c, float(r.median()) / _MEDIAN_CHI[y.shape[1]]


def _segment_stats(chain: FlowChain, pool, g) -> dict:
    """max p, mean and E|X|^2 at the end of the segment just trained, from the pool."""
    with torch.no_grad():
        ones = torch.ones(pool.y.shape[0], 1, dtype=pool.y.dtype, device=pool.y.device)
        x, logdet = g(pool.y, ones)
        logp = pool.logp - logdet
    return {"max_p": float(torch.exp(logp.max())), "mean": x.mean(0).cpu().tolist(),
            "m2": float((x * x).sum(1).mean())}


def march(model, p0, advection, spec: KRnetSpec, opts: MarchOptions, **kw) -> MarchResult:
    """Train the DeepLagrangian solution (see :func:`_march`) with ``opts.threads`` torch threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(opts.threads)
    try:
        return _march(model, p0, advection, spec, opts, **kw)
    finally:
        torch.set_num_threads(before)


def _march(model, p0, advection, spec: KRnetSpec, opts: MarchOptions, *, device: str = "cpu",
          dtype=torch.float64, progress: bool = False, checkpoint: str | Path | None = None,
          log: Callable[[str], None] = lambda s: None, meta: dict | None = None) -> MarchResult:
    """Train the DeepLagrangian solution of ``model`` from ``p0`` to ``opts.t_end``.

    Args:
        model: ``mu, chi, mass, dim`` (:class:`~oncodyn.deeplagrangian.model.KSWholeSpace`).
        p0: an initial density of :mod:`oncodyn.deeplagrangian.initial` (dimension = model.dim).
        advection: an :class:`~oncodyn.deeplagrangian.velocity.Advection` field.
        spec: KRnet architecture (``spec.dim`` = model.dim).
        opts: :class:`MarchOptions`.
        checkpoint: file to save the chain after every segment and to resume from.
        log: receives one line per finished segment.
        meta: extra JSON-able description stored with the solution (and compared on resume).

    Returns:
        :class:`MarchResult`.
    """
    require(spec.dim == model.dim, "spec.dim", f"the model's dimension {model.dim}", spec.dim)
    require(p0.dim == model.dim, "p0", f"a density in {model.dim}D", f"{p0.dim}D")
    advection.check_dim(model.dim)
    t_star = blowup_time_bound(model, p0, advection)
    require(opts.t_end < t_star, "t_end", f"below the blow-up time bound T_m = {t_star:.6g} (2D moment law; "
           "only t < T* is meaningful)", opts.t_end)
    from tqdm.auto import tqdm

    key = {"model": asdict(model), "p0": repr(p0), "advection": repr(advection), "spec": asdict(spec),
           "opts": asdict(opts), **(meta or {})}
    key = json_safe(key)
    t_start_wall = time.perf_counter()
    chain, base, seg_log = None, None, []
    if checkpoint is not None and Path(checkpoint).exists():
        try:
            sol = FlowSolution.load(checkpoint, device=device)
        except ValueError as e:  # a damaged checkpoint is set aside, never trusted
            aside = Path(str(checkpoint) + ".corrupt")
            Path(checkpoint).replace(aside)
            log(f"{e}; moved to {aside.name}, starting this case again")
            sol = FlowSolution(None, {})
        if sol.meta.get("key") == key:
            chain, base, seg_log = sol.chain.to(dtype=dtype), sol.meta["base"], sol.meta["segments"]
            log(f"resumed from {checkpoint} at t = {chain.t_final:g} ({len(seg_log)} segments done)")
    if chain is None:
        chain, base = fit_base(p0, spec, opts, dtype=dtype, device=device, progress=progress)
        if base["kind"] != "exact affine map":
            log(f"p0 fitted by maximum likelihood: KL(p0 | fit) = {base['kl']:.2e} in {base['wall_s']:.1f} s")
    for p in chain.parameters():
        p.requires_grad_(False)

    def save():
        if checkpoint is not None:
            FlowSolution(chain, {"key": key, "base": base, "segments": seg_log}).save(checkpoint)

    save()
    p_max0 = p0.max_density() if hasattr(p0, "max_density") else None
    if p_max0 is None:
        pool0 = build_pool(chain, 0, min(opts.pool, 8192), torch.Generator().manual_seed(opts.seed + 1))
        p_max0 = float(torch.exp(pool0.logp.max()))
    p_max = seg_log[-1]["max_p"] if seg_log else p_max0
    stopped = ""
    t = chain.t_final
    tol = 1e-9 * opts.t_end
    while t < opts.t_end - tol:
        h = opts.segment
        if opts.adaptive:
            h = min(opts.segment, opts.segment * (p_max0 / p_max) ** (opts.shrink / model.dim))
        if h < opts.min_segment - 1e-15:
            stopped = (f"stopped at t = {t:.4g} before the singularity: max p = {p_max:.4g} asks for segments of "
                       f"{h:.2e} < min_segment = {opts.min_segment:g}")
            break
        if p_max > opts.density_cap:
            stopped = f"stopped at t = {t:.4g} before the singularity: max p = {p_max:.4g} > density_cap = {opts.density_cap:g}"
            break
        h = min(h, opts.t_end - t)
        if opts.t_end - (t + h) < 0.25 * h:  # no sliver at the end
            h = opts.t_end - t
        k = len(chain.segments)
        gen = torch.Generator().manual_seed(opts.seed * 100_003 + k)  # per segment: a resumed run draws the same
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(opts.seed * 100_003 + k)
            g = chain.add_segment(t, t + h, init_from=chain.segments[-1] if k else None)
        pool = build_pool(chain, k, opts.pool, gen)
        g.set_frame(*segment_frame(pool.y))
        setup = LossSetup(model.mu, model.chi, model.mass, advection, opts.delta, t, h)
        optim = torch.optim.AdamW(g.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
        sched = _lr_schedule(optim, opts)
        n_t = opts.n_t
        n_b = (opts.n_z // n_t) * n_t
        losses = []
        w0 = time.perf_counter()
        frozen_logp = (lambda y, kk=k: chain.log_density_frozen(y, kk))
        bar = tqdm(range(opts.iterations), desc=f"segment {k} [{t:.3g}, {t + h:.3g}]", disable=not progress,
                   leave=False, mininterval=0.5)
        for _ in bar:
            batch = pool.batch(n_b, gen)
            inter = pool.y[torch.randint(0, pool.y.shape[0], (n_t * opts.n_r,), generator=gen).to(pool.y.device)]
            if opts.loss == "A":
                loss = velocity_residual(g, setup, batch, inter, n_t, gen)
            else:
                loss = characteristic_residual(g, setup, batch, inter[: opts.n_r], frozen_logp)
            optim.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(g.parameters(), opts.grad_clip)
            optim.step()
            sched.step()
            losses.append(float(loss.detach()))
            if not math.isfinite(losses[-1]):
                raise FloatingPointError(f"segment {k}: the loss became non-finite at t = {t:g}; "
                                         "try a smaller segment or learning rate")
        for p in g.parameters():
            p.requires_grad_(False)
        stats = _segment_stats(chain, pool, g)
        tail = losses[-max(1, len(losses) // 10):]
        rec = {"t_start": t, "t_end": t + h, "loss": float(np.mean(tail)), "loss_first": losses[0],
               "wall_s": time.perf_counter() - w0, **stats}
        seg_log.append(rec)
        p_max = stats["max_p"]
        t = t + h
        save()
        log(f"segment {k}: [{rec['t_start']:.4g}, {rec['t_end']:.4g}] loss {rec['loss']:.3e} "
            f"max p {p_max:.4g} E|X|^2 {stats['m2']:.4g} ({rec['wall_s']:.1f} s)")
    sol = FlowSolution(chain, {"key": key, "base": base, "segments": seg_log, "stopped": stopped})
    if checkpoint is not None:
        sol.save(checkpoint)
    return MarchResult(sol, seg_log, base, stopped, time.perf_counter() - t_start_wall)


def blowup_time_bound(model, p0, advection) -> float:
    r"""2D, v = 0: the moment-law time :math:`\mathrm{tr\,Cov}(p_0)/(\chi M/2\pi - 4\mu)` by which a
    super-critical solution has blown up; ``inf`` when the law gives no bound (3D, advection,
    sub-critical)."""
    if model.dim != 2 or not advection.is_zero:
        return math.inf
    rate = model.chi * model.mass / (2 * math.pi) - 4 * model.mu
    return math.inf if rate <= 0 else float(np.trace(p0.cov())) / rate


def json_safe(x):
    """Round-trip through JSON (tuples become lists, inf becomes a string) so keys compare equal."""
    import json

    def default(o):
        return repr(o)

    s = json.dumps(x, default=default, sort_keys=True)
    s = s.replace("Infinity", '"inf"').replace("NaN", '"nan"')
    return json.loads(s)
