"""``oncodyn run glioma-patient`` on user-style NIfTI files: end to end, and one clear error per bad input.

The patient is a small synthetic phantom (an ellipsoidal brain, white matter inside grey, a
ventricle; 4 mm voxels) written as white/grey/csf probability maps. Its two scans are
simulated with known (D_w, ρ) on a grid twice as fine (block-averaged, no inverse crime) and
written as BraTS-style label images (2 oedema, 4 enhancing core).
"""

from __future__ import annotations

import json
import re
import textwrap

import nibabel as nib
import numpy as np
import pytest
import yaml

from oncodyn import cli
from oncodyn.experiments import glioma_pipeline as gp
from oncodyn.experiments.registry import RunContext
from oncodyn.io.rundir import RunDir
from oncodyn.tumour.anatomy import refine
from oncodyn.tumour.domain import TissueMaps
from oncodyn.tumour.model import FKParams
from oncodyn.tumour.synthetic import observe_from_finer

H = 4.0
SHAPE = (26, 28, 24)
TRUE = {"D_white": 0.2, "rho": 0.04}
DAYS = (150.0, 200.0)
PHASE = {"threshold": 0.5, "width_voxels": 1.0, "n_steps": 100}


@pytest.fixture(scope="module", autouse=True)
def one_numba_thread():
    """The phantom is tiny (~15k voxels): one compiled thread is as fast as two and, unlike a parallel
    loop, does not stall at every step's barrier when other processes share the cores."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(before)


def _affine(h=H, shape=SHAPE):
    """RAS affine with the grid centred on world 0 (mm)."""
    A = np.diag([h, h, h, 1.0])
    A[:3, 3] = -(np.asarray(shape) - 1) / 2 * h
    return A


def phantom(h=H, shape=SHAPE) -> TissueMaps:
    """Ellipsoidal brain (semi-axes 44, 48, 40 mm): white core, grey rim, a ventricle, CSF outside."""
    A = _affine(h, shape)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).astype(float)
    x = idx @ A[:3, :3].T + A[:3, 3]
    r = np.sqrt(((x / [44.0, 48.0, 40.0]) ** 2).sum(-1))
    tissue = np.clip((1.0 - r) * 10 + 0.5, 0, 1)  # ~ 1 voxel ramp at r = 1
    white = tissue * np.clip((0.7 - r) * 10 + 0.5, 0, 1)
    vent = np.sqrt((((x - [-8.0, 0.0, 0.0]) / [6.0, 14.0, 8.0]) ** 2).sum(-1)) < 1
    white, tissue = np.where(vent, 0.0, white), np.where(vent, 0.0, tissue)
    grey = tissue - white
    csf = np.where(vent, 1.0, np.clip(1.0 - tissue, 0, 1) * (r < 1.1))
    return TissueMaps(white=white, grey=grey, csf=csf, spacing=(h,) * 3, affine=A)


ORIGIN_WORLD = [16.0, 8.0, 4.0]  # deep white matter of the phantom


def _save(path, data, affine, dtype=np.float32):
    nib.save(nib.Nifti1Image(np.asarray(data, dtype), affine), str(path))
    return str(path)


@pytest.fixture(scope="module")
def patient(tmp_path_factory):
    """Tissue maps and two scans as NIfTI files; returns paths and the base config dict."""
    d = tmp_path_factory.mktemp("patient")
    maps = phantom()
    files = {k: _save(d / f"{k}.nii.gz", getattr(maps, k), maps.affine) for k in ("white", "grey", "csf")}
    x0 = maps.world_to_grid(ORIGIN_WORLD)[0]
    case = observe_from_finer(refine(maps, 2), 2, FKParams(**TRUE), x0, DAYS, noise=0.0, phase=PHASE)
    segs = []
    for k, (t, u) in enumerate(zip(DAYS, case.clean)):
        full = case.domain.embed(u)
        label = np.where(full >= 0.6, 4, np.where(full >= 0.25, 2, 0))
        segs.append(_save(d / f"seg{k}.nii.gz", label, maps.affine, np.uint8))
    present = [set(np.unique(nib.load(p).get_fdata()).astype(int)) for p in segs]
    assert 2 in present[0] and {2, 4} <= present[1], "the phantom's scans must show oedema, and a core at scan 2"
    seg_specs = [{"path": segs[0], "time": DAYS[0], "labels": [2, 4] if 4 in present[0] else [2], "level": 0.25},
                 {"path": segs[1], "time": DAYS[1], "labels": [2, 4], "level": 0.25},
                 {"path": segs[1], "time": DAYS[1], "labels": [4], "level": 0.6}]
    cfg = {"anatomy": "nifti", **files, "resolution_mm": H, "segmentations": seg_specs, "grid_size": 3,
           "max_iter": 30, "n_series": 8, "predict_days": [260.0], "device": "cpu"}
    return {"dir": d, "maps": maps, "files": files, "segs": segs, "cfg": cfg}


def _write_cfg(path, cfg: dict) -> str:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


def _run(tmp_path, cfg: dict, *extra) -> tuple[int, object]:
    out = tmp_path / "run"
    rc = cli.main(["run", "glioma-patient", "--config", _write_cfg(tmp_path / "cfg.yaml", cfg), "--out", str(out),
                   "--quiet", *extra])
    return rc, out


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def e2e(patient, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    rc, out = _run(tmp, patient["cfg"])
    return rc, out


def test_end_to_end_recovers_parameters(e2e):
    """Estimates within 30% of the truth (4 mm segmentations carry little information; we get ~1-5%)."""
    rc, out = e2e
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    est = m["estimates"]
    for k in ("D_white", "rho"):
        assert abs(est[k] / TRUE[k] - 1) < 0.30, (k, est[k])
        lo, hi = est["intervals95"][k]
        assert lo < est[k] < hi
    assert m["origin"]["source"].startswith("centroid of segmentations[0]")
    assert all(s["dice"] > 0.7 for s in m["segmentations"]), [s["dice"] for s in m["segmentations"]]
    assert m["tables"][0]["columns"][1].startswith("published")
    assert len(m["tables"]) == 3


def test_end_to_end_outputs_keep_the_input_affine(e2e, patient):
    rc, out = e2e
    assert rc == 0
    for name in ("predicted_u", "predicted_core_T", "predicted_oedema_T", "predicted_standard_T", "predicted_model_T"):
        img = nib.load(out / "nifti" / f"{name}.nii.gz")
        assert np.allclose(img.affine, patient["maps"].affine), name
        assert img.shape[:3] == SHAPE
    u = nib.load(out / "nifti" / "predicted_u.nii.gz")
    assert u.shape == SHAPE + (3,)  # days 150, 200 (segmentations) and 260 (predict_days)
    figs = {p.name for p in (out / "figures").glob("*.png")}
    assert {"predicted_overlay.png", "observed_vs_predicted.png", "radius_vs_time.png", "volume_vs_time.png"} <= figs
    report = (out / "report.md").read_text()
    assert "Dice" in report and "DEMO" not in report


# ----------------------------------------------------------------------------- bad inputs


def _bad(tmp_path, capsys, cfg, *extra) -> str:
    rc, out = _run(tmp_path, cfg, *extra)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("oncodyn: error:") == 1, err
    assert not (out / "nifti").exists()  # stopped before any expensive step
    return err


def _with_seg(cfg, i, **change):
    segs = [dict(s) for s in cfg["segmentations"]]
    segs[i].update(change)
    return {**cfg, "segmentations": segs}


def test_missing_segmentation_file(patient, tmp_path, capsys):
    err = _bad(tmp_path, capsys, _with_seg(patient["cfg"], 1, path=str(tmp_path / "nope.nii.gz")))
    assert "segmentations[1].path: must be an existing NIfTI file" in err


@pytest.mark.parametrize("kind", ["shape", "affine"])
def test_segmentation_on_another_grid(patient, tmp_path, capsys, kind):
    seg = nib.load(patient["segs"][0])
    data, A = np.asarray(seg.get_fdata()), seg.affine.copy()
    if kind == "shape":
        data = data[:-2]
    else:
        A[:3, 3] += 3.0
    p = _save(tmp_path / "moved.nii.gz", data, A, np.uint8)
    err = _bad(tmp_path, capsys, _with_seg(patient["cfg"], 0, path=p))
    assert "segmentations[0].path: must lie on the grid of the tissue maps" in err


def test_labels_absent_from_segmentation(patient, tmp_path, capsys):
    err = _bad(tmp_path, capsys, _with_seg(patient["cfg"], 2, labels=[1, 4]))
    assert "segmentations[2].labels: must be values present" in err and "got 1" in err


def test_negative_diffusivity_is_a_config_error(patient, tmp_path, capsys):
    err = _bad(tmp_path, capsys, patient["cfg"], "--set", "D_white=-0.1")
    assert "D_white" in err and "greater than 0" in err


def test_only_one_segmentation(patient, tmp_path, capsys):
    cfg = {**patient["cfg"], "segmentations": patient["cfg"]["segmentations"][:1]}
    err = _bad(tmp_path, capsys, cfg)
    assert "segmentations:" in err and "two distinct times" in err and "D_w and rho" in err


def test_two_segmentations_of_one_day_are_not_enough(patient, tmp_path, capsys):
    cfg = {**patient["cfg"], "segmentations": patient["cfg"]["segmentations"][1:]}
    err = _bad(tmp_path, capsys, cfg)
    assert "at least two segmentations at two distinct times" in err


@pytest.mark.parametrize("origin, words", [([-8.0, 0.0, 0.0], "brain tissue"),      # in the ventricle
                                           ([0.0, 0.0, -44.0], "brain tissue"),     # below the brain, in the image
                                           ([0.0, 0.0, 300.0], "outside the image")])
def test_origin_outside_the_brain(patient, tmp_path, capsys, origin, words):
    err = _bad(tmp_path, capsys, {**patient["cfg"], "origin_world": origin})
    assert "origin_world" in err and words in err


def test_spec_needs_labels_or_threshold(patient, tmp_path, capsys):
    err = _bad(tmp_path, capsys, _with_seg(patient["cfg"], 0, labels=None))
    assert "segmentations[0]" in err and "exactly one of labels" in err


def test_mistyped_key_in_a_segmentation(patient, tmp_path, capsys):
    segs = [dict(s) for s in patient["cfg"]["segmentations"]]
    segs[1]["lable"] = segs[1].pop("labels")
    err = _bad(tmp_path, capsys, {**patient["cfg"], "segmentations": segs})
    assert "segmentations[1].lable: unknown key (allowed keys: path, time, labels, threshold, level)" in err
    assert not (tmp_path / "run").exists()  # a config error: no run directory


# ----------------------------------------------------------------------------- scans that cannot show growth


def _swapped(cfg):
    """The two scans' days exchanged: the larger tumour is now the earlier one."""
    segs = [dict(s) for s in cfg["segmentations"]]
    segs[0]["time"], segs[1]["time"], segs[2]["time"] = DAYS[1], DAYS[0], DAYS[0]
    return {**cfg, "segmentations": segs}


