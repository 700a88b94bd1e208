"""BSM / Black-76 prices and Greeks against independent references.

References:
- QuantLib 1.4x ``AnalyticEuropeanEngine`` on a ``BlackScholesMertonProcess`` (independent C++
  implementation): price, delta, gamma, vega, theta, rho on a generated grid of 300+ cases.
- The closed-form Greeks in Haug (2007), ch. 2 (``bsm_greeks_analytic``), for the higher orders
  QuantLib does not expose, and central finite differences of the price.
- Hull, *Options, Futures and Other Derivatives* (8th ed.), Example 15.6: S=42, K=40, r=10%,
  sigma=20%, T=0.5 gives call 4.76 and put 0.81 (published to 2 dp).
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

import jaxmm.pricing as jp
from jaxmm.pricing._bsm import _bsm_greeks_jit, _bsm_price_jit

# ---------------------------------------------------------------------------------------------
# QuantLib reference grid
# ---------------------------------------------------------------------------------------------

_TODAY = ql.Date(15, 1, 2026)
_DC = ql.Actual365Fixed()


def _grid() -> list[tuple[float, float, int, float, float, float, bool]]:
    """Deterministic grid: calls and puts, 1 day..3 years, vol 5%..150%, q > 0, r < 0,
    deep ITM/OTM. Expiries are whole days so QuantLib's ACT/365F date maths is exact."""
    spots = [100.0]
    strikes = [40.0, 80.0, 97.5, 100.0, 103.0, 125.0, 250.0]
    days = [1, 7, 30, 182, 365, 1095]
    rates = [(-0.01, 0.0), (0.05, 0.02), (0.03, 0.08)]
    vols = [0.05, 0.25, 0.8, 1.5]
    rng = np.random.default_rng(20261124)
    cases = []
    for s, k, d, (r, q), v, c in itertools.product(
        spots, strikes, days, rates, vols, [True, False]
    ):
        cases.append((s, k, d, r, q, v, c))
    # keep the set reasonably small but well spread (>= 300 cases)
    idx = rng.choice(len(cases), size=320, replace=False)
    return [cases[i] for i in sorted(idx)]


def _quantlib(s, k, days, r, q, v, is_call):
    ql.Settings.instance().evaluationDate = _TODAY
    maturity = _TODAY + days
    payoff = ql.PlainVanillaPayoff(ql.Option.Call if is_call else ql.Option.Put, k)
    option = ql.EuropeanOption(payoff, ql.EuropeanExercise(maturity))
    spot = ql.QuoteHandle(ql.SimpleQuote(s))
    rts = ql.YieldTermStructureHandle(ql.FlatForward(_TODAY, r, _DC))
    qts = ql.YieldTermStructureHandle(ql.FlatForward(_TODAY, q, _DC))
    vts = ql.BlackVolTermStructureHandle(ql.BlackConstantVol(_TODAY, ql.NullCalendar(), v, _DC))
    process = ql.BlackScholesMertonProcess(spot, qts, rts, vts)
    option.setPricingEngine(ql.AnalyticEuropeanEngine(process))
    return {
        "price": option.NPV(),
        "delta": option.delta(),
        "gamma": option.gamma(),
        "vega": option.vega(),
        "theta": option.theta(),
        "rho": option.rho(),
    }


@pytest.fixture(scope="module")
def grid_and_reference():
    cases = _grid()
    ref = {k: [] for k in ("price", "delta", "gamma", "vega", "theta", "rho")}
    for c in cases:
        out = _quantlib(*c)
        for key in ref:
            ref[key].append(out[key])
    arr = np.array([c[:6] for c in cases], dtype=np.float64)
    arr[:, 2] = arr[:, 2] / 365.0  # days -> ACT/365F years
    is_call = np.array([c[6] for c in cases])
    return arr, is_call, {k: np.array(v) for k, v in ref.items()}


def _close(got, want, atol=1e-9, rtol=1e-7):
    got, want = np.asarray(got), np.asarray(want)
    ok = np.abs(got - want) <= np.maximum(atol, rtol * np.abs(want))
    return ok


