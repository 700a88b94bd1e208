"""Engine loop hardening (issue 8): extreme controls never reach the venue as nonsense and a
config change is atomic; exact tick-multiple prices; time to expiry reported; versioned
controls and the startup config in the store; theo on fills; the traders never spin; the
batched post-trade check equals the one-by-one check; arbitrage signals, hedge suggestions
and the total-limit breaker; PnL attribution against jaxmm.portfolio.pnl_attribution; the
store back-pressure path.

Same small chain as tests/test_engine_loop.py (one compiled shape per test process)."""

import asyncio
import math
from decimal import Decimal

import numpy as np
import pytest
from test_engine_loop import EXPIRIES, STRIKES, _inject, make_config, our_resting, started

from jaxmm.book import Side
from jaxmm.engine import OptionsMarketMaker, SimulatedTraders, simulated_market
from jaxmm.engine._loop import _OUT, NS_PER_YEAR
from jaxmm.events import EventBroadcaster
from jaxmm.execution import InProcessConnector, OrderRequest
from jaxmm.feeds import SurfaceUpdate
from jaxmm.portfolio import PositionArrays, pnl_attribution
from jaxmm.pricing import bsm_price
from jaxmm.risk import BreakerState
from jaxmm.store import Store

FLAT = [[0.4] * 5] * 2


def surf(clock, vols=FLAT, fwd=100.0):
    return SurfaceUpdate("XYZ", EXPIRIES, STRIKES, vols, fwd, clock.t, clock.t)


async def quoting(config=None, **kw):
    mm, clock = await started(config, **kw)
    await mm.on_surface(surf(clock))
    await mm.on_price("XYZ", 100.0)
    return mm, clock


async def open_store(tmp_path, name="mm.db"):
    return await Store.open(f"sqlite+aiosqlite:///{tmp_path / name}", migrate=True)


# ------------------------------------------------------------------------- 1. extreme controls
def test_controls_are_bounded_with_a_message_naming_the_bound():
    mm = OptionsMarketMaker(make_config())
    for field, value, bound in (
        ("spread_multiplier", 1e308, "1000"),
        ("size_scalar", 1e308, "1000"),
        ("directional_skew", 1e308, "1000000"),
        ("directional_skew", -1e308, "-1000000"),
    ):
        with pytest.raises(ValueError, match=rf"{field}[\s\S]*{bound}"):
            mm.set_controls(**{field: value})
    assert mm.config == make_config() and mm.config_version == 0


def test_non_finite_or_out_of_range_quotes_are_not_quoted_with_a_status():
    async def main():
        mm, clock = await quoting()
        st = mm._u["XYZ"]
        out = st.out.copy()
        out[0, _OUT["ask"]] = np.inf  # spread x 1e308
        out[2, _OUT["bid"]] = np.nan
        out[4, _OUT["ask"]] = 1e300  # 1e302 ticks: beyond int64
        out[6, _OUT["bid_size"]] = 1e300  # size beyond int64
        out[8, _OUT["ask_size"]] = np.inf
        targets, reasons = mm._targets(st, out, False)  # warnings are errors in this suite
        expect = {0: "PRICE_NOT_FINITE", 2: "PRICE_NOT_FINITE", 4: "PRICE_OUT_OF_RANGE",
                  6: "SIZE_OUT_OF_RANGE", 8: "SIZE_OUT_OF_RANGE"}  # fmt: skip
        for i, sym in enumerate(st.symbols):
            assert reasons[i] == expect.get(i, "")
            if i in expect:
                assert targets[sym] == (None, None)
        assert targets[st.symbols[1]] != (None, None)
        await mm.stop()

    asyncio.run(main())


