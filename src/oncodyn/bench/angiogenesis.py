"""``oncodyn bench angiogenesis``: the A4/A5 run-time tables of the PHKS solvers, measured in one run.

Methods (one process, same initial data: the A1 blob, γ = χ = M0 = 1, L = 100, dt = 0.1):

* FDM -- the Scharfetter--Gummel finite volumes (torch; ``device``);
* classical SIPF -- dense c-update, cubic-spline gradient (SciPy), the source's Algorithm 3.1;
* NSIPF -- the shipped CNN interpolator evaluated on blocks around the particles;
* fast (ours) -- c updated in occupied bins only, local cubic gradient at the particles (numba).

A4 varies the bins (50³, 100³, 200³ at P = 20,000), A5 the number of particles (1,000-20,000 at
``a5_bins``). Each method is timed over ``steps`` steps (``classical_steps`` for the classical
SIPF, whose steps take seconds to minutes at 200³) after one warm-up step; the total for
T = ``t_end`` is that per-step time × T/dt and is marked as projected. Our fast path is also
run end to end at 200³, P = 20,000, T = 50 (the acceptance run). ``ratio_vs_baseline`` is the
classical SIPF's per-step time divided by the method's (FDM rows: the classical SIPF at the
same bins); ``ratio_vs_fdm`` likewise against FDM.
"""

from __future__ import annotations

import time

import numpy as np

from oncodyn.chemotaxis.phks import BinGrid, Gaussian, InitialData, PHKSParams, centred
from oncodyn.config import apply_sets
from oncodyn.core.device import resolve_device
from oncodyn.core.rng import generator

PUBLISHED_A4 = {"fdm": {50: 7.31, 100: 56.89, 200: 742.24}, "sipf": {50: 2955.73, 100: 3919.37, 200: 7599.54},
                "nsipf": {50: 8.69, 100: 33.12, 200: 243.86}}
PUBLISHED_A5 = {"sipf": {1000: 211.27, 5000: 998.38, 10000: 1959.34}, "nsipf": {1000: 31.97, 5000: 32.21, 10000: 32.42}}
LABELS = {"fdm": "FDM", "sipf": "classical SIPF (spline)", "nsipf": "NSIPF (CNN)", "fast": "fast particle-field (ours)"}


def _initial(dim: int, length: float) -> InitialData:
    c = centred(dim, length)
    return InitialData(rho=Gaussian((c,), 5.0), c=Gaussian((c,), 10.0, amplitude=1.0))


def _per_step(step, state, n: int) -> tuple[float, object]:
    """Median seconds of ``n`` calls ``state = step(state)`` after one warm-up call."""
    state = step(state)
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        state = step(state)
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)), state


def time_fdm(params: PHKSParams, grid: BinGrid, dt: float, steps: int, device: str) -> float:
    """Median seconds per FDM step from the A1 initial data."""
    from oncodyn.chemotaxis.phks_fdm import PHKSFDM

    init = _initial(grid.dim, grid.length)
    solver = PHKSFDM(params, grid, dt, device=device, inplace=True)
    state = solver.init(init.rho_on_grid(grid, params.mass), init.c_on_grid(grid))
    t, _ = _per_step(lambda s: solver.step(s, None), state, steps)
    return t


def particle_solver(method: str, params: PHKSParams, grid: BinGrid, dt: float, n_particles: int, device: str = "cpu"):
    """(solver, initial state) of a particle method on the A1 data."""
    from oncodyn.chemotaxis.phks_sipf import ParticleFieldSolver
    from oncodyn.experiments.angio_common import AngioConfig, make_interpolator, particle_options

    cfg = AngioConfig(dim=grid.dim, length=grid.length, bins=grid.n, dt=dt, n_particles=n_particles, t_end=dt,
                      compare_times=[dt])
    opts = particle_options(cfg, method)
    solver = ParticleFieldSolver(params, grid, opts, interpolator=make_interpolator(method, grid.dim, device))
    init = _initial(grid.dim, grid.length)
    x0 = init.particles(generator(0, 0xA4), n_particles, grid.length)
    return solver, solver.init(x0, init.c_on_grid(grid))


