"""NeuralCPM N3 data: the variance ratio of a bipolar axis, the bipolar-axis generator, the data experiment."""

import json

import numpy as np
import pytest

from oncodyn.cpm.hamiltonians import Chemotaxis, Contact, ExternalPotential, Volume
from oncodyn.cpm.lattice import CPMState, Lattice
from oncodyn.cpm.sample_metrics import bipolar_ratio, mean_bipolar_ratio, principal_axis_field
from oncodyn.cpm.scenarios import bipolar_axis, bipolar_types

ANGLE = 0.5  # an axis off the lattice directions


def tiled_disc(radius=22, shape=(64, 64), side=3):
    """A disc of square ``side``-cells: sigma, each cell's projection on the axis, its area, its distance to the centre."""
    yy, xx = np.indices(shape)
    c = (np.array(shape) - 1) / 2
    inside = (yy - c[0]) ** 2 + (xx - c[1]) ** 2 <= radius ** 2
    tile = (yy // side) * (shape[1] // side + 1) + xx // side + 1
    _, sigma = np.unique(np.where(inside, tile, 0), return_inverse=True)
    sigma = sigma.reshape(shape).astype(np.int32)  # 0 stays the medium (smallest label)
    n = sigma.max()
    area = np.bincount(sigma.ravel(), minlength=n + 1)[1:]
    cy = np.bincount(sigma.ravel(), yy.ravel(), n + 1)[1:] / area
    cx = np.bincount(sigma.ravel(), xx.ravel(), n + 1)[1:] / area
    proj = (cy - c[0]) * np.sin(ANGLE) + (cx - c[1]) * np.cos(ANGLE)
    return sigma, proj, area, np.hypot(cy - c[0], cx - c[1])


def typed(sigma, is_two):
    return CPMState(Lattice(sigma.shape), sigma, np.concatenate([[0], np.where(is_two, 2, 1)]))


def end_quantiles(proj, area, frac):
    """Cells whose projections are in the top ``frac`` of the area (``hi``) and the bottom (``lo``)."""
    o = np.argsort(proj)
    cum = np.cumsum(area[o]) / area.sum()
    lo = np.zeros(len(proj), bool)
    hi = np.zeros(len(proj), bool)
    lo[o[cum <= frac]] = True
    hi[o[cum >= 1 - frac]] = True
    return lo, hi


def test_bipolar_ratio_two_poles_one_pole_random():
    sigma, proj, area, radial = tiled_disc()
    lo, hi = end_quantiles(proj, area, 0.25)
    two = typed(sigma, lo | hi)         # type 2 at both ends of the axis (continuum value 1.78)
    one = typed(sigma, hi)              # one cap of a quarter of the cluster (continuum 0.74)
    core = typed(sigma, radial < np.median(radial))
    assert bipolar_ratio(two) > 1.5
    assert bipolar_ratio(one) < 0.9
    assert bipolar_ratio(core) < 1.0
    rng = np.random.default_rng(0)
    for _ in range(5):
        rnd = typed(sigma, rng.permutation(len(proj)) < len(proj) // 2)
        assert abs(bipolar_ratio(rnd) - 1.0) < 0.3
    assert mean_bipolar_ratio([two, one]) == pytest.approx((bipolar_ratio(two) + bipolar_ratio(one)) / 2)
    assert np.isnan(bipolar_ratio(typed(sigma, np.zeros(len(proj), bool))))


def test_bipolar_ratio_ignores_the_periodic_wrap():
    sigma, proj, area, _ = tiled_disc()
    lo, hi = end_quantiles(proj, area, 0.25)
    st = typed(sigma, lo | hi)
    rolled = CPMState(st.lattice, np.roll(st.sigma, (32, 17), (0, 1)), st.cell_type)  # the cluster straddles both edges
    assert bipolar_ratio(rolled) == pytest.approx(bipolar_ratio(st), rel=1e-9)


def test_principal_axis_field_is_the_squared_axial_coordinate_and_wraps():
    sigma, proj, area, _ = tiled_disc()
    lo, hi = end_quantiles(proj, area, 0.25)
    st = typed(sigma, lo | hi)
    f = principal_axis_field(st)
    yy, xx = np.indices(sigma.shape)
    c = (np.array(sigma.shape) - 1) / 2
    r = np.sqrt((sigma > 0).sum() / np.pi)
    expect = (((yy - c[0]) * np.sin(ANGLE) + (xx - c[1]) * np.cos(ANGLE)) / r) ** 2
    inside = sigma > 0
    assert np.max(np.abs(f - expect)[inside]) < 0.05  # the type's axis is the poles' axis, up to the tiling
    assert 0.8 < f[inside].max() < 1.3 and f[inside].min() < 1e-3
    rolled = CPMState(st.lattice, np.roll(st.sigma, (32, 17), (0, 1)), st.cell_type)
    assert np.allclose(principal_axis_field(rolled), np.roll(f, (32, 17), (0, 1)))


def test_axial_force_forms_poles_that_contact_energy_alone_does_not():
    from oncodyn.experiments.cpm_bipolar_data import bipolar_start
    from oncodyn.experiments.cpm_bipolar_oracle import BipolarOracleConfig, contact_volume, run_axial_force

    cfg = BipolarOracleConfig(shape=[80, 80], n_cells=12)
    st = bipolar_start(cfg, 0, offset=50_000)[0]
    st = CPMState(Lattice(tuple(cfg.shape)), st.sigma, bipolar_types(st.cell_type))
    base = contact_volume(cfg)
    pulled = run_axial_force(st, base, 16.0, 300, 5.0, seed=1)
    free = run_axial_force(st, base, 0.0, 300, 5.0, seed=1)
    assert bipolar_ratio(pulled) > 1.4 and bipolar_ratio(pulled) > bipolar_ratio(free) + 0.2  # 1.56 against 1.16
    assert np.array_equal(np.bincount(pulled.cell_type), np.bincount(st.cell_type))


def test_bipolar_axis_hamiltonian_is_the_spec():
    st, ham = bipolar_axis(shape=(60, 60), n_cells=12, mu=2.0, seed=3)
    J = ham.term(Contact).J
    bio = [0, 1, 2, 2]  # generator types 2 and 3 are one biological type
    for a in range(4):
        for b in range(4):
            want = 0.0 if a == b == 0 else 16.0 if 0 in (a, b) or bio[a] != bio[b] else 6.0
            assert J[a, b] == want, (a, b)
    v = ham.term(Volume)
    assert np.all(v.target[1:] == 150.0) and np.all(v.lam[1:] == 1.0)
    t = st.cell_type[1:]
    assert (t == 1).sum() == 6 and (t == 2).sum() == 3 and (t == 3).sum() == 3
    assert set(bipolar_types(st.cell_type)[1:]) == {1, 2} and (bipolar_types(st.cell_type) == 2).sum() == 6
    # the pull is mu * |r - P±| on the sites of each group, poles opposite about the centre at 0.8 R
    p_plus, p_minus = st.meta["poles"]
    centre = np.array([29.5, 29.5])
    assert np.allclose((p_plus + p_minus) / 2, centre)
    assert np.linalg.norm(p_plus - centre) == pytest.approx(0.8 * np.sqrt(12 * 150 / np.pi))
    yy, xx = np.indices((60, 60))
    tm = st.types_map()

    def dist(p):
        return np.hypot(yy - p[0], xx - p[1])

    want = 2.0 * (dist(p_plus)[tm == 2].sum() + dist(p_minus)[tm == 3].sum())
    got = ham.term(ExternalPotential).energy(st) + ham.term(Chemotaxis).energy(st)
    assert got == pytest.approx(want)


def test_generation_pulls_the_groups_to_opposite_poles():
    from oncodyn.experiments.cpm_common import build_sampler

    st, ham = bipolar_axis(shape=(80, 80), n_cells=16, seed=1)
    p_plus, p_minus = st.meta["poles"]
    yy, xx = np.indices((80, 80))

    def pole_distances(s):
        tm = s.types_map()
        return (np.hypot(yy - p_plus[0], xx - p_plus[1])[tm == 2].mean(),
                np.hypot(yy - p_minus[0], xx - p_minus[1])[tm == 3].mean())

    def mapped(s):
        return CPMState(s.lattice, s.sigma.copy(), bipolar_types(s.cell_type))

    d0, r0 = pole_distances(st), bipolar_ratio(mapped(st))
    smp = build_sampler("classic", st, ham, seed=1)
    smp.sweep(1500)
    d1, r1 = pole_distances(smp.state), bipolar_ratio(mapped(smp.state))
    assert d1[0] < 0.6 * d0[0] and d1[1] < 0.6 * d0[1]
    assert r1 > r0 + 0.2


def test_bipolar_data_quick_run_and_resume(tmp_path):
    from oncodyn import cli

    out = tmp_path / "bip"
    assert cli.main(["run", "neuralcpm-bipolar-data", "--quick", "--quiet", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    for k in ("bipolar_ratio_data", "bipolar_ratio_start", "f_frag_data"):
        assert np.isfinite(m[k])
    assert m["bipolar_ratio_data"] > m["bipolar_ratio_start"]
    assert any("published" in c for c in m["tables"][0]["columns"])
    with np.load(out / "snapshots_bipolar.npz") as z:
        assert z["sigma"].shape == (6, 80, 80) and z["sigma_start"].shape == (6, 80, 80)
        assert z["cell_type"].shape == (6, 13)
        assert set(np.unique(z["cell_type"][:, 1:])) == {1, 2}
        assert np.all((z["cell_type"][:, 1:] == 2).sum(1) == 6)
    snap = out / "snapshots" / "bipolar" / "snap_0000.npz"
    stamp = snap.stat().st_mtime_ns
    assert cli.main(["run", "neuralcpm-bipolar-data", "--quick", "--quiet", "--out", str(out)]) == 0
    assert snap.stat().st_mtime_ns == stamp  # resumed: the snapshot was not regenerated
    assert json.loads((out / "metrics.json").read_text())["bipolar_ratio_data"] == m["bipolar_ratio_data"]
