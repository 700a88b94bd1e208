"""Price-time priority limit order book in integer ticks and lots (pure Python).

Data structures (chosen for the hot path; measured in ``benchmarks/bench_book.py``):

- each side keeps ``dict[price -> level]`` plus a sorted ``list`` of integer keys whose last
  element is the best price (bids store ``price``, asks store ``-price``), so the touch is
  ``keys[-1]``, removing the best level is ``list.pop()`` and inserting near the touch moves
  only a few list slots;
- a level is ``[total_lots, queue]`` where ``queue`` is an insertion-ordered
  ``dict[order_id -> order]`` (the FIFO): append at the back, O(1) removal from anywhere by
  id, and in-place quantity changes, so a partial fill or a size reduction keeps the order
  exactly where it is;
- an order is a small ``list`` indexed by the ``_OID`` ... ``_STP`` constants below (a list
  is about four times cheaper to create than a ``__slots__`` instance); every live order is
  also in ``dict[order_id -> order]``; GTD/DAY orders sit in a heap of ``(expire_ns,
  order_id)`` checked at the start of every mutating call;
- ``Fill`` and ``SubmitResult`` are NamedTuples built with ``tuple.__new__`` directly.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import operator
import time
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from ._instrument import Instrument
from ._records import (
    Bar,
    BookSnapshot,
    Fill,
    Impact,
    Level,
    LevelUpdate,
    OrderInfo,
    OrderUpdate,
    SubmitResult,
)
from ._types import (
    BookError,
    CancelReason,
    OrderRejected,
    OrderStatus,
    OrderType,
    RejectRule,
    Side,
    STPMode,
    TimeInForce,
    UnknownOrderError,
)

__all__ = ["OrderBook", "Subscription", "utc_session_end", "NS_PER_DAY"]

_log = logging.getLogger("jaxmm.book")

NS_PER_DAY = 86_400 * 1_000_000_000
_NO_LIMIT = -(1 << 256)  # key threshold of a market order: every opposite level qualifies
_NO_MAX = 1 << 256

# order record layout: [oid, side, price, qty, filled, owner, tif, expire, ts, post_only, stp]
# (side / tif / stp are stored as their enum members so events need no conversion)
_OID = 0
_SIDE = 1
_PRICE = 2
_QTY = 3  # open (resting) lots
_FILLED = 4  # lots filled so far
_OWNER = 5
_TIF = 6
_EXPIRE = 7  # ns or None
_TS = 8  # time the order took its place in the queue
_POST = 9
_STP = 10
# level record layout: [total_lots, {oid: order}]
_LQTY = 0
_LQ = 1

_new_tuple = tuple.__new__
_SIDES = (Side.BUY, Side.SELL)
_TIFS = tuple(TimeInForce)
_TIF_SET = frozenset(int(t) for t in TimeInForce)
_STPS = tuple(STPMode)
_STP_SET = frozenset(int(s) for s in STPMode)
_NEW = OrderStatus.NEW
_PARTIAL = OrderStatus.PARTIALLY_FILLED
_FILLED_ST = OrderStatus.FILLED
_CANCELLED = OrderStatus.CANCELLED
_EXPIRED = OrderStatus.EXPIRED
_R_USER = CancelReason.USER
_R_MASS = CancelReason.MASS
_R_UNFILLED = CancelReason.UNFILLED
_R_STP = CancelReason.STP
_R_EXPIRED = CancelReason.EXPIRED


def utc_session_end(now_ns: int) -> int:
    """Default DAY-order expiry: the next UTC midnight strictly after ``now_ns`` (ns).

    Example:
        >>> utc_session_end(NS_PER_DAY + 5) == 2 * NS_PER_DAY
        True
    """
    return (now_ns // NS_PER_DAY + 1) * NS_PER_DAY


def _info(o: list) -> OrderInfo:
    return OrderInfo(
        o[_OID],
        o[_SIDE],
        o[_PRICE],
        o[_QTY],
        o[_FILLED],
        o[_OWNER],
        o[_TIF],
        o[_EXPIRE],
        o[_TS],
        o[_POST],
        o[_STP],
    )


class Subscription:
    """Handle returned by ``OrderBook.subscribe``; ``close()`` (or ``with``) unsubscribes.

    ``queue`` is the ``asyncio.Queue`` of a subscription made with ``subscribe_queue``.
    """

    __slots__ = ("_book", "callback", "queue")

    def __init__(self, book: OrderBook, callback: Callable[[Any], Any], queue: Any = None):
        self._book = book
        self.callback = callback
        self.queue = queue

    def close(self) -> None:
        """Stop receiving events (idempotent)."""
        self._book._unsubscribe(self.callback)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _as_int(x: Any) -> int | None:
    """Exact int from an int-like (NumPy integers included); None for anything else."""
    if isinstance(x, bool):
        return None
    try:
        return operator.index(x)
    except TypeError:
        return None


class OrderBook:
    """Price-time priority limit order book for one instrument, in integer ticks and lots.

    Args:
        instrument: the :class:`Instrument` (size bounds come from it; conversion of external
            prices/quantities to ticks/lots is ``instrument.price_to_ticks`` / ``qty_to_lots``).
        clock: callable returning the time as integer nanoseconds (default ``time.time_ns``);
            inject a fake clock for deterministic tests and replays.
        stp: default self-trade prevention mode for orders that do not set one.
        maker_fee_bps, taker_fee_bps: fees in basis points of notional (negative = rebate),
            resolution 1e-4 bp; charged on every fill.
        session_end: maps ``now_ns`` to the expiry of a DAY order placed then (default: next UTC
            midnight, :func:`utc_session_end`).
        tape_size: number of most recent trades kept for ``last_trade``, ``trades``, ``bars``.

    Matching, priority, STP, fee and expiry rules are stated exactly in ``docs/book.md``.
    Every mutating call either completes or raises a :class:`BookError` and leaves the book
    exactly as it was.

    Example:
        >>> book = OrderBook(Instrument("X", tick_size="0.01"), clock=lambda: 0)
        >>> book.submit(Side.SELL, 5, 101).status.name
        'NEW'
        >>> r = book.submit(Side.BUY, 3, 101)
        >>> r.status.name, r.filled, [(f.price, f.qty) for f in r.fills]
        ('FILLED', 3, [(101, 3)])
        >>> book.best_ask(), book.depth(1)
        (101, ([], [Level(price=101, qty=2, count=1)]))
    """

    def __init__(
        self,
        instrument: Instrument,
        *,
        clock: Callable[[], int] = time.time_ns,
        stp: STPMode | int = STPMode.NONE,
        maker_fee_bps: Any = 0,
        taker_fee_bps: Any = 0,
        session_end: Callable[[int], int] = utc_session_end,
        tape_size: int = 100_000,
    ) -> None:
        if not isinstance(instrument, Instrument):
            raise ValueError(f"instrument: expected an Instrument, got {type(instrument).__name__}")
        if stp not in _STP_SET or isinstance(stp, bool):
            raise ValueError(f"stp: must be an STPMode, got {stp!r}")
        if type(tape_size) is not int or tape_size < 1:
            raise ValueError(f"tape_size: must be an int >= 1, got {tape_size!r}")
        if not callable(clock) or not callable(session_end):
            raise ValueError("clock and session_end: must be callables returning int ns")
        self.instrument = instrument
        self.symbol = instrument.symbol
        self._clock = clock
        self._session_end = session_end
        self._stp = int(stp)
        self._mfee = Instrument.fee_rate_to_int(maker_fee_bps, "maker_fee_bps")
        self._tfee = Instrument.fee_rate_to_int(taker_fee_bps, "taker_fee_bps")
        self._fee_unit = instrument._fee_unit
        self._min_qty = instrument.min_qty
        self._max_qty = _NO_MAX if instrument.max_qty is None else instrument.max_qty
        self._levels: tuple[dict[int, list], dict[int, list]] = ({}, {})
        self._keys: tuple[list[int], list[int]] = ([], [])
        self._orders: dict[int, list] = {}
        self._exp: list[tuple[int, int]] = []
        self._next_oid = 1
        self._next_tid = 1
        self._seq = 0
        self._now = 0  # clock reading of the last mutating call
        self._subs: list[Callable[[Any], Any]] = []
        self._bsubs: list[Callable[[list[Any]], Any]] = []
        self._emit = False  # any subscriber: build events
        self._emit_lv = False  # a subscriber wants LevelUpdate events
        self._emit_all = False  # a subscriber wants non-final OrderUpdate events
        self._sub_opts: dict[int, tuple[bool, bool]] = {}  # id(callback) -> (levels, all)
        self._out: list[Any] = []
        self._flushing = False
        #: number of exceptions raised by subscriber callbacks (they are logged, not raised)
        self.subscriber_errors = 0
        self._tape: deque[Fill] = deque(maxlen=tape_size)

    # ------------------------------------------------------------------ properties
    @property
    def maker_fee_bps(self) -> float:
        """Maker fee rate in basis points (negative = rebate)."""
        return self._mfee / 10_000

    @property
    def taker_fee_bps(self) -> float:
        """Taker fee rate in basis points (negative = rebate)."""
        return self._tfee / 10_000

    @property
    def seq(self) -> int:
        """Sequence number of the last event published (0 before any)."""
        return self._seq

    def now(self) -> int:
        """The book clock (integer ns)."""
        return self._clock()

    def __len__(self) -> int:
        return len(self._orders)

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._orders

    def __repr__(self) -> str:
        return (
            f"OrderBook({self.symbol!r}, orders={len(self._orders)}, "
            f"bid={self.best_bid()}, ask={self.best_ask()})"
        )

    # ------------------------------------------------------------------ order entry
    def submit(
        self,
        side: Side | int,
        qty: int,
        price: int | None = None,
        order_type: OrderType | int = OrderType.LIMIT,
        tif: TimeInForce | int = TimeInForce.GTC,
        expire_ns: int | None = None,
        post_only: bool = False,
        owner: Any = None,
        stp: STPMode | int | None = None,
    ) -> SubmitResult:
        """Submit an order; match it against the opposite side and rest what may rest.

        Args:
            side: ``Side.BUY`` or ``Side.SELL``.
            qty: size in lots (int >= 1).
            price: limit price in ticks (int >= 1); ``None`` for a market order.
            order_type: ``OrderType.LIMIT`` or ``OrderType.MARKET`` (IOC or FOK only).
            tif: ``TimeInForce`` (GTC, GTD with ``expire_ns``, DAY, IOC, FOK).
            expire_ns: GTD expiry on the book clock (ns); must be later than now.
            post_only: reject (never slide) if the order would trade on arrival.
            owner: hashable owner id for self-trade prevention (None = never STP).
            stp: STP mode of this order when it takes liquidity (default: the book's).

        Returns:
            :class:`SubmitResult` with the order id, final status and fills.

        Raises:
            OrderRejected: an admission rule failed (``.rule``), checked in this order:
                side, type (type/TIF/post-only/STP combination), tick, lot, size, expiry,
                post_only (would cross), fok (cannot fill completely now). The book is
                unchanged and no order id is consumed.
        """
        self._now = now = self._clock()
        exp = self._exp
        if exp and exp[0][0] <= now:
            self._expire_due(now)
        # 1. side
        if (side != 0 and side != 1) or (type(side) is not int and type(side) is not Side):
            raise OrderRejected(RejectRule.SIDE, f"side must be Side.BUY or SELL, got {side!r}")
        side = 0 if side == 0 else 1
        # 2. type / time in force / post-only / stp combination
        if type(tif) is not int and type(tif) is not TimeInForce:
            raise OrderRejected(RejectRule.TYPE, f"unknown time in force {tif!r}")
        if type(order_type) is not int and type(order_type) is not OrderType:
            raise OrderRejected(RejectRule.TYPE, f"unknown order type {order_type!r}")
        if order_type == 0:
            if tif not in _TIF_SET:
                raise OrderRejected(RejectRule.TYPE, f"unknown time in force {tif!r}")
            if post_only and tif >= 3:
                raise OrderRejected(RejectRule.TYPE, "post-only orders must be GTC, GTD or DAY")
            market = False
        elif order_type == 1:
            if tif != 3 and tif != 4:
                raise OrderRejected(RejectRule.TYPE, "market orders must be IOC or FOK")
            if post_only:
                raise OrderRejected(RejectRule.TYPE, "a market order cannot be post-only")
            market = True
        else:
            raise OrderRejected(RejectRule.TYPE, f"unknown order type {order_type!r}")
        if stp is None:
            stp = self._stp
        elif stp not in _STP_SET:
            raise OrderRejected(RejectRule.TYPE, f"unknown STP mode {stp!r}")
        else:
            stp = int(stp)
        # 3. tick
        if market:
            if price is not None:
                raise OrderRejected(RejectRule.TICK, "a market order carries no price")
        else:
            if type(price) is not int:
                p = _as_int(price)
                if p is None:
                    raise OrderRejected(
                        RejectRule.TICK,
                        f"price must be an int number of ticks, got {price!r} "
                        "(convert with Instrument.price_to_ticks)",
                    )
                price = p
            if price < 1:
                raise OrderRejected(RejectRule.TICK, f"price must be >= 1 tick, got {price}")
        # 4. lot
        if type(qty) is not int:
            q = _as_int(qty)
            if q is None:
                raise OrderRejected(
                    RejectRule.LOT,
                    f"qty must be an int number of lots, got {qty!r} "
                    "(convert with Instrument.qty_to_lots)",
                )
            qty = q
        if qty < 1:
            raise OrderRejected(RejectRule.LOT, f"qty must be >= 1 lot, got {qty}")
        # 5. size bounds
        if qty < self._min_qty or qty > self._max_qty:
            raise OrderRejected(
                RejectRule.SIZE,
                f"qty {qty} lots outside [{self._min_qty}, {self.instrument.max_qty}]",
            )
        # 6. expiry
        if tif == 1:
            if type(expire_ns) is not int or expire_ns <= now:
                raise OrderRejected(
                    RejectRule.EXPIRY,
                    f"GTD needs an int expire_ns later than now={now}, got {expire_ns!r}",
                )
        elif expire_ns is not None:
            raise OrderRejected(RejectRule.EXPIRY, "expire_ns is only valid with GTD")
        # crossing test on the opposite side's keys (asks store -price, bids store price)
        okeys = self._keys[side ^ 1]
        if market:
            lim = _NO_LIMIT
            crosses = bool(okeys)
        else:
            lim = -price if side == 0 else price
            crosses = bool(okeys) and okeys[-1] >= lim
        # 7. post-only
        if post_only and crosses:
            raise OrderRejected(RejectRule.POST_ONLY, f"post-only order at {price} would cross")
        # 8. FOK feasibility
        if tif == 4 and not (crosses and self._fok_fillable(side, lim, qty, owner, stp)):
            raise OrderRejected(RejectRule.FOK, f"cannot fill {qty} lots completely now")

        oid = self._next_oid
        self._next_oid = oid + 1
        if crosses:
            fills, rem, cut = self._match(side, lim, qty, oid, owner, stp, now)
        else:
            fills = []
            rem = qty
            cut = False
        emit = self._emit
        if not rem:
            status = _FILLED_ST
            cancelled = 0
            reason = None
            expire = None
        elif tif <= 2 and not cut:  # limit GTC / GTD / DAY: the remainder rests
            expire = expire_ns if tif != 2 else self._session_end(now)
            o = [
                oid,
                _SIDES[side],
                price,
                rem,
                qty - rem,
                owner,
                _TIFS[tif],
                expire,
                now,
                post_only is True or bool(post_only),
                _STPS[stp],
            ]
            self._orders[oid] = o
            levels = self._levels[side]
            lvl = levels.get(price)
            if lvl is None:
                levels[price] = lvl = [rem, {oid: o}]
                keys = self._keys[side]
                k = price if side == 0 else -price
                if not keys or k > keys[-1]:
                    keys.append(k)
                else:
                    insort(keys, k)
            else:
                lvl[_LQ][oid] = o
                lvl[_LQTY] += rem
            if expire is not None:
                heapq.heappush(exp, (expire, oid))
            status = _PARTIAL if rem != qty else _NEW
            cancelled = 0
            reason = None
            if emit:
                if self._emit_all:
                    self._emit_order(o, status, True, None, now, True)
                if self._emit_lv:
                    self._emit_level(side, price, lvl[_LQTY], len(lvl[_LQ]), now)
        else:
            status = _CANCELLED
            cancelled = rem
            rem = 0
            reason = _R_STP if cut else _R_UNFILLED
            expire = None
            if emit:
                self._seq += 1
                self._out.append(
                    _new_tuple(
                        OrderUpdate,
                        (
                            self._seq,
                            now,
                            oid,
                            status,
                            _SIDES[side],
                            price,
                            0,
                            qty - cancelled,
                            False,
                            False,
                            reason,
                            owner,
                            _TIFS[tif],
                            expire_ns,
                            bool(post_only),
                            _STPS[stp],
                        ),
                    )
                )
        if emit:
            if status is _FILLED_ST:
                self._seq += 1
                self._out.append(
                    _new_tuple(
                        OrderUpdate,
                        (
                            self._seq,
                            now,
                            oid,
                            status,
                            _SIDES[side],
                            price,
                            0,
                            qty,
                            False,
                            False,
                            None,
                            owner,
                            _TIFS[tif],
                            expire_ns,
                            bool(post_only),
                            _STPS[stp],
                        ),
                    )
                )
            if self._out:
                self._flush()
        return _new_tuple(
            SubmitResult, (oid, status, qty - rem - cancelled, rem, cancelled, fills, reason)
        )

    def _fok_fillable(self, side: int, lim: int, qty: int, owner: Any, stp: int) -> bool:
        """Would ``_match`` fill ``qty`` completely? Mirrors its STP behaviour exactly."""
        opp = side ^ 1
        levels = self._levels[opp]
        check_stp = stp != 0 and owner is not None
        need = qty
        for k in reversed(self._keys[opp]):
            if k < lim:
                return False
            lvl = levels[-k if opp else k]
            if not check_stp:
                need -= lvl[_LQTY]
                if need <= 0:
                    return True
                continue
            for mo in lvl[_LQ].values():
                if mo[_OWNER] == owner:
                    if stp == 2:  # CANCEL_MAKER: the maker goes, matching continues
                        continue
                    return False  # CANCEL_TAKER / CANCEL_BOTH: matching stops here
                need -= mo[_QTY]
                if need <= 0:
                    return True
        return False

    def _match(
        self, side: int, lim: int, qty: int, oid: int, owner: Any, stp: int, now: int
    ) -> tuple[list[Fill], int, bool]:
        """Match ``qty`` lots of a taker against the opposite side down to key ``lim``.

        Returns ``(fills, remaining lots, cut)``; ``cut`` says STP cancelled the taker's rest.
        """
        opp = side ^ 1
        keys = self._keys[opp]
        levels = self._levels[opp]
        book_orders = self._orders
        fills: list[Fill] = []
        mfee = self._mfee
        tfee = self._tfee
        unit = self._fee_unit
        emit = self._emit
        aggressor = _SIDES[side]
        check_stp = stp != 0 and owner is not None
        cut = False
        tid = self._next_tid
        while keys:
            k = keys[-1]
            if k < lim:
                break
            price = -k if opp else k
            lvl = levels[price]
            q = lvl[_LQ]
            done = []
            removed = 0
            for mo in q.values():
                if check_stp and mo[_OWNER] == owner:
                    if stp == 1:  # CANCEL_TAKER
                        cut = True
                        break
                    done.append(mo)  # CANCEL_MAKER / CANCEL_BOTH: the maker is cancelled
                    removed += mo[_QTY]
                    if emit:
                        self._emit_order(mo, _CANCELLED, False, _R_STP, now, False)
                    if stp == 3:
                        cut = True
                        break
                    continue
                mq = mo[_QTY]
                if mq <= qty:
                    x = mq
                    done.append(mo)
                else:
                    x = qty
                mo[_QTY] = mq - x
                mo[_FILLED] += x
                qty -= x
                removed += x
                n = price * x
                if emit:
                    self._seq += 1
                f = _new_tuple(
                    Fill,
                    (
                        self._seq if emit else 0,
                        tid,
                        now,
                        price,
                        x,
                        mo[_OID],
                        oid,
                        mo[_OWNER],
                        owner,
                        aggressor,
                        n * mfee,
                        n * tfee,
                        unit,
                    ),
                )
                if emit:
                    self._out.append(f)
                    if mo[_QTY]:
                        if self._emit_all:
                            self._emit_order(mo, _PARTIAL, True, None, now, False)
                    else:
                        self._emit_order(mo, _FILLED_ST, False, None, now, False)
                tid += 1
                fills.append(f)
                if not qty:
                    break
            for mo in done:
                del q[mo[_OID]]
                del book_orders[mo[_OID]]
            lvl[_LQTY] -= removed
            if emit and removed and self._emit_lv:
                self._emit_level(opp, price, lvl[_LQTY], len(q), now)
            if not q:
                del levels[price]
                keys.pop()
            if not qty or cut:
                break
        self._next_tid = tid
        if fills:
            self._tape.extend(fills)
        return fills, qty, cut

    def _emit_order(
        self,
        o: list,
        status: OrderStatus,
        in_book: bool,
        reason: CancelReason | None,
        ts: int,
        requeued: bool,
    ) -> None:
        self._seq += 1
        self._out.append(
            _new_tuple(
                OrderUpdate,
                (
                    self._seq,
                    ts,
                    o[_OID],
                    status,
                    o[_SIDE],
                    o[_PRICE],
                    o[_QTY] if in_book else 0,
                    o[_FILLED],
                    in_book,
                    requeued,
                    reason,
                    o[_OWNER],
                    o[_TIF],
                    o[_EXPIRE],
                    o[_POST],
                    o[_STP],
                ),
            )
        )

    def _emit_level(self, side: int, price: int, qty: int, count: int, ts: int) -> None:
        if not self._emit_lv:
            return
        self._seq += 1
        self._out.append(_new_tuple(LevelUpdate, (self._seq, ts, _SIDES[side], price, qty, count)))

    # ------------------------------------------------------------------ cancel / modify
    def _unknown(self, order_id: Any) -> UnknownOrderError:
        if type(order_id) is int and 1 <= order_id < self._next_oid:
            return UnknownOrderError(
                f"order_id {order_id} is not live (filled, cancelled or expired)"
            )
        return UnknownOrderError(f"order_id {order_id!r} was never assigned by this book")

    def _unlink(self, o: list) -> list:
        """Take a live order out of its level (the caller removes it from the id map and
        publishes the order update, then the level update); returns the level record."""
        side = o[_SIDE]
        price = o[_PRICE]
        levels = self._levels[side]
        lvl = levels[price]
        q = lvl[_LQ]
        del q[o[_OID]]
        lvl[_LQTY] -= o[_QTY]
        if not q:
            del levels[price]
            keys = self._keys[side]
            k = price if side == 0 else -price
            if keys[-1] == k:
                keys.pop()
            else:
                del keys[bisect_left(keys, k)]
        return lvl

    def cancel(self, order_id: int) -> int:
        """Cancel a resting order; returns the lots cancelled.

        Raises:
            UnknownOrderError: the id was never assigned or the order is no longer live
                (filled, cancelled, expired). The book is unchanged.
        """
        self._now = now = self._clock()
        exp = self._exp
        if exp and exp[0][0] <= now:
            self._expire_due(now)
        o = self._orders.pop(order_id, None)
        if o is None:
            raise self._unknown(order_id)
        # inline _unlink (hot path)
        side = o[_SIDE]
        price = o[_PRICE]
        levels = self._levels[side]
        lvl = levels[price]
        q = lvl[_LQ]
        del q[order_id]
        lvl[_LQTY] -= o[_QTY]
        if not q:
            del levels[price]
            keys = self._keys[side]
            k = price if side == 0 else -price
            if keys[-1] == k:
                keys.pop()
            else:
                del keys[bisect_left(keys, k)]
        if self._emit:
            self._emit_order(o, _CANCELLED, False, _R_USER, now, False)
            if self._emit_lv:
                self._emit_level(side, price, lvl[_LQTY], len(q), now)
            self._flush()
        return o[_QTY]

    def cancel_all(
        self,
        side: Side | int | None = None,
        owner: Any = None,
        min_price: int | None = None,
        max_price: int | None = None,
    ) -> list[int]:
        """Mass cancel every resting order matching all the given filters; returns their ids.

        Filters: ``side``; ``owner`` (None = any owner); ``min_price`` / ``max_price`` in ticks,
        inclusive. Orders go best level first, FIFO within a level.
        """
        if side is not None and side != 0 and side != 1:
            raise BookError(f"side: must be Side.BUY, Side.SELL or None, got {side!r}")
        for name, v in (("min_price", min_price), ("max_price", max_price)):
            if v is not None and _as_int(v) is None:
                raise BookError(f"{name}: must be an int number of ticks or None, got {v!r}")
        self._now = now = self._clock()
        exp = self._exp
        if exp and exp[0][0] <= now:
            self._expire_due(now)
        lo = -_NO_MAX if min_price is None else min_price
        hi = _NO_MAX if max_price is None else max_price
        victims: list[list] = []
        for s in (0, 1) if side is None else (int(side),):
            levels = self._levels[s]
            for k in reversed(self._keys[s]):
                price = k if s == 0 else -k
                if price < lo or price > hi:
                    continue
                for o in levels[price][_LQ].values():
                    if owner is None or o[_OWNER] == owner:
                        victims.append(o)
        emit = self._emit
        for o in victims:
            del self._orders[o[_OID]]
            lvl = self._unlink(o)
            if emit:
                self._emit_order(o, _CANCELLED, False, _R_MASS, now, False)
                self._emit_level(o[_SIDE], o[_PRICE], lvl[_LQTY], len(lvl[_LQ]), now)
        if emit:
            self._flush()
        return [o[_OID] for o in victims]

    def modify(
        self, order_id: int, qty: int | None = None, price: int | None = None
    ) -> SubmitResult:
        """Change a resting order's open quantity and/or price.

        ``qty`` is the new *open* (resting) quantity in lots, ``price`` the new price in ticks.
        Priority: a size reduction at the same price keeps the order's place in the queue; a
        size increase or any price change sends it to the back of the (new) level with a new
        timestamp. A new price that crosses the book trades at once as a taker (a post-only
        order is rejected instead). Rules tick, lot, size and post_only apply; a rejected
        modify leaves the order untouched.

        Raises:
            UnknownOrderError: the order is not live.
            OrderRejected: the new price/quantity broke a rule.
        """
        self._now = now = self._clock()
        exp = self._exp
        if exp and exp[0][0] <= now:
            self._expire_due(now)
        o = self._orders.get(order_id)
        if o is None:
            raise self._unknown(order_id)
        if qty is None and price is None:
            raise BookError("modify: give qty and/or price")
        if price is None:
            price = o[_PRICE]
        elif type(price) is not int:
            p = _as_int(price)
            if p is None:
                raise OrderRejected(
                    RejectRule.TICK, f"price must be an int number of ticks, got {price!r}"
                )
            price = p
        if price < 1:
            raise OrderRejected(RejectRule.TICK, f"price must be >= 1 tick, got {price}")
        if qty is None:
            qty = o[_QTY]
        elif type(qty) is not int:
            q = _as_int(qty)
            if q is None:
                raise OrderRejected(
                    RejectRule.LOT, f"qty must be an int number of lots, got {qty!r}"
                )
            qty = q
        if qty < 1:
            raise OrderRejected(RejectRule.LOT, f"qty must be >= 1 lot, got {qty} (use cancel)")
        if qty < self._min_qty or qty > self._max_qty:
            raise OrderRejected(
                RejectRule.SIZE,
                f"qty {qty} lots outside [{self._min_qty}, {self.instrument.max_qty}]",
            )
        side = o[_SIDE]
        emit = self._emit
        if price == o[_PRICE]:
            old = o[_QTY]
            status = _PARTIAL if o[_FILLED] else _NEW
            if qty == old:
                return _new_tuple(SubmitResult, (order_id, status, 0, qty, 0, [], None))
            lvl = self._levels[side][price]
            lvl[_LQTY] += qty - old
            o[_QTY] = qty
            requeued = qty > old
            if requeued:  # size up: to the back of the queue
                q = lvl[_LQ]
                del q[order_id]
                q[order_id] = o
                o[_TS] = now
            if emit:
                if self._emit_all:
                    self._emit_order(o, status, True, None, now, requeued)
                self._emit_level(side, price, lvl[_LQTY], len(lvl[_LQ]), now)
                if self._out:
                    self._flush()
            return _new_tuple(SubmitResult, (order_id, status, 0, qty, 0, [], None))
        okeys = self._keys[side ^ 1]
        lim = -price if side == 0 else price
        crosses = bool(okeys) and okeys[-1] >= lim
        if crosses and o[_POST]:
            raise OrderRejected(
                RejectRule.POST_ONLY, f"post-only order moved to {price} would cross"
            )
        if not crosses:  # fast path: move to the back of the new level
            levels = self._levels[side]
            keys = self._keys[side]
            old_price = o[_PRICE]
            lvl = levels[old_price]
            q = lvl[_LQ]
            del q[order_id]
            lvl[_LQTY] -= o[_QTY]
            if not q:
                del levels[old_price]
                k = old_price if side == 0 else -old_price
                if keys[-1] == k:
                    keys.pop()
                else:
                    del keys[bisect_left(keys, k)]
            old_lvl = lvl
            o[_PRICE] = price
            o[_QTY] = qty
            o[_TS] = now
            lvl = levels.get(price)
            if lvl is None:
                levels[price] = lvl = [qty, {order_id: o}]
                k = price if side == 0 else -price
                if not keys or k > keys[-1]:
                    keys.append(k)
                else:
                    insort(keys, k)
            else:
                lvl[_LQ][order_id] = o
                lvl[_LQTY] += qty
            status = _PARTIAL if o[_FILLED] else _NEW
            if emit:
                if self._emit_all:
                    self._emit_order(o, status, True, None, now, True)
                if self._emit_lv:
                    self._emit_level(side, old_price, old_lvl[_LQTY], len(old_lvl[_LQ]), now)
                    self._emit_level(side, price, lvl[_LQTY], len(lvl[_LQ]), now)
                if self._out:
                    self._flush()
            return _new_tuple(SubmitResult, (order_id, status, 0, qty, 0, [], None))
        # crossing price change: leave the old level, trade, rest the rest at the back
        del self._orders[order_id]
        old_price = o[_PRICE]
        old_lvl = self._unlink(o)
        o[_PRICE] = price
        o[_TS] = now
        if crosses:
            fills, rem, cut = self._match(side, lim, qty, order_id, o[_OWNER], o[_STP], now)
        else:
            fills, rem, cut = [], qty, False
        filled = qty - rem
        o[_FILLED] += filled
        cancelled = 0
        reason = None
        if rem and not cut:
            o[_QTY] = rem
            self._rest(o)
            status = _PARTIAL if o[_FILLED] else _NEW
            if emit:
                if self._emit_all:
                    self._emit_order(o, status, True, None, now, True)
                self._emit_level(side, old_price, old_lvl[_LQTY], len(old_lvl[_LQ]), now)
                lvl = self._levels[side][price]
                self._emit_level(side, price, lvl[_LQTY], len(lvl[_LQ]), now)
        else:
            o[_QTY] = 0
            if rem:
                status, cancelled, reason, rem = _CANCELLED, rem, _R_STP, 0
            else:
                status = _FILLED_ST
            if emit:
                self._emit_order(o, status, False, reason, now, True)
                self._emit_level(side, old_price, old_lvl[_LQTY], len(old_lvl[_LQ]), now)
        if emit:
            self._flush()
        return _new_tuple(SubmitResult, (order_id, status, filled, rem, cancelled, fills, reason))

    def _rest(self, o: list) -> None:
        side = o[_SIDE]
        price = o[_PRICE]
        self._orders[o[_OID]] = o
        levels = self._levels[side]
        lvl = levels.get(price)
        if lvl is None:
            levels[price] = lvl = [0, {}]
            keys = self._keys[side]
            k = price if side == 0 else -price
            if not keys or k > keys[-1]:
                keys.append(k)
            else:
                insort(keys, k)
        lvl[_LQ][o[_OID]] = o
        lvl[_LQTY] += o[_QTY]

    # ------------------------------------------------------------------ expiry
    def _expire_due(self, now: int) -> list[int]:
        exp = self._exp
        orders = self._orders
        out = []
        emit = self._emit
        while exp and exp[0][0] <= now:
            t, oid = heapq.heappop(exp)
            o = orders.get(oid)
            if o is None or o[_EXPIRE] != t:
                continue
            del orders[oid]
            lvl = self._unlink(o)
            if emit:
                self._emit_order(o, _EXPIRED, False, _R_EXPIRED, now, False)
                self._emit_level(o[_SIDE], o[_PRICE], lvl[_LQTY], len(lvl[_LQ]), now)
            out.append(oid)
        return out

    def expire(self, now: int | None = None) -> list[int]:
        """Expire every GTD/DAY order whose expiry is <= ``now`` (default: the clock).

        Mutating calls do this by themselves first; call it to expire orders between calls
        (e.g. from a timer). Returns the expired order ids.
        """
        out = self._expire_due(self._clock() if now is None else now)
        if self._emit:
            self._flush()
        return out

    # ------------------------------------------------------------------ events
    def subscribe(
        self,
        callback: Callable[[Any], Any],
        *,
        batch: bool = False,
        levels: bool = True,
        order_updates: str = "all",
    ) -> Subscription:
        """Call ``callback(event)`` synchronously for every event, in ``seq`` order.

        Events are :class:`Fill`, :class:`OrderUpdate` and :class:`LevelUpdate`. They are
        delivered after the book call that produced them has completed, so a callback sees a
        consistent book and may call into it (the events of that nested call are delivered
        after the current batch, keeping ``seq`` order). With ``batch=True`` the callback
        receives instead the list of events of each call at once (one call per book call; do
        not mutate the list).

        Interest hints (the book builds an event kind only while some subscriber wants it, and
        its sequence numbers count only events it built): ``levels=False`` -- no
        :class:`LevelUpdate`; ``order_updates="final"`` -- only the :class:`OrderUpdate` events
        that end an order (filled, cancelled, expired), not rests, partial fills or modifies.
        A replica (``apply``) needs the defaults.

        An exception in a callback is logged (``jaxmm.book`` logger) and counted in
        ``subscriber_errors``; it never undoes or hides the book operation, whose result the
        caller still receives.
        """
        if not callable(callback):
            raise ValueError("callback: must be callable")
        if order_updates not in ("all", "final"):
            raise ValueError(f"order_updates: must be 'all' or 'final', got {order_updates!r}")
        (self._bsubs if batch else self._subs).append(callback)
        self._sub_opts[id(callback)] = (bool(levels), order_updates == "all")
        self._refresh_interest()
        return Subscription(self, callback)

    def _refresh_interest(self) -> None:
        opts = self._sub_opts.values()
        self._emit = bool(self._subs or self._bsubs)
        self._emit_lv = any(lv for lv, _ in opts)
        self._emit_all = any(a for _, a in opts)

    def subscribe_queue(self, maxsize: int = 0) -> Subscription:
        """Subscribe an ``asyncio.Queue`` (``Subscription.queue``) that receives every event.

        Use it from the event loop's thread. On a bounded queue that is full the event is
        dropped and counted in ``subscriber_errors``; the default is unbounded.
        """
        q: asyncio.Queue[Any] = asyncio.Queue(maxsize)
        sub = self.subscribe(q.put_nowait)
        sub.queue = q
        return sub

    def _unsubscribe(self, callback: Callable[[Any], Any]) -> None:
        for lst in (self._subs, self._bsubs):
            if callback in lst:
                lst.remove(callback)
        if not any(c is callback for c in self._subs + self._bsubs):
            self._sub_opts.pop(id(callback), None)
        self._refresh_interest()

    def _flush(self) -> None:
        if self._flushing:
            return
        self._flushing = True
        try:
            while self._out:
                events = self._out
                self._out = []
                for cb in tuple(self._bsubs):
                    try:
                        cb(events)
                    except Exception:
                        self.subscriber_errors += 1
                        _log.exception("order book subscriber %r failed", cb)
                subs = tuple(self._subs)
                if subs:
                    for ev in events:
                        for cb in subs:
                            try:
                                cb(ev)
                            except Exception:
                                self.subscriber_errors += 1
                                _log.exception("order book subscriber %r failed", cb)
        finally:
            self._flushing = False

    # ------------------------------------------------------------------ snapshot / replay
    def snapshot(self) -> BookSnapshot:
        """Full L3 state: resting orders best level first, FIFO within a level."""
        sides = []
        for s in (0, 1):
            levels = self._levels[s]
            sides.append(
                tuple(
                    _info(o)
                    for k in reversed(self._keys[s])
                    for o in levels[k if s == 0 else -k][_LQ].values()
                )
            )
        return BookSnapshot(
            self.symbol,
            self._seq,
            self._clock(),
            sides[0],
            sides[1],
            self._next_oid,
            self._next_tid,
            self._tape[-1] if self._tape else None,
        )

    @classmethod
    def from_snapshot(
        cls, instrument: Instrument, snapshot: BookSnapshot, **kwargs: Any
    ) -> OrderBook:
        """A new book holding exactly the orders of ``snapshot`` (same ids, queue order, seq).

        ``kwargs`` are the constructor's (clock, stp, fees, ...). Follow with ``apply`` for each
        event whose ``seq`` is greater than ``snapshot.seq``.
        """
        if instrument.symbol != snapshot.symbol:
            raise ValueError(
                f"snapshot: symbol {snapshot.symbol!r} does not match {instrument.symbol!r}"
            )
        book = cls(instrument, **kwargs)
        for info in snapshot.bids + snapshot.asks:
            book._add(info.order_id, info.side, info.price, info.qty, info)
        book._next_oid = snapshot.next_order_id
        book._next_tid = snapshot.next_trade_id
        book._seq = snapshot.seq
        if snapshot.last_trade is not None:
            book._tape.append(snapshot.last_trade)
        return book

    def _add(self, oid: int, side: Any, price: int, qty: int, info: Any) -> None:
        o = [
            oid,
            _SIDES[int(side)],
            price,
            qty,
            info.filled,
            info.owner,
            _TIFS[int(info.tif)],
            info.expire_ns,
            info.ts,
            bool(info.post_only),
            _STPS[int(info.stp)],
        ]
        self._rest(o)
        if o[_EXPIRE] is not None:
            heapq.heappush(self._exp, (o[_EXPIRE], oid))
        if oid >= self._next_oid:
            self._next_oid = oid + 1

    def apply(self, event: Fill | OrderUpdate | LevelUpdate) -> None:
        """Apply one published event to this book (used as a replica).

        Events must arrive in ``seq`` order without gaps; events at or below the book's ``seq``
        are ignored (already reflected). Level updates are checked against the replica's own
        aggregates. Applying does not publish events.

        Raises:
            BookError: a sequence gap, or the replica disagrees with a level update.
        """
        if event.seq <= self._seq:
            return
        if event.seq != self._seq + 1:
            raise BookError(f"sequence gap: expected seq {self._seq + 1}, got {event.seq}")
        emit = self._emit
        self._emit = False
        try:
            if isinstance(event, OrderUpdate):
                oid = event.order_id
                o = self._orders.get(oid)
                if event.in_book:
                    if o is not None and not event.requeued and o[_PRICE] == event.price:
                        self._levels[o[_SIDE]][o[_PRICE]][_LQTY] += event.remaining - o[_QTY]
                        o[_QTY] = event.remaining
                        o[_FILLED] = event.filled
                    else:
                        if o is not None:
                            del self._orders[oid]
                            self._unlink(o)
                        self._add(oid, event.side, event.price, event.remaining, event)
                elif o is not None:
                    del self._orders[oid]
                    self._unlink(o)
                if oid >= self._next_oid:
                    self._next_oid = oid + 1
            elif isinstance(event, Fill):
                self._tape.append(event)
                if event.trade_id >= self._next_tid:
                    self._next_tid = event.trade_id + 1
            elif isinstance(event, LevelUpdate):
                lvl = self._levels[int(event.side)].get(event.price)
                have = (lvl[_LQTY], len(lvl[_LQ])) if lvl is not None else (0, 0)
                if have != (event.qty, event.count):
                    raise BookError(
                        f"replica diverged at {event.side.name} {event.price}: "
                        f"have {have}, event says {(event.qty, event.count)}"
                    )
            else:
                raise BookError(f"apply: unknown event type {type(event).__name__}")
        finally:
            self._emit = emit
        self._seq = event.seq

    # ------------------------------------------------------------------ read side
    def best_bid(self) -> int | None:
        """Best bid price in ticks, or None."""
        k = self._keys[0]
        return k[-1] if k else None

    def best_ask(self) -> int | None:
        """Best ask price in ticks, or None."""
        k = self._keys[1]
        return -k[-1] if k else None

    def top(self) -> tuple[int | None, int, int | None, int]:
        """``(bid, bid_lots, ask, ask_lots)`` at the touch (None / 0 for an empty side)."""
        bk, ak = self._keys
        if bk:
            b = bk[-1]
            bq = self._levels[0][b][_LQTY]
        else:
            b, bq = None, 0
        if ak:
            a = -ak[-1]
            aq = self._levels[1][a][_LQTY]
        else:
            a, aq = None, 0
        return b, bq, a, aq

    def spread(self) -> int | None:
        """Ask minus bid in ticks, or None if a side is empty."""
        bk, ak = self._keys
        return -ak[-1] - bk[-1] if bk and ak else None

    def mid(self) -> float | None:
        """``(bid + ask) / 2`` in ticks, or None if a side is empty."""
        bk, ak = self._keys
        return (bk[-1] - ak[-1]) / 2 if bk and ak else None

    def micro_price(self) -> float | None:
        """Size-weighted mid ``(bid * ask_lots + ask * bid_lots) / (bid_lots + ask_lots)`` in
        ticks, from the touch: it leans toward the side with less size."""
        b, bq, a, aq = self.top()
        if b is None or a is None:
            return None
        return (b * aq + a * bq) / (bq + aq)

    def imbalance(self, levels: int = 1) -> float | None:
        """``(bid_lots - ask_lots) / (bid_lots + ask_lots)`` over the best ``levels`` levels of
        each side, in [-1, 1]; None if both sides are empty."""
        bids, asks = self.depth(levels)
        bq = sum(lv.qty for lv in bids)
        aq = sum(lv.qty for lv in asks)
        return (bq - aq) / (bq + aq) if bq + aq else None

    def depth(self, n: int | None = 10) -> tuple[list[Level], list[Level]]:
        """L2: the best ``n`` levels per side (all if None) as :class:`Level`, best first."""
        if n is not None and (type(n) is not int or n < 0):
            raise ValueError(f"n: must be None or an int >= 0, got {n!r}")
        out = []
        for s in (0, 1):
            levels = self._levels[s]
            keys = self._keys[s]
            sel = keys if n is None else keys[len(keys) - n :] if n else []
            rows = []
            for k in reversed(sel):
                p = k if s == 0 else -k
                lvl = levels[p]
                rows.append(Level(p, lvl[_LQTY], len(lvl[_LQ])))
            out.append(rows)
        return out[0], out[1]

    def depth_within(self, side: Side | int, band: int, reference: int | None = None) -> int:
        """Total lots resting on ``side`` at prices within ``band`` ticks of ``reference``
        (inclusive); ``reference`` defaults to that side's best price."""
        s = int(side)
        keys = self._keys[s]
        if not keys:
            return 0
        ref = (keys[-1] if s == 0 else -keys[-1]) if reference is None else reference
        levels = self._levels[s]
        total = 0
        for k in reversed(keys):
            p = k if s == 0 else -k
            if abs(p - ref) <= band:
                total += levels[p][_LQTY]
            elif (s == 0 and p < ref - band) or (s == 1 and p > ref + band):
                break
        return total

    def impact(self, side: Side | int, qty: int) -> Impact:
        """Cost of a market order of ``qty`` lots on ``side`` (BUY sweeps the asks), without
        touching the book: filled lots, exact notional (ticks x lots), VWAP, worst price,
        levels consumed and slippage of the VWAP against the touch (ticks)."""
        s = int(side)
        opp = s ^ 1
        keys = self._keys[opp]
        levels = self._levels[opp]
        need = qty
        notional = 0
        worst = None
        used = 0
        for k in reversed(keys):
            if need <= 0:
                break
            p = -k if opp else k
            x = min(need, levels[p][_LQTY])
            notional += p * x
            need -= x
            worst = p
            used += 1
        filled = qty - max(need, 0)
        if not filled:
            return Impact(qty, 0, 0, None, None, 0, None)
        vwap = notional / filled
        touch = -keys[-1] if opp else keys[-1]
        return Impact(qty, filled, notional, vwap, worst, used, abs(vwap - touch))

    def order(self, order_id: int) -> OrderInfo:
        """The live order ``order_id``; raises :class:`UnknownOrderError` if not live."""
        o = self._orders.get(order_id)
        if o is None:
            raise self._unknown(order_id)
        return _info(o)

    def orders(self, owner: Any = None, side: Side | int | None = None) -> list[OrderInfo]:
        """Live orders (optionally of one owner / side), best level first, FIFO in a level."""
        out = []
        for s in (0, 1) if side is None else (int(side),):
            levels = self._levels[s]
            for k in reversed(self._keys[s]):
                for o in levels[k if s == 0 else -k][_LQ].values():
                    if owner is None or o[_OWNER] == owner:
                        out.append(_info(o))
        return out

    def iter_levels(self, side: Side | int) -> Iterator[tuple[int, list[OrderInfo]]]:
        """Yield ``(price, [orders in FIFO order])`` for each level of ``side``, best first."""
        s = int(side)
        levels = self._levels[s]
        for k in reversed(self._keys[s]):
            p = k if s == 0 else -k
            yield p, [_info(o) for o in levels[p][_LQ].values()]

    def last_trade(self) -> Fill | None:
        """The most recent trade, or None."""
        return self._tape[-1] if self._tape else None

    def trades(self) -> list[Fill]:
        """The retained trade tape, oldest first (at most ``tape_size`` trades)."""
        return list(self._tape)

    def bars(self, interval_ns: int, start_ns: int | None = None) -> list[Bar]:
        """OHLC bars over the retained tape.

        Bar ``i`` covers ``[t0 + i * interval_ns, t0 + (i + 1) * interval_ns)`` where ``t0`` is
        ``start_ns`` (default: the first retained trade's time floored to a multiple of
        ``interval_ns``); trades before ``t0`` are ignored and bars without trades omitted.
        """
        if type(interval_ns) is not int or interval_ns < 1:
            raise ValueError(f"interval_ns: must be an int >= 1, got {interval_ns!r}")
        tape = self._tape
        if not tape:
            return []
        t0 = tape[0].ts // interval_ns * interval_ns if start_ns is None else start_ns
        out: list[Bar] = []
        cur = None
        o = h = lo = c = v = n = 0
        for f in tape:
            if f.ts < t0:
                continue
            b = (f.ts - t0) // interval_ns
            if b != cur:
                if cur is not None:
                    out.append(Bar(t0 + cur * interval_ns, o, h, lo, c, v, n))
                cur = b
                o = h = lo = f.price
                v = n = 0
            p = f.price
            if p > h:
                h = p
            if p < lo:
                lo = p
            c = p
            v += f.qty
            n += 1
        if cur is not None:
            out.append(Bar(t0 + cur * interval_ns, o, h, lo, c, v, n))
        return out
