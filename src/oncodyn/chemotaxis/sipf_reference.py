r"""The published SIPF algorithm (Algorithms 1--3), written for reading and as the baseline.

Per step, with c_{n-1} the Fourier field and X_n the particles:

* :math:`\hat\rho_n` by the direct O(P H^d) sum (vectorised by the separability of the
  exponential);
* the smooth drift :math:`\chi(\epsilon/\delta t)\nabla(\mathcal K * c_{n-1})(X_p)` by the
  source's shifted quadrature: the offset :math:`s_p = h/2 + \lfloor X_p/h\rfloor h - X_p`
  moves :math:`X_p` to the centre :math:`y_p` of its cell; one inverse FFT of
  :math:`\alpha_j e^{-i\omega_j\cdot s_p}` gives :math:`c_{n-1}(x_j - s_p)` on the grid
  :math:`x_j = jh`, and

  .. math:: (\nabla\mathcal K * c)(X_p) \approx h^d \sum_j \nabla\mathcal K(y_p - x_j)\,c(x_j - s_p),

  summed over the H^d grid points nearest to y_p (offsets (q + 1/2) h, |q| <= H/2), so the
  kernel is never evaluated at its singularity;
* the particle drift by the direct O(P^2) sum (:func:`~.interaction.interaction_direct`).

Cost per step O(P^2 + P H^d log H). Same state and ``step(state, dW)`` interface as
:class:`~oncodyn.chemotaxis.sipf.SIPFSolver`, so both can be driven with the same noise.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from oncodyn.chemotaxis.interaction import grad_kernel, interaction_direct
from oncodyn.chemotaxis.models import KellerSegelParams
from oncodyn.chemotaxis.sipf import SIPFOptions, SIPFSolver, SIPFState
from oncodyn.core.spectral import direct_type1, direct_type2, gradient_coefficients


class SIPFReference(SIPFSolver):
    """Faithful (vectorised, not handicapped) implementation of the published algorithm.

    Shares the time loop (:meth:`SIPFSolver.step`) with the fast solver and replaces the three
    pieces that differ: :meth:`rho_hat`, the smooth part of :meth:`drift` and the pair sum.

    Args:
        params: the model.
        options: numerical options (``variant`` is ignored: this is the exact method).
        chunk: particles per vectorised batch of the per-particle FFTs.
    """

    def __init__(self, params: KellerSegelParams, options: SIPFOptions, chunk: int = 128):
        super().__init__(params, replace(options, variant="exact"))
        self.chunk = chunk
        g = self.grid
        h, H = g.spacing, g.n_modes
        q = np.arange(H) - H // 2
        offsets = np.stack(np.meshgrid(*([(q + 0.5) * h] * g.dim), indexing="ij"), axis=-1)
        self.quad_kernel = grad_kernel(offsets, self.beta) * h**g.dim  # [H]*d + [d]
        self._q = q

    def rho_hat(self, x: np.ndarray) -> np.ndarray:
        """Direct sum :math:`(M_0/P)L^{-d}\\sum_p e^{-i\\omega\\cdot x_p}`, ``[H]*d``."""
        return direct_type1(self.grid, x, np.full(len(x), self.weight / self.grid.volume))

    def smooth_convolution_gradient(self, alpha: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Shifted-quadrature :math:`\\nabla(\\mathcal K * c)(x_p)` for c with coefficients ``alpha``; ``[P, d]``."""
        g = self.grid
        d, H, h = g.dim, g.n_modes, g.spacing
        k = g.wavenumbers_1d
        axes = tuple(range(1, d + 1))
        out = np.empty((len(x), d))
        for s in range(0, len(x), self.chunk):
            xb = x[s : s + self.chunk]
            m = np.floor(xb / h)
            shift = h / 2 + m * h - xb  # s_p, [B, d]
            coef = np.broadcast_to(alpha, (len(xb),) + g.shape).copy()
            for a in range(d):
                shape = [len(xb)] + [1] * d
                shape[a + 1] = H
                coef *= np.exp(-1j * np.outer(shift[:, a], k)).reshape(shape)
            # c(i h - s_p) for grid index i = 0..H-1 (FFT order of the modes j = -H/2..H/2-1)
            vals = np.real(np.fft.ifftn(np.fft.ifftshift(coef, axes=axes), axes=axes)) * H**d
            idx = (m.astype(int)[:, :, None] - self._q[None, None, :]) % H  # [B, d, H]
            b = np.arange(len(xb))
            if d == 3:
                gathered = vals[b[:, None, None, None], idx[:, 0, :, None, None],
                                idx[:, 1, None, :, None], idx[:, 2, None, None, :]]
                out[s : s + self.chunk] = np.einsum("buvw,uvwd->bd", gathered, self.quad_kernel)
            else:
                gathered = vals[b[:, None, None], idx[:, 0, :, None], idx[:, 1, None, :]]
                out[s : s + self.chunk] = np.einsum("buv,uvd->bd", gathered, self.quad_kernel)
        return out

    def drift(self, state: SIPFState) -> np.ndarray:
        if state.alpha_prev is None:  # Algorithm 3: the first step moves with grad c_0
            grad = direct_type2(self.grid, state.x, gradient_coefficients(self.grid, state.alpha))
            return np.real(grad).T
        smooth = (self.params.eps / self.options.dt) * self.smooth_convolution_gradient(state.alpha_prev, state.x)
        return smooth + interaction_direct(state.x, self.beta, self.weight)
