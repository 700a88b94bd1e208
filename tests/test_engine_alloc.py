"""Capital allocation and correlation-aware portfolio risk in the running engine
(OptionsMarketMaker with MarketMakerConfig.allocation / .correlation; docs/multi_underlying.md,
"Allocation in the running engine").

References: the weights of each mode are those of jaxmm.engine._multi's functions on the same
inputs; risk parity on two books is w_i ∝ 1 / stdev_i for any correlation (Maillard, Roncalli &
Teiletche 2010, "The properties of equally weighted risk contribution portfolios", J. Portfolio
Management 36(4), section 2.1); the portfolio stdev is recomputed here from the joint normal
factor covariance with Var(L'f + f'Af) = L' S L + 2 tr(A S A S) for f ~ N(0, S) (the variance
of a Gaussian quadratic form, e.g. Mathai & Provost 1992, Theorem 3.2b.2), independently of the
matrix form M used by the library."""

import asyncio
import math

import numpy as np
import pytest

from jaxmm.book import OrderType, Side, TimeInForce
from jaxmm.engine import MarketMakerConfig, OptionsMarketMaker, UnderlyingConfig
from jaxmm.engine._multi import (
    equal_weights,
    inverse_vol_weights,
    risk_parity_weights,
    target_weights,
)
from jaxmm.execution import InProcessConnector, OrderRequest
from jaxmm.feeds import SurfaceUpdate
from jaxmm.risk import nearest_correlation, normal_quantile, validate_correlation

STRIKES = [90.0, 95.0, 100.0, 105.0, 110.0]
EXPIRIES = [30 / 365]
LIMITS = {"delta": 60.0, "gamma": 3.0, "vega": 1500.0, "theta": 5000.0, "max_position": 21.0}
SIG = {"AAA": 0.3, "BBB": 0.6}  # the quoters' underlying_vol (risk factor)
CORR = [[1.0, 0.35], [0.35, 1.0]]


def make_config(**over) -> MarketMakerConfig:
    us = [
        UnderlyingConfig(
            symbol=s, spot=100.0, strikes=STRIKES, expiries=EXPIRIES, multiplier=10.0,
            tick=0.01, hedge_band=1e6, quote={"underlying_vol": SIG[s]},
        )
        for s in ("AAA", "BBB")
    ]  # fmt: skip
    kw = dict(
        underlyings=us,
        quote={"fill_k": 8.0, "risk_aversion": 1e-3, "base_size": 8.0, "vol_of_vol": 0.4,
               "spot_vol_corr": -0.5},
        limits={"AAA": dict(LIMITS), "BBB": dict(LIMITS)},
        correlation=CORR,
    )  # fmt: skip
    kw.update(over)
    return MarketMakerConfig(**kw)


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000_000_000_000

    def __call__(self) -> int:
        return self.t


def surface(u: str, clock: Clock, vol: float = 0.3) -> SurfaceUpdate:
    return SurfaceUpdate(u, EXPIRIES, STRIKES, [[vol] * len(STRIKES)], 100.0, clock.t, clock.t)


async def quoted(config: MarketMakerConfig) -> OptionsMarketMaker:
    clock = Clock()
    mm = OptionsMarketMaker(config, clock=clock, gc_freeze=False)
    await mm.start()
    for u in ("AAA", "BBB"):
        await mm.on_surface(surface(u, clock))
        await mm.on_price(u, 100.0)
    return mm


# --- weights -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "alloc, ref",
    [
        ({"mode": "equal"}, equal_weights(2)),
        ({"mode": "target", "weights": {"AAA": 0.7, "BBB": 0.3}}, target_weights([0.7, 0.3])),
        ({"mode": "vol_weighted"}, inverse_vol_weights([0.3, 0.6])),
        # before any trading every book is flat: the notional basis rho_ij sigma_i sigma_j
        (
            {"mode": "risk_parity"},
            risk_parity_weights(np.array(CORR) * np.outer([0.3, 0.6], [0.3, 0.6])),
        ),
        ({"mode": "risk_parity", "basis": "notional"}, np.array([2 / 3, 1 / 3])),
    ],
)
def test_weights_of_each_mode(alloc, ref):
    mm = OptionsMarketMaker(make_config(allocation=alloc))
    a = mm.risk()["allocation"]
    w = [a["weights"]["AAA"], a["weights"]["BBB"]]
    np.testing.assert_allclose(w, ref, rtol=1e-12, atol=1e-15)
    assert a["mode"] == alloc["mode"]
    assert a["scales"] == {"AAA": w[0] / max(w), "BBB": w[1] / max(w)}
    assert max(a["scales"].values()) == 1.0
    if alloc["mode"] == "risk_parity":
        assert a["basis"] == "notional"


