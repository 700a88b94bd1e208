"""Records the book returns and the events it publishes.

``Fill`` and ``SubmitResult`` are created on the hot path (the book builds them with
``tuple.__new__`` directly, skipping the Python-level constructor); the other events are built
only while someone is subscribed. All prices are integer ticks,
all quantities integer lots, all times integer nanoseconds of the book's clock.
"""

from __future__ import annotations

from decimal import Context, Decimal
from typing import Any, NamedTuple

from ._types import CancelReason, OrderStatus, Side, STPMode, TimeInForce

__all__ = [
    "Fill",
    "OrderUpdate",
    "LevelUpdate",
    "OrderInfo",
    "SubmitResult",
    "BookSnapshot",
    "Bar",
    "Impact",
    "Level",
]

_EXACT = Context(prec=120)


class Fill(NamedTuple):
    """One trade between a resting (maker) and an incoming (taker) order; also an event.

    Attributes:
        seq: event sequence number (0 when the book had no subscriber at the time).
        trade_id: per-book trade counter, from 1.
        ts: book clock, integer ns.
        price: trade price in ticks (always the maker's price).
        qty: traded lots.
        maker_id, taker_id: book order ids.
        maker_owner, taker_owner: owners (None when anonymous).
        aggressor: side of the taker.
        maker_fee_raw, taker_fee_raw: exact integer fees ``price * qty * rate`` (ticks x lots
            x rate in 1e-4 bp); positive = paid by the owner, negative = rebate.
        fee_unit: quote currency per unit of a raw fee, so ``maker_fee`` / ``taker_fee`` give
            the exact ``Decimal`` amounts.
    """

    seq: int
    trade_id: int
    ts: int
    price: int
    qty: int
    maker_id: int
    taker_id: int
    maker_owner: Any
    taker_owner: Any
    aggressor: Side
    maker_fee_raw: int
    taker_fee_raw: int
    fee_unit: Decimal

    @property
    def maker_fee(self) -> Decimal:
        """Exact maker fee in the quote currency (negative = rebate)."""
        return _EXACT.multiply(Decimal(self.maker_fee_raw), self.fee_unit)

    @property
    def taker_fee(self) -> Decimal:
        """Exact taker fee in the quote currency (negative = rebate)."""
        return _EXACT.multiply(Decimal(self.taker_fee_raw), self.fee_unit)


class OrderUpdate(NamedTuple):
    """An order changed state. Emitted for: an order coming to rest, every fill of a maker,
    the final state of a taker, cancels (with ``reason``), expiries and modifies.

    ``in_book`` says whether the order rests in the book after the change; ``requeued`` that
    it went to the back of its (possibly new) price level. ``remaining`` is the resting
    quantity after the change. Applying these updates in ``seq`` order to a snapshot
    reproduces the book (``OrderBook.apply``).
    """

    seq: int
    ts: int
    order_id: int
    status: OrderStatus
    side: Side
    price: int | None
    remaining: int
    filled: int
    in_book: bool
    requeued: bool
    reason: CancelReason | None
    owner: Any
    tif: TimeInForce
    expire_ns: int | None
    post_only: bool
    stp: STPMode


class LevelUpdate(NamedTuple):
    """The aggregate at one price level changed: new total lots and order count (0 = gone)."""

    seq: int
    ts: int
    side: Side
    price: int
    qty: int
    count: int


class OrderInfo(NamedTuple):
    """Read-only view of a resting order (``OrderBook.order``, snapshots)."""

    order_id: int
    side: Side
    price: int
    qty: int
    filled: int
    owner: Any
    tif: TimeInForce
    expire_ns: int | None
    ts: int
    post_only: bool
    stp: STPMode


class Level(NamedTuple):
    """One L2 level: price in ticks, total lots, number of orders."""

    price: int
    qty: int
    count: int


class SubmitResult(NamedTuple):
    """What happened to a submitted (or modified) order.

    Attributes:
        order_id: the id the book assigned.
        status: final book status after this call.
        filled: lots filled by this call.
        remaining: lots now resting in the book (0 when the order does not rest).
        cancelled: lots cancelled by this call (IOC/market rest, STP).
        fills: the :class:`Fill` records of this call, in match order.
        reason: why lots were cancelled, when ``cancelled > 0``.
    """

    order_id: int
    status: OrderStatus
    filled: int
    remaining: int
    cancelled: int
    fills: list[Fill]
    reason: CancelReason | None


class BookSnapshot(NamedTuple):
    """Full (L3) state of a book: every resting order in priority order, best level first.

    ``seq`` is the sequence number of the last event reflected; events with a larger ``seq``
    applied in order (``OrderBook.apply``) bring a book restored from the snapshot up to date.
    ``last_trade`` is the most recent retained :class:`Fill` (or None).
    """

    symbol: str
    seq: int
    ts: int
    bids: tuple[OrderInfo, ...]
    asks: tuple[OrderInfo, ...]
    next_order_id: int
    next_trade_id: int
    last_trade: Fill | None


class Bar(NamedTuple):
    """OHLC bar over ``[start_ns, start_ns + interval_ns)``; prices in ticks, volume in lots."""

    start_ns: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    trades: int


class Impact(NamedTuple):
    """Cost of sweeping the book for ``qty`` lots (``OrderBook.impact``).

    ``notional`` is the exact sum of ``price * lots`` (ticks x lots) over the levels consumed;
    ``vwap`` = notional / filled (ticks, float); ``worst`` the last price touched;
    ``slippage`` = |vwap - touch| in ticks against the best opposite price before the sweep.
    """

    qty: int
    filled: int
    notional: int
    vwap: float | None
    worst: int | None
    levels: int
    slippage: float | None
