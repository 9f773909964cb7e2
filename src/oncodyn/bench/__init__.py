"""Benchmarks: side-by-side timings measured in one run, printed as a table (or JSON).

Every benchmark returns ``{"benchmark", "setting", "rows": [{"method", ...}], "extra": {...}}``;
each row has ``time_per_step_s`` and ``ratio_vs_baseline`` (baseline time / this time).
"""

from __future__ import annotations

from collections.abc import Callable

from oncodyn.bench.angiogenesis import bench_angiogenesis
from oncodyn.bench.cpm import bench_cpm
from oncodyn.bench.deeplagrangian import bench_deeplagrangian
from oncodyn.bench.glioma import bench_glioma
from oncodyn.bench.neuralcpm import bench_neuralcpm
from oncodyn.bench.sipf import bench_sipf

BENCHMARKS: dict[str, Callable[..., dict]] = {"sipf": bench_sipf, "glioma": bench_glioma, "cpm": bench_cpm, "neuralcpm": bench_neuralcpm,
                                              "angiogenesis": bench_angiogenesis,
                                              "deeplagrangian": bench_deeplagrangian}


def render_table(result: dict) -> str:
    """Plain-text table of a benchmark result."""
    rows = result["rows"]
    cols = list(rows[0].keys())
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    w = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    lines = [f"benchmark {result['benchmark']}: " + ", ".join(f"{k}={v}" for k, v in result["setting"].items()), ""]
    lines.append("  ".join(c.ljust(w[i]) for i, c in enumerate(cols)))
    lines.append("  ".join("-" * x for x in w))
    lines += ["  ".join(x[i].ljust(w[i]) for i in range(len(cols))) for x in cells]
    for k, v in result.get("extra", {}).items():
        lines.append(f"{k}: {_fmt(v)}")
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)