def test_apply_config_with_extreme_valid_values_quotes_nothing_nonsensical_and_stores(tmp_path):
    async def main():
        store = await open_store(tmp_path)
        mm, clock = await quoting(make_config(limits={}), store=store)
        assert mm.config_version == 1
        # a valid config whose sizes overflow int64 lots (base size 1e300, no limits): before
        # the fix, a RuntimeWarning (an error here) inside apply_config after the swap
        extreme = make_config(limits={}, quote={"fill_k": 8.0, "base_size": 1e300})
        v = await mm.apply_config(extreme, "ops")
        assert v == 2 and mm.config == extreme and mm.config_version == 2
        statuses = {q["status"] for q in mm.quotes()}
        assert "SIZE_OUT_OF_RANGE" in statuses
        for q in mm.quotes():
            if q["status"] == "SIZE_OUT_OF_RANGE":
                assert q["bid_size"] == 0 and q["ask_size"] == 0
        latest = await store.get_config()
        assert (latest.version, latest.author) == (2, "ops")
        await mm.stop()
        await store.close()

    asyncio.run(main())


def test_apply_config_failure_leaves_old_config_and_store_untouched(tmp_path, monkeypatch):
    async def main():
        store = await open_store(tmp_path)
        bus = EventBroadcaster()
        mm, clock = await quoting(store=store, events=bus)
        before = (mm.config, mm.config_version, sorted(map(str, our_resting(mm))), mm.quotes())
        n_versions = len(await store.config_history())
        import jaxmm.engine._loop as loop

        def boom(*a, **k):
            raise RuntimeError("kernel failure")

        monkeypatch.setattr(loop, "remark_and_quote", boom)
        with pytest.raises(RuntimeError, match="kernel failure"):
            await mm.apply_config(make_config(requote_ticks=3), "ops")
        monkeypatch.undo()
        assert (mm.config, mm.config_version, sorted(map(str, our_resting(mm))), mm.quotes()) == (
            before
        )
        assert mm.qm.price_tolerance == 0
        assert len(await store.config_history()) == n_versions
        assert not any(e.type == "config_changed" for e in bus.history())

        # a store failure: nothing swapped either
        async def down(*a, **k):
            raise OSError("store down")

        monkeypatch.setattr(store, "put_config", down)
        with pytest.raises(OSError):
            await mm.apply_config(make_config(requote_ticks=3), "ops")
        monkeypatch.undo()
        assert mm.config == before[0] and mm.qm.price_tolerance == 0
        await mm.stop()
        await store.close()

    asyncio.run(main())


# ------------------------------------------------------------------ 2, 3. prices and expiry
def test_prices_are_exact_tick_multiples_and_time_to_expiry_reproduces_theo():
    async def main():
        bus = EventBroadcaster(history_size=100_000)
        mm, clock = await started(events=bus)
        await mm.on_surface(surf(clock, [[0.45, 0.42, 0.4, 0.39, 0.39], [0.4] * 5]))
        clock.advance(86_400.0 * 3)  # three days of the engine clock: T shortens
        await mm.on_surface(surf(clock, [[0.45, 0.42, 0.4, 0.39, 0.39], [0.4] * 5]))
        for p in (100.0, 100.37, 99.81):
            await mm.on_price("XYZ", p)
        owner = mm.connector.owner
        rows = {q["symbol"]: q for q in mm.quotes()}
        n = 0
        for sym, q in rows.items():
            inst = mm.exchange.book(sym).instrument
            for o in mm.exchange.book(sym).orders(owner=owner):
                key = "bid" if o.side is Side.BUY else "ask"
                exact = inst.ticks_to_price(o.price)  # Decimal: the exact tick multiple
                assert Decimal(repr(q[key])) == exact, (q[key], exact)
                n += 1
        assert n > 10
        for e in bus.history():
            if e.type == "quote_updated" and e.bid is not None:
                assert Decimal(repr(e.bid)) % Decimal("0.01") == 0
        elapsed = 3.0 / 365.0
        spot = 99.81
        for q in rows.values():
            assert math.isclose(q["time_to_expiry"], q["expiry"] - elapsed, rel_tol=1e-12)
            if q["status"] != "OK":
                continue
            ref = float(bsm_price(spot, q["strike"], q["time_to_expiry"], 0.0, 0.0, q["iv"],
                                  q["is_call"]))  # fmt: skip
            assert math.isclose(q["theo"], ref, rel_tol=1e-10, abs_tol=1e-12), (q, ref)
        row = mm.chain_view("XYZ", EXPIRIES[0])[0]
        assert row["expiry"] == EXPIRIES[0]
        assert math.isclose(row["time_to_expiry"], EXPIRIES[0] - elapsed, rel_tol=1e-12)
        await mm.stop()

    asyncio.run(main())


