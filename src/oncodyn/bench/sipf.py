"""``oncodyn bench sipf``: per-step cost of the published SIPF algorithm and of each fast path.

All timings are taken in one process on the same particle configuration: P particles after
a few steps from the uniform unit ball (M0 = 80, base parameters). The baseline is
:class:`~oncodyn.chemotaxis.sipf_reference.SIPFReference`, the published algorithm
vectorised (per-particle FFTs in batches, chunked direct sums). Also measured: the error of
the fast interaction against the direct sum, one full S1 run (1,000 steps, H = 24) with the
spectral variant end to end, and the process's peak memory.
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
from oncodyn.config import parse_set
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
    over = parse_set(sets)
    unknown = set(over) - set(cfg)
    if unknown:
        raise ValueError(f"bench sipf: unknown key(s) {sorted(unknown)}; allowed: {sorted(cfg)}")
    cfg.update(over)
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

    rows = []
    ref = SIPFReference(params, base)
    t_ref = _time_steps(ref, state, path, dt, int(cfg["baseline_repeats"]))
    rows.append({"method": "faithful (published Alg. 1-3, vectorised)", "time_per_step_s": t_ref,
                 "ratio_vs_baseline": 1.0, "interaction_rel_error": 0.0})
    direct = interaction.interaction_direct(state.x, ref.beta, ref.weight, device=device)
    variants = [("exact: NUFFT + FMM" if device == "cpu" else "exact: NUFFT + direct sum (GPU)", "exact", {}),
                ("exact: NUFFT + FMM, fmm_tol=1e-3", "exact", {"fmm_tol": 1e-3}),
                (f"random batch (R={cfg['batch_size']})", "random_batch", {}),
                ("spectral / particle-in-cell", "spectral", {})]
    if device != "cpu":
        variants.pop(1)
    for label, variant, extra in variants:
        s = SIPFSolver(params, SIPFOptions(**{**base.__dict__, "variant": variant, **extra}))
        t = _time_steps(s, state, path, dt, int(cfg["repeats"]))
        err = None
        if variant in ("exact", "random_batch"):
            f = s.particle_interaction(state.x)
            err = float(np.linalg.norm(f - direct) / np.linalg.norm(direct))
        rows.append({"method": label, "time_per_step_s": t, "ratio_vs_baseline": t_ref / t,
                     "interaction_rel_error": err})
    extra = {}
    if cfg["s1_run"]:
        steps = int(cfg["s1_steps"])
        t0 = time.perf_counter()
        run = simulate(params, SIPFOptions(**{**base.__dict__, "variant": "spectral"}), steps * dt, seed=0,
                       diag_every=10, progress=progress, desc="S1 spectral")
        extra[f"S1 run, spectral, P={P}, H={H}, {steps} steps, end to end (s)"] = time.perf_counter() - t0
        extra["S1 run, exact (estimate = steps x measured per-step time) (s)"] = steps * rows[1]["time_per_step_s"]
        del run
    extra["peak memory, process RSS (MiB)"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"benchmark": "sipf", "setting": {"P": P, "H": H, "M0": params.mass, "dt": dt, "device": device,
                                             "fmm_tol": cfg["fmm_tol"]}, "rows": rows, "extra": extra}
