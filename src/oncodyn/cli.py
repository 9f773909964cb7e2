"""The ``oncodyn`` command line: ``list | run | bench | plot``.

Parses arguments, loads and validates the config, makes the run directory and calls the
registered experiment or benchmark. All numerical work lives elsewhere.

Exit status: 0 on success; 2 for an error the user can fix (an invalid config or YAML file, an
unknown name, an unusable ``--out``, a ``ValueError`` of a parameter check or of an unreadable
saved file), printed as one message without a traceback; 1 for an unexpected error, printed as
its type and text, with the full traceback in ``<run>/error.log`` (on stderr where there is no
run directory); 130 when interrupted. A run's ``meta.json`` ends with ``status`` ``finished``,
``failed`` (with ``error``) or ``interrupted``.

Rerunning into a used ``--out``: the same configuration resumes (finished pieces and checkpoints
are kept); another configuration is refused (exit 2) unless ``--force``, which empties the run
directory first.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

from oncodyn.config import ConfigError, dump_config, load_config
from oncodyn.core.atomic import TMP_PREFIX, remove_stale, write_text

EXPECTED_ERRORS = (ConfigError, ValueError)  # their messages are written for the user


def _describe(e: BaseException) -> str:
    """``Type: text`` of an exception on one line (``KeyError: 'x'`` rather than ``'x'``)."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _report(e: Exception, rundir: Path | None = None) -> int:
    """Print ``e`` for the user and return the exit status (2 expected, 1 unexpected).

    With a run directory the full traceback goes to ``<rundir>/error.log`` and the message names
    that file; without one an unexpected error's traceback follows the message on stderr.
    """
    log = None
    if rundir is not None:
        try:
            log = write_text(rundir / "error.log", "".join(traceback.format_exception(e)))
        except OSError:
            log = None
    where = f" (traceback in {log})" if log is not None else ""
    if isinstance(e, EXPECTED_ERRORS):
        print(f"oncodyn: error: {e}{where}", file=sys.stderr)
        return 2
    print(f"oncodyn: unexpected error: {_describe(e)}{where}", file=sys.stderr)
    if log is None:
        traceback.print_exception(e, file=sys.stderr)
    return 1


def _experiment(name: str):
    """The registered experiment ``name``; an unknown name is a :class:`ConfigError`."""
    from oncodyn.experiments.registry import get

    try:
        return get(name)
    except KeyError as e:
        raise ConfigError(e.args[0] if e.args else f"unknown experiment {name!r}") from None


RUN_FILES = ("config.yaml", "meta.json", "error.log")  # what a run writes before any work


def _used(out: Path) -> list[str]:
    """Names of what ``out`` holds beyond a run's own bookkeeping (results, figures, checkpoints...)."""
    if not out.is_dir():
        return []
    return sorted(p.name for p in out.iterdir() if p.name not in RUN_FILES
                  and not p.name.startswith(TMP_PREFIX) and (not p.is_dir() or any(q.is_file() for q in p.rglob("*"))))


def _clear(out: Path) -> None:
    """Empty the run directory ``out`` (``--force``); a folder that is not a run directory is refused."""
    import shutil

    if not any(out.iterdir()):
        return
    if not ((out / "config.yaml").is_file() or (out / "meta.json").is_file()):
        raise ConfigError(f"--out {out} is not empty and is not a run directory (no config.yaml or meta.json); "
                          "--force only clears run directories")
    for p in out.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def _open_rundir(out: Path, config_text: str, meta: dict, force: bool = False):
    """The run directory ``out`` with the resolved config and a ``running`` meta.json written.

    An ``out`` that holds outputs of a run with another configuration is refused, unless ``force``,
    which empties it first (as does ``force`` with the same configuration: a fresh start). With the
    same configuration and no ``force`` the run resumes: what is there is kept.

    Raises:
        ConfigError: ``out`` holds outputs of another configuration (without ``force``), or cannot
            be used (an existing file, a path under a file, no permission, ...); in both cases
            nothing in ``out`` was changed.
    """
    from oncodyn.io.rundir import RunDir

    try:
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out} is an existing file, not a directory")
        old = out / "config.yaml"
        if force and out.is_dir():
            _clear(out)
        else:
            used = _used(out)
            if used and old.is_file() and old.read_text() != config_text:
                shown = ", ".join(used[:4]) + (", ..." if len(used) > 4 else "")
                raise ConfigError(f"--out {out} holds the outputs ({shown}) of a run with a different configuration; "
                                  "rerun with the same settings to resume, choose another --out, or add --force "
                                  "to delete them and start afresh")
            remove_stale(out)  # temporaries of an earlier run that was killed mid-write
        rd = RunDir(out)
        (rd.path / "error.log").unlink(missing_ok=True)  # of an earlier failed attempt
        rd.write_config(config_text)
        rd.write_meta(**meta, status="running")
    except OSError as e:
        what = f"{e.strerror or e}" + (f" ({e.filename})" if e.filename and str(e.filename) != str(out) else "")
        raise ConfigError(f"--out {out} cannot be used as the run directory: {what}") from None
    return rd


