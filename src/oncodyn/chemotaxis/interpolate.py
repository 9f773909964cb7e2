r"""Gradients of a field on cell-centred bins, evaluated at scattered points.

The particle--field (SIPF) solver of the PHKS model needs :math:`\nabla c` at every
particle, with :math:`c` known only at the bin centres of a :class:`~oncodyn.chemotaxis.phks.BinGrid`
(bin ``i`` centred at ``(i + 1/2) h``; fields ``[n] * d`` indexed ``[i_x, i_y(, i_z)]``).
Points ``x`` are ``[P, d]`` in the box ``[0, L]^d``; gradients come back ``[P, d]``
(field units / length).

Two interpolants:

* :func:`catmull_rom_gradient` -- the derivative of the tensor-product *local* cubic
  (Catmull--Rom, i.e. Keys' cubic convolution with a = -1/2) through the bin-centre values.
  It is C^1, reproduces quadratics (so the gradient is exact for them and O(h^2) in general)
  and needs only the 4^d values around each point: the cost is O(P 4^d), independent of
  the number of bins -- no global spline system is solved. Stencil indices outside
  ``[0, n-1]`` are mirrored about the wall (bin -1 -> 0, -2 -> 1, n -> n-1, n+1 -> n-2), the
  even reflection that matches the no-flux walls: the normal derivative is zero on them.
  The kernel is written by hand in numba (one fused loop per point, no [P, 4^d] gather
  temporaries); :func:`catmull_rom_gradient_reference` is the readable vectorised numpy
  version that the tests hold equal to it.
* :func:`spline_gradient` -- the classical path as published: SciPy's global cubic splines
  (``RectBivariateSpline`` in 2D, ``RegularGridInterpolator(method="cubic")`` in 3D), rebuilt
  from the whole field every call. Deliberately left unoptimised: it is the faithful,
  slow baseline the fast path is measured against.

Interpolators are objects with a ``name`` and ``gradient(field, h, x) -> [P, d]``
(:class:`Interpolator`); :func:`make_interpolator` builds one by name from
:data:`INTERPOLATORS`, and :func:`register_interpolator` adds more (e.g. a neural one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numba
import numpy as np

# ----------------------------------------------------------------------------------------
# Catmull--Rom (Keys a = -1/2) weights.
#
# With s = x / h - 1/2 the position in bin-centre index units, i = floor(s), t = s - i in
# [0, 1), the interpolant is sum_{k=-1..2} w_k(t) f[i + k] per axis, with
#   w_-1 = (-t^3 + 2t^2 - t) / 2,   w_0 = (3t^3 - 5t^2 + 2) / 2,
#   w_1  = (-3t^3 + 4t^2 + t) / 2,  w_2 = (t^3 - t^2) / 2,
# and the derivative d/dx = (1/h) d/dt.
# ----------------------------------------------------------------------------------------


def _weights(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Catmull--Rom weights and their t-derivatives at offsets ``t`` ``[P]``; each ``[P, 4]``."""
    t2, t3 = t * t, t * t * t
    w = 0.5 * np.stack([-t3 + 2 * t2 - t, 3 * t3 - 5 * t2 + 2, -3 * t3 + 4 * t2 + t, t3 - t2], axis=-1)
    dw = 0.5 * np.stack([-3 * t2 + 4 * t - 1, 9 * t2 - 10 * t, -9 * t2 + 8 * t + 1, 3 * t2 - 2 * t], axis=-1)
    return w, dw


def _mirror(j: np.ndarray, n: int) -> np.ndarray:
    """Mirror bin indices about the walls: -1 -> 0, -2 -> 1, n -> n-1, n+1 -> n-2."""
    j = np.where(j < 0, -1 - j, j)
    return np.where(j > n - 1, 2 * n - 1 - j, j)


