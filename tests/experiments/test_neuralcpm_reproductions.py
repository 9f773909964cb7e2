"""NeuralCPM reproductions at their default (reduced) sizes (slow: `make test-slow`)."""

import json

import pytest

from oncodyn import cli

pytestmark = pytest.mark.slow


def test_n1_type_a_parameter_recovery(tmp_path):
    """Issue acceptance: RMSE of the learned parameters <= 0.1 at the best-fit temperature."""
    out = tmp_path / "n1"
    assert cli.main(["run", "neuralcpm-n1", "--quiet", "--set", "kinds=[A]", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())["A"]
    assert m["rmse_best"] <= 0.1
    assert m["rmse"] <= 0.1


def test_n2_closure_keeps_volumes_and_cells_whole(tmp_path):
    """Issue acceptance (the part that holds on a CPU): the NH + closure keeps f_vol and f_frag
    >= 0.9 on cellular digits at the default size. The CS part (neural beats analytic) does not
    hold yet and is not asserted; the run prints it (README, NeuralCPM N2)."""
    out = tmp_path / "n2"
    assert cli.main(["run", "neuralcpm-digits", "--quiet", "--set", "models=[cellsort,nh+closure]",
                     "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["nh+closure_f_vol"] >= 0.9
    assert m["nh+closure_f_frag"] >= 0.9
