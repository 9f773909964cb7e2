"""CPM observables on hand-built lattices with known answers, and brute-force references."""

import itertools

import numpy as np
import pytest
from scipy import ndimage

from oncodyn.cpm import observables as ob
from oncodyn.cpm.lattice import CPMState, Lattice, neighbour_offsets


def _state(sigma, types, periodic=True):
    sigma = np.asarray(sigma, np.int32)
    return CPMState(Lattice(sigma.shape, periodic), sigma, np.asarray(types, np.int32))


def _two_squares(periodic=True):
    """6×6 lattice: cell 1 (type 1) at rows 1-2, cols 1-2; cell 2 (type 2) at rows 1-2, cols 3-4."""
    s = np.zeros((6, 6), np.int32)
    s[1:3, 1:3] = 1
    s[1:3, 3:5] = 2
    return _state(s, [0, 1, 2], periodic)


def _brute(state, order):
    """Reference by explicit loops over sites: the set of unordered neighbour pairs with differing
    ids (a pair with the outside of a walled lattice is (site, offset) and the wall is id 0),
    counted into a type matrix and per-id perimeters."""
    lat, sigma, ct = state.lattice, state.sigma, state.cell_type
    off = neighbour_offsets(lat.ndim, order)
    pairs = {}
    for x in itertools.product(*[range(n) for n in lat.shape]):
        for d in off:
            y = np.array(x) + d
            if lat.periodic:
                y = tuple(int(k) for k in y % lat.shape)
            elif np.all((y >= 0) & (y < lat.shape)):
                y = tuple(int(k) for k in y)
            else:
                pairs[(x, "wall", tuple(d))] = (sigma[x], 0)
                continue
            pairs[(min(x, y), max(x, y))] = (sigma[x], sigma[y])
    nt = int(ct.max()) + 1
    B = np.zeros((nt, nt), np.int64)
    per = np.zeros(len(ct), np.int64)
    for a, b in pairs.values():
        if a == b:
            continue
        s, t = ct[a], ct[b]
        B[s, t] += 1
        if s != t:
            B[t, s] += 1
        per[a] += 1
        per[b] += 1
    return B, per


@pytest.mark.parametrize("shape", [(7, 8), (5, 6, 7)])
@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize("order", [1, 2])
def test_boundary_matches_brute_force(rng, shape, periodic, order):
    sigma = rng.integers(0, 6, size=shape)
    sigma[(0,) * len(shape)] = 0
    st = _state(sigma, [0, 1, 2, 1, 2, 3], periodic)
    B = ob.boundary_by_type(st, order)
    Bref, per_ref = _brute(st, order)
    assert np.array_equal(B, B.T)
    assert np.array_equal(B, Bref)
    assert np.array_equal(ob.perimeters(st, order), per_ref)
    # every boundary pair is in exactly one entry of the upper triangle
    assert np.triu(B).sum() == per_ref.sum() // 2


def test_perimeters_two_squares():
    st = _two_squares()
    # order 1: each 2x2 square has 8 outward face bonds, 2 of them shared with the other cell
    p1 = ob.perimeters(st, 1)
    assert list(p1[1:]) == [8, 8]
    # order 2: a 2x2 square has 8 face + 12 diagonal outward bonds = 20 (corner site: 5 outside,
    # 4 corners -> 20); every one leaves the cell
    p2 = ob.perimeters(st, 2)
    assert list(p2[1:]) == [20, 20]
    B1 = ob.boundary_by_type(st, 1)
    assert B1[1, 2] == 2 and B1[0, 1] == 6 and B1[0, 2] == 6 and B1[1, 1] == 0
    B2 = ob.boundary_by_type(st, 2)
    assert B2[1, 2] == 2 + 2  # 2 faces and 2 diagonals across the shared edge
    assert B2[0, 1] == 20 - 4
    assert p1[0] == 12 and p2[0] == 32


def test_walled_perimeter_counts_wall():
    s = np.zeros((4, 4), np.int32)
    s[0, 0] = 1
    st = _state(s, [0, 1], periodic=False)
    # order 1: 2 neighbours inside (medium), 2 outside (wall)
    assert ob.perimeters(st, 1)[1] == 4
    assert ob.boundary_by_type(st, 1)[0, 1] == 4
    assert ob.perimeters(st, 2)[1] == 8


