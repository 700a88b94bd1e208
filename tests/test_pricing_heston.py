"""Heston semi-analytic prices and Greeks against independent references.

References:
- Alan Lewis's high-precision Heston prices (Mathematica, WorkingPrecision=50), "Heston Model
  Reference Prices", financepress.com, 15 Feb 2019
  (https://financepress.com/2019/02/15/heston-model-reference-prices/), first posted on the
  Wilmott forum in 2012. Parameters S=100, r=0.01, q=0.02, T=1, V0=0.04, omega=1, theta=4,
  xi=1, rho=-0.5 in his notation dV = (omega - theta V) dt + xi sqrt(V) dW, i.e. our
  kappa = 4 and long-run variance theta = omega / kappa = 0.25. Digits copied from the page.
- The short-dated case of the same parameter family (T = 0.01, V0 = 0.01, K = 100) with the
  reference value 0.467782671512844 as quoted (next to the financepress source) in the NMOF
  R package's tests, enricoschumann/NMOF inst/tinytest/test_heston.R.
- QuantLib 1.4x ``AnalyticHestonEngine`` (adaptive Gauss-Lobatto, relative tolerance 1e-13)
  on a grid from one day to five years, calls and puts, three parameter regimes.
- A slow NumPy/SciPy twin written here from Albrecher et al. (2007) in its textbook form
  (g = (beta - d)/(beta + d), divisions by xi^2) integrated by adaptive ``scipy.integrate.quad``
  on the plain Lewis integral (no control variate), on random parameter sets.
- The Black-Scholes closed form (written here with SciPy) in the xi -> 0 limit, and Haug's
  closed-form Greeks (``bsm_greeks_analytic``) for the Greeks in that limit.
"""

from __future__ import annotations

import itertools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import QuantLib as ql
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate
from scipy.stats import norm

from jaxmm.pricing import bsm_greeks_analytic
from jaxmm.pricing._heston import (
    _heston_greeks_jit,
    _heston_price_jit,
    _integration_range,
    heston_core_greeks,
    heston_greeks,
    heston_price,
    heston_price_scalar,
)

# ---------------------------------------------------------------------------------------------
# Lewis's published reference prices
# ---------------------------------------------------------------------------------------------

LEWIS = dict(
    spot=100.0,
    expiry=1.0,
    rate=0.01,
    dividend=0.02,
    v0=0.04,
    kappa=4.0,
    theta=0.25,
    xi=1.0,
    rho=-0.5,
)
# strike: (put, call), truncated to 20 significant digits from the financepress table
LEWIS_PRICES = {
    80.0: (7.958878113256768285, 26.774758743998854221),
    90.0: (12.017966707346304988, 20.933349000596710388),
    100.0: (17.055270961270109414, 16.070154917028834278),
    110.0: (23.017825898442800539, 12.132211516709844868),
    120.0: (29.811026202682471843, 9.0249134834578356366),
}


def test_lewis_reference_prices():
    strikes = np.array(list(LEWIS_PRICES))
    puts = np.array([p for p, _ in LEWIS_PRICES.values()])
    calls = np.array([c for _, c in LEWIS_PRICES.values()])
    both = heston_price(strike=strikes[:, None], is_call=np.array([False, True]), **LEWIS)
    np.testing.assert_allclose(np.asarray(both[:, 0]), puts, rtol=0, atol=1e-10)
    np.testing.assert_allclose(np.asarray(both[:, 1]), calls, rtol=0, atol=1e-10)


def test_lewis_short_dated_reference():
    kw = dict(LEWIS, expiry=0.01, v0=0.01)
    price = heston_price(strike=100.0, is_call=True, **kw)
    assert abs(float(price) - 0.467782671512844) < 1e-10


# ---------------------------------------------------------------------------------------------
# QuantLib AnalyticHestonEngine grid: 1 day .. 5 years
# ---------------------------------------------------------------------------------------------

_TODAY = ql.Date(15, 1, 2026)
_DC = ql.Actual365Fixed()