# -------------------------------------------------------------- 4, 5. versions and the store
def test_startup_config_and_controls_are_stored_versions(tmp_path):
    async def main():
        store = await open_store(tmp_path)
        bus = EventBroadcaster()
        mm, clock = await started(store=store, events=bus)
        first = await store.get_config()
        assert (first.version, first.author) == (1, "startup")
        assert first.config == mm.config.model_dump(mode="json") and mm.config_version == 1
        mm.set_controls(spread_multiplier=2.0)  # sync: stored by a task scheduled now
        for _ in range(50):
            await asyncio.sleep(0.01)
            if mm.config_version == 2:
                break
        latest = await store.get_config()
        assert (latest.version, latest.author) == (2, "operator") and mm.config_version == 2
        assert latest.config == mm.config.model_dump(mode="json")
        ev = [e for e in bus.history() if e.type == "config_changed"]
        assert [e.version for e in ev] == [2]
        v = await mm.update_controls("alice", size_scalar=0.5)
        assert v == 3 and (await store.get_config()).author == "alice"
        v = await mm.set_instrument_enabled("XYZ-0030D-100-C", False, "bob")
        assert v == 4 and mm.config.controls.disabled_instruments == ["XYZ-0030D-100-C"]
        with pytest.raises(ValueError, match="symbol"):
            await mm.set_instrument_enabled("XYZ", False)
        assert mm.config_version == (await store.get_config()).version == 4
        await mm.stop()
        # the same config again: no new version; a different one passed: stored as newest
        mm2 = OptionsMarketMaker(mm.config, store=store)
        await mm2.start()
        assert mm2.config_version == 4
        await mm2.stop()
        mm3 = OptionsMarketMaker(make_config(), store=store)
        await mm3.start()
        latest = await store.get_config()
        assert mm3.config_version == latest.version == 5 and latest.author == "startup"
        assert latest.config == make_config().model_dump(mode="json")
        await mm3.stop()
        await store.close()

    asyncio.run(main())


def test_set_controls_without_store_counts_versions():
    async def main():
        mm, clock = await started()
        assert mm.config_version == 0
        mm.set_controls(spread_multiplier=1.5)
        v = await mm.update_controls("ops", spread_multiplier=1.0)
        assert mm.config_version == v == 2
        await mm.stop()

    asyncio.run(main())


# ------------------------------------------------------------------------ 6. theo at fill
def test_order_filled_carries_theo():
    async def main():
        bus = EventBroadcaster()
        mm, clock = await quoting(events=bus)
        taker = InProcessConnector(mm.exchange, owner="taker")
        sym = "XYZ-0030D-100-C"
        theo = mm.quotes(symbol=sym)[0]["theo"]
        _inject(mm, taker, sym, Side.BUY, 2)
        fills = [e for e in bus.history() if e.type == "order_filled" and e.instrument == sym]
        assert fills and all(e.theo == theo for e in fills)
        assert all(e.price > e.theo for e in fills)  # we sold above theo
        assert all(e.side == "sell" and e.edge == e.price - e.theo > 0 for e in fills)
        await mm.stop()

    asyncio.run(main())


