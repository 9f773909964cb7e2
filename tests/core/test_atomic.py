"""Atomic outputs: a write that fails at any point leaves no file or the previous complete one.

Each test writes a first version, then a second one that is broken off -- by an exception inside
the writer (a process dying mid-write) or at the final rename -- and checks that the final name
holds the first version, byte for byte, and that no temporary is left. A last test scans the
package: every file is written through :mod:`oncodyn.core.atomic`.
"""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import numpy as np
import pytest

from oncodyn.core import atomic

SRC = Path(__file__).resolve().parents[2] / "src" / "oncodyn"


class Killed(Exception):
    """Stands in for a process that died mid-write."""


@pytest.fixture
def failing_rename(monkeypatch):
    """Make the final ``os.replace`` fail (as if the process died just before it)."""

    def fail(src, dst):
        raise Killed(f"killed before renaming {src} onto {dst}")

    def arm():
        monkeypatch.setattr(os, "replace", fail)

    return arm


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(f"{atomic.TMP_PREFIX}*"))


# ----------------------------------------------------------------------------- files


@pytest.mark.parametrize("kill", ["inside the writer", "at the rename"])
def test_text_file_is_old_or_new_never_partial(tmp_path, failing_rename, kill):
    p = tmp_path / "report.md"
    atomic.write_text(p, "first version\n")
    with pytest.raises(Killed):
        if kill == "at the rename":
            failing_rename()
            atomic.write_text(p, "second version, much longer\n" * 100)
        else:
            with atomic.atomic_open(p, "w") as f:
                f.write("second version, half wri")
                raise Killed("mid-write")
    assert p.read_text() == "first version\n"
    assert _leftovers(tmp_path) == []


