r"""Discrete adjoint of the explicit FD scheme: the misfit gradient at the cost of ~2.5 forward solves.

Write the semi-discrete right-hand side as
:math:`f(u) = D_w\,\Phi^{-1} A u + \rho\,\chi\,u(1-u)`, with :math:`(Aw)_i = \sum_j k_{ij}(w_j - w_i)`
(symmetric), :math:`\Phi^{-1}` = ``inv_phi`` and :math:`\chi` the unfrozen voxels. Its Jacobian
is :math:`J(u) = D_w\Phi^{-1}A + \mathrm{diag}(\rho\chi(1-2u))`, so
:math:`J(u)^\top v = D_w A(\Phi^{-1}v) + \rho\chi(1-2u)v`; and
:math:`\partial f/\partial D_w = \Phi^{-1}Au`, :math:`\partial f/\partial\rho = \chi u(1-u)`.

For one Heun step :math:`u_1 = u + \delta t f(u)`, :math:`u' = \tfrac12(u + u_1 + \delta t f(u_1))`
and the adjoint :math:`\lambda'` of :math:`u'`:

.. math::
    \mu = \tfrac12\lambda' + \tfrac12\delta t\,J(u_1)^\top\lambda', \qquad
    \lambda = \tfrac12\lambda' + \mu + \delta t\,J(u)^\top\mu, \qquad
    g_\theta \mathrel{+}= \tfrac12\delta t\,\langle\lambda', \partial_\theta f(u_1)\rangle
                         + \delta t\,\langle\mu, \partial_\theta f(u)\rangle .

(Euler: :math:`\lambda = \lambda' + \delta t J(u)^\top\lambda'`, :math:`g_\theta \mathrel{+}= \delta t
\langle\lambda', \partial_\theta f(u)\rangle`.) The initial condition gives the origin gradient
:math:`\partial u_0/\partial x_{0,a} = 2b\,(x_a - x_{0,a})\,u_0`. The forward states are kept
in memory (``n_steps`` copies of the crop). The result equals torch autograd through
:class:`~oncodyn.tumour.fk.TorchFK` to round-off (tested); it is the CPU path of the inverse
because autograd records ~30 tensors per step: on the 2 mm MNI152 brain one gradient needs
9.0 GB with autograd and 1.2 GB here (``oncodyn bench glioma --set resolutions=[2]``).
"""

from __future__ import annotations

import numba
import numpy as np

from oncodyn.tumour.fk import FKDomain, FKSolver, FKState, initial_state
from oncodyn.tumour.inverse import soft_indicator
from oncodyn.tumour.model import FKParams


@numba.njit(parallel=True, cache=True)
def _apply3(w, out, kx, ky, kz):  # pragma: no cover - compiled
    n0, n1, n2 = w.shape
    for i in numba.prange(1, n0 - 1):
        for j in range(1, n1 - 1):
            for k in range(1, n2 - 1):
                c = w[i, j, k]
                out[i, j, k] = (kx[i, j, k] * (w[i + 1, j, k] - c) - kx[i - 1, j, k] * (c - w[i - 1, j, k])
                                + ky[i, j, k] * (w[i, j + 1, k] - c) - ky[i, j - 1, k] * (c - w[i, j - 1, k])
                                + kz[i, j, k] * (w[i, j, k + 1] - c) - kz[i, j, k - 1] * (c - w[i, j, k - 1]))


@numba.njit(parallel=True, cache=True)
def _apply2(w, out, kx, ky):  # pragma: no cover - compiled
    n0, n1 = w.shape
    for i in numba.prange(1, n0 - 1):
        for j in range(1, n1 - 1):
            c = w[i, j]
            out[i, j] = (kx[i, j] * (w[i + 1, j] - c) - kx[i - 1, j] * (c - w[i - 1, j])
                         + ky[i, j] * (w[i, j + 1] - c) - ky[i, j - 1] * (c - w[i, j - 1]))


