"""What the DeepLagrangian experiments share: the model, network and training fields, and the
training of one case with its checkpoint and saved weights.

Each case of an experiment trains one :class:`~oncodyn.deeplagrangian.flow.FlowSolution`;
its chain is checkpointed after every segment under ``checkpoints/<case>.pt`` and the final
weights go to ``models/<case>.pt`` (``FlowSolution.load`` reads them). Rerunning the same
command with the same ``--out`` resumes an interrupted case and reuses finished ones.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from oncodyn.config import ExperimentConfig
from oncodyn.deeplagrangian.krnet import KRnetSpec
from oncodyn.deeplagrangian.marching import MarchOptions, MarchResult, march
from oncodyn.experiments.registry import RunContext

Finite = dict(allow_inf_nan=False)


class DLConfig(ExperimentConfig):
    """Model, network and training fields (see :class:`MarchOptions` and :class:`KRnetSpec`).

    Attributes:
        mu: cell diffusivity μ > 0 (length^2 / time).
        delta: mollifier width δ > 0 of the Monte Carlo interaction kernel (length).
        t_end: final time T (time units); each experiment checks it against its blow-up time.
        segment, min_segment, adaptive, shrink: time-marching segment lengths (time units) and
            the exponent of their shortening as max p grows (MarchOptions).
        iterations: optimiser steps per segment; lr, lr_final: AdamW learning rate, decayed.
        n_z, n_t, n_r, pool: batch size, distinct times per batch, interaction samples per time,
            start points per segment.
        loss: ``A`` (velocity matching) or ``B`` (log-density along characteristics).
        n_couplings, width, depth, alpha, activation, cdf_bins, cdf_halfwidth, anchored,
            spline_bins, spline_halfwidth, spline_stretch: the KRnet (KRnetSpec; ``anchored`` is the segment
            form, ``spline_bins`` > 0 adds the conditional spline couplings).
        base_iterations: maximum-likelihood steps of a non-Gaussian p0's fit.
        n_eval: samples of each evaluation (moments, KL, distances).
        threads: torch threads while training.
    """

    mu: float = Field(1.0, gt=0, **Finite)
    delta: float = Field(0.02, gt=0, **Finite)
    t_end: float = Field(0.5, gt=0, **Finite)
    segment: float = Field(0.1, gt=0, **Finite)
    min_segment: float = Field(0.002, gt=0, **Finite)
    adaptive: bool = True
    shrink: float = Field(1.0, gt=0, **Finite)
    iterations: int = Field(300, ge=1)
    lr: float = Field(3e-3, gt=0, **Finite)
    lr_final: float = Field(3e-4, gt=0, **Finite)
    n_z: int = Field(512, ge=8)
    n_t: int = Field(8, ge=1)
    n_r: int = Field(512, ge=2)
    pool: int = Field(16384, ge=64)
    loss: Literal["A", "B"] = "A"
    n_couplings: int = Field(4, ge=2)
    width: int = Field(32, ge=4)
    depth: int = Field(2, ge=1)
    alpha: float = Field(0.6, gt=0, lt=1)
    activation: Literal["tanh", "silu"] = "tanh"
    cdf_bins: int = Field(16, ge=0)
    cdf_halfwidth: float = Field(4.0, gt=0, **Finite)
    anchored: bool = False
    spline_bins: int = Field(0, ge=0)
    spline_halfwidth: float = Field(4.0, gt=0, **Finite)
    spline_stretch: float = Field(0.0, ge=0, le=10)
    base_iterations: int = Field(1500, ge=1)
    n_eval: int = Field(100_000, ge=100)
    threads: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _march_fields(self):
        if self.min_segment > self.segment:
            raise ValueError(f"min_segment: must be <= segment = {self.segment}, got {self.min_segment}")
        if self.n_couplings % 2:
            raise ValueError(f"n_couplings: must be even (the split alternates), got {self.n_couplings}")
        if self.cdf_bins == 1:
            raise ValueError("cdf_bins: must be 0 (off) or >= 2, got 1")
        if self.spline_bins == 1:
            raise ValueError("spline_bins: must be 0 (off) or >= 2, got 1")
        if self.n_z < self.n_t:
            raise ValueError(f"n_z: must be >= n_t = {self.n_t}, got {self.n_z}")
        if self.pool < self.n_z:
            raise ValueError(f"pool: must be >= n_z = {self.n_z}, got {self.pool}")
        return self

    def spec(self, dim: int) -> KRnetSpec:
        return KRnetSpec(dim=dim, n_couplings=self.n_couplings, width=self.width, depth=self.depth, alpha=self.alpha,
                         activation=self.activation, cdf_bins=self.cdf_bins, cdf_halfwidth=self.cdf_halfwidth,
                         anchored=self.anchored, spline_bins=self.spline_bins,
                         spline_halfwidth=self.spline_halfwidth, spline_stretch=self.spline_stretch)

    def march_options(self, t_end: float | None = None, seed_offset: int = 0, **over) -> MarchOptions:
        kw = dict(t_end=self.t_end if t_end is None else t_end, segment=self.segment,
                  min_segment=min(self.min_segment, self.segment), adaptive=self.adaptive, shrink=self.shrink, iterations=self.iterations,
                  lr=self.lr, lr_final=self.lr_final, n_z=self.n_z, n_t=self.n_t, n_r=self.n_r, pool=self.pool,
                  delta=self.delta, loss=self.loss, base_iterations=self.base_iterations, threads=self.threads,
                  seed=self.seed + seed_offset)
        kw.update(over)
        return MarchOptions(**kw)


#: Quick-form training settings every DeepLagrangian experiment shares (seconds per case).
QUICK = {"iterations": 40, "n_z": 128, "n_r": 64, "pool": 1024, "n_eval": 4000, "base_iterations": 60,
         "width": 16, "cdf_bins": 8}


def subset_of(v: list, allowed: tuple, what: str) -> list:
    """Validator body: a non-empty list of distinct entries of ``allowed``."""
    if not v or any(x not in allowed for x in v) or len(set(v)) != len(v):
        raise ValueError(f"must list {what} among {', '.join(map(str, allowed))}, each once")
    return v


def train_case(cfg: DLConfig, ctx: RunContext, case: str, model, p0, advection, t_end: float,
               seed_offset: int = 0, **over) -> MarchResult:
    """Train (or resume, or reuse) one case; weights saved as ``models/<case>.pt``."""
    ckpt = Path(ctx.rundir.checkpoint(case)).with_suffix(".pt")
    ctx.log(f"{case}: training to t = {t_end:g}")
    res = march(model, p0, advection, cfg.spec(model.dim), cfg.march_options(t_end, seed_offset, **over),
                device=ctx.device, progress=ctx.progress, checkpoint=ckpt, log=lambda s: ctx.log(f"  {s}"),
                meta={"case": case})
    res.solution.save(ctx.rundir.subdir("models") / f"{case}.pt")
    if res.stopped:
        ctx.log(f"  {res.stopped}")
    return res


def wall_time(res: MarchResult) -> float:
    """Training wall time of a case over all its segments (s), resumed parts included."""
    return float(res.base.get("wall_s", 0.0) + sum(s["wall_s"] for s in res.segments))


def moment_law_time(m2_0: float, mu: float, chi_mass: float) -> float:
    """2D, v = 0: the time at which E|X|^2 = m2_0 + (4 mu - chi M / 2 pi) t reaches 0 (inf if never)."""
    slope = 4 * mu - chi_mass / (2 * math.pi)
    return math.inf if slope >= 0 else m2_0 / -slope
