"""Rerunning into a used ``--out``: the same configuration resumes; another configuration is refused
(exit 2, naming ``--force``, the directory untouched) unless ``--force``, which empties it first."""

from __future__ import annotations

import json

import numpy as np
import pytest

from oncodyn import cli
from oncodyn.config import ExperimentConfig
from oncodyn.core import atomic
from oncodyn.experiments.registry import REGISTRY, Experiment, ExperimentResult

COMPUTED: list[float] = []


class PieceConfig(ExperimentConfig):
    """A run of one cached piece (``results/piece.npz``) and one figure named after ``value``."""

    value: float = 1.0


def _run(cfg: PieceConfig, ctx) -> ExperimentResult:
    from oncodyn.experiments.cpm_common import cached_result

    def compute():
        COMPUTED.append(cfg.value)
        return {"v": np.array(cfg.value)}

    v = float(cached_result(ctx.rundir, "piece", compute)["v"])
    return ExperimentResult(metrics={"v": v})


def _plot(rd):
    v = rd.read_metrics()["v"]
    return [atomic.write_bytes(rd.figures / f"value_{v:g}.png", b"\x89PNG")]


@pytest.fixture
def piece(monkeypatch):
    from oncodyn import experiments  # noqa: F401  (the real experiments are registered first)

    monkeypatch.setitem(REGISTRY, "piece", Experiment("piece", "test piece", PieceConfig, _run, _plot))
    COMPUTED.clear()
    return "piece"


def _snapshot(out):
    return {p.relative_to(out).as_posix(): (p.read_bytes() if p.is_file() else None) for p in sorted(out.rglob("*"))}


def _run_cli(out, *args):
    return cli.main(["run", "piece", "--quiet", "--out", str(out), *args])


def test_same_config_resumes(tmp_path, piece):
    out = tmp_path / "run"
    assert _run_cli(out) == 0 and COMPUTED == [1.0]
    assert _run_cli(out) == 0 and COMPUTED == [1.0]  # the finished piece was loaded, not recomputed
    assert json.loads((out / "meta.json").read_text())["status"] == "finished"


def test_other_config_is_refused_and_nothing_changes(tmp_path, capsys, piece):
    out = tmp_path / "run"
    assert _run_cli(out) == 0
    capsys.readouterr()
    before = _snapshot(out)
    assert _run_cli(out, "--set", "value=2") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"oncodyn: error: --out {out} holds the outputs") and "--force" in err
    assert "different configuration" in err and err.count("\n") == 1
    assert _snapshot(out) == before and COMPUTED == [1.0]


def test_force_clears_the_directory_and_runs_afresh(tmp_path, piece):
    out = tmp_path / "run"
    assert _run_cli(out) == 0
    (out / "checkpoints").mkdir()
    (out / "checkpoints" / "old.npz").write_bytes(b"x")
    assert (out / "figures" / "value_1.png").exists()
    assert _run_cli(out, "--set", "value=2", "--force") == 0
    assert COMPUTED == [1.0, 2.0]
    assert not (out / "figures" / "value_1.png").exists() and (out / "figures" / "value_2.png").exists()
    assert not (out / "checkpoints").exists()
    assert json.loads((out / "metrics.json").read_text())["v"] == 2.0
    assert "value: 2.0" in (out / "config.yaml").read_text()
    assert _run_cli(out, "--set", "value=2") == 0 and COMPUTED == [1.0, 2.0]  # and resumes as usual


def test_force_with_the_same_config_starts_afresh(tmp_path, piece):
    out = tmp_path / "run"
    assert _run_cli(out) == 0
    assert _run_cli(out, "--force") == 0 and COMPUTED == [1.0, 1.0]


def test_a_failed_start_can_be_rerun_with_another_config(tmp_path, piece):
    """A directory with only the bookkeeping of a run (config, meta, error.log) is not 'used'."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("value: 5.0\n")
    (out / "meta.json").write_text("{}")
    (out / "figures").mkdir()
    assert _run_cli(out) == 0


def test_force_refuses_to_clear_a_folder_that_is_not_a_run_directory(tmp_path, capsys, piece):
    out = tmp_path / "data"
    out.mkdir()
    (out / "precious.txt").write_text("keep")
    assert _run_cli(out, "--force") == 2
    assert "not a run directory" in capsys.readouterr().err
    assert (out / "precious.txt").read_text() == "keep" and sorted(p.name for p in out.iterdir()) == ["precious.txt"]


def test_temporaries_of_a_killed_run_are_removed_on_resume(tmp_path, piece):
    out = tmp_path / "run"
    assert _run_cli(out) == 0
    stale = atomic.temp_name(out / "results" / "piece.npz")
    stale.write_bytes(b"half")
    assert _run_cli(out) == 0 and not stale.exists()