def _close_meta(rd, meta: dict, status: str, **extra) -> None:
    """Rewrite meta.json with the run's final ``status`` (a failure to write is not a second error)."""
    try:
        rd.write_meta(**meta, status=status, wall_time_s=rd.elapsed(), **extra)
    except OSError:
        pass


def _cmd_list(args) -> int:
    from oncodyn import experiments  # noqa: F401  (importing registers every experiment)
    from oncodyn.experiments.registry import REGISTRY

    width = max(len(n) for n in REGISTRY)
    for name in sorted(REGISTRY):
        print(f"{name:<{width}}  {REGISTRY[name].summary}")
    return 0


def _cmd_run(args) -> int:
    from oncodyn.core.device import resolve_device
    from oncodyn.experiments.registry import RunContext, report_markdown

    exp = _experiment(args.name)
    preset = "quick" if args.quick else args.preset
    extra = {}
    if args.seed is not None:
        extra["seed"] = args.seed
    if args.device is not None:
        extra["device"] = args.device
    cfg = load_config(exp.config, args.config, args.set, preset=preset, where=args.name, extra=extra)
    device = resolve_device(cfg.device)
    out = Path(args.out or f"runs/{args.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    meta = dict(experiment=exp.name, seed=cfg.seed, device=device, preset=preset)
    rd = _open_rundir(out, dump_config(cfg), meta, force=args.force)
    log = (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))
    ctx = RunContext(rundir=rd, device=device, progress=not args.quiet, log=log)
    try:
        result = exp.run(cfg, ctx)
        rd.write_metrics({**result.metrics, "tables": [t.as_dict() for t in result.tables]})
        figures = exp.plot(rd) if exp.plot else []
        rd.write_report(report_markdown(exp.name, result, figures))
    except KeyboardInterrupt:
        _close_meta(rd, meta, "interrupted")
        raise
    except Exception as e:  # noqa: BLE001 - every failure is recorded in the run directory, then reported
        _close_meta(rd, meta, "failed", error=_describe(e))
        return _report(e, rd.path)
    _close_meta(rd, meta, "finished")
    for t in result.tables:
        print("\n" + t.markdown())
    for n in result.notes:
        print(f"note: {n}")
    print(f"\nwrote {out}/ (report.md, metrics.json, figures/) in {rd.elapsed():.1f} s")
    return 0


def _cmd_plot(args) -> int:
    from oncodyn.io.rundir import RunDir

    if not (Path(args.rundir) / "meta.json").is_file():
        raise ConfigError(f"{args.rundir} is not a run directory (it has no meta.json)")
    rd = RunDir(args.rundir)
    meta = rd.read_meta()
    exp = _experiment(meta["experiment"])
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
    r.add_argument("--force", action="store_true",
                   help="empty --out first (its results, figures and checkpoints are deleted) and start afresh")
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
    except KeyboardInterrupt:
        print("\noncodyn: interrupted; finished work and checkpoints are kept in the run directory "
              "(rerun the same command with the same --out to resume)", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - reported as expected (2) or unexpected (1)
        return _report(e)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
