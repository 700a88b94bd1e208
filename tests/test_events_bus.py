"""Event types and the broadcaster: gap-free sequences, exact replay, slow subscribers."""

import asyncio
import json

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxmm.events import (
    EVENT_TYPES,
    AlertTriggered,
    EventBroadcaster,
    OrderFilled,
    PriceUpdated,
    QuoteUpdated,
    SnapshotRequired,
    SubscriberLagged,
    parse_event,
)


def _price(p=100.0, u="BTC"):
    return PriceUpdated(underlying=u, price=p, instrument=u)


def test_sequence_numbers_are_gap_free_and_stamped_on_copies():
    bus = EventBroadcaster()
    original = _price()
    stamped = [bus.publish(_price(100.0 + i)) for i in range(5)]
    assert [e.seq for e in stamped] == [1, 2, 3, 4, 5]
    assert original.seq is None
    assert bus.last_seq == 5
    with pytest.raises(ValueError, match="already published"):
        bus.publish(stamped[0])
    with pytest.raises(TypeError, match="event: expected a jaxmm event"):
        bus.publish({"type": "price_updated"})


def test_json_round_trip_for_every_type_and_discriminator():
    samples = [
        _price(),
        QuoteUpdated(instrument="BTC-20261225-100000-C", bid=1.0, ask=1.2, bid_size=3, ask_size=3),
        OrderFilled(order_id="o1", trade_id="t1", side="buy", price=1.1, quantity=2.0),
        AlertTriggered(severity="critical", kind="delta", message="delta limit"),
    ]
    for e in samples:
        back = parse_event(e.model_dump_json())
        assert back == e and type(back) is type(e)
    assert set(EVENT_TYPES) >= {"price_updated", "quote_updated", "order_filled"}


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"type": "price_updated", "underlying": "BTC", "price": -1.0}, "price"),
        ({"type": "price_updated", "underlying": "BTC", "price": float("nan")}, "price"),
        ({"type": "quote_updated", "bid": 2.0, "ask": 1.0}, "ask"),
        ({"type": "no_such_event"}, "type"),
        (
            {
                "type": "order_filled",
                "order_id": "o",
                "trade_id": "t",
                "side": "hold",
                "price": 1.0,
                "quantity": 1.0,
            },
            "side",
        ),
    ],
)
def test_bad_events_are_rejected_naming_the_field(payload, field):
    with pytest.raises(pydantic.ValidationError, match=field):
        parse_event(json.dumps(payload))


def test_replay_from_sequence_then_live_without_gap_or_duplicate():
    async def run():
        bus = EventBroadcaster(history_size=100)
        for i in range(10):
            bus.publish(_price(100.0 + i))
        sub = bus.subscribe(from_seq=6)
        bus.publish(_price(200.0))
        got = [(await sub.get()).seq for _ in range(5)]
        assert sub.qsize() == 0
        return got

    assert asyncio.run(run()) == [7, 8, 9, 10, 11]


def test_snapshot_required_when_history_is_too_short():
    bus = EventBroadcaster(history_size=3)
    for i in range(10):
        bus.publish(_price(100.0 + i))
    with pytest.raises(SnapshotRequired, match="history starts at 8"):
        bus.subscribe(from_seq=5)
    bus.subscribe(from_seq=7)  # 8, 9, 10 are still there
    with pytest.raises(ValueError, match="from_seq: must be in"):
        bus.subscribe(from_seq=11)


def test_filters_by_type_and_instrument():
    async def run():
        bus = EventBroadcaster()
        sub = bus.subscribe(types=["price_updated"], instruments=["ETH"])
        bus.publish(_price(1.0, "BTC"))
        bus.publish(AlertTriggered(severity="info", kind="x", message="m", instrument="ETH"))
        bus.publish(_price(2.0, "ETH"))
        e = await sub.get()
        return e.price, sub.qsize()

    assert asyncio.run(run()) == (2.0, 0)
    with pytest.raises(ValueError, match="types: unknown event type"):
        EventBroadcaster().subscribe(types=["nope"])


def test_slow_subscriber_is_dropped_and_told_it_lagged_without_blocking():
    async def run():
        bus = EventBroadcaster(history_size=1000, queue_size=4)
        slow = bus.subscribe()
        fast = bus.subscribe(queue_size=1000)
        for i in range(20):  # publish never awaits; a full queue cannot block it
            bus.publish(_price(100.0 + i))
        assert bus.subscriber_count == 1 and slow.lagged
        seen = [(await slow.get()).seq for _ in range(4)]
        with pytest.raises(SubscriberLagged) as info:
            await slow.get()
        resumed = bus.subscribe(from_seq=info.value.last_seq)
        rest = [resumed.get_nowait().seq for _ in range(resumed.qsize())]
        assert fast.qsize() == 20
        return seen + rest

    assert asyncio.run(run()) == list(range(1, 21))


