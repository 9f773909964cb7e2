"""The registry of experiments: name -> config model, run function, figure function.

An experiment module registers itself with :func:`register`; its run function receives the
validated config and a :class:`RunContext` and returns an :class:`ExperimentResult` whose
comparison tables put the published numbers beside ours.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from oncodyn.config import ExperimentConfig
from oncodyn.io.rundir import RunDir


@dataclass
class RunContext:
    """What an experiment needs from the edge: where to write, which device, progress on/off."""

    rundir: RunDir
    device: str = "cpu"
    progress: bool = True
    log: Callable[[str], None] = print


@dataclass
class Comparison:
    """A table of published numbers beside ours.

    Attributes:
        title: what is compared (with the setting).
        columns: column headers.
        rows: one list per row, same length as ``columns``.
        note: how to read it (tolerances, why numbers differ).
    """

    title: str
    columns: list[str]
    rows: list[list[Any]]
    note: str = ""

    def markdown(self) -> str:
        def fmt(v):
            if isinstance(v, float):
                return f"{v:.4g}"
            return "" if v is None else str(v)

        lines = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |",
                 "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in self.rows]
        if self.note:
            lines += ["", self.note]
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {"title": self.title, "columns": self.columns, "rows": self.rows, "note": self.note}


@dataclass
class ExperimentResult:
    """Scalars (JSON-able), comparison tables, and free-text notes of a run."""

    metrics: dict[str, Any] = field(default_factory=dict)
    tables: list[Comparison] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Experiment:
    name: str
    summary: str
    config: type[ExperimentConfig]
    run: Callable[[ExperimentConfig, RunContext], ExperimentResult]
    plot: Callable[[RunDir], list] | None = None


REGISTRY: dict[str, Experiment] = {}


def register(name: str, config: type[ExperimentConfig], summary: str, plot: Callable | None = None):
    """Decorator registering ``fn(cfg, ctx) -> ExperimentResult`` under ``name``."""

    def deco(fn):
        if name in REGISTRY:
            raise ValueError(f"experiment {name!r} registered twice")
        REGISTRY[name] = Experiment(name, summary, config, fn, plot)
        return fn

    return deco


def plotter(name: str):
    """Decorator attaching ``fn(rundir) -> [paths]`` as the figure function of experiment ``name``."""

    def deco(fn):
        e = REGISTRY[name]
        REGISTRY[name] = Experiment(e.name, e.summary, e.config, e.run, fn)
        return fn

    return deco


def get(name: str) -> Experiment:
    """The experiment ``name``; unknown names list the registered ones."""
    from oncodyn import experiments  # noqa: F401  (imports register every module)

    if name not in REGISTRY:
        raise KeyError(f"unknown experiment {name!r}; registered: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def report_markdown(name: str, result: ExperimentResult, figures: list) -> str:
    """The run's report: tables, notes, figures."""
    parts = [f"# {name}", ""]
    parts += [t.markdown() + "\n" for t in result.tables]
    if result.notes:
        parts += ["## Notes", ""] + [f"- {n}" for n in result.notes] + [""]
    if figures:
        parts += ["## Figures", ""] + [f"![{p.stem}](figures/{p.name})" for p in figures]
    return "\n".join(parts) + "\n"
