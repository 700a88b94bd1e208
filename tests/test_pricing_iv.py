"""Implied volatility: round trips, statuses, gradients, against independent references.

References:
- Prices from :func:`jaxmm.pricing.bsm_price` (checked against QuantLib in
  test_pricing_bsm.py); vega and delta from the closed forms (Haug 2007, ch. 2) computed here
  in NumPy/SciPy, independently of the solver.
- QuantLib 1.4x ``EuropeanOption.impliedVolatility`` (Brent on the price of its own
  ``AnalyticEuropeanEngine``) on a sample of the grid.
- Finite differences of the solver itself for every input's gradient.

Compilation dominates the run time, so the tests call the solver on padded shapes (64, or a
multiple of 1024 elements) and share the compiled kernels.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import QuantLib as ql
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import ndtr

import jaxmm.pricing as jp
from jaxmm.pricing._iv import IVStatus, _implied_vol_jit, implied_vol, implied_vol_black76

OK = IVStatus.OK
SMALL, LARGE = 64, 1024
ROUND_TRIP_TOL = 1e-10


def _pad(n: int) -> int:
    return SMALL if n <= SMALL else -(-n // LARGE) * LARGE


def _batch(*args):
    """Broadcast to 1-D float64 (bool for is_call) arrays padded with a benign option."""
    arrs = np.broadcast_arrays(*[np.asarray(a) for a in args])
    n = arrs[0].size
    m = _pad(n)
    benign = (5.0, 100.0, 100.0, 1.0, 0.01, 0.0, True)
    out = []
    for a, fill in zip(arrs, benign[-len(arrs) :], strict=True):
        a = a.reshape(-1)
        pad = np.full(m - n, fill, dtype=bool if a.dtype == bool else np.float64)
        out.append(np.concatenate([a.astype(pad.dtype), pad]))
    return n, out


def iv(price, spot, strike, expiry, rate, dividend, is_call, *, n_iter=2, dtype=np.float64):
    """implied_vol on padded arrays (shared compilations); returns NumPy (vol, status)."""
    n, (p, s, k, t, r, q, c) = _batch(price, spot, strike, expiry, rate, dividend, is_call)
    args = [jnp.asarray(a, dtype=dtype) for a in (p, s, k, t, r, q)]
    vol, status = implied_vol(*args, jnp.asarray(c), n_iter=n_iter)
    return np.asarray(vol)[:n], np.asarray(status)[:n]


def price(spot, strike, expiry, rate, dividend, vol, is_call):
    n, (s, k, t, r, q, v, c) = _batch(spot, strike, expiry, rate, dividend, vol, is_call)
    out = jp.bsm_price(*[jnp.asarray(a) for a in (s, k, t, r, q, v)], jnp.asarray(c))
    return np.asarray(out)[:n]


def closed_form(spot, strike, expiry, rate, dividend, vol, is_call):
    """Independent NumPy closed forms: (price, delta, vega), vega per 1.00 vol."""
    s, k, t, r, q, v = (
        np.asarray(a, dtype=np.float64) for a in (spot, strike, expiry, rate, dividend, vol)
    )
    w = np.where(is_call, 1.0, -1.0)
    sd = v * np.sqrt(t)
    d1 = (np.log(s / k) + (r - q) * t) / sd + 0.5 * sd
    d2 = d1 - sd
    dq, dr = np.exp(-q * t), np.exp(-r * t)
    value = w * (s * dq * ndtr(w * d1) - k * dr * ndtr(w * d2))
    delta = w * dq * ndtr(w * d1)
    vega = s * dq * np.exp(-0.5 * d1 * d1) / np.sqrt(2.0 * np.pi) * np.sqrt(t)
    return value, delta, vega


def informative(p, vega):
    """The docstring's definition: vega >= 1e-3 * price and the price far from underflow."""
    return (vega >= 1e-3 * p) & (p > 1e-280)


