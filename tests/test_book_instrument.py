"""Instrument edge conversion (ticks, lots, fees) and the option symbol scheme."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import hypothesis.strategies as st
import pytest
from hypothesis import given

from jaxmm.book import FLOAT_GRID_TOLERANCE, Instrument, OptionSymbol, format_strike, parse_expiry


def test_price_and_qty_round_trip_exactly():
    inst = Instrument("X", tick_size="0.05", lot_size="0.001", multiplier=100)
    assert inst.price_to_ticks(Decimal("12.35")) == 247
    assert inst.price_to_ticks("12.35") == 247
    assert inst.price_to_ticks(12.35) == 247
    assert inst.ticks_to_price(247) == Decimal("12.35")
    assert inst.qty_to_lots(Decimal("0.125")) == 125
    assert inst.lots_to_qty(125) == Decimal("0.125")
    # notional = price * qty * multiplier, exact
    assert inst.notional(247, 125) == Decimal("12.35") * Decimal("0.125") * 100


def test_float_tolerance_rule():
    inst = Instrument("X", tick_size=0.01)
    assert inst.price_to_ticks(0.1 + 0.2) == 30  # 0.30000000000000004 is on the grid
    assert FLOAT_GRID_TOLERANCE == 1e-6
    # within one millionth of a tick: accepted; beyond: rejected
    assert inst.price_to_ticks(1.0 + 0.5e-8) == 100
    with pytest.raises(ValueError, match="price: .* not a multiple of the tick_size 0.01"):
        inst.price_to_ticks(1.0 + 2e-8)
    with pytest.raises(ValueError, match="price: 100.005 is not a multiple"):
        inst.price_to_ticks(100.005)


def test_decimal_input_is_exact_no_tolerance():
    inst = Instrument("X", tick_size="0.01")
    with pytest.raises(ValueError, match="price"):
        inst.price_to_ticks(Decimal("1.000000001"))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "must be > 0"),
        (-1.5, "must be > 0"),
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        (True, "bool"),
        ("abc", "not a number"),
        (None, "expected a number"),
    ],
)
def test_bad_prices_name_the_field(value, message):
    inst = Instrument("X", tick_size="0.5")
    with pytest.raises(ValueError, match=f"^limit_price: .*{message}"):
        inst.price_to_ticks(value, name="limit_price")


def test_bad_quantities():
    inst = Instrument("X", tick_size=1, lot_size=10)
    with pytest.raises(ValueError, match="qty: 15 is not a multiple of the lot_size 10"):
        inst.qty_to_lots(15)
    with pytest.raises(ValueError, match="qty: must be > 0"):
        inst.qty_to_lots(0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(symbol="", tick_size=1), "symbol"),
        (dict(symbol="X", tick_size=0), "tick_size"),
        (dict(symbol="X", tick_size=1, lot_size=-1), "lot_size"),
        (dict(symbol="X", tick_size=1, multiplier="x"), "multiplier"),
        (dict(symbol="X", tick_size=1, min_qty=0), "min_qty"),
        (dict(symbol="X", tick_size=1, min_qty=5, max_qty=4), "max_qty"),
    ],
)
def test_instrument_validation(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        Instrument(**kwargs)


def test_fee_rate_conversion():
    assert Instrument.fee_rate_to_int("2.5") == 25_000
    assert Instrument.fee_rate_to_int(-0.0001) == -1
    with pytest.raises(ValueError, match="fee_bps"):
        Instrument.fee_rate_to_int("0.00005")
    inst = Instrument("X", tick_size="0.01", multiplier=100)
    # raw fee unit: tick * lot * multiplier / (10_000 * 10_000) per (ticks * lots * 1e-4 bp)
    assert inst.fee_amount(10_000 * 10_000) == Decimal("1.00")


@given(
    ticks=st.integers(1, 10**9),
    tick=st.sampled_from(["0.01", "0.05", "0.5", "1", "0.0001", "25"]),
)
def test_ticks_round_trip_property(ticks, tick):
    inst = Instrument("X", tick_size=tick)
    p = inst.ticks_to_price(ticks)
    assert inst.price_to_ticks(p) == ticks
    assert inst.price_to_ticks(str(p)) == ticks
    assert inst.price_to_ticks(float(p)) == ticks  # floats within tolerance


# ---------------------------------------------------------------- option symbols
def test_symbol_parse_and_format():
    s = OptionSymbol.parse("BTC-20261225-100000-C")
    assert s == OptionSymbol("BTC", dt.date(2026, 12, 25), Decimal(100000), "C")
    assert str(s) == "BTC-20261225-100000-C" and s.is_call
    p = OptionSymbol.parse("SPY-20261218-450.5-P")
    assert p.strike == Decimal("450.5") and not p.is_call
    assert str(OptionSymbol.make("ETH", dt.date(2027, 1, 8), "0.25", "P")) == "ETH-20270108-0.25-P"
    assert format_strike(Decimal("450.50")) == "450.5" and format_strike(100) == "100"
    assert parse_expiry("20270108") == dt.date(2027, 1, 8)


@pytest.mark.parametrize(
    ("bad", "part"),
    [
        ("BTC-20261225-100000", "four"),
        ("BTC-20261225-100000-C-X", "four"),
        ("btc-20261225-100000-C", "underlying"),
        ("1BTC-20261225-100000-C", "underlying"),
        ("BTC-2026125-100000-C", "expiry"),
        ("BTC-20261325-100000-C", "not a date"),
        ("BTC-20260230-100000-C", "not a date"),
        ("BTC-20261225-100000.0-C", "strike"),
        ("BTC-20261225-450.50-C", "strike"),
        ("BTC-20261225-0100-C", "strike"),
        ("BTC-20261225-1e5-C", "strike"),
        ("BTC-20261225-+100-C", "strike"),
        ("BTC-20261225-0-C", "strike"),
        ("BTC-20261225--C", "strike"),
        ("BTC-20261225-100000-X", "right"),
        ("BTC-20261225-100000-c", "right"),
        ("", "four"),
    ],
)
def test_bad_symbols_strict_errors(bad, part):
    with pytest.raises(ValueError, match=f"symbol: .*{part}"):
        OptionSymbol.parse(bad)


def test_symbol_non_string():
    with pytest.raises(ValueError, match="symbol: expected a string"):
        OptionSymbol.parse(42)
    with pytest.raises(ValueError, match="right"):
        OptionSymbol.make("BTC", "20261225", 1, "Q")
    with pytest.raises(ValueError, match="strike: must be > 0"):
        OptionSymbol.make("BTC", "20261225", -1, "C")
    with pytest.raises(ValueError, match="expiry"):
        parse_expiry("2026-12-25")


@given(
    und=st.from_regex(r"[A-Z][A-Z0-9]{0,15}", fullmatch=True),
    day=st.dates(dt.date(1000, 1, 1), dt.date(9999, 12, 31)),
    strike=st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(10**9), places=4),
    right=st.sampled_from("CP"),
)
def test_symbol_round_trip_property(und, day, strike, right):
    s = OptionSymbol.make(und, day, strike, right)
    text = str(s)
    assert OptionSymbol.parse(text) == s
    assert str(OptionSymbol.parse(text)) == text
    assert s.strike == strike  # canonical form preserves the value
