"""`oncodyn bench sipf --json` prints every method's per-step time and ratio (tiny sizes; timings are not asserted)."""

import json

import pytest

from oncodyn import cli


def test_bench_sipf_json_shape(capsys):
    rc = cli.main(["bench", "sipf", "--json", "--quick", "--set", "n_particles=200", "--set", "n_modes=8",
                   "--set", "s1_steps=10", "--set", "repeats=1"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["benchmark"] == "sipf"
    methods = [r["method"] for r in out["rows"]]
    assert methods[0].startswith("faithful") and any("spectral" in m for m in methods)
    for r in out["rows"]:
        assert r["time_per_step_s"] > 0 and r["ratio_vs_baseline"] > 0
    exact = [r for r in out["rows"] if r["method"].startswith("exact")]
    assert all(r["interaction_rel_error"] < 1e-2 for r in exact)  # within the stated FMM tolerance or exact


def test_bench_rejects_unknown_keys(capsys):
    assert cli.main(["bench", "sipf", "--set", "bogus=1"]) == 2
    assert "bogus" in capsys.readouterr().err


def test_bench_glioma_json_shape(capsys):
    rc = cli.main(["bench", "glioma", "--json", "--quick", "--set", "t_end=20"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["benchmark"] == "glioma"
    methods = [r["method"] for r in out["rows"]]
    assert methods[0].startswith("numpy") and any(m.startswith("numba") for m in methods)
    assert all(r["solve_time_s"] > 0 and r["ratio_vs_numpy"] > 0 for r in out["rows"])


def test_bench_cpm_json_shape(capsys):
    rc = cli.main(["bench", "cpm", "--json", "--quick"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["benchmark"] == "cpm"
    methods = [r["method"] for r in out["rows"]]
    assert methods[0].startswith("pure Python") and methods[-1].startswith("Artistoo (published")
    for prefix in ("exact (numba", "parallel exact", "approx parallel"):
        assert any(m.startswith(prefix) for m in methods), prefix
    keys = {"case", "method", "copy_attempts_per_s", "mcs_per_s", "acceptance", "ratio_vs_python", "ratio_vs_artistoo"}
    for r in out["rows"]:
        assert keys <= set(r)
        assert r["copy_attempts_per_s"] > 0 and r["ratio_vs_python"] > 0 and r["ratio_vs_artistoo"] > 0
        if not r["method"].startswith("Artistoo"):
            assert r["mcs_per_s"] > 0 and 0 < r["acceptance"] <= 1
    assert out["rows"][0]["ratio_vs_python"] == 1.0
    assert out["extra"]["parallel sampler threads"] >= 1


def test_bench_neuralcpm_json_shape(capsys):
    rc = cli.main(["bench", "neuralcpm", "--json", "--quick"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["benchmark"] == "neuralcpm"
    for r in out["rows"]:
        assert r["full_passes_s"] > 0 and r["local_s"] > 0 and r["ratio_vs_full"] > 0
        assert r["max_abs_diff"] < 1e-3  # the two ΔH paths agree (float32)
        # quick case: digits on 36×36 → sites × 0.5 MCS × 16 chains × 10⁴ iterations
        assert r["training_proposals"] == 36 * 36 * 0.5 * 16 * 10_000
        assert r["training_exact_days"] == pytest.approx(r["training_proposals"] * r["local_s"] / r["k"] / 86400)


def test_bench_neuralcpm_needs_the_training_sweeps_of_each_preset(capsys):
    rc = cli.main(["bench", "neuralcpm", "--quick", "--set", "cases=[[bipolar,40,8]]",
                   "--set", "train_mcs={digits: 0.5}"])
    assert rc != 0
    assert "train_mcs has no entry for preset(s) ['bipolar']" in capsys.readouterr().err


def test_bench_angiogenesis_json_shape(capsys):
    rc = cli.main(["bench", "angiogenesis", "--json", "--quick", "--set", "bins=[12, 16]", "--set", "a5_particles=[200]",
                   "--set", "a5_bins=12", "--set", "n_particles=300", "--set", "steps=1", "--set", "dim=2"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["benchmark"] == "angiogenesis"
    a4 = [r for r in out["rows"] if r["table"] == "A4"]
    assert {r["method"] for r in a4} == {"FDM", "classical SIPF (spline)", "NSIPF (CNN)", "fast particle-field (ours)"}
    assert len(a4) == 8 and len(out["rows"]) == 11
    for r in out["rows"]:
        assert r["time_per_step_s"] > 0 and r["projected_total_s"] == pytest.approx(r["time_per_step_s"] * 500)
        assert r["ratio_vs_baseline"] > 0


def test_bench_deeplagrangian_json_shape(capsys):
    from oncodyn import cli

    assert cli.main(["bench", "deeplagrangian", "--quick", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    methods = [r["method"] for r in out["rows"]]
    assert any("training" in m for m in methods) and any("sampling" in m for m in methods)
    assert any("density" in m for m in methods)
    train = next(r for r in out["rows"] if "training" in r["method"])
    assert train["per_segment_s"] > 0 and train["ratio_vs_baseline"] > 0