def test_shrinking_tumour_stops_before_the_fit(patient, tmp_path, capsys):
    err = _bad(tmp_path, capsys, _swapped(patient["cfg"]))
    assert err.startswith("oncodyn: error: segmentations[0]: must not be smaller than an earlier segmentation of "
                          "the same level (0.25)"), err
    assert "segmentations[1] at day 150" in err and "force: true" in err
    m = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert m["status"] == "failed" and "segmentations[0]" in m["error"]


def test_empty_later_scan_stops_before_the_fit(patient, tmp_path, capsys):
    empty = {"path": patient["segs"][1], "time": DAYS[1], "threshold": 10.0, "level": 0.6}  # labels are <= 4
    cfg = {**patient["cfg"], "segmentations": patient["cfg"]["segmentations"][:2] + [empty]}
    err = _bad(tmp_path, capsys, cfg)
    assert err.startswith("oncodyn: error: segmentations[2]: must not be empty on the model grid at day 200"), err


def _specs(*rows):
    return [gp.SegmentationSpec(path="x", time=t, labels=[1], level=lv) for t, lv in rows]


def test_check_growth_rules():
    grow = np.zeros((3, 4, 4, 4), bool)
    grow[0, :1], grow[1, :2], grow[2, :1] = True, True, True
    specs = _specs((100, 0.25), (200, 0.25), (200, 0.6))
    assert gp.check_growth(specs, grow, 8.0) == []  # a core at the later day only is growth too
    assert gp.check_growth(_specs((200, 0.25), (100, 0.25), (200, 0.6)), grow, 8.0, force=True)[0].startswith(
        "segmentations[0]: must not be smaller")
    same_day = _specs((100, 0.25), (100, 0.25), (200, 0.6))  # two readers of one scan may differ
    assert gp.check_growth(same_day, grow, 8.0) == []
    empty_first = grow.copy()
    empty_first[2] = False
    assert gp.check_growth(_specs((100, 0.6), (200, 0.25), (200, 0.25)), empty_first[[2, 0, 1]], 8.0) == []
    with pytest.raises(ValueError, match=r"^segmentations\[2\]: must not be empty"):
        gp.check_growth(specs, empty_first, 8.0)


