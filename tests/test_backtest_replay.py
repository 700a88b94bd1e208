"""jaxmm.backtest.replay: fills under each queue model by hand, latency, fees, limits, L3,
determinism, and the optimistic >= probabilistic >= pessimistic property."""

from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxmm.backtest import (
    Cancel,
    ConstantLatency,
    EmpiricalLatency,
    EventKind,
    OptimisticQueue,
    PessimisticQueue,
    Place,
    ProbabilisticQueue,
    Quotes,
    QuotingAdapter,
    make_events,
    plot,
    poisson_l2_stream,
    replay,
    summary,
    summary_frame,
)
from jaxmm.book import Instrument

T, D, A, C, M = (
    EventKind.TRADE,
    EventKind.DEPTH,
    EventKind.ADD,
    EventKind.CANCEL,
    EventKind.MODIFY,
)
BUY, SELL = 0, 1


def once(quotes):
    """A strategy that sends ``quotes`` at its first decision and then never changes them."""
    state = {"sent": False}

    def strat(view):
        if state["sent"]:
            return None
        state["sent"] = True
        return quotes

    return strat


def fills(result):
    return [tuple(r) for r in result.fills[["time", "price", "qty"]].values.tolist()]


# The queue scenario. Rows (exchange_ts = local_ts):
#   0  t=0   DEPTH bid 99 -> 5        1  t=0   DEPTH ask 101 -> 5
#   -> first decision (after 2 events, t=0): our bid 2 lots @ 99 arrives at t=0 behind the
#      5 lots at 99: ahead a = 5.
#   2  t=5   DEPTH bid 99 -> 9        (4 lots join behind us: a = 5, behind b = 4)
#   3  t=10  DEPTH bid 99 -> 6        (no trade seen: a cancel of c = 3 lots from L = 9)
#        optimistic  a = 5 - 3 = 2
#        pessimistic a = min(5, 9 - 3) = 5
#        prob. n=1   share x = 5/9 ahead: a = 5 - 3 * 5/9 = 10/3
#   4  t=20  TRADE sell 99 x3         (v = 3 reaches the level)
#        optimistic  fills floor(3 - 2) = 1 lot at t=20, a = 0
#        pessimistic floor(3 - 5) < 0: no fill, a = 2
#        prob.       floor(3 - 10/3) < 0: no fill, a = 1/3
#   5  t=20  DEPTH bid 99 -> 3        (the 3 lots traded: not a cancel)
#   6  t=30  TRADE sell 99 x2
#        optimistic  fills its last lot at t=30 (a = 0)
#        pessimistic floor(2 - 2) = 0: no fill, a = 0
#        prob.       floor(2 - 1/3) = 1 lot at t=30, a = 0
#   7  t=30  DEPTH bid 99 -> 1
#   8  t=40  TRADE sell 99 x1         pessimistic: 1 lot at t=40; prob.: its last lot at t=40
#   9  t=40  DEPTH bid 99 -> 0
#  10  t=50  TRADE sell 98 x1         trades through 99: pessimistic's last lot fills at t=50
QUEUE_EVENTS = make_events(
    [0, 0, 5, 10, 20, 20, 30, 30, 40, 40, 50],
    [D, D, D, D, T, D, T, D, T, D, T],
    [BUY, SELL, BUY, BUY, SELL, BUY, SELL, BUY, SELL, BUY, SELL],
    [99, 101, 99, 99, 99, 99, 99, 99, 99, 99, 98],
    [5, 5, 9, 6, 3, 3, 2, 1, 1, 0, 1],
)


@pytest.mark.parametrize(
    "queue, expected",
    [
        (OptimisticQueue(), [(20, 99, 1), (30, 99, 1)]),
        (ProbabilisticQueue(1.0), [(30, 99, 1), (40, 99, 1)]),
        (PessimisticQueue(), [(40, 99, 1), (50, 99, 1)]),
    ],
)
def test_hand_built_fills_under_each_queue_model(queue, expected):
    r = replay(QUEUE_EVENTS, once(Quotes([(99, 2)], ())), every=2, queue=queue)
    assert fills(r) == expected
    assert r.frame["position"].iloc[-1] == 2.0
    assert (r.fills["liquidity"] == "maker").all()


