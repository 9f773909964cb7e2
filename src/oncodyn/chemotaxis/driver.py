"""Run SIPF simulations: initial data, diagnostics series, snapshots, checkpoints.

This is the edge between the pure SIPF kernels and the experiments: it draws the initial
particles and the Brownian path from the seed, attaches the diagnostic trackers and calls
the core run loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from oncodyn.chemotaxis.blowup import c_max_at_points, c_max_on_grid
from oncodyn.chemotaxis.models import KellerSegelParams
from oncodyn.chemotaxis.sipf import SIPFOptions, SIPFSolver, SIPFState
from oncodyn.core.particles import sample_ball, second_moment
from oncodyn.core.rng import BrownianPath, generator
from oncodyn.core.runloop import Checkpointer, NonFiniteGuard, SeriesTracker, SnapshotTracker, run

_INIT_STREAM = 0x1417


@dataclass
class SIPFRun:
    """A finished SIPF simulation.

    Attributes:
        solver: the solver used (its grid, options, parameters).
        state: final state.
        series: diagnostics over time, each ``[n_rec]``: ``t``, ``c_inf`` (max of the field
            on a 2H grid and at the particles), ``c_inf_grid``, ``c_inf_particles``,
            ``c_total`` (integral of c), ``second_moment``.
        snapshots: particle positions ``[P, d]`` by step.
        info: run-loop info (wall time, steps, resume, early stop).
    """

    solver: SIPFSolver
    state: SIPFState
    series: dict[str, np.ndarray]
    snapshots: dict[int, np.ndarray]
    info: dict


def initial_particles(params: KellerSegelParams, n_particles: int, seed: int, radius: float = 1.0,
                      center=None) -> np.ndarray:
    """P particles uniform in the ball (the spec's rho_0); a pure function of the seed."""
    return sample_ball(generator(seed, _INIT_STREAM), n_particles, params.dim, radius, center)


def diagnostics(solver: SIPFSolver, sup_norms: bool = True):
    """The diagnostic function of a state, for a :class:`SeriesTracker`.

    ``sup_norms=False`` records only the cheap ``t`` and ``c_total``.
    """

    def fn(state: SIPFState) -> dict[str, float]:
        if not sup_norms:
            return {"t": state.t, "c_total": solver.total_concentration(state)}
        cg = c_max_on_grid(solver.grid, state.alpha)
        cp = c_max_at_points(solver.nufft, state.alpha, state.x)
        return {"t": state.t, "c_inf": max(cg, cp), "c_inf_grid": cg, "c_inf_particles": cp,
                "c_total": solver.total_concentration(state),
                "second_moment": second_moment(state.x, solver.params.mass)}

    return fn


def simulate(params: KellerSegelParams, options: SIPFOptions, t_end: float, seed: int = 0,
             x0: np.ndarray | None = None, diag_every: int = 10, snapshot_steps=(),
             brownian: BrownianPath | None = None, progress: bool = True, desc: str = "",
             checkpoint_path: str | None = None, checkpoint_every: int = 500,
             sup_norms: bool = True) -> SIPFRun:
    """Run SIPF from ``x0`` (default: the uniform unit ball) to ``t_end``.

    Args:
        brownian: the Brownian path (default: one of this run's own ``dt`` from ``seed``);
            pass a shared finer path to compare runs with different ``dt``.
        sup_norms: record the sup norms and second moment (else only t and c_total).
    """
    n_steps = int(round(t_end / options.dt))
    if n_steps < 1 or abs(n_steps * options.dt - t_end) > 1e-9 * t_end:
        raise ValueError(f"t_end={t_end} must be a positive integer multiple of dt={options.dt}")
    solver = SIPFSolver(params, options, rng=generator(seed, 0xBA7C))
    if x0 is None:
        x0 = initial_particles(params, options.n_particles, seed)
    path = brownian or BrownianPath(seed, options.n_particles, params.dim, options.dt)
    series = SeriesTracker(diagnostics(solver, sup_norms), every=diag_every, prefix="series/")
    snaps = SnapshotTracker(lambda s: s.x, snapshot_steps, prefix="particles")
    guard = NonFiniteGuard(lambda s: (s.x, s.alpha))
    ckpt = (Checkpointer(checkpoint_path, checkpoint_every, SIPFState.to_arrays, SIPFState.from_arrays)
            if checkpoint_path else None)
    state, info = run(solver, solver.init(x0), n_steps, lambda n: path.increment(n, options.dt),
                      trackers=[series, snaps, guard], progress=progress, desc=desc, checkpoint=ckpt)
    return SIPFRun(solver, state, series.arrays(), snaps.snapshots, info)
