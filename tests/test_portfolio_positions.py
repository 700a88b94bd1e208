"""Positions and portfolio accounting: hand-computed PnL, sign flips, fees, bad input."""

import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxmm.portfolio import Fill, Instrument, Portfolio, Position, Side


def _spot_pf(mult=1.0):
    return Portfolio([Instrument.spot("XYZ", multiplier=mult)])


def test_average_cost_reduce_and_flip_by_hand():
    pf = _spot_pf()
    pf.apply_fill(Fill("XYZ", Side.BUY, 10, 100))
    p = pf.apply_fill(Fill("XYZ", Side.BUY, 10, 110))
    assert (p.qty, p.avg_price, p.realised) == (20, Decimal(105), Decimal(0))
    # reduce: 15 closed at 120 against 105 -> +225, average unchanged
    p = pf.apply_fill(Fill("XYZ", Side.SELL, 15, 120))
    assert (p.qty, p.avg_price, p.realised) == (5, Decimal(105), Decimal(225))
    # flip: 5 closed at 100 (-25), 5 opened short at 100
    p = pf.apply_fill(Fill("XYZ", Side.SELL, 10, 100))
    assert (p.qty, p.avg_price, p.realised) == (-5, Decimal(100), Decimal(200))
    # cover the short at 90: +5 x 10
    p = pf.apply_fill(Fill("XYZ", Side.BUY, 5, 90))
    assert (p.qty, p.avg_price, p.realised) == (0, Decimal(0), Decimal(250))
    assert (p.bought, p.sold) == (25, 25)


def test_short_option_with_multiplier_fees_and_rebates():
    inst = Instrument.option("C", "XYZ", strike=100.0, expiry=0.5, is_call=True, multiplier=100)
    pf = Portfolio([inst])
    pf.apply_fill(Fill("C", Side.SELL, 3, "2.50", fee="-0.30"))  # maker rebate
    p = pf.apply_fill(Fill("C", Side.BUY, 1, "2.00", fee="1.10"))  # taker fee
    # one contract bought back 0.50 below the sale: 1 x 0.50 x 100
    assert p.realised == Decimal("50.00")
    assert p.fees == Decimal("0.80")
    assert (p.qty, p.avg_price) == (-2, Decimal("2.50"))
    # unrealised at 2.20: -2 x (2.20 - 2.50) x 100 = +60; net = 50 + 60 - 0.80
    assert pf.unrealised({"C": "2.20"}) == Decimal("60.00")
    assert pf.net_pnl({"C": "2.20"}) == Decimal("109.20")


def test_decimal_prices_are_exact():
    pf = _spot_pf()
    for _ in range(10):
        pf.apply_fill(Fill("XYZ", Side.BUY, 1, 0.1))
    p = pf.apply_fill(Fill("XYZ", Side.SELL, 10, 0.3))
    assert p.realised == Decimal("2.0")  # float arithmetic would give 1.9999999999999998


def test_position_rejects_fill_for_other_instrument():
    p = Position(Instrument.spot("A"))
    with pytest.raises(ValueError, match="does not match"):
        p.apply(Fill("B", Side.BUY, 1, 1.0))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"price": float("nan")}, "price: must be finite"),
        ({"price": -1.0}, "price: must be >= 0"),
        ({"qty": -3}, "qty: must be > 0"),
        ({"qty": 0}, "qty: must be > 0"),
        ({"qty": 1.5}, "qty: must be an integer"),
        ({"side": 0}, "side: must be"),
        ({"fee": "inf"}, "fee: must be finite"),
    ],
)
def test_bad_fill_raises_and_changes_nothing(kwargs, match):
    pf = _spot_pf()
    pf.apply_fill(Fill("XYZ", Side.BUY, 2, 100))
    before = (pf.positions, pf.fills("XYZ"))
    base = {"instrument": "XYZ", "side": Side.BUY, "qty": 1, "price": 100.0}
    base.update(kwargs)
    with pytest.raises(ValueError, match=match):
        pf.apply_fill(Fill(**base))
    assert (pf.positions, pf.fills("XYZ")) == before


