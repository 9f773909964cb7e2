r"""Spectral tools: non-uniform FFTs between particles and Fourier modes, field evaluation.

Conventions (match :class:`~oncodyn.core.grid.FourierGrid`): for particles ``x`` of shape
``[P, d]`` in the box and coefficients ``a`` of shape ``[H]*d``,

* type 1 (particles -> modes): :math:`\hat f(\omega) = \sum_p w_p e^{-i\omega\cdot x_p}`;
* type 2 (modes -> particles): :math:`f(x_p) = \sum_\omega a(\omega) e^{+i\omega\cdot x_p}`.

The fast path is ``finufft`` (plans reused between steps; points scaled to ``2 pi x / L``);
on CUDA it is :class:`TorchDirectNUFFT`, a chunked dense sum in torch (``cufinufft`` is not
wired in yet). The
direct sums below are the readable references (O(P H^d)), kept for tests and for the
faithful published algorithm.
"""

from __future__ import annotations

import numpy as np

from oncodyn.core.grid import FourierGrid


def _phases_1d(grid: FourierGrid, x: np.ndarray, sign: int) -> list[np.ndarray]:
    """Per-axis phase factors ``exp(sign i omega_a x_a)``, each of shape ``[P, H]``."""
    k = grid.wavenumbers_1d
    return [np.exp(sign * 1j * np.outer(x[:, a], k)) for a in range(grid.dim)]


