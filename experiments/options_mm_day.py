"""One simulated trading day of the options market maker on two underlyings.

Setting (``day_config``): a crypto-like ``BTC`` (spot 100, true ATM vol 60 %, skew -0.1, traded
24 h) with 3 expiries (7, 30, 90 days) and an index-like ``SPX`` (spot 5000, true ATM vol 18 %,
skew -0.3) with 2 expiries (30, 90 days), 50 strikes each (calls and puts: 300 + 200 option
books), multiplier 1. Both are simulated over the same 24 hours of calendar time (the index is
NOT given a 6.5 h session: a simplification). The day is compressed into ``n_steps`` market
steps of ``dt = (1 / 365) / n_steps`` years each (default 480: one step per simulated 3
minutes); the engine runs on a SIMULATED clock (ns = step x dt x 365 x 86400 x 1e9), so
expiries decay, theta accrues, surfaces go stale and breakers cool down in simulated time.

What runs (the real engine loop, nothing re-implemented) is
``jaxmm.engine.run_simulation(cfg, seconds=86400, seed=seed, steps_per_second=n_steps / 86400,
surface_every=..., taker_intensity=taker_per_day / 86400, clock="simulated", start_ns=0)``:
the market of :func:`jaxmm.engine.simulated_market` (GBM underlyings, OU-moving smile),
``jaxmm.engine.OptionsMarketMaker`` with ``simulated_time=True`` and
``jaxmm.engine.SimulatedTraders`` (takers with intensity ``A exp(-k (quote - fair))``, passive
orders, an underlying ladder for the hedges; seed ``seed + 1``), in one fixed sequence per
market step: market step -> the TRUE smile on the chain's own grid (every ``surface_every``
steps) -> one price per underlying (re-mark, quote, risk checks, order diff, hedge) ->
``settle`` -> one step of the traders -> ``settle``. A run is therefore a deterministic
function of (config, seed, arguments): the same seed gives the same fills and PnL. The
engine's views (PnL attribution, Greeks, utilisation) are sampled during the day through
``run_simulation``'s ``on_ready`` / ``on_step`` hooks (:func:`run_engine_day`), which only read:
the tests check that a run without hooks ends with the same fills and positions.

Reference design (``NaiveQuoter``, plain NumPy + SciPy ``ndtr``): every option priced by
Black-Scholes with a FIXED 30 % vol and no dividend, quoted at ``theo -/+ h`` with a fixed
half-spread ``h`` equal to the engine's base half-spread ``(1 / gamma) ln(1 + gamma / k)``
(same per-underlying ``gamma``, ``k``) and the engine's base size, no inventory or Greek
awareness, no limits, no hedging. It is compared on the SAME simulated market: a second run,
in the same per-step sequence, with a fresh ``SimulatedMarket`` on the same seed and ``dt``
(identical underlying and smile paths, the market's generator is used only by the market) and
``SimulatedTraders`` on the same seed (the
traders draw the same number of uniforms per step whatever is quoted, so every book sees the
same taker / passive random numbers: common random numbers); its quotes go through the same
``jaxmm.execution.QuoteManager`` and in-process books. Both are scored by the same independent
PnL: cash from their own fills plus positions marked at the TRUE fair value (BSM at the true
spot and smile, ``SimulatedTraders.fair_values``) and the underlying at the true spot.

Writes ``experiments/results/options_mm_day/`` (``report.md``, ``summary.json``, PNG plots).
Run: ``python experiments/options_mm_day.py`` (under a minute on 2 cores) or ``--quick``
(seconds: 2 expiries x 8 strikes, 24 steps; used by the tests, with ``--out``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import pathlib
import time
from typing import Any

import matplotlib
import numpy as np
from scipy.special import ndtr

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import jaxmm
from jaxmm.book import Side as BSide
from jaxmm.engine import (
    MarketMakerConfig,
    OptionsMarketMaker,
    SimulatedTraders,
    UnderlyingConfig,
    build_exchange,
    run_simulation,
    simulated_market,
)
from jaxmm.events import EventBroadcaster
from jaxmm.execution import InProcessConnector, Quote, QuoteManager, QuoteTarget
from jaxmm.feeds import TakerFlow

OUT = pathlib.Path(__file__).resolve().parent / "results" / "options_mm_day"
DAY = 1.0 / 365.0  # years
SECONDS_PER_DAY = 86_400.0
SECONDS_PER_YEAR = 365 * 86_400
NS_PER_YEAR = SECONDS_PER_YEAR * 1_000_000_000
GREEKS = ("delta", "gamma", "vega", "theta")
TERMS = ("spread", "delta", "gamma", "vega", "theta", "residual")


# --------------------------------------------------------------------------- configuration
def day_config(quick: bool = False, stale_surface_s: float = 3600.0) -> MarketMakerConfig:
    """The experiment's two chains (50 strikes each; ``quick``: 8 strikes, 2 + 1 expiries).

    ``stale_surface_s`` is in SIMULATED seconds (the run sets it to 3 surface intervals)."""
    nk = 8 if quick else 50
    btc_k = np.round(np.linspace(60.0, 150.0, nk), 2)
    spx_k = np.round(np.linspace(4000.0, 5980.0, nk) / 5.0) * 5.0
    btc = UnderlyingConfig(
        symbol="BTC", spot=100.0, vol=0.6, skew=-0.1,
        strikes=[float(k) for k in btc_k],
        expiries=[7 / 365, 30 / 365] if quick else [7 / 365, 30 / 365, 90 / 365],
        tick=0.01, hedge_band=5.0, underlying_tick=0.01,
        quote={"fill_k": 5.0, "risk_aversion": 1e-3, "base_size": 5.0, "underlying_vol": 0.6,
               "vol_of_vol": 0.6},
    )  # fmt: skip
    spx = UnderlyingConfig(
        symbol="SPX", spot=5000.0, vol=0.18, skew=-0.3,
        strikes=[float(k) for k in spx_k],
        expiries=[30 / 365] if quick else [30 / 365, 90 / 365],
        tick=0.05, hedge_band=5.0, underlying_tick=0.25,
        quote={"fill_k": 0.5, "risk_aversion": 1e-4, "base_size": 2.0, "underlying_vol": 0.18,
               "vol_of_vol": 0.18},
    )  # fmt: skip
    return MarketMakerConfig(
        underlyings=[btc, spx],
        quote={"gamma_widening": 0.5, "horizon": 1.0 / 8760.0},
        limits={
            "BTC": {"delta": 100.0, "gamma": 20.0, "vega": 2000.0, "theta": 20000.0},
            "SPX": {"delta": 100.0, "gamma": 1.0, "vega": 20000.0, "theta": 50000.0},
            "total": {"vega": 30000.0, "theta": 60000.0},
        },
        requote_ticks=1,
        # simulated seconds (the engine runs on the simulated clock)
        breaker_cooldown_s=900.0,
        stale_surface_s=stale_surface_s,
        snapshot_every_s=1e9,
    )


def base_half_spread(cfg: MarketMakerConfig, symbol: str) -> float:
    """The engine's model half-spread before Greek terms: ``(1/gamma) ln(1 + gamma / k)``."""
    p = cfg.quote_params(symbol)
    g, k = float(p.risk_aversion), float(p.fill_k)
    return math.log1p(g / k) / g


