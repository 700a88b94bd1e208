"""The asyncio engine loop (jaxmm.engine.OptionsMarketMaker) on the simulated market: feed ->
engine -> book -> fills -> portfolio -> risk -> events, post-trade limits under random order
flow, hedging, kill switch, requote threshold, bad input and stale surfaces, slow subscribers.

One small chain shape (5 strikes x 2 expiries x C/P, padded to 32 rows) for every engine in
this module, so the engine's kernel compiles once per test process."""

import asyncio
import math

import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from jaxmm.book import OrderType, Side, TimeInForce
from jaxmm.engine import (
    MarketMakerConfig,
    OptionsMarketMaker,
    SimulatedTraders,
    UnderlyingConfig,
    interpolate_surface,
    simulated_market,
)
from jaxmm.events import EventBroadcaster, SubscriberLagged
from jaxmm.execution import InProcessConnector, OrderRequest
from jaxmm.feeds import SurfaceUpdate, TakerFlow
from jaxmm.portfolio import PositionArrays, portfolio_greeks

STRIKES = [90.0, 95.0, 100.0, 105.0, 110.0]
EXPIRIES = [30 / 365, 90 / 365]
NO_SHRINK = [Phase.explicit, Phase.reuse, Phase.generate]
LIMITS = {"delta": 60.0, "gamma": 3.0, "vega": 1500.0, "theta": 5000.0}


def make_config(**over) -> MarketMakerConfig:
    u = UnderlyingConfig(
        symbol="XYZ", spot=100.0, strikes=STRIKES, expiries=EXPIRIES, multiplier=10.0,
        tick=0.01, hedge_band=10.0, vol=0.4, skew=-0.2,
    )  # fmt: skip
    kw = dict(
        underlyings=[u],
        quote={"fill_k": 8.0, "risk_aversion": 1e-3, "base_size": 5.0, "gamma_widening": 0.5},
        limits={"XYZ": dict(LIMITS)},
        stale_surface_s=5.0,
    )
    kw.update(over)
    return MarketMakerConfig(**kw)


class Clock:
    """A fake ns clock (books, staleness and breaker timing all read it)."""

    def __init__(self) -> None:
        self.t = 1_700_000_000_000_000_000

    def __call__(self) -> int:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += int(seconds * 1e9)


def true_surface(market, u: str, clock: Clock) -> SurfaceUpdate:
    s = market.prices[u]
    vols = [list(market.implied_vol(u, np.asarray(STRIKES), t)) for t in EXPIRIES]
    return SurfaceUpdate(u, EXPIRIES, STRIKES, vols, s, clock.t, clock.t)


async def started(config=None, **kw):
    clock = kw.pop("clock", None) or Clock()
    mm = OptionsMarketMaker(config or make_config(), clock=clock, **kw)
    await mm.start()
    return mm, clock


def our_resting(mm) -> list:
    owner = mm.connector.owner
    return [(s, o) for s in mm.exchange.symbols() for o in mm.exchange.book(s).orders(owner=owner)]


def check_quotes(mm) -> None:
    """Resting quotes: never crossed, never negative, sizes on the lot grid."""
    for q in mm.quotes():
        if q["bid_size"] > 0:
            assert q["bid"] > 0
        if q["ask_size"] > 0:
            assert q["ask"] > 0
        if q["bid_size"] > 0 and q["ask_size"] > 0:
            assert q["bid"] < q["ask"]
        for b in ("bid", "ask"):
            book = mm.exchange.book(q["symbol"])
            top = book.best_bid() if b == "bid" else book.best_ask()
            if q[f"{b}_size"] > 0:  # our quote is in the book at its price level or better
                assert top is not None


def within_limits(mm, tol=1e-9) -> None:
    g = mm.greeks()["by_underlying"]["XYZ"]
    for k, lim in LIMITS.items():
        assert abs(g[k]) <= lim * (1 + tol), (k, g[k], lim)


async def session(mm, clock, market, traders, steps: int) -> None:
    for _ in range(steps):
        market.step()
        clock.advance(1.0)
        await mm.on_surface(true_surface(market, "XYZ", clock))
        await mm.on_price("XYZ", market.prices["XYZ"], clock.t)
        traders.step()
        await asyncio.sleep(0)  # hedges scheduled by fills run here


