"""Adaptive spread: quotes that widen and lean with order-book and trade-flow imbalance.

A heuristic (no closed-form optimality), kept explicit and differentiable so its coefficients
can be tuned by gradient in the simulator. With ``I_b`` the book imbalance and ``I_f`` the
trade-flow imbalance (both clipped to ``[-1, 1]``; a non-finite signal counts as 0)::

    half   = base_half_spread * (1 + book_widening |I_b| + flow_widening |I_f|)
    centre = mid + book_skew I_b + flow_skew I_f - inventory_skew q
    bid    = centre - half,   ask = centre + half
    bid_size = order_size (1 - flow_size_shading max(-I_f, 0))
    ask_size = order_size (1 - flow_size_shading max(+I_f, 0))

Positive imbalance (more resting bids / aggressive buying) predicts an up-move: the centre
leans up, the spread widens against the one-sided flow, and the side the informed flow is
trading against (the ask, under buying) is shaded smaller. Sizes stay in
``[0, order_size]`` because ``flow_size_shading`` is clipped to ``[0, 1]``.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array

from .._validate import check_values
from ._types import MarketState, Quote, as_float, cast, make_quote

__all__ = ["AdaptiveSpread"]


def _signal(x: Array) -> Array:
    return jnp.clip(jnp.where(jnp.isfinite(x), x, 0.0), -1.0, 1.0)


class AdaptiveSpread(eqx.Module):
    """Imbalance-adaptive spread and skew (see the module docstring for the equations).

    Attributes:
        base_half_spread: half-spread with no imbalance, price units, > 0.
        book_widening: relative widening per unit ``|I_b|``, >= 0.
        flow_widening: relative widening per unit ``|I_f|``, >= 0.
        book_skew: centre shift per unit ``I_b``, price units.
        flow_skew: centre shift per unit ``I_f``, price units.
        inventory_skew: centre shift per unit inventory (price units / quantity unit), >= 0.
        order_size: quantity per side, >= 0.
        flow_size_shading: in ``[0, 1]``; fraction of size removed on the side facing
            one-sided flow at ``|I_f| = 1``.

    Example:
        >>> from jaxmm.strategy import AdaptiveSpread, MarketState
        >>> mm = AdaptiveSpread(base_half_spread=0.05, book_widening=1.0, book_skew=0.02)
        >>> q = mm.quote(MarketState(mid=100.0, book_imbalance=0.5))
        >>> round(float(q.bid), 4), round(float(q.ask), 4)  # centre 100.01, half 0.075
        (99.935, 100.085)
    """

    base_half_spread: Array
    book_widening: Array
    flow_widening: Array
    book_skew: Array
    flow_skew: Array
    inventory_skew: Array
    order_size: Array
    flow_size_shading: Array

    def __init__(
        self,
        base_half_spread: Any,
        *,
        book_widening: Any = 0.0,
        flow_widening: Any = 0.0,
        book_skew: Any = 0.0,
        flow_skew: Any = 0.0,
        inventory_skew: Any = 0.0,
        order_size: Any = 1.0,
        flow_size_shading: Any = 0.0,
    ):
        check_values("base_half_spread", base_half_spread, gt=0.0)
        check_values("book_widening", book_widening, ge=0.0)
        check_values("flow_widening", flow_widening, ge=0.0)
        check_values("book_skew", book_skew)
        check_values("flow_skew", flow_skew)
        check_values("inventory_skew", inventory_skew, ge=0.0)
        check_values("order_size", order_size, ge=0.0)
        check_values("flow_size_shading", flow_size_shading, ge=0.0, le=1.0)
        self.base_half_spread = as_float(base_half_spread)
        self.book_widening = as_float(book_widening)
        self.flow_widening = as_float(flow_widening)
        self.book_skew = as_float(book_skew)
        self.flow_skew = as_float(flow_skew)
        self.inventory_skew = as_float(inventory_skew)
        self.order_size = as_float(order_size)
        self.flow_size_shading = as_float(flow_size_shading)

    def half_spread(self, book_imbalance: Any, flow_imbalance: Any) -> Array:
        """``base_half_spread (1 + book_widening |I_b| + flow_widening |I_f|)``."""
        ib = _signal(as_float(book_imbalance))
        dt = ib.dtype
        i_f = _signal(cast(flow_imbalance, dt))
        return cast(self.base_half_spread, dt) * (
            1.0
            + cast(self.book_widening, dt) * jnp.abs(ib)
            + cast(self.flow_widening, dt) * jnp.abs(i_f)
        )

    def quote(self, state: MarketState) -> Quote:
        """Adaptive quote (single level)."""
        mid = state.mid
        dt = mid.dtype
        ib = _signal(state.book_imbalance.astype(dt))
        i_f = _signal(state.flow_imbalance.astype(dt))
        q = cast(state.inventory, dt)
        half = self.half_spread(ib, i_f)
        centre = (
            mid
            + cast(self.book_skew, dt) * ib
            + cast(self.flow_skew, dt) * i_f
            - cast(self.inventory_skew, dt) * q
        )
        size = cast(self.order_size, dt)
        shade = jnp.clip(cast(self.flow_size_shading, dt), 0.0, 1.0)
        bid_size = size * (1.0 - shade * jnp.maximum(-i_f, 0.0))
        ask_size = size * (1.0 - shade * jnp.maximum(i_f, 0.0))
        return make_quote(mid, centre - half, centre + half, bid_size, ask_size)