# --------------------------------------------------------------------------- NumPy pricing
def bsm_numpy(s, k, t, vol, call):
    """Black-Scholes value and unit Greeks (delta, gamma, vega per 1.00, theta per year),
    zero rate and dividend, plain NumPy + SciPy (the reference design's pricer)."""
    s, k, t, vol = (np.asarray(x, np.float64) for x in (s, k, t, vol))
    t = np.maximum(t, 1e-12)
    sq = vol * np.sqrt(t)
    d1 = (np.log(s / k) + 0.5 * vol * vol * t) / sq
    d2 = d1 - sq
    pdf = np.exp(-0.5 * d1 * d1) / math.sqrt(2 * math.pi)
    cp = np.where(call, 1.0, -1.0)
    price = cp * (s * ndtr(cp * d1) - k * ndtr(cp * d2))
    delta = np.where(call, ndtr(d1), ndtr(d1) - 1.0)
    gamma = pdf / (s * sq)
    vega = s * pdf * np.sqrt(t)
    theta = -s * pdf * vol / (2.0 * np.sqrt(t))
    return price, delta, gamma, vega, theta


class NaiveQuoter:
    """The reference design: fixed-vol (30 %), fixed-spread quoter, plain NumPy.

    Quotes every option of ``config`` at ``theo(30 %) -/+ half_spread[u]`` rounded outward to
    the tick, ``size[u]`` lots per side, on every underlying tick; no Greeks, no limits, no
    hedging. Positions and cash are kept from its own fill reports.
    """

    def __init__(self, config, exchange, vol=0.3, half_spread=None, size=None):
        self.config = config
        self.exchange = exchange
        self.vol = vol
        self.half = half_spread or {u.symbol: base_half_spread(config, u.symbol)
                                    for u in config.underlyings}  # fmt: skip
        self.size = size or {u.symbol: int(config.quote_params(u.symbol).base_size)
                             for u in config.underlyings}  # fmt: skip
        self.qm = QuoteManager()
        self.conn: InProcessConnector | None = None
        self.chain: dict[str, tuple] = {}
        for u in config.underlyings:
            syms = u.symbols()
            ne, nk = len(u.expiries), len(u.strikes)
            k = np.repeat(np.tile(np.asarray(u.strikes), ne), 2)
            t = np.repeat(np.asarray(u.expiries), 2 * nk)
            c = np.tile(np.array([True, False]), ne * nk)
            self.chain[u.symbol] = (syms, k, t, c, u.tick)
        self.pos: dict[str, float] = {}
        self.cash = {u.symbol: 0.0 for u in config.underlyings}
        self.owner = {s: u.symbol for u in config.underlyings for s in u.symbols()}
        self.fills = 0

    async def start(self) -> None:
        self.conn = InProcessConnector(self.exchange, owner="naive-quoter")
        await self.conn.subscribe_fills(self._on_fill)
        await self.conn.subscribe_orders(self.qm.om.on_order_update)

    def _on_fill(self, rep) -> None:
        self.qm.om.on_fill(rep)
        inst = self.exchange.book(rep.symbol).instrument
        price = float(inst.ticks_to_price(rep.price))
        qty = rep.qty * int(inst.lot_size)
        sgn = 1 if rep.side is BSide.BUY else -1
        self.pos[rep.symbol] = self.pos.get(rep.symbol, 0.0) + sgn * qty
        self.cash[self.owner[rep.symbol]] -= sgn * qty * price + float(rep.fee)
        self.fills += 1

    async def on_price(self, underlying: str, spot: float, elapsed: float) -> None:
        syms, k, t, c, tick = self.chain[underlying]
        theo = bsm_numpy(spot, k, t - elapsed, self.vol, c)[0]
        h = self.half[underlying]
        bid = np.floor((theo - h) / tick + 1e-9).astype(np.int64)
        ask = np.ceil((theo + h) / tick - 1e-9).astype(np.int64)
        n = self.size[underlying]
        targets = {
            s: QuoteTarget(Quote(int(b), n) if b >= 1 else None, Quote(int(a), n))
            for s, b, a in zip(syms, bid.tolist(), ask.tolist(), strict=True)
        }
        await self.qm.apply(self.conn, targets)