def test_end_to_end_fills_come_from_the_book_and_state_is_consistent():
    async def main():
        bus = EventBroadcaster(history_size=100_000)
        mm, clock = await started(events=bus)
        market = simulated_market(mm.config, dt=1.0 / (365 * 86400), seed=11)
        flow = TakerFlow(intensity=0.3 * 365 * 86400, k=8.0)
        traders = SimulatedTraders(mm.exchange, market, flow, seed=12, config=mm.config)
        await session(mm, clock, market, traders, 40)
        stats = mm.stats()
        assert stats["fills"] > 5 and stats["ticks"] == 40
        # every fill of ours is a trade on a book, against the traders' orders
        owner = mm.connector.owner
        ours = 0
        for sym in mm.exchange.symbols():
            for f in mm.exchange.book(sym).trades():
                if owner in (f.maker_owner, f.taker_owner):
                    assert {f.maker_owner, f.taker_owner} == {owner, "sim-traders"}
                    ours += 1
        assert ours == stats["fills"] + stats["hedge_fills"]
        # positions equal the sum of fills, per instrument
        st_ = mm._u["XYZ"]
        pf = st_.grm.portfolio
        for iid, pos in pf.positions.items():
            assert pos.qty == sum(f.signed_qty for f in pf.fills(iid))
        rows = {r["symbol"]: r["quantity"] for r in mm.positions()}
        for iid, pos in pf.positions.items():
            assert rows.get(iid, 0.0) == pos.qty
        # portfolio Greeks equal a fresh batched computation from the positions
        pa = pf.to_arrays(include_flat=True)
        # the engine ages the chain by the time elapsed since start (clock), as here
        pa = PositionArrays(pa.strike, np.array([0.0, *st_.expiry]), pa.is_call, pa.is_option,
                            pa.units, pa.underlying_index, pa.expiry_index, pa.underlyings,
                            pa.expiries)  # fmt: skip
        vol = np.array([0.2, *st_.vols])  # underlying row first (vol ignored there)
        fresh = portfolio_greeks(pa, np.array([st_.price]), vol, 0.0, np.array([0.0]))
        g = mm.greeks()["by_underlying"]["XYZ"]
        for k in ("delta", "gamma", "vega", "theta"):
            ref = float(getattr(fresh.by_underlying, k)[0])
            assert math.isclose(g[k], ref, rel_tol=1e-9, abs_tol=1e-9), (k, g[k], ref)
        within_limits(mm)
        check_quotes(mm)
        await mm.stop()
        seqs = [e.seq for e in bus.history()]
        assert seqs == list(range(1, len(seqs) + 1))
        types = {e.type for e in bus.history()}
        assert {"price_updated", "quote_updated", "order_filled", "greeks_updated"} <= types
        assert our_resting(mm) == []

    asyncio.run(main())


def fresh(surf: SurfaceUpdate, clock: Clock) -> SurfaceUpdate:
    return SurfaceUpdate(surf.underlying, surf.expiries, surf.strikes, surf.vols, surf.forward,
                         clock.t, clock.t)  # fmt: skip


def _inject(mm, taker, sym, side, lots):
    return taker.submit_now(OrderRequest(sym, side, lots, None, OrderType.MARKET, TimeInForce.IOC))


@settings(max_examples=8, deadline=None, derandomize=True, phases=NO_SHRINK)
@given(
    orders=st.lists(
        st.tuples(
            st.integers(0, 19),
            st.sampled_from([Side.BUY, Side.SELL]),
            st.integers(1, 12),
            st.floats(-0.004, 0.004),
        ),
        min_size=5,
        max_size=30,
    )
)
def test_random_order_flow_never_breaches_limits_hedges_and_kill(orders):
    async def main():
        mm, clock = await started()
        taker = InProcessConnector(mm.exchange, owner="taker")
        under = InProcessConnector(mm.exchange, owner="ladder")
        spot = 100.0
        surf = SurfaceUpdate("XYZ", EXPIRIES, STRIKES, [[0.45, 0.42, 0.4, 0.39, 0.39]] * 2,
                             spot, clock.t, clock.t)  # fmt: skip
        await mm.on_surface(surf)
        syms = mm._u["XYZ"].symbols
        for i, side, lots, move in orders:
            # liquidity for hedges in the underlying's own book
            for k in range(1, 4):
                under.submit_now(OrderRequest("XYZ", Side.BUY, 100, int(spot * 100) - k))
                under.submit_now(OrderRequest("XYZ", Side.SELL, 100, int(spot * 100) + k))
            spot = spot * (1 + move)
            clock.advance(0.5)
            await mm.on_surface(fresh(surf, clock))
            await mm.on_price("XYZ", spot)  # a market move may breach (the breaker trips)
            check_quotes(mm)
            before = dict(mm.greeks()["by_underlying"]["XYZ"])
            _inject(mm, taker, syms[i], side, lots)
            # the fill came from a quote that passed the post-trade check on the state it
            # hit: every measure ends within its limit, or no worse than before if over
            after = mm.greeks()["by_underlying"]["XYZ"]
            for k, lim in LIMITS.items():
                assert abs(after[k]) <= max(lim, abs(before[k])) * (1 + 1e-9), (k, after, lim)
            await asyncio.sleep(0)
            await mm._hedge(mm._u["XYZ"])
            d = mm.greeks()["by_underlying"]["XYZ"]["delta"]
            assert abs(d) <= 10.0 + 1e-9  # hedged back inside its band
        # kill: nothing of ours rests anywhere, and no new orders until resume()
        await mm.kill("test")
        assert our_resting(mm) == []
        sent = mm.stats()["orders_sent"]
        await mm.on_price("XYZ", spot * 1.001)
        _inject(mm, taker, syms[0], Side.BUY, 1)
        await asyncio.sleep(0)
        assert our_resting(mm) == [] and mm.stats()["orders_sent"] == sent
        await mm.resume()
        assert not mm.killed
        if mm.risk()["breakers"]["XYZ"] == "active":  # a market move may have tripped it
            assert len(our_resting(mm)) > 0
        await mm.stop()

    asyncio.run(main())


