"""Clinical read-outs: visible tumour, sizes, standard vs model radiotherapy plans, overlap; figures."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from oncodyn.tumour import clinical as cl


def _grid(shape, spacing, centre):
    axes = [(np.arange(n) - c) * h for n, h, c in zip(shape, spacing, centre)]
    return np.sqrt(sum(m**2 for m in np.meshgrid(*axes, indexing="ij")))


def _smooth_density(rng, shape, spacing, centre, radius=8.0):
    """A tumour-like u in [0, 1] with distinct values (no ties): logistic in r plus tiny noise."""
    r = _grid(shape, spacing, centre)
    return np.clip(1.0 / (1.0 + np.exp((r - radius) / 2.5)) + 1e-6 * rng.random(shape), 0, 1)


def test_visible_tumour_thresholds_and_validation(rng):
    u = rng.random((20, 20))
    vis = cl.visible_tumour(u)
    np.testing.assert_array_equal(vis["core"], u >= 0.6)
    np.testing.assert_array_equal(vis["oedema"], u >= 0.25)
    assert not (vis["core"] & ~vis["oedema"]).any()  # the oedema mask contains the core
    for core, oedema in [(0.2, 0.3), (0.5, 0.5), (1.0, 0.25), (0.6, 0.0), (0.6, -0.1)]:
        with pytest.raises(ValueError, match="core/oedema"):
            cl.visible_tumour(u, core=core, oedema=oedema)


def test_volume_and_equivalent_radius():
    mask = np.zeros((10, 10, 10), bool)
    mask[:2, :3, :4] = True
    assert cl.volume(mask, (1.0, 2.0, 0.5)) == pytest.approx(24.0)
    assert cl.equivalent_radius(math.pi * 9.0, 2) == pytest.approx(3.0)
    assert cl.equivalent_radius(4.0 / 3.0 * math.pi * 8.0, 3) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="spacing"):
        cl.volume(mask, (1.0, 1.0))
    with pytest.raises(ValueError, match="ndim"):
        cl.equivalent_radius(1.0, 4)


def test_standard_plan_of_a_voxel_is_the_margin_ball():
    """Core = one voxel: the plan is the digital ball of radius = margin; extent along each axis exact."""
    spacing, margin = (1.0, 1.0, 1.0), 10.0
    core = np.zeros((31, 31, 31), bool)
    core[15, 15, 15] = True
    plan = cl.standard_plan(core, spacing, margin_mm=margin)
    np.testing.assert_array_equal(plan, _grid(core.shape, spacing, (15, 15, 15)) <= margin)
    assert plan[5, 15, 15] and not plan[4, 15, 15]
    # digital ball volume vs 4/3 pi R^3: equivalent radius within one voxel (it is within 0.05)
    assert abs(cl.equivalent_radius(cl.volume(plan, spacing), 3) - margin) < 1.0


def test_standard_plan_of_a_disc_anisotropic():
    spacing, R, margin = (0.5, 1.0), 5.0, 15.0
    shape, centre = (161, 81), (80, 40)
    r = _grid(shape, spacing, centre)
    plan = cl.standard_plan(r <= R, spacing, margin_mm=margin)
    radius = cl.equivalent_radius(cl.volume(plan, spacing), 2)
    assert abs(radius - (R + margin)) < max(spacing)
    rows = np.flatnonzero(plan[:, centre[1]])
    assert (rows[-1] - centre[0]) * spacing[0] == pytest.approx(R + margin, abs=spacing[0])


def test_standard_plan_restricted_to_brain_and_empty_core():
    core = np.zeros((21, 21), bool)
    core[10, 10] = True
    brain = np.zeros_like(core)
    brain[:, :12] = True
    plan = cl.standard_plan(core, (1.0, 1.0), 5.0, brain_mask=brain)
    assert plan.any() and not (plan & ~brain).any()
    assert not cl.standard_plan(np.zeros_like(core), (1.0, 1.0)).any()
    with pytest.raises(ValueError, match="margin_mm"):
        cl.standard_plan(core, (1.0, 1.0), -1.0)
    with pytest.raises(ValueError, match="brain_mask"):
        cl.standard_plan(core, (1.0, 1.0), 5.0, brain_mask=brain[:-1])


@pytest.mark.parametrize("ndim", [2, 3])
def test_model_plan_volume_equals_standard_within_one_voxel(rng, ndim):
    shape = (41, 43, 39)[:ndim]
    spacing = (1.0, 1.2, 0.9)[:ndim]
    u = _smooth_density(rng, shape, spacing, [n // 2 for n in shape])
    standard = cl.standard_plan(u >= 0.6, spacing, margin_mm=6.0)
    v_std = cl.volume(standard, spacing)
    model, theta = cl.model_plan(u, v_std, spacing)
    assert abs(cl.volume(model, spacing) - v_std) <= np.prod(spacing) / 2  # distinct values: exact count
    np.testing.assert_array_equal(model, u >= theta)


def test_model_plan_ties_brain_and_empty_target(rng):
    u = np.repeat(np.array([0.9, 0.5, 0.1]), 10)  # 10 voxels per level: counts 10, 20, 30
    plan, theta = cl.model_plan(u, 14.0, (1.0,))
    assert theta == 0.9 and plan.sum() == 10
    plan, theta = cl.model_plan(u, 16.0, (1.0,))
    assert theta == 0.5 and plan.sum() == 20
    plan, theta = cl.model_plan(u, 15.0, (1.0,))  # equidistant: the smaller set
    assert plan.sum() == 10
    plan, theta = cl.model_plan(u, 0.0, (1.0,))
    assert not plan.any() and theta == math.inf
    brain = np.arange(30) % 2 == 0
    plan, theta = cl.model_plan(u, 10.0, (1.0,), brain_mask=brain)
    assert not (plan & ~brain).any() and plan.sum() == 10
    with pytest.raises(ValueError, match="target_volume"):
        cl.model_plan(u, -1.0, (1.0,))


def test_plan_overlap_values():
    a = np.zeros((10, 10), bool)
    a[:4] = True
    b = np.zeros_like(a)
    b[2:6] = True
    same = cl.plan_overlap(a, a, (1.0, 1.0))
    assert same["dice"] == 1.0 and same["jaccard"] == 1.0 and same["a_in_b"] == 1.0
    assert cl.plan_overlap(a, ~a, (1.0, 1.0))["dice"] == 0.0
    o = cl.plan_overlap(a, b, (2.0, 1.0))
    assert o["dice"] == pytest.approx(0.5) and o["jaccard"] == pytest.approx(1 / 3)
    assert o["volume_a"] == 80.0 and o["a_in_b"] == pytest.approx(0.5)
    assert math.isnan(cl.plan_overlap(np.zeros_like(a), np.zeros_like(a), (1.0, 1.0))["dice"])


def test_radiotherapy_plans_bundle(rng):
    shape, spacing = (48, 48, 40), (1.5, 1.5, 1.5)
    u = _smooth_density(rng, shape, spacing, (24, 24, 20), radius=10.0)
    brain = ndimage.binary_erosion(np.ones(shape, bool), iterations=2)
    out = cl.radiotherapy_plans(u, spacing, brain_mask=brain, margin_mm=9.0)
    assert not (out["standard"] & ~brain).any() and not (out["model"] & ~brain).any()
    assert abs(out["model_volume"] - out["standard_volume"]) <= np.prod(spacing) / 2
    assert out["overlap"]["dice"] > 0.9  # radially symmetric u: both plans are nearly the same ball
    assert out["core_radius"] == pytest.approx(cl.equivalent_radius(out["core_volume"], 3))
    with pytest.raises(ValueError, match="core"):
        cl.radiotherapy_plans(u, spacing, core=1.2)


def test_overlay_and_curve_figures(tmp_path, rng):
    from oncodyn.viz.tumour import overlay_slices, radius_volume_curves

    u = _smooth_density(rng, (30, 32, 20), (2.0, 2.0, 2.0), (15, 16, 10), radius=10.0)
    bg = np.ones_like(u)
    contours = {"core": (u >= 0.6, "cyan"), "oedema": (u >= 0.25, "lime")}
    p3 = overlay_slices(tmp_path / "o3.png", bg, u, (2.0, 2.0, 2.0), contours=contours, title="3D")
    p2 = overlay_slices(tmp_path / "o2.png", bg[:, :, 10], u[:, :, 10], (2.0, 2.0),
                        contours={k: (m[:, :, 10], c) for k, (m, c) in contours.items()})
    pc = radius_volume_curves(tmp_path / "r.png", np.arange(5.0), {"FD": np.arange(5.0)}, "radius (mm)")
    for p in (p3, p2, pc):
        assert p.exists() and p.stat().st_size > 1000
    with pytest.raises(ValueError, match="slices"):
        overlay_slices(tmp_path / "x.png", bg, u, (2.0, 2.0, 2.0), slices=[99])