# ---------------------------------------------------------------------------------------------
# The grid of issue 2: calls and puts, 1 day..3 years, sigma 5%..150%, q > 0, r < 0, deep ITM/OTM
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grid():
    strikes = [40.0, 60.0, 80.0, 97.5, 100.0, 103.0, 125.0, 160.0, 250.0]
    days = [1, 7, 30, 182, 365, 1095]
    rates = [(-0.01, 0.0), (0.05, 0.02), (0.03, 0.08)]
    vols = [0.05, 0.25, 0.8, 1.5]
    cases = np.array(
        [
            (100.0, k, d / 365.0, r, q, v, c)
            for k, d, (r, q), v, c in itertools.product(strikes, days, rates, vols, [1.0, 0.0])
        ]
    )
    s, k, t, r, q, v = (cases[:, i] for i in range(6))
    c = cases[:, 6] > 0.5
    p = price(s, k, t, r, q, v, c)
    _, delta, vega = closed_form(s, k, t, r, q, v, c)
    vol, status = iv(p, s, k, t, r, q, c)
    return dict(s=s, k=k, t=t, r=r, q=q, v=v, c=c, p=p, vega=vega, vol=vol, status=status)


def test_round_trip_on_the_grid(grid):
    g = grid
    info = informative(g["p"], g["vega"])
    assert info.sum() > 900  # the test must not pass vacuously
    assert np.all(g["status"][info] == OK)
    err = np.abs(g["vol"][info] - g["v"][info])
    assert err.max() <= ROUND_TRIP_TOL, err.max()


def test_uninformative_grid_points_reprice_or_have_no_time_value(grid):
    """Where vega is not informative: OK and reprices to rounding, or ZERO_TIME_VALUE."""
    g = grid
    rest = ~informative(g["p"], g["vega"])
    assert rest.sum() > 50
    st_ = g["status"][rest]
    assert set(np.unique(st_)) <= {IVStatus.OK, IVStatus.ZERO_TIME_VALUE}
    scale = g["s"] + g["k"]
    ok = rest & (g["status"] == OK)
    vol_ok = np.where(ok, g["vol"], 0.2)
    repriced = price(g["s"], g["k"], g["t"], g["r"], g["q"], vol_ok, g["c"])
    assert np.all(np.abs(repriced - g["p"])[ok] <= 1e-14 * scale[ok])
    zero = g["status"] == IVStatus.ZERO_TIME_VALUE
    assert np.all(np.isnan(g["vol"][zero]))
    fwd = g["s"] * np.exp((g["r"] - g["q"]) * g["t"])
    w = np.where(g["c"], 1.0, -1.0)
    intrinsic = np.exp(-g["r"] * g["t"]) * np.maximum(w * (fwd - g["k"]), 0.0)
    assert np.all(np.abs(g["p"] - intrinsic)[zero] <= 1e-14 * scale[zero])