# --------------------------------------------------------------------------- the runs
def day_timing(n_steps: int) -> tuple[float, float]:
    """``(steps_per_second, dt)`` of a day of ``n_steps`` market steps: ``dt`` in years,
    computed exactly as :func:`jaxmm.engine.run_simulation` derives it from
    ``steps_per_second`` (so both give bit-identical market paths for one seed)."""
    sps = n_steps / SECONDS_PER_DAY
    return sps, 1.0 / (sps * SECONDS_PER_YEAR)


def taker_flow(cfg: MarketMakerConfig, per_day: float) -> dict:
    """Takers per underlying, as :func:`jaxmm.engine.run_simulation` builds them from a
    per-second ``taker_intensity = per_day / 86400`` and each underlying's ``fill_k``."""
    return {
        u.symbol: TakerFlow(
            intensity=per_day / SECONDS_PER_DAY * SECONDS_PER_YEAR,
            k=float(cfg.quote_params(u.symbol).fill_k),
        )
        for u in cfg.underlyings
    }


def _true_marks(tr: SimulatedTraders, pos: dict, cash: dict, under: dict) -> dict[str, float]:
    """PnL per underlying: cash + option positions at TRUE fair value + underlying at spot."""
    fair = tr.fair_values()
    out = dict(cash)
    for i, (sym, u, *_rest) in enumerate(tr.options):
        q = pos.get(sym, 0.0)
        if q:
            out[u] += q * float(fair[i])
    for u, q in under.items():
        out[u] += q * tr.market.prices[u]
    return out