PARAM_SETS = [
    # (v0, kappa, theta, xi, rho)
    (0.04, 1.5, 0.04, 0.5, -0.7),  # equity-like
    (0.09, 0.5, 0.04, 1.2, -0.9),  # Feller strongly violated, steep skew
    (0.01, 3.0, 0.02, 0.3, 0.3),  # low vol, positive correlation (FX-like)
]
DAYS = [1, 7, 30, 182, 365, 1825]
STRIKES = [60.0, 80.0, 95.0, 100.0, 105.0, 120.0, 150.0]


def ql_heston(s, k, t_or_days, r, q, v0, kappa, theta, xi, rho, is_call, tol=1e-13):
    """QuantLib price; ``t_or_days`` an int number of days (ACT/365F: exactly days/365)."""
    ql.Settings.instance().evaluationDate = _TODAY
    rts = ql.YieldTermStructureHandle(ql.FlatForward(_TODAY, r, _DC))
    qts = ql.YieldTermStructureHandle(ql.FlatForward(_TODAY, q, _DC))
    process = ql.HestonProcess(
        rts, qts, ql.QuoteHandle(ql.SimpleQuote(s)), v0, kappa, theta, xi, rho
    )
    engine = ql.AnalyticHestonEngine(ql.HestonModel(process), tol, 1_000_000)
    payoff = ql.PlainVanillaPayoff(ql.Option.Call if is_call else ql.Option.Put, k)
    option = ql.EuropeanOption(payoff, ql.EuropeanExercise(_TODAY + int(t_or_days)))
    option.setPricingEngine(engine)
    try:
        return option.NPV()
    except RuntimeError:  # a relative tolerance of 1e-13 on a value of ~0 (1-day, 100 sd OTM)
        option.setPricingEngine(ql.AnalyticHestonEngine(ql.HestonModel(process), 1e-11, 10**6))
        return option.NPV()


@pytest.fixture(scope="module")
def quantlib_grid():
    rows = []
    for days, params, k, call in itertools.product(DAYS, PARAM_SETS, STRIKES, [True, False]):
        rows.append((k, days, *params, call, ql_heston(100.0, k, days, 0.03, 0.01, *params, call)))
    return np.array(rows, dtype=float)


def test_against_quantlib_grid(quantlib_grid):
    g = quantlib_grid
    assert len(g) >= 250
    ours = heston_price(
        100.0,
        g[:, 0],
        g[:, 1] / 365.0,
        0.03,
        0.01,
        g[:, 2],
        g[:, 3],
        g[:, 4],
        g[:, 5],
        g[:, 6],
        g[:, 7].astype(bool),
    )
    err = np.abs(np.asarray(ours) - g[:, 8])
    worst = int(np.argmax(err))
    assert err.max() < 1e-9, f"worst case {g[worst]} error {err[worst]:.2e}"
    # the short-dated rows (1 day, 1 week, 1 month) are in the grid and pass the same bar
    assert set(np.unique(g[:, 1]).astype(int)) >= {1, 7, 30, 1825}


def test_integration_range_adapts_to_maturity():
    """U ~ sqrt(2L / w) in the Gaussian regime: a week needs ~sqrt(52)x the range of a year."""
    v = jnp.asarray(0.04)

    def upper(t, xi=0.05):
        w = v * t  # v0 = theta: the expected total variance is v0 T
        return float(_integration_range(w, jnp.asarray(t), v, 2.0, v, xi, -0.5))

    assert 6.0 < upper(1.0 / 52) / upper(1.0) <= math.sqrt(52.0)
    assert upper(1.0 / 365) > 500.0 and upper(5.0) < 20.0
    assert upper(1.0, xi=1.0) > 3.0 * upper(1.0)  # heavy tails (large xi) extend the range


# ---------------------------------------------------------------------------------------------
# Slow NumPy/SciPy reference twin on random parameter sets
# ---------------------------------------------------------------------------------------------