def test_grid_is_large_and_covers_extremes(grid_and_reference):
    arr, is_call, _ = grid_and_reference
    assert len(arr) >= 200
    assert is_call.any() and (~is_call).any()
    assert arr[:, 2].min() == pytest.approx(1 / 365) and arr[:, 2].max() == pytest.approx(3.0)
    assert (arr[:, 3] < 0).any() and (arr[:, 4] > 0).any()
    assert arr[:, 5].min() == 0.05 and arr[:, 5].max() == 1.5


@pytest.mark.parametrize("field", ["price", "delta", "gamma", "vega", "theta", "rho"])
def test_bsm_greeks_match_quantlib(grid_and_reference, field):
    arr, is_call, ref = grid_and_reference
    g = jp.bsm_greeks(*(arr[:, i] for i in range(6)), is_call)
    got = np.asarray(getattr(g, field))
    ok = _close(got, ref[field])
    bad = np.flatnonzero(~ok)
    assert ok.all(), (
        f"{field}: {bad.size} mismatches, first {arr[bad[:3]]} got {got[bad[:3]]} "
        f"want {ref[field][bad[:3]]}"
    )


def test_price_and_core_greeks_agree_with_full(grid_and_reference):
    arr, is_call, ref = grid_and_reference
    args = (*(arr[:, i] for i in range(6)), is_call)
    full = jp.bsm_greeks(*args)
    core = jp.bsm_core_greeks(*args)
    price = jp.bsm_price(*args)
    np.testing.assert_allclose(np.asarray(price), ref["price"], rtol=1e-7, atol=1e-9)
    for f in core._fields:
        np.testing.assert_allclose(np.asarray(getattr(core, f)), np.asarray(getattr(full, f)))


def test_hull_textbook_example():
    # Hull (8th ed.) Example 15.6: call 4.76, put 0.81.
    call = float(jp.bsm_price(42.0, 40.0, 0.5, 0.1, 0.0, 0.2, True))
    put = float(jp.bsm_price(42.0, 40.0, 0.5, 0.1, 0.0, 0.2, False))
    assert round(call, 2) == 4.76
    assert round(put, 2) == 0.81


# ---------------------------------------------------------------------------------------------
# autodiff vs analytic closed forms vs finite differences
# ---------------------------------------------------------------------------------------------

_HIGHER = ("vanna", "volga", "charm", "speed", "zomma", "color")


def test_autodiff_matches_analytic_all_twelve(grid_and_reference):
    arr, is_call, _ = grid_and_reference
    args = (*(arr[:, i] for i in range(6)), is_call)
    g = jp.bsm_greeks(*args)
    a = jp.bsm_greeks_analytic(*args)
    for f in g._fields:
        got, want = np.asarray(getattr(g, f)), np.asarray(getattr(a, f))
        scale = np.maximum(1.0, np.abs(want))
        err = np.abs(got - want) / scale
        assert err.max() < 1e-7, (f, err.max(), arr[err.argmax()])


@pytest.mark.parametrize(
    "case",
    [
        (100.0, 100.0, 1.0, 0.05, 0.02, 0.2, True),
        (100.0, 120.0, 0.25, -0.01, 0.03, 0.45, False),
        (50.0, 40.0, 2.0, 0.03, 0.0, 0.9, True),
    ],
)
def test_higher_greeks_match_finite_differences(case):
    s, k, t, r, q, v, c = case

    def greeks(**bump):
        kw = dict(spot=s, strike=k, expiry=t, rate=r, dividend=q, vol=v, is_call=c)
        kw.update(bump)
        return jp.bsm_greeks(**kw)

    g = greeks()
    hs, hv, ht = 1e-3 * s, 1e-4, 1e-5
    up, dn = greeks(spot=s + hs), greeks(spot=s - hs)
    vu, vd = greeks(vol=v + hv), greeks(vol=v - hv)
    tu, td = greeks(expiry=t + ht), greeks(expiry=t - ht)
    fd = {
        "delta": (up.price - dn.price) / (2 * hs),
        "gamma": (up.delta - dn.delta) / (2 * hs),
        "speed": (up.gamma - dn.gamma) / (2 * hs),
        "vega": (vu.price - vd.price) / (2 * hv),
        "vanna": (vu.delta - vd.delta) / (2 * hv),
        "volga": (vu.vega - vd.vega) / (2 * hv),
        "zomma": (vu.gamma - vd.gamma) / (2 * hv),
        "theta": -(tu.price - td.price) / (2 * ht),
        "charm": -(tu.delta - td.delta) / (2 * ht),
        "color": -(tu.gamma - td.gamma) / (2 * ht),
    }
    for name, approx in fd.items():
        want = float(approx)
        got = float(getattr(g, name))
        assert got == pytest.approx(want, rel=2e-5, abs=1e-8), name