async def run_engine_day(cfg: MarketMakerConfig, *, n_steps: int, seed: int, taker_per_day: float,
                         every: int, surface_every: int) -> dict[str, Any]:  # fmt: skip
    """The engine over one simulated day; returns the sampled series and the end state.

    The run IS ``run_simulation(cfg, seconds=86400, seed=seed, steps_per_second=n_steps /
    86400, surface_every=surface_every, taker_intensity=taker_per_day / 86400,
    clock="simulated", start_ns=0)``; its ``on_ready`` / ``on_step`` hooks sample the engine's
    views. A sample at step ``s`` (every ``every`` steps from 0) is the state left by the
    previous step (``on_step(s - 1)``, or ``on_ready`` for ``s = 0``) at the TRUE market after
    step ``s``'s move (read in ``on_step(s)``: the market moves only at the start of a step);
    the last sample is the end of the day (``on_step(n_steps - 1)``, before ``stop()`` pulls
    the quotes)."""
    sps, _ = day_timing(n_steps)
    bus = EventBroadcaster(history_size=1000)
    names = [u.symbol for u in cfg.underlyings]
    # independent ledger from the OrderFilled events (cash, positions)
    cash = dict.fromkeys(names, 0.0)
    pos: dict[str, float] = {}
    under = dict.fromkeys(names, 0.0)
    alerts: list[dict] = []
    breaker_events: list[dict] = []
    run: dict[str, Any] = {}  # "market": the run's SimulatedMarket (set by on_ready)

    def t_hours() -> float:  # market time in hours (0 before the first market step)
        return run["market"].t / DAY * 24.0 if "market" in run else 0.0

    def on_event(ev) -> None:
        if ev.type == "order_filled":
            sym = ev.instrument
            u = sym if sym in under else sym.split("-", 1)[0]
            sgn = 1.0 if ev.side == "buy" else -1.0
            cash[u] -= sgn * ev.quantity * ev.price + ev.fee
            if sym in under:
                under[sym] += sgn * ev.quantity
            else:
                pos[sym] = pos.get(sym, 0.0) + sgn * ev.quantity
        elif ev.type == "alert_triggered":
            alerts.append({"t_h": t_hours(), "kind": ev.kind, "severity": ev.severity,
                           "message": ev.message})  # fmt: skip
        elif ev.type == "circuit_breaker":
            breaker_events.append({"t_h": t_hours(), "breaker": ev.breaker,
                                   "from": ev.from_state, "to": ev.to_state,
                                   "reason": ev.reason})  # fmt: skip

    bus.add_callback(on_event, ("order_filled", "alert_triggered", "circuit_breaker"))
    rows: list[dict] = []
    pending: list[tuple] = []  # engine views captured, waiting for the next market move

    def capture(mm: OptionsMarketMaker) -> None:
        """The engine's views and the ledger now (the market-independent half of a sample)."""
        pending.append((mm.pnl(), mm.greeks()["by_underlying"], mm.risk(), mm.stats(),
                        dict(pos), dict(cash), dict(under)))  # fmt: skip

    def complete(tr: SimulatedTraders) -> None:
        """The pending sample, marked at the TRUE market now."""
        p, g, r, s, pos_, cash_, under_ = pending.pop()
        market = tr.market
        true = _true_marks(tr, pos_, cash_, under_)
        row = {"step": market.n, "t_h": market.t / DAY * 24.0, "fills": s["fills"],
               "hedges": s["hedges"], "hedge_fills": s["hedge_fills"],
               "orders_sent": s["orders_sent"], "total": p["total"]}  # fmt: skip
        for u in names:
            bu = p["by_underlying"][u]
            row[f"{u}.spot"] = market.prices[u]
            row[f"{u}.total"] = bu["total"]
            row[f"{u}.true_pnl"] = true[u]
            row[f"{u}.under_qty"] = under_[u]
            row[f"{u}.breaker"] = r["breakers"][u]
            for k in TERMS:
                row[f"{u}.attr.{k}"] = bu["attribution"][k]
            for k in GREEKS:
                row[f"{u}.{k}"] = g[u][k]
                row[f"{u}.util.{k}"] = r["utilisation"][u].get(k, 0.0)
        for k in GREEKS:
            row[f"total.util.{k}"] = r["utilisation"]["total"].get(k, 0.0)
        rows.append(row)

    final: dict[str, Any] = {}

    def on_ready(mm: OptionsMarketMaker) -> None:
        run["market"] = mm.traders.market
        capture(mm)  # sample 0: the started engine, marked after the first move

    def on_step(step: int, mm: OptionsMarketMaker, tr: SimulatedTraders) -> None:
        if pending:
            complete(tr)
        if step + 1 < n_steps:
            if (step + 1) % every == 0:
                capture(mm)
            return
        capture(mm)  # end of day, before stop() pulls the quotes
        complete(tr)
        # cross-check: the engine's own total, rebuilt from the fill events at its marks
        market = tr.market
        theo = {q["symbol"]: q["theo"] for q in mm.quotes()}
        at_engine = dict(cash)
        for sym, q in pos.items():
            at_engine[sym.split("-", 1)[0]] += q * max(theo[sym], 0.0)
        for u in names:
            at_engine[u] += under[u] * market.prices[u]
        final.update({
            "pnl": mm.pnl(),
            "greeks": mm.greeks(),
            "risk": {k: v for k, v in mm.risk().items() if k != "alerts"},
            "stats": mm.stats(),
            "positions": {p["symbol"]: p["quantity"] for p in mm.positions()},
            "ledger_total_at_engine_marks": at_engine,
            "true_pnl": _true_marks(tr, pos, cash, under),
            "open_option_contracts": {u: float(sum(abs(q) for s, q in pos.items()
                                                   if s.startswith(u + "-"))) for u in names},
            "taker_orders": tr.taker_orders,
            "passive_orders": tr.passive_orders,
            "alerts": alerts,
            "breaker_events": breaker_events,
            "wall_s": time.perf_counter() - t_wall,
            "cpu_s": time.process_time() - t_cpu,
        })  # fmt: skip

    t_wall = time.perf_counter()
    t_cpu = time.process_time()
    await run_simulation(
        cfg, seconds=SECONDS_PER_DAY, seed=seed, events=bus, steps_per_second=sps,
        surface_every=surface_every, taker_intensity=taker_per_day / SECONDS_PER_DAY,
        clock="simulated", start_ns=0, on_ready=on_ready, on_step=on_step,
    )  # fmt: skip
    return {"rows": rows, "final": final}


