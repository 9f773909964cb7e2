"""NSIPF neural interpolator: network symmetries, local = full evaluation, data, training, weights."""

import dataclasses

import numpy as np
import pytest
import torch

from oncodyn.chemotaxis import nsipf
from oncodyn.chemotaxis.interpolate import catmull_rom_gradient, make_interpolator
from oncodyn.chemotaxis.nsipf import (
    HALO,
    CNNInterpolator,
    InterpolatorCNN,
    RadialSnapshots,
    TrainOptions,
    augment,
    load_shipped,
    load_weights,
    make_dataset,
    n_parameters,
    patch_from_radial,
    save_weights,
    train,
)

# a tiny, fast training setting (2D, 16^2 patches); the radial solves are coarse
TINY = TrainOptions(epochs=5, batch_size=4, lr=1e-3, patch=16, n_snapshots=10, samples_per_snapshot=8, dim=2,
                    n_runs=4, n_r=100, radial_dt=0.5)


def seeded_model(dim, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    m = InterpolatorCNN(dim).to(dtype).eval()
    with torch.no_grad():  # positive biases: the output ReLU is active on most bins (a non-trivial test)
        m.convs[-1].bias.fill_(0.05)
    return m


def blob_field(n, dim, rng, sigma=4.0, noise=0.05):
    x = (np.arange(n) + 0.5)
    g = np.meshgrid(*([x] * dim), indexing="ij")
    r2 = sum((gi - n / 2) ** 2 for gi in g)
    return np.exp(-r2 / (2 * sigma**2)) + noise * rng.random((n,) * dim)


@pytest.mark.parametrize("dim", [2, 3])
def test_output_shape_and_sign(dim):
    m = seeded_model(dim)
    x = torch.rand((2, 1) + (11,) * dim)
    y = m(x)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert torch.all(y >= 0) and torch.any(y > 0)
    assert n_parameters(m) == (83937 if dim == 3 else 28065)


def test_architecture_checks():
    with pytest.raises(ValueError, match="skip"):
        InterpolatorCNN(3, (16, 32, 32, 16, 16))
    with pytest.raises(ValueError, match="dim"):
        InterpolatorCNN(4)
    with pytest.raises(ValueError, match="shape"):
        seeded_model(2)(torch.rand(1, 1, 8, 8, 8))


@pytest.mark.parametrize("dim,n,k", [(2, 40, 3), (3, 22, 2)])
def test_translation_equivariance_away_from_walls(dim, n, k, rng):
    """Shift the input by k bins: the output shifts identically wherever the halo misses the walls."""
    m = seeded_model(dim, dtype=torch.float64)
    f = rng.random((n,) * dim)
    fs = np.roll(f, k, axis=tuple(range(dim)))
    with torch.no_grad():
        y, ys = (m(torch.from_numpy(a)[None, None], scale=1.0)[0, 0].numpy() for a in (f, fs))
    inner = tuple(slice(HALO, n - HALO - k) for _ in range(dim))
    shifted = tuple(slice(HALO + k, n - HALO) for _ in range(dim))
    np.testing.assert_allclose(ys[shifted], y[inner], rtol=0, atol=1e-10)
    assert np.abs(y[inner]).max() > 1e-3


@pytest.mark.parametrize("dim", [2, 3])
def test_amplitude_normalisation(dim, rng):
    m = seeded_model(dim, dtype=torch.float64)
    x = torch.from_numpy(rng.random((3, 1) + (10,) * dim))
    with torch.no_grad():
        np.testing.assert_allclose(m(7.0 * x).numpy(), 7.0 * m(x).numpy(), rtol=1e-12, atol=1e-14)
        assert torch.all(m(torch.zeros_like(x)) == 0)
        # per-sample maximum by default; an explicit scale equal to it changes nothing
        s = x.amax(dim=tuple(range(2, x.ndim)), keepdim=True)
        np.testing.assert_allclose(m(x, scale=s).numpy(), m(x).numpy(), rtol=1e-14)


@pytest.mark.parametrize("dim,n", [(3, 32), (2, 64)])
def test_local_evaluation_equals_full_pass(dim, n, rng):
    """Blocks (windows moved inward at walls), bounding box and auto give the full pass on every stencil bin."""
    m = seeded_model(dim)
    h = 100.0 / n
    L = n * h
    f = 3.0 * blob_field(n, dim, rng, sigma=n / 10)
    face = np.full((2 * dim, dim), L / 2) + rng.uniform(-3 * h, 3 * h, (2 * dim, dim))
    for a in range(dim):  # one particle within 2 bins of each wall
        face[2 * a, a], face[2 * a + 1, a] = rng.uniform(0, 2 * h), L - rng.uniform(0, 2 * h)
    x = np.concatenate([L / 2 + 1.5 * h * rng.standard_normal((100, dim)), face,
                        [[0.0] * dim, [L] * dim, [0.0] * (dim - 1) + [L]]])  # corners, exactly on the walls
    interp = CNNInterpolator(m, block=8, normalise="global")
    full = interp.smooth(f)
    lo, hi = interp.touched(n, h, x)
    touched = np.zeros(f.shape, bool)
    for a, b in zip(lo, hi):
        touched[tuple(slice(i, j + 1) for i, j in zip(a, b))] = True
    for strategy in ("blocks", "bbox", "auto"):
        interp.strategy = strategy
        loc = interp.smooth_local(f, h, x)
        assert strategy == "auto" or interp.last_strategy == strategy
        np.testing.assert_allclose(loc[touched], full[touched], rtol=0, atol=1e-6 * f.max())  # float32, relative to the amplitude s
    interp.strategy = "blocks"
    grad_full = catmull_rom_gradient(full, h, x)
    np.testing.assert_allclose(interp.gradient(f, h, x), grad_full, rtol=0, atol=1e-5 * f.max() / h)


def test_window_normalisation_uses_each_windows_maximum(rng):
    """normalise="window": every block window is divided by its own maximum (blocks strategy), so
    the output is the network on that window times its maximum; scaling the field scales it."""
    m = seeded_model(2)
    n, h = 64, 1.0  # above WINDOW_FULL_MAX: evaluated in blocks
    f = blob_field(n, 2, rng, sigma=4.0)
    x = np.array([[32.0, 32.0], [3.0, 60.0]])
    interp = CNNInterpolator(m, block=8)
    loc = interp.smooth_local(f, h, x)
    assert interp.last_strategy == "blocks"
    np.testing.assert_allclose(interp.smooth_local(7.0 * f, h, x), 7.0 * loc, rtol=1e-5, atol=1e-12)
    # the far block [0:8, 56:64]: its window is [0:20, 44:64]
    win = f[0:20, 44:64]
    with torch.no_grad():
        ref = m(torch.from_numpy(win)[None, None].to(next(m.parameters()).dtype))[0, 0].double().numpy()
    np.testing.assert_allclose(loc[0:8, 56:64], ref[0:8, 12:20], rtol=1e-5, atol=1e-7 * win.max())


def test_local_evaluation_is_local(rng):
    """One compact cloud: far fewer network voxels than the field; untouched bins keep the input."""
    m = seeded_model(3)
    n, h = 48, 1.0
    f = blob_field(n, 3, rng)
    x = 24.0 + rng.standard_normal((500, 3))
    interp = CNNInterpolator(m, normalise="global")
    loc = interp.smooth_local(f, h, x)
    assert interp.last_voxels < 0.25 * f.size
    assert loc[0, 0, 0] == f[0, 0, 0] and loc[-1, -1, -1] == f[-1, -1, -1]


def test_tiled_smooth_equals_single_pass(rng):
    m = seeded_model(3)
    f = blob_field(30, 3, rng)
    one = CNNInterpolator(m).smooth(f)
    tiled = CNNInterpolator(m, max_batch_voxels=18**3).smooth(f)
    np.testing.assert_allclose(tiled, one, rtol=0, atol=1e-6 * one.max())


def test_registered_and_lazy(tmp_path, monkeypatch):
    m = seeded_model(2)
    interp = make_interpolator("cnn", model=m)
    assert isinstance(interp, CNNInterpolator) and interp.name == "cnn"
    monkeypatch.setattr(nsipf, "shipped_weights_path", lambda dim=3: tmp_path / f"nsipf_cnn_d{dim}_v1.pt")
    lazy = make_interpolator("cnn")
    with pytest.raises(FileNotFoundError, match="oncodyn run nsipf-train"):
        lazy.gradient(np.ones((8, 8)), 1.0, np.full((3, 2), 4.0))
    with pytest.raises(FileNotFoundError, match="oncodyn run nsipf-train"):
        load_shipped(3)
    save_weights(tmp_path / "nsipf_cnn_d2_v1.pt", m, {"epochs": 1})
    g = lazy.gradient(np.ones((8, 8)), 1.0, np.full((3, 2), 4.0))
    assert g.shape == (3, 2)
    model, meta = load_shipped(2)
    assert model.dim == 2 and meta == {"epochs": 1}


def test_weights_round_trip_and_refusal(tmp_path, rng):
    m = seeded_model(3)
    path = save_weights(tmp_path / "w.pt", m, {"epochs": 3, "note": "test"})
    m2, meta = load_weights(path)
    assert meta == {"epochs": 3, "note": "test"} and m2.dim == 3 and m2.widths == m.widths
    x = torch.from_numpy(rng.random((1, 1, 9, 9, 9))).float()
    with torch.no_grad():
        assert torch.equal(m(x), m2(x))
    blob = torch.load(path, weights_only=True)
    assert blob["format"] == "oncodyn-nsipf-cnn" and blob["version"] == 1
    torch.save({**blob, "version": 2}, tmp_path / "v2.pt")
    with pytest.raises(ValueError, match="version"):
        load_weights(tmp_path / "v2.pt")
    torch.save({"format": "something-else", "state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="format"):
        load_weights(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        load_weights(tmp_path / "missing.pt")


def test_shipped_path():
    p = nsipf.shipped_weights_path(3)
    assert p.name == "nsipf_cnn_d3_v1.pt" and p.parent.name == "weights" and p.parent.parent.name == "chemotaxis"


# ------------------------------------------------------------------------------ data


def gaussian_snapshots(sigmas=(4.0, 8.0, 12.0), amplitude=3.0):
    r = np.linspace(0, 100, 401)
    c = np.stack([amplitude * np.exp(-r**2 / (2 * s**2)) for s in sigmas])
    k = len(sigmas)
    return RadialSnapshots(r=r, c=c, t=np.zeros(k), run=np.arange(k), runs=tuple({} for _ in range(k)))


@pytest.mark.parametrize("dim", [2, 3])
def test_patch_from_radial(dim):
    r = np.linspace(0, 100, 2001)
    sigma, size, h = 6.0, 12, 1.5
    offset = np.array([3.0, -2.5, 1.0][:dim])
    patch = patch_from_radial(r, np.exp(-r**2 / (2 * sigma**2)), size, h, offset)
    x = (np.arange(size) + 0.5 - size / 2) * h
    g = np.stack(np.meshgrid(*([x] * dim), indexing="ij"), -1)
    exact = np.exp(-np.sum((g - offset * h) ** 2, -1) / (2 * sigma**2))
    assert patch.shape == (size,) * dim
    np.testing.assert_allclose(patch, exact, atol=2e-4)


@pytest.mark.parametrize("dim", [2, 3])
def test_augment_keeps_shapes_and_target(dim, rng):
    patch = patch_from_radial(np.linspace(0, 100, 401), np.exp(-np.linspace(0, 100, 401) ** 2 / 50), 16, 1.0,
                              np.zeros(dim))
    before = patch.copy()
    for _ in range(4):
        x, y = augment(patch, rng)
        assert x.shape == patch.shape and y.shape == patch.shape
        np.testing.assert_array_equal(y, before)
        np.testing.assert_array_equal(patch, before)
        assert not np.allclose(x, patch)
        assert x.min() >= -1e-12 and x.max() <= patch.max() + 1e-12  # averaging and blurring: no new extrema


def test_make_dataset_shapes_normalisation_and_seed():
    snaps = gaussian_snapshots()
    x, y = make_dataset(snaps, size=12, samples_per_snapshot=2, seed=5, dim=3)
    assert x.shape == y.shape == (6, 1, 12, 12, 12) and x.dtype == torch.float32
    np.testing.assert_allclose(x.amax(dim=(1, 2, 3, 4)).numpy(), 1.0, rtol=1e-6)
    x2, y2 = make_dataset(snaps, size=12, samples_per_snapshot=2, seed=5, dim=3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, _ = make_dataset(snaps, size=12, samples_per_snapshot=2, seed=6, dim=3)
    assert not torch.equal(x, x3)


def test_train_options_validation():
    with pytest.raises(ValueError, match="val_fraction"):
        TrainOptions(val_fraction=1.0)
    with pytest.raises(ValueError, match="patch"):
        TrainOptions(patch=8)
    with pytest.raises(ValueError, match="device"):
        TrainOptions(device="tpu")
    o = TrainOptions()
    assert (o.epochs, o.batch_size, o.lr, o.val_fraction, o.n_snapshots, o.dim) == (100, 4, 1e-3, 0.2, 50, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.epochs = 3


# ------------------------------------------------------------------------------ training


def test_radial_snapshots_are_profiles():
    snaps = nsipf.radial_snapshots(n_snapshots=5, seed=1, n_r=100, dt=0.5, n_runs=3)
    assert snaps.c.shape == (5, 100) and snaps.r.shape == (100,) and len(snaps) == 5
    assert np.all(snaps.c >= 0) and np.all(snaps.c.max(axis=1) > 0)
    assert np.all((snaps.t >= 0) & (snaps.t <= 50.0 + 1e-9))


def test_short_training_lowers_validation_loss(tmp_path):
    res = train(TINY, tmp_path, progress=False)
    assert len(res.train_mse) == len(res.val_mse) == res.epochs == 5
    assert res.val_mse[-1] < res.val_mse[0]
    assert res.n_train + res.n_val == TINY.n_snapshots * TINY.samples_per_snapshot and res.n_val > 0
    model, meta = load_weights(res.weights_path)
    assert meta["epochs"] == 5 and meta["val_mse"] == res.val_mse and model.dim == 2


def test_checkpoint_resume_continues(tmp_path):
    """An interrupted run (2 of 3 epochs) resumes at epoch 3 and matches the straight run."""
    opts = dataclasses.replace(TINY, epochs=3)
    first = train(dataclasses.replace(opts, epochs=2), tmp_path / "a", progress=False)
    assert (tmp_path / "a" / "cnn_checkpoint.pt").exists()
    resumed = train(opts, tmp_path / "a", progress=False)
    assert resumed.start_epoch == 2 and resumed.epochs == 3 and len(resumed.val_mse) == 3
    assert resumed.val_mse[:2] == first.val_mse and resumed.train_mse[:2] == first.train_mse
    straight = train(opts, tmp_path / "b", progress=False)
    np.testing.assert_allclose(resumed.val_mse, straight.val_mse, rtol=1e-5)
    np.testing.assert_allclose(resumed.train_mse, straight.train_mse, rtol=1e-5)
    again = train(opts, tmp_path / "a", progress=False)  # nothing left to do
    assert again.start_epoch == 3 and again.val_mse == resumed.val_mse
    with pytest.raises(ValueError, match="lr"):
        train(dataclasses.replace(opts, lr=1e-2), tmp_path / "a", progress=False)
    fresh = train(dataclasses.replace(opts, epochs=1), tmp_path / "a", progress=False, resume=False)
    assert fresh.start_epoch == 0 and len(fresh.val_mse) == 1
    np.testing.assert_allclose(fresh.val_mse, straight.val_mse[:1], rtol=1e-5)
