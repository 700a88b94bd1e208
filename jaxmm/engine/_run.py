"""``run_simulation``: the market maker on the simulated market, for a bounded time.

Engine (:class:`OptionsMarketMaker`) + :class:`jaxmm.feeds.SimulatedFeed` (GBM underlyings and
moving smiles from the config's ``spot``, ``vol`` and ``skew``; a TRUE-smile surface on the
chain's own grid every ``surface_every`` steps) + :class:`SimulatedTraders` (one step of other
traders per market step). Time: ``steps_per_second`` market steps per SIMULATED second, run
as fast as the machine allows.

Two clocks (``clock=``):

- ``"wall"`` (default): the engine's clock is the wall clock; feed, engine and traders run as
  concurrent tasks (the feed's streams in lock step, the traders woken after each requote).
  Fast and close to a live deployment, but not reproducible: a hedge waits for its fills
  with wall-clock timeouts and the traders' step may interleave with the engine's refresh.
- ``"simulated"``: the engine's clock (books, surface staleness, breaker, expiry ageing) is
  the market's time ``start_ns + round(n dt NS_PER_YEAR)``, nothing sleeps, and every market
  step runs in one fixed sequence: market step -> surface updates (on steps ``1,
  1 + surface_every, ...``) -> one price per underlying (each refresh followed by its hedge)
  -> :meth:`OptionsMarketMaker.settle` (every spawned hedge done) -> one step of the traders
  -> ``settle`` again. A run is then a deterministic function of (config, seed, parameters):
  the same seed gives the same fills and PnL. ``steps_per_second`` may be below 1 (e.g.
  ``1 / 60``: one step per simulated minute, a compressed trading day).

Hooks (to sample the engine's views while it runs, instead of re-wiring the loop):
``on_ready(mm)`` is called once, after :meth:`OptionsMarketMaker.start` and before the first
market step (both clocks); ``on_step(step, mm, traders)`` (``clock="simulated"`` only) is
called once per market step ``step = 0 .. n_steps - 1``, at the very end of that step's
sequence (after the second ``settle``, before the next market step), so the engine holds that
step's refresh, hedges and the traders' fills, and ``traders.market`` is still at that step's
market state. A hook may return an awaitable (awaited before the run goes on) or ``None``;
an exception in a hook stops the run (the engine is stopped, the exception propagates). A hook
that only reads leaves the run unchanged (same seed: same fills).
"""

from __future__ import annotations

import asyncio
import inspect
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ._config import MarketMakerConfig
from ._loop import OptionsMarketMaker
from ._traders import SimulatedTraders

__all__ = ["run_simulation", "simulated_market"]

_SECONDS_PER_YEAR = 365 * 86_400
_NS_PER_YEAR = _SECONDS_PER_YEAR * 1_000_000_000

OnReady = Callable[[OptionsMarketMaker], Awaitable[None] | None]
OnStep = Callable[[int, OptionsMarketMaker, SimulatedTraders], Awaitable[None] | None]


async def _call(hook: Callable[..., Any], *args: Any) -> None:
    """Call a hook; await what it returns if that is awaitable."""
    r = hook(*args)
    if inspect.isawaitable(r):
        await r


def simulated_market(config: MarketMakerConfig, *, dt: float, seed: int) -> Any:
    """The :class:`jaxmm.feeds.SimulatedMarket` of a config: a GBM per underlying (``spot``,
    ``vol``) and a smile ``vol + skew ln(K / F)`` whose level and skew move (OU, level vol
    ``vol``, skew vol ``0.5``).

    Example:
        >>> m = simulated_market(MarketMakerConfig.demo(), dt=1e-7, seed=3)
        >>> sorted(m.models)
        ['BTC', 'SPX']
    """
    from ..feeds import SimulatedMarket, SmileModel, UnderlyingModel

    models = {u.symbol: UnderlyingModel(u.spot, u.vol) for u in config.underlyings}
    smiles = {
        u.symbol: SmileModel(u.vol, u.skew, level_vol=u.vol, skew_vol=0.5, vol_floor=0.02)
        for u in config.underlyings
    }
    return SimulatedMarket(models, dt=dt, seed=seed, smiles=smiles)


