"""Published CPM results at their default sizes (slow: `make test-slow`)."""

import json

import pytest

from oncodyn import cli

pytestmark = pytest.mark.slow


def test_graner_glazier_heterotypic_fraction(tmp_path):
    """Mean of 5 seeds: ≈ 0.40 at 1 paper MCS and ≈ 0.12 at 10³ (published, read off a figure)."""
    out = tmp_path / "gg"
    assert cli.main(["run", "cpm-sorting", "--quiet", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())["heterotypic_at"]
    assert abs(m["1"] - 0.40) < 0.05
    assert abs(m["1000"] - 0.12) < 0.04


def test_six_regimes_all_seeds(tmp_path):
    out = tmp_path / "regimes"
    assert cli.main(["run", "cpm-regimes", "--quiet", "--out", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["agreement"] == "18/18"


def test_sorting_3d(tmp_path):
    out = tmp_path / "s3d"
    assert cli.main(["run", "cpm-sorting-3d", "--quiet", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["heterotypic_end"] < 0.6 * m["heterotypic_start"]
    assert m["medium_contact_t1"] < 0.05  # dark cells inside


def test_exactness_table(tmp_path):
    out = tmp_path / "ex"
    assert cli.main(["run", "cpm-exactness", "--quiet", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    for case in (v for k, v in m.items() if k != "tables"):
        for label, runs in case.items():
            if "exact" in label and "classic" not in label:
                assert all(r["p"] > 0.01 for r in runs), (label, runs)
