"""Restart safety and reproducibility of the engine loop (jaxmm.engine.OptionsMarketMaker,
run_simulation): trade ids unique across sessions on one store, positions restored from the
fill log on start (same positions, same Greeks, snapshots reconcile), the acknowledgement hook,
the garbage-collector freeze, and the simulated clock (same seed -> same fills and PnL).

The references are the engine's previous session (a different instance), the store's own
fill-log rebuild (:meth:`jaxmm.store.Store.rebuild_positions`, average-cost arithmetic of
:class:`jaxmm.portfolio.Position`) and :func:`jaxmm.portfolio.portfolio_greeks` (the
portfolio's independent Greeks kernel)."""

import asyncio
import gc
import math

import numpy as np
import pytest

from jaxmm.engine import (
    MarketMakerConfig,
    OptionsMarketMaker,
    SimulatedTraders,
    UnderlyingConfig,
    run_simulation,
    simulated_market,
)
from jaxmm.events import EventBroadcaster
from jaxmm.feeds import SurfaceUpdate, TakerFlow
from jaxmm.store import Store

STRIKES = [90.0, 95.0, 100.0, 105.0, 110.0]
EXPIRIES = [30 / 365, 90 / 365]
T0 = 1_700_000_000_000_000_000


def make_config(**over) -> MarketMakerConfig:
    u = UnderlyingConfig(
        symbol="XYZ",
        spot=100.0,
        strikes=STRIKES,
        expiries=EXPIRIES,
        multiplier=10.0,
        tick=0.01,
        hedge_band=10.0,
        vol=0.4,
        skew=-0.2,
    )
    kw = dict(
        underlyings=[u],
        quote={"fill_k": 8.0, "risk_aversion": 1e-3, "base_size": 5.0, "gamma_widening": 0.5},
        limits={"XYZ": {"delta": 60.0, "gamma": 3.0, "vega": 1500.0, "theta": 5000.0}},
        stale_surface_s=5.0,
    )
    kw.update(over)
    return MarketMakerConfig(**kw)


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> int:
        return self.t


def surface(market, clock) -> SurfaceUpdate:
    vols = [list(market.implied_vol("XYZ", np.asarray(STRIKES), t)) for t in EXPIRIES]
    return SurfaceUpdate("XYZ", EXPIRIES, STRIKES, vols, market.prices["XYZ"], clock.t, clock.t)


async def trade(mm, clock, market, seed: int, steps: int) -> None:
    """``steps`` market steps (1 s each) with other traders hitting the engine's quotes."""
    flow = TakerFlow(intensity=0.5 * 365 * 86400, k=8.0)
    traders = SimulatedTraders(mm.exchange, market, flow, seed=seed, config=mm.config)
    for _ in range(steps):
        market.step()
        clock.t += 1_000_000_000
        await mm.on_surface(surface(market, clock))
        await mm.on_price("XYZ", market.prices["XYZ"], clock.t)
        traders.step()
        await asyncio.sleep(0)
    await mm.settle()


def by_symbol(rows) -> dict:
    return {r["symbol"]: (r["quantity"], r["avg_price"], r["realised"]) for r in rows}


