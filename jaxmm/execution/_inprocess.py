"""In-process venue over :mod:`jaxmm.book`, with optional simulated latency.

``InProcessExchange`` wraps books (one ``OrderBook``, a mapping, or an ``OptionChainBook``)
and routes their events to participants; ``InProcessConnector`` is one participant's
:class:`ExchangeConnector` session. Orders really rest in the books and really fill when
other participants (or a direct ``OrderBook.submit``) hit them.

Latency model (``docs/book.md``): a request waits ``entry_latency_s`` before it reaches the
book (requests of one connector reach the book in the order they were sent), the answer
waits ``response_latency_s`` before the awaiting coroutine resumes, and pushed messages
(fills, order updates, book events) are delivered ``response_latency_s`` after the venue
produced them, in venue order.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any

from ..book import (
    BookError,
    Fill,
    LevelUpdate,
    OptionChainBook,
    OrderBook,
    OrderRejected,
    OrderStatus,
    OrderUpdate,
    Side,
)
from ..book._book import _FILLED, _OWNER
from ._latency import LatencyTracker
from ._protocol import (
    CancelRequest,
    DepthSnapshot,
    FillReport,
    ModifyRequest,
    OrderAck,
    OrderRequest,
    OrderStatusReport,
    Unsubscribe,
)

__all__ = ["InProcessExchange", "InProcessConnector"]

_new = tuple.__new__
_FIRST_TERMINAL = OrderStatus.FILLED  # FILLED, CANCELLED, EXPIRED, REJECTED are >= it
_SIDES = (Side.BUY, Side.SELL)
_CANCELLED = OrderStatus.CANCELLED
_OS_NEW = OrderStatus.NEW
_OS_PARTIAL = OrderStatus.PARTIALLY_FILLED


def _status_report(symbol: str, ev: OrderUpdate) -> OrderStatusReport:
    return _new(
        OrderStatusReport,
        (
            symbol,
            ev.order_id,
            ev.status,
            ev.side,
            ev.price,
            ev.remaining,
            ev.filled,
            ev.reason,
            ev.ts,
        ),
    )


def _taker_report(symbol: str, f: Fill) -> FillReport:
    """The taker's side of one book fill (built without validation: the book's values)."""
    return _new(
        FillReport,
        (
            symbol,
            f.taker_id,
            f.trade_id,
            f.aggressor,
            f.price,
            f.qty,
            "taker",
            f.taker_fee_raw,
            f.fee_unit,
            f.ts,
        ),
    )


class InProcessExchange:
    """A venue of jaxmm books shared by several :class:`InProcessConnector` sessions.

    Args:
        venue: an ``OrderBook``, an ``OptionChainBook`` (books listed later are picked up), a
            mapping ``symbol -> OrderBook`` or an iterable of books.
        status_memory: how many finished orders' last status are remembered for
            ``order_status`` (oldest forgotten first).

    Example:
        >>> from jaxmm.book import Instrument
        >>> x = InProcessExchange(OrderBook(Instrument("X", tick_size=1)))
        >>> x.symbols()
        ['X']
    """

    def __init__(self, venue: Any, *, status_memory: int = 100_000) -> None:
        self._chain: OptionChainBook | None = None
        self._books: dict[str, OrderBook] = {}
        self._sessions: dict[Any, InProcessConnector] = {}
        self._public: dict[str, list[Callable[[str, Any], None]]] = {}
        self._public_subs: dict[str, Any] = {}
        self._done: OrderedDict[tuple[str, int], tuple[Any, OrderStatusReport]] = OrderedDict()
        self._memory = status_memory
        #: live ``symbol -> OrderBook`` dict (the chain's own, so listings stay in sync)
        self._map: dict[str, OrderBook] = self._books
        if isinstance(venue, OptionChainBook):
            self._chain = venue
            self._map = venue._books
            venue.subscribe(self._on_events, batch=True, levels=False, order_updates="final")
            return
        if isinstance(venue, OrderBook):
            books: Iterable[OrderBook] = [venue]
        elif isinstance(venue, Mapping):
            books = list(venue.values())
        else:
            books = list(venue)
        for b in books:
            if not isinstance(b, OrderBook):
                raise ValueError(f"venue: expected OrderBooks, got {type(b).__name__}")
            if b.symbol in self._books:
                raise ValueError(f"venue: duplicate symbol {b.symbol!r}")
            self._books[b.symbol] = b
            b.subscribe(
                partial(self._on_events, b.symbol),
                batch=True,
                levels=False,
                order_updates="final",
            )

    def book(self, symbol: str) -> OrderBook | None:
        """The book of ``symbol`` or None."""
        return self._map.get(symbol)

    def symbols(self) -> list[str]:
        """Listed symbols."""
        return list(self._map)

    def _all_books(self) -> list[OrderBook]:
        return list(self._map.values())

    def _register(self, owner: Any, conn: InProcessConnector) -> None:
        if owner is None:
            raise ValueError("owner: a connector needs a non-None owner id")
        if owner in self._sessions:
            raise ValueError(f"owner: {owner!r} already has a connector on this exchange")
        self._sessions[owner] = conn

    def _remember(self, symbol: str, ev: OrderUpdate) -> None:
        d = self._done
        d[(symbol, ev.order_id)] = (ev.owner, _status_report(symbol, ev))
        if len(d) > self._memory:
            d.popitem(last=False)

    def _on_events(self, symbol: str, events: list[Any]) -> None:
        """Route private events: fills and order updates to the owners' sessions."""
        sessions = self._sessions
        for ev in events:
            t = type(ev)
            if t is OrderUpdate:
                if ev.status >= _FIRST_TERMINAL:
                    self._remember(symbol, ev)
                if ev.owner is not None:
                    s = sessions.get(ev.owner)
                    if s is not None and s._order_handlers:
                        s._order_event(symbol, ev)
            elif t is Fill:
                s = sessions.get(ev.maker_owner)
                if s is not None and s._fill_handlers:
                    s._fill_event(symbol, ev, True)
                if ev.taker_owner is not None:
                    s = sessions.get(ev.taker_owner)
                    if s is not None and s._fill_handlers:
                        s._fill_event(symbol, ev, False)

    def _on_public(self, symbol: str, events: list[Any]) -> None:
        """Public market data of one book: trades and L2 level changes."""
        handlers = self._public.get(symbol)
        if not handlers:
            return
        for ev in events:
            if type(ev) is not OrderUpdate:
                for h in tuple(handlers):
                    h(symbol, ev)

    def _add_public(self, symbol: str, handler: Callable[[str, Any], None]) -> Callable[[], None]:
        book = self._map[symbol]
        lst = self._public.setdefault(symbol, [])
        lst.append(handler)
        sub = self._public_subs.get(symbol)
        if sub is None or sub._book is not book:
            self._public_subs[symbol] = book.subscribe(
                partial(self._on_public, symbol), batch=True, levels=True
            )

        def close() -> None:
            if handler in lst:
                lst.remove(handler)
            if not lst and symbol in self._public_subs:
                self._public_subs.pop(symbol).close()

        return close


