"""GARCH(1,1) with Gaussian innovations, fitted by maximum likelihood (Bollerslev 1986).

Model, for returns ``y_t`` (any unit; percent returns are numerically best, as in ``arch``):

    y_t = mu + e_t                (mean="constant")   or   y_t = e_t   (mean="zero")
    e_t = sigma_t z_t,  z_t ~ N(0, 1)
    sigma2_t = omega + alpha e_{t-1}^2 + beta sigma2_{t-1}

Constraints: ``omega > 0``, ``alpha >= 0``, ``beta >= 0``, ``alpha + beta < 1`` (covariance
stationarity). They are enforced by the parameterisation: ``omega = s exp(z0)`` and
``(alpha, beta, 1 - alpha - beta) = softmax(z1, z2, 0)``, so every iterate is admissible.

Variance initialisation (the ``arch`` package's convention, ``arch.univariate`` 8.0 —
``VolatilityProcess.backcast``): the pre-sample values ``e_{-1}^2`` and ``sigma2_{-1}`` are
both replaced by the *backcast*

    backcast = sum_{i < tau} w_i e0_i^2,  w_i = 0.94^i / sum_j 0.94^j,  tau = min(75, n)

computed once from the starting residuals ``e0 = y - mean(y)`` (constant mean) or ``e0 = y``
(zero mean) and held fixed during the optimisation. Hence
``sigma2_0 = omega + (alpha + beta) backcast``. The log-likelihood is the full Gaussian one,
``-0.5 sum(log(2 pi) + log sigma2_t + e_t^2 / sigma2_t)``.

Optimiser: Newton's method on the unconstrained ``z`` with the exact Hessian (``jax.hessian``,
4 x 4), Levenberg damping and step acceptance only when the likelihood improves, run for a
budget of ``max_iter`` iterations inside ``lax.while_loop`` (it stops at convergence; one
compilation per series length and mean model).

Standard errors: the Bollerslev-Wooldridge (1992) robust sandwich ``H^-1 (S'S) H^-1`` in the
natural parameters (``H`` the Hessian of the log-likelihood, ``S`` the per-observation
scores), which is ``arch``'s default ``cov_type="robust"``; ``std_err_mle`` holds the
non-robust ``sqrt(diag(-H^-1))``.
"""

from __future__ import annotations

import enum
from functools import partial
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._validate import as_host_array, check_values

__all__ = ["GarchStatus", "GarchResult", "fit_garch", "garch_backcast"]

Array = jax.Array
ArrayLike = Any

_LOG_2PI = float(np.log(2.0 * np.pi))


class GarchStatus(enum.IntEnum):
    """Outcome of :func:`fit_garch` (stored as an int in :attr:`GarchResult.status`).

    OK: converged to an interior maximum (gradient norm below tolerance).
    MAX_ITER: the iteration budget ran out before the gradient tolerance was met.
    NEAR_UNIT_ROOT: converged, but ``alpha + beta > 0.9999`` (integrated GARCH; the
        long-run variance and standard errors are unreliable).
    NON_FINITE: the likelihood or its derivatives became NaN/inf (parameters are NaN).
    """

    OK = 0
    MAX_ITER = 1
    NEAR_UNIT_ROOT = 2
    NON_FINITE = 3


class GarchResult(eqx.Module):
    """Fitted GARCH(1,1). Parameters in the units of the returns passed to :func:`fit_garch`.

    Fields: ``mu`` (NaN when ``mean="zero"``), ``omega``, ``alpha``, ``beta``; ``loglik``
    (Gaussian, full constant included); ``std_err`` (robust, ordered as :attr:`param_names`);
    ``std_err_mle`` (non-robust); ``status`` (:class:`GarchStatus` as int); ``iterations``
    (Newton iterations used); ``grad_norm`` (max |d loglik / d z| at the end); ``backcast``;
    ``sigma2`` (in-sample conditional variances); ``last_resid`` (final residual).
    """

    mu: Array
    omega: Array
    alpha: Array
    beta: Array
    loglik: Array
    std_err: Array
    std_err_mle: Array
    status: Array
    iterations: Array
    grad_norm: Array
    backcast: Array
    sigma2: Array
    last_resid: Array
    mean: str = eqx.field(static=True)

    @property
    def param_names(self) -> tuple[str, ...]:
        """Names in the order of :attr:`std_err`."""
        base = ("omega", "alpha", "beta")
        return (("mu",) + base) if self.mean == "constant" else base

    @property
    def persistence(self) -> Array:
        """``alpha + beta``: the decay per period of a variance shock."""
        return self.alpha + self.beta

    @property
    def long_run_variance(self) -> Array:
        """Unconditional variance ``omega / (1 - alpha - beta)`` per period."""
        return self.omega / (1.0 - self.alpha - self.beta)

    def forecast(self, horizon: int) -> Array:
        """Variance term structure ``E_T[sigma2_{T+h}]`` for ``h = 1..horizon`` (per period).

        ``sigma2_{T+1} = omega + alpha e_T^2 + beta sigma2_T`` and
        ``E[sigma2_{T+h}] = vbar + (alpha + beta)^(h-1) (sigma2_{T+1} - vbar)``. Summing the
        first ``h`` gives the variance of the ``h``-period return (the term structure of
        implied-variance-like quantities).
        """
        one = self.omega + self.alpha * self.last_resid**2 + self.beta * self.sigma2[-1]
        h = jnp.arange(horizon).astype(one.dtype)
        vbar = self.long_run_variance
        return vbar + (self.alpha + self.beta) ** h * (one - vbar)


