"""UnderlyingManager: allocation (ERC, inverse vol, targets), correlation checks, portfolio
risk across underlyings, post-trade checks against per-underlying AND total limits."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from jaxmm.engine._multi import (
    TotalLimits,
    UnderlyingManager,
    equal_weights,
    inverse_vol_weights,
    option_symbol,
    risk_contributions,
    risk_parity_weights,
    target_weights,
)
from jaxmm.engine._quote import OptionChain, QuoteParams
from jaxmm.portfolio import Fill, Side
from jaxmm.risk import Action, GreekLimits, RiskLimits, parametric_var

T = 30 / 365


def bs_call_delta(s, k, t, vol, r=0.0, q=0.0):
    """Closed-form BSM call delta (independent reference)."""
    d1 = (math.log(s / k) + (r - q + 0.5 * vol * vol) * t) / (vol * math.sqrt(t))
    return math.exp(-q * t) * norm.cdf(d1)


def make_manager(total=None, limits=None, fx=(1.0, 1.0), params=None):
    mgr = UnderlyingManager(total)
    for (sym, s), f in zip((("BTC", 100.0), ("SPX", 5000.0)), fx, strict=True):
        chain = OptionChain.grid(jnp.array([0.9 * s, s, 1.1 * s]), jnp.array([T, 3 * T]))
        p = params or QuoteParams(1e-4, 20.0, underlying_vol=0.5 if sym == "BTC" else 0.15)
        mgr.add_underlying(
            sym, chain, p, spot=s, vol=0.6 if sym == "BTC" else 0.18, limits=limits, fx=f
        )
    return mgr


def fill(mgr, sym, qty, price=1.0):
    mgr.on_fill(Fill(sym, Side.BUY if qty > 0 else Side.SELL, abs(qty), price))


# --- allocation -------------------------------------------------------------------------------


@given(
    s1=st.floats(0.05, 2.0),
    s2=st.floats(0.05, 2.0),
    rho=st.floats(-0.99, 0.99),
)
@settings(max_examples=40)
def test_risk_parity_two_assets_is_inverse_vol_for_any_correlation(s1, s2, rho):
    # closed form (Maillard, Roncalli & Teiletche 2010): w_i ∝ 1 / sigma_i, whatever rho
    cov = [[s1 * s1, rho * s1 * s2], [rho * s1 * s2, s2 * s2]]
    w = risk_parity_weights(cov)
    ref = np.array([1 / s1, 1 / s2]) / (1 / s1 + 1 / s2)
    np.testing.assert_allclose(w, ref, rtol=1e-10)


@given(st.integers(3, 6), st.integers(0, 10_000))
@settings(max_examples=30)
def test_risk_parity_contributions_are_equal(n, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, n + 1))
    cov = a @ a.T + 1e-3 * np.eye(n)
    w = risk_parity_weights(cov)
    assert (w > 0).all() and abs(w.sum() - 1) < 1e-12
    rc = w * (cov @ w)  # independent of the library's risk_contributions
    np.testing.assert_allclose(rc, rc.mean(), rtol=1e-9)
    np.testing.assert_allclose(risk_contributions(w, cov), rc / math.sqrt(w @ cov @ w), rtol=1e-12)


def test_risk_parity_singular_perfect_correlation():
    s = np.array([0.1, 0.2, 0.4])
    w = risk_parity_weights(np.outer(s, s))  # rank one: ERC is still 1 / sigma
    np.testing.assert_allclose(w, (1 / s) / (1 / s).sum(), rtol=1e-9)


def test_simple_allocations_and_their_errors():
    assert equal_weights(3).tolist() == pytest.approx([1 / 3] * 3)
    np.testing.assert_allclose(inverse_vol_weights([0.1, 0.2, 0.4]), np.array([4, 2, 1]) / 7)
    with pytest.raises(ValueError, match="weights: must sum to 1"):
        target_weights([0.5, 0.6])
    with pytest.raises(ValueError, match="weights: must be >= 0"):
        target_weights([1.5, -0.5])
    with pytest.raises(ValueError, match="vols: must be > 0"):
        inverse_vol_weights([0.2, 0.0])
    with pytest.raises(ValueError, match="cov: not positive semi-definite"):
        risk_parity_weights([[1.0, 2.0], [2.0, 1.0]])


def test_allocation_scales_size_and_limits():
    lim = RiskLimits(max_position=40, greeks=GreekLimits(delta=60.0, vega=1e4))
    mgr = make_manager(limits=lim)
    w = mgr.allocate("target", weights={"BTC": 0.75, "SPX": 0.25})
    assert w == {"BTC": 0.75, "SPX": 0.25}
    assert float(mgr.quote_params("BTC").base_size) == 10.0  # largest weight keeps its size
    assert float(mgr.quote_params("SPX").base_size) == pytest.approx(10.0 / 3)
    assert mgr.limits("SPX").greeks.delta == pytest.approx(20.0)
    assert mgr.limits("SPX").max_position == 13  # floor(40 / 3)
    assert float(mgr.quote_limits("SPX").vega) == pytest.approx(1e4 / 3)
    with pytest.raises(ValueError, match="weights: need exactly the underlyings"):
        mgr.allocate("target", weights={"BTC": 1.0})
    assert mgr.weights == {"BTC": 0.75, "SPX": 0.25}  # the bad request changed nothing
    assert mgr.allocate("equal") == {"BTC": 0.5, "SPX": 0.5}
    assert mgr.limits("SPX").greeks.delta == 60.0
    v = mgr.allocate("volatility")  # underlying_vol 0.5 and 0.15
    assert v["BTC"] == pytest.approx(0.15 / 0.65) and v["SPX"] == pytest.approx(0.5 / 0.65)
    with pytest.raises(ValueError, match="mode: must be one of"):
        mgr.allocate("kelly")


def test_risk_parity_modes_on_books_and_notional():
    mgr = make_manager()
    mgr.set_correlation([[1.0, 0.3], [0.3, 1.0]])
    w = mgr.allocate("risk_parity", basis="notional")
    assert w["BTC"] == pytest.approx(0.15 / 0.65, rel=1e-10)  # 2 assets: 1 / sigma
    with pytest.raises(ValueError, match="basis: the book of 'BTC' carries no risk"):
        mgr.allocate("risk_parity")
    fill(mgr, "BTC-0030D-100-C", 5)
    fill(mgr, "SPX-0090D-5500-C", -2)
    w = mgr.allocate("risk_parity", basis="book")
    m = mgr.book_covariance()
    x = np.array([w["BTC"], w["SPX"]])
    rc = x * (m @ x)
    assert rc[0] == pytest.approx(rc[1], rel=1e-9)


# --- correlation ------------------------------------------------------------------------------


def test_non_psd_correlation_rejected_or_repaired():
    mgr = UnderlyingManager()
    for sym in ("A", "B", "C"):
        mgr.add_underlying(
            sym, OptionChain.grid(jnp.array([100.0]), jnp.array([T])), QuoteParams(1e-3, 20.0),
            spot=100.0, vol=0.2,
        )  # fmt: skip
    bad = [[1.0, 0.9, 0.2], [0.9, 1.0, 0.9], [0.2, 0.9, 1.0]]  # Higham (2002) style: not PSD
    with pytest.raises(ValueError, match="correlation: corr: not positive semi-definite"):
        mgr.set_correlation(bad)
    np.testing.assert_array_equal(mgr.correlation, np.eye(3))  # unchanged
    fixed = mgr.set_correlation(bad, repair=True)
    assert np.linalg.eigvalsh(fixed).min() >= -1e-10
    np.testing.assert_allclose(np.diag(fixed), 1.0)
    assert np.abs(fixed - np.array(bad)).max() < 0.2
    with pytest.raises(ValueError, match="correlation: corr: diagonal must be 1"):
        mgr.set_correlation([[2.0, 0, 0], [0, 1, 0], [0, 0, 1]], repair=True)
    with pytest.raises(ValueError, match=r"correlation: expected shape \(3, 3\)"):
        mgr.set_correlation([[1.0, 0.1], [0.1, 1.0]])


# --- portfolio risk ---------------------------------------------------------------------------


def test_pure_delta_book_matches_parametric_var():
    mgr = make_manager(fx=(1.0, 0.5))
    rho = 0.35
    mgr.set_correlation([[1.0, rho], [rho, 1.0]])
    fill(mgr, "BTC", 30)
    fill(mgr, "SPX", -4)
    r = mgr.portfolio_risk(0.99)
    w = np.array([30 * 100.0 * 1.0, -4 * 5000.0 * 0.5])  # dollar deltas, common currency
    vols = np.array([0.5, 0.15])
    ref = parametric_var(w, vols, [[1, rho], [rho, 1]], 0.99, 1 / 365)
    assert r["stdev"] == pytest.approx(ref.sigma, rel=1e-12)
    assert r["var"] == pytest.approx(ref.var, rel=1e-12)
    cov = np.array([[1, rho], [rho, 1]]) * np.outer(vols, vols) / 365
    assert r["var"] == pytest.approx(2.3263478740408408 * math.sqrt(w @ cov @ w), rel=1e-12)
    contrib = [r["by_underlying"][u]["contribution"] for u in ("BTC", "SPX")]
    assert sum(contrib) == pytest.approx(r["stdev"], rel=1e-12)


def test_delta_gamma_vega_stdev_matches_monte_carlo_of_the_stated_model():
    params = {
        "BTC": QuoteParams(1e-4, 20.0, underlying_vol=0.6, vol_of_vol=0.9, spot_vol_corr=-0.5),
        "SPX": QuoteParams(1e-4, 20.0, underlying_vol=0.2, vol_of_vol=0.5, spot_vol_corr=-0.7),
    }
    mgr = UnderlyingManager(horizon=5 / 365)
    for sym, s, fx in (("BTC", 100.0, 1.0), ("SPX", 5000.0, 0.8)):
        chain = OptionChain.grid(jnp.array([0.9 * s, s, 1.1 * s]), jnp.array([T, 3 * T]))
        mgr.add_underlying(sym, chain, params[sym], spot=s, vol=0.5, fx=fx)
    rho = 0.6
    mgr.set_correlation([[1.0, rho], [rho, 1.0]])
    fill(mgr, "BTC-0030D-100-C", -40)
    fill(mgr, "BTC-0090D-110-P", 25)
    fill(mgr, "SPX-0030D-5000-P", -3)
    fill(mgr, "SPX", 1)
    risk = mgr.portfolio_risk()
    # independent reference: simulate the stated factor model and the delta-gamma-vega PnL
    rng = np.random.default_rng(7)
    n = 1_000_000
    z = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=n)
    e = rng.standard_normal((n, 2))
    pnl = np.zeros(n)
    h = 5 / 365
    for i, (sym, s, fx) in enumerate((("BTC", 100.0, 1.0), ("SPX", 5000.0, 0.8))):
        g = mgr.greeks(sym)
        p = params[sym]
        a = s * float(p.underlying_vol) * math.sqrt(h)
        nv = float(p.vol_of_vol) * math.sqrt(h)
        rsv = float(p.spot_vol_corr)
        x = a * z[:, i]
        y = nv * (rsv * z[:, i] + math.sqrt(1 - rsv * rsv) * e[:, i])
        pnl += fx * (g["delta"] * x + 0.5 * g["gamma"] * x * x + g["vega"] * y + g["theta"] * h)
    sd = pnl.std()
    assert risk["stdev"] == pytest.approx(sd, rel=6e-3)  # MC error ~ 1/sqrt(2n) x kurtosis
    assert risk["mean"] == pytest.approx(pnl.mean(), abs=4 * sd / math.sqrt(n))


# --- post-trade checks ------------------------------------------------------------------------


def test_check_order_total_dollar_delta_binds():
    mgr = make_manager(total=TotalLimits(dollar_delta=2e4))
    d = bs_call_delta(5000.0, 5000.0, T, 0.18)
    dec = mgr.check_order("SPX", "SPX-0030D-5000-C", 20)
    assert dec.action is Action.SCALE
    assert dec.qty == math.floor(2e4 / (d * 5000.0))
    assert dec.binding == ("total.dollar_delta",)
    # existing BTC delta uses part of the total: 100 BTC units x 100 = 1e4 of dollar delta
    fill(mgr, "BTC", 100)
    assert mgr.check_order("SPX", "SPX-0030D-5000-C", 20).qty == math.floor(1e4 / (d * 5000.0))
    # selling reduces the total: allowed in full (and BTC fills 'no worse' logic)
    assert mgr.check_order("SPX", "SPX-0030D-5000-C", -4).action is Action.ALLOW


def test_check_order_per_underlying_and_total_both_apply():
    lim = RiskLimits(greeks=GreekLimits(delta=3.0))
    mgr = make_manager(total=TotalLimits(vega=50.0), limits=lim)
    d = bs_call_delta(100.0, 100.0, T, 0.6)
    dec = mgr.check_order("BTC", "BTC-0030D-100-C", 50)
    # per underlying: 3 / d contracts; total vega: 50 / unit vega
    vega = 100.0 * norm.pdf(0.5 * 0.6 * math.sqrt(T)) * math.sqrt(T)
    expected = min(math.floor(3.0 * (1 - 1e-9) / d), math.floor(50.0 * (1 - 1e-9) / vega))
    assert dec.qty == expected
    assert set(dec.binding) == {"greeks.delta:BTC", "total.vega"}
    snap = {u: b.checker.snapshot() for u, b in mgr._books.items()}
    with pytest.raises(ValueError, match="option: 'SPX' is not an instrument of 'BTC'"):
        mgr.check_order("BTC", "SPX", 1)
    with pytest.raises(ValueError, match="underlying: unknown underlying 'ETH'"):
        mgr.check_order("ETH", "ETH", 1)
    with pytest.raises(ValueError, match="qty: must be a non-zero integer"):
        mgr.check_order("BTC", "BTC", 0)
    assert {u: b.checker.snapshot() for u, b in mgr._books.items()} == snap


def test_reject_when_total_full():
    mgr = make_manager(total=TotalLimits(dollar_delta=1e4))
    fill(mgr, "BTC", 100)  # exactly at the total
    dec = mgr.check_order("SPX", "SPX", 1)
    assert dec.action is Action.REJECT and dec.binding == ("total.dollar_delta",)
    assert mgr.check_order("SPX", "SPX", -1).action is Action.ALLOW


ORDER = st.tuples(
    st.sampled_from(["BTC", "SPX"]),
    st.integers(0, 12),  # instrument index: 0 = underlying, 1..12 options
    st.integers(-30, 30).filter(lambda x: x != 0),
)


@given(st.lists(ORDER, min_size=1, max_size=25), st.floats(0.3, 0.9))
@settings(max_examples=30)
def test_random_flows_never_breach_per_underlying_or_total_limits(orders, rho):
    lim = RiskLimits(max_position=50, greeks=GreekLimits(delta=25.0, gamma=2.0, vega=80.0))
    total = TotalLimits(dollar_delta=3e4, dollar_gamma=800.0, vega=120.0, theta=3e3)
    mgr = make_manager(total=total, limits=lim)
    mgr.set_correlation([[1.0, rho], [rho, 1.0]])
    for u, j, q in orders:
        inst = mgr.instruments(u)[j]
        dec = mgr.check_order(u, inst.id, q)
        if dec.qty:
            fill(mgr, inst.id, int(math.copysign(dec.qty, q)))
        tot = mgr.total_greeks()
        assert abs(tot["dollar_delta"]) <= 3e4 and abs(tot["dollar_gamma"]) <= 800.0
        assert abs(tot["vega"]) <= 120.0 and abs(tot["theta"]) <= 3e3
        for sym in ("BTC", "SPX"):
            g = mgr.greeks(sym)
            assert abs(g["delta"]) <= 25.0 and abs(g["gamma"]) <= 2.0 and abs(g["vega"]) <= 80.0


def test_quoted_sizes_pass_the_combined_check():
    lim = RiskLimits(greeks=GreekLimits(delta=40.0))
    mgr = make_manager(total=TotalLimits(dollar_delta=1.5e4, vega=150.0), limits=lim)
    fill(mgr, "BTC-0030D-100-C", 20)
    fill(mgr, "SPX", -1)
    quotes = mgr.quote_all()
    n_checked = 0
    for u, q in quotes.items():
        ids = [i.id for i in mgr.instruments(u)[1:]]
        for k, iid in enumerate(ids):
            for size, sign in ((q.bid_size.reshape(-1)[k], 1), (q.ask_size.reshape(-1)[k], -1)):
                if size > 0:
                    n_checked += 1
                    assert mgr.check_order(u, iid, sign * int(size)).action is Action.ALLOW
    assert n_checked > 10
    # the total limit removed sides: some BTC bid sizes are below the per-underlying cap
    assert (quotes["BTC"].bid_size < 10).any()


# --- views, fx, validation --------------------------------------------------------------------


def test_view_totals_fx_and_pnl():
    mgr = make_manager(fx=(1.0, 0.5))
    fill(mgr, "BTC-0030D-100-C", 10, price=6.0)
    fill(mgr, "SPX", 2, price=4990.0)
    v = mgr.view()
    btc, spx = v["by_underlying"]["BTC"], v["by_underlying"]["SPX"]
    d = bs_call_delta(100.0, 100.0, T, 0.6)
    assert btc["delta"] == pytest.approx(10 * d, rel=1e-10)
    assert btc["dollar_delta"] == pytest.approx(10 * d * 100.0, rel=1e-10)
    assert spx["dollar_delta"] == pytest.approx(2 * 5000.0 * 0.5)
    assert v["total"]["dollar_delta"] == pytest.approx(btc["dollar_delta"] + spx["dollar_delta"])
    assert spx["unrealised"] == pytest.approx(2 * 10.0 * 0.5)  # (5000 - 4990) x 2, fx 0.5
    theo = mgr.marks()["BTC-0030D-100-C"]
    assert btc["unrealised"] == pytest.approx(10 * (theo - 6.0))
    assert v["total"]["pnl"] == pytest.approx(btc["pnl"] + spx["pnl"])
    assert v["total"]["stdev"] > 0 and v["total"]["var"] > 0


def test_update_market_remarks_and_bad_input_changes_nothing():
    mgr = make_manager()
    fill(mgr, "BTC-0030D-100-C", 10)
    before = mgr.greeks("BTC")
    mgr.update_market("BTC", spot=110.0)
    assert mgr.greeks("BTC")["delta"] == pytest.approx(10 * bs_call_delta(110, 100, T, 0.6))
    assert mgr.greeks("BTC")["delta"] > before["delta"]
    snap = mgr.greeks("BTC")
    with pytest.raises(ValueError, match=r"spot\['BTC'\]: contains NaN"):
        mgr.update_market("BTC", spot=float("nan"))
    with pytest.raises(ValueError, match=r"vol\['BTC'\]: must be > 0"):
        mgr.update_market("BTC", vol=0.0)
    assert mgr.greeks("BTC") == snap
    with pytest.raises(ValueError, match="symbol: underlying 'BTC' is already registered"):
        mgr.add_underlying(
            "BTC", OptionChain.grid(jnp.array([1.0]), jnp.array([T])), QuoteParams(1e-3, 1.0),
            spot=1.0, vol=0.2,
        )  # fmt: skip
    assert mgr.underlyings == ("BTC", "SPX")
    with pytest.raises(ValueError, match="instrument: unknown instrument 'ETH'"):
        mgr.on_fill(Fill("ETH", Side.BUY, 1, 1.0))


def test_total_limits_validation_and_mapping():
    assert TotalLimits.from_mapping({"gamma": 5.0}).dollar_gamma == 5.0
    with pytest.raises(ValueError, match="total.rho: unknown limit"):
        TotalLimits.from_mapping({"rho": 1.0})
    with pytest.raises(ValueError, match="total.vega: must be a finite number >= 0"):
        TotalLimits(vega=-1.0)
    assert option_symbol("SPX", 0.25, 4500.0, False) == "SPX-0091D-4500-P"


def test_check_basket_checks_every_partial_fill():
    mgr = make_manager(total=TotalLimits(dollar_delta=1e4))
    # a delta-neutral pair: buy the call, sell BTC units; alone the call breaches the total
    d = bs_call_delta(100.0, 100.0, T, 0.6)
    n = 200
    hedge = -round(n * d)
    assert mgr.check_order("BTC", "BTC-0030D-100-C", n).action is not Action.ALLOW
    assert not mgr.check_basket([("BTC", "BTC-0030D-100-C", n), ("BTC", "BTC", hedge)])
    small = math.floor(1e4 / (d * 100.0)) - 1
    ok = [("BTC", "BTC-0030D-100-C", small), ("BTC", "BTC", -round(small * d))]
    assert mgr.check_basket(ok)
    assert mgr.position("BTC-0030D-100-C") == 0  # nothing applied


def test_quote_all_does_not_retrace_on_new_values():
    from jaxmm.engine._quote import _quote_chain_jit

    mgr = make_manager(total=TotalLimits(dollar_delta=5e4))
    mgr.quote_all()
    n = _quote_chain_jit._cache_size()
    fill(mgr, "BTC-0030D-100-C", 3)
    mgr.update_market("BTC", spot=101.0, vol=0.55)
    mgr.allocate("target", weights=[0.4, 0.6])
    q = mgr.quote_all(kill={"SPX": True})
    assert _quote_chain_jit._cache_size() == n
    assert (q["SPX"].bid_size == 0).all() and (q["BTC"].bid_size > 0).any()
