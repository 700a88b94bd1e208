"""Operator post-processing of a model quote: ladders, clamps, fee floor, tick/lot rounding.

Strategies return the *raw* model quote; everything an operator imposes on top of the model is
one separate, explicit step, :meth:`QuoteConstraints.apply`, applied in this order:

1. spread clamps — where both sides are active, the spread is clipped to
   ``[min_spread, max_spread]`` symmetrically about the quote centre ``(bid + ask) / 2``;
2. fee floor — each active side keeps at least ``fee_rate * mid + fee_abs`` from the mid
   (``bid <= mid - floor``, ``ask >= mid + floor``), so a fill never earns less than the fee;
3. tick rounding — outward (bid down, ask up), so the min spread and the fee floor survive;
4. sizes — clipped to ``[0, max_size]``; with ``max_inventory`` set, shaped linearly against
   the inventory (``size_shaping``) and capped so that filling every level of a side cannot
   take ``|position|`` beyond ``max_inventory``; rounded down to the lot; sizes below
   ``min_size`` become 0;
5. validity — a side with a non-positive or non-finite price, or zero size, is switched off
   (size 0, placeholder price = mid).

Precedence where clamps conflict: the fee floor and the min spread win over the max spread;
outward tick rounding can widen the spread by at most two ticks beyond ``max_spread``.
Rounding is piecewise constant, so differentiate through the raw quote, not the final one.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from .._validate import check_values, is_host_value
from ._types import MarketState, Quote, as_float, as_optional_float, cast, make_quote

__all__ = ["Ladder", "QuoteConstraints", "QuotePipeline", "round_to_increment"]


def round_to_increment(x: Array, increment: Array, mode: str) -> Array:
    """Round ``x`` to a multiple of ``increment``: ``mode`` is ``"down"``, ``"up"`` or
    ``"nearest"``. A value within a few ulps of a multiple snaps to it (so ``0.3 / 0.1`` is 3).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxmm.strategy import round_to_increment
        >>> round(float(round_to_increment(jnp.asarray(100.037), jnp.asarray(0.01), "down")), 4)
        100.03
    """
    dt = x.dtype
    n = x / increment
    nr = jnp.round(n)
    near = jnp.abs(n - nr) <= 8 * jnp.finfo(dt).eps * jnp.maximum(1.0, jnp.abs(n))
    if mode == "down":
        m = jnp.where(near, nr, jnp.floor(n))
    elif mode == "up":
        m = jnp.where(near, nr, jnp.ceil(n))
    elif mode == "nearest":
        m = nr
    else:
        raise ValueError(f"mode: must be 'down', 'up' or 'nearest', got {mode!r}")
    return m * increment


class QuoteConstraints(eqx.Module):
    """Operator clamps applied after the model quote (see the module docstring for the order).

    Attributes:
        min_spread: minimum ``ask - bid`` (price units), >= 0.
        max_spread: maximum ``ask - bid`` (price units), >= ``min_spread``; default ``inf``.
        fee_rate: per-side fee as a fraction of the mid, in ``[0, 1)``.
        fee_abs: per-side fee in price units, >= 0.
        min_size: sizes below this become 0, >= 0.
        max_size: per-level size cap, > 0; default ``inf``.
        max_inventory: optional absolute position limit (quantity units), >= 0.
        size_shaping: in ``[0, 1]``; with ``max_inventory``, the bid size is multiplied by
            ``clip(1 - size_shaping q / Q, 0, 1)`` and the ask by ``clip(1 + size_shaping q/Q,
            0, 1)``.
        tick: optional price increment (> 0) for rounding.
        lot: optional size increment (> 0) for rounding.

    Example:
        >>> from jaxmm.strategy import MarketState, Quote, QuoteConstraints
        >>> c = QuoteConstraints(min_spread=0.10, tick=0.05, lot=1.0)
        >>> q = c.apply(Quote(99.99, 100.01, 2.7, 2.7), MarketState(mid=100.0))
        >>> round(float(q.bid), 2), round(float(q.ask), 2), float(q.bid_size)
        (99.95, 100.05, 2.0)
    """

    min_spread: Array
    max_spread: Array
    fee_rate: Array
    fee_abs: Array
    min_size: Array
    max_size: Array
    max_inventory: Array | None
    size_shaping: Array
    tick: Array | None
    lot: Array | None

    def __init__(
        self,
        *,
        min_spread: Any = 0.0,
        max_spread: Any = np.inf,
        fee_rate: Any = 0.0,
        fee_abs: Any = 0.0,
        min_size: Any = 0.0,
        max_size: Any = np.inf,
        max_inventory: Any = None,
        size_shaping: Any = 0.0,
        tick: Any = None,
        lot: Any = None,
    ):
        check_values("min_spread", min_spread, ge=0.0)
        check_values("max_spread", max_spread, ge=0.0, finite=False)
        if is_host_value(min_spread) and is_host_value(max_spread):
            if not np.all(np.asarray(max_spread) >= np.asarray(min_spread)):
                raise ValueError(
                    f"max_spread: must be >= min_spread ({min_spread!r}), got {max_spread!r}"
                )
        check_values("fee_rate", fee_rate, ge=0.0)
        if is_host_value(fee_rate) and not np.all(np.asarray(fee_rate) < 1.0):
            raise ValueError(f"fee_rate: must be < 1, got {fee_rate!r}")
        check_values("fee_abs", fee_abs, ge=0.0)
        check_values("min_size", min_size, ge=0.0)
        check_values("max_size", max_size, gt=0.0, finite=False)
        if max_inventory is not None:
            check_values("max_inventory", max_inventory, ge=0.0)
        check_values("size_shaping", size_shaping, ge=0.0, le=1.0)
        if tick is not None:
            check_values("tick", tick, gt=0.0)
        if lot is not None:
            check_values("lot", lot, gt=0.0)
        self.min_spread = as_float(min_spread)
        self.max_spread = as_float(max_spread)
        self.fee_rate = as_float(fee_rate)
        self.fee_abs = as_float(fee_abs)
        self.min_size = as_float(min_size)
        self.max_size = as_float(max_size)
        self.max_inventory = as_optional_float(max_inventory)
        self.size_shaping = as_float(size_shaping)
        self.tick = as_optional_float(tick)
        self.lot = as_optional_float(lot)

    def fee_floor(self, mid: Any) -> Array:
        """Minimum distance of each side from the mid: ``fee_rate * mid + fee_abs``."""
        mid = as_float(mid)
        dt = mid.dtype
        return cast(self.fee_rate, dt) * mid + cast(self.fee_abs, dt)

    def _shape_sizes(self, size: Array, room: Array, factor: Array) -> Array:
        size = size * factor
        if size.ndim == 0:
            return jnp.clip(size, 0.0, room)
        before = jnp.cumsum(size, axis=0) - size  # quantity on better levels
        return jnp.clip(room - before, 0.0, size)

    def apply(self, quote: Quote, state: MarketState) -> Quote:
        """Constrained quote (same shape as ``quote``; one level or a ladder)."""
        mid = state.mid
        dt = mid.dtype
        bid, ask = quote.bid.astype(dt), quote.ask.astype(dt)
        bs, as_ = quote.bid_size.astype(dt), quote.ask_size.astype(dt)
        b_on, a_on = bs > 0, as_ > 0
        both = b_on & a_on

        # 1. spread clamps about the centre
        lo = cast(self.min_spread, dt)
        hi = jnp.maximum(cast(self.max_spread, dt), lo)
        centre = 0.5 * (bid + ask)
        half = 0.5 * jnp.clip(ask - bid, lo, hi)
        bid = jnp.where(both, centre - half, bid)
        ask = jnp.where(both, centre + half, ask)

        # 2. fee floor
        floor = self.fee_floor(mid)
        bid = jnp.minimum(bid, mid - floor)
        ask = jnp.maximum(ask, mid + floor)

        # 3. tick rounding, outward
        if self.tick is not None:
            tick = cast(self.tick, dt)
            bid = round_to_increment(bid, tick, "down")
            ask = round_to_increment(ask, tick, "up")

        # 4. sizes
        cap = cast(self.max_size, dt)
        bs = jnp.clip(bs, 0.0, cap)
        as_ = jnp.clip(as_, 0.0, cap)
        if self.max_inventory is not None:
            Q = cast(self.max_inventory, dt)
            q = cast(state.inventory, dt)
            shaping = jnp.clip(cast(self.size_shaping, dt), 0.0, 1.0)
            ratio = jnp.where(Q > 0, q / jnp.where(Q > 0, Q, 1.0), jnp.sign(q) * jnp.inf)
            f_b = jnp.clip(1.0 - shaping * ratio, 0.0, 1.0)
            f_a = jnp.clip(1.0 + shaping * ratio, 0.0, 1.0)
            f_b = jnp.where(jnp.isnan(f_b), 1.0, f_b)
            f_a = jnp.where(jnp.isnan(f_a), 1.0, f_a)
            bs = self._shape_sizes(bs, jnp.maximum(Q - q, 0.0), f_b)
            as_ = self._shape_sizes(as_, jnp.maximum(Q + q, 0.0), f_a)
        if self.lot is not None:
            lot = cast(self.lot, dt)
            bs = round_to_increment(bs, lot, "down")
            as_ = round_to_increment(as_, lot, "down")
        min_size = cast(self.min_size, dt)
        bs = jnp.where(bs >= min_size, bs, 0.0)
        as_ = jnp.where(as_ >= min_size, as_, 0.0)

        # 5. validity and placeholders
        return make_quote(mid, bid, ask, bs, as_, b_on, a_on)


class Ladder(eqx.Module):
    """Expand a one-level quote into ``levels`` levels per side.

    Level ``i`` (0 = the model quote): ``bid_i = bid - i * spacing``,
    ``ask_i = ask + i * spacing``, sizes ``size * size_decay**i``. An inactive side stays
    inactive; bid levels that would be non-positive are switched off.

    Attributes:
        spacing: distance between levels, price units, > 0.
        size_decay: per-level size multiplier, >= 0.
        levels: static number of levels per side (>= 1).

    Example:
        >>> from jaxmm.strategy import Ladder, MarketState, Quote
        >>> lad = Ladder(spacing=0.5, levels=3, size_decay=0.5)
        >>> q = lad.apply(Quote(99.0, 101.0, 4.0, 4.0), MarketState(mid=100.0))
        >>> [float(x) for x in q.bid], [float(x) for x in q.ask_size]
        ([99.0, 98.5, 98.0], [4.0, 2.0, 1.0])
    """

    spacing: Array
    size_decay: Array
    levels: int = eqx.field(static=True)

    def __init__(self, spacing: Any, levels: int, *, size_decay: Any = 1.0):
        check_values("spacing", spacing, gt=0.0)
        check_values("size_decay", size_decay, ge=0.0)
        if int(levels) != levels or levels < 1:
            raise ValueError(f"levels: must be an integer >= 1, got {levels!r}")
        self.spacing = as_float(spacing)
        self.size_decay = as_float(size_decay)
        self.levels = int(levels)

    def apply(self, quote: Quote, state: MarketState) -> Quote:
        """Ladder quote; every field gets a leading axis of length ``levels``."""
        mid = state.mid
        dt = mid.dtype
        i = jnp.arange(self.levels).astype(dt)
        step = cast(self.spacing, dt) * i
        decay = cast(self.size_decay, dt) ** i
        b_on = quote.bid_size > 0
        a_on = quote.ask_size > 0
        return make_quote(
            mid,
            quote.bid.astype(dt) - step,
            quote.ask.astype(dt) + step,
            quote.bid_size.astype(dt) * decay,
            quote.ask_size.astype(dt) * decay,
            b_on,
            a_on,
        )


class QuotePipeline(eqx.Module):
    """A strategy followed by an optional :class:`Ladder` and optional
    :class:`QuoteConstraints`; itself a strategy (``quote(state)``), with the raw model quote
    still available from :meth:`quote_with_raw`.

    Example:
        >>> from jaxmm.strategy import (AvellanedaStoikov, MarketState, QuoteConstraints,
        ...                             QuotePipeline)
        >>> p = QuotePipeline(AvellanedaStoikov(0.1, 1.5, 2.0, 1.0),
        ...                   constraints=QuoteConstraints(tick=0.01, max_spread=1.0))
        >>> raw, final = p.quote_with_raw(MarketState(mid=100.0))
        >>> float(raw.ask - raw.bid) > 1.0, round(float(final.ask - final.bid), 2)
        (True, 1.0)
    """

    strategy: Any
    ladder: Ladder | None
    constraints: QuoteConstraints | None

    def __init__(
        self,
        strategy: Any,
        *,
        ladder: Ladder | None = None,
        constraints: QuoteConstraints | None = None,
    ):
        self.strategy = strategy
        self.ladder = ladder
        self.constraints = constraints

    def quote_with_raw(self, state: MarketState) -> tuple[Quote, Quote]:
        """``(raw model quote, final quote)``."""
        raw = self.strategy.quote(state)
        out = raw
        if self.ladder is not None:
            out = self.ladder.apply(out, state)
        if self.constraints is not None:
            out = self.constraints.apply(out, state)
        return raw, out

    def quote(self, state: MarketState) -> Quote:
        """The final (post-processed) quote."""
        return self.quote_with_raw(state)[1]
