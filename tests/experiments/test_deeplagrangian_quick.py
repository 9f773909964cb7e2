"""D1-D7 at their --quick sizes: each runs end to end through the CLI, writes its report and
figures, and meets the quick-form tolerances (looser than the full targets, stated per test:
the quick forms train for 40 iterations on 128 points)."""

import json

import pytest

from oncodyn import cli


def _run(name, tmp_path, *extra):
    out = tmp_path / name
    assert cli.main(["run", name, "--quick", "--quiet", "--out", str(out), *extra]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tables"] and "published" in " ".join(metrics["tables"][0]["columns"]).lower()
    assert list((out / "figures").glob("*.png"))
    assert json.loads((out / "meta.json").read_text())["status"] == "finished"
    assert list((out / "models").glob("*.pt")), "trained weights are saved"
    return metrics


def test_d1_gaussian(tmp_path):
    m = _run("deeplagrangian-gaussian", tmp_path)["d2-constant"]
    assert m["kl"] < 5e-3 and m["variance_rel_error"] < 0.03 and m["mean_error"] < 0.05


def test_d2_moments(tmp_path):
    m = _run("deeplagrangian-moments", tmp_path)
    for case in ("f0.5", "f1.5"):
        # 40 iterations per segment over [0, 0.3]: a wrong sign or a missing term gives errors of 100 % or more
        assert m[case]["slope_rel_error"] < 0.15 and m[case]["max_centre_drift"] < 0.03
    assert m["f1.5"]["t_star_reference"] < m["f1.5"]["moment_law_time"]  # T_m only bounds T*


def test_d3_radial(tmp_path):
    m = _run("deeplagrangian-radial", tmp_path)["2d-sub"]
    assert m["worst_relative_l2"] < 0.05 and m["worst_max_rel_error"] < 0.05


@pytest.mark.parametrize("name", ["deeplagrangian-merging", "deeplagrangian-advection"])
def test_d4_d5_merging(name, tmp_path):
    m = _run(name, tmp_path)
    for case, r in m.items():
        if case.startswith("d2-"):
            assert r["sliced_w2"][-1] < 0.2  # 2,000 particles: sampling noise of SW2 ~ 0.05
            assert abs(r["max_p_flow"][-1] / r["max_p_particles"][-1] - 1) < 0.25  # KDE reads peaks low


def test_d6_walltime(tmp_path):
    m = _run("deeplagrangian-walltime", tmp_path)
    assert len(m["flow"]) == 2 and len(m["particles"]) == 2
    assert all(r["relative_l2"] < 0.1 for r in m["flow"]) and len(m["verdicts"]) == 2


def test_d7_mollifier(tmp_path):
    m = _run("deeplagrangian-mollifier", tmp_path)["d2"]
    assert 1.5 < m["bias_order"] < 2.2  # O(delta^2), a log factor in 2D
    assert -0.75 < m["std_order_in_n_r"] < -0.3  # N_r^{-1/2}, 4 draws per point


def test_bad_input_is_refused_before_work(tmp_path, capsys):
    out = tmp_path / "bad"
    code = cli.main(["run", "deeplagrangian-gaussian", "--quick", "--out", str(out), "--set", "mu=-1",
                     "--set", "delta=0", "--set", "dims=[4]"])
    err = capsys.readouterr().err
    assert code == 2 and "mu" in err and "delta" in err and "dims" in err
    assert not out.exists()
    code = cli.main(["run", "deeplagrangian-moments", "--quick", "--out", str(out), "--set", "track_fraction=1.2"])
    assert code == 2 and "track_fraction" in capsys.readouterr().err and not out.exists()
