"""PHKS metrics: W1 of clouds against bin densities (resolution floor, exact shifts), relative L2, mass."""

import numpy as np
import pytest

from oncodyn.chemotaxis.phks import BinGrid
from oncodyn.chemotaxis.phks_metrics import (
    binned_density,
    min_value,
    random_directions,
    relative_l2,
    sliced_w1,
    total_mass,
    w1_marginals,
)
from oncodyn.chemotaxis.phks_sipf import deposit


@pytest.mark.parametrize("dim", [2, 3])
def test_cloud_against_its_own_histogram_is_within_resolution(rng, dim):
    """Each particle is within h/2 per axis of its bin centre: W1 <= h/2 per marginal, sliced <= sqrt(d) h/2."""
    grid = BinGrid(20, 10.0, dim)
    x = rng.normal(5.0, 1.5, (5000, dim)).clip(0, 10)
    rho = binned_density(x, grid, 3.0)
    np.testing.assert_array_equal(rho, deposit(grid, x, 3.0))
    assert total_mass(rho, grid) == pytest.approx(3.0, rel=1e-13)
    w = w1_marginals(x, rho, grid)
    assert w.shape == (dim,) and np.all(w <= grid.h / 2)
    assert sliced_w1(x, rho, grid, n_directions=16) <= np.sqrt(dim) * grid.h / 2 <= grid.h


@pytest.mark.parametrize("dim", [2, 3])
def test_w1_of_a_shifted_density_is_the_shift(rng, dim):
    """Particles at bin centres (histogram exact); the density moved by k bins along axis 0 and
    one bin along the last: the marginal W1 are the shifts, the sliced W1 the mean of |theta . s|."""
    grid = BinGrid(16, 8.0, dim)
    idx = rng.integers(3, 12, (3000, dim))
    x = (idx + 0.5) * grid.h
    rho = deposit(grid, x, 1.0)
    np.testing.assert_allclose(w1_marginals(x, rho, grid, subdivide=1), 0.0, atol=1e-12)
    shifted = np.roll(np.roll(rho, 3, axis=0), -1, axis=dim - 1)  # no wrap: rho is 0 near the edges
    shift = np.zeros(dim)
    shift[0], shift[-1] = 3 * grid.h, -grid.h
    np.testing.assert_allclose(w1_marginals(x, shifted, grid, subdivide=1), np.abs(shift), atol=1e-12)
    expected = np.mean(np.abs(random_directions(dim, 32, seed=5) @ shift))
    assert sliced_w1(x, shifted, grid, n_directions=32, seed=5) == pytest.approx(expected, abs=1e-12)


def test_marginal_w1_reads_bins_as_uniform(rng):
    """A cloud uniform in its bins: W1 against its histogram is ~0 read as uniform bins (up to
    sampling, h/(4*16) representation), and h/4 read as point masses at the centres."""
    grid = BinGrid(8, 8.0, 2)
    idx = rng.integers(2, 6, (200_000, 2))
    x = idx + rng.random((200_000, 2))
    rho = deposit(grid, x, 1.0)
    assert np.all(w1_marginals(x, rho, grid) < grid.h / (4 * 16) + 0.003)  # representation + sampling
    assert np.all(w1_marginals(x, rho, grid, subdivide=64) < grid.h / (4 * 64) + 0.003)
    np.testing.assert_allclose(w1_marginals(x, rho, grid, subdivide=1), grid.h / 4, rtol=0.02)


def test_random_directions_are_unit_and_seeded():
    d = random_directions(3, 10, seed=1)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0)
    np.testing.assert_array_equal(d, random_directions(3, 10, seed=1))


def test_relative_l2_and_min_value():
    b = np.array([3.0, 4.0])
    assert relative_l2(b, b) == 0.0
    assert relative_l2(np.array([3.0, 5.0]), b) == pytest.approx(0.2)
    assert min_value(np.array([[1.0, -2.0], [0.5, 3.0]])) == -2.0
    with pytest.raises(ValueError, match="b_ref"):
        relative_l2(b, np.zeros(2))
    with pytest.raises(ValueError, match="shape"):
        relative_l2(b, np.ones(3))


def test_metric_shape_errors(rng):
    grid = BinGrid(8, 4.0, 2)
    with pytest.raises(ValueError, match="x"):
        w1_marginals(rng.uniform(0, 4, (10, 3)), np.ones(grid.shape), grid)
    with pytest.raises(ValueError, match="rho"):
        sliced_w1(rng.uniform(0, 4, (10, 2)), np.ones((8, 8, 8)), grid)
    with pytest.raises(ValueError, match="n_directions"):
        sliced_w1(rng.uniform(0, 4, (10, 2)), np.ones(grid.shape), grid, n_directions=0)
