r"""Quality metrics of sampled CPM states against training snapshots (NeuralCPM experiment N2).

- :func:`f_vol` — fraction of states whose every cell volume stays within the training range
  widened by ±10 % of the mean training volume;
- :func:`f_frag` — fraction of states with at most 3 fragmented cells (more than one
  connected piece, sites joined through the CPM's second-order (Moore, 8-site) neighbourhood by
  default — the neighbourhood of the Hamiltonian's contact term and of the copy proposals, and
  the one NeuralCPM's published f_frag counts with; ``connectivity_order=1`` gives the stricter
  4-connected count, which also splits cells whose parts touch only at a corner);
- :func:`classifier_score` — :math:`CS = \exp(\mathbb{E}_x\, KL(p(y|x)\,\|\,p(y)))` with
  :math:`p(y) = \mathbb{E}_x\, p(y|x)`, from the class probabilities of a classifier trained on
  the snapshots (:class:`DigitClassifier`): 1 when samples are uninformative, the number of
  classes when every sample is recognised with certainty and the classes are balanced;
- :func:`bipolar_ratio` — the variance ratio of a bipolar axis (NeuralCPM experiment N3).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from oncodyn.cpm.lattice import CPMState
from oncodyn.cpm.observables import fragmented_cells


def volume_range(states: Sequence[CPMState], widen: float = 0.1) -> tuple[float, float]:
    """The training range of cell volumes widened by ``widen`` × the mean volume (sites)."""
    vols = np.concatenate([s.volumes()[1:] for s in states])
    pad = widen * vols.mean()
    return float(vols.min() - pad), float(vols.max() + pad)


def f_vol(states: Sequence[CPMState], vrange: tuple[float, float]) -> float:
    """Fraction of ``states`` whose every cell volume lies in ``vrange`` (a vanished cell fails)."""
    lo, hi = vrange
    ok = [bool(np.all((v >= lo) & (v <= hi))) for v in (s.volumes()[1:] for s in states)]
    return float(np.mean(ok))


def f_frag(states: Sequence[CPMState], max_fragmented: int = 3, connectivity_order: int = 2) -> float:
    """Fraction of ``states`` with at most ``max_fragmented`` cells in more than one piece (pieces
    joined through neighbours of order ``connectivity_order``: 2 = Moore, 1 = von Neumann)."""
    return float(np.mean([fragmented_cells(s, connectivity_order) <= max_fragmented for s in states]))


def classifier_score(probs: np.ndarray, eps: float = 1e-12) -> float:
    """``exp(E_x KL(p(y|x) || p(y)))`` for class probabilities ``[n_samples, n_classes]``."""
    p = np.clip(np.asarray(probs, float), eps, 1.0)
    p /= p.sum(1, keepdims=True)
    marg = p.mean(0)
    kl = (p * (np.log(p) - np.log(marg))).sum(1)
    return float(np.exp(kl.mean()))


def type_map_features(state: CPMState, cell_type: int = 2, size: int = 10) -> np.ndarray:
    """The fraction of each of ``size × size`` blocks covered by cells of ``cell_type``, ``[size²]``."""
    m = (state.types_map() == cell_type).astype(float)
    H, W = m.shape
    ys = np.linspace(0, H, size + 1).astype(int)
    xs = np.linspace(0, W, size + 1).astype(int)
    return np.array([[m[ys[i]:ys[i + 1], xs[j]:xs[j + 1]].mean() for j in range(size)] for i in range(size)]).ravel()


class DigitClassifier:
    """Multinomial logistic regression (scikit-learn) on block-averaged type-2 maps.

    Args:
        size: blocks per side of the features. c: inverse regularisation strength.
    """

    def __init__(self, size: int = 10, c: float = 1.0):
        from sklearn.linear_model import LogisticRegression

        self.size = int(size)
        self.model = LogisticRegression(C=c, max_iter=2000)

    def features(self, states: Sequence[CPMState]) -> np.ndarray:
        return np.stack([type_map_features(s, size=self.size) for s in states])

    def fit(self, states: Sequence[CPMState], labels: Sequence[int]) -> DigitClassifier:
        self.model.fit(self.features(states), np.asarray(labels))
        return self

    def predict_proba(self, states: Sequence[CPMState]) -> np.ndarray:
        """Class probabilities ``[n_states, n_classes]``."""
        return self.model.predict_proba(self.features(states))

    def accuracy(self, states: Sequence[CPMState], labels: Sequence[int]) -> float:
        return float(self.model.score(self.features(states), np.asarray(labels)))


def _cluster_frame(state: CPMState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(centre [ndim], coordinates [n, ndim], types [n])`` of the non-medium sites: the centre in
    lattice coordinates, the coordinates unwrapped about it.

    On a periodic lattice the centre is found from the circular mean per axis and every site is
    taken at its minimal image about it (exact for a compact cluster smaller than half the lattice).
    """
    tmap = state.types_map()
    idx = np.argwhere(tmap > 0).astype(float)
    types = tmap[tmap > 0]
    c = np.zeros(idx.shape[1])
    if state.lattice.periodic:
        L = np.array(state.lattice.shape, float)
        ang = 2.0 * np.pi * idx / L
        c = np.arctan2(np.sin(ang).mean(0), np.cos(ang).mean(0)) * L / (2.0 * np.pi)
        d = idx - c
        idx = d - L * np.round(d / L)
    m = idx.mean(0)
    return c + m, idx - m, types