def _check(field: np.ndarray, h: float, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    field = np.ascontiguousarray(field, dtype=np.float64)
    x = np.ascontiguousarray(x, dtype=np.float64)
    d = field.ndim
    if d not in (2, 3) or len(set(field.shape)) != 1 or field.shape[0] < 4:
        raise ValueError(f"field: must have shape [n]*d with d in (2, 3) and n >= 4, got {field.shape}")
    if x.ndim != 2 or x.shape[1] != d:
        raise ValueError(f"x: must have shape [P, {d}] for a {d}D field, got {x.shape}")
    if not h > 0:
        raise ValueError(f"h: must be > 0, got {h!r}")
    return field, x


def _axis_stencil(xa: np.ndarray, h: float, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mirrored stencil indices ``[P, 4]``, weights ``[P, 4]`` and d/dx weights ``[P, 4]`` along one axis."""
    s = np.clip(xa / h - 0.5, -0.5, n - 0.5)
    i = np.floor(s)
    w, dw = _weights(s - i)
    idx = _mirror(i.astype(np.int64)[:, None] + np.arange(-1, 3), n)
    return idx, w, dw / h


def _reference(field: np.ndarray, h: float, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Value ``[P]`` and gradient ``[P, d]`` by a vectorised gather of the 4^d stencil."""
    field, x = _check(field, h, x)
    d, n = field.ndim, field.shape[0]
    st = [_axis_stencil(x[:, a], h, n) for a in range(d)]
    # values[p, k_0, ..., k_{d-1}] = field[idx_0[p, k_0], ..., idx_{d-1}[p, k_{d-1}]]
    gather = tuple(st[a][0].reshape((-1,) + (1,) * a + (4,) + (1,) * (d - 1 - a)) for a in range(d))
    vals = field[gather]
    letters = "abc"[:d]
    spec = "p" + letters + "," + ",".join("p" + c for c in letters) + "->p"
    value = np.einsum(spec, vals, *[s[1] for s in st])
    grad = np.stack([np.einsum(spec, vals, *[st[b][2] if b == a else st[b][1] for b in range(d)])
                     for a in range(d)], axis=-1)
    return value, grad


# ----------------------------------------------------------------------------------------
# Compiled kernels: one pass per point, the 4 weights per axis computed in registers.
# Points are independent, so the loop is serial and deterministic; a threaded version
# gains little at P ~ 10^4 (the kernel is ~1 ms) and would fight the other workers.
# ----------------------------------------------------------------------------------------


@numba.njit(cache=True, inline="always")
def _nb_axis(xa, h, n, idx, w, dw):  # pragma: no cover - compiled
    s = xa / h - 0.5
    if s < -0.5:
        s = -0.5
    elif s > n - 0.5:
        s = n - 0.5
    fi = np.floor(s)
    t = s - fi
    i = int(fi)
    t2 = t * t
    t3 = t2 * t
    w[0] = 0.5 * (-t3 + 2.0 * t2 - t)
    w[1] = 0.5 * (3.0 * t3 - 5.0 * t2 + 2.0)
    w[2] = 0.5 * (-3.0 * t3 + 4.0 * t2 + t)
    w[3] = 0.5 * (t3 - t2)
    dw[0] = 0.5 * (-3.0 * t2 + 4.0 * t - 1.0) / h
    dw[1] = 0.5 * (9.0 * t2 - 10.0 * t) / h
    dw[2] = 0.5 * (-9.0 * t2 + 8.0 * t + 1.0) / h
    dw[3] = 0.5 * (3.0 * t2 - 2.0 * t) / h
    for k in range(4):
        j = i - 1 + k
        if j < 0:
            j = -1 - j
        if j > n - 1:
            j = 2 * n - 1 - j
        idx[k] = j


@numba.njit(cache=True)
def _cr2(field, h, x, value, grad):  # pragma: no cover - compiled
    n = field.shape[0]
    ix = np.empty(4, np.int64)
    iy = np.empty(4, np.int64)
    wx = np.empty(4)
    wy = np.empty(4)
    dx = np.empty(4)
    dy = np.empty(4)
    for p in range(x.shape[0]):
        _nb_axis(x[p, 0], h, n, ix, wx, dx)
        _nb_axis(x[p, 1], h, n, iy, wy, dy)
        v = 0.0
        gx = 0.0
        gy = 0.0
        for a in range(4):
            rv = 0.0
            rd = 0.0
            for b in range(4):
                f = field[ix[a], iy[b]]
                rv += wy[b] * f
                rd += dy[b] * f
            v += wx[a] * rv
            gx += dx[a] * rv
            gy += wx[a] * rd
        value[p] = v
        grad[p, 0] = gx
        grad[p, 1] = gy


@numba.njit(cache=True)
def _cr3(field, h, x, value, grad):  # pragma: no cover - compiled
    n = field.shape[0]
    ix = np.empty(4, np.int64)
    iy = np.empty(4, np.int64)
    iz = np.empty(4, np.int64)
    wx = np.empty(4)
    wy = np.empty(4)
    wz = np.empty(4)
    dx = np.empty(4)
    dy = np.empty(4)
    dz = np.empty(4)
    for p in range(x.shape[0]):
        _nb_axis(x[p, 0], h, n, ix, wx, dx)
        _nb_axis(x[p, 1], h, n, iy, wy, dy)
        _nb_axis(x[p, 2], h, n, iz, wz, dz)
        v = 0.0
        gx = 0.0
        gy = 0.0
        gz = 0.0
        for a in range(4):
            pv = 0.0  # sum_b wy * (sum_c wz f)
            py = 0.0  # sum_b dy * (sum_c wz f)
            pz = 0.0  # sum_b wy * (sum_c dz f)
            for b in range(4):
                rv = 0.0
                rd = 0.0
                for c in range(4):
                    f = field[ix[a], iy[b], iz[c]]
                    rv += wz[c] * f
                    rd += dz[c] * f
                pv += wy[b] * rv
                py += dy[b] * rv
                pz += wy[b] * rd
            v += wx[a] * pv
            gx += dx[a] * pv
            gy += wx[a] * py
            gz += wx[a] * pz
        value[p] = v
        grad[p, 0] = gx
        grad[p, 1] = gy
        grad[p, 2] = gz


def _compiled(field: np.ndarray, h: float, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    field, x = _check(field, h, x)
    value = np.empty(x.shape[0])
    grad = np.empty_like(x)
    (_cr2 if field.ndim == 2 else _cr3)(field, float(h), x, value, grad)
    return value, grad


def catmull_rom_gradient(field: np.ndarray, h: float, x: np.ndarray) -> np.ndarray:
    """Gradient of the Catmull--Rom interpolant of a bin field at scattered points (compiled).

    Args:
        field: values at the bin centres, ``[n] * d`` (d = 2, 3; n >= 4), any units.
        h: bin side (length); bin ``i`` is centred at ``(i + 1/2) h``.
        x: points ``[P, d]`` in ``[0, n h]^d`` (length); points outside are clamped to the box.

    Returns:
        ``[P, d]``, field units / length.
    """
    return _compiled(field, h, x)[1]


def catmull_rom_value(field: np.ndarray, h: float, x: np.ndarray) -> np.ndarray:
    """Value of the Catmull--Rom interpolant at ``x`` ``[P, d]`` (compiled); ``[P]``. Args as :func:`catmull_rom_gradient`."""
    return _compiled(field, h, x)[0]


def catmull_rom_gradient_reference(field: np.ndarray, h: float, x: np.ndarray) -> np.ndarray:
    """Readable numpy version of :func:`catmull_rom_gradient` (vectorised [P, 4^d] gather); ``[P, d]``."""
    return _reference(field, h, x)[1]


def catmull_rom_value_reference(field: np.ndarray, h: float, x: np.ndarray) -> np.ndarray:
    """Readable numpy version of :func:`catmull_rom_value`; ``[P]``."""
    return _reference(field, h, x)[0]


def spline_gradient(field: np.ndarray, h: float, x: np.ndarray) -> np.ndarray:
    """Gradient of SciPy's global cubic spline through the bin-centre values (the published path).

    2D: ``RectBivariateSpline(centres, centres, field, kx=3, ky=3).ev(x, y, dx=1 / dy=1)``
    (FITPACK clamps points outside the centres' range to it). 3D:
    ``RegularGridInterpolator((centres,)*3, field, method="cubic", bounds_error=False,
    fill_value=None)`` called with ``nu`` = (1,0,0), (0,1,0), (0,0,1) (extrapolates beyond the
    outer centres). The spline is rebuilt from the whole field on every call.

    Args:
        field: ``[n] * d`` bin-centre values.
        h: bin side (length).
        x: points ``[P, d]`` (length).

    Returns:
        ``[P, d]``, field units / length.
    """
    from scipy.interpolate import RectBivariateSpline, RegularGridInterpolator

    field, x = _check(field, h, x)
    centres = (np.arange(field.shape[0]) + 0.5) * h
    if field.ndim == 2:
        s = RectBivariateSpline(centres, centres, field, kx=3, ky=3)
        return np.stack([s.ev(x[:, 0], x[:, 1], dx=1), s.ev(x[:, 0], x[:, 1], dy=1)], axis=-1)
    rgi = RegularGridInterpolator((centres,) * 3, field, method="cubic", bounds_error=False, fill_value=None)
    return np.stack([rgi(x, nu=nu) for nu in ((1, 0, 0), (0, 1, 0), (0, 0, 1))], axis=-1)


# ----------------------------------------------------------------------------------------
# Interpolator objects and the registry.
# ----------------------------------------------------------------------------------------


@runtime_checkable
class Interpolator(Protocol):
    """Anything that turns a bin field into its gradient at points.

    Attributes:
        name: registry name.
    """

    name: str

    def gradient(self, field: np.ndarray, h: float, x: np.ndarray) -> np.ndarray:
        """``field`` ``[n]*d``, bin side ``h``, points ``x`` ``[P, d]`` -> gradient ``[P, d]``."""
        ...


class _KernelInterpolator:
    """An interpolator that is one gradient kernel ``kernel(field, h, x)``."""

    name = ""
    kernel = staticmethod(lambda field, h, x: None)

    def gradient(self, field: np.ndarray, h: float, x: np.ndarray) -> np.ndarray:
        return self.kernel(field, h, x)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SplineInterpolator(_KernelInterpolator):
    """The classical global cubic spline (:func:`spline_gradient`)."""

    name = "spline"
    kernel = staticmethod(spline_gradient)


class LocalCubicInterpolator(_KernelInterpolator):
    """The local Catmull--Rom cubic (:func:`catmull_rom_gradient`); O(P 4^d) per call."""

    name = "local-cubic"
    kernel = staticmethod(catmull_rom_gradient)


#: Registry: name -> factory ``(**kwargs) -> Interpolator``.
INTERPOLATORS: dict[str, Callable[..., Interpolator]] = {
    "spline": SplineInterpolator,
    "local-cubic": LocalCubicInterpolator,
}


def register_interpolator(name: str, factory: Callable[..., Interpolator], overwrite: bool = False) -> None:
    """Add an interpolator factory under ``name`` (e.g. ``"cnn"``).

    Args:
        name: registry key (non-empty string).
        factory: callable ``(**kwargs) -> Interpolator``.
        overwrite: allow replacing an existing entry (otherwise a ValueError; re-registering
            the very same factory is always allowed, so repeated imports are harmless).
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name: must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise TypeError(f"factory: must be callable, got {factory!r}")
    if name in INTERPOLATORS and INTERPOLATORS[name] is not factory and not overwrite:
        raise ValueError(f"name: interpolator {name!r} is already registered (pass overwrite=True to replace it)")
    INTERPOLATORS[name] = factory


def make_interpolator(name: str, **kwargs) -> Interpolator:
    """Build the registered interpolator ``name`` (keyword arguments go to its factory)."""
    if name not in INTERPOLATORS:
        raise ValueError(f"interpolator: must be one of {sorted(INTERPOLATORS)}, got {name!r}")
    return INTERPOLATORS[name](**kwargs)
