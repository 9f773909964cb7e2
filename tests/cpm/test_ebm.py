"""Energy-based training (PCD): recovery of known analytic parameters on a small problem, exact resume."""

import numpy as np
import pytest
import torch

from oncodyn.cpm.ebm import PCDOptions, PCDTrainer, best_fit_scale, lattice_symmetry, permute_types
from oncodyn.cpm.hamiltonians import Contact, Hamiltonian, Volume
from oncodyn.cpm.lattice import Lattice, voronoi_blob
from oncodyn.cpm.neural import AnalyticTorch, CNNHamiltonian
from oncodyn.cpm.samplers import MetropolisSampler

J_TRUE = np.array([[0, 1.5, 1.5], [1.5, 1.0, 2.0], [1.5, 2.0, 1.0]])
LAM_TRUE, V_TARGET = 0.5, 40.0
PAIRS = [(1, 1), (1, 2), (2, 2), (0, 1), (0, 2)]


@pytest.fixture(scope="module")
def data():
    """Equilibrium snapshots of a known Hamiltonian: one exact chain, 24×24, 4 cells, every 20 MCS."""
    ham = Hamiltonian((Contact(J_TRUE, order=2), Volume(lam=LAM_TRUE, target=V_TARGET)), temperature=1.0)
    st = voronoi_blob(Lattice((24, 24)), 4, V_TARGET, np.random.default_rng(0))
    smp = MetropolisSampler(st, ham, seed=1)
    smp.sweep(500)
    sig = []
    for _ in range(300):
        smp.sweep(20)
        sig.append(smp.state.sigma.copy())
    return {"sigma": np.stack(sig), "cell_type": np.stack([st.cell_type] * len(sig))}


def params(model) -> np.ndarray:
    p = model.parameters_dict()
    return np.array([p["J"][i, j] for i, j in PAIRS] + [p["lam"]])


TRUTH = np.array([J_TRUE[i, j] for i, j in PAIRS] + [LAM_TRUE])


def test_pcd_recovers_known_parameters(data):
    torch.manual_seed(0)
    model = AnalyticTorch(2, V_TARGET, order=2)
    opts = PCDOptions(iterations=300, lr=0.01, mcs_per_iter=10, sampler="exact", reset_prob=0.0, alpha=0.0)
    tr = PCDTrainer(model, data, opts, record=lambda m: {"lam": m.parameters_dict()["lam"]})
    rmse0 = best_fit_scale(params(model), TRUTH)[0]
    tr.train(progress=False)
    rmse, c, rmse_best = best_fit_scale(params(tr.ema), TRUTH)
    assert rmse < 0.35 * rmse0, (params(tr.ema), rmse0)
    assert rmse < 0.3 and rmse_best < 0.2
    assert len(tr.log.extra["lam"]) == 300 and np.all(np.isfinite(tr.log.loss))


def test_resume_continues_exactly(data, tmp_path):
    opts = PCDOptions(iterations=6, lr=0.01, mcs_per_iter=2, batch=4, checkpoint_every=3, seed=3)
    torch.manual_seed(0)
    a = PCDTrainer(AnalyticTorch(2, V_TARGET), data, opts)
    a.train(progress=False)
    torch.manual_seed(0)
    b = PCDTrainer(AnalyticTorch(2, V_TARGET), data, PCDOptions(**{**opts.__dict__, "iterations": 3}))
    b.train(checkpoint=str(tmp_path / "ck.pt"), progress=False)
    c = PCDTrainer(AnalyticTorch(2, V_TARGET), data, opts)
    c.train(checkpoint=str(tmp_path / "ck.pt"), progress=False)
    assert np.array_equal(params(a.model), params(c.model))
    assert a.log.loss == c.log.loss


def test_helpers():
    rmse, c, best = best_fit_scale(2 * TRUTH, TRUTH)
    assert c == pytest.approx(0.5) and best == pytest.approx(0.0, abs=1e-12) and rmse > 0
    ct = np.array([0, 1, 1, 2, 2, 2])
    p = permute_types(ct, np.random.default_rng(0))
    assert p[0] == 0 and sorted(p.tolist()) == sorted(ct.tolist())