async def run_naive_day(cfg: MarketMakerConfig, *, n_steps: int, seed: int, taker_per_day: float,
                        every: int) -> dict[str, Any]:  # fmt: skip
    """The reference quoter on the same market (same seeds: same paths, same trader draws),
    in the engine run's fixed per-step sequence: market step -> one price per underlying
    (each quoted at once) -> one step of the traders."""
    _, dt = day_timing(n_steps)
    market = simulated_market(cfg, dt=dt, seed=seed)

    def clock() -> int:
        return round(market.n * market.dt * NS_PER_YEAR)

    exchange = build_exchange(cfg, clock)
    nq = NaiveQuoter(cfg, exchange)
    tr = SimulatedTraders(exchange, market, taker_flow(cfg, taker_per_day), seed + 1, config=cfg)
    names = [u.symbol for u in cfg.underlyings]
    under = dict.fromkeys(names, 0.0)
    rows: list[dict] = []
    await nq.start()
    t_wall = time.perf_counter()

    def sample() -> None:
        true = _true_marks(tr, nq.pos, nq.cash, under)
        row = {"step": market.n, "t_h": market.t / DAY * 24.0, "fills": nq.fills}
        for u in names:
            row[f"{u}.true_pnl"] = true[u]
            sel = [i for i, o in enumerate(tr.options) if o[1] == u and nq.pos.get(o[0])]
            if sel:
                q = np.array([nq.pos[tr.options[i][0]] for i in sel])
                k = tr._k[sel]
                t = np.maximum(tr._t[sel] - market.t, 1e-12)
                vol = market.implied_vol(u, k, t)
                _, d, g, v, th = bsm_numpy(market.prices[u], k, t, vol, tr._c[sel])
                row.update({f"{u}.delta": float(q @ d), f"{u}.gamma": float(q @ g),
                            f"{u}.vega": float(q @ v), f"{u}.theta": float(q @ th)})  # fmt: skip
            else:
                row.update({f"{u}.{k}": 0.0 for k in GREEKS})
        rows.append(row)

    for _ in range(n_steps):
        ticks = market.step()
        if (market.n - 1) % every == 0:
            sample()
        for tick in ticks:
            await nq.on_price(tick.underlying, tick.price, market.t)
        tr.step()
    sample()
    final = {
        "true_pnl": _true_marks(tr, nq.pos, nq.cash, under),
        "fills": nq.fills,
        "open_option_contracts": {u: float(sum(abs(q) for s, q in nq.pos.items()
                                               if s.startswith(u + "-"))) for u in names},
        "wall_s": time.perf_counter() - t_wall,
    }  # fmt: skip
    return {"rows": rows, "final": final}


# --------------------------------------------------------------------------- report
def _series(rows: list[dict], key: str) -> np.ndarray:
    return np.array([r[key] for r in rows], np.float64)


