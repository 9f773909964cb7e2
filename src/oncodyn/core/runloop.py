"""The time loop: drive a solver with trackers, progress, guards and checkpoints.

A solver has ``init(...) -> state`` and ``step(state, noise) -> state``; a *tracker* observes
the state every ``every`` steps (records diagnostics, snapshots) and can be saved and
restored so an interrupted run resumes where it stopped. :func:`run` is the only place a
progress bar is drawn; kernels stay pure.

Checkpoints (:class:`Checkpointer`) are written atomically and carry a checksum of their arrays
and the hash of the run's configuration; one that is damaged or belongs to another
configuration is set aside as ``<name>.corrupt`` and that simulation restarts from its start.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from oncodyn.core.atomic import save_npz
from oncodyn.core.safeload import UnreadableFileError, load_npz


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


class CheckpointPath(str):
    """A checkpoint file name (a ``str``) that also carries the hash of its run's configuration.

    :meth:`oncodyn.io.rundir.RunDir.checkpoint` returns one, so the drivers that pass a
    ``checkpoint_path`` string through to :class:`Checkpointer` need not know about the config.
    """

    config_hash: str | None

    def __new__(cls, path: str | os.PathLike, config_hash: str | None = None):
        obj = super().__new__(cls, os.fspath(path))
        obj.config_hash = config_hash
        return obj

    def __reduce__(self):  # keeps the hash across process boundaries (worker pools)
        return (CheckpointPath, (str(self), self.config_hash))


class CheckpointSetAside(UserWarning):
    """A checkpoint was damaged or of another configuration and was renamed ``<name>.corrupt``."""


_META = "__checkpoint__/"  # keys of the integrity fields inside the file


def payload_checksum(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of ``arrays`` (in name order)."""
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(repr((k, a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


class Checkpointer:
    """Atomic ``.npz`` checkpoints of the solver state and the trackers, checked on resuming.

    Besides ``state/*`` and ``tracker<i>/*`` the file holds ``__checkpoint__/config_hash`` (the
    run's configuration hash, empty when none is known) and ``__checkpoint__/checksum`` (SHA-256
    of every other array, :func:`payload_checksum`).

    Args:
        path: checkpoint file (written through :func:`oncodyn.core.atomic.save_npz`). A
            :class:`CheckpointPath` brings its ``config_hash``.
        every: steps between checkpoints.
        to_arrays / from_arrays: state (de)serialisers.
        config_hash: hash of the run's configuration (default: that of ``path``, if any). A file
            written under another hash is not resumed from.
    """

    def __init__(self, path: str, every: int, to_arrays: Callable, from_arrays: Callable,
                 config_hash: str | None = None):
        self.config_hash = config_hash if config_hash is not None else getattr(path, "config_hash", None)
        self.path, self.every, self.to_arrays, self.from_arrays = str(path), max(1, int(every)), to_arrays, from_arrays
        self.set_aside: str | None = None  # the .corrupt name of a checkpoint that load() refused

    def save(self, state, trackers: Sequence[Tracker]) -> None:
        d = {f"state/{k}": v for k, v in self.to_arrays(state).items()}
        for i, tr in enumerate(trackers):
            d.update({f"tracker{i}/{k}": v for k, v in tr.state_dict().items()})
        d[_META + "config_hash"] = np.array(self.config_hash or "")
        d[_META + "checksum"] = np.array(payload_checksum(d))
        save_npz(self.path, d, compressed=False)

    def _problem(self, d: dict[str, np.ndarray]) -> str | None:
        """Why the arrays ``d`` read from the file must not be resumed from, or ``None``."""
        stored = d.pop(_META + "checksum", None)
        if stored is None:
            return "it has no checksum (written by an older version)"
        if str(stored) != payload_checksum(d):
            return "its checksum does not match its content"
        saved_hash = str(d.pop(_META + "config_hash", ""))
        if self.config_hash is not None and saved_hash != self.config_hash:
            return "it was written by a run with a different configuration"
        return None

    def _set_aside(self, why: str) -> None:
        aside = self.path + ".corrupt"
        os.replace(self.path, aside)
        self.set_aside = aside
        warnings.warn(f"checkpoint {self.path} was set aside as {Path(aside).name} ({why}); "
                      "this simulation restarts from its start", CheckpointSetAside, stacklevel=3)

    def load(self, trackers: Sequence[Tracker]):
        """The saved state (and trackers restored in place), or ``None`` if there is none.

        A file that is damaged (unreadable, or its checksum does not match) or that carries
        another configuration hash is renamed ``<path>.corrupt`` with a
        :class:`CheckpointSetAside` warning naming it, and ``None`` is returned (start afresh).

        Raises:
            oncodyn.core.safeload.UnreadableFileError: the file holds pickled objects (refused,
                never executed, and left in place).
        """
        if not os.path.exists(self.path):
            return None
        try:
            d = load_npz(self.path, "run checkpoint")
        except UnreadableFileError as e:
            if e.holds_code:
                raise
            self._set_aside(f"it cannot be read: {e.reason}")
            return None
        why = self._problem(d)
        if why is not None:
            self._set_aside(why)
            return None
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
