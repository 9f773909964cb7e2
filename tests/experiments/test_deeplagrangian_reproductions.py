"""D1-D7 at their default sizes against the issue's targets (slow: make test-slow).

Each test runs the registered experiment through the CLI exactly as the README's command and
asserts the measures the issue gives a number for. Targets the method does not meet on this
machine are marked ``xfail(strict=True)`` with the measured gap in the reason (the README says
by how much and why): if they start to hold, the marker must go.
"""

import json

import pytest

from oncodyn import cli

pytestmark = pytest.mark.slow


def _run(name, tmp_path, *extra):
    out = tmp_path / name
    assert cli.main(["run", name, "--quiet", "--out", str(out), *extra]) == 0
    return json.loads((out / "metrics.json").read_text())


def test_d1_gaussian_kl_and_variance(tmp_path):
    m = _run("deeplagrangian-gaussian", tmp_path)
    for case in ("d2-none", "d2-constant", "d3-none", "d3-constant"):
        assert m[case]["kl"] <= 1e-3 and m[case]["variance_rel_error"] <= 0.01


def test_d2_moment_law_sub_critical(tmp_path):
    m = _run("deeplagrangian-moments", tmp_path, "--set", "mass_factors=[0.5]")
    assert m["f0.5"]["slope_rel_error"] <= 0.02 and m["f0.5"]["max_centre_drift"] <= 1e-2


@pytest.mark.xfail(strict=True, reason="measured slope error 2.9 % (target 2 %) and drift 0.012 (target 0.01): "
                                       "the flow over-contracts E|X|^2 as segments shorten (README, D2)")
def test_d2_moment_law_super_critical(tmp_path):
    m = _run("deeplagrangian-moments", tmp_path, "--set", "mass_factors=[1.5]")
    # the run reaches its declared stop, 0.6 T_m, which is 0.87 of the radial T*
    assert m["f1.5"]["fraction_of_reference_blowup_time"] >= 0.85
    assert m["f1.5"]["slope_rel_error"] <= 0.02 and m["f1.5"]["max_centre_drift"] <= 1e-2


@pytest.mark.xfail(strict=True, reason="0.8 T_m lies past the actual blow-up of this p0: the radial reference "
                                       "blows up at T* = 0.685 T_m (README, D2)")
def test_d2_tracked_to_eight_tenths_of_the_moment_law_time(tmp_path):
    m = _run("deeplagrangian-moments", tmp_path, "--set", "mass_factors=[1.5]", "--set", "track_fraction=0.8")
    assert m["f1.5"]["fraction_of_moment_law_time"] >= 0.8


@pytest.mark.parametrize("case", ["2d-sub", "3d-sub"])
def test_d3_radial_reference_sub_critical(case, tmp_path):
    m = _run("deeplagrangian-radial", tmp_path, "--set", f"cases=[{case}]")[case]
    assert m["worst_relative_l2"] <= 0.03 and m["worst_max_rel_error"] <= 0.05


@pytest.mark.parametrize("case", ["2d-super", "3d-super"])
@pytest.mark.xfail(strict=True, reason="met to ~0.7 T*, missed at 0.9 T*: worst max-p errors 33 % (2d-super) and "
                                       "39 % (3d-super), with the spline couplings (README, D3)")
def test_d3_radial_reference_super_critical(case, tmp_path):
    m = _run("deeplagrangian-radial", tmp_path, "--set", f"cases=[{case}]")[case]
    assert m["worst_relative_l2"] <= 0.03 and m["worst_max_rel_error"] <= 0.05


def test_d4_d5_d6_d7_run_and_report(tmp_path):
    d4 = _run("deeplagrangian-merging", tmp_path)
    for case, r in d4.items():
        assert r["sliced_w2"][-1] < 0.2 and r["max_p_particles"][-1] > 0
    d5 = _run("deeplagrangian-advection", tmp_path)
    assert {"d2-none", "d2-cellular"} <= set(d5)
    d6 = _run("deeplagrangian-walltime", tmp_path)
    assert len(d6["verdicts"]) == 2 and d6["flow"] and d6["particles"]
    d7 = _run("deeplagrangian-mollifier", tmp_path)
    for d in ("d2", "d3"):
        r = d7[d]
        assert abs(r["bias_order_smallest_pair"] - r["expected_order_smallest_pair"]) < 0.1
        assert -0.6 < r["std_order_in_n_r"] < -0.4
