"""Client-side order manager: client ids <-> venue ids, a validated state machine, fills."""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from ..book import OrderStatus
from ._protocol import (
    CancelRequest,
    FillReport,
    ModifyRequest,
    OrderAck,
    OrderRequest,
    OrderStatusReport,
    Unsubscribe,
)

__all__ = [
    "OrderState",
    "ManagedOrder",
    "OrderManager",
    "OrderManagerError",
    "IllegalTransitionError",
    "DuplicateClientIdError",
    "UnknownClientIdError",
    "OverfillError",
    "TRANSITIONS",
]


class OrderState(StrEnum):
    """Client-side order state (what we know, including requests in flight)."""

    PENDING_NEW = "pending_new"  #: sent, no ack yet
    OPEN = "open"  #: acked, resting, nothing filled
    PARTIALLY_FILLED = "partially_filled"
    PENDING_CANCEL = "pending_cancel"  #: cancel sent, no answer yet
    PENDING_MODIFY = "pending_modify"  #: modify sent, no answer yet
    TIMED_OUT = "timed_out"  #: no ack within the timeout; the venue's answer may still come
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"


S = OrderState
_new = tuple.__new__
#: Legal transitions (anything else raises :class:`IllegalTransitionError`).
TRANSITIONS: dict[OrderState, frozenset[OrderState]] = {
    S.PENDING_NEW: frozenset(
        {S.OPEN, S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.REJECTED, S.EXPIRED, S.TIMED_OUT}
    ),
    S.OPEN: frozenset(
        {S.PARTIALLY_FILLED, S.FILLED, S.PENDING_CANCEL, S.PENDING_MODIFY, S.CANCELLED, S.EXPIRED}
    ),
    S.PARTIALLY_FILLED: frozenset(
        {S.PARTIALLY_FILLED, S.FILLED, S.PENDING_CANCEL, S.PENDING_MODIFY, S.CANCELLED, S.EXPIRED}
    ),
    S.PENDING_CANCEL: frozenset({S.OPEN, S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.EXPIRED}),
    S.PENDING_MODIFY: frozenset({S.OPEN, S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.EXPIRED}),
    S.TIMED_OUT: frozenset(
        {S.OPEN, S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.REJECTED, S.EXPIRED}
    ),
    S.FILLED: frozenset(),
    S.CANCELLED: frozenset(),
    S.REJECTED: frozenset(),
    S.EXPIRED: frozenset(),
}
_TERMINAL = frozenset({S.FILLED, S.CANCELLED, S.REJECTED, S.EXPIRED})
_WORKING = frozenset({S.OPEN, S.PARTIALLY_FILLED})
_PENDING = frozenset({S.PENDING_NEW, S.PENDING_CANCEL, S.PENDING_MODIFY})
_FROM_BOOK = {
    OrderStatus.NEW: S.OPEN,
    OrderStatus.PARTIALLY_FILLED: S.PARTIALLY_FILLED,
    OrderStatus.FILLED: S.FILLED,
    OrderStatus.CANCELLED: S.CANCELLED,
    OrderStatus.EXPIRED: S.EXPIRED,
    OrderStatus.REJECTED: S.REJECTED,
}
# enum members as module constants: attribute access on an Enum class costs ~0.3 us
_PENDING_NEW = S.PENDING_NEW
_OPEN = S.OPEN
_PARTIALLY_FILLED = S.PARTIALLY_FILLED
_PENDING_CANCEL = S.PENDING_CANCEL
_PENDING_MODIFY = S.PENDING_MODIFY
_TIMED_OUT = S.TIMED_OUT
_FILLED = S.FILLED
_CANCELLED = S.CANCELLED
_REJECTED = S.REJECTED
_EXPIRED = S.EXPIRED
_OS_NEW = OrderStatus.NEW
_OS_PARTIALLY_FILLED = OrderStatus.PARTIALLY_FILLED
_OS_FILLED = OrderStatus.FILLED
_OS_CANCELLED = OrderStatus.CANCELLED
_OS_EXPIRED = OrderStatus.EXPIRED
_OS_REJECTED = OrderStatus.REJECTED


