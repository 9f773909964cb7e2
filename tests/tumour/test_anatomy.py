"""Anatomy: MNI152 loading, grid changes with consistent affines, slices, user NIfTI input/output."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from oncodyn.io.nifti import save_mask, save_nifti
from oncodyn.tumour import anatomy as an
from oncodyn.tumour.domain import TissueMaps


@pytest.fixture(scope="module")
def mni():
    return an.load_mni152(1)


@pytest.fixture(scope="module")
def mni2():
    return an.load_mni152(2)


def _random_maps(rng, shape, affine=None, spacing=None):
    """Smooth random fractions with white + grey + csf <= 1 on a small grid."""
    raw = [ndimage.gaussian_filter(rng.random(shape), 1.0) for _ in range(4)]
    total = sum(raw)
    white, grey, csf = (r / total for r in raw[:3])
    if affine is None:
        affine = np.eye(4)
    if spacing is None:
        spacing = tuple(float(h) for h in np.sqrt((affine[:3, :3] ** 2).sum(0)))[: len(shape)]
    return TissueMaps(white=white, grey=grey, csf=csf, spacing=spacing, affine=affine)


def _oblique_affine(h=(1.0, 1.2, 0.9)):
    """A rotated, anisotropic voxel -> world affine (mm)."""
    c, s = np.cos(0.3), np.sin(0.3)
    R = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    A = np.eye(4)
    A[:3, :3] = R * np.asarray(h)
    A[:3, 3] = [-20.0, 7.5, 3.0]
    return A


# --------------------------------------------------------------------------------------------- MNI152
def test_mni152_1mm_grid_and_fractions(mni):
    assert mni.shape == (197, 233, 189) == an.MNI152_SHAPE
    assert mni.spacing == (1.0, 1.0, 1.0)
    assert np.allclose(mni.affine[:3, 3], [-98.0, -134.0, -72.0])
    for k in an.TISSUES:
        a = getattr(mni, k)
        assert a.dtype == np.float64 and a.min() >= 0.0 and a.max() <= 1.0
    assert (mni.white + mni.grey).max() <= 1.0 + 1e-12
    assert (mni.white + mni.grey + mni.csf).max() <= 1.0 + 1e-12
    tissue_litres = mni.tissue().sum() * mni.voxel_volume() / 1e6
    assert 1.2 < tissue_litres < 2.0  # MNI152 GM + WM is ~1.67 l
    assert mni.header is not None


def test_mni152_returns_independent_copies(mni):
    a = an.load_mni152(1)
    a.white[100, 100, 90] = 0.123456
    assert an.load_mni152(1).white[100, 100, 90] != 0.123456
    assert not an._mni152_cached(1).white.flags.writeable


def test_mni152_2mm_is_block_average_of_1mm(mni, mni2):
    ref = an.coarsen(mni, 2)
    assert mni2.shape == (98, 116, 94) and mni2.spacing == (2.0, 2.0, 2.0)
    for k in an.TISSUES:
        np.testing.assert_array_equal(getattr(mni2, k), getattr(ref, k))
    np.testing.assert_allclose(mni2.affine, ref.affine)


# --------------------------------------------------------------------------------------------- grid changes
def test_coarsen_preserves_tissue_volume_of_cropped_region(mni, mni2):
    for k in an.TISSUES:
        fine = getattr(mni, k)[:196, :232, :188].sum() * mni.voxel_volume()
        coarse = getattr(mni2, k).sum() * mni2.voxel_volume()
        assert coarse == pytest.approx(fine, rel=1e-12)


@pytest.mark.parametrize("factor", [2, 3])
def test_coarsen_affine_maps_to_mean_of_fine_centres(rng, factor):
    maps = _random_maps(rng, (7, 8, 6), affine=_oblique_affine())
    coarse = an.coarsen(maps, factor)
    assert coarse.shape == tuple(n // factor for n in maps.shape)
    assert coarse.spacing == pytest.approx(tuple(h * factor for h in maps.spacing))
    for idx in [(0, 0, 0), (1, 1, 1), (1, 0, 1)]:
        block = np.stack(np.meshgrid(*[np.arange(i * factor, (i + 1) * factor) for i in idx], indexing="ij"), -1)
        fine_world = maps.grid_to_world(block.reshape(-1, 3) * np.asarray(maps.spacing))
        coarse_world = coarse.grid_to_world(np.asarray(idx) * np.asarray(coarse.spacing))
        np.testing.assert_allclose(coarse_world[0], fine_world.mean(0), atol=1e-12)
        np.testing.assert_allclose(coarse.white[idx], maps.white[tuple(slice(i * factor, (i + 1) * factor)
                                                                          for i in idx)].mean())


def test_coarsen_2d_slice_touches_only_in_plane_axes(mni):
    s = an.coronal_slice(mni, 120)
    c = an.coarsen(s, 2)
    assert c.shape == (98, 94) and c.slice_axis == 1 and c.slice_index == 120
    fine = s.grid_to_world(np.array([[10, 20], [11, 20], [10, 21], [11, 21]], float))
    np.testing.assert_allclose(c.grid_to_world([[5 * 2.0, 10 * 2.0]])[0], fine.mean(0), atol=1e-12)
    assert c.grid_to_world([[0.0, 0.0]])[0, 1] == pytest.approx(mni.affine[1, 3] + 120)


def test_block_average_plain_array(rng):
    a = rng.random((9, 10))
    b = an.block_average(a, 3)
    assert b.shape == (3, 3)
    assert b[1, 2] == pytest.approx(a[3:6, 6:9].mean())
    with pytest.raises(ValueError, match="factor"):
        an.block_average(a, 0)


def test_refine_is_multilinear_map_coordinates(rng):
    maps = _random_maps(rng, (6, 5, 4))
    fine = an.refine(maps, 3)
    assert fine.shape == (18, 15, 12) and fine.spacing == pytest.approx((1 / 3,) * 3)
    idx = np.indices(fine.shape).reshape(3, -1).astype(float)
    old = (idx - 1.0) / 3.0  # (j - (f - 1)/2) / f
    ref = ndimage.map_coordinates(maps.grey, old, order=1, mode="nearest").reshape(fine.shape)
    np.testing.assert_allclose(fine.grey, ref, atol=1e-12)


def test_refine_then_coarsen_returns_original(rng, mni2):
    maps = _random_maps(rng, (10, 9, 8), affine=_oblique_affine())
    back = an.coarsen(an.refine(maps, 2), 2)
    np.testing.assert_allclose(back.affine, maps.affine, atol=1e-12)
    assert back.spacing == pytest.approx(maps.spacing)
    # block mean of the two samples at i -+ 1/4 is a_i + a''/8 (per axis): small for smooth maps
    assert np.abs(back.white - maps.white).max() < 0.02
    ramp = np.add.outer(np.arange(10.0), np.zeros(9))[..., None] * np.ones(8) / 20.0
    lin = TissueMaps(white=ramp, grey=np.zeros_like(ramp), csf=np.zeros_like(ramp), spacing=(1.0, 1.0, 1.0))
    np.testing.assert_allclose(an.coarsen(an.refine(lin, 2), 2).white[1:-1], ramp[1:-1], atol=1e-12)
    big = an.coarsen(an.refine(mni2, 2), 2)
    assert np.abs(big.tissue() - mni2.tissue()).mean() < 0.01


def test_resample_dispatch_and_general_ratio(rng):
    maps = _random_maps(rng, (12, 10, 9), affine=_oblique_affine((1.0, 1.0, 1.0)))
    np.testing.assert_array_equal(an.resample(maps, 2.0).white, an.coarsen(maps, 2).white)
    np.testing.assert_array_equal(an.resample(maps, 0.5).white, an.refine(maps, 2).white)
    r = an.resample(maps, 1.5)
    assert r.shape == (8, 6, 6) and r.spacing == pytest.approx((1.5, 1.5, 1.5))
    for k in an.TISSUES:
        a = getattr(r, k)
        assert a.min() >= 0.0 and a.max() <= 1.0
    # voxel 0 of the new grid samples old index (0 + 1/2) 1.5 - 1/2 = 0.25 on every axis
    np.testing.assert_allclose(r.grid_to_world([[0.0, 0.0, 0.0]])[0], maps.grid_to_world([[0.25, 0.25, 0.25]])[0])
    with pytest.raises(ValueError, match="spacing_mm"):
        an.resample(maps, -1.0)


# --------------------------------------------------------------------------------------------- slices
def test_slices_shapes_and_world_round_trip(mni):
    shapes = {an.axial_slice: (197, 233), an.coronal_slice: (197, 189), an.sagittal_slice: (233, 189)}
    for fn, shape in shapes.items():
        s = fn(mni, 60)
        assert s.shape == shape and s.ndim == 2 and s.slice_index == 60
        g = np.array([[10.0, 20.0], [55.5, 3.0]])
        np.testing.assert_allclose(s.world_to_grid(s.grid_to_world(g)), g, atol=1e-12)
        full = np.insert(g, s.slice_axis, 60, axis=1)
        np.testing.assert_allclose(s.grid_to_world(g), mni.grid_to_world(full), atol=1e-12)
    ax = an.axial_slice(mni, 80)
    np.testing.assert_array_equal(ax.white, mni.white[:, :, 80])


def test_slice_by_world_coordinate_and_through_point(mni):
    assert an.axial_slice(mni, world_z=0.0).slice_index == 72
    assert an.coronal_slice(mni, world_y=-10.2).slice_index == 124
    assert an.sagittal_slice(mni).slice_index == 98
    s = an.slice_through(mni, [10.0, -20.0, 5.4])
    assert s.slice_axis == 2 and s.slice_index == 77
    with pytest.raises(ValueError, match="index"):
        an.axial_slice(mni, 500)
    with pytest.raises(ValueError, match="index/world"):
        an.axial_slice(mni, 3, world_z=1.0)
    with pytest.raises(ValueError, match="world_point"):
        an.slice_through(mni, [0.0, 0.0, 500.0])


def test_world_coordinate_slice_needs_axis_aligned_affine(rng):
    maps = _random_maps(rng, (6, 6, 6), affine=_oblique_affine())
    with pytest.raises(ValueError, match="world"):
        an.slice_maps(maps, 0, world=1.0)
    assert an.slice_maps(maps, 2, world=3.0).slice_index == 0


# --------------------------------------------------------------------------------------------- user NIfTI input
@pytest.fixture
def crop(mni2):
    """A small real-anatomy block (2 mm) with its own affine."""
    sl = (slice(30, 50), slice(40, 64), slice(40, 58))
    A = mni2.affine.copy()
    A[:3, 3] = mni2.affine[:3, :3] @ [30, 40, 40] + mni2.affine[:3, 3]
    return TissueMaps(white=mni2.white[sl], grey=mni2.grey[sl], csf=mni2.csf[sl], spacing=mni2.spacing, affine=A)


def _write(path, data, affine, dtype=np.float32):
    nib.save(nib.Nifti1Image(np.asarray(data, dtype), affine), str(path))
    return path


def test_load_probability_maps_round_trip(tmp_path, crop):
    paths = {k: _write(tmp_path / f"{k}.nii.gz", getattr(crop, k), crop.affine) for k in an.TISSUES}
    maps = an.load_tissue_nifti(**paths)
    assert maps.shape == crop.shape and maps.spacing == pytest.approx(crop.spacing)
    np.testing.assert_allclose(maps.affine, crop.affine, atol=1e-5)
    for k in an.TISSUES:
        np.testing.assert_allclose(getattr(maps, k), getattr(crop, k), atol=1e-6)  # float32 storage
    no_csf = an.load_tissue_nifti(white=paths["white"], grey=paths["grey"])
    s = no_csf.white + no_csf.grey
    np.testing.assert_allclose(no_csf.csf, np.where(s > 0, 1.0 - s, 0.0), atol=1e-12)


def test_load_label_image_round_trip(tmp_path, crop):
    labels = np.argmax(np.stack([0.25 * np.ones(crop.shape), crop.csf, crop.grey, crop.white]), axis=0)
    path = _write(tmp_path / "seg.nii.gz", labels, crop.affine, np.int16)
    maps = an.load_tissue_nifti(labels=path)
    np.testing.assert_array_equal(maps.white, labels == 3)
    np.testing.assert_array_equal(maps.grey, labels == 2)
    np.testing.assert_array_equal(maps.csf, labels == 1)
    custom = an.load_tissue_nifti(labels=path, label_values={"white": [3], "grey": [2, 1]})
    np.testing.assert_array_equal(custom.grey, (labels == 2) | (labels == 1))
    assert not custom.csf.any()
    np.testing.assert_allclose(maps.affine, crop.affine, atol=1e-5)


def _bad_inputs(tmp, crop):
    """(kwargs, pattern naming the field) for every rejected input."""
    A, shape = crop.affine, crop.shape
    good = {k: _write(tmp / f"{k}.nii.gz", getattr(crop, k), A) for k in an.TISSUES}
    seg = _write(tmp / "seg.nii.gz", np.arange(np.prod(shape)).reshape(shape) % 3 + 1, A, np.int16)
    other_A = A.copy()
    other_A[0, 3] += 2.0
    four_d = _write(tmp / "4d.nii.gz", np.stack([crop.grey, crop.grey], -1), A)
    small = _write(tmp / "small.nii.gz", crop.grey[:-1], A)
    moved = _write(tmp / "moved.nii.gz", crop.csf, other_A)
    high = _write(tmp / "high.nii.gz", crop.white * 1.5 + 0.1, A)
    nan = _write(tmp / "nan.nii.gz", np.where(crop.grey > 0.5, np.nan, crop.grey), A)
    frac = _write(tmp / "frac.nii.gz", np.full(shape, 1.5), A)
    text = tmp / "text.nii"
    text.write_text("not an image")
    missing = tmp / "nowhere.nii.gz"
    g = good
    return [
        (dict(white=missing, grey=g["grey"]), r"white: must be an existing NIfTI file, got '.*nowhere\.nii\.gz'"),
        (dict(white=text, grey=g["grey"]), r"white: must be a readable NIfTI file"),
        (dict(white=g["white"], grey=four_d), r"grey: must be a 3D image"),
        (dict(white=g["white"], grey=small), r"grey: must be of the same shape as white"),
        (dict(white=g["white"], grey=g["grey"], csf=moved), r"csf: must be on the same affine as white"),
        (dict(white=high, grey=g["grey"]), r"white: must be probabilities in \[0, 1\]"),
        (dict(white=g["white"], grey=nan), r"grey: must be finite"),
        (dict(white=g["white"]), r"grey: must be given"),
        (dict(), r"white/grey/labels: must be probability maps .* or a label image"),
        (dict(white=g["white"], grey=g["grey"], labels=seg), r"labels: must be given alone"),
        (dict(white=g["white"], grey=g["grey"], label_values={"white": [3]}), r"label_values: must be None"),
        (dict(labels=missing), r"labels: must be an existing NIfTI file"),
        (dict(labels=frac), r"labels: must be an integer-valued label image"),
        (dict(labels=seg, label_values={"white": [3], "grey": [2], "csf": [7]}),
         r"label_values\['csf'\]: must be labels present in .*found \[1, 2, 3\]"),
        (dict(labels=seg, label_values={"white": [3], "bone": [2]}), r"label_values: must be a dict with keys among"),
        (dict(labels=seg, label_values={"white": [3]}), r"label_values: must be a dict with 'white' and 'grey' entries"),
        (dict(labels=seg, label_values={"white": [3], "grey": [3]}), r"label_values\['grey'\]: must be labels not also"),
        (dict(labels=seg, label_values={"white": [3], "grey": ["2"]}), r"label_values\['grey'\]: must be a non-empty list"),
    ]


def test_load_tissue_nifti_rejects_every_bad_input(tmp_path, crop):
    for kwargs, pattern in _bad_inputs(tmp_path, crop):
        with pytest.raises(ValueError, match=pattern):
            an.load_tissue_nifti(**kwargs)


# --------------------------------------------------------------------------------------------- segmentations
def test_load_segmentation_labels_threshold_and_errors(tmp_path, crop):
    seg = np.zeros(crop.shape, np.int16)
    seg[5:9, 6:10, 4:8] = 1
    seg[9:11, 6:10, 4:8] = 4
    seg[3:5, 6:10, 4:8] = 2
    path = _write(tmp_path / "seg.nii.gz", seg, crop.affine, np.int16)
    core = an.load_segmentation(path, crop, labels=an.BRATS_CORE)
    np.testing.assert_array_equal(core, np.isin(seg, [1, 4]))
    np.testing.assert_array_equal(an.load_segmentation(path, crop), seg > 0)
    prob = _write(tmp_path / "prob.nii.gz", crop.white, crop.affine)
    np.testing.assert_array_equal(an.load_segmentation(prob, crop, threshold=0.5), crop.white >= 0.5)
    with pytest.raises(ValueError, match=r"labels: must be values present in .*found \[0, 1, 2, 4\]"):
        an.load_segmentation(path, crop, labels=[1, 3])
    small = _write(tmp_path / "small.nii.gz", seg[:-2], crop.affine, np.int16)
    with pytest.raises(ValueError, match=r"path: must be of the same shape as like"):
        an.load_segmentation(small, crop, labels=[1])
    A = crop.affine.copy()
    A[2, 3] += 4.0
    moved = _write(tmp_path / "moved.nii.gz", seg, A, np.int16)
    with pytest.raises(ValueError, match=r"path: must be on the same affine as like"):
        an.load_segmentation(moved, crop, labels=[1])
    with pytest.raises(ValueError, match=r"path: must be an existing NIfTI file"):
        an.load_segmentation(tmp_path / "nope.nii", crop)
    with pytest.raises(ValueError, match=r"labels/threshold"):
        an.load_segmentation(path, crop, labels=[1], threshold=0.5)


def test_load_segmentation_on_a_slice(tmp_path, crop):
    seg = np.zeros(crop.shape, np.int16)
    seg[5:9, 6:10, 4:8] = 2
    path = _write(tmp_path / "seg.nii.gz", seg, crop.affine, np.int16)
    s = an.axial_slice(crop, 6)
    np.testing.assert_array_equal(an.load_segmentation(path, s, labels=[2]), seg[:, :, 6] == 2)
    slab = save_mask(tmp_path / "slab.nii.gz", seg[:, :, 6] == 2, s)
    np.testing.assert_array_equal(an.load_segmentation(slab, s, labels=[1]), seg[:, :, 6] == 2)
    other = an.coarsen(s, 2)
    with pytest.raises(ValueError, match=r"path: must be a volume whose grid matches the 2D maps"):
        an.load_segmentation(path, other)


# --------------------------------------------------------------------------------------------- NIfTI output
def test_save_nifti_3d_round_trip_keeps_affine_and_header(tmp_path, mni2):
    u = np.linspace(0, 1, mni2.white.size).reshape(mni2.shape)
    img = nib.load(save_nifti(tmp_path / "out" / "u.nii.gz", u, mni2))
    np.testing.assert_allclose(img.affine, mni2.affine)
    assert img.get_data_dtype() == np.float32
    assert img.header.get_zooms() == pytest.approx((2.0, 2.0, 2.0))
    np.testing.assert_allclose(img.get_fdata(), u, atol=1e-7)
    stack = nib.load(save_nifti(tmp_path / "stack.nii.gz", np.stack([u, 1 - u], -1), mni2))
    assert stack.shape == mni2.shape + (2,)
    with pytest.raises(ValueError, match=r"array: must be shape"):
        save_nifti(tmp_path / "bad.nii.gz", u[:-1], mni2)


def test_save_nifti_2d_slice_overlays_parent(tmp_path, mni):
    s = an.coronal_slice(mni, 100)
    u = s.white.copy()
    img = nib.load(save_nifti(tmp_path / "slice.nii.gz", u, s))
    assert img.shape == (197, 1, 189)
    np.testing.assert_allclose(img.get_fdata()[:, 0, :], u, atol=1e-7)
    for i, j in [(0, 0), (50, 120)]:
        np.testing.assert_allclose(img.affine @ [i, 0, j, 1], np.r_[mni.grid_to_world([[i, 100, j]])[0], 1])
    m = nib.load(save_mask(tmp_path / "mask.nii", u > 0.5, s))
    assert m.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(m.get_fdata()[:, 0, :] > 0, u > 0.5)