def test_rho_holds_dividend_fixed():
    # rho = dV/dr with q fixed; for a call the closed form is K T e^{-rT} N(d2).
    g = jp.bsm_greeks(100.0, 95.0, 0.75, 0.04, 0.03, 0.3, True)
    a = jp.bsm_greeks_analytic(100.0, 95.0, 0.75, 0.04, 0.03, 0.3, True)
    assert float(g.rho) == pytest.approx(float(a.rho), rel=1e-12)


def test_desk_units_conversion():
    g = jp.bsm_greeks(100.0, 100.0, 1.0, 0.05, 0.0, 0.2, True)
    d = jp.to_desk_units(g)
    assert float(d.vega) == pytest.approx(float(g.vega) / 100)
    assert float(d.theta) == pytest.approx(float(g.theta) / 365)
    assert float(d.rho) == pytest.approx(float(g.rho) / 100)
    assert float(d.volga) == pytest.approx(float(g.volga) / 1e4)
    assert float(d.delta) == float(g.delta)


# ---------------------------------------------------------------------------------------------
# Black-76
# ---------------------------------------------------------------------------------------------


def test_black76_matches_quantlib_black_formula():
    rows = [(100.0, 90.0, 0.5, 0.03, 0.25), (100.0, 130.0, 2.0, -0.005, 0.6)]
    for f, k, t, r, v in rows:
        df = np.exp(-r * t)
        for c in (True, False):
            typ = ql.Option.Call if c else ql.Option.Put
            want = ql.blackFormula(typ, k, f, v * np.sqrt(t), df)
            got = float(jp.black76_price(f, k, t, r, v, c))
            assert got == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_black76_greeks_are_bsm_with_zero_carry():
    g76 = jp.black76_greeks(105.0, 100.0, 0.7, 0.02, 0.3, False)
    gb = jp.bsm_greeks(105.0, 100.0, 0.7, 0.02, 0.02, 0.3, False)
    for f in ("price", "delta", "gamma", "vega", "vanna", "volga", "speed", "zomma"):
        assert float(getattr(g76, f)) == pytest.approx(float(getattr(gb, f)), rel=1e-12)
    # rho at a fixed forward moves only the discount factor: rho = -T V
    assert float(g76.rho) == pytest.approx(-0.7 * float(g76.price), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# Singular inputs stay finite (values and gradients)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        dict(expiry=0.0, vol=0.2, strike=90.0),
        dict(expiry=0.0, vol=0.2, strike=100.0),
        dict(expiry=1.0, vol=0.0, strike=110.0),
        dict(expiry=1.0, vol=0.0, strike=80.0),
        dict(expiry=1e-12, vol=0.2, strike=100.0),
        dict(expiry=1.0, vol=0.2, strike=1e6),
        dict(expiry=1.0, vol=0.2, strike=1e-6),
        dict(expiry=30.0, vol=5.0, strike=100.0),
    ],
)
@pytest.mark.parametrize("is_call", [True, False])
def test_singular_inputs_finite_values_and_gradients(kw, is_call):
    base = dict(spot=100.0, rate=0.03, dividend=0.01, is_call=is_call)
    base.update(kw)
    g = jp.bsm_greeks(**base)
    for f in g._fields:
        assert np.isfinite(np.asarray(getattr(g, f))).all(), f

    def price(x):
        return _bsm_price_jit(x[0], x[1], x[2], x[3], x[4], x[5], is_call)

    x = jnp.array(
        [base["spot"], base["strike"], base["expiry"], base["rate"], base["dividend"], base["vol"]]
    )
    grad = jax.grad(price)(x)
    assert np.isfinite(np.asarray(grad)).all()