def _cf_textbook(u, t, v0, kappa, theta, xi, rho):
    """Albrecher et al. (2007) "little trap" CF of ln(S_T/F), NumPy complex, textbook form."""
    beta = kappa - rho * xi * 1j * u
    d = np.sqrt(beta**2 + xi**2 * (1j * u + u**2))
    g = (beta - d) / (beta + d)
    e = np.exp(-d * t)
    big_c = kappa * theta / xi**2 * ((beta - d) * t - 2.0 * np.log((1 - g * e) / (1 - g)))
    big_d = (beta - d) / xi**2 * (1 - e) / (1 - g * e)
    return np.exp(big_c + big_d * v0)


def _lewis_quad(s, k, t, r, q, v0, kappa, theta, xi, rho, is_call):
    f = s * math.exp((r - q) * t)
    x = math.log(f / k)

    def integrand(u):
        return (np.exp(1j * u * x) * _cf_textbook(u - 0.5j, t, v0, kappa, theta, xi, rho)).real / (
            u * u + 0.25
        )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        integral, _ = integrate.quad(integrand, 0, np.inf, limit=5000, epsabs=1e-15, epsrel=1e-14)
    call = math.exp(-r * t) * (f - math.sqrt(f * k) * integral / math.pi)
    return call if is_call else call - math.exp(-r * t) * (f - k)


def _random_cases(n, seed):
    """The documented accuracy box: T in [1 day, 5y], |moneyness| <= 4 Black-Scholes sd."""
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(n):
        t = float(np.exp(rng.uniform(np.log(1 / 365), np.log(5.0))))
        v0, theta = np.exp(rng.uniform(np.log(0.005), np.log(0.5), 2))
        kappa = float(np.exp(rng.uniform(np.log(0.2), np.log(8.0))))
        xi = float(np.exp(rng.uniform(np.log(0.1), np.log(1.5))))
        rho = float(rng.uniform(-0.95, 0.5))
        w = theta * t + (v0 - theta) * (-math.expm1(-kappa * t)) / kappa
        z = float(rng.uniform(-4.0, 4.0))
        k = 100.0 * math.exp(0.01 * t - z * math.sqrt(w))
        cases.append((100.0, k, t, 0.02, 0.01, float(v0), kappa, float(theta), xi, rho, z > 0))
    return cases


def test_random_parameters_against_scipy_twin():
    cases = _random_cases(16, seed=7)
    ref = np.array([_lewis_quad(*c) for c in cases])
    cols = list(zip(*cases, strict=True))
    ours = heston_price(*[np.array(c, dtype=float) for c in cols[:10]], np.array(cols[10]))
    err = np.abs(np.asarray(ours) - ref)
    assert err.max() < 1e-9, (err.max(), cases[int(np.argmax(err))])


@pytest.mark.parametrize(
    "case",
    [
        # xi = 1.55 with 2 kappa theta / xi^2 ~ 1e-3 and a strike at +3.7 sd: U ~ 4000
        (100.0, 147.3251, 1.3031, 0.02, 0.01, 0.0088, 0.1888, 0.0049, 1.5545, 0.1947, True),
        # a corner hypothesis found at 256 nodes: deep ITM call, low v0, slow kappa, xi = 1
        (100.0, 60.0, 0.1875, 0.02, 0.01, 0.01, 0.30078125, 0.0625, 1.0, 0.5, True),
    ],
)
def test_heavy_tailed_variance_at_default_nodes(case):
    """The cases that need ~2 nodes per oscillation of e^{iux} over a long range U."""
    assert abs(float(heston_price(*case)) - _lewis_quad(*case)) < 1e-9


