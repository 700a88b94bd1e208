"""Simulated counterparties: other traders sending orders into the in-process books.

Each :meth:`SimulatedTraders.step` (one step of the :class:`jaxmm.feeds.SimulatedMarket`,
``dt`` years), through the traders' own :class:`jaxmm.execution.InProcessConnector`:

1. **underlying ladder**: in every underlying's book the previous ladder is cancelled and
   ``ladder_levels`` bids and asks of ``ladder_size`` lots are placed at the TRUE price
   ``-/+ i x ladder_spacing`` (``i = 1..levels``, rounded away from it to the tick), so the
   market maker's hedges find liquidity at a cost;
2. **takers** (:class:`jaxmm.feeds.TakerFlow`): for every option book with a best ask, a
   market buy arrives with probability ``1 - exp(-A exp(-k (ask - fair)) dt)``; with a best
   bid, a market sell with ``1 - exp(-A exp(-k (fair - bid)) dt)``; ``fair`` is the BSM value
   at the TRUE spot and smile. Sizes are uniform in ``1..max_size`` lots (IOC market orders:
   they take the best levels, whoever rests there — our quotes get hit and lifted, more often
   when they are on the wrong side of fair: adverse selection);
3. **passive orders**: with probability ``passive_prob`` per option book and step, a limit
   order on a random side at ``fair -/+ u`` ticks (``u`` uniform in ``1..passive_ticks``),
   cancelled after ``passive_life`` steps (it may trade against resting quotes on arrival).

Seeded (one ``numpy.random.Generator``) and reproducible for a given event order.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from typing import Any

import numpy as np

from ..book import OrderType, Side, TimeInForce
from ..execution import InProcessConnector, InProcessExchange, OrderRequest

__all__ = ["SimulatedTraders"]

_SYMBOL = re.compile(r"^(?P<u>.+)-(?P<d>\d{4,})D-(?P<k>[^-]+)-(?P<cp>[CP])$")


class SimulatedTraders:
    """Other traders on the simulated market (rules in the module docstring).

    Args:
        exchange: the :class:`jaxmm.execution.InProcessExchange` the market maker quotes on.
        market: the :class:`jaxmm.feeds.SimulatedMarket` giving the TRUE spot and smile.
        flow: :class:`jaxmm.feeds.TakerFlow` (intensity per year per side, decay ``k``), or a
            dict underlying -> TakerFlow (an underlying not in it gets no takers).
        seed: seed of the traders' random generator.
        config: optional :class:`jaxmm.engine.MarketMakerConfig` (exact expiries, rates and
            dividends); without it options are read from their symbols
            (``UNDERLYING-DDDDD-STRIKE-C|P``, expiry = days / 365, no rates).
        max_size: largest taker / passive order, lots (>= 1).
        ladder_levels, ladder_size, ladder_spacing: the underlying ladder (levels >= 0, size
            >= 1 lot, spacing in price units > 0; default 2 underlying ticks).
        passive_prob, passive_ticks, passive_life: passive option orders (prob in [0, 1]).
        owner: the traders' owner id on the exchange.

    Example:
        >>> from jaxmm.engine import MarketMakerConfig, build_exchange
        >>> from jaxmm.feeds import SimulatedMarket, SmileModel, TakerFlow, UnderlyingModel
        >>> cfg = MarketMakerConfig.demo()
        >>> mkt = SimulatedMarket({"BTC": UnderlyingModel(100.0, 0.6),
        ...                        "SPX": UnderlyingModel(5000.0, 0.18)}, dt=1e-6, seed=0,
        ...                       smiles={"BTC": SmileModel(0.6), "SPX": SmileModel(0.18)})
        >>> x = build_exchange(cfg)
        >>> tr = SimulatedTraders(x, mkt, TakerFlow(1e5, 5.0), seed=1, config=cfg)
        >>> tr.step()
        >>> x.book("BTC").best_bid() is not None
        True
    """

    def __init__(
        self,
        exchange: InProcessExchange,
        market: Any,
        flow: Any,
        seed: int,
        *,
        config: Any = None,
        max_size: int = 3,
        ladder_levels: int = 5,
        ladder_size: int = 50,
        ladder_spacing: float | None = None,
        passive_prob: float = 0.02,
        passive_ticks: int = 20,
        passive_life: int = 20,
        owner: str = "sim-traders",
    ) -> None:
        if not isinstance(exchange, InProcessExchange):
            raise ValueError(f"exchange: expected an InProcessExchange, got {type(exchange)}")
        for name, v, lo in (("max_size", max_size, 1), ("ladder_levels", ladder_levels, 0),
                            ("ladder_size", ladder_size, 1), ("passive_ticks", passive_ticks, 1),
                            ("passive_life", passive_life, 1)):  # fmt: skip
            if type(v) is not int or v < lo:
                raise ValueError(f"{name}: must be an int >= {lo}, got {v!r}")
        if not (0.0 <= float(passive_prob) <= 1.0):
            raise ValueError(f"passive_prob: must be in [0, 1], got {passive_prob!r}")
        if ladder_spacing is not None and not (
            math.isfinite(ladder_spacing) and ladder_spacing > 0
        ):
            raise ValueError(f"ladder_spacing: must be finite and > 0, got {ladder_spacing!r}")
        self.exchange = exchange
        self.market = market
        self.flow = dict(flow) if isinstance(flow, dict) else flow
        self.rng = np.random.default_rng(seed)
        self.conn = InProcessConnector(exchange, owner=owner)
        self.max_size = max_size
        self.ladder_levels = ladder_levels
        self.ladder_size = ladder_size
        self.ladder_spacing = ladder_spacing
        self.passive_prob = float(passive_prob)
        self.passive_ticks = passive_ticks
        self.passive_life = passive_life
        self.underlyings = [u for u in market.models if exchange.book(u) is not None]
        rates = {}
        if config is not None:
            rates = {u.symbol: (u.rate, u.dividend) for u in config.underlyings}
        rows = []  # (symbol, underlying, strike, expiry, is_call)
        if config is not None:
            for u in config.underlyings:
                if u.symbol not in market.models:
                    continue
                for t in u.expiries:
                    for k in u.strikes:
                        for c in (True, False):
                            from ._config import option_symbol

                            s = option_symbol(u.symbol, t, k, c)
                            if exchange.book(s) is not None:
                                rows.append((s, u.symbol, k, t, c))
        else:
            for s in exchange.symbols():
                m = _SYMBOL.match(s)
                if m and m["u"] in market.models:
                    rows.append((s, m["u"], float(m["k"]), int(m["d"]) / 365.0, m["cp"] == "C"))
        self.options = rows
        self._books = [exchange.book(r[0]) for r in rows]
        self._u = np.array([r[1] for r in rows], dtype=object)
        self._k = np.array([r[2] for r in rows], np.float64)
        self._t = np.array([r[3] for r in rows], np.float64)
        self._c = np.array([r[4] for r in rows], bool)
        self._r = np.array([rates.get(r[1], (0.0, 0.0))[0] for r in rows], np.float64)
        self._q = np.array([rates.get(r[1], (0.0, 0.0))[1] for r in rows], np.float64)
        self._ladder: list[tuple[str, int]] = []
        self._passive: list[tuple[int, str, int]] = []  # (expire step, symbol, order id)
        self.n_steps = 0
        self.taker_orders = 0
        self.passive_orders = 0

    def fair_values(self) -> np.ndarray:
        """BSM value of every option at the TRUE spot and smile now (time decays with the
        market's clock)."""
        from ..pricing import bsm_price

        if not self.options:
            return np.zeros(0)
        m = self.market
        s = np.array([m.prices[u] for u in self._u], np.float64)
        t = np.maximum(self._t - m.t, 1e-12)
        v = np.empty_like(s)
        for u in set(self._u.tolist()):
            sel = self._u == u
            v[sel] = m.implied_vol(u, self._k[sel], t[sel]) if u in m.smiles else 0.2
        return np.asarray(bsm_price(s, self._k, t, self._r, self._q, v, self._c), np.float64)

    def _submit(self, req: OrderRequest) -> Any:
        return self.conn.submit_now(req)

    def step(self, dt: float | None = None) -> None:
        """One step of the other traders (module docstring); ``dt`` years (default the
        market's)."""
        dt = self.market.dt if dt is None else float(dt)
        self.n_steps += 1
        # 1. the underlying ladder around the true price
        for sym, oid in self._ladder:
            self.conn.cancel_now(sym, oid)
        self._ladder = []
        for u in self.underlyings:
            book = self.exchange.book(u)
            inst = book.instrument
            tick = float(inst.tick_size)
            spacing = self.ladder_spacing if self.ladder_spacing is not None else 2 * tick
            s = self.market.prices[u]
            for i in range(1, self.ladder_levels + 1):
                bid = math.floor((s - i * spacing) / tick)
                ask = math.ceil((s + i * spacing) / tick)
                for side, px in ((Side.BUY, bid), (Side.SELL, ask)):
                    if px < 1:
                        continue
                    ack = self._submit(OrderRequest(u, side, self.ladder_size, px))
                    if ack.accepted and ack.remaining:
                        self._ladder.append((u, ack.order_id))
        # 3a. passive orders past their life
        keep = []
        for exp, sym, oid in self._passive:
            if exp <= self.n_steps:
                self.conn.cancel_now(sym, oid)
            else:
                keep.append((exp, sym, oid))
        self._passive = keep
        if not self.options:
            return
        # 2. takers against the best quotes of each option book
        fair = self.fair_values()
        n = len(self.options)
        tops = [b.top() for b in self._books]
        ticks = np.array([float(b.instrument.tick_size) for b in self._books])
        bid = np.array([np.nan if t[0] is None else t[0] for t in tops], np.float64) * ticks
        ask = np.array([np.nan if t[2] is None else t[2] for t in tops], np.float64) * ticks
        p_lift = np.zeros(n)
        p_hit = np.zeros(n)
        for u in set(self._u.tolist()):
            sel = self._u == u
            flow = self.flow.get(u) if isinstance(self.flow, dict) else self.flow
            if flow is None:
                continue
            p_lift[sel], p_hit[sel] = flow.probabilities(
                np.nan_to_num(bid[sel], nan=-1e300),
                np.nan_to_num(ask[sel], nan=1e300),
                fair[sel],
                dt,
            )
        u = self.rng.random((2, n))
        sizes = self.rng.integers(1, self.max_size + 1, (2, n))
        for i in np.flatnonzero((u[0] < p_lift) & np.isfinite(ask)):
            self._taker(self.options[i][0], Side.BUY, int(sizes[0, i]))
        for i in np.flatnonzero((u[1] < p_hit) & np.isfinite(bid)):
            self._taker(self.options[i][0], Side.SELL, int(sizes[1, i]))
        # 3b. new passive orders
        if self.passive_prob > 0:
            go = self.rng.random(n) < self.passive_prob
            for i in np.flatnonzero(go):
                side = Side.BUY if self.rng.random() < 0.5 else Side.SELL
                off = int(self.rng.integers(1, self.passive_ticks + 1))
                f = fair[i] / ticks[i]
                px = math.floor(f) - off if side is Side.BUY else math.ceil(f) + off
                if px < 1 or not math.isfinite(f):
                    continue
                size = int(self.rng.integers(1, self.max_size + 1))
                ack = self._submit(OrderRequest(self.options[i][0], side, size, px))
                self.passive_orders += 1
                if ack.accepted and ack.remaining:
                    self._passive.append(
                        (self.n_steps + self.passive_life, ack.symbol, ack.order_id)
                    )

    def _taker(self, symbol: str, side: Side, lots: int) -> None:
        self._submit(OrderRequest(symbol, side, lots, None, OrderType.MARKET, TimeInForce.IOC))
        self.taker_orders += 1

    async def run(self, n_steps: int | None = None, pause: float = 0.0) -> None:
        """Step ``n_steps`` times (forever if None), sleeping ``pause`` seconds in between."""
        i = 0
        while n_steps is None or i < n_steps:
            self.step()
            i += 1
            await asyncio.sleep(pause)

    async def follow(
        self, stop: asyncio.Event, *, wake: asyncio.Event | None = None, poll: float = 0.005
    ) -> None:
        """Step once per step of the market (another task advances it) until ``stop`` is set.

        Between steps the task sleeps: it waits on ``wake`` (e.g. the engine's
        :attr:`OptionsMarketMaker.tick_event`, set after every requote, so the traders act
        on the quotes of the new step), or at most ``poll`` seconds (default 5 ms) — it
        never spins. ``stop`` is noticed within ``poll`` seconds (at once if ``wake`` is set
        with it)."""
        if not (math.isfinite(poll) and poll > 0):
            raise ValueError(f"poll: must be finite and > 0, got {poll!r}")
        wake = wake if wake is not None else asyncio.Event()
        seen = self.market.n
        while not stop.is_set():
            if self.market.n != seen:
                seen = self.market.n
                self.step()
                await asyncio.sleep(0)
                continue
            wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), poll)
