"""Book events: sequence numbers, callbacks, asyncio queues, snapshot + deltas rebuild."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from jaxmm.book import (
    BookError,
    CancelReason,
    Fill,
    Instrument,
    LevelUpdate,
    OrderBook,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
    STPMode,
    TimeInForce,
)

B, S = Side.BUY, Side.SELL
INST = Instrument("T", tick_size=1)


def test_event_stream_of_one_trade_in_order():
    book = OrderBook(INST, clock=lambda: 7)
    evs = []
    book.subscribe(evs.append)
    book.submit(S, 5, 100, owner="m")
    book.submit(B, 2, 100, owner="t")
    kinds = [type(e).__name__ for e in evs]
    assert kinds == [
        "OrderUpdate",  # maker rests
        "LevelUpdate",  # ask 100: 5 lots, 1 order
        "Fill",
        "OrderUpdate",  # maker partially filled, still in book with 3
        "LevelUpdate",  # ask 100: 3 lots
        "OrderUpdate",  # taker filled
    ]
    assert [e.seq for e in evs] == [1, 2, 3, 4, 5, 6]
    assert evs[1] == LevelUpdate(2, 7, S, 100, 5, 1)
    fill = evs[2]
    assert (fill.price, fill.qty, fill.maker_owner, fill.taker_owner, fill.aggressor) == (
        100,
        2,
        "m",
        "t",
        B,
    )
    assert evs[3].status is OrderStatus.PARTIALLY_FILLED and evs[3].remaining == 3
    assert evs[3].in_book and not evs[3].requeued
    assert evs[5].status is OrderStatus.FILLED and not evs[5].in_book
    assert book.seq == 6


def test_no_subscriber_no_events_and_results_carry_seq_zero():
    book = OrderBook(INST, clock=lambda: 0)
    book.submit(S, 5, 100)
    r = book.submit(B, 1, 100)
    assert book.seq == 0 and r.fills[0].seq == 0


def test_cancel_reasons_in_events():
    clock = [0]
    book = OrderBook(INST, clock=lambda: clock[0])
    evs = []
    sub = book.subscribe(evs.append)
    a = book.submit(B, 1, 90).order_id
    book.cancel(a)
    book.submit(B, 1, 91)
    book.cancel_all()
    book.submit(B, 1, 92, tif=TimeInForce.GTD, expire_ns=5)
    clock[0] = 5
    book.expire()
    book.submit(S, 3, None, OrderType.MARKET, TimeInForce.IOC)
    book.submit(S, 1, 95, owner="x")
    book.submit(B, 1, 95, owner="x", stp=STPMode.CANCEL_MAKER)
    reasons = [e.reason for e in evs if isinstance(e, OrderUpdate) and not e.in_book]
    assert reasons == [
        CancelReason.USER,
        CancelReason.MASS,
        CancelReason.EXPIRED,
        CancelReason.UNFILLED,  # the market sell found no bids
        CancelReason.STP,  # the resting sell of owner x (the buy then rests)
    ]
    sub.close()
    n = len(evs)
    book.submit(B, 1, 50)
    assert len(evs) == n  # unsubscribed


def test_callback_exceptions_are_logged_not_raised(caplog):
    book = OrderBook(INST, clock=lambda: 0)
    seen = []

    def bad(ev):
        raise RuntimeError("boom")

    book.subscribe(bad)
    book.subscribe(seen.append)
    with caplog.at_level(logging.ERROR, logger="jaxmm.book"):
        r = book.submit(B, 1, 100)
    assert r.order_id == 1 and book.best_bid() == 100  # the operation completed
    assert book.subscriber_errors == 2 and len(seen) == 2
    assert "boom" in caplog.text


def test_reentrant_callback_keeps_sequence_order():
    book = OrderBook(INST, clock=lambda: 0)
    seqs = []

    def cb(ev):
        seqs.append(ev.seq)
        # react to our resting sell by placing another order from inside the callback
        if isinstance(ev, OrderUpdate) and ev.side is S and ev.in_book and ev.order_id == 1:
            book.submit(B, 1, 100)

    book.subscribe(cb)
    book.submit(S, 1, 100)
    assert seqs == sorted(seqs) == list(range(1, len(seqs) + 1))
    assert len(book) == 0  # the nested buy traded


def test_batch_subscription_gets_one_list_per_call():
    book = OrderBook(INST, clock=lambda: 0)
    batches = []
    book.subscribe(batches.append, batch=True)
    book.submit(S, 2, 100)
    book.submit(B, 2, 100)
    assert [len(b) for b in batches] == [2, 4]
    assert all(isinstance(e, Fill | OrderUpdate | LevelUpdate) for b in batches for e in b)


def test_asyncio_queue_subscription():
    async def main():
        book = OrderBook(INST, clock=lambda: 0)
        sub = book.subscribe_queue()
        book.submit(S, 2, 100)
        book.submit(B, 1, 100)
        got = []
        while not sub.queue.empty():
            got.append(await sub.queue.get())
        sub.close()
        return got

    got = asyncio.run(main())
    assert [e.seq for e in got] == list(range(1, 7))
    assert sum(isinstance(e, Fill) for e in got) == 1


def test_bounded_queue_overflow_is_counted_not_raised():
    async def main():
        book = OrderBook(INST, clock=lambda: 0)
        with book.subscribe_queue(maxsize=1) as sub:
            book.submit(S, 2, 100)  # two events, room for one
            return book.subscriber_errors, sub.queue.qsize()

    assert asyncio.run(main()) == (1, 1)


def _random_flow(book, rng, n):
    for _ in range(n):
        u = rng.random()
        live = [o.order_id for o in book.orders()]
        if u < 0.5 or not live:
            book.submit(
                Side(rng.randrange(2)),
                rng.randint(1, 9),
                rng.randint(95, 105),
                owner=rng.choice([None, "a", "b"]),
                stp=STPMode(rng.randrange(4)),
            )
        elif u < 0.7:
            book.cancel(rng.choice(live))
        elif u < 0.9:
            book.modify(rng.choice(live), qty=rng.randint(1, 9), price=rng.randint(95, 105))
        else:
            book.submit(Side(rng.randrange(2)), rng.randint(1, 20), None, OrderType.MARKET, 3)


@pytest.mark.parametrize("seed", [0, 1])
def test_snapshot_plus_deltas_rebuilds_the_book(seed):
    rng = random.Random(seed)
    t = [0]

    def clock():
        t[0] += 1
        return t[0]

    book = OrderBook(INST, clock=clock)
    _random_flow(book, rng, 200)  # history nobody recorded
    events = []
    book.subscribe(events.append)  # subscribe first ...
    _random_flow(book, rng, 50)
    snap = book.snapshot()  # ... then snapshot; events up to snap.seq are already in it
    _random_flow(book, rng, 300)
    replica = OrderBook.from_snapshot(INST, snap, clock=clock)
    for e in events:
        replica.apply(e)  # the ones <= snap.seq are skipped
    a, b = replica.snapshot(), book.snapshot()
    assert (a.bids, a.asks, a.seq, a.next_order_id, a.next_trade_id, a.last_trade) == (
        b.bids,
        b.asks,
        b.seq,
        b.next_order_id,
        b.next_trade_id,
        b.last_trade,
    )
    assert replica.depth(None) == book.depth(None)
    # the replica trades exactly like the original from here on
    r1, r2 = book.submit(B, 15, 105), replica.submit(B, 15, 105)
    assert [(f.price, f.qty, f.maker_id) for f in r1.fills] == [
        (f.price, f.qty, f.maker_id) for f in r2.fills
    ]


def test_l2_rebuilt_from_level_updates_alone():
    rng = random.Random(5)
    book = OrderBook(INST, clock=lambda: 0)
    l2 = {0: {}, 1: {}}

    def on(ev):
        if isinstance(ev, LevelUpdate):
            if ev.qty:
                l2[int(ev.side)][ev.price] = (ev.qty, ev.count)
            else:
                del l2[int(ev.side)][ev.price]

    book.subscribe(on)
    _random_flow(book, rng, 400)
    bids, asks = book.depth(None)
    assert sorted(l2[0].items(), reverse=True) == [(lv.price, (lv.qty, lv.count)) for lv in bids]
    assert sorted(l2[1].items()) == [(lv.price, (lv.qty, lv.count)) for lv in asks]


def test_apply_detects_gaps_and_divergence():
    book = OrderBook(INST, clock=lambda: 0)
    events = []
    book.subscribe(events.append)
    book.submit(S, 2, 100)
    book.submit(S, 3, 101)
    replica = OrderBook(INST, clock=lambda: 0)
    with pytest.raises(BookError, match="sequence gap"):
        replica.apply(events[1])
    replica.apply(events[0])
    bad = events[1]._replace(qty=99)
    with pytest.raises(BookError, match="diverged"):
        replica.apply(bad)
    with pytest.raises(ValueError, match="symbol"):
        OrderBook.from_snapshot(Instrument("U", tick_size=1), book.snapshot())


def test_interest_hints_skip_unwanted_events_without_seq_gaps():
    book = OrderBook(INST, clock=lambda: 0)
    lean = []
    sub = book.subscribe(lean.append, levels=False, order_updates="final")
    book.submit(S, 5, 100)  # rests: nothing final, no level events wanted
    book.submit(B, 2, 100)  # partial fill of the maker, taker filled
    book.modify(1, qty=2)
    book.cancel(1)
    kinds = [(type(e).__name__, getattr(e, "status", None)) for e in lean]
    assert kinds == [
        ("Fill", None),
        ("OrderUpdate", OrderStatus.FILLED),  # the taker
        ("OrderUpdate", OrderStatus.CANCELLED),  # the maker's cancel
    ]
    assert [e.seq for e in lean] == [1, 2, 3]
    full = []
    book.subscribe(full.append)  # a default subscriber: everything is built again
    book.submit(S, 1, 100)
    assert [type(e).__name__ for e in full] == ["OrderUpdate", "LevelUpdate"]
    assert [e.seq for e in full] == [4, 5] and len(lean) == 5  # lean ones receive them too
    sub.close()
    with pytest.raises(ValueError, match="order_updates"):
        book.subscribe(print, order_updates="some")
