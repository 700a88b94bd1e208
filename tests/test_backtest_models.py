"""jaxmm.backtest models: latency validation, queue-model formulas, synthetic-flow statistics."""

import math

import numpy as np
import pytest
from scipy import stats

from jaxmm.backtest import (
    ConstantLatency,
    EmpiricalLatency,
    OptimisticQueue,
    PessimisticQueue,
    ProbabilisticQueue,
    hawkes_l2_stream,
    hawkes_times,
    poisson_l2_stream,
    poisson_times,
    validate_events,
)

# ----------------------------------------------------------------------------- latency


@pytest.mark.parametrize(
    "bad, msg",
    [
        (-1, "ns: latency must be >= 0"),
        (float("nan"), "ns: NaN latency"),
        (float("inf"), "ns: infinite latency"),
        (1.5, "ns: latencies must be whole"),
        ("5", "ns: must be integer nanoseconds"),
        (True, "ns: must be integer nanoseconds"),
    ],
)
def test_constant_latency_rejects(bad, msg):
    with pytest.raises(ValueError, match=msg):
        ConstantLatency(bad)


@pytest.mark.parametrize(
    "bad, msg",
    [
        ([10, -1], "samples: latency must be >= 0"),
        ([10.0, float("nan")], "samples: NaN latency"),
        ([], "samples: must be a non-empty 1-d array"),
        ([[1, 2]], "samples: must be a non-empty 1-d array"),
    ],
)
def test_empirical_latency_rejects(bad, msg):
    with pytest.raises(ValueError, match=msg):
        EmpiricalLatency(bad)


def test_empirical_latency_resamples_the_given_distribution():
    samples = np.array([100, 200, 200, 700])
    m = EmpiricalLatency(samples)
    draw = m.sampler(np.random.default_rng(3))
    x = np.array([draw() for _ in range(20_000)])
    # each sample is drawn with probability 1/4: frequencies 1/4, 1/2, 1/4
    for v, p in ((100, 0.25), (200, 0.5), (700, 0.25)):
        freq = np.mean(x == v)
        assert abs(freq - p) < 5 * math.sqrt(p * (1 - p) / x.size)
    # seeded: the same generator seed gives the same sequence
    d1 = m.sampler(np.random.default_rng(9))
    d2 = m.sampler(np.random.default_rng(9))
    assert [d1() for _ in range(5000)] == [d2() for _ in range(5000)]


# ----------------------------------------------------------------------------- queue models


def test_queue_models_by_hand():
    # level of L = 10 lots, 4 ahead of us (6 behind); a cancel of c = 3 lots
    assert OptimisticQueue().after_cancel(4.0, 10.0, 3.0) == 1.0  # all 3 ahead
    assert PessimisticQueue().after_cancel(4.0, 10.0, 3.0) == 4.0  # all 3 behind
    # a cancel of 8 > 6 behind must take at least 2 from ahead, even for the pessimist
    assert PessimisticQueue().after_cancel(4.0, 10.0, 8.0) == 2.0
    # probabilistic n = 1: share x = 0.4 of the cancel ahead -> 4 - 1.2
    assert ProbabilisticQueue(1.0).after_cancel(4.0, 10.0, 3.0) == pytest.approx(2.8, abs=1e-12)
    # n = 2: f(0.4) = 0.16 / (0.16 + 0.36) = 4/13
    assert ProbabilisticQueue(2.0).after_cancel(4.0, 10.0, 3.0) == pytest.approx(
        4.0 - 3.0 * 4.0 / 13.0, abs=1e-12
    )
    # clipping: a cancel of 8 under n = 4 would take f(0.4)*8 < 2 from ahead; floor is 2
    assert ProbabilisticQueue(4.0).after_cancel(4.0, 10.0, 8.0) == pytest.approx(2.0)


