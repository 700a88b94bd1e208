"""OrderManager: id mapping, state machine, fills exactly once, timeouts, retention."""

from __future__ import annotations

import asyncio

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given

from jaxmm.book import Instrument, OrderBook, OrderStatus, Side
from jaxmm.execution import (
    TRANSITIONS,
    DuplicateClientIdError,
    FillReport,
    IllegalTransitionError,
    InProcessConnector,
    InProcessExchange,
    OrderAck,
    OrderManager,
    OrderRequest,
    OrderState,
    OrderStatusReport,
    OverfillError,
    UnknownClientIdError,
)

B, S = Side.BUY, Side.SELL


class Clock:
    def __init__(self):
        self.t = 0

    def __call__(self):
        return self.t


def ack(oid, status=OrderStatus.NEW, *, filled=0, remaining=10, fills=(), accepted=True, cum=None):
    return OrderAck(
        "X", oid, accepted, status, filled, remaining, 0, tuple(fills), None, None, 0, None, cum
    )


def fill(oid, tid, qty, price=100):
    return FillReport("X", oid, tid, B, price, qty, "maker", 3 * qty, 0, 0)


def om_with_open(qty=10):
    clock = Clock()
    om = OrderManager(clock=clock, timeout_ns=100, retention_ns=1_000)
    mo = om.create(OrderRequest("X", B, qty, 100), "c1")
    om.on_ack("c1", ack(7, remaining=qty))
    return om, mo, clock


def test_lifecycle_vwap_and_mapping():
    om, mo, _ = om_with_open()
    assert (mo.state, mo.exchange_id, om.client_id("X", 7), om.exchange_id("c1")) == (
        OrderState.OPEN,
        7,
        "c1",
        7,
    )
    assert om.on_fill(fill(7, 1, 4, price=100)) is True
    assert om.on_fill(fill(7, 2, 6, price=105)) is True
    assert mo.state is OrderState.FILLED and mo.open_qty == 0
    assert mo.avg_price == pytest.approx((4 * 100 + 6 * 105) / 10)
    assert mo.notional == 4 * 100 + 6 * 105 and mo.fees_raw == 30
    assert mo.history == [
        OrderState.PENDING_NEW,
        OrderState.OPEN,
        OrderState.PARTIALLY_FILLED,
        OrderState.FILLED,
    ]


def test_duplicate_fill_ignored_and_overfill_refused():
    om, mo, _ = om_with_open()
    assert om.on_fill(fill(7, 1, 4)) is True
    assert om.on_fill(fill(7, 1, 4)) is False  # same trade id: applied once
    assert mo.filled == 4
    with pytest.raises(OverfillError, match="overfill"):
        om.on_fill(fill(7, 2, 7))
    assert (mo.filled, mo.state, len(mo.trade_keys)) == (4, OrderState.PARTIALLY_FILLED, 1)


def test_duplicate_client_id_and_unknown_ids():
    om, mo, _ = om_with_open()
    with pytest.raises(DuplicateClientIdError, match="c1"):
        om.create(OrderRequest("X", B, 1, 100), "c1")
    assert len(om) == 1 and om.get("c1") is mo
    with pytest.raises(UnknownClientIdError):
        om.get("nope")
    with pytest.raises(UnknownClientIdError):
        om.request_cancel("nope")
    with pytest.raises(ValueError, match="client_id"):
        om.create(OrderRequest("X", B, 1, 100), "")
    with pytest.raises(ValueError, match="qty"):
        om.create(OrderRequest("X", B, 0, 100), "c2")
    assert "c2" not in om
    auto = om.create(OrderRequest("X", B, 1, 100))
    assert auto.client_id == "o1" and auto.request.client_id == "o1"


def test_illegal_transitions_rejected_and_nothing_changes():
    om, mo, _ = om_with_open()
    with pytest.raises(IllegalTransitionError, match="new-order ack in state open"):
        om.on_ack("c1", ack(7))
    with pytest.raises(IllegalTransitionError, match="cancel ack in state open"):
        om.on_cancel_ack("c1", ack(7, OrderStatus.CANCELLED))
    om.on_fill(fill(7, 1, 10))
    with pytest.raises(IllegalTransitionError, match="filled -> pending_cancel"):
        om.request_cancel("c1")
    assert mo.state is OrderState.FILLED
    pending = om.create(OrderRequest("X", B, 1, 100), "c2")
    with pytest.raises(IllegalTransitionError, match="no venue id"):
        om.request_cancel("c2")
    assert pending.state is OrderState.PENDING_NEW
    # the table itself: terminal states go nowhere
    for s in (OrderState.FILLED, OrderState.CANCELLED, OrderState.REJECTED, OrderState.EXPIRED):
        assert TRANSITIONS[s] == frozenset()


def test_reject_ack():
    om = OrderManager(clock=lambda: 0)
    mo = om.create(OrderRequest("X", B, 1, 100), "c")
    om.on_ack("c", OrderAck("X", None, False, None, 0, 0, 0, (), "tick", "bad", 0))
    assert mo.state is OrderState.REJECTED and mo.reason == "tick: bad" and mo.open_qty == 0


def test_fills_before_ack_are_held_then_applied_once():
    om = OrderManager(clock=lambda: 0)
    mo = om.create(OrderRequest("X", B, 10, 100), "c")
    assert om.on_fill(fill(7, 1, 3)) is None  # venue id unknown yet: held
    assert om.on_fill(fill(7, 1, 3)) is None  # held once
    # the ack carries the same fill (taker) plus the current status
    om.on_ack(
        "c", ack(7, OrderStatus.PARTIALLY_FILLED, filled=3, remaining=7, fills=[fill(7, 1, 3)])
    )
    assert (mo.filled, mo.state) == (3, OrderState.PARTIALLY_FILLED)


