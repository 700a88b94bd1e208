"""VaR / ES against SciPy and hand references; PSD checks; stress; hedging."""

import math

import jax
import numpy as np
import pytest
from scipy import integrate
from scipy.stats import norm

from jaxmm.portfolio import Instrument, build_position_arrays
from jaxmm.risk import (
    Side,
    Urgency,
    delta_hedge,
    gamma_vega_hedge,
    historical_var,
    is_psd,
    min_variance_hedge,
    min_variance_hedge_ratio,
    monte_carlo_var,
    nearest_correlation,
    normal_quantile,
    parametric_var,
    revaluation_pnl,
    stress_grid,
    validate_correlation,
)
from jaxmm.risk import _var as var_mod


def _bs(s, k, t, r, q, v, call):
    if t <= 0:
        return max((s - k) if call else (k - s), 0.0)
    d1 = (math.log(s / k) + (r - q + 0.5 * v * v) * t) / (v * math.sqrt(t))
    d2 = d1 - v * math.sqrt(t)
    if call:
        return s * math.exp(-q * t) * norm.cdf(d1) - k * math.exp(-r * t) * norm.cdf(d2)
    return k * math.exp(-r * t) * norm.cdf(-d2) - s * math.exp(-q * t) * norm.cdf(-d1)


@pytest.mark.parametrize("p", [1e-10, 0.001, 0.05, 0.5, 0.9, 0.95, 0.975, 0.99, 0.999999])
def test_normal_quantile_is_exact(p):
    assert normal_quantile(p) == pytest.approx(norm.ppf(p), rel=1e-14, abs=1e-15)


def test_parametric_var_es_and_euler_decomposition_vs_scipy():
    w = np.array([2e6, -1e6, 5e5])
    vols = np.array([0.25, 0.3, 0.15])
    corr = np.array([[1.0, 0.6, 0.2], [0.6, 1.0, 0.1], [0.2, 0.1, 1.0]])
    h, a = 10 / 252, 0.975
    r = parametric_var(w, vols, corr, a, h)
    cov = corr * np.outer(vols, vols) * h
    sigma = math.sqrt(w @ cov @ w)
    assert r.sigma == pytest.approx(sigma, rel=1e-14)
    assert r.var == pytest.approx(norm.ppf(a) * sigma, rel=1e-13)
    # ES = E[loss | loss >= VaR], integrated numerically from SciPy's quantile function
    es_ref = integrate.quad(lambda u: norm.ppf(u) * sigma, a, 1.0)[0] / (1 - a)
    assert r.es == pytest.approx(es_ref, rel=1e-7)
    assert r.component.sum() == pytest.approx(r.var, rel=1e-12)
    eps = 1.0
    for i in range(3):
        up, dn = w.copy(), w.copy()
        up[i] += eps
        dn[i] -= eps
        fd = parametric_var(up, vols, corr, a, h).var - parametric_var(dn, vols, corr, a, h).var
        assert r.marginal[i] == pytest.approx(fd / (2 * eps), rel=1e-6)


def _empirical_es_reference(pnl, a):
    """(1/(1-a)) * integral of the empirical loss quantile over (a, 1], step by step."""
    losses = np.sort(-np.asarray(pnl))
    n = losses.size
    total = 0.0
    for i in range(1, n + 1):
        lo, hi = max(a, (i - 1) / n), i / n
        if hi > lo:
            total += (hi - lo) * losses[i - 1]
    return total / (1 - a)


@pytest.mark.parametrize(("n", "a"), [(1000, 0.99), (250, 0.975), (37, 0.9), (7, 0.5)])
def test_historical_var_es_vs_numpy_quantile(n, a):
    pnl = np.random.default_rng(n).standard_t(4, size=n) * 1e4
    r = historical_var(pnl, a)
    assert r.var == np.quantile(-pnl, a, method="inverted_cdf")
    assert r.es == pytest.approx(_empirical_es_reference(pnl, a), rel=1e-12)
    assert r.es >= r.var


def test_historical_var_bad_input():
    with pytest.raises(ValueError, match="pnl: contains NaN"):
        historical_var([1.0, float("nan")])
    with pytest.raises(ValueError, match=r"confidence: must be in \(0, 1\)"):
        historical_var([1.0], 1.0)
    with pytest.raises(ValueError, match="pnl: empty sample"):
        historical_var([])


