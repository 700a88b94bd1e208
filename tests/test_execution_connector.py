"""InProcessExchange / InProcessConnector: real fills, routing, status, latency."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from jaxmm.book import (
    CancelReason,
    Instrument,
    LevelUpdate,
    OptionChainBook,
    OrderBook,
    OrderStatus,
    OrderType,
    Side,
    STPMode,
    TimeInForce,
)
from jaxmm.execution import (
    BatchConnector,
    CancelRequest,
    ExchangeConnector,
    InProcessConnector,
    InProcessExchange,
    LatencyTracker,
    ModifyRequest,
    OrderRequest,
)

B, S = Side.BUY, Side.SELL


def venue(**kw):
    book = OrderBook(Instrument("X", tick_size="0.01", multiplier=10), **kw)
    x = InProcessExchange(book)
    return book, x


def run(coro):
    return asyncio.run(coro)


def test_protocol_conformance():
    _, x = venue()
    c = InProcessConnector(x, owner="mm")
    assert isinstance(c, ExchangeConnector) and isinstance(c, BatchConnector)


def test_resting_quote_really_fills_and_maker_gets_the_fill():
    book, x = venue(maker_fee_bps="-1", taker_fee_bps="5")
    mm = InProcessConnector(x, owner="mm")
    taker = InProcessConnector(x, owner="t")

    async def main():
        mm_fills, t_fills = [], []
        await mm.subscribe_fills(mm_fills.append)
        await taker.subscribe_fills(t_fills.append)
        ack = await mm.submit(OrderRequest("X", S, 5, 1000, client_id="c1"))
        hit = await taker.submit(OrderRequest("X", B, 3, 1000))
        return ack, hit, mm_fills, t_fills

    ack, hit, mm_fills, t_fills = run(main())
    assert ack.accepted and ack.status is OrderStatus.NEW and ack.client_id == "c1"
    assert (hit.status, hit.filled) == (OrderStatus.FILLED, 3)
    (mf,) = mm_fills
    assert (mf.order_id, mf.side, mf.price, mf.qty, mf.liquidity) == (
        ack.order_id,
        S,
        1000,
        3,
        "maker",
    )
    notional = Decimal("10.00") * 3 * 10  # 1000 ticks of 0.01 = 10.00; multiplier 10
    assert mf.fee == notional * Decimal(-1) / 10_000
    assert [f.key for f in hit.fills] == [f.key for f in t_fills]  # taker fill in ack and push
    assert t_fills[0].fee == notional * Decimal(5) / 10_000
    assert book.order(ack.order_id).qty == 2


def test_rejections_are_acks_not_exceptions():
    book, x = venue()
    c = InProcessConnector(x, owner="mm")
    other = InProcessConnector(x, owner="o")

    async def main():
        bad_tick = await c.submit(OrderRequest("X", B, 1, 0))
        bad_sym = await c.submit(OrderRequest("NOPE", B, 1, 10))
        theirs = await other.submit(OrderRequest("X", B, 1, 10))
        foreign_cancel = await c.cancel("X", theirs.order_id)
        foreign_modify = await c.modify("X", theirs.order_id, qty=5)
        unknown = await c.cancel("X", 999)
        post = await c.submit(OrderRequest("X", S, 1, 10, post_only=True))
        return bad_tick, bad_sym, foreign_cancel, foreign_modify, unknown, post

    acks = run(main())
    assert [a.accepted for a in acks] == [False] * 6
    assert [a.reject_rule for a in acks] == [
        "tick",
        "symbol",
        "unknown_order",
        "unknown_order",
        "unknown_order",
        "post_only",
    ]
    assert "rejected [tick]" in acks[0].message
    assert len(book) == 1  # only the other participant's order


def test_modify_and_cancel_acks():
    book, x = venue()
    c = InProcessConnector(x, owner="mm")

    async def main():
        a = await c.submit(OrderRequest("X", B, 5, 100))
        m = await c.modify("X", a.order_id, qty=3)
        p = await c.modify("X", a.order_id, price=101)
        k = await c.cancel("X", a.order_id)
        again = await c.cancel("X", a.order_id)
        return m, p, k, again

    m, p, k, again = run(main())
    assert (m.accepted, m.remaining, m.cum_filled) == (True, 3, 0)
    assert (p.accepted, p.remaining) == (True, 3)
    assert (k.accepted, k.status, k.cancelled) == (True, OrderStatus.CANCELLED, 3)
    assert not again.accepted and again.reject_rule == "unknown_order"
    assert len(book) == 0


def test_order_updates_status_open_orders_and_cancel_all():
    book, x = venue()
    mm = InProcessConnector(x, owner="mm")
    t = InProcessConnector(x, owner="t")

    async def main():
        ups = []
        await mm.subscribe_orders(ups.append)
        a = await mm.submit(OrderRequest("X", S, 2, 100))
        b = await mm.submit(OrderRequest("X", S, 2, 101))
        c = await mm.submit(OrderRequest("X", B, 1, 90))
        await t.submit(OrderRequest("X", B, 2, 100))  # fills a
        # our own buy crossing our own sell with STP cancel-maker: the sell is cancelled
        await mm.submit(OrderRequest("X", B, 1, 101, stp=STPMode.CANCEL_MAKER))
        st_a = await mm.order_status("X", a.order_id)
        st_c = await mm.order_status("X", c.order_id)
        foreign = await t.order_status("X", c.order_id)
        opens = await mm.open_orders()
        gone = await mm.cancel_all(side=B)
        return ups, a, b, c, st_a, st_c, foreign, opens, gone

    ups, a, b, c, st_a, st_c, foreign, opens, gone = run(main())
    assert st_a.status is OrderStatus.FILLED and st_a.filled == 2
    assert st_c.status is OrderStatus.NEW and st_c.remaining == 1
    assert foreign is None  # not theirs
    stp = [u for u in ups if u.order_id == b.order_id and u.status is OrderStatus.CANCELLED]
    assert stp and stp[0].reason is CancelReason.STP
    assert sorted(o.order_id for o in opens) == sorted([c.order_id, c.order_id + 2])
    assert sorted(i for _, i in gone) == sorted(o.order_id for o in opens)
    assert len(book) == 0


def test_book_snapshot_and_public_book_stream_over_a_chain():
    chain = OptionChainBook(clock=lambda: 0)
    chain.add_underlying("BTC", tick_size="0.5")
    chain.add_expiry("BTC", "20261225")
    chain.add_strikes("BTC", "20261225", [100000])
    c = InProcessConnector(chain, owner="mm")
    sym = "BTC-20261225-100000-C"

    async def main():
        seen = []
        await c.subscribe_book(sym, seen.append)
        await c.submit(OrderRequest(sym, B, 2, 100))
        await c.submit(OrderRequest(sym, B, 1, 100))
        snap = await c.book_snapshot(sym)
        return seen, snap

    seen, snap = run(main())
    assert [(e.price, e.qty, e.count) for e in seen if isinstance(e, LevelUpdate)] == [
        (100, 2, 1),
        (100, 3, 2),
    ]
    assert [tuple(lv) for lv in snap.bids] == [(100, 3, 2)] and snap.asks == ()
    assert snap.seq == chain.book(sym).seq
    with pytest.raises(ValueError, match="symbol"):
        run(c.book_snapshot("BTC-20261225-1-C"))


def test_batch_execute_in_order():
    book, x = venue()
    c = InProcessConnector(x, owner="mm")

    async def main():
        a = await c.submit(OrderRequest("X", B, 5, 100))
        return await c.execute(
            [
                ModifyRequest("X", a.order_id, 2, None),
                OrderRequest("X", S, 1, 105),
                CancelRequest("X", a.order_id),
                CancelRequest("X", a.order_id),
            ]
        )

    acks = run(main())
    assert [a.accepted for a in acks] == [True, True, True, False]
    assert book.best_bid() is None and book.best_ask() == 105


def test_market_and_ioc_map_one_to_one():
    book, x = venue()
    mm, t = InProcessConnector(x, owner="mm"), InProcessConnector(x, owner="t")

    async def main():
        await mm.submit(OrderRequest("X", S, 2, 100))
        ioc = await t.submit(OrderRequest("X", B, 5, 100, tif=TimeInForce.IOC))
        mkt = await t.submit(
            OrderRequest("X", B, 1, None, order_type=OrderType.MARKET, tif=TimeInForce.IOC)
        )
        fok = await t.submit(OrderRequest("X", B, 1, 100, tif=TimeInForce.FOK))
        return ioc, mkt, fok

    ioc, mkt, fok = run(main())
    assert (ioc.filled, ioc.cancelled, ioc.status) == (2, 3, OrderStatus.CANCELLED)
    assert (mkt.filled, mkt.cancelled) == (0, 1)
    assert not fok.accepted and fok.reject_rule == "fok"


def test_owner_must_be_unique_and_not_none():
    _, x = venue()
    InProcessConnector(x, owner="mm")
    with pytest.raises(ValueError, match="owner"):
        InProcessConnector(x, owner="mm")
    with pytest.raises(ValueError, match="owner"):
        InProcessConnector(x, owner=None)
    with pytest.raises(ValueError, match="entry_latency_s"):
        InProcessConnector(x, owner="z", entry_latency_s=-1)


# ---------------------------------------------------------------- latency
def test_entry_latency_lets_a_faster_participant_in_first():
    book, x = venue()
    slow = InProcessConnector(x, owner="slow", entry_latency_s=0.03)
    fast = InProcessConnector(x, owner="fast")

    async def main():
        await fast.submit(OrderRequest("X", S, 1, 100))
        slow_task = asyncio.create_task(slow.submit(OrderRequest("X", B, 1, 100)))
        await asyncio.sleep(0)  # the slow buy has been sent ...
        grab = await fast.submit(OrderRequest("X", B, 1, 100, stp=STPMode.NONE))
        slow_ack = await slow_task  # ... but arrives after the fast one
        return grab, slow_ack

    grab, slow_ack = run(main())
    assert grab.status is OrderStatus.FILLED  # self-trade allowed with STP none
    assert slow_ack.status is OrderStatus.NEW and slow_ack.filled == 0


def test_requests_keep_their_order_and_round_trip_includes_both_delays():
    book, x = venue()
    tracker = LatencyTracker()
    c = InProcessConnector(
        x, owner="mm", entry_latency_s=0.01, response_latency_s=0.02, tracker=tracker
    )

    async def main():
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        acks = await asyncio.gather(*(c.submit(OrderRequest("X", B, 1, 100 + i)) for i in range(5)))
        return acks, loop.time() - t0

    acks, elapsed = run(main())
    assert [a.order_id for a in acks] == [1, 2, 3, 4, 5]  # sent order = arrival order
    assert [o.price for o in book.orders()] == [104, 103, 102, 101, 100]
    assert elapsed >= 0.03 - 1e-3
    st = tracker.stats("submit")
    assert st.count == 5 and st.min >= 29_000_000  # ns


def test_pushed_fills_arrive_after_response_latency():
    book, x = venue()
    mm = InProcessConnector(x, owner="mm", response_latency_s=0.03)
    t = InProcessConnector(x, owner="t")

    async def main():
        fills = []
        await mm.subscribe_fills(fills.append)
        book.submit(S, 1, 100, owner="mm")  # resting order of mm placed directly
        await t.submit(OrderRequest("X", B, 1, 100))
        n_now = len(fills)
        await asyncio.sleep(0.05)
        return n_now, len(fills)

    assert run(main()) == (0, 1)


def test_cancelled_request_does_not_block_later_ones():
    _, x = venue()
    c = InProcessConnector(x, owner="mm", entry_latency_s=0.02)

    async def main():
        t1 = asyncio.create_task(c.submit(OrderRequest("X", B, 1, 100)))
        await asyncio.sleep(0)
        t1.cancel()
        ack = await asyncio.wait_for(c.submit(OrderRequest("X", B, 1, 101)), 30.0)
        return ack

    assert run(main()).accepted
