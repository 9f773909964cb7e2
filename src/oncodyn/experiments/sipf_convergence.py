"""S3--S5: convergence of SIPF in the time step, the number of particles and the number of modes.

Setting (spec S3): M0 = 80, T = 0.01 (before any singularity), base parameters. Errors are
relative L2 errors of c(T) (by Parseval, on the coefficients) against a reference run that
shares the initial particles and the Brownian path (coarse increments are sums of the
reference's fine ones), so the error measured is the discretisation error, not Monte Carlo
noise between independent runs.
"""

from __future__ import annotations

import numpy as np
from pydantic import field_validator

from oncodyn.chemotaxis.driver import initial_particles, simulate
from oncodyn.chemotaxis.models import total_concentration_exact
from oncodyn.core.rng import BrownianPath
from oncodyn.experiments.registry import Comparison, ExperimentResult, RunContext, register
from oncodyn.experiments.sipf_common import SIPFConfig, modes_list
from oncodyn.io.rundir import RunDir
from oncodyn.core.fitting import fit_slope

PUBLISHED_DT = {4: (0.01756, 0.01773), 5: (0.00884, 0.00898), 6: (0.00440, 0.00452),
                7: (0.00218, 0.00227), 8: (0.00106, 0.00113)}
PUBLISHED_DT_ORDER = 1.01
PUBLISHED_P = {100: 0.00434, 200: 0.00359, 400: 0.00268, 800: 0.00237, 1600: 0.00198}
PUBLISHED_P_ORDER = -0.29
PUBLISHED_H = {6: 0.00124, 8: 0.00109, 10: 0.00089, 12: 0.00080}
PUBLISHED_H_ORDER = -0.66


def rel_l2(a: np.ndarray, ref: np.ndarray) -> float:
    """||a - ref|| / ||ref|| over the coefficients (Parseval: the L2 norm on the box)."""
    return float(np.linalg.norm(a - ref) / np.linalg.norm(ref))