def test_probabilistic_power_changes_the_cancel_share():
    # n = 3 at row 3: f(5/9) = 125 / (125 + 64) of the 3 lots ahead -> a = 5 - 375/189 = 3.016;
    # row 4 (v = 3): no fill, a = 0.016; row 6 (v = 2): floor(1.984) = 1 lot at t=30; row 8: the
    # second lot at t=40 -- the same fill times as n = 1 here, but a larger n moves a queue in the
    # back half faster: with n = 0.2 the share is f(5/9) = 0.5117, a = 3.465, and row 6 fills
    # floor(2 - 0.465) = 1 lot too. Both stay between the optimistic and pessimistic fills.
    for n in (3.0, 0.2):
        r = replay(QUEUE_EVENTS, once(Quotes([(99, 2)], ())), every=2, queue=ProbabilisticQueue(n))
        assert fills(r) == [(30, 99, 1), (40, 99, 1)]


def test_no_fill_without_queue_depletion_or_trade_through():
    # our bid at 99 behind 5 lots; cancels/joins and trades elsewhere; trades at 99 total 4 < 5;
    # even the optimistic model cannot fill us: no cancel happened at 99 (only joins)
    ev = make_events(
        [0, 0, 5, 6, 7, 8, 9, 10, 11],
        [D, D, D, T, D, D, T, D, T],
        [BUY, SELL, BUY, SELL, BUY, SELL, BUY, SELL, SELL],
        [99, 101, 99, 99, 99, 101, 101, 101, 99],
        [5, 5, 8, 3, 5, 9, 4, 5, 1],
    )
    for q in (OptimisticQueue(), ProbabilisticQueue(), PessimisticQueue()):
        r = replay(ev, once(Quotes([(99, 1)], ())), every=2, queue=q)
        assert r.fills.empty and r.frame["position"].iloc[-1] == 0.0


def test_incoming_crossing_order_trades_with_us_up_to_its_size():
    # market 99 / 101; we bid 1 lot at 100 (inside). An ask level of 3 appears at 100: an
    # incoming sell at our price -> we buy 1 @ 100 (size-limited: the sell had 3). A new ask at
    # 100 increasing the level (our order gone) does nothing.
    ev = make_events(
        [0, 0, 10, 20], [D, D, D, D], [BUY, SELL, SELL, SELL], [99, 101, 100, 100], [5, 5, 3, 4]
    )
    r = replay(ev, once(Quotes([(100, 2)], ())), every=2)
    assert fills(r) == [(10, 100, 2)]
    r = replay(ev, once(Quotes([(100, 5)], ())), every=2)
    assert fills(r) == [(10, 100, 3), (20, 100, 1)]


def test_trade_through_fills_completely_and_fifo_among_our_orders():
    # two of our asks at 101 (1 then 2 lots) behind 4 market lots; a buy trade at 102
    # trades through 101 -> both fill fully at 101
    ev = make_events([0, 0, 10], [D, D, T], [BUY, SELL, BUY], [99, 101, 102], [5, 4, 1])
    acts = [Place(SELL, 101, 1), Place(SELL, 101, 2)]
    r = replay(ev, once(acts), every=2)
    assert fills(r) == [(10, 101, 1), (10, 101, 2)]
    assert r.fills["order_id"].tolist() == sorted(r.fills["order_id"].tolist())


def test_latency_shifts_fill_times_exactly():
    # bid level 99 empty; sell trades of 1 lot at 99 at t = 3, 6, 9, ...; we bid 1 lot at 99
    # after the first two events (local time = feed latency f). The order is live at f + e and
    # is processed after events with exchange_ts <= f + e, so it fills at the first trade time
    # strictly after f + e; the strategy learns it r ns later.
    times = [0, 0] + list(range(3, 61, 3))
    n = len(times)
    ev = make_events(
        times,
        [D, D] + [T] * (n - 2),
        [BUY, SELL] + [SELL] * (n - 2),
        [98, 101] + [99] * (n - 2),
        [5, 5] + [1] * (n - 2),
    )
    for f, e, r_ns in [(0, 0, 0), (0, 3, 0), (0, 4, 5), (2, 7, 1), (10, 0, 2), (0, 14, 0)]:
        res = replay(
            ev,
            once(Quotes([(99, 1)], ())),
            every=2,
            feed_latency=ConstantLatency(f),
            entry_latency=ConstantLatency(e),
            response_latency=ConstantLatency(r_ns),
        )
        live = f + e
        expect = min(t for t in range(3, 61, 3) if t > live)
        assert fills(res) == [(expect, 99, 1)]
        assert res.fills["local_time"].tolist() == [expect + r_ns]


