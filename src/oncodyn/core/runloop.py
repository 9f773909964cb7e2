"""The time loop: drive a solver with trackers, progress, guards and checkpoints.

A solver has ``init(...) -> state`` and ``step(state, noise) -> state``; a *tracker* observes
the state every ``every`` steps (records diagnostics, snapshots) and can be saved and
restored so an interrupted run resumes where it stopped. :func:`run` is the only place a
progress bar is drawn; kernels stay pure.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from oncodyn.core.safeload import load_npz


class Tracker(Protocol):
    """Observes a run. ``every``: call interval in steps."""

    every: int

    def __call__(self, state: Any) -> None: ...

    def state_dict(self) -> dict[str, np.ndarray]: ...

    def load_state_dict(self, d: dict[str, np.ndarray]) -> None: ...


class SeriesTracker:
    """Records named scalar diagnostics ``fn(state) -> dict[str, float]`` every ``every`` steps."""

    def __init__(self, fn: Callable[[Any], dict[str, float]], every: int = 1, prefix: str = ""):
        self.fn, self.every, self.prefix = fn, max(1, int(every)), prefix
        self.records: dict[str, list[float]] = {}

    def __call__(self, state) -> None:
        for k, v in self.fn(state).items():
            self.records.setdefault(k, []).append(float(v))

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in self.records.items()}

    def state_dict(self) -> dict[str, np.ndarray]:
        return {f"{self.prefix}{k}": np.asarray(v) for k, v in self.records.items()}

    def load_state_dict(self, d: dict[str, np.ndarray]) -> None:
        n = len(self.prefix)
        self.records = {k[n:]: list(map(float, v)) for k, v in d.items() if k.startswith(self.prefix)}


class SnapshotTracker:
    """Keeps copies of ``fn(state)`` (an array) at the listed steps."""

    def __init__(self, fn: Callable[[Any], np.ndarray], steps: Sequence[int], prefix: str = "snap"):
        self.fn, self.steps, self.prefix, self.every = fn, set(int(s) for s in steps), prefix, 1
        self.snapshots: dict[int, np.ndarray] = {}

    def __call__(self, state) -> None:
        if state.step in self.steps:
            self.snapshots[state.step] = np.array(self.fn(state))

    def state_dict(self) -> dict[str, np.ndarray]:
        return {f"{self.prefix}_{k}": v for k, v in self.snapshots.items()}

    def load_state_dict(self, d: dict[str, np.ndarray]) -> None:
        p = f"{self.prefix}_"
        self.snapshots = {int(k[len(p):]): v for k, v in d.items() if k.startswith(p) and k[len(p):].isdigit()}


class NonFiniteGuard:
    """Stops the run when the state holds NaN/inf; ``tripped`` tells whether it did."""

    every = 1

    def __init__(self, arrays: Callable[[Any], Sequence[np.ndarray]]):
        self.arrays, self.tripped, self.step = arrays, False, None

    def __call__(self, state) -> None:
        if not all(np.all(np.isfinite(a)) for a in self.arrays(state)):
            self.tripped, self.step = True, state.step
            raise StopRun(f"non-finite values at step {state.step}")

    def state_dict(self):
        return {}

    def load_state_dict(self, d):
        pass


class StopRun(Exception):
    """Raised by a tracker to end a run early (the state so far is kept)."""


class Checkpointer:
    """Atomic ``.npz`` checkpoints of the solver state and the trackers.

    Args:
        path: checkpoint file (written as ``path.tmp`` then renamed).
        every: steps between checkpoints.
        to_arrays / from_arrays: state (de)serialisers.
    """

    def __init__(self, path: str, every: int, to_arrays: Callable, from_arrays: Callable):
        self.path, self.every, self.to_arrays, self.from_arrays = str(path), max(1, int(every)), to_arrays, from_arrays

    def save(self, state, trackers: Sequence[Tracker]) -> None:
        d = {f"state/{k}": v for k, v in self.to_arrays(state).items()}
        for i, tr in enumerate(trackers):
            d.update({f"tracker{i}/{k}": v for k, v in tr.state_dict().items()})
        tmp = self.path + ".tmp.npz"
        np.savez(tmp, **d)
        os.replace(tmp, self.path)

    def load(self, trackers: Sequence[Tracker]):
        """The saved state (and trackers restored in place), or ``None`` if there is none.

        Raises:
            oncodyn.core.safeload.UnreadableFileError: the file is damaged or holds pickled objects.
        """
        if not os.path.exists(self.path):
            return None
        d = load_npz(self.path, "run checkpoint")
        for i, tr in enumerate(trackers):
            p = f"tracker{i}/"
            tr.load_state_dict({k[len(p):]: v for k, v in d.items() if k.startswith(p)})
        return self.from_arrays({k[6:]: v for k, v in d.items() if k.startswith("state/")})


def run(solver, state, n_steps: int, noise: Callable[[int], np.ndarray], trackers: Sequence[Tracker] = (),
        progress: bool = True, desc: str = "", checkpoint: Checkpointer | None = None) -> tuple[Any, dict]:
    """Advance ``state`` to step ``n_steps``.

    Args:
        solver: object with ``step(state, noise) -> state``.
        state: initial state (with an integer ``step``); replaced by the checkpoint's if one exists.
        n_steps: final step index.
        noise: ``noise(step) -> array`` of the Brownian increments of that step.
        trackers: observers, called at the start and every ``tracker.every`` steps.
        progress: draw a tqdm bar.
        checkpoint: resume from and periodically write a checkpoint.

    Returns:
        ``(final_state, info)``, ``info`` with ``wall_time`` (s), ``steps_run``, ``resumed_from``
        and ``stopped`` (the reason if a tracker ended the run).
    """
    from tqdm.auto import tqdm

    resumed_from = None
    if checkpoint is not None:
        loaded = checkpoint.load(trackers)
        if loaded is not None:
            state, resumed_from = loaded, loaded.step
    t0 = time.perf_counter()
    stopped = None
    start = state.step
    try:
        if resumed_from is None:
            for tr in trackers:
                tr(state)
        with tqdm(total=n_steps, initial=start, desc=desc, disable=not progress, leave=False,
                  mininterval=0.5) as bar:
            while state.step < n_steps:
                state = solver.step(state, noise(state.step))
                for tr in trackers:
                    if state.step % tr.every == 0 or state.step == n_steps:
                        tr(state)
                if checkpoint is not None and state.step % checkpoint.every == 0:
                    checkpoint.save(state, trackers)
                bar.update(1)
    except StopRun as e:
        stopped = str(e)
    info = {"wall_time": time.perf_counter() - t0, "steps_run": state.step - start,
            "resumed_from": resumed_from, "stopped": stopped}
    return state, info