class _Outbox:
    """Delivers pushed messages ``delay`` seconds after they were produced, in order."""

    __slots__ = ("delay", "_q", "_armed")

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self._q: deque[tuple[float, Callable[[Any], Any], Any]] = deque()
        self._armed = False

    def push(self, handler: Callable[[Any], Any], msg: Any) -> None:
        if self.delay <= 0:
            handler(msg)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # driven from synchronous code: deliver now
            handler(msg)
            return
        self._q.append((loop.time() + self.delay, handler, msg))
        if not self._armed:
            self._armed = True
            loop.call_at(self._q[0][0], self._drain, loop)

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        q = self._q
        now = loop.time()
        while q and q[0][0] <= now:
            _, h, m = q.popleft()
            h(m)
        if q:
            loop.call_at(q[0][0], self._drain, loop)
        else:
            self._armed = False


class InProcessConnector:
    """One participant's :class:`ExchangeConnector` session on an in-process venue.

    Args:
        venue: an :class:`InProcessExchange` (to share books with other connectors) or
            anything ``InProcessExchange`` accepts (a private exchange is made).
        owner: this participant's id; it is the book ``owner`` of every order sent here, so
            self-trade prevention and fill routing work per connector.
        entry_latency_s: simulated order-entry delay (seconds) before a request reaches the
            book; requests from this connector keep their order.
        response_latency_s: simulated delay of answers and pushed messages (seconds).
        tracker: optional :class:`LatencyTracker`; round trips are recorded under
            ``"submit"``, ``"cancel"``, ``"modify"`` and ``"batch"`` (ns).

    Example:
        >>> import asyncio
        >>> from jaxmm.book import Instrument, OrderBook, Side
        >>> x = InProcessExchange(OrderBook(Instrument("X", tick_size=1)))
        >>> mm, taker = InProcessConnector(x, owner="mm"), InProcessConnector(x, owner="t")
        >>> async def main():
        ...     fills = []
        ...     await mm.subscribe_fills(fills.append)
        ...     ack = await mm.submit(OrderRequest("X", Side.SELL, 5, 100))
        ...     await taker.submit(OrderRequest("X", Side.BUY, 2, 100))
        ...     return ack.status.name, [(f.qty, f.liquidity) for f in fills]
        >>> asyncio.run(main())
        ('NEW', [(2, 'maker')])
    """

    def __init__(
        self,
        venue: Any,
        *,
        owner: Any = "mm",
        entry_latency_s: float = 0.0,
        response_latency_s: float = 0.0,
        tracker: LatencyTracker | None = None,
    ) -> None:
        for name, v in (
            ("entry_latency_s", entry_latency_s),
            ("response_latency_s", response_latency_s),
        ):
            if not isinstance(v, int | float) or isinstance(v, bool) or not v >= 0:
                raise ValueError(f"{name}: must be a number >= 0 (seconds), got {v!r}")
        self.exchange = venue if isinstance(venue, InProcessExchange) else InProcessExchange(venue)
        self.owner = owner
        self.entry_latency_s = float(entry_latency_s)
        self.response_latency_s = float(response_latency_s)
        self.tracker = tracker
        self._outbox = _Outbox(self.response_latency_s)
        self._fill_handlers: list[Callable[[FillReport], Any]] = []
        self._order_handlers: list[Callable[[OrderStatusReport], Any]] = []
        self._entry_tail: asyncio.Future[None] | None = None
        self._map = self.exchange._map  # live symbol -> book dict
        self.exchange._register(owner, self)

    # ------------------------------------------------------------------ pushed messages
    def _fill_event(self, symbol: str, f: Fill, maker: bool) -> None:
        if not self._fill_handlers:
            return
        if maker:
            rep = _new(
                FillReport,
                (
                    symbol,
                    f.maker_id,
                    f.trade_id,
                    _SIDES[f.aggressor ^ 1],
                    f.price,
                    f.qty,
                    "maker",
                    f.maker_fee_raw,
                    f.fee_unit,
                    f.ts,
                ),
            )
        else:
            rep = _taker_report(symbol, f)
        for h in tuple(self._fill_handlers):
            self._outbox.push(h, rep)

    def _order_event(self, symbol: str, ev: OrderUpdate) -> None:
        if not self._order_handlers:
            return
        rep = _status_report(symbol, ev)
        for h in tuple(self._order_handlers):
            self._outbox.push(h, rep)

    # ------------------------------------------------------------------ latency plumbing
    async def _enter(self) -> asyncio.Future[None] | None:
        """Wait the entry latency, then for every earlier request of this connector."""
        if self.entry_latency_s <= 0:
            return None
        prev = self._entry_tail
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._entry_tail = gate
        try:
            await asyncio.sleep(self.entry_latency_s)
            if prev is not None and not prev.done():
                await prev
        except BaseException:
            gate.set_result(None)
            raise
        return gate

    async def _respond(self, op: str, t0: int) -> None:
        if self.response_latency_s > 0:
            await asyncio.sleep(self.response_latency_s)
        if self.tracker is not None:
            self.tracker.stop(op, t0)

    def _t0(self) -> int:
        return self.tracker.start() if self.tracker is not None else 0

    # ------------------------------------------------------------------ synchronous core
    def _reject(self, symbol: str, order_id: Any, rule: str, msg: str, cid: Any = None) -> OrderAck:
        return OrderAck(symbol, order_id, False, None, 0, 0, 0, (), rule, msg, time.time_ns(), cid)

    def _book(self, symbol: str) -> OrderBook | None:
        return self._map.get(symbol)

    def _taker_reports(self, symbol: str, fills: list[Fill]) -> tuple[FillReport, ...]:
        return tuple(_taker_report(symbol, f) for f in fills)

    def submit_now(self, req: OrderRequest) -> OrderAck:
        """Process ``req`` at the venue immediately (no latency); used by ``submit``."""
        book = self._map.get(req.symbol)
        if book is None:
            return self._reject(
                req.symbol, None, "symbol", f"unknown symbol {req.symbol!r}", req.client_id
            )
        try:
            r = book.submit(
                req.side,
                req.qty,
                req.price,
                req.order_type,
                req.tif,
                req.expire_ns,
                req.post_only,
                self.owner,
                req.stp,
            )
        except OrderRejected as e:
            return self._reject(req.symbol, None, e.rule.value, str(e), req.client_id)
        except BookError as e:
            return self._reject(req.symbol, None, "request", str(e), req.client_id)
        fills = self._taker_reports(req.symbol, r.fills) if r.fills else ()
        return _new(
            OrderAck,
            (
                req.symbol,
                r.order_id,
                True,
                r.status,
                r.filled,
                r.remaining,
                r.cancelled,
                fills,
                None,
                None,
                book._now,
                req.client_id,
                r.filled,
            ),
        )

    def _own(self, book: OrderBook, order_id: int) -> bool:
        o = book._orders.get(order_id)
        return o is not None and o[_OWNER] == self.owner

    def cancel_now(self, symbol: str, order_id: int) -> OrderAck:
        """Process a cancel immediately (no latency)."""
        book = self._map.get(symbol)
        if book is None:
            return self._reject(symbol, order_id, "symbol", f"unknown symbol {symbol!r}")
        o = book._orders.get(order_id)
        if o is None or o[_OWNER] != self.owner:
            return self._reject(
                symbol, order_id, "unknown_order", f"order {order_id} is not a live order of ours"
            )
        before = o[_FILLED]
        n = book.cancel(order_id)
        return _new(
            OrderAck,
            (symbol, order_id, True, _CANCELLED, 0, 0, n, (), None, None, book._now, None, before),
        )

    def modify_now(
        self, symbol: str, order_id: int, qty: int | None = None, price: int | None = None
    ) -> OrderAck:
        """Process a modify immediately (no latency)."""
        book = self._map.get(symbol)
        if book is None:
            return self._reject(symbol, order_id, "symbol", f"unknown symbol {symbol!r}")
        o = book._orders.get(order_id)
        if o is None or o[_OWNER] != self.owner:
            return self._reject(
                symbol, order_id, "unknown_order", f"order {order_id} is not a live order of ours"
            )
        before = o[_FILLED]  # lots filled before this modify
        try:
            r = book.modify(order_id, qty, price)
        except OrderRejected as e:
            return self._reject(symbol, order_id, e.rule.value, str(e))
        except BookError as e:
            return self._reject(symbol, order_id, "request", str(e))
        fills = self._taker_reports(symbol, r.fills) if r.fills else ()
        return _new(
            OrderAck,
            (
                symbol,
                order_id,
                True,
                r.status,
                r.filled,
                r.remaining,
                r.cancelled,
                fills,
                None,
                None,
                book._now,
                None,
                before + r.filled,
            ),
        )

    def execute_now(self, requests: list[Any]) -> list[OrderAck]:
        """Process a batch immediately (no latency), in order; one ack per request."""
        out: list[OrderAck] = []
        append = out.append
        books = self._map
        owner = self.owner
        for r in requests:
            t = type(r)
            if t is ModifyRequest:  # the requote hot path, inlined from modify_now
                symbol, oid = r[0], r[1]
                book = books.get(symbol)
                o = None if book is None else book._orders.get(oid)
                if o is None or o[_OWNER] != owner:
                    append(self.modify_now(symbol, oid, r[2], r[3]))  # builds the refusal
                    continue
                before = o[_FILLED]
                try:
                    res = book.modify(oid, r[2], r[3])
                except OrderRejected as e:
                    append(self._reject(symbol, oid, e.rule.value, str(e)))
                    continue
                except BookError as e:
                    append(self._reject(symbol, oid, "request", str(e)))
                    continue
                fills = res[5]
                append(
                    _new(
                        OrderAck,
                        (
                            symbol,
                            oid,
                            True,
                            res[1],
                            res[2],
                            res[3],
                            res[4],
                            self._taker_reports(symbol, fills) if fills else (),
                            None,
                            None,
                            book._now,
                            None,
                            before + res[2],
                        ),
                    )
                )
            elif t is OrderRequest:
                append(self.submit_now(r))
            elif t is CancelRequest:
                append(self.cancel_now(r.symbol, r.order_id))
            else:
                append(self._reject("", None, "request", f"unknown request {r!r}"))
        return out

    # ------------------------------------------------------------------ ExchangeConnector
    async def submit(self, request: OrderRequest) -> OrderAck:
        """Send a new order (see :class:`ExchangeConnector`)."""
        t0 = self._t0()
        gate = await self._enter()
        try:
            ack = self.submit_now(request)
        finally:
            if gate is not None:
                gate.set_result(None)
        await self._respond("submit", t0)
        return ack

    async def cancel(self, symbol: str, order_id: int) -> OrderAck:
        """Cancel one of our orders."""
        t0 = self._t0()
        gate = await self._enter()
        try:
            ack = self.cancel_now(symbol, order_id)
        finally:
            if gate is not None:
                gate.set_result(None)
        await self._respond("cancel", t0)
        return ack

    async def modify(
        self, symbol: str, order_id: int, *, qty: int | None = None, price: int | None = None
    ) -> OrderAck:
        """Modify one of our orders (book priority rules apply)."""
        t0 = self._t0()
        gate = await self._enter()
        try:
            ack = self.modify_now(symbol, order_id, qty, price)
        finally:
            if gate is not None:
                gate.set_result(None)
        await self._respond("modify", t0)
        return ack

    async def execute(self, requests: list[Any]) -> list[OrderAck]:
        """Batch (mass quote): one entry delay, all requests in order, one response delay."""
        t0 = self._t0()
        gate = await self._enter()
        try:
            acks = self.execute_now(requests)
        finally:
            if gate is not None:
                gate.set_result(None)
        await self._respond("batch", t0)
        return acks

    async def order_status(self, symbol: str, order_id: int) -> OrderStatusReport | None:
        """Live orders from the book; finished ones from the venue's status memory."""
        await self._respond("status", self._t0())
        book = self._book(symbol)
        if book is None:
            return None
        if self._own(book, order_id):
            o = book.order(order_id)
            st = _OS_PARTIAL if o.filled else _OS_NEW
            return OrderStatusReport(
                symbol, order_id, st, o.side, o.price, o.qty, o.filled, None, o.ts
            )
        hit = self.exchange._done.get((symbol, order_id))
        if hit is None or hit[0] != self.owner:  # the memory holds every participant's orders
            return None
        return hit[1]

    async def open_orders(self, symbol: str | None = None) -> list[OrderStatusReport]:
        """Our resting orders, best level first per book."""
        await self._respond("status", self._t0())
        books = [self._book(symbol)] if symbol is not None else self.exchange._all_books()
        out = []
        for b in books:
            if b is None:
                continue
            for o in b.orders(owner=self.owner):
                st = _OS_PARTIAL if o.filled else _OS_NEW
                out.append(
                    OrderStatusReport(
                        b.symbol, o.order_id, st, o.side, o.price, o.qty, o.filled, None, o.ts
                    )
                )
        return out

    async def cancel_all(
        self, symbol: str | None = None, side: Side | None = None
    ) -> list[tuple[str, int]]:
        """Cancel our resting orders (one symbol or everywhere, optionally one side)."""
        t0 = self._t0()
        gate = await self._enter()
        try:
            books = [self._book(symbol)] if symbol is not None else self.exchange._all_books()
            out = []
            for b in books:
                if b is None:
                    continue
                out += [(b.symbol, i) for i in b.cancel_all(side=side, owner=self.owner)]
        finally:
            if gate is not None:
                gate.set_result(None)
        await self._respond("cancel_all", t0)
        return out

    async def book_snapshot(self, symbol: str, depth: int | None = 10) -> DepthSnapshot:
        """L2 snapshot (raises ``ValueError`` for an unknown symbol)."""
        book = self._book(symbol)
        if book is None:
            raise ValueError(f"symbol: unknown symbol {symbol!r}")
        bids, asks = book.depth(depth)
        snap = DepthSnapshot(symbol, book.seq, book._clock(), tuple(bids), tuple(asks))
        await self._respond("snapshot", self._t0())
        return snap

    async def subscribe_fills(self, handler: Callable[[FillReport], Any]) -> Unsubscribe:
        """Every fill of our orders (maker and taker), delivered after the response delay."""
        self._fill_handlers.append(handler)
        return lambda: (
            self._fill_handlers.remove(handler) if handler in self._fill_handlers else None
        )

    async def subscribe_orders(self, handler: Callable[[OrderStatusReport], Any]) -> Unsubscribe:
        """Final state changes of our orders (filled, cancelled incl. STP / mass, expired)."""
        self._order_handlers.append(handler)
        return lambda: (
            self._order_handlers.remove(handler) if handler in self._order_handlers else None
        )

    async def subscribe_book(self, symbol: str, handler: Callable[[Any], Any]) -> Unsubscribe:
        """Public events of one book (``Fill`` trades and ``LevelUpdate``), delayed."""
        if self._book(symbol) is None:
            raise ValueError(f"symbol: unknown symbol {symbol!r}")
        outbox = self._outbox

        def relay(sym: str, ev: Fill | LevelUpdate) -> None:
            outbox.push(handler, ev)

        return self.exchange._add_public(symbol, relay)