def test_response_latency_delays_what_the_strategy_knows():
    # the strategy records its view's position; with response latency 25 ns the fill at
    # t=6 is seen by the decision at t >= 31, not before
    times = [0, 0, 6] + list(range(10, 60, 1))
    n = len(times)
    ev = make_events(
        times,
        [D, D, T] + [D] * (n - 3),
        [BUY, SELL, SELL] + [BUY] * (n - 3),
        [98, 101, 99] + [97] * (n - 3),
        [5, 5, 1] + list(range(1, n - 2)),
    )
    seen = []

    def strat(view):
        seen.append((view.time, view.position))
        return Quotes([(99, 1)], ()) if len(seen) == 1 else None

    replay(ev, strat, every=1, response_latency=ConstantLatency(25))
    assert all(pos == (1 if t >= 31 else 0) for t, pos in seen)
    assert any(t >= 31 for t, _ in seen) and any(6 <= t < 31 for t, _ in seen)


def test_fees_sum_exactly():
    # maker -0.25 bp (rebate), taker 0.5 bp on tick 0.01, lot 1, multiplier 100
    inst = Instrument("X", tick_size="0.01", multiplier=100)
    ev = make_events(
        [0, 0, 0, 10, 20],
        [D, D, D, T, T],
        [BUY, SELL, SELL, SELL, BUY],
        [99, 101, 102, 99, 102],
        [5, 2, 5, 8, 3],
    )
    acts = [Place(BUY, 99, 3), Place(BUY, 102, 4, post_only=False), Place(SELL, 103, 2)]
    r = replay(ev, once(acts), every=3, instrument=inst, maker_fee_bps="-0.25", taker_fee_bps="0.5")
    # taker: buys 2 @ 101 and 2 @ 102 (limit 102) at t=0; maker: sell trade of 8 at 99 with 5
    # ahead fills our 3-lot bid at t=10; the buy trade at 102 trades through our ask at 103? no:
    # 102 < 103, so the ask is untouched.
    got = [tuple(x) for x in r.fills[["time", "price", "qty", "liquidity"]].values.tolist()]
    assert got == [(0, 101, 2, "taker"), (0, 102, 2, "taker"), (10, 99, 3, "maker")]
    rate = {"taker": Decimal("0.5"), "maker": Decimal("-0.25")}
    expect = sum(
        Decimal(p) * Decimal("0.01") * q * 100 * rate[liq] / Decimal(10_000) for _, p, q, liq in got
    )
    raw = r.fills["fee_raw"].tolist()
    assert raw == [101 * 2 * 5000, 102 * 2 * 5000, 99 * 3 * -2500]
    assert inst.fee_amount(sum(raw)) == expect
    assert r.frame["fees"].iloc[-1] == pytest.approx(float(expect), abs=1e-15)
    # cash: -(2*101 + 2*102 + 3*99) ticks x 0.01 x 100 minus fees; position 7 lots
    cash = -Decimal(2 * 101 + 2 * 102 + 3 * 99) - expect
    assert r.frame["cash"].iloc[-1] == pytest.approx(float(cash), abs=1e-9)
    assert r.frame["position"].iloc[-1] == 7.0


