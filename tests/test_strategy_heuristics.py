"""Grid, adaptive-spread and depth-based strategies: hand values and validity."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm.strategy import AdaptiveSpread, BookLevels, DepthBased, Grid, MarketState


def test_arithmetic_and_geometric_grids_differ_and_match_hand_values():
    s = MarketState(mid=100.0)
    ar = Grid(spacing=0.5, size=1.0, levels=4).quote(s)
    ge = Grid(spacing=0.005, size=1.0, levels=4, geometric=True).quote(s)
    np.testing.assert_allclose(ar.bid, [99.5, 99.0, 98.5, 98.0], rtol=1e-15)
    np.testing.assert_allclose(ar.ask, [100.5, 101.0, 101.5, 102.0], rtol=1e-15)
    np.testing.assert_allclose(ge.bid, [100 / 1.005**i for i in range(1, 5)], rtol=1e-14)
    np.testing.assert_allclose(ge.ask, [100 * 1.005**i for i in range(1, 5)], rtol=1e-14)
    # The same first step (0.5 = 0.5 % of 100) but genuinely different lattices:
    assert float(ar.ask[0]) == pytest.approx(float(ge.ask[0]))
    assert not np.allclose(ar.ask[1:], ge.ask[1:])
    assert not np.allclose(ar.bid, ge.bid)
    # arithmetic: constant differences; geometric: constant ratios
    np.testing.assert_allclose(np.diff(ar.ask), 0.5, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(ge.ask[1:]) / np.asarray(ge.ask[:-1]), 1.005, rtol=1e-13)
    assert np.ptp(np.diff(ge.ask)) > 1e-4


def test_anchored_grid_levels_bracket_the_mid():
    g = Grid(spacing=1.0, size=2.0, levels=3, anchor=50.0)
    q = g.quote(MarketState(mid=100.4))
    np.testing.assert_allclose(q.bid, [100.0, 99.0, 98.0])
    np.testing.assert_allclose(q.ask, [101.0, 102.0, 103.0])
    on = g.quote(MarketState(mid=100.0))  # mid on a lattice point: strictly below/above
    np.testing.assert_allclose(on.bid, [99.0, 98.0, 97.0])
    np.testing.assert_allclose(on.ask, [101.0, 102.0, 103.0])
    geo = Grid(spacing=0.1, size=1.0, levels=2, anchor=50.0, geometric=True)
    gq = geo.quote(MarketState(mid=100.5))
    j = np.floor(np.log(100.5 / 50.0) / np.log(1.1))
    np.testing.assert_allclose(gq.bid, [50 * 1.1**j, 50 * 1.1 ** (j - 1)], rtol=1e-13)
    np.testing.assert_allclose(gq.ask, [50 * 1.1 ** (j + 1), 50 * 1.1 ** (j + 2)], rtol=1e-13)


def test_grid_sizes_and_positivity():
    q = Grid(spacing=40.0, size=3.0, levels=3, size_growth=2.0).quote(MarketState(mid=100.0))
    # third bid level would be 100 - 120 < 0: switched off, placeholder price = mid
    np.testing.assert_allclose(q.bid_size, [3.0, 6.0, 0.0])
    np.testing.assert_allclose(q.ask_size, [3.0, 6.0, 12.0])
    assert float(q.bid[2]) == 100.0
    assert bool(jnp.all(q.bid > 0))


def test_grid_validation():
    with pytest.raises(ValueError, match="spacing: must be > 0.0"):
        Grid(spacing=0.0, size=1.0, levels=2)
    with pytest.raises(ValueError, match="levels: must be an integer >= 1"):
        Grid(spacing=1.0, size=1.0, levels=0)
    with pytest.raises(ValueError, match="size: must be >= 0.0"):
        Grid(spacing=1.0, size=-1.0, levels=2)


def test_adaptive_spread_hand_values():
    mm = AdaptiveSpread(
        base_half_spread=0.1,
        book_widening=0.5,
        flow_widening=1.0,
        book_skew=0.04,
        flow_skew=0.02,
        inventory_skew=0.01,
        order_size=10.0,
        flow_size_shading=0.5,
    )
    s = MarketState(mid=100.0, inventory=3.0, book_imbalance=-0.4, flow_imbalance=0.6)
    q = mm.quote(s)
    half = 0.1 * (1 + 0.5 * 0.4 + 1.0 * 0.6)
    centre = 100.0 + 0.04 * -0.4 + 0.02 * 0.6 - 0.01 * 3.0
    assert float(q.bid) == pytest.approx(centre - half, rel=1e-14)
    assert float(q.ask) == pytest.approx(centre + half, rel=1e-14)
    assert float(q.bid_size) == pytest.approx(10.0)
    assert float(q.ask_size) == pytest.approx(10.0 * (1 - 0.5 * 0.6))


def test_adaptive_spread_signals_clipped_and_nan_safe():
    mm = AdaptiveSpread(base_half_spread=0.1, book_widening=1.0, flow_size_shading=1.0)
    big = mm.quote(MarketState(mid=100.0, book_imbalance=5.0, flow_imbalance=3.0))
    one = mm.quote(MarketState(mid=100.0, book_imbalance=1.0, flow_imbalance=1.0))
    assert float(big.ask - big.bid) == pytest.approx(float(one.ask - one.bid))
    assert float(big.ask_size) == 0.0 and float(big.bid_size) == 1.0
    nan = mm.quote(MarketState(mid=100.0, book_imbalance=float("nan")))
    assert float(nan.ask - nan.bid) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="flow_size_shading: must be <= 1.0"):
        AdaptiveSpread(0.1, flow_size_shading=1.5)
    with pytest.raises(ValueError, match="base_half_spread: must be > 0.0"):
        AdaptiveSpread(0.0)


def test_adaptive_negative_price_switches_side_off():
    mm = AdaptiveSpread(base_half_spread=5.0)
    q = mm.quote(MarketState(mid=3.0))
    assert float(q.bid_size) == 0.0 and float(q.ask_size) == 1.0
    assert float(q.bid) == 3.0


BOOK = BookLevels(
    [99.9, 99.8, 99.7, 99.6],
    [5.0, 20.0, 50.0, 0.0],
    [100.1, 100.2, 100.3, 100.4],
    [30.0, 10.0, 10.0, 0.0],
)


def test_depth_based_hand_values():
    mm = DepthBased(target_depth=20.0, max_exposure=10.0, tick=0.01)
    q = mm.quote(MarketState(mid=100.0, inventory=4.0, book=BOOK))
    # bid: cumulative 5, 25 -> level 1 (99.8) + tick; ask: cumulative 30 -> level 0 - tick
    assert float(q.bid) == pytest.approx(99.81, abs=1e-12)
    assert float(q.ask) == pytest.approx(100.09, abs=1e-12)
    assert float(q.bid_size) == 6.0 and float(q.ask_size) == 14.0
    deep = DepthBased(target_depth=1000.0, max_exposure=10.0, tick=0.01)
    qd = deep.quote(MarketState(mid=100.0, book=BOOK))
    # target never reached: join the deepest non-empty level (no improvement)
    assert float(qd.bid) == pytest.approx(99.71) and float(qd.ask) == pytest.approx(100.29)


def test_depth_based_sizes_never_negative_and_respect_limit():
    mm = DepthBased(target_depth=1.0, max_exposure=10.0, tick=0.01, max_order_size=8.0)
    for q, (b, a) in {
        15.0: (0.0, 8.0),
        -25.0: (8.0, 0.0),
        10.0: (0.0, 8.0),
        3.0: (7.0, 8.0),
    }.items():
        bs, as_ = mm.sizes(q)
        assert (float(bs), float(as_)) == (b, a)
    # the original crate's example: long 20 with exposure 100 -> bid 80, ask 120 (no cap)
    bs, as_ = DepthBased(1.0, 100.0, 0.01).sizes(20.0)
    assert (float(bs), float(as_)) == (80.0, 120.0)


def test_depth_based_never_crosses_and_empty_side_off():
    tight = BookLevels([99.99], [100.0], [100.0], [100.0])
    q = DepthBased(target_depth=1.0, max_exposure=5.0, tick=0.01).quote(
        MarketState(mid=99.995, book=tight)
    )
    assert float(q.bid) < float(q.ask)
    assert float(q.bid) <= 100.0 - 0.01 + 1e-12
    empty = BookLevels([99.9, 99.8], [0.0, 0.0], [100.1, 100.2], [5.0, 5.0])
    qe = DepthBased(1.0, 5.0, 0.01).quote(MarketState(mid=100.0, book=empty))
    assert float(qe.bid_size) == 0.0 and float(qe.ask_size) == 5.0


def test_depth_based_requires_book():
    with pytest.raises(ValueError, match="state.book: DepthBased needs"):
        DepthBased(1.0, 5.0, 0.01).quote(MarketState(mid=100.0))


def test_depth_based_vmaps_over_books():
    books = jax.tree_util.tree_map(lambda x: jnp.stack([x, x * 1.0]), BOOK)
    states = MarketState(
        mid=jnp.array([100.0, 100.0]), inventory=jnp.array([0.0, 12.0]), book=books
    )
    q = jax.vmap(DepthBased(20.0, 10.0, 0.01).quote)(states)
    np.testing.assert_allclose(q.bid_size, [10.0, 0.0])
