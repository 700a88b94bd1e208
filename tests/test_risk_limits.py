"""Pre-trade limits: post-trade semantics, risk-reducing orders, and zero breaches (hypothesis)."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxmm.risk import (
    Action,
    Fill,
    GreekLimits,
    Instrument,
    LimitChecker,
    Order,
    RiskLimits,
    Side,
)

INSTS = [
    Instrument.spot("A", lot_size=10),
    Instrument.spot("B"),
    Instrument.option("A-C100", "A", strike=100.0, expiry=0.25, is_call=True, multiplier=100),
    Instrument.option("A-P100", "A", strike=100.0, expiry=0.25, is_call=False, multiplier=100),
    Instrument.option("A-C110", "A", strike=110.0, expiry=0.5, is_call=True, multiplier=100),
    Instrument.option(
        "B-P50", "B", strike=50.0, expiry=0.25, is_call=False, multiplier=10, lot_size=5
    ),
]
SPOT = {"A": 100.0, "B": 50.0}
UNIT = {  # (delta, gamma, vega, theta) per unit of underlying
    "A-C100": (0.53, 0.04, 19.9, -8.1),
    "A-P100": (-0.47, 0.04, 19.9, -5.3),
    "A-C110": (0.31, 0.027, 25.0, -6.0),
    "B-P50": (-0.44, 0.08, 9.8, -3.1),
}


def _reference_measures(pos):
    """Naive recomputation of every limited measure from positions (independent of the checker)."""
    inst = {i.id: i for i in INSTS}
    out = {}
    for iid, q in pos.items():
        out[f"position:{iid}"] = abs(q)
    out["gross_notional"] = math.fsum(
        abs(q) * inst[i].multiplier * SPOT[inst[i].underlying] for i, q in pos.items()
    )
    for i, q in pos.items():
        o = inst[i]
        if o.is_option:
            ks = f"strike:{o.underlying}:{o.strike:g}"
            ke = f"expiry:{o.underlying}:{o.expiry:g}"
            out[ks] = out.get(ks, 0) + abs(q)
            out[ke] = out.get(ke, 0) + abs(q)
    for u in SPOT:
        for j, n in enumerate(("delta", "gamma", "vega", "theta")):
            terms = []
            for i, q in pos.items():
                o = inst[i]
                if o.underlying != u:
                    continue
                g = UNIT[i][j] if o.is_option else (1.0 if j == 0 else 0.0)
                terms.append(q * o.multiplier * g)
            out[f"greeks.{n}:{u}"] = abs(math.fsum(terms))
    return out


def _limit_of(lim: RiskLimits, key: str):
    if key.startswith("position:"):
        return lim.position_overrides.get(key.split(":")[1], lim.max_position)
    if key == "gross_notional":
        return lim.max_gross_notional
    if key.startswith("strike:"):
        return lim.max_per_strike
    if key.startswith("expiry:"):
        return lim.max_per_expiry
    return getattr(lim.greeks, key.split(":")[0].split(".")[1])


def _checker(lim):
    chk = LimitChecker(INSTS, lim)
    chk.update_market(SPOT, UNIT)
    return chk


limits_st = st.builds(
    RiskLimits,
    max_position=st.none() | st.integers(0, 80),
    max_gross_notional=st.none() | st.floats(0, 3e6),
    max_per_strike=st.none() | st.integers(0, 60),
    max_per_expiry=st.none() | st.integers(0, 60),
    greeks=st.builds(
        GreekLimits,
        delta=st.none() | st.floats(0, 3000),
        gamma=st.none() | st.floats(0, 100),
        vega=st.none() | st.floats(0, 40000),
        theta=st.none() | st.floats(0, 20000),
    ),
)
orders_st = st.lists(
    st.tuples(
        st.sampled_from([i.id for i in INSTS]),
        st.sampled_from([Side.BUY, Side.SELL]),
        st.integers(1, 40),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=150)
@given(limits_st, orders_st)
def test_no_limit_is_ever_exceeded_after_an_accepted_order(lim, orders):
    chk = _checker(lim)
    inst = {i.id: i for i in INSTS}
    pos = dict.fromkeys(inst, 0)
    for iid, side, lots in orders:
        qty = lots * inst[iid].lot_size
        d = chk.check_order(Order(iid, side, qty))
        assert 0 <= d.qty <= qty and d.qty % inst[iid].lot_size == 0
        assert (d.action is Action.ALLOW) == (d.qty == qty)
        assert (d.action is Action.REJECT) == (d.qty == 0)
        if d.qty:
            chk.on_fill(Fill(iid, side, d.qty, 1.0))
            pos[iid] += int(side) * d.qty
        for key, value in _reference_measures(pos).items():
            limit = _limit_of(lim, key)
            if limit is not None:
                assert value <= limit, (key, value, limit)


@given(limits_st, orders_st)
def test_scaled_size_is_maximal_for_integer_limits(lim, orders):
    """One more lot than a SCALE decision breaches an integer limit (no needless scaling)."""
    lim = RiskLimits(
        max_position=lim.max_position,
        max_per_strike=lim.max_per_strike,
        max_per_expiry=lim.max_per_expiry,
    )
    chk = _checker(lim)
    inst = {i.id: i for i in INSTS}
    pos = dict.fromkeys(inst, 0)
    for iid, side, lots in orders:
        d = chk.check_order(Order(iid, side, lots * inst[iid].lot_size))
        if d.action is not Action.ALLOW:
            trial = dict(pos)
            trial[iid] += int(side) * (d.qty + inst[iid].lot_size)
            ref = _reference_measures(trial)
            assert any(
                _limit_of(lim, k) is not None and v > _limit_of(lim, k)
                for k, v in ref.items()
                if not k.startswith(("greeks", "gross"))
            )
        if d.qty:
            chk.on_fill(Fill(iid, side, d.qty, 1.0))
            pos[iid] += int(side) * d.qty


def test_risk_reducing_orders_always_allowed_when_over_limit():
    chk = _checker(RiskLimits())
    chk.on_fill(Fill("A-C100", Side.BUY, 50, 2.0))
    # tighten the limits below the current book (as after a market move)
    tight = RiskLimits(
        max_position=10,
        max_per_strike=10,
        max_gross_notional=1000.0,
        greeks=GreekLimits(delta=10.0, vega=10.0),
    )
    chk2 = LimitChecker(INSTS, tight)
    chk2.update_market(SPOT, UNIT)
    chk2.on_fill(Fill("A-C100", Side.BUY, 50, 2.0))
    d = chk2.check_order(Order("A-C100", Side.SELL, 30))
    assert (d.action, d.qty) == (Action.ALLOW, 30)
    # increasing is refused; selling through zero is cut where it would worsen |position|
    assert chk2.check_order(Order("A-C100", Side.BUY, 1)).action is Action.REJECT
    d = chk2.check_order(Order("A-C100", Side.SELL, 120))
    assert d.action is Action.SCALE and d.qty <= 100


def test_greeks_limit_is_checked_post_trade():
    """The original's bug: utilisation computed before the trade let a breaching order through."""
    lim = RiskLimits(greeks=GreekLimits(vega=19.9 * 100 * 10.5))  # room for 10.5 contracts
    chk = _checker(lim)
    chk.on_fill(Fill("A-C100", Side.BUY, 9, 2.0))
    d = chk.check_order(Order("A-C100", Side.BUY, 5))
    assert (d.action, d.qty) == (Action.SCALE, 1)
    assert d.binding == ("greeks.vega:A",)
    # a put adds vega too; a short option reduces it and is allowed in full
    assert chk.check_order(Order("A-P100", Side.SELL, 5)).action is Action.ALLOW


