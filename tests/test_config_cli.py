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
