"""SSVI surfaces (Gatheral and Jacquier 2014) with the power-law phi, calibrated jointly.

Surface SVI, total variance at log-moneyness ``k = ln(K/F_T)`` and ATM total variance
``theta_t = w(0, t)`` (Gatheral and Jacquier, "Arbitrage-free SVI volatility surfaces",
Quantitative Finance 14(1), 2014, eq. (4.1)):

    w(k, theta) = theta / 2 (1 + rho phi(theta) k + sqrt((phi(theta) k + rho)^2 + 1 - rho^2))

Power-law ``phi(theta) = eta theta^(-gamma) (1 + theta)^(gamma - 1)`` (their eq. (4.5)).

No-arbitrage by construction in :func:`fit_ssvi`'s parameterisation:

- calendar (their Theorem 4.1): ``theta_t`` non-decreasing in ``t`` — the fitted ATM total
  variances are cumulative sums of positive increments — and
  ``0 <= d(theta phi)/d theta = (1 - gamma) phi / (1 + theta) <= phi
  <= (1 + sqrt(1 - rho^2)) phi / rho^2`` for ``gamma in (0, 1)``;
- butterfly (their Theorem 4.2): ``theta phi (1 + |rho|) < 4`` and
  ``theta phi^2 (1 + |rho|) <= 4``. With ``eta (1 + |rho|) <= 2`` and ``gamma in (0, 1/2]``:
  ``theta phi = eta (theta/(1+theta))^(1-gamma) <= eta`` gives ``theta phi (1+|rho|) <= 2`` and
  ``theta phi^2 = eta^2 (theta/(1+theta))^(1-2 gamma) / (1+theta) <= eta^2`` gives
  ``theta phi^2 (1+|rho|) <= 4 / (1+|rho|) <= 4``. Both are enforced:
  ``eta = 2/(1+|rho|) sigmoid(z)``, ``gamma = 0.5 sigmoid(z)``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._validate import as_host_array
from ._lm import LMState, lm_init, lm_run

__all__ = ["SSVI", "SSVIFit", "fit_ssvi"]

Array = jax.Array
ArrayLike = Any


class SSVI(eqx.Module):
    """SSVI surface: ``rho``, power-law ``eta``, ``gamma`` and ATM total variances ``theta``.

    ``theta`` has one entry per calibrated expiry ``expiries`` (years, increasing). Between
    expiries ``theta`` is interpolated linearly in ``t`` (monotone, so no calendar arbitrage
    is introduced); before the first expiry ``theta = theta_1 t / t_1``; after the last,
    ``theta`` grows at the last segment's slope (flat forward variance).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxmm.vol import SSVI
        >>> s = SSVI(rho=-0.4, eta=1.0, gamma=0.4, theta=jnp.array([0.01, 0.04]),
        ...          expiries=jnp.array([0.25, 1.0]))
        >>> round(float(s.total_variance(0.0, 1.0)), 6)
        0.04
    """

    rho: Array
    eta: Array
    gamma: Array
    theta: Array
    expiries: Array

    def __init__(self, rho, eta, gamma, theta, expiries):
        self.rho, self.eta, self.gamma = jnp.asarray(rho), jnp.asarray(eta), jnp.asarray(gamma)
        self.theta, self.expiries = jnp.asarray(theta), jnp.asarray(expiries)

    def phi(self, theta: ArrayLike) -> Array:
        """Power-law ``phi(theta) = eta theta^-gamma (1 + theta)^(gamma - 1)``."""
        th = jnp.asarray(theta)
        return self.eta * th ** (-self.gamma) * (1.0 + th) ** (self.gamma - 1.0)

    def atm_total_variance(self, expiry: ArrayLike) -> Array:
        """``theta_t`` at any ``t >= 0`` (see the class docstring for inter/extrapolation)."""
        t = jnp.asarray(expiry)
        ts, th = self.expiries, self.theta
        first = th[0] * t / ts[0]
        if ts.shape[0] == 1:
            return first
        slope = (th[-1] - th[-2]) / (ts[-1] - ts[-2])
        inner = jnp.interp(t, ts, th)
        last = th[-1] + slope * (t - ts[-1])
        return jnp.where(t < ts[0], first, jnp.where(t > ts[-1], last, inner))

    def total_variance_theta(self, k: ArrayLike, theta: ArrayLike) -> Array:
        """``w(k, theta)`` (eq. 4.1) for given ATM total variance."""
        k, th = jnp.asarray(k), jnp.asarray(theta)
        p = self.phi(th)
        r = self.rho
        return 0.5 * th * (1.0 + r * p * k + jnp.sqrt((p * k + r) ** 2 + 1.0 - r * r))

    def total_variance(self, k: ArrayLike, expiry: ArrayLike) -> Array:
        """``w(k, t)`` at log-moneyness ``k`` and expiry ``t`` (years)."""
        return self.total_variance_theta(k, self.atm_total_variance(expiry))

    def implied_vol(self, k: ArrayLike, expiry: ArrayLike) -> Array:
        """Annualised Black implied vol ``sqrt(w / t)``."""
        return jnp.sqrt(self.total_variance(k, expiry) / jnp.asarray(expiry))


class SSVIFit(eqx.Module):
    """Result of :func:`fit_ssvi`.

    ``surface`` (:class:`SSVI`), ``status`` (0 OK, 1 MAX_ITER, 5 NON_FINITE — the
    :class:`~jaxmm.vol.SVIStatus` codes), ``iterations``, ``loss``, ``rmse`` per slice (vol),
    ``residuals`` (model - market vol per quote, NaN where unused), ``used``.
    """

    surface: SSVI
    status: Array
    iterations: Array
    loss: Array
    rmse: Array
    residuals: Array
    used: Array


def _to_ssvi(z: Array, expiries: Array) -> SSVI:
    rho = 0.999 * jnp.tanh(z[0])
    eta = 2.0 / (1.0 + jnp.abs(rho)) * jax.nn.sigmoid(z[1])
    gamma = 0.5 * jax.nn.sigmoid(z[2])
    theta = jnp.cumsum(jnp.exp(z[3:]))
    return SSVI(rho, eta, gamma, theta, expiries)


def _residual_fn(k, vol, wts, expiries) -> Callable[[Array], Array]:
    def residual(z):
        s = _to_ssvi(z, expiries)
        w = s.total_variance_theta(k, s.theta[:, None])
        model = jnp.sqrt(jnp.maximum(w, 1e-12) / expiries[:, None])
        return (jnp.sqrt(wts) * (model - vol)).reshape(-1)

    return residual


@partial(jax.jit, static_argnames=("n_starts", "max_iter"))
def _fit(k, vol, wts, used, expiries, n_starts: int, max_iter: int):
    dtype = k.dtype
    big = jnp.asarray(1e30, dtype)
    # ATM total variance per slice from the quote nearest k = 0, then made increasing
    idx = jnp.argmin(jnp.where(used, jnp.abs(k), big), axis=1)
    v_atm = jnp.take_along_axis(vol, idx[:, None], 1)[:, 0]
    th0 = jax.lax.cummax(jnp.maximum(v_atm**2 * expiries, 1e-6))
    inc = jnp.diff(jnp.concatenate([jnp.zeros((1,), dtype), th0]))
    inc = jnp.maximum(inc, 1e-3 * th0[-1] / th0.shape[0])
    u = jax.random.uniform(jax.random.PRNGKey(1), (n_starts, 3), dtype=dtype)
    rho0 = -0.9 + 1.4 * u[:, 0]
    frac = 0.05 + 0.9 * u[:, 1]
    gfrac = 0.1 + 0.8 * u[:, 2]
    head = jnp.stack(
        [jnp.arctanh(rho0 / 0.999), jnp.log(frac / (1 - frac)), jnp.log(gfrac / (1 - gfrac))], 1
    )
    z0 = jnp.concatenate([head, jnp.broadcast_to(jnp.log(inc), (n_starts, inc.shape[0]))], 1)
    res = _residual_fn(k, vol, wts, expiries)
    state = jax.vmap(lambda z: lm_init(res, z))(z0)
    state = jax.vmap(lambda s: lm_run(res, s, max_iter))(state)
    best = jnp.argmin(jnp.where(jnp.isfinite(state.loss), state.loss, jnp.inf))
    pick: LMState = jax.tree.map(lambda x: x[best], state)
    surf = _to_ssvi(pick.z, expiries)
    w = surf.total_variance_theta(k, surf.theta[:, None])
    model = jnp.sqrt(jnp.maximum(w, 0.0) / expiries[:, None])
    resid = jnp.where(used, model - vol, jnp.nan)
    sq = jnp.where(used, (model - vol) ** 2, 0.0)
    rmse = jnp.sqrt(jnp.sum(sq, 1) / jnp.maximum(jnp.sum(used, 1), 1).astype(dtype))
    finite = jnp.isfinite(pick.loss) & jnp.all(jnp.isfinite(pick.z))
    status = jnp.where(~finite, 5, jnp.where(pick.converged, 0, 1)).astype(jnp.int32)
    return surf, status, pick.iterations, pick.loss, rmse, resid


def fit_ssvi(
    log_moneyness: ArrayLike,
    implied_vol: ArrayLike,
    expiries: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    weights: ArrayLike | None = None,
    n_starts: int = 8,
    max_iter: int = 200,
) -> SSVIFit:
    """Fit a power-law SSVI surface jointly to all expiries (vmapped multi-start LM).

    Args:
        log_moneyness: ``(n_expiries, n_strikes)`` of ``k = ln(K/F_T)`` (pad + mask ragged).
        implied_vol: same shape, annualised vols; NaN = missing quote.
        expiries: ``(n_expiries,)`` strictly increasing years.
        mask, weights: as :func:`fit_svi` (default weights: Black vega ``exp(-d1^2/2)``).
        n_starts: starts (static) over ``rho``, ``eta``, ``gamma``; ``theta`` starts at the
            market ATM total variances made non-decreasing.
        max_iter: LM iterations per start (static).

    Returns:
        :class:`SSVIFit`; the surface is free of static arbitrage by construction (module
        docstring).

    Raises:
        ValueError: naming the argument for bad shapes, non-increasing or non-positive
            expiries, negative vols.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxmm.vol import SSVI, fit_ssvi
        >>> T = jnp.array([0.25, 0.5, 1.0]); k = jnp.tile(jnp.linspace(-0.3, 0.3, 11), (3, 1))
        >>> true = SSVI(-0.5, 1.2, 0.4, jnp.array([0.01, 0.022, 0.045]), T)
        >>> fit = fit_ssvi(k, true.implied_vol(k, T[:, None]), T, n_starts=4)
        >>> round(float(fit.surface.rho), 3)
        -0.5
    """
    k_h = (
        as_host_array("log_moneyness", log_moneyness)
        if not isinstance(log_moneyness, jax.Array)
        else log_moneyness
    )
    if k_h.ndim != 2 or k_h.shape[1] == 0 or k_h.shape[0] == 0:
        raise ValueError(
            f"log_moneyness: need shape (n_expiries, n_strikes) with both >= 1, got {k_h.shape}"
        )
    if np.shape(implied_vol) != k_h.shape:
        raise ValueError(
            f"implied_vol: shape {np.shape(implied_vol)} differs from log_moneyness {k_h.shape}"
        )
    if not isinstance(implied_vol, jax.Array):
        v_np = np.asarray(implied_vol, dtype=float)
        if (v_np[np.isfinite(v_np)] < 0).any():
            raise ValueError("implied_vol: must be >= 0 (NaN marks a missing quote)")
    if not isinstance(expiries, jax.Array):
        t_np = np.asarray(expiries, dtype=float)
        if t_np.shape != (k_h.shape[0],):
            raise ValueError(f"expiries: need shape ({k_h.shape[0]},), got {t_np.shape}")
        if (t_np <= 0).any() or (np.diff(t_np) <= 0).any():
            raise ValueError("expiries: must be > 0 and strictly increasing")
    k = jnp.asarray(log_moneyness)
    if not jnp.issubdtype(k.dtype, jnp.floating):
        k = k.astype(jnp.asarray(0.0).dtype)
    dtype = k.dtype
    vol = jnp.asarray(implied_vol).astype(dtype)
    t = jnp.asarray(expiries).astype(dtype)
    used = jnp.isfinite(vol) & (vol > 0)
    if mask is not None:
        used = used & jnp.asarray(mask).astype(bool)
    vol = jnp.where(used, vol, jnp.zeros_like(vol))
    if weights is None:
        s = jnp.where(used, vol * jnp.sqrt(t[:, None]), 1.0)
        d1 = -k / s + 0.5 * s
        wts = jnp.where(used, jnp.exp(-0.5 * d1 * d1), 0.0)
    else:
        wts = jnp.where(used, jnp.asarray(weights).astype(dtype), 0.0)
    surf, status, iters, loss, rmse, resid = _fit(k, vol, wts, used, t, n_starts, max_iter)
    return SSVIFit(surf, status, iters, loss, rmse, resid, used)