def test_lot_size_scaling_and_bad_orders_change_nothing():
    chk = _checker(RiskLimits(max_position=25))
    d = chk.check_order(Order("A", Side.BUY, 40))  # lot 10
    assert (d.action, d.qty, d.binding) == (Action.SCALE, 20, ("position:A",))
    before = chk.snapshot()
    with pytest.raises(ValueError, match="qty: must be a multiple of lot_size 10"):
        chk.check_order(Order("A", Side.BUY, 15))
    with pytest.raises(ValueError, match="unknown instrument 'ZZZ'"):
        chk.check_order(Order("ZZZ", Side.BUY, 1))
    with pytest.raises(ValueError, match="unknown instrument 'ZZZ'"):
        chk.on_fill(Fill("ZZZ", Side.BUY, 1, 1.0))
    with pytest.raises(ValueError, match="qty: must be > 0"):
        Order("A", Side.BUY, -10)
    with pytest.raises(ValueError, match=r"spot\['A'\]: must be finite"):
        chk.update_market({"A": float("nan")}, {})
    assert chk.snapshot() == before


def test_missing_market_data_is_a_clear_error():
    chk = LimitChecker(INSTS, RiskLimits(greeks=GreekLimits(delta=1.0)))
    with pytest.raises(ValueError, match="no unit Greeks for instrument 'A-C100'"):
        chk.check_order(Order("A-C100", Side.BUY, 1))
    with pytest.raises(ValueError, match="max_position: must be a finite number >= 0"):
        RiskLimits(max_position=-1)


def test_update_market_from_model_uses_pricing_core():
    from scipy.stats import norm

    chk = LimitChecker(INSTS, RiskLimits())
    vols = {i.id: 0.2 for i in INSTS if i.is_option}
    chk.update_market_from_model(SPOT, vols, rate=0.0)
    chk.on_fill(Fill("A-C100", Side.BUY, 2, 1.0))
    d1 = 0.5 * 0.2 * math.sqrt(0.25)
    assert chk.greeks("A")["delta"] == pytest.approx(200 * norm.cdf(d1), rel=1e-12)
    assert chk.utilisation() == {}