@pytest.mark.parametrize("shape,n_images", [((6, 6), 8), ((4, 6), 4)])
def test_lattice_symmetry_draws_every_symmetry_and_keeps_cells(shape, n_images):
    sigma = np.arange(np.prod(shape), dtype=np.int32).reshape(shape)  # every site distinct: images distinguishable
    rng = np.random.default_rng(0)
    images = {lattice_symmetry(sigma, rng).tobytes() for _ in range(400)}
    assert len(images) == n_images  # the whole group, nothing else
    out = lattice_symmetry(sigma, rng)
    assert out.flags.c_contiguous and sorted(out.ravel().tolist()) == sorted(sigma.ravel().tolist())


def test_augmented_training_sees_symmetric_images_of_the_snapshots(data):
    opts = PCDOptions(iterations=1, batch=8, mcs_per_iter=1, sampler="exact", reset_prob=1.0, augment=True, seed=2)
    tr = PCDTrainer(AnalyticTorch(2, V_TARGET), data, opts)
    seen = []
    tr.model.energies = lambda states: (seen.extend(s for s, _ in states), torch.zeros(len(states), requires_grad=True))[1]
    tr.step()
    snaps = {s.tobytes() for s in data["sigma"]}
    data_batch = seen[:8]  # the data half of the loss
    assert any(s.tobytes() not in snaps for s in data_batch)  # transformed, not the snapshots themselves
    for s in data_batch:  # each one is a lattice symmetry of some snapshot
        assert any(np.array_equal(np.rot90(t.T if f else t, k), s) for t in data["sigma"] for f in (0, 1)
                   for k in range(4))


@pytest.mark.parametrize("kw,match", [({"iterations": 0}, "iterations"), ({"lr": 0}, "lr"),
                                      ({"sampler": "gibbs"}, "sampler"), ({"ema": 1.0}, "ema")])
def test_bad_options(kw, match):
    with pytest.raises(ValueError, match=match):
        PCDOptions(**kw)


def test_pcd_runs_with_a_neural_closure(data, tmp_path):
    """The network path: the approximate sampler with the model's ΔH, gradients into every part."""
    from oncodyn.cpm.neural import Closure, NeuralHamiltonian

    torch.manual_seed(0)
    small = {"sigma": np.stack([np.pad(s, 6, mode="wrap") for s in data["sigma"][:8]]),  # 36×36: stride 18
             "cell_type": data["cell_type"][:8]}
    net = NeuralHamiltonian(2, widths=(4, 8), pools=(3, 2), embed=3)
    model = Closure(AnalyticTorch(2, V_TARGET), net)
    before = [p.detach().clone() for p in model.parameters()]
    opts = PCDOptions(iterations=3, batch=2, mcs_per_iter=0.5, k_frac=0.05, checkpoint_every=1)
    tr = PCDTrainer(model, small, opts)
    log = tr.train(checkpoint=str(tmp_path / "nn.pt"), progress=False)
    assert len(log.loss) == 3 and np.all(np.isfinite(log.loss))
    changed = [not torch.equal(b, p.detach()) for b, p in zip(before, model.parameters())]
    assert all(changed)
    assert (tmp_path / "nn.pt").exists()


def test_closure_regulariser_acts_on_the_network_only(data):
    from oncodyn.cpm.neural import Closure, NeuralHamiltonian

    torch.manual_seed(0)
    small = [(np.pad(s, 6, mode="wrap"), c) for s, c in zip(data["sigma"][:3], data["cell_type"][:3])]
    a, n = AnalyticTorch(2, V_TARGET), NeuralHamiltonian(2, widths=(4, 8), pools=(3, 2), embed=3)
    c = Closure(a, n, w1=0.5, w2=2.0)
    e, r = c.energies_and_reg(small)
    torch.testing.assert_close(e, c.energies(small))
    torch.testing.assert_close(r, 2.0 * n.energies(small))
    e_a, r_a = a.energies_and_reg(small)
    torch.testing.assert_close(e_a, r_a)