def test_expired_option_is_intrinsic_on_forward():
    # T = 0 -> max(S - K, 0) exactly; vol = 0 -> discounted intrinsic on the forward.
    assert float(jp.bsm_price(100.0, 90.0, 0.0, 0.05, 0.0, 0.3, True)) == pytest.approx(10.0)
    assert float(jp.bsm_price(100.0, 110.0, 0.0, 0.05, 0.0, 0.3, False)) == pytest.approx(10.0)
    fwd = 100.0 * np.exp((0.05 - 0.01) * 1.0)
    want = np.exp(-0.05) * (fwd - 100.0)
    assert float(jp.bsm_price(100.0, 100.0, 1.0, 0.05, 0.01, 0.0, True)) == pytest.approx(want)


def test_deep_otm_put_tail_keeps_relative_precision():
    # N(-d) via erfc keeps the tail: compare with QuantLib far from the money, relative.
    ql_ref = _quantlib(100.0, 40.0, 30, 0.01, 0.0, 0.25, False)["price"]
    got = float(jp.bsm_price(100.0, 40.0, 30 / 365, 0.01, 0.0, 0.25, False))
    assert got > 0.0
    if ql_ref > 0:
        assert got == pytest.approx(ql_ref, rel=1e-6)


# ---------------------------------------------------------------------------------------------
# Properties (hypothesis)
# ---------------------------------------------------------------------------------------------

_spot = st.floats(10.0, 500.0)
_mny = st.floats(0.3, 3.0)
_t = st.floats(1 / 365, 5.0)
_r = st.floats(-0.02, 0.1)
_q = st.floats(0.0, 0.08)
_v = st.floats(0.03, 2.0)


@given(s=_spot, m=_mny, t=_t, r=_r, q=_q, v=_v)
def test_put_call_parity(s, m, t, r, q, v):
    k = s * m
    c = float(jp.bsm_price(s, k, t, r, q, v, True))
    p = float(jp.bsm_price(s, k, t, r, q, v, False))
    parity = s * np.exp(-q * t) - k * np.exp(-r * t)
    assert c - p == pytest.approx(parity, abs=1e-9 * max(s, k))


@given(s=_spot, m=_mny, t=_t, r=_r, q=_q, v=_v, c=st.booleans())
def test_no_arbitrage_bounds_and_signs(s, m, t, r, q, v, c):
    k = s * m
    g = jp.bsm_greeks(s, k, t, r, q, v, c)
    price = float(g.price)
    fwd_s, disc_k = s * np.exp(-q * t), k * np.exp(-r * t)
    tol = 1e-9 * max(s, k)
    if c:
        assert max(fwd_s - disc_k, 0.0) - tol <= price <= fwd_s + tol
    else:
        assert max(disc_k - fwd_s, 0.0) - tol <= price <= disc_k + tol
    assert float(g.gamma) >= -1e-12
    assert float(g.vega) >= -1e-12


@given(s=_spot, m=_mny, t=_t, r=_r, v=_v, c=st.booleans())
def test_monotone_in_vol_and_expiry_without_dividend(s, m, t, r, v, c):
    k = s * m
    base = float(jp.bsm_price(s, k, t, r, 0.0, v, c))
    higher_vol = float(jp.bsm_price(s, k, t, r, 0.0, v * 1.1, c))
    assert higher_vol >= base - 1e-10 * max(s, k)
    if (c and r >= 0) or (not c and r <= 0):
        # q = 0: calls gain value with T when r >= 0, puts when r <= 0 (with r < 0 a deep-ITM
        # call's discounted strike grows with T; with r > 0 a deep-ITM put's shrinks)
        longer = float(jp.bsm_price(s, k, t * 1.1, r, 0.0, v, c))
        assert longer >= base - 1e-10 * max(s, k)


