"""Config validation, the CLI, and the shipped YAML configs."""

from pathlib import Path

import pytest
import yaml

from oncodyn import cli
from oncodyn.config import ConfigError, load_config
from oncodyn.experiments.registry import REGISTRY, get
from oncodyn.experiments.sipf_focusing import FocusingConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("sets, field", [
    (["bogus=1"], "bogus: unknown key"),
    (["masses=[-20, 80]"], "masses"),
    (["n_modes=13"], "n_modes: must be an even integer"),
    (["dt=0"], "dt:"),
    (["dt=-1e-4"], "dt:"),
    (["variant=fast"], "variant"),
])
def test_bad_config_names_the_field(sets, field):
    with pytest.raises(ConfigError) as e:
        load_config(FocusingConfig, sets=sets, where="sipf-focusing")
    assert field in str(e.value)


def test_overrides_and_presets_merge():
    cfg = load_config(FocusingConfig, sets=["masses=[30]", "dt=2e-4"], preset="quick")
    assert cfg.masses == [30] and cfg.dt == 2e-4 and cfg.n_particles == 500


def test_cli_bad_config_stops_before_work(tmp_path, capsys):
    out = tmp_path / "run"
    rc = cli.main(["run", "sipf-focusing", "--quick", "--set", "masses=[-1]", "--set", "n_modes=7",
                   "--out", str(out)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "masses" in err and "n_modes" in err
    assert not out.exists()  # nothing was started


def test_cli_list_and_unknown_experiment(capsys):
    assert cli.main(["list"]) == 0
    assert "sipf-focusing" in capsys.readouterr().out
    assert cli.main(["run", "no-such-thing"]) == 2


def test_cli_quick_run_writes_run_directory(tmp_path):
    out = tmp_path / "s1"
    assert cli.main(["run", "sipf-focusing", "--quick", "--quiet", "--out", str(out)]) == 0
    for f in ("config.yaml", "meta.json", "metrics.json", "series.nc", "fields.nc", "particles.npz", "report.md"):
        assert (out / f).exists(), f
    assert len(list((out / "figures").glob("*.png"))) == 4
    assert cli.main(["plot", str(out)]) == 0


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_shipped_yaml_equals_defaults(name):
    """configs/<name>.yaml validates and states exactly the code's defaults (they cannot drift)."""
    exp = get(name)
    path = CONFIGS / f"{name}.yaml"
    cfg = load_config(exp.config, path)
    assert cfg == exp.config()
    assert set(yaml.safe_load(path.read_text())) == set(exp.config.model_fields)


def test_rerun_into_a_directory_with_results_of_another_config_is_refused(tmp_path):
    out = tmp_path / "run"
    (out / "results").mkdir(parents=True)
    (out / "results" / "seed_0.npz").write_bytes(b"x")
    (out / "config.yaml").write_text("seed: 0\nsomething: else\n")
    assert cli.main(["run", "cpm-exactness", "--quick", "--quiet", "--out", str(out)]) != 0


# ----------------------------------------------------------------------------- hardening: values the run cannot use


@pytest.mark.parametrize("name, sets, field", [
    ("sipf-focusing", ["mu=.inf"], "mu"),
    ("sipf-focusing", ["t_end=.nan"], "t_end"),
    ("sipf-focusing", ["t_end=.inf"], "t_end"),
    ("sipf-focusing", ["masses=[20, .nan]"], "masses[1]"),
    ("angio-one-blob", ["gamma=.inf"], "gamma"),
    ("angio-one-blob", ["t_end=-.inf"], "t_end"),
    ("glioma-patient", ["D_bounds=[0.01, .inf]"], "D_bounds[1]"),
])
def test_non_finite_floats_are_refused_naming_the_field(name, sets, field):
    """Every float field of every config refuses inf and nan (a base-config setting), naming the field."""
    with pytest.raises(ConfigError) as e:
        load_config(get(name).config, sets=sets, where=name)
    lines = str(e.value).splitlines()
    assert len(lines) == 2 and lines[1].startswith(f"  - {field}: ") and "finite number" in lines[1], str(e.value)


def test_step_count_of_a_huge_t_end_is_a_config_error():
    """t_end / dt beyond the float range is a message naming t_end, not an OverflowError."""
    with pytest.raises(ConfigError, match=r"  - t_end: must be a positive integer multiple of dt"):
        load_config(get("sipf-critical-mass").config, sets=["t_end=1e305", "dt=1e-5"])


def test_cross_field_check_is_reported_under_its_field():
    """A model-level check whose message names a field is listed under that field, not under (root)."""
    with pytest.raises(ConfigError) as e:
        load_config(get("sipf-critical-mass").config, sets=["h_coarse=24"])
    assert "  - h_coarse: must be < h_fine (got 24)" in str(e.value) and "(root)" not in str(e.value)


@pytest.mark.parametrize("sets, allowed", [
    (["diag_every=51"], "diag_every: must be in [1, 50]"),   # the quick preset runs 0.005 / 1e-4 = 50 steps
    (["diag_every=50"], None),
    (["slice_points=0"], "slice_points: must be >= the largest of modes (12"),
    (["slice_points=11"], "slice_points: must be >= the largest of modes (12"),
    (["slice_points=12"], None),
])
def test_focusing_diag_every_and_slice_points_are_checked_in_the_config(sets, allowed):
    if allowed is None:
        load_config(FocusingConfig, sets=sets, preset="quick")
        return
    with pytest.raises(ConfigError) as e:
        load_config(FocusingConfig, sets=sets, preset="quick", where="sipf-focusing")
    assert str(e.value).splitlines()[1].startswith(f"  - {allowed}")


@pytest.mark.parametrize("name", ["sipf-critical-mass", "sipf-supnorm-vs-modes", "sipf-clusters"])
def test_blowup_diag_every_beyond_the_run_is_refused(name):
    with pytest.raises(ConfigError, match=r"  - diag_every: must be in \[1, "):
        load_config(get(name).config, sets=["diag_every=100000"], preset="quick")


@pytest.mark.parametrize("args, field", [
    (["--seed", "-1"], "seed"),
    (["--set", "diag_every=1000"], "diag_every"),
    (["--set", "slice_points=0"], "slice_points"),
    (["--set", "t_end=.nan"], "t_end"),
])
def test_cli_refuses_before_the_run_directory_exists(tmp_path, capsys, args, field):
    out = tmp_path / "run"
    assert cli.main(["run", "sipf-focusing", "--quick", "--quiet", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert f"\n  - {field}: " in err and "(root)" not in err, err
    assert not out.exists()


def test_unknown_key_in_a_list_entry_names_its_path_and_the_entry_keys():
    seg = "{path: a.nii.gz, time: 100, labels: [1], level: 0.25}"
    bad = "{path: b.nii.gz, time: 200, lable: [1], level: 0.25}"
    with pytest.raises(ConfigError) as e:
        load_config(get("glioma-patient").config, sets=[f"segmentations=[{seg}, {bad}]"], where="glioma-patient")
    line = str(e.value).splitlines()[1]
    assert line == "  - segmentations[1].lable: unknown key (allowed keys: path, time, labels, threshold, level)"
