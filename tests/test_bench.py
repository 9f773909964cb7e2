"""`oncodyn bench sipf --json` prints every method's per-step time and ratio (tiny sizes; timings are not asserted)."""

import json

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