def garch_backcast(resids: ArrayLike) -> Array:
    """The ``arch`` backcast: 0.94-weighted mean of the first ``min(75, n)`` squared residuals.

    Example:
        >>> import numpy as np
        >>> from jaxmm.vol import garch_backcast
        >>> round(float(garch_backcast(np.ones(10))), 6)
        1.0
    """
    e = jnp.asarray(resids)
    tau = min(75, e.shape[0])
    w = jnp.asarray(0.94 ** np.arange(tau)).astype(e.dtype)
    return jnp.sum(e[:tau] ** 2 * w) / jnp.sum(w)


def _natural(z: Array, scale: Array, center: Array, sd: Array, has_mu: bool):
    """Unconstrained z -> (mu, omega, alpha, beta)."""
    logits = jnp.stack([z[1], z[2], jnp.zeros_like(z[1])])
    p = jax.nn.softmax(logits)
    omega = scale * jnp.exp(z[0])
    mu = center + sd * z[3] if has_mu else jnp.zeros_like(z[0])
    return mu, omega, p[0], p[1]


def _sigma2_path(y: Array, mu, omega, alpha, beta, backcast):
    e = y - mu

    def step(carry, et):
        e_prev2, s_prev = carry
        s = omega + alpha * e_prev2 + beta * s_prev
        return (et * et, s), s

    _, s2 = jax.lax.scan(step, (backcast, backcast), e)
    return e, s2


def _loglik_terms(theta: Array, y: Array, backcast: Array, has_mu: bool) -> Array:
    """Per-observation log-likelihood in natural parameters ``theta``."""
    if has_mu:
        mu, omega, alpha, beta = theta[0], theta[1], theta[2], theta[3]
    else:
        mu, omega, alpha, beta = jnp.zeros_like(theta[0]), theta[0], theta[1], theta[2]
    e, s2 = _sigma2_path(y, mu, omega, alpha, beta, backcast)
    return -0.5 * (_LOG_2PI + jnp.log(s2) + e * e / s2)


