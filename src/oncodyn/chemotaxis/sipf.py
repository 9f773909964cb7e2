r"""SIPF: the stochastic interacting particle--field solver of the Keller--Segel system.

The density is a cloud of P particles of weight M0/P, the chemical a Fourier series on the
H-mode grid of :class:`~oncodyn.core.grid.FourierGrid`; one step of size dt is

1. drift of the particles at time t_n (:meth:`SIPFSolver.drift`):

   * ``exact`` (the published method): the smooth part
     :math:`\chi(\epsilon/\delta t)\nabla(\mathcal K * c_{n-1})(X_p)` -- exact in Fourier, since
     :math:`\hat{\mathcal K} = 1/(|\omega|^2+\beta^2)` -- by a type-2 NUFFT, plus the
     singular particle part :math:`\chi(M_0/P)\sum_{q\ne p}\nabla\mathcal K(X_p-X_q)` by the
     fast multipole method (3D) or the direct sum (:mod:`.interaction`);
   * ``spectral`` (particle-in-cell): :math:`\chi\nabla c_n(X_p)` of the band-limited field
     only, by a type-2 NUFFT; cost O(P + H^d log H);
   * ``random_batch``: the smooth part as ``exact``, the particle part by random batches of R;

2. Euler--Maruyama: :math:`X_{n+1} = X_n + \chi\,\mathrm{drift}\,\delta t + \sqrt{2\mu}\,\Delta W_n`,
   clipped to the box (Algorithm 2; the first step uses :math:`\nabla c_0`, Algorithm 3);
3. implicit Euler for the field (Algorithm 1), per mode,
   :math:`\alpha_{n+1} = [(\epsilon/\delta t)\alpha_n + \hat\rho_{n+1}]/(|\omega|^2+\beta^2)`,
   :math:`\hat\rho = (M_0/P) L^{-d}\sum_p e^{-i\omega\cdot X_p}` by a type-1 NUFFT.

The published per-particle algorithm, kept as the readable baseline, is
:mod:`oncodyn.chemotaxis.sipf_reference`; a test holds the two to agreement.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from oncodyn.chemotaxis import interaction
from oncodyn.chemotaxis.models import KellerSegelParams
from oncodyn.core.grid import FourierGrid
from oncodyn.core.spectral import gradient_coefficients, make_nufft

VARIANTS = ("exact", "spectral", "random_batch")
INTERACTIONS = ("auto", "fmm", "direct", "compiled")


@dataclass(frozen=True)
class SIPFOptions:
    """Numerical options of SIPF.

    Attributes:
        n_modes: H, Fourier modes per dimension (even).
        dt: time step (time units), > 0.
        n_particles: P >= 2.
        variant: ``exact`` | ``spectral`` | ``random_batch``.
        interaction: summation of the exact pair interaction: ``auto`` (3D CPU: ``compiled``
            up to ``COMPILED_DIRECT_MAX_P`` particles, ``fmm`` beyond; 2D or CUDA: ``direct``),
            ``compiled`` (numba direct sum), ``fmm`` (fmm3dpy) or ``direct`` (torch arrays).
        batch_size: R, batch size of ``random_batch`` (>= 2).
        softening: delta >= 0 (length): small-distance treatment of the pair force of
            ``exact`` / ``random_batch``, evaluated at sqrt(r^2 + delta^2); 0 (default) is
            the published exact kernel. Not available with the FMM.
        nufft_tol: requested relative tolerance of the NUFFTs (1e-6: far below the
            O(P^{-1/2}) Monte Carlo error of the particle density, at a third of the cost of 1e-9).
        fmm_tol: requested relative tolerance of the FMM.
        device: ``cpu`` or ``cuda`` (already resolved).
    """

    n_modes: int = 24
    dt: float = 1e-4
    n_particles: int = 10_000
    variant: str = "exact"
    interaction: str = "auto"
    batch_size: int = 100
    softening: float = 0.0
    nufft_tol: float = 1e-6
    fmm_tol: float = 1e-6
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.n_modes < 2 or self.n_modes % 2:
            raise ValueError(f"n_modes: must be an even integer >= 2, got {self.n_modes!r}")
        if not self.dt > 0:
            raise ValueError(f"dt: must be > 0, got {self.dt!r}")
        if self.n_particles < 2:
            raise ValueError(f"n_particles: must be >= 2, got {self.n_particles!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant: must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        if self.interaction not in INTERACTIONS:
            raise ValueError(f"interaction: must be one of {', '.join(INTERACTIONS)}, got {self.interaction!r}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size: must be >= 2, got {self.batch_size!r}")
        if self.softening < 0:
            raise ValueError(f"softening: must be >= 0, got {self.softening!r}")
        if self.softening > 0 and self.interaction == "fmm":
            raise ValueError("softening: must be 0 with interaction 'fmm' (use 'compiled' or 'direct')")


@dataclass
class SIPFState:
    """State at time t_n.

    Attributes:
        step: n.
        t: t_n (time units).
        x: particle positions ``[P, d]``.
        alpha: Fourier coefficients of c_n, ``[H]*d`` complex.
        alpha_prev: coefficients of c_{n-1} (``None`` before the first step).
    """

    step: int
    t: float
    x: np.ndarray
    alpha: np.ndarray
    alpha_prev: np.ndarray | None = None

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat arrays for a checkpoint."""
        d = {"step": np.array(self.step), "t": np.array(self.t), "x": self.x, "alpha": self.alpha}
        if self.alpha_prev is not None:
            d["alpha_prev"] = self.alpha_prev
        return d

    @classmethod
    def from_arrays(cls, d: dict[str, np.ndarray]) -> "SIPFState":
        return cls(int(d["step"]), float(d["t"]), np.array(d["x"]), np.array(d["alpha"]),
                   np.array(d["alpha_prev"]) if "alpha_prev" in d else None)


