"""``run_simulation``'s ``on_ready`` / ``on_step`` hooks (docs/engine.md, jaxmm/engine/_run.py).

- ``on_step`` (``clock="simulated"``) is called once per market step, steps 0 .. n - 1, with
  the RUNNING engine and the run's traders, at the end of the step: the engine has priced the
  step (``stats()["ticks"]`` = one price per underlying per step so far), the traders have
  stepped, the market has not moved on; a coroutine hook is awaited.
- ``on_ready`` is called once, after ``start()`` and before the first market step (both
  clocks).
- Read-only hooks leave the run unchanged: the same seed with and without hooks gives the same
  fills, positions and PnL.
- Bad hooks: ``ValueError`` naming the field before anything runs; an exception raised in a
  hook propagates and the engine is stopped (its quotes pulled).
"""

from __future__ import annotations

import asyncio

import pytest

from jaxmm.engine import MarketMakerConfig, UnderlyingConfig, run_simulation

# one simulated minute per step, 20 steps; takers active enough that the run trades
N_STEPS = 20
KW = dict(seconds=1200.0, seed=5, clock="simulated", steps_per_second=1 / 60, start_ns=0,
          taker_intensity=0.05, surface_every=3)  # fmt: skip


def _config(n_underlyings: int = 2) -> MarketMakerConfig:
    us = [
        UnderlyingConfig(symbol="AAA", spot=100.0, strikes=[90.0, 100.0, 110.0],
                         expiries=[30 / 365], hedge_band=5.0, vol=0.4),
        UnderlyingConfig(symbol="BBB", spot=50.0, strikes=[45.0, 50.0, 55.0],
                         expiries=[60 / 365], hedge_band=5.0, vol=0.3),
    ][:n_underlyings]  # fmt: skip
    # stale_surface_s in SIMULATED seconds: 10 steps, so the surface (every 3 steps) stays fresh
    return MarketMakerConfig(underlyings=us, quote={"fill_k": 5.0}, stale_surface_s=600.0)


def _outcome(mm) -> tuple:
    st = mm.stats()
    keys = ("ticks", "surfaces", "requotes", "fills", "hedges", "hedge_fills", "rejects")
    return (
        {k: st[k] for k in keys},
        sorted((p["symbol"], p["quantity"], p["realised"]) for p in mm.positions()),
        mm.pnl()["total"],
        (mm.traders.taker_orders, mm.traders.passive_orders),
    )


def test_on_step_once_per_step_with_the_running_engine():
    cfg = _config()
    seen: list[dict] = []

    def on_step(step, mm, tr):
        seen.append({
            "step": step,
            "ticks": mm.stats()["ticks"],
            "market_n": tr.market.n,
            "trader_steps": tr.n_steps,
            "same_traders": mm.traders is tr,
            "quoted": sum(q["bid_size"] + q["ask_size"] for q in mm.quotes()),
            "fills": mm.stats()["fills"],
        })  # fmt: skip

    mm = asyncio.run(run_simulation(cfg, on_step=on_step, **KW))
    assert [s["step"] for s in seen] == list(range(N_STEPS))
    # two underlyings: two prices per market step, so after step k the engine saw 2 (k + 1)
    assert [s["ticks"] for s in seen] == [2.0 * (k + 1) for k in range(N_STEPS)]
    # the hook runs after the traders' step, before the next market step
    assert [s["market_n"] for s in seen] == list(range(1, N_STEPS + 1))
    assert [s["trader_steps"] for s in seen] == list(range(1, N_STEPS + 1))
    assert all(s["same_traders"] for s in seen)
    # the engine is live inside the hook (quotes rest in the books) ...
    assert all(s["quoted"] > 0 for s in seen)
    # ... and the last call sees the run's final fills (stop() trades nothing)
    assert seen[-1]["fills"] == mm.stats()["fills"] > 0
    fills = [s["fills"] for s in seen]
    assert fills == sorted(fills)
    # after the run the engine is stopped: its quotes are pulled
    assert sum(q["bid_size"] + q["ask_size"] for q in mm.quotes()) == 0


def test_on_ready_once_before_the_first_step_both_clocks():
    for clock, kw in (("simulated", KW), ("wall", dict(seconds=0.3, seed=2, clock="wall"))):
        calls: list[tuple] = []
        order: list[str] = []

        def on_ready(mm, calls=calls, order=order):
            calls.append((mm.stats()["ticks"], mm.traders.market.n, mm.traders.n_steps))
            order.append("ready")

        def on_step(step, mm, tr, order=order):
            order.append("step")

        hooks = dict(on_ready=on_ready, on_step=on_step if clock == "simulated" else None)
        mm = asyncio.run(run_simulation(_config(1), **{**kw, **hooks}))
        assert calls == [(0.0, 0, 0)], clock
        assert mm.stats()["ticks"] > 0, clock
        if clock == "simulated":
            assert order == ["ready"] + ["step"] * N_STEPS


def test_coroutine_hooks_are_awaited():
    done: list[str] = []

    async def on_ready(mm):
        await asyncio.sleep(0)
        done.append("ready")

    async def on_step(step, mm, tr):
        await asyncio.sleep(0)
        done.append(f"step{step}")

    asyncio.run(run_simulation(_config(1), on_ready=on_ready, on_step=on_step, **KW))
    assert done == ["ready"] + [f"step{k}" for k in range(N_STEPS)]


def test_same_seed_with_and_without_hooks_gives_identical_fills():
    cfg = _config()
    plain = asyncio.run(run_simulation(cfg, **KW))

    def on_ready(mm):
        mm.risk(), mm.greeks(), mm.pnl(), mm.quotes(), mm.positions()

    async def on_step(step, mm, tr):
        mm.risk(), mm.greeks(), mm.pnl(), mm.quotes(), mm.positions(), tr.fair_values()
        await asyncio.sleep(0)

    hooked = asyncio.run(run_simulation(cfg, on_ready=on_ready, on_step=on_step, **KW))
    a, b = _outcome(plain), _outcome(hooked)
    assert a[0]["fills"] > 0
    assert a == b


def test_bad_hooks_are_rejected_before_running():
    cfg = _config(1)
    bad = [
        (dict(KW, on_step=3), "on_step"),
        (dict(KW, on_ready="x"), "on_ready"),
        # on the wall clock a market step has no end: on_step is refused
        (dict(seconds=0.3, seed=0, clock="wall", on_step=lambda *a: None), "on_step"),
    ]
    for kw, name in bad:
        ready: list[int] = []
        if "on_ready" not in kw:
            kw = dict(kw, on_ready=lambda mm, ready=ready: ready.append(1))
        with pytest.raises(ValueError, match=name):
            asyncio.run(run_simulation(cfg, **kw))
        assert ready == []  # nothing started


def test_exception_in_on_step_propagates_and_stops_the_engine():
    engines: list = []

    def on_step(step, mm, tr):
        if step == 3:
            engines.append(mm)
            raise RuntimeError("hook failed at step 3")

    with pytest.raises(RuntimeError, match="step 3"):
        asyncio.run(run_simulation(_config(1), on_step=on_step, **KW))
    (mm,) = engines
    assert mm.stats()["ticks"] == 4.0  # steps 0..3 priced, no further step
    assert sum(q["bid_size"] + q["ask_size"] for q in mm.quotes()) == 0  # quotes pulled
    with pytest.raises(RuntimeError, match="stopped"):
        asyncio.run(mm.start())
