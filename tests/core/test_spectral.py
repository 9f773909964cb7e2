"""Spectral pieces against direct sums and analytic results."""

import numpy as np
import pytest

from oncodyn.core.grid import FourierGrid
from oncodyn.core.spectral import NUFFT, direct_type1, direct_type2, evaluate_on_grid, grid_axis


@pytest.mark.parametrize("dim", [2, 3])
def test_nufft_matches_direct_sums(rng, dim):
    g = FourierGrid(12, 8.0, dim)
    x = rng.uniform(-4, 4, (300, dim))
    w = rng.standard_normal(300)
    nu = NUFFT(g, eps=1e-12, n_trans2=2)
    f_fast, f_ref = nu.type1(x, w), direct_type1(g, x, w)
    # requested tolerance 1e-12 relative to sum |w|: allow 1e-9 of the largest coefficient
    assert np.max(np.abs(f_fast - f_ref)) < 1e-9 * np.max(np.abs(f_ref))
    a = rng.standard_normal((2,) + g.shape) + 1j * rng.standard_normal((2,) + g.shape)
    v_fast, v_ref = nu.type2(x, a), direct_type2(g, x, a)
    assert v_fast.shape == (2, 300)
    assert np.max(np.abs(v_fast - v_ref)) < 1e-9 * np.max(np.abs(v_ref))


def test_rho_hat_of_gaussian_cloud(rng):
    """(1/P) sum_p exp(-i w.x_p) of N(0, s^2 I) samples -> exp(-s^2 |w|^2 / 2)."""
    g = FourierGrid(16, 8.0, 3)
    P, s = 200_000, 0.4
    x = s * rng.standard_normal((P, 3))
    f = NUFFT(g, eps=1e-10).type1(x, np.full(P, 1.0 / P))
    exact = np.exp(-0.5 * s**2 * g.omega_squared)
    # Monte Carlo error per mode has standard deviation <= 1/sqrt(P); 6 sigma bound over all modes
    assert np.max(np.abs(f - exact)) < 6.0 / np.sqrt(P)
    assert f[g.zero_index] == pytest.approx(1.0, abs=1e-12)


def test_evaluate_on_grid_matches_pointwise_series(rng):
    g = FourierGrid(10, 8.0, 3)
    a = rng.standard_normal(g.shape) + 1j * rng.standard_normal(g.shape)
    N = 16
    vals = evaluate_on_grid(g, a, N)
    ax = grid_axis(g, N)
    pts = np.array([[ax[1], ax[5], ax[15]], [ax[0], ax[0], ax[8]]])
    ref = np.real(direct_type2(g, pts, a))
    assert np.allclose([vals[1, 5, 15], vals[0, 0, 8]], ref, rtol=1e-12, atol=1e-12)


def test_grid_validation():
    with pytest.raises(ValueError, match="n_modes"):
        FourierGrid(7, 8.0, 3)
    with pytest.raises(ValueError, match="length"):
        FourierGrid(8, -1.0, 3)


def test_torch_direct_backend_matches_finufft(rng):
    """The CUDA fallback (dense torch sums) gives the same transforms; checked on the CPU device."""
    from oncodyn.core.spectral import TorchDirectNUFFT

    g = FourierGrid(8, 8.0, 3)
    x = rng.uniform(-4, 4, (200, 3))
    w = rng.standard_normal(200)
    a = rng.standard_normal((3,) + g.shape) + 0j
    fast, dense = NUFFT(g, eps=1e-12, n_trans2=3), TorchDirectNUFFT(g, device="cpu", chunk=64)
    assert np.allclose(dense.type1(x, w), fast.type1(x, w), atol=1e-9)
    assert np.allclose(dense.type2(x, a), fast.type2(x, a), atol=1e-9)
