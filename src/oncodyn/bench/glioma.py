"""``oncodyn bench glioma``: 3D forward solves on the MNI152 brain, 300 days, at 1 and 2 mm.

Measured in one process on the same prepared domains (phase field excluded, cached):

* ``numpy``: the readable reference (:func:`oncodyn.tumour.fk.step_numpy`, array slicing),
  the plain NumPy explicit solver and the baseline of the ratios. At 1 mm it is timed over
  ``numpy_steps`` steps and extrapolated to the full step count (stated in the row).
* ``numba``: the compiled fused stencil (the forward solver of every experiment), the full solve.
* ``torch``: the differentiable path (:class:`oncodyn.tumour.fk.TorchFK`) without gradient
  tracking, on ``device``, over ``torch_steps`` steps, extrapolated.

It also times one misfit gradient of the 2 mm inverse (discrete adjoint vs torch autograd), each in
a fresh process whose peak memory is reported beside its time.
"""

from __future__ import annotations

import resource
import time

import numpy as np

from oncodyn.config import apply_sets
from oncodyn.core.device import resolve_device
from oncodyn.experiments.glioma_common import ORIGIN_MNI
from oncodyn.tumour.anatomy import load_mni152
from oncodyn.tumour.fk import FKSolver, FKState, TorchFK, initial_state, simulate
from oncodyn.tumour.model import FKParams
from oncodyn.tumour.synthetic import domain_of


def _time_steps(step, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t0) / n


def bench_glioma(quick: bool = False, sets: list[str] | None = None, progress: bool = True) -> dict:
    """Run the benchmark; ``sets`` overrides ``resolutions``, ``t_end``, ``numpy_steps``, ``torch_steps``, ``device``, ``gradient``."""
    cfg = {"resolutions": [4.0] if quick else [1.0, 2.0], "t_end": 60.0 if quick else 300.0, "numpy_steps": 5,
           "torch_steps": 5, "device": "auto", "gradient": not quick}
    cfg = apply_sets(cfg, sets, "bench glioma")
    device = resolve_device(cfg["device"])
    p = FKParams()
    T = float(cfg["t_end"])
    phase = {"threshold": 0.5, "width_voxels": 1.0, "n_steps": 100}
    rows, extra = [], {}
    for res in cfg["resolutions"]:
        res = float(res)
        maps = load_mni152(int(res)) if res.is_integer() else None
        if maps is None:
            raise ValueError("bench glioma: resolutions must be integers (mm)")
        dom = domain_of(maps, p.grey_ratio, phase)
        x0 = maps.world_to_grid(np.asarray(ORIGIN_MNI))[0]
        simulate(dom, p, x0, [1.0])  # compile
        sol = simulate(dom, p, x0, [T], progress=progress, desc=f"numba {res:g} mm")
        n = sol.n_steps
        t_numba = sol.wall_time
        # NumPy reference: full solve when cheap, else a few steps extrapolated
        solver = FKSolver(dom, p, np.full(n, sol.dt_max), backend="numpy")
        state = [FKState(u=initial_state(dom, p, x0))]

        def np_step():
            state[0] = solver.step(state[0])

        k = n if dom.phi.size * n < 2e8 else int(cfg["numpy_steps"])
        t_np = _time_steps(np_step, k) * n
        rows.append({"resolution": f"{res:g} mm", "method": "numpy (reference)", "steps": n,
                     "solve_time_s": t_np, "measured": "full" if k == n else f"{k} steps, extrapolated",
                     "ratio_vs_numpy": 1.0})
        rows.append({"resolution": f"{res:g} mm", "method": "numba (fast path)", "steps": n, "solve_time_s": t_numba,
                     "measured": "full", "ratio_vs_numpy": t_np / t_numba})
        import torch

        fk = TorchFK(dom, device=device)
        kt = int(cfg["torch_steps"])
        dts = np.full(kt, sol.dt_max)
        with torch.no_grad():
            fk.simulate(p.D_white, p.rho, x0, p, dts[:1], [1])  # warm up
            t0 = time.perf_counter()
            fk.simulate(p.D_white, p.rho, x0, p, dts, [kt])
            if device == "cuda":
                torch.cuda.synchronize()
            t_torch = (time.perf_counter() - t0) / kt * n
        rows.append({"resolution": f"{res:g} mm", "method": f"torch ({device}, differentiable path)", "steps": n,
                     "solve_time_s": t_torch, "measured": f"{kt} steps, extrapolated", "ratio_vs_numpy": t_np / t_torch})
        extra[f"{res:g} mm: grid / crop / unfrozen voxels"] = f"{maps.shape} / {dom.shape} / {int(dom.active.sum())}"
        if cfg["gradient"] and res == 2.0:
            extra.update(_gradient_timings(T, device))
    extra["peak memory, process RSS (MiB)"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"benchmark": "glioma", "setting": {"t_end_days": T, "D_white": p.D_white, "rho": p.rho, "scheme": "heun",
                                               "device": device, "origin_MNI_mm": ORIGIN_MNI},
            "rows": rows, "extra": extra}


def _gradient_child(gradient: str, T: float, device: str) -> tuple[float, float]:
    """In a fresh process: one 2 mm misfit gradient (observations at T/2 and T); returns (s, peak RSS MiB)."""
    from oncodyn.tumour.inverse import FKInverse, InverseOptions, Observations

    p = FKParams()
    maps = load_mni152(2)
    dom = domain_of(maps, p.grey_ratio, {"threshold": 0.5, "width_voxels": 1.0, "n_steps": 100})
    x0 = maps.world_to_grid(np.asarray(ORIGIN_MNI))[0]
    times = np.array([T / 2, T])
    y = simulate(dom, p, x0, times).u
    obs = Observations(times, y, np.broadcast_to(dom.phi >= 0.5, y.shape).copy(), (None, None))
    inv = FKInverse(dom, obs, p, x0, InverseOptions(gradient=gradient, device=device))
    th = np.log([0.1, 0.03])
    inv.objective(th)  # warm up
    t0 = time.perf_counter()
    inv.objective(th)
    return time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _gradient_timings(T: float, device: str) -> dict:
    """One 2 mm misfit gradient per path, each in its own process so its peak memory is its own."""
    import multiprocessing as mp

    out = {}
    with mp.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        for g in ("adjoint", "autograd"):
            t, rss = pool.apply(_gradient_child, (g, T, device))
            out[f"2 mm misfit gradient, {g}: time (s) / process peak RSS (MiB)"] = f"{t:.3g} / {rss:.0f}"
    return out
