"""Portfolio risk: correlation checks, VaR / expected shortfall, stress tests, hedge ratios.

Sign convention: PnL is positive for a gain; a *loss* is ``-PnL``; VaR and ES are reported as
positive loss amounts in money. ``confidence`` is the VaR level alpha (0.99 = 99%).

- Parametric (delta-normal): factor PnL ``w . r`` with ``r ~ N(0, h Sigma)``, ``Sigma`` from
  per-factor vols and a validated correlation matrix. ``VaR = z sigma_p``,
  ``ES = sigma_p phi(z) / (1 - alpha)`` with ``z`` the exact normal quantile
  (:class:`statistics.NormalDist`, Wichura's AS241, ~1e-16 relative) — no step tables.
  Marginal VaR ``dVaR/dw_i = z h (Sigma w)_i / sigma_p`` and component VaR
  ``w_i dVaR/dw_i`` (Euler: components sum to VaR).
- Historical / Monte-Carlo: empirical VaR is the lower alpha-quantile of the losses
  (``L_(k)``, ``k = ceil(alpha n)``; NumPy's ``inverted_cdf``) and ES is the Acerbi–Tasche
  (2002) empirical ES ``[sum_{i>k} L_(i) + (k - alpha n) L_(k)] / ((1 - alpha) n)`` — the
  average of the quantile function above alpha.
- Monte-Carlo revaluation prices every option again in every scenario with the BSM kernel
  (full revaluation, jitted and vmapped over scenarios), not a Greeks approximation.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._dtypes import common_float_dtype
from .._validate import as_host_array, check_values
from ..portfolio._greeks import PositionArrays
from ..pricing._bsm import _black_undiscounted

__all__ = [
    "validate_correlation",
    "is_psd",
    "nearest_correlation",
    "normal_quantile",
    "VarResult",
    "parametric_var",
    "historical_var",
    "simulate_factor_returns",
    "revaluation_pnl",
    "monte_carlo_var",
    "stress_grid",
    "min_variance_hedge_ratio",
    "min_variance_hedge",
]

_N = NormalDist()


def normal_quantile(p: float) -> float:
    """Exact standard normal quantile ``N^-1(p)`` for ``0 < p < 1``.

    Example:
        >>> round(normal_quantile(0.99), 9)
        2.326347874
    """
    p = float(p)
    if not 0.0 < p < 1.0:
        raise ValueError(f"confidence: must be in (0, 1), got {p!r}")
    return _N.inv_cdf(p)


def is_psd(m, tol: float = 1e-10) -> bool:
    """True if the symmetric matrix ``m`` has no eigenvalue below ``-tol``.

    Example:
        >>> is_psd([[1.0, 0.9], [0.9, 1.0]]), is_psd([[1.0, 1.1], [1.1, 1.0]])
        (True, False)
    """
    a = np.asarray(m, dtype=np.float64)
    return bool(np.linalg.eigvalsh(0.5 * (a + a.T)).min() >= -tol)


def validate_correlation(corr, tol: float = 1e-10) -> np.ndarray:
    """Return ``corr`` as float64 if it is a valid correlation matrix, else raise.

    Checks, in order, each with its own ``ValueError`` message: square 2-D, finite, symmetric
    (``|C - C^T| <= tol``), unit diagonal (``|diag - 1| <= tol``), entries in [-1, 1], and
    positive semi-definite (smallest eigenvalue ``>= -tol``; the message gives it and points to
    :func:`nearest_correlation`).

    Example:
        >>> validate_correlation([[1.0, 0.3], [0.3, 1.0]]).shape
        (2, 2)
    """
    c = as_host_array("corr", corr).astype(np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"corr: must be a square matrix, got shape {c.shape}")
    if not np.isfinite(c).all():
        raise ValueError("corr: must be finite (NaN or infinity found)")
    asym = float(np.abs(c - c.T).max()) if c.size else 0.0
    if asym > tol:
        raise ValueError(f"corr: not symmetric (max |C - C^T| = {asym:.3g})")
    dev = float(np.abs(np.diag(c) - 1.0).max()) if c.size else 0.0
    if dev > tol:
        raise ValueError(f"corr: diagonal must be 1 (max deviation {dev:.3g})")
    if c.size and np.abs(c).max() > 1.0 + tol:
        raise ValueError("corr: entries must lie in [-1, 1]")
    if c.size:
        lo = float(np.linalg.eigvalsh(c).min())
        if lo < -tol:
            raise ValueError(
                f"corr: not positive semi-definite (min eigenvalue {lo:.3g}); "
                "repair it with nearest_correlation()"
            )
    return c


def nearest_correlation(corr, tol: float = 1e-12, max_iter: int = 500) -> np.ndarray:
    """Nearest correlation matrix in the Frobenius norm (Higham 2002, alternating projections).

    Higham, N. J. (2002), "Computing the nearest correlation matrix — a problem from finance",
    IMA J. Numer. Anal. 22, 329–343: Dykstra-corrected alternating projections onto the PSD
    cone and the unit-diagonal set. A final eigenvalue clip and diagonal rescaling make the
    result exactly symmetric, unit-diagonal and PSD (it passes :func:`validate_correlation`).

    Example:
        >>> bad = [[1.0, 0.9, 0.2], [0.9, 1.0, 0.9], [0.2, 0.9, 1.0]]
        >>> is_psd(bad), is_psd(nearest_correlation(bad))
        (False, True)
    """
    a = as_host_array("corr", corr).astype(np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or not np.isfinite(a).all():
        raise ValueError(f"corr: must be a finite square matrix, got shape {a.shape}")
    y = 0.5 * (a + a.T)
    ds = np.zeros_like(y)
    x = y
    for _ in range(max_iter):
        r = y - ds
        w, v = np.linalg.eigh(r)
        x = (v * np.maximum(w, 0.0)) @ v.T
        ds = x - r
        y_new = x.copy()
        np.fill_diagonal(y_new, 1.0)
        if np.linalg.norm(y_new - y) <= tol * max(1.0, np.linalg.norm(y)):
            y = y_new
            break
        y = y_new
    w, v = np.linalg.eigh(0.5 * (y + y.T))
    x = (v * np.maximum(w, 0.0)) @ v.T
    d = 1.0 / np.sqrt(np.diag(x))
    x = x * d[:, None] * d[None, :]
    x = 0.5 * (x + x.T)
    np.fill_diagonal(x, 1.0)
    return x


class VarResult(NamedTuple):
    """VaR and ES (positive loss amounts, money), with decomposition where available."""

    var: float
    es: float
    sigma: float = math.nan  # portfolio PnL standard deviation (parametric only)
    marginal: np.ndarray | None = None  # dVaR/dw_i (parametric only)
    component: np.ndarray | None = None  # w_i dVaR/dw_i, sums to var (parametric only)


def _covariance(vols, corr) -> np.ndarray:
    v = as_host_array("vols", vols).astype(np.float64)
    check_values("vols", v, ge=0.0)
    c = validate_correlation(corr)
    if v.shape != (c.shape[0],):
        raise ValueError(f"vols: expected shape ({c.shape[0]},), got {v.shape}")
    return c * v[:, None] * v[None, :]


def parametric_var(
    exposures, vols, corr, confidence: float = 0.99, horizon: float = 1.0
) -> VarResult:
    """Delta-normal VaR/ES with marginal and component VaR (zero-mean normal PnL).

    Args:
        exposures: ``(n,)`` money exposure per factor — PnL per 1.00 (100%) relative move of
            the factor, i.e. the dollar delta.
        vols: ``(n,)`` factor vols per unit of ``horizon`` (e.g. annual vols, horizon in years).
        corr: ``(n, n)`` correlation matrix (validated: symmetric, unit diagonal, PSD).
        confidence: VaR level alpha in (0, 1).
        horizon: horizon in the vols' time unit (VaR scales with ``sqrt(horizon)``).

    Example:
        >>> r = parametric_var([1e6], [0.2], [[1.0]], 0.99, 1 / 252)
        >>> round(r.var, 2) == round(2.3263478740 * 1e6 * 0.2 / 252 ** 0.5, 2)
        True
    """
    z = normal_quantile(confidence)
    check_values("horizon", horizon, ge=0.0)
    cov = _covariance(vols, corr)
    w = as_host_array("exposures", exposures).astype(np.float64)
    check_values("exposures", w)
    if w.shape != (cov.shape[0],):
        raise ValueError(f"exposures: expected shape ({cov.shape[0]},), got {w.shape}")
    cw = cov @ w
    sigma = math.sqrt(max(float(w @ cw), 0.0) * horizon)
    var = z * sigma
    es = sigma * _N.pdf(z) / (1.0 - float(confidence))
    if sigma > 0:
        marginal = z * horizon * cw / sigma
    else:
        marginal = np.zeros_like(w)
    return VarResult(var, es, sigma, marginal, w * marginal)


def historical_var(pnl, confidence: float = 0.99) -> VarResult:
    """Empirical VaR and Acerbi–Tasche ES of a PnL sample (historical or simulated).

    Example:
        >>> r = historical_var([-5.0, -1.0, 0.0, 1.0, 2.0], confidence=0.8)
        >>> r.var, round(r.es, 12)
        (1.0, 5.0)
    """
    alpha = float(confidence)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"confidence: must be in (0, 1), got {confidence!r}")
    x = as_host_array("pnl", pnl).astype(np.float64).ravel()
    check_values("pnl", x)
    n = x.size
    if n == 0:
        raise ValueError("pnl: empty sample")
    losses = np.sort(-x)
    an = alpha * n
    k = max(1, math.ceil(an - 1e-9))  # 1-based order statistic of the alpha-quantile
    var = float(losses[k - 1])
    tail = float(losses[k:].sum()) + (k - an) * var
    es = tail / ((1.0 - alpha) * n)
    return VarResult(var, es)


def simulate_factor_returns(
    key, n_scenarios: int, vols, corr, horizon: float, dtype=None
) -> jax.Array:
    """Correlated log-returns ``(n_scenarios, n_factors)`` over ``horizon``.

    ``r = -vol^2 h / 2 + vol sqrt(h) L z`` with ``L L^T = corr`` (a symmetric square root,
    so a singular PSD matrix is fine) and ``z`` standard normal: each factor's ``exp(r)`` has
    mean 1 (martingale prices).

    Example:
        >>> import jax
        >>> r = simulate_factor_returns(jax.random.key(0), 4, [0.2, 0.3],
        ...                             [[1.0, 0.5], [0.5, 1.0]], 1 / 252)
        >>> r.shape
        (4, 2)
    """
    c = validate_correlation(corr)
    v = as_host_array("vols", vols).astype(np.float64)
    check_values("vols", v, ge=0.0)
    check_values("horizon", horizon, ge=0.0)
    w, e = np.linalg.eigh(c)
    root = (e * np.sqrt(np.maximum(w, 0.0))) @ e.T
    dtype = dtype or jnp.asarray(0.0).dtype
    z = jax.random.normal(key, (n_scenarios, c.shape[0]), dtype=dtype)
    scale = jnp.asarray(v * math.sqrt(horizon)).astype(dtype)
    drift = jnp.asarray(-0.5 * v * v * horizon).astype(dtype)
    return drift + (z @ jnp.asarray(root.T).astype(dtype)) * scale


@jax.jit
def _reval_jit(arrays: PositionArrays, spot, vol, rate, dividend, returns, vol_shift, dt):
    """Scenario PnL by full revaluation; per-option constants are hoisted out of the scenarios.

    Each option is priced with the pricing core's Black kernel on the forward
    ``F = S exp((r - q) T)`` (exactly :func:`jaxmm.pricing.black_scholes_scalar`), so one
    scenario costs one log and two ``erfc`` per option; exponentials and square roots that do
    not depend on the scenario are computed once.
    """
    dtype = common_float_dtype(arrays.units, spot, vol, returns)
    cast = lambda x: jnp.asarray(x).astype(dtype)
    idx = arrays.underlying_index
    opt = arrays.is_option
    s0u = cast(spot)
    q = cast(dividend)[idx]
    r = cast(rate)
    v0 = cast(vol)
    units = cast(arrays.units)
    zero = jnp.zeros_like(units)
    strike = jnp.where(opt, cast(arrays.strike), jnp.ones_like(units))
    t0 = jnp.where(opt, cast(arrays.expiry), zero)
    t1 = jnp.maximum(t0 - cast(dt), zero)
    call = arrays.is_call

    def values(s_u, v, t):
        s = s_u[idx]
        fwd = s * jnp.exp((r - q) * t)
        stdev = v * _sqrt0(t)
        price = jnp.exp(-r * t) * _black_undiscounted(fwd, strike, stdev, call)
        return units * jnp.where(opt, price, s)

    base = jnp.sum(values(s0u, v0, t0))
    carry1 = jnp.exp((r - q) * t1)
    df1 = jnp.exp(-r * t1)
    sq1 = _sqrt0(t1)

    def one(ret, dvol):
        s_u = s0u * jnp.exp(ret)
        s = s_u[idx]
        v1 = jnp.maximum(v0 + dvol[idx], zero)
        price = df1 * _black_undiscounted(s * carry1, strike, v1 * sq1, call)
        return jnp.sum(units * jnp.where(opt, price, s)) - base

    return jax.vmap(one)(cast(returns), cast(vol_shift))


def _sqrt0(t):
    pos = t > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, t, jnp.ones_like(t))), jnp.zeros_like(t))


def _check_reval(arrays, spot, vol, dividend, returns, vol_shift):
    n_u = len(arrays.underlyings)
    check_values("spot", spot, gt=0.0)
    check_values("vol", vol, ge=0.0)
    check_values("returns", returns)
    check_values("vol_shift", vol_shift)
    if np.shape(spot) != (n_u,) or np.shape(dividend) != (n_u,):
        raise ValueError(f"spot/dividend: expected shape ({n_u},) (one per underlying)")
    if np.shape(vol) != tuple(arrays.units.shape):
        raise ValueError(f"vol: expected shape {tuple(arrays.units.shape)} (one per position)")
    if np.ndim(returns) != 2 or np.shape(returns)[1] != n_u:
        raise ValueError(f"returns: expected shape (n_scenarios, {n_u}), got {np.shape(returns)}")
    if np.shape(vol_shift) != np.shape(returns):
        raise ValueError(
            f"vol_shift: expected shape {np.shape(returns)}, got {np.shape(vol_shift)}"
        )


def revaluation_pnl(
    arrays: PositionArrays, spot, vol, rate, dividend, returns, vol_shift, dt: float = 0.0
) -> jax.Array:
    """Full-revaluation PnL of the portfolio in each scenario (money), one jitted call.

    Scenario ``j`` moves each underlying ``u`` to ``spot_u exp(returns[j, u])``, shifts every
    option vol on ``u`` by ``vol_shift[j, u]`` (absolute, floored at 0) and ages options by
    ``dt`` years; every option is re-priced with the BSM kernel.

    Example:
        >>> import numpy as np
        >>> from jaxmm.portfolio import Instrument, build_position_arrays
        >>> pa = build_position_arrays([Instrument.spot("X")], [10])
        >>> pnl = revaluation_pnl(pa, np.array([100.0]), np.array([0.0]), 0.0, np.array([0.0]),
        ...                       np.log([[1.01], [0.98]]), np.zeros((2, 1)))
        >>> np.round(np.asarray(pnl), 6).tolist()
        [10.0, -20.0]
    """
    _check_reval(arrays, spot, vol, dividend, returns, vol_shift)
    check_values("dt", dt, ge=0.0)
    return _reval_jit(arrays, spot, vol, rate, dividend, returns, vol_shift, dt)


def monte_carlo_var(
    arrays: PositionArrays,
    spot,
    vol,
    rate,
    dividend,
    key,
    n_scenarios: int,
    factor_vols,
    corr,
    horizon: float,
    confidence: float = 0.99,
    vol_of_vol=None,
) -> tuple[VarResult, jax.Array]:
    """Monte-Carlo VaR/ES with full revaluation through the pricing kernel.

    Spot log-returns from :func:`simulate_factor_returns` (``factor_vols`` per underlying per
    unit of ``horizon``, correlation ``corr``); optional absolute vol shifts
    ``vol_of_vol[u] sqrt(horizon) z`` with an independent normal ``z`` per underlying. Options
    age by ``horizon`` (read as years). Returns the :class:`VarResult` (empirical, as
    :func:`historical_var`) and the scenario PnL.

    Example:
        >>> import jax, numpy as np
        >>> from jaxmm.portfolio import Instrument, build_position_arrays
        >>> pa = build_position_arrays([Instrument.spot("X")], [100])
        >>> res, pnl = monte_carlo_var(pa, np.array([50.0]), np.array([0.0]), 0.0,
        ...     np.array([0.0]), jax.random.key(1), 2000, [0.3], [[1.0]], 1 / 252)
        >>> bool(0.8 < res.var / (2.326 * 5000 * 0.3 / 252 ** 0.5) < 1.2)
        True
    """
    k1, k2 = jax.random.split(key)
    returns = simulate_factor_returns(k1, n_scenarios, factor_vols, corr, horizon)
    n_u = returns.shape[1]
    if vol_of_vol is None:
        shift = jnp.zeros_like(returns)
    else:
        vv = as_host_array("vol_of_vol", vol_of_vol).astype(np.float64)
        check_values("vol_of_vol", vv, ge=0.0)
        z = jax.random.normal(k2, (n_scenarios, n_u), dtype=returns.dtype)
        shift = z * jnp.asarray(vv * math.sqrt(horizon)).astype(returns.dtype)
    pnl = revaluation_pnl(arrays, spot, vol, rate, dividend, returns, shift, horizon)
    return historical_var(np.asarray(pnl), confidence), pnl


def stress_grid(
    arrays: PositionArrays, spot, vol, rate, dividend, spot_moves, vol_moves
) -> np.ndarray:
    """Full-revaluation PnL on a grid of joint shocks to all underlyings.

    ``spot_moves``: relative spot moves (``-0.1`` = spot down 10%); ``vol_moves``: absolute
    vol moves (``0.05`` = +5 vol points). Returns ``(len(spot_moves), len(vol_moves))`` money.

    Example:
        >>> import numpy as np
        >>> from jaxmm.portfolio import Instrument, build_position_arrays
        >>> pa = build_position_arrays([Instrument.spot("X")], [-3])
        >>> stress_grid(pa, np.array([100.0]), np.array([0.0]), 0.0, np.array([0.0]),
        ...             [-0.1, 0.1], [0.0]).round(6).tolist()
        [[30.0], [-30.0]]
    """
    sm = as_host_array("spot_moves", spot_moves).astype(np.float64).ravel()
    vm = as_host_array("vol_moves", vol_moves).astype(np.float64).ravel()
    check_values("spot_moves", sm, gt=-1.0)
    check_values("vol_moves", vm)
    n_u = len(arrays.underlyings)
    grid_s, grid_v = np.meshgrid(np.log1p(sm), vm, indexing="ij")
    returns = np.repeat(grid_s.reshape(-1, 1), n_u, axis=1)
    shifts = np.repeat(grid_v.reshape(-1, 1), n_u, axis=1)
    pnl = revaluation_pnl(arrays, spot, vol, rate, dividend, returns, shifts, 0.0)
    return np.asarray(pnl).reshape(sm.size, vm.size)


def min_variance_hedge_ratio(asset_returns, hedge_returns) -> float:
    """``h* = Cov(a, b) / Var(b)``: units of hedge per unit of asset minimising variance.

    Example:
        >>> round(min_variance_hedge_ratio([0.01, -0.02, 0.03], [0.005, -0.01, 0.015]), 12)
        2.0
    """
    a = as_host_array("asset_returns", asset_returns).astype(np.float64).ravel()
    b = as_host_array("hedge_returns", hedge_returns).astype(np.float64).ravel()
    check_values("asset_returns", a)
    check_values("hedge_returns", b)
    if a.size != b.size or a.size < 2:
        raise ValueError("asset_returns/hedge_returns: need equal lengths >= 2")
    vb = float(np.var(b, ddof=1))
    if vb == 0.0:
        raise ValueError("hedge_returns: zero variance")
    return float(np.cov(a, b, ddof=1)[0, 1] / vb)


def min_variance_hedge(exposures, vols, corr, hedge_factor: int) -> float:
    """Dollar exposure to add in factor ``hedge_factor`` that minimises portfolio variance.

    ``x* = -(Sigma w)_j / Sigma_jj`` for exposures ``w`` (as :func:`parametric_var`).

    Example:
        >>> round(min_variance_hedge([1e6, 0.0], [0.2, 0.1], [[1, 0.5], [0.5, 1]], 1), 2)
        -1000000.0
    """
    cov = _covariance(vols, corr)
    w = as_host_array("exposures", exposures).astype(np.float64)
    j = int(hedge_factor)
    if not 0 <= j < cov.shape[0]:
        raise ValueError(f"hedge_factor: must be in [0, {cov.shape[0]}), got {hedge_factor!r}")
    if cov[j, j] == 0.0:
        raise ValueError("vols: the hedge factor has zero vol")
    return float(-(cov @ w)[j] / cov[j, j])