def test_risk_parity_book_basis_after_trading():
    """Pure-delta books (units of the underlying held): ERC on two books is w_i ∝ 1/stdev_i,
    stdev_i = |D_i| S_i sigma_i sqrt(h) (Maillard et al. 2010)."""

    async def main():
        cfg = make_config(allocation={"mode": "risk_parity", "rebalance_s": 1.0})
        mm = await quoted(cfg)
        assert mm.risk()["allocation"]["basis"] == "notional"  # flat books
        x = InProcessConnector(mm.exchange, owner="liq")
        own = mm.connector
        for sym, qty in (("AAA", 30), ("BBB", 5)):  # we buy the underlying from a resting offer
            x.submit_now(OrderRequest(sym, Side.SELL, qty * 100, 10000))
            own.submit_now(
                OrderRequest(sym, Side.BUY, qty * 100, None, OrderType.MARKET, TimeInForce.IOC)
            )
        await asyncio.sleep(0)
        d = {u: mm.greeks()["by_underlying"][u]["delta"] for u in ("AAA", "BBB")}
        assert d["AAA"] != 0 and d["BBB"] != 0
        mm._clock.t += 2 * 10**9
        await mm.on_price("AAA", 100.0)  # rebalance is due
        a = mm.risk()["allocation"]
        assert a["basis"] == "book"
        inv = np.array([1.0 / abs(d["AAA"] * 100.0 * 0.3), 1.0 / abs(d["BBB"] * 100.0 * 0.6)])
        ref = inv / inv.sum()
        np.testing.assert_allclose([a["weights"]["AAA"], a["weights"]["BBB"]], ref, rtol=1e-9)
        assert a["last_rebalance"] == mm._clock.t / 1e9
        await mm.stop()

    asyncio.run(main())


# --- scales on sizes and limits ------------------------------------------------------------------


def _sizes(mm, u):
    return np.array([[q["bid_size"], q["ask_size"]] for q in mm.quotes(underlying=u)])


def test_scales_apply_to_sizes_and_limits():
    async def main():
        base = await quoted(make_config())
        tgt = await quoted(
            make_config(allocation={"mode": "target", "weights": {"AAA": 0.8, "BBB": 0.2}})
        )
        r = tgt.risk()
        assert r["allocation"]["scales"] == {"AAA": 1.0, "BBB": 0.25}
        # the largest weight keeps its configured size and limits exactly
        np.testing.assert_array_equal(_sizes(tgt, "AAA"), _sizes(base, "AAA"))
        assert r["limits"]["AAA"] == LIMITS
        # the other runs at a quarter: base size 8 -> 2, every limit x 0.25 (integers floored)
        b_base, b_tgt = _sizes(base, "BBB"), _sizes(tgt, "BBB")
        assert b_base.sum() > 0 and b_tgt.sum() > 0
        assert (b_tgt <= b_base).all() and b_tgt.sum() < b_base.sum()
        assert b_tgt.max() <= 2.0 < b_base.max()
        want = {k: v * 0.25 for k, v in LIMITS.items()}
        want["max_position"] = 5.0  # floor(21 x 0.25)
        assert r["limits"]["BBB"] == want
        assert tgt._u["BBB"].grm.limits.max_position == 5
        assert tgt._u["BBB"].grm.limits.greeks.vega == 375.0
        for mm in (base, tgt):
            await mm.stop()

    asyncio.run(main())


def test_default_none_is_unchanged():
    """mode "none" (default) leaves quotes and limits exactly as without the fields."""

    async def main():
        plain = MarketMakerConfig.model_validate(
            {k: v for k, v in make_config().model_dump().items()
             if k not in ("allocation", "correlation", "repair_correlation")}
        )  # fmt: skip
        a, b = await quoted(plain), await quoted(make_config())
        assert a.quotes() == b.quotes()
        assert a.risk()["limits"] == b.risk()["limits"] == plain.limits
        alloc = a.risk()["allocation"]
        assert alloc["mode"] == "none" and alloc["weights"] is None
        assert alloc["scales"] == {"AAA": 1.0, "BBB": 1.0} and alloc["last_rebalance"] is None
        for mm in (a, b):
            await mm.stop()

    asyncio.run(main())


# --- correlation -------------------------------------------------------------------------------

BAD = [[1.0, 0.9, 0.2], [0.9, 1.0, 0.9], [0.2, 0.9, 1.0]]  # not PSD (min eigenvalue < 0)


def _three(**over) -> MarketMakerConfig:
    us = [
        UnderlyingConfig(symbol=s, spot=100.0, strikes=STRIKES, expiries=EXPIRIES, hedge_band=1.0)
        for s in ("AAA", "BBB", "CCC")
    ]
    return MarketMakerConfig(underlyings=us, **over)


def test_non_psd_correlation_rejected_or_repaired():
    assert np.linalg.eigvalsh(np.array(BAD)).min() < 0
    with pytest.raises(ValueError, match=r"correlation: not positive semi-definite"):
        _three(correlation=BAD)
    with pytest.raises(ValueError, match=r"correlation: must be 3 x 3"):
        _three(correlation=CORR)
    with pytest.raises(ValueError, match=r"correlation: not symmetric"):
        _three(correlation=[[1.0, 0.2, 0.0], [0.3, 1.0, 0.0], [0.0, 0.0, 1.0]])
    cfg = _three(correlation=BAD, repair_correlation=True)
    assert cfg.correlation == BAD  # kept as given
    c = cfg.correlation_matrix()
    np.testing.assert_allclose(c, nearest_correlation(BAD), atol=1e-12)
    validate_correlation(c)
    assert np.linalg.eigvalsh(c).min() >= -1e-10


