"""Drive a CPM sampler through the core run loop: recorded observables, snapshots, checkpoints.

One run-loop step advances the sampler to the next recording time, so recordings can be
log-spaced (cell sorting is logarithmic in time). Checkpoints hold the sampler's ids, border
lists and generator state, so an interrupted run resumes bit-identically.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from oncodyn.core.runloop import Checkpointer, SeriesTracker, SnapshotTracker, run


def record_times(t_end: float, n: int, log: bool = True, t_first: float = 1.0) -> np.ndarray:
    """Recording times in MCS, ``[n + 1]`` starting at 0 (log-spaced from ``t_first`` if ``log``)."""
    if t_end <= 0 or n < 1:
        raise ValueError(f"t_end must be > 0 and n >= 1, got {t_end}, {n}")
    if log and t_end > t_first:
        t = np.geomspace(t_first, t_end, n)
    else:
        t = np.linspace(t_end / n, t_end, n)
    return np.concatenate([[0.0], t])


class _Stepper:
    def __init__(self, times: np.ndarray):
        self.times = times

    def step(self, sampler, noise):
        sampler.sweep(float(self.times[sampler.step + 1] - self.times[sampler.step]))
        sampler.step += 1
        return sampler


def simulate(sampler, times: Sequence[float], observe: Callable[[object], dict[str, float]],
             snapshot_at: Sequence[int] = (), progress: bool = True, desc: str = "CPM",
             checkpoint: str | None = None) -> tuple[dict[str, np.ndarray], dict[int, np.ndarray], dict]:
    """Run ``sampler`` through ``times`` (MCS, from :func:`record_times`).

    Args:
        sampler: a sampler from :mod:`oncodyn.cpm.samplers` at ``step`` 0.
        times: recording times ``[n + 1]`` in MCS, ``times[0] = 0``.
        observe: ``observe(state) -> {name: value}`` recorded at every time.
        snapshot_at: indices into ``times`` at which the id lattice is kept.
        checkpoint: path of a checkpoint file (resume from it if it exists).

    Returns:
        ``(series, snapshots, info)``: ``series[name]`` ``[n + 1]`` plus ``"mcs"``; ``snapshots``
        maps a time index to sigma; ``info`` from :func:`oncodyn.core.runloop.run`.
    """
    times = np.asarray(times, float)
    series = SeriesTracker(lambda s: {"mcs": s.state.mcs, **observe(s.state)}, every=1, prefix="series/")
    snaps = SnapshotTracker(lambda s: s.state.sigma.copy(), steps=snapshot_at)
    ck = None
    if checkpoint is not None:
        ck = Checkpointer(checkpoint, every=max(1, (len(times) - 1) // 10), to_arrays=lambda s: s.to_arrays(),
                          from_arrays=sampler.from_arrays)
    _, info = run(_Stepper(times), sampler, len(times) - 1, noise=lambda i: None, trackers=[series, snaps],
                  progress=progress, desc=desc, checkpoint=ck)
    return series.arrays(), dict(snaps.snapshots), info
