"""Published CPM scenarios: Graner–Glazier cell sorting, the six sorting regimes, NeuralCPM data.

Each builder returns ``(state, hamiltonian)`` ready for a sampler; sizes are parameters so the
experiments can run published and reduced sizes with the same code.

- :func:`graner_glazier` — Graner & Glazier (1992): dark (type 1) and light (type 2) cells,
  J(d,d) = 2, J(d,l) = 11, J(l,l) = 14, J(·,medium) = 16, λ = 1, T = 10, target area 40,
  Moore contacts (order 2). With the published J and T and contacts up to fourth-nearest
  neighbours (order 4, 20 neighbours) the surface term outweighs λ = 1: cells shrink to ~57 %
  of their target area and sorting freezes near a heterotypic fraction of 0.21, so order 2 is
  the default (``contact_order=4`` remains available).
- :data:`REGIMES` / :func:`sorting_regime` — the six regimes of Glazier & Graner (1993) as
  tabulated in Morpheus' "simplified cell sorting" model, and :func:`classify_regime`, which
  names the end state from observables.
- :func:`neuralcpm_sorting` — the NeuralCPM cell-sorting data (types A and B).
- :func:`cellular_digit` — NeuralCPM's cellular digits (N2).
- :func:`bipolar_axis` — NeuralCPM's bipolar axis (N3): type-2 cells pulled to two opposite poles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from oncodyn.cpm.hamiltonians import (
    Chemotaxis,
    Contact,
    ExternalPotential,
    Hamiltonian,
    Volume,
)
from oncodyn.cpm.lattice import CPMState, Lattice, voronoi_blob


def contact_matrix(j11: float, j22: float, j12: float, j1m: float, j2m: float) -> np.ndarray:
    """J for medium (0) and two cell types, ``[3, 3]``."""
    return np.array([[0.0, j1m, j2m], [j1m, j11, j12], [j2m, j12, j22]])


def aggregate(shape, n_cells: int, volume: float, rng: np.random.Generator, periodic: bool = True,
              fill: float = 1.0) -> CPMState:
    """A round confluent aggregate of ``n_cells`` cells of about ``volume`` sites, 50/50 types."""
    return voronoi_blob(Lattice(tuple(shape), periodic), n_cells, volume, rng, (0.5, 0.5), fill=fill)


# ----------------------------------------------------------------------------- Graner–Glazier


GG_J = contact_matrix(j11=2.0, j22=14.0, j12=11.0, j1m=16.0, j2m=16.0)
#: Attempts per site in one MCS of Graner & Glazier (1992) (spec: paper MCS = 16 N attempts).
GG_PAPER_MCS = 16.0


def graner_glazier(shape=(100, 100), n_cells: int = 150, target: float = 40.0, temperature: float = 10.0,
                   lam: float = 1.0, contact_order: int = 2, copy_order: int = 2, seed: int = 0
                   ) -> tuple[CPMState, Hamiltonian]:
    """The Graner–Glazier sorting aggregate: ``n_cells`` cells (half dark, half light) of area ``target``."""
    rng = np.random.default_rng(seed)
    state = aggregate(shape, n_cells, target, rng)
    ham = Hamiltonian((Contact(GG_J, order=contact_order), Volume(lam=lam, target=target)),
                      temperature=temperature, copy_order=copy_order)
    return state, ham


# ----------------------------------------------------------------------------- six regimes


@dataclass(frozen=True)
class Regime:
    """One row of the sorting phase diagram: contact energies, temperature, λ."""

    name: str
    j11: float
    j22: float
    j12: float
    j1m: float
    j2m: float
    temperature: float
    lam: float = 1.0

    @property
    def J(self) -> np.ndarray:
        return contact_matrix(self.j11, self.j22, self.j12, self.j1m, self.j2m)


REGIMES: dict[str, Regime] = {r.name: r for r in (
    Regime("checkerboard", 10, 8, 6, 12, 12, 10),
    Regime("separation", 6, 6, 16, 12, 6, 2),
    Regime("engulfment", 14, 2, 11, 16, 16, 2),
    Regime("reversal", 14, 2, 11, 30, 16, 2),
    Regime("dispersal 1", 14, 2, 9, 16, 16, 5),
    Regime("dispersal 2", 14, 4, 11, 2, 16, 5),
)}


def sorting_regime(name: str, shape=(100, 100), n_cells: int = 120, target: float = 40.0,
                   contact_order: int = 2, copy_order: int = 2, seed: int = 0) -> tuple[CPMState, Hamiltonian]:
    """An aggregate under the contact energies of regime ``name`` (a key of :data:`REGIMES`)."""
    if name not in REGIMES:
        raise ValueError(f"regime must be one of {list(REGIMES)}, got {name!r}")
    r = REGIMES[name]
    state = aggregate(shape, n_cells, target, np.random.default_rng(seed))
    ham = Hamiltonian((Contact(r.J, order=contact_order), Volume(lam=r.lam, target=target)),
                      temperature=r.temperature, copy_order=copy_order)
    return state, ham


def regime_features(state: CPMState) -> dict[str, float]:
    """End-state observables of a two-type aggregate (4-neighbour boundaries).

    ``heterotypic_fraction`` (type-1/type-2 share of the cell–cell border), ``medium_contact_t{1,2}``
    (share of each type's border that faces the medium), ``surface_share_t2`` (type 2's share of
    the aggregate's outer border), ``n_fragmented``.
    """
    from oncodyn.cpm.observables import boundary_by_type, summary

    o = summary(state, order=1)
    b = boundary_by_type(state, order=1)
    outer = b[1, 0] + b[2, 0]
    return {"heterotypic_fraction": o["heterotypic_fraction"], "medium_contact_t1": o["medium_contact_t1"],
            "medium_contact_t2": o["medium_contact_t2"], "surface_share_t2": float(b[2, 0] / outer) if outer else 0.0,
            "n_fragmented": o["n_fragmented"]}


def classify_regime(f: dict[str, float]) -> str:
    """Name the end state of a two-type aggregate from :func:`regime_features`.

    Decision list, each test one property of the end state:

    1. more unlike than like cell–cell border (heterotypic fraction > 0.55) → checkerboard;
    2. type-1 cells have left the aggregate (≥ 40 % of their border is medium) → dispersal 2;
    3. type 1 is enclosed (≤ 2 % of its border is medium) and type 2 faces the medium → reversal;
    4. type 2 is enclosed completely (≤ 1 % of its border is medium) by a layer of type-1 cells → dispersal 1
       (at T = 5 the weak type-1/type-2 tension lets the type-1 cells spread over the whole surface);
    5. otherwise the aggregate is sorted with both types at the surface: *separation* when it is well
       sorted and type 2 holds much of the surface (heterotypic − 0.2 × type-2 surface share < 0.18),
       else *engulfment* (type 1 covering most of type 2, which still reaches the surface in places).
    """
    het, m1, m2 = f["heterotypic_fraction"], f["medium_contact_t1"], f["medium_contact_t2"]
    if het > 0.55:
        return "checkerboard"
    if m1 >= 0.4:
        return "dispersal 2"
    if m1 <= 0.02 and m2 >= 0.05:
        return "reversal"
    if m2 <= 0.01:
        return "dispersal 1"
    if het - 0.2 * f["surface_share_t2"] < 0.18:
        return "separation"
    return "engulfment"


# ----------------------------------------------------------------------------- NeuralCPM data


NEURALCPM_TYPES = {
    "A": contact_matrix(j11=0.3333, j22=0.2667, j12=0.2, j1m=0.5, j2m=0.5),
    "B": contact_matrix(j11=1.0, j22=1.0, j12=4.5, j1m=2.5, j2m=1.0),
}
NEURALCPM_LAMBDA = {"A": 0.1, "B": 0.5}


def neuralcpm_sorting(kind: str, shape=(200, 200), n_cells: int = 100, target: float = 200.0,
                      temperature: float = 1.0, seed: int = 0) -> tuple[CPMState, Hamiltonian]:
    """NeuralCPM's cell-sorting ground truth (type ``"A"`` or ``"B"``), Moore neighbourhood, 50/50 types."""
    if kind not in NEURALCPM_TYPES:
        raise ValueError(f"kind must be 'A' or 'B', got {kind!r}")
    state = aggregate(shape, n_cells, target, np.random.default_rng(seed))
    ham = Hamiltonian((Contact(NEURALCPM_TYPES[kind], order=2), Volume(lam=NEURALCPM_LAMBDA[kind], target=target)),
                      temperature=temperature, copy_order=2)
    return state, ham


# ----------------------------------------------------------------------------- NeuralCPM cellular digits


DIGIT_J = contact_matrix(j11=3.0, j22=3.0, j12=8.0, j1m=6.0, j2m=6.0)


def digit_potential(image: np.ndarray, shape=(100, 100), threshold: float = 8.0, margin: int = 10) -> np.ndarray:
    """Φ for a digit: the Euclidean distance (sites) to the binarised, upscaled digit (0 on it).

    Args:
        image: a grey-level digit ``[h, w]`` (scikit-learn's 8×8 digits hold 0–16).
        shape: lattice shape; the digit is upscaled by whole factors to fill it up to ``margin``.
        threshold: grey level at which a pixel belongs to the digit.
    """
    from scipy import ndimage

    img = np.asarray(image, float)
    mask = img >= threshold
    if not mask.any():
        raise ValueError(f"the digit image has no pixel >= threshold {threshold}")
    f = min((shape[0] - 2 * margin) // img.shape[0], (shape[1] - 2 * margin) // img.shape[1])
    if f < 1:
        raise ValueError(f"lattice {shape} is too small for a {img.shape} digit with margin {margin}")
    big = np.kron(mask, np.ones((f, f), bool))
    m = np.zeros(shape, bool)
    o0, o1 = (shape[0] - big.shape[0]) // 2, (shape[1] - big.shape[1]) // 2
    m[o0:o0 + big.shape[0], o1:o1 + big.shape[1]] = big
    return ndimage.distance_transform_edt(~m)


def cellular_digit(image: np.ndarray, shape=(100, 100), n_cells: int = 50, target: float = 100.0,
                   mu: float = 2.0, temperature: float = 2.0, seed: int = 0) -> tuple[CPMState, Hamiltonian]:
    """NeuralCPM's "cellular digits": type-2 cells drawn into a digit by an external potential.

    Spec: 50 cells, 100×100, V* = 100, J11 = J22 = 3, J12 = 8, J(·,m) = 6, potential = distance
    transform of the binarised digit coupled to type 2. The spec gives no coupling or
    temperature; ``mu`` (energy per site per site of distance) and ``temperature`` are our
    choice: over 60 snapshots of 1,000 classic MCS (``oncodyn run neuralcpm-digits-data``), μ = 2,
    T = 2 gave no fragmented states and held-out classifier accuracy 0.80 (μ = 1, T = 4: half the
    states fragmented; μ = 1, T = 2: accuracy 0.53).
    """
    phi = digit_potential(image, shape)
    state = aggregate(shape, n_cells, target, np.random.default_rng(seed))
    ham = Hamiltonian((Contact(DIGIT_J, order=2), Volume(lam=1.0, target=target),
                       ExternalPotential(phi, [0.0, 0.0, mu])), temperature=temperature, copy_order=2)
    return state, ham


# ----------------------------------------------------------------------------- NeuralCPM bipolar axis


#: Contact energies of N3 for the generator's three types: 1, and type 2 split into the groups
#: 2 (pole +) and 3 (pole −), which are one biological type (J(same type) = 6 among all of them).
BIPOLAR_J = np.array([[0.0, 16.0, 16.0, 16.0],
                      [16.0, 6.0, 16.0, 16.0],
                      [16.0, 16.0, 6.0, 6.0],
                      [16.0, 16.0, 6.0, 6.0]])


def bipolar_poles(shape, n_cells: int, target: float, rng: np.random.Generator,
                  distance: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The poles P± = centre ± d·u of a centred 2D aggregate: u at a uniform random angle, d its radius by default."""
    if len(shape) != 2:
        raise ValueError(f"the bipolar axis is 2D, got shape {tuple(shape)}")
    centre = np.array([(s - 1) / 2 for s in shape], float)
    d = float(np.sqrt(n_cells * target / np.pi)) if distance is None else float(distance)
    a = rng.uniform(0.0, 2.0 * np.pi)
    u = np.array([np.cos(a), np.sin(a)])
    return centre + d * u, centre - d * u


def bipolar_types(cell_type: np.ndarray) -> np.ndarray:
    """The two biological types of a :func:`bipolar_axis` state: generator type 3 (pole −) → 2."""
    t = np.array(cell_type, np.int32, copy=True)
    t[t == 3] = 2
    return t


def bipolar_axis(shape=(120, 120), n_cells: int = 40, target: float = 150.0, mu: float = 2.0,
                 temperature: float = 4.0, lam: float = 1.0, pole_distance: float = 0.8, seed: int = 0
                 ) -> tuple[CPMState, Hamiltonian]:
    """NeuralCPM N3 ground truth: type-2 cells pulled to two opposite poles of a random cluster.

    Spec: 40 cells (20 + 20) from a random cluster, J(·,m) = 16, J(same type) = 6, J(1,2) = 16,
    V* = 150, "directed motion towards assigned poles". The rest is our choice:

    - the start is :func:`aggregate` (exactly half type 1, half type 2 for even ``n_cells``);
    - poles P± = centre ± d·u, u at a uniform random angle, d = ``pole_distance`` × R with
      R = sqrt(n_cells·V*/π) the cluster's radius (:func:`bipolar_poles`); half the type-2 cells
      (at random) go to P+ (generator type 2), the others to P− (generator type 3);
    - the directed motion is the external potential μ·|r − P±| (Euclidean distance in sites, plain
      coordinates of the centred cluster) on the sites of each group:
      ``ExternalPotential(|r − P+|, μ on type 2)`` plus the same for P− as
      ``Chemotaxis(form="potential")`` with χ = −μ on type 3 (a Hamiltonian holds one term of
      each kind; the potential form of chemotaxis is exactly an external potential);
    - types 2 and 3 are one biological type: J = 6 among them (2–2, 3–3 and 2–3), J(1,·) = 16 to
      both; Moore contacts and copies (order 2); λ_V = ``lam`` = 1. :func:`bipolar_types` maps
      the generator's types to the two of the data (3 → 2).

    ``pole_distance``, ``mu`` and ``temperature`` come from a sweep, each over 16 snapshots of
    5,000 classic MCS at 120×120 (``oncodyn run neuralcpm-bipolar-data --set n_snapshots=16
    --set pole_distance=PD --set mu=MU --set temperature=T``); variance ratio
    (:func:`oncodyn.cpm.sample_metrics.bipolar_ratio`, random starts 1.14), fragmented cells per
    state, states whose cluster reaches across the periodic boundary:

    ======  ===  ===  =====  =======  =======
    PD      μ    T    ratio  frag.    across
    ======  ===  ===  =====  =======  =======
    0.65    1    4    1.48   0.31     0
    0.65    2    4    1.60   0.50     0
    0.65    2    5    1.59   0.69     0
    0.65    2    6    1.60   1.62     0
    0.8     2    3    1.84   0.06     0
    0.8     2    4    1.82   0.12     0
    0.8     2    5    1.81   0.75     0
    1.0     1    4    1.72   0.31     7
    1.0     2    4    1.88   0.25     7
    ======  ===  ===  =====  =======  =======

    With d = R the two type-2 groups settle half outside the cluster and on 120×120 the
    cluster joins its periodic image in 7 of 16 states; T ≥ 5 fragments more cells; T = 3 does as
    well as T = 4, which we keep for its larger membrane fluctuations. Defaults: PD = 0.8, μ = 2,
    T = 4 (two compact type-2 caps at opposite ends of a type-1 body, the cluster clear of the
    boundary by ≥ 10 sites). 2D only.
    """
    rng = np.random.default_rng(seed)
    state = aggregate(shape, n_cells, target, rng)
    radius = float(np.sqrt(n_cells * target / np.pi))
    p_plus, p_minus = bipolar_poles(shape, n_cells, target, rng, pole_distance * radius)
    t2 = np.flatnonzero(state.cell_type == 2)
    minus = rng.choice(t2, len(t2) // 2, replace=False)
    state.cell_type[minus] = 3
    yy, xx = np.indices(tuple(shape))

    def dist(p):
        return np.hypot(yy - p[0], xx - p[1])

    ham = Hamiltonian((Contact(BIPOLAR_J, order=2), Volume(lam=lam, target=target, n_types=3),
                       ExternalPotential(dist(p_plus), [0.0, 0.0, mu, 0.0]),
                       Chemotaxis(dist(p_minus), [0.0, 0.0, 0.0, -mu], form="potential")),
                      temperature=temperature, copy_order=2)
    state.meta["poles"] = np.stack([p_plus, p_minus])
    return state, ham