def test_unknown_instrument_and_missing_marks():
    pf = _spot_pf()
    with pytest.raises(ValueError, match="unknown instrument 'ABC'"):
        pf.apply_fill(Fill("ABC", Side.BUY, 1, 1.0))
    assert pf.fills("XYZ") == ()
    pf.apply_fill(Fill("XYZ", Side.BUY, 1, 1.0))
    with pytest.raises(ValueError, match="no mark for open position 'XYZ'"):
        pf.unrealised({})
    with pytest.raises(ValueError, match="mark: must be finite"):
        pf.unrealised({"XYZ": float("nan")})
    with pytest.raises(ValueError, match="already registered"):
        pf.add_instrument(Instrument.spot("XYZ"))


def test_bad_instruments():
    with pytest.raises(ValueError, match="strike: must be finite and > 0"):
        Instrument.option("C", "X", strike=-1.0, expiry=1.0, is_call=True)
    with pytest.raises(ValueError, match="expiry: must be finite and >= 0"):
        Instrument.option("C", "X", strike=1.0, expiry=float("nan"), is_call=True)
    with pytest.raises(ValueError, match="multiplier"):
        Instrument.spot("X", multiplier=0.0)


def test_model_marks_match_bsm_and_surface_callable():
    from scipy.stats import norm

    inst = Instrument.option("P", "XYZ", strike=95.0, expiry=0.25, is_call=False)
    pf = Portfolio([Instrument.spot("XYZ"), inst])
    marks = pf.model_marks({"XYZ": 100.0}, lambda u, k, t: 0.3, rate=0.02, dividend=0.01)
    s, k, t, r, q, v = 100.0, 95.0, 0.25, 0.02, 0.01, 0.3
    d1 = (math.log(s / k) + (r - q + v * v / 2) * t) / (v * t**0.5)
    d2 = d1 - v * t**0.5
    ref = k * math.exp(-r * t) * norm.cdf(-d2) - s * math.exp(-q * t) * norm.cdf(-d1)
    assert marks["P"] == pytest.approx(ref, rel=1e-12)
    assert marks["XYZ"] == 100.0
    with pytest.raises(ValueError, match="no vol for instrument 'P'"):
        pf.model_marks({"XYZ": 100.0}, {}, rate=0.0)


fills = st.lists(
    st.tuples(
        st.sampled_from(["A", "B"]),
        st.sampled_from([Side.BUY, Side.SELL]),
        st.integers(1, 50),
        st.integers(1, 20000),  # price in cents
        st.integers(-50, 200),  # fee in cents
    ),
    min_size=1,
    max_size=40,
)


@given(fills, st.integers(1, 20000))
def test_quantity_invariant_and_cash_flow_reference(seq, mark_cents):
    """qty == sum of signed fill quantities; net PnL == independent cash-flow accounting."""
    pf = Portfolio([Instrument.spot("A"), Instrument.spot("B", multiplier=10)])
    cash = {"A": Decimal(0), "B": Decimal(0)}
    for iid, side, qty, cents, fee in seq:
        f = Fill(iid, side, qty, Decimal(cents) / 100, fee=Decimal(fee) / 100)
        pf.apply_fill(f)
        mult = Decimal(int(pf.instrument(iid).multiplier))
        cash[iid] -= f.signed_qty * f.price * mult + f.fee
    mark = Decimal(mark_cents) / 100
    for iid in ("A", "B"):
        pos = pf.position(iid)
        assert pos.qty == sum(f.signed_qty for f in pf.fills(iid))
        mult = Decimal(int(pf.instrument(iid).multiplier))
        reference = cash[iid] + pos.qty * mark * mult  # liquidation value of the account
        assert abs(pos.net_pnl(mark) - reference) < Decimal("1e-18")
        if pos.qty == 0:
            assert pos.avg_price == 0