class OrderManagerError(ValueError):
    """Base class of the order manager's errors; the manager is unchanged when raised."""


class IllegalTransitionError(OrderManagerError):
    """A message would move an order along a transition the state machine forbids."""


class DuplicateClientIdError(OrderManagerError):
    """The client id is already in use."""


class UnknownClientIdError(OrderManagerError):
    """No order with this client id."""


class OverfillError(OrderManagerError):
    """A fill would take the filled quantity above the order's quantity."""


class ManagedOrder:
    """One order as the client tracks it (prices in ticks, sizes in lots, times in ns).

    ``qty`` is the order's total size (filled + open, updated by acknowledged modifies),
    ``filled`` the lots filled, ``notional`` the exact sum of ``price * lots`` over fills and
    ``fees_raw`` the exact sum of the book's integer fees; ``avg_price`` is the fill VWAP.
    """

    __slots__ = (
        "client_id",
        "symbol",
        "side",
        "price",
        "qty",
        "filled",
        "notional",
        "fees_raw",
        "state",
        "exchange_id",
        "request",
        "created_ns",
        "updated_ns",
        "pending_since_ns",
        "prev_state",
        "pending",
        "reason",
        "trade_keys",
        "history",
    )

    def __init__(self, client_id: str, request: OrderRequest, now: int) -> None:
        self.client_id = client_id
        self.symbol = request.symbol
        self.side = request.side
        self.price = request.price
        self.qty = request.qty
        self.filled = 0
        self.notional = 0
        self.fees_raw = 0
        self.state = _PENDING_NEW
        self.exchange_id: int | None = None
        self.request = request
        self.created_ns = now
        self.updated_ns = now
        self.pending_since_ns: int | None = now
        self.prev_state: OrderState | None = None
        self.pending: tuple[int | None, int | None] | None = None
        self.reason: str | None = None
        self.trade_keys: set[tuple[str, int, int]] = set()
        self.history: list[OrderState] = [_PENDING_NEW]

    @property
    def open_qty(self) -> int:
        """Lots still working (0 once the order is finished)."""
        return 0 if self.state in _TERMINAL else self.qty - self.filled

    @property
    def avg_price(self) -> float | None:
        """VWAP of the fills in ticks (None before the first fill)."""
        return self.notional / self.filled if self.filled else None

    @property
    def is_terminal(self) -> bool:
        """FILLED, CANCELLED, REJECTED or EXPIRED."""
        return self.state in _TERMINAL

    @property
    def is_working(self) -> bool:
        """Acknowledged and resting, with no request in flight (OPEN / PARTIALLY_FILLED)."""
        return self.state in _WORKING

    def __repr__(self) -> str:
        return (
            f"ManagedOrder({self.client_id!r}, {self.symbol}, {self.side.name}, "
            f"{self.qty}@{self.price}, filled={self.filled}, state={self.state.value}, "
            f"exchange_id={self.exchange_id})"
        )