async def run_simulation(
    config: MarketMakerConfig,
    *,
    seconds: float,
    seed: int,
    store: Any = None,
    events: Any = None,
    steps_per_second: float = 10,
    surface_every: int = 5,
    taker_intensity: float = 0.2,
    taker_k: float | None = None,
    traders: dict | None = None,
    clock: str = "wall",
    on_fill_ack: Callable[[Any], None] | None = None,
    start_ns: int | None = None,
    on_ready: OnReady | None = None,
    on_step: OnStep | None = None,
) -> OptionsMarketMaker:
    """Run engine + simulated feed + simulated traders for ``seconds`` SIMULATED seconds.

    Args:
        config: the market maker's configuration.
        seconds: simulated seconds (> 0); ``round(seconds x steps_per_second)`` market steps.
        seed: seeds the market (``seed``) and the traders (``seed + 1``).
        store, events: passed to :class:`OptionsMarketMaker`.
        steps_per_second: market steps per simulated second: an int >= 1 with
            ``clock="wall"``, any finite number > 0 with ``clock="simulated"``.
        surface_every: market steps between surface updates (>= 1).
        taker_intensity: taker arrivals per second per side per option book at zero distance
            from fair (converted to per year for :class:`jaxmm.feeds.TakerFlow`).
        taker_k: decay of the taker intensity per unit of option price (default: each
            underlying's own ``fill_k`` quote parameter).
        traders: extra keyword arguments of :class:`SimulatedTraders`.
        clock: ``"wall"`` or ``"simulated"`` (module docstring: only ``"simulated"`` is
            reproducible).
        on_fill_ack: passed to :class:`OptionsMarketMaker` (the store's acknowledgements).
        start_ns: with ``clock="simulated"``, the engine clock at market time 0 (ns since the
            epoch, >= 0; default: the wall clock when the run starts). Only differences of
            the clock enter the engine's decisions.
        on_ready: ``on_ready(mm)``, called once after ``mm.start()``, before the first market
            step (module docstring); ``mm.traders`` is already set.
        on_step: ``on_step(step, mm, traders)``, ``clock="simulated"`` only: called once per
            market step (``step`` = 0 .. n_steps - 1) after that step's refresh, hedges,
            traders' step and final ``settle`` (module docstring). Either hook may be a
            coroutine function.

    Returns:
        The stopped engine (its views — ``stats()``, ``positions()``, ``pnl()`` — hold the
        run's results; ``mm.traders``: the :class:`SimulatedTraders` of the run).

    Example:
        >>> import asyncio
        >>> from jaxmm.engine import UnderlyingConfig
        >>> cfg = MarketMakerConfig(underlyings=[UnderlyingConfig(symbol="XYZ", spot=100.0,
        ...     strikes=[95.0, 100.0, 105.0], expiries=[30 / 365], hedge_band=5.0, vol=0.5)],
        ...     quote={"fill_k": 5.0})
        >>> mm = asyncio.run(run_simulation(cfg, seconds=1.0, seed=0))
        >>> mm.stats()["ticks"]
        10.0
        >>> a = asyncio.run(run_simulation(cfg, seconds=60.0, seed=1, clock="simulated",
        ...                                steps_per_second=0.5, taker_intensity=2.0))
        >>> b = asyncio.run(run_simulation(cfg, seconds=60.0, seed=1, clock="simulated",
        ...                                steps_per_second=0.5, taker_intensity=2.0))
        >>> a.stats()["ticks"], a.positions() == b.positions()
        (30.0, True)
        >>> ticks = []
        >>> c = asyncio.run(run_simulation(cfg, seconds=60.0, seed=1, clock="simulated",
        ...     steps_per_second=0.5, taker_intensity=2.0,
        ...     on_step=lambda step, mm, tr: ticks.append(mm.stats()["ticks"])))
        >>> len(ticks), ticks[:3], c.positions() == a.positions()
        (30, [1.0, 2.0, 3.0], True)
    """
    from ..feeds import SimulatedFeed, TakerFlow

    if not isinstance(config, MarketMakerConfig):
        raise ValueError(f"config: expected a MarketMakerConfig, got {type(config).__name__}")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"seconds: must be finite and > 0, got {seconds!r}")
    if clock not in ("wall", "simulated"):
        raise ValueError(f"clock: must be 'wall' or 'simulated', got {clock!r}")
    if clock == "wall":
        if type(steps_per_second) is not int or steps_per_second < 1:
            raise ValueError(f"steps_per_second: must be an int >= 1, got {steps_per_second!r}")
    elif (
        isinstance(steps_per_second, bool)
        or not isinstance(steps_per_second, int | float)
        or not (math.isfinite(steps_per_second) and steps_per_second > 0)
    ):
        raise ValueError(f"steps_per_second: must be finite and > 0, got {steps_per_second!r}")
    if type(surface_every) is not int or surface_every < 1:
        raise ValueError(f"surface_every: must be an int >= 1, got {surface_every!r}")
    if start_ns is not None and (type(start_ns) is not int or start_ns < 0):
        raise ValueError(f"start_ns: must be None or an int >= 0 (ns), got {start_ns!r}")
    if not (math.isfinite(taker_intensity) and taker_intensity >= 0):
        raise ValueError(f"taker_intensity: must be finite and >= 0, got {taker_intensity!r}")
    for name, hook in (("on_ready", on_ready), ("on_step", on_step)):
        if hook is not None and not callable(hook):
            raise ValueError(f"{name}: must be None or callable, got {type(hook).__name__}")
    if on_step is not None and clock != "simulated":
        raise ValueError(
            "on_step: only with clock='simulated' (on the wall clock feed, engine and traders "
            f"run concurrently and a step has no end), got clock={clock!r}"
        )
    n_steps = max(int(round(seconds * steps_per_second)), 1)
    dt = 1.0 / (steps_per_second * _SECONDS_PER_YEAR)
    market = simulated_market(config, dt=dt, seed=seed)
    flow = {
        u.symbol: TakerFlow(
            intensity=taker_intensity * _SECONDS_PER_YEAR,
            k=float(config.quote_params(u.symbol).fill_k) if taker_k is None else taker_k,
        )
        for u in config.underlyings
    }
    if clock == "simulated":
        t0 = time.time_ns() if start_ns is None else start_ns
        return await _run_simulated(
            config, market, flow, n_steps, surface_every, seed, t0,
            dict(events=events, store=store, on_fill_ack=on_fill_ack), traders or {},
            on_ready, on_step,
        )  # fmt: skip
    feed = SimulatedFeed(
        market,
        n_steps=n_steps,
        surface_every=surface_every,
        strikes_by_underlying={u.symbol: u.strikes for u in config.underlyings},
        expiries_by_underlying={u.symbol: u.expiries for u in config.underlyings},
    )
    mm = OptionsMarketMaker(config, events=events, store=store, on_fill_ack=on_fill_ack)
    tr = SimulatedTraders(mm.exchange, market, flow, seed + 1, config=config, **(traders or {}))
    mm.traders = tr
    await mm.start()
    stop = asyncio.Event()
    follower = asyncio.create_task(tr.follow(stop, wake=mm.tick_event))
    try:
        if on_ready is not None:
            await _call(on_ready, mm)
        await mm.run(feed, max_ticks=n_steps * len(config.underlyings))
    finally:
        stop.set()
        mm.tick_event.set()
        await follower
        await feed.close()
        await mm.stop()
    return mm