def common_modes(alpha: np.ndarray, H: int) -> np.ndarray:
    """The centred ``[H]*d`` block of a ``[H']*d`` coefficient array (H <= H')."""
    Hp = alpha.shape[0]
    s = slice(Hp // 2 - H // 2, Hp // 2 + H // 2)
    return alpha[(s,) * alpha.ndim]


def plot_errors(rd: RunDir) -> list:
    from oncodyn.viz import figures as fg

    m = rd.read_metrics()
    if "dt" in m:
        return [fg.loglog_fit(rd.figures / "error_vs_dt.png",
                              {"c(T) rel. L2": (m["dt"], m["err_c"]), "c-bar at T": (m["dt"], m["err_cbar"]),
                               "published c(T)": ([0.01 / 2**e for e in PUBLISHED_DT], [v[0] for v in PUBLISHED_DT.values()])},
                              "dt", "error", "S3: error vs dt")]
    if "P" in m:
        return [fg.loglog_fit(rd.figures / "error_vs_P.png", {"ours": (m["P"], m["err"]),
                              "published": (list(PUBLISHED_P), list(PUBLISHED_P.values()))}, "P", "error", "S4")]
    if "H" in m:
        return [fg.loglog_fit(rd.figures / "error_vs_H.png", {"ours": (m["H"], m["err"]),
                              "published": (list(PUBLISHED_H), list(PUBLISHED_H.values()))}, "H", "error", "S5")]
    return []


class DtConvergenceConfig(SIPFConfig):
    """S3: ``mass``, ``t_end``; runs at dt = 2^-e T for e in ``exponents``, reference 2^-ref_exponent T."""

    mass: float = 80.0
    t_end: float = 0.01
    exponents: list[int] = [4, 5, 6, 7, 8]
    ref_exponent: int = 11

    presets = {
        "quick": {"n_particles": 300, "n_modes": 8, "exponents": [2, 3, 4], "ref_exponent": 6, "variant": "spectral"},
        "spectral": {"variant": "spectral"},
    }

    @field_validator("exponents")
    @classmethod
    def _exps(cls, v):
        if not v or any(e < 0 for e in v):
            raise ValueError("must be a non-empty list of non-negative integers")
        return v


def _cbar_errors(series: dict, params) -> tuple[float, float]:
    """Relative error of c-bar at T, and the RMS relative error over (0, T], against the exact ODE.

    The published "c-bar error" column equals the first to all printed digits
    (0.01773 ... 0.00113 at dt = 2^-4 ... 2^-8 T), so that is the one compared.
    """
    t, cb = series["t"][1:], series["c_total"][1:]
    rel = (cb - total_concentration_exact(t, params)) / total_concentration_exact(t, params)
    return float(abs(rel[-1])), float(np.sqrt(np.mean(rel**2)))


@register("sipf-dt-convergence", DtConvergenceConfig, "S3: relative L2 error of c(T) and c-bar error vs dt; order ~1", plot=plot_errors)
def run_dt(cfg: DtConvergenceConfig, ctx: RunContext) -> ExperimentResult:
    if max(cfg.exponents) >= cfg.ref_exponent:
        raise ValueError("exponents: must all be < ref_exponent")
    params = cfg.params(cfg.mass)
    fine_dt = cfg.t_end / 2**cfg.ref_exponent
    x0 = initial_particles(params, cfg.n_particles, cfg.seed, cfg.radius0)
    path = BrownianPath(cfg.seed, cfg.n_particles, params.dim, fine_dt)

    def one(e: int):
        dt = cfg.t_end / 2**e
        ctx.log(f"S3: dt = 2^-{e} T ({2**e} steps), {cfg.variant}, P={cfg.n_particles}, H={cfg.n_modes}")
        return simulate(params, cfg.options(ctx.device, dt=dt), cfg.t_end, seed=cfg.seed, x0=x0, brownian=path,
                        diag_every=1, sup_norms=False, progress=ctx.progress, desc=f"dt=2^-{e}T",
                        checkpoint_path=ctx.rundir.checkpoint(f"dt{e}"))

    ref = one(cfg.ref_exponent)
    rows, errs, cerrs, crms, dts = [], [], [], [], []
    for e in cfg.exponents:
        r = one(e)
        err = rel_l2(r.state.alpha, ref.state.alpha)
        cerr, crm = _cbar_errors(r.series, params)
        pub = PUBLISHED_DT.get(e, (None, None))
        rows.append([f"2^-{e} T", pub[0], err, None if pub[0] is None else err / pub[0], pub[1], cerr, crm])
        errs.append(err), cerrs.append(cerr), crms.append(crm), dts.append(cfg.t_end / 2**e)
    order = fit_slope(np.array(dts), np.array(errs)) if len(dts) > 1 else float("nan")
    corder = fit_slope(np.array(dts), np.array(cerrs)) if len(dts) > 1 else float("nan")
    rows.append(["fitted order", PUBLISHED_DT_ORDER, order, None, None, corder, None])
    table = Comparison(
        title=f"S3 convergence in dt (M0={cfg.mass:g}, T={cfg.t_end:g}, H={cfg.n_modes}, P={cfg.n_particles}, "
              f"variant={cfg.variant}, reference dt=2^-{cfg.ref_exponent} T, seed={cfg.seed})",
        columns=["dt", "published c(T) error", "ours", "ours/published", "published c-bar error",
                 "ours c-bar at T", "ours c-bar RMS over (0,T]"],
        rows=rows,
        note="Shared initial particles and Brownian path. c-bar errors are relative to the exact ODE solution; "
             "the published c-bar column matches our error at t = T to all printed digits (the spec calls it an "
             "RMS over [0, T], which is ~1.35x larger and is shown for completeness).")
    return ExperimentResult(metrics={"dt": dts, "err_c": errs, "err_cbar": cerrs, "err_cbar_rms": crms, "order_c": order,
                                     "order_cbar": corder}, tables=[table])


def error_rows(values: list, errs: list[float], published: dict, published_order: float) -> tuple[list, float]:
    """Table rows (value, published, ours, ratio) plus the fitted log-log slope row; returns (rows, slope)."""
    rows = [[v, published.get(v), e, None if published.get(v) is None else e / published[v]]
            for v, e in zip(values, errs)]
    slope = fit_slope(np.array(values), np.array(errs))
    rows.append(["fitted exponent", published_order, slope, None])
    return rows, slope


class PConvergenceConfig(SIPFConfig):
    """S4: error of c(T) for P in ``particle_counts`` against a reference with ``n_particles``."""

    mass: float = 80.0
    t_end: float = 0.01
    particle_counts: list[int] = [100, 200, 400, 800, 1600]
    n_seeds: int = 4

    presets = {"quick": {"n_particles": 800, "n_modes": 8, "particle_counts": [50, 100, 200], "t_end": 0.002,
                         "n_seeds": 2, "variant": "spectral"},
               "spectral": {"variant": "spectral"}}


@register("sipf-particle-convergence", PConvergenceConfig, "S4: error of c(T) vs the number of particles P", plot=plot_errors)
def run_p(cfg: PConvergenceConfig, ctx: RunContext) -> ExperimentResult:
    params = cfg.params(cfg.mass)
    ctx.log(f"S4: reference P={cfg.n_particles}, {cfg.variant}")
    ref = simulate(params, cfg.options(ctx.device), cfg.t_end, seed=cfg.seed, diag_every=10**9, sup_norms=False,
                   progress=ctx.progress, desc="reference", checkpoint_path=ctx.rundir.checkpoint("ref"))
    errs = []
    for P in cfg.particle_counts:
        e = []
        for s in range(cfg.n_seeds):  # independent particle sets: the error is statistical, so average seeds
            r = simulate(params, cfg.options(ctx.device, n_particles=P), cfg.t_end, seed=cfg.seed + 1 + s,
                         diag_every=10**9, sup_norms=False, progress=ctx.progress, desc=f"P={P} seed {s}",
                         checkpoint_path=ctx.rundir.checkpoint(f"P{P}_s{s}"))
            e.append(rel_l2(r.state.alpha, ref.state.alpha))
        errs.append(float(np.mean(e)))
    rows, slope = error_rows(cfg.particle_counts, errs, PUBLISHED_P, PUBLISHED_P_ORDER)
    table = Comparison(
        title=f"S4 convergence in P (M0={cfg.mass:g}, T={cfg.t_end:g}, H={cfg.n_modes}, dt={cfg.dt:g}, "
              f"reference P={cfg.n_particles}, variant={cfg.variant}, mean over {cfg.n_seeds} seeds)",
        columns=["P", "published", "ours", "ours/published"], rows=rows,
        note="Each P uses independent particles and noise; the error includes the reference's own Monte Carlo "
             "error, which floors the curve as P approaches the reference size.")
    return ExperimentResult(metrics={"P": cfg.particle_counts, "err": errs, "exponent": slope}, tables=[table])


class HConvergenceConfig(SIPFConfig):
    """S5: error of c(T) for H in ``modes`` against the reference run with ``n_modes``.

    ``independent_samples``: draw new particles and noise for every H (the error then also
    holds the Monte Carlo difference between runs) instead of sharing them with the reference.
    """

    mass: float = 80.0
    t_end: float = 0.01
    modes: list[int] = [6, 8, 10, 12]
    independent_samples: bool = False

    presets = {"quick": {"n_particles": 300, "n_modes": 12, "modes": [4, 6, 8], "t_end": 0.002, "variant": "spectral"},
               "spectral": {"variant": "spectral"}}
    _h = field_validator("modes")(classmethod(lambda cls, v: modes_list(v)))


@register("sipf-mode-convergence", HConvergenceConfig, "S5: error of c(T) vs the number of Fourier modes H", plot=plot_errors)
def run_h(cfg: HConvergenceConfig, ctx: RunContext) -> ExperimentResult:
    params = cfg.params(cfg.mass)
    x0 = initial_particles(params, cfg.n_particles, cfg.seed, cfg.radius0)
    path = BrownianPath(cfg.seed, cfg.n_particles, params.dim, cfg.dt)

    def one(H, independent=False):
        """The run at H: sharing the reference's particles and noise, or a fresh sample."""
        ctx.log(f"S5: H={H}, {cfg.variant}{', independent sample' if independent else ''}")
        shared = {} if independent else {"x0": x0, "brownian": path}
        return simulate(params, cfg.options(ctx.device, n_modes=H), cfg.t_end,
                        seed=cfg.seed + H if independent else cfg.seed, diag_every=10**9, sup_norms=False,
                        progress=ctx.progress, desc=f"H={H}", **shared,
                        checkpoint_path=ctx.rundir.checkpoint(f"H{H}{'_independent' if independent else ''}"))

    ref = one(cfg.n_modes)
    errs = [rel_l2(one(H, cfg.independent_samples).state.alpha, common_modes(ref.state.alpha, H)) for H in cfg.modes]
    rows, slope = error_rows(cfg.modes, errs, PUBLISHED_H, PUBLISHED_H_ORDER)
    table = Comparison(
        title=f"S5 convergence in H (M0={cfg.mass:g}, T={cfg.t_end:g}, P={cfg.n_particles}, dt={cfg.dt:g}, "
              f"reference H={cfg.n_modes}, variant={cfg.variant}, seed={cfg.seed}, "
              f"{'independent' if cfg.independent_samples else 'shared'} particles and noise)",
        columns=["H", "published", "ours", "ours/published"], rows=rows,
        note="The error is measured on the modes both runs resolve (the coarse run's H-mode block). With shared "
             "particles and noise it isolates the effect of H, which is small for the exact variant (the pair force "
             "does not depend on H); the published errors (~1e-3, slope -0.66) are of the size of the Monte Carlo "
             "difference between independent runs at P = 1e4 (see S4), which `--set independent_samples=true` "
             "measures. The source does not state its norm or sampling.")
    return ExperimentResult(metrics={"H": cfg.modes, "err": errs, "exponent": slope}, tables=[table])