def test_divergence_stops_with_a_clear_error(data, monkeypatch):
    model = AnalyticTorch(2, V_TARGET)
    tr = PCDTrainer(model, data, PCDOptions(iterations=2, batch=2, mcs_per_iter=0.1, sampler="classic"))
    monkeypatch.setattr(model, "energies_and_reg",
                        lambda states: (model.energies(states) * float("inf"),) * 2)
    with pytest.raises(FloatingPointError, match="diverged at iteration 1"):
        tr.step()


def test_classic_sampler_option_runs(data):
    model = AnalyticTorch(2, V_TARGET)
    tr = PCDTrainer(model, data, PCDOptions(iterations=2, batch=2, mcs_per_iter=1.0, sampler="classic", alpha=0.0))
    assert np.isfinite(tr.step())


@pytest.mark.parametrize("sampler", ["block", "guided"])
def test_closure_samplers_train_a_closure_and_refuse_other_models(data, sampler):
    """Both closure-only samplers train a closure; the block sampler logs its acceptance."""
    from oncodyn.cpm.neural import Closure, NeuralHamiltonian

    torch.manual_seed(0)
    small = {"sigma": np.stack([np.pad(s, 6, mode="wrap") for s in data["sigma"][:6]]),
             "cell_type": data["cell_type"][:6]}
    model = Closure(AnalyticTorch(2, V_TARGET), NeuralHamiltonian(2, widths=(4, 8), pools=(3, 2), embed=3))
    opts = PCDOptions(iterations=3, batch=2, mcs_per_iter=2.0, sampler=sampler, block_mcs=0.5, alpha=0.01)
    log = PCDTrainer(model, small, opts).train(progress=False)
    assert len(log.loss) == 3 and np.all(np.isfinite(log.loss))
    if sampler == "block":
        acc = log.extra["block_acceptance"]
        assert len(acc) == 3 and all(0.0 <= a <= 1.0 for a in acc)
    with pytest.raises(ValueError, match="needs a Closure"):
        PCDTrainer(AnalyticTorch(2, V_TARGET), data, opts).step()


def test_reset_relaxation_lowers_the_chains_energy(data):
    model = AnalyticTorch(2, V_TARGET, J_init=J_TRUE + np.eye(3) * [0, 1, 1], lam_init=LAM_TRUE)
    plain = PCDTrainer(model, data, PCDOptions(batch=8, sampler="exact", seed=3))
    relaxed = PCDTrainer(model, data, PCDOptions(batch=8, sampler="exact", seed=3, reset_relax_mcs=50.0))
    e = [float(model.energies([(c.sigma, c.cell_type) for c in t.chains]).mean()) for t in (plain, relaxed)]
    assert e[1] < e[0]
    with pytest.raises(ValueError, match="reset_relax_mcs"):
        PCDOptions(reset_relax_mcs=-1.0)


def test_closure_analytic_learning_rate_and_warm_chains(data):
    """``analytic_lr = 0`` freezes a closure's analytic part and w1 while the network trains; a
    positive one trains them at their own rate; given ``chains`` start the persistent chains."""
    from oncodyn.cpm.lattice import CPMState
    from oncodyn.cpm.neural import Closure, NeuralHamiltonian

    small = {"sigma": np.stack([np.pad(s, 6, mode="wrap") for s in data["sigma"][:6]]),
             "cell_type": data["cell_type"][:6]}
    lat = Lattice(small["sigma"].shape[1:])
    warm = [CPMState(lat, small["sigma"][i].copy(), small["cell_type"][i].copy()) for i in (4, 5)]

    def trained(analytic_lr):
        torch.manual_seed(0)
        model = Closure(AnalyticTorch(2, V_TARGET), NeuralHamiltonian(2, widths=(4, 8), pools=(3, 2), embed=3))
        before = [p.detach().clone() for p in (model.analytic.raw_J, model.w1, model.network.embedding.weight)]
        opts = PCDOptions(iterations=2, batch=3, mcs_per_iter=1.0, sampler="block", block_mcs=0.5, alpha=0.01,
                          analytic_lr=analytic_lr)
        tr = PCDTrainer(model, small, opts, chains=warm)
        assert [c.sigma.tobytes() for c in tr.chains] == [warm[j % 2].sigma.tobytes() for j in range(3)]
        tr.train(progress=False)
        return [bool(torch.any(p.detach() != b)) for p, b in
                zip((model.analytic.raw_J, model.w1, model.network.embedding.weight), before)]

    assert trained(0.0) == [False, False, True]
    assert trained(1e-2) == [True, True, True]
    with pytest.raises(ValueError, match="analytic_lr"):
        PCDOptions(analytic_lr=-1.0)
    with pytest.raises(ValueError, match="chains must be"):
        PCDTrainer(AnalyticTorch(2, V_TARGET), data, PCDOptions(batch=2), chains=[])


