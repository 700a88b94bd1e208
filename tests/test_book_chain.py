"""OptionChainBook: hierarchy, listing management, ATM detection, chain views, mass ops."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from jaxmm.book import BookError, OptionChainBook, OptionSymbol, Side

B, S = Side.BUY, Side.SELL
E1, E2 = "20261225", "20270326"


@pytest.fixture
def chain():
    c = OptionChainBook(clock=lambda: 0)
    c.add_underlying("BTC", tick_size="0.5", multiplier=1)
    c.add_underlying("SPY", tick_size="0.01", multiplier=100)
    for u, strikes in (("BTC", [90000, 100000, 110000]), ("SPY", ["440", "450.5", 460])):
        for e in (E1, E2):
            c.add_expiry(u, e)
            c.add_strikes(u, e, strikes)
    return c


def test_hierarchy_and_lookup(chain):
    assert chain.underlyings() == ["BTC", "SPY"]
    assert chain.expiries("BTC") == [dt.date(2026, 12, 25), dt.date(2027, 3, 26)]
    assert chain.strikes("SPY", E1) == [Decimal(440), Decimal("450.5"), Decimal(460)]
    assert len(chain) == 2 * 2 * 3 * 2
    assert "SPY-20261218-450.5-P" not in chain  # that expiry is not listed
    put = chain.book("SPY-20261225-450.5-P")
    assert put.instrument.multiplier == 100 and put.instrument.tick_size == Decimal("0.01")
    assert chain[OptionSymbol.parse("BTC-20270326-100000-C")].symbol == "BTC-20270326-100000-C"
    syms = [str(s) for s, _ in chain.books("BTC", E1)]
    assert syms == [
        "BTC-20261225-90000-C",
        "BTC-20261225-90000-P",
        "BTC-20261225-100000-C",
        "BTC-20261225-100000-P",
        "BTC-20261225-110000-C",
        "BTC-20261225-110000-P",
    ]


def test_bad_symbols_and_unlisted(chain):
    with pytest.raises(ValueError, match="symbol: .*strike"):
        chain.book("BTC-20261225-100000.0-C")
    with pytest.raises(BookError, match="not listed"):
        chain.book("BTC-20261225-120000-C")
    with pytest.raises(BookError, match="ETH"):
        chain.expiries("ETH")
    with pytest.raises(BookError, match="expiry"):
        chain.strikes("BTC", "20300101")


def test_listing_errors(chain):
    with pytest.raises(BookError, match="already exists"):
        chain.add_underlying("BTC", tick_size=1)
    with pytest.raises(ValueError, match="underlying"):
        chain.add_underlying("btc", tick_size=1)
    with pytest.raises(ValueError, match="tick_size"):
        chain.add_underlying("ETH", tick_size=0)
    with pytest.raises(BookError, match="already listed"):
        chain.add_expiry("BTC", E1)
    with pytest.raises(BookError, match="already listed"):
        chain.add_strike("BTC", E1, 100000)
    n = len(chain)
    with pytest.raises(BookError, match="duplicates"):
        chain.add_strikes("BTC", E1, [120000, 100000])
    assert len(chain) == n  # all-or-nothing


def test_remove_with_and_without_force(chain):
    book = chain.book("BTC-20261225-100000-C")
    book.submit(B, 1, 100)
    with pytest.raises(BookError, match="1 resting orders"):
        chain.remove_strike("BTC", E1, 100000)
    assert "BTC-20261225-100000-C" in chain
    chain.remove_strike("BTC", E1, 100000, force=True)
    assert "BTC-20261225-100000-C" not in chain and len(book) == 0
    assert chain.strikes("BTC", E1) == [Decimal(90000), Decimal(110000)]
    chain.remove_expiry("BTC", E2)
    assert chain.expiries("BTC") == [dt.date(2026, 12, 25)]
    chain.remove_underlying("SPY")
    assert chain.underlyings() == ["BTC"] and len(chain) == 4


@pytest.mark.parametrize(
    ("spot", "atm"),
    [(103_000, 100000), (105_000, 100000), (105_001, 110000), (1, 90000), (10**7, 110000)],
)
def test_atm_strike_nearest_ties_to_lower(chain, spot, atm):
    assert chain.atm_strike("BTC", E1, spot) == Decimal(atm)


def test_atm_errors(chain):
    with pytest.raises(ValueError, match="underlying_price"):
        chain.atm_strike("BTC", E1, -5)
    chain.add_underlying("ETH", tick_size=1)
    chain.add_expiry("ETH", E1)
    with pytest.raises(BookError, match="no strikes"):
        chain.atm_strike("ETH", E1, 3000)


def test_chain_quotes_and_totals(chain):
    c = chain.book("BTC-20261225-100000-C")
    p = chain.book("BTC-20261225-100000-P")
    c.submit(B, 2, c.instrument.price_to_ticks(1250))
    c.submit(S, 3, c.instrument.price_to_ticks(1300.5))
    p.submit(B, 4, p.instrument.price_to_ticks(900))
    rows = chain.quotes("BTC", E1)
    assert [r.strike for r in rows] == [Decimal(90000), Decimal(100000), Decimal(110000)]
    r = rows[1]
    assert (r.call_bid, r.call_bid_qty, r.call_ask, r.call_ask_qty) == (
        Decimal("1250"),
        2,
        Decimal("1300.5"),
        3,
    )
    assert (r.put_bid, r.put_bid_qty, r.put_ask, r.put_ask_qty) == (Decimal("900"), 4, None, 0)
    assert rows[0].call_bid is None
    t = chain.totals("BTC", E1)
    assert (t.books, t.orders, t.bid_lots, t.ask_lots) == (6, 3, 6, 3)
    assert chain.totals().books == 24


def test_mass_cancel_per_expiry_underlying_owner(chain):
    for sym in ("BTC-20261225-90000-C", "BTC-20270326-90000-C", "SPY-20261225-440-P"):
        b = chain.book(sym)
        b.submit(B, 1, 10, owner="mm")
        b.submit(B, 1, 9, owner="other")
    out = chain.cancel_all("BTC", E1, owner="mm")
    assert list(out) == ["BTC-20261225-90000-C"] and len(out["BTC-20261225-90000-C"]) == 1
    out = chain.cancel_all("BTC")
    assert sorted(out) == ["BTC-20261225-90000-C", "BTC-20270326-90000-C"]
    assert chain.totals("BTC").orders == 0 and chain.totals("SPY").orders == 2
    out = chain.cancel_all(side=B)
    assert chain.totals().orders == 0 and list(out) == ["SPY-20261225-440-P"]


def test_chain_subscription_covers_new_books(chain):
    seen = []
    close = chain.subscribe(lambda sym, ev: seen.append((sym, ev.seq)))
    chain.book("BTC-20261225-90000-C").submit(B, 1, 10)
    _, _put = chain.add_strike("BTC", E1, 120000)
    _put.submit(S, 1, 10)
    assert [s for s, _ in seen] == ["BTC-20261225-90000-C"] * 2 + ["BTC-20261225-120000-P"] * 2
    close()
    chain.book("BTC-20261225-90000-C").submit(B, 1, 11)
    assert len(seen) == 4


def test_per_strike_tick_override(chain):
    c, _ = chain.add_strike("BTC", E1, 200000, tick_size=5)
    assert c.instrument.tick_size == Decimal(5)
    with pytest.raises(ValueError, match="price"):
        c.instrument.price_to_ticks(12.5)
