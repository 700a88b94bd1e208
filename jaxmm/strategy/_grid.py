"""Grid quoting: resting orders on a fixed lattice of prices, arithmetic or geometric.

Not a stochastic-control model: a grid maker keeps ``levels`` orders on each side of the mid on
a price lattice and lets the market oscillate through it (profitable in ranging markets, exposed
to trends). The two lattices are genuinely different:

- arithmetic: ``p_j = anchor + j * spacing`` — constant price step (``spacing`` in price units);
- geometric:  ``p_j = anchor * (1 + spacing)^j`` — constant ratio (``spacing`` a fraction, e.g.
  ``0.001`` = 10 bp), so steps grow with the price and every level stays positive.

Bids are the ``levels`` lattice points strictly below the mid (nearest first), asks the
``levels`` points strictly above. Without an ``anchor`` the lattice is centred on the current mid
(a rolling grid: ``bid_i = mid - (i+1) spacing`` or ``mid (1 + spacing)^-(i+1)``).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array

from .._validate import check_values
from ._types import MarketState, Quote, as_float, as_optional_float, cast, make_quote

__all__ = ["Grid"]


class Grid(eqx.Module):
    """Arithmetic or geometric grid ladder (``levels`` per side).

    Level ``i`` (``0`` nearest the mid) carries size ``size * size_growth**i``. Arithmetic bid
    levels at or below zero are switched off (size 0), so prices of active levels stay positive.

    Attributes:
        spacing: lattice step: price units (arithmetic) or a fraction > 0 (geometric).
        size: quantity at the nearest level, >= 0.
        size_growth: per-level size multiplier, >= 0 (1 = flat; > 1 = pyramid outwards).
        anchor: optional fixed lattice origin (price, > 0); ``None`` = centred on the mid.
        levels: static number of levels per side.
        geometric: static; geometric (``True``) or arithmetic (``False``) lattice.

    Example:
        >>> from jaxmm.strategy import Grid, MarketState
        >>> s = MarketState(mid=100.0)
        >>> a = Grid(spacing=1.0, size=1.0, levels=3).quote(s)
        >>> [float(x) for x in a.bid]
        [99.0, 98.0, 97.0]
        >>> g = Grid(spacing=0.01, size=1.0, levels=3, geometric=True).quote(s)
        >>> [round(float(x), 4) for x in g.ask]
        [101.0, 102.01, 103.0301]
    """

    spacing: Array
    size: Array
    size_growth: Array
    anchor: Array | None
    levels: int = eqx.field(static=True)
    geometric: bool = eqx.field(static=True)

    def __init__(
        self,
        spacing: Any,
        size: Any,
        levels: int,
        *,
        geometric: bool = False,
        size_growth: Any = 1.0,
        anchor: Any = None,
    ):
        check_values("spacing", spacing, gt=0.0)
        check_values("size", size, ge=0.0)
        check_values("size_growth", size_growth, ge=0.0)
        if anchor is not None:
            check_values("anchor", anchor, gt=0.0)
        if int(levels) != levels or levels < 1:
            raise ValueError(f"levels: must be an integer >= 1, got {levels!r}")
        self.spacing = as_float(spacing)
        self.size = as_float(size)
        self.size_growth = as_float(size_growth)
        self.anchor = as_optional_float(anchor)
        self.levels = int(levels)
        self.geometric = bool(geometric)

    def _price(self, anchor: Array, j: Array, spacing: Array) -> Array:
        if self.geometric:
            return anchor * jnp.exp(j * jnp.log1p(spacing))
        return anchor + j * spacing

    def quote(self, state: MarketState) -> Quote:
        """Ladder quote: every field has shape ``(levels,)``, level 0 nearest the mid."""
        mid = state.mid
        dt = mid.dtype
        spacing = cast(self.spacing, dt)
        i = jnp.arange(self.levels).astype(dt)
        if self.anchor is None:
            anchor = mid
            j_bid0 = jnp.asarray(-1.0, dt)
            j_ask0 = jnp.asarray(1.0, dt)
        else:
            anchor = cast(self.anchor, dt)
            if self.geometric:
                x = jnp.log(mid / anchor) / jnp.log1p(spacing)
            else:
                x = (mid - anchor) / spacing
            # Snap x to an integer when the mid sits on a lattice point up to rounding.
            xr = jnp.round(x)
            x = jnp.where(jnp.abs(x - xr) <= 64 * jnp.finfo(dt).eps * (1.0 + jnp.abs(x)), xr, x)
            j_bid0 = jnp.ceil(x) - 1.0
            j_ask0 = jnp.floor(x) + 1.0
        bid = self._price(anchor, j_bid0 - i, spacing)
        ask = self._price(anchor, j_ask0 + i, spacing)
        sizes = cast(self.size, dt) * cast(self.size_growth, dt) ** i
        return make_quote(mid, bid, ask, sizes, sizes)