def test_force_fits_anyway_and_warns_in_report_and_metrics(patient, tmp_path):
    """force: true fits the swapped scans; the growth problem and a fit stopped by D_bounds are warnings.

    D_w is boxed to [0.01, 0.02], a tenth of the truth (0.2), and the swapped scans fit no growth well: the
    fit ends at a bound of that box (which one is the optimiser's business; the warning is what is tested).
    """
    cfg = {**_swapped(patient["cfg"]), "force": True, "D_bounds": [0.01, 0.02], "D_init": 0.02, "grid_size": 0,
           "max_iter": 8, "n_series": 4}
    rc, out = _run(tmp_path, cfg)
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["warnings"][0].startswith("segmentations[0]: must not be smaller") and "force is true" in m["warnings"][0]
    assert any(re.match(r"D_bounds: the fitted D_w = 0\.0[12] ends at the (lower|upper) bound 0\.0[12]; ", w)
               for w in m["warnings"]), m["warnings"]
    report = (out / "report.md").read_text()
    assert "WARNING: segmentations[0]: must not be smaller" in report and "WARNING: D_bounds:" in report


def test_growing_scans_have_no_warnings(e2e):
    rc, out = e2e
    assert rc == 0
    assert json.loads((out / "metrics.json").read_text())["warnings"] == []


