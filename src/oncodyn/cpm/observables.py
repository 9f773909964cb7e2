"""Observables of a cellular Potts configuration: sizes, boundaries, sorting, connectivity, motion.

Every function is a pure, vectorised function of a :class:`~oncodyn.cpm.lattice.CPMState`
(2D or 3D, periodic or walled) and returns NumPy arrays or floats; nothing loops over sites.

Neighbour pairs. A *pair* is an unordered pair of sites ``{x, y}`` with ``y - x`` in the
order-``order`` neighbourhood (see :func:`~oncodyn.cpm.lattice.neighbour_offsets`), each
pair counted once. On a walled lattice a site ``x`` whose neighbour ``x + d`` lies outside
forms one pair with the wall for every such offset ``d``, exactly as in
:meth:`Lattice.neighbour_table`; the wall behaves as medium (id 0, type 0), so a cell–wall pair
is a cell–medium pair and a medium–wall pair is no boundary at all. A pair is a *boundary
pair* when its two ids differ. Boundary lengths below are numbers of boundary pairs (lattice
units: one pair = one bond of the chosen neighbourhood).

Cell sorting (Graner & Glazier, PRL 69, 2013 (1992)). Two cell types sort when homotypic
contacts replace heterotypic ones; :func:`heterotypic_fraction`, :func:`sorting_index`, the
medium contact per type and the number of same-type clusters (see :func:`summary`) together
tell apart checkerboard, sorting/separation, engulfment (and its reversal) and dispersal.
"""

from __future__ import annotations

import numpy as np

from oncodyn.cpm.lattice import CPMState, neighbour_offsets

# ----------------------------------------------------------------------------- neighbour pairs


def _half_offsets(ndim: int, order: int) -> np.ndarray:
    """One offset of each ± pair of the order-``order`` neighbourhood, ``[n / 2, ndim]``."""
    off = neighbour_offsets(ndim, order)
    first = off[np.arange(len(off)), np.argmax(off != 0, axis=1)]
    return off[first > 0]


def _shifted_pairs(a: np.ndarray, periodic: bool, order: int, pad_value: int = 0):
    """Yield ``(u, v)`` flat arrays: the values at ``x`` and ``x + d`` for every pair of sites.

    Each unordered pair is produced once (one offset of each ± pair). Walled: the array is
    padded with ``pad_value`` (the wall) by the neighbourhood reach, so pairs with the outside
    come out as ``(value, pad_value)`` or ``(pad_value, value)``, and wall–wall pairs (equal
    values) come out too; callers keep only pairs of unequal values or drop the pad value.
    """
    half = _half_offsets(a.ndim, order)
    if periodic:
        for d in half:
            yield a.ravel(), np.roll(a, tuple(-int(k) for k in d), axis=tuple(range(a.ndim))).ravel()
        return
    r = int(np.abs(half).max())
    p = np.pad(a, r, constant_values=pad_value)
    n = p.shape
    for d in half:
        lo = tuple(slice(max(0, -k), n[i] - max(0, k)) for i, k in enumerate(d))
        hi = tuple(slice(max(0, k), n[i] - max(0, -k)) for i, k in enumerate(d))
        yield p[lo].ravel(), p[hi].ravel()