def test_allocation_config_validation():
    with pytest.raises(ValueError, match=r"allocation.weights: must sum to 1"):
        make_config(allocation={"mode": "target", "weights": {"AAA": 0.7, "BBB": 0.4}})
    with pytest.raises(ValueError, match=r"allocation.weights: need exactly the underlyings"):
        make_config(allocation={"mode": "target", "weights": {"AAA": 1.0}})
    with pytest.raises(ValueError, match=r"allocation.weights: required"):
        make_config(allocation={"mode": "target"})
    with pytest.raises(ValueError, match=r"allocation.weights: only for mode 'target'"):
        make_config(allocation={"mode": "equal", "weights": {"AAA": 0.5, "BBB": 0.5}})
    with pytest.raises(ValueError, match=r"rebalance_s"):
        make_config(allocation={"mode": "equal", "rebalance_s": 0.0})
    with pytest.raises(ValueError, match=r"allocation.mode: 'vol_weighted' needs underlying_vol"):
        _three(allocation={"mode": "vol_weighted"}, quote={"underlying_vol": 0.0})


# --- portfolio risk ----------------------------------------------------------------------------


def _independent_stdev(dd, dg, vega, sig, nu, rsv, rho, h):
    """One-day PnL stdev from dollar Greeks: P = sum_i dd_i r_i + 100 dg_i r_i^2 / 2 + V_i y_i
    with r_i = dS_i / S_i; f = (r, y) ~ N(0, S); Var = L'SL + 2 tr(ASAS)."""
    n = len(dd)
    s, v = sig * math.sqrt(h), nu * math.sqrt(h)
    cov = np.zeros((2 * n, 2 * n))
    for i in range(n):
        for j in range(n):
            cov[i, j] = rho[i][j] * s[i] * s[j]
            cov[i, n + j] = rho[i][j] * rsv[j] * s[i] * v[j]
            cov[n + j, i] = cov[i, n + j]
            cov[n + i, n + j] = v[i] * v[j] * (1.0 if i == j else rho[i][j] * rsv[i] * rsv[j])
    lin = np.concatenate([dd, vega])
    quad = np.diag(np.concatenate([100.0 * np.asarray(dg) / 2.0, np.zeros(n)]))
    qs = quad @ cov
    return math.sqrt(lin @ cov @ lin + 2.0 * np.trace(qs @ qs))


def test_portfolio_stdev_independent():
    async def main():
        mm = await quoted(make_config())
        taker = InProcessConnector(mm.exchange, owner="taker")
        for sym, side in (("AAA-0030D-100-C", Side.SELL), ("BBB-0030D-95-P", Side.BUY),
                          ("BBB-0030D-105-C", Side.SELL)):  # fmt: skip
            taker.submit_now(OrderRequest(sym, side, 3, None, OrderType.MARKET, TimeInForce.IOC))
        await asyncio.sleep(0)
        g = mm.greeks()["by_underlying"]
        assert all(g[u]["gamma"] != 0 for u in ("AAA", "BBB"))
        dd = np.array([g[u]["delta"] * 100.0 for u in ("AAA", "BBB")])  # spot 100
        dg = np.array([g[u]["gamma"] * 100.0**2 / 100.0 for u in ("AAA", "BBB")])
        ve = np.array([g[u]["vega"] for u in ("AAA", "BBB")])
        sig = np.array([0.3, 0.6])
        ref = _independent_stdev(
            dd, dg, ve, sig, np.array([0.4, 0.4]), np.array([-0.5, -0.5]), CORR, 1 / 365
        )
        p = mm.risk()["portfolio"]
        assert p["stdev"] == pytest.approx(ref, rel=1e-10)
        assert p["horizon"] == 1 / 365 and p["confidence"] == 0.99
        # mean = sum theta h + gamma (S sigma sqrt h)^2 / 2; var = z stdev - mean
        th = np.array([g[u]["theta"] for u in ("AAA", "BBB")])
        gm = np.array([g[u]["gamma"] for u in ("AAA", "BBB")])
        mean = float(np.sum(th / 365 + 0.5 * gm * (100.0 * sig) ** 2 / 365))
        assert p["mean"] == pytest.approx(mean, rel=1e-10, abs=1e-9)
        assert p["var"] == pytest.approx(normal_quantile(0.99) * ref - mean, rel=1e-10)
        contrib = sum(v["contribution"] for v in p["by_underlying"].values())
        assert contrib == pytest.approx(ref, rel=1e-10)
        await mm.stop()

    asyncio.run(main())
