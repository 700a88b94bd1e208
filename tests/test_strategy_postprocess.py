"""Operator post-processing: clamps, fee floor, rounding, size shaping, ladders, pipeline;
plus hypothesis property tests over every strategy followed by the clamps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxmm.strategy import (
    GLFT,
    AdaptiveSpread,
    AvellanedaStoikov,
    BookLevels,
    DepthBased,
    Grid,
    Ladder,
    MarketState,
    Quote,
    QuoteConstraints,
    QuotePipeline,
    round_to_increment,
)

S100 = MarketState(mid=100.0)


def test_min_and_max_spread_clamp_symmetrically_about_centre():
    c = QuoteConstraints(min_spread=0.5, max_spread=2.0)
    narrow = c.apply(Quote(99.9, 100.1, 1.0, 1.0), S100)
    assert (float(narrow.bid), float(narrow.ask)) == pytest.approx((99.75, 100.25))
    wide = c.apply(Quote(97.0, 101.0, 1.0, 1.0), S100)  # centre 99, spread 4 -> 2
    assert (float(wide.bid), float(wide.ask)) == pytest.approx((98.0, 100.0))


def test_fee_floor_applied_per_side():
    c = QuoteConstraints(fee_rate=0.001, fee_abs=0.02)  # floor = 0.1 + 0.02 = 0.12
    q = c.apply(Quote(99.95, 100.30, 1.0, 1.0), S100)
    assert float(q.bid) == pytest.approx(99.88)
    assert float(q.ask) == pytest.approx(100.30)
    skewed = c.apply(Quote(99.0, 99.9, 1.0, 1.0), S100)  # ask below mid -> lifted
    assert float(skewed.ask) == pytest.approx(100.12)


def test_tick_rounding_outward_and_lot_rounding_down():
    c = QuoteConstraints(tick=0.05, lot=10.0, min_size=10.0, max_size=55.0)
    q = c.apply(Quote(99.93, 100.01, 57.0, 9.0), S100)
    assert float(q.bid) == pytest.approx(99.90)
    assert float(q.bid_size) == 50.0  # min(57, 55) -> 50 (lot 10)
    assert float(q.ask_size) == 0.0  # 9 < lot -> 0 -> off
    assert float(q.ask) == 100.0  # placeholder of the inactive side
    on_tick = c.apply(Quote(99.95, 100.05, 10.0, 10.0), S100)  # already on the tick
    assert float(on_tick.bid) == pytest.approx(99.95) and float(on_tick.ask) == pytest.approx(
        100.05
    )


def test_round_to_increment_snaps_representation_error():
    x = jnp.asarray(0.1 + 0.2)  # 0.30000000000000004
    assert float(round_to_increment(x, jnp.asarray(0.1), "down")) == pytest.approx(0.3)
    assert float(round_to_increment(x, jnp.asarray(0.1), "up")) == pytest.approx(0.3)
    assert float(
        round_to_increment(jnp.asarray(0.27), jnp.asarray(0.1), "nearest")
    ) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="mode: must be"):
        round_to_increment(x, jnp.asarray(0.1), "sideways")


def test_inventory_room_and_shaping():
    c = QuoteConstraints(max_inventory=10.0, size_shaping=0.5)
    q = c.apply(Quote(99.0, 101.0, 8.0, 8.0), MarketState(mid=100.0, inventory=6.0))
    # bid: 8 * (1 - 0.5 * 0.6) = 5.6, room 4 -> 4; ask: 8 * min(1, 1.3) = 8, room 16
    assert float(q.bid_size) == pytest.approx(4.0)
    assert float(q.ask_size) == pytest.approx(8.0)
    full = c.apply(Quote(99.0, 101.0, 8.0, 8.0), MarketState(mid=100.0, inventory=12.0))
    assert float(full.bid_size) == 0.0 and float(full.ask_size) == 8.0


def test_ladder_and_cumulative_room():
    lad = Ladder(spacing=0.25, levels=4, size_decay=0.5)
    raw = Quote(99.5, 100.5, 8.0, 8.0)
    q = lad.apply(raw, S100)
    np.testing.assert_allclose(q.bid, [99.5, 99.25, 99.0, 98.75])
    np.testing.assert_allclose(q.ask, [100.5, 100.75, 101.0, 101.25])
    np.testing.assert_allclose(q.bid_size, [8.0, 4.0, 2.0, 1.0])
    c = QuoteConstraints(max_inventory=10.0)
    capped = c.apply(q, MarketState(mid=100.0, inventory=-1.0))
    # bid room 11: 8, 3, 0, 0 ; ask room 9: 8, 1, 0, 0
    np.testing.assert_allclose(capped.bid_size, [8.0, 3.0, 0.0, 0.0])
    np.testing.assert_allclose(capped.ask_size, [8.0, 1.0, 0.0, 0.0])
    inactive = lad.apply(Quote(100.0, 100.5, 0.0, 2.0), S100)
    np.testing.assert_allclose(inactive.bid_size, 0.0)
    np.testing.assert_allclose(inactive.bid, 100.0)


def test_pipeline_keeps_raw_quote():
    mm = AvellanedaStoikov(0.1, 1.5, 2.0, 1.0)
    p = QuotePipeline(mm, constraints=QuoteConstraints(max_spread=1.0, tick=0.01))
    raw, final = p.quote_with_raw(S100)
    ref = mm.quote(S100)
    assert float(raw.bid) == float(ref.bid) and float(raw.ask) == float(ref.ask)
    assert float(final.ask - final.bid) == pytest.approx(1.0)
    assert float(p.quote(S100).bid) == float(final.bid)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(min_spread=-1.0), "min_spread: must be >= 0.0"),
        (dict(min_spread=2.0, max_spread=1.0), "max_spread: must be >= min_spread"),
        (dict(fee_rate=1.0), "fee_rate: must be < 1"),
        (dict(tick=0.0), "tick: must be > 0.0"),
        (dict(lot=-1.0), "lot: must be > 0.0"),
        (dict(size_shaping=2.0), "size_shaping: must be <= 1.0"),
        (dict(max_size=0.0), "max_size: must be > 0.0"),
    ],
)
def test_constraint_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        QuoteConstraints(**kwargs)


# ------------------------------------------------------------------ property tests

TICK, LOT, MIN_SPREAD, MAX_SPREAD, FEE_RATE, FEE_ABS, QMAX, MAX_SIZE = (
    0.01,
    1.0,
    0.05,
    3.0,
    2e-4,
    0.01,
    20.0,
    7.0,
)


def _constraints():
    return QuoteConstraints(
        min_spread=MIN_SPREAD,
        max_spread=MAX_SPREAD,
        fee_rate=FEE_RATE,
        fee_abs=FEE_ABS,
        tick=TICK,
        lot=LOT,
        max_size=MAX_SIZE,
        max_inventory=QMAX,
        size_shaping=0.5,
    )


BOOK = BookLevels([-1.0, -2.0, -3.0], [5.0, 20.0, 50.0], [1.0, 2.0, 3.0], [30.0, 10.0, 10.0])


@jax.jit
def _all_quotes(p, mid, inv, t, ib, i_f):
    """Raw and constrained quotes of every strategy for one state (one compile)."""
    book = jax.tree_util.tree_map(lambda x: x * 0.01, BOOK)
    book = BookLevels(
        book.bid_prices + mid, book.bid_sizes * 100, book.ask_prices + mid, book.ask_sizes * 100
    )
    state = MarketState(
        mid=mid, inventory=inv, t=t, book_imbalance=ib, flow_imbalance=i_f, book=book
    )
    strategies = [
        AvellanedaStoikov(p[0], p[1], p[2], 10.0),
        GLFT(p[0], p[1], p[3], p[2], QMAX),
        GLFT(p[0], p[1], p[3], p[2], QMAX, k_ask=p[1] * 1.7, A_ask=p[3] * 0.5),
        Grid(p[4], 2.0, 5),
        Grid(p[5], 2.0, 5, geometric=True, size_growth=1.5),
        AdaptiveSpread(
            p[4],
            book_widening=1.0,
            flow_widening=2.0,
            book_skew=p[4],
            flow_skew=-p[4],
            inventory_skew=0.01,
            flow_size_shading=0.8,
        ),
        DepthBased(15.0, QMAX, TICK, max_order_size=9.0),
    ]
    c = _constraints()
    out = []
    for s in strategies:
        raw, fin = QuotePipeline(s, constraints=c).quote_with_raw(state)
        out.append((raw, fin))
    lad = QuotePipeline(strategies[0], ladder=Ladder(p[4], 3, size_decay=0.5), constraints=c)
    out.append(lad.quote_with_raw(state))
    return out


@given(
    gamma=st.floats(1e-3, 2.0),
    k=st.floats(0.05, 20.0),
    sigma=st.floats(1e-3, 1.0),
    A=st.floats(0.05, 20.0),
    spacing=st.floats(1e-3, 5.0),
    rel=st.floats(1e-4, 0.2),
    mid=st.floats(0.05, 1e4),
    inv=st.floats(-40.0, 40.0),
    t=st.floats(0.0, 20.0),
    ib=st.floats(-2.0, 2.0),
    i_f=st.floats(-2.0, 2.0),
)
def test_properties_every_strategy(gamma, k, sigma, A, spacing, rel, mid, inv, t, ib, i_f):
    p = jnp.asarray([gamma, k, sigma, A, spacing, rel])
    out = _all_quotes(
        p, jnp.asarray(mid), jnp.asarray(inv), jnp.asarray(t), jnp.asarray(ib), jnp.asarray(i_f)
    )
    floor = FEE_RATE * mid + FEE_ABS
    eps = 1e-9 * max(1.0, mid)
    for raw, fin in out:
        for q in (raw, fin):
            for price, size in ((q.bid, q.bid_size), (q.ask, q.ask_size)):
                price, size = np.asarray(price), np.asarray(size)
                assert np.all(np.isfinite(price)) and np.all(np.isfinite(size))
                assert np.all(size >= 0.0)
                assert np.all(price[size > 0] > 0.0)
            both = (np.asarray(q.bid_size) > 0) & (np.asarray(q.ask_size) > 0)
            assert np.all(np.asarray(q.bid)[both] < np.asarray(q.ask)[both])
        bid, ask = np.asarray(fin.bid), np.asarray(fin.ask)
        bs, as_ = np.asarray(fin.bid_size), np.asarray(fin.ask_size)
        b_on, a_on = bs > 0, as_ > 0
        both = b_on & a_on
        spread = ask - bid
        # min spread and fee floor hold exactly (up to float noise) after outward rounding
        assert np.all(spread[both] >= MIN_SPREAD - eps)
        assert np.all(bid[b_on] <= mid - floor + eps)
        assert np.all(ask[a_on] >= mid + floor - eps)
        # max spread: two ticks of rounding tolerance, unless the fee floor (which wins) has
        # moved a side, i.e. a side sits at its floor
        at_floor = (bid >= mid - floor - TICK - eps) | (ask <= mid + floor + TICK + eps)
        assert np.all(spread[both & ~at_floor] <= MAX_SPREAD + 2 * TICK + eps)
        # on the tick and the lot
        for x in (bid[b_on], ask[a_on]):
            n = x / TICK
            assert np.all(np.abs(n - np.round(n)) < 1e-6 * np.maximum(1.0, np.abs(n)))
        for x in (bs, as_):
            assert np.all(np.abs(x / LOT - np.round(x / LOT)) < 1e-9)
            assert np.all(x <= MAX_SIZE)
        # position limit: filling every level of a side keeps |q| <= QMAX (if it was inside)
        if abs(inv) <= QMAX:
            assert inv + bs.sum() <= QMAX + 1e-9
            assert inv - as_.sum() >= -QMAX - 1e-9
        else:
            side_growing = bs.sum() if inv > 0 else as_.sum()
            assert side_growing == 0.0
