"""The mollified Newtonian pair sum: compiled = torch, Newton's third law, the delta -> 0 limit."""

import math

import numpy as np
import pytest
import torch

from oncodyn.chemotaxis import interaction
from oncodyn.chemotaxis.interaction import grad_newton_mollified, mollified_newton_grad_sum


def _rel(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("delta", [0.0, 0.05])
def test_compiled_matches_torch(rng, dim, delta):
    x = rng.standard_normal((700, dim))
    a = mollified_newton_grad_sum(x, delta, 1 / 700, method="compiled")
    b = mollified_newton_grad_sum(x, delta, 1 / 700, method="torch", chunk=64)
    assert a.shape == (700, dim)
    assert _rel(a, b) < 1e-10
    assert np.array_equal(mollified_newton_grad_sum(x, delta, 1 / 700), a)  # auto = compiled on the CPU


@pytest.mark.parametrize("dim", [2, 3])
def test_torch_formula_is_the_kernel(rng, dim):
    x = rng.standard_normal((40, dim))
    delta = 0.3
    diff = x[:, None, :] - x[None, :, :]
    s = np.sum(diff**2, -1) + delta**2
    omega = 2 * math.pi if dim == 2 else 4 * math.pi
    ref = 0.5 * np.sum(diff / (omega * s[..., None] ** (dim / 2)), axis=1)
    assert _rel(mollified_newton_grad_sum(x, delta, 0.5, method="torch"), ref) < 1e-13
    assert _rel(mollified_newton_grad_sum(x, delta, 0.5, method="compiled"), ref) < 1e-12


@pytest.mark.parametrize("method", ["compiled", "torch"])
@pytest.mark.parametrize("dim", [2, 3])
def test_forces_sum_to_zero(rng, method, dim):
    """Pair terms are antisymmetric: sum_p F_p = 0 to round-off (Newton's third law)."""
    x = rng.standard_normal((1000, dim)) * np.array([1.0, 0.3, 2.0][:dim]) + 0.7
    f = mollified_newton_grad_sum(x, 0.02, 1.0, method=method)
    assert np.max(np.abs(f.sum(axis=0))) < 1e-13 * np.abs(f).sum()


def test_small_delta_approaches_singular_2d_kernel(rng):
    """For points at least 0.1 apart, |K_delta' - K'| / |K'| = O(delta^2 / r_min^2)."""
    g = np.stack(np.meshgrid(np.arange(15), np.arange(15)), -1).reshape(-1, 2) * 0.2
    x = g + rng.uniform(-0.05, 0.05, g.shape)  # separation >= 0.1
    exact = -interaction.interaction_direct(x, 0.0, 1.0)  # the screened K at beta = 0 is -ln r/(2 pi)
    diff = x[:, None, :] - x[None, :, :]
    r2 = np.sum(diff**2, -1)
    np.fill_diagonal(r2, np.inf)
    assert _rel(exact, np.sum(diff / (2 * np.pi * r2[..., None]), axis=1)) < 1e-13  # x / (2 pi r^2)
    errs = [_rel(mollified_newton_grad_sum(x, d, 1.0), exact) for d in (1e-2, 1e-3, 1e-4)]
    assert errs[-1] < 1e-5
    assert errs[1] < errs[0] / 50 and errs[2] < errs[1] / 50  # second order in delta


def test_coincident_points_and_gradient_at_zero():
    x = np.zeros((3, 2))
    for method in ("compiled", "torch"):
        assert np.array_equal(mollified_newton_grad_sum(x, 0.0, 1.0, method=method), np.zeros((3, 2)))
    diff = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    grad_newton_mollified(diff, 0.0).sum().backward()
    assert torch.all(torch.isfinite(diff.grad))


def test_argument_checks(rng):
    x = rng.standard_normal((5, 2))
    with pytest.raises(ValueError, match="method"):
        mollified_newton_grad_sum(x, 0.1, 1.0, device="cuda", method="compiled")
    with pytest.raises(ValueError, match="method"):
        mollified_newton_grad_sum(x, 0.1, 1.0, method="fmm")
    with pytest.raises(ValueError, match="x: must have shape"):
        mollified_newton_grad_sum(rng.standard_normal((5, 4)), 0.1, 1.0)
    with pytest.raises(ValueError, match="delta"):
        mollified_newton_grad_sum(x, -0.1, 1.0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dim", [2, 3])
def test_cuda_matches_compiled(rng, dim):
    x = rng.standard_normal((3000, dim))
    a = mollified_newton_grad_sum(x, 0.01, 1 / 3000, device="cuda")
    b = mollified_newton_grad_sum(x, 0.01, 1 / 3000, method="compiled")
    assert _rel(a, b) < 1e-10