def direct_type1(grid: FourierGrid, x: np.ndarray, weights: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Reference type-1 sum ``sum_p w_p exp(-i omega . x_p)``; returns ``[H]*d`` complex.

    Uses the separability of the exponential (outer products of per-axis phases), which is
    the vectorised form of the O(P H^d) sum of the published algorithm.
    """
    out = np.zeros(grid.shape, dtype=complex)
    sub = "pi,pj,pk->ijk" if grid.dim == 3 else "pi,pj->ij"
    for s in range(0, len(x), chunk):
        ph = _phases_1d(grid, x[s : s + chunk], -1)
        ph[0] = ph[0] * weights[s : s + chunk, None]
        out += np.einsum(sub, *ph, optimize=True)
    return out


def direct_type2(grid: FourierGrid, x: np.ndarray, coeffs: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Reference type-2 sum ``sum_omega a(omega) exp(i omega . x_p)``.

    Args:
        coeffs: ``[n, H]*d`` (n transforms) or ``[H]*d``.
    Returns:
        ``[n, P]`` complex (or ``[P]`` for a single transform).
    """
    single = coeffs.ndim == grid.dim
    c = coeffs[None] if single else coeffs
    out = np.empty((c.shape[0], len(x)), dtype=complex)
    sub = "nijk,pi,pj,pk->np" if grid.dim == 3 else "nij,pi,pj->np"
    for s in range(0, len(x), chunk):
        ph = _phases_1d(grid, x[s : s + chunk], +1)
        out[:, s : s + chunk] = np.einsum(sub, c, *ph, optimize=True)
    return out[0] if single else out


class NUFFT:
    """Reusable type-1 / type-2 NUFFT pair on a Fourier grid (finufft, CPU).

    Args:
        grid: the Fourier grid.
        eps: requested relative tolerance of the transforms.
        n_trans2: number of simultaneous type-2 transforms (e.g. d for a gradient).
        nthreads: finufft threads. Default 1: at the sizes of SIPF (P ~ 10^4, H <= 32)
            measured 3-10x faster than 2 threads on a 2-core machine (thread start-up
            dominates); raise it for much larger P.
    """

    def __init__(self, grid: FourierGrid, eps: float = 1e-6, n_trans2: int = 1, nthreads: int = 1):
        import finufft

        self.grid = grid
        self.eps = eps
        opts = {"nthreads": nthreads} if nthreads else {}
        self._p1 = finufft.Plan(1, grid.shape, n_trans=1, eps=eps, isign=-1, **opts)
        self._p2 = {}
        self._finufft = finufft
        self._opts = opts
        self._plan2(n_trans2)

    def _plan2(self, n: int):
        if n not in self._p2:
            self._p2[n] = self._finufft.Plan(2, self.grid.shape, n_trans=n, eps=self.eps, isign=+1, **self._opts)
        return self._p2[n]

    def _scaled(self, x: np.ndarray) -> list[np.ndarray]:
        s = 2.0 * np.pi / self.grid.length
        return [np.ascontiguousarray(x[:, a] * s) for a in range(self.grid.dim)]

    def type1(self, x: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """``sum_p w_p exp(-i omega . x_p)``: ``x`` ``[P, d]``, ``weights`` ``[P]`` -> ``[H]*d``."""
        self._p1.setpts(*self._scaled(x))
        return self._p1.execute(np.ascontiguousarray(weights, dtype=complex))

    def type2(self, x: np.ndarray, coeffs: np.ndarray) -> np.ndarray:
        """``sum_omega a(omega) exp(i omega . x_p)``: ``[n, H]*d`` -> ``[n, P]`` (or ``[H]*d`` -> ``[P]``)."""
        single = coeffs.ndim == self.grid.dim
        c = coeffs[None] if single else coeffs
        plan = self._plan2(c.shape[0])
        plan.setpts(*self._scaled(x))
        out = plan.execute(np.ascontiguousarray(c, dtype=complex))
        out = out.reshape(c.shape[0], len(x))
        return out[0] if single else out


class TorchDirectNUFFT:
    """Type-1/type-2 transforms as chunked direct sums in torch (the CUDA fallback).

    Used on CUDA when ``cufinufft`` is not installed: O(P H^d) work, but dense and
    well-suited to a GPU. Same interface as :class:`~oncodyn.core.spectral.NUFFT`.
    """

    def __init__(self, grid: FourierGrid, device: str = "cuda", chunk: int = 4096):
        import torch  # imported here: the finufft path does not need it

        self.grid, self.device, self.chunk, self.torch = grid, device, chunk, torch
        self.k = torch.as_tensor(grid.wavenumbers_1d, device=device)

    def _phases(self, x, sign):
        t = self.torch
        xs = t.as_tensor(x, device=self.device)
        return [t.exp(sign * 1j * t.outer(xs[:, a], self.k)) for a in range(self.grid.dim)]

    def type1(self, x, weights):
        t = self.torch
        sub = "pi,pj,pk->ijk" if self.grid.dim == 3 else "pi,pj->ij"
        out = t.zeros(self.grid.shape, dtype=t.complex128, device=self.device)
        w = t.as_tensor(weights, device=self.device, dtype=t.complex128)
        for s in range(0, len(x), self.chunk):
            ph = self._phases(x[s : s + self.chunk], -1)
            ph[0] = ph[0] * w[s : s + self.chunk, None]
            out += t.einsum(sub, *ph)
        return out.cpu().numpy()

    def type2(self, x, coeffs):
        t = self.torch
        single = coeffs.ndim == self.grid.dim
        c = t.as_tensor(coeffs[None] if single else coeffs, device=self.device, dtype=t.complex128)
        sub = "nijk,pi,pj,pk->np" if self.grid.dim == 3 else "nij,pi,pj->np"
        outs = [t.einsum(sub, c, *self._phases(x[s : s + self.chunk], +1)) for s in range(0, len(x), self.chunk)]
        out = t.cat(outs, dim=1).cpu().numpy()
        return out[0] if single else out


def make_nufft(grid: FourierGrid, tol: float, device: str, n_trans2: int = 1):
    """The transform backend for ``device``: finufft on CPU, :class:`TorchDirectNUFFT` on CUDA."""
    if device == "cpu":
        return NUFFT(grid, eps=tol, n_trans2=n_trans2)
    return TorchDirectNUFFT(grid, device=device)


def gradient_coefficients(grid: FourierGrid, coeffs: np.ndarray) -> np.ndarray:
    """Coefficients of the gradient, ``i omega_a a(omega)``: ``[H]*d`` -> ``[d, H]*d``."""
    return np.stack([1j * w * coeffs for w in grid.wavevectors])


def evaluate_on_grid(grid: FourierGrid, coeffs: np.ndarray, n_points: int) -> np.ndarray:
    """Real part of the Fourier series on the uniform grid ``x_m = -L/2 + m L / N``.

    Zero-pads the ``[H]*d`` coefficients into an ``[N]*d`` FFT (``N >= H``); returns ``[N]*d``.
    """
    if n_points < grid.n_modes:
        raise ValueError(f"n_points must be >= n_modes ({grid.n_modes}), got {n_points}")
    j = np.arange(grid.n_modes) - grid.n_modes // 2
    sign = (-1.0) ** j  # exp(-i omega L/2) = (-1)^j: the grid starts at -L/2
    a = coeffs.copy()
    for ax in range(grid.dim):
        shape = [1] * grid.dim
        shape[ax] = -1
        a = a * sign.reshape(shape)
    full = np.zeros((n_points,) * grid.dim, dtype=complex)
    idx = tuple(np.mod(j, n_points) for _ in range(grid.dim))
    full[np.ix_(*idx)] = a
    return np.real(np.fft.ifftn(full) * n_points**grid.dim)


def grid_axis(grid: FourierGrid, n_points: int) -> np.ndarray:
    """Coordinates ``-L/2 + m L / N`` of :func:`evaluate_on_grid`, shape ``[N]``."""
    return -grid.length / 2 + grid.length * np.arange(n_points) / n_points