def test_a_new_file_that_fails_is_absent(tmp_path, failing_rename):
    failing_rename()
    with pytest.raises(Killed):
        atomic.write_json(tmp_path / "metrics.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_npz_checkpoint_killed_mid_write(tmp_path, monkeypatch):
    """``np.savez`` dies after writing part of the archive: the previous archive stays."""
    p = tmp_path / "state.npz"
    atomic.save_npz(p, {"x": np.arange(5.0)}, compressed=False)
    before = p.read_bytes()
    real = np.savez

    def dies(f, **arrays):
        real(f, **arrays)
        f.truncate(f.tell() // 2)  # half an archive on disk ...
        raise Killed("mid-write")  # ... and the process dies

    monkeypatch.setattr(np, "savez", dies)
    with pytest.raises(Killed):
        atomic.save_npz(p, {"x": np.arange(1e5)}, compressed=False)
    assert p.read_bytes() == before and _leftovers(tmp_path) == []


def test_writers_by_kind_round_trip(tmp_path):
    import torch

    from oncodyn.core.safeload import load_npz, load_torch

    atomic.save_npz(tmp_path / "a.npz", {"x": np.eye(2)})
    atomic.save_npy(tmp_path / "b.npy", np.arange(3))
    atomic.save_torch(tmp_path / "c.pt", {"w": torch.ones(2)})
    atomic.write_bytes(tmp_path / "d.bin", b"\x00\x01")
    atomic.copy_file(tmp_path / "d.bin", tmp_path / "e.bin")
    assert np.array_equal(load_npz(tmp_path / "a.npz")["x"], np.eye(2))
    assert np.array_equal(load_npz(tmp_path / "b.npy")["arr_0"], np.arange(3))
    assert torch.equal(load_torch(tmp_path / "c.pt")["w"], torch.ones(2))
    assert (tmp_path / "e.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "b.npy", "c.pt", "d.bin", "e.bin"]


def test_torch_checkpoint_kept_when_the_rename_fails(tmp_path, failing_rename):
    import torch

    p = tmp_path / "pcd.pt"
    atomic.save_torch(p, {"it": 1})
    before = p.read_bytes()
    failing_rename()
    with pytest.raises(Killed):
        atomic.save_torch(p, {"it": 2, "w": torch.zeros(1000)})
    assert p.read_bytes() == before and _leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- figures, NIfTI


@pytest.mark.parametrize("name, magic", [("fig.png", b"\x89PNG"), ("fig.pdf", b"%PDF"), ("fig.svg", b"<?xml")])
def test_figure_format_follows_the_final_name(tmp_path, name, magic):
    from oncodyn.viz.figures import _plt

    plt = _plt()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    atomic.save_figure(fig, tmp_path / name)
    plt.close(fig)
    assert (tmp_path / name).read_bytes().startswith(magic)
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_figure_killed_mid_write_keeps_the_old_one(tmp_path):
    from oncodyn.viz.figures import _plt, _save

    plt = _plt()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    p = _save(fig, tmp_path / "curve.png")
    before = p.read_bytes()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    real = fig.savefig

    def dies(fname, **kw):
        real(fname, **kw)
        with open(fname, "r+b") as f:
            f.truncate(100)  # half a PNG on disk ...
        raise Killed("mid-write")  # ... and the process dies

    fig.savefig = dies
    with pytest.raises(Killed):
        _save(fig, p)
    assert p.read_bytes() == before and _leftovers(tmp_path) == []


def test_nifti_is_written_gzipped_and_atomically(tmp_path, failing_rename):
    import nibabel as nib

    from oncodyn.io.nifti import save_nifti
    from oncodyn.tumour.domain import TissueMaps

    z = np.zeros((4, 5, 3))
    maps = TissueMaps(white=z + 0.5, grey=z + 0.3, csf=z + 0.2, spacing=(1.0, 1.0, 1.0), affine=np.eye(4))
    p = save_nifti(tmp_path / "u.nii.gz", np.ones((4, 5, 3)), maps)
    assert p.read_bytes()[:2] == b"\x1f\x8b"  # gzip: the temporary name ended in .nii.gz too
    assert np.allclose(nib.load(str(p)).get_fdata(), 1.0)
    before = p.read_bytes()
    failing_rename()
    with pytest.raises(Killed):
        save_nifti(p, np.full((4, 5, 3), 2.0), maps)
    assert p.read_bytes() == before and _leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- run directory outputs


def _dataset(value: float):
    import xarray as xr

    return xr.Dataset({"u": (("t",), np.full(4, value))}, coords={"t": np.arange(4.0)})


def test_rundir_json_and_netcdf_are_old_or_new(tmp_path, failing_rename):
    from oncodyn.io.rundir import RunDir

    rd = RunDir(tmp_path / "run")
    rd.write_metrics({"m": 1.0})
    rd.write_dataset("series.nc", _dataset(1.0))
    rd.write_arrays("particles.npz", {"x": np.zeros((3, 2))})
    failing_rename()
    for write in (lambda: rd.write_metrics({"m": 2.0}), lambda: rd.write_dataset("series.nc", _dataset(2.0)),
                  lambda: rd.write_arrays("particles.npz", {"x": np.ones((3, 2))}),
                  lambda: rd.write_report("new"), lambda: rd.write_config("seed: 1\n")):
        with pytest.raises(Killed):
            write()
    assert json.loads((rd.path / "metrics.json").read_text()) == {"m": 1.0}
    assert float(rd.read_dataset("series.nc")["u"][0]) == 1.0
    assert np.array_equal(rd.read_arrays("particles.npz")["x"], np.zeros((3, 2)))
    assert not (rd.path / "report.md").exists() and not (rd.path / "config.yaml").exists()
    assert _leftovers(rd.path) == []


def test_zarr_store_is_replaced_whole(tmp_path, monkeypatch):
    pytest.importorskip("zarr")
    import xarray as xr

    from oncodyn.io.rundir import RunDir

    rd = RunDir(tmp_path / "run")
    rd.write_dataset("fields.zarr", _dataset(1.0))
    rd.write_dataset("fields.zarr", _dataset(2.0))  # replaces the old store
    assert float(rd.read_dataset("fields.zarr")["u"][0]) == 2.0 and _leftovers(rd.path) == []

    real = xr.Dataset.to_zarr

    def dies(self, store, **kw):
        real(self, store, **kw)
        for f in Path(store).rglob("*"):
            if f.is_file() and "u" in f.parts:
                f.unlink()  # a half-written store ...
        raise Killed("mid-write")  # ... and the process dies

    monkeypatch.setattr(xr.Dataset, "to_zarr", dies)
    with pytest.raises(Killed):
        rd.write_dataset("fields.zarr", _dataset(3.0))
    assert float(rd.read_dataset("fields.zarr")["u"][0]) == 2.0 and _leftovers(rd.path) == []


def test_remove_stale_clears_what_a_killed_writer_left(tmp_path):
    (tmp_path / "figures").mkdir()
    stale = [atomic.temp_name(tmp_path / "figures" / "a.png"), atomic.temp_name(tmp_path / "b.zarr")]
    stale[0].write_bytes(b"half")
    (stale[1] / "u").mkdir(parents=True)
    (tmp_path / "keep.npz").write_bytes(b"x")
    assert sorted(atomic.remove_stale(tmp_path)) == sorted(stale)
    assert _leftovers(tmp_path) == [] and (tmp_path / "keep.npz").exists()


# ----------------------------------------------------------------------------- no direct write in src/

# Library calls that write a file. ``module.fn`` entries match calls on that module name; bare
# names match a method of any object.
WRITE_FUNCTIONS = {("np", "save"), ("np", "savez"), ("np", "savez_compressed"), ("np", "savetxt"),
                   ("numpy", "save"), ("numpy", "savez"), ("numpy", "savez_compressed"), ("torch", "save"),
                   ("nib", "save"), ("nibabel", "save"), ("json", "dump"), ("yaml", "dump"), ("yaml", "safe_dump"),
                   ("shutil", "copy"), ("shutil", "copy2"), ("shutil", "copyfile"), ("shutil", "copytree"),
                   ("shutil", "move")}
WRITE_METHODS = {"write_text", "write_bytes", "savefig", "to_netcdf", "to_zarr", "to_filename", "tofile", "to_csv",
                 "imsave", "imwrite", "save"}

# Calls that look like writes but are allowed, each with its reason: (file, receiver.method).
# Not listed because always allowed: calls into the atomic module (``atomic.write_text(...)``), and
# a library write whose target is the temporary of an enclosing ``with atomic_path(p) as tmp:``
# or ``with atomic_dir(p) as tmp:`` (e.g. ``fig.savefig(tmp)``, ``nib.save(img, str(tmp))``).
ALLOWED = {
    # oncodyn's own objects whose save() writes through oncodyn.core.atomic
    ("core/runloop.py", "checkpoint.save"): "Checkpointer.save -> atomic.save_npz",
    ("cpm/ebm.py", "self.save"): "PCDTrainer.save -> atomic.save_torch",
    # FlowSolution.save -> atomic.save_torch
    ("deeplagrangian/marching.py", "save"): "FlowSolution.save",
    ("deeplagrangian/marching.py", "sol.save"): "FlowSolution.save",
    ("deeplagrangian/particles.py", "ckpt.save"): "Checkpointer.save -> atomic.save_npz",
    ("experiments/deeplagrangian/common.py", "res.solution.save"): "FlowSolution.save",
}
ATOMIC_CONTEXTS = {"atomic_path", "atomic_dir"}


def _receiver(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _receiver(node.value)
        return f"{inner}.{node.attr}" if inner else node.attr
    return ""


def _opens_for_writing(call: ast.Call) -> bool:
    """``open(p, "w")`` / ``path.open("w")`` (any mode with w, a, x or +)."""
    is_open = (isinstance(call.func, ast.Name) and call.func.id == "open") or (
        isinstance(call.func, ast.Attribute) and call.func.attr == "open")
    if not is_open:
        return False
    pos = 1 if isinstance(call.func, ast.Name) else 0
    mode = call.args[pos] if len(call.args) > pos else next((k.value for k in call.keywords if k.arg == "mode"), None)
    return isinstance(mode, ast.Constant) and isinstance(mode.value, str) and any(c in mode.value for c in "wax+")


def _writes_to_atomic_temporaries(tree: ast.AST) -> set[int]:
    """ids of the calls inside ``with atomic_path(...) as tmp:`` (or ``atomic_dir``) that use ``tmp``."""
    ok = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.With):
            continue
        temps = {item.optional_vars.id for item in node.items
                 if isinstance(item.context_expr, ast.Call) and isinstance(item.optional_vars, ast.Name)
                 and _receiver(item.context_expr.func).split(".")[-1] in ATOMIC_CONTEXTS}
        for call in (n for stmt in node.body for n in ast.walk(stmt) if isinstance(n, ast.Call)):
            if any(isinstance(n, ast.Name) and n.id in temps for a in call.args for n in ast.walk(a)):
                ok.add(id(call))
    return ok


def direct_writes(src: Path = SRC) -> list[str]:
    """``file:line call`` of every write in ``src`` that does not go through oncodyn.core.atomic."""
    found = []
    for f in sorted(src.rglob("*.py")):
        rel = f.relative_to(src).as_posix()
        if rel == "core/atomic.py":
            continue
        tree = ast.parse(f.read_text())
        via_temporary = _writes_to_atomic_temporaries(tree)
        hits = []
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or id(node) in via_temporary:
                continue
            func, what = node.func, None
            if _opens_for_writing(node):
                what = "open(..., write mode)"
            elif isinstance(func, ast.Attribute):
                recv = _receiver(func.value)
                if recv == "atomic":
                    continue
                if (recv, func.attr) in WRITE_FUNCTIONS:
                    if not (recv in ("json", "yaml") and len(node.args) < 2
                            and not any(k.arg == "stream" for k in node.keywords)):
                        what = f"{recv}.{func.attr}"
                elif func.attr in WRITE_METHODS:
                    what = f"{recv}.{func.attr}" if recv else func.attr
            if what is not None and (rel, what) not in ALLOWED:
                hits.append((node.lineno, node.col_offset, f"{rel}:{node.lineno} {what}"))
        found += [h[2] for h in sorted(hits)]
    return found


def test_every_file_is_written_through_the_atomic_module():
    assert direct_writes() == []


def test_the_scan_finds_direct_writes(tmp_path):
    """Guard against a vacuous scan: each kind of direct write is reported."""
    (tmp_path / "bad.py").write_text(
        "import json, numpy as np, torch\n"
        "def f(p, fig, ds, x):\n"
        "    p.write_text('x')\n"
        "    np.savez(p, x=x)\n"
        "    torch.save(x, p)\n"
        "    fig.savefig(p)\n"
        "    ds.to_netcdf(p)\n"
        "    json.dump(x, open(p, 'w'))\n"
        "    with p.open('wb') as fh:\n"
        "        fh.write(b'')\n"
        "    json.dumps(x)\n"
        "    from oncodyn.core.atomic import atomic_path\n"
        "    with atomic_path(p) as tmp:\n"
        "        fig.savefig(tmp)\n"
        "        fig.savefig(p)\n")
    found = [w.split(" ", 1)[1] for w in direct_writes(tmp_path)]
    assert found == ["p.write_text", "np.savez", "torch.save", "fig.savefig", "ds.to_netcdf", "json.dump",
                     "open(..., write mode)", "open(..., write mode)", "fig.savefig"], found
