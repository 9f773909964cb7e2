"""Checkpoints carry a checksum and the run's config hash: a damaged checkpoint, or one of another
configuration, is set aside as ``<name>.corrupt`` and the simulation restarts, ending exactly where
a clean run does; an intact one of the same configuration is resumed from."""

from __future__ import annotations

import numpy as np
import pytest

from oncodyn.chemotaxis.driver import simulate
from oncodyn.chemotaxis.models import KellerSegelParams
from oncodyn.chemotaxis.sipf import SIPFOptions
from oncodyn.core.runloop import Checkpointer, CheckpointSetAside, payload_checksum
from oncodyn.core.safeload import load_npz
from oncodyn.io.rundir import RunDir

P = KellerSegelParams(mass=60.0)
O = SIPFOptions(n_modes=8, dt=1e-3, n_particles=200, variant="spectral")
KW = dict(seed=3, diag_every=5, progress=False, checkpoint_every=5)


@pytest.fixture(scope="module")
def clean():
    return simulate(P, O, t_end=0.02, seed=3, diag_every=5, progress=False)


def _interrupted(rd: RunDir, name: str = "piece") -> str:
    """A checkpoint at step 10 of a 20-step run (as left by a run stopped half way)."""
    ck = rd.checkpoint(name)
    assert simulate(P, O, t_end=0.01, checkpoint_path=ck, **KW).state.step == 10
    return ck


def _same(run, clean) -> bool:
    return (np.array_equal(run.state.x, clean.state.x) and np.array_equal(run.state.alpha, clean.state.alpha)
            and np.array_equal(run.series["c_inf"], clean.series["c_inf"]))


def _rundir(path, config="seed: 3\nmass: 60\n") -> RunDir:
    rd = RunDir(path)
    rd.write_config(config)
    return rd


def test_checkpoint_holds_config_hash_and_checksum(tmp_path):
    rd = _rundir(tmp_path / "run")
    d = load_npz(_interrupted(rd))
    assert str(d.pop("__checkpoint__/config_hash")) == rd.config_hash and len(rd.config_hash) == 64
    assert str(d.pop("__checkpoint__/checksum")) == payload_checksum(
        {**d, "__checkpoint__/config_hash": np.array(rd.config_hash)})


def test_same_config_resumes(tmp_path, clean):
    rd = _rundir(tmp_path / "run")
    ck = _interrupted(rd)
    again = _rundir(tmp_path / "run")  # a rerun of the same configuration
    assert again.checkpoint("piece") == ck and again.checkpoint("piece").config_hash == rd.config_hash
    resumed = simulate(P, O, t_end=0.02, checkpoint_path=again.checkpoint("piece"), **KW)
    assert resumed.info["resumed_from"] == 10 and _same(resumed, clean)


def _flip_a_byte(path):
    raw = bytearray(open(path, "rb").read())
    i = len(raw) // 2
    raw[i] ^= 0xFF
    with open(path, "wb") as f:
        f.write(raw)


def _rewrite_a_value(path):
    """Change one number but keep the stored checksum: a well-formed file whose content is wrong."""
    d = load_npz(path)
    d["state/x"] = d["state/x"].copy()
    d["state/x"][0, 0] += 1e-3
    np.savez(path, **d)


def _change_config(path):
    pass  # the rerun below writes another config.yaml


@pytest.mark.parametrize("damage, why", [
    (_flip_a_byte, "cannot be read"),
    (_rewrite_a_value, "checksum does not match"),
    (_change_config, "different configuration"),
])
def test_damaged_or_foreign_checkpoint_is_set_aside_and_restarted(tmp_path, clean, damage, why):
    rd = _rundir(tmp_path / "run")
    ck = _interrupted(rd)
    damage(ck)
    before = open(ck, "rb").read()
    rd2 = _rundir(tmp_path / "run", "seed: 3\nmass: 61\n" if damage is _change_config else "seed: 3\nmass: 60\n")
    with pytest.warns(CheckpointSetAside, match=why) as rec:
        rerun = simulate(P, O, t_end=0.02, checkpoint_path=rd2.checkpoint("piece"), **KW)
    assert "piece.npz.corrupt" in str(rec[0].message)  # the warning names the file set aside
    assert open(ck + ".corrupt", "rb").read() == before  # kept for inspection, byte for byte
    assert rerun.info["resumed_from"] is None and _same(rerun, clean)  # restarted; ends where a clean run does


def test_checkpoint_without_checksum_is_set_aside(tmp_path):
    """A checkpoint of an older version (no checksum) is not trusted."""
    path = tmp_path / "old.npz"
    np.savez(path, **{"state/step": np.array(3)})
    ck = Checkpointer(str(path), 1, to_arrays=lambda s: {}, from_arrays=lambda d: d)
    with pytest.warns(CheckpointSetAside, match="no checksum"):
        assert ck.load([]) is None
    assert ck.set_aside == str(path) + ".corrupt" and not path.exists()


def test_plain_path_checks_the_checksum_only(tmp_path):
    """Without a known config hash (a plain path, no run directory), an intact file is resumed."""
    path = str(tmp_path / "ck.npz")
    a = Checkpointer(path, 1, to_arrays=lambda s: {"v": np.array(s)}, from_arrays=lambda d: int(d["v"]),
                     config_hash="abc")
    a.save(7, [])
    b = Checkpointer(path, 1, to_arrays=lambda s: {"v": np.array(s)}, from_arrays=lambda d: int(d["v"]))
    assert b.load([]) == 7
    c = Checkpointer(path, 1, to_arrays=lambda s: {"v": np.array(s)}, from_arrays=lambda d: int(d["v"]),
                     config_hash="xyz")
    with pytest.warns(CheckpointSetAside, match="different configuration"):
        assert c.load([]) is None
