"""``oncodyn bench cpm``: copy attempts per second of the CPM samplers, against pure Python and Artistoo.

The Hamiltonian is Artistoo's standard example: one cell type, J = [[0, 20], [20, 100]] (contact,
order-2 neighbourhood), volume λ_V = 50, V* = 200, perimeter λ_P = 2, P* = 180 (order 2), T = 20,
copy neighbourhood of order 2 (Moore). Two cases, both periodic:

* ``small``: 200×200, 50 cells started as a confluent Voronoi blob in the centre;
* ``large``: 1000×1000, 1,250 cells started as discs of radius 8 on a jittered grid, spread over
  the whole lattice like Artistoo's benchmark (stamped directly: :func:`oncodyn.cpm.lattice.discs`
  scans the lattice once per cell, which takes half a minute here).

Each case is burnt in with the exact sampler, then every sampler runs from that same state.

Currency: *copy attempts per second* counts attempts at border sites (sites with a foreign
neighbour in the copy neighbourhood), the unit Artistoo reports and the one our samplers' counters
hold; ``mcs_per_s`` counts lattice MCS (N random-site attempts each). The pure-Python reference
(:mod:`oncodyn.cpm.reference`) makes random-site attempts over the whole lattice, so its rate is
converted: random-site attempts/s × |B|/N = border-site attempts/s (|B| averaged over the timed
run). It is timed on a short run only (list conversion excluded). Compilation happens outside the
timed region. Artistoo's figures are its published ones (Node 20, one thread), not measured here.
"""

from __future__ import annotations

import math
import os
import sys
import time

import numba
import numpy as np

from oncodyn.config import apply_sets
from oncodyn.cpm.hamiltonians import Contact, Hamiltonian, Perimeter, Volume
from oncodyn.cpm.lattice import CPMState, Lattice, voronoi_blob
from oncodyn.cpm.reference import PythonMetropolis
from oncodyn.cpm.samplers import ApproxParallelSampler, MetropolisSampler, ParallelMetropolisSampler

# Artistoo's published figures (Node 20, 1 thread): border-site copy attempts / s and lattice MCS / s
ARTISTOO = {"small": {"attempts": (1.9e6, 3.2e6), "mcs": (48.0, 80.0)},
            "large": {"attempts": (0.9e6, 1.5e6), "mcs": None}}


def artistoo_hamiltonian() -> Hamiltonian:
    """Artistoo's standard single-type example."""
    return Hamiltonian((Contact(np.array([[0.0, 20.0], [20.0, 100.0]]), order=2),
                        Volume(lam=50.0, target=200.0, n_types=1),
                        Perimeter(lam=2.0, target=180.0, order=2, n_types=1)), temperature=20.0, copy_order=2)


