"""Metrics and plots of a replay run: the same metrics as :func:`jaxmm.sim.summary`.

The run's decision grid is the step grid: rows ``0 .. n`` of ``result.frame`` are the states
``W_i`` (PnL), ``q_i``; step ``i`` covers the time ``(t_i, t_{i+1}]``. The per-run quantities
are assembled into a one-path :class:`jaxmm.sim.SimResult` and reduced by
:func:`jaxmm.sim.summary`, so the conventions are the simulator's (``docs/backtesting.md``):

- Sharpe / Sortino of the per-step PnL changes, annualised with ``steps_per_year = 1 / dt``,
  where ``dt = (t_n - t_0) / n`` in years of 365 days (ACT/365F) -- exact for an
  ``interval_ns`` grid, the mean step length for an ``every``-events grid;
- max drawdown of the PnL path below its running peak (the peak starts at 0) and its duration
  in steps strictly below a previous peak;
- fill ratio = steps with a fill / steps with a live quote, both sides pooled (a side is live
  in a step if it had an order at the step's start);
- spread captured = ``sum_buys qty (mid - price) + sum_sells qty (price - mid)`` with the
  exchange mid just before each fill (price x quantity x multiplier); inventory PnL =
  ``pnl - spread captured + fees`` (the mid moves carried by the position), fees are totals.

One run is one path: across-path statistics (PnL std, terminal Sharpe, inventory std and
quantiles) are not reported.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._replay import BacktestResult

__all__ = ["summary", "summary_frame", "plot"]

NS_PER_YEAR = 365 * 86_400 * 1_000_000_000
_DROP = (
    "pnl_std",
    "terminal_sharpe",
    "inventory_std",
    "inventory_q05",
    "inventory_q25",
    "inventory_q50",
    "inventory_q75",
    "inventory_q95",
)


def summary(result: BacktestResult, *, risk_aversion: float = 0.1) -> dict[str, float]:
    """Metrics of a replay run (conventions in the module docstring), as Python floats.

    Keys: ``pnl_mean`` (the run's terminal PnL), ``sharpe``, ``sortino``, ``max_drawdown``,
    ``max_drawdown_steps``, ``inventory_mean`` (terminal), ``abs_inventory_mean``,
    ``fill_ratio``, ``spread_captured``, ``inventory_pnl``, ``fees``, ``cara_utility``,
    ``certainty_equivalent``, ``mean_variance`` (of the single terminal PnL), plus ``steps``,
    ``dt_years``, ``fills`` and ``volume``.

    Example:
        >>> from jaxmm.backtest import Quotes, poisson_l2_stream, replay, summary
        >>> ev = poisson_l2_stream(3_000, seed=2)
        >>> def mm(v):
        ...     return Quotes([(v.best_bid, 1)], [(v.best_ask, 1)]) if v.best_bid else None
        >>> m = summary(replay(ev, mm, every=50))
        >>> sorted(m)[:4], m["fills"] > 0
        (['abs_inventory_mean', 'cara_utility', 'certainty_equivalent', 'dt_years'], True)
    """
    import jax.numpy as jnp

    from ..sim import SimResult
    from ..sim import summary as sim_summary

    fr = result.frame
    fills = result.fills
    inst = result.instrument
    n = len(fr) - 1
    if n < 1:
        raise ValueError("result: needs at least two recorded rows (one decision step)")
    t = fr["time"].to_numpy()
    w = fr["pnl"].to_numpy(dtype=np.float64)
    q = fr["position"].to_numpy(dtype=np.float64)
    span = float(t[-1] - t[0])
    dt = span / n / NS_PER_YEAR if span > 0 else 1.0 / NS_PER_YEAR
    r = np.diff(w)
    peak = np.maximum.accumulate(np.concatenate([[0.0], w]))[1:]
    dd = peak - w
    below = w < peak
    dur = 0
    mdur = 0
    for b in below[1:].tolist():
        dur = dur + 1 if b else 0
        mdur = max(mdur, dur)
    step = np.clip(np.searchsorted(t, fills["time"].to_numpy(), side="left") - 1, 0, n - 1)
    side = fills["side"].to_numpy()
    nbf = float(np.unique(step[side == 0]).size)
    naf = float(np.unique(step[side == 1]).size)
    nbq = float(fr["bid_quoted"].to_numpy()[1:].sum())
    naq = float(fr["ask_quoted"].to_numpy()[1:].sum())
    lot = float(inst.lot_size)
    unit = float(inst._notional_unit)
    price = fills["price"].to_numpy(dtype=np.float64)
    lots = fills["qty"].to_numpy(dtype=np.float64)
    mid = fills["mid"].to_numpy(dtype=np.float64)
    edge = np.where(side == 0, mid - price, price - mid)
    spread = float(np.nansum(lots * edge) * unit)
    fees = float(fr["fees"].to_numpy()[-1])
    pnl = float(w[-1])

    def a(x: Any) -> Any:
        return jnp.asarray(np.asarray([x], dtype=np.float64))

    res = SimResult(
        pnl=a(pnl),
        cash=a(fr["cash"].to_numpy()[-1]),
        inventory=a(q[-1]),
        mid=a(fr["mid"].to_numpy()[-1]),
        spread_captured=a(spread),
        inventory_pnl=a(pnl - spread + fees),
        fees=a(fees),
        bid_fills=a(nbf),
        ask_fills=a(naf),
        bid_quoted=a(nbq),
        ask_quoted=a(naq),
        volume=a(lots.sum() * lot),
        step_pnl_sum=a(r.sum()),
        step_pnl_sumsq=a((r * r).sum()),
        step_pnl_downsq=a((np.minimum(r, 0.0) ** 2).sum()),
        max_drawdown=a(dd.max() if dd.size else 0.0),
        max_drawdown_steps=a(mdur),
        abs_inventory_mean=a(np.abs(q[:-1]).mean()),
    )
    m = sim_summary(res, dt=dt, n_steps=n, risk_aversion=risk_aversion)
    out = {k: float(np.asarray(v).reshape(-1)[0]) for k, v in m.items() if k not in _DROP}
    out.update(
        steps=float(n),
        dt_years=dt,
        fills=float(len(fills)),
        volume=float(lots.sum() * lot),
    )
    return out


def summary_frame(result: BacktestResult, **kwargs: Any):
    """:func:`summary` as a one-row ``pandas.DataFrame``.

    Example:
        >>> from jaxmm.backtest import Quotes, poisson_l2_stream, replay, summary_frame
        >>> r = replay(poisson_l2_stream(500, seed=0), lambda v: None, every=100)
        >>> summary_frame(r).shape[0]
        1
    """
    import pandas as pd

    return pd.DataFrame({k: [v] for k, v in summary(result, **kwargs).items()})


def plot(result: BacktestResult, path: Any, *, title: str | None = None) -> Any:
    """Write a PNG (matplotlib, Agg backend): mid with our quotes and fills, position, PnL.

    Returns the path written.

    Example:
        >>> import os, tempfile
        >>> from jaxmm.backtest import Quotes, plot, poisson_l2_stream, replay
        >>> r = replay(poisson_l2_stream(500, seed=0), lambda v: None, every=100)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     os.path.getsize(plot(r, os.path.join(d, "run.png"))) > 0
        True
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fr = result.frame
    fl = result.fills
    tick = float(result.instrument.tick_size)
    t0 = fr["time"].to_numpy()[0] if len(fr) else 0
    ts = (fr["time"].to_numpy() - t0) / 1e9
    fig, ax = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    ax[0].plot(ts, fr["mid"], lw=0.8, color="k", label="mid")
    ax[0].plot(ts, fr["bid"], lw=0.6, color="tab:blue", label="our bid")
    ax[0].plot(ts, fr["ask"], lw=0.6, color="tab:red", label="our ask")
    if len(fl):
        ft = (fl["time"].to_numpy() - t0) / 1e9
        buy = fl["side"].to_numpy() == 0
        px = fl["price"].to_numpy() * tick
        ax[0].scatter(ft[buy], px[buy], s=8, marker="^", color="tab:blue", label="buy fill")
        ax[0].scatter(ft[~buy], px[~buy], s=8, marker="v", color="tab:red", label="sell fill")
    ax[0].set_ylabel("price")
    ax[0].legend(loc="best", fontsize=7)
    ax[1].step(ts, fr["position"], where="post", lw=0.8)
    ax[1].set_ylabel("position")
    ax[2].plot(ts, fr["pnl"], lw=0.8)
    ax[2].set_ylabel("PnL")
    ax[2].set_xlabel("seconds since first decision")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