def test_unsolicited_cancel_and_expiry():
    om, mo, _ = om_with_open()
    om.on_order_update(OrderStatusReport("X", 7, OrderStatus.NEW, B, 100, 10, 0, None, 0))
    assert mo.state is OrderState.OPEN  # non-terminal updates do not move the state
    from jaxmm.book import CancelReason

    om.on_order_update(
        OrderStatusReport("X", 7, OrderStatus.CANCELLED, B, 100, 0, 0, CancelReason.STP, 0)
    )
    assert mo.state is OrderState.CANCELLED and mo.reason == "stp"


def test_cancel_and_modify_flows_and_refusals():
    om, mo, _ = om_with_open()
    req = om.request_cancel("c1")
    assert (req.symbol, req.order_id, mo.state) == ("X", 7, OrderState.PENDING_CANCEL)
    with pytest.raises(IllegalTransitionError):
        om.request_cancel("c1")  # already pending
    om.on_cancel_ack("c1", ack(7, accepted=False))
    assert mo.state is OrderState.OPEN and "cancel refused" in mo.reason
    m = om.request_modify("c1", qty=4, price=101)
    assert (m.qty, m.price, mo.state) == (4, 101, OrderState.PENDING_MODIFY)
    om.on_fill(fill(7, 1, 2))  # a fill while the modify is in flight
    om.on_modify_ack("c1", ack(7, remaining=4, cum=2))
    assert (mo.state, mo.price, mo.qty, mo.filled, mo.open_qty) == (
        OrderState.PARTIALLY_FILLED,
        101,
        6,
        2,
        4,
    )
    om.request_cancel("c1")
    om.on_cancel_ack("c1", ack(7, OrderStatus.CANCELLED))
    assert mo.state is OrderState.CANCELLED
    om.on_cancel_ack("c1", ack(7, OrderStatus.CANCELLED))  # late duplicate: ignored


def test_modify_ack_before_the_fill_report_still_sizes_correctly():
    """Venue: fill 3, then modify to open 8. The ack arrives before the fill report."""
    om, mo, _ = om_with_open()
    om.request_modify("c1", qty=8)
    om.on_modify_ack("c1", ack(7, remaining=8, cum=3))
    assert mo.qty == 11  # 3 filled (not reported yet) + 8 open
    om.on_fill(fill(7, 1, 3))
    assert (mo.filled, mo.open_qty) == (3, 8)


def test_timeouts():
    om, mo, clock = om_with_open()
    late = om.create(OrderRequest("X", B, 5, 100), "c2")
    om.request_cancel("c1")
    clock.t = 99
    assert om.check_timeouts() == []
    clock.t = 100
    out = om.check_timeouts()
    assert {m.client_id for m in out} == {"c1", "c2"}
    assert late.state is OrderState.TIMED_OUT
    assert mo.state is OrderState.OPEN and "timeout" in mo.reason
    om.on_ack("c2", ack(8, remaining=5))  # the late ack still applies
    assert late.state is OrderState.OPEN and om.client_id("X", 8) == "c2"


def test_retention_cleanup():
    om, mo, clock = om_with_open()
    om.on_fill(fill(7, 1, 10))
    clock.t = 999
    assert om.cleanup() == 0
    clock.t = 1_000
    assert om.cleanup() == 1
    assert "c1" not in om and om.client_id("X", 7) is None
    om.create(OrderRequest("X", B, 1, 100), "c1")  # the id is free again


def test_with_in_process_connector_end_to_end():
    book = OrderBook(Instrument("X", tick_size=1))
    x = InProcessExchange(book)
    mm, taker = InProcessConnector(x, owner="mm"), InProcessConnector(x, owner="t")
    om = OrderManager()

    async def main():
        await om.attach(mm)
        mo = await om.submit(mm, OrderRequest("X", S, 10, 100), "q1")
        await taker.submit(OrderRequest("X", B, 4, 100))
        await om.modify(mm, "q1", qty=3)
        await taker.submit(OrderRequest("X", B, 1, 100))
        await om.cancel(mm, "q1")
        return mo

    mo = asyncio.run(main())
    assert mo.state is OrderState.CANCELLED
    assert (mo.filled, mo.qty, mo.avg_price) == (5, 7, 100.0)
    assert len(book) == 0


@given(
    qtys=st.lists(st.integers(1, 5), min_size=1, max_size=12),
    prices=st.lists(st.integers(90, 110), min_size=12, max_size=12),
    dup_mask=st.lists(st.booleans(), min_size=12, max_size=12),
    order=st.randoms(use_true_random=False),
)
def test_fill_stream_property(qtys, prices, dup_mask, order):
    """Any delivery order with duplicates: each fill counted once, VWAP exact, no overfill."""
    total = sum(qtys)
    om = OrderManager(clock=lambda: 0)
    mo = om.create(OrderRequest("X", B, total, 110), "c")
    stream = [fill(7, i + 1, q, prices[i]) for i, q in enumerate(qtys)]
    stream += [f for f, d in zip(stream, dup_mask, strict=False) if d]
    order.shuffle(stream)
    split = len(stream) // 2
    for f in stream[:split]:
        om.on_fill(f)  # before the ack: held
    om.on_ack("c", ack(7, remaining=total))
    for f in stream[split:]:
        om.on_fill(f)
    assert mo.filled == total and mo.state is OrderState.FILLED
    want = np.average(prices[: len(qtys)], weights=qtys)
    assert mo.avg_price == pytest.approx(want, rel=1e-12)
    with pytest.raises(OverfillError):
        om.on_fill(fill(7, 999, 1))
