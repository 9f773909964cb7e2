"""``oncodyn bench sipf``: per-step cost of the published SIPF algorithm and of each fast path.

All timings are taken in one process on the same particle configuration: P particles after
a few steps from the uniform unit ball (M0 = 80, base parameters). The baseline is
:class:`~oncodyn.chemotaxis.sipf_reference.SIPFReference`, the published algorithm
vectorised (per-particle FFTs in batches, chunked direct sums). Also measured: the error of
the fast interaction against the direct sum, one full S1 run (1,000 steps, H = 24) with the
spectral variant end to end (whose final, collapsed cloud is where tree codes slow down,
so the pair interaction is timed on it too), and the process's peak memory.
"""

from __future__ import annotations

import resource
import time

import numpy as np

from oncodyn.chemotaxis import interaction
from oncodyn.chemotaxis.driver import initial_particles, simulate
from oncodyn.chemotaxis.models import KellerSegelParams
from oncodyn.chemotaxis.sipf import SIPFOptions, SIPFSolver
from oncodyn.chemotaxis.sipf_reference import SIPFReference
from oncodyn.config import apply_sets
from oncodyn.core.device import resolve_device
from oncodyn.core.rng import BrownianPath


def _time_steps(solver, state, path, dt, repeats: int) -> float:
    """Median wall time of ``repeats`` steps from ``state`` (s)."""
    ts = []
    for i in range(repeats):
        dW = path.increment(i, dt)
        t0 = time.perf_counter()
        solver.step(state, dW)
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def bench_sipf(quick: bool = False, sets: list[str] | None = None, progress: bool = True) -> dict:
    """Run the SIPF benchmark; ``sets`` overrides ``n_particles``, ``n_modes``, ``repeats``, ``s1_run``, ``device``."""
    cfg = {"n_particles": 1000 if quick else 10_000, "n_modes": 12 if quick else 24, "mass": 80.0,
           "repeats": 3, "baseline_repeats": 1, "s1_run": True, "s1_steps": 100 if quick else 1000,
           "fmm_tol": 1e-6, "batch_size": 100, "device": "auto"}
    cfg = apply_sets(cfg, sets, "bench sipf")
    device = resolve_device(cfg["device"])
    P, H = int(cfg["n_particles"]), int(cfg["n_modes"])
    params = KellerSegelParams(mass=float(cfg["mass"]))
    dt = 1e-4
    base = SIPFOptions(n_modes=H, dt=dt, n_particles=P, fmm_tol=float(cfg["fmm_tol"]), device=device,
                       batch_size=int(cfg["batch_size"]))
    path = BrownianPath(0, P, 3, dt)

    # a realistic state: a few spectral steps from the unit ball
    warm = SIPFSolver(params, SIPFOptions(**{**base.__dict__, "variant": "spectral"}))
    state = warm.init(initial_particles(params, P, seed=0))
    for n in range(3):
        state = warm.step(state, path.increment(n, dt))

    extra = {}
    collapsed = None
    if cfg["s1_run"]:  # S1 (M0 = 80) with the spectral variant, end to end; its final cloud has collapsed
        steps = int(cfg["s1_steps"])
        t0 = time.perf_counter()
        run = simulate(params, SIPFOptions(**{**base.__dict__, "variant": "spectral"}), steps * dt, seed=0,
                       diag_every=10, progress=progress, desc="S1 spectral")
        extra[f"S1 run, spectral, P={P}, H={H}, {steps} steps, end to end (s)"] = time.perf_counter() - t0
        collapsed = run.state.x
        extra["S1 final cloud: fraction of particles within |x| < 0.1"] = float(np.mean(np.linalg.norm(collapsed, axis=1) < 0.1))

    rows = []
    ref = SIPFReference(params, base)
    t_ref = _time_steps(ref, state, path, dt, int(cfg["baseline_repeats"]))
    direct = interaction.interaction_direct(state.x, ref.beta, ref.weight, device=device)
    t0 = time.perf_counter()
    direct_c = interaction.interaction_direct(collapsed, ref.beta, ref.weight, device=device) if collapsed is not None else None
    t_direct_c = time.perf_counter() - t0
    rows.append({"method": "faithful (published Alg. 1-3, vectorised)", "time_per_step_s": t_ref,
                 "ratio_vs_baseline": 1.0, "interaction_rel_error": 0.0,
                 "pair_sum_collapsed_s": t_direct_c if collapsed is not None else None})
    if device == "cpu":
        variants = [("exact: NUFFT + compiled direct sum", "exact", {"interaction": "compiled"}),
                    (f"exact: NUFFT + FMM, fmm_tol={cfg['fmm_tol']:g}", "exact", {"interaction": "fmm"}),
                    ("exact: NUFFT + FMM, fmm_tol=1e-3", "exact", {"interaction": "fmm", "fmm_tol": 1e-3})]
    else:
        variants = [("exact: NUFFT + direct sum (GPU)", "exact", {"interaction": "direct"})]
    variants += [(f"random batch (R={cfg['batch_size']})", "random_batch", {}),
                 ("spectral / particle-in-cell", "spectral", {})]
    for label, variant, extra_opts in variants:
        s = SIPFSolver(params, SIPFOptions(**{**base.__dict__, "variant": variant, **extra_opts}))
        t = _time_steps(s, state, path, dt, int(cfg["repeats"]))
        row = {"method": label, "time_per_step_s": t, "ratio_vs_baseline": t_ref / t,
               "interaction_rel_error": None, "pair_sum_collapsed_s": None}
        if variant in ("exact", "random_batch"):
            f = s.particle_interaction(state.x)
            row["interaction_rel_error"] = float(np.linalg.norm(f - direct) / np.linalg.norm(direct))
        if variant == "exact" and collapsed is not None:
            t0 = time.perf_counter()
            fc = s.particle_interaction(collapsed)
            row["pair_sum_collapsed_s"] = time.perf_counter() - t0
            row["interaction_rel_error"] = max(row["interaction_rel_error"],
                                               float(np.linalg.norm(fc - direct_c) / np.linalg.norm(direct_c)))
        rows.append(row)
    extra["peak memory, process RSS (MiB)"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    extra["note"] = ("time_per_step_s on the initial ball; pair_sum_collapsed_s: the pair interaction alone on "
                     "the collapsed S1 cloud; interaction_rel_error: relative l2 error against the direct sum "
                     "(worst of both clouds; per-step estimator error for random batch)")
    return {"benchmark": "sipf", "setting": {"P": P, "H": H, "M0": params.mass, "dt": dt, "device": device,
                                             "fmm_tol": cfg["fmm_tol"]}, "rows": rows, "extra": extra}
