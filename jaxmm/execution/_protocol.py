"""The exchange connector protocol and the messages it exchanges.

A connector speaks the book's units: prices in integer ticks and sizes in integer lots of
the symbol's :class:`~jaxmm.book.Instrument` (``price_to_ticks`` / ``qty_to_lots`` convert at
the edge). Order types, time-in-force, STP modes and statuses are the book's enumerations,
one to one.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Context, Decimal
from typing import Any, NamedTuple, Protocol, runtime_checkable

from ..book import Level, OrderStatus, OrderType, Side, STPMode, TimeInForce
from ..book._types import CancelReason

__all__ = [
    "OrderRequest",
    "OrderAck",
    "FillReport",
    "OrderStatusReport",
    "DepthSnapshot",
    "CancelRequest",
    "ModifyRequest",
    "ExchangeConnector",
    "BatchConnector",
    "Unsubscribe",
]

_EXACT = Context(prec=120)

#: Calling it stops the subscription it came from.
Unsubscribe = Callable[[], None]


class OrderRequest(NamedTuple):
    """A new order (ticks and lots). ``client_id`` is echoed back in the ack."""

    symbol: str
    side: Side
    qty: int
    price: int | None = None
    order_type: OrderType = OrderType.LIMIT
    tif: TimeInForce = TimeInForce.GTC
    expire_ns: int | None = None
    post_only: bool = False
    stp: STPMode | None = None
    client_id: str | None = None


class FillReport(NamedTuple):
    """One fill of one of *our* orders (a self-trade produces one report per side).

    ``fee_raw`` is the book's exact integer fee for this side (see ``docs/book.md``),
    ``fee`` the ``Decimal`` amount in the quote currency (negative = rebate received).
    The key that identifies a fill exactly once is ``(symbol, trade_id, order_id)``.
    """

    symbol: str
    order_id: int
    trade_id: int
    side: Side
    price: int
    qty: int
    liquidity: str  # "maker" or "taker"
    fee_raw: int
    fee_unit: Decimal
    ts: int

    @property
    def fee(self) -> Decimal:
        """Exact fee of this fill in the quote currency (negative = rebate received)."""
        return _EXACT.multiply(Decimal(self.fee_raw), self.fee_unit)

    @property
    def key(self) -> tuple[str, int, int]:
        """``(symbol, trade_id, order_id)``: unique per fill of one order."""
        return (self.symbol, self.trade_id, self.order_id)


class OrderAck(NamedTuple):
    """Answer to submit / cancel / modify.

    ``accepted`` is False when the venue refused the request; ``reject_rule`` then names the
    rule (a :class:`~jaxmm.book.RejectRule` value, ``"unknown_order"``, ``"symbol"`` or
    ``"request"``) and ``message`` explains. ``status`` is the order's book status after the
    request (None when unknown). ``filled`` / ``cancelled`` are lots filled / cancelled *by
    this request*, ``remaining`` the lots resting afterwards; ``fills`` our fills from it.
    """

    symbol: str
    order_id: int | None
    accepted: bool
    status: OrderStatus | None
    filled: int
    remaining: int
    cancelled: int
    fills: tuple[FillReport, ...]
    reject_rule: str | None
    message: str | None
    ts: int
    client_id: str | None = None
    cum_filled: int | None = None  # lots filled over the order's life, when known


class OrderStatusReport(NamedTuple):
    """State of one of our orders as the venue knows it (also pushed on every change)."""

    symbol: str
    order_id: int
    status: OrderStatus
    side: Side
    price: int | None
    remaining: int
    filled: int
    reason: CancelReason | None
    ts: int


class DepthSnapshot(NamedTuple):
    """L2 snapshot: levels best first; ``seq`` is the book's event sequence at the time."""

    symbol: str
    seq: int
    ts: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


class CancelRequest(NamedTuple):
    """A cancel inside a batch (``BatchConnector.execute``)."""

    symbol: str
    order_id: int


class ModifyRequest(NamedTuple):
    """A modify inside a batch: new open quantity (lots) and/or price (ticks)."""

    symbol: str
    order_id: int
    qty: int | None = None
    price: int | None = None


@runtime_checkable
class ExchangeConnector(Protocol):
    """What jaxmm needs from a venue. Every method is a coroutine.

    Request methods never raise for venue-side refusals: they return an :class:`OrderAck`
    with ``accepted=False``. Subscriptions call a plain function for every message, in order
    (pass ``queue.put_nowait`` to feed an ``asyncio.Queue``) and return an
    :data:`Unsubscribe` function.
    """

    async def submit(self, request: OrderRequest) -> OrderAck:
        """Send a new order."""
        ...

    async def cancel(self, symbol: str, order_id: int) -> OrderAck:
        """Cancel one order."""
        ...

    async def modify(
        self, symbol: str, order_id: int, *, qty: int | None = None, price: int | None = None
    ) -> OrderAck:
        """Change open quantity and/or price (book priority rules apply)."""
        ...

    async def order_status(self, symbol: str, order_id: int) -> OrderStatusReport | None:
        """Current state of one of our orders (None if the venue does not know it)."""
        ...

    async def open_orders(self, symbol: str | None = None) -> list[OrderStatusReport]:
        """Our resting orders (on one symbol or everywhere)."""
        ...

    async def cancel_all(
        self, symbol: str | None = None, side: Side | None = None
    ) -> list[tuple[str, int]]:
        """Cancel our resting orders; returns ``(symbol, order_id)`` of those cancelled."""
        ...

    async def book_snapshot(self, symbol: str, depth: int | None = 10) -> DepthSnapshot:
        """L2 snapshot of a book."""
        ...

    async def subscribe_fills(self, handler: Callable[[FillReport], Any]) -> Unsubscribe:
        """Receive every fill of our orders."""
        ...

    async def subscribe_orders(self, handler: Callable[[OrderStatusReport], Any]) -> Unsubscribe:
        """Receive the final state of each of our orders: filled, cancelled (by us, by a mass
        cancel or by self-trade prevention) or expired. Partial fills arrive as fills, the
        results of our own requests as acks."""
        ...

    async def subscribe_book(self, symbol: str, handler: Callable[[Any], Any]) -> Unsubscribe:
        """Receive the book's public events (``Fill`` trades and ``LevelUpdate``)."""
        ...


@runtime_checkable
class BatchConnector(Protocol):
    """Optional capability: many requests in one round trip (mass quote), answered in order."""

    async def execute(
        self, requests: list[OrderRequest | CancelRequest | ModifyRequest]
    ) -> list[OrderAck]:
        """Process ``requests`` in order at the venue; one ack per request."""
        ...
