"""The marched flow: continuity across segments, normalisation, loss A on the exact solution,
safe weights files and refusal of bad input before any training."""

import math
import pickle

import numpy as np
import pytest
import torch

from oncodyn.deeplagrangian.flow import FlowChain, FlowSolution
from oncodyn.deeplagrangian.initial import GaussianMixtureP0, GaussianP0
from oncodyn.deeplagrangian.krnet import KRnetSpec
from oncodyn.deeplagrangian.losses import LossSetup, SegmentPool, characteristic_residual, velocity_residual
from oncodyn.deeplagrangian.marching import MarchOptions, march
from oncodyn.deeplagrangian.model import KSWholeSpace
from oncodyn.deeplagrangian.velocity import ConstantAdvection, NoAdvection


def _chain(dim=2, n_seg=3, seed=0):
    torch.manual_seed(seed)
    spec = KRnetSpec(dim=dim, cdf_bins=8, cdf_halfwidth=3.0)
    chain = FlowChain(spec, np.full(dim, 0.3), 0.8 * np.eye(dim)).double()
    t = 0.0
    for k in range(n_seg):
        g = chain.add_segment(t, t + 0.1 * (k + 1))
        with torch.no_grad():
            for p in g.parameters():
                p.add_(0.2 * torch.randn_like(p))
        t += 0.1 * (k + 1)
    return chain


def test_each_segment_starts_at_the_frozen_chain():
    chain = _chain()
    z = torch.randn(400, 2, dtype=torch.float64)
    for k, (a, b) in enumerate(chain.times):
        frozen = chain.push_frozen(z, k)  # end of segment k-1
        start = chain.push(z, a + 1e-300) if k == 0 else chain.push(z, a)
        assert torch.allclose(frozen, start, atol=1e-13)
        x = frozen.clone()
        lp_frozen = chain.log_density_frozen(x, k)
        lp_seg = chain.log_density(x, a if k else 1e-300)
        assert torch.allclose(lp_frozen, lp_seg, atol=1e-11)


def test_density_integrates_to_one_and_matches_samples():
    chain = _chain(seed=1)
    sol = FlowSolution(chain)
    t = 0.45
    h = 0.05
    ax = np.arange(-8, 8, h) + h / 2
    X, Y = np.meshgrid(ax, ax, indexing="ij")
    p = sol.density(np.stack([X.ravel(), Y.ravel()], 1), t)
    assert abs(p.sum() * h * h - 1.0) < 2e-3
    # the sample mean agrees with the density's mean (quadrature)
    x = sol.sample(200_000, t, seed=3)
    mean_q = np.array([(p * X.ravel()).sum(), (p * Y.ravel()).sum()]) * h * h
    assert np.allclose(x.mean(0), mean_q, atol=0.02)


class _ExactHeatMap(torch.nn.Module):
    """x = m + v t + sqrt((s^2 + 2 mu t)/s^2) (y - m): the exact flow map of the heat equation with drift."""

    def __init__(self, s, mu, h, v, scale_error=1.0):
        super().__init__()
        self.s, self.mu, self.h, self.v, self.err = s, mu, h, torch.as_tensor(v, dtype=torch.float64), scale_error

    def forward(self, y, tau):
        t = self.h * tau
        a = torch.sqrt((self.s**2 + 2 * self.err * self.mu * t) / self.s**2)
        return a * y + self.v * t, y.shape[1] * torch.log(a[:, 0])

    def inverse(self, x, tau):
        t = self.h * tau
        a = torch.sqrt((self.s**2 + 2 * self.err * self.mu * t) / self.s**2)
        return (x - self.v * t) / a, -x.shape[1] * torch.log(a[:, 0])


@pytest.mark.parametrize("dim", [2, 3])
def test_loss_a_vanishes_on_the_exact_gaussian_solution(dim):
    s, mu, h = 0.9, 0.7, 0.3
    v = [0.5, -1.0, 2.0][:dim]
    gen = torch.Generator().manual_seed(0)
    y = s * torch.randn(2048, dim, generator=gen, dtype=torch.float64)
    pool = SegmentPool(y, torch.zeros(2048, dtype=torch.float64), -y / s**2)  # score of N(0, s^2 I)
    setup = LossSetup(mu, 0.0, 1.0, ConstantAdvection(tuple(v)), 0.05, 0.0, h)
    exact = velocity_residual(_ExactHeatMap(s, mu, h, v), setup, pool, y[:16], 8, gen)
    wrong = velocity_residual(_ExactHeatMap(s, mu, h, v, scale_error=1.3), setup, pool, y[:16], 8, gen)
    assert float(exact) < 1e-20
    assert float(wrong) > 1e-2