def test_second_session_restores_positions_ids_never_clash_and_books_reconcile(tmp_path):
    async def main():
        store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'mm.db'}", migrate=True)
        acks: list = []
        clock = Clock()
        market = simulated_market(make_config(), dt=1.0 / (365 * 86400), seed=21)
        mm1 = OptionsMarketMaker(
            make_config(), store=store, clock=clock, on_fill_ack=acks.extend, session_id="one"
        )
        await mm1.start()
        await trade(mm1, clock, market, seed=22, steps=25)
        await mm1.stop()
        n1 = mm1.stats()["fills"] + mm1.stats()["hedge_fills"]
        assert mm1.stats()["fills"] > 0 and mm1.stats()["hedge_fills"] > 0
        # the hook saw every acknowledged fill, after its commit, as newly stored
        assert [f.trade_id for f, _ in acks] == mm1.acked_trade_ids
        assert all(stored for _, stored in acks) and len(acks) == n1
        assert all(t.startswith("one:") for t in mm1.acked_trade_ids)
        pos1, greeks1 = by_symbol(mm1.positions()), mm1.greeks()
        last_surface, last_price = surface(market, clock), market.prices["XYZ"]

        # session 2 on the same store: positions before any tick. The chain's expiries are
        # times to expiry from start(): start it at the first session's clock origin so that
        # its options have the same times to expiry at the same clock time
        t_end, clock.t = clock.t, T0
        mm2 = OptionsMarketMaker(make_config(), store=store, clock=clock, session_id="two")
        await mm2.start()
        clock.t = t_end
        assert mm2.restored_fills == n1
        assert by_symbol(mm2.positions()) == pos1
        assert mm2.pnl()["realised"] == mm1.pnl()["realised"]
        # the Greeks at the same market: no hedge, no quote may change the state in between
        await mm2.kill("compare")
        await mm2.on_surface(last_surface)
        await mm2.on_price("XYZ", last_price, clock.t)
        g2 = mm2.greeks()["by_underlying"]["XYZ"]
        for k, v in greeks1["by_underlying"]["XYZ"].items():
            assert math.isclose(g2[k], v, rel_tol=1e-9, abs_tol=1e-9), (k, g2[k], v)
        await mm2.resume()
        await trade(mm2, clock, market, seed=23, steps=15)
        await mm2.stop()
        n2 = mm2.stats()["fills"] + mm2.stats()["hedge_fills"]
        assert n2 > 0

        fills = await store.get_fills(limit=10**6)
        ids = [f.trade_id for f in fills]
        assert len(ids) == len(set(ids)) == n1 + n2  # every fill of both sessions stored
        assert set(mm1.acked_trade_ids) | set(mm2.acked_trade_ids) == set(ids)
        assert await store.reconcile() == []
        # the engine's positions equal the whole log rebuilt (independent arithmetic)
        insts = {i: x for st in mm2._u.values() for i, x in st.instruments.items()}
        rebuilt = await store.rebuild_positions(instruments=insts)
        for sym, (q, avg, realised) in by_symbol(mm2.positions()).items():
            r = rebuilt[sym]
            assert (q, avg, realised) == (float(r.qty), float(r.avg_price), float(r.realised))

        # session 3 trades nothing: its snapshots (last_fill_id = the log's end) reconcile
        mm3 = OptionsMarketMaker(make_config(), store=store, clock=clock)
        await mm3.start()
        assert by_symbol(mm3.positions()) == by_symbol(mm2.positions())
        await mm3.stop()
        assert await store.reconcile() == []
        snaps = await store.latest_position_snapshots()
        assert {s.last_fill_id for s in snaps.values()} == {fills[-1].id}
        await store.close()

    asyncio.run(main())


def test_restored_greeks_equal_the_portfolio_kernel(tmp_path):
    """After a restart the engine's position Greeks equal jaxmm.portfolio.portfolio_greeks on
    the restored quantities at the same spot, vols and times to expiry."""
    from jaxmm.portfolio import PositionArrays, portfolio_greeks

    async def main():
        store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'g.db'}", migrate=True)
        clock = Clock()
        market = simulated_market(make_config(), dt=1.0 / (365 * 86400), seed=31)
        mm1 = OptionsMarketMaker(make_config(), store=store, clock=clock)
        await mm1.start()
        await trade(mm1, clock, market, seed=32, steps=15)
        await mm1.stop()
        mm2 = OptionsMarketMaker(make_config(), store=store, clock=clock)
        await mm2.start()
        await mm2.kill("compare")
        await mm2.on_surface(surface(market, clock))
        await mm2.on_price("XYZ", market.prices["XYZ"], clock.t)
        st = mm2._u["XYZ"]
        assert (st.pos != 0).any() and st.under_qty != 0
        pa = st.grm.portfolio.to_arrays(include_flat=True)  # the restored portfolio
        pa = PositionArrays(
            pa.strike,
            np.array([0.0, *st.expiry]),
            pa.is_call,
            pa.is_option,
            pa.units,
            pa.underlying_index,
            pa.expiry_index,
            pa.underlyings,
            pa.expiries,
        )
        vol = np.array([0.2, *st.vols])  # underlying row first (vol ignored there)
        ref = portfolio_greeks(pa, np.array([st.price]), vol, 0.0, np.array([0.0]))
        g = mm2.greeks()["by_underlying"]["XYZ"]
        for k in ("delta", "gamma", "vega", "theta"):
            r = float(getattr(ref.by_underlying, k)[0])
            assert math.isclose(g[k], r, rel_tol=1e-9, abs_tol=1e-9), (k, g[k], r)
        await mm2.stop()
        await store.close()

    asyncio.run(main())