@partial(jax.jit, static_argnames=("has_mu",))
def _fit(y: Array, has_mu: bool, max_iter: Array, tol: Array):
    dtype = y.dtype
    center = jnp.mean(y)
    e0 = y - center if has_mu else y
    backcast = garch_backcast(e0)
    var = jnp.mean(e0 * e0)
    sd = jnp.sqrt(var)
    scale = var

    def theta_of(z):
        mu, omega, alpha, beta = _natural(z, scale, center, sd, has_mu)
        return jnp.stack([mu, omega, alpha, beta]) if has_mu else jnp.stack([omega, alpha, beta])

    def negll(z):
        return -jnp.sum(_loglik_terms(theta_of(z), y, backcast, has_mu)) / y.shape[0]

    # start: alpha 0.08, beta 0.88 (softmax logits), omega = var (1 - 0.96)
    a0, b0 = 0.08, 0.88
    z0 = jnp.asarray(
        [np.log(1 - a0 - b0), np.log(a0 / (1 - a0 - b0)), np.log(b0 / (1 - a0 - b0)), 0.0],
        dtype=dtype,
    )
    if not has_mu:
        z0 = z0.at[3].set(0.0)
    npar = 4
    eye = jnp.eye(npar, dtype=dtype)
    mask = jnp.asarray([1.0, 1.0, 1.0, 1.0 if has_mu else 0.0], dtype=dtype)

    def cond(carry):
        _, _, _, it, done = carry
        return (it < max_iter) & ~done

    def body(carry):
        z, f, lam, it, _ = carry
        g = jax.grad(negll)(z) * mask
        h = jax.hessian(negll)(z) * mask[:, None] * mask[None, :] + (1.0 - mask) * eye
        converged = jnp.max(jnp.abs(g)) < tol
        # Levenberg-damped Newton: (H + lam (|diag H| + 1) I) dz = -g
        hd = h + lam * (jnp.abs(jnp.diag(h)) + 1.0) * eye
        dz = -jnp.linalg.solve(hd, g)
        dz = jnp.where(jnp.all(jnp.isfinite(dz)), dz, jnp.zeros_like(dz))
        f_new = negll(z + dz)
        ok = jnp.isfinite(f_new) & (f_new <= f) & ~converged
        z = jnp.where(ok, z + dz, z)
        f = jnp.where(ok, f_new, f)
        lam = jnp.where(ok, jnp.maximum(lam * 0.2, 1e-12), lam * 10.0)
        # a non-finite gradient or a damping blow-up also ends the loop (status below)
        stop = converged | ~jnp.all(jnp.isfinite(g)) | (lam > 1e20)
        return z, f, lam, it + jnp.where(converged, 0, 1).astype(jnp.int32), stop

    init = (z0, negll(z0), jnp.asarray(1e-3, dtype), jnp.asarray(0, jnp.int32), jnp.bool_(False))
    z, f, _, iters, _ = jax.lax.while_loop(cond, body, init)
    gz = jnp.max(jnp.abs(jax.grad(negll)(z) * mask))

    theta = theta_of(z)
    terms = lambda th: _loglik_terms(th, y, backcast, has_mu)
    ll = jnp.sum(terms(theta))
    hess = jax.hessian(lambda th: jnp.sum(terms(th)))(theta)
    scores = jax.jacfwd(terms)(theta)
    hinv = jnp.linalg.inv(hess)
    cov_rob = hinv @ (scores.T @ scores) @ hinv
    se = jnp.sqrt(jnp.diag(cov_rob))
    se_mle = jnp.sqrt(jnp.diag(-hinv))
    mu, omega, alpha, beta = _natural(z, scale, center, sd, has_mu)
    e, s2 = _sigma2_path(y, mu, omega, alpha, beta, backcast)

    finite = jnp.isfinite(ll) & jnp.all(jnp.isfinite(theta))
    status = jnp.where(
        ~finite,
        GarchStatus.NON_FINITE,
        jnp.where(
            gz >= tol,
            GarchStatus.MAX_ITER,
            jnp.where(alpha + beta > 0.9999, GarchStatus.NEAR_UNIT_ROOT, GarchStatus.OK),
        ),
    ).astype(jnp.int32)
    nan = jnp.asarray(jnp.nan, dtype)
    pick = lambda x: jnp.where(finite, x, nan)
    return dict(
        mu=pick(mu) if has_mu else nan,
        omega=pick(omega),
        alpha=pick(alpha),
        beta=pick(beta),
        loglik=ll,
        std_err=se,
        std_err_mle=se_mle,
        status=status,
        iterations=iters,
        grad_norm=gz,
        backcast=backcast,
        sigma2=s2,
        last_resid=e[-1],
    )


def fit_garch(
    returns: ArrayLike, mean: str = "constant", *, max_iter: int = 100, tol: float = 1e-7
) -> GarchResult:
    """Fit GARCH(1,1) with Gaussian errors by maximum likelihood (``arch``'s conventions).

    Args:
        returns: 1-D finite returns, at least 10 observations. Scale matters for the optimiser
            as it does in ``arch``: percent returns (about unit variance) are recommended.
        mean: ``"constant"`` (estimate ``mu``) or ``"zero"`` (``mu = 0``, reported as NaN).
        max_iter: Newton iteration budget (a traced value: changing it does not recompile).
        tol: convergence tolerance on max |gradient| of the *average* negative
            log-likelihood in the unconstrained parameters.

    Returns:
        :class:`GarchResult`. A failed fit is data: ``status`` says why (see
        :class:`GarchStatus`); nothing is raised for a non-converging series.

    Raises:
        ValueError: naming the argument, for non-1-D, too short, non-finite or constant
            returns, or an unknown ``mean``.

    Reference: Bollerslev (1986), "Generalized autoregressive conditional heteroskedasticity",
    J. Econometrics 31; robust errors Bollerslev and Wooldridge (1992).

    Example:
        >>> import numpy as np, jaxmm.vol as jv
        >>> rng = np.random.default_rng(0)
        >>> r = rng.standard_normal(500)
        >>> res = jv.fit_garch(r, mean="zero")
        >>> int(res.status) in (0, 2), res.param_names
        (True, ('omega', 'alpha', 'beta'))
    """
    if mean not in ("constant", "zero"):
        raise ValueError(f"mean: must be 'constant' or 'zero', got {mean!r}")
    arr = as_host_array("returns", returns) if not isinstance(returns, jax.Array) else returns
    if arr.ndim != 1:
        raise ValueError(f"returns: must be 1-D, got shape {arr.shape}")
    if arr.shape[0] < 10:
        raise ValueError(f"returns: need at least 10 observations, got {arr.shape[0]}")
    check_values("returns", returns)
    if not isinstance(returns, jax.Array) and np.ptp(np.asarray(returns)) == 0.0:
        raise ValueError("returns: constant series, variance is zero")
    y = jnp.asarray(returns)
    if not jnp.issubdtype(y.dtype, jnp.floating):
        y = y.astype(jnp.asarray(0.0).dtype)
    out = _fit(y, mean == "constant", jnp.asarray(max_iter, jnp.int32), jnp.asarray(tol, y.dtype))
    return GarchResult(**out, mean=mean)