def _boundary_pairs(state: CPMState, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Ids ``(a, b)`` of every boundary pair (``a != b``), wall pairs as id 0, ``[n_pairs]`` each."""
    state.lattice.check_order(order)
    aa, bb = [], []
    for u, v in _shifted_pairs(state.sigma, state.lattice.periodic, order, pad_value=0):
        m = u != v
        aa.append(u[m])
        bb.append(v[m])
    return np.concatenate(aa), np.concatenate(bb)


def _cell_contacts(state: CPMState, order: int) -> dict[str, np.ndarray]:
    """Per-id boundary counts from one pass over the pairs, each ``[n_cells + 1]``.

    ``perimeter``: boundary pairs of the id; ``cell``: those with another cell (medium and wall
    excluded); ``same``: those with another cell of the same type; ``medium``: those with the
    medium or the wall. Also ``matrix``: :func:`boundary_by_type`.
    """
    a, b = _boundary_pairs(state, order)
    n = len(state.cell_type)
    ct = state.cell_type
    ta, tb = ct[a], ct[b]
    cc = (a > 0) & (b > 0)
    same = cc & (ta == tb)
    med = (a == 0) | (b == 0)

    def per_id(mask):
        return (np.bincount(a[mask], minlength=n) + np.bincount(b[mask], minlength=n)).astype(np.int64)

    nt = int(ct.max()) + 1
    m = np.bincount(ta * nt + tb, minlength=nt * nt).reshape(nt, nt).astype(np.int64)
    matrix = m + m.T - np.diag(np.diag(m))
    perim = per_id(slice(None))
    return {"perimeter": perim, "cell": per_id(cc), "same": per_id(same), "medium": per_id(med),
            "matrix": matrix}


# ----------------------------------------------------------------------------- sizes and boundaries


def volumes(state: CPMState) -> np.ndarray:
    """Sites per id, int64 ``[n_cells + 1]``; entry 0 = medium sites (site units)."""
    return np.bincount(state.sigma.ravel(), minlength=len(state.cell_type)).astype(np.int64)


def perimeters(state: CPMState, order: int = 2) -> np.ndarray:
    """Boundary length per id, int64 ``[n_cells + 1]``.

    Entry ``c >= 1``: the number of pairs (site in cell ``c``, order-``order`` neighbour not in
    cell ``c``), wall neighbours included (they count as 'not in the cell'). Entry 0: the same
    for the medium with the wall counted as medium, i.e. the total number of cell–medium and
    cell–wall pairs (the length of the aggregate's outer surface plus enclosed medium).

    Args:
        state: the configuration.
        order: neighbourhood order 1–4 (2D 4/8/12/20 neighbours, 3D 6/18/26/32).
    """
    a, b = _boundary_pairs(state, order)
    n = len(state.cell_type)
    return (np.bincount(a, minlength=n) + np.bincount(b, minlength=n)).astype(np.int64)


def boundary_by_type(state: CPMState, order: int = 2) -> np.ndarray:
    """Boundary pairs counted by the types of their two sites, int64 ``[n_types+1, n_types+1]``.

    ``B[s, t] = B[t, s]`` is the number of unordered neighbour pairs ``{x, y}`` with
    ``sigma(x) != sigma(y)`` whose types are ``{s, t}`` (medium and wall = type 0). Pairs
    between two different cells of the same type ``t`` count in ``B[t, t]``; ``B[0, 0] = 0``.
    The total number of boundary pairs is the sum of the upper triangle, diagonal included.
    """
    return _cell_contacts(state, order)["matrix"]


def _heterotypic(matrix: np.ndarray, include_medium: bool) -> float:
    cells = matrix[1:, 1:]
    hetero = float(np.triu(cells, 1).sum())
    total = float(np.triu(cells).sum())
    if include_medium:
        total += float(matrix[0, 1:].sum())
    return hetero / total if total > 0 else float("nan")


def heterotypic_fraction(state: CPMState, order: int = 2, include_medium: bool = False) -> float:
    """Fraction of the cell–cell boundary that is between cells of different types.

    With ``B`` = :func:`boundary_by_type`, the heterotypic boundary is ``sum_{1<=s<t} B[s, t]``
    (pairs of two cells of different non-medium types) and the cell–cell boundary is
    ``sum_{1<=s<=t} B[s, t]`` (pairs of two different cells, whatever their types; medium
    excluded). With ``include_medium=True`` the denominator also counts the cell–medium pairs
    ``sum_{t>=1} B[0, t]``. This is the heterotypic boundary length of Graner & Glazier's cell
    sorting: for two mixed types of equal numbers it starts near 0.5 (order-1 checkerboard of
    one-site cells: 1) and falls towards 0 as the types sort. NaN when the denominator is 0.
    """
    return _heterotypic(boundary_by_type(state, order), include_medium)


def _sorting(c: dict) -> float:
    cells = slice(1, None)
    n_cc = c["cell"][cells]
    ok = n_cc > 0
    if not ok.any():
        return float("nan")
    return float(np.mean(c["same"][cells][ok] / n_cc[ok]))


def sorting_index(state: CPMState, order: int = 2) -> float:
    """Mean homotypic neighbour fraction of the cells.

    For every cell, the fraction of its boundary pairs with other cells (medium and wall
    excluded) that are with cells of its own type; the mean is over cells having at least one
    cell neighbour (NaN if none). About the majority fraction of a random mix (0.5 for 50/50),
    tends to 1 as the types sort into homotypic clusters, below 0.5 for checkerboard order.
    """
    return _sorting(_cell_contacts(state, order))


# ----------------------------------------------------------------------------- connectivity


def _components(ids: np.ndarray, periodic: bool, order: int) -> tuple[int, np.ndarray]:
    """Connected components of the regions of equal value of ``ids``.

    Two neighbouring sites (order-``order`` neighbourhood, wrapped when periodic, never through
    the wall) are connected when their values are equal. Returns the number of components and
    the component label per site (flat, C order).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = ids.size
    idx = np.arange(n, dtype=np.int32).reshape(ids.shape)
    # the index array is padded with -1 (outside) so that pairs with the wall are dropped
    ii, jj = [], []
    for (u, v), (p, q) in zip(_shifted_pairs(ids, periodic, order, pad_value=-1),
                              _shifted_pairs(idx, periodic, order, pad_value=-1)):
        m = (u == v) & (p >= 0) & (q >= 0)
        ii.append(p[m])
        jj.append(q[m])
    i, j = np.concatenate(ii), np.concatenate(jj)
    g = coo_matrix((np.ones(len(i), np.int8), (i, j)), shape=(n, n)).tocsr()
    return connected_components(g, directed=False)


def _count_components(ids: np.ndarray, periodic: bool, order: int, n_values: int) -> np.ndarray:
    """Number of connected components of each value ``0..n_values-1`` of ``ids``."""
    n_comp, labels = _components(ids, periodic, order)
    value = np.zeros(n_comp, np.int64)
    value[labels] = ids.ravel()
    return np.bincount(value, minlength=n_values)[:n_values]


def components_per_cell(state: CPMState, connectivity_order: int = 1) -> np.ndarray:
    """Number of connected pieces of every id, int64 ``[n_cells + 1]``.

    Sites of one id are connected through neighbours of order ``connectivity_order`` (1: faces
    only, 4-/6-connectivity; 2: also edges, 8-/18-connectivity), across the wrap of a periodic
    lattice but never through the wall. A vanished cell has 0 components. Entry 0: the number
    of connected medium regions inside the lattice (the wall does not connect them).

    All ids are labelled at once as the connected components of the graph of equal-id
    neighbour pairs (:func:`scipy.sparse.csgraph.connected_components`).
    """
    return _count_components(state.sigma, state.lattice.periodic, connectivity_order, len(state.cell_type))


def fragmented_cells(state: CPMState, connectivity_order: int = 1) -> int:
    """Number of cells (ids >= 1) in more than one connected piece."""
    return int(np.sum(components_per_cell(state, connectivity_order)[1:] > 1))


def type_clusters(state: CPMState, connectivity_order: int = 1) -> np.ndarray:
    """Number of connected clusters of every type, int64 ``[n_types + 1]``.

    A cluster of type ``t`` is a connected component of the union of the sites of all type-``t``
    cells (neighbours of order ``connectivity_order``, periodic wrap respected, never through
    the wall). Entry 0: connected medium regions. Fully sorted types give 1 cluster each.
    """
    return _count_components(state.types_map(), state.lattice.periodic, connectivity_order,
                             int(state.cell_type.max()) + 1)


# ----------------------------------------------------------------------------- positions and motion


def centres_of_mass(state: CPMState) -> np.ndarray:
    """Centre of every id, float ``[n_cells + 1, ndim]`` in site units (axis order of sigma).

    Walled lattices: the plain mean of the site coordinates. Periodic lattices: per axis, the
    circular mean (mean angle ``2π x / L``) gives a reference inside the cell; site coordinates
    are then taken by minimum image relative to it and averaged, so a cell straddling the
    boundary gets its true centre (exact for cells narrower than half the lattice), reported
    in ``[0, L)``. Entry 0 (medium) and vanished cells are NaN.
    """
    sigma = state.sigma.ravel()
    n = len(state.cell_type)
    shape = state.lattice.shape
    vol = np.bincount(sigma, minlength=n).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        inv = 1.0 / vol
    out = np.empty((n, len(shape)))
    for ax, L in enumerate(shape):
        x = np.broadcast_to(
            np.arange(L, dtype=float).reshape([-1 if i == ax else 1 for i in range(len(shape))]), shape).ravel()
        if not state.lattice.periodic:
            out[:, ax] = np.bincount(sigma, x, minlength=n) * inv
            continue
        th = 2 * np.pi * x / L
        ref = np.arctan2(np.bincount(sigma, np.sin(th), minlength=n),
                         np.bincount(sigma, np.cos(th), minlength=n)) * L / (2 * np.pi)
        dx = x - ref[sigma]
        dx -= L * np.round(dx / L)
        out[:, ax] = np.mod(ref + np.bincount(sigma, dx, minlength=n) * inv, L)
    out[vol == 0] = np.nan
    out[0] = np.nan
    return out


def msd(com_series, shape=None, periodic: bool = False) -> np.ndarray:
    """Mean squared displacement of the cell centres from the first time, ``[n_times]``.

    Args:
        com_series: centres ``[n_times, n_cells + 1, ndim]`` (e.g. stacked
            :func:`centres_of_mass`); entry 0 (medium) is ignored.
        shape: lattice shape (sites per axis), needed when ``periodic``.
        periodic: unwrap the centres by minimum image between consecutive times (a cell may move
            less than half the lattice between two records).
    Returns:
        ``MSD(t) = mean_c |r_c(t) - r_c(0)|^2`` in squared site units, over the cells with
        finite centres at ``t`` and 0 (NaN where none); ``MSD(0) = 0``.
    """
    c = np.asarray(com_series, float)
    if c.ndim != 3:
        raise ValueError(f"com_series must be [n_times, n_cells + 1, ndim], got shape {c.shape}")
    c = c[:, 1:]
    if periodic:
        if shape is None:
            raise ValueError("msd: periodic=True needs the lattice shape")
        L = np.asarray(shape, float)
        if L.shape != (c.shape[-1],):
            raise ValueError(f"msd: shape must have {c.shape[-1]} entries, got {tuple(shape)}")
        step = np.diff(c, axis=0)
        step -= L * np.round(step / L)
        disp = np.concatenate([np.zeros_like(c[:1]), np.cumsum(step, axis=0)])
    else:
        disp = c - c[:1]
    d2 = (disp ** 2).sum(-1)
    out = np.full(len(c), np.nan)
    ok = np.isfinite(d2)
    cnt = ok.sum(1)
    np.divide(np.where(ok, d2, 0.0).sum(1), cnt, out=out, where=cnt > 0)
    return out


# ----------------------------------------------------------------------------- summary


def summary(state: CPMState, order: int = 2) -> dict[str, float]:
    """Scalar observables of a configuration (one pass over the pairs, two labellings).

    Keys:
        ``heterotypic_fraction``: :func:`heterotypic_fraction` (medium excluded).
        ``heterotypic_fraction_medium``: the same with cell–medium pairs in the denominator.
        ``sorting_index``: :func:`sorting_index`.
        ``mean_volume``, ``std_volume``: over cells 1..n (vanished cells count as 0), sites.
        ``mean_perimeter``: mean of :func:`perimeters` over cells 1..n (order ``order``).
        ``n_fragmented``: :func:`fragmented_cells` (connectivity order 1).
        ``n_empty``: vanished cells (volume 0).
        ``medium_contact_t{t}``: for each type ``t >= 1``, the fraction of the boundary of the
            type-``t`` cells that is with the medium (or the wall); NaN when they have none.
        ``n_clusters_t{t}``: connected clusters of type-``t`` sites, :func:`type_clusters`.

    Signatures of the sorting regimes (two types): checkerboard — high heterotypic fraction,
    sorting index < 0.5; sorting/separation — both types in few clusters, low heterotypic
    fraction; engulfment — the enclosed type has medium contact near 0, the enveloping type's
    high (reversal: the other way round); dispersal — many clusters, high medium contact.
    """
    c = _cell_contacts(state, order)
    vol = volumes(state)[1:].astype(float)
    out = {
        "heterotypic_fraction": _heterotypic(c["matrix"], False),
        "heterotypic_fraction_medium": _heterotypic(c["matrix"], True),
        "sorting_index": _sorting(c),
        "mean_volume": float(vol.mean()) if len(vol) else float("nan"),
        "std_volume": float(vol.std()) if len(vol) else float("nan"),
        "mean_perimeter": float(c["perimeter"][1:].mean()) if len(vol) else float("nan"),
        "n_fragmented": float(fragmented_cells(state, 1)),
        "n_empty": float(np.sum(vol == 0)),
    }
    n_types = int(state.cell_type.max()) + 1
    ct = state.cell_type
    per_type = np.bincount(ct, weights=c["perimeter"], minlength=n_types)
    med_type = np.bincount(ct, weights=c["medium"], minlength=n_types)
    clusters = type_clusters(state, 1)
    for t in range(1, n_types):
        out[f"medium_contact_t{t}"] = float(med_type[t] / per_type[t]) if per_type[t] > 0 else float("nan")
    for t in range(1, n_types):
        out[f"n_clusters_t{t}"] = float(clusters[t])
    return out
