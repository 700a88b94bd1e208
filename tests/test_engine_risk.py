"""GreeksRiskManager: post-trade checks on random order flows, re-marking, breaker, hedges,
events."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from jaxmm.engine import GreeksRiskManager, HedgeConfig
from jaxmm.events import EventBroadcaster
from jaxmm.portfolio import Fill, Instrument, Order, Side
from jaxmm.risk import Action, GreekLimits, RiskLimits

STRIKES = (90.0, 100.0, 110.0)
LIMITS = RiskLimits(greeks=GreekLimits(delta=300.0, gamma=40.0, vega=1e4, theta=2e4))


def _unit(spot, k, t, call, vol=0.25):
    """Closed-form BSM unit Greeks (r = q = 0), independent of jaxmm."""
    sd = vol * math.sqrt(t)
    d1 = (math.log(spot / k) + 0.5 * sd * sd) / sd
    delta = norm.cdf(d1) if call else norm.cdf(d1) - 1.0
    gamma = norm.pdf(d1) / (spot * sd)
    vega = spot * norm.pdf(d1) * math.sqrt(t)
    theta = -spot * norm.pdf(d1) * vol / (2 * math.sqrt(t))
    return (delta, gamma, vega, theta)


def _book(events=None, band=50.0, **kw):
    insts = [Instrument.spot("X", lot_size=10)]
    for k in STRIKES:
        for c in (True, False):
            insts.append(
                Instrument.option(f"{k:g}{'C' if c else 'P'}", "X", strike=k, expiry=0.25,
                                  is_call=c, multiplier=10)
            )  # fmt: skip
    rm = GreeksRiskManager(insts, LIMITS, {"X": HedgeConfig("X", band=band)}, events=events, **kw)
    return rm, insts


def _mark(rm, insts, spot, now=0.0):
    greeks = {i.id: _unit(spot, i.strike, i.expiry, i.is_call) for i in insts if i.is_option}
    rm.update_market({"X": spot}, greeks, now=now)


def _within(rm):
    g = rm.greeks("X")
    return all(abs(g[n]) <= getattr(LIMITS.greeks, n) for n in ("delta", "gamma", "vega", "theta"))


flows = st.lists(
    st.tuples(st.integers(0, 5), st.sampled_from([Side.BUY, Side.SELL]), st.integers(1, 80)),
    min_size=1,
    max_size=40,
)


@settings(max_examples=40)
@given(flow=flows)
def test_random_fill_sequences_never_leave_a_limit_exceeded(flow):
    rm, insts = _book()
    _mark(rm, insts, 100.0)
    opts = [i for i in insts if i.is_option]
    for idx, side, qty in flow:
        dec = rm.check_order(Order(opts[idx].id, side, qty))
        assert dec.qty <= qty
        if dec.action is not Action.REJECT:
            assert dec.qty > 0
            rm.on_fill(Fill(opts[idx].id, side, dec.qty, 1.0), now=0.0)
        assert _within(rm), rm.greeks("X")
        assert rm.breaches() == {}


@settings(max_examples=40)
@given(flow=flows, spot=st.floats(80.0, 120.0))
def test_hedges_bring_delta_inside_the_band(flow, spot):
    rm, insts = _book(band=50.0)  # band 50 >= half a lot (10 units / 2)
    _mark(rm, insts, 100.0)
    opts = [i for i in insts if i.is_option]
    for idx, side, qty in flow:
        dec = rm.check_order(Order(opts[idx].id, side, qty))
        if dec.qty:
            rm.on_fill(Fill(opts[idx].id, side, dec.qty, 1.0), now=0.0)
    _mark(rm, insts, spot)  # re-marked: the delta moved with the spot
    before = rm.greeks("X")["delta"]
    for h, dec in rm.hedges():
        assert dec.action is Action.ALLOW  # a delta-reducing hedge is never blocked by delta
        assert h.qty % 10 == 0
        rm.on_fill(Fill(h.instrument, h.side, dec.qty, spot), now=1.0)
    after = rm.greeks("X")["delta"]
    assert abs(after) <= 50.0 + 1e-9
    assert abs(after) <= abs(before) + 1e-9
    # nearest-lot rounding: residual within half a lot of the target when a hedge was sent
    if abs(before) > 50.0:
        assert abs(after) <= 5.0 + 1e-9


def test_greeks_are_re_marked_not_frozen_at_fill_time():
    rm, insts = _book()
    _mark(rm, insts, 100.0)
    rm.on_fill(Fill("100C", Side.BUY, 10, 5.0), now=0.0)
    d0 = rm.greeks("X")["delta"]
    np.testing.assert_allclose(d0, 10 * 10 * _unit(100.0, 100.0, 0.25, True)[0], rtol=1e-12)
    _mark(rm, insts, 110.0, now=1.0)
    d1 = rm.greeks("X")["delta"]
    np.testing.assert_allclose(d1, 10 * 10 * _unit(110.0, 100.0, 0.25, True)[0], rtol=1e-12)
    assert d1 > d0


def test_breaker_trips_on_market_breach_halts_and_resets():
    bus = EventBroadcaster()
    rm, insts = _book(events=bus, min_halt=10.0, cooldown=5.0)
    _mark(rm, insts, 100.0)
    # fill delta up to ~290 of 300 with calls, then the spot jumps: delta re-marks above 300
    assert rm.check_order(Order("90C", Side.BUY, 32)).action is Action.ALLOW
    rm.on_fill(Fill("90C", Side.BUY, 32, 11.0), now=0.0)
    assert rm.quoting_allowed
    _mark(rm, insts, 125.0, now=1.0)
    assert rm.breaches() and not rm.quoting_allowed
    assert bool(rm.chain_market("X", 125.0).kill)
    assert rm.check_order(Order("100C", Side.BUY, 1)).action is Action.REJECT
    reduce = rm.check_order(Order("90C", Side.SELL, 10))  # reduces every Greek: allowed
    assert reduce.action is Action.ALLOW
    kinds = [e.type for e in bus.history()]
    assert "circuit_breaker" in kinds and "greeks_updated" in kinds
    trip = [e for e in bus.history() if e.type == "circuit_breaker"][-1]
    assert (trip.from_state, trip.to_state) == ("active", "tripped")
    # manual reset brings quoting back; a manual trip latches until reset
    rm.reset(now=2.0)
    assert rm.quoting_allowed
    rm.trip(now=3.0, reason="operator")
    _mark(rm, insts, 100.0, now=100.0)
    assert not rm.quoting_allowed  # latched
    rm.reset(now=101.0)
    assert rm.quoting_allowed
    seqs = [e.seq for e in bus.history()]
    assert seqs == list(range(1, len(seqs) + 1))


def test_breaker_cooldown_scales_sizes():
    rm, insts = _book(min_halt=10.0, cooldown=100.0)
    _mark(rm, insts, 100.0)
    rm.on_fill(Fill("90C", Side.BUY, 32, 11.0), now=0.0)
    _mark(rm, insts, 125.0, now=1.0)  # breach: TRIPPED
    _mark(rm, insts, 100.0, now=20.0)  # clear and halt elapsed: COOLDOWN at half size
    assert rm.breaker.state.value == "cooldown"
    dec = rm.check_order(Order("110P", Side.BUY, 4))
    assert dec.action is Action.SCALE and dec.qty == 2


def test_fill_breach_raises_alert_and_events():
    bus = EventBroadcaster()
    rm, insts = _book(events=bus)
    _mark(rm, insts, 100.0)
    bad = rm.on_fill(Fill("90C", Side.BUY, 80, 11.0), now=0.0, order_id="o1", trade_id="t1")
    assert "greeks.delta:X" in bad
    types = [e.type for e in bus.history()]
    assert "order_filled" in types and "alert_triggered" in types
    assert not rm.quoting_allowed
    hedges = rm.hedges()
    assert hedges and all(dec.qty > 0 for _, dec in hedges)
    assert any(e.type == "hedge_sent" for e in bus.history())


def test_quote_limits_and_bad_input():
    rm, insts = _book()
    ql = rm.quote_limits()
    assert float(ql.delta) == 300.0 and math.isinf(float(ql.max_position))
    with pytest.raises(ValueError, match="market: no market update yet"):
        rm.check_order(Order("90C", Side.BUY, 1))
    with pytest.raises(ValueError, match=r"spot\['X'\]: must be finite and > 0"):
        rm.update_market({"X": float("nan")}, {}, now=0.0)
    with pytest.raises(ValueError, match="instrument: unknown instrument 'Y'"):
        rm.check_order(Order("Y", Side.BUY, 1))
    with pytest.raises(ValueError, match="hedges\\['X'\\]"):
        GreeksRiskManager(insts, LIMITS, {"X": HedgeConfig("90C", band=1.0)})
    with pytest.raises(ValueError, match="band: must be >= 0"):
        HedgeConfig("X", band=-1.0)
