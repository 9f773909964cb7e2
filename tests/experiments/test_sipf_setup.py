"""The SIPF experiments run the configuration they are given: the initial ball of ``radius0`` (in the
particles and in the radial reference), and the published value only beside the published problem."""

from __future__ import annotations

import json

import pytest

from oncodyn import cli
from oncodyn.config import load_config
from oncodyn.experiments import sipf_blowup
from oncodyn.experiments.sipf_blowup import CriticalMassConfig, published_critical_mass


def _focusing_m2_at_t0(out, radius0: float) -> float:
    assert cli.main(["run", "sipf-focusing", "--quick", "--quiet", "--out", str(out), "--set", "masses=[20]",
                     "--set", "modes=[8]", "--set", f"radius0={radius0}"]) == 0
    import xarray as xr

    with xr.open_dataset(out / "series.nc") as ds:
        return float(ds.second_moment.sel(mass=20.0, H=8).values[0])


def test_focusing_starts_from_the_ball_of_radius0(tmp_path):
    """m2(0) = M0 (3/5) r0^2 for P uniform points in the 3D ball of radius r0.

    With P = 500 the sample mean of |x|^2/r0^2 (variance 12/175) has a standard error of 1.2%,
    so 8% is over 6 standard errors; the two radii differ by a factor 4 in m2(0).
    """
    m_half, m_one = (_focusing_m2_at_t0(tmp_path / f"r{r}", r) for r in (0.5, 1.0))
    assert m_half == pytest.approx(20 * 0.6 * 0.25, rel=0.08)
    assert m_one == pytest.approx(20 * 0.6 * 1.0, rel=0.08)


def test_published_critical_mass_only_for_the_published_problem():
    assert published_critical_mass(CriticalMassConfig()) == (47.6, 47.8)
    assert published_critical_mass(CriticalMassConfig(variant="exact", n_particles=2000, dt=5e-5)) == (47.6, 47.8)
    assert published_critical_mass(CriticalMassConfig(radius0=0.8)) is None
    assert published_critical_mass(load_config(CriticalMassConfig, preset="quick")) is None  # T = 0.05, H = 12/6


def test_critical_mass_radial_reference_uses_radius0(tmp_path, monkeypatch):
    """--quick with radius0 = 0.8: the radial reference starts from that ball (it used to start from the unit
    ball, whatever radius0 said), and the report prints no published interval beside this setting."""
    from oncodyn.chemotaxis import radial

    seen = []
    real = radial.instability_threshold

    def spy(params, options, *a, **k):
        seen.append(options.r0)
        return real(params, options, *a, **k)

    monkeypatch.setattr(radial, "instability_threshold", spy)
    out = tmp_path / "s6"
    assert cli.main(["run", "sipf-critical-mass", "--quick", "--quiet", "--out", str(out), "--set", "radius0=0.8"]) == 0
    assert seen == [0.8]
    m = json.loads((out / "metrics.json").read_text())
    assert "interval" in m["radial"], m["radial"]
    assert m["radial"]["r0"] == 0.8
    # the denser ball turns unstable at a lower mass than the unit ball at the same size
    cfg = load_config(CriticalMassConfig, preset="quick")
    unit = real(cfg.params(cfg.mass_upper), radial.RadialOptions(r_max=sipf_blowup.RADIAL_R_MAX, n_r=cfg.radial_cells,
                dt=cfg.radial_dt, t_end=cfg.t_end, grid="graded", r0=1.0), cfg.mass_lower, cfg.mass_upper, cfg.radial_tol)
    assert m["radial"]["interval"][1] < unit.m_lo
    assert m["published"] is None and m["overlaps_published_3pct"] is None
    rows = m["tables"][0]["rows"]
    assert all(r[1] == "no published value for this configuration" for r in rows)
    report = (out / "report.md").read_text()
    assert "47.6" not in report and "no published value for this configuration" in report


def test_radius0_beyond_the_radial_domain_is_a_config_error():
    from oncodyn.config import ConfigError

    with pytest.raises(ConfigError, match=r"  - radius0: must be < 20"):
        load_config(CriticalMassConfig, sets=["radius0=25"])