class _LinearTypeField(CNNHamiltonian):
    """A network whose energy is linear in its one-hot type map: Σ_x w(x) [τ(σ_x) = 2]."""

    def __init__(self, w):
        super().__init__(2, widths=(1,), pools=(1,), embed=1)
        self.w = torch.nn.Parameter(torch.as_tensor(w, dtype=torch.float32))

    def _energy_x(self, x):
        return (x[:, 2] * self.w).sum((1, 2))


def test_guided_sampler_with_a_linear_network_is_the_exact_external_potential():
    """A network linear in its input is its own linearisation: the guided sampler must then run the
    same chain, copy for copy, as the compiled sampler with that energy as an external potential."""
    from oncodyn.cpm.ebm import advance
    from oncodyn.cpm.hamiltonians import ExternalPotential
    from oncodyn.cpm.neural import Closure

    rng = np.random.default_rng(3)
    st = voronoi_blob(Lattice((30, 30)), 6, 40.0, rng)
    w = np.linspace(-2.0, 2.0, 30)[None, :].repeat(30, 0)  # type 2 pulled to the left
    model = Closure(AnalyticTorch(2, 40.0, J_init=J_TRUE, lam_init=LAM_TRUE), _LinearTypeField(w), w1=1.0, w2=1.0)
    opts = PCDOptions(sampler="guided", block_mcs=50.0, temperature=1.0)
    got = advance(model, st, 20.0, opts, seed=7)
    ham = Hamiltonian((Contact(J_TRUE, order=2), Volume(lam=LAM_TRUE, target=40.0),
                       ExternalPotential(w.astype(np.float32).astype(float), mu=[0.0, 0.0, 1.0])), temperature=1.0)
    ref = MetropolisSampler(st, ham, seed=int(np.random.default_rng(7).integers(2**62)), hastings=False)
    ref.sweep(20.0)
    np.testing.assert_array_equal(got.sigma, ref.state.sigma)
    assert got.mcs == pytest.approx(st.mcs + 20.0)
    # and the pull is felt: type 2 ends further left than without the network
    model0 = Closure(AnalyticTorch(2, 40.0, J_init=J_TRUE, lam_init=LAM_TRUE), _LinearTypeField(w), w2=0.0)
    free = advance(model0, st, 20.0, opts, seed=7)
    col = lambda s: np.argwhere(s.cell_type[s.sigma] == 2)[:, 1].mean()  # noqa: E731
    assert col(got) < col(free) - 1.0


def test_w2_learning_rate_moves_w2_by_its_own_step():
    """``w2_lr`` puts a closure's w2 in its own Adam group: Adam's first step moves it by about its lr."""
    from oncodyn.cpm.ebm import _param_groups
    from oncodyn.cpm.neural import Closure, NeuralHamiltonian

    model = Closure(AnalyticTorch(2, V_TARGET), NeuralHamiltonian(2, widths=(4, 8), pools=(3, 2), embed=3))
    groups = _param_groups(model, PCDOptions(analytic_lr=0.0, w2_lr=0.5))
    assert [len(g["params"]) for g in groups][-1] == 1 and groups[-1]["lr"] == 0.5
    assert all(model.w2 is not p for p in groups[0]["params"])
    assert not model.w1.requires_grad  # analytic_lr 0 still freezes w1 and the analytic part
    opt = torch.optim.Adam(groups, lr=1e-3)
    model.w2.grad = torch.tensor(1.0)
    for p in groups[0]["params"]:
        p.grad = torch.zeros_like(p)
    opt.step()
    assert float(model.w2) == pytest.approx(0.5, abs=1e-3)  # 1.0 − 0.5
    with pytest.raises(ValueError, match="w2_lr"):
        PCDOptions(w2_lr=-1.0)
