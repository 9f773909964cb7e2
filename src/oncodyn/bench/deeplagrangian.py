"""``oncodyn bench deeplagrangian``: training, sampling and density-evaluation speed, in one run.

Work (2D and 3D, a chain of ``segments`` trained segments, χ > 0, default network and batch):

* **training**: seconds per optimiser iteration of loss A on the last segment, ours (the
  frozen chain evaluated once per segment into a pool of start points and scores,
  :func:`~oncodyn.deeplagrangian.losses.velocity_residual`) against the readable reference
  that evaluates the loss by its definition, inverting the whole chain every iteration
  (:func:`~oncodyn.deeplagrangian.losses.velocity_residual_reference`); ``per_segment_s`` is
  that × ``iterations``, plus (ours) the pool's one-off cost;
* **sampling**: samples per second of ``FlowSolution.sample`` at the chain's final time;
* **density**: points per second of ``FlowSolution.log_density``, against a Gaussian KDE of
  the particle reference with ``kde_particles`` particles (``scipy.stats.gaussian_kde``) on the
  same points: the particle method's way to answer the same question.

``ratio_vs_baseline`` is the baseline's time divided by ours, median over ``repeats``; the
spread is the min-max range of that ratio over the repeats.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from oncodyn.config import apply_sets
from oncodyn.core.device import resolve_device


def _chain(dim: int, n_seg: int, device: str, seed: int = 0):
    from oncodyn.deeplagrangian.flow import FlowChain
    from oncodyn.deeplagrangian.krnet import KRnetSpec

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        chain = FlowChain(KRnetSpec(dim=dim), np.zeros(dim), np.eye(dim)).double()
        for k in range(n_seg):
            g = chain.add_segment(0.1 * k, 0.1 * (k + 1))
            with torch.no_grad():
                for p in g.parameters():
                    p.add_(0.05 * torch.randn_like(p))
    for p in chain.parameters():
        p.requires_grad_(False)
    return chain.to(device)


def _timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _row(method: str, ours: list[float], base: list[float] | None, **extra) -> dict:
    ratios = [b / o for b, o in zip(base, ours)] if base else None
    return {"method": method, "time_s": float(np.median(ours)),
            "baseline_time_s": float(np.median(base)) if base else None,
            "ratio_vs_baseline": float(np.median(ratios)) if ratios else None,
            "ratio_spread": f"{min(ratios):.3g}-{max(ratios):.3g}" if ratios else None, **extra}


def bench_deeplagrangian(quick: bool = False, sets: list[str] | None = None, progress: bool = True) -> dict:
    """Run the benchmark; ``sets`` overrides ``dims``, ``segments``, ``n_z``, ``n_r``, ``n_t``, ``pool``,
    ``iterations``, ``n_samples``, ``kde_particles``, ``density_points``, ``repeats``, ``threads``, ``device``."""
    from scipy.stats import gaussian_kde

    from oncodyn.deeplagrangian.flow import FlowSolution
    from oncodyn.deeplagrangian.losses import LossSetup, build_pool, velocity_residual, velocity_residual_reference
    from oncodyn.deeplagrangian.velocity import NoAdvection

    cfg = {"dims": [2] if quick else [2, 3], "segments": 2 if quick else 8, "n_z": 128 if quick else 512,
           "n_r": 64 if quick else 512, "n_t": 8, "pool": 1024 if quick else 16384, "iterations": 300,
           "n_samples": 2000 if quick else 100_000, "kde_particles": 2000 if quick else 20_000,
           "density_points": 2000 if quick else 5000,
           "repeats": 2 if quick else 3, "threads": 1, "device": "auto"}
    cfg = apply_sets(cfg, sets, "bench deeplagrangian")
    device = resolve_device(cfg["device"])
    before = torch.get_num_threads()
    torch.set_num_threads(int(cfg["threads"]))
    rows = []
    try:
        for dim in cfg["dims"]:
            chain = _chain(dim, int(cfg["segments"]), device)
            k = len(chain.segments) - 1
            g = chain.segments[k]
            for p in g.parameters():
                p.requires_grad_(True)
            a, b = chain.times[k]
            setup = LossSetup(1.0, 10.0, 1.0, NoAdvection(), 0.02, a, b - a)
            n_t, n_z, n_r = int(cfg["n_t"]), int(cfg["n_z"]), int(cfg["n_r"])
            gen = torch.Generator().manual_seed(0)
            t0 = time.perf_counter()
            pool = build_pool(chain, k, int(cfg["pool"]), gen)
            pool_s = time.perf_counter() - t0
            z = torch.randn(n_z, dim, generator=gen, dtype=torch.float64).to(device)
            zr = torch.randn(n_t * n_r, dim, generator=gen, dtype=torch.float64).to(device)

            def ours():
                loss = velocity_residual(g, setup, pool.batch(n_z, gen), pool.y[: n_t * n_r], n_t, gen)
                loss.backward()

            def reference():
                loss = velocity_residual_reference(chain, k, setup, z, zr, n_t, gen)
                loss.backward()

            t_ours = _timed(ours, int(cfg["repeats"]))
            t_ref = _timed(reference, int(cfg["repeats"]))
            it = int(cfg["iterations"])
            rows.append(_row(f"{dim}D training iteration, segment {k + 1} of a chain of {k + 1}", t_ours, t_ref,
                             per_segment_s=float(np.median(t_ours)) * it + pool_s,
                             baseline_per_segment_s=float(np.median(t_ref)) * it, unit="s per iteration"))
            for p in g.parameters():
                p.requires_grad_(False)
            sol = FlowSolution(chain)
            n = int(cfg["n_samples"])
            t_s = _timed(lambda: sol.sample(n, chain.t_final), int(cfg["repeats"]))
            rows.append(_row(f"{dim}D sampling, {n} samples", t_s, None, throughput_per_s=n / float(np.median(t_s)),
                             unit="s per call"))
            x = sol.sample(n, chain.t_final, seed=1)
            pts = x[: min(n, int(cfg["density_points"]))]
            kde = gaussian_kde(x[: int(cfg["kde_particles"])].T)
            t_d = _timed(lambda: sol.log_density(pts, chain.t_final), int(cfg["repeats"]))
            t_k = _timed(lambda: kde(pts.T), int(cfg["repeats"]))
            rows.append(_row(f"{dim}D density at {len(pts)} points (baseline: KDE of {int(cfg['kde_particles'])} particles)",
                             t_d, t_k, throughput_per_s=len(pts) / float(np.median(t_d)), unit="s per call"))
    finally:
        torch.set_num_threads(before)
    return {"benchmark": "deeplagrangian",
            "setting": {"device": device, "threads": cfg["threads"], "segments": cfg["segments"], "n_z": cfg["n_z"],
                        "n_r": cfg["n_r"], "n_t": cfg["n_t"], "pool": cfg["pool"]},
            "rows": rows,
            "extra": {"note": "training baseline: loss A by its definition (whole chain inverted each iteration); "
                              "density baseline: the particle method's Gaussian KDE on the same points"}}