def test_a_partial_fill_publishes_the_quote_with_its_remaining_size():
    # WebSocket clients rebuild the quote table from QuoteUpdated events: a fill that leaves
    # the quote resting with a smaller open size must be published at once, not at the next tick
    async def main():
        bus = EventBroadcaster()
        mm, clock = await quoting(events=bus)
        taker = InProcessConnector(mm.exchange, owner="taker")
        sym = "XYZ-0030D-100-C"
        (q,) = mm.quotes(symbol=sym)
        assert q["ask_size"] >= 2
        before = bus.last_seq
        _inject(mm, taker, sym, Side.BUY, 1)  # lifts one lot of our ask
        ups = [e for e in bus.history(before + 1) if e.type == "quote_updated"]
        mine = [e for e in ups if e.instrument == sym]
        assert mine, [e.instrument for e in ups]
        assert mine[-1].ask_size == q["ask_size"] - 1
        assert mine[-1].ask_size == mm.quotes(symbol=sym)[0]["ask_size"]
        await mm.stop()

    asyncio.run(main())


# ------------------------------------------------------------------ 7. the traders' follower
def test_follow_waits_instead_of_spinning():
    class Counting:
        def __init__(self, market):
            self._m = market
            self.reads = 0

        def __getattr__(self, name):
            return getattr(self._m, name)

        @property
        def n(self):
            self.reads += 1
            return self._m.n

    async def main():
        mm, clock = await started()
        market = Counting(simulated_market(mm.config, dt=1e-7, seed=1))
        tr = SimulatedTraders(mm.exchange, market._m, None, seed=2, config=mm.config)
        tr.market = market
        stop = asyncio.Event()
        task = asyncio.create_task(tr.follow(stop, wake=mm.tick_event, poll=0.02))
        await asyncio.sleep(0.2)  # the market never steps: ~10 polls, not a busy loop
        assert market.reads < 50, market.reads
        market._m.step()
        mm.tick_event.set()
        await asyncio.sleep(0.01)
        assert tr.n_steps == 1
        stop.set()
        mm.tick_event.set()
        await task
        await mm.stop()
        with pytest.raises(ValueError, match="poll"):
            await tr.follow(stop, poll=0.0)

    asyncio.run(main())


# ------------------------------------------------------- 8. batched check == one-by-one check
def test_batched_post_trade_check_equals_one_by_one_on_random_cases():
    async def main():
        limits = {"XYZ": {"delta": 40.0, "gamma": 2.0, "vega": 900.0, "theta": 3000.0,
                          "max_position": 12.0},
                  "total": {"delta": 3000.0, "vega": 800.0}}  # fmt: skip
        mm, clock = await quoting(make_config(limits=limits))
        st = mm._u["XYZ"]
        taker = InProcessConnector(mm.exchange, owner="taker")
        rng = np.random.default_rng(7)
        compared = scaled = 0
        for round_ in range(12):
            sym = st.symbols[int(rng.integers(0, st.n))]
            _inject(mm, taker, sym, Side.BUY if rng.random() < 0.5 else Side.SELL, 3)
            await mm.on_price("XYZ", 100.0 * (1 + 0.01 * rng.standard_normal()))
            if round_ % 3 == 1:  # the breaker's cooldown scaling on the same path
                st.grm.breaker.state = BreakerState.COOLDOWN
            syms = [st.symbols[i] for i in rng.integers(0, st.n, 300)]
            sides = rng.choice([1, -1], 300).tolist()
            lots = rng.integers(1, 40, 300).tolist()
            got = mm._check_batch(st, syms, sides, lots)
            ref = [mm._check(st, s, Side.BUY if sd > 0 else Side.SELL, lt)
                   for s, sd, lt in zip(syms, sides, lots, strict=True)]  # fmt: skip
            assert got == ref
            compared += len(ref)
            scaled += sum(g < lt for g, lt in zip(got, lots, strict=True))
            st.grm.breaker.state = BreakerState.ACTIVE
        assert compared == 3600 and scaled > 100  # the limits bind on many of them
        await mm.stop()

    asyncio.run(main())


