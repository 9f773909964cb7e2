"""The ``oncodyn`` command line: ``list | run | bench | plot``.

Parses arguments, loads and validates the config, makes the run directory and calls the
registered experiment or benchmark. All numerical work lives elsewhere.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from oncodyn.config import ConfigError, dump_config, load_config


def _cmd_list(args) -> int:
    from oncodyn import experiments  # noqa: F401  (importing registers every experiment)
    from oncodyn.experiments.registry import REGISTRY

    width = max(len(n) for n in REGISTRY)
    for name in sorted(REGISTRY):
        print(f"{name:<{width}}  {REGISTRY[name].summary}")
    return 0


def _cmd_run(args) -> int:
    from oncodyn.core.device import resolve_device
    from oncodyn.experiments.registry import RunContext, get, report_markdown
    from oncodyn.io.rundir import RunDir

    exp = get(args.name)
    preset = "quick" if args.quick else args.preset
    extra = {}
    if args.seed is not None:
        extra["seed"] = args.seed
    if args.device is not None:
        extra["device"] = args.device
    cfg = load_config(exp.config, args.config, args.set, preset=preset, where=args.name, extra=extra)
    device = resolve_device(cfg.device)
    out = Path(args.out or f"runs/{args.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    text = dump_config(cfg)
    old = out / "config.yaml"
    kept = [d for d in ("checkpoints", "results", "snapshots") if (out / d).is_dir() and any((out / d).iterdir())]
    if kept and old.exists() and old.read_text() != text:
        raise ConfigError(f"{out} holds {' and '.join(kept)} of a run with a different configuration; "
                          "resume with the same settings or choose another --out")
    rd = RunDir(out)
    rd.write_config(text)
    rd.write_meta(experiment=exp.name, seed=cfg.seed, device=device, preset=preset, status="running")
    log = (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))
    ctx = RunContext(rundir=rd, device=device, progress=not args.quiet, log=log)
    result = exp.run(cfg, ctx)
    rd.write_metrics({**result.metrics, "tables": [t.as_dict() for t in result.tables]})
    figures = exp.plot(rd) if exp.plot else []
    rd.write_report(report_markdown(exp.name, result, figures))
    rd.write_meta(experiment=exp.name, seed=cfg.seed, device=device, preset=preset, status="finished",
                  wall_time_s=rd.elapsed())
    for t in result.tables:
        print("\n" + t.markdown())
    for n in result.notes:
        print(f"note: {n}")
    print(f"\nwrote {out}/ (report.md, metrics.json, figures/) in {rd.elapsed():.1f} s")
    return 0


def _cmd_plot(args) -> int:
    from oncodyn.experiments.registry import get
    from oncodyn.io.rundir import RunDir

    rd = RunDir(args.rundir)
    meta = rd.read_meta()
    exp = get(meta["experiment"])
    if exp.plot is None:
        print(f"{exp.name} has no figures")
        return 0
    for p in exp.plot(rd):
        print(p)
    return 0


def _cmd_bench(args) -> int:
    from oncodyn.bench import BENCHMARKS, render_table

    if args.name not in BENCHMARKS:
        raise ConfigError(f"unknown benchmark {args.name!r}; available: {', '.join(sorted(BENCHMARKS))}")
    result = BENCHMARKS[args.name](quick=args.quick, sets=args.set, progress=not args.quiet and not args.json)
    print(json.dumps(result, indent=2) if args.json else render_table(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="oncodyn", description="Simulate and learn cancer cell and tumour dynamics.")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="registered experiments, one line each").set_defaults(fn=_cmd_list)

    r = sub.add_parser("run", help="run a registered experiment")
    r.add_argument("name")
    r.add_argument("--config", help="YAML file with config keys")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)")
    r.add_argument("--seed", type=int)
    r.add_argument("--device", choices=["auto", "cpu", "cuda"])
    r.add_argument("--out", help="run directory (default runs/<name>-<time>)")
    r.add_argument("--quick", action="store_true", help="small size that finishes in seconds")
    r.add_argument("--preset", help="named size preset of the experiment (e.g. demo, full)")
    r.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    r.set_defaults(fn=_cmd_run)

    b = sub.add_parser("bench", help="side-by-side timings with ratios")
    b.add_argument("name")
    b.add_argument("--json", action="store_true", help="print the figures as JSON")
    b.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    b.add_argument("--set", action="append", metavar="KEY=VALUE")
    b.add_argument("--quiet", action="store_true")
    b.set_defaults(fn=_cmd_bench)

    pl = sub.add_parser("plot", help="figures from a saved run directory")
    pl.add_argument("rundir")
    pl.set_defaults(fn=_cmd_plot)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (ConfigError, KeyError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"oncodyn: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\noncodyn: interrupted; finished work and checkpoints are kept in the run directory "
              "(rerun the same command with the same --out to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