def test_constructor_validates_new_options():
    cfg = make_config()
    with pytest.raises(ValueError, match="on_fill_ack"):
        OptionsMarketMaker(cfg, on_fill_ack=3)
    for bad in ("", "a" * 25, "a:b", "é"):
        with pytest.raises(ValueError, match="session_id"):
            OptionsMarketMaker(cfg, session_id=bad)
    with pytest.raises(ValueError, match="simulated_time"):
        OptionsMarketMaker(cfg, simulated_time=1)
    with pytest.raises(ValueError, match="gc_freeze"):
        OptionsMarketMaker(cfg, gc_freeze="yes")
    a, b = OptionsMarketMaker(cfg), OptionsMarketMaker(cfg)
    assert a.session_id != b.session_id and len(a.session_id) == 12


def test_start_freezes_the_collector_and_stop_unfreezes():
    async def main():
        mm = OptionsMarketMaker(make_config(), clock=Clock())
        await mm.start()
        frozen = gc.get_freeze_count()
        await mm.stop()
        return frozen, gc.get_freeze_count()

    gc.unfreeze()
    frozen, after = asyncio.run(main())
    assert frozen > 0 and after == 0
    mm = OptionsMarketMaker(make_config(), clock=Clock(), gc_freeze=False)
    asyncio.run(mm.start())
    assert gc.get_freeze_count() == 0
    asyncio.run(mm.stop())


def _fills_of(seed: int, **kw):
    cfg = MarketMakerConfig(
        underlyings=[
            UnderlyingConfig(
                symbol="XYZ",
                spot=100.0,
                strikes=[95.0, 100.0, 105.0],
                expiries=[30 / 365],
                hedge_band=5.0,
                vol=0.5,
            )
        ],
        quote={"fill_k": 5.0},
    )
    bus = EventBroadcaster(history_size=10)
    fills: list = []
    bus.add_callback(
        lambda e: fills.append((e.instrument, e.side, e.price, e.quantity)), ("order_filled",)
    )
    mm = asyncio.run(
        run_simulation(
            cfg,
            seconds=120.0,
            seed=seed,
            events=bus,
            clock="simulated",
            steps_per_second=0.25,
            taker_intensity=2.0,
            **kw,
        )
    )
    return fills, mm.pnl(), mm.stats()


def test_simulated_clock_same_seed_same_fills_and_pnl():
    f1, p1, s1 = _fills_of(7)
    f2, p2, s2 = _fills_of(7, start_ns=0)  # a different clock origin changes nothing
    assert s1["ticks"] == 30.0 and s1["fills"] > 5 and s1["hedges"] > 0
    assert f1 == f2
    assert p1 == p2
    f3, p3, _ = _fills_of(8)
    assert f3 != f1 and p3 != p1


