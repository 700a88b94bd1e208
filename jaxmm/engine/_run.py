"""``run_simulation``: the market maker on the simulated market, for a bounded time.

Engine (:class:`OptionsMarketMaker`) + :class:`jaxmm.feeds.SimulatedFeed` (GBM underlyings and
moving smiles from the config's ``spot``, ``vol`` and ``skew``; a TRUE-smile surface on the
chain's own grid every ``surface_every`` steps) + :class:`SimulatedTraders` (one step of other
traders per market step). Time: ``steps_per_second`` market steps per SIMULATED second, run
as fast as the machine allows.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from ._config import MarketMakerConfig
from ._loop import OptionsMarketMaker
from ._traders import SimulatedTraders

__all__ = ["run_simulation", "simulated_market"]

_SECONDS_PER_YEAR = 365 * 86_400


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
    steps_per_second: int = 10,
    surface_every: int = 5,
    taker_intensity: float = 0.2,
    taker_k: float | None = None,
    traders: dict | None = None,
) -> OptionsMarketMaker:
    """Run engine + simulated feed + simulated traders for ``seconds`` SIMULATED seconds.

    Args:
        config: the market maker's configuration.
        seconds: simulated seconds (> 0); ``round(seconds x steps_per_second)`` market steps.
        seed: seeds the market (``seed``) and the traders (``seed + 1``).
        store, events: passed to :class:`OptionsMarketMaker`.
        steps_per_second: market steps per simulated second (>= 1).
        surface_every: market steps between surface updates (>= 1).
        taker_intensity: taker arrivals per second per side per option book at zero distance
            from fair (converted to per year for :class:`jaxmm.feeds.TakerFlow`).
        taker_k: decay of the taker intensity per unit of option price (default: each
            underlying's own ``fill_k`` quote parameter).
        traders: extra keyword arguments of :class:`SimulatedTraders`.

    Returns:
        The stopped engine (its views — ``stats()``, ``positions()``, ``pnl()`` — hold the
        run's results).

    Example:
        >>> import asyncio
        >>> from jaxmm.engine import UnderlyingConfig
        >>> cfg = MarketMakerConfig(underlyings=[UnderlyingConfig(symbol="XYZ", spot=100.0,
        ...     strikes=[95.0, 100.0, 105.0], expiries=[30 / 365], hedge_band=5.0, vol=0.5)],
        ...     quote={"fill_k": 5.0})
        >>> mm = asyncio.run(run_simulation(cfg, seconds=1.0, seed=0))
        >>> mm.stats()["ticks"]
        10.0
    """
    from ..feeds import SimulatedFeed, TakerFlow

    if not isinstance(config, MarketMakerConfig):
        raise ValueError(f"config: expected a MarketMakerConfig, got {type(config).__name__}")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"seconds: must be finite and > 0, got {seconds!r}")
    if type(steps_per_second) is not int or steps_per_second < 1:
        raise ValueError(f"steps_per_second: must be an int >= 1, got {steps_per_second!r}")
    if not (math.isfinite(taker_intensity) and taker_intensity >= 0):
        raise ValueError(f"taker_intensity: must be finite and >= 0, got {taker_intensity!r}")
    n_steps = max(int(round(seconds * steps_per_second)), 1)
    dt = 1.0 / (steps_per_second * _SECONDS_PER_YEAR)
    market = simulated_market(config, dt=dt, seed=seed)
    feed = SimulatedFeed(
        market,
        n_steps=n_steps,
        surface_every=surface_every,
        strikes_by_underlying={u.symbol: u.strikes for u in config.underlyings},
        expiries_by_underlying={u.symbol: u.expiries for u in config.underlyings},
    )
    flow = {
        u.symbol: TakerFlow(
            intensity=taker_intensity * _SECONDS_PER_YEAR,
            k=float(config.quote_params(u.symbol).fill_k) if taker_k is None else taker_k,
        )
        for u in config.underlyings
    }
    mm = OptionsMarketMaker(config, events=events, store=store)
    tr = SimulatedTraders(mm.exchange, market, flow, seed + 1, config=config, **(traders or {}))
    await mm.start()
    stop = asyncio.Event()
    follower = asyncio.create_task(tr.follow(stop, wake=mm.tick_event))
    try:
        await mm.run(feed, max_ticks=n_steps * len(config.underlyings))
    finally:
        stop.set()
        mm.tick_event.set()
        await follower
        await feed.close()
        await mm.stop()
    mm.traders = tr
    return mm
