"""Microstructure analytics on constructed series with hand-computed answers."""

import math

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from scipy.stats import norm

from jaxmm.analytics import (
    LiveMetrics,
    bvc_buy_fraction,
    fill_markouts,
    lee_ready,
    order_flow_imbalance,
    quote_rule,
    tick_rule,
    trade_flow_imbalance,
    volume_buckets,
    vpin,
)


def test_ofi_each_case_of_cont_kukanov_stoikov():
    # events: (1) bid size +3 at same price, (2) bid price up (new queue 4),
    # (3) bid price down (old queue 4 removed), (4) ask size -2 at same price,
    # (5) ask price down (new queue 6), (6) ask price up (old queue 6 removed)
    bp = [10, 10, 11, 10, 10, 10, 10]
    bq = [5, 8, 4, 9, 9, 9, 9]
    ap = [12, 12, 12, 12, 12, 11, 12]
    aq = [7, 7, 7, 7, 5, 6, 3]
    e = order_flow_imbalance(bp, bq, ap, aq)
    assert e.tolist() == [3.0, 4.0, -4.0, 2.0, -6.0, 6.0]
    with pytest.raises(ValueError, match="lengths differ"):
        order_flow_imbalance([1, 2], [1, 2], [1], [1])
    with pytest.raises(ValueError, match="bid_size: must be >= 0"):
        order_flow_imbalance([1, 2], [1, -2], [3, 3], [1, 1])


def test_trade_classification_rules():
    p = [10.0, 10.25, 10.25, 10.0, 10.0, 10.25]  # binary-exact prices: ties are exact
    bid = [9.5, 10.0, 10.0, 9.75, 9.75, 10.0]
    ask = [10.0, 10.5, 10.5, 10.25, 10.25, 10.5]
    assert tick_rule(p).tolist() == [0, 1, 1, -1, -1, 1]
    # mids: 9.75, 10.25, 10.25, 10.0, 10.0, 10.25
    assert quote_rule(p, bid, ask).tolist() == [1, 0, 0, 0, 0, 0]
    assert lee_ready(p, bid, ask).tolist() == [1, 1, 1, -1, -1, 1]
    assert trade_flow_imbalance([1, 2, 3, 4], [1, -1, 1, 1]) == pytest.approx(0.6)
    assert trade_flow_imbalance([0, 0], [1, -1]) == 0.0
    with pytest.raises(ValueError, match="price: contains NaN"):
        tick_rule([1.0, math.nan])


def test_vpin_constructed_buckets_by_hand():
    # bars (volume, buy share): (3, 1), (5, 0), (2, .5), (6, 1), (4, .25); bucket 5
    # bucket 1: 3 buy + 2 sell;  bucket 2: 3 sell + (1 buy, 1 sell)
    # bucket 3: 5 buy (bar 4 split);  bucket 4: 1 buy + (1 buy, 3 sell)
    buy, sell = volume_buckets([3, 5, 2, 6, 4], [1.0, 0.0, 0.5, 1.0, 0.25], 5.0)
    np.testing.assert_allclose(buy, [3, 1, 5, 2], atol=1e-12)
    np.testing.assert_allclose(sell, [2, 4, 0, 3], atol=1e-12)
    v = vpin(buy, sell, window=2)
    np.testing.assert_allclose(v, [(0.2 + 0.6) / 2, (0.6 + 1.0) / 2, (1.0 + 0.2) / 2])
    # an incomplete trailing bucket is dropped; one huge bar spans several buckets
    buy, sell = volume_buckets([12.0], [0.75], 5.0)
    np.testing.assert_allclose(buy, [3.75, 3.75])
    with pytest.raises(ValueError, match=r"buy_fraction: must be <= 1.0"):
        volume_buckets([1.0], [1.5], 5.0)
    with pytest.raises(ValueError, match="window: must be an integer >= 1"):
        vpin(buy, sell, 0)


def test_bvc_is_the_normal_cdf_of_standardised_changes():
    dp = np.array([0.5, -1.0, 0.0, 2.0, -0.3])
    sd = np.std(dp, ddof=1)
    np.testing.assert_allclose(bvc_buy_fraction(dp), norm.cdf(dp / sd), rtol=1e-14)
    np.testing.assert_allclose(bvc_buy_fraction(dp, sigma=0.5), norm.cdf(dp / 0.5), rtol=1e-14)
    with pytest.raises(ValueError, match="sigma: must be > 0"):
        bvc_buy_fraction(dp, sigma=0.0)


def test_markouts_decomposition_by_hand():
    mid_ts = [0.0, 1.0, 2.0, 10.0]
    mid = [100.0, 100.2, 99.9, 100.5]
    # we buy 2 at 99.95 at t=0.5 (mid 100.0); we sell 1 at 100.3 at t=1.5 (mid 100.2)
    m = fill_markouts(
        [0.5, 1.5], [99.95, 100.3], [1, -1], [2, 1], mid_ts, mid, [1.0, 20.0], multiplier=10
    )
    np.testing.assert_allclose(m.effective, [0.05, 0.1], atol=1e-12)
    # t+1: buy -> mid(1.5) = 100.2 ; sell -> mid(2.5) = 99.9 ; t+20 beyond data -> NaN
    np.testing.assert_allclose(m.realised[:, 0], [0.25, 0.4], atol=1e-12)
    np.testing.assert_allclose(m.adverse[:, 0], [-0.2, -0.3], atol=1e-12)
    np.testing.assert_allclose(m.effective, m.realised[:, 0] + m.adverse[:, 0], atol=1e-12)
    np.testing.assert_allclose(m.pnl[:, 0], [0.25 * 2 * 10, 0.4 * 10], atol=1e-9)
    assert np.isnan(m.realised[:, 1]).all()
    with pytest.raises(ValueError, match="fill_side: must be"):
        fill_markouts([0.0], [1.0], [0], [1], [0.0], [1.0], [1.0])
    with pytest.raises(ValueError, match="mid_ts: must be non-decreasing"):
        fill_markouts([0.0], [1.0], [1], [1], [1.0, 0.0], [1.0, 1.0], [1.0])


def test_live_metrics_and_prometheus_exposition():
    m = LiveMetrics(namespace="mm")
    m.on_quote_state(100.0, True)
    for _ in range(8):
        m.on_order()
    m.on_cancel(3)
    m.on_fill(1, 99.98, 100.0, 5, multiplier=100)  # +0.02 x 5 x 100 = 10
    m.on_fill(-1, 100.01, 100.0, 1, multiplier=100)  # +0.01 x 100 = 1
    m.on_quote_state(130.0, False)
    m.on_quote_state(160.0, True)
    snap = m.snapshot(200.0)  # up 30 + 40 of 100 s
    assert snap["fill_rate"] == 2 / 8 and snap["cancel_rate"] == 3 / 8
    assert snap["quote_uptime"] == pytest.approx(0.7)
    assert snap["spread_captured"] == pytest.approx(11.0)
    text = m.exposition(200.0).decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert fams["mm_orders"].samples[0].value == 8
    assert fams["mm_cancels"].samples[0].value == 3
    assert fams["mm_quote_uptime_ratio"].samples[0].value == pytest.approx(0.7)
    with pytest.raises(ValueError, match="ts: must be non-decreasing"):
        m.on_quote_state(150.0, True)
    with pytest.raises(ValueError, match="qty: must be > 0"):
        m.on_fill(1, 1.0, 1.0, 0)
