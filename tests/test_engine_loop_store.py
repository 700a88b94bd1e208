"""The engine loop with a SQLite store: every acknowledged fill is in the database, positions
rebuilt from the fill log equal the engine's, snapshots reconcile; and run_simulation on the
demo configuration produces fills on both underlyings."""

import asyncio

from jaxmm.engine import (
    MarketMakerConfig,
    OptionsMarketMaker,
    SimulatedTraders,
    run_simulation,
    simulated_market,
)
from jaxmm.feeds import SurfaceUpdate, TakerFlow
from jaxmm.store import Store


def test_store_every_acknowledged_fill_is_stored_and_positions_rebuild(tmp_path):
    async def main():
        store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'mm.db'}", migrate=True)
        cfg = MarketMakerConfig.demo()
        mm = OptionsMarketMaker(cfg, store=store)
        await mm.start()
        market = simulated_market(cfg, dt=1.0 / (365 * 86400), seed=5)
        flows = {
            u: TakerFlow(0.3 * 365 * 86400, cfg.quote_params(u).fill_k) for u in ("BTC", "SPX")
        }
        traders = SimulatedTraders(mm.exchange, market, flows, seed=6, config=cfg)
        for _ in range(15):
            market.step()
            for u in cfg.underlyings:
                s = market.prices[u.symbol]
                vols = [list(market.implied_vol(u.symbol, u.strikes, t)) for t in u.expiries]
                t = mm._clock()
                await mm.on_surface(SurfaceUpdate(u.symbol, u.expiries, u.strikes, vols, s, t, t))
                await mm.on_price(u.symbol, s)
            traders.step()
            await asyncio.sleep(0)
        await mm.stop()  # flushes the writer and writes the final snapshots
        assert mm.stats()["fills"] > 0
        stored = {f.trade_id for f in await store.get_fills()}
        assert mm.acked_trade_ids and set(mm.acked_trade_ids) <= stored
        assert len(stored) == mm.stats()["fills"] + mm.stats()["hedge_fills"]
        insts = {i: x for st in mm._u.values() for i, x in st.instruments.items()}
        rebuilt = await store.rebuild_positions(instruments=insts)
        for st in mm._u.values():
            for iid, p in st.grm.portfolio.positions.items():
                r = rebuilt.get(iid)
                assert (r.qty if r else 0) == p.qty
                if r is not None:
                    assert r.avg_price == p.avg_price and r.realised == p.realised
                    assert r.fees == p.fees
        assert await store.reconcile() == []
        await store.close()

    asyncio.run(main())


def test_run_simulation_demo_fills_on_both_underlyings():
    mm = asyncio.run(run_simulation(MarketMakerConfig.demo(), seconds=2.0, seed=3))
    filled = {r["underlying"] for r in mm.positions() if r["symbol"] != r["underlying"]}
    assert filled == {"BTC", "SPX"}
    assert mm.stats()["ticks"] == 40.0 and mm.stats()["fills"] > 0
    assert all(q["bid_size"] == 0 and q["ask_size"] == 0 for q in mm.quotes())  # stopped