@pytest.mark.parametrize(
    ("corr", "match"),
    [
        ([[1.0, 0.2], [0.3, 1.0]], "not symmetric"),
        ([[1.0, 0.2], [0.2, 0.9]], "diagonal must be 1"),
        ([[1.0, 0.9, 0.2], [0.9, 1.0, 0.9], [0.2, 0.9, 1.0]], "not positive semi-definite"),
        ([[1.0, np.nan], [np.nan, 1.0]], "must be finite"),
        ([[1.0, 0.2, 0.1]], "square"),
    ],
)
def test_correlation_validation_messages(corr, match):
    with pytest.raises(ValueError, match=match):
        validate_correlation(corr)
    with pytest.raises(ValueError, match=match):
        parametric_var(np.ones(len(corr)), np.ones(len(corr)), corr)


def test_nearest_correlation_matches_higham_example():
    # Higham (2002), section 4: nearest correlation matrix to [[1,1,0],[1,1,1],[0,1,1]]
    a = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 1.0]])
    assert not is_psd(a)
    x = nearest_correlation(a)
    want = np.array([[1.0, 0.7607, 0.1573], [0.7607, 1.0, 0.7607], [0.1573, 0.7607, 1.0]])
    np.testing.assert_allclose(x, want, atol=1e-4)
    validate_correlation(x)
    good = np.array([[1.0, 0.3], [0.3, 1.0]])
    np.testing.assert_allclose(nearest_correlation(good), good, atol=1e-12)


def test_revaluation_matches_independent_repricing_and_does_not_retrace():
    insts = [
        Instrument.option("c", "A", strike=105.0, expiry=0.5, is_call=True, multiplier=100),
        Instrument.option("p", "B", strike=45.0, expiry=0.25, is_call=False, multiplier=10),
        Instrument.spot("A"),
    ]
    qty = [-3, 7, 150]
    pa = build_position_arrays(insts, qty, underlyings=("A", "B"))
    spot, vol, div, r = (
        np.array([100.0, 50.0]),
        np.array([0.25, 0.4, 0.0]),
        np.array([0.0, 0.02]),
        0.01,
    )
    rets = np.array([[0.05, -0.1], [-0.02, 0.03]])
    dvol = np.array([[0.02, 0.05], [-0.01, 0.0]])
    dt = 5 / 365
    pnl = np.asarray(revaluation_pnl(pa, spot, vol, r, div, rets, dvol, dt))
    for j in range(2):
        sa, sb = 100 * math.exp(rets[j, 0]), 50 * math.exp(rets[j, 1])
        v0 = (
            -300 * _bs(100, 105, 0.5, r, 0.0, 0.25, True)
            + 70 * _bs(50, 45, 0.25, r, 0.02, 0.4, False)
            + 150 * 100
        )
        v1 = (
            -300 * _bs(sa, 105, 0.5 - dt, r, 0.0, 0.25 + dvol[j, 0], True)
            + 70 * _bs(sb, 45, 0.25 - dt, r, 0.02, 0.4 + dvol[j, 1], False)
            + 150 * sa
        )
        assert pnl[j] == pytest.approx(v1 - v0, rel=1e-11)
    before = var_mod._reval_jit._cache_size()
    revaluation_pnl(pa, spot * 1.1, vol + 0.01, 0.02, div, -rets, dvol, 1 / 365)
    assert var_mod._reval_jit._cache_size() == before
    with pytest.raises(ValueError, match=r"returns: expected shape \(n_scenarios, 2\)"):
        revaluation_pnl(pa, spot, vol, r, div, rets[:, :1], dvol[:, :1])


def test_monte_carlo_var_linear_book_matches_lognormal_closed_form():
    pa = build_position_arrays([Instrument.spot("X")], [1000])
    s, sig, h, a = 80.0, 0.35, 1 / 52, 0.99
    res, pnl = monte_carlo_var(
        pa,
        np.array([s]),
        np.array([0.0]),
        0.0,
        np.array([0.0]),
        jax.random.key(7),
        40000,
        [sig],
        [[1.0]],
        h,
        a,
    )
    exact = 1000 * s * (1 - math.exp(-0.5 * sig * sig * h - norm.ppf(a) * sig * math.sqrt(h)))
    assert res.var == pytest.approx(exact, rel=0.03)
    assert pnl.shape == (40000,)