@pytest.mark.parametrize("dim", [2, 3])
def test_loss_b_vanishes_on_the_exact_gaussian_solution(dim):
    """Loss B (RK4 characteristics of X and log p) is zero to the RK4 error on the exact heat flow."""
    s, mu, h = 0.9, 0.7, 0.3
    v = [0.5, -1.0, 2.0][:dim]
    y = s * torch.randn(512, dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    logp0 = lambda u: -0.5 * (u * u).sum(1) / s**2 - 0.5 * dim * math.log(2 * math.pi * s**2)  # noqa: E731
    pool = SegmentPool(y, logp0(y), -y / s**2)
    setup = LossSetup(mu, 0.0, 1.0, ConstantAdvection(tuple(v)), 0.05, 0.0, h)
    exact = characteristic_residual(_ExactHeatMap(s, mu, h, v), setup, pool, y[:8], logp0, n_steps=8)
    wrong = characteristic_residual(_ExactHeatMap(s, mu, h, v, scale_error=1.3), setup, pool, y[:8], logp0, n_steps=8)
    assert float(exact) < 1e-8
    assert float(wrong) > 1e-3


def test_save_load_round_trip(tmp_path):
    sol = FlowSolution(_chain(seed=2), {"what": "test"})
    path = sol.save(tmp_path / "sol.pt")
    back = FlowSolution.load(path)
    x = np.random.default_rng(0).standard_normal((50, 2))
    assert np.allclose(back.log_density(x, 0.33), sol.log_density(x, 0.33), atol=1e-13)
    assert back.meta == {"what": "test"} and back.t_final == sol.t_final


class _Boom:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def test_weights_files_never_run_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "evil.pt"
    torch.save({"head": _Boom(), "state": {}}, bad)
    with pytest.raises(ValueError, match="damaged or not an oncodyn DeepLagrangian solution"):
        FlowSolution.load(bad)
    assert not (tmp_path / "PWNED").exists()
    plain = tmp_path / "pickle.pt"
    plain.write_bytes(pickle.dumps(_Boom()))
    with pytest.raises(ValueError, match="damaged"):
        FlowSolution.load(plain)
    assert not (tmp_path / "PWNED").exists()


def test_corrupted_weights_file_is_refused(tmp_path):
    path = FlowSolution(_chain(seed=4)).save(tmp_path / "sol.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="sol.pt is damaged"):
        FlowSolution.load(path)


def test_bad_input_is_refused_before_training():
    spec = KRnetSpec(dim=2)
    p0 = GaussianP0((0.0, 0.0), 1.0)
    with pytest.raises(ValueError, match="mu: must be finite and > 0"):
        KSWholeSpace(mu=-1.0, chi=1.0, mass=1.0, dim=2)
    with pytest.raises(ValueError, match="dim: must be 2 or 3"):
        KSWholeSpace(mu=1.0, chi=1.0, mass=1.0, dim=4)
    with pytest.raises(ValueError, match="delta: must be finite and > 0"):
        MarchOptions(delta=0.0)
    # super-critical 2D: T_m = tr Cov / (chi M / 2 pi - 4 mu) = 2 / 2 = 1
    model = KSWholeSpace(mu=1.0, chi=12 * math.pi, mass=1.0, dim=2)
    with pytest.raises(ValueError, match="t_end: must be below the blow-up time bound T_m = 1"):
        march(model, p0, NoAdvection(), spec, MarchOptions(t_end=1.2))
    with pytest.raises(ValueError, match="p0"):
        march(model, GaussianP0((0.0, 0.0, 0.0), 1.0), NoAdvection(), spec, MarchOptions(t_end=0.5))
    with pytest.raises(ValueError, match="advection"):
        march(model, p0, ConstantAdvection((1.0, 0.0, 0.0)), spec, MarchOptions(t_end=0.5))


def test_march_resumes_from_its_checkpoint(tmp_path):
    """A run killed after its first segment resumes there and ends exactly where an uninterrupted run does."""
    model = KSWholeSpace(mu=1.0, chi=2.0, mass=1.0, dim=2)
    p0 = GaussianMixtureP0(((-1.0, 0.0), (1.0, 0.0)), (0.5, 0.5), (1.0, 1.0))
    spec = KRnetSpec(dim=2, width=8, cdf_bins=4)
    opts = MarchOptions(t_end=0.1, segment=0.05, iterations=5, n_z=64, n_r=16, pool=256, base_iterations=20,
                        base_samples=500, adaptive=False)
    full = march(model, p0, NoAdvection(), spec, opts, checkpoint=tmp_path / "a.pt")

    def kill(line):
        if line.startswith("segment 0"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        march(model, p0, NoAdvection(), spec, opts, checkpoint=tmp_path / "b.pt", log=kill)
    lines = []
    resumed = march(model, p0, NoAdvection(), spec, opts, checkpoint=tmp_path / "b.pt", log=lines.append)
    assert lines[0].startswith("resumed from") and "1 segments done" in lines[0]
    assert len(resumed.segments) == 2
    x = np.random.default_rng(0).standard_normal((20, 2))
    assert np.array_equal(resumed.solution.log_density(x, 0.1), full.solution.log_density(x, 0.1))
    # a rerun of a finished run trains nothing
    again = march(model, p0, NoAdvection(), spec, opts, checkpoint=tmp_path / "a.pt", log=lines.append)
    assert np.array_equal(again.solution.log_density(x, 0.1), full.solution.log_density(x, 0.1))
    assert lines[-1].startswith("resumed from") and "2 segments done" in lines[-1]


def test_damaged_checkpoint_is_set_aside_and_the_case_restarts(tmp_path):
    model = KSWholeSpace(mu=1.0, chi=0.0, mass=1.0, dim=2)
    opts = MarchOptions(t_end=0.05, segment=0.05, iterations=3, n_z=32, n_r=8, pool=64)
    ckpt = tmp_path / "case.pt"
    ckpt.write_bytes(b"not a checkpoint")
    lines = []
    res = march(model, GaussianP0((0.0, 0.0), 1.0), NoAdvection(), KRnetSpec(dim=2, width=8), opts, checkpoint=ckpt,
                log=lines.append)
    assert (tmp_path / "case.pt.corrupt").read_bytes() == b"not a checkpoint"
    assert "case.pt is damaged" in lines[0] and len(res.segments) == 1
    assert FlowSolution.load(ckpt).t_final == 0.05