def plots(out: pathlib.Path, cfg: MarketMakerConfig, eng: dict, nai: dict) -> list[str]:
    names = [u.symbol for u in cfg.underlyings]
    rows = eng["rows"]
    t = _series(rows, "t_h")
    files = []
    # 1. PnL and attribution
    fig, axes = plt.subplots(1, len(names), figsize=(6.5 * len(names), 4.2))
    for ax, u in zip(np.atleast_1d(axes), names, strict=True):
        for k in TERMS:
            ax.plot(t, _series(rows, f"{u}.attr.{k}"), lw=1, label=k)
        ax.plot(t, _series(rows, f"{u}.total"), color="k", lw=2, label="total (engine marks)")
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_title(f"{u}: PnL attribution (currency)")
        ax.set_xlabel("simulated hours")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "pnl_attribution.png", dpi=110)
    plt.close(fig)
    files.append("pnl_attribution.png")
    # 2. Greeks against limits
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8), sharey=True)
    for ax, g in zip(axes, GREEKS, strict=True):
        for u in names:
            ax.plot(t, _series(rows, f"{u}.util.{g}"), lw=1, label=u)
        if g in cfg.limits.get("total", {}):
            ax.plot(t, _series(rows, f"total.util.{g}"), lw=1, ls="--", label="total")
        ax.axhline(1.0, color="r", lw=1)
        ax.set_title(f"|{g}| / limit")
        ax.set_xlabel("simulated hours")
    # the legend on a panel that also shows the "total" line, if any
    tot = [i for i, g in enumerate(GREEKS) if g in cfg.limits.get("total", {})]
    axes[tot[0] if tot else 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "greeks_vs_limits.png", dpi=110)
    plt.close(fig)
    files.append("greeks_vs_limits.png")
    # 3. hedges and fills
    fig, axes = plt.subplots(1, 3, figsize=(16, 3.8))
    for u in names:
        axes[0].plot(t, _series(rows, f"{u}.delta"), lw=1, label=f"{u} position delta")
        band = cfg.underlying(u).hedge_band
        axes[0].axhline(band, color="grey", lw=0.5, ls=":")
        axes[0].axhline(-band, color="grey", lw=0.5, ls=":")
        axes[1].plot(t, _series(rows, f"{u}.under_qty"), lw=1, label=f"{u} hedge position")
    axes[0].set_title("position delta (band dotted)")
    axes[1].set_title("underlying held (hedges), units")
    axes[2].plot(t, _series(rows, "fills"), label="option fills (engine)")
    axes[2].plot(t, _series(rows, "hedge_fills"), label="hedge fills (engine)")
    axes[2].plot(_series(nai["rows"], "t_h"), _series(nai["rows"], "fills"), ls="--",
                 label="fills (naive)")  # fmt: skip
    axes[2].set_yscale("symlog")
    axes[2].set_title("cumulative fills")
    for ax in axes:
        ax.set_xlabel("simulated hours")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "hedges_fills.png", dpi=110)
    plt.close(fig)
    files.append("hedges_fills.png")
    # 4. engine vs naive at true marks
    fig, axes = plt.subplots(1, len(names), figsize=(6.5 * len(names), 4))
    for ax, u in zip(np.atleast_1d(axes), names, strict=True):
        ax.plot(t, _series(rows, f"{u}.true_pnl"), label="engine")
        ax.plot(_series(nai["rows"], "t_h"), _series(nai["rows"], f"{u}.true_pnl"),
                label="naive 30 % vol, fixed spread")  # fmt: skip
        ax.set_yscale("symlog", linthresh=100.0)
        ax.set_title(f"{u}: PnL at TRUE fair value (currency)")
        ax.set_xlabel("simulated hours")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "engine_vs_naive.png", dpi=110)
    plt.close(fig)
    files.append("engine_vs_naive.png")
    return files


def _f(x: float, nd: int = 1) -> str:
    return f"{x:,.{nd}f}"


