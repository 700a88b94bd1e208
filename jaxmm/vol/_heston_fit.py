"""Heston (1993) calibration to an option chain by Levenberg-Marquardt through ``heston_price``.

Objective: vega-scaled price residuals ``(V_Heston(K_i, T_i) - V_i) / vega_i`` — to first order
the implied-vol error of each quote, without inverting the model prices inside the loop (the
standard trick, e.g. Cui, del Baño Rollin and Germano 2017, "Full and fast calibration of the
Heston stochastic volatility model", EJOR 263). ``vega_i`` is the Black vega at the market
implied vol, floored at 1e-4 x spot x sqrt(T) so far wings do not dominate. The Jacobian is
autodiff through :func:`jaxmm.pricing._heston.heston_price_scalar` (exact, no finite
differences), row by row in reverse mode.

Parameterisation (every iterate admissible): ``v0, kappa, theta, xi = exp(z)``,
``rho = 0.999 tanh(z)``. The Feller condition ``2 kappa theta >= xi^2`` is *reported*, not
imposed (market-implied Heston parameters violate it routinely; the pricer handles both).
A handful of starts run as one ``vmap``; the best final loss wins.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._validate import check_broadcast, check_values
from ..pricing._bsm import black_scholes_scalar
from ..pricing._heston import heston_price_scalar
from ..pricing._iv import implied_vol as _implied_vol
from ._lm import lm_init, lm_run

__all__ = ["HestonFit", "fit_heston"]

Array = jax.Array
ArrayLike = Any


class HestonFit(eqx.Module):
    """Result of :func:`fit_heston`.

    ``v0, kappa, theta, xi, rho`` (Heston's units: variances, per-year speed); ``feller``
    (``2 kappa theta - xi^2``; >= 0 means the variance never reaches 0) and ``feller_ok``;
    ``status`` (0 OK, 1 MAX_ITER, 5 NON_FINITE, as :class:`~jaxmm.vol.SVIStatus`);
    ``iterations``; ``loss`` (0.5 sum of squared vega-scaled residuals); ``residuals``
    (model - market price per quote, currency); ``vol_residuals`` (model - market implied vol
    per quote, NaN where the model price has no implied vol); ``rmse_vol``.
    """

    v0: Array
    kappa: Array
    theta: Array
    xi: Array
    rho: Array
    feller: Array
    feller_ok: Array
    status: Array
    iterations: Array
    loss: Array
    residuals: Array
    vol_residuals: Array
    rmse_vol: Array


def _params(z: Array):
    e = jnp.exp(z[:4])
    return e[0], e[1], e[2], e[3], 0.999 * jnp.tanh(z[4])


def _quote_residual(z, spot, k, t, r, q, c, target, scale, w, n_nodes: int):
    v0, kappa, theta, xi, rho = _params(z)
    price = heston_price_scalar(spot, k, t, r, q, v0, kappa, theta, xi, rho, c, n_nodes=n_nodes)
    return jnp.sqrt(w) * (price - target) / scale


def _residual_fns(chain, n_nodes: int):
    """Residual vector and its Jacobian by row-wise reverse mode (one ``value_and_grad`` per
    quote, vmapped): each quote is an independent scalar function of the 5 parameters, and this
    measured ~8x cheaper than forward mode through the pricer's complex integrand."""
    spot, *per_quote = chain
    axes = (None, None) + (0,) * len(per_quote)

    def residual(z):
        f = partial(_quote_residual, n_nodes=n_nodes)
        return jax.vmap(f, in_axes=axes)(z, spot, *per_quote)

    def jac_and_residual(z):
        f = jax.value_and_grad(partial(_quote_residual, n_nodes=n_nodes))
        r, jac = jax.vmap(f, in_axes=axes)(z, spot, *per_quote)
        return jac, r

    return residual, jac_and_residual


def _run(z0, chain, n_nodes: int, n_steps: int):
    res, jac = _residual_fns(chain, n_nodes)
    state = jax.vmap(lambda z: lm_init(res, z))(z0)
    state = jax.vmap(lambda s: lm_run(res, s, n_steps, jac_and_residual=jac))(state)
    best = jnp.argmin(jnp.where(jnp.isfinite(state.loss), state.loss, jnp.inf))
    best = jax.tree.map(lambda x: x[best], state)
    spot, strike, expiry, rate, dividend, is_call = chain[:6]
    return best, _model_prices(best.z, spot, strike, expiry, rate, dividend, is_call, n_nodes)


def _model_prices(z, spot, strike, expiry, rate, dividend, is_call, n_nodes: int):
    v0, kappa, theta, xi, rho = _params(z)
    return jax.vmap(
        lambda k, t, r, q, c: heston_price_scalar(
            spot, k, t, r, q, v0, kappa, theta, xi, rho, c, n_nodes=n_nodes
        )
    )(strike, expiry, rate, dividend, is_call)


def fit_heston(
    spot: float,
    strike: ArrayLike,
    expiry: ArrayLike,
    rate: ArrayLike,
    dividend: ArrayLike,
    is_call: ArrayLike,
    *,
    implied_vol: ArrayLike | None = None,
    price: ArrayLike | None = None,
    weights: ArrayLike | None = None,
    x0: tuple[float, float, float, float, float] | None = None,
    n_starts: int = 4,
    max_iter: int = 100,
    n_nodes: int = 128,
) -> HestonFit:
    """Calibrate Heston's ``(v0, kappa, theta, xi, rho)`` to a chain of quotes.

    Args:
        spot: underlying price S > 0 (one underlying).
        strike, expiry, rate, dividend, is_call: per-quote arrays (1-D, broadcastable), units
            as :func:`jaxmm.pricing.bsm_price`.
        implied_vol: market implied vols (give this or ``price``). Quotes with NaN are
            dropped from the objective (weight 0).
        price: market option prices (converted to implied vols by
            :func:`jaxmm.pricing._iv.implied_vol` for the vega scaling; quotes whose inversion
            fails get weight 0).
        weights: optional non-negative per-quote weights (default 1).
        x0: optional start ``(v0, kappa, theta, xi, rho)``; otherwise start 0 is
            ``(atm^2, 2, atm^2, 0.5, -0.5)`` with ``atm`` the mean market vol, and the other
            starts vary kappa, xi and rho around it.
        n_starts: starts (static), solved as one vmapped batch.
        max_iter: LM iterations (static).
        n_nodes: Gauss-Legendre nodes of the pricer during calibration (static; 128 keeps
            calibration fast; the reported residuals use the same).

    Returns:
        :class:`HestonFit` with status, Feller diagnostic and per-quote residuals.

    Raises:
        ValueError: naming the argument for bad host inputs, or when neither / both of
            ``implied_vol`` and ``price`` are given.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxmm.pricing._heston import heston_price
        >>> from jaxmm.vol import fit_heston
        >>> K = jnp.tile(jnp.array([80.0, 90.0, 100.0, 110.0, 120.0]), 2)
        >>> T = jnp.repeat(jnp.array([0.5, 1.0]), 5)
        >>> p = heston_price(100.0, K, T, 0.01, 0.0, 0.04, 1.5, 0.05, 0.6, -0.6, True, n_nodes=128)
        >>> fit = fit_heston(100.0, K, T, 0.01, 0.0, True, price=p, max_iter=60)
        >>> round(float(fit.rho), 2), bool(fit.rmse_vol < 1e-5)
        (-0.6, True)
    """
    if (implied_vol is None) == (price is None):
        raise ValueError("implied_vol/price: give exactly one of them")
    check_values("spot", spot, gt=0.0)
    check_values("strike", strike, gt=0.0)
    check_values("expiry", expiry, gt=0.0)
    check_values("rate", rate)
    check_values("dividend", dividend)
    quotes = implied_vol if implied_vol is not None else price
    shape = check_broadcast(
        {"strike": strike, "expiry": expiry, "rate": rate, "dividend": dividend,
         "is_call": is_call, "implied_vol" if implied_vol is not None else "price": quotes}
    )  # fmt: skip
    if len(shape) != 1 or shape[0] == 0:
        raise ValueError(f"strike: need a non-empty 1-D chain, got broadcast shape {shape}")
    if implied_vol is not None and not isinstance(implied_vol, jax.Array):
        iv_np = np.asarray(implied_vol, dtype=float)
        if (iv_np[np.isfinite(iv_np)] <= 0).any():
            raise ValueError("implied_vol: must be > 0 (NaN marks a missing quote)")
    if weights is not None:
        check_values("weights", weights, ge=0.0)
    dtype = jnp.asarray(strike).dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.asarray(0.0).dtype
    b = lambda x: jnp.broadcast_to(jnp.asarray(x).astype(dtype), shape)
    c = jnp.broadcast_to(jnp.asarray(is_call).astype(bool), shape)
    wts = jnp.ones(shape, dtype) if weights is None else b(weights)
    start = jnp.asarray(np.nan if x0 is None else np.asarray(x0, dtype=float)).astype(dtype)
    out = _calibrate(
        jnp.asarray(spot).astype(dtype), b(strike), b(expiry), b(rate), b(dividend), c,
        b(quotes), wts, jnp.broadcast_to(start, (5,)),
        jnp.bool_(implied_vol is not None), n_starts=n_starts, n_nodes=n_nodes, max_iter=max_iter,
    )  # fmt: skip
    return HestonFit(*out)


# start 0 is the base; the others scale (kappa, xi) and set rho
_START_MULTS = np.array([[1.0, 1.0, -0.5], [0.5, 1.5, -0.8], [3.0, 0.6, -0.2], [1.0, 2.5, -0.6]])


@partial(jax.jit, static_argnames=("n_starts", "n_nodes", "max_iter"))
def _calibrate(s, k, t, r, q, c, quotes, wts, x0, from_iv, n_starts, n_nodes, max_iter):
    dtype = k.dtype
    bs = jax.vmap(black_scholes_scalar, in_axes=(None, 0, 0, 0, 0, 0, 0))
    # both quote kinds in one compiled graph (from_iv is data, not a static switch)
    ok_iv = jnp.isfinite(quotes) & (quotes > 0)
    iv_p, st_p = _implied_vol(quotes, s, k, t, r, q, c)
    ok = jnp.where(from_iv, ok_iv, st_p == 0)
    iv = jnp.where(from_iv, quotes, iv_p)
    iv_safe = jnp.where(ok, iv, 0.2)
    target = jnp.where(from_iv, bs(s, k, t, r, q, iv_safe, c), quotes)
    vega = jax.vmap(jax.grad(black_scholes_scalar, argnums=5), in_axes=(None, 0, 0, 0, 0, 0, 0))(
        s, k, t, r, q, iv_safe, c
    )
    scale = jnp.maximum(vega, 1e-4 * s * jnp.sqrt(t))
    wts = jnp.where(ok, wts, 0.0)
    target = jnp.where(ok, target, 0.0)
    atm = jnp.sum(jnp.where(ok, iv_safe, 0.0)) / jnp.maximum(jnp.sum(ok), 1).astype(dtype)
    default = jnp.stack([atm**2, jnp.asarray(2.0, dtype), atm**2, jnp.asarray(0.5, dtype),
                         jnp.asarray(-0.5, dtype)])  # fmt: skip
    base = jnp.where(jnp.all(jnp.isfinite(x0)), x0, default)
    mults = jnp.asarray(np.resize(_START_MULTS, (n_starts, 3))).astype(dtype)
    rho0 = jnp.where(jnp.arange(n_starts) == 0, base[4], mults[:, 2])
    z0 = jnp.stack(
        [
            jnp.broadcast_to(jnp.log(base[0]), (n_starts,)),
            jnp.log(base[1] * mults[:, 0]),
            jnp.broadcast_to(jnp.log(base[2]), (n_starts,)),
            jnp.log(base[3] * mults[:, 1]),
            jnp.arctanh(jnp.clip(rho0, -0.99, 0.99) / 0.999),
        ],
        axis=1,
    )
    chain = (s, k, t, r, q, c, target, scale, wts)
    best, model = _run(z0, chain, n_nodes, max_iter)
    v0, kappa, theta, xi, rho = _params(best.z)
    model_iv, st = _implied_vol(model, s, k, t, r, q, c)
    used = ok & (st == 0)
    vol_res = jnp.where(used, model_iv - jnp.where(ok, iv, 0.0), jnp.nan)
    rmse = jnp.sqrt(
        jnp.sum(jnp.where(used, vol_res, 0.0) ** 2) / jnp.maximum(jnp.sum(used), 1).astype(dtype)
    )
    feller = 2.0 * kappa * theta - xi * xi
    finite = jnp.isfinite(best.loss) & jnp.all(jnp.isfinite(best.z))
    status = jnp.where(~finite, 5, jnp.where(best.converged, 0, 1)).astype(jnp.int32)
    return (
        v0, kappa, theta, xi, rho, feller, feller >= 0, status, best.iterations, best.loss,
        jnp.where(ok, model - target, jnp.nan), vol_res, rmse,
    )  # fmt: skip