# -------------------------------------------- 9. arbitrage, hedge suggestion, total breaker
def test_arbitrage_signals_are_published_and_deduplicated():
    async def main():
        bus = EventBroadcaster()
        legs = ["XYZ-0030D-100-C", "XYZ-0090D-100-C"]
        cfg = make_config(arb_signal_interval_s=10.0)
        cfg = cfg.model_copy(update={"controls": cfg.controls.model_copy(
            update={"disabled_instruments": legs})})  # fmt: skip
        mm, clock = await quoting(cfg, events=bus)
        other = InProcessConnector(mm.exchange, owner="other")
        # a calendar violation on the books (we do not quote these two): someone bids 30.00
        # for the near 100 call and offers the far 100 call at 1.00 (r = q = 0, so the far
        # call is worth at least the near one, model-free: edge = 30 - 1)
        other.submit_now(OrderRequest("XYZ-0030D-100-C", Side.BUY, 5, 3000))
        other.submit_now(OrderRequest("XYZ-0090D-100-C", Side.SELL, 5, 100))
        await mm.on_surface(surf(clock))
        sig = [e for e in bus.history() if e.type == "arbitrage_signal"]
        cal = [e for e in sig if e.legs == ["XYZ-0030D-100-C", "XYZ-0090D-100-C"]]
        assert len(cal) == 1 and cal[0].kind == "calendar"
        assert math.isclose(cal[0].edge, 30.0 - 1.0, rel_tol=1e-12)  # bid near - ask far
        await mm.on_surface(surf(clock))  # same structure within the interval: not again
        assert len([e for e in bus.history() if e.type == "arbitrage_signal"]) == len(sig)
        clock.advance(11.0)
        await mm.on_surface(surf(clock))
        again = [e for e in bus.history() if e.type == "arbitrage_signal"
                 and e.legs == ["XYZ-0030D-100-C", "XYZ-0090D-100-C"]]  # fmt: skip
        assert len(again) == 2
        await mm.stop()

    asyncio.run(main())


def test_risk_has_hedge_suggestion_total_utilisation_and_total_breaker():
    async def main():
        bus = EventBroadcaster()
        cfg = make_config(hedge_suggest_threshold=0.1, limits={"XYZ": dict(
            delta=1e6, gamma=3.0, vega=1e6, theta=1e6), "total": {"delta": 1e9}})  # fmt: skip
        mm, clock = await quoting(cfg, events=bus)
        taker = InProcessConnector(mm.exchange, owner="taker")
        _inject(mm, taker, "XYZ-0030D-100-C", Side.BUY, 5)  # we sell ATM calls: short gamma
        r = mm.risk()
        g = mm.greeks()["by_underlying"]["XYZ"]
        assert r["utilisation"]["XYZ"]["gamma"] > 0.1
        s = r["hedge_suggestions"]["XYZ"]
        # the suggestion neutralises gamma and vega up to half a lot of each leg (its doc)
        assert abs(s["residual_gamma"]) < abs(g["gamma"]) and s["cost"] >= 0
        assert len(s["pair"]) == 2 and {o["side"] for o in s["orders"]} <= {"buy", "sell"}
        # total utilisation in the common currency: dollar delta = delta x S
        assert math.isclose(r["total_greeks"]["dollar_delta"], g["delta"] * 100.0,
                            rel_tol=1e-12)  # fmt: skip
        assert math.isclose(r["utilisation"]["total"]["delta"],
                            abs(g["delta"]) * 100.0 / 1e9, rel_tol=1e-12)  # fmt: skip
        assert r["total_breaker"] == "active" and len(our_resting(mm)) > 0
        # a total limit below the position's dollar delta: the total breaker trips quoting
        tight = make_config(limits={"XYZ": cfg.limits["XYZ"],
                                    "total": {"delta": abs(g["delta"]) * 100.0 / 2}})  # fmt: skip
        await mm.apply_config(tight, "ops")
        assert mm.risk()["total_breaker"] == "tripped" and our_resting(mm) == []
        assert {q["status"] for q in mm.quotes()} == {"HALTED"}
        assert any(e.type == "circuit_breaker" and e.breaker == "greeks:total"
                   for e in bus.history())  # fmt: skip
        await mm.stop()

    asyncio.run(main())


