"""Every registered experiment runs end to end at its --quick size and writes its report and figures."""

import json

import pytest

from oncodyn import cli
from oncodyn.experiments.registry import REGISTRY


# the DeepLagrangian experiments run in test_deeplagrangian_quick.py, with their tolerances
@pytest.mark.parametrize("name", sorted(n for n in REGISTRY if not n.startswith("deeplagrangian-")))
def test_quick_run(name, tmp_path):
    out = tmp_path / name
    assert cli.main(["run", name, "--quick", "--quiet", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tables"], "every experiment prints a comparison table"
    assert "published" in " ".join(metrics["tables"][0]["columns"]).lower() or name == "sipf-supnorm-vs-modes"
    assert list((out / "figures").glob("*.png"))
    assert json.loads((out / "meta.json").read_text())["status"] == "finished"