class OrderManager:
    """Tracks our orders through their life and applies venue messages exactly once.

    - client ids (non-empty strings, unique while retained) map to venue ids
      ``(symbol, order_id)`` and back;
    - every state change is checked against :data:`TRANSITIONS`;
    - a fill is identified by ``(symbol, trade_id, order_id)`` and applied once (duplicates
      are ignored); a fill that would overfill raises :class:`OverfillError` and changes
      nothing; messages that arrive before the ack that maps their venue id are held and
      replayed after it;
    - requests in flight longer than ``timeout_ns`` are reported by :meth:`check_timeouts`;
    - finished orders are forgotten ``retention_ns`` after their last update by
      :meth:`cleanup`.

    Args:
        clock: integer-ns clock for timeouts and retention (default ``time.monotonic_ns``).
        timeout_ns: how long a request may stay unanswered.
        retention_ns: how long finished orders stay queryable.

    Example:
        >>> from jaxmm.book import Side
        >>> om = OrderManager(clock=lambda: 0)
        >>> mo = om.create(OrderRequest("X", Side.BUY, 10, 100), "c1")
        >>> om.on_ack("c1", OrderAck("X", 7, True, OrderStatus.NEW, 0, 10, 0, (), None, None, 0))
        >>> om.on_fill(FillReport("X", 7, 1, Side.BUY, 100, 4, "maker", 0, 0, 0))
        True
        >>> mo.state.value, mo.filled, mo.open_qty, om.client_id("X", 7)
        ('partially_filled', 4, 6, 'c1')
    """

    def __init__(
        self,
        *,
        clock: Callable[[], int] = time.monotonic_ns,
        timeout_ns: int = 5_000_000_000,
        retention_ns: int = 60_000_000_000,
    ) -> None:
        for name, v in (("timeout_ns", timeout_ns), ("retention_ns", retention_ns)):
            if type(v) is not int or v < 0:
                raise ValueError(f"{name}: must be an int >= 0, got {v!r}")
        self._clock = clock
        self.timeout_ns = timeout_ns
        self.retention_ns = retention_ns
        self._orders: dict[str, ManagedOrder] = {}
        self._by_exch: dict[tuple[str, int], str] = {}
        self._early: dict[tuple[str, int], list[Any]] = {}
        self._auto = 0

    # ------------------------------------------------------------------ lookup
    def __len__(self) -> int:
        return len(self._orders)

    def __contains__(self, client_id: object) -> bool:
        return client_id in self._orders

    def get(self, client_id: str) -> ManagedOrder:
        """The order with this client id (raises :class:`UnknownClientIdError`)."""
        mo = self._orders.get(client_id)
        if mo is None:
            raise UnknownClientIdError(f"client_id {client_id!r} is unknown")
        return mo

    def client_id(self, symbol: str, order_id: int) -> str | None:
        """Client id of a venue order, or None."""
        return self._by_exch.get((symbol, order_id))

    def exchange_id(self, client_id: str) -> int | None:
        """Venue id of an order (None until acknowledged)."""
        return self.get(client_id).exchange_id

    def orders(
        self, *, symbol: str | None = None, working_only: bool = False
    ) -> list[ManagedOrder]:
        """Tracked orders (optionally of one symbol, or only non-terminal ones)."""
        return [
            mo
            for mo in self._orders.values()
            if (symbol is None or mo.symbol == symbol) and not (working_only and mo.is_terminal)
        ]

    # ------------------------------------------------------------------ state machine
    def _move(self, mo: ManagedOrder, new: OrderState, now: int) -> None:
        if new not in TRANSITIONS[mo.state]:
            raise IllegalTransitionError(
                f"order {mo.client_id!r}: illegal transition {mo.state.value} -> {new.value}"
            )
        if new is not mo.state:
            mo.history.append(new)
            mo.state = new
        mo.updated_ns = now
        if new not in _PENDING:
            mo.pending_since_ns = None

    def _live_state(self, mo: ManagedOrder) -> OrderState:
        if mo.filled >= mo.qty:
            return _FILLED
        return _PARTIALLY_FILLED if mo.filled else _OPEN

    # ------------------------------------------------------------------ requests
    def create(
        self, request: OrderRequest, client_id: str | None = None, *, now: int | None = None
    ) -> ManagedOrder:
        """Start tracking a new order (state PENDING_NEW); returns it.

        ``client_id`` defaults to ``request.client_id`` or a generated ``"o<n>"``; the stored
        request carries it. Raises :class:`DuplicateClientIdError` for an id in use.
        """
        cid = client_id if client_id is not None else request.client_id
        if cid is None:
            self._auto += 1
            cid = f"o{self._auto}"
            while cid in self._orders:
                self._auto += 1
                cid = f"o{self._auto}"
        if not isinstance(cid, str) or not cid:
            raise OrderManagerError(f"client_id: must be a non-empty string, got {cid!r}")
        if cid in self._orders:
            raise DuplicateClientIdError(f"client_id {cid!r} is already in use")
        if type(request.qty) is not int or request.qty < 1:
            raise OrderManagerError(f"qty: must be an int >= 1 lot, got {request.qty!r}")
        if request.client_id != cid:
            request = request._replace(client_id=cid)
        mo = ManagedOrder(cid, request, self._clock() if now is None else now)
        self._orders[cid] = mo
        return mo

    def request_cancel(self, client_id: str, *, now: int | None = None) -> CancelRequest:
        """Mark a working order PENDING_CANCEL; returns the request to send."""
        mo = self.get(client_id)
        if mo.exchange_id is None:
            raise IllegalTransitionError(f"order {client_id!r} has no venue id yet")
        if now is None:
            now = self._clock()
        prev = mo.state
        self._move(mo, _PENDING_CANCEL, now)
        mo.prev_state = prev
        mo.pending_since_ns = now
        return _new(CancelRequest, (mo.symbol, mo.exchange_id))

    def request_modify(
        self,
        client_id: str,
        *,
        qty: int | None = None,
        price: int | None = None,
        now: int | None = None,
    ) -> ModifyRequest:
        """Mark a working order PENDING_MODIFY; ``qty`` is the new *open* quantity (lots).

        ``now`` (ns) defaults to the manager's clock (pass it to stamp a batch once)."""
        mo = self._orders.get(client_id) or self.get(client_id)
        if mo.exchange_id is None:
            raise IllegalTransitionError(f"order {client_id!r} has no venue id yet")
        if qty is None and price is None:
            raise OrderManagerError("modify: give qty and/or price")
        if qty is not None and (type(qty) is not int or qty < 1):
            raise OrderManagerError(f"qty: must be an int >= 1 lot, got {qty!r}")
        if now is None:
            now = self._clock()
        prev = mo.state
        if prev is _OPEN or prev is _PARTIALLY_FILLED:  # fast path of _move
            mo.state = _PENDING_MODIFY
            mo.history.append(_PENDING_MODIFY)
            mo.updated_ns = now
        else:
            self._move(mo, _PENDING_MODIFY, now)
        mo.prev_state = prev
        mo.pending_since_ns = now
        mo.pending = (qty, price)
        return _new(ModifyRequest, (mo.symbol, mo.exchange_id, qty, price))

    # ------------------------------------------------------------------ venue messages
    def on_ack(self, client_id: str, ack: OrderAck, *, now: int | None = None) -> None:
        """Apply the answer to a new order (PENDING_NEW or TIMED_OUT)."""
        mo = self.get(client_id)
        if mo.state is not _PENDING_NEW and mo.state is not _TIMED_OUT:
            raise IllegalTransitionError(
                f"order {client_id!r}: new-order ack in state {mo.state.value}"
            )
        if now is None:
            now = self._clock()
        if not ack.accepted:
            mo.reason = f"{ack.reject_rule}: {ack.message}"
            self._move(mo, _REJECTED, now)
            return
        if ack.order_id is None:
            raise OrderManagerError("ack: an accepted ack needs an order_id")
        key = (ack.symbol, ack.order_id)
        if key in self._by_exch and self._by_exch[key] != client_id:
            raise OrderManagerError(f"ack: venue id {key} already belongs to another order")
        for f in ack.fills:
            self._check_fill(mo, f)
        mo.exchange_id = ack.order_id
        self._by_exch[key] = client_id
        for f in ack.fills:
            self._apply_fill(mo, f, now)
        st = _FROM_BOOK[ack.status] if ack.status is not None else _OPEN
        if st is _OPEN or st is _PARTIALLY_FILLED:
            st = self._live_state(mo)
        self._move(mo, st, now)
        for msg in self._early.pop(key, ()):
            if isinstance(msg, FillReport):
                self.on_fill(msg)
            else:
                self.on_order_update(msg)

    def on_cancel_ack(self, client_id: str, ack: OrderAck, *, now: int | None = None) -> None:
        """Apply the answer to a cancel (a finished order ignores it)."""
        mo = self.get(client_id)
        if mo.is_terminal:
            return
        if mo.state is not _PENDING_CANCEL:
            raise IllegalTransitionError(
                f"order {client_id!r}: cancel ack in state {mo.state.value}"
            )
        if now is None:
            now = self._clock()
        if ack.accepted:
            self._move(mo, _CANCELLED, now)
        else:
            mo.reason = f"cancel refused: {ack.reject_rule}: {ack.message}"
            self._move(mo, mo.prev_state or self._live_state(mo), now)

    def on_modify_ack(self, client_id: str, ack: OrderAck, *, now: int | None = None) -> None:
        """Apply the answer to a modify (a finished order ignores it)."""
        mo = self._orders.get(client_id) or self.get(client_id)
        st0 = mo.state
        if st0 in _TERMINAL:
            return
        if st0 is not _PENDING_MODIFY:
            raise IllegalTransitionError(f"order {client_id!r}: modify ack in state {st0.value}")
        if now is None:
            now = self._clock()
        pending = mo.pending
        mo.pending = None
        if not ack.accepted:
            mo.reason = f"modify refused: {ack.reject_rule}: {ack.message}"
            self._move(mo, mo.prev_state or self._live_state(mo), now)
            return
        if pending is not None and pending[1] is not None:
            mo.price = pending[1]
        fills = ack.fills
        if fills:
            for f in fills:
                self._check_fill(mo, f, allow_qty_change=True)
        cum = ack.cum_filled
        if cum is None:
            cum = mo.filled + ack.filled
        q = cum + ack.remaining
        mo.qty = q if q > mo.filled else mo.filled
        if fills:
            for f in fills:
                self._apply_fill(mo, f, now)
        st = ack.status
        if st is None or st is _OS_NEW or st is _OS_PARTIALLY_FILLED:
            new = self._live_state(mo)
        else:
            new = _FROM_BOOK[st]
        self._move(mo, new, now)

    def _check_fill(self, mo: ManagedOrder, f: FillReport, allow_qty_change: bool = False) -> None:
        if f.key in mo.trade_keys:
            return
        if f.qty < 1:
            raise OverfillError(f"fill {f.key}: qty must be >= 1, got {f.qty}")
        bound = mo.qty
        if mo.state is _PENDING_MODIFY and mo.pending and mo.pending[0] is not None:
            bound = max(bound, mo.filled + mo.pending[0])  # a size-up may already be live
        if not allow_qty_change and mo.filled + f.qty > bound:
            raise OverfillError(
                f"order {mo.client_id!r}: fill of {f.qty} on {mo.filled}/{mo.qty} would overfill"
            )

    def _apply_fill(self, mo: ManagedOrder, f: FillReport, now: int) -> bool:
        if f.key in mo.trade_keys:
            return False
        mo.trade_keys.add(f.key)
        mo.filled += f.qty
        mo.notional += f.price * f.qty
        mo.fees_raw += f.fee_raw
        mo.updated_ns = now
        return True

    def on_fill(self, fill: FillReport) -> bool | None:
        """Apply a fill once. Returns True if applied, False for a duplicate, None when the
        venue id is not mapped yet (the fill is held until its ack).

        Raises :class:`OverfillError` (nothing applied) if it would overfill.
        """
        key = (fill.symbol, fill.order_id)
        cid = self._by_exch.get(key)
        if cid is None:
            held = self._early.setdefault(key, [])
            if all(not (isinstance(m, FillReport) and m.key == fill.key) for m in held):
                held.append(fill)
            return None
        mo = self._orders[cid]
        if fill.key in mo.trade_keys:
            return False
        self._check_fill(mo, fill)
        now = self._clock()
        self._apply_fill(mo, fill, now)
        st = mo.state
        if mo.filled == mo.qty:
            if st is not _FILLED and st not in _TERMINAL:
                self._move(mo, _FILLED, now)
        elif st is _OPEN or st is _PARTIALLY_FILLED:
            self._move(mo, _PARTIALLY_FILLED, now)
        return True

    def on_order_update(self, report: OrderStatusReport) -> None:
        """Apply an unsolicited state change (cancel by STP or mass cancel, expiry).

        Fills drive FILLED / PARTIALLY_FILLED; this applies CANCELLED and EXPIRED, and holds
        reports for venue ids not mapped yet.
        """
        key = (report.symbol, report.order_id)
        cid = self._by_exch.get(key)
        if cid is None:
            self._early.setdefault(key, []).append(report)
            return
        mo = self._orders[cid]
        if mo.is_terminal:
            return
        if report.status is _OS_CANCELLED or report.status is _OS_EXPIRED:
            if report.reason is not None:
                mo.reason = report.reason.name.lower()
            self._move(mo, _FROM_BOOK[report.status], self._clock())

    # ------------------------------------------------------------------ housekeeping
    def check_timeouts(self, now: int | None = None) -> list[ManagedOrder]:
        """Resolve requests unanswered for ``timeout_ns``: PENDING_NEW -> TIMED_OUT (a late
        ack still applies); PENDING_CANCEL / PENDING_MODIFY -> back to the working state with
        ``reason`` set. Returns the orders affected."""
        now = self._clock() if now is None else now
        out = []
        for mo in self._orders.values():
            t = mo.pending_since_ns
            if t is None or now - t < self.timeout_ns or mo.state not in _PENDING:
                continue
            if mo.state is _PENDING_NEW:
                self._move(mo, _TIMED_OUT, now)
                mo.reason = "timeout: no ack"
            else:
                mo.reason = f"timeout: no answer to {mo.state.value}"
                mo.pending = None
                self._move(mo, mo.prev_state or self._live_state(mo), now)
            mo.pending_since_ns = None
            out.append(mo)
        return out

    def cleanup(self, now: int | None = None) -> int:
        """Forget finished orders last updated ``retention_ns`` ago or more; returns how many."""
        now = self._clock() if now is None else now
        gone = [
            cid
            for cid, mo in self._orders.items()
            if mo.is_terminal and now - mo.updated_ns >= self.retention_ns
        ]
        for cid in gone:
            mo = self._orders.pop(cid)
            if mo.exchange_id is not None:
                self._by_exch.pop((mo.symbol, mo.exchange_id), None)
        return len(gone)

    # ------------------------------------------------------------------ with a connector
    async def attach(self, connector: Any) -> Unsubscribe:
        """Subscribe to the connector's fills and order updates; returns an unsubscribe."""
        u1 = await connector.subscribe_fills(self.on_fill)
        u2 = await connector.subscribe_orders(self.on_order_update)

        def close() -> None:
            u1()
            u2()

        return close

    async def submit(
        self, connector: Any, request: OrderRequest, client_id: str | None = None
    ) -> ManagedOrder:
        """``create`` + ``connector.submit`` + ``on_ack``."""
        mo = self.create(request, client_id)
        ack = await connector.submit(mo.request)
        if mo.client_id in self._orders:
            self.on_ack(mo.client_id, ack)
        return mo

    async def cancel(self, connector: Any, client_id: str) -> ManagedOrder:
        """``request_cancel`` + ``connector.cancel`` + ``on_cancel_ack``."""
        req = self.request_cancel(client_id)
        ack = await connector.cancel(req.symbol, req.order_id)
        self.on_cancel_ack(client_id, ack)
        return self.get(client_id)

    async def modify(
        self, connector: Any, client_id: str, *, qty: int | None = None, price: int | None = None
    ) -> ManagedOrder:
        """``request_modify`` + ``connector.modify`` + ``on_modify_ack``."""
        req = self.request_modify(client_id, qty=qty, price=price)
        ack = await connector.modify(req.symbol, req.order_id, qty=req.qty, price=req.price)
        self.on_modify_ack(client_id, ack)
        return self.get(client_id)