# ---------------------------------------------------------------------------------------------
# Broadcasting, dtypes, retracing, bad input
# ---------------------------------------------------------------------------------------------


def test_broadcasts_over_a_chain():
    strikes = jnp.linspace(80.0, 120.0, 50)
    expiries = jnp.array([0.1, 0.25, 0.5, 1.0, 2.0])[:, None, None]
    is_call = jnp.array([True, False])[None, None, :]
    g = jp.bsm_greeks(100.0, strikes[None, :, None], expiries, 0.03, 0.01, 0.2, is_call)
    assert g.price.shape == (5, 50, 2)
    one = jp.bsm_greeks(100.0, float(strikes[7]), 0.5, 0.03, 0.01, 0.2, False)
    assert float(g.delta[2, 7, 1]) == pytest.approx(float(one.delta), rel=1e-14)


def test_float32_inputs_stay_float32():
    x = jnp.asarray([90.0, 100.0], dtype=jnp.float32)
    p = jp.bsm_price(jnp.float32(100.0), x, jnp.float32(0.5), 0.01, 0.0, 0.2, True)
    assert p.dtype == jnp.float32
    p64 = jp.bsm_price(100.0, np.array([90.0, 100.0]), 0.5, 0.01, 0.0, 0.2, True)
    assert p64.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(p), np.asarray(p64), rtol=1e-5)


def test_no_retrace_on_new_values():
    n = 37
    rng = np.random.default_rng(1)

    def args():
        return (
            jnp.asarray(rng.uniform(80, 120, n)),
            jnp.asarray(rng.uniform(80, 120, n)),
            jnp.asarray(rng.uniform(0.1, 2, n)),
            jnp.asarray(rng.uniform(0, 0.05, n)),
            jnp.asarray(rng.uniform(0, 0.05, n)),
            jnp.asarray(rng.uniform(0.1, 0.5, n)),
            jnp.asarray(rng.uniform(size=n) < 0.5),
        )

    for fn, jitted in [
        (jp.bsm_price, _bsm_price_jit),
        (jp.bsm_greeks, _bsm_greeks_jit),
        (jp.bsm_core_greeks, _bsm_greeks_jit),
    ]:
        jax.block_until_ready(fn(*args()))
        before = jitted._cache_size()
        jax.block_until_ready(fn(*args()))
        jax.block_until_ready(fn(*args()))
        assert jitted._cache_size() == before, fn.__name__


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(strike=-1.0), "strike: must be > 0"),
        (dict(spot=float("nan")), "spot: contains NaN"),
        (dict(expiry=-0.1), "expiry: must be >= 0"),
        (dict(vol=-0.2), "vol: must be >= 0"),
        (dict(rate=float("inf")), "rate: must be finite"),
        (dict(strike=np.ones(3), vol=np.ones(4) * 0.2), "does not broadcast"),
        (dict(spot="abc"), "spot: expected numbers"),
    ],
)
def test_bad_host_input_raises_naming_the_argument(kw, match):
    base = dict(spot=100.0, strike=100.0, expiry=1.0, rate=0.0, dividend=0.0, vol=0.2, is_call=True)
    base.update(kw)
    for fn in (jp.bsm_price, jp.bsm_greeks, jp.bsm_core_greeks):
        with pytest.raises(ValueError, match=match):
            fn(**base)


def test_black76_bad_forward_names_forward():
    with pytest.raises(ValueError, match="forward: must be > 0"):
        jp.black76_price(0.0, 100.0, 1.0, 0.0, 0.2, True)


def test_nan_inside_jit_is_data_not_exception():
    p = jp.bsm_price(jnp.array([100.0, jnp.nan]), 100.0, 1.0, 0.0, 0.0, 0.2, True)
    assert np.isfinite(np.asarray(p[0])) and np.isnan(np.asarray(p[1]))
