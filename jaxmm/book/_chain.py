"""Option-chain hierarchy: root -> underlying -> expiration -> strike -> (call, put) books."""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from functools import partial
from typing import Any, NamedTuple

from ._book import OrderBook, Subscription, utc_session_end
from ._instrument import Instrument, to_decimal
from ._symbols import OptionSymbol, format_strike, parse_expiry
from ._types import BookError, Side, STPMode

__all__ = ["OptionChainBook", "StrikeQuotes", "ChainTotals"]


class StrikeQuotes(NamedTuple):
    """Best quotes of the call and put at one strike. Prices are ``Decimal`` in the quote
    currency (None for an empty side), sizes in lots (0 for an empty side)."""

    strike: Decimal
    call_bid: Decimal | None
    call_bid_qty: int
    call_ask: Decimal | None
    call_ask_qty: int
    put_bid: Decimal | None
    put_bid_qty: int
    put_ask: Decimal | None
    put_ask_qty: int


class ChainTotals(NamedTuple):
    """Aggregates over a set of books: book and live-order counts, resting lots per side."""

    books: int
    orders: int
    bid_lots: int
    ask_lots: int


class _Spec(NamedTuple):
    tick_size: Any
    lot_size: Any
    multiplier: Any
    min_qty: int
    max_qty: int | None
    quote_currency: str


