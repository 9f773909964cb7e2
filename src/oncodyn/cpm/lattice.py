"""The CPM lattice, the state of a cellular Potts model, and initialisers.

A :class:`Lattice` is a 2D square or 3D cubic grid of sites, periodic or walled. Its
neighbourhoods are ordered by distance: order ``k`` holds every offset whose squared length is
among the ``k`` smallest non-zero values (2D: 4, 8, 12, 20 neighbours for orders 1–4; 3D: 6,
18, 26, 32). Because offsets are sorted by length, the order-``k`` neighbourhood is a prefix of
the order-``k+1`` one, so one neighbour table serves every term.

A :class:`CPMState` is the integer lattice ``sigma`` (0 = medium, ``c`` = cell ``c``) and the
type of every cell (``cell_type[0] = 0`` for the medium). Walls: a walled lattice is surrounded
by a frozen wall that behaves as medium in every energy term and is never copied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

MAX_ORDER = 4


def neighbour_offsets(ndim: int, order: int) -> np.ndarray:
    """Offsets of the order-``order`` neighbourhood, sorted by length, shape ``[n, ndim]``.

    Within one distance shell the offsets come in ± pairs in a fixed order, so the set is
    symmetric (``d`` in it ⇔ ``-d`` in it), which the pair energies rely on.
    """
    if ndim not in (2, 3):
        raise ValueError(f"ndim must be 2 or 3, got {ndim}")
    if not 1 <= order <= MAX_ORDER:
        raise ValueError(f"neighbourhood order must be 1..{MAX_ORDER}, got {order}")
    r = 2
    grid = np.stack(np.meshgrid(*[np.arange(-r, r + 1)] * ndim, indexing="ij"), -1).reshape(-1, ndim)
    d2 = (grid ** 2).sum(1)
    shells = np.unique(d2[d2 > 0])[:order]
    keep = np.isin(d2, shells)
    off, d2 = grid[keep], d2[keep]
    idx = np.lexsort((*off.T[::-1], d2))
    return off[idx].astype(np.int64)


def neighbourhood_size(ndim: int, order: int) -> int:
    """Number of neighbours of the order-``order`` neighbourhood."""
    return len(neighbour_offsets(ndim, order))


@dataclass(frozen=True)
class Lattice:
    """A square (2D) or cubic (3D) lattice.

    Attributes:
        shape: sites per axis, ``(H, W)`` or ``(D, H, W)``; one site = one length unit (pixel).
        periodic: wrap around every axis (a torus); otherwise a wall surrounds the lattice.
    """

    shape: tuple[int, ...]
    periodic: bool = True

    def __post_init__(self):
        shape = tuple(int(s) for s in self.shape)
        object.__setattr__(self, "shape", shape)
        if len(shape) not in (2, 3):
            raise ValueError(f"Lattice.shape must have 2 or 3 entries, got {shape}")
        if min(shape) < 2:
            raise ValueError(f"Lattice.shape entries must be >= 2, got {shape}")

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def n_sites(self) -> int:
        return int(np.prod(self.shape))

    def offsets(self, order: int) -> np.ndarray:
        """Neighbour offsets of the given order, ``[n, ndim]``."""
        return neighbour_offsets(self.ndim, order)

    def check_order(self, order: int, what: str = "order") -> None:
        """A periodic lattice must be wider than the neighbourhood (no site is its own neighbour)."""
        reach = int(np.abs(self.offsets(order)).max())
        if self.periodic and min(self.shape) <= 2 * reach:
            raise ValueError(f"{what}={order} reaches {reach} sites; a periodic lattice needs every side > "
                             f"{2 * reach}, got shape {self.shape}")

    @cached_property
    def _tables(self) -> dict:
        return {}

    def neighbour_table(self, order: int = MAX_ORDER) -> np.ndarray:
        """Flat neighbour indices, ``[n_sites, n]`` int32, sites in C order.

        Neighbours outside a walled lattice point to the wall site, index ``n_sites``.
        """
        if order not in self._tables:
            self.check_order(order)
            off = self.offsets(order)
            coords = np.indices(self.shape).reshape(self.ndim, -1).T  # [N, ndim]
            nb = coords[:, None, :] + off[None, :, :]
            shape = np.array(self.shape)
            if self.periodic:
                nb %= shape
                flat = np.ravel_multi_index(tuple(np.moveaxis(nb, -1, 0)), self.shape)
            else:
                inside = np.all((nb >= 0) & (nb < shape), axis=-1)
                nbc = np.clip(nb, 0, shape - 1)
                flat = np.ravel_multi_index(tuple(np.moveaxis(nbc, -1, 0)), self.shape)
                flat = np.where(inside, flat, self.n_sites)
            self._tables[order] = np.ascontiguousarray(flat, dtype=np.int32)
        return self._tables[order]

    def reach(self, order: int) -> int:
        """Largest coordinate shift of the order-``order`` neighbourhood (sites)."""
        return int(np.abs(self.offsets(order)).max())


@dataclass
class CPMState:
    """A CPM configuration.

    Attributes:
        lattice: the lattice.
        sigma: cell id per site, int32, shape ``lattice.shape`` (0 = medium).
        cell_type: type per cell id, int32 ``[n_cells + 1]``; ``cell_type[0] = 0`` (medium).
        mcs: elapsed time in Monte Carlo steps (one MCS = ``n_sites`` copy attempts).
    """

    lattice: Lattice
    sigma: np.ndarray
    cell_type: np.ndarray
    mcs: float = 0.0
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.sigma = np.ascontiguousarray(self.sigma, dtype=np.int32)
        self.cell_type = np.ascontiguousarray(self.cell_type, dtype=np.int32)
        if self.sigma.shape != self.lattice.shape:
            raise ValueError(f"sigma has shape {self.sigma.shape}, the lattice {self.lattice.shape}")
        if self.cell_type.ndim != 1 or len(self.cell_type) < 1 or self.cell_type[0] != 0:
            raise ValueError("cell_type must be 1-D with cell_type[0] = 0 (the medium)")
        if self.sigma.min() < 0 or self.sigma.max() >= len(self.cell_type):
            raise ValueError(f"sigma holds ids outside 0..{len(self.cell_type) - 1} (cell_type has "
                             f"{len(self.cell_type)} entries)")
        if np.any(self.cell_type[1:] < 1):
            raise ValueError("cell types of cells (ids >= 1) must be >= 1; type 0 is the medium")

    @property
    def n_cells(self) -> int:
        return len(self.cell_type) - 1

    @property
    def n_types(self) -> int:
        """Number of cell types (not counting the medium)."""
        return int(self.cell_type.max())

    def copy(self) -> CPMState:
        return CPMState(self.lattice, self.sigma.copy(), self.cell_type.copy(), self.mcs, dict(self.meta))

    def volumes(self) -> np.ndarray:
        """Sites per id, ``[n_cells + 1]`` (entry 0 = medium)."""
        return np.bincount(self.sigma.ravel(), minlength=len(self.cell_type))

    def types_map(self) -> np.ndarray:
        """Type per site, shape ``lattice.shape``."""
        return self.cell_type[self.sigma]

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"sigma": self.sigma, "cell_type": self.cell_type, "mcs": np.array(self.mcs),
                "shape": np.array(self.lattice.shape), "periodic": np.array(self.lattice.periodic)}

    @classmethod
    def from_arrays(cls, d: dict[str, np.ndarray]) -> CPMState:
        lat = Lattice(tuple(int(s) for s in d["shape"]), bool(d["periodic"]))
        return cls(lat, d["sigma"], d["cell_type"], float(d["mcs"]))


# ----------------------------------------------------------------------------- initialisers


def _types_for(n_cells: int, type_fractions, rng: np.random.Generator) -> np.ndarray:
    fr = np.asarray(type_fractions, float)
    if np.any(fr < 0) or fr.sum() <= 0:
        raise ValueError(f"type_fractions must be >= 0 with a positive sum, got {list(fr)}")
    counts = np.floor(fr / fr.sum() * n_cells).astype(int)
    counts[np.argsort(-(fr / fr.sum() * n_cells - counts))[: n_cells - counts.sum()]] += 1
    types = np.repeat(np.arange(1, len(fr) + 1), counts)
    rng.shuffle(types)
    return np.concatenate([[0], types]).astype(np.int32)


def _coords(lattice: Lattice) -> np.ndarray:
    return np.indices(lattice.shape).reshape(lattice.ndim, -1).T.astype(float)


def _distance2(lattice: Lattice, pts: np.ndarray, centre: np.ndarray) -> np.ndarray:
    d = pts - centre
    if lattice.periodic:
        L = np.array(lattice.shape, float)
        d -= L * np.round(d / L)
    return (d ** 2).sum(-1)


def random_seeds_in_disc(lattice: Lattice, n_cells: int, radius: float, rng: np.random.Generator,
                         type_fractions=(0.5, 0.5), centre=None) -> CPMState:
    """``n_cells`` one-site seeds at distinct random sites inside a disc/ball of ``radius`` sites.

    The cells then grow to their target volumes under the volume term.
    """
    if n_cells < 1:
        raise ValueError(f"n_cells must be >= 1, got {n_cells}")
    pts = _coords(lattice)
    c = np.array(centre if centre is not None else [(s - 1) / 2 for s in lattice.shape], float)
    inside = np.flatnonzero(_distance2(lattice, pts, c) <= radius ** 2)
    if len(inside) < n_cells:
        raise ValueError(f"a disc of radius {radius} holds {len(inside)} sites, fewer than n_cells={n_cells}")
    sites = rng.choice(inside, n_cells, replace=False)
    sigma = np.zeros(lattice.n_sites, np.int32)
    sigma[sites] = np.arange(1, n_cells + 1)
    return CPMState(lattice, sigma.reshape(lattice.shape), _types_for(n_cells, type_fractions, rng))


def voronoi_blob(lattice: Lattice, n_cells: int, volume: float, rng: np.random.Generator,
                 type_fractions=(0.5, 0.5), centre=None, fill: float = 1.0) -> CPMState:
    """A confluent aggregate: a disc/ball of ``n_cells · volume · fill`` sites, split into cells.

    The cells are the Voronoi regions of ``n_cells`` random seed points inside the aggregate,
    so every cell starts with about ``volume · fill`` sites and the aggregate has no gaps.
    """
    if n_cells < 1 or volume <= 0:
        raise ValueError(f"n_cells must be >= 1 and volume > 0, got {n_cells}, {volume}")
    total = n_cells * volume * fill
    if total > lattice.n_sites:
        raise ValueError(f"{n_cells} cells of volume {volume} need {total:.0f} sites; the lattice has {lattice.n_sites}")
    pts = _coords(lattice)
    c = np.array(centre if centre is not None else [(s - 1) / 2 for s in lattice.shape], float)
    d2 = _distance2(lattice, pts, c)
    inside = np.argsort(d2, kind="stable")[: int(round(total))]
    seeds = pts[rng.choice(inside, n_cells, replace=False)]
    from scipy.spatial import cKDTree

    if lattice.periodic:
        tree = cKDTree(seeds % np.array(lattice.shape), boxsize=np.array(lattice.shape, float))
    else:
        tree = cKDTree(seeds)
    _, owner = tree.query(pts[inside])
    sigma = np.zeros(lattice.n_sites, np.int32)
    sigma[inside] = owner + 1
    state = CPMState(lattice, sigma.reshape(lattice.shape), _types_for(n_cells, type_fractions, rng))
    return _drop_empty(state)


def discs(lattice: Lattice, centres, radius: float, types, clip: bool = True) -> CPMState:
    """Cells as discs/balls of ``radius`` sites at ``centres`` (``[n, ndim]``) with ``types`` ``[n]``.

    Where discs overlap, the later cell wins; cells left empty raise an error.
    """
    centres = np.atleast_2d(np.asarray(centres, float))
    types = np.asarray(types, np.int32)
    if centres.shape[1] != lattice.ndim or len(types) != len(centres):
        raise ValueError(f"centres must be [n, {lattice.ndim}] and types [n], got {centres.shape}, {types.shape}")
    pts = _coords(lattice)
    sigma = np.zeros(lattice.n_sites, np.int32)
    for i, c in enumerate(centres):
        sigma[_distance2(lattice, pts, c) <= radius ** 2] = i + 1
    state = CPMState(lattice, sigma.reshape(lattice.shape), np.concatenate([[0], types]))
    vol = state.volumes()[1:]
    if np.any(vol == 0):
        raise ValueError(f"cells {list(np.flatnonzero(vol == 0) + 1)} are empty (overlapped or radius < 0.5)")
    return state


def from_array(sigma: np.ndarray, cell_type, periodic: bool = True) -> CPMState:
    """A state from an id image (``[H, W]`` or ``[D, H, W]`` of cell ids) and types per id.

    ``cell_type`` is ``[n_cells + 1]`` with entry 0 = 0, or a mapping id -> type. Ids need not be
    contiguous; they are relabelled 1..n in increasing order.
    """
    sigma = np.asarray(sigma)
    if not np.issubdtype(sigma.dtype, np.integer):
        raise ValueError(f"sigma must hold integer ids, got dtype {sigma.dtype}")
    ids = np.unique(sigma)
    ids = ids[ids != 0]
    if isinstance(cell_type, dict):
        types = np.array([0] + [int(cell_type[int(i)]) for i in ids], np.int32)
    else:
        ct = np.asarray(cell_type)
        types = np.concatenate([[0], ct[ids]]).astype(np.int32)
    relabel = np.zeros(int(sigma.max()) + 1, np.int32)
    relabel[ids] = np.arange(1, len(ids) + 1)
    return CPMState(Lattice(sigma.shape, periodic), relabel[sigma], types)


def from_image(path, periodic: bool = False, background=None) -> CPMState:
    """A state from a picture of cells (PNG/JPEG…): every connected patch of one colour is a cell.

    The colours other than the background are the cell types, numbered 1, 2, … in the order of
    their first appearance in the image (row-major); ``background`` (an RGB(A) tuple in 0–255,
    default: the most frequent colour) is the medium. Patches are 4-connected.
    """
    from PIL import Image
    from scipy import ndimage

    img = np.asarray(Image.open(path).convert("RGB"), dtype=np.int64)
    code = (img[..., 0] << 16) | (img[..., 1] << 8) | img[..., 2]
    colours, first, counts = np.unique(code, return_index=True, return_counts=True)
    if background is None:
        bg = colours[np.argmax(counts)]
    else:
        r, g, b = (int(v) for v in tuple(background)[:3])
        bg = (r << 16) | (g << 8) | b
    cell_colours = [c for _, c in sorted(zip(first, colours)) if c != bg]
    if not cell_colours:
        raise ValueError(f"{path}: the image holds only the background colour")
    sigma = np.zeros(code.shape, np.int32)
    types = [0]
    for t, c in enumerate(cell_colours, start=1):
        lab, n = ndimage.label(code == c)
        sigma[lab > 0] = lab[lab > 0] + len(types) - 1
        types += [t] * n
    return CPMState(Lattice(sigma.shape, periodic), sigma, np.array(types, np.int32))


def _drop_empty(state: CPMState) -> CPMState:
    vol = state.volumes()
    keep = np.flatnonzero(vol[1:] > 0) + 1
    if len(keep) == state.n_cells:
        return state
    relabel = np.zeros(len(vol), np.int32)
    relabel[keep] = np.arange(1, len(keep) + 1)
    return CPMState(state.lattice, relabel[state.sigma], np.concatenate([[0], state.cell_type[keep]]))
