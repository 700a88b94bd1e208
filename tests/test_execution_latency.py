"""LatencyTracker: nearest-rank percentiles over rolling windows."""

from __future__ import annotations

import asyncio

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given

from jaxmm.execution import LatencyTracker, nearest_rank


@given(xs=st.lists(st.integers(0, 10**9), min_size=1, max_size=300))
def test_percentiles_match_numpy_inverted_cdf(xs):
    t = LatencyTracker(window=1_000)
    for i, x in enumerate(xs):
        t.record("op", x, at_ns=i)
    s = t.stats("op")
    for q, got in ((50, s.p50), (95, s.p95), (99, s.p99)):
        assert got == int(np.percentile(xs, q, method="inverted_cdf"))
    assert (s.count, s.max, s.min) == (len(xs), max(xs), min(xs))
    assert s.mean == pytest.approx(np.mean(xs))


def test_rolling_count_window_and_age_window():
    t = LatencyTracker(window=3)
    for i, x in enumerate([100, 1, 2, 3]):
        t.record("a", x, at_ns=i)
    assert t.stats("a").max == 3 and t.stats("a").count == 3  # 100 fell out
    now = [1_000]
    aged = LatencyTracker(window=100, max_age_ns=500, clock=lambda: now[0])
    aged.record("a", 7, at_ns=600)
    aged.record("a", 9, at_ns=900)
    assert aged.stats("a").count == 2
    now[0] = 1_101  # the first sample is now 501 ns old: out
    assert aged.stats("a").count == 1 and aged.stats("a").p50 == 9
    assert aged.stats("missing") is None


def test_measure_start_stop_summary_reset():
    now = [0]
    t = LatencyTracker(clock=lambda: now[0])
    with t.measure("x"):
        now[0] += 250
    t0 = t.start()
    now[0] += 50
    assert t.stop("y", t0) == 50

    async def coro():
        with t.measure("z"):
            await asyncio.sleep(0)
            now[0] += 10

    asyncio.run(coro())
    assert {k: v.max for k, v in t.summary().items()} == {"x": 250, "y": 50, "z": 10}
    assert t.operations() == ["x", "y", "z"]
    t.reset("x")
    assert t.stats("x") is None
    t.reset()
    assert t.summary() == {}


def test_validation():
    with pytest.raises(ValueError, match="window"):
        LatencyTracker(window=0)
    with pytest.raises(ValueError, match="max_age_ns"):
        LatencyTracker(max_age_ns=0)
    with pytest.raises(ValueError, match="latency_ns"):
        LatencyTracker().record("a", -1)
    with pytest.raises(ValueError, match="pct"):
        nearest_rank([1], 0)
    with pytest.raises(ValueError, match="empty"):
        nearest_rank([], 50)
    assert nearest_rank([1, 5, 9], 100) == 9 and nearest_rank([1, 5, 9], 34) == 5
