"""Term-structure (calendar) and butterfly arbitrage on the live book: exact edges on
constructed books, no signal from an arbitrage-free surface quoted with a spread, signals as
events, and capture orders that pass the manager's checks."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from jaxmm.engine._arb import (
    BookQuote,
    capture_orders,
    find_arbitrage,
    find_butterfly_arbitrage,
    find_calendar_arbitrage,
    publish_signals,
)
from jaxmm.engine._multi import TotalLimits, UnderlyingManager, option_symbol
from jaxmm.engine._quote import OptionChain, QuoteParams
from jaxmm.events import EventBroadcaster
from jaxmm.risk import GreekLimits, RiskLimits
from jaxmm.vol import SVI, VolSurface


def bs(s, k, t, r, q, vol, call):
    """Closed-form BSM price (independent reference)."""
    sd = vol * math.sqrt(t)
    d1 = (math.log(s / k) + (r - q) * t) / sd + 0.5 * sd
    d2 = d1 - sd
    if call:
        return s * math.exp(-q * t) * norm.cdf(d1) - k * math.exp(-r * t) * norm.cdf(d2)
    return k * math.exp(-r * t) * norm.cdf(-d2) - s * math.exp(-q * t) * norm.cdf(-d1)


def test_calendar_equal_strikes_exact_edge():
    qs = [
        BookQuote("N100", 100.0, 0.1, True, 5.0, 5.2, bid_size=7, ask_size=7),
        BookQuote("F100", 100.0, 0.5, True, 4.6, 4.8, bid_size=3, ask_size=4),
        BookQuote("F105", 105.0, 0.5, True, 2.0, 2.2),  # K2 > K1 F2 / F1: not dominating
    ]
    (opp,) = find_calendar_arbitrage(qs, spot=100.0, fee=0.05)
    assert opp.kind == "calendar"
    assert opp.edge == pytest.approx(5.0 - 4.8 - 2 * 0.05, abs=1e-15)
    assert [(leg.symbol, leg.ratio, leg.price) for leg in opp.legs] == [
        ("N100", -1.0, 5.0),
        ("F100", 1.0, 4.8),
    ]
    assert opp.max_structures == 4
    assert find_calendar_arbitrage(qs, spot=100.0, fee=0.1) == []  # edge 0: not tradable


def test_calendar_with_carry_uses_forward_matched_strike_and_dividend_ratio():
    s, r, q, t1, t2 = 100.0, 0.05, 0.02, 0.25, 1.0
    target = 100.0 * math.exp((r - q) * (t2 - t1))  # 102.27: K1 F2 / F1
    a = math.exp(q * (t2 - t1))
    qs = [
        BookQuote("N100C", 100.0, t1, True, 6.0, 6.1),
        BookQuote("F100C", 100.0, t2, True, 5.0, 5.5),
        BookQuote("F102C", 102.0, t2, True, 5.5, 5.6),  # largest listed <= 102.27
        BookQuote("F104C", 104.0, t2, True, 4.0, 4.2),
        BookQuote("N100P", 100.0, t1, False, 5.0, 5.1),
        BookQuote("F102P", 102.0, t2, False, 3.0, 3.1),
        BookQuote("F104P", 104.0, t2, False, 4.0, 4.1),  # smallest listed >= 102.27
    ]
    assert 102.0 < target < 104.0
    opps = find_calendar_arbitrage(qs, spot=s, rate=r, dividend=q, fee=0.01)
    by_near = {o.legs[0].symbol: o for o in opps}
    call, put = by_near["N100C"], by_near["N100P"]
    assert call.legs[1].symbol == "F102C" and put.legs[1].symbol == "F104P"
    assert call.edge == pytest.approx(6.0 - a * 5.6 - 0.01 * (1 + a), rel=1e-14)
    assert put.edge == pytest.approx(5.0 - a * 4.1 - 0.01 * (1 + a), rel=1e-14)
    assert call.legs[1].ratio == pytest.approx(a)


def test_butterfly_equal_spacing_and_weighted_exact_edges():
    t = 0.2
    qs = [
        BookQuote("A", 90.0, t, True, 11.0, 11.2, ask_size=10),
        BookQuote("B", 100.0, t, True, 6.0, 6.1, bid_size=6),
        BookQuote("C", 110.0, t, True, 0.5, 0.6, ask_size=2),
    ]
    (opp,) = find_butterfly_arbitrage(qs, fee=0.01)
    # C1 - 2 C2 + C3 < 0 at executable prices: 2 x 6.0 - 11.2 - 0.6 - 4 x 0.01 > 0, per 2
    assert opp.edge == pytest.approx((2 * 6.0 - 11.2 - 0.6 - 4 * 0.01) / 2, abs=1e-14)
    assert [leg.ratio for leg in opp.legs] == [0.5, -1.0, 0.5]
    assert opp.max_structures == 4  # high wing: 2 contracts / 0.5
    # unequal spacing: lambda = (K3 - K2) / (K3 - K1) = 20 / 30
    qs = [
        BookQuote("P80", 80.0, t, False, 0.2, 0.3),
        BookQuote("P90", 90.0, t, False, 4.2, 4.3),
        BookQuote("P110", 110.0, t, False, 11.0, 11.5),
    ]
    (opp,) = find_butterfly_arbitrage(qs)
    lam = 20 / 30
    assert opp.edge == pytest.approx(4.2 - lam * 0.3 - (1 - lam) * 11.5, abs=1e-14)
    assert opp.legs[0].ratio == pytest.approx(lam)


def test_butterfly_over_non_adjacent_strikes():
    # neighbours are fine, the (90, 100, 120) triple is not: bid(100) > (2 ask90 + ask120) / 3
    t = 0.2
    qs = [
        BookQuote("90", 90.0, t, True, 12.0, 12.0),
        BookQuote("100", 100.0, t, True, 8.1, 8.2),
        BookQuote("110", 110.0, t, True, 1.0, 4.5),
        BookQuote("120", 120.0, t, True, 0.1, 0.1),
    ]
    opps = find_butterfly_arbitrage(qs)
    body100 = [o for o in opps if o.legs[1].symbol == "100"]
    assert [leg.symbol for leg in body100[0].legs] == ["90", "100", "120"]
    assert body100[0].edge == pytest.approx(8.1 - (2 / 3) * 12.0 - (1 / 3) * 0.1, abs=1e-14)


def _svi_surface(spot, r, q):
    # Gatheral-style slices with w increasing in T at every k (calendar-free), b(1+|rho|)
    # small (butterfly-free); checked below with the library's detector as a precondition
    sl = SVI(jnp.array([0.004, 0.012, 0.03]), jnp.array([0.05, 0.07, 0.1]), -0.5, 0.0, 0.2)
    return VolSurface.from_svi(sl, jnp.array([0.1, 0.3, 0.8]), spot=spot, rate=r, dividend=q)


@given(
    spot=st.floats(50.0, 200.0),
    r=st.floats(-0.01, 0.06),
    q=st.floats(0.0, 0.04),
    spread=st.floats(1e-4, 0.5),
    fee=st.floats(0.0, 0.05),
)
@settings(max_examples=25)
def test_arbitrage_free_surface_with_spread_gives_no_signal(spot, r, q, spread, fee):
    surf = _svi_surface(spot, r, q)
    strikes = spot * np.linspace(0.7, 1.3, 13)
    expiries = (0.1, 0.3, 0.8)
    iv = np.asarray(surf.implied_vol(strikes[None, :], np.array(expiries)[:, None]))
    qs = []
    for i, t in enumerate(expiries):
        for j, k in enumerate(strikes):
            for call in (True, False):
                c = bs(spot, k, t, r, q, float(iv[i, j]), call)
                qs.append(
                    BookQuote(f"{i}-{j}-{call}", k, t, call, max(c - spread, 0.0), c + spread)
                )
    assert find_arbitrage(qs, surface=surf, fee=fee) == []


def test_svi_surface_of_the_property_is_arbitrage_free():
    assert not _svi_surface(100.0, 0.02, 0.01).arbitrage().has_arbitrage


def test_model_value_from_the_surface():
    spot, r, q = 100.0, 0.01, 0.0
    surf = VolSurface.from_grid(
        np.linspace(-1.0, 1.0, 5), np.full((2, 5), 0.3), np.array([0.1, 0.5]), spot, r, q
    )
    qs = [
        BookQuote("N", 100.0, 0.1, True, 9.0, 9.5),  # book far too rich near
        BookQuote("F", 100.0, 0.5, True, 8.0, 8.5),
    ]
    (opp,) = find_calendar_arbitrage(qs, surface=surf)
    ref = bs(spot, 100.0, 0.5, r, q, 0.3, True) - bs(spot, 100.0, 0.1, r, q, 0.3, True)
    assert opp.model_value == pytest.approx(ref, rel=1e-9)  # the surface itself is fine
    assert opp.edge == pytest.approx(0.5, abs=1e-14)
    with pytest.raises(ValueError, match="spot: give either a surface or a spot"):
        find_calendar_arbitrage(qs, surface=surf, spot=100.0)


def test_signals_are_published_as_events():
    bus = EventBroadcaster()
    qs = [BookQuote("N", 100.0, 0.1, True, 5.0, 5.2), BookQuote("F", 100.0, 0.5, True, 4.6, 4.8)]
    sigs = publish_signals(find_arbitrage(qs, spot=100.0), bus, underlying="BTC")
    assert len(sigs) == 1
    s = sigs[0]
    assert (s.type, s.kind, s.legs, s.instrument) == (
        "arbitrage_signal",
        "calendar",
        ["N", "F"],
        "BTC",
    )
    assert s.edge == pytest.approx(0.2) and s.seq == 1
    # the legs as a desk would trade them: sell the near call at its bid, buy the far at its ask
    assert (s.prices, s.strikes, s.expiries) == ([5.0, 4.8], [100.0, 100.0], [0.1, 0.5])
    assert s.ratios[0] < 0 < s.ratios[1] and s.max_structures is None  # no sizes shown
    with pytest.raises(ValueError, match="prices: 1 values for 2 legs"):
        type(s).model_validate({**s.model_dump(), "prices": [1.0]})


def test_bad_quotes_raise():
    with pytest.raises(ValueError, match="bid: crossed quote"):
        BookQuote("X", 100.0, 0.1, True, 2.0, 1.9)
    with pytest.raises(ValueError, match="ask: must be finite and > 0"):
        BookQuote("X", 100.0, 0.1, True, None, -1.0)
    with pytest.raises(ValueError, match="expiry: must be finite and > 0"):
        BookQuote("X", 100.0, 0.0, True, 1.0, 1.1)
    with pytest.raises(ValueError, match="fee: must be finite and >= 0"):
        find_butterfly_arbitrage([], fee=-0.1)
    one_sided = [
        BookQuote("N", 100.0, 0.1, True, None, 5.2),
        BookQuote("F", 100.0, 0.5, True, 4.6, 4.8),
    ]
    assert find_calendar_arbitrage(one_sided, spot=100.0) == []


def _manager(total=None, limits=None):
    mgr = UnderlyingManager(total)
    chain = OptionChain.grid(jnp.array([90.0, 100.0, 110.0]), jnp.array([36.5 / 365, 182.5 / 365]))
    mgr.add_underlying("X", chain, QuoteParams(1e-3, 20.0), spot=100.0, vol=0.3, limits=limits)
    return mgr


def test_capture_orders_pass_the_basket_check_and_keep_an_edge():
    sym = lambda k, t, c=True: option_symbol("X", t, k, c)
    t1, t2 = 36.5 / 365, 182.5 / 365
    qs = [
        BookQuote(sym(90, t1), 90.0, t1, True, 11.0, 11.2, ask_size=50),
        BookQuote(sym(100, t1), 100.0, t1, True, 6.0, 6.1, bid_size=50),
        BookQuote(sym(110, t1), 110.0, t1, True, 0.5, 0.6, ask_size=50),
    ]
    opps = find_arbitrage(qs, spot=100.0, fee=0.01)
    mgr = _manager()
    orders = capture_orders(opps, mgr, "X", fee=0.01, max_structures=10)
    assert orders == [(("X", sym(90, t1), 5)), ("X", sym(100, t1), -10), ("X", sym(110, t1), 5)]
    # a vega limit makes the full size fail: every partial fill is checked, and the body
    # alone (short n contracts) is the binding subset: n vega(100) <= 4.5 vega(100) -> n = 4
    vega_k = {
        k: 100
        * norm.pdf(math.log(100 / k) / (0.3 * math.sqrt(t1)) + 0.15 * math.sqrt(t1))
        * math.sqrt(t1)
        for k in (90, 100, 110)
    }
    mgr = _manager(limits=RiskLimits(greeks=GreekLimits(vega=4.5 * vega_k[100])))
    orders = capture_orders(opps, mgr, "X", fee=0.01, max_structures=10)
    assert orders == [("X", sym(90, t1), 2), ("X", sym(100, t1), -4), ("X", sym(110, t1), 2)]
    assert mgr.check_basket(orders)
    assert not mgr.check_basket([("X", sym(100, t1), -5)])
    mgr = _manager(total=TotalLimits(vega=1e-6))
    assert capture_orders(opps, mgr, "X", fee=0.01) == []
    with pytest.raises(ValueError, match="opportunities: 'Z' is not an instrument of 'X'"):
        capture_orders(find_arbitrage([BookQuote("Z", 100.0, t1, True, 5.0, 5.1),
                                       BookQuote("W", 100.0, t2, True, 4.0, 4.1)], spot=100.0),
                       mgr, "X")  # fmt: skip