def green_symbol(grid: FourierGrid, beta2: float) -> np.ndarray:
    """Fourier symbol 1/(|omega|^2 + beta^2) of the Green's function, ``[H]*d``.

    For beta = 0 (eps = k = 0) the mean mode is set to 0: the periodic problem then fixes c
    up to a constant, which the drift does not see.
    """
    denom = grid.omega_squared + beta2
    return np.where(denom > 0, 1.0 / np.where(denom > 0, denom, 1.0), 0.0)


class SIPFSolver:
    """Fast SIPF solver (NUFFT + FMM / direct / random-batch interaction).

    Args:
        params: the model.
        options: numerical options.
        rng: generator for the random-batch shuffles (unused by the other variants).
    """

    order = 1  # weak/strong order of the time stepping (Euler--Maruyama + implicit Euler)

    def __init__(self, params: KellerSegelParams, options: SIPFOptions, rng: np.random.Generator | None = None):
        self.params, self.options = params, options
        self.grid = FourierGrid(options.n_modes, params.length, params.dim)
        self.beta2 = params.beta2(options.dt)
        self.beta = float(np.sqrt(self.beta2))
        self.weight = params.mass / options.n_particles
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.green_hat = green_symbol(self.grid, self.beta2)
        self.nufft = make_nufft(self.grid, options.nufft_tol, options.device, n_trans2=params.dim)
        method = options.interaction
        if method == "auto":
            if params.dim == 3 and options.device == "cpu":
                small = options.n_particles <= interaction.COMPILED_DIRECT_MAX_P
                method = "compiled" if (small or options.softening > 0) else "fmm"
            else:
                method = "direct"
        if method in ("fmm", "compiled") and params.dim != 3:
            raise ValueError(f"interaction: {method!r} is available in 3D only; use 'direct' or 'auto' in 2D")
        self.interaction_method = method

    # -- pieces -------------------------------------------------------------------------
    def rho_hat(self, x: np.ndarray) -> np.ndarray:
        """:math:`\\hat\\rho(\\omega) = (M_0/P)L^{-d}\\sum_p e^{-i\\omega\\cdot x_p}`, ``[H]*d``."""
        w = np.full(len(x), self.weight / self.grid.volume)
        f = self.nufft.type1(x, w)
        f[self.grid.zero_index] = self.params.mass / self.grid.volume  # exact: mass is conserved
        return f

    def field_update(self, alpha: np.ndarray, x_new: np.ndarray) -> np.ndarray:
        """Implicit Euler for c (Algorithm 1): coefficients of c_{n+1} from c_n and X_{n+1}."""
        a = (self.params.eps / self.options.dt) * alpha + self.rho_hat(x_new)
        return a * self.green_hat

    def grad_field(self, coeffs: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Gradient of the real Fourier series with ``coeffs`` at ``x``: ``[P, d]``."""
        g = self.nufft.type2(x, gradient_coefficients(self.grid, coeffs))
        return np.real(g).T

    def particle_interaction(self, x: np.ndarray) -> np.ndarray:
        """``(M0/P) sum_{q != p} grad K(x_p - x_q)``, ``[P, d]``, by the configured method."""
        o = self.options
        if o.variant == "random_batch":
            return interaction.interaction_random_batch(x, self.beta, self.weight, o.batch_size, self.rng,
                                                        softening=o.softening)
        if self.interaction_method == "fmm":
            return interaction.interaction_fmm(x, self.beta, self.weight, o.fmm_tol)
        if self.interaction_method == "compiled":
            return interaction.interaction_direct_compiled(x, self.beta, self.weight, o.softening)
        return interaction.interaction_direct(x, self.beta, self.weight, device=o.device, softening=o.softening)

    def drift(self, state: SIPFState) -> np.ndarray:
        """:math:`\\nabla c_n(X_n)` as the variant defines it, ``[P, d]``."""
        if state.alpha_prev is None or self.options.variant == "spectral":
            return self.grad_field(state.alpha, state.x)
        smooth = (self.params.eps / self.options.dt) * self.green_hat * state.alpha_prev
        return self.grad_field(smooth, state.x) + self.particle_interaction(state.x)

    # -- solver interface ---------------------------------------------------------------
    def init(self, x0: np.ndarray, alpha0: np.ndarray | None = None) -> SIPFState:
        """Initial state from particles ``[P, d]`` and optional c_0 coefficients ``[H]*d``."""
        if x0.shape != (self.options.n_particles, self.params.dim):
            raise ValueError(f"x0 must have shape {(self.options.n_particles, self.params.dim)}, got {x0.shape}")
        a0 = np.zeros(self.grid.shape, dtype=complex) if alpha0 is None else np.asarray(alpha0, dtype=complex)
        return SIPFState(0, 0.0, np.array(x0, dtype=float), a0, None)

    def step(self, state: SIPFState, dW: np.ndarray) -> SIPFState:
        """One step; ``dW`` are the Brownian increments ``[P, d]`` over [t_n, t_n + dt]."""
        p, dt = self.params, self.options.dt
        x = state.x + p.chi * dt * self.drift(state) + np.sqrt(2.0 * p.mu) * dW
        self.grid.clip(x)
        alpha = self.field_update(state.alpha, x)
        return replace(state, step=state.step + 1, t=state.t + dt, x=x, alpha=alpha, alpha_prev=state.alpha)

    def total_concentration(self, state: SIPFState) -> float:
        """:math:`\\bar c = \\int_\\Omega c = L^d\\,\\mathrm{Re}\\,\\alpha(0)`."""
        return float(self.grid.volume * np.real(state.alpha[self.grid.zero_index]))