def disc_grid(lattice: Lattice, n_cells: int, radius: int, rng: np.random.Generator) -> CPMState:
    """``n_cells`` discs (sites with d² ≤ radius², as :func:`discs`) on a jittered square grid over a
    periodic 2D lattice, one type; the grid slots used are a random subset of the ⌈√n⌉² slots."""
    g = math.ceil(math.sqrt(n_cells))
    H, W = lattice.shape
    sy, sx = H / g, W / g
    jit = int(min(sy, sx) / 2 - radius - 1)
    if jit < 0:
        raise ValueError(f"{n_cells} discs of radius {radius} do not fit apart on a {H}x{W} lattice")
    slots = rng.choice(g * g, n_cells, replace=False)
    r = np.arange(-radius, radius + 1)
    dy, dx = np.meshgrid(r, r, indexing="ij")
    inside = dy ** 2 + dx ** 2 <= radius ** 2
    dy, dx = dy[inside], dx[inside]
    sigma = np.zeros((H, W), np.int32)
    for c, s in enumerate(slots):
        cy = int((s // g + 0.5) * sy) + int(rng.integers(-jit, jit + 1))
        cx = int((s % g + 0.5) * sx) + int(rng.integers(-jit, jit + 1))
        sigma[(cy + dy) % H, (cx + dx) % W] = c + 1
    return CPMState(lattice, sigma, np.concatenate([[0], np.ones(n_cells, np.int32)]))


def _n_border(state: CPMState, n_prop: int, nbr: np.ndarray) -> int:
    sig = np.append(state.sigma.ravel(), state.n_cells + 1)
    return int(np.count_nonzero((sig[:-1, None] != sig[nbr[:, :n_prop]]).any(1)))


def _time_sampler(smp, min_time: float, min_mcs: float, sweep_mcs: float = 10.0) -> dict:
    """Sweeps of ``sweep_mcs`` MCS until both ``min_time`` seconds and ``min_mcs`` MCS have passed
    (one call per 10 MCS, as the run driver makes them; per-call overhead is then negligible)."""
    smp.sweep(0.02)  # compile (or load the cache) and warm up, outside the timed region
    a0, c0, m0 = smp.attempts, smp.accepted, smp.state.mcs
    t0 = time.perf_counter()
    while True:
        smp.sweep(sweep_mcs)
        t = time.perf_counter() - t0
        if t >= min_time and smp.state.mcs - m0 >= min_mcs:
            break
    att, acc, mcs = smp.attempts - a0, smp.accepted - c0, smp.state.mcs - m0
    return {"copy_attempts_per_s": att / t, "accepted_per_s": acc / t, "mcs_per_s": mcs / t,
            "acceptance": acc / max(att, 1),
            "measured": f"{mcs:.3g} MCS in {t:.2f} s"}


def _row(case: str, method: str, r: dict, py_rate: float, art_mid: float) -> dict:
    return {"case": case, "method": method, "copy_attempts_per_s": r["copy_attempts_per_s"],
            "accepted_per_s": r.get("accepted_per_s"), "mcs_per_s": r["mcs_per_s"], "acceptance": r["acceptance"],
            "ratio_vs_python": r["copy_attempts_per_s"] / py_rate,
            "ratio_vs_artistoo": r["copy_attempts_per_s"] / art_mid, "measured": r["measured"]}


def bench_cpm(quick: bool = False, sets: list[str] | None = None, progress: bool = True) -> dict:
    """Run the CPM benchmark; ``sets`` overrides any key of the config below (e.g. ``cases``,
    ``min_time_s``, ``python_attempts_small``, ``n_threads``)."""
    cfg = {"cases": ["small"] if quick else ["small", "large"],
           "small_size": 100 if quick else 200, "small_cells": 12 if quick else 50,
           "large_size": 1000, "large_cells": 1250, "volume": 200, "disc_radius": 8,
           "burn_mcs": 2.0 if quick else 20.0, "min_time_s": 0.05 if quick else 1.5,
           "large_min_mcs": 3.0, "python_attempts_small": 20_000 if quick else 200_000,
           "python_attempts_large": 20_000 if quick else 100_000, "approx_k_frac": 0.01, "classic": True,
           "n_threads": 0, "seed": 0, "sweep_mcs": 1.0 if quick else 10.0}
    cfg = apply_sets(cfg, sets, "bench cpm")
    unknown = set(cfg["cases"]) - {"small", "large"}
    if unknown:
        raise ValueError(f"bench cpm: unknown case(s) {sorted(unknown)}; cases are small, large")
    ham = artistoo_hamiltonian()
    n_threads = int(cfg["n_threads"]) or numba.get_num_threads()
    seed = int(cfg["seed"])
    min_time = float(cfg["min_time_s"])
    rows, extra = [], {"cpu count": os.cpu_count(), "parallel sampler threads": n_threads,
                       "load average at start (1 min)": os.getloadavg()[0]}

    def say(msg):
        if progress:
            print(f"bench cpm: {msg}", file=sys.stderr, flush=True)

    for case in cfg["cases"]:
        rng = np.random.default_rng(seed)
        size, n_cells = int(cfg[f"{case}_size"]), int(cfg[f"{case}_cells"])
        lat = Lattice((size, size), periodic=True)
        if case == "small":
            st = voronoi_blob(lat, n_cells, float(cfg["volume"]), rng, type_fractions=(1.0,))
        else:
            st = disc_grid(lat, n_cells, int(cfg["disc_radius"]), rng)
        say(f"{case}: {size}x{size}, {st.n_cells} cells, burn-in {cfg['burn_mcs']:g} MCS")
        burn = MetropolisSampler(st, ham, seed=seed)
        burn.sweep(float(cfg["burn_mcs"]))
        st = burn.state.copy()
        N = lat.n_sites
        n_b = burn.n_border
        min_mcs = float(cfg["large_min_mcs"]) if case == "large" else 0.0
        label = f"{case} {size}x{size}, {st.n_cells} cells"
        art = ARTISTOO[case]
        art_mid = float(np.mean(art["attempts"]))

        # pure-Python reference: random-site attempts, converted to border-site attempts by |B|/N
        say(f"{case}: pure Python")
        ref = PythonMetropolis(st.copy(), ham)
        n_py = int(cfg[f"python_attempts_{case}"])
        t0 = time.perf_counter()
        _, acc_py = ref.run(n_py, np.random.default_rng(seed))
        t_py = time.perf_counter() - t0
        ref.write_back()
        frac = 0.5 * (n_b + _n_border(ref.state, burn.params.n_prop, burn.params.nbr)) / N
        py_rate = n_py / t_py * frac
        py = {"copy_attempts_per_s": py_rate, "accepted_per_s": acc_py / t_py, "mcs_per_s": n_py / t_py / N, "acceptance": acc_py / (n_py * frac),
              "measured": f"{n_py:,} random-site attempts in {t_py:.2f} s, x |B|/N = {frac:.3f}"}
        rows.append(_row(label, "pure Python (reference)", py, py_rate, art_mid))

        say(f"{case}: exact")
        exact = _time_sampler(MetropolisSampler(st, ham, seed=seed), min_time, min_mcs, float(cfg["sweep_mcs"]))
        rows.append(_row(label, "exact (numba, 1 core)", exact, py_rate, art_mid))
        if cfg["classic"]:
            say(f"{case}: exact, classic acceptance")
            r = _time_sampler(MetropolisSampler(st, ham, seed=seed, hastings=False), min_time, min_mcs, float(cfg["sweep_mcs"]))
            rows.append(_row(label, "exact, classic acceptance (numba, 1 core)", r, py_rate, art_mid))
        say(f"{case}: parallel exact, {n_threads} threads")
        par = _time_sampler(ParallelMetropolisSampler(st, ham, seed=seed, n_threads=n_threads), min_time, min_mcs, float(cfg["sweep_mcs"]))
        rows.append(_row(label, f"parallel exact (numba, {n_threads} threads)", par, py_rate, art_mid))
        k = max(1, round(float(cfg["approx_k_frac"]) * n_b))
        say(f"{case}: approx parallel, K={k}")
        r = _time_sampler(ApproxParallelSampler(st, ham, seed=seed, k=k), min_time, min_mcs, float(cfg["sweep_mcs"]))
        rows.append(_row(label, f"approx parallel (NeuralCPM, K={k})", r, py_rate, art_mid))

        lo, hi = art["attempts"]
        mcs = art["mcs"]
        text = f"not measured: published range {lo / 1e6:g}-{hi / 1e6:g} M attempts/s"
        text += f" ({mcs[0]:g}-{mcs[1]:g} MCS/s)" if mcs else ""
        published_size = 200 if case == "small" else 1000
        text += f", for {published_size}x{published_size}" if size != published_size else ""
        pub = {"copy_attempts_per_s": art_mid, "mcs_per_s": float(np.mean(mcs)) if mcs else None,
               "acceptance": None, "measured": text}
        rows.append(_row(label, "Artistoo (published, Node 20, 1 thread)", pub, py_rate, art_mid))
        extra[f"{case}: border sites |B| / N after burn-in"] = f"{n_b} / {N} = {n_b / N:.3f}"
        extra[f"{case}: parallel speed-up over exact ({n_threads} threads), attempts / accepted copies"] = (
            f"{par['copy_attempts_per_s'] / exact['copy_attempts_per_s']:.2f} / "
            f"{par['accepted_per_s'] / exact['accepted_per_s']:.2f}")
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel region ran
        layer = "none"
    extra["numba threading layer / OMP_WAIT_POLICY"] = f"{layer} / {os.environ.get('OMP_WAIT_POLICY', 'default')}"
    extra["note"] = ("copy_attempts_per_s = attempts at border sites per second (Artistoo's unit); mcs_per_s = "
                     "lattice MCS (N random-site attempts) per second; pure Python: random-site attempts/s x |B|/N; "
                     "ratio_vs_artistoo against the middle of Artistoo's published range; approx parallel proposes "
                     "only foreign neighbours, so each of its attempts is a real proposal; accepted_per_s counts applied "
                     "copies (the parallel sampler's attempts on cells straddling a slab edge are rejected, so compare "
                     "both columns)")
    setting = {"hamiltonian": "J=[[0,20],[20,100]], lam_V=50, V*=200, lam_P=2, P*=180, T=20",
               "copy_order": ham.copy_order, "periodic": True, "burn_mcs": cfg["burn_mcs"],
               "min_time_s": min_time, "hastings": True}
    return {"benchmark": "cpm", "setting": setting, "rows": rows, "extra": extra}