def test_run_simulation_validates_clock_arguments():
    cfg = make_config()
    bad = [
        dict(clock="fast"),
        dict(clock="wall", steps_per_second=0.5),
        dict(clock="simulated", steps_per_second=0.0),
        dict(clock="simulated", steps_per_second=math.inf),
        dict(clock="simulated", start_ns=-1),
        dict(surface_every=0),
    ]
    names = [
        "clock",
        "steps_per_second",
        "steps_per_second",
        "steps_per_second",
        "start_ns",
        "surface_every",
    ]
    for kw, name in zip(bad, names, strict=True):
        with pytest.raises(ValueError, match=name):
            asyncio.run(run_simulation(cfg, seconds=1.0, seed=0, **kw))


def test_total_dollar_greeks_across_underlyings_equal_closed_forms(tmp_path):
    """Positions written to the store (restored on start), flat vols: ``total_dollar`` equals
    the Black-Scholes closed forms (no rates, no dividends; scipy's normal):
    delta N(d1) (call) or N(d1) - 1 (put), gamma n(d1) / (S sigma sqrt T),
    vega S n(d1) sqrt T, theta -S n(d1) sigma / (2 sqrt T); dollar delta = sum delta S,
    dollar gamma = sum gamma S^2 / 100."""
    from decimal import Decimal

    from scipy.stats import norm

    from jaxmm.engine import option_symbol
    from jaxmm.store import FillRecord

    t = 30 / 365
    spec = {"AAA": (100.0, 0.3, 10.0), "BBB": (5000.0, 0.2, 1.0)}  # spot, vol, multiplier
    cfg = MarketMakerConfig(
        underlyings=[
            UnderlyingConfig(
                symbol=u, spot=s, strikes=[s], expiries=[t], multiplier=m, hedge_band=1e9, vol=v
            )
            for u, (s, v, m) in spec.items()
        ],
        quote={"fill_k": 5.0},
    )
    call_a = option_symbol("AAA", t, 100.0, True)
    put_b = option_symbol("BBB", t, 5000.0, False)
    held = [(call_a, "buy", 2, "4.1"), (put_b, "sell", 3, "120.5"), ("AAA", "buy", 5, "100")]

    def unit(s, v, is_call):
        d1 = (0.5 * v * v * t) / (v * math.sqrt(t))  # at the money, r = q = 0
        pdf = norm.pdf(d1)
        delta = norm.cdf(d1) - (0.0 if is_call else 1.0)
        g = pdf / (s * v * math.sqrt(t))
        return delta, g, s * pdf * math.sqrt(t), -s * pdf * v / (2 * math.sqrt(t))

    ua, ub = unit(100.0, 0.3, True), unit(5000.0, 0.2, False)
    qa, qb = 2 * 10.0, -3 * 1.0  # signed quantity x multiplier
    want = {
        "dollar_delta": (qa * ua[0] + 5) * 100.0 + qb * ub[0] * 5000.0,
        "dollar_gamma": qa * ua[1] * 100.0**2 / 100 + qb * ub[1] * 5000.0**2 / 100,
        "vega": qa * ua[2] + qb * ub[2],
        "theta": qa * ua[3] + qb * ub[3],
    }

    async def main():
        store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 't.db'}", migrate=True)
        await store.save_fills(
            [
                FillRecord(f"x{i}", f"o{i}", sym, side, Decimal(px), q)
                for i, (sym, side, q, px) in enumerate(held)
            ]
        )
        clock = Clock()
        mm = OptionsMarketMaker(cfg, store=store, clock=clock)
        await mm.start()
        await mm.kill("measure")
        for u, (s, v, _) in spec.items():
            k = [0.5 * s, 2.0 * s]
            await mm.on_surface(SurfaceUpdate(u, [t], k, [[v, v]], s, clock.t, clock.t))
            await mm.on_price(u, s, clock.t)
        g = mm.greeks()
        await mm.stop()
        await store.close()
        return g

    g = asyncio.run(main())
    for k, v in want.items():
        assert math.isclose(g["total_dollar"][k], v, rel_tol=1e-9), (k, g["total_dollar"][k], v)
    # the raw sum keeps its meaning per underlying
    assert math.isclose(g["by_underlying"]["AAA"]["delta"], qa * ua[0] + 5, rel_tol=1e-9)
