"""Bin-field gradient interpolants: exactness, convergence, compiled == reference, the SciPy baseline, registry."""

import numpy as np
import pytest

from oncodyn.chemotaxis.interpolate import (
    INTERPOLATORS,
    Interpolator,
    LocalCubicInterpolator,
    SplineInterpolator,
    catmull_rom_gradient,
    catmull_rom_gradient_reference,
    catmull_rom_value,
    catmull_rom_value_reference,
    make_interpolator,
    register_interpolator,
    spline_gradient,
)
from oncodyn.chemotaxis.phks import BinGrid


def quadratic(X):
    """A quadratic with every tensor-product term up to degree 2 per axis, and its gradient."""
    d = X.shape[-1]
    x, y = X[..., 0], X[..., 1]
    f = 0.3 * x**2 + x * y - 0.7 * y**2 + 2.0 * x - y + 1.5
    g = [0.6 * x + y + 2.0, x - 1.4 * y - 1.0]
    if d == 3:
        z = X[..., 2]
        f = f + 0.25 * z**2 - x * z + 3.0 * z
        g[0] = g[0] - z
        g.append(0.5 * z - x + 3.0)
    return f, np.stack(g, axis=-1)


def interior_points(rng, grid, P):
    """Points whose 4^d stencils lie inside the bins (no mirrored index): [1.5h, L - 1.5h]^d."""
    return rng.uniform(1.5 * grid.h, grid.length - 1.5 * grid.h, (P, grid.dim))


@pytest.mark.parametrize("dim", [2, 3])
def test_linear_and_quadratic_fields_exact_away_from_walls(rng, dim):
    """Keys' cubic (a = -1/2) reproduces polynomials of degree <= 2 per axis: the gradient is exact."""
    grid = BinGrid(10, 7.0, dim)
    x = interior_points(rng, grid, 400)
    f, _ = quadratic(grid.centres())
    _, g_exact = quadratic(x)
    assert np.max(np.abs(catmull_rom_gradient(f, grid.h, x) - g_exact)) < 1e-10
    lin = grid.centres() @ np.arange(1.0, dim + 1)
    assert np.max(np.abs(catmull_rom_gradient(lin, grid.h, x) - np.arange(1.0, dim + 1))) < 1e-10
    assert np.max(np.abs(catmull_rom_value(f, grid.h, x) - quadratic(x)[0])) < 1e-10


@pytest.mark.parametrize("dim", [2, 3])
def test_interpolates_bin_centres_and_mirrors_at_walls(rng, dim):
    """Values at the centres are the data; on a wall the normal derivative vanishes (even mirror)."""
    grid = BinGrid(6, 3.0, dim)
    f = rng.standard_normal(grid.shape)
    c = grid.centres().reshape(-1, dim)
    assert np.max(np.abs(catmull_rom_value(f, grid.h, c) - f.ravel())) < 1e-13
    x = rng.uniform(0, grid.length, (50, dim))
    for a in range(dim):
        for wall in (0.0, grid.length):
            xw = x.copy()
            xw[:, a] = wall
            assert np.max(np.abs(catmull_rom_gradient(f, grid.h, xw)[:, a])) < 1e-12


@pytest.mark.parametrize("dim", [2, 3])
def test_gradient_converges_second_order(rng, dim):
    """Smooth field (zero normal derivative at the walls): max gradient error O(h^2), order >= 1.8."""
    L = 2.0
    x = rng.uniform(0, L, (2000, dim))
    k = np.pi / L * np.array([1.0, 2.0, 1.0][:dim])
    exact = np.stack([-k[a] * np.sin(k[a] * x[:, a]) * np.prod([np.cos(k[b] * x[:, b]) for b in range(dim) if b != a],
                                                                  axis=0) for a in range(dim)], axis=-1)
    errs, hs = [], []
    for n in ((16, 32, 64) if dim == 2 else (12, 24, 48)):
        grid = BinGrid(n, L, dim)
        f = np.prod([np.cos(k[a] * grid.centres()[..., a]) for a in range(dim)], axis=0)
        errs.append(np.max(np.abs(catmull_rom_gradient(f, grid.h, x) - exact)))
        hs.append(grid.h)
    order = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    assert order >= 1.8, (errs, order)


@pytest.mark.parametrize("dim", [2, 3])
def test_compiled_equals_reference(rng, dim):
    """The numba kernel and the numpy gather agree to 1e-12, walls and corners included."""
    grid = BinGrid(9, 4.5, dim)
    f = rng.standard_normal(grid.shape)
    x = rng.uniform(0, grid.length, (300, dim))
    x[:8] = rng.choice([0.0, grid.length], (8, dim))  # corners
    x[8:16, 0] = 0.0
    x[16:24, -1] = grid.length
    x[24:32] = grid.h * np.floor(x[24:32] / grid.h)  # bin edges
    x[32:40] = grid.h * (np.floor(x[32:40] / grid.h) + 0.5)  # bin centres
    assert np.max(np.abs(catmull_rom_gradient(f, grid.h, x) - catmull_rom_gradient_reference(f, grid.h, x))) < 1e-12
    assert np.max(np.abs(catmull_rom_value(f, grid.h, x) - catmull_rom_value_reference(f, grid.h, x))) < 1e-12


@pytest.mark.parametrize("dim", [2, 3])
def test_spline_gradient_matches_analytic(rng, dim):
    """The published SciPy path: accurate on a smooth field (3D: RGI's iterative solve limits it to ~1e-3)."""
    n, L = 16, 8.0
    grid = BinGrid(n, L, dim)
    s = 1.5
    f_of = lambda X: np.exp(-np.sum((X - L / 2) ** 2, axis=-1) / (2 * s**2))
    x = rng.uniform(grid.h, L - grid.h, (200, dim))
    exact = -(x - L / 2) / s**2 * f_of(x)[:, None]
    g = spline_gradient(f_of(grid.centres()), grid.h, x)
    assert g.shape == (200, dim)
    assert np.max(np.abs(g - exact)) < (5e-3 if dim == 2 else 1e-2) * np.max(np.abs(exact))
    # the local cubic is comparably accurate at this resolution
    lc = catmull_rom_gradient(f_of(grid.centres()), grid.h, x)
    assert np.max(np.abs(lc - exact)) < 5e-2 * np.max(np.abs(exact))


def test_registry_and_protocol():
    assert isinstance(make_interpolator("spline"), SplineInterpolator)
    assert isinstance(make_interpolator("local-cubic"), LocalCubicInterpolator)
    assert all(isinstance(make_interpolator(k), Interpolator) for k in ("spline", "local-cubic"))
    with pytest.raises(ValueError, match="local-cubic"):
        make_interpolator("nope")

    class Zero:
        name = "zero-test"

        def __init__(self, scale=1.0):
            self.scale = scale

        def gradient(self, field, h, x):
            return np.zeros_like(x)

    try:
        register_interpolator("zero-test", Zero)
        register_interpolator("zero-test", Zero)  # idempotent
        with pytest.raises(ValueError, match="already registered"):
            register_interpolator("zero-test", lambda: Zero())
        z = make_interpolator("zero-test", scale=2.0)
        assert z.scale == 2.0 and z.gradient(np.zeros((4, 4)), 1.0, np.ones((3, 2))).shape == (3, 2)
    finally:
        INTERPOLATORS.pop("zero-test", None)


def test_shape_errors():
    with pytest.raises(ValueError, match="x: must have shape"):
        catmull_rom_gradient(np.zeros((5, 5)), 1.0, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="field"):
        catmull_rom_gradient(np.zeros((5, 6)), 1.0, np.zeros((3, 2)))