def test_bad_strategy_output_is_rejected_with_a_clear_error():
    ev = make_events([0, 0], [D, D], [BUY, SELL], [99, 101], [5, 5])
    with pytest.raises(ValueError, match="Quotes levels must be"):
        replay(ev, once(Quotes([(99.5, 1)], ())), every=2)
    with pytest.raises(ValueError, match="Place side / price / qty must be integers"):
        replay(ev, once([Place(BUY, 99, 1.0)]), every=2)
    with pytest.raises(ValueError, match="unknown action"):
        replay(ev, once(["buy"]), every=2)
    # integer but out of the instrument's bounds: counted, not raised
    inst = Instrument("X", tick_size="0.01", min_qty=2, max_qty=10)
    r = replay(
        ev,
        once([Place(BUY, 99, 1), Place(BUY, 99, 11), Place(BUY, 0, 2)]),
        every=2,
        instrument=inst,
    )
    assert r.stats["rejected_book"] == 3 and r.stats["placed"] == 0
    # a phantom market volume larger than max_qty still reaches our orders
    ev2 = make_events([0, 0, 5], [D, D, T], [BUY, SELL, SELL], [99, 101, 98], [5, 5, 50])
    r = replay(ev2, once([Place(BUY, 99, 10)]), every=2, instrument=inst)
    assert fills(r) == [(5, 99, 10)]


def test_post_only_and_self_cross_rejections():
    ev = make_events([0, 0, 10], [D, D, D], [BUY, SELL, BUY], [99, 101, 98], [5, 5, 1])
    r = replay(ev, once([Place(BUY, 101, 1)]), every=2)
    assert r.stats["rejected_post_only"] == 1 and r.fills.empty
    r = replay(ev, once(Quotes([(100, 1)], [(100, 1)])), every=2)
    assert r.stats["rejected_self_cross"] == 1 and r.stats["placed"] == 1


def test_quote_replacement_keeps_queue_priority_on_size_down():
    # t=0: bid 3 @ 99 behind 5. t=10 (decision 2): target 2 @ 99 -> size down keeps a = 5.
    # t=20: sell trade of 6 at 99 -> floor(6 - 5) = 1 lot. If the order had been replaced at the
    # back (a = 5 + 4 joined) it would not fill.
    ev = make_events(
        [0, 0, 5, 10, 20],
        [D, D, D, D, T],
        [BUY, SELL, BUY, BUY, SELL],
        [99, 101, 99, 98, 99],
        [5, 5, 9, 1, 6],
    )
    targets = iter([Quotes([(99, 3)], ()), Quotes([(99, 2)], ()), None, None])
    r = replay(ev, lambda v: next(targets), every=2, queue=PessimisticQueue())
    assert fills(r) == [(20, 99, 1)]
    targets = iter([Quotes([(99, 3)], ()), Quotes([(99, 4)], ()), None, None])
    r = replay(ev, lambda v: next(targets), every=2, queue=PessimisticQueue())
    assert fills(r) == []  # grew: re-queued behind 9


def test_cancel_action_and_open_orders_in_the_view():
    ev = make_events(
        [0, 0, 10, 20, 30],
        [D] * 5,
        [BUY, SELL, BUY, BUY, BUY],
        [99, 101, 98, 97, 96],
        [5, 5, 1, 1, 1],
    )
    views = []

    def strat(view):
        views.append(view)
        if len(views) == 1:
            assert view.bids == [(99, 5)] and view.asks == [(101, 5)]
            return [Place(BUY, 99, 1), Place(SELL, 102, 2)]
        if len(views) == 2:
            return [Cancel(view.open_orders[0].order_id)]
        return None

    r = replay(ev, strat, every=1)
    assert [(o.side, o.price, o.qty) for o in views[2].open_orders] == [(SELL, 102, 2)]
    assert r.stats["cancelled"] == 1 and r.stats["placed"] == 2
    v = views[1]
    assert (v.best_bid, v.best_ask, v.bid_qty, v.mid) == (99, 101, 5, 100.0)
    assert views[0].bids == [(99, 5)]  # read during the call: kept
    with pytest.raises(RuntimeError, match="only available during the strategy call"):
        views[-1].bids
    # depth of the local view, best first, depth_levels deep (t=30: bids 99, 98, 97, 96)
    depth = []
    replay(ev, lambda view: depth.append(view.bids), every=5, depth_levels=3)
    assert depth == [[(99, 5), (98, 1), (97, 1)]]