def test_callbacks_run_synchronously_and_a_failing_one_is_removed():
    bus = EventBroadcaster()
    seen = []

    def bad(e):
        raise RuntimeError("boom")

    bus.add_callback(seen.append, types=[PriceUpdated])
    bus.add_callback(bad)
    bus.publish(_price())
    bus.publish(AlertTriggered(severity="info", kind="k", message="m"))
    bus.publish(_price(101.0))
    assert [e.seq for e in seen] == [1, 3]


def test_remove_callback_removes_a_bound_method_added_earlier():
    """``obj.method`` is a new object at every access: removal must compare by equality, or
    a closed consumer's callback stays registered (and is called) forever."""

    class Consumer:
        def __init__(self):
            self.seen = []

        def on_event(self, e):
            self.seen.append(e.seq)

    bus = EventBroadcaster()
    a, b = Consumer(), Consumer()
    bus.add_callback(a.on_event)
    bus.add_callback(b.on_event)
    bus.publish(_price())
    bus.remove_callback(a.on_event)
    bus.publish(_price(2.0))
    assert (a.seen, b.seen) == ([1], [1, 2])
    assert len(bus._callbacks) == 1


def test_waiting_consumer_is_woken_by_publish_and_close_ends_iteration():
    async def run():
        bus = EventBroadcaster()
        sub = bus.subscribe()
        out = []

        async def consume():
            async for e in sub:
                out.append(e.seq)

        task = asyncio.create_task(consume())
        await asyncio.sleep(0)
        bus.publish(_price())
        bus.publish(_price(2.0))
        await asyncio.sleep(0)
        sub.close()
        await asyncio.wait_for(task, 1.0)
        return out

    assert asyncio.run(run()) == [1, 2]


@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("publish"), st.integers(1, 5)),
            st.tuples(st.just("consume"), st.integers(1, 8)),
            st.just(("reconnect", 0)),
        ),
        max_size=40,
    ),
    queue_size=st.integers(1, 6),
)
def test_reconnecting_subscriber_receives_every_event_exactly_once(ops, queue_size):
    bus = EventBroadcaster(history_size=10_000, queue_size=queue_size)
    sub = bus.subscribe()
    received: list[int] = []
    for op, n in ops:
        if op == "publish":
            for _ in range(n):
                bus.publish(_price())
        elif op == "consume":
            for _ in range(n):
                try:
                    e = sub.get_nowait()
                except SubscriberLagged as lag:
                    sub = bus.subscribe(from_seq=lag.last_seq, queue_size=queue_size)
                    continue
                if e is None:
                    break
                received.append(e.seq)
        else:
            last = sub.last_seq
            sub.close()
            while True:  # drain what was queued before closing (a lagged queue ends in a raise)
                try:
                    e = sub.get_nowait()
                except SubscriberLagged:
                    break
                if e is None:
                    break
                received.append(e.seq)
                last = e.seq
            sub = bus.subscribe(from_seq=last, queue_size=queue_size)
    # drain the rest
    while True:
        try:
            e = sub.get_nowait()
        except SubscriberLagged as lag:
            sub = bus.subscribe(from_seq=lag.last_seq, queue_size=queue_size)
            continue
        if e is None:
            break
        received.append(e.seq)
    assert received == list(range(1, bus.last_seq + 1))


def test_burst_end_callbacks_run_once_per_outermost_block_and_a_failing_one_is_removed(caplog):
    bus = EventBroadcaster()
    ends: list[int] = []
    bus.on_burst_end(lambda: ends.append(bus.last_seq))

    def broken() -> None:
        raise RuntimeError("boom")

    bus.on_burst_end(broken)
    bus.publish(PriceUpdated(underlying="BTC", price=1.0))  # outside a block: nothing called
    assert ends == []
    with bus.burst():
        bus.publish(PriceUpdated(underlying="BTC", price=2.0))
        with bus.burst():  # nested: only the outermost end counts
            bus.publish(PriceUpdated(underlying="BTC", price=3.0))
        assert ends == []
    assert ends == [3]
    assert any("burst-end callback" in r.getMessage() for r in caplog.records)
    with bus.burst():
        bus.publish(PriceUpdated(underlying="BTC", price=4.0))
    assert ends == [3, 4]  # the broken one was removed; the other still runs
    bus.remove_burst_end(bus._burst_ends[0])
    with bus.burst():
        bus.publish(PriceUpdated(underlying="BTC", price=5.0))
    assert ends == [3, 4]  # removed: not called again
