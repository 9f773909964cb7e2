r"""Parameter inference through the differentiable finite-difference solver.

Unknowns :math:`\theta = (\log D_w, \log\rho)` and optionally the origin :math:`x_0` (grid
mm). Observations at two or more times are either

* **densities** :math:`y_k` (e.g. a normalised imaging proxy of u), with Gaussian noise, or
* **segmentations**: binary masks of :math:`\{u \ge \ell\}` for a level :math:`\ell` (core 0.6,
  oedema 0.25), compared with the smoothed indicator :math:`\sigma((u - \ell)/s)`.

The misfit is :math:`\Phi(\theta) = \tfrac12\sum_k r_k(\theta)^2` with
:math:`r_k = \mathrm{pred}_k(\theta) - y_k` over the observed voxels. It is minimised by
L-BFGS-B (SciPy) on the log-parameters, with gradients from torch autograd through every
time step of :class:`~oncodyn.tumour.fk.TorchFK`.

**Uncertainty.**

* Laplace / Gauss--Newton: :math:`\Sigma = \hat\sigma^2 (J^\top J)^{-1}` with
  :math:`J = \partial r/\partial\theta` from forward-mode differentiation (one JVP per
  parameter) and :math:`\hat\sigma^2 = \mathrm{RSS}/(N - p)` (the noise level is estimated,
  so the discretisation error of the inversion grid widens the intervals instead of biasing
  them unnoticed). 95% intervals are :math:`\exp(\hat\theta \pm 1.96\sqrt{\Sigma_{ii}})`.
* MCMC: ``emcee`` (affine-invariant ensemble) on the same likelihood with
  :math:`\sigma = \hat\sigma`, flat priors on the log-parameters inside the bounds, and the
  compiled forward solver (:func:`oncodyn.tumour.fk.simulate`, numba) per evaluation.

The time grid is chosen per evaluation from the current parameters rounded *up* to a
geometric ladder (ratio 1.25), so the step is always stable and the objective is smooth
between rungs.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field

import numpy as np

from oncodyn.tumour.fk import FKDomain, TorchFK, schedule, simulate
from oncodyn.tumour.model import FKParams, require

LADDER = 1.25


def soft_indicator(u: np.ndarray, level: float, width: float) -> np.ndarray:
    """σ((u - ℓ)/s), the smoothed segmentation {u >= ℓ} (NumPy arrays)."""
    return 1.0 / (1.0 + np.exp(-(u - level) / width))


@dataclass(frozen=True, eq=False)
class Observations:
    """Observed tumour at several times, on the crop of the inversion domain.

    Attributes:
        times: observation times (days), increasing, shape ``[n_obs]``.
        values: densities in [0, 1] or binary masks, shape ``[n_obs, *domain.shape]``.
        observed: which voxels count, bool, shape ``[n_obs, *domain.shape]``.
        levels: per observation ``None`` (a density) or the level ℓ of a segmentation.
        soft_width: s of the smoothed indicator σ((u - ℓ)/s) for segmentations.
    """

    times: np.ndarray
    values: np.ndarray
    observed: np.ndarray
    levels: tuple[float | None, ...]
    soft_width: float = 0.05

    def __post_init__(self) -> None:
        t = np.asarray(self.times, float)
        require(t.ndim == 1 and t.size >= 1 and bool(np.all(t > 0)), "observation times",
                "a list of times > 0 (days)", t.tolist())
        require(self.values.shape == self.observed.shape and self.values.shape[0] == t.size, "observations",
                f"values and observed masks of shape [{t.size}, *grid]",
                f"{self.values.shape} and {self.observed.shape}")
        require(len(self.levels) == t.size, "levels", f"one entry per observation ({t.size})", len(self.levels))
        for lv in self.levels:
            require(lv is None or 0 < lv < 1, "levels", "None (density) or a level in (0, 1)", lv)
        require(self.soft_width > 0, "soft_width", "> 0", self.soft_width)

    @property
    def n(self) -> int:
        """Number of observed values N."""
        return int(self.observed.sum())


@dataclass(frozen=True)
class InverseOptions:
    """Options of the FD inverse.

    Attributes:
        D_bounds, rho_bounds: box for D_w (mm^2/day) and ρ (1/day).
        fit_origin: also infer x₀ (grid mm), within ``origin_radius`` mm of the initial guess.
        max_iter: L-BFGS-B iterations; tol: its relative function tolerance (``ftol``).
        grid_size: the misfit is non-convex (a valley of small D and a ρ that fits the volume
            traps a local search), so the fit starts from the best point of a ``grid_size``^2
            log-spaced grid over the bounds, evaluated with the compiled forward solver
            (0 skips it and starts from the given guess).
        scheme, cfl: time stepping of the forward solver (see :mod:`oncodyn.tumour.fk`).
        gradient: ``adjoint`` (compiled discrete adjoint, :mod:`oncodyn.tumour.adjoint`; CPU) or
            ``autograd`` (torch through :class:`~oncodyn.tumour.fk.TorchFK`; CPU or CUDA);
            ``auto`` picks autograd on CUDA and the adjoint otherwise. The Laplace Jacobian
            is a central difference of the compiled solver (adjoint) or forward-mode JVPs.
        device: torch device; dtype float64.
    """

    D_bounds: tuple[float, float] = (0.01, 1.0)
    rho_bounds: tuple[float, float] = (0.002, 0.2)
    fit_origin: bool = False
    origin_radius: float = 10.0
    max_iter: int = 60
    tol: float = 1e-10
    grid_size: int = 5
    scheme: str = "heun"
    cfl: float = 0.9
    gradient: str = "auto"
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("D_bounds", "rho_bounds"):
            lo, hi = getattr(self, name)
            require(0 < lo < hi, name, "(low, high) with 0 < low < high", (lo, hi))
        require(self.max_iter >= 1, "max_iter", ">= 1", self.max_iter)
        require(self.grid_size == 0 or self.grid_size >= 2, "grid_size", "0 (off) or >= 2", self.grid_size)
        require(self.origin_radius > 0, "origin_radius", "> 0 (mm)", self.origin_radius)
        require(0 < self.cfl <= 1, "cfl", "in (0, 1]", self.cfl)
        require(self.gradient in ("auto", "adjoint", "autograd"), "gradient", "'auto', 'adjoint' or 'autograd'",
                self.gradient)


@dataclass
class InverseResult:
    """Estimates, uncertainty and the optimisation history.

    Attributes:
        D_white, rho: estimates. x0: origin (grid mm). theta: the log-parameters (+ origin).
        cov: Laplace covariance of theta (``[p, p]``); sigma: estimated noise std.
        intervals: ``{"D_white": (lo, hi), "rho": (lo, hi)}`` 95% (Laplace).
        history: per objective evaluation: wall_time_s, D_white, rho, misfit.
        mcmc: posterior summaries when MCMC ran (quantiles, acceptance, samples).
    """

    D_white: float
    rho: float
    x0: np.ndarray
    theta: np.ndarray
    misfit: float
    n_obs: int
    wall_time_s: float
    n_evals: int
    history: list[dict] = field(default_factory=list)
    cov: np.ndarray | None = None
    sigma: float | None = None
    intervals: dict = field(default_factory=dict)
    mcmc: dict = field(default_factory=dict)
    message: str = ""

    def errors(self, D_true: float, rho_true: float) -> dict:
        """Relative errors of the estimates against known values."""
        return {"D_white": abs(self.D_white / D_true - 1), "rho": abs(self.rho / rho_true - 1)}


def _rung(v: float) -> float:
    return LADDER ** math.ceil(math.log(v) / math.log(LADDER) - 1e-12)


class FKInverse:
    """The inverse problem on a prepared domain.

    Args:
        domain: inversion domain. obs: observations on its crop.
        params: FK parameters supplying the initial-condition shape and D_g/D_w (D_w and ρ
            are the unknowns; the values in ``params`` are ignored).
        x0: tumour origin (grid mm): known, or the initial guess if ``options.fit_origin``.
    """

    def __init__(self, domain: FKDomain, obs: Observations, params: FKParams, x0, options: InverseOptions = InverseOptions()):
        require(obs.values.shape[1:] == domain.shape, "observations", f"arrays on the domain crop {domain.shape}",
                obs.values.shape[1:])
        require(obs.n > 0, "observations", "at least one observed voxel", 0)
        self.domain, self.obs, self.params, self.opt = domain, obs, params, options
        self.x0_guess = np.asarray(x0, float)
        require(self.x0_guess.size == domain.ndim, "x0", f"{domain.ndim} coordinates (grid mm)", self.x0_guess.tolist())
        self._schedules: dict = {}
        self.history: list[dict] = []
        g = options.gradient
        self.gradient = ("autograd" if options.device == "cuda" else "adjoint") if g == "auto" else g
        self._t0 = time.perf_counter()

    @functools.cached_property
    def fk(self) -> TorchFK:
        """The torch solver (built on first use: the adjoint path never needs it)."""
        return TorchFK(self.domain, device=self.opt.device)

    @property
    def torch(self):
        return self.fk.torch

    @functools.cached_property
    def _y(self):
        return self.torch.as_tensor(self.obs.values, dtype=self.fk.dtype, device=self.opt.device)

    @functools.cached_property
    def _m(self):
        return self.torch.as_tensor(self.obs.observed, device=self.opt.device)

    # --- parameterisation
    @property
    def n_params(self) -> int:
        return 2 + (self.domain.ndim if self.opt.fit_origin else 0)

    def bounds(self) -> list[tuple[float, float]]:
        b = [tuple(np.log(self.opt.D_bounds)), tuple(np.log(self.opt.rho_bounds))]
        if self.opt.fit_origin:
            b += [(c - self.opt.origin_radius, c + self.opt.origin_radius) for c in self.x0_guess]
        return b

    def theta0(self, D0: float, rho0: float) -> np.ndarray:
        th = [math.log(D0), math.log(rho0)]
        return np.array(th + (list(self.x0_guess) if self.opt.fit_origin else []))

    def _schedule(self, D: float, rho: float):
        key = (_rung(D), _rung(rho))
        if key not in self._schedules:
            self._schedules[key] = schedule(self.domain, key[0], key[1], self.obs.times, self.opt.cfl)
        return self._schedules[key]

    # --- model
    def predictions(self, theta):
        """Predicted observables ``[n_obs, *shape]`` (tensor) for log-parameters ``theta`` (tensor)."""
        torch = self.torch
        D, rho = torch.exp(theta[0]), torch.exp(theta[1])
        x0 = theta[2:] if self.opt.fit_origin else torch.as_tensor(self.x0_guess, dtype=self.fk.dtype)
        dts, steps = self._schedule(float(D.detach()), float(rho.detach()))
        us = self.fk.simulate(D, rho, x0, self.params, dts, steps, self.opt.scheme)
        preds = []
        for u, lv in zip(us, self.obs.levels):
            preds.append(u if lv is None else torch.sigmoid((u - lv) / self.obs.soft_width))
        return torch.stack(preds)

    def residuals(self, theta):
        """r = pred - y on the observed voxels, shape ``[N]`` (tensor)."""
        return (self.predictions(theta) - self._y)[self._m]

    def _params_at(self, theta) -> FKParams:
        return FKParams(D_white=math.exp(theta[0]), rho=math.exp(theta[1]), grey_ratio=self.params.grey_ratio,
                        ic_amplitude=self.params.ic_amplitude, ic_decay=self.params.ic_decay)

    def objective(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """Φ = ½ Σ r² and its gradient in θ (adjoint or autograd); records the history."""
        theta = np.asarray(theta, float)
        if self.gradient == "adjoint":
            from oncodyn.tumour.adjoint import misfit_gradient

            p = self._params_at(theta)
            dts, steps = self._schedule(p.D_white, p.rho)
            x0 = theta[2:] if self.opt.fit_origin else self.x0_guess
            f, g_raw, _ = misfit_gradient(self.domain, p, x0, dts, steps, self.obs.values, self.obs.observed,
                                          self.obs.levels, self.obs.soft_width, self.opt.scheme)
            g = np.concatenate([[p.D_white * g_raw[0], p.rho * g_raw[1]], g_raw[2:] if self.opt.fit_origin else []])
        else:
            torch = self.torch
            th = torch.tensor(theta, dtype=self.fk.dtype, device=self.opt.device, requires_grad=True)
            r = self.residuals(th)
            ft = 0.5 * (r * r).sum()
            (gt,) = torch.autograd.grad(ft, th)
            f, g = float(ft.detach()), gt.detach().cpu().numpy()
        self.history.append({"wall_time_s": time.perf_counter() - self._t0, "D_white": math.exp(theta[0]),
                             "rho": math.exp(theta[1]), "misfit": f, "stage": "lbfgs"})
        return f, g

    def residuals_numba(self, theta: np.ndarray) -> np.ndarray:
        """r(θ) on the observed voxels with the compiled solver, shape ``[N]``."""
        pred = self.predict(theta)
        return (pred - self.obs.values)[self.obs.observed]

    def predict(self, theta: np.ndarray) -> np.ndarray:
        """Predicted observables ``[n_obs, *shape]`` (compiled solver, same time grid as the gradient)."""
        p = self._params_at(theta)
        x0 = theta[2:] if self.opt.fit_origin else self.x0_guess
        dt = self.domain.stable_dt(_rung(p.D_white), _rung(p.rho), self.opt.cfl)
        pred = simulate(self.domain, p, x0, self.obs.times, scheme=self.opt.scheme, dt_max=dt, cfl=1.0).u
        for k, lv in enumerate(self.obs.levels):
            if lv is not None:
                pred[k] = soft_indicator(pred[k], lv, self.obs.soft_width)
        return pred

    def jacobian(self, theta: np.ndarray) -> np.ndarray:
        """J = ∂r/∂θ, shape ``[N, p]``: central differences of the compiled solver (step 1e-4 in
        log-parameters, 1e-3 mm in x0; on the same time grid, so the difference is smooth) or
        one forward-mode JVP per parameter (autograd)."""
        if self.gradient == "adjoint":
            theta = np.asarray(theta, float)
            cols = []
            for i in range(theta.size):
                e = np.zeros_like(theta)
                e[i] = 1e-4 if i < 2 else 1e-3
                cols.append((self.residuals_numba(theta + e) - self.residuals_numba(theta - e)) / (2 * e[i]))
            return np.stack(cols, axis=1)
        torch = self.torch
        from torch.func import jvp

        th = torch.tensor(theta, dtype=self.fk.dtype, device=self.opt.device)
        cols = []
        for i in range(th.numel()):
            e = torch.zeros_like(th)
            e[i] = 1.0
            cols.append(jvp(self.residuals, (th,), (e,))[1].detach().cpu().numpy())
        return np.stack(cols, axis=1)

    # --- fit
    def fit(self, D0: float, rho0: float, laplace: bool = True, callback=None) -> InverseResult:
        """Minimise Φ from (D0, ρ0) with L-BFGS-B; then the Laplace covariance.

        Args:
            callback: ``callback(history_entry)`` after every evaluation (progress display).
        """
        from scipy.optimize import minimize

        require(self.opt.D_bounds[0] <= D0 <= self.opt.D_bounds[1], "D_init", f"within D_bounds {self.opt.D_bounds}", D0)
        require(self.opt.rho_bounds[0] <= rho0 <= self.opt.rho_bounds[1], "rho_init",
                f"within rho_bounds {self.opt.rho_bounds}", rho0)
        self._t0 = time.perf_counter()
        self.history = []
        theta0 = self.theta0(D0, rho0)
        if self.opt.grid_size:
            theta0 = self.grid_start(theta0, callback)

        def fun(th):
            out = self.objective(th)
            if callback is not None:
                callback(self.history[-1])
            return out

        res = minimize(fun, theta0, jac=True, method="L-BFGS-B", bounds=self.bounds(),
                       options={"maxiter": self.opt.max_iter, "ftol": self.opt.tol, "gtol": 1e-12})
        th = res.x
        out = InverseResult(D_white=math.exp(th[0]), rho=math.exp(th[1]),
                            x0=th[2:] if self.opt.fit_origin else self.x0_guess.copy(), theta=th,
                            misfit=float(res.fun), n_obs=self.obs.n, wall_time_s=0.0, n_evals=int(res.nfev),
                            history=list(self.history), message=str(res.message))
        if laplace:
            self.laplace(out)
        out.wall_time_s = time.perf_counter() - self._t0
        return out

    def misfit_numba(self, theta: np.ndarray) -> float:
        """Φ(θ) with the compiled forward solver (no gradient); same time grid as the torch path."""
        lp = self.log_posterior(theta, 1.0)
        return -lp if np.isfinite(lp) else np.inf

    def grid_start(self, theta0: np.ndarray, callback=None) -> np.ndarray:
        """The best of ``theta0`` and a log-spaced grid over the (D_w, ρ) bounds (origin kept)."""
        n = self.opt.grid_size
        best, f_best = theta0, self.misfit_numba(theta0)
        for lD in np.linspace(*np.log(self.opt.D_bounds), n):
            for lr in np.linspace(*np.log(self.opt.rho_bounds), n):
                th = theta0.copy()
                th[:2] = lD, lr
                f = self.misfit_numba(th)
                self.history.append({"wall_time_s": time.perf_counter() - self._t0, "D_white": math.exp(lD),
                                     "rho": math.exp(lr), "misfit": f, "stage": "grid"})
                if callback is not None:
                    callback(self.history[-1])
                if f < f_best:
                    best, f_best = th, f
        return best

    def laplace(self, res: InverseResult) -> None:
        """Fill ``res.cov``, ``res.sigma`` and 95% ``res.intervals`` (Gauss--Newton at the optimum)."""
        J = self.jacobian(res.theta)
        N, p = J.shape
        sigma2 = 2.0 * res.misfit / max(N - p, 1)
        cov = sigma2 * np.linalg.inv(J.T @ J)
        res.cov, res.sigma = cov, math.sqrt(sigma2)
        sd = np.sqrt(np.diag(cov))
        for i, name in enumerate(("D_white", "rho")):
            res.intervals[name] = (math.exp(res.theta[i] - 1.96 * sd[i]), math.exp(res.theta[i] + 1.96 * sd[i]))
        for i in range(2, p):
            res.intervals[f"x0[{i - 2}]"] = (res.theta[i] - 1.96 * sd[i], res.theta[i] + 1.96 * sd[i])

    # --- MCMC
    def log_posterior(self, theta: np.ndarray, sigma: float) -> float:
        """log p(θ | y) up to a constant: Gaussian likelihood (std ``sigma``), flat prior in the bounds."""
        for v, (lo, hi) in zip(theta, self.bounds()):
            if not lo <= v <= hi:
                return -np.inf
        pred = self.predict(np.asarray(theta, float))
        r = (pred - self.obs.values)[self.obs.observed]
        return -0.5 * float(r @ r) / sigma**2

    def mcmc(self, res: InverseResult, n_walkers: int = 16, n_steps: int = 200, burn: int = 50, seed: int = 0,
             progress: bool = False) -> dict:
        """Sample the posterior with emcee around the optimum; fills and returns ``res.mcmc``."""
        import emcee

        require(res.sigma is not None, "mcmc", "a result with a Laplace fit (sigma)", None)
        require(n_walkers >= 2 * self.n_params, "n_walkers", f">= {2 * self.n_params}", n_walkers)
        require(0 <= burn < n_steps, "burn", f"in [0, n_steps={n_steps})", burn)
        rng = np.random.default_rng(seed)
        p = self.n_params
        start = rng.multivariate_normal(res.theta, res.cov, size=n_walkers)
        lo, hi = np.array(self.bounds()).T
        start = np.clip(start, lo + 1e-9, hi - 1e-9)
        t0 = time.perf_counter()
        sampler = emcee.EnsembleSampler(n_walkers, p, self.log_posterior, args=(res.sigma,),
                                        parameter_names=None)
        sampler.random_state = np.random.RandomState(seed).get_state()
        sampler.run_mcmc(start, n_steps, progress=progress)
        chain = sampler.get_chain(discard=burn, flat=True)
        D, rho = np.exp(chain[:, 0]), np.exp(chain[:, 1])
        q = lambda a: [float(v) for v in np.quantile(a, [0.025, 0.5, 0.975])]  # noqa: E731
        res.mcmc = {"D_white_q": q(D), "rho_q": q(rho), "acceptance": float(np.mean(sampler.acceptance_fraction)),
                    "n_samples": int(chain.shape[0]), "n_walkers": n_walkers, "n_steps": n_steps, "burn": burn,
                    "wall_time_s": time.perf_counter() - t0, "samples": chain}
        return res.mcmc