def test_position_limit_is_never_breached():
    ev = poisson_l2_stream(6_000, seed=3)

    def greedy(view):  # always bids 5 lots at the touch, never sells
        return Quotes([(view.best_bid, 5)], ()) if view.best_bid else None

    r = replay(ev, greedy, every=20, max_position=3.0, queue=OptimisticQueue())
    pos = r.frame["position"].to_numpy()
    assert pos.max() == 3.0  # reached, never exceeded
    assert r.fills["qty"].sum() == 3


def test_l3_queue_is_exact():
    # L3: order ids tell exactly who is ahead. Market: id1 bid 3 @ 99, id2 ask 5 @ 101.
    # We bid 1 @ 99 at t=0 (behind id1). id3 (4 lots) joins behind us and is cancelled:
    # that cancel is behind us (an L2 optimistic model would have moved us up). id1 is then
    # cancelled (ahead: a = 0). id4 joins behind us and is executed by a sell of 1 lot at t=25:
    # the aggressor meets us first -> we fill 1 @ 99 at t=25.
    ev = make_events(
        [0, 0, 5, 10, 15, 20, 25],
        [A, A, A, C, C, A, T],
        [BUY, SELL, BUY, BUY, BUY, BUY, SELL],
        [99, 101, 99, 99, 99, 99, 99],
        [3, 5, 4, 0, 0, 2, 1],
        order_id=[1, 2, 3, 3, 1, 4, 4],
    )
    for q in (OptimisticQueue(), PessimisticQueue()):
        r = replay(ev, once(Quotes([(99, 1)], ())), every=2, queue=q)
        assert fills(r) == [(25, 99, 1)]
    # without cancelling id1 (3 lots ahead), an execution of 2 of id1's lots leaves a = 1:
    ev2 = make_events(
        [0, 0, 5, 25, 30],
        [A, A, A, T, M],
        [BUY, SELL, BUY, SELL, BUY],
        [99, 101, 99, 99, 99],
        [3, 5, 4, 2, 1],
        order_id=[1, 2, 3, 1, 1],
    )
    r = replay(ev2, once(Quotes([(99, 1)], ())), every=2)
    assert r.fills.empty  # the modify of id1 (ahead) down to 1 lot is not a trade
    view_seen = []
    replay(ev2, lambda v: view_seen.append((v.best_bid, v.bid_qty)), every=1)
    assert view_seen[-1] == (99, 5)  # 1 (id1 after execution + modify) + 4 (id3)


def test_mixed_l2_l3_stream_is_rejected():
    ev = make_events([0, 1], [D, A], [BUY, SELL], [99, 101], [1, 1], order_id=[0, 1])
    with pytest.raises(ValueError, match="may not mix DEPTH"):
        replay(ev, lambda v: None, every=1)


def test_replay_validates_its_inputs():
    ev = make_events([5, 0], [D, D], [BUY, SELL], [99, 101], [1, 1])
    with pytest.raises(ValueError, match="rule exchange_ts_order broken at row 1"):
        replay(ev, lambda v: None, every=1)
    r = replay(ev, lambda v: None, every=1, validate="repair")
    assert r.stats["events"] == 2
    ok = make_events([0, 1], [D, D], [BUY, SELL], [99, 101], [1, 1])
    with pytest.raises(ValueError, match="every / interval_ns: give exactly one"):
        replay(ok, lambda v: None)
    with pytest.raises(ValueError, match="every: must be an int >= 1"):
        replay(ok, lambda v: None, every=0)
    with pytest.raises(ValueError, match="max_position: must be finite and >= 0"):
        replay(ok, lambda v: None, every=1, max_position=-1.0)
    with pytest.raises(ValueError, match="entry_latency: expected"):
        replay(ok, lambda v: None, every=1, entry_latency=5)
    with pytest.raises(ValueError, match="maker_fee_bps"):
        replay(ok, lambda v: None, every=1, maker_fee_bps="0.00001")


def test_interval_decisions():
    ev = make_events(
        [0, 0, 100, 250], [D] * 4, [BUY, SELL, BUY, BUY], [99, 101, 98, 97], [1, 1, 1, 1]
    )
    times = []
    replay(ev, lambda v: times.append(v.time), interval_ns=100)
    assert times == [0, 100, 200]


