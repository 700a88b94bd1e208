"""The fast book against a naive reference matching model, driven by random order flows.

The reference (``RefBook``) is deliberately simple and independent of ``jaxmm.book``: orders
are dicts in one list, the opposite side is re-sorted on every call, FOK is decided by a dry
run on a deep copy, and rejections are re-derived from the rules in docs/book.md. A
hypothesis state machine sends the same flow to both and compares, after every step, every
fill, every resting order (in queue order) and the L2 depth, and checks invariants: never
crossed, quantity conserved, FIFO within a level, fees exact, sequence numbers strictly
increasing, and a replica rebuilt from a snapshot plus the event stream equal to the book.
"""

from __future__ import annotations

import copy
from decimal import Decimal

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from jaxmm.book import (
    Instrument,
    OrderBook,
    OrderRejected,
    OrderType,
    Side,
    STPMode,
    TimeInForce,
    UnknownOrderError,
)

MAKER_BPS = Decimal("-0.25")  # rebate
TAKER_BPS = Decimal("2.5")
DAY = 1_000  # session length of the test's session_end


def session_end(now: int) -> int:
    return (now // DAY + 1) * DAY


class RefBook:
    """Naive price-time priority book: one list of dict orders, sorted on every call."""

    def __init__(self, min_qty: int = 1, max_qty: int = 50) -> None:
        self.orders: list[dict] = []
        self.next_id = 1
        self.prio = 0
        self.min_qty = min_qty
        self.max_qty = max_qty
        self.cancelled_total = 0  # lots cancelled (any reason)
        self.submitted_total = 0  # lots submitted, plus lots added by size-up modifies
        self.displayed: dict[int, int] = {}  # lots each order ever showed in the book

    # -- helpers
    def _expire(self, now: int) -> None:
        keep = []
        for o in self.orders:
            if o["expire"] is not None and o["expire"] <= now:
                self.cancelled_total += o["qty"]
            else:
                keep.append(o)
        self.orders = keep

    def _crossing(self, side: int, price: int | None) -> list[dict]:
        """Opposite orders the taker may trade with, best first, FIFO within a price."""
        if side == 0:
            opp = [o for o in self.orders if o["side"] == 1]
            opp.sort(key=lambda o: (o["price"], o["prio"]))
            return [o for o in opp if price is None or o["price"] <= price]
        opp = [o for o in self.orders if o["side"] == 0]
        opp.sort(key=lambda o: (-o["price"], o["prio"]))
        return [o for o in opp if price is None or o["price"] >= price]

    def _match(self, oid, side, qty, price, owner, stp):
        """Returns (fills, remaining, cut). Mutates the book."""
        fills = []
        cut = False
        for m in self._crossing(side, price):
            if qty == 0:
                break
            if owner is not None and stp != 0 and m["owner"] == owner:
                if stp == 1:
                    cut = True
                    break
                self.orders.remove(m)
                self.cancelled_total += m["qty"]
                if stp == 3:
                    cut = True
                    break
                continue
            x = min(qty, m["qty"])
            m["qty"] -= x
            qty -= x
            fills.append((m["price"], x, m["id"], oid))
            if m["qty"] == 0:
                self.orders.remove(m)
        return fills, qty, cut

    # -- operations
    def submit(self, now, side, qty, price, order_type, tif, expire, post_only, owner, stp):
        self._expire(now)
        market = order_type == 1
        if order_type == 0:
            if post_only and tif in (3, 4):
                return "type"
        else:
            if tif not in (3, 4) or post_only:
                return "type"
        if market:
            if price is not None:
                return "tick"
        elif price < 1:
            return "tick"
        if qty < 1:
            return "lot"
        if not (self.min_qty <= qty <= self.max_qty):
            return "size"
        if tif == 1:
            if expire is None or expire <= now:
                return "expiry"
        elif expire is not None:
            return "expiry"
        if post_only and self._crossing(side, price):
            return "post_only"
        if tif == 4:
            dry = copy.deepcopy(self)
            _, rem, _ = dry._match(-1, side, qty, price, owner, stp)
            if rem:
                return "fok"
        oid = self.next_id
        self.next_id += 1
        self.submitted_total += qty
        fills, rem, cut = self._match(oid, side, qty, price, owner, stp)
        if rem and not market and tif in (0, 1, 2) and not cut:
            self.displayed[oid] = self.displayed.get(oid, 0) + rem
            self.prio += 1
            self.orders.append(
                dict(
                    id=oid,
                    side=side,
                    price=price,
                    qty=rem,
                    owner=owner,
                    prio=self.prio,
                    post_only=post_only,
                    stp=stp,
                    expire=expire if tif == 1 else (session_end(now) if tif == 2 else None),
                )
            )
            resting = rem
        else:
            self.cancelled_total += rem
            resting = 0
        return oid, fills, resting

    def find(self, oid):
        for o in self.orders:
            if o["id"] == oid:
                return o
        return None

    def cancel(self, now, oid):
        self._expire(now)
        o = self.find(oid)
        if o is None:
            return None
        self.orders.remove(o)
        self.cancelled_total += o["qty"]
        return o["qty"]

    def cancel_all(self, now, side, owner):
        self._expire(now)
        gone = [
            o
            for o in self.orders
            if (side is None or o["side"] == side) and (owner is None or o["owner"] == owner)
        ]
        for o in gone:
            self.orders.remove(o)
            self.cancelled_total += o["qty"]
        return sorted(o["id"] for o in gone)

    def modify(self, now, oid, qty, price):
        self._expire(now)
        o = self.find(oid)
        if o is None:
            return None
        new_price = o["price"] if price is None else price
        new_qty = o["qty"] if qty is None else qty
        if new_price < 1:
            return "tick"
        if new_qty < 1:
            return "lot"
        if not (self.min_qty <= new_qty <= self.max_qty):
            return "size"
        if new_price == o["price"]:
            if new_qty < o["qty"]:
                self.cancelled_total += o["qty"] - new_qty
                o["qty"] = new_qty
            elif new_qty > o["qty"]:
                self.submitted_total += new_qty - o["qty"]
                self.displayed[oid] += new_qty - o["qty"]
                o["qty"] = new_qty
                self.prio += 1
                o["prio"] = self.prio
            return []
        if o["post_only"] and self._crossing(o["side"], new_price):
            return "post_only"
        self.orders.remove(o)
        # treat as: old open qty leaves, new open qty enters
        self.cancelled_total += o["qty"]
        self.submitted_total += new_qty
        fills, rem, cut = self._match(oid, o["side"], new_qty, new_price, o["owner"], o["stp"])
        if rem and not cut:
            self.displayed[oid] += rem
            self.prio += 1
            o.update(price=new_price, qty=rem, prio=self.prio)
            self.orders.append(o)
        else:
            self.cancelled_total += rem
        return fills

    # -- views
    def resting(self, side):
        xs = [o for o in self.orders if o["side"] == side]
        xs.sort(key=lambda o: ((-o["price"] if side == 0 else o["price"]), o["prio"]))
        return [(o["id"], o["price"], o["qty"]) for o in xs]

    def depth(self, side):
        out: dict[int, list[int]] = {}
        for _, p, q in self.resting(side):
            out.setdefault(p, [0, 0])
            out[p][0] += q
            out[p][1] += 1
        return [(p, q, n) for p, (q, n) in out.items()]


prices = st.integers(98, 102)
qtys = st.integers(1, 12)
owners = st.sampled_from([None, "a", "b"])
stps = st.sampled_from(list(STPMode))


class BookVsReference(RuleBasedStateMachine):
    @initialize()
    def setup(self):
        self.now = 10
        self.inst = Instrument("T", tick_size="0.05", lot_size="0.5", multiplier=10, max_qty=50)
        self.book = OrderBook(
            self.inst,
            clock=lambda: self.now,
            maker_fee_bps=MAKER_BPS,
            taker_fee_bps=TAKER_BPS,
            session_end=session_end,
        )
        self.ref = RefBook(max_qty=50)
        self.events = []
        self.book.subscribe(self.events.append)
        self.replica = OrderBook.from_snapshot(self.inst, self.book.snapshot(), clock=lambda: 0)
        self.applied = 0
        self.all_fills = []

    def _compare_fills(self, got, want):
        assert [(f.price, f.qty, f.maker_id, f.taker_id) for f in got] == want
        for f in got:
            n = Decimal(f.price) * self.inst.tick_size * Decimal(f.qty) * self.inst.lot_size
            n *= self.inst.multiplier
            assert f.maker_fee == n * MAKER_BPS / 10_000
            assert f.taker_fee == n * TAKER_BPS / 10_000
            assert f.ts == self.now
        self.all_fills += got

    @rule(
        side=st.sampled_from([Side.BUY, Side.SELL]),
        qty=qtys,
        price=prices,
        kind=st.sampled_from(["gtc", "gtc", "gtc", "ioc", "fok", "post", "gtd", "day", "mkt"]),
        owner=owners,
        stp=stps,
        ttl=st.integers(1, 30),
    )
    def submit(self, side, qty, price, kind, owner, stp, ttl):
        order_type, tif, expire, post = OrderType.LIMIT, TimeInForce.GTC, None, False
        if kind == "ioc":
            tif = TimeInForce.IOC
        elif kind == "fok":
            tif = TimeInForce.FOK
        elif kind == "post":
            post = True
        elif kind == "gtd":
            tif, expire = TimeInForce.GTD, self.now + ttl
        elif kind == "day":
            tif = TimeInForce.DAY
        elif kind == "mkt":
            order_type, tif, price = OrderType.MARKET, TimeInForce.IOC, None
        want = self.ref.submit(
            self.now,
            int(side),
            qty,
            price,
            int(order_type),
            int(tif),
            expire,
            post,
            owner,
            int(stp),
        )
        before = self.book.snapshot()
        try:
            r = self.book.submit(side, qty, price, order_type, tif, expire, post, owner, stp)
        except OrderRejected as e:
            assert e.rule.value == want
            after = self.book.snapshot()
            # a rejection leaves the book exactly as it was (expiry may have run first)
            assert after.next_order_id == before.next_order_id
            return
        assert not isinstance(want, str), f"book accepted, reference rejected by {want}"
        oid, fills, resting = want
        assert r.order_id == oid
        self._compare_fills(r.fills, fills)
        assert r.remaining == resting
        assert r.filled == sum(f[1] for f in fills)
        assert r.filled + r.remaining + r.cancelled == qty

    @rule(data=st.data())
    def cancel(self, data):
        ids = [o[0] for s in (0, 1) for o in self.ref.resting(s)]
        self.do_cancel(data.draw(st.sampled_from(ids + [self.ref.next_id + 5, 1])))

    def do_cancel(self, oid):
        want = self.ref.cancel(self.now, oid)
        if want is None:
            with pytest.raises(UnknownOrderError):
                self.book.cancel(oid)
        else:
            assert self.book.cancel(oid) == want

    @rule(data=st.data(), qty=st.one_of(st.none(), qtys), price=st.one_of(st.none(), prices))
    def modify(self, data, qty, price):
        ids = [o[0] for s in (0, 1) for o in self.ref.resting(s)]
        if not ids or (qty is None and price is None):
            return
        self.do_modify(data.draw(st.sampled_from(ids)), qty, price)

    def do_modify(self, oid, qty, price):
        if qty is None and price is None:
            return
        want = self.ref.modify(self.now, oid, qty, price)
        if isinstance(want, str):
            with pytest.raises(OrderRejected) as ei:
                self.book.modify(oid, qty, price)
            assert ei.value.rule.value == want
            return
        if want is None:
            with pytest.raises(UnknownOrderError):
                self.book.modify(oid, qty, price)
            return
        r = self.book.modify(oid, qty, price)
        self._compare_fills(r.fills, want)

    @rule(side=st.sampled_from([None, Side.BUY, Side.SELL]), owner=owners)
    def mass_cancel(self, side, owner):
        want = self.ref.cancel_all(self.now, None if side is None else int(side), owner)
        assert sorted(self.book.cancel_all(side=side, owner=owner)) == want

    @rule(dt=st.integers(1, 40))
    def advance(self, dt):
        self.now += dt

    @invariant()
    def same_state(self):
        if not hasattr(self, "book"):
            return
        # the book expires lazily (at its next mutating call); compare at the same instant
        self.ref._expire(self.now)
        self.book.expire()
        for s in (0, 1):
            got = [(o.order_id, o.price, o.qty) for o in self.book.orders(side=Side(s))]
            assert got == self.ref.resting(s)
            got_l2 = [tuple(lv) for lv in self.book.depth(None)[s]]
            assert got_l2 == self.ref.depth(s)
        # FIFO: within a level, queue order is time order
        for s in (0, 1):
            for _, level in self.book.iter_levels(Side(s)):
                ts = [o.ts for o in level]
                assert ts == sorted(ts)

    @invariant()
    def never_crossed(self):
        if not hasattr(self, "book"):
            return
        b, a = self.book.best_bid(), self.book.best_ask()
        assert b is None or a is None or b < a

    @invariant()
    def quantity_conserved(self):
        if not hasattr(self, "book"):
            return
        resting = sum(o.qty for o in self.book.orders())
        filled = sum(f.qty for f in self.all_fills)
        # every traded lot leaves one maker and one taker
        assert self.ref.submitted_total == 2 * filled + resting + self.ref.cancelled_total

    @invariant()
    def liquidity_consumed_once(self):
        if not hasattr(self, "book"):
            return
        trade_ids = [f.trade_id for f in self.all_fills]
        assert trade_ids == list(range(1, len(trade_ids) + 1))  # each trade reported once
        taken: dict[int, int] = {}
        for f in self.all_fills:
            taken[f.maker_id] = taken.get(f.maker_id, 0) + f.qty
        for oid, lots in taken.items():  # no maker gives more than it ever displayed
            assert lots <= self.ref.displayed[oid]

    @invariant()
    def fees_sum(self):
        if not hasattr(self, "book"):
            return
        notional = sum(f.price * f.qty for f in self.all_fills)
        assert sum(f.maker_fee_raw for f in self.all_fills) == notional * int(MAKER_BPS * 10_000)
        assert sum(f.taker_fee_raw for f in self.all_fills) == notional * int(TAKER_BPS * 10_000)

    @invariant()
    def events_sequenced_and_replayable(self):
        if not hasattr(self, "book"):
            return
        seqs = [e.seq for e in self.events]
        assert seqs == list(range(1, len(seqs) + 1))
        for e in self.events[self.applied :]:
            self.replica.apply(e)
        self.applied = len(self.events)
        a, b = self.replica.snapshot(), self.book.snapshot()
        assert (a.bids, a.asks, a.seq) == (b.bids, b.asks, b.seq)


BookVsReference.TestCase.settings = settings(max_examples=40, stateful_step_count=40, deadline=None)
test_book_matches_reference = BookVsReference.TestCase


def check_all(m: BookVsReference) -> None:
    m.same_state()
    m.never_crossed()
    m.quantity_conserved()
    m.liquidity_consumed_once()
    m.fees_sum()
    m.events_sequenced_and_replayable()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_long_random_flow_matches_reference(seed):
    """Deeper queues than hypothesis builds: 1,500 seeded random operations per seed."""
    import random

    rng = random.Random(seed)
    m = BookVsReference()
    m.setup()
    kinds = ["gtc"] * 5 + ["ioc", "fok", "post", "gtd", "day", "mkt"]
    for _ in range(1_500):
        u = rng.random()
        ids = [o[0] for s in (0, 1) for o in m.ref.resting(s)]
        if u < 0.55 or not ids:
            m.submit(
                Side(rng.randrange(2)),
                rng.randint(1, 12),
                rng.randint(96, 104),
                rng.choice(kinds),
                rng.choice([None, None, "a", "b"]),
                STPMode(rng.randrange(4)),
                rng.randint(1, 60),
            )
        elif u < 0.75:
            m.do_cancel(rng.choice(ids))
        elif u < 0.93:
            m.do_modify(
                rng.choice(ids),
                rng.choice([None, rng.randint(1, 12)]),
                rng.choice([None, rng.randint(96, 104)]),
            )
        elif u < 0.95:
            m.mass_cancel(rng.choice([None, Side.BUY, Side.SELL]), rng.choice([None, "a"]))
        else:
            m.advance(rng.randint(1, 30))
        check_all(m)
    assert len(m.all_fills) > 200  # the flow really trades


def test_reference_model_can_fail():
    """The comparison is not vacuous: a deliberately wrong book disagrees with the reference."""
    ref = RefBook()
    ref.submit(0, 0, 5, 100, 0, 0, None, False, None, 0)  # bid 5 @ 100
    ref.submit(0, 0, 5, 100, 0, 0, None, False, None, 0)  # second bid, behind the first
    _, fills, _ = ref.submit(0, 1, 7, 100, 0, 0, None, False, None, 0)
    assert fills == [(100, 5, 1, 3), (100, 2, 2, 3)]  # FIFO, by hand
    assert ref.resting(0) == [(2, 100, 3)]