class OptionChainBook:
    """Many option order books under one root, addressed by ``UNDERLYING-YYYYMMDD-STRIKE-C|P``.

    Each underlying carries its contract specification (tick, lot, multiplier, size bounds),
    each (underlying, expiry, strike) owns a call book and a put book. All books share the
    root's clock, STP default, fees and session end.

    Args:
        clock, stp, maker_fee_bps, taker_fee_bps, session_end, tape_size: passed to every
            :class:`OrderBook` created.

    Example:
        >>> chain = OptionChainBook(clock=lambda: 0)
        >>> chain.add_underlying("BTC", tick_size="0.5", multiplier=1)
        >>> _ = chain.add_expiry("BTC", "20261225")
        >>> _ = chain.add_strikes("BTC", "20261225", [90000, 100000, 110000])
        >>> book = chain.book("BTC-20261225-100000-C")
        >>> _ = book.submit(Side.BUY, 1, book.instrument.price_to_ticks(1250))
        >>> chain.atm_strike("BTC", "20261225", 103_000)
        Decimal('100000')
        >>> chain.quotes("BTC", "20261225")[1].call_bid
        Decimal('1250.0')
    """

    def __init__(
        self,
        *,
        clock: Callable[[], int] = time.time_ns,
        stp: STPMode = STPMode.NONE,
        maker_fee_bps: Any = 0,
        taker_fee_bps: Any = 0,
        session_end: Callable[[int], int] = utc_session_end,
        tape_size: int = 10_000,
    ) -> None:
        self._book_kwargs = dict(
            clock=clock,
            stp=stp,
            maker_fee_bps=maker_fee_bps,
            taker_fee_bps=taker_fee_bps,
            session_end=session_end,
            tape_size=tape_size,
        )
        # validate once, eagerly (fees, stp, tape size)
        OrderBook(Instrument("_", tick_size=1), **self._book_kwargs)
        self._specs: dict[str, _Spec] = {}
        self._tree: dict[str, dict[_dt.date, dict[Decimal, tuple[OrderBook, OrderBook]]]] = {}
        self._books: dict[str, OrderBook] = {}
        self._subs: list[tuple[Callable[[str, Any], Any], bool, bool, str]] = []
        self._book_subs: dict[str, list[Subscription]] = {}

    # ------------------------------------------------------------------ structure
    def add_underlying(
        self,
        underlying: str,
        *,
        tick_size: Any,
        lot_size: Any = 1,
        multiplier: Any = 1,
        min_qty: int = 1,
        max_qty: int | None = None,
        quote_currency: str = "USD",
    ) -> None:
        """Register an underlying and the contract specification of its options."""
        OptionSymbol.make(underlying, "20000101", 1, "C")  # validates the name
        if underlying in self._tree:
            raise BookError(f"underlying: {underlying!r} already exists")
        spec = _Spec(tick_size, lot_size, multiplier, min_qty, max_qty, quote_currency)
        Instrument(underlying, tick_size, lot_size, multiplier, min_qty, max_qty, quote_currency)
        self._specs[underlying] = spec
        self._tree[underlying] = {}

    def underlyings(self) -> list[str]:
        """Underlyings, in insertion order."""
        return list(self._tree)

    def _expiries_of(self, underlying: str) -> dict:
        try:
            return self._tree[underlying]
        except KeyError:
            raise BookError(f"underlying: {underlying!r} is not in the chain") from None

    def _strikes_of(self, underlying: str, expiry: Any) -> dict:
        exps = self._expiries_of(underlying)
        e = parse_expiry(expiry)
        try:
            return exps[e]
        except KeyError:
            raise BookError(f"expiry: {e.isoformat()} is not listed for {underlying}") from None

    def add_expiry(self, underlying: str, expiry: Any) -> _dt.date:
        """List an expiration date (``date`` or ``'YYYYMMDD'``) for ``underlying``."""
        exps = self._expiries_of(underlying)
        e = parse_expiry(expiry)
        if e in exps:
            raise BookError(f"expiry: {e.isoformat()} already listed for {underlying}")
        exps[e] = {}
        return e

    def expiries(self, underlying: str) -> list[_dt.date]:
        """Listed expirations of ``underlying``, ascending."""
        return sorted(self._expiries_of(underlying))

    def add_strike(
        self, underlying: str, expiry: Any, strike: Any, *, tick_size: Any = None
    ) -> tuple[OrderBook, OrderBook]:
        """Create the call and put books at ``strike``; ``tick_size`` overrides the
        underlying's (e.g. a coarser tick above a premium threshold). Returns (call, put)."""
        strikes = self._strikes_of(underlying, expiry)
        k = Decimal(format_strike(strike))
        if k in strikes:
            raise BookError(f"strike: {k} already listed for {underlying} {expiry}")
        spec = self._specs[underlying]
        pair = []
        for right in ("C", "P"):
            sym = str(OptionSymbol.make(underlying, expiry, k, right))
            inst = Instrument(
                sym,
                spec.tick_size if tick_size is None else tick_size,
                spec.lot_size,
                spec.multiplier,
                spec.min_qty,
                spec.max_qty,
                spec.quote_currency,
            )
            pair.append(OrderBook(inst, **self._book_kwargs))
        strikes[k] = (pair[0], pair[1])
        for b in pair:
            self._books[b.symbol] = b
            self._attach(b)
        return pair[0], pair[1]

    def add_strikes(
        self, underlying: str, expiry: Any, strikes: Any
    ) -> list[tuple[OrderBook, OrderBook]]:
        """``add_strike`` for each strike; all-or-nothing on invalid or duplicate strikes."""
        have = self._strikes_of(underlying, expiry)
        ks = [Decimal(format_strike(s)) for s in strikes]
        dup = [k for k in ks if k in have]
        if dup or len(set(ks)) != len(ks):
            raise BookError(f"strikes: duplicates {dup or ks} for {underlying} {expiry}")
        return [self.add_strike(underlying, expiry, k) for k in ks]

    def strikes(self, underlying: str, expiry: Any) -> list[Decimal]:
        """Listed strikes, ascending."""
        return sorted(self._strikes_of(underlying, expiry))

    def _drop(self, books: list[OrderBook], force: bool, what: str) -> None:
        live = sum(len(b) for b in books)
        if live and not force:
            raise BookError(f"{what} has {live} resting orders; cancel them or pass force=True")
        for b in books:
            if len(b):
                b.cancel_all()
            for sub in self._book_subs.pop(b.symbol, []):
                sub.close()
            del self._books[b.symbol]

    def remove_strike(
        self, underlying: str, expiry: Any, strike: Any, *, force: bool = False
    ) -> None:
        """Delist a strike (both books). Resting orders: error unless ``force`` (cancels them)."""
        strikes = self._strikes_of(underlying, expiry)
        k = Decimal(format_strike(strike))
        if k not in strikes:
            raise BookError(f"strike: {k} is not listed for {underlying} {expiry}")
        self._drop(list(strikes[k]), force, f"strike {k}")
        del strikes[k]

    def remove_expiry(self, underlying: str, expiry: Any, *, force: bool = False) -> None:
        """Delist an expiration and all its strikes (same ``force`` rule)."""
        strikes = self._strikes_of(underlying, expiry)
        self._drop([b for pair in strikes.values() for b in pair], force, f"expiry {expiry}")
        del self._tree[underlying][parse_expiry(expiry)]

    def remove_underlying(self, underlying: str, *, force: bool = False) -> None:
        """Remove an underlying and everything under it (same ``force`` rule)."""
        books = [b for _, b in self.books(underlying)]
        self._drop(books, force, f"underlying {underlying}")
        del self._tree[underlying]
        del self._specs[underlying]

    # ------------------------------------------------------------------ lookup
    def book(self, symbol: str | OptionSymbol) -> OrderBook:
        """The book of ``symbol`` (string or :class:`OptionSymbol`); strict errors."""
        key = symbol if isinstance(symbol, str) else str(symbol)
        b = self._books.get(key)
        if b is None:
            OptionSymbol.parse(key)  # raises on a malformed symbol
            raise BookError(f"symbol: {key!r} is not listed")
        return b

    __getitem__ = book

    def __contains__(self, symbol: object) -> bool:
        return (symbol if isinstance(symbol, str) else str(symbol)) in self._books

    def __len__(self) -> int:
        return len(self._books)

    def __iter__(self) -> Iterator[str]:
        return iter(self._books)

    def books(
        self, underlying: str | None = None, expiry: Any = None
    ) -> list[tuple[OptionSymbol, OrderBook]]:
        """``(OptionSymbol, book)`` pairs, ordered by underlying, expiry, strike, call then put."""
        out = []
        unds = self.underlyings() if underlying is None else [underlying]
        for u in unds:
            exps = self._expiries_of(u)
            sel = sorted(exps) if expiry is None else [parse_expiry(expiry)]
            for e in sel:
                strikes = self._strikes_of(u, e)
                for k in sorted(strikes):
                    c, p = strikes[k]
                    out.append((OptionSymbol(u, e, k, "C"), c))
                    out.append((OptionSymbol(u, e, k, "P"), p))
        return out

    # ------------------------------------------------------------------ views
    def atm_strike(self, underlying: str, expiry: Any, underlying_price: Any) -> Decimal:
        """Listed strike nearest to ``underlying_price`` (ties go to the lower strike)."""
        s = to_decimal("underlying_price", underlying_price)
        if s <= 0:
            raise ValueError(f"underlying_price: must be > 0, got {underlying_price!r}")
        strikes = self.strikes(underlying, expiry)
        if not strikes:
            raise BookError(f"no strikes listed for {underlying} {expiry}")
        return min(strikes, key=lambda k: (abs(k - s), k))

    def quotes(self, underlying: str, expiry: Any) -> list[StrikeQuotes]:
        """Best bid/ask (and sizes) of the call and put at every strike, ascending strike."""
        strikes = self._strikes_of(underlying, expiry)
        rows = []
        for k in sorted(strikes):
            vals: list[Any] = [k]
            for b in strikes[k]:
                bid, bq, ask, aq = b.top()
                to_p = b.instrument.ticks_to_price
                vals += [
                    None if bid is None else to_p(bid),
                    bq,
                    None if ask is None else to_p(ask),
                    aq,
                ]
            rows.append(StrikeQuotes(*vals))
        return rows

    def totals(self, underlying: str | None = None, expiry: Any = None) -> ChainTotals:
        """Book count, live orders and resting lots per side over the selection."""
        n = orders = bl = al = 0
        for _, b in self.books(underlying, expiry):
            n += 1
            orders += len(b)
            bl += sum(lv.qty for lv in b.depth(None)[0])
            al += sum(lv.qty for lv in b.depth(None)[1])
        return ChainTotals(n, orders, bl, al)

    def cancel_all(
        self,
        underlying: str | None = None,
        expiry: Any = None,
        *,
        owner: Any = None,
        side: Side | int | None = None,
    ) -> dict[str, list[int]]:
        """Mass cancel per expiry / per underlying / everything, optionally for one owner or
        side. Returns ``{symbol: [cancelled order ids]}`` for books where something went."""
        out = {}
        for sym, b in self.books(underlying, expiry):
            ids = b.cancel_all(side=side, owner=owner)
            if ids:
                out[str(sym)] = ids
        return out

    # ------------------------------------------------------------------ events
    def subscribe(
        self,
        callback: Callable[[str, Any], Any],
        *,
        batch: bool = False,
        levels: bool = True,
        order_updates: str = "all",
    ) -> Callable[[], None]:
        """Call ``callback(symbol, event)`` for every event of every book, including books
        listed later (``batch=True``: ``callback(symbol, events)`` once per book call;
        ``levels`` / ``order_updates``: see :meth:`OrderBook.subscribe`). Returns a function
        that unsubscribes."""
        if not callable(callback):
            raise ValueError("callback: must be callable")
        if order_updates not in ("all", "final"):
            raise ValueError(f"order_updates: must be 'all' or 'final', got {order_updates!r}")
        entry = (callback, batch, levels, order_updates)
        self._subs.append(entry)
        for b in self._books.values():
            self._attach_one(b, entry)

        def close() -> None:
            if entry in self._subs:
                self._subs.remove(entry)
            for subs in self._book_subs.values():
                for s in [s for s in subs if s.callback.func is callback]:
                    s.close()
                    subs.remove(s)

        return close

    def _attach(self, b: OrderBook) -> None:
        for entry in self._subs:
            self._attach_one(b, entry)

    def _attach_one(
        self, b: OrderBook, entry: tuple[Callable[[str, Any], Any], bool, bool, str]
    ) -> None:
        cb, batch, levels, order_updates = entry
        sub = b.subscribe(
            partial(cb, b.symbol), batch=batch, levels=levels, order_updates=order_updates
        )
        self._book_subs.setdefault(b.symbol, []).append(sub)
