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
