"""Batched portfolio Greeks and PnL attribution against a naive SciPy closed-form reference."""

import math

import jax
import numpy as np
import pytest
from scipy.stats import norm

from jaxmm.portfolio import (
    Fill,
    Instrument,
    Portfolio,
    Side,
    build_position_arrays,
    pnl_attribution,
    portfolio_greeks,
)
from jaxmm.portfolio import _greeks as greeks_mod


def _ref_unit(s, k, t, r, q, v, call):
    """Haug's closed forms, evaluated one option at a time with SciPy."""
    sq = math.sqrt(t)
    d1 = (math.log(s / k) + (r - q + 0.5 * v * v) * t) / (v * sq)
    d2 = d1 - v * sq
    w = 1.0 if call else -1.0
    dq, dr = math.exp(-q * t), math.exp(-r * t)
    price = w * (s * dq * norm.cdf(w * d1) - k * dr * norm.cdf(w * d2))
    delta = w * dq * norm.cdf(w * d1)
    gamma = dq * norm.pdf(d1) / (s * v * sq)
    vega = s * dq * norm.pdf(d1) * sq
    theta = (
        -s * dq * norm.pdf(d1) * v / (2 * sq)
        + w * q * s * dq * norm.cdf(w * d1)
        - w * r * k * dr * norm.cdf(w * d2)
    )
    rho = w * k * t * dr * norm.cdf(w * d2)
    return price, delta, gamma, vega, theta, rho


def _random_book(seed, n):
    rng = np.random.default_rng(seed)
    und = ["AAA", "BBB", "CCC"]
    spots = {"AAA": 100.0, "BBB": 50.0, "CCC": 4000.0}
    expiries = [0.1, 0.5, 1.0]
    insts, qty, vols = [], [], []
    for u in und:
        insts.append(Instrument.spot(u))
        qty.append(int(rng.integers(-500, 500)))
        vols.append(0.0)
    for i in range(n):
        u = und[i % 3]
        k = spots[u] * float(rng.uniform(0.7, 1.3))
        insts.append(
            Instrument.option(
                f"o{i}",
                u,
                strike=k,
                expiry=expiries[i % 3],
                is_call=bool(rng.integers(2)),
                multiplier=float(rng.choice([1, 100])),
            )
        )
        qty.append(int(rng.integers(-20, 21)))
        vols.append(float(rng.uniform(0.1, 0.6)))
    return insts, qty, np.array(vols), spots, und


def test_portfolio_greeks_match_closed_form_reference():
    insts, qty, vols, spots, und = _random_book(0, 60)
    pa = build_position_arrays(insts, qty, underlyings=tuple(und))
    spot = np.array([spots[u] for u in und])
    div = np.array([0.0, 0.01, 0.02])
    r = 0.03
    g = portfolio_greeks(pa, spot, vols, r, div)
    fields = ["value", "delta", "gamma", "vega", "theta", "rho", "dollar_delta", "dollar_gamma"]
    ref_u = {u: np.zeros(8) for u in und}
    ref_e = {e: np.zeros(8) for e in pa.expiries}
    for inst, q, v in zip(insts, qty, vols, strict=True):
        s = spots[inst.underlying]
        units = q * inst.multiplier
        if inst.is_option:
            qd = div[und.index(inst.underlying)]
            p, d, gm, vg, th, rh = _ref_unit(s, inst.strike, inst.expiry, r, qd, v, inst.is_call)
        else:
            p, d, gm, vg, th, rh = s, 1.0, 0.0, 0.0, 0.0, 0.0
        row = units * np.array([p, d, gm, vg, th, rh, d * s, gm * s * s / 100])
        ref_u[inst.underlying] += row
        if inst.is_option:
            ref_e[inst.expiry] += row
    for j, f in enumerate(fields):
        got_u = np.asarray(getattr(g.by_underlying, f))
        want_u = np.array([ref_u[u][j] for u in und])
        np.testing.assert_allclose(got_u, want_u, rtol=1e-9, atol=1e-8, err_msg=f)
        got_e = np.asarray(getattr(g.by_expiry, f))
        want_e = np.array([ref_e[e][j] for e in pa.expiries])
        np.testing.assert_allclose(got_e, want_e, rtol=1e-9, atol=1e-8, err_msg=f)
        assert float(getattr(g.total, f)) == pytest.approx(want_u.sum(), rel=1e-9, abs=1e-8)


