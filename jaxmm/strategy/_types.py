"""State and quote pytrees shared by every strategy, and the small numeric helpers they use.

Conventions (docs/strategies.md):

- Prices (``mid``, quotes, half-spreads) are in absolute price units; inventory and sizes are in
  units of the traded quantity (shares, contracts, lots — whatever the caller counts in); time
  ``t`` is in the same unit as a strategy's ``horizon`` and as the time unit of its ``sigma``.
- A quote side whose size is ``0`` is *not quoted*. Its price field then holds a finite
  placeholder (the mid price), never ``NaN`` or ``inf``, so that downstream arithmetic and
  gradients stay finite; consumers must mask by size. Every active side has a finite, strictly
  positive price.
- Kernels are written for one state (scalar fields) and vmapped at the call site; a ladder
  quote has one leading ``levels`` axis on every field.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._validate import is_host_value

__all__ = ["BookLevels", "MarketState", "Quote"]

# Shape annotations (jaxtyping): a state field is a scalar per state (leading batch axes only
# under vmap); a book side has a trailing levels axis; a quote field is a scalar or a ladder.
StateField = Float[Array, "*batch"]
BookSide = Float[Array, "*batch levels"]
QuoteField = Float[Array, "*levels"]


def default_float_dtype() -> Any:
    """The dtype JAX gives a Python float: float64 with x64 enabled, float32 otherwise."""
    return jnp.asarray(1.0).dtype


def as_float(x: Any) -> Array:
    """Convert a parameter to a floating JAX array, keeping an existing floating dtype.

    Strategy parameters live on the device (built once, quoted many times).
    """
    a = jnp.asarray(x)
    if not jnp.issubdtype(a.dtype, jnp.floating):
        a = a.astype(default_float_dtype())
    return a


def host_float(x: Any) -> np.ndarray:
    """A host value as a NumPy array of JAX's canonical float dtype (float64 with x64)."""
    a = np.asarray(x)
    dt = a.dtype if np.issubdtype(a.dtype, np.floating) else np.dtype(np.float64)
    return a.astype(jax.dtypes.canonicalize_dtype(dt), copy=False)


def _host_array(x: Any, dtype: Any = None) -> np.ndarray:
    a = np.asarray(x) if dtype is None else np.asarray(x, dtype=dtype)
    return a.astype(jax.dtypes.canonicalize_dtype(a.dtype), copy=False)


def as_optional_float(x: Any) -> Array | None:
    return None if x is None else as_float(x)


def float_dtype(x: Any) -> Any:
    """Compute dtype for a kernel: the floating dtype of ``x``, else JAX's default float."""
    dt = jnp.result_type(x)
    if not jnp.issubdtype(dt, jnp.floating):
        dt = default_float_dtype()
    return dt


def cast(x: Any, dt: Any) -> Array:
    """``x`` as an array of dtype ``dt`` (explicit, as strict promotion requires)."""
    return jnp.asarray(x).astype(dt)


class BookLevels(eqx.Module):
    """Visible order-book depth: ``L`` price levels per side, best level first.

    Padding levels (fewer than ``L`` visible) carry size ``0``; their price is ignored.

    Attributes:
        bid_prices: bid level prices, best (highest) first, price units. Shape ``(L,)``.
        bid_sizes: visible quantity at each bid level (>= 0). Shape ``(L,)``.
        ask_prices: ask level prices, best (lowest) first. Shape ``(L,)``.
        ask_sizes: visible quantity at each ask level (>= 0). Shape ``(L,)``.

    Example:
        >>> from jaxmm.strategy import BookLevels
        >>> book = BookLevels([99.9, 99.8], [5.0, 20.0], [100.1, 100.2], [3.0, 40.0])
        >>> book.bid_prices.shape
        (2,)
    """

    bid_prices: BookSide
    bid_sizes: BookSide
    ask_prices: BookSide
    ask_sizes: BookSide

    def __init__(self, bid_prices: Any, bid_sizes: Any, ask_prices: Any, ask_sizes: Any):
        self.bid_prices = as_float(bid_prices)
        self.bid_sizes = as_float(bid_sizes)
        self.ask_prices = as_float(ask_prices)
        self.ask_sizes = as_float(ask_sizes)