# ------------------------------------------------------------------ 10. PnL attribution
def test_pnl_attribution_equals_portfolio_pnl_attribution_across_remarks():
    async def main():
        cfg = make_config(limits={}, underlyings=[make_config().underlyings[0].model_copy(
            update={"hedge_band": 1e9})])  # fmt: skip
        mm, clock = await quoting(cfg)
        st = mm._u["XYZ"]
        taker = InProcessConnector(mm.exchange, owner="taker")
        _inject(mm, taker, "XYZ-0030D-100-C", Side.BUY, 3)
        _inject(mm, taker, "XYZ-0090D-95-P", Side.SELL, 2)
        _inject(mm, taker, "XYZ-0030D-110-C", Side.SELL, 4)
        held = np.flatnonzero(st.pos != 0)
        assert len(held) == 3 and st.under_qty == 0

        def attr():
            return dict(mm._attr["XYZ"])

        steps = [  # (seconds, new price, new vols): spot, vol and time all move
            (3600.0, 101.3, [[0.42, 0.41, 0.41, 0.4, 0.38], [0.41] * 5]),
            (7200.0, 98.7, [[0.47, 0.43, 0.42, 0.41, 0.4], [0.43] * 5]),
        ]
        for secs, price, vols in steps:
            s0, v0, t0 = st.price, st.vols[held].copy(), st.expiry[held].copy()
            a0 = attr()
            pa = PositionArrays(st.strike[held], t0, st.is_call[held], np.ones(3, bool),
                                st.pos[held] * st.mult, np.zeros(3, np.int64),
                                np.zeros(3, np.int64), ("XYZ",), (0.0,))  # fmt: skip
            clock.advance(secs)
            st.surface = surf(clock, vols)  # one re-mark with the new surface and price
            st.surface_recv_ns = clock.t
            await mm.on_price("XYZ", price)
            ref = pnl_attribution(pa, np.array([s0]), v0, np.array([price]), st.vols[held],
                                  0.0, np.array([0.0]), secs / (NS_PER_YEAR / 1e9))  # fmt: skip
            a1 = attr()
            for k in ("delta", "gamma", "vega", "theta", "actual"):
                want = float(np.sum(getattr(ref, k)))
                assert math.isclose(a1[k] - a0[k], want, rel_tol=1e-9, abs_tol=1e-9), (k,)
        await mm.stop()

    asyncio.run(main())


# ------------------------------------------------------------ 10. store back-pressure
def test_store_backpressure_halts_quoting_alerts_drops_nothing_and_resumes(tmp_path):
    async def main():
        store = await open_store(tmp_path)
        bus = EventBroadcaster(history_size=100_000)
        mm, clock = await quoting(store=store, events=bus, writer_queue=1)
        taker = InProcessConnector(mm.exchange, owner="taker")
        syms = ["XYZ-0030D-100-C", "XYZ-0030D-95-P", "XYZ-0090D-105-C", "XYZ-0090D-100-P"]
        for s in syms:  # fills before the writer task can run: its queue holds one, the
            # second one halts quoting (so later takers find nothing of ours)
            _inject(mm, taker, s, Side.BUY, 1)
        assert mm.risk()["store_halted"] and our_resting(mm) == []
        alerts = [e for e in bus.history() if e.type == "alert_triggered"
                  and e.kind == "store_backpressure"]  # fmt: skip
        assert alerts and alerts[0].severity == "critical"
        await mm.on_price("XYZ", 100.0)  # halted: nothing is quoted while the store lags
        assert our_resting(mm) == []
        for _ in range(200):
            await asyncio.sleep(0.01)
            if not mm.risk()["store_halted"]:
                break
        assert not mm.risk()["store_halted"]
        await mm.on_price("XYZ", 100.0)
        assert len(our_resting(mm)) > 0  # quoting resumed
        assert any(e.type == "alert_triggered" and e.kind == "store_backpressure"
                   and e.severity == "info" for e in bus.history())  # fmt: skip
        fills = mm.stats()["fills"]
        await mm.stop()
        hedges = mm.stats()["hedge_fills"]
        assert fills >= 2 and await store.count_fills() == fills + hedges  # none dropped
        await store.close()

    asyncio.run(main())