def test_bound_warnings():
    class Res:
        D_white, rho = 1.0, 0.05

    cfg = gp.PatientConfig()
    (w,) = gp.bound_warnings(Res, cfg)
    assert w.startswith("D_bounds: the fitted D_w = 1 ends at the upper bound 1")
    Res.D_white, Res.rho = 0.5, 0.002
    assert gp.bound_warnings(Res, cfg)[0].startswith("rho_bounds: the fitted rho = 0.002 ends at the lower bound")
    Res.rho = 0.05
    assert gp.bound_warnings(Res, cfg) == []


# ----------------------------------------------------------------------------- pieces


def test_segmentations_on_the_anatomy_grid_are_resampled(tmp_path):
    """Maps and segmentation at 2 mm, model at 4 mm: the mask is block-averaged like the maps."""
    fine = phantom(2.0, tuple(2 * n for n in SHAPE))
    files = {k: _save(tmp_path / f"{k}.nii.gz", getattr(fine, k), fine.affine) for k in ("white", "grey", "csf")}
    x = np.stack(np.meshgrid(*fine.coords(), indexing="ij"), -1)
    c = fine.world_to_grid(ORIGIN_WORLD)[0]
    ball = np.sqrt(((x - c) ** 2).sum(-1)) <= 9.0
    seg = [_save(tmp_path / f"s{k}.nii.gz", ball * (k + 1), fine.affine, np.uint8) for k in range(2)]
    cfg = gp.PatientConfig(anatomy="nifti", **files, resolution_mm=4.0,
                           segmentations=[{"path": seg[0], "time": 10, "labels": [1], "level": 0.25},
                                          {"path": seg[1], "time": 20, "threshold": 1.5, "level": 0.25}])
    inputs = gp.load_inputs(cfg, RunContext(rundir=RunDir(tmp_path / "run"), progress=False, log=lambda s: None))
    assert inputs.maps.shape == SHAPE and inputs.resampled == [0, 1]
    assert np.allclose(inputs.maps.affine, _affine())
    vol = inputs.masks[0].sum() * 4.0**3
    assert abs(vol / (4 / 3 * np.pi * 9.0**3) - 1) < 0.35  # a 9 mm ball seen by 4 mm voxels
    assert np.allclose(inputs.origin_world, ORIGIN_WORLD, atol=2.5)  # centroid of the ball


def test_same_day_observations_are_made_increasing():
    t = gp.observation_times([100.0, 100.0, 100.0, 150.0])
    assert np.all(np.diff(t) > 0) and t[0] == 100.0 and t[-1] == 150.0
    assert t[2] - t[0] == pytest.approx(2 * gp.SAME_DAY_SHIFT)


def test_documented_user_example_validates():
    """The example config in the module docstring is a valid PatientConfig (files need not exist to validate)."""
    doc = gp.__doc__
    block = doc.split("A config for your own data (paths relative to the working directory)::", 1)[1]
    block = block.split("\n\nSegmentation files", 1)[0]
    cfg = gp.PatientConfig(**yaml.safe_load(textwrap.dedent(block)))
    assert cfg.anatomy == "nifti" and len(cfg.segmentations) == 4
    assert cfg.segmentations[1].labels == [1, 4] and cfg.segmentations[1].level == 0.6


def test_quick_demo_preset_is_small():
    cfg = gp.PatientConfig(**gp.PatientConfig.presets["quick"])
    assert cfg.resolution_mm == 4.0 and cfg.grid_size == 3 and not cfg.segmentations


def test_fit_origin_and_mcmc(patient, tmp_path):
    """The origin fitted from the centroid guess, and an emcee posterior (a short chain: plumbing, not statistics)."""
    cfg = {**patient["cfg"], "fit_origin": True, "max_iter": 15, "mcmc_steps": 2, "mcmc_burn": 1, "mcmc_walkers": 10}
    rc, out = _run(tmp_path, cfg)
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert np.linalg.norm(np.subtract(m["estimates"]["x0_world"], ORIGIN_WORLD)) < 4.0  # one voxel
    assert m["mcmc"]["n_samples"] == 1 * 10 and len(m["mcmc"]["D_white_q"]) == 3
    assert (out / "figures" / "posterior.png").exists()
    assert any("emcee" in str(r[0]) for r in m["tables"][0]["rows"])
