"""Saved files never run code: every checkpoint, weights and results loader refuses a planted pickle.

Each test writes, at the path a loader reads, a pickle whose ``__reduce__`` would create a marker
file when unpickled, calls the loader, and checks that the marker does not exist and that the file
was refused with an error naming it (or set aside, where the loader's contract is to restart).
"""

from __future__ import annotations

import ast
import pathlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

SRC = Path(__file__).resolve().parents[1] / "src" / "oncodyn"


class _Plant:
    """Unpickling this object creates the file ``marker``."""

    def __init__(self, marker: Path):
        self.marker = Path(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "MARKER"


def _raw_pickle(path: Path, marker: Path, **fields) -> Path:
    path.write_bytes(pickle.dumps({**fields, "model": _Plant(marker)}))
    return path


def _torch_pickle(path: Path, marker: Path, **fields) -> Path:
    torch.save({**fields, "model": _Plant(marker)}, path)
    return path


def _npz_pickle(path: Path, marker: Path, **fields) -> Path:
    with open(path, "wb") as f:  # an object array in an .npz is stored as a pickle
        np.savez(f, sigma=np.zeros(3), evil=np.array([_Plant(marker)], dtype=object))
    return path


PLANTS = {"raw pickle": _raw_pickle, "torch.save": _torch_pickle, "npz object array": _npz_pickle}


def test_the_plant_would_run_if_unpickled(tmp_path):
    """Guard against a vacuous suite: a plain unpickler does create the marker."""
    m = tmp_path / "m"
    pickle.loads(pickle.dumps(_Plant(m)))
    assert m.exists()


# ----------------------------------------------------------------------------- CPM / NeuralCPM PCD


def _pcd_trainer():
    from oncodyn.cpm.ebm import PCDOptions, PCDTrainer
    from oncodyn.cpm.lattice import Lattice, voronoi_blob
    from oncodyn.cpm.neural import AnalyticTorch

    st = voronoi_blob(Lattice((16, 16)), 3, 20.0, np.random.default_rng(0))
    data = {"sigma": np.stack([st.sigma] * 2), "cell_type": np.stack([st.cell_type] * 2)}
    return PCDTrainer(AnalyticTorch(2, 20.0), data, PCDOptions(iterations=2, batch=2, mcs_per_iter=0.5, seed=1))


@pytest.mark.parametrize("plant", ["raw pickle", "torch.save"])
def test_pcd_checkpoint_refuses_a_planted_pickle(tmp_path, marker, plant):
    path = PLANTS[plant](tmp_path / "pcd.npz", marker)
    tr = _pcd_trainer()
    with pytest.raises(ValueError, match="pcd.npz"):
        tr.load(str(path))
    with pytest.raises(ValueError, match="pcd.npz"):
        tr.train(checkpoint=str(path), progress=False)
    assert not marker.exists()
    assert tr.it == 0


def test_pcd_checkpoint_is_plain_data_and_refuses_an_older_format(tmp_path, marker):
    tr = _pcd_trainer()
    tr.train(checkpoint=str(tmp_path / "ck.pt"), progress=False)
    blob = torch.load(tmp_path / "ck.pt", weights_only=True)  # tensors and plain data only
    assert blob["it"] == 2 and blob["chains"][0]["sigma"].dtype == torch.int32
    back = _pcd_trainer()
    assert back.load(str(tmp_path / "ck.pt"))
    assert back.it == 2 and back.log.loss == tr.log.loss
    assert back.rng.bit_generator.state == tr.rng.bit_generator.state
    assert all(np.array_equal(a.sigma, b.sigma) and a.mcs == b.mcs for a, b in zip(back.chains, tr.chains))
    torch.save({"it": 1, "model": {}}, tmp_path / "old.pt")  # readable, but not this format
    with pytest.raises(ValueError, match=r"old\.pt is not in the format"):
        back.load(str(tmp_path / "old.pt"))


# ----------------------------------------------------------------------------- DeepLagrangian


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note on a foreign pickle
@pytest.mark.parametrize("plant", ["raw pickle", "torch.save"])
def test_deeplagrangian_weights_refuse_a_planted_pickle(tmp_path, marker, plant):
    from oncodyn.deeplagrangian.flow import FlowSolution

    path = PLANTS[plant](tmp_path / "case.pt", marker, head="{}", state={})
    with pytest.raises(ValueError, match="case.pt"):
        FlowSolution.load(path)
    assert not marker.exists()


def test_deeplagrangian_march_sets_a_planted_checkpoint_aside(tmp_path, marker):
    from oncodyn.deeplagrangian.krnet import KRnetSpec
    from oncodyn.deeplagrangian.initial import GaussianP0
    from oncodyn.deeplagrangian.marching import MarchOptions, march
    from oncodyn.deeplagrangian.model import KSWholeSpace
    from oncodyn.deeplagrangian.velocity import NoAdvection

    class _Stop(Exception):
        pass

    def log(line):  # the first line reports the set-aside file; no need to train the case
        lines.append(line)
        raise _Stop

    ckpt = _torch_pickle(tmp_path / "case.pt", marker, head="{}", state={})
    lines = []
    with pytest.raises(_Stop):
        march(KSWholeSpace(mu=1.0, chi=0.0, mass=1.0, dim=2), GaussianP0((0.0, 0.0), 1.0), NoAdvection(),
              KRnetSpec(dim=2, width=8), MarchOptions(t_end=0.05, segment=0.05, iterations=3, n_z=32, n_r=8, pool=64),
              checkpoint=ckpt, log=log)
    assert not marker.exists()
    assert (tmp_path / "case.pt.corrupt").exists() and not ckpt.exists()
    assert "case.pt" in lines[0]


# ----------------------------------------------------------------------------- NSIPF CNN


@pytest.mark.parametrize("plant", ["raw pickle", "torch.save"])
def test_nsipf_weights_and_checkpoint_refuse_a_planted_pickle(tmp_path, marker, plant):
    from oncodyn.chemotaxis.nsipf import TrainOptions, _load_checkpoint, load_weights

    path = PLANTS[plant](tmp_path / "cnn.pt", marker, format="oncodyn-nsipf-cnn", version=1)
    with pytest.raises(ValueError, match="cnn.pt"):
        load_weights(path)
    with pytest.raises(ValueError, match="cnn.pt"):
        _load_checkpoint(path, TrainOptions())
    assert not marker.exists()


# ----------------------------------------------------------------------------- run checkpoints


@pytest.mark.parametrize("plant", ["raw pickle", "npz object array"])
def test_run_checkpoint_refuses_a_planted_pickle(tmp_path, marker, plant):
    from oncodyn.core.runloop import Checkpointer, SeriesTracker
    from oncodyn.core.safeload import UnreadableFileError

    path = PLANTS[plant](tmp_path / "run.npz", marker)
    ck = Checkpointer(str(path), every=1, to_arrays=lambda s: {}, from_arrays=lambda d: d)
    with pytest.raises(UnreadableFileError, match=r"run checkpoint .*run\.npz .*pickled"):
        ck.load([SeriesTracker(lambda s: {})])
    assert not marker.exists()


def test_cpm_simulation_resume_refuses_a_planted_checkpoint(tmp_path, marker):
    """The same through a family's driver (the CPM time loop)."""
    from oncodyn.cpm.driver import record_times, simulate
    from oncodyn.cpm.hamiltonians import Contact, Hamiltonian
    from oncodyn.cpm.lattice import Lattice, voronoi_blob
    from oncodyn.cpm.samplers import MetropolisSampler

    st = voronoi_blob(Lattice((12, 12)), 2, 20.0, np.random.default_rng(0))
    smp = MetropolisSampler(st, Hamiltonian((Contact(np.ones((3, 3)) - np.eye(3)),), temperature=1.0), seed=0)
    path = _npz_pickle(tmp_path / "cpm.npz", marker)
    with pytest.raises(ValueError, match="cpm.npz"):
        simulate(smp, record_times(2.0, 2), lambda s: {}, progress=False, checkpoint=str(path))
    assert not marker.exists()


# ----------------------------------------------------------------------------- results files


def _rundir(tmp_path):
    from oncodyn.io.rundir import RunDir

    return RunDir(tmp_path / "run")


@pytest.mark.parametrize("plant", ["raw pickle", "npz object array"])
def test_results_loaders_refuse_a_planted_pickle(tmp_path, marker, plant):
    from oncodyn.experiments.angio_common import _load_cached
    from oncodyn.experiments.cpm_common import cached_result
    from oncodyn.experiments.cpm_neural_data import load_snapshots

    rd = _rundir(tmp_path)
    PLANTS[plant](rd.path / "fields.npz", marker)
    PLANTS[plant](rd.subdir("results") / "seed_0.npz", marker)
    PLANTS[plant](rd.subdir("results") / "fdm.npz", marker)
    with pytest.raises(ValueError, match="fields.npz"):
        rd.read_arrays("fields.npz")
    with pytest.raises(ValueError, match="seed_0.npz"):
        cached_result(rd, "seed_0", lambda: {"x": np.zeros(1)})
    with pytest.raises(ValueError, match="fdm.npz"):
        _load_cached(rd, "fdm", "stamp")
    with pytest.raises(ValueError, match="fields.npz"):
        load_snapshots(str(rd.path / "fields.npz"))
    assert not marker.exists()


def test_results_loaders_read_plain_arrays(tmp_path):
    rd = _rundir(tmp_path)
    rd.write_arrays("a.npz", {"x": np.arange(3), "y": np.eye(2)})
    back = rd.read_arrays("a.npz")
    assert set(back) == {"x", "y"} and np.array_equal(back["x"], np.arange(3))


def test_array_cache_recomputes_a_planted_entry(tmp_path, marker, monkeypatch):
    from oncodyn.io.cache import cached_array

    monkeypatch.setenv("ONCODYN_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache" / "phase").mkdir(parents=True)
    _raw_pickle(tmp_path / "cache" / "phase" / "k.npy", marker)
    out = cached_array("phase", "k", lambda: np.arange(4.0))
    assert np.array_equal(out, np.arange(4.0)) and not marker.exists()
    assert np.array_equal(np.load(tmp_path / "cache" / "phase" / "k.npy", allow_pickle=False), out)  # replaced


# ----------------------------------------------------------------------------- no unsafe call in src/


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
            yield node.func.value.id, node.func.attr, {k.arg: k.value for k in node.keywords}


def test_no_loader_in_the_package_can_run_code():
    """Every ``torch.load`` passes ``weights_only=True``, every ``np.load`` ``allow_pickle=False``;
    no pickle, ``yaml.load`` or ``yaml.unsafe_load`` anywhere in ``src/oncodyn``."""
    bad = []
    for f in sorted(SRC.rglob("*.py")):
        tree = ast.parse(f.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                if any(n and n.split(".")[0] in ("pickle", "dill", "joblib", "shelve", "marshal") for n in names):
                    bad.append(f"{f.name}: imports {names}")
        for mod, attr, kw in _calls(tree):
            value = lambda k: kw[k].value if isinstance(kw.get(k), ast.Constant) else "missing"  # noqa: E731
            if mod == "torch" and attr == "load" and value("weights_only") is not True:
                bad.append(f"{f.name}: torch.load without weights_only=True")
            if mod in ("np", "numpy") and attr == "load" and value("allow_pickle") is not False:
                bad.append(f"{f.name}: np.load without allow_pickle=False")
            if mod == "yaml" and attr in ("load", "unsafe_load", "full_load", "load_all", "unsafe_load_all"):
                bad.append(f"{f.name}: yaml.{attr}")
    assert not bad, bad