def test_only_moves_of_at_least_requote_ticks_are_sent():
    async def run(requote_ticks, move):
        mm, clock = await started(make_config(requote_ticks=requote_ticks))
        surf = SurfaceUpdate("XYZ", EXPIRIES, STRIKES, [[0.4] * 5] * 2, 100.0, clock.t, clock.t)
        await mm.on_surface(surf)
        await mm.on_price("XYZ", 100.0)
        before = {(q["symbol"], q["bid"], q["ask"]) for q in mm.quotes()}
        sent = mm.stats()["orders_sent"]
        await mm.on_price("XYZ", 100.0 + move)
        after = {(q["symbol"], q["bid"], q["ask"]) for q in mm.quotes()}
        n = mm.stats()["orders_sent"] - sent
        await mm.stop()
        return before, after, n

    before, after, n = asyncio.run(run(1, 1e-7))  # moves every quote by far less than a tick
    assert n == 0 and before == after
    before, after, n = asyncio.run(run(1, 0.5))  # deltas 0.1-0.9 move quotes by 5-45 ticks
    assert n > 0 and before != after
    before, after, n = asyncio.run(run(100, 0.5))  # below 100 ticks: no price is moved
    assert before == after


def test_bad_input_raises_and_changes_nothing_stale_surface_stops_quoting():
    async def main():
        bus = EventBroadcaster()
        mm, clock = await started(events=bus)
        with pytest.raises(ValueError, match="surface|update"):
            await mm.on_surface("not a surface")
        await mm.on_price("XYZ", 100.0)  # no surface yet
        assert mm.quotes()[0]["status"] == "STALE" and our_resting(mm) == []
        await mm.on_surface(
            SurfaceUpdate("XYZ", EXPIRIES, STRIKES, [[0.4] * 5] * 2, 100.0, clock.t, clock.t)
        )
        assert len(our_resting(mm)) > 0 and mm.quotes()[0]["status"] == "OK"
        snap = (mm.stats()["ticks"], sorted(map(str, our_resting(mm))), bus.last_seq)
        for args, match in (
            (("ABC", 100.0), "underlying"),
            (("XYZ", float("nan")), "price"),
            (("XYZ", 0.0), "price"),
            (("XYZ", -5.0), "price"),
            (("XYZ", True), "price"),
            (("XYZ", 100.0, -1), "ts_ns"),
        ):
            with pytest.raises(ValueError, match=match):
                await mm.on_price(*args)
        assert (mm.stats()["ticks"], sorted(map(str, our_resting(mm))), bus.last_seq) == snap
        with pytest.raises(ValueError, match="update.underlying"):
            await mm.on_surface(SurfaceUpdate("ABC", [0.1], [1.0], [[0.2]], 1.0, 0, 0))
        with pytest.raises(ValueError, match="spread_multiplier"):
            mm.set_controls(spread_multiplier=-1.0)
        with pytest.raises(ValueError, match="disabled_instruments"):
            mm.set_controls(disabled_instruments=["NOPE"])
        assert mm.config.controls.spread_multiplier == 1.0
        # the surface goes stale: status STALE, every quote of the underlying pulled
        clock.advance(6.0)
        await mm.on_price("XYZ", 100.1)
        assert our_resting(mm) == []
        assert {q["status"] for q in mm.quotes()} == {"STALE"}
        assert any(e.type == "alert_triggered" and e.kind == "stale_surface"
                   for e in bus.history())  # fmt: skip
        await mm.stop()

    asyncio.run(main())


