"""Scenarios: the six sorting regimes reach end states that the observables tell apart, and
Graner–Glazier sorting lowers the heterotypic boundary fraction."""

import numpy as np
import pytest

from oncodyn.cpm.observables import heterotypic_fraction
from oncodyn.cpm.samplers import MetropolisSampler
from oncodyn.cpm.scenarios import REGIMES, classify_regime, graner_glazier, neuralcpm_sorting, regime_features, sorting_regime


@pytest.mark.parametrize("name", list(REGIMES))
def test_regime_reaches_its_end_state(name):
    """Reduced size (60×60, 40 cells of area 30, 30,000 MCS, classic kinetics, seed 0)."""
    state, ham = sorting_regime(name, shape=(60, 60), n_cells=40, target=30, seed=0)
    smp = MetropolisSampler(state, ham, seed=0, hastings=False)
    smp.sweep(30000)
    f = regime_features(smp.state)
    assert classify_regime(f) == name, f


def test_classifier_rules_are_distinct():
    base = {"heterotypic_fraction": 0.3, "medium_contact_t1": 0.2, "medium_contact_t2": 0.1, "surface_share_t2": 0.3,
            "n_fragmented": 0}
    assert classify_regime({**base, "heterotypic_fraction": 0.7}) == "checkerboard"
    assert classify_regime({**base, "medium_contact_t1": 0.8}) == "dispersal 2"
    assert classify_regime({**base, "medium_contact_t1": 0.0}) == "reversal"
    assert classify_regime({**base, "medium_contact_t2": 0.0}) == "dispersal 1"
    assert classify_regime({**base, "heterotypic_fraction": 0.15, "surface_share_t2": 0.6}) == "separation"
    assert classify_regime(base) == "engulfment"


def test_graner_glazier_sorts():
    state, ham = graner_glazier(shape=(50, 50), n_cells=40, seed=1)
    h0 = heterotypic_fraction(state, order=1)
    smp = MetropolisSampler(state, ham, seed=1, hastings=False)
    smp.sweep(16 * 50)  # 50 paper MCS
    assert 0.4 < h0 < 0.6  # a random 50/50 mix
    assert heterotypic_fraction(smp.state, order=1) < h0 - 0.08
    vol = smp.state.volumes()[1:]
    assert abs(vol.mean() - 40) < 5  # cells keep their target area


def test_unknown_names_are_rejected():
    with pytest.raises(ValueError, match="regime must be one of"):
        sorting_regime("sorted", shape=(40, 40), n_cells=10)
    with pytest.raises(ValueError, match="'A' or 'B'"):
        neuralcpm_sorting("C", shape=(40, 40), n_cells=4, target=50)


def test_neuralcpm_setting():
    state, ham = neuralcpm_sorting("B", seed=0)
    assert state.lattice.shape == (200, 200) and state.n_cells == 100
    assert np.bincount(state.cell_type[1:]).tolist() == [0, 50, 50]
    assert ham.temperature == 1.0


def test_cellular_digit_draws_type2_onto_the_digit():
    from sklearn.datasets import load_digits

    from oncodyn.cpm.scenarios import cellular_digit, digit_potential

    img = load_digits().images[0]  # a zero
    phi = digit_potential(img, (100, 100))
    assert phi.min() == 0 and phi.max() > 5
    state, ham = cellular_digit(img, seed=0)
    smp = MetropolisSampler(state, ham, seed=0, hastings=False)
    t2 = state.types_map() == 2
    d0 = phi[t2].mean()
    smp.sweep(500)
    d1 = phi[smp.state.types_map() == 2].mean()
    assert d1 < 0.6 * d0  # type-2 sites move onto the digit
    with pytest.raises(ValueError, match="too small"):
        digit_potential(img, (12, 12))
