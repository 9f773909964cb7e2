r"""The regularised interacting-particle reference of whole-space Keller--Segel.

P particles of equal weight M/P follow, by Euler--Maruyama,

.. math::
    dX_p = \Big[-\chi M \frac1P\sum_{q\ne p}\nabla K_\delta(X_p - X_q) + v(X_p, t)\Big]dt
           + \sqrt{2\mu}\,dW_p,

:math:`\nabla K_\delta(x) = x/(\omega_d(|x|^2+\delta^2)^{d/2})`
(:func:`oncodyn.chemotaxis.interaction.mollified_newton_grad_sum`). Their empirical measure
approximates :math:`p = \rho/M`; P >= 1e5 for production runs (any P >= 2 runs).

:func:`simulate_particles` drives :class:`ParticleSolver` through the core run loop with a
:class:`~oncodyn.core.rng.BrownianPath` (the noise of step n is a pure function of the seed
and n, so a run resumed from its checkpoint is bit-identical to an uninterrupted one),
snapshots at the record times and diagnostics every ``diag_every`` steps.
:func:`kde_density` / :func:`kde_max_density` estimate p from samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial.distance import cdist
from scipy.stats import gaussian_kde

from oncodyn.chemotaxis.interaction import mollified_newton_grad_sum
from oncodyn.core.checks import require
from oncodyn.core.particles import second_moment
from oncodyn.core.rng import BrownianPath, generator
from oncodyn.core.runloop import (
    Checkpointer,
    NonFiniteGuard,
    SeriesTracker,
    SnapshotTracker,
    run,
)
from oncodyn.deeplagrangian.model import KSWholeSpace
from oncodyn.deeplagrangian.velocity import Advection, NoAdvection

_KDE_STREAM = 0x4DE


def _steps(t: float, dt: float) -> int | None:
    """``t / dt`` if it is (to 1e-9 relative) a non-negative integer, else None."""
    n = int(round(t / dt))
    return n if n >= 0 and abs(n * dt - t) <= 1e-9 * max(abs(t), dt) else None


@dataclass(frozen=True)
class ParticleOptions:
    """Numerical options of the particle reference.

    Attributes:
        n_particles: P >= 2.
        dt: time step, > 0 (time units).
        t_end: final time, a positive integer multiple of ``dt`` (time units).
        delta: mollification length delta > 0 (length units).
        seed: seed of the Brownian path.
        record_times: strictly increasing times in [0, t_end], multiples of ``dt``, at which
            the particles are kept (time units).
        diag_every: steps between diagnostics records, >= 1.
        max_density: estimate max p (:func:`kde_max_density`) at each record time.
        kde_samples: KDE data subsample size for ``max_density``, >= 1.
        kde_candidates: candidate points for ``max_density``, >= 1.
        method: pair-sum method, ``auto`` | ``compiled`` | ``torch``.
        device: torch device of the ``torch`` method.
        checkpoint_every: steps between checkpoints, >= 1.
    """

    n_particles: int = 100_000
    dt: float = 1e-3
    t_end: float = 0.1
    delta: float = 1e-2
    seed: int = 0
    record_times: tuple[float, ...] = ()
    diag_every: int = 10
    max_density: bool = True
    kde_samples: int = 50_000
    kde_candidates: int = 500
    method: str = "auto"
    device: str = "cpu"
    checkpoint_every: int = 100

    def __post_init__(self):
        object.__setattr__(self, "record_times", tuple(float(t) for t in self.record_times))
        require(int(self.n_particles) == self.n_particles and self.n_particles >= 2, "n_particles",
                 "an integer >= 2", self.n_particles)
        require(math.isfinite(self.dt) and self.dt > 0, "dt", "finite and > 0", self.dt)
        require(math.isfinite(self.t_end) and self.t_end > 0 and (_steps(self.t_end, self.dt) or 0) >= 1,
                 "t_end", f"a positive integer multiple of dt={self.dt}", self.t_end)
        require(math.isfinite(self.delta) and self.delta > 0, "delta", "finite and > 0", self.delta)
        require(int(self.seed) == self.seed and self.seed >= 0, "seed", "an integer >= 0", self.seed)
        r = self.record_times
        require(all(0 <= t <= self.t_end * (1 + 1e-12) and _steps(t, self.dt) is not None for t in r)
                 and all(a < b for a, b in zip(r, r[1:])), "record_times",
                 f"strictly increasing multiples of dt={self.dt} in [0, t_end={self.t_end}]", r)
        for name in ("diag_every", "kde_samples", "kde_candidates", "checkpoint_every"):
            v = getattr(self, name)
            require(int(v) == v and v >= 1, name, "an integer >= 1", v)
        require(self.method in ("auto", "compiled", "torch"), "method", "'auto', 'compiled' or 'torch'",
                 self.method)

    @property
    def n_steps(self) -> int:
        return _steps(self.t_end, self.dt)

    @property
    def record_steps(self) -> tuple[int, ...]:
        return tuple(_steps(t, self.dt) for t in self.record_times)


@dataclass
class ParticleState:
    """State at step n: ``step``, ``t`` = n dt (time units), ``x`` ``[P, d]`` (length units)."""

    step: int
    t: float
    x: np.ndarray

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"step": np.array(self.step), "t": np.array(self.t), "x": self.x}

    @classmethod
    def from_arrays(cls, d: dict[str, np.ndarray]) -> "ParticleState":
        return cls(int(d["step"]), float(d["t"]), np.array(d["x"]))


class ParticleSolver:
    """Euler--Maruyama for the mollified particle system; ``init``/``step`` for the run loop.

    Args:
        model: the Keller--Segel parameters.
        options: numerical options.
        advection: v(x, t) (default v = 0), of the model's dimension.
    """

    def __init__(self, model: KSWholeSpace, options: ParticleOptions, advection: Advection | None = None):
        self.model, self.options = model, options
        self.advection = advection if advection is not None else NoAdvection()
        self.advection.check_dim(model.dim)
        self.noise_scale = math.sqrt(2.0 * model.mu)

    def init(self, x0: np.ndarray) -> ParticleState:
        """The state at t = 0 from ``x0`` ``[P, d]`` (copied, float64)."""
        x0 = np.array(x0, dtype=np.float64)
        P, d = self.options.n_particles, self.model.dim
        require(x0.shape == (P, d), "x0", f"of shape ({P}, {d})", x0.shape)
        require(bool(np.all(np.isfinite(x0))), "x0", "finite", "non-finite values")
        return ParticleState(0, 0.0, x0)

    def drift(self, x: np.ndarray, t: float) -> np.ndarray:
        """``-chi M (1/P) sum_{q != p} grad K_delta(x_p - x_q) + v(x_p, t)``, ``[P, d]`` (length / time)."""
        m, o = self.model, self.options
        out = np.zeros_like(x)
        if m.chi > 0:
            out -= (m.chi * m.mass) * mollified_newton_grad_sum(x, o.delta, 1.0 / len(x), o.device, o.method)
        if not self.advection.is_zero:
            out += self.advection.numpy(x, t)
        return out

    def step(self, state: ParticleState, dW: np.ndarray) -> ParticleState:
        """One Euler--Maruyama step with Brownian increments ``dW`` ``[P, d]``."""
        dt = self.options.dt
        x = state.x + self.drift(state.x, state.t) * dt + self.noise_scale * dW
        return ParticleState(state.step + 1, (state.step + 1) * dt, x)


def particle_diagnostics(model: KSWholeSpace):
    """The diagnostics of a state, for a :class:`SeriesTracker`: ``t``, ``com_x``, ``com_y``
    (, ``com_z``) (centre of mass, length), ``second_moment`` (E|X|^2, length^2), ``variance``
    (E|X - com|^2, length^2) and ``mass`` (M times the fraction of finite particles)."""

    def fn(state: ParticleState) -> dict[str, float]:
        x = state.x
        com = x.mean(axis=0)
        out = {"t": state.t, **{f"com_{'xyz'[i]}": float(c) for i, c in enumerate(com)}}
        m2 = second_moment(x, 1.0)
        out.update(second_moment=m2, variance=m2 - float(com @ com),
                   mass=model.mass * np.count_nonzero(np.all(np.isfinite(x), axis=1)) / len(x))
        return out

    return fn


@dataclass
class ParticleResult:
    """A finished particle run.

    Attributes:
        times: record times reached, ``[n_rec]`` (time units).
        snapshots: particles at those times, ``[n_rec, P, d]`` (length units).
        max_density: max p = rho/M estimated by :func:`kde_max_density` at those times,
            ``[n_rec]`` (1 / length^d); NaN where not computed.
        series: diagnostics (:func:`particle_diagnostics`), each ``[n_diag]``.
        x: final positions ``[P, d]``; t: final time.
        wall_time: seconds of this call's time loop (only the resumed part after a resume).
        info: run-loop info (``steps_run``, ``resumed_from``, ``stopped``).
    """

    times: np.ndarray
    snapshots: np.ndarray
    max_density: np.ndarray
    series: dict[str, np.ndarray]
    x: np.ndarray
    t: float
    wall_time: float
    info: dict


def simulate_particles(model: KSWholeSpace, options: ParticleOptions, advection: Advection | None,
                       x0: np.ndarray, progress: bool = False,
                       checkpoint_path: str | None = None) -> ParticleResult:
    """Run the particle reference from ``x0`` ``[P, d]`` (samples of p0) to ``options.t_end``.

    With ``checkpoint_path`` the state and records are saved every
    ``options.checkpoint_every`` steps and at the end, and a later call with the same path
    resumes from the saved step (bit-identical to an uninterrupted run; ``t_end`` and
    ``record_times`` may grow). The checkpoint stores ``(dt, seed, P, d, delta, mu, chi,
    mass)`` and refuses a run that differs in them; the advection is not checked.
    """
    o, m = options, model
    solver = ParticleSolver(m, o, advection)
    state0 = solver.init(x0)
    path = BrownianPath(o.seed, o.n_particles, m.dim, o.dt)
    series = SeriesTracker(particle_diagnostics(m), every=o.diag_every, prefix="series/")
    snaps = SnapshotTracker(lambda s: s.x, o.record_steps, prefix="particles")
    trackers = [series, snaps, NonFiniteGuard(lambda s: (s.x,))]
    ckpt = None
    if checkpoint_path:
        config = np.array([o.dt, o.seed, o.n_particles, m.dim, o.delta, m.mu, m.chi, m.mass], dtype=np.float64)

        def to_arrays(s: ParticleState) -> dict[str, np.ndarray]:
            return {**s.to_arrays(), "config": config}

        def from_arrays(d: dict[str, np.ndarray]) -> ParticleState:
            require(np.array_equal(d.get("config"), config), "checkpoint_path",
                     "a checkpoint of this run (dt, seed, P, d, delta, mu, chi, mass)", checkpoint_path)
            return ParticleState.from_arrays(d)

        ckpt = Checkpointer(checkpoint_path, o.checkpoint_every, to_arrays, from_arrays)
    state, info = run(solver, state0, o.n_steps, lambda n: path.increment(n, o.dt), trackers=trackers,
                      progress=progress, desc="particles", checkpoint=ckpt)
    require(state.step <= o.n_steps, "t_end", f">= the checkpoint's time {state.t}", o.t_end)
    if ckpt is not None and info["stopped"] is None:
        ckpt.save(state, trackers)
    steps = sorted(k for k in snaps.snapshots if k in set(o.record_steps))
    snap = np.stack([snaps.snapshots[k] for k in steps]) if steps else np.zeros((0, o.n_particles, m.dim))
    dens = np.full(len(steps), np.nan)
    if o.max_density:
        for i, k in enumerate(steps):
            dens[i] = kde_max_density(snap[i], max_samples=o.kde_samples, n_candidates=o.kde_candidates,
                                      rng=generator(o.seed, _KDE_STREAM, k))
    return ParticleResult(np.asarray(steps, dtype=np.float64) * o.dt, snap, dens, series.arrays(), state.x,
                          state.t, info["wall_time"], info)


# -- density from particles --------------------------------------------------------------

def _subsample(x: np.ndarray, n: int, rng: np.random.Generator | None) -> np.ndarray:
    if len(x) <= n:
        return x
    return x[(np.random.default_rng(0) if rng is None else rng).choice(len(x), n, replace=False)]


def _kde(samples: np.ndarray, bandwidth, max_samples: int, rng) -> gaussian_kde:
    samples = np.asarray(samples, dtype=np.float64)
    require(samples.ndim == 2 and len(samples) > samples.shape[1], "samples", "[N, d] with N > d",
             samples.shape)
    return gaussian_kde(_subsample(samples, max_samples, rng).T, bw_method=bandwidth)


def kde_density(samples: np.ndarray, points: np.ndarray, bandwidth: float | str | None = None,
                max_samples: int = 50_000, rng: np.random.Generator | None = None) -> np.ndarray:
    """Gaussian kernel density estimate of p at ``points`` ``[M, d]``; ``[M]`` (1 / length^d).

    Args:
        samples: ``[N, d]`` samples of p (length units).
        points: ``[M, d]`` evaluation points.
        bandwidth: ``scipy.stats.gaussian_kde``'s ``bw_method``: None / ``"scott"`` (Scott's
            rule, factor n^(-1/(d+4))), ``"silverman"``, or a number -- the factor: the kernel
            covariance is factor^2 times the covariance of the samples.
        max_samples: when N exceeds it, the KDE is built on a random subsample of this size
            (without replacement; Scott's rule then uses this n): evaluation costs
            O(max_samples * M), and the smoothing bias, not the sampling error, dominates.
        rng: generator of the subsample (None: a fixed seed).
    """
    return _kde(samples, bandwidth, max_samples, rng)(np.asarray(points, dtype=np.float64).T)


def kde_max_density(samples: np.ndarray, bandwidth: float | str | None = None, max_samples: int = 50_000,
                    n_candidates: int = 500, n_refine: int = 5, n_iter: int = 100,
                    rng: np.random.Generator | None = None) -> float:
    """Estimate max p (= max rho / M, 1 / length^d) as the maximum of the KDE.

    The KDE (:func:`kde_density`, same ``bandwidth`` and ``max_samples``) is evaluated at a
    random subsample of ``n_candidates`` of the samples; from the best ``n_refine`` of them
    mean-shift iterations (an ascent method for Gaussian kernels) climb to the nearest mode.
    About 0.4 s for N = 1e5 with the defaults on 2 cores (cost O(max_samples * n_candidates)).

    Accuracy: the KDE smooths -- for a Gaussian of std s the expected maximum is
    (2 pi (s^2 + h^2))^(-d/2), h = factor * s, i.e. -3 % (2D) and -6 % (3D) with Scott's rule
    at n = 5e4 -- and scatters (measured over 30 seeds: 1.4 % (2D), 2.7 % (3D) standard
    deviation). A sharp peak (a collapsing solution) is underestimated more, as Scott's
    factor follows the global covariance: pass a smaller ``bandwidth`` there.

    Args:
        samples: ``[N, d]`` samples of p (length units).
        bandwidth, max_samples: as in :func:`kde_density`.
        n_candidates: samples at which the KDE is evaluated.
        n_refine: best candidates refined by mean shift.
        n_iter: maximum mean-shift iterations.
        rng: generator of the subsamples (None: a fixed seed).
    """
    g = np.random.default_rng(0) if rng is None else rng
    kde = _kde(samples, bandwidth, max_samples, g)
    cand = _subsample(np.asarray(samples, dtype=np.float64), n_candidates, g)
    vals = kde(cand.T)
    y = cand[np.argsort(vals)[-n_refine:]]
    data = kde.dataset.T  # [S, d]
    white = np.linalg.cholesky(kde.inv_cov)  # inv_cov = W W^T: the kernel is exp(-|W^T(y - x)|^2 / 2)
    zdata = data @ white
    for _ in range(n_iter):
        e = -0.5 * cdist(y @ white, zdata, "sqeuclidean")
        w = np.exp(e - e.max(axis=1, keepdims=True)) * kde.weights
        y_new = (w @ data) / w.sum(axis=1, keepdims=True)
        done = np.max(np.abs(y_new - y)) < 1e-6 * np.sqrt(np.max(np.diag(kde.covariance)))
        y = y_new
        if done:
            break
    return float(max(vals.max(), kde(y.T).max()))