def test_operator_controls_disable_and_widen():
    async def main():
        mm, clock = await started()
        await mm.on_surface(
            SurfaceUpdate("XYZ", EXPIRIES, STRIKES, [[0.4] * 5] * 2, 100.0, clock.t, clock.t)
        )
        await mm.on_price("XYZ", 100.0)
        sym = "XYZ-0030D-100-C"
        q0 = mm.quotes(symbol=sym)[0]
        mm.set_controls(disabled_instruments=[sym], spread_multiplier=3.0)
        await mm.on_price("XYZ", 100.0)
        assert mm.quotes(symbol=sym)[0]["bid_size"] == 0.0
        assert mm.quotes(symbol=sym)[0]["status"] == "DISABLED"
        q1 = mm.quotes(symbol="XYZ-0030D-105-C")[0]
        mm.set_controls(disabled_instruments=[], spread_multiplier=1.0)
        await mm.on_price("XYZ", 100.0)
        q2 = mm.quotes(symbol="XYZ-0030D-105-C")[0]
        assert q1["ask"] - q1["bid"] > q2["ask"] - q2["bid"]
        assert mm.quotes(symbol=sym)[0]["bid"] == q0["bid"]
        await mm.stop()

    asyncio.run(main())


def test_a_subscriber_that_never_reads_does_not_stall_quoting():
    async def main():
        bus = EventBroadcaster(queue_size=5)
        sleeper = bus.subscribe()  # never read
        mm, clock = await started(events=bus)
        await mm.on_surface(
            SurfaceUpdate("XYZ", EXPIRIES, STRIKES, [[0.4] * 5] * 2, 100.0, clock.t, clock.t)
        )
        for i in range(20):
            await mm.on_price("XYZ", 100.0 + 0.3 * (i % 3))
        assert mm.stats()["ticks"] == 20 and mm.stats()["orders_sent"] > 20
        with pytest.raises(SubscriberLagged):  # told it lagged once its queue is drained
            for _ in range(10):
                sleeper.get_nowait()
        await mm.stop()

    asyncio.run(main())


def test_breaker_trip_cancels_resting_quotes():
    async def main():
        bus = EventBroadcaster()
        mm, clock = await started(events=bus)
        taker = InProcessConnector(mm.exchange, owner="taker")
        await mm.on_surface(
            SurfaceUpdate("XYZ", EXPIRIES, STRIKES, [[0.4] * 5] * 2, 100.0, clock.t, clock.t)
        )
        await mm.on_price("XYZ", 100.0)
        _inject(mm, taker, "XYZ-0030D-100-C", Side.BUY, 5)  # we sell 5 ATM calls
        assert mm.greeks()["by_underlying"]["XYZ"]["gamma"] < 0
        # tighten the gamma limit below the position: the re-mark breaches, the breaker trips
        cfg = make_config(limits={"XYZ": dict(LIMITS, gamma=0.01)})
        version = await mm.apply_config(cfg, "test")
        assert version == 1
        assert mm.risk()["breakers"]["XYZ"] == "tripped"
        assert our_resting(mm) == []
        types = [e.type for e in bus.history()]
        assert "circuit_breaker" in types and "config_changed" in types
        await mm.stop()

    asyncio.run(main())


def test_interpolate_surface_rules():
    # within one expiry: linear in log-moneyness, flat outside (independent hand values)
    k = np.array([90.0, 100.0, 95.0, 50.0, 200.0])
    v = interpolate_surface([0.5], [90.0, 110.0], [[0.3, 0.2]], 100.0, 100.0, k, np.full(5, 0.5))
    x = (math.log(0.95) - math.log(0.9)) / (math.log(1.1) - math.log(0.9))
    y = (0.0 - math.log(0.9)) / (math.log(1.1) - math.log(0.9))
    np.testing.assert_allclose(v, [0.3, 0.3 + y * -0.1, 0.3 + x * -0.1, 0.3, 0.2], rtol=1e-14)
    # across expiries: total variance linear in T; flat in vol outside the grid
    t = np.array([0.1, 0.2, 0.3, 0.05, 1.0])
    v = interpolate_surface([0.1, 0.3], [100.0], [[0.2], [0.4]], 100.0, 100.0, np.full(5, 100.0), t)
    w_mid = 0.5 * (0.04 * 0.1 + 0.16 * 0.3)
    np.testing.assert_allclose(v, [0.2, math.sqrt(w_mid / 0.2), 0.4, 0.2, 0.4], rtol=1e-14)