def test_probabilistic_share_properties():
    m = ProbabilisticQueue(3.0)
    xs = np.linspace(0.0, 1.0, 101)
    f = np.array([m.share(x) for x in xs])
    assert f[0] == 0.0 and f[-1] == 1.0 and m.share(0.5) == 0.5
    assert np.all(np.diff(f) >= 0)
    np.testing.assert_allclose(f + f[::-1], 1.0, atol=1e-15)  # f(x) + f(1 - x) = 1


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), "2"])
def test_probabilistic_rejects_bad_power(bad):
    with pytest.raises(ValueError, match="n: must be"):
        ProbabilisticQueue(bad)


# ----------------------------------------------------------------------------- point processes


def test_poisson_gaps_are_exponential():
    t = poisson_times(50.0, 200.0, seed=5)
    gaps = np.diff(np.concatenate([[0.0], t]))
    # Kolmogorov-Smirnov against Exp(rate 50) (scipy.stats.expon with scale 1/50)
    assert stats.kstest(gaps, "expon", args=(0.0, 1.0 / 50.0)).pvalue > 1e-3
    # count within 4 sigma of the Poisson mean 10,000
    assert abs(t.size - 10_000) < 4 * math.sqrt(10_000)


@pytest.mark.parametrize("mu, alpha, beta", [(1.0, 0.5, 1.0), (2.0, 1.5, 2.0)])
def test_hawkes_mean_intensity_matches_theory(mu, alpha, beta):
    # Hawkes (1971): stationary mean intensity mu / (1 - n), n = alpha / beta. The count over
    # a long window has Var N(T) / T -> mu / (1 - n)^3 (Bacry, Mastromatteo & Muzy 2015,
    # "Hawkes processes in finance", eq. for the asymptotic variance), so the rate estimate
    # has std sqrt(mu / ((1 - n)^3 T)).
    n = alpha / beta
    t_end = 20_000.0
    t = hawkes_times(mu, alpha, beta, t_end, seed=11)
    lam = mu / (1.0 - n)
    sd = math.sqrt(mu / ((1.0 - n) ** 3 * t_end))
    assert abs(t.size / t_end - lam) < 4 * sd
    assert np.all(np.diff(t) > 0) and t[-1] <= t_end


def test_hawkes_clusters_more_than_poisson():
    # self-excitation: the index of dispersion of counts in windows of 10 s is ~ 1 for
    # Poisson and ~ 1 / (1 - n)^2 = 4 for n = 0.5 (long windows, Bacry et al. 2015)
    t = hawkes_times(1.0, 0.5, 1.0, 20_000.0, seed=2)
    counts = np.bincount((t // 10.0).astype(np.int64), minlength=2000)
    dispersion = counts.var() / counts.mean()
    assert 2.5 < dispersion < 5.5


def test_hawkes_rejects_explosive_parameters():
    with pytest.raises(ValueError, match="branching ratio"):
        hawkes_times(1.0, 2.0, 1.0, 10.0)
    with pytest.raises(ValueError, match="mu: must be > 0"):
        hawkes_times(0.0, 0.5, 1.0, 10.0)


def test_synthetic_l2_streams_are_valid_and_seeded():
    a = poisson_l2_stream(3_000, seed=7)
    b = poisson_l2_stream(3_000, seed=7)
    c = poisson_l2_stream(3_000, seed=8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert validate_events(a).empty
    h = hawkes_l2_stream(20.0, mu=50.0, alpha=30.0, beta=60.0, seed=1)
    assert validate_events(h).empty
    # trades exist, the mid moves (a random walk driven by the flow)
    assert np.any(a["kind"] == 0) and np.any(h["kind"] == 0)
    bids = {}
    asks = {}
    mids = []
    for r in a.tolist():
        if r[3] == 1:
            book = bids if r[4] == 0 else asks
            if r[6]:
                book[r[5]] = r[6]
            else:
                book.pop(r[5], None)
            mids.append((max(bids) + min(asks)) / 2 if bids and asks else np.nan)
    assert np.nanmax(mids) - np.nanmin(mids) >= 2
