"""The NeuralCPM model comparison (N2/N3): model construction, config errors, training-and-sampling results."""

import numpy as np
import pytest
from pydantic import ValidationError

from oncodyn.cpm.neural import AnalyticTorch, Closure, CNNHamiltonian, NeuralHamiltonian, NHCNNHamiltonian
from oncodyn.experiments.cpm_bipolar import BipolarModelsConfig
from oncodyn.experiments.cpm_digits import DigitsModelsConfig
from oncodyn.experiments.cpm_neural_models import MODEL_KINDS, ModelsConfig, build_model, sampler_note


@pytest.mark.parametrize("kind,cls", [("cellsort", AnalyticTorch), ("cellsort+potential", AnalyticTorch),
                                      ("cnn", CNNHamiltonian), ("1nh+cnn", NHCNNHamiltonian),
                                      ("nh", NeuralHamiltonian), ("nh+closure", Closure)])
def test_build_model_kinds(kind, cls):
    cfg = ModelsConfig(widths=[4, 4], pools=[2, 2], embed=5, potential_grid=5)
    m = build_model(kind, cfg, 2, 100.0, (40, 40))
    assert isinstance(m, cls)
    assert (getattr(m, "phi", None) is not None) == (kind == "cellsort+potential")
    if kind == "nh+closure":
        warm = {"J": np.full((3, 3), 2.0), "lam": 0.3}
        c = build_model(kind, cfg, 2, 100.0, (40, 40), warm)
        p = c.analytic.parameters_dict()
        assert abs(p["lam"] - 0.3) < 1e-5 and abs(p["J"][1, 2] - 2.0) < 1e-5


def test_bad_settings_fail_before_work():
    with pytest.raises(ValidationError, match="unknown model"):
        ModelsConfig(models=["nh", "transformer"])
    with pytest.raises(ValidationError, match="grad"):
        ModelsConfig(delta="exactish")
    with pytest.raises(ValidationError, match="classic"):
        ModelsConfig(analytic_sampler="approx")
    with pytest.raises(ValueError, match="multiples of the total stride"):
        build_model("nh", ModelsConfig(), 2, 100.0, (90, 90))
    with pytest.raises(ValueError, match="same length"):
        build_model("nh", ModelsConfig(widths=[4, 4], pools=[2]), 2, 100.0, (40, 40))
    assert set(ModelsConfig().models) == set(MODEL_KINDS)


def test_default_architectures_fit_the_default_lattices():
    for cfg in (DigitsModelsConfig(), BipolarModelsConfig()):
        for kind in cfg.models:
            build_model(kind, cfg, 2, cfg.target, cfg.shape)


def test_sampler_note_names_the_sampler_each_kind_uses():
    for closure, words in (("block", "the block sampler"), ("guided", "the guided sampler"),
                           ("approx", "the closure with the approximate parallel sampler")):
        note = sampler_note(BipolarModelsConfig(closure_sampler=closure, block_mcs=3.0))
        assert words in note and "pure networks with the approximate parallel sampler" in note
        assert ("3 MCS" in note) == (closure != "approx")


@pytest.mark.parametrize("cls", [DigitsModelsConfig, BipolarModelsConfig])
def test_published_presets_are_neuralcpms_training(cls):
    from oncodyn.config import load_config

    cfg = load_config(cls, preset="published")
    assert (cfg.iterations, cfg.batch, cfg.alpha, cfg.delta, cfg.closure_sampler) == (10_000, 16, 5e-4, "auto", "approx")
    assert cfg.closure_w1 == 0.25 and cfg.closure_analytic_lr is None and not cfg.closure_warm_chains
    assert cfg.mcs_per_iter == (1.0 if cls is BipolarModelsConfig else 0.5)
    for kind in cfg.models:  # every model fits the preset's lattice
        build_model(kind, cfg, 2, cfg.target, cfg.shape)


def test_published_bipolar_preset_runs_shrunk(tmp_path):
    """The published configuration end to end (exact network ΔH in the approximate sampler, the
    closure's analytic part training with it), on a lattice and schedule small enough for a CPU."""
    import json

    from oncodyn import cli

    out = tmp_path / "n3p"
    sets = ["shape=[80,80]", "n_cells=12", "n_snapshots=4", "mcs=200", "widths=[4,4,4,4,4,4]", "iterations=2",
            "analytic_iterations=2", "batch=2", "mcs_per_iter=0.02", "network_eval_mcs=0.02", "eval_mcs=2",
            "eval_samples=2", "trajectory_frames=2", "models=[cellsort,nh+closure]"]
    args = ["run", "neuralcpm-bipolar", "--preset", "published", "--quiet", "--out", str(out)]
    for s_ in sets:
        args += ["--set", s_]
    assert cli.main(args) == 0
    assert np.isfinite(json.loads((out / "metrics.json").read_text())["nh+closure_ratio"])
    res = np.load(out / "results" / "model_nh_closure.npz")
    assert float(res["extra_w1"][0]) != 0.25  # w1 trains with the network (it started at 0.25)
    assert "the closure with the approximate parallel sampler" in (out / "report.md").read_text()


def test_quick_bipolar_with_the_guided_closure_sampler(tmp_path):
    import json

    from oncodyn import cli

    out = tmp_path / "n3"
    args = ["run", "neuralcpm-bipolar", "--quick", "--quiet", "--out", str(out), "--set", "closure_sampler=guided",
            "--set", "closure_w2=3", "--set", "closure_w1=0.5", "--set", "augment=true",
            "--set", "models=[cellsort,nh+closure]"]
    assert cli.main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert np.isfinite(metrics["nh+closure_ratio"]) and 0 <= metrics["nh+closure_f_vol"] <= 1
    res = np.load(out / "results" / "model_nh_closure.npz")
    assert res["sigma"].shape[0] == BipolarModelsConfig(**BipolarModelsConfig.presets["quick"]).eval_samples
    assert abs(float(res["extra_w2"][0]) - 3.0) < 0.1  # the closure started from closure_w2
    assert np.all(res["extra_w1"] == 0.5)  # and from closure_w1, frozen with the analytic part
    assert "the closure with the guided sampler" in (out / "report.md").read_text()  # the table names its sampler