def test_against_quantlib_implied_volatility(grid):
    g = grid
    rng = np.random.default_rng(7)
    pick = rng.choice(np.flatnonzero(informative(g["p"], g["vega"]) & (g["vega"] > 1e-2)), 40)
    today = ql.Date(15, 1, 2026)
    ql.Settings.instance().evaluationDate = today
    dc = ql.Actual365Fixed()
    ours_in, ql_vols = [], []
    for i in pick:
        days = round(g["t"][i] * 365.0)
        kind = ql.Option.Call if g["c"][i] else ql.Option.Put
        option = ql.EuropeanOption(
            ql.PlainVanillaPayoff(kind, g["k"][i]), ql.EuropeanExercise(today + days)
        )
        process = ql.BlackScholesMertonProcess(
            ql.QuoteHandle(ql.SimpleQuote(g["s"][i])),
            ql.YieldTermStructureHandle(ql.FlatForward(today, g["q"][i], dc)),
            ql.YieldTermStructureHandle(ql.FlatForward(today, g["r"][i], dc)),
            ql.BlackVolTermStructureHandle(
                ql.BlackConstantVol(today, ql.NullCalendar(), g["v"][i], dc)
            ),
        )
        option.setPricingEngine(ql.AnalyticEuropeanEngine(process))
        target = option.NPV()  # QuantLib's own price, not ours
        ql_vols.append(option.impliedVolatility(target, process, 1e-14, 1000, 1e-7, 4.0))
        ours_in.append(
            (target, g["s"][i], g["k"][i], days / 365.0, g["r"][i], g["q"][i], g["c"][i])
        )
    cols = list(zip(*ours_in, strict=True))
    vol, status = iv(*[np.array(c_) for c_ in cols])
    assert np.all(status == OK)
    np.testing.assert_allclose(vol, np.array(ql_vols), rtol=0, atol=1e-9)
    np.testing.assert_allclose(vol, g["v"][pick], rtol=0, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# Statuses at the extremes
# ---------------------------------------------------------------------------------------------


def test_extreme_cases_statuses_and_values():
    # name: (price, S, K, T, r, q, call, expected status, expected vol or None)
    def bs(*a):
        return float(closed_form(*a)[0])

    deep_otm = bs(100.0, 250.0, 7 / 365, 0.03, 0.0, 0.25, True)  # ~4e-155: tiny but informative
    one_day = bs(100.0, 101.0, 1 / 365, 0.02, 0.01, 0.2, False)
    itm_call_intrinsic = 100.0 * np.exp(-0.0 * 0.5) - 80.0 * np.exp(-0.03 * 0.5)
    neg_rate_put = bs(50.0, 100.0, 3.0, -0.05, 0.0, 1.5, False)  # above K: legal for r < 0
    carry_call = bs(100.0, 60.0, 2.0, -0.01, 0.05, 0.2, True)  # below S - K: legal for q > r
    cases = {
        "deep OTM, tiny time value": (deep_otm, 100.0, 250.0, 7 / 365, 0.03, 0.0, True, OK, 0.25),
        "one day to expiry": (one_day, 100.0, 101.0, 1 / 365, 0.02, 0.01, False, OK, 0.2),
        "negative rate, put above K": (neg_rate_put, 50.0, 100.0, 3.0, -0.05, 0.0, False, OK, 1.5),
        "q > r, call below S - K": (carry_call, 100.0, 60.0, 2.0, -0.01, 0.05, True, OK, 0.2),
        "below intrinsic": (
            itm_call_intrinsic - 0.01,
            100.0,
            80.0,
            0.5,
            0.03,
            0.0,
            True,
            IVStatus.BELOW_INTRINSIC,
            None,
        ),
        "negative price": (
            -1.0,
            100.0,
            120.0,
            0.5,
            0.03,
            0.0,
            True,
            IVStatus.BELOW_INTRINSIC,
            None,
        ),
        "call above the upper bound": (
            100.0 * np.exp(-0.02) * (1.0 + 1e-9),
            100.0,
            90.0,
            1.0,
            0.03,
            0.02,
            True,
            IVStatus.ABOVE_UPPER_BOUND,
            None,
        ),
        "put above the upper bound": (
            100.0,
            100.0,
            90.0,
            1.0,
            0.03,
            0.02,
            False,
            IVStatus.ABOVE_UPPER_BOUND,
            None,
        ),
        "expired": (20.0, 100.0, 80.0, 0.0, 0.03, 0.0, True, IVStatus.ZERO_TIME_VALUE, None),
        "expired, below intrinsic": (
            19.0,
            100.0,
            80.0,
            0.0,
            0.03,
            0.0,
            True,
            IVStatus.BELOW_INTRINSIC,
            None,
        ),
        "ITM at intrinsic": (
            itm_call_intrinsic,
            100.0,
            80.0,
            0.5,
            0.03,
            0.0,
            True,
            IVStatus.ZERO_TIME_VALUE,
            None,
        ),
        "OTM price zero": (0.0, 100.0, 120.0, 0.5, 0.03, 0.0, True, IVStatus.ZERO_TIME_VALUE, None),
        "OTM price underflowing": (
            1e-300,
            100.0,
            120.0,
            0.5,
            0.03,
            0.0,
            True,
            IVStatus.ZERO_TIME_VALUE,
            None,
        ),
    }
    names = list(cases)
    cols = list(zip(*cases.values(), strict=True))
    vol, status = iv(*[np.array(c_) for c_ in cols[:7]])
    for i, name in enumerate(names):
        expected_status, expected_vol = cols[7][i], cols[8][i]
        assert status[i] == expected_status, name
        if expected_vol is None:
            assert np.isnan(vol[i]), name
        else:
            assert abs(vol[i] - expected_vol) <= ROUND_TRIP_TOL, (name, vol[i])


def test_invalid_inputs_inside_jit_are_a_status_and_do_not_poison_the_batch():
    p0 = float(closed_form(100.0, 105.0, 0.5, 0.02, 0.0, 0.3, True)[0])
    prices = jnp.array([p0, jnp.nan, p0, p0, p0, p0])
    spots = jnp.array([100.0, 100.0, -100.0, 100.0, 100.0, 100.0])
    expiries = jnp.array([0.5, 0.5, 0.5, -0.5, 0.5, 0.5])
    rates = jnp.array([0.02, 0.02, 0.02, 0.02, jnp.inf, 0.02])
    strikes = jnp.array([105.0, 105.0, 105.0, 105.0, 105.0, 0.0])

    @jax.jit
    def solve(p, s, k, t, r):  # inside the user's jit: inputs are tracers, never checked
        return implied_vol(p, s, k, t, r, 0.0, True)

    vol, status = solve(prices, spots, strikes, expiries, rates)
    assert status[0] == OK and abs(float(vol[0]) - 0.3) < ROUND_TRIP_TOL
    assert np.all(np.asarray(status[1:]) == IVStatus.INVALID_INPUT)
    assert np.all(np.isnan(np.asarray(vol[1:])))


def test_reduced_iterations_report_not_converged():
    """A deep OTM one-week call: one Householder step is not enough to certify."""
    p = float(closed_form(100.0, 160.0, 7 / 365, 0.0, 0.0, 0.5, True)[0])
    vol1, st1 = iv(p, 100.0, 160.0, 7 / 365, 0.0, 0.0, True, n_iter=1)
    vol2, st2 = iv(p, 100.0, 160.0, 7 / 365, 0.0, 0.0, True, n_iter=2)
    assert st1[0] == IVStatus.NOT_CONVERGED and np.isfinite(vol1[0])  # last iterate is kept
    assert st2[0] == OK and abs(vol2[0] - 0.5) <= ROUND_TRIP_TOL


def test_status_enum_values():
    assert [int(s) for s in IVStatus] == [0, 1, 2, 3, 4, 5]
    assert IVStatus.OK == 0 and isinstance(IVStatus.ZERO_TIME_VALUE, int)


# ---------------------------------------------------------------------------------------------
# Differentiation by the implicit function theorem
# ---------------------------------------------------------------------------------------------

_GRAD_CASES = np.array(
    [  # S, K, T, r, q, sigma, call
        (100.0, 105.0, 0.5, 0.03, 0.01, 0.3, 1.0),
        (100.0, 80.0, 1.0, -0.01, 0.02, 0.2, 0.0),
        (100.0, 130.0, 30 / 365, 0.05, 0.0, 0.6, 1.0),
        (100.0, 95.0, 2.0, 0.01, 0.04, 0.15, 0.0),
        (100.0, 100.0, 7 / 365, 0.0, 0.0, 0.4, 1.0),
    ]
)


def _grad_inputs():
    s, k, t, r, q, v = (_GRAD_CASES[:, i] for i in range(6))
    c = _GRAD_CASES[:, 6] > 0.5
    return s, k, t, r, q, v, c


def _sum_vol(p, s, k, t, r, q, c):
    return jnp.sum(implied_vol(p, s, k, t, r, q, c)[0])


_grad_all = jax.grad(_sum_vol, argnums=(0, 1, 2, 3, 4, 5))


def test_gradients_match_one_over_vega_and_minus_delta_over_vega():
    s, k, t, r, q, v, c = _grad_inputs()
    p, delta, vega = closed_form(s, k, t, r, q, v, c)
    n, args = _batch(p, s, k, t, r, q, c)
    grads = _grad_all(*[jnp.asarray(a) for a in args])
    np.testing.assert_allclose(np.asarray(grads[0])[:n], 1.0 / vega, rtol=1e-9)
    np.testing.assert_allclose(np.asarray(grads[1])[:n], -delta / vega, rtol=1e-9)


def test_gradients_match_finite_differences_for_every_input():
    s, k, t, r, q, v, c = _grad_inputs()
    p = closed_form(s, k, t, r, q, v, c)[0]
    base = [p, s, k, t, r, q]
    n, args = _batch(*base, c)
    grads = _grad_all(*[jnp.asarray(a) for a in args])
    # Central differences of the solver, all bumps in one padded call.
    steps = [1e-6 * np.maximum(np.abs(b), 1.0) for b in base]
    bumped = []
    for j in range(6):
        for sign in (1.0, -1.0):
            cols = [b.copy() for b in base]
            cols[j] = cols[j] + sign * steps[j]
            bumped.append(cols)
    stacked = [np.concatenate([b[j] for b in bumped]) for j in range(6)]
    vol, status = iv(*stacked, np.tile(c, 12))
    assert np.all(status == OK)
    vol = vol.reshape(6, 2, len(c))
    for j in range(6):
        fd = (vol[j, 0] - vol[j, 1]) / (2.0 * steps[j])
        np.testing.assert_allclose(np.asarray(grads[j])[:n], fd, rtol=2e-5, atol=1e-9)


def test_non_ok_elements_have_zero_gradients_and_do_not_poison_the_batch():
    p0 = float(closed_form(100.0, 105.0, 0.5, 0.02, 0.0, 0.3, True)[0])
    prices = np.array([p0, -1.0, 1e6, 0.0, np.nan])  # OK, below, above, no time value, NaN
    n, args = _batch(prices, 100.0, 105.0, 0.5, 0.02, 0.0, True)
    grads = _grad_all(*[jnp.asarray(a) for a in args])
    for g in grads:
        g = np.asarray(g)[:n]
        assert np.all(np.isfinite(g))
        assert np.all(g[1:] == 0.0)
    assert np.asarray(grads[0])[0] > 0.0


def test_black76_round_trip_and_rate_gradient_moves_only_the_discount_factor():
    f, k, t, r, v = 100.0, 110.0, 0.75, 0.04, 0.35
    pv = float(jp.black76_price(f, k, t, r, v, True))
    sd = v * np.sqrt(t)
    d1 = np.log(f / k) / sd + 0.5 * sd
    vega = np.exp(-r * t) * f * np.sqrt(t) * np.exp(-0.5 * d1 * d1) / np.sqrt(2.0 * np.pi)
    n, cols = _batch(pv, f, k, t, r, 0.0, True)
    p_, f_, k_, t_, r_, _, c_ = (jnp.asarray(a) for a in cols)

    def total_vol(p, r):
        return jnp.sum(implied_vol_black76(p, f_, k_, t_, r, c_)[0])

    vol, status = implied_vol_black76(p_, f_, k_, t_, r_, c_)
    assert int(status[0]) == OK and abs(float(vol[0]) - v) <= ROUND_TRIP_TOL
    d_price, d_rate = jax.grad(total_vol, argnums=(0, 1))(p_, r_)
    # At a fixed forward dV/dr = -T V, so dvol/dr = T V / vega; dvol/dprice = 1 / vega.
    np.testing.assert_allclose(float(d_price[0]), 1.0 / vega, rtol=1e-9)
    np.testing.assert_allclose(float(d_rate[0]), t * pv / vega, rtol=1e-9)


# ---------------------------------------------------------------------------------------------
# Properties (hypothesis), dtypes, broadcasting, tracing, validation
# ---------------------------------------------------------------------------------------------

_option = st.tuples(
    st.floats(np.log(0.4), np.log(2.5)),  # log(K/S)
    st.floats(1.0 / 365.0, 3.0),  # T
    st.floats(-0.02, 0.08),  # r
    st.floats(0.0, 0.08),  # q
    st.floats(0.05, 1.5),  # sigma
    st.booleans(),
)


@given(st.lists(_option, min_size=SMALL, max_size=SMALL))
def test_property_round_trip_and_put_call_consistency(options):
    lk, t, r, q, v, c = (np.array(col) for col in zip(*options, strict=True))
    s, k = np.full(SMALL, 100.0), 100.0 * np.exp(lk)
    p = price(s, k, t, r, q, v, c)
    vega = closed_form(s, k, t, r, q, v, c)[2]
    vol, status = iv(p, s, k, t, r, q, c)
    info = informative(p, vega)
    assert np.all(status[info] == OK)
    assert np.all(np.abs(vol - v)[info] <= ROUND_TRIP_TOL)
    assert np.all(np.isin(status[~info], [IVStatus.OK, IVStatus.ZERO_TIME_VALUE]))
    # The same vol implied from the other side of put-call parity on the forward.
    w = np.where(c, 1.0, -1.0)
    parity = p - w * (s * np.exp(-q * t) - k * np.exp(-r * t))
    vol_other, status_other = iv(parity, s, k, t, r, q, ~c)
    both = info & (status_other == OK) & informative(parity, vega)
    assert np.all(np.abs(vol_other - vol)[both] <= 1e-9)


@given(st.lists(_option, min_size=SMALL // 2, max_size=SMALL // 2), st.floats(1e-6, 0.5))
def test_property_vol_increases_with_price(options, bump):
    lk, t, r, q, v, c = (np.array(col) for col in zip(*options, strict=True))
    s, k = np.full(SMALL // 2, 100.0), 100.0 * np.exp(lk)
    p = price(s, k, t, r, q, v, c)
    p2 = p + bump * np.maximum(p, 1e-3)
    vol, status = iv(
        np.concatenate([p, p2]),
        np.tile(s, 2),
        np.tile(k, 2),
        np.tile(t, 2),
        np.tile(r, 2),
        np.tile(q, 2),
        np.tile(c, 2),
    )
    half = SMALL // 2
    both = (status[:half] == OK) & (status[half:] == OK)
    assert np.all(vol[half:][both] > vol[:half][both])


def test_float32_inputs_stay_float32():
    s, k, t, r, q, v, c = _grad_inputs()
    p = closed_form(s, k, t, r, q, v, c)[0]
    vol, status = iv(p, s, k, t, r, q, c, dtype=np.float32)
    assert vol.dtype == np.float32
    assert np.all(status == OK)
    # float32 carries ~7 digits: the price's rounding moves sigma by ~eps32 * price / vega.
    np.testing.assert_allclose(vol, v, rtol=0, atol=2e-5)


def test_broadcasting_and_keywords():
    strikes = np.linspace(80.0, 120.0, 16)[None, :]
    vols = np.array([0.1, 0.2, 0.4, 0.8])[:, None]
    p = closed_form(100.0, strikes, 0.25, 0.01, 0.0, vols, True)[0]
    vol, status = implied_vol(
        price=p, spot=100.0, strike=strikes, expiry=0.25, rate=0.01, dividend=0.0, is_call=True
    )
    assert vol.shape == status.shape == (4, 16)
    assert status.dtype == jnp.int32
    np.testing.assert_allclose(np.asarray(vol), np.broadcast_to(vols, (4, 16)), atol=1e-10)


def test_no_retrace_on_new_values():
    rng = np.random.default_rng(3)
    args = lambda: [
        jnp.asarray(a)
        for a in _batch(
            rng.uniform(1.0, 10.0, SMALL),
            100.0,
            rng.uniform(90.0, 110.0, SMALL),
            0.5,
            0.01,
            0.0,
            rng.random(SMALL) < 0.5,
        )[1]
    ]
    implied_vol(*args())
    before = _implied_vol_jit._cache_size()
    implied_vol(*args())
    implied_vol_black76(*args()[:5], args()[6])
    assert _implied_vol_jit._cache_size() == before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"price": np.nan}, "price: contains NaN"),
        ({"price": np.inf}, "price: must be finite"),
        ({"spot": 0.0}, "spot: must be > 0"),
        ({"strike": -5.0}, "strike: must be > 0"),
        ({"expiry": -0.1}, "expiry: must be >= 0"),
        ({"rate": np.nan}, "rate: contains NaN"),
        ({"dividend": np.nan}, "dividend: contains NaN"),
        ({"strike": [90.0, 100.0], "price": [1.0, 2.0, 3.0]}, "does not broadcast"),
        ({"n_iter": 0}, "n_iter: must be an int >= 1"),
    ],
)
def test_host_validation_names_the_argument(kwargs, message):
    base = dict(
        price=5.0, spot=100.0, strike=100.0, expiry=1.0, rate=0.01, dividend=0.0, is_call=True
    )
    base.update(kwargs)
    with pytest.raises(ValueError, match=message):
        implied_vol(**base)


def test_black76_validation_names_the_forward():
    with pytest.raises(ValueError, match="forward: must be > 0"):
        implied_vol_black76(1.0, -100.0, 100.0, 1.0, 0.01, True)
