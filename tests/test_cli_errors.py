"""Errors at the edge: config files that cannot be used, an unusable ``--out``, and failures inside
a run (one message, exit 2 for what the user can fix, exit 1 with a logged traceback otherwise,
the final status in meta.json)."""

from __future__ import annotations

import json

import pytest

from oncodyn import cli
from oncodyn.config import ConfigError, ExperimentConfig, load_config
from oncodyn.experiments.registry import REGISTRY, Experiment, ExperimentResult


class ProbeConfig(ExperimentConfig):
    """A run that does nothing, or raises the error named by ``fail``."""

    fail: str = "none"


def _probe_run(cfg: ProbeConfig, ctx) -> ExperimentResult:
    errors = {"key": KeyError("missing_entry"), "value": ValueError("n_cells: must be >= 1, got 0"),
              "interrupt": KeyboardInterrupt(), "zero": ZeroDivisionError("division by zero")}
    if cfg.fail in errors:
        raise errors[cfg.fail]
    return ExperimentResult(metrics={"ok": 1.0})


@pytest.fixture
def probe(monkeypatch):
    from oncodyn import experiments  # noqa: F401  (the real experiments are registered first)

    monkeypatch.setitem(REGISTRY, "probe", Experiment("probe", "test probe", ProbeConfig, _probe_run))
    return "probe"


def _meta(out):
    return json.loads((out / "meta.json").read_text())


# ----------------------------------------------------------------------------- load_config


@pytest.mark.parametrize("text, problem", [
    ("fail: [1, 2\n", "is not valid YAML: expected ',' or ']'"),
    ("fail: x\n  bad: 2\n", "is not valid YAML: mapping values are not allowed here (line 2"),
    ("- fail\n- none\n", "must hold a mapping of key: value at the top level, not a list"),
    ("just text\n", "not a str"),
    ("1: 2\n", "keys must be names"),
])
def test_load_config_names_the_file_and_the_problem(tmp_path, text, problem):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(ProbeConfig, p)
    assert str(p) in str(e.value) and problem in str(e.value)
    assert "\n" not in str(e.value)


def test_load_config_unusable_paths(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(ProbeConfig, tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(ProbeConfig, tmp_path)
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError, match="bin.yaml is not UTF-8"):
        load_config(ProbeConfig, tmp_path / "bin.yaml")
    (tmp_path / "empty.yaml").write_text("")
    assert load_config(ProbeConfig, tmp_path / "empty.yaml") == ProbeConfig()


def test_load_config_unreadable_file(tmp_path, monkeypatch):
    p = tmp_path / "locked.yaml"
    p.write_text("fail: none\n")

    def denied(self, *a, **k):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(type(p), "read_text", denied)
    with pytest.raises(ConfigError, match=r"locked\.yaml cannot be read: Permission denied"):
        load_config(ProbeConfig, p)


@pytest.mark.parametrize("text", ["fail: [1, 2\n", "- a\n"])
def test_cli_reports_a_bad_config_file_in_one_line(tmp_path, capsys, probe, text):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    out = tmp_path / "run"
    assert cli.main(["run", probe, "--config", str(bad), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("oncodyn: error: config file") and str(bad) in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()
    assert cli.main(["run", probe, "--config", str(tmp_path), "--out", str(out)]) == 2
    assert "is a directory" in capsys.readouterr().err


# ----------------------------------------------------------------------------- --out


def test_cli_out_that_is_a_file_or_under_a_file(tmp_path, capsys, probe):
    f = tmp_path / "file"
    f.write_text("x")
    for out, why in ((f, "is an existing file"), (f / "sub", "Not a directory")):
        assert cli.main(["run", probe, "--out", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"oncodyn: error: --out {out}") and why in err
        assert err.count("\n") == 1 and "Traceback" not in err
    assert f.read_text() == "x"


def test_cli_out_that_cannot_be_written(tmp_path, capsys, probe, monkeypatch):
    from oncodyn.io.rundir import RunDir

    def denied(self, text):
        raise PermissionError(13, "Permission denied", str(self.path / "config.yaml"))

    monkeypatch.setattr(RunDir, "write_config", denied)
    assert cli.main(["run", probe, "--out", str(tmp_path / "ro"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "cannot be used as the run directory: Permission denied" in err and "config.yaml" in err
    assert err.count("\n") == 1


# ----------------------------------------------------------------------------- failures inside a run


def test_unexpected_error_is_logged_and_recorded(tmp_path, capsys, probe):
    out = tmp_path / "run"
    assert cli.main(["run", probe, "--set", "fail=key", "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "KeyError: 'missing_entry'" in err and str(out / "error.log") in err
    assert err.count("\n") == 1 and "Traceback" not in err
    log = (out / "error.log").read_text()
    assert log.startswith("Traceback") and "_probe_run" in log and "missing_entry" in log
    meta = _meta(out)
    assert meta["status"] == "failed" and meta["error"] == "KeyError: 'missing_entry'"
    assert meta["experiment"] == "probe" and "wall_time_s" in meta

    assert cli.main(["run", probe, "--out", str(out), "--quiet"]) == 0  # the same run, now fine
    assert _meta(out)["status"] == "finished" and "error" not in _meta(out)
    assert not (out / "error.log").exists()


def test_value_error_in_a_run_is_an_expected_error(tmp_path, capsys, probe):
    out = tmp_path / "run"
    assert cli.main(["run", probe, "--set", "fail=value", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("oncodyn: error: n_cells: must be >= 1, got 0") and err.count("\n") == 1
    assert _meta(out)["status"] == "failed" and "n_cells" in _meta(out)["error"]


def test_other_exceptions_name_their_type(tmp_path, capsys, probe):
    out = tmp_path / "run"
    assert cli.main(["run", probe, "--set", "fail=zero", "--out", str(out), "--quiet"]) == 1
    assert "unexpected error: ZeroDivisionError: division by zero" in capsys.readouterr().err


def test_interrupted_run_is_recorded(tmp_path, capsys, probe):
    out = tmp_path / "run"
    assert cli.main(["run", probe, "--set", "fail=interrupt", "--out", str(out), "--quiet"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert _meta(out)["status"] == "interrupted"


def test_finished_run_status(tmp_path, probe):
    out = tmp_path / "run"
    assert cli.main(["run", probe, "--out", str(out), "--quiet"]) == 0
    assert _meta(out)["status"] == "finished"
    assert json.loads((out / "metrics.json").read_text())["ok"] == 1.0


def test_unknown_names_and_non_run_directories(tmp_path, capsys):
    assert cli.main(["run", "no-such-thing"]) == 2
    assert capsys.readouterr().err.startswith("oncodyn: error: unknown experiment 'no-such-thing'")
    assert cli.main(["plot", str(tmp_path / "nowhere")]) == 2
    assert "is not a run directory" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()