def apply_A(domain: FKDomain, w: np.ndarray) -> np.ndarray:
    """(A w)_i = Σ_j k_ij (w_j - w_i) (per unit D_w, 1/mm^2 times w); zero on the frozen border."""
    out = np.zeros_like(w)
    (_apply3 if domain.ndim == 3 else _apply2)(w, out, *domain.faces)
    return out


def misfit_gradient(domain: FKDomain, params: FKParams, x0, dts: np.ndarray, out_steps: list[int],
                    values: np.ndarray, observed: np.ndarray, levels, soft_width: float,
                    scheme: str = "heun") -> tuple[float, np.ndarray, np.ndarray]:
    """Φ = ½ Σ (pred - y)² over observed voxels, and dΦ/d(D_w, ρ, x0).

    Args:
        params: the model (its D_white, rho are the point of evaluation).
        x0: origin (grid mm). dts, out_steps: the time grid (see :func:`oncodyn.tumour.fk.schedule`).
        values, observed: ``[n_obs, *domain.shape]``; levels: per observation None or a level.
    Returns:
        ``(Φ, grad [2 + ndim] = (dΦ/dD_w, dΦ/dρ, dΦ/dx0...), predictions [n_obs, *shape])``.
    """
    D, rho = params.D_white, params.rho
    act = domain.active.astype(float)
    inv_phi = domain.inv_phi
    solver = FKSolver(domain, params, dts, backend="numba", scheme=scheme)
    state = FKState(u=initial_state(domain, params, x0))
    states = [state.u.copy()]
    for _ in dts:  # forward, keeping every state (the solver reuses its buffers, hence the copies)
        state = solver.step(state)
        states.append(state.u.copy())
    u = states[-1]
    # misfit and its derivative at the output steps
    preds, seeds = [], {}
    phi_val = 0.0
    for k, (s, lv) in enumerate(zip(out_steps, levels)):
        uk = states[s]
        if lv is None:
            pred, dpred = uk, 1.0
        else:
            pred = soft_indicator(uk, lv, soft_width)
            dpred = pred * (1.0 - pred) / soft_width
        r = (pred - values[k]) * observed[k]
        phi_val += 0.5 * float((r * r).sum())
        seeds[s] = seeds.get(s, 0.0) + r * dpred
        preds.append(pred)

    def jt(uu, v):  # J(uu)^T v
        return D * apply_A(domain, inv_phi * v) + rho * act * (1.0 - 2.0 * uu) * v

    def dfdD(uu):
        return inv_phi * apply_A(domain, uu)

    def dfdrho(uu):
        return act * uu * (1.0 - uu)

    gD = grho = 0.0
    lam = np.zeros_like(u)
    for n in range(len(dts), 0, -1):  # backward: lam is the adjoint of states[n]
        if n in seeds:
            lam = lam + seeds[n]
        uu, dt = states[n - 1], float(dts[n - 1])
        if scheme == "euler":
            gD += dt * float((lam * dfdD(uu)).sum())
            grho += dt * float((lam * dfdrho(uu)).sum())
            lam = lam + dt * jt(uu, lam)
            continue
        f_u = D * dfdD(uu) + rho * dfdrho(uu)
        u1 = uu + dt * f_u
        mu = 0.5 * lam + 0.5 * dt * jt(u1, lam)
        gD += 0.5 * dt * float((lam * dfdD(u1)).sum()) + dt * float((mu * dfdD(uu)).sum())
        grho += 0.5 * dt * float((lam * dfdrho(u1)).sum()) + dt * float((mu * dfdrho(uu)).sum())
        lam = 0.5 * lam + mu + dt * jt(uu, mu)
    if 0 in seeds:
        lam = lam + seeds[0]
    u0 = states[0]
    mesh = np.meshgrid(*domain.coords(), indexing="ij")
    gx = [float((lam * u0 * 2.0 * params.ic_decay * (m - float(c))).sum()) for m, c in zip(mesh, np.ravel(x0))]
    return phi_val, np.array([gD, grho] + gx), np.stack(preds)
