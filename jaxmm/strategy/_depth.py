"""Depth-based offering: quote just in front of the first book level deep enough to hide behind.

On each side, walk the visible book from the best level outwards and find the first level at
which the cumulative visible quantity reaches ``target_depth``; quote one ``tick`` in front of
it (bid: one tick above that bid level; ask: one tick below that ask level), never locking or
crossing the opposite best (bid <= best ask - tick, ask >= best bid + tick). If the visible
depth never reaches the target, the quote joins the deepest non-empty visible level; a side with
no visible depth is not quoted.

Sizes keep the position inside ``[-max_exposure, max_exposure]`` after a full fill and are
capped by ``max_order_size``::

    bid_size = clip(max_exposure - q, 0, max_order_size)
    ask_size = clip(max_exposure + q, 0, max_order_size)

(the original crate used ``max_exposure -/+ q`` unclipped, which goes negative past the limit).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array

from .._validate import check_values
from ._types import MarketState, Quote, as_float, cast, make_quote

__all__ = ["DepthBased"]


def _wall_index(sizes: Array, target: Array) -> tuple[Array, Array]:
    """Index of the first level whose cumulative size reaches ``target`` (else the deepest
    non-empty level) and whether the side has any visible depth."""
    positive = sizes > 0
    cum = jnp.cumsum(jnp.where(positive, sizes, 0.0))
    reached = positive & (cum >= target)
    n = sizes.shape[-1]
    idx = jnp.arange(n)
    first_reached = jnp.min(jnp.where(reached, idx, n))
    deepest = jnp.max(jnp.where(positive, idx, -1))
    i = jnp.where(first_reached < n, first_reached, deepest)
    return jnp.clip(i, 0, n - 1), jnp.any(positive)


class DepthBased(eqx.Module):
    """Depth-based offering (see the module docstring). Needs ``state.book``.

    Attributes:
        target_depth: cumulative visible quantity the quote hides behind, >= 0.
        max_exposure: absolute position limit the sizes respect, >= 0 (quantity units).
        tick: price increment, > 0.
        max_order_size: cap on each side's size, > 0 (default ``inf``).

    Example:
        >>> from jaxmm.strategy import BookLevels, DepthBased, MarketState
        >>> book = BookLevels([99.9, 99.8, 99.7], [5.0, 20.0, 50.0],
        ...                   [100.1, 100.2, 100.3], [30.0, 10.0, 10.0])
        >>> mm = DepthBased(target_depth=20.0, max_exposure=10.0, tick=0.01)
        >>> q = mm.quote(MarketState(mid=100.0, inventory=4.0, book=book))
        >>> round(float(q.bid), 2), round(float(q.ask), 2)
        (99.81, 100.09)
        >>> float(q.bid_size), float(q.ask_size)
        (6.0, 14.0)
    """

    target_depth: Array
    max_exposure: Array
    tick: Array
    max_order_size: Array

    def __init__(
        self, target_depth: Any, max_exposure: Any, tick: Any, *, max_order_size: Any = jnp.inf
    ):
        check_values("target_depth", target_depth, ge=0.0)
        check_values("max_exposure", max_exposure, ge=0.0)
        check_values("tick", tick, gt=0.0)
        check_values("max_order_size", max_order_size, gt=0.0, finite=False)
        self.target_depth = as_float(target_depth)
        self.max_exposure = as_float(max_exposure)
        self.tick = as_float(tick)
        self.max_order_size = as_float(max_order_size)

    def sizes(self, inventory: Any) -> tuple[Array, Array]:
        """``(bid_size, ask_size)``: ``clip(max_exposure -/+ q, 0, max_order_size)``."""
        q = as_float(inventory)
        dt = q.dtype
        cap = cast(self.max_order_size, dt)
        e = cast(self.max_exposure, dt)
        return jnp.clip(e - q, 0.0, cap), jnp.clip(e + q, 0.0, cap)

    def quote(self, state: MarketState) -> Quote:
        """Single-level quote placed in front of the depth 'wall' on each side."""
        if state.book is None:
            raise ValueError("state.book: DepthBased needs the visible book (BookLevels)")
        mid = state.mid
        dt = mid.dtype
        book = state.book
        tick = cast(self.tick, dt)
        target = cast(self.target_depth, dt)
        bp, bs = book.bid_prices.astype(dt), book.bid_sizes.astype(dt)
        ap, as_ = book.ask_prices.astype(dt), book.ask_sizes.astype(dt)
        ib, has_b = _wall_index(bs, target)
        ia, has_a = _wall_index(as_, target)
        bid = bp[ib] + tick
        ask = ap[ia] - tick
        best_bid = jnp.where(has_b, bp[0], -jnp.inf)
        best_ask = jnp.where(has_a, ap[0], jnp.inf)
        bid = jnp.minimum(bid, best_ask - tick)
        ask = jnp.maximum(ask, best_bid + tick)
        bid_size, ask_size = self.sizes(cast(state.inventory, dt))
        return make_quote(mid, bid, ask, bid_size, ask_size, has_b, has_a)