def test_fewer_nodes_for_moderate_parameters():
    """n_nodes=128 (4x faster) is exact for moderate parameters, the documented fast setting."""
    rng = np.random.default_rng(11)
    n = 12
    k = rng.uniform(60.0, 160.0, n)
    cols = (
        np.full(n, 100.0),
        k,
        rng.uniform(0.02, 3.0, n),
        np.full(n, 0.02),
        np.full(n, 0.01),
        rng.uniform(0.01, 0.3, n),
        rng.uniform(0.3, 5.0, n),
        rng.uniform(0.01, 0.3, n),
        rng.uniform(0.05, 1.2, n),
        rng.uniform(-0.9, 0.6, n),
        k > 100.0,
    )
    ref = np.array([_lewis_quad(*row) for row in zip(*cols, strict=True)])
    fast = heston_price(*cols, n_nodes=128)
    np.testing.assert_allclose(np.asarray(fast), ref, rtol=0, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# Black-Scholes limit xi -> 0
# ---------------------------------------------------------------------------------------------


def _bs(s, k, t, r, q, total_var, is_call):
    sd = np.sqrt(total_var)
    f = s * np.exp((r - q) * t)
    d1 = np.log(f / k) / sd + 0.5 * sd
    d2 = d1 - sd
    w = np.where(is_call, 1.0, -1.0)
    return np.exp(-r * t) * w * (f * norm.cdf(w * d1) - k * norm.cdf(w * d2))


@pytest.mark.parametrize("xi", [0.0, 1e-9, 1e-6])
def test_bsm_limit_flat_variance(xi):
    k = np.array([50.0, 80.0, 100.0, 125.0, 200.0])
    call = np.array([True, False])[:, None]
    ours = heston_price(100.0, k, 0.75, 0.03, 0.01, 0.0625, 2.0, 0.0625, xi, -0.6, call)
    ref = _bs(100.0, k, 0.75, 0.03, 0.01, 0.0625 * 0.75, call)
    # leading correction is O(rho xi); at xi = 0 the formula is exact
    np.testing.assert_allclose(np.asarray(ours), ref, rtol=0, atol=1e-11 + 50.0 * xi)


def test_deterministic_variance_path():
    """xi = 0 with v0 != theta: BS with the integrated variance theta T + (v0-theta)(1-e^-kT)/k."""
    t, v0, kappa, theta = 2.0, 0.09, 1.3, 0.03
    w = theta * t + (v0 - theta) * (1.0 - math.exp(-kappa * t)) / kappa
    k = np.array([70.0, 100.0, 140.0])
    ours = heston_price(100.0, k, t, 0.02, 0.0, v0, kappa, theta, 0.0, 0.3, False)
    np.testing.assert_allclose(np.asarray(ours), _bs(100.0, k, t, 0.02, 0.0, w, False), atol=1e-11)


def test_bsm_limit_greeks_match_haug_closed_forms():
    """Heston vega (parallel shift of sqrt(v0), sqrt(theta)) is BSM vega in the limit; all 12."""
    k = np.array([80.0, 100.0, 120.0])
    g = heston_greeks(100.0, k, 0.5, 0.04, 0.01, 0.09, 1.7, 0.09, 0.0, -0.5, True)
    a = bsm_greeks_analytic(100.0, k, 0.5, 0.04, 0.01, 0.3, True)
    for name in g._fields:
        np.testing.assert_allclose(
            np.asarray(getattr(g, name)),
            np.asarray(getattr(a, name)),
            rtol=1e-8,
            atol=1e-10,
            err_msg=name,
        )


# ---------------------------------------------------------------------------------------------
# Greeks and parameter gradients against finite differences of QuantLib
# ---------------------------------------------------------------------------------------------

_P = dict(v0=0.05, kappa=1.2, theta=0.07, xi=0.8, rho=-0.6)


def _ql_t(
    s=100.0,
    k=105.0,
    r=0.03,
    q=0.01,
    v0=_P["v0"],
    kappa=_P["kappa"],
    theta=_P["theta"],
    xi=_P["xi"],
    rho=_P["rho"],
    is_call=True,
):
    return ql_heston(s, k, 365, r, q, v0, kappa, theta, xi, rho, is_call)


@pytest.mark.parametrize("is_call", [True, False])
def test_greeks_against_quantlib_finite_differences(is_call):
    g = heston_core_greeks(100.0, 105.0, 1.0, 0.03, 0.01, is_call=is_call, **_P)
    h = 1e-2
    up, mid, dn = (_ql_t(s=100.0 + e, is_call=is_call) for e in (h, 0.0, -h))
    assert float(g.price) == pytest.approx(mid, abs=1e-9)
    assert float(g.delta) == pytest.approx((up - dn) / (2 * h), abs=1e-7)
    assert float(g.gamma) == pytest.approx((up - 2 * mid + dn) / h**2, abs=1e-5)

    hv = 1e-4  # parallel vol shift: v -> (sqrt(v) + hv)^2 for v0 and theta together

    def shifted(e):
        v0 = (math.sqrt(_P["v0"]) + e) ** 2
        theta = (math.sqrt(_P["theta"]) + e) ** 2
        return _ql_t(v0=v0, theta=theta, is_call=is_call)

    assert float(g.vega) == pytest.approx((shifted(hv) - shifted(-hv)) / (2 * hv), rel=1e-6)
    hr = 1e-5
    rho_fd = (_ql_t(r=0.03 + hr, is_call=is_call) - _ql_t(r=0.03 - hr, is_call=is_call)) / (2 * hr)
    assert float(g.rho) == pytest.approx(rho_fd, rel=1e-6)
    # theta: continuous-time central difference of the price itself (QuantLib works in days)
    ht = 1e-4
    pt = [
        float(heston_price(100.0, 105.0, 1.0 + e, 0.03, 0.01, is_call=is_call, **_P))
        for e in (ht, -ht)
    ]
    assert float(g.theta) == pytest.approx(-(pt[0] - pt[1]) / (2 * ht), rel=1e-6)


def test_parameter_gradients_against_quantlib():
    """Calibration takes jax.grad through the pricer: check d price / d (v0, kappa, theta, xi,
    rho) against central differences of QuantLib prices."""
    names = ("v0", "kappa", "theta", "xi", "rho")

    def price(params):
        args = [jnp.asarray(a) for a in (100.0, 105.0, 1.0, 0.03, 0.01)]
        return heston_price_scalar(*args, *params, jnp.asarray(True))

    grad = jax.jit(jax.grad(price))(tuple(jnp.asarray(_P[n]) for n in names))  # reverse mode
    for name, g in zip(names, grad, strict=True):
        h = 1e-5
        up = _ql_t(**{name: _P[name] + h})
        dn = _ql_t(**{name: _P[name] - h})
        assert float(g) == pytest.approx((up - dn) / (2 * h), rel=2e-6, abs=1e-8), name


# ---------------------------------------------------------------------------------------------
# Properties, edges, dtypes, retracing, validation
# ---------------------------------------------------------------------------------------------


@given(
    k=st.floats(60.0, 160.0),
    t=st.floats(0.01, 3.0),
    v0=st.floats(0.01, 0.3),
    kappa=st.floats(0.3, 5.0),
    theta=st.floats(0.01, 0.3),
    xi=st.floats(0.05, 1.2),
    rho=st.floats(-0.9, 0.6),
)
def test_parity_and_no_arbitrage_bounds(k, t, v0, kappa, theta, xi, rho):
    r, q, s = 0.02, 0.01, 100.0
    cp = heston_price(s, k, t, r, q, v0, kappa, theta, xi, rho, np.array([True, False]))
    call, put = float(cp[0]), float(cp[1])
    fwd_disc = s * math.exp(-q * t)
    k_disc = k * math.exp(-r * t)
    assert call - put == pytest.approx(fwd_disc - k_disc, abs=1e-9)
    assert max(fwd_disc - k_disc, 0.0) - 1e-9 <= call <= fwd_disc + 1e-9
    assert max(k_disc - fwd_disc, 0.0) - 1e-9 <= put <= k_disc + 1e-9


def test_expiry_zero_and_zero_variance_are_intrinsic_with_finite_greeks():
    k = np.array([90.0, 100.0, 110.0])
    p = heston_price(100.0, k, 0.0, 0.03, 0.01, 0.04, 1.0, 0.04, 0.5, -0.5, True)
    np.testing.assert_allclose(np.asarray(p), np.maximum(100.0 - k, 0.0), atol=1e-14)
    p0 = heston_price(100.0, k, 0.5, 0.03, 0.01, 0.0, 1.0, 0.0, 0.5, -0.5, False)
    fwd = 100.0 * math.exp(0.02 * 0.5)
    np.testing.assert_allclose(
        np.asarray(p0), math.exp(-0.015) * np.maximum(k - fwd, 0.0), atol=1e-12
    )
    g = heston_greeks(100.0, k, 0.0, 0.03, 0.01, 0.04, 1.0, 0.04, 0.5, -0.5, True)
    for name in g._fields:
        assert np.all(np.isfinite(np.asarray(getattr(g, name)))), name
    grads = jax.jit(
        jax.grad(
            lambda v: heston_price_scalar(
                *map(jnp.asarray, (100.0, 100.0, 0.0, 0.03, 0.01)),
                v,
                *map(jnp.asarray, (1.0, 0.04, 0.5, -0.5)),
                jnp.asarray(True),
            )
        )
    )(jnp.asarray(0.04))
    assert np.isfinite(float(grads))


def test_float32_inputs_stay_float32():
    k32 = jnp.asarray([90.0, 100.0, 110.0], jnp.float32)
    p32 = heston_price(
        jnp.float32(100.0),
        k32,
        jnp.float32(1.0),
        jnp.float32(0.01),
        jnp.float32(0.02),
        jnp.float32(0.04),
        jnp.float32(4.0),
        jnp.float32(0.25),
        jnp.float32(1.0),
        jnp.float32(-0.5),
        True,
    )
    assert p32.dtype == jnp.float32
    calls = np.array([LEWIS_PRICES[k][1] for k in (90.0, 100.0, 110.0)])
    np.testing.assert_allclose(np.asarray(p32, dtype=float), calls, rtol=2e-5)


def test_broadcasting_chain_shape():
    k = np.linspace(80.0, 120.0, 7)
    t = np.array([0.1, 0.5, 1.0])[:, None]
    p = heston_price(100.0, k, t, 0.01, 0.0, 0.04, 2.0, 0.04, 0.4, -0.7, True)
    assert p.shape == (3, 7)
    assert np.all(np.diff(np.asarray(p), axis=1) < 0)  # calls fall with the strike


def test_no_retrace_on_new_values():
    n = 3
    rng = np.random.default_rng(3)

    def args():
        return (
            jnp.asarray(rng.uniform(90, 110, n)),
            jnp.asarray(rng.uniform(80, 120, n)),
            jnp.asarray(rng.uniform(0.1, 2, n)),
            jnp.asarray(rng.uniform(0, 0.05, n)),
            jnp.asarray(rng.uniform(0, 0.03, n)),
            jnp.asarray(rng.uniform(0.01, 0.1, n)),
            jnp.asarray(rng.uniform(0.5, 3, n)),
            jnp.asarray(rng.uniform(0.01, 0.1, n)),
            jnp.asarray(rng.uniform(0.1, 1, n)),
            jnp.asarray(rng.uniform(-0.9, 0, n)),
            jnp.asarray(rng.uniform(size=n) < 0.5),
        )

    for fn, jitted in [
        (heston_price, _heston_price_jit),
        (heston_core_greeks, _heston_greeks_jit),
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
        (dict(v0=-0.01), "v0: must be >= 0"),
        (dict(kappa=-1.0), "kappa: must be >= 0"),
        (dict(theta=-0.01), "theta: must be >= 0"),
        (dict(xi=-0.1), "xi: must be >= 0"),
        (dict(rho=1.5), "rho: must be <= 1"),
        (dict(rho=-1.5), "rho: must be >= -1"),
        (dict(rho=np.array([0.5, -1.0])), r"rho: must be in the open interval \(-1, 1\)"),
        (dict(strike=np.ones(3), v0=np.ones(4) * 0.04), "does not broadcast"),
        (dict(n_nodes=4), "n_nodes: must be an integer >= 8"),
    ],
)
def test_bad_inputs_raise_naming_the_argument(kw, match):
    base = dict(
        spot=100.0,
        strike=100.0,
        expiry=1.0,
        rate=0.01,
        dividend=0.0,
        v0=0.04,
        kappa=2.0,
        theta=0.04,
        xi=0.5,
        rho=-0.5,
        is_call=True,
    )
    base.update(kw)
    with pytest.raises(ValueError, match=match):
        heston_price(**base)