def test_portfolio_greeks_does_not_retrace_on_new_values():
    insts, qty, vols, spots, und = _random_book(1, 12)
    pa = build_position_arrays(insts, qty, underlyings=tuple(und))
    spot = np.array([spots[u] for u in und])
    div = np.zeros(3)
    portfolio_greeks(pa, spot, vols, 0.01, div)
    before = greeks_mod._portfolio_greeks_jit._cache_size()
    pa2 = build_position_arrays(insts, [q + 1 for q in qty], underlyings=tuple(und))
    portfolio_greeks(pa2, spot * 1.1, vols + 0.05, 0.02, div + 0.01)
    assert greeks_mod._portfolio_greeks_jit._cache_size() == before


def test_portfolio_greeks_float32_stays_float32():
    pa = build_position_arrays(
        [Instrument.option("c", "X", strike=100.0, expiry=0.5, is_call=True)], [3]
    )
    pa = jax.tree_util.tree_map(lambda x: x.astype(np.float32) if x.dtype == np.float64 else x, pa)
    g = portfolio_greeks(
        pa,
        np.array([100.0], np.float32),
        np.array([0.2], np.float32),
        np.float32(0.0),
        np.array([0.0], np.float32),
    )
    assert g.total.delta.dtype == np.float32
    assert float(g.total.delta) == pytest.approx(3 * 100 * norm.cdf(0.5 * 0.2 * 0.5**0.5), rel=1e-5)


def test_portfolio_greeks_bad_market_inputs():
    pa = build_position_arrays([Instrument.spot("X")], [1])
    with pytest.raises(ValueError, match="spot: contains NaN"):
        portfolio_greeks(pa, np.array([np.nan]), np.array([0.0]), 0.0, np.array([0.0]))
    with pytest.raises(ValueError, match=r"spot: expected shape \(1,\)"):
        portfolio_greeks(pa, np.array([1.0, 2.0]), np.array([0.0]), 0.0, np.array([0.0]))
    with pytest.raises(ValueError, match=r"vol: expected shape"):
        portfolio_greeks(pa, np.array([1.0]), np.array([0.1, 0.1]), 0.0, np.array([0.0]))


def test_pnl_attribution_by_hand():
    """Terms equal Greeks x moves; actual equals an independent closed-form revaluation."""
    s0, s1, v0, v1, dt, k, t, r = 100.0, 102.0, 0.2, 0.22, 2 / 365, 105.0, 0.5, 0.01
    pf = Portfolio([Instrument.option("c", "X", strike=k, expiry=t, is_call=True, multiplier=10)])
    pf.apply_fill(Fill("c", Side.SELL, 7, 3.0))
    pa = pf.to_arrays()
    a = pnl_attribution(
        pa, np.array([s0]), np.array([v0]), np.array([s1]), np.array([v1]), r, np.array([0.0]), dt
    )
    units = -70.0
    p0, d, g, vg, th, _ = _ref_unit(s0, k, t, r, 0.0, v0, True)
    p1 = _ref_unit(s1, k, t - dt, r, 0.0, v1, True)[0]
    assert float(a.actual[0]) == pytest.approx(units * (p1 - p0), rel=1e-10)
    assert float(a.delta[0]) == pytest.approx(units * d * 2.0, rel=1e-10)
    assert float(a.gamma[0]) == pytest.approx(units * 0.5 * g * 4.0, rel=1e-10)
    assert float(a.vega[0]) == pytest.approx(units * vg * 0.02, rel=1e-9)
    assert float(a.theta[0]) == pytest.approx(units * th * dt, rel=1e-10)
    total = a.delta + a.gamma + a.vega + a.theta + a.residual
    assert float(total[0]) == pytest.approx(float(a.actual[0]), rel=1e-12)
    # second-order terms are small: residual is under 5% of the move here
    assert abs(float(a.residual[0])) < 0.05 * abs(float(a.actual[0]))
    before = greeks_mod._attribution_jit._cache_size()
    pnl_attribution(
        pa,
        np.array([s1]),
        np.array([v1]),
        np.array([s0]),
        np.array([v0]),
        r,
        np.array([0.01]),
        1 / 365,
    )
    assert greeks_mod._attribution_jit._cache_size() == before