def test_heterotypic_checkerboard_and_halves():
    n = 8
    ids = np.arange(1, n * n + 1).reshape(n, n)
    parity = (np.indices((n, n)).sum(0) % 2) + 1
    types = np.concatenate([[0], parity.ravel()])
    st = _state(ids, types)
    assert ob.heterotypic_fraction(st, 1) == pytest.approx(1.0)
    assert ob.heterotypic_fraction(st, 2) == pytest.approx(0.5)  # diagonal neighbours share the type
    assert ob.sorting_index(st, 1) == pytest.approx(0.0)
    # two halves: left type 1, right type 2, one-site cells
    halves = np.where(np.arange(n)[None, :] < n // 2, 1, 2) * np.ones((n, 1), int)
    st2 = _state(ids, np.concatenate([[0], halves.ravel()]))
    # order 1 periodic: 2 vertical interfaces of n bonds out of 2 n^2 bonds
    assert ob.heterotypic_fraction(st2, 1) == pytest.approx(2 * n / (2 * n * n))
    assert ob.sorting_index(st2, 1) > 0.8
    # with medium included, the denominator grows
    s = ids.copy()
    s[0] = 0
    st3 = _state(s, types)
    assert ob.heterotypic_fraction(st3, 1, include_medium=True) < ob.heterotypic_fraction(st3, 1)


def test_sorting_index_random_mix(rng):
    n = 40
    ids = np.arange(1, n * n + 1).reshape(n, n)
    types = np.concatenate([[0], rng.integers(1, 3, n * n)])
    st = _state(ids, types)
    assert abs(ob.sorting_index(st) - 0.5) < 0.05
    assert abs(ob.heterotypic_fraction(st) - 0.5) < 0.05


def test_components_split_and_wrap():
    s = np.zeros((6, 6), np.int32)
    s[1, 1] = 1
    s[3, 3] = 1  # cell 1 in two pieces
    s[4, 0] = 2
    s[4, 5] = 2  # cell 2 touches both edges of row 4
    s[0, 4] = 3
    s[1, 5] = 3  # cell 3 touches only diagonally
    for periodic, c2 in [(True, 1), (False, 2)]:
        st = _state(s, [0, 1, 1, 2], periodic)
        comp = ob.components_per_cell(st)
        assert comp[1] == 2 and comp[2] == c2 and comp[3] == 2
        assert ob.components_per_cell(st, 2)[3] == 1
        assert ob.fragmented_cells(st) == (2 if periodic else 3)


def test_components_match_ndimage(rng):
    sigma = rng.integers(0, 4, size=(15, 17))
    st = _state(sigma, [0, 1, 2, 1], periodic=False)
    comp = ob.components_per_cell(st)
    for i in range(4):
        assert comp[i] == ndimage.label(sigma == i)[1]
    sigma3 = rng.integers(0, 3, size=(6, 7, 8))
    st3 = _state(sigma3, [0, 1, 2], periodic=False)
    comp3 = ob.components_per_cell(st3)
    for i in range(3):
        assert comp3[i] == ndimage.label(sigma3 == i)[1]


def test_type_clusters():
    s = np.zeros((8, 8), np.int32)
    s[1:3, 1:3] = 1
    s[1:3, 3:5] = 2  # touching type-1 cells 1 and 2: one cluster
    s[5:7, 5:7] = 3  # a separate type-1 cell
    s[5:7, 0:2] = 4  # type 2
    st = _state(s, [0, 1, 1, 1, 2])
    cl = ob.type_clusters(st)
    assert cl[1] == 2 and cl[2] == 1
    summ = ob.summary(st)
    assert summ["n_clusters_t1"] == 2 and summ["n_clusters_t2"] == 1


def test_centres_of_mass_periodic_straddle():
    s = np.zeros((10, 12), np.int32)
    s[4:6, [11, 0, 1]] = 1  # columns 11, 0, 1 -> centre column 0
    s[[9, 0], 3:5] = 2  # rows 9, 0 -> centre row 9.5
    s[2:4, 6:9] = 3  # ordinary: (2.5, 7)
    st = _state(s, [0, 1, 1, 2])
    c = ob.centres_of_mass(st)
    assert np.all(np.isnan(c[0]))
    assert c[1] == pytest.approx([4.5, 0.0], abs=1e-9) or c[1] == pytest.approx([4.5, 12.0], abs=1e-9)
    assert c[2] == pytest.approx([9.5, 3.5])
    assert c[3] == pytest.approx([2.5, 7.0])
    cw = ob.centres_of_mass(_state(s, [0, 1, 1, 2], periodic=False))
    assert cw[1] == pytest.approx([4.5, 4.0])  # plain mean of columns 11, 0, 1


def test_centres_of_mass_asymmetric_periodic(rng):
    # an asymmetric cell crossing the wrap: the centre equals the arithmetic mean of its
    # unwrapped sites
    s = np.zeros((20, 20), np.int32)
    rows = np.array([0, 0, 0, 1, 19, 19, 18])
    cols = np.array([18, 19, 0, 0, 0, 1, 1])
    s[rows, cols] = 1
    st = _state(s, [0, 1])
    c = ob.centres_of_mass(st)[1]
    ur = np.where(rows > 10, rows - 20, rows).mean() % 20
    uc = np.where(cols > 10, cols - 20, cols).mean() % 20
    assert c == pytest.approx([ur, uc])


def test_msd_translation():
    T = 6
    v = np.array([1.5, -2.0])
    c0 = np.array([[np.nan, np.nan], [1.0, 1.0], [5.0, 7.0], [9.0, 2.0]])
    series = np.stack([c0 + t * v for t in range(T)])
    series[:, 0] = np.nan
    m = ob.msd(series)
    assert m == pytest.approx((np.arange(T) * np.linalg.norm(v)) ** 2)
    # periodic: the same motion wrapped into [0, L)
    L = (10, 10)
    wrapped = series.copy()
    wrapped[:, 1:] %= 10
    assert ob.msd(wrapped, shape=L, periodic=True) == pytest.approx(m)
    assert ob.msd(wrapped)[-1] != pytest.approx(m[-1])


def test_msd_of_moving_cells_via_centres():
    frames = []
    for t in range(5):
        s = np.zeros((12, 12), np.int32)
        s[np.ix_((np.arange(2) + 3 * t) % 12, [2, 3])] = 1
        frames.append(ob.centres_of_mass(_state(s, [0, 1])))
    m = ob.msd(np.stack(frames), shape=(12, 12), periodic=True)
    assert m == pytest.approx((3.0 * np.arange(5)) ** 2)


def test_summary_keys_and_values():
    st = _two_squares()
    s = ob.summary(st)
    for k in ["heterotypic_fraction", "sorting_index", "mean_volume", "std_volume", "mean_perimeter",
              "n_fragmented", "medium_contact_t1", "medium_contact_t2", "n_clusters_t1", "n_clusters_t2"]:
        assert k in s and isinstance(s[k], float)
    assert s["heterotypic_fraction"] == 1.0
    assert s["mean_volume"] == 4.0 and s["std_volume"] == 0.0
    assert s["mean_perimeter"] == 20.0
    assert s["medium_contact_t1"] == pytest.approx(16 / 20)
    assert s["n_fragmented"] == 0.0
    assert ob.volumes(st).tolist() == [28, 4, 4]


def test_3d_summary_runs(rng):
    from oncodyn.cpm.lattice import voronoi_blob

    st = voronoi_blob(Lattice((16, 16, 16), True), 20, 80, rng)
    s = ob.summary(st)
    assert 0 <= s["heterotypic_fraction"] <= 1
    assert ob.centres_of_mass(st).shape == (21, 3)
    assert ob.components_per_cell(st)[1:].min() >= 1


# ----------------------------------------------------------------------------- figures


def _checker_state():
    s = np.zeros((20, 24), np.int32)
    s[2:8, 2:8] = 1
    s[2:8, 8:14] = 2
    s[10:16, 5:11] = 3
    return s, np.array([0, 1, 2, 1])


def test_lattice_image():
    from oncodyn.viz.cpm import lattice_image

    s, ct = _checker_state()
    img = lattice_image(s, ct)
    assert img.shape == (20, 24, 3)
    assert np.all(img[0, 0] == 1.0)  # medium white
    assert not np.allclose(img[4, 4], img[4, 10])  # the two types differ
    assert img[2, 2].sum() < img[4, 4].sum()  # border darker than interior
    plain = lattice_image(s, ct, borders=False)
    assert np.allclose(plain[2, 2], plain[4, 4])


def test_figures_write_files(tmp_path, rng):
    from oncodyn.viz.cpm import animation, lattice_figure, observables_figure

    s, ct = _checker_state()
    s3 = rng.integers(0, 4, size=(6, 8, 10))
    p = lattice_figure(tmp_path / "lat.png", {"a": (s, ct), "b": (s.T.copy(), ct)}, title="t")
    assert p.exists() and p.stat().st_size > 0
    p = lattice_figure(tmp_path / "lat3.png", {"3d": (s3, ct), "2d": _state(s, ct)})
    assert p.exists() and p.stat().st_size > 0
    frames = [(np.roll(s, k, axis=1), ct) for k in range(4)]
    a = animation(tmp_path / "anim.gif", frames, times=[0, 10, 20, 30], fps=4)
    assert a.exists() and a.stat().st_size > 0
    a2 = animation(tmp_path / "anim.mp4", [(s3, ct)] * 2)
    assert a2.exists() and a2.suffix in (".mp4", ".gif")
    t = np.arange(10.0) + 1
    series = {"heterotypic": {"J=2": rng.random((3, 10)), "J=4": rng.random(10)},
              "clusters": {"x": np.linspace(1, 2, 10)}}
    p = observables_figure(tmp_path / "obs.png", t, series, logx=True)
    assert p.exists() and p.stat().st_size > 0


def test_from_image_reads_colour_patches(tmp_path):
    from PIL import Image

    from oncodyn.cpm.lattice import from_array, from_image

    img = np.full((12, 16, 3), 255, np.uint8)
    img[1:5, 1:5] = (40, 60, 120)     # type 1, one cell
    img[7:11, 1:5] = (40, 60, 120)    # type 1, another cell
    img[2:9, 8:14] = (240, 150, 40)   # type 2
    Image.fromarray(img).save(tmp_path / "cells.png")
    st = from_image(tmp_path / "cells.png")
    assert st.n_cells == 3 and st.lattice.shape == (12, 16)
    assert sorted(st.cell_type[1:].tolist()) == [1, 1, 2]
    assert sorted(st.volumes()[1:].tolist()) == [16, 16, 42]
    again = from_array(st.sigma * 7, {7 * i: int(t) for i, t in enumerate(st.cell_type)})
    assert np.array_equal(again.sigma, st.sigma)
