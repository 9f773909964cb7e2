r"""The singular particle interaction of SIPF: gradients of the screened Green's function.

:math:`\mathcal K` is the Green's function of :math:`\beta^2 - \Delta` in free space,

* 3D: :math:`\mathcal K(x) = e^{-\beta r}/(4\pi r)`,
  :math:`\nabla\mathcal K(x) = -e^{-\beta r}(1+\beta r)\,x/(4\pi r^3)`;
* 2D: :math:`\mathcal K(x) = K_0(\beta r)/(2\pi)`,
  :math:`\nabla\mathcal K(x) = -\beta K_1(\beta r)\,x/(2\pi r)` (and :math:`-x/(2\pi r^2)`
  for :math:`\beta = 0`).

The interaction field at particle p is :math:`F_p = w\sum_{q\ne p}\nabla\mathcal K(x_p-x_q)`
(self-interaction excluded), ``x`` of shape ``[P, d]``, returned as ``[P, d]``.

Methods, chosen by measurement (see the README's benchmark table):

* :func:`interaction_direct` -- the O(P^2) sum, chunked array code in torch (CPU or CUDA).
  It is the readable reference, the vectorised faithful baseline, and the GPU path.
* :func:`interaction_direct_compiled` -- 3D: the same O(P^2) sum as a compiled, threaded
  loop (numba): no P x chunk temporaries, exact to round-off, and -- unlike tree codes --
  its cost does not grow when the particles collapse. Measured on 2 cores at P = 10^4
  (``oncodyn bench sipf``) it beats the FMM both on the initial ball and on a collapsed
  cloud, so ``auto`` uses it up to ``COMPILED_DIRECT_MAX_P`` particles and the FMM beyond.
* :func:`interaction_fmm` -- 3D only: the adaptive fast multipole method of ``fmm3dpy``
  (Helmholtz kernel :math:`e^{ikr}/(4\pi r)` with :math:`k = i\beta`, fmm3dpy >= 2), O(P) per evaluation to a
  stated relative tolerance. Adaptive trees keep their cost when particles collapse, which
  uniform-grid splittings do not; a cutoff does not help because :math:`\beta\approx 1`
  makes the kernel long-ranged in an L = 8 box.
* :func:`interaction_random_batch` -- the random-batch estimator: each step the particles
  are shuffled into batches of R, and each interacts only with its batch, the weight scaled
  by (P-1)/(R-1) so the estimate is unbiased. Cost O(P R).
* :func:`mollified_newton_grad_sum` -- the reference of the DeepLagrangian family: the
  whole-space Newtonian kernel :math:`K = \ln|x|/(2\pi)` (2D), :math:`-1/(4\pi|x|)` (3D),
  mollified, :math:`\nabla K_\delta(x) = x/(\omega_d(|x|^2+\delta^2)^{d/2})`,
  :math:`\omega_2 = 2\pi`, :math:`\omega_3 = 4\pi` (the torch formula
  :func:`grad_newton_mollified` is shared with :mod:`oncodyn.deeplagrangian.model`);
  O(P^2) as a compiled threaded loop (CPU) or chunked torch (CPU or CUDA). Note the sign:
  this K is minus the screened Green's function above at beta = 0.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def _grad_kernel_torch(diff: torch.Tensor, beta: float, dim: int, softening: float = 0.0) -> torch.Tensor:
    """grad K at ``diff`` ``[..., d]`` with zero at diff = 0 (self pairs).

    ``softening`` delta > 0 (3D) evaluates the radial factor at sqrt(r^2 + delta^2): a
    small-distance treatment that bounds the pair force of close pairs.
    """
    r2 = (diff * diff).sum(-1)
    zero = r2 == 0
    r = torch.sqrt(torch.where(zero, torch.ones_like(r2), r2 + softening**2))
    if dim == 3:
        f = -torch.exp(-beta * r) * (1.0 + beta * r) / (4.0 * math.pi * r**3)
    elif beta > 0:
        f = -beta * torch.special.modified_bessel_k1(beta * r) / (2.0 * math.pi * r)
    else:
        f = -1.0 / (2.0 * math.pi * r * r)
    f = torch.where(zero, torch.zeros_like(f), f)
    return f[..., None] * diff


def grad_kernel(diff: np.ndarray, beta: float) -> np.ndarray:
    """grad K at displacements ``diff`` ``[..., d]`` (d = 2 or 3); zero at the origin."""
    t = torch.as_tensor(np.asarray(diff, dtype=np.float64))
    return _grad_kernel_torch(t, beta, t.shape[-1]).numpy()


def interaction_direct(x: np.ndarray, beta: float, weight: float, device: str = "cpu",
                       chunk: int = 0, softening: float = 0.0) -> np.ndarray:
    """Exact ``w sum_{q != p} grad K(x_p - x_q)`` by the chunked direct sum; ``[P, d]``.

    ``softening``: see :func:`_grad_kernel_torch` (3D only; 0 = the exact kernel).
    """
    P, d = x.shape
    xs = torch.as_tensor(x, dtype=torch.float64, device=device)
    chunk = chunk or max(1, min(P, 2_000_000 // max(P, 1)))
    out = torch.empty_like(xs)
    for s in range(0, P, chunk):
        diff = xs[s : s + chunk, None, :] - xs[None, :, :]
        out[s : s + chunk] = _grad_kernel_torch(diff, beta, d, softening).sum(1)
    return weight * out.cpu().numpy()


#: Largest P for which ``auto`` picks the compiled direct sum over the FMM (3D, CPU).
COMPILED_DIRECT_MAX_P = 30_000


def _compiled_kernel():
    from numba import njit, prange

    @njit(parallel=True, fastmath=False, cache=True)
    def yukawa_grad_sum(x, beta, w, delta2):  # pragma: no cover - compiled
        P = x.shape[0]
        out = np.zeros((P, 3))
        c = -w / (4.0 * math.pi)
        for p in prange(P):
            x0, x1, x2 = x[p, 0], x[p, 1], x[p, 2]
            a0 = 0.0
            a1 = 0.0
            a2 = 0.0
            for q in range(P):
                d0 = x0 - x[q, 0]
                d1 = x1 - x[q, 1]
                d2 = x2 - x[q, 2]
                r2 = d0 * d0 + d1 * d1 + d2 * d2
                if r2 > 0.0:
                    r2 += delta2
                    r = math.sqrt(r2)
                    f = math.exp(-beta * r) * (1.0 + beta * r) / (r2 * r)
                    a0 += f * d0
                    a1 += f * d1
                    a2 += f * d2
            out[p, 0] = c * a0
            out[p, 1] = c * a1
            out[p, 2] = c * a2
        return out

    return yukawa_grad_sum


_KERNEL = None


def interaction_direct_compiled(x: np.ndarray, beta: float, weight: float, softening: float = 0.0) -> np.ndarray:
    """Exact 3D ``w sum_{q != p} grad K(x_p - x_q)`` by a compiled threaded loop; ``[P, 3]``.

    ``softening``: see :func:`_grad_kernel_torch` (0 = the exact kernel).
    """
    global _KERNEL
    if x.shape[1] != 3:
        raise ValueError("interaction_direct_compiled is 3D only; use interaction_direct in 2D")
    if _KERNEL is None:
        _KERNEL = _compiled_kernel()
    return _KERNEL(np.ascontiguousarray(x, dtype=np.float64), float(beta), float(weight), float(softening) ** 2)


def interaction_fmm(x: np.ndarray, beta: float, weight: float, tol: float = 1e-6) -> np.ndarray:
    """Exact 3D interaction by the fast multipole method to relative tolerance ``tol``; ``[P, 3]``."""
    if x.shape[1] != 3:
        raise ValueError("interaction_fmm is 3D only; use interaction_direct in 2D")
    import fmm3dpy

    src = np.ascontiguousarray(x.T)
    charges = np.ones(x.shape[0], dtype=complex)
    out = fmm3dpy.hfmm3d(eps=tol, zk=1j * beta, sources=src, charges=charges, pg=2)
    # fmm3dpy >= 2 sums e^{ikr}/(4 pi r): with k = i beta that is K itself
    return weight * np.real(out.grad).T


def interaction_random_batch(x: np.ndarray, beta: float, weight: float, batch_size: int,
                             rng: np.random.Generator, softening: float = 0.0) -> np.ndarray:
    """Random-batch estimate of the interaction; batches of ``batch_size`` (>= 2); ``[P, d]``.

    The particles are split by a random permutation into batches of R (the last batch
    takes the remainder); within a batch of size m each pair interacts with weight
    ``w (P-1)/(m-1)``, an unbiased estimate of the full sum.
    """
    P, d = x.shape
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2, got {batch_size}")
    R = min(batch_size, P)
    perm = rng.permutation(P)
    out = np.zeros_like(x)
    n_full = P // R
    xs = torch.as_tensor(x[perm[: n_full * R]].reshape(n_full, R, d))
    f = _grad_kernel_torch(xs[:, :, None, :] - xs[:, None, :, :], beta, d, softening).sum(2).reshape(-1, d)
    out[perm[: n_full * R]] = f.numpy() * (weight * (P - 1) / (R - 1))
    rest = perm[n_full * R :]
    if len(rest) >= 2:
        xr = torch.as_tensor(x[rest])
        fr = _grad_kernel_torch(xr[:, None, :] - xr[None, :, :], beta, d, softening).sum(1)
        out[rest] = fr.numpy() * (weight * (P - 1) / (len(rest) - 1))
    elif len(rest) == 1:  # a lone particle: pair it with a random other particle
        q = rng.integers(0, P - 1)
        q = q + (q >= rest[0])
        diff = torch.as_tensor(x[rest[0]] - x[q])
        out[rest[0]] = _grad_kernel_torch(diff, beta, d, softening).numpy() * weight * (P - 1)
    return out


# -- the mollified Newtonian kernel (DeepLagrangian reference) --------------------------

#: Surface area of the unit sphere, omega_d, by dimension.
OMEGA = {2: 2.0 * math.pi, 3: 4.0 * math.pi}


def grad_newton_mollified(diff: torch.Tensor, delta: float) -> torch.Tensor:
    r"""The mollified Newtonian kernel gradient :math:`x/(\omega_d(|x|^2+\delta^2)^{d/2})`.

    Args:
        diff: displacements ``[..., d]``, d = 2 or 3 (length units), any dtype/device.
        delta: mollification length delta >= 0 (length units); with delta = 0 the value at
            diff = 0 is set to 0 (gradients stay finite there too).

    Returns:
        ``[..., d]`` (1 / length^(d-1)). Odd in ``diff``, so pair forces are antisymmetric.
    """
    d = diff.shape[-1]
    if d not in OMEGA:
        raise ValueError(f"diff: must have a last dimension of 2 or 3, got {d}")
    s = (diff * diff).sum(-1) + delta**2
    zero = s == 0
    s = torch.where(zero, torch.ones_like(s), s)
    f = 1.0 / (OMEGA[d] * (s if d == 2 else s * torch.sqrt(s)))
    f = torch.where(zero, torch.zeros_like(f), f)
    return f[..., None] * diff


def _compiled_newton_kernels():
    from numba import njit, prange

    # reassoc + contract let LLVM vectorise the q-reductions (SIMD, FMA): ~1.5x on AVX-512;
    # results move at round-off only. Self pairs (q = p) give diff = 0, i.e. a zero term.
    fm = {"reassoc", "contract"}

    @njit(parallel=True, fastmath=fm, cache=True)
    def newton_grad_sum_2d(xs, ys, delta2, c):  # pragma: no cover - compiled
        P = xs.shape[0]
        out = np.empty((P, 2))
        for p in prange(P):
            x0, x1 = xs[p], ys[p]
            a0 = 0.0
            a1 = 0.0
            for q in range(P):
                d0 = x0 - xs[q]
                d1 = x1 - ys[q]
                s = d0 * d0 + d1 * d1 + delta2
                f = 1.0 / s if s > 0.0 else 0.0
                a0 += f * d0
                a1 += f * d1
            out[p, 0] = c * a0
            out[p, 1] = c * a1
        return out

    @njit(parallel=True, fastmath=fm, cache=True)
    def newton_grad_sum_3d(xs, ys, zs, delta2, c):  # pragma: no cover - compiled
        P = xs.shape[0]
        out = np.empty((P, 3))
        for p in prange(P):
            x0, x1, x2 = xs[p], ys[p], zs[p]
            a0 = 0.0
            a1 = 0.0
            a2 = 0.0
            for q in range(P):
                d0 = x0 - xs[q]
                d1 = x1 - ys[q]
                d2 = x2 - zs[q]
                s = d0 * d0 + d1 * d1 + d2 * d2 + delta2
                f = 1.0 / (s * math.sqrt(s)) if s > 0.0 else 0.0
                a0 += f * d0
                a1 += f * d1
                a2 += f * d2
            out[p, 0] = c * a0
            out[p, 1] = c * a1
            out[p, 2] = c * a2
        return out

    return {2: newton_grad_sum_2d, 3: newton_grad_sum_3d}


_NEWTON_KERNELS = None


def mollified_newton_grad_sum(x: np.ndarray, delta: float, weight: float, device: str = "cpu",
                              method: str = "auto", chunk: int = 0) -> np.ndarray:
    r"""``weight * sum_{q != p} grad K_delta(x_p - x_q)`` for every particle p; ``[P, d]``.

    :math:`\nabla K_\delta(x) = x/(\omega_d(|x|^2+\delta^2)^{d/2})` points from x_q to x_p
    (repulsive sign); the Keller--Segel attractive drift is ``-chi * M`` times this sum with
    ``weight = 1/P``. Pair terms are antisymmetric, so ``sum_p F_p = 0`` to round-off.

    Args:
        x: positions ``[P, d]``, d = 2 or 3 (length units).
        delta: mollification length >= 0 (length units); 0 is the singular kernel (pairs
            at distance 0 then contribute 0).
        weight: factor on the sum (e.g. 1/P).
        device: torch device of the ``torch`` method ("cpu", "cuda", ...).
        method: ``compiled`` -- numba loop, threaded over p (CPU only, no P x P temporaries);
            ``torch`` -- chunked direct sum (CPU or CUDA), the readable reference;
            ``auto`` -- ``compiled`` on CPU, ``torch`` otherwise.
        chunk: rows per torch chunk (0: about 2e6 pairs per chunk on the CPU, 5e7 on a GPU,
            where larger chunks launch fewer kernels: 1.1 s -> 0.75 s at P = 1e5 on an H200).

    Returns:
        ``[P, d]`` float64 NumPy (weight / length^(d-1)).
    """
    global _NEWTON_KERNELS
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] not in OMEGA:
        raise ValueError(f"x: must have shape [P, 2] or [P, 3], got {x.shape}")
    if not (math.isfinite(delta) and delta >= 0):
        raise ValueError(f"delta: must be finite and >= 0, got {delta!r}")
    if method == "auto":
        method = "compiled" if str(device) == "cpu" else "torch"
    if method == "compiled":
        if str(device) != "cpu":
            raise ValueError(f"method: 'compiled' runs on the CPU only, got device {device!r}")
        if _NEWTON_KERNELS is None:
            _NEWTON_KERNELS = _compiled_newton_kernels()
        P, d = x.shape
        cols = [np.ascontiguousarray(x[:, i]) for i in range(d)]
        return _NEWTON_KERNELS[d](*cols, float(delta) ** 2, float(weight) / OMEGA[d])
    if method != "torch":
        raise ValueError(f"method: must be 'auto', 'compiled' or 'torch', got {method!r}")
    P = x.shape[0]
    xs = torch.as_tensor(x, device=device)
    budget = 2_000_000 if xs.device.type == "cpu" else 50_000_000
    chunk = chunk or max(1, min(P, budget // max(P, 1)))
    out = torch.empty_like(xs)
    for s in range(0, P, chunk):
        out[s : s + chunk] = grad_newton_mollified(xs[s : s + chunk, None, :] - xs[None, :, :], delta).sum(1)
    return weight * out.cpu().numpy()