def _cell_coordinates(state: CPMState) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates of the non-medium sites ``[n, ndim]`` unwrapped about their centroid, and their types ``[n]``."""
    return _cluster_frame(state)[1:]


def principal_axis_field(state: CPMState, cell_type: int = 2) -> np.ndarray:
    """``((x − c)·u / R)²`` at every site ``x`` (shape of the lattice): the squared coordinate along the
    principal axis ``u`` of the ``cell_type`` sites (as in :func:`bipolar_ratio`), about the cluster's
    centroid ``c`` (periodic lattices: minimal image), in units of the radius ``R = sqrt(n / π)`` of a
    disc of the cluster's ``n`` sites. About 1 at the cluster's edge on the axis, 0 across its middle.
    """
    centre, x, t = _cluster_frame(state)
    u = np.linalg.eigh(np.cov(x[t == cell_type].T))[1][:, -1]
    grid = np.indices(state.sigma.shape, dtype=float).reshape(state.sigma.ndim, -1).T - centre
    if state.lattice.periodic:
        L = np.array(state.lattice.shape, float)
        grid -= L * np.round(grid / L)
    r = np.sqrt(len(x) / np.pi)
    return ((grid @ u / r) ** 2).reshape(state.sigma.shape)


def bipolar_ratio(state: CPMState, cell_type: int = 2) -> float:
    r"""Variance ratio of a bipolar axis: how far the ``cell_type`` sites spread along their own axis.

    Take the coordinates of all cell (non-medium) sites, unwrapped about their centroid (periodic
    lattices: minimal image about the circular mean); find the principal axis u of the covariance
    of the ``cell_type`` sites (its top eigenvector) and return

    .. math:: \mathrm{Var}_u(\text{type sites}) / \mathrm{Var}_u(\text{all cell sites}),

    each variance about its own mean. Type sites at both ends of the cluster (a bipolar axis)
    give clearly > 1 (a round cluster with a cap of a quarter of its area at each end: 1.78); a
    compact pole at one side or a core give < 1 (one quarter cap: 0.74; the inner half: 0.5; a
    half-disc gives 1.0); a random type assignment gives ≈ 1, a little above with few large cells
    because u picks the type's widest direction (20 of 40 random Voronoi cells: 1.16 ± 0.13).
    NaN when the state has fewer than two sites of ``cell_type``.
    """
    x, t = _cell_coordinates(state)
    sel = x[t == cell_type]
    if len(sel) < 2:
        return float("nan")
    u = np.linalg.eigh(np.cov(sel.T))[1][:, -1]
    return float(np.var(sel @ u) / np.var(x @ u))


def mean_bipolar_ratio(states: Sequence[CPMState], cell_type: int = 2) -> float:
    """Mean :func:`bipolar_ratio` over ``states``."""
    return float(np.mean([bipolar_ratio(s, cell_type) for s in states]))
