"""QuoteManager: the minimal set of actions between live quotes and targets."""

from __future__ import annotations

import asyncio

import pytest

from jaxmm.book import OptionChainBook, Side
from jaxmm.execution import (
    InProcessConnector,
    OrderRequest,
    OrderState,
    Quote,
    QuoteManager,
    QuoteTarget,
)

B, S = Side.BUY, Side.SELL
EXP = "20261225"


def chain_with(n_strikes=5):
    chain = OptionChainBook(clock=lambda: 0)
    chain.add_underlying("BTC", tick_size="0.5")
    chain.add_expiry("BTC", EXP)
    chain.add_strikes("BTC", EXP, [90000 + 5000 * i for i in range(n_strikes)])
    return chain


def targets(chain, shift=0, only=None, bump=0):
    out = {}
    for i, sym in enumerate(chain):
        d = bump if sym == only else 0
        out[sym] = QuoteTarget(Quote(100 + i + shift + d, 5), Quote(110 + i + shift + d, 5))
    return out


class SequentialOnly:
    """Wraps a connector but hides its batch capability (exercises the one-by-one path)."""

    def __init__(self, inner):
        self._c = inner

    async def submit(self, r):
        return await self._c.submit(r)

    async def cancel(self, s, i):
        return await self._c.cancel(s, i)

    async def modify(self, s, i, *, qty=None, price=None):
        return await self._c.modify(s, i, qty=qty, price=price)


def quotes_in_books(chain, owner="mm"):
    out = {}
    for sym in chain:
        book = chain.book(sym)
        bids = book.orders(owner=owner, side=B)
        asks = book.orders(owner=owner, side=S)
        out[sym] = (
            [(o.price, o.qty) for o in bids],
            [(o.price, o.qty) for o in asks],
        )
    return out


@pytest.mark.parametrize("batch", [True, False])
def test_apply_reaches_targets_and_refresh_touches_only_changes(batch):
    chain = chain_with()
    conn = InProcessConnector(chain, owner="mm")
    c = conn if batch else SequentialOnly(conn)
    qm = QuoteManager()

    async def main():
        r0 = await qm.apply(c, targets(chain))
        r1 = await qm.apply(c, targets(chain))
        one = list(chain)[3]
        r2 = await qm.apply(c, targets(chain, only=one, bump=2))
        r3 = await qm.apply(c, targets(chain, shift=1))
        return r0, r1, r2, r3, one

    r0, r1, r2, r3, one = asyncio.run(main())
    assert [a.kind for a in r0.actions] == ["new"] * 20 and not r0.rejected
    assert r1.actions == []  # nothing changed: nothing sent
    assert {(a.kind, a.symbol) for a in r2.actions} == {("modify", one)}
    assert len(r2.actions) == 2  # one instrument, both sides
    assert len(r3.actions) == 20 and {a.kind for a in r3.actions} == {"modify"}
    want = {s: ([(t.bid.price, 5)], [(t.ask.price, 5)]) for s, t in targets(chain, shift=1).items()}
    assert quotes_in_books(chain) == want


def test_plan_cases_pull_tolerance_and_cancel_new():
    chain = chain_with(1)
    conn = InProcessConnector(chain, owner="mm")
    sym = next(iter(chain))
    qm = QuoteManager(price_tolerance=1, qty_tolerance=2)
    asyncio.run(qm.apply(conn, {sym: QuoteTarget(Quote(100, 5), Quote(110, 5))}))
    # within tolerance: nothing
    assert qm.plan({sym: QuoteTarget(Quote(101, 7), Quote(109, 3))}) == []
    # price beyond tolerance only: modify price, keep qty (None)
    (a,) = qm.plan({sym: QuoteTarget(Quote(102, 5), Quote(110, 5))})
    assert (a.kind, a.side, a.price, a.qty) == ("modify", B, 102, None)
    # pulled ask
    (a,) = qm.plan({sym: QuoteTarget(Quote(100, 5), None)})
    assert (a.kind, a.side) == ("cancel", S)
    # cancel_missing pulls instruments absent from the targets
    assert {a.kind for a in qm.plan({}, cancel_missing=True)} == {"cancel"}
    assert qm.plan({}) == []
    qm2 = QuoteManager(qm.om, use_modify=False)
    qm2._slots = {k: list(v) for k, v in qm._slots.items()}
    kinds = [a.kind for a in qm2.plan({sym: QuoteTarget(Quote(105, 5), Quote(110, 5))})]
    assert kinds == ["cancel", "new"]


def test_partial_fill_is_topped_up_and_filled_quote_replaced():
    chain = chain_with(1)
    mm = InProcessConnector(chain, owner="mm")
    taker = InProcessConnector(chain, owner="t")
    sym = next(iter(chain))
    qm = QuoteManager()
    tgt = {sym: QuoteTarget(Quote(100, 5), Quote(110, 5))}

    async def main():
        await qm.om.attach(mm)
        await qm.apply(mm, tgt)
        await taker.submit(OrderRequest(sym, S, 2, 100))  # partial hit on our bid
        a1 = qm.plan(tgt)
        await qm.apply(mm, tgt)
        await taker.submit(OrderRequest(sym, B, 5, 110))  # our ask fully lifted
        a2 = qm.plan(tgt)
        await qm.apply(mm, tgt)
        return a1, a2

    a1, a2 = asyncio.run(main())
    assert [(a.kind, a.side, a.qty) for a in a1] == [("modify", B, 5)]
    assert [(a.kind, a.side) for a in a2] == [("new", S)]
    assert quotes_in_books(chain)[sym] == ([(100, 5)], [(110, 5)])


def test_sides_with_requests_in_flight_are_skipped():
    chain = chain_with(1)
    conn = InProcessConnector(chain, owner="mm")
    sym = next(iter(chain))
    qm = QuoteManager()
    asyncio.run(qm.apply(conn, {sym: QuoteTarget(Quote(100, 5), None)}))
    qm.om.request_cancel(qm.live(sym, B).client_id)  # pending, not answered
    acts, busy = qm._plan({sym: QuoteTarget(Quote(99, 5), None)}, False)
    assert acts == [] and busy == 1
    assert qm.live(sym, B).state is OrderState.PENDING_CANCEL


def test_rejected_quote_is_reported():
    chain = chain_with(1)
    conn = InProcessConnector(chain, owner="mm")
    other = InProcessConnector(chain, owner="o")
    sym = next(iter(chain))
    qm = QuoteManager()

    async def main():
        await other.submit(OrderRequest(sym, S, 1, 100))
        return await qm.apply(conn, {sym: QuoteTarget(Quote(100, 5), None)})  # would cross

    rep = asyncio.run(main())
    assert len(rep.rejected) == 1 and rep.rejected[0][1].reject_rule == "post_only"
    assert qm.live(sym, B) is None


def test_validation():
    with pytest.raises(ValueError, match="price_tolerance"):
        QuoteManager(price_tolerance=-1)
    with pytest.raises(ValueError, match="tif"):
        QuoteManager(tif=3)