def _mm(view):
    if view.best_bid is None or view.best_ask is None:
        return None
    skew = 1 if view.position > 2 else 0
    return Quotes([(view.best_bid - skew, 1)], [(view.best_ask - skew, 1)])


def test_same_seed_same_result_and_seed_matters():
    ev = poisson_l2_stream(4_000, seed=5)
    kw = dict(
        every=25,
        queue=ProbabilisticQueue(2.0),
        entry_latency=EmpiricalLatency([1_000, 50_000, 400_000, 2_000_000]),
        response_latency=EmpiricalLatency([500, 80_000, 900_000]),
        maker_fee_bps=-0.2,
        max_position=4.0,
    )
    a = replay(ev, _mm, seed=3, **kw)
    b = replay(ev, _mm, seed=3, **kw)
    c = replay(ev, _mm, seed=4, **kw)
    assert a.frame.equals(b.frame) and a.fills.equals(b.fills) and a.stats == b.stats
    assert not a.fills.equals(c.fills)


@st.composite
def level_flows(draw):
    """An L2 stream at bid 99 (with an ask at 101): joins, cancels and sell trades at 99
    (each followed by the DEPTH row it implies), and occasional trades through 99 at 98."""
    level = draw(st.integers(0, 12))
    rows = [(0, D, BUY, 99, level), (0, D, SELL, 101, 50)] if level else [(0, D, SELL, 101, 50)]
    if not level:
        rows.insert(0, (0, D, BUY, 98, 1))
    t = 0
    for op, k in draw(
        st.lists(st.tuples(st.sampled_from("jctx"), st.integers(1, 6)), min_size=1, max_size=25)
    ):
        t += 1
        if op == "j":
            level += k
            rows.append((t, D, BUY, 99, level))
        elif op == "c":
            if level == 0:
                continue
            level -= min(k, level)
            rows.append((t, D, BUY, 99, level))
        elif op == "t":
            rows.append((t, T, SELL, 99, k))
            if level:
                level -= min(k, level)
                rows.append((t, D, BUY, 99, level))
        else:
            rows.append((t, T, SELL, 98, 1))
    ts, kind, side, price, qty = zip(*rows, strict=True)
    return make_events(list(ts), list(kind), list(side), list(price), list(qty)), draw(
        st.integers(1, 8)
    )


@settings(max_examples=60, deadline=None)
@given(level_flows(), st.floats(0.2, 5.0))
def test_optimistic_fills_at_least_probabilistic_at_least_pessimistic(flow, n):
    ev, size = flow
    n_first = 2
    cum = {}
    for name, q in (
        ("opt", OptimisticQueue()),
        ("prob", ProbabilisticQueue(n)),
        ("pess", PessimisticQueue()),
    ):
        r = replay(ev, once(Quotes([(99, size)], ())), every=n_first, queue=q)
        f = r.fills
        times = np.unique(ev["exchange_ts"])
        cum[name] = np.array([f["qty"][f["time"] <= t].sum() for t in times])
        assert cum[name][-1] <= size
    assert np.all(cum["opt"] >= cum["prob"])
    assert np.all(cum["prob"] >= cum["pess"])


def test_quoting_adapter_places_the_avellaneda_stoikov_quotes():
    from jaxmm.strategy import AvellanedaStoikov

    # Avellaneda & Stoikov (2008), eqs. (29)-(30): reservation price r = s - q gamma sigma^2
    # (T - t), total spread gamma sigma^2 (T - t) + (2/gamma) ln(1 + gamma/k). At t = 0, q = 0:
    # bid = s - spread/2, ask = s + spread/2; the adapter rounds the bid down, the ask up.
    gamma, k, sigma, horizon = 0.1, 30.0, 0.2, 1.0
    ev = make_events([0, 0, 10], [D, D, D], [BUY, SELL, BUY], [9_990, 10_010, 9_980], [5, 5, 1])
    inst = Instrument("X", tick_size="0.01")
    mm = QuotingAdapter(AvellanedaStoikov(gamma, k, sigma, horizon), time_unit_ns=10**9)
    r = replay(ev, mm, every=2, instrument=inst)
    s = 100.0
    spread = gamma * sigma**2 * horizon + (2 / gamma) * np.log(1 + gamma / k)
    bid = np.floor((s - spread / 2) / 0.01 + 1e-9) * 0.01
    ask = np.ceil((s + spread / 2) / 0.01 - 1e-9) * 0.01
    row = r.frame.iloc[-1]
    assert row["bid"] == pytest.approx(bid, abs=1e-12)
    assert row["ask"] == pytest.approx(ask, abs=1e-12)


