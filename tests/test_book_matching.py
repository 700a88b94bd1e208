"""Matching rules of jaxmm.book.OrderBook, one rule per test, expected values by hand."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from jaxmm.book import (
    NS_PER_DAY,
    BookError,
    CancelReason,
    Instrument,
    OrderBook,
    OrderRejected,
    OrderStatus,
    OrderType,
    RejectRule,
    Side,
    STPMode,
    TimeInForce,
    UnknownOrderError,
    utc_session_end,
)

B, S = Side.BUY, Side.SELL


class Clock:
    def __init__(self, t: int = 1_000) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


def make(**kw) -> tuple[OrderBook, Clock]:
    clock = Clock()
    inst = kw.pop("instrument", Instrument("T", tick_size="0.01", max_qty=1_000))
    return OrderBook(inst, clock=clock, **kw), clock


def resting(book, side):
    return [(o.order_id, o.price, o.qty) for o in book.orders(side=side)]


# ---------------------------------------------------------------- price-time priority
def test_price_then_time_priority():
    book, _ = make()
    a = book.submit(S, 5, 101).order_id
    b = book.submit(S, 5, 100).order_id
    c = book.submit(S, 5, 100).order_id
    r = book.submit(B, 12, 101)
    # best price first (100), FIFO within it (b before c), then 101
    assert [(f.maker_id, f.price, f.qty) for f in r.fills] == [
        (b, 100, 5),
        (c, 100, 5),
        (a, 101, 2),
    ]
    assert resting(book, S) == [(a, 101, 3)]
    assert r.status is OrderStatus.FILLED and r.filled == 12 and r.remaining == 0


def test_trade_price_is_the_makers():
    book, _ = make()
    book.submit(B, 3, 99)
    r = book.submit(S, 3, 90)  # aggressive seller still trades at the bid's 99
    assert [f.price for f in r.fills] == [99]


def test_partially_filled_resting_order_keeps_its_place():
    book, _ = make()
    first = book.submit(B, 10, 100).order_id
    second = book.submit(B, 10, 100).order_id
    book.submit(S, 4, 100)  # partial fill of `first`
    assert resting(book, B) == [(first, 100, 6), (second, 100, 10)]
    r = book.submit(S, 8, 100)
    assert [(f.maker_id, f.qty) for f in r.fills] == [(first, 6), (second, 2)]
    assert book.order(second).filled == 2


def test_limit_remainder_rests_after_partial_fill():
    book, _ = make()
    book.submit(S, 4, 100)
    r = book.submit(B, 10, 101)
    assert r.status is OrderStatus.PARTIALLY_FILLED
    assert (r.filled, r.remaining, r.cancelled) == (4, 6, 0)
    assert book.best_bid() == 101 and book.best_ask() is None


# ---------------------------------------------------------------- order types
def test_ioc_cancels_the_rest_and_never_rests():
    book, _ = make()
    book.submit(S, 4, 100)
    r = book.submit(B, 10, 100, tif=TimeInForce.IOC)
    assert (r.status, r.filled, r.remaining, r.cancelled) == (OrderStatus.CANCELLED, 4, 0, 6)
    assert r.reason is CancelReason.UNFILLED
    assert book.best_bid() is None and len(book) == 0


def test_market_order_sweeps_levels_and_cancels_rest():
    book, _ = make()
    book.submit(S, 2, 100)
    book.submit(S, 3, 105)
    r = book.submit(B, 10, None, OrderType.MARKET, TimeInForce.IOC)
    assert [(f.price, f.qty) for f in r.fills] == [(100, 2), (105, 3)]
    assert r.cancelled == 5 and len(book) == 0


def test_market_ioc_on_empty_book_is_cancelled_not_rejected():
    book, _ = make()
    r = book.submit(S, 3, None, OrderType.MARKET, TimeInForce.IOC)
    assert r.status is OrderStatus.CANCELLED and r.cancelled == 3 and r.fills == []


def test_fok_is_all_or_none_and_atomic():
    book, _ = make()
    book.submit(S, 3, 100)
    book.submit(S, 3, 101)
    before = book.snapshot()
    with pytest.raises(OrderRejected, match=r"\[fok\]") as ei:
        book.submit(B, 7, 101, tif=TimeInForce.FOK)
    assert ei.value.rule is RejectRule.FOK
    assert book.snapshot() == before  # nothing touched, no order id consumed
    r = book.submit(B, 6, 101, tif=TimeInForce.FOK)
    assert r.status is OrderStatus.FILLED and r.filled == 6
    assert r.order_id == before.next_order_id


def test_fok_respects_limit_price():
    book, _ = make()
    book.submit(S, 3, 100)
    book.submit(S, 3, 102)
    with pytest.raises(OrderRejected, match=r"\[fok\]"):
        book.submit(B, 6, 101, tif=TimeInForce.FOK)  # only 3 lots at or below 101


def test_market_fok():
    book, _ = make()
    book.submit(S, 3, 100)
    with pytest.raises(OrderRejected, match=r"\[fok\]"):
        book.submit(B, 4, None, OrderType.MARKET, TimeInForce.FOK)
    assert book.submit(B, 3, None, OrderType.MARKET, TimeInForce.FOK).filled == 3


def test_post_only_rejected_if_it_would_cross_never_slid():
    book, _ = make()
    book.submit(S, 5, 100)
    before = book.snapshot()
    with pytest.raises(OrderRejected, match=r"\[post_only\]"):
        book.submit(B, 1, 100, post_only=True)
    assert book.snapshot() == before
    r = book.submit(B, 1, 99, post_only=True)  # one tick below: rests at exactly 99
    assert r.status is OrderStatus.NEW and book.best_bid() == 99


# ---------------------------------------------------------------- admission order
@pytest.mark.parametrize(
    ("kwargs", "rule"),
    [
        (dict(side=2, qty=1, price=100), RejectRule.SIDE),
        (dict(side=True, qty=1, price=100), RejectRule.SIDE),
        (dict(side=0.0, qty=1, price=100), RejectRule.SIDE),
        (dict(side="BUY", qty=1, price=100), RejectRule.SIDE),
        (dict(side=B, qty=1, price=100, tif=1.0), RejectRule.TYPE),
        (dict(side=B, qty=1, price=100, order_type=False), RejectRule.TYPE),
        (dict(side=B, qty=1, price=100, tif=7), RejectRule.TYPE),
        (dict(side=B, qty=1, price=100, order_type=5), RejectRule.TYPE),
        (dict(side=B, qty=1, price=100, tif=TimeInForce.IOC, post_only=True), RejectRule.TYPE),
        (dict(side=B, qty=1, price=None, order_type=OrderType.MARKET), RejectRule.TYPE),
        (dict(side=B, qty=1, price=100, stp=9), RejectRule.TYPE),
        (dict(side=B, qty=1, price=100.5), RejectRule.TICK),
        (dict(side=B, qty=1, price=0), RejectRule.TICK),
        (dict(side=B, qty=1, price=-3), RejectRule.TICK),
        (dict(side=B, qty=1, price=None), RejectRule.TICK),
        (
            dict(side=B, qty=1, price=100, order_type=OrderType.MARKET, tif=TimeInForce.IOC),
            RejectRule.TICK,
        ),
        (dict(side=B, qty=0, price=100), RejectRule.LOT),
        (dict(side=B, qty=-2, price=100), RejectRule.LOT),
        (dict(side=B, qty=1.5, price=100), RejectRule.LOT),
        (dict(side=B, qty=True, price=100), RejectRule.LOT),
        (dict(side=B, qty=1_001, price=100), RejectRule.SIZE),
        (dict(side=B, qty=1, price=100, tif=TimeInForce.GTD), RejectRule.EXPIRY),
        (dict(side=B, qty=1, price=100, tif=TimeInForce.GTD, expire_ns=1_000), RejectRule.EXPIRY),
        (dict(side=B, qty=1, price=100, expire_ns=5_000), RejectRule.EXPIRY),
        (dict(side=B, qty=1, price=101, post_only=True), RejectRule.POST_ONLY),
        (dict(side=B, qty=9, price=101, tif=TimeInForce.FOK), RejectRule.FOK),
    ],
)
def test_every_admission_rule_rejects_and_changes_nothing(kwargs, rule):
    book, _ = make()
    book.submit(S, 2, 101)
    book.submit(B, 2, 99)
    before = book.snapshot()
    with pytest.raises(OrderRejected, match=rf"\[{rule.value}\]") as ei:
        book.submit(**kwargs)
    assert ei.value.rule is rule
    assert isinstance(ei.value, ValueError)
    assert book.snapshot() == before


def test_rules_are_checked_in_documented_order():
    book, _ = make()
    # off-tick price AND zero qty AND bad expiry: tick wins (checked first)
    with pytest.raises(OrderRejected, match=r"\[tick\]"):
        book.submit(B, 0, 1.5, tif=TimeInForce.GTD, expire_ns=1)
    # zero qty AND oversize impossible; zero qty AND bad expiry: lot wins
    with pytest.raises(OrderRejected, match=r"\[lot\]"):
        book.submit(B, 0, 100, expire_ns=5)
    # size AND expiry: size wins
    with pytest.raises(OrderRejected, match=r"\[size\]"):
        book.submit(B, 5_000, 100, expire_ns=5)


def test_size_bounds_from_instrument():
    inst = Instrument("T", tick_size=1, min_qty=5, max_qty=10)
    book, _ = make(instrument=inst)
    with pytest.raises(OrderRejected, match=r"\[size\].*\[5, 10\]"):
        book.submit(B, 4, 100)
    with pytest.raises(OrderRejected, match=r"\[size\]"):
        book.submit(B, 11, 100)
    assert book.submit(B, 5, 100).remaining == 5


def test_numpy_integers_are_accepted_exactly():
    book, _ = make()
    r = book.submit(B, np.int64(3), np.int32(100))
    assert (r.remaining, book.best_bid()) == (3, 100)
    assert type(book.best_bid()) is int


# ---------------------------------------------------------------- cancel / modify
def test_cancel_and_errors_on_unknown_or_finished_orders():
    book, _ = make()
    a = book.submit(B, 5, 100).order_id
    assert book.cancel(a) == 5
    with pytest.raises(UnknownOrderError, match="not live"):
        book.cancel(a)
    with pytest.raises(UnknownOrderError, match="never assigned"):
        book.cancel(999)
    b = book.submit(S, 2, 100).order_id
    book.submit(B, 2, 100)  # fills b
    before = book.snapshot()
    with pytest.raises(UnknownOrderError, match=rf"order_id {b} is not live"):
        book.cancel(b)
    assert book.snapshot() == before
    assert isinstance(UnknownOrderError("x"), ValueError)


def test_modify_reduce_keeps_priority_increase_loses_it():
    book, clock = make()
    a = book.submit(B, 10, 100).order_id
    b = book.submit(B, 10, 100).order_id
    clock.t += 5
    book.modify(a, 4)  # reduce: stays first
    assert resting(book, B) == [(a, 100, 4), (b, 100, 10)]
    assert book.order(a).ts == 1_000
    book.modify(a, 6)  # increase: to the back, new timestamp
    assert resting(book, B) == [(b, 100, 10), (a, 100, 6)]
    assert book.order(a).ts == 1_005


def test_modify_price_loses_priority_and_may_trade():
    book, _ = make()
    a = book.submit(B, 5, 99).order_id
    b = book.submit(B, 5, 100).order_id
    book.modify(a, price=100)
    assert resting(book, B) == [(b, 100, 5), (a, 100, 5)]
    book.submit(S, 3, 102)
    r = book.modify(a, price=102, qty=5)  # crosses: trades 3 as taker, rests 2
    assert [(f.price, f.qty, f.taker_id) for f in r.fills] == [(102, 3, a)]
    assert (r.status, r.filled, r.remaining) == (OrderStatus.PARTIALLY_FILLED, 3, 2)
    assert book.best_bid() == 102 and book.order(a).filled == 3


def test_modify_rejections_leave_order_untouched():
    book, _ = make()
    book.submit(S, 1, 105)
    a = book.submit(B, 5, 100, post_only=True).order_id
    before = book.snapshot()
    with pytest.raises(OrderRejected, match=r"\[post_only\]"):
        book.modify(a, price=105)
    with pytest.raises(OrderRejected, match=r"\[lot\]"):
        book.modify(a, qty=0)
    with pytest.raises(OrderRejected, match=r"\[tick\]"):
        book.modify(a, price=100.5)
    with pytest.raises(OrderRejected, match=r"\[size\]"):
        book.modify(a, qty=10_000)
    with pytest.raises(BookError, match="qty and/or price"):
        book.modify(a)
    with pytest.raises(UnknownOrderError):
        book.modify(12345, qty=1)
    assert book.snapshot() == before


def test_mass_cancel_filters():
    book, _ = make()
    ids = {
        "b100a": book.submit(B, 1, 100, owner="a").order_id,
        "b99b": book.submit(B, 1, 99, owner="b").order_id,
        "s105a": book.submit(S, 1, 105, owner="a").order_id,
        "s110b": book.submit(S, 1, 110, owner="b").order_id,
    }
    assert book.cancel_all(owner="a", side=B) == [ids["b100a"]]
    assert book.cancel_all(min_price=100, max_price=106) == [ids["s105a"]]
    assert sorted(book.cancel_all()) == sorted([ids["b99b"], ids["s110b"]])
    assert len(book) == 0
    with pytest.raises(BookError, match="side"):
        book.cancel_all(side=3)


# ---------------------------------------------------------------- STP
@pytest.mark.parametrize(
    ("mode", "fills", "maker_left", "taker_cancelled"),
    [
        # resting: x (owner o, 3 lots) then y (owner p, 3 lots); taker owner o buys 5
        (STPMode.NONE, [("x", 3), ("y", 2)], ["y"], 0),
        (STPMode.CANCEL_TAKER, [], ["x", "y"], 5),
        (STPMode.CANCEL_MAKER, [("y", 3)], [], 0),  # x cancelled, 3 from y, 2 rest
        (STPMode.CANCEL_BOTH, [], ["y"], 5),
    ],
)
def test_self_trade_prevention(mode, fills, maker_left, taker_cancelled):
    book, _ = make()
    ids = {"x": book.submit(S, 3, 100, owner="o").order_id}
    ids["y"] = book.submit(S, 3, 100, owner="p").order_id
    name = {v: k for k, v in ids.items()}
    r = book.submit(B, 5, 100, owner="o", stp=mode)
    assert [(name[f.maker_id], f.qty) for f in r.fills] == fills
    assert [name[o.order_id] for o in book.orders(side=S)] == maker_left
    assert r.cancelled == taker_cancelled
    if taker_cancelled:
        assert r.reason is CancelReason.STP
    if mode is STPMode.CANCEL_MAKER:
        assert r.remaining == 2 and book.best_bid() == 100


def test_stp_default_from_book_and_anonymous_orders_never_stp():
    book, _ = make(stp=STPMode.CANCEL_TAKER)
    book.submit(S, 3, 100, owner="o")
    assert book.submit(B, 1, 100, owner="o").cancelled == 1
    assert book.submit(B, 1, 100).filled == 1  # owner None: no STP
    book2, _ = make(stp=STPMode.CANCEL_TAKER)
    book2.submit(S, 3, 100)
    assert book2.submit(B, 1, 100).filled == 1


def test_fok_feasibility_accounts_for_stp():
    book, _ = make()
    book.submit(S, 3, 100, owner="o")
    book.submit(S, 3, 100, owner="p")
    with pytest.raises(OrderRejected, match=r"\[fok\]"):  # cut at the first self order
        book.submit(B, 3, 100, owner="o", stp=STPMode.CANCEL_TAKER, tif=TimeInForce.FOK)
    # cancel-maker skips the self order: 3 lots from p are enough
    r = book.submit(B, 3, 100, owner="o", stp=STPMode.CANCEL_MAKER, tif=TimeInForce.FOK)
    assert r.filled == 3 and len(book) == 0


# ---------------------------------------------------------------- fees
def test_fees_exact_in_quote_currency():
    inst = Instrument("OPT", tick_size="0.05", lot_size=1, multiplier=100)
    book, _ = make(instrument=inst, maker_fee_bps="-0.5", taker_fee_bps="3.25")
    book.submit(S, 7, 41)  # 41 ticks = 2.05
    r = book.submit(B, 7, 41)
    (f,) = r.fills
    notional = Decimal("2.05") * 7 * 100  # 1435.00 USD
    assert inst.notional(41, 7) == notional
    assert f.maker_fee == notional * Decimal("-0.5") / 10_000 == Decimal("-0.07175")
    assert f.taker_fee == notional * Decimal("3.25") / 10_000 == Decimal("0.466375")
    assert f.maker_fee_raw == 41 * 7 * -5_000 and f.taker_fee_raw == 41 * 7 * 32_500


def test_fee_rate_resolution_and_validation():
    with pytest.raises(ValueError, match="maker_fee_bps.*1e-4 bp"):
        make(maker_fee_bps="0.00001")
    with pytest.raises(ValueError, match="taker_fee_bps"):
        make(taker_fee_bps=float("nan"))
    book, _ = make(maker_fee_bps=1.25)
    assert book.maker_fee_bps == 1.25


# ---------------------------------------------------------------- expiry
def test_gtd_expires_at_its_time_and_before_matching():
    book, clock = make()
    a = book.submit(S, 5, 100, tif=TimeInForce.GTD, expire_ns=2_000).order_id
    clock.t = 1_999
    assert a in book
    clock.t = 2_000  # expiry time reached: gone before the next order can match it
    r = book.submit(B, 5, 100)
    assert r.fills == [] and r.remaining == 5
    with pytest.raises(UnknownOrderError):
        book.cancel(a)


def test_day_orders_expire_at_session_end():
    clock = Clock(3 * NS_PER_DAY + 123)
    book = OrderBook(Instrument("T", tick_size=1), clock=clock)
    a = book.submit(B, 1, 10, tif=TimeInForce.DAY).order_id
    assert book.order(a).expire_ns == 4 * NS_PER_DAY == utc_session_end(clock.t)
    clock.t = 4 * NS_PER_DAY - 1
    assert book.expire() == []
    clock.t = 4 * NS_PER_DAY
    assert book.expire() == [a] and len(book) == 0


def test_expiry_of_cancelled_gtd_is_harmless():
    book, clock = make()
    a = book.submit(B, 1, 10, tif=TimeInForce.GTD, expire_ns=1_500).order_id
    book.cancel(a)
    clock.t = 2_000
    assert book.expire() == []


# ---------------------------------------------------------------- read side
def test_read_side_views():
    book, _ = make()
    assert (book.best_bid(), book.best_ask(), book.mid(), book.spread()) == (None,) * 4
    assert book.micro_price() is None and book.imbalance() is None
    book.submit(B, 6, 99)
    book.submit(B, 4, 98)
    book.submit(S, 2, 101)
    book.submit(S, 8, 103)
    assert book.top() == (99, 6, 101, 2)
    assert book.mid() == 100.0 and book.spread() == 2
    # micro-price by hand: (99*2 + 101*6) / 8 = 100.5
    assert book.micro_price() == pytest.approx((99 * 2 + 101 * 6) / 8)
    assert book.imbalance() == pytest.approx((6 - 2) / 8)
    assert book.imbalance(2) == pytest.approx((10 - 10) / 20)
    bids, asks = book.depth(1)
    assert [tuple(x) for x in bids] == [(99, 6, 1)] and [tuple(x) for x in asks] == [(101, 2, 1)]
    assert book.depth(0) == ([], [])
    assert book.depth_within(B, 1) == 10 and book.depth_within(S, 1) == 2
    assert book.depth_within(S, 2, reference=101) == 10
    imp = book.impact(B, 5)  # 2 @ 101 + 3 @ 103
    assert (imp.filled, imp.notional, imp.worst, imp.levels) == (5, 2 * 101 + 3 * 103, 103, 2)
    assert imp.vwap == pytest.approx((2 * 101 + 3 * 103) / 5)
    assert imp.slippage == pytest.approx((2 * 101 + 3 * 103) / 5 - 101)
    assert book.impact(S, 100).filled == 10  # more than the book holds
    assert book.impact(B, 5) == imp  # read-only


def test_last_trade_and_ohlc_bars():
    book, clock = make()
    assert book.last_trade() is None and book.bars(10) == []
    for t, p, q in [(1_000, 100, 1), (1_004, 103, 2), (1_009, 99, 1), (1_012, 101, 5)]:
        clock.t = t
        book.submit(S, q, p)
        book.submit(B, q, p)
    assert book.last_trade().price == 101
    bars = book.bars(10)
    assert [tuple(b) for b in bars] == [
        (1_000, 100, 103, 99, 99, 4, 3),
        (1_010, 101, 101, 101, 101, 5, 1),
    ]
    with pytest.raises(ValueError, match="interval_ns"):
        book.bars(0)


def test_constructor_validation():
    with pytest.raises(ValueError, match="instrument"):
        OrderBook("T")
    with pytest.raises(ValueError, match="stp"):
        OrderBook(Instrument("T", tick_size=1), stp=7)
    with pytest.raises(ValueError, match="tape_size"):
        OrderBook(Instrument("T", tick_size=1), tape_size=0)


def test_book_and_execution_do_not_import_jax_or_numpy():
    """They run at the edge: pure Python, no JAX (or NumPy) import anywhere inside."""
    import ast
    import pathlib

    import jaxmm

    root = pathlib.Path(jaxmm.__file__).parent
    files = list((root / "book").glob("*.py")) + list((root / "execution").glob("*.py"))
    assert len(files) >= 10
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for n in names:
                assert n.split(".")[0] not in {"jax", "jaxlib", "numpy", "equinox"}, (f, n)
