"""Batched portfolio Greeks and PnL attribution: one jitted call over every position.

Position Greeks = unit Greeks x signed quantity x multiplier (MISSION.md). Unit Greeks come
from the pricing core (generalised BSM, forward-mode autodiff, the kernel behind
:func:`jaxmm.pricing.bsm_core_greeks`), evaluated for all positions at once and aggregated
with ``segment_sum`` per underlying and per expiry. An underlying position has price = spot,
delta = 1 and no other Greek.

Units (raw, as the kernels): ``delta`` in units of underlying, ``gamma`` per unit of spot,
``vega`` per 1.00 of vol, ``theta`` per calendar year, ``rho`` per 1.00 of rate.
``dollar_delta = delta x S`` (money per 100% move of S; x 0.01 for a 1% move) and
``dollar_gamma = gamma x S^2 / 100`` (change of dollar delta for a 1% move of S). Totals
across underlyings add delta/gamma as numbers of units — only the dollar figures, vega, theta
and rho are meaningful across underlyings.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._dtypes import common_float_dtype
from ..pricing import autodiff_core_greeks, black_scholes_scalar

__all__ = [
    "PositionArrays",
    "GreekTotals",
    "PortfolioGreeks",
    "Attribution",
    "portfolio_greeks",
    "pnl_attribution",
]

Array = jax.Array


class PositionArrays(eqx.Module):
    """Struct-of-arrays view of a portfolio's positions, the input of the batched kernels.

    Build it with :meth:`jaxmm.portfolio.Portfolio.to_arrays` (or directly). ``n`` positions.

    Attributes:
        strike: ``(n,)`` float; ignored (any positive value) for underlying rows.
        expiry: ``(n,)`` float, years ACT/365F; ignored for underlying rows.
        is_call: ``(n,)`` bool.
        is_option: ``(n,)`` bool; False rows are the underlying itself.
        units: ``(n,)`` float, signed quantity x multiplier.
        underlying_index: ``(n,)`` int32 index into ``underlyings``.
        expiry_index: ``(n,)`` int32 index into ``expiries``; ``len(expiries)`` for
            underlying rows (they are left out of the per-expiry totals).
        underlyings: static tuple of underlying ids.
        expiries: static tuple of the distinct option expiries (years), sorted.

    Example:
        >>> import numpy as np
        >>> pa = PositionArrays(strike=np.array([100.0, 1.0]), expiry=np.array([0.5, 0.0]),
        ...     is_call=np.array([True, False]), is_option=np.array([True, False]),
        ...     units=np.array([-100.0, 50.0]), underlying_index=np.array([0, 0]),
        ...     expiry_index=np.array([0, 1]), underlyings=("XYZ",), expiries=(0.5,))
        >>> pa.units.shape
        (2,)
    """

    strike: Array
    expiry: Array
    is_call: Array
    is_option: Array
    units: Array
    underlying_index: Array
    expiry_index: Array
    underlyings: tuple[str, ...] = eqx.field(static=True)
    expiries: tuple[float, ...] = eqx.field(static=True)

    def __init__(
        self,
        strike,
        expiry,
        is_call,
        is_option,
        units,
        underlying_index,
        expiry_index,
        underlyings,
        expiries,
    ):
        self.strike = jnp.asarray(strike)
        self.expiry = jnp.asarray(expiry)
        self.is_call = jnp.asarray(is_call).astype(bool)
        self.is_option = jnp.asarray(is_option).astype(bool)
        self.units = jnp.asarray(units)
        self.underlying_index = jnp.asarray(underlying_index).astype(jnp.int32)
        self.expiry_index = jnp.asarray(expiry_index).astype(jnp.int32)
        self.underlyings = tuple(underlyings)
        self.expiries = tuple(float(e) for e in expiries)


class GreekTotals(NamedTuple):
    """Aggregated position Greeks (money-weighted; units in the module docstring).

    Each field is a scalar (total) or an array over underlyings / expiries.
    """

    value: Array  # market value: sum of units x price, money
    delta: Array  # units of underlying
    gamma: Array  # per unit of spot
    vega: Array  # money per 1.00 of vol
    theta: Array  # money per calendar year
    rho: Array  # money per 1.00 of rate
    dollar_delta: Array  # delta x S, money
    dollar_gamma: Array  # gamma x S^2 / 100, money


class PortfolioGreeks(NamedTuple):
    """Result of :func:`portfolio_greeks`.

    ``total`` scalars; ``by_underlying`` arrays ``(n_underlyings,)`` in ``arrays.underlyings``
    order; ``by_expiry`` arrays ``(n_expiries,)`` in ``arrays.expiries`` order (options only);
    ``per_position`` arrays ``(n,)``.
    """

    total: GreekTotals
    by_underlying: GreekTotals
    by_expiry: GreekTotals
    per_position: GreekTotals


class Attribution(NamedTuple):
    """PnL between two marks split into Greek terms (money; see :func:`pnl_attribution`).

    Each field is ``(n,)`` per position; sum for the portfolio.
    """

    actual: Array  # full revaluation V1 - V0
    delta: Array  # delta x dS
    gamma: Array  # gamma x dS^2 / 2
    vega: Array  # vega x dsigma
    theta: Array  # theta x dt
    residual: Array  # actual - (delta + gamma + vega + theta)


def _unit_greeks(spot, strike, expiry, rate, dividend, vol, is_call, is_option):
    """Unit price and core Greeks of ONE position (option or underlying); the vmapped kernel."""
    one = jnp.ones_like(spot)
    zero = jnp.zeros_like(spot)
    # Underlying rows: evaluate the option kernel at a harmless point, then select.
    k = jnp.where(is_option, strike, spot)
    t = jnp.where(is_option, expiry, one)
    v = jnp.where(is_option, vol, 0.2 * one)

    def f(s, vv, tt, r):
        return black_scholes_scalar(s, k, tt, r, dividend, vv, is_call)

    g = autodiff_core_greeks(f, spot, v, t, rate)
    return (
        jnp.where(is_option, g.price, spot),
        jnp.where(is_option, g.delta, one),
        jnp.where(is_option, g.gamma, zero),
        jnp.where(is_option, g.vega, zero),
        jnp.where(is_option, g.theta, zero),
        jnp.where(is_option, g.rho, zero),
    )


def _position_totals(
    arrays: PositionArrays, spot, vol, rate, dividend
) -> tuple[GreekTotals, Array]:
    dtype = common_float_dtype(
        arrays.strike, arrays.expiry, arrays.units, spot, vol, rate, dividend
    )
    s = jnp.asarray(spot).astype(dtype)[arrays.underlying_index]
    q = jnp.asarray(dividend).astype(dtype)[arrays.underlying_index]
    r = jnp.asarray(rate).astype(dtype)
    strike = arrays.strike.astype(dtype)
    expiry = arrays.expiry.astype(dtype)
    v = jnp.asarray(vol).astype(dtype)
    units = arrays.units.astype(dtype)
    price, delta, gamma, vega, theta, rho = jax.vmap(
        _unit_greeks, in_axes=(0, 0, 0, None, 0, 0, 0, 0)
    )(s, strike, expiry, r, q, v, arrays.is_call, arrays.is_option)
    pd = units * delta
    pg = units * gamma
    per = GreekTotals(
        value=units * price,
        delta=pd,
        gamma=pg,
        vega=units * vega,
        theta=units * theta,
        rho=units * rho,
        dollar_delta=pd * s,
        dollar_gamma=pg * s * s / 100.0,
    )
    return per, s


@jax.jit
def _portfolio_greeks_jit(arrays: PositionArrays, spot, vol, rate, dividend) -> PortfolioGreeks:
    per, _ = _position_totals(arrays, spot, vol, rate, dividend)
    n_u = len(arrays.underlyings)
    n_e = len(arrays.expiries)
    by_u = GreekTotals(
        *(jax.ops.segment_sum(x, arrays.underlying_index, num_segments=n_u) for x in per)
    )
    by_e = GreekTotals(
        *(jax.ops.segment_sum(x, arrays.expiry_index, num_segments=n_e + 1)[:n_e] for x in per)
    )
    total = GreekTotals(*(jnp.sum(x) for x in per))
    return PortfolioGreeks(total, by_u, by_e, per)


def _check_market(arrays: PositionArrays, spot, vol, dividend) -> None:
    from .._validate import check_values

    check_values("spot", spot, gt=0.0)
    check_values("vol", vol, ge=0.0)
    check_values("dividend", dividend)
    n_u = len(arrays.underlyings)
    if np.shape(spot) != (n_u,):
        raise ValueError(
            f"spot: expected shape ({n_u},) (one per underlying), got {np.shape(spot)}"
        )
    if np.shape(dividend) != (n_u,):
        raise ValueError(
            f"dividend: expected shape ({n_u},) (one per underlying), got {np.shape(dividend)}"
        )
    if np.shape(vol) != arrays.units.shape:
        raise ValueError(
            f"vol: expected shape {arrays.units.shape} (one per position), got {np.shape(vol)}"
        )


def portfolio_greeks(arrays: PositionArrays, spot, vol, rate, dividend) -> PortfolioGreeks:
    """Position Greeks of a whole portfolio in one jitted call, aggregated three ways.

    Args:
        arrays: the positions (:class:`PositionArrays`).
        spot: ``(n_underlyings,)`` spot per underlying, in ``arrays.underlyings`` order.
        vol: ``(n,)`` annualised vol per position (fraction; ignored for underlying rows).
        rate: continuously compounded rate (scalar).
        dividend: ``(n_underlyings,)`` continuous dividend/borrow yield per underlying.

    Returns:
        :class:`PortfolioGreeks` (units in the module docstring). Compiles once per shape;
        new values never retrace.

    Example:
        >>> import numpy as np
        >>> from jaxmm.portfolio import Portfolio, Instrument, Fill, Side
        >>> pf = Portfolio([Instrument.spot("XYZ"),
        ...                 Instrument.option("C", "XYZ", strike=100.0, expiry=1.0,
        ...                                   is_call=True, multiplier=100)])
        >>> _ = pf.apply_fill(Fill("C", Side.SELL, 2, 10.0))
        >>> _ = pf.apply_fill(Fill("XYZ", Side.BUY, 127, 100.0))
        >>> pa = pf.to_arrays()
        >>> g = portfolio_greeks(pa, spot=np.array([100.0]), vol=np.array([0.2, 0.2]),
        ...                      rate=0.05, dividend=np.array([0.0]))
        >>> round(float(g.total.delta), 2)   # 127 - 2 x 100 x 0.6368
        -0.37
    """
    _check_market(arrays, spot, vol, dividend)
    return _portfolio_greeks_jit(arrays, spot, vol, rate, dividend)


@jax.jit
def _attribution_jit(arrays, spot0, vol0, spot1, vol1, rate, dividend, dt) -> Attribution:
    per0, s0 = _position_totals(arrays, spot0, vol0, rate, dividend)
    dtype = s0.dtype
    dt = jnp.asarray(dt).astype(dtype)
    later = PositionArrays(
        arrays.strike,
        jnp.maximum(arrays.expiry.astype(dtype) - dt, jnp.zeros_like(s0)),
        arrays.is_call,
        arrays.is_option,
        arrays.units,
        arrays.underlying_index,
        arrays.expiry_index,
        arrays.underlyings,
        arrays.expiries,
    )
    per1, s1 = _position_totals(later, spot1, vol1, rate, dividend)
    ds = s1 - s0
    dv = jnp.asarray(vol1).astype(dtype) - jnp.asarray(vol0).astype(dtype)
    dv = jnp.where(arrays.is_option, dv, jnp.zeros_like(dv))
    actual = per1.value - per0.value
    d = per0.delta * ds
    g = 0.5 * per0.gamma * ds * ds
    v = per0.vega * dv
    th = per0.theta * dt
    return Attribution(actual, d, g, v, th, actual - (d + g + v + th))


def pnl_attribution(
    arrays: PositionArrays, spot0, vol0, spot1, vol1, rate, dividend, dt
) -> Attribution:
    """Split each position's PnL between two marks into delta, gamma, vega, theta, residual.

    Taylor expansion at the first mark: ``dV ~ delta dS + gamma dS^2/2 + vega dsigma +
    theta dt``; ``actual`` is the full BSM revaluation at the second mark with time to expiry
    shortened by ``dt`` (years); ``residual = actual - sum of terms`` (higher order and cross
    terms: vanna, volga, charm, ...). Rate and dividend are held fixed. Money units; arguments
    as :func:`portfolio_greeks` (``spot1``/``vol1`` are the second mark).

    Example:
        >>> import numpy as np
        >>> from jaxmm.portfolio import PositionArrays
        >>> pa = PositionArrays([100.0], [0.5], [True], [True], [100.0], [0], [0], ("X",), (0.5,))
        >>> a = pnl_attribution(pa, np.array([100.0]), np.array([0.2]), np.array([101.0]),
        ...                     np.array([0.21]), 0.0, np.array([0.0]), 1 / 365)
        >>> bool(abs(a.residual[0]) < 0.05 * abs(a.actual[0]))
        True
    """
    _check_market(arrays, spot0, vol0, dividend)
    _check_market(arrays, spot1, vol1, dividend)
    from .._validate import check_values

    check_values("dt", dt, ge=0.0)
    return _attribution_jit(arrays, spot0, vol0, spot1, vol1, rate, dividend, dt)