def report(out, cfg, args, eng, nai, files) -> str:
    fe, fn = eng["final"], nai["final"]
    names = [u.symbol for u in cfg.underlyings]
    p = fe["pnl"]
    st = fe["stats"]
    lat = st["refresh_latency_us"]
    load = os.getloadavg()
    n_opt = {u.symbol: len(u.symbols()) for u in cfg.underlyings}
    lines = [
        "# Options market making: one simulated day (`experiments/options_mm_day.py`)",
        "",
        f"Run: `python experiments/options_mm_day.py{' --quick' if args.quick else ''}` "
        f"(seed {args.seed}); {args.steps} market steps of {24 * 60 / args.steps:.1f} simulated "
        f"minutes; surface every {args.surface_every} steps; takers at "
        f"{args.taker_per_day:g} arrivals per option book and side per day at zero distance "
        "from fair. float64, CPU. Load average during the run "
        f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1/5/15 min) on {os.cpu_count()} cores; "
        f"engine run {fe['wall_s']:.0f} s wall, {fe['cpu_s']:.0f} s CPU; naive run "
        f"{fn['wall_s']:.0f} s wall.",
        "",
        "Chains: "
        + "; ".join(
            f"{u.symbol} spot {u.spot:g}, true ATM vol {u.vol:.0%}, skew {u.skew:g}, "
            f"{len(u.expiries)} expiries ({', '.join(f'{round(t * 365)}d' for t in u.expiries)})"
            f" x {len(u.strikes)} strikes = {n_opt[u.symbol]} options"
            for u in cfg.underlyings
        )
        + ". Setting, clock and the reference design: the script's docstring.",
        "",
        "## Engine: PnL and its attribution (engine marks, currency)",
        "",
        "| underlying | total | spread | delta | gamma | vega | theta | residual | fees |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for u in [*names, "all"]:
        b = p if u == "all" else p["by_underlying"][u]
        a = b["attribution"]
        lines.append(
            f"| {u} | {_f(b['total'])} | " + " | ".join(_f(a[k]) for k in TERMS)
            + f" | {_f(b['fees'])} |"
        )  # fmt: skip
    lines += [
        "",
        "`total = realised + unrealised - fees` at the engine's model theo; `spread` = "
        "sum over fills of (theo at fill - price) x signed qty; delta/gamma/vega/theta = Taylor "
        "terms of the positions held between re-marks; `residual` = total + fees - the five "
        "terms (higher-order terms: vanna, volga, third order, and the move of theo between a "
        "fill and the next re-mark). Cross-check: the total rebuilt from the `OrderFilled` "
        "events alone (cash + positions at the engine's theo) is "
        + ", ".join(f"{u} {_f(fe['ledger_total_at_engine_marks'][u], 4)}" for u in names)
        + " vs the engine's "
        + ", ".join(f"{u} {_f(p['by_underlying'][u]['total'], 4)}" for u in names)
        + ".",
        "",
        f"![PnL attribution]({files[0]})",
        "",
        "## Greeks against their limits, hedges, fills",
        "",
        "| underlying | " + " | ".join(f"end {g}" for g in GREEKS)
        + " | max util delta | max util gamma | max util vega | max util theta |",
        "|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    rows = eng["rows"]
    for u in names:
        g = fe["greeks"]["by_underlying"][u]
        mx = [float(np.max(_series(rows, f"{u}.util.{k}"))) for k in GREEKS]
        lines.append(
            f"| {u} | " + " | ".join(f"{g[k]:.4g}" for k in GREEKS) + " | "
            + " | ".join(f"{m:.3f}" for m in mx) + " |"
        )  # fmt: skip
    tot_mx = {k: float(np.max(_series(rows, f"total.util.{k}"))) for k in GREEKS
              if k in cfg.limits.get("total", {})}  # fmt: skip
    lines += [
        "",
        "Limits (raw units: delta in units of underlying, gamma per unit spot, vega per 1.00 "
        f"vol, theta per year): {json.dumps(cfg.limits)}. Max utilisation of the total limits: "
        + ", ".join(f"{k} {v:.3f}" for k, v in tot_mx.items())
        + f". Utilisation is sampled every {args.every} steps (before that step's re-mark).",
        "",
        f"Counts: {st['fills']:.0f} option fills, {st['hedges']:.0f} hedge orders "
        f"({st['hedge_fills']:.0f} hedge fills), {st['requotes']:.0f} requotes, "
        f"{st['orders_sent']:.0f} orders sent, {st['rejects']:.0f} rejects, "
        f"{st['guard_cancels']:.0f} guard cancels (a resting quote that would breach after a "
        f"fill), {fe['taker_orders']} taker and {fe['passive_orders']} passive orders from the "
        "simulated traders. Open option contracts at the end: "
        + ", ".join(f"{u} {v:.0f}" for u, v in fe["open_option_contracts"].items())
        + ".",
        "",
        f"Breaker transitions: {len(fe['breaker_events'])}"
        + (": " + "; ".join(f"{e['breaker']} {e['from']}->{e['to']} at {e['t_h']:.2f} h "
                            f"({e['reason'][:80]})" for e in fe["breaker_events"][:8])
           if fe["breaker_events"] else "")
        + f". Alerts: {len(fe['alerts'])}"
        + (" (" + ", ".join(sorted({a['kind'] for a in fe['alerts']})) + ")"
           if fe["alerts"] else "")
        + ".",
        "",
        f"![Greeks vs limits]({files[1]})",
        "",
        f"![Hedges and fills]({files[2]})",
        "",
        "## Quote refresh latency",
        "",
        "Tick in -> orders handed to the in-process venue (re-mark + quote kernel + risk "
        "checks + order diff), wall clock, per underlying refresh, "
        f"{lat['count']:.0f} refreshes: p50 {lat['p50'] / 1e3:.2f} ms, p95 "
        f"{lat['p95'] / 1e3:.2f} ms, p99 {lat['p99'] / 1e3:.2f} ms (shared machine, load above;"
        " timings are noisy).",
        "",
        "## Engine vs the naive reference (same market, same trader draws)",
        "",
        "| underlying | engine PnL at true fair | naive PnL at true fair | engine fills | "
        "naive fills | engine open contracts | naive open contracts |",
        "|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for u in names:
        lines.append(
            f"| {u} | {_f(fe['true_pnl'][u])} | {_f(fn['true_pnl'][u])} | "
            f"{'' if u != names[0] else _f(st['fills'], 0)} | "
            f"{'' if u != names[0] else _f(fn['fills'], 0)} | "
            f"{fe['open_option_contracts'][u]:.0f} | {fn['open_option_contracts'][u]:.0f} |"
        )
    lines += [
        "",
        "(fill counts are for both underlyings together.) Naive half-spreads: "
        + ", ".join(f"{u} {base_half_spread(cfg, u):.4g}" for u in names)
        + "; sizes: the engine's base sizes.",
        "",
        f"![Engine vs naive]({files[3]})",
        "",
    ]
    return "\n".join(lines)


def findings(eng: dict, nai: dict, cfg: MarketMakerConfig) -> list[str]:
    """Plain-language reading of the numbers (computed, not hand-written)."""
    fe, fn = eng["final"], nai["final"]
    names = [u.symbol for u in cfg.underlyings]
    out = ["## Reading the numbers", ""]
    for u in names:
        a = fe["pnl"]["by_underlying"][u]["attribution"]
        tot = fe["pnl"]["by_underlying"][u]["total"]
        greek = sum(a[k] for k in ("delta", "gamma", "vega", "theta"))
        gross = sum(abs(a[k]) for k in TERMS)
        out.append(
            f"- {u}: spread capture {_f(a['spread'])} against Greek PnL {_f(greek)} "
            f"(delta {_f(a['delta'])}, vega {_f(a['vega'])}) gives {_f(tot)}; the residual "
            f"is {abs(a['residual']) / max(gross, 1e-12):.1%} of the gross attribution."
        )
        out.append(
            f"- {u}: the naive quoter ends at {_f(fn['true_pnl'][u])} at true marks vs the "
            f"engine's {_f(fe['true_pnl'][u])}, holding {fn['open_option_contracts'][u]:.0f} "
            f"contracts vs {fe['open_option_contracts'][u]:.0f}."
        )
    out.append("")
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="seconds-long version (tests)")
    ap.add_argument("--steps", type=int, default=None, help="market steps in the day")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument(
        "--taker-per-day",
        type=float,
        default=None,
        help="taker arrivals per option book and side per day at zero distance",
    )
    ap.add_argument("--surface-every", type=int, default=None)
    ap.add_argument("--every", type=int, default=None, help="sample every this many steps")
    ap.add_argument("--out", type=pathlib.Path, default=OUT)
    args = ap.parse_args(argv)  # fmt: skip
    jaxmm.enable_float64()
    if args.steps is None:
        args.steps = 24 if args.quick else 480
    if args.taker_per_day is None:
        args.taker_per_day = 48.0 if args.quick else 12.0
    if args.surface_every is None:
        args.surface_every = 2 if args.quick else 5
    if args.every is None:
        args.every = 1 if args.quick else 4
    step_s = 86_400.0 / args.steps
    cfg = day_config(args.quick, stale_surface_s=3.0 * args.surface_every * step_s)
    kw = dict(n_steps=args.steps, seed=args.seed, taker_per_day=args.taker_per_day,
              every=args.every)  # fmt: skip
    eng = asyncio.run(run_engine_day(cfg, surface_every=args.surface_every, **kw))
    nai = asyncio.run(run_naive_day(cfg, **kw))
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    files = plots(out, cfg, eng, nai)
    text = report(out, cfg, args, eng, nai, files) + "\n" + "\n".join(findings(eng, nai, cfg))
    (out / "report.md").write_text(text)
    summary = {
        "args": {k: (str(v) if isinstance(v, pathlib.Path) else v) for k, v in vars(args).items()},
        "engine": eng["final"],
        "naive": nai["final"],
        "engine_rows": eng["rows"],
        "naive_rows": nai["rows"],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=float) + "\n")
    print(text)
    return summary


if __name__ == "__main__":
    main()
