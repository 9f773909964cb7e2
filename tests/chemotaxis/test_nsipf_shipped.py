"""The shipped NSIPF networks reproduce their recorded validation loss on data rebuilt from their recorded options.

The weights artefact stores the training options and the per-epoch losses; the training data are
a pure function of the options (seeded radial runs and augmentations), so evaluating the shipped
network on the rebuilt validation split must give the recorded final validation MSE (float32
sums over different thread counts: relative tolerance 1e-3).
"""

import pytest

from oncodyn.chemotaxis.nsipf import TrainOptions, build_training_data, dataset_mse, load_shipped


@pytest.mark.parametrize("dim", [2, 3])
def test_shipped_weights_reproduce_their_validation_loss(dim):
    model, meta = load_shipped(dim)
    opts = TrainOptions(**{**meta["options"], "device": "cpu"})
    assert opts.dim == dim
    x, y, _, val = build_training_data(opts)
    assert len(val) == meta["n_val"]
    mse = dataset_mse(model, x, y, val)
    assert mse == pytest.approx(meta["val_mse"][-1], rel=1e-3)
    identity = float(((x[val] - y[val]) ** 2).mean())
    assert mse < identity  # the network improves on passing its input through