def time_particles(method: str, params: PHKSParams, grid: BinGrid, dt: float, n_particles: int, steps: int,
                   device: str = "cpu") -> float:
    """Median seconds per step of a particle method (``device``: where the NSIPF network runs)."""
    solver, state = particle_solver(method, params, grid, dt, n_particles, device)
    rng = generator(1, 0xA5)

    def step(s):
        return solver.step(s, np.sqrt(dt) * rng.standard_normal((n_particles, grid.dim)))

    t, _ = _per_step(step, state, steps)
    return t


def full_fast_run(params: PHKSParams, grid: BinGrid, dt: float, n_particles: int, t_end: float) -> float:
    """Wall seconds of a complete fast particle--field run to ``t_end`` (setup included)."""
    t0 = time.perf_counter()
    solver, state = particle_solver("fast", params, grid, dt, n_particles)
    rng = generator(2, 0xA6)
    for _ in range(int(round(t_end / dt))):
        state = solver.step(state, np.sqrt(dt) * rng.standard_normal((n_particles, grid.dim)))
    return time.perf_counter() - t0


def bench_angiogenesis(quick: bool = False, sets: list[str] | None = None, progress: bool = True) -> dict:
    """Run the A4/A5 benchmark; ``sets`` overrides the keys of the defaults below."""
    cfg = {"bins": [24, 32] if quick else [50, 100, 200], "a5_particles": [1000, 5000] if quick else [1000, 5000, 10000, 20000],
           "a5_bins": 24 if quick else 50, "n_particles": 2000 if quick else 20_000, "dt": 0.1, "t_end": 50.0,
           "steps": 2 if quick else 5, "classical_steps": 1, "methods": ["fdm", "sipf", "nsipf", "fast"],
           "full_run": not quick, "full_run_bins": 200, "device": "auto", "dim": 3}
    cfg = apply_sets(cfg, sets, "bench angiogenesis")
    device = resolve_device(cfg["device"])
    dim, dt, T = int(cfg["dim"]), float(cfg["dt"]), float(cfg["t_end"])
    params = PHKSParams(dim=dim)
    n_steps = int(round(T / dt))
    methods = list(cfg["methods"])
    from tqdm.auto import tqdm

    jobs = [("A4", m, int(b), int(cfg["n_particles"])) for b in cfg["bins"] for m in methods]
    jobs += [("A5", m, int(cfg["a5_bins"]), int(p)) for p in cfg["a5_particles"] for m in methods if m != "fdm"]
    times: dict[tuple, float] = {}
    for table, m, b, P in tqdm(jobs, desc="bench angiogenesis", disable=not progress, leave=False):
        grid = BinGrid(b, params.length, dim)
        steps = int(cfg["classical_steps"] if m == "sipf" else cfg["steps"])
        if m == "fdm":
            times[(table, m, b, P)] = time_fdm(params, grid, dt, steps, device)
        else:
            times[(table, m, b, P)] = time_particles(m, params, grid, dt, P, steps, device)
    rows = []
    for (table, m, b, P), t in times.items():
        base = times.get((table, "sipf", b, P))
        fdm = times.get(("A4", "fdm", b, int(cfg["n_particles"])))
        pub = (PUBLISHED_A4 if table == "A4" else PUBLISHED_A5).get(m, {}).get(b if table == "A4" else P)
        rows.append({"table": table, "method": LABELS[m], "bins": f"{b}^{dim}", "P": P if m != "fdm" else None,
                     "time_per_step_s": t, "projected_total_s": t * n_steps, "published_total_s": pub,
                     "ratio_vs_baseline": (base / t) if base else None, "ratio_vs_fdm": (fdm / t) if fdm else None})
    extra = {}
    if cfg["full_run"]:
        b = int(cfg["full_run_bins"])
        t = full_fast_run(params, BinGrid(b, params.length, dim), dt, int(cfg["n_particles"]), T)
        extra[f"fast path end to end: {b}^{dim} bins, P = {int(cfg['n_particles']):,}, dt = {dt:g}, T = {T:g} (s)"] = t
    extra["note"] = (f"projected_total_s = time_per_step_s × {n_steps} steps (T = {T:g}, dt = {dt:g}); published "
                     "totals from the source (GTX 1080 GPU for NSIPF training/inference, CPU solvers); ratio_vs_baseline "
                     "= classical SIPF time / this time at the same bins and P")
    return {"benchmark": "angiogenesis", "setting": {"dim": dim, "dt": dt, "T": T, "device": device,
                                                      "P (A4)": int(cfg["n_particles"]), "A5 bins": int(cfg["a5_bins"])},
            "rows": rows, "extra": extra}
