"""Chain quoting (jaxmm.engine.quote_chain): the stated objective against an independent NumPy
reference, every adjustment term on its own, invariants, batching, gradients, no retrace."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from jaxmm.engine import (
    ChainMarket,
    OptionChain,
    QuoteLimits,
    QuoteParams,
    QuoteStatus,
    quote_chain,
    quote_option,
)
from jaxmm.engine._quote import _quote_chain_jit
from jaxmm.portfolio import Fill, Instrument, Order
from jaxmm.risk import Action, GreekLimits, LimitChecker, RiskLimits, Side
from jaxmm.vol import SVI, VolSurface

STRIKES = np.linspace(70.0, 130.0, 7)
EXPIRIES = np.array([0.05, 0.25, 1.0])
CHAIN = OptionChain.grid(jnp.asarray(STRIKES), jnp.asarray(EXPIRIES), multiplier=1.0)
BASE = dict(risk_aversion=1e-2, fill_k=15.0, horizon=1.0 / 52.0, vol_of_vol=0.3)


def _params(**kw):
    return QuoteParams(**{**BASE, **kw})


def _quote(params=None, limits=None, market=None, chain=CHAIN, vol=0.25):
    return quote_chain(
        params or _params(), limits or QuoteLimits(), market or ChainMarket(100.0), chain, vol
    )


# --- independent reference: closed-form BSM Greeks (SciPy) and the docs/engine.md equations ----
def _bsm_ref(s, k, t, r, q, v, call):
    sd = v * np.sqrt(t)
    d1 = (np.log(s / k) + (r - q + 0.5 * v * v) * t) / sd
    d2 = d1 - sd
    w = np.where(call, 1.0, -1.0)
    dq, dr = np.exp(-q * t), np.exp(-r * t)
    price = w * (s * dq * norm.cdf(w * d1) - k * dr * norm.cdf(w * d2))
    delta = w * dq * norm.cdf(w * d1)
    gamma = dq * norm.pdf(d1) / (s * sd)
    vega = s * dq * norm.pdf(d1) * np.sqrt(t)
    theta = (
        -s * dq * norm.pdf(d1) * v / (2 * np.sqrt(t))
        + w * q * s * dq * norm.cdf(w * d1)
        - w * r * k * dr * norm.cdf(w * d2)
    )
    return price, delta, gamma, vega, theta


def _reference(p, mkt, k, t, call, vol, m):
    """The quote of docs/engine.md written out in NumPy (no jaxmm code)."""
    s, r, q = mkt["spot"], mkt["rate"], mkt["dividend"]
    price, d, g, v, th = _bsm_ref(s, k, t, r, q, vol, call)
    tau, sv, nu, rho, ga = p["horizon"], p["underlying_vol"], p["vol_of_vol"], p["rho"], p["ga"]
    a = s * sv
    cov = np.array(
        [
            [a * a * tau, 0.0, rho * a * nu * tau],
            [0.0, 0.5 * (a * a * tau) ** 2, 0.0],
            [rho * a * nu * tau, 0.0, nu * nu * tau],
        ]
    )
    gp = np.array([mkt["delta"], mkt["gamma"], mkt["vega"]])
    u = np.stack([d, g, v], axis=-1)
    r_shift = -ga * u @ cov @ gp
    inv_half = 0.5 * ga * m * np.einsum("...i,ij,...j->...", u, cov, u)
    psi = math.log(1 + ga / p["k"]) / ga
    res = price + r_shift + v * np.where(call, p["cvs"], p["pvs"]) + d * p["dir"]
    widen = p["wg"] * 0.5 * np.abs(g) * a * a * tau
    widen = widen + p["wv"] * np.abs(v) * nu * math.sqrt(tau) + p["wt"] * np.abs(th) * tau
    factor = 1 + p["we"] * p["tref"] / (t + p["tref"])
    half = p["mult"] * factor * (inv_half + psi + widen)
    return price, res, half


def test_matches_numpy_reference_of_the_stated_objective():
    pr = dict(horizon=0.02, underlying_vol=0.3, vol_of_vol=0.25, rho=-0.6, ga=0.05, k=12.0)
    pr.update(cvs=0.004, pvs=-0.007, dir=0.8, wg=0.7, wv=0.4, wt=0.3, we=1.5, tref=0.04, mult=1.3)
    params = QuoteParams(
        risk_aversion=pr["ga"], fill_k=pr["k"], horizon=pr["horizon"],
        underlying_vol=pr["underlying_vol"], vol_of_vol=pr["vol_of_vol"], spot_vol_corr=pr["rho"],
        gamma_widening=pr["wg"], vega_widening=pr["wv"], theta_widening=pr["wt"],
        expiry_weight=pr["we"], expiry_ref=pr["tref"], call_vol_shift=pr["cvs"],
        put_vol_shift=pr["pvs"], spread_multiplier=pr["mult"], directional_skew=pr["dir"],
    )  # fmt: skip
    mkt = dict(spot=101.0, rate=0.03, dividend=0.01, delta=-35.0, gamma=4.0, vega=-250.0)
    chain = OptionChain.grid(jnp.asarray(STRIKES), jnp.asarray(EXPIRIES), multiplier=10.0)
    vols = 0.2 + 0.1 * (np.asarray(chain.strike) / 100.0 - 1.0) ** 2
    q = quote_chain(params, QuoteLimits(), ChainMarket(**mkt), chain, jnp.asarray(vols))
    price, res, half = _reference(
        pr, mkt, np.asarray(chain.strike), np.asarray(chain.expiry),
        np.asarray(chain.is_call), vols, 10.0,
    )  # fmt: skip
    np.testing.assert_allclose(q.theo, price, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(q.reservation, res, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(q.half_spread, half, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(q.bid_raw, res - half, rtol=1e-9, atol=1e-12)


def test_reduces_to_avellaneda_stoikov_reservation():
    # vol_of_vol = 0 and a delta-only book: r = theo - gamma_ra delta_i (S sigma)^2 tau D,
    # i.e. A-S's  s - q gamma sigma^2 tau  with q = D in delta-equivalent units.
    ga, tau, sv, big_d = 0.02, 0.01, 0.3, 40.0
    p = QuoteParams(risk_aversion=ga, fill_k=10.0, horizon=tau, underlying_vol=sv, vol_of_vol=0.0)
    q = _quote(p, market=ChainMarket(100.0, delta=big_d))
    expected = q.theo - ga * q.delta * (100.0 * sv) ** 2 * tau * big_d
    np.testing.assert_allclose(q.reservation, expected, rtol=1e-12)
    psi = math.log(1 + ga / 10.0) / ga
    as_half = (
        0.5
        * ga
        * (q.delta**2 * (100 * sv) ** 2 * tau + 0.5 * q.gamma**2 * (1e4 * sv**2 * tau) ** 2)
    )
    np.testing.assert_allclose(q.half_spread, as_half + psi, rtol=1e-12)


def test_inventory_skew_signs():
    flat = _quote()
    long_delta = _quote(market=ChainMarket(100.0, delta=50.0))
    calls, puts = np.asarray(CHAIN.is_call), ~np.asarray(CHAIN.is_call)
    shift = np.asarray(long_delta.reservation - flat.reservation)
    assert (shift[calls] < 0).all() and (shift[puts] > 0).all()  # sell deltas, buy puts
    long_vega = _quote(market=ChainMarket(100.0, vega=500.0))
    assert (np.asarray(long_vega.reservation - flat.reservation) < 0).all()
    short_gamma = _quote(market=ChainMarket(100.0, gamma=-5.0))
    assert (np.asarray(short_gamma.reservation - flat.reservation) > 0).all()


def test_batch_equals_per_option_loop():
    p = _params(gamma_widening=0.5, call_vol_shift=0.01)
    mkt = ChainMarket(100.0, rate=0.02, delta=20.0, vega=-100.0)
    lim = QuoteLimits(delta=30.0)
    vols = 0.2 + 0.05 * jnp.sin(CHAIN.strike)
    q = quote_chain(p, lim, mkt, CHAIN, vols)
    one = jax.jit(quote_option)
    flat = [np.asarray(x).reshape(-1) for x in (CHAIN.strike, CHAIN.expiry, CHAIN.is_call, vols)]
    for i in range(flat[0].size):
        k, t, c, v = (jnp.asarray(f[i]) for f in flat)
        qi = one(p, lim, mkt, k, t, c, v, jnp.asarray(1.0), jnp.asarray(0.0), jnp.asarray(True))
        for name in ("bid", "ask", "bid_size", "ask_size", "reservation", "status"):
            assert np.asarray(getattr(q, name)).reshape(-1)[i] == np.asarray(getattr(qi, name))
    assert one._cache_size() == 1


@settings(max_examples=25)
@given(
    spot=st.floats(20.0, 500.0),
    vol=st.floats(0.05, 1.5),
    ga=st.floats(1e-5, 1.0),
    k=st.floats(0.5, 100.0),
    delta=st.floats(-500.0, 500.0),
    vega=st.floats(-5e3, 5e3),
    skew=st.floats(-5.0, 5.0),
    tick=st.sampled_from([0.01, 0.05, 0.5]),
    lot=st.sampled_from([1.0, 5.0]),
    mult=st.floats(0.0, 3.0),
)
def test_quotes_never_crossed_or_negative(spot, vol, ga, k, delta, vega, skew, tick, lot, mult):
    p = _params(risk_aversion=ga, fill_k=k, directional_skew=skew, tick=tick, lot=lot)
    p = QuoteParams(
        **{**{f: getattr(p, f) for f in p.__dataclass_fields__}, "spread_multiplier": mult}
    )
    chain = OptionChain.grid(jnp.asarray(STRIKES * spot / 100.0), jnp.asarray(EXPIRIES))
    q = _quote(p, QuoteLimits(delta=600.0), ChainMarket(spot, delta=delta, vega=vega), chain, vol)
    bid, ask = np.asarray(q.bid), np.asarray(q.ask)
    bs, az = np.asarray(q.bid_size), np.asarray(q.ask_size)
    assert (np.asarray(q.status) != QuoteStatus.INVALID).all()
    assert (bid >= 0).all() and (ask > bid).all()
    assert (bs >= 0).all() and (az >= 0).all()
    assert (bid[bs > 0] >= tick - 1e-12).all()
    np.testing.assert_allclose(np.round(bid / tick) * tick, bid, atol=1e-9)
    np.testing.assert_allclose(np.round(ask / tick) * tick, ask, atol=1e-9)
    np.testing.assert_allclose(np.round(bs / lot) * lot, bs, atol=0)
    assert (bid[bs > 0] <= np.asarray(q.bid_raw)[bs > 0] + 1e-12).all()
    assert (ask >= np.asarray(q.ask_raw) - 1e-12).all()


# --- adjustment terms, one at a time ---------------------------------------------------------
def _half_increment(**kw):
    return np.asarray(_quote(_params(**kw)).half_spread - _quote().half_spread)


def test_gamma_widening_term_and_atm_widest():
    inc = _half_increment(gamma_widening=2.0)
    q = _quote()
    expected = 2.0 * 0.5 * np.abs(q.gamma) * (100.0 * 0.2) ** 2 * BASE["horizon"]
    np.testing.assert_allclose(inc, expected, rtol=1e-10, atol=1e-14)
    for e in range(len(EXPIRIES)):  # widest at the strike closest to the forward (ATM)
        assert STRIKES[np.argmax(inc[e, :, 0])] == 100.0
    assert bool(q.is_atm[:, 3].all()) and not bool(q.is_atm[:, [0, 6]].any())


def test_vega_and_theta_widening_terms():
    q = _quote()
    inc = _half_increment(vega_widening=1.5)
    np.testing.assert_allclose(
        inc, 1.5 * np.abs(q.vega) * 0.3 * math.sqrt(BASE["horizon"]), rtol=1e-10, atol=1e-14
    )
    inc = _half_increment(theta_widening=0.8)
    np.testing.assert_allclose(inc, 0.8 * np.abs(q.theta) * BASE["horizon"], rtol=1e-10, atol=1e-14)


def test_expiry_proximity_factor():
    ratio = np.asarray(_quote(_params(expiry_weight=2.0, expiry_ref=0.1)).half_spread)
    ratio = ratio / np.asarray(_quote().half_spread)
    expected = 1 + 2.0 * 0.1 / (EXPIRIES + 0.1)
    np.testing.assert_allclose(
        ratio, np.broadcast_to(expected[:, None, None], ratio.shape), rtol=1e-12
    )
    assert (np.diff(ratio[:, 0, 0]) < 0).all()  # nearer expiry, wider


def test_put_call_skew_and_directional_skew():
    q0 = _quote()
    q = _quote(_params(put_vol_shift=0.01))
    calls = np.asarray(CHAIN.is_call)
    shift = np.asarray(q.reservation - q0.reservation)
    np.testing.assert_allclose(
        shift[~calls], 0.01 * np.asarray(q0.vega)[~calls], rtol=1e-9, atol=1e-13
    )
    np.testing.assert_array_equal(shift[calls], 0.0)
    q = _quote(_params(directional_skew=2.0))
    np.testing.assert_allclose(
        q.reservation - q0.reservation, 2.0 * q0.delta, rtol=1e-9, atol=1e-13
    )


def test_operator_controls():
    q0 = _quote()
    q = _quote(_params(spread_multiplier=2.0))
    np.testing.assert_allclose(q.half_spread, 2.0 * q0.half_spread, rtol=1e-12)
    q = _quote(_params(size_scalar=0.5, base_size=10.0))
    assert float(q.ask_size.max()) == 5.0
    enabled = np.ones(CHAIN.strike.shape, bool)
    enabled[1, 2, 0] = False
    chain = OptionChain(CHAIN.strike, CHAIN.expiry, CHAIN.is_call, 1.0, 0.0, jnp.asarray(enabled))
    q = _quote(chain=chain)
    assert int(q.status[1, 2, 0]) == QuoteStatus.DISABLED
    assert float(q.bid_size[1, 2, 0]) == 0.0 and float(q.ask_size[1, 2, 0]) == 0.0
    assert float(q.ask_size.sum()) == float(q0.ask_size.sum()) - float(q0.ask_size[1, 2, 0])
    q = _quote(market=ChainMarket(100.0, kill=True))
    assert (np.asarray(q.status) == QuoteStatus.KILLED).all()
    assert float(q.bid_size.sum() + q.ask_size.sum()) == 0.0


def test_one_sided_when_a_side_would_breach():
    # delta at +95 of a 100 limit: buying calls / selling puts adds delta -> blocked side
    lim = QuoteLimits(delta=100.0)
    q = _quote(_params(base_size=10.0, risk_aversion=1e-4), lim, ChainMarket(100.0, delta=95.0))
    d = np.asarray(q.delta)
    calls = np.asarray(CHAIN.is_call)
    cap = np.floor((100.0 * (1 - 1e-8) - 95.0) / np.abs(d))
    bid_ok = np.asarray(q.bid)[calls] > 0  # a zero bid is never quoted
    np.testing.assert_array_equal(
        q.bid_size[calls], np.where(bid_ok, np.minimum(10.0, cap[calls]), 0.0)
    )
    np.testing.assert_array_equal(q.ask_size[~calls], np.minimum(10.0, cap[~calls]))
    np.testing.assert_array_equal(q.ask_size[calls], 10.0)  # selling calls reduces delta
    deep_itm_call = (2, 0, 0)  # delta ~ 1: at most 5 contracts
    assert float(q.bid_size[deep_itm_call]) <= 5.0
    # position limit: at +10 with max 10, no more buying of that option
    pos = np.zeros(CHAIN.strike.shape)
    pos[0, 3, 0] = 10.0
    chain = OptionChain(CHAIN.strike, CHAIN.expiry, CHAIN.is_call, 1.0, jnp.asarray(pos), True)
    q = _quote(limits=QuoteLimits(max_position=10.0), chain=chain)
    assert float(q.bid_size[0, 3, 0]) == 0.0 and float(q.ask_size[0, 3, 0]) == 10.0


@settings(max_examples=20)
@given(
    delta=st.floats(-120.0, 120.0),
    gamma=st.floats(-3.0, 3.0),
    vega=st.floats(-300.0, 300.0),
    spot=st.floats(80.0, 120.0),
)
def test_quoted_sizes_pass_the_post_trade_checker(delta, gamma, vega, spot):
    """Every size the kernel quotes is ALLOWED in full by jaxmm.risk.LimitChecker."""
    limits = RiskLimits(greeks=GreekLimits(delta=100.0, gamma=2.0, vega=250.0, theta=1e6))
    ks, ts = STRIKES[[1, 3, 5]], EXPIRIES[:2]
    chain = OptionChain.grid(jnp.asarray(ks), jnp.asarray(ts))
    insts, ids = [Instrument.spot("X")], []
    for ie, t in enumerate(ts):
        for ik, k in enumerate(ks):
            for ic, c in enumerate((True, False)):
                iid = f"{ie}-{ik}-{ic}"
                ids.append(((ie, ik, ic), iid))
                insts.append(
                    Instrument.option(iid, "X", strike=k, expiry=t, is_call=c, multiplier=1)
                )
    q = quote_chain(
        _params(base_size=25.0),
        QuoteLimits(delta=100.0, gamma=2.0, vega=250.0, theta=1e6),
        ChainMarket(spot, delta=delta, gamma=gamma, vega=vega),
        chain,
        0.3,
    )
    # three synthetic instruments carry the portfolio's delta, gamma and vega exactly
    insts += [
        Instrument.option(f"g{j}", "X", strike=1.0, expiry=1.0, is_call=True, multiplier=1)
        for j in range(3)
    ]
    greeks = ("delta", "gamma", "vega", "theta")
    unit = {iid: tuple(float(getattr(q, g)[ix]) for g in greeks) for ix, iid in ids}
    for j, val in enumerate((delta, gamma, vega)):
        unit[f"g{j}"] = tuple(val / 1000.0 if i == j else 0.0 for i in range(4))
    chk = LimitChecker(insts, limits)
    chk.update_market({"X": spot}, unit)
    for j in range(3):
        chk.on_fill(Fill(f"g{j}", Side.BUY, 1000, 1.0))
    for ix, iid in ids:
        for side, size in ((Side.BUY, q.bid_size[ix]), (Side.SELL, q.ask_size[ix])):
            if float(size) > 0:
                dec = chk.check_order(Order(iid, side, int(size)))
                assert dec.action is Action.ALLOW, (iid, side, int(size), dec)


def test_gradient_wrt_parameters():
    mkt = ChainMarket(100.0, delta=30.0, vega=200.0)

    def total(ga, mult):
        p = _params(risk_aversion=ga, spread_multiplier=mult)
        q = quote_chain(p, QuoteLimits(), mkt, CHAIN, 0.25)
        return jnp.sum(q.reservation) + jnp.sum(q.half_spread)

    g_ga, g_mult = jax.grad(total, argnums=(0, 1))(jnp.asarray(1e-2), jnp.asarray(1.2))
    h = 1e-6
    fd_ga = (total(1e-2 + h, 1.2) - total(1e-2 - h, 1.2)) / (2 * h)
    fd_mult = (total(1e-2, 1.2 + h) - total(1e-2, 1.2 - h)) / (2 * h)
    np.testing.assert_allclose(g_ga, fd_ga, rtol=1e-6)
    np.testing.assert_allclose(g_mult, fd_mult, rtol=1e-6)
    # d(half)/d(mult) is half/mult exactly
    q = quote_chain(_params(spread_multiplier=1.2), QuoteLimits(), mkt, CHAIN, 0.25)
    np.testing.assert_allclose(g_mult, float(jnp.sum(q.half_spread)) / 1.2, rtol=1e-10)


def test_no_retrace_on_new_values():
    _quote()
    n = _quote_chain_jit._cache_size()
    _quote(_params(risk_aversion=0.5, gamma_widening=1.0), QuoteLimits(delta=7.0),
           ChainMarket(105.0, delta=3.0, kill=True), CHAIN, 0.31)  # fmt: skip
    assert _quote_chain_jit._cache_size() == n


def test_surface_input_equals_array_of_its_vols():
    sl = SVI(jnp.array([0.002, 0.01, 0.04]), 0.1, -0.4, 0.0, 0.2)
    surf = VolSurface.from_svi(sl, jnp.asarray(EXPIRIES), spot=100.0)
    q1 = _quote(vol=surf)
    q2 = _quote(vol=surf.implied_vol(CHAIN.strike, CHAIN.expiry))
    np.testing.assert_array_equal(q1.bid, q2.bid)
    np.testing.assert_array_equal(q1.vol, q2.vol)
    assert float(q1.vol[0, 0, 0]) != float(q1.vol[0, 6, 0])  # the smile is used


def test_bad_input_gives_status_not_nonsense():
    vols = np.full(CHAIN.strike.shape, 0.25)
    vols[0, 1, 1] = np.nan
    vols[2, 2, 0] = 0.0
    q = _quote(vol=jnp.asarray(vols))
    assert (
        int(q.status[0, 1, 1]) == QuoteStatus.INVALID
        and int(q.status[2, 2, 0]) == QuoteStatus.INVALID
    )
    assert float(q.bid_size[0, 1, 1] + q.ask_size[0, 1, 1]) == 0.0
    assert np.isfinite(np.asarray(q.bid)).all() and np.isfinite(np.asarray(q.ask)).all()
    q = _quote(market=ChainMarket(jnp.asarray(jnp.nan)))
    assert (np.asarray(q.status) == QuoteStatus.INVALID).all()
    with pytest.raises(ValueError, match="market.spot: contains NaN"):
        _quote(market=ChainMarket(float("nan")))
    with pytest.raises(ValueError, match="risk_aversion: must be > 0"):
        QuoteParams(risk_aversion=0.0, fill_k=1.0).validate()
    with pytest.raises(ValueError, match="spot_vol_corr: must be <= 1"):
        QuoteParams(risk_aversion=1.0, fill_k=1.0, spot_vol_corr=1.5).validate()


def test_float32_inputs_give_float32_quotes():
    p = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), _params())
    chain = jax.tree.map(lambda x: x.astype(jnp.float32) if x.dtype == jnp.float64 else x, CHAIN)
    q = quote_chain(p, QuoteLimits(), ChainMarket(jnp.float32(100.0)), chain, jnp.float32(0.25))
    assert q.bid.dtype == jnp.float32 and q.theo.dtype == jnp.float32
    q64 = _quote()
    np.testing.assert_allclose(q.theo, q64.theo, rtol=2e-4, atol=2e-4)


def test_packed_entry_point_equals_pytree_and_does_not_retrace():
    from jaxmm.engine import CHAIN_FIELDS, PACKED_OUTPUT_FIELDS, pack_state, quote_chain_packed
    from jaxmm.engine._quote import _quote_chain_packed_jit

    p, lim = _params(gamma_widening=0.3), QuoteLimits(delta=40.0)
    mkt = ChainMarket(100.0, 0.02, 0.01, delta=20.0, vega=-50.0)
    vols = 0.2 + 0.05 * jnp.cos(CHAIN.strike)
    q = quote_chain(p, lim, mkt, CHAIN, vols)
    cols = dict(strike=CHAIN.strike, expiry=CHAIN.expiry, is_call=CHAIN.is_call, vol=vols)
    cols.update(multiplier=CHAIN.multiplier, position=CHAIN.position, enabled=CHAIN.enabled)
    x = jnp.stack(
        [jnp.broadcast_to(cols[f], CHAIN.strike.shape).reshape(-1).astype(jnp.float64)
         for f in CHAIN_FIELDS], axis=-1,
    )  # fmt: skip
    out = quote_chain_packed(pack_state(p, lim, mkt), x)
    for j, f in enumerate(PACKED_OUTPUT_FIELDS):
        np.testing.assert_array_equal(out[:, j], np.asarray(getattr(q, f)).reshape(-1), err_msg=f)
    n = _quote_chain_packed_jit._cache_size()
    quote_chain_packed(pack_state(_params(), QuoteLimits(), ChainMarket(90.0, kill=True)), x * 1.01)
    assert _quote_chain_packed_jit._cache_size() == n