class MarketState(eqx.Module):
    """What a strategy sees at one decision time: one state, or a batch with leading axes.

    ``mid``, ``inventory``, ``t`` and the two imbalance signals are broadcast to one common
    shape on construction, so a batch can be built from a batched ``mid`` and scalar others.

    Attributes:
        mid: reference (mid) price ``s``, price units, > 0.
        inventory: signed position ``q`` (long > 0), in quantity units.
        t: current time, in the strategy's time unit (same unit as ``horizon`` and ``sigma``).
        book_imbalance: order-book imbalance in ``[-1, 1]``,
            ``(V_bid - V_ask) / (V_bid + V_ask)`` of visible volume (> 0: more resting bids).
        flow_imbalance: trade-flow imbalance in ``[-1, 1]``,
            ``(V_buy - V_sell) / (V_buy + V_sell)`` of recent aggressor volume (> 0: buyers).
        book: optional visible depth (:class:`BookLevels`), needed by
            :class:`~jaxmm.strategy.DepthBased` only.

    Example:
        >>> from jaxmm.strategy import MarketState
        >>> s = MarketState(mid=100.0, inventory=3.0, t=10.0)
        >>> float(s.mid), float(s.inventory)
        (100.0, 3.0)
    """

    mid: StateField
    inventory: Array
    t: StateField
    book_imbalance: StateField
    flow_imbalance: StateField
    book: BookLevels | None

    def __init__(
        self,
        mid: Any,
        inventory: Any = 0.0,
        t: Any = 0.0,
        book_imbalance: Any = 0.0,
        flow_imbalance: Any = 0.0,
        book: BookLevels | None = None,
    ):
        values = (mid, inventory, t, book_imbalance, flow_imbalance)
        if all(is_host_value(v) for v in values):
            mid = host_float(mid)
            dt = mid.dtype
            # Host values stay NumPy (broadcast and cast here, no device transfer): a live
            # quoting loop builds one state per tick and jit moves NumPy arguments cheaply.
            shape = np.broadcast_shapes(*(np.shape(v) for v in values))
            self.mid = np.broadcast_to(mid, shape)
            self.inventory = np.broadcast_to(_host_array(inventory), shape)
            self.t, self.book_imbalance, self.flow_imbalance = (
                np.broadcast_to(_host_array(v, dt), shape) for v in values[2:]
            )
        else:
            mid = as_float(mid)
            dt = mid.dtype
            arrays = jnp.broadcast_arrays(
                mid,
                jnp.asarray(inventory),
                cast(t, dt),
                cast(book_imbalance, dt),
                cast(flow_imbalance, dt),
            )
            self.mid, self.inventory, self.t, self.book_imbalance, self.flow_imbalance = arrays
        self.book = book


class Quote(eqx.Module):
    """Two-sided quote: one level (scalar fields) or a ladder (leading ``levels`` axis).

    A side with size ``0`` is not quoted; its price is then a finite placeholder (the mid).

    Attributes:
        bid: bid price(s), price units.
        ask: ask price(s), price units.
        bid_size: quantity offered to buy at each bid level (>= 0).
        ask_size: quantity offered to sell at each ask level (>= 0).

    Example:
        >>> from jaxmm.strategy import Quote
        >>> q = Quote(bid=99.0, ask=101.0, bid_size=1.0, ask_size=1.0)
        >>> float(q.spread)
        2.0
    """

    bid: QuoteField
    ask: QuoteField
    bid_size: QuoteField
    ask_size: QuoteField

    def __init__(self, bid: Any, ask: Any, bid_size: Any, ask_size: Any):
        self.bid = as_float(bid)
        self.ask = as_float(ask)
        self.bid_size = as_float(bid_size)
        self.ask_size = as_float(ask_size)

    @property
    def spread(self) -> Array:
        """``ask - bid`` (meaningful where both sides are active)."""
        return self.ask - self.bid

    @property
    def bid_active(self) -> Array:
        """Boolean mask: the bid side is quoted (size > 0)."""
        return self.bid_size > 0

    @property
    def ask_active(self) -> Array:
        """Boolean mask: the ask side is quoted (size > 0)."""
        return self.ask_size > 0


def make_quote(
    mid: Array,
    bid: Array,
    ask: Array,
    bid_size: Array,
    ask_size: Array,
    bid_ok: Array | bool = True,
    ask_ok: Array | bool = True,
) -> Quote:
    """Build a :class:`Quote`, switching off invalid sides.

    A side is active only where its flag is set, its price is finite and > 0 and its size is
    finite and > 0. Inactive sides get size 0 and the placeholder price ``mid`` (selected with
    ``where``, so a masked ``inf``/``NaN`` never reaches a gradient through the output).
    """
    dt = mid.dtype
    bid_ok = bid_ok & jnp.isfinite(bid) & (bid > 0) & jnp.isfinite(bid_size) & (bid_size > 0)
    ask_ok = ask_ok & jnp.isfinite(ask) & (ask > 0) & jnp.isfinite(ask_size) & (ask_size > 0)
    zero = jnp.zeros((), dt)
    return Quote(
        bid=jnp.where(bid_ok, bid, mid).astype(dt),
        ask=jnp.where(ask_ok, ask, mid).astype(dt),
        bid_size=jnp.where(bid_ok, bid_size, zero).astype(dt),
        ask_size=jnp.where(ask_ok, ask_size, zero).astype(dt),
    )
