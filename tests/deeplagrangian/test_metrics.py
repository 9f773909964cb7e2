"""Sample-set distances: sliced W2 against its closed form for shifted Gaussians, energy distance."""

import math

import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from oncodyn.deeplagrangian.metrics import centre_of_mass, energy_distance, sliced_wasserstein


@pytest.mark.parametrize("dim", [2, 3])
def test_sliced_w2_of_a_shift(rng, dim):
    """N(0, I) vs N(m, I): SW2^2 = E_theta (m . theta)^2 = |m|^2 / d. The sample error (~1/sqrt(N) per
    direction, N = 8e3, 6e3) and the direction average (400 directions, ~2 %) stay below 6 %."""
    m = np.array([1.0, -0.5, 0.8][:dim])
    a = rng.standard_normal((8000, dim))
    b = m + rng.standard_normal((6000, dim))
    sw = sliced_wasserstein(a, b, n_projections=400, rng=rng)
    assert sw == pytest.approx(np.linalg.norm(m) / math.sqrt(dim), rel=0.06)
    same = sliced_wasserstein(a, rng.standard_normal((6000, dim)), rng=rng)
    assert same < 0.05 * sw


def test_sliced_w2_exact_1d_quantile_matching(rng):
    """In 1D (theta = +-1) it is the exact W2 of the empirical measures, also for N != M."""
    a, b = rng.standard_normal((7, 1)), rng.standard_normal((5, 1)) + 0.3
    # W2^2 = int_0^1 |F^-1(u) - G^-1(u)|^2 du, by brute force on a fine grid of u
    u = (np.arange(350_000) + 0.5) / 350_000
    qa, qb = np.sort(a[:, 0])[(u * 7).astype(int)], np.sort(b[:, 0])[(u * 5).astype(int)]
    assert sliced_wasserstein(a, b, n_projections=3, rng=rng) == pytest.approx(math.sqrt(np.mean((qa - qb) ** 2)))
    # a pure shift: W2 = W1 = the shift (scipy computes W1)
    c = rng.standard_normal((100, 1))
    assert sliced_wasserstein(c, c + 0.4, n_projections=2) == pytest.approx(0.4)
    assert wasserstein_distance(c[:, 0], c[:, 0] + 0.4) == pytest.approx(0.4)


def test_energy_distance(rng):
    a = rng.standard_normal((3000, 2))
    same = energy_distance(a, rng.standard_normal((2500, 2)), rng=rng)
    shifted = energy_distance(a, rng.standard_normal((2500, 2)) + [0.5, 0.0], rng=rng)
    assert 0.0 <= same < 0.01  # the V-statistic bias ~ E|X - X'| (1/N + 1/M) ~ 1.8 x 7e-4
    assert shifted > 10 * same and shifted > 0.05
    assert energy_distance(a, a) == pytest.approx(0.0, abs=1e-12)
    # subsampling: both sets larger than max_samples give the same value up to sampling error
    big = rng.standard_normal((9000, 2)) + [0.5, 0.0]
    assert energy_distance(a, big, max_samples=2000, rng=rng) == pytest.approx(shifted, rel=0.3)


def test_centre_of_mass(rng):
    x = rng.standard_normal((10, 3))
    assert np.allclose(centre_of_mass(x), x.mean(0))


def test_shape_checks(rng):
    with pytest.raises(ValueError, match="a, b"):
        sliced_wasserstein(rng.standard_normal((5, 2)), rng.standard_normal((5, 3)))
    with pytest.raises(ValueError, match="a, b"):
        energy_distance(rng.standard_normal(5), rng.standard_normal((5, 1)))
