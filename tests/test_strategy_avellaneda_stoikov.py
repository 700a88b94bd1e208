"""Avellaneda–Stoikov (2008): formulas against hand computation from the paper's equations."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import quad

from jaxmm.strategy import (
    SECONDS_PER_YEAR,
    AvellanedaStoikov,
    AvellanedaStoikovInfinite,
    MarketState,
    absolute_sigma,
    relative_annual_vol,
)

GAMMA, K, SIGMA, T = 0.1, 1.5, 2.0, 1.0


def test_reservation_price_and_spread_hand_values():
    mm = AvellanedaStoikov(GAMMA, K, SIGMA, T)
    # r = s - q gamma sigma^2 (T - t): 100 - 3 * 0.1 * 4 * 0.75 = 99.1
    assert float(mm.reservation_price(100.0, 3.0, 0.25)) == pytest.approx(99.1, abs=1e-12)
    # spread = gamma sigma^2 (T - t) + (2/gamma) ln(1 + gamma/k) = 0.3 + 20 ln(1 + 1/15)
    expected = 0.3 + 20.0 * math.log(1.0 + 0.1 / 1.5)
    assert float(mm.total_spread(0.25)) == pytest.approx(expected, rel=1e-14)
    # Quote: bid/ask centred on r with the total spread.
    q = mm.quote(MarketState(mid=100.0, inventory=3.0, t=0.25))
    assert float(q.bid) == pytest.approx(99.1 - expected / 2, rel=1e-14)
    assert float(q.ask) == pytest.approx(99.1 + expected / 2, rel=1e-14)
    assert float(q.bid_size) == 1.0 and float(q.ask_size) == 1.0


def test_half_spreads_are_distances_from_mid():
    mm = AvellanedaStoikov(GAMMA, K, SIGMA, T)
    q, t = -2.0, 0.5
    tau = T - t
    liq = math.log(1 + GAMMA / K) / GAMMA
    # delta^b = (1 + 2q) gamma sigma^2 tau / 2 + liq ; delta^a = (1 - 2q) ... + liq
    assert float(mm.half_spread_bid(q, t)) == pytest.approx(
        (1 + 2 * q) * GAMMA * SIGMA**2 * tau / 2 + liq, rel=1e-14
    )
    assert float(mm.half_spread_ask(q, t)) == pytest.approx(
        (1 - 2 * q) * GAMMA * SIGMA**2 * tau / 2 + liq, rel=1e-14
    )
    total = mm.half_spread_bid(q, t) + mm.half_spread_ask(q, t)
    assert float(total) == pytest.approx(float(mm.total_spread(t)), rel=1e-14)


def test_long_inventory_lowers_both_quotes_by_the_skew():
    mm = AvellanedaStoikov(GAMMA, K, SIGMA, T)
    flat = mm.quote(MarketState(mid=100.0, inventory=0.0, t=0.0))
    long = mm.quote(MarketState(mid=100.0, inventory=2.0, t=0.0))
    short = mm.quote(MarketState(mid=100.0, inventory=-2.0, t=0.0))
    skew = 2.0 * GAMMA * SIGMA**2 * T  # q gamma sigma^2 (T - t) = 0.8 price units
    assert float(flat.bid - long.bid) == pytest.approx(skew, rel=1e-12)
    assert float(flat.ask - long.ask) == pytest.approx(skew, rel=1e-12)
    assert float(short.bid - flat.bid) == pytest.approx(skew, rel=1e-12)
    assert float(long.ask) < 100.0 + float(mm.total_spread(0.0)) / 2


def test_skew_survives_realistic_units():
    """The original crate's defect: a relative vol used as absolute made the skew vanish.

    With sigma converted from 20 % annual at S = 100 to per-second absolute units and a
    one-minute horizon, a 100-lot inventory must still skew the quote by a visible amount.
    """
    sigma = float(absolute_sigma(100.0, 0.2, 1.0 / SECONDS_PER_YEAR))
    mm = AvellanedaStoikov(gamma=1.0, k=10.0, sigma=sigma, horizon=60.0)
    r = float(mm.reservation_price(100.0, 100.0, 0.0))
    assert 100.0 - r == pytest.approx(100.0 * 1.0 * sigma**2 * 60.0, rel=1e-12)
    assert 100.0 - r > 0.05  # > 5 ticks of 0.01


def test_finite_horizon_collapses_and_rolling_does_not():
    fin = AvellanedaStoikov(GAMMA, K, SIGMA, T)
    roll = AvellanedaStoikov(GAMMA, K, SIGMA, T, rolling=True)
    liq2 = 2.0 * math.log(1 + GAMMA / K) / GAMMA
    assert float(fin.total_spread(T)) == pytest.approx(liq2, rel=1e-14)
    assert float(fin.total_spread(5.0)) == pytest.approx(liq2, rel=1e-14)  # t > T: tau = 0
    assert float(fin.reservation_price(100.0, 5.0, T)) == 100.0
    for t in (0.0, 0.7, 5.0):
        assert float(roll.total_spread(t)) == pytest.approx(GAMMA * SIGMA**2 * T + liq2)


def test_per_side_k():
    mm = AvellanedaStoikov(GAMMA, K, SIGMA, T, k_ask=3.0)
    liq_b = math.log(1 + GAMMA / K) / GAMMA
    liq_a = math.log(1 + GAMMA / 3.0) / GAMMA
    assert float(mm.total_spread(0.0)) == pytest.approx(GAMMA * SIGMA**2 * T + liq_b + liq_a)
    assert float(mm.half_spread_ask(0.0, 0.0)) == pytest.approx(GAMMA * SIGMA**2 * T / 2 + liq_a)


def test_small_gamma_limit_is_monopolist_half_spread():
    mm = AvellanedaStoikov(1e-9, K, SIGMA, T)
    assert float(mm.half_spread_bid(0.0, 0.0)) == pytest.approx(1.0 / K, rel=1e-6)


def test_absolute_sigma_helper_hand_values():
    # 20 % annual at S = 250, time unit = 1 day (ACT/365F): 250 * 0.2 / sqrt(365)
    s = absolute_sigma(250.0, 0.2, 1.0 / 365.0)
    assert float(s) == pytest.approx(250.0 * 0.2 / math.sqrt(365.0), rel=1e-15)
    assert float(relative_annual_vol(250.0, s, 1.0 / 365.0)) == pytest.approx(0.2, rel=1e-15)
    assert SECONDS_PER_YEAR == 365 * 86400
    with pytest.raises(ValueError, match="rel_vol_annual: must be >= 0.0"):
        absolute_sigma(100.0, -0.1, 1.0)
    with pytest.raises(ValueError, match="time_unit_years: must be > 0.0"):
        absolute_sigma(100.0, 0.2, 0.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(gamma=0.0, k=1.0, sigma=1.0, horizon=1.0), "gamma: must be > 0.0"),
        (dict(gamma=0.1, k=-1.0, sigma=1.0, horizon=1.0), "k: must be > 0.0"),
        (dict(gamma=0.1, k=1.0, sigma=-1.0, horizon=1.0), "sigma: must be >= 0.0"),
        (dict(gamma=0.1, k=1.0, sigma=1.0, horizon=float("nan")), "horizon: contains NaN"),
        (dict(gamma=0.1, k=1.0, sigma=1.0, horizon=1.0, k_ask=0.0), "k_ask: must be > 0.0"),
    ],
)
def test_validation_messages(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AvellanedaStoikov(**kwargs)


# ---------------------------------------------------------------- infinite horizon


def _frozen_value(x, s, q, gamma, sigma, omega):
    """v(x, s, q) = E[int_0^inf -exp(-omega t) exp(-gamma (x + q S_t)) dt], by quadrature."""

    def integrand(t):
        # E[exp(-gamma q S_t)] = exp(-gamma q s + gamma^2 q^2 sigma^2 t / 2)
        return -math.exp(-omega * t - gamma * (x + q * s) + 0.5 * (gamma * q * sigma) ** 2 * t)

    return quad(integrand, 0.0, np.inf, epsabs=0, epsrel=1e-12, limit=200)[0]


@pytest.mark.parametrize("q", [-3.0, -1.0, 0.0, 2.0, 3.0])
def test_infinite_horizon_reservation_prices_satisfy_indifference(q):
    gamma, sigma, Q = 0.1, 2.0, 4
    mm = AvellanedaStoikovInfinite(gamma, K, sigma, max_inventory=Q)
    omega = 0.5 * gamma**2 * sigma**2 * (Q + 1) ** 2
    assert float(mm.discount_rate()) == pytest.approx(omega)
    s, x = 100.0, 0.0
    v = _frozen_value(x, s, q, gamma, sigma, omega)
    rb = float(mm.reservation_bid(s, q))
    ra = float(mm.reservation_ask(s, q))
    # buying one unit at r^b, or selling one at r^a, leaves the value unchanged
    assert _frozen_value(x - rb, s, q + 1, gamma, sigma, omega) == pytest.approx(v, rel=1e-9)
    assert _frozen_value(x + ra, s, q - 1, gamma, sigma, omega) == pytest.approx(v, rel=1e-9)
    # quotes add (1/gamma) ln(1 + gamma/k) outside the reservation prices
    liq = math.log(1 + gamma / K) / gamma
    assert float(mm.half_spread_bid(q)) == pytest.approx(s - rb + liq, rel=1e-12)
    assert float(mm.half_spread_ask(q)) == pytest.approx(ra - s + liq, rel=1e-12)


def test_infinite_horizon_one_sided_at_bound():
    mm = AvellanedaStoikovInfinite(0.1, K, 2.0, max_inventory=4)
    at_long = mm.quote(MarketState(mid=100.0, inventory=4.0))
    at_short = mm.quote(MarketState(mid=100.0, inventory=-4.0))
    beyond = mm.quote(MarketState(mid=100.0, inventory=7.0))
    assert float(at_long.bid_size) == 0.0 and float(at_long.ask_size) == 1.0
    assert float(at_short.ask_size) == 0.0 and float(at_short.bid_size) == 1.0
    assert float(beyond.bid_size) == 0.0 and float(beyond.ask) == float(at_long.ask)
    assert float(at_long.bid) == 100.0  # placeholder price of an inactive side is the mid
    # Long inventory: reservation prices move down, monotonically in q.
    rb = jnp.stack([mm.reservation_bid(100.0, q) for q in (-2.0, 0.0, 2.0)])
    assert bool(jnp.all(jnp.diff(rb) < 0))


def test_infinite_horizon_omega_validation():
    with pytest.raises(ValueError, match="omega: must be > gamma"):
        AvellanedaStoikovInfinite(0.1, K, 2.0, max_inventory=4, omega=0.1)


def test_infinite_horizon_gradient_finite_at_bound():
    def f(gamma):
        mm = AvellanedaStoikovInfinite(gamma, K, 2.0, max_inventory=4)
        qt = mm.quote(MarketState(mid=100.0, inventory=4.0))
        return qt.bid + qt.ask

    g = jax.grad(f)(jnp.asarray(0.1))
    assert bool(jnp.isfinite(g))