def test_stress_grid_by_hand():
    insts = [Instrument.option("p", "A", strike=100.0, expiry=0.25, is_call=False, multiplier=1)]
    pa = build_position_arrays(insts, [10])
    g = stress_grid(
        pa,
        np.array([100.0]),
        np.array([0.2]),
        0.0,
        np.array([0.0]),
        [-0.1, 0.0, 0.1],
        [-0.05, 0.05],
    )
    base = _bs(100, 100, 0.25, 0.0, 0.0, 0.2, False)
    for i, x in enumerate([-0.1, 0.0, 0.1]):
        for j, dv in enumerate([-0.05, 0.05]):
            want = 10 * (_bs(100 * (1 + x), 100, 0.25, 0.0, 0.0, 0.2 + dv, False) - base)
            assert g[i, j] == pytest.approx(want, rel=1e-11, abs=1e-11)
    with pytest.raises(ValueError, match="spot_moves: must be > -1.0"):
        stress_grid(pa, np.array([100.0]), np.array([0.2]), 0.0, np.array([0.0]), [-1.0], [0.0])


def test_hedge_ratios_vs_regression_and_hand():
    rng = np.random.default_rng(3)
    b = rng.normal(size=200)
    a = 1.7 * b + 0.3 * rng.normal(size=200)
    assert min_variance_hedge_ratio(a, b) == pytest.approx(np.polyfit(b, a, 1)[0], rel=1e-12)
    # two factors: x* = -(rho s1 s2 w1) / s2^2
    x = min_variance_hedge([1e6, 0.0], [0.2, 0.25], [[1.0, 0.8], [0.8, 1.0]], 1)
    assert x == pytest.approx(-0.8 * 0.2 * 0.25 * 1e6 / 0.25**2, rel=1e-14)


def test_delta_hedge_band_lots_and_urgency():
    und = Instrument.spot("X", lot_size=100)
    assert delta_hedge(480.0, 500.0, und) is None
    assert delta_hedge(-500.0, 500.0, und) is None  # on the band edge: inside
    o = delta_hedge(1049.0, 500.0, und)  # nearest lot: 10 lots
    assert (o.side, o.qty, o.urgency) == (Side.SELL, 1000, Urgency.MEDIUM)
    o = delta_hedge(-3000.0, 500.0, und, target=-2000.0)
    assert (o.side, o.qty, o.urgency) == (Side.BUY, 1000, Urgency.LOW)
    assert delta_hedge(5000.0, 1000.0, und).urgency is Urgency.HIGH
    assert delta_hedge(30.0, 10.0, und) is None  # under half a lot: nothing to send
    fut = Instrument.spot("FUT", multiplier=50)
    assert delta_hedge(-260.0, 100.0, fut).qty == 5
    with pytest.raises(ValueError, match="delta: must be finite"):
        delta_hedge(float("nan"), 1.0, und)
    with pytest.raises(ValueError, match="band: must be >= 0"):
        delta_hedge(1.0, -1.0, und)


def test_gamma_vega_hedge_two_candidates_by_cramer():
    c1 = Instrument.option("c1", "X", strike=100.0, expiry=0.1, is_call=True, multiplier=1)
    c2 = Instrument.option("c2", "X", strike=100.0, expiry=1.0, is_call=True, multiplier=1)
    ug = {"c1": (0.5, 0.08, 12.0), "c2": (0.55, 0.02, 40.0)}
    x1, x2 = 30.0, -10.0  # the portfolio is exactly -(30 c1 - 10 c2)
    gamma = -(x1 * 0.08 + x2 * 0.02)
    vega = -(x1 * 12.0 + x2 * 40.0)
    h = gamma_vega_hedge(gamma, vega, [c1, c2], ug, gamma_scale=1.0, vega_scale=100.0)
    # Cramer's rule on [[0.08, 0.02], [12, 40]] x = -[gamma, vega]
    det = 0.08 * 40.0 - 0.02 * 12.0
    s1 = (-gamma * 40.0 - 0.02 * -vega) / det
    s2 = (0.08 * -vega - -gamma * 12.0) / det
    assert (round(s1), round(s2)) == (30, -10)
    assert {(o.instrument, o.side, o.qty) for o in h.orders} == {
        ("c1", Side.BUY, 30),
        ("c2", Side.SELL, 10),
    }
    assert abs(h.residual_gamma) < 1e-12 and abs(h.residual_vega) < 1e-9
    assert h.added_delta == pytest.approx(30 * 0.5 - 10 * 0.55)
    with pytest.raises(ValueError, match="unit_greeks: missing 'c2'"):
        gamma_vega_hedge(1.0, 1.0, [c1, c2], {"c1": (0.5, 0.1, 1.0)})