async def _run_simulated(
    config: MarketMakerConfig,
    market: Any,
    flow: dict,
    n_steps: int,
    surface_every: int,
    seed: int,
    start_ns: int,
    engine_kw: dict,
    traders_kw: dict,
    on_ready: OnReady | None = None,
    on_step: OnStep | None = None,
) -> OptionsMarketMaker:
    """The ``clock="simulated"`` run: one fixed sequence per market step (module docstring)."""
    from ..feeds import SurfaceUpdate

    def market_clock() -> int:
        return start_ns + round(market.n * market.dt * _NS_PER_YEAR)

    mm = OptionsMarketMaker(config, clock=market_clock, simulated_time=True, **engine_kw)
    tr = SimulatedTraders(mm.exchange, market, flow, seed + 1, config=config, **traders_kw)
    grids = {u.symbol: (tuple(u.strikes), tuple(u.expiries)) for u in config.underlyings}
    mm.traders = tr
    await mm.start()
    try:
        if on_ready is not None:
            await _call(on_ready, mm)
        for step in range(n_steps):
            ticks = market.step()
            ts = market_clock()
            if step % surface_every == 0:
                for u, (strikes, expiries) in grids.items():
                    spot = market.prices[u]
                    vols = [market.implied_vol(u, strikes, t).tolist() for t in expiries]
                    await mm.on_surface(SurfaceUpdate(u, expiries, strikes, vols, spot, ts, ts))
            for tick in ticks:
                await mm.on_price(tick.underlying, tick.price, ts)
            await mm.settle()
            tr.step()
            await mm.settle()
            if on_step is not None:
                await _call(on_step, step, mm, tr)
    finally:
        await mm.stop()
    return mm
