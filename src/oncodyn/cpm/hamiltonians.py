r"""Hamiltonian terms of the cellular Potts model, composable, each with a full and a local form.

Every term has

- ``energy(state) -> float``: the term evaluated over the whole lattice (vectorised NumPy);
- ``delta(state, copy) -> float``: the change of the term when the id of the *source* site is
  copied into the *target* site, ``copy = (target, source)`` as flat site indices, written as
  the local formula a reader can check by hand (neighbours of the target only, plus the
  volumes/perimeters of the two cells involved).

The compiled samplers evaluate the same local formulas in :mod:`oncodyn.cpm.kernels`; a test
holds ``delta`` equal to the difference of two ``energy`` calls and the kernels equal to ``delta``.

Conventions (ids: 0 = medium, c = cell; τ(c) its type, τ(0) = 0):

- **contact** :math:`H = s\sum_{\{x,y\}} J(\tau(\sigma_x),\tau(\sigma_y))\,[\sigma_x\ne\sigma_y]`, each
  *unordered* neighbour pair counted once, ``s`` = ``scale`` (1 by default; codes that divide
  by the number of neighbours use ``scale = 1/n``, so published J can be used as given).
  Pairs with the wall of a walled lattice count as pairs with the medium.
- **volume** :math:`\sum_c \lambda_V(\tau_c)(V_c - V^*_c)^2` (medium excluded).
- **perimeter** :math:`\sum_c \lambda_P(\tau_c)(P_c - P^*_c)^2`, :math:`P_c` = number of (site in c,
  neighbour not in c) pairs in the term's neighbourhood (wall neighbours count).
- **external potential** :math:`\sum_x \mu_{\tau(\sigma_x)}\Phi(x)`.
- **chemotaxis**: form ``"copy"`` (Savill–Hogeweg, as in the spec): a copy from source y into
  target x changes H by :math:`-\chi_{\tau(\sigma_y)}(c(x) - c(y))`. This is a driving force, not
  the difference of a state function, so it has no ``energy``; form ``"potential"`` is the
  state function :math:`-\sum_x \chi_{\tau(\sigma_x)} c(x)` (an external potential in c).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from oncodyn.cpm.lattice import CPMState, neighbourhood_size


def _per_type(value, n_types: int, name: str, nonneg: bool = True) -> np.ndarray:
    """A scalar or a per-type sequence ``[n_types + 1]`` (entry 0 = medium) as float64."""
    v = np.asarray(value, float)
    if nonneg and np.any(v < 0):
        raise ValueError(f"{name} must be >= 0, got {value}")
    if v.ndim == 0:
        out = np.full(n_types + 1, float(v))
        out[0] = 0.0
        return out
    if v.shape != (n_types + 1,):
        raise ValueError(f"{name} must be a scalar or have n_types + 1 = {n_types + 1} entries (entry 0 = medium), "
                         f"got shape {v.shape}")
    return v.copy()


def _check_types(state: CPMState, n_types: int, what: str) -> None:
    if state.n_types > n_types:
        raise ValueError(f"{what} is set for {n_types} cell types but the state has types up to {state.n_types}")


@dataclass(frozen=True, eq=False)
class Contact:
    """Adhesion: cost ``scale · J[τ, τ']`` per unordered neighbour pair of different ids.

    Attributes:
        J: symmetric ``[n_types + 1, n_types + 1]`` matrix (row/column 0 = medium), energy units.
        order: neighbourhood order (1–4).
        scale: factor on every pair (1 = each pair once; ``1/n_neighbours`` for codes that normalise).
    """

    J: np.ndarray
    order: int = 2
    scale: float = 1.0

    def __post_init__(self):
        J = np.asarray(self.J, float)
        if J.ndim != 2 or J.shape[0] != J.shape[1] or J.shape[0] < 2:
            raise ValueError(f"Contact.J must be a square matrix of size n_types + 1 >= 2, got shape {J.shape}")
        if not np.allclose(J, J.T):
            raise ValueError("Contact.J must be symmetric")
        if not 1 <= self.order <= 4:
            raise ValueError(f"Contact.order must be 1..4, got {self.order}")
        object.__setattr__(self, "J", J)

    @property
    def n_types(self) -> int:
        return self.J.shape[0] - 1

    def energy(self, state: CPMState) -> float:
        _check_types(state, self.n_types, "Contact.J")
        nb = state.lattice.neighbour_table(self.order)
        sig = _with_wall(state)
        t = np.append(state.cell_type, 0)
        s0 = sig[:-1, None]
        s1 = sig[nb]
        pair = self.J[t[s0], t[s1]] * (s0 != s1)
        wall = nb == state.lattice.n_sites
        # interior pairs are seen from both ends; pairs with the wall only from the inside
        return float(self.scale * (0.5 * pair[~wall].sum() + pair[wall].sum()))

    def delta(self, state: CPMState, copy: tuple[int, int]) -> float:
        x, y = copy
        sig = _with_wall(state)
        t = np.append(state.cell_type, 0)
        a, b = sig[y], sig[x]
        d = 0.0
        for z in state.lattice.neighbour_table(self.order)[x]:
            s = sig[z]
            d += (self.J[t[a], t[s]] if s != a else 0.0) - (self.J[t[b], t[s]] if s != b else 0.0)
        return float(self.scale * d)


@dataclass(frozen=True, eq=False)
class _PerCellQuadratic:
    """A term ``Σ_c λ(τ_c) (X_c − X*(τ_c))²`` with λ and X* per type (scalars or ``[n_types + 1]``)."""

    lam: object = 1.0
    target: object = 100.0
    n_types: int = 2

    def __post_init__(self):
        name = type(self).__name__
        n = max([self.n_types] + [np.size(v) - 1 for v in (self.lam, self.target) if np.ndim(v)])
        object.__setattr__(self, "n_types", int(n))
        object.__setattr__(self, "lam", _per_type(self.lam, n, f"{name}.lam"))
        object.__setattr__(self, "target", _per_type(self.target, n, f"{name}.target"))

    def cell_arrays(self, state: CPMState) -> tuple[np.ndarray, np.ndarray]:
        """(λ, X*) per cell id ``[n_cells + 1]``, 0 for the medium."""
        _check_types(state, self.n_types, type(self).__name__)
        lam, tgt = self.lam[state.cell_type], self.target[state.cell_type]
        lam[0] = tgt[0] = 0.0
        return lam, tgt


@dataclass(frozen=True, eq=False)
class Volume(_PerCellQuadratic):
    """Volume constraint ``λ_V (V_c − V*)²`` per cell.

    Attributes:
        lam: λ_V per type (scalar or ``[n_types + 1]``), energy / site².
        target: V* per type (scalar or ``[n_types + 1]``), sites.
        n_types: number of cell types the per-type values cover (inferred from array inputs).
    """

    def energy(self, state: CPMState) -> float:
        lam, tgt = self.cell_arrays(state)
        v = state.volumes()
        return float(np.sum(lam[1:] * (v[1:] - tgt[1:]) ** 2))

    def delta(self, state: CPMState, copy: tuple[int, int]) -> float:
        x, y = copy
        sig = state.sigma.ravel()
        a, b = sig[y], sig[x]
        lam, tgt = self.cell_arrays(state)
        d = 0.0
        if a != 0:
            va = np.count_nonzero(sig == a)
            d += lam[a] * ((va + 1 - tgt[a]) ** 2 - (va - tgt[a]) ** 2)
        if b != 0:
            vb = np.count_nonzero(sig == b)
            d += lam[b] * ((vb - 1 - tgt[b]) ** 2 - (vb - tgt[b]) ** 2)
        return float(d)


@dataclass(frozen=True, eq=False)
class Perimeter(_PerCellQuadratic):
    """Perimeter (2D) / surface (3D) constraint ``λ_P (P_c − P*)²``.

    Attributes:
        lam: λ_P per type (scalar or ``[n_types + 1]``), energy / pair².
        target: P* per type, in neighbour pairs of the term's neighbourhood.
        n_types: number of cell types the per-type values cover.
        order: neighbourhood order used to count P (1–4).
    """

    target: object = 50.0
    order: int = 2

    def __post_init__(self):
        if not 1 <= self.order <= 4:
            raise ValueError(f"Perimeter.order must be 1..4, got {self.order}")
        super().__post_init__()

    def perimeters(self, state: CPMState) -> np.ndarray:
        """P per id ``[n_cells + 1]`` (:func:`oncodyn.cpm.observables.perimeters`; entry 0 unused)."""
        from oncodyn.cpm.observables import perimeters

        return perimeters(state, self.order)

    def energy(self, state: CPMState) -> float:
        lam, tgt = self.cell_arrays(state)
        p = self.perimeters(state)
        return float(np.sum(lam[1:] * (p[1:] - tgt[1:]) ** 2))

    def delta(self, state: CPMState, copy: tuple[int, int]) -> float:
        x, y = copy
        sig = _with_wall(state)
        a, b = sig[y], sig[x]
        nbx = sig[state.lattice.neighbour_table(self.order)[x]]
        n = len(nbx)
        lam, tgt = self.cell_arrays(state)
        p = self.perimeters(state)
        d = 0.0
        if a != 0:  # x joins a: x adds its n − m_a foreign pairs, a's m_a neighbours lose one each
            dpa = n - 2 * np.count_nonzero(nbx == a)
            d += lam[a] * ((p[a] + dpa - tgt[a]) ** 2 - (p[a] - tgt[a]) ** 2)
        if b != 0:  # x leaves b: its n − m_b foreign pairs go, b's m_b neighbours gain one each
            dpb = 2 * np.count_nonzero(nbx == b) - n
            d += lam[b] * ((p[b] + dpb - tgt[b]) ** 2 - (p[b] - tgt[b]) ** 2)
        return float(d)


def _validate_field_term(term, coupling: str) -> None:
    """Store ``term.field`` and the per-type ``coupling`` as float arrays; both must be well formed."""
    name = type(term).__name__
    object.__setattr__(term, "field", np.asarray(term.field, float))
    values = np.asarray(getattr(term, coupling), float)
    if values.ndim != 1 or len(values) < 2:
        raise ValueError(f"{name}.{coupling} must list one value per type, entry 0 = medium")
    if not np.all(np.isfinite(term.field)):
        raise ValueError(f"{name}.field must be finite")
    object.__setattr__(term, coupling, values)


def _check_field_term(term, coupling: str, state: CPMState) -> None:
    """The field must cover the state's lattice and the coupling its cell types."""
    name = type(term).__name__
    if term.field.shape != state.lattice.shape:
        raise ValueError(f"{name}.field has shape {term.field.shape}, the lattice {state.lattice.shape}")
    _check_types(state, len(getattr(term, coupling)) - 1, f"{name}.{coupling}")


@dataclass(frozen=True, eq=False)
class ExternalPotential:
    """``Σ_x μ_{τ(σ_x)} Φ(x)``: a field over the lattice with a coupling per type.

    Attributes:
        field: Φ, shape of the lattice (energy per unit μ).
        mu: coupling per type ``[n_types + 1]`` (entry 0 = medium; may be negative).
    """

    field: np.ndarray
    mu: object = None

    def __post_init__(self):
        _validate_field_term(self, "mu")

    def _check(self, state: CPMState) -> None:
        _check_field_term(self, "mu", state)

    def energy(self, state: CPMState) -> float:
        self._check(state)
        return float(np.sum(self.mu[state.types_map()] * self.field))

    def delta(self, state: CPMState, copy: tuple[int, int]) -> float:
        self._check(state)
        x, y = copy
        t = state.cell_type[state.sigma.ravel()[[y, x]]]
        return float(self.field.ravel()[x] * (self.mu[t[0]] - self.mu[t[1]]))


@dataclass(frozen=True, eq=False)
class Chemotaxis:
    """Chemotaxis toward a field ``c`` with a strength per type.

    Attributes:
        field: c, shape of the lattice.
        chi: χ per type ``[n_types + 1]`` (entry 0 = medium), energy per unit c; > 0 = attraction.
        form: ``"copy"`` — ΔH = −χ_{τ(source)} (c(target) − c(source)), a non-conservative drive
            (no ``energy``); ``"potential"`` — H = −Σ_x χ_{τ(σ_x)} c(x), a true energy.
    """

    field: np.ndarray
    chi: object = None
    form: str = "copy"

    def __post_init__(self):
        _validate_field_term(self, "chi")
        if self.form not in ("copy", "potential"):
            raise ValueError(f"Chemotaxis.form must be 'copy' or 'potential', got {self.form!r}")

    def _check(self, state: CPMState) -> None:
        _check_field_term(self, "chi", state)

    def energy(self, state: CPMState) -> float:
        self._check(state)
        if self.form == "copy":
            raise TypeError("Chemotaxis(form='copy') is a driving force without an energy; use "
                            "form='potential' for a state function")
        return float(-np.sum(self.chi[state.types_map()] * self.field))

    def delta(self, state: CPMState, copy: tuple[int, int]) -> float:
        self._check(state)
        x, y = copy
        c = self.field.ravel()
        ta, tb = state.cell_type[state.sigma.ravel()[[y, x]]]
        if self.form == "copy":
            return float(-self.chi[ta] * (c[x] - c[y]))
        return float(-c[x] * (self.chi[ta] - self.chi[tb]))


@dataclass(frozen=True, eq=False)
class CellField:
    """``Σ_x F[σ_x, x]``: an energy per (cell id, site) — each cell, and the medium (id 0), has its own field.

    The first-order (linearised) energy of a network on per-cell encodings has this form (see
    :func:`oncodyn.cpm.neural.gradient_field`): a copy of cell ``a`` into site x held by ``b``
    costs ``F[a, x] − F[b, x]``. The ids must not change while it is in use.

    Attributes:
        field: F, shape ``[n_cells + 1, *lattice shape]`` (energy units; row 0 = medium).
    """

    field: np.ndarray

    def __post_init__(self):
        f = np.asarray(self.field, float)
        if f.ndim < 2 or len(f) < 1:
            raise ValueError(f"CellField.field must be [n_cells + 1, *lattice shape], got shape {f.shape}")
        if not np.all(np.isfinite(f)):
            raise ValueError("CellField.field must be finite")
        object.__setattr__(self, "field", f)

    def _check(self, state: CPMState) -> None:
        want = (state.n_cells + 1, *state.lattice.shape)
        if self.field.shape != want:
            raise ValueError(f"CellField.field has shape {self.field.shape}; this state needs {want}")

    def energy(self, state: CPMState) -> float:
        self._check(state)
        f = self.field.reshape(len(self.field), -1)
        return float(f[state.sigma.ravel(), np.arange(f.shape[1])].sum())

    def delta(self, state: CPMState, copy: tuple[int, int]) -> float:
        self._check(state)
        x, y = copy
        sig = state.sigma.ravel()
        f = self.field.reshape(len(self.field), -1)
        return float(f[sig[y], x] - f[sig[x], x])


def _with_wall(state: CPMState) -> np.ndarray:
    """Flat ids with one extra entry for the wall site, id ``n_cells + 1`` (type 0)."""
    return np.append(state.sigma.ravel(), state.n_cells + 1).astype(np.int64)


class KernelParams(NamedTuple):
    """The Hamiltonian as arrays for the compiled kernels (see :mod:`oncodyn.cpm.kernels`).

    ``nbr`` [N, n_max] int32; ``ctype`` [n_cells + 2] (last = wall, type 0); ``J`` scaled
    [n_types + 1]²; per-cell ``lam_v``, ``v_t``, ``lam_p``, ``p_t`` [n_cells + 2]; ``phi``,
    ``chem`` [N] or empty; ``mu``, ``chi`` per type; ``cfield`` [n_cells + 2, N] (last row: the
    wall, zero) or empty [0, 0]; ints ``n_prop``, ``n_contact``, ``n_perim``,
    ``chem_form`` (0 copy, 1 potential); ``temperature``.
    """

    nbr: np.ndarray
    ctype: np.ndarray
    J: np.ndarray
    lam_v: np.ndarray
    v_t: np.ndarray
    lam_p: np.ndarray
    p_t: np.ndarray
    phi: np.ndarray
    mu: np.ndarray
    chem: np.ndarray
    chi: np.ndarray
    cfield: np.ndarray
    n_prop: int
    n_contact: int
    n_perim: int
    chem_form: int
    temperature: float


TERMS = (Contact, Volume, Perimeter, ExternalPotential, Chemotaxis, CellField)


@dataclass(frozen=True, eq=False)
class Hamiltonian:
    """A sum of terms at a temperature, with the copy neighbourhood of the kinetics.

    Attributes:
        terms: the terms (at most one of each kind).
        temperature: T > 0 (energy units); a copy is accepted with min(1, exp(−ΔH/T)) (× the
            Hastings factor in the exact samplers).
        copy_order: neighbourhood order (1–4) from which the source of a copy is drawn.
    """

    terms: tuple = ()
    temperature: float = 1.0
    copy_order: int = 2

    def __post_init__(self):
        object.__setattr__(self, "terms", tuple(self.terms))
        if not self.temperature > 0:
            raise ValueError(f"Hamiltonian.temperature must be > 0, got {self.temperature}")
        if not 1 <= self.copy_order <= 4:
            raise ValueError(f"Hamiltonian.copy_order must be 1..4, got {self.copy_order}")
        kinds = [type(t) for t in self.terms]
        for t in self.terms:
            if not isinstance(t, TERMS):
                raise TypeError(f"unknown Hamiltonian term {t!r}; terms are {[k.__name__ for k in TERMS]}")
        if len(set(kinds)) != len(kinds):
            raise ValueError("at most one term of each kind")

    def term(self, kind):
        """The term of class ``kind`` or ``None``."""
        return next((t for t in self.terms if isinstance(t, kind)), None)

    def energy(self, state: CPMState) -> float:
        """Sum of the terms' energies (``Chemotaxis(form='copy')`` has none and raises)."""
        return float(sum(t.energy(state) for t in self.terms))

    def delta(self, state: CPMState, copy: tuple[int, int]) -> float:
        """ΔH of copying ``sigma[source]`` into ``target``; ``copy = (target, source)`` flat indices."""
        return float(sum(t.delta(state, copy) for t in self.terms))

    def orders(self) -> tuple[int, int, int]:
        """Neighbourhood orders of (copy, contact, perimeter); 0 where a term is absent."""
        c, p = self.term(Contact), self.term(Perimeter)
        return self.copy_order, (c.order if c else 0), (p.order if p else 0)

    def compile(self, state: CPMState) -> KernelParams:
        """The arrays the compiled samplers read, for this state's lattice and cells."""
        lat, nd = state.lattice, state.lattice.ndim
        o_copy, o_con, o_per = self.orders()
        nbr = lat.neighbour_table(max(o_copy, o_con, o_per))
        n_types = state.n_types
        wall = lambda arr: np.append(arr, 0.0).astype(np.float64)  # noqa: E731
        ctype = np.append(state.cell_type, 0).astype(np.int32)
        c = self.term(Contact)
        if c is not None:
            _check_types(state, c.n_types, "Contact.J")
            J = c.scale * c.J
        else:
            J = np.zeros((n_types + 1, n_types + 1))
        zeros = np.zeros(state.n_cells + 1)
        v = self.term(Volume)
        lam_v, v_t = v.cell_arrays(state) if v is not None else (zeros, zeros)
        p = self.term(Perimeter)
        lam_p, p_t = p.cell_arrays(state) if p is not None else (zeros, zeros)
        e = self.term(ExternalPotential)
        if e is not None:
            e._check(state)
        ch = self.term(Chemotaxis)
        if ch is not None:
            ch._check(state)
        empty = np.zeros(0)
        cf = self.term(CellField)
        if cf is not None:
            cf._check(state)
            cfield = np.zeros((state.n_cells + 2, lat.n_sites))
            cfield[:-1] = cf.field.reshape(state.n_cells + 1, -1)
        else:
            cfield = np.zeros((0, 0))
        return KernelParams(
            nbr=nbr, ctype=ctype, J=np.ascontiguousarray(J, np.float64),
            lam_v=wall(lam_v), v_t=wall(v_t), lam_p=wall(lam_p), p_t=wall(p_t),
            phi=e.field.ravel().astype(np.float64) if e is not None else empty,
            mu=e.mu.astype(np.float64) if e is not None else empty,
            chem=ch.field.ravel().astype(np.float64) if ch is not None else empty,
            chi=ch.chi.astype(np.float64) if ch is not None else empty, cfield=cfield,
            n_prop=neighbourhood_size(nd, o_copy), n_contact=neighbourhood_size(nd, o_con) if o_con else 0,
            n_perim=neighbourhood_size(nd, o_per) if o_per else 0,
            chem_form=0 if ch is None or ch.form == "copy" else 1, temperature=float(self.temperature))
