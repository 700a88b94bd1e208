"""Avellaneda & Stoikov (2008), "High-frequency trading in a limit order book",
Quantitative Finance 8(3), 217-224.

Model: mid price ``dS = sigma dW`` (arithmetic Brownian motion, ``sigma`` absolute, price units
per sqrt(time unit)); market orders hit a quote at distance ``delta`` from the mid with Poisson
intensity ``lambda(delta) = A exp(-k delta)``; the market maker maximises the CARA utility
``E[-exp(-gamma (X_T + q_T S_T))]`` with risk aversion ``gamma`` (1 / (price x quantity)).

Equations implemented (``tau = T - t``; ``q`` the signed inventory):

- reservation bid / ask (frozen-inventory indifference prices, A-S eq. for ``r^b``, ``r^a``):
  ``r^b = s - (1 + 2q) gamma sigma^2 tau / 2``, ``r^a = s + (1 - 2q) gamma sigma^2 tau / 2``;
  their mean is the reservation price ``r = s - q gamma sigma^2 tau``;
- optimal quotes (first-order condition with the exponential intensity):
  ``p^b = r^b - (1/gamma) ln(1 + gamma/k)``, ``p^a = r^a + (1/gamma) ln(1 + gamma/k)``;
  hence the total spread ``p^a - p^b = gamma sigma^2 tau + (2/gamma) ln(1 + gamma/k)``.

``A`` does not enter the A-S quotes (it only scales fill rates). With per-side ``k`` the
liquidity term is ``(1/gamma) ln(1 + gamma/k_side)`` on each side.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from .._validate import check_values, is_host_value
from ._types import MarketState, Quote, as_float, as_optional_float, cast, float_dtype, make_quote

__all__ = ["AvellanedaStoikov", "AvellanedaStoikovInfinite", "liquidity_term"]


def liquidity_term(gamma: Array, k: Array) -> Array:
    """``(1/gamma) ln(1 + gamma/k)``: the half-spread a risk-averse maker adds per side.

    Tends to ``1/k`` as ``gamma -> 0`` (the risk-neutral monopolist's half-spread).
    """
    return jnp.log1p(gamma / k) / gamma


class AvellanedaStoikov(eqx.Module):
    """Avellaneda–Stoikov (2008) quotes, finite or rolling horizon.

    Finite horizon (``rolling=False``): ``tau = max(horizon - t, 0)``. Rolling horizon
    (``rolling=True``): the same closed forms evaluated with ``tau = horizon`` held constant,
    the usual way to run A-S continuously (it is not a separate result of the paper; the
    stationary solution is :class:`AvellanedaStoikovInfinite`).

    - reservation price ``r = s - q gamma sigma^2 tau``
    - ``half_spread_bid = s - p^b = (1 + 2q) gamma sigma^2 tau / 2 + (1/gamma) ln(1 + gamma/k_b)``
    - ``half_spread_ask = p^a - s = (1 - 2q) gamma sigma^2 tau / 2 + (1/gamma) ln(1 + gamma/k_a)``
    - ``total_spread = gamma sigma^2 tau + (1/gamma)[ln(1 + gamma/k_b) + ln(1 + gamma/k_a)]``

    A long inventory (``q > 0``) lowers both quotes by ``q gamma sigma^2 tau``.

    Attributes:
        gamma: risk aversion, > 0, in 1 / (price unit x quantity unit).
        k: intensity decay of ``A exp(-k delta)``, > 0, per price unit (bid side, and ask side
            unless ``k_ask`` is given).
        sigma: ABSOLUTE mid-price volatility, price units per sqrt(time unit), >= 0 (convert a
            relative annual vol with :func:`absolute_sigma`).
        horizon: terminal time ``T`` (finite) or the constant ``T - t`` (rolling), time units.
        k_ask: optional ask-side ``k`` (default: ``k``).
        order_size: quantity quoted on each side, >= 0.
        rolling: static; hold ``T - t = horizon`` constant.

    Example:
        >>> from jaxmm.strategy import AvellanedaStoikov, MarketState
        >>> mm = AvellanedaStoikov(gamma=0.1, k=1.5, sigma=2.0, horizon=1.0)
        >>> round(float(mm.reservation_price(100.0, 2.0, 0.0)), 4)  # 100 - 2 * 0.1 * 4 * 1
        99.2
        >>> round(float(mm.total_spread(0.0)), 4)  # 0.4 + 20 ln(1 + 0.1/1.5)
        1.6908
        >>> q = mm.quote(MarketState(mid=100.0, inventory=2.0, t=0.0))
        >>> round(float(q.ask - q.bid), 4)
        1.6908
    """

    gamma: Array
    k: Array
    sigma: Array
    horizon: Array
    k_ask: Array | None
    order_size: Array
    rolling: bool = eqx.field(static=True)

    def __init__(
        self,
        gamma: Any,
        k: Any,
        sigma: Any,
        horizon: Any,
        *,
        k_ask: Any = None,
        order_size: Any = 1.0,
        rolling: bool = False,
    ):
        check_values("gamma", gamma, gt=0.0)
        check_values("k", k, gt=0.0)
        check_values("sigma", sigma, ge=0.0)
        check_values("horizon", horizon, ge=0.0)
        if k_ask is not None:
            check_values("k_ask", k_ask, gt=0.0)
        check_values("order_size", order_size, ge=0.0)
        self.gamma = as_float(gamma)
        self.k = as_float(k)
        self.sigma = as_float(sigma)
        self.horizon = as_float(horizon)
        self.k_ask = as_optional_float(k_ask)
        self.order_size = as_float(order_size)
        self.rolling = bool(rolling)

    # -- pieces -------------------------------------------------------------------------
    def time_remaining(self, t: Any) -> Array:
        """``tau``: ``max(horizon - t, 0)``, or ``horizon`` when ``rolling``."""
        dt = float_dtype(t)
        horizon = cast(self.horizon, dt)
        if self.rolling:
            return horizon * jnp.ones_like(cast(t, dt))
        return jnp.maximum(horizon - cast(t, dt), 0.0)

    def _risk(self, t: Any, dt: Any) -> Array:
        """``gamma sigma^2 tau``, in price units per quantity unit."""
        g, s = cast(self.gamma, dt), cast(self.sigma, dt)
        return g * s * s * self.time_remaining(cast(t, dt))

    def _liquidity(self, dt: Any) -> tuple[Array, Array]:
        g = cast(self.gamma, dt)
        k_b = cast(self.k, dt)
        k_a = k_b if self.k_ask is None else cast(self.k_ask, dt)
        return liquidity_term(g, k_b), liquidity_term(g, k_a)

    def reservation_price(self, mid: Any, inventory: Any, t: Any) -> Array:
        """``r = s - q gamma sigma^2 (T - t)`` (price units).

        Example:
            >>> from jaxmm.strategy import AvellanedaStoikov
            >>> mm = AvellanedaStoikov(0.1, 1.5, 2.0, 1.0)
            >>> round(float(mm.reservation_price(100.0, -1.0, 0.5)), 4)  # 100 + 0.1 * 4 * 0.5
            100.2
        """
        mid = as_float(mid)
        dt = float_dtype(mid)
        return mid - cast(inventory, dt) * self._risk(t, dt)

    def half_spread_bid(self, inventory: Any, t: Any) -> Array:
        """``delta^b = s - p^b = (1 + 2q) gamma sigma^2 tau / 2 + (1/gamma) ln(1 + gamma/k_b)``.

        Distance from the mid down to the bid (price units); independent of ``s``.
        """
        dt = float_dtype(t)
        q = cast(inventory, dt)
        liq_b, _ = self._liquidity(dt)
        return (1.0 + 2.0 * q) * self._risk(t, dt) / 2.0 + liq_b

    def half_spread_ask(self, inventory: Any, t: Any) -> Array:
        """``delta^a = p^a - s = (1 - 2q) gamma sigma^2 tau / 2 + (1/gamma) ln(1 + gamma/k_a)``.

        Distance from the mid up to the ask (price units); negative when a large long
        inventory puts the ask below the mid.
        """
        dt = float_dtype(t)
        q = cast(inventory, dt)
        _, liq_a = self._liquidity(dt)
        return (1.0 - 2.0 * q) * self._risk(t, dt) / 2.0 + liq_a

    def total_spread(self, t: Any) -> Array:
        """``p^a - p^b = gamma sigma^2 tau + (1/gamma)[ln(1+gamma/k_b) + ln(1+gamma/k_a)]``.

        Independent of the inventory (A-S's result); with a common ``k`` this is
        ``gamma sigma^2 (T - t) + (2/gamma) ln(1 + gamma/k)``.
        """
        dt = float_dtype(t)
        liq_b, liq_a = self._liquidity(dt)
        return self._risk(t, dt) + liq_b + liq_a

    def quote(self, state: MarketState) -> Quote:
        """Model quote ``bid = s - delta^b``, ``ask = s + delta^a``, ``order_size`` per side.

        A side whose price would not be positive is switched off (size 0). The quote is the
        raw model output; operator clamps live in :class:`QuoteConstraints`.
        """
        mid = state.mid
        dt = mid.dtype
        d_b = self.half_spread_bid(state.inventory, cast(state.t, dt))
        d_a = self.half_spread_ask(state.inventory, cast(state.t, dt))
        size = cast(self.order_size, dt)
        return make_quote(mid, mid - d_b, mid + d_a, size, size)


class AvellanedaStoikovInfinite(eqx.Module):
    """Avellaneda–Stoikov (2008) infinite-horizon (discounted) quotes.

    Objective ``E[ int_0^inf -exp(-omega t) exp(-gamma (x + q S_t)) dt ]`` with the inventory
    frozen, which gives the value ``v(x, s, q) = -exp(-gamma (x + q s)) / D_q`` with
    ``D_q = omega - gamma^2 sigma^2 q^2 / 2`` (requires ``D_q > 0``). The reservation prices
    solve the indifference conditions ``v(x - r^b, s, q + 1) = v(x, s, q)`` and
    ``v(x + r^a, s, q - 1) = v(x, s, q)``:

    - ``r^b = s + (1/gamma) ln(D_{q+1} / D_q) = s + (1/gamma) ln(1 + (-1 - 2q) gamma^2 sigma^2
      / (2 omega - gamma^2 sigma^2 q^2))``
    - ``r^a = s + (1/gamma) ln(D_q / D_{q-1}) = s + (1/gamma) ln(1 + (1 - 2q) gamma^2 sigma^2
      / (2 omega - gamma^2 sigma^2 (q - 1)^2))``

    and the quotes ``p^b = r^b - (1/gamma) ln(1 + gamma/k_b)``,
    ``p^a = r^a + (1/gamma) ln(1 + gamma/k_a)``. (Reproductions of the paper often print the
    ask with denominator ``2 omega - gamma^2 sigma^2 q^2``; that form does not satisfy the
    indifference condition above, which the tests check directly.)

    The paper's choice ``omega = gamma^2 sigma^2 (Q + 1)^2 / 2`` (the default) bounds the
    inventory to ``|q| <= Q``: at ``q = Q`` the bid is not quoted (``D_{Q+1} = 0``), at
    ``q = -Q`` the ask is not. Inventory beyond the bound is treated as at the bound.

    Attributes:
        gamma, k, sigma: as in :class:`AvellanedaStoikov`.
        max_inventory: static bound ``Q`` (quantity units) used for the default ``omega`` and
            for one-sided quoting.
        omega: optional discount rate per time unit (> ``gamma^2 sigma^2 Q^2 / 2``).
        k_ask: optional ask-side ``k``.
        order_size: quantity quoted per side.

    Example:
        >>> from jaxmm.strategy import AvellanedaStoikovInfinite
        >>> mm = AvellanedaStoikovInfinite(gamma=0.1, k=1.5, sigma=2.0, max_inventory=5)
        >>> bool(jnp.isinf(mm.half_spread_bid(5.0)))  # at +Q: no bid
        True
        >>> abs(float(mm.half_spread_bid(0.0) - mm.half_spread_ask(0.0))) < 1e-4  # flat: symmetric
        True
    """

    gamma: Array
    k: Array
    sigma: Array
    omega: Array | None
    k_ask: Array | None
    order_size: Array
    max_inventory: float = eqx.field(static=True)

    def __init__(
        self,
        gamma: Any,
        k: Any,
        sigma: Any,
        max_inventory: float,
        *,
        omega: Any = None,
        k_ask: Any = None,
        order_size: Any = 1.0,
    ):
        check_values("gamma", gamma, gt=0.0)
        check_values("k", k, gt=0.0)
        check_values("sigma", sigma, ge=0.0)
        check_values("max_inventory", max_inventory, gt=0.0)
        if omega is not None:
            check_values("omega", omega, gt=0.0)
            if all(is_host_value(x) for x in (omega, gamma, sigma)):
                bound = 0.5 * np.square(np.asarray(gamma) * np.asarray(sigma) * max_inventory)
                if not np.all(np.asarray(omega) > bound):
                    raise ValueError(
                        f"omega: must be > gamma^2 sigma^2 max_inventory^2 / 2 = {bound!r} so "
                        f"that the value function exists for |q| <= max_inventory"
                    )
        if k_ask is not None:
            check_values("k_ask", k_ask, gt=0.0)
        check_values("order_size", order_size, ge=0.0)
        self.gamma = as_float(gamma)
        self.k = as_float(k)
        self.sigma = as_float(sigma)
        self.omega = as_optional_float(omega)
        self.k_ask = as_optional_float(k_ask)
        self.order_size = as_float(order_size)
        self.max_inventory = float(max_inventory)

    def discount_rate(self, dt: Any = None) -> Array:
        """``omega`` (default ``gamma^2 sigma^2 (Q + 1)^2 / 2``), per time unit."""
        dt = float_dtype(self.gamma) if dt is None else dt
        if self.omega is not None:
            return cast(self.omega, dt)
        g, s = cast(self.gamma, dt), cast(self.sigma, dt)
        return 0.5 * (g * s * (self.max_inventory + 1.0)) ** 2

    def _d(self, q: Array, dt: Any) -> Array:
        g, s = cast(self.gamma, dt), cast(self.sigma, dt)
        return self.discount_rate(dt) - 0.5 * (g * s * q) ** 2

    def _log_ratio(self, num: Array, den: Array, ok: Array) -> tuple[Array, Array]:
        ok = ok & (num > 0) & (den > 0)
        num_s = jnp.where(ok, num, 1.0)
        den_s = jnp.where(ok, den, 1.0)
        return jnp.log(num_s / den_s), ok

    def half_spread_bid(self, inventory: Any) -> Array:
        """``delta^b = s - p^b = -(1/gamma) ln(D_{q+1}/D_q) + (1/gamma) ln(1 + gamma/k_b)``.

        ``+inf`` (no bid) at ``q >= Q`` or where ``D_{q+1} <= 0``.
        """
        q = as_float(inventory)
        dt = q.dtype
        qc = jnp.clip(q, -self.max_inventory, self.max_inventory)
        g = cast(self.gamma, dt)
        lr, ok = self._log_ratio(self._d(qc + 1.0, dt), self._d(qc, dt), qc < self.max_inventory)
        liq = liquidity_term(g, cast(self.k, dt))
        return jnp.where(ok, -lr / g + liq, jnp.inf)

    def half_spread_ask(self, inventory: Any) -> Array:
        """``delta^a = p^a - s = (1/gamma) ln(D_q/D_{q-1}) + (1/gamma) ln(1 + gamma/k_a)``.

        ``+inf`` (no ask) at ``q <= -Q`` or where ``D_{q-1} <= 0``.
        """
        q = as_float(inventory)
        dt = q.dtype
        qc = jnp.clip(q, -self.max_inventory, self.max_inventory)
        g = cast(self.gamma, dt)
        lr, ok = self._log_ratio(self._d(qc, dt), self._d(qc - 1.0, dt), qc > -self.max_inventory)
        k_a = cast(self.k if self.k_ask is None else self.k_ask, dt)
        return jnp.where(ok, lr / g + liquidity_term(g, k_a), jnp.inf)

    def reservation_bid(self, mid: Any, inventory: Any) -> Array:
        """``r^b = s + (1/gamma) ln(D_{q+1}/D_q)`` (``-inf`` where undefined)."""
        mid = as_float(mid)
        dt = mid.dtype
        g = cast(self.gamma, dt)
        liq = liquidity_term(g, cast(self.k, dt))
        return mid - (self.half_spread_bid(cast(inventory, dt)) - liq)

    def reservation_ask(self, mid: Any, inventory: Any) -> Array:
        """``r^a = s + (1/gamma) ln(D_q/D_{q-1})`` (``+inf`` where undefined)."""
        mid = as_float(mid)
        dt = mid.dtype
        g = cast(self.gamma, dt)
        k_a = cast(self.k if self.k_ask is None else self.k_ask, dt)
        return mid + (self.half_spread_ask(cast(inventory, dt)) - liquidity_term(g, k_a))

    def total_spread(self, inventory: Any) -> Array:
        """``delta^b + delta^a`` (depends on ``q`` in the infinite-horizon model)."""
        return self.half_spread_bid(inventory) + self.half_spread_ask(inventory)

    def quote(self, state: MarketState) -> Quote:
        """Model quote; one-sided at the inventory bound (the blocked side has size 0)."""
        mid = state.mid
        dt = mid.dtype
        q = cast(state.inventory, dt)
        d_b = self.half_spread_bid(q)
        d_a = self.half_spread_ask(q)
        ok_b = jnp.isfinite(d_b)
        ok_a = jnp.isfinite(d_a)
        size = cast(self.order_size, dt)
        bid = mid - jnp.where(ok_b, d_b, 0.0)
        ask = mid + jnp.where(ok_a, d_a, 0.0)
        return make_quote(mid, bid, ask, size, size, ok_b, ok_a)
