"""Train the NSIPF interpolator CNN from scratch (``oncodyn run nsipf-train``).

Published (NSIPF paper): the 3D encoder--decoder CNN is trained on patches rebuilt from 50
snapshots of the radial PHKS solution (γ = χ = 1, M0 = 1, r ∈ [0, 100], t ∈ [0, 50]) with
random down-sampling (2-4), shifts (±20 bins) and blur (σ ≤ 0.5); MSE, Adam lr 1e-3, batch 4,
100 epochs, 80/20 split; 9,754 s on a GTX 1080. The network is then used without retraining.

The run writes ``nsipf_cnn_d{dim}_v1.pt`` (the versioned weights artefact) and the loss curves;
``--set install=true`` also copies the weights where the package loads them from
(:func:`oncodyn.chemotaxis.nsipf.shipped_weights_path`). Training resumes from its checkpoint.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from oncodyn.config import ExperimentConfig
from oncodyn.core.atomic import copy_file
from oncodyn.experiments.registry import Comparison, ExperimentResult, RunContext, register
from oncodyn.io.rundir import RunDir


class TrainConfig(ExperimentConfig):
    """Training fields (the spec's setting by default; see :class:`~oncodyn.chemotaxis.nsipf.TrainOptions`).

    Attributes:
        dim: 3 (the spec's network) or 2 (the same widths with 2D convolutions, for 2D runs).
        epochs, batch_size, lr, val_fraction: the optimiser setting.
        patch: bins per axis of a training patch; n_snapshots: radial profiles;
        samples_per_snapshot: augmented patches per profile.
        install: copy the trained weights into the package (the shipped network).
    """

    dim: Literal[2, 3] = 3
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(4, ge=1)
    lr: float = Field(1e-3, gt=0)
    val_fraction: float = Field(0.2, gt=0, lt=1)
    patch: int = Field(32, ge=13)
    n_snapshots: int = Field(50, ge=2)
    samples_per_snapshot: int = Field(4, ge=1)
    install: bool = False

    presets = {"quick": {"dim": 2, "epochs": 3, "patch": 16, "n_snapshots": 8, "samples_per_snapshot": 2}}

    def options(self, device: str):
        from oncodyn.chemotaxis.nsipf import TrainOptions

        return TrainOptions(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, val_fraction=self.val_fraction,
                            patch=self.patch, n_snapshots=self.n_snapshots, samples_per_snapshot=self.samples_per_snapshot,
                            seed=self.seed, dim=self.dim, device=device)


def plot_training(rd: RunDir) -> list:
    from oncodyn.viz import figures as fg

    a = rd.read_arrays("training.npz")
    ep = a["epoch"]
    return [fg.curves(rd.figures / "loss.png", {"MSE": {"train": (ep, a["train_mse"]), "validation": (ep, a["val_mse"])}},
                      "epoch", "MSE (normalised c)", logy=True, title="NSIPF interpolator training")]


@register("nsipf-train", TrainConfig, "NSIPF: train the interpolator CNN on radial PHKS patches (resumable)",
          plot=plot_training)
def run_train(cfg: TrainConfig, ctx: RunContext) -> ExperimentResult:
    import numpy as np

    from oncodyn.chemotaxis.nsipf import build_training_data, n_parameters, shipped_weights_path, train

    opts = cfg.options(ctx.device)
    res = train(opts, out_dir=ctx.rundir.subdir("training"), progress=ctx.progress)
    x, y, _, val = build_training_data(opts)
    identity_mse = float(((x[val] - y[val]) ** 2).mean())
    n = len(res.train_mse)
    ctx.rundir.write_arrays("training.npz", {"epoch": np.arange(1, n + 1), "train_mse": np.asarray(res.train_mse),
                                             "val_mse": np.asarray(res.val_mse)})
    notes = []
    if cfg.install:
        dest = shipped_weights_path(cfg.dim)
        dest.parent.mkdir(parents=True, exist_ok=True)
        copy_file(res.weights_path, dest)
        notes.append(f"weights installed at {dest}")
    table = Comparison(
        title=f"NSIPF interpolator training ({cfg.dim}D, patch {cfg.patch}^{cfg.dim}, {res.n_train} training / "
              f"{res.n_val} validation patches, {n} epochs, {n_parameters(res.model):,} parameters)",
        columns=["quantity", "published", "ours"],
        rows=[["epochs", 100, n], ["batch / lr", "4 / 1e-3", f"{cfg.batch_size} / {cfg.lr:g}"],
              ["training time of this call (s)", "9,754 (GTX 1080)", res.seconds],
              ["final training MSE", "", float(res.train_mse[-1])], ["final validation MSE", "", float(res.val_mse[-1])],
              ["first-epoch validation MSE", "", float(res.val_mse[0])],
              ["validation MSE of the input itself (no network)", "", identity_mse]],
        note="MSE of the amplitude-normalised field (each patch divided by its input's max). The source prints no loss "
             "values; the network is judged by the particle runs that use it (angio-two-blobs, angio-annuli).")
    return ExperimentResult(metrics={"train_mse": float(res.train_mse[-1]), "val_mse": float(res.val_mse[-1]),
                                     "epochs": n, "training_seconds": res.seconds,
                                     "identity_val_mse": identity_mse,
                                     "weights": str(res.weights_path)}, tables=[table], notes=notes)