def test_summary_metrics_and_report(tmp_path):
    # the optimistic queue run of the hand-built scenario: buys 1 @ 99 at t=20 (mid 100) and
    # 1 @ 99 at t=30 (mid 100); both 1 tick below the mid -> spread captured 2 x 0.01.
    # After t=40 the bid side is empty: the mid stays at the last two-sided mid, 100 (at t=30
    # the book is 99 / 101), so the final PnL is 2 x (100 - 99) x 0.01 = 0.02 = spread captured.
    r = replay(QUEUE_EVENTS, once(Quotes([(99, 2)], ())), every=2, queue=OptimisticQueue())
    m = summary(r)
    assert m["fills"] == 2 and m["volume"] == 2
    assert m["spread_captured"] == pytest.approx(0.02, abs=1e-12)
    assert m["fees"] == 0.0
    fr = r.frame
    # decisions at t = 0, 10, 20, 30, 40 (every 2 events) + the final row at t = 50
    assert fr["time"].tolist() == [0, 10, 20, 30, 40, 50]
    assert m["steps"] == 5
    # fill ratio: the bid is live in steps (0,10], (10,20], (20,30] (filled at t=30), with
    # fills in two of them: (10,20] and (20,30]
    assert m["fill_ratio"] == pytest.approx(2 / 3)
    assert m["pnl_mean"] == pytest.approx(0.02, abs=1e-12)
    assert m["inventory_pnl"] == pytest.approx(0.0, abs=1e-12)
    assert fr["mid"].iloc[-1] == pytest.approx(1.00)
    assert summary_frame(r).shape == (1, len(m))
    png = plot(r, tmp_path / "run.png")
    assert (tmp_path / "run.png").stat().st_size > 1000 and png == tmp_path / "run.png"


def test_summary_accounting_identity_on_a_synthetic_run():
    ev = poisson_l2_stream(5_000, seed=9)
    r = replay(ev, _mm, every=50, maker_fee_bps=-0.3, max_position=4.0)
    m = summary(r)
    fr = r.frame
    # pnl = spread captured + inventory pnl - fees (definition of inventory pnl) and the
    # reported pnl is the last row's mark-to-market value cash + q * mid
    assert m["pnl_mean"] == pytest.approx(fr["pnl"].iloc[-1], rel=1e-12, abs=1e-12)
    assert m["pnl_mean"] == pytest.approx(
        m["spread_captured"] + m["inventory_pnl"] - m["fees"], abs=1e-9
    )
    w = np.concatenate([[0.0], fr["pnl"].to_numpy()])
    assert m["max_drawdown"] == pytest.approx(np.max(np.maximum.accumulate(w) - w), abs=1e-12)
    assert 0.0 < m["fill_ratio"] <= 1.0
    assert m["fees"] < 0  # rebates
    # accounting: position = bought - sold; cash = sum(sold notional) - sum(bought notional)
    # - fees, from the fills table (tick 0.01, lot 1, multiplier 1), exactly in integers
    f = r.fills
    sign = np.where(f["side"] == 0, 1, -1)
    assert fr["position"].iloc[-1] == float((sign * f["qty"]).sum())
    cash_ticks = int((-sign * f["price"] * f["qty"]).sum())
    fee_raw = int(f["fee_raw"].sum())
    expect = Decimal(cash_ticks) / 100 - Decimal(fee_raw) / Decimal(10**10)
    assert fr["cash"].iloc[-1] == pytest.approx(float(expect), abs=1e-9)
    assert len(f) == r.stats["fills"] == fr["fills"].sum()
