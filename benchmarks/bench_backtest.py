"""Replay throughput of ``jaxmm.backtest.replay`` (events per second), side by side with
hftbacktest when it is installed.

Stream: a synthetic L2 stream (``poisson_l2_stream``: Poisson market events -> TRADE + DEPTH
rows), constant feed latency 1 us. Strategy: quote 1 lot at the best bid and the best ask,
deciding every ``EVERY`` events seen (and, for the like-for-like comparison with hftbacktest,
every ``interval`` ns = the same mean decision spacing), pessimistic (risk-averse) queue, entry
and response latency 10 us each, maker rebate. ``events/s`` = rows of the stream / wall-clock
seconds of one ``replay`` call (the stream is built beforehand; the result frames are built
inside the call). Best of ``REPEATS`` runs; the 1-minute load average is recorded because the
machine is shared.

Peer: hftbacktest (``pip install hftbacktest``; Rust core, numba strategy loop; not a jaxmm
dependency): the same rows converted to its event format, a HashMap depth, risk-averse queue
model, constant 10 us order latency, the same quoting rule in an ``njit`` loop with
``elapse(interval)``. Its first run includes numba compilation, so it is timed after one
warm-up run.

Run: ``.venv/bin/python benchmarks/bench_backtest.py [n_market_events]``. Writes
``benchmarks/results/backtest.json`` and ``backtest.md``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from jaxmm.backtest import (
    ConstantLatency,
    OptimisticQueue,
    PessimisticQueue,
    ProbabilisticQueue,
    Quotes,
    poisson_l2_stream,
    replay,
)

EVERY = 100
REPEATS = 3
RESULTS = Path(__file__).parent / "results"


def touch_quoter(view):
    if view.best_bid is None or view.best_ask is None:
        return None
    return Quotes([(view.best_bid, 1)], [(view.best_ask, 1)])


def time_replay(ev, **kw) -> tuple[float, float, object]:
    best_wall = best_cpu = float("inf")
    res = None
    for _ in range(REPEATS):
        c0 = time.thread_time()
        t0 = time.perf_counter()
        res = replay(ev, touch_quoter, **kw)
        t1 = time.perf_counter()
        c1 = time.thread_time()
        best_wall = min(best_wall, t1 - t0)
        best_cpu = min(best_cpu, c1 - c0)
    return best_wall, best_cpu, res


def hftbacktest_peer(ev, interval_ns: int) -> dict | None:
    try:
        from importlib.metadata import version

        import hftbacktest as hb
        from hftbacktest import (
            BUY_EVENT,
            DEPTH_EVENT,
            EXCH_EVENT,
            GTX,
            LIMIT,
            LOCAL_EVENT,
            SELL_EVENT,
            TRADE_EVENT,
            BacktestAsset,
            HashMapMarketDepthBacktest,
        )
        from numba import njit
    except ImportError as e:  # not installed: say so in the results
        return {"available": False, "reason": str(e)}

    data = np.zeros(len(ev), hb.binding.event_dtype)
    kind = np.where(ev["kind"] == 0, TRADE_EVENT, DEPTH_EVENT).astype(np.uint64)
    side = np.where(ev["side"] == 0, BUY_EVENT, SELL_EVENT).astype(np.uint64)
    data["ev"] = np.uint64(EXCH_EVENT | LOCAL_EVENT) | kind | side
    data["exch_ts"] = ev["exchange_ts"]
    data["local_ts"] = ev["local_ts"]
    data["px"] = ev["price"] * 0.01
    data["qty"] = ev["qty"].astype(np.float64)

    @njit
    def run(hbt, interval):
        oid = 0
        decisions = 0
        while hbt.elapse(interval) == 0:
            decisions += 1
            hbt.clear_inactive_orders(0)
            d = hbt.depth(0)
            bb = d.best_bid_tick
            ba = d.best_ask_tick
            has_bid = False
            has_ask = False
            values = hbt.orders(0).values()
            while values.has_next():
                o = values.get()
                if o.side == 1:
                    if o.price_tick == bb:
                        has_bid = True
                    elif o.cancellable:
                        hbt.cancel(0, o.order_id, False)
                else:
                    if o.price_tick == ba:
                        has_ask = True
                    elif o.cancellable:
                        hbt.cancel(0, o.order_id, False)
            if not has_bid and bb > 0:
                oid += 1
                hbt.submit_buy_order(0, oid, bb * 0.01, 1.0, GTX, LIMIT, False)
            if not has_ask and ba > 0:
                oid += 1
                hbt.submit_sell_order(0, oid, ba * 0.01, 1.0, GTX, LIMIT, False)
        return decisions, hbt.state_values(0).num_trades

    def build():
        asset = (
            BacktestAsset()
            .data(data)
            .linear_asset(1.0)
            .constant_order_latency(10_000, 10_000)
            .risk_adverse_queue_model()
            .no_partial_fill_exchange()
            .trading_value_fee_model(-0.00002, 0.0)
            .tick_size(0.01)
            .lot_size(1.0)
        )
        return HashMapMarketDepthBacktest([asset])

    hbt = build()
    run(hbt, interval_ns)  # warm-up: numba compilation
    hbt.close()
    best = float("inf")
    decisions = trades = 0
    for _ in range(REPEATS):
        hbt = build()
        t0 = time.perf_counter()
        decisions, trades = run(hbt, interval_ns)
        t1 = time.perf_counter()
        hbt.close()
        best = min(best, t1 - t0)
    return {
        "available": True,
        "version": version("hftbacktest"),
        "wall_s": best,
        "events_per_s": len(ev) / best,
        "decisions": int(decisions),
        "fills": int(trades),
        "note": "build of the asset (data copy) excluded; elapse(interval) decision loop",
    }


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500_000
    t0 = time.perf_counter()
    ev = poisson_l2_stream(n, rate=1_000.0, seed=0, feed_latency_ns=1_000)
    gen_s = time.perf_counter() - t0
    rows = len(ev)
    span = int(ev["exchange_ts"][-1] - ev["exchange_ts"][0])
    interval = int(span / (rows / EVERY))
    common = dict(
        entry_latency=ConstantLatency(10_000),
        response_latency=ConstantLatency(10_000),
        maker_fee_bps=-0.2,
        max_position=10.0,
    )
    runs = {}
    for name, q, kw in (
        ("pessimistic, every 100 events", PessimisticQueue(), {"every": EVERY}),
        ("probabilistic n=2, every 100 events", ProbabilisticQueue(2.0), {"every": EVERY}),
        ("optimistic, every 100 events", OptimisticQueue(), {"every": EVERY}),
        ("pessimistic, every 10 events", PessimisticQueue(), {"every": 10}),
        ("pessimistic, interval (= hftbacktest)", PessimisticQueue(), {"interval_ns": interval}),
    ):
        wall, cpu, res = time_replay(ev, queue=q, **common, **kw)
        runs[name] = {
            "wall_s": wall,
            "thread_cpu_s": cpu,
            "events_per_s": rows / wall,
            "events_per_cpu_s": rows / cpu,
            "decisions": res.stats["decisions"],
            "fills": res.stats["fills"],
            "final_pnl": float(res.frame["pnl"].iloc[-1]),
        }
        print(
            f"{name:40s} {rows / wall:12,.0f} ev/s  (cpu {rows / cpu:12,.0f})  "
            f"fills {res.stats['fills']}"
        )
    peer = hftbacktest_peer(ev, interval)
    if peer and peer.get("available"):
        print(
            f"{'hftbacktest ' + peer['version']:40s} {peer['events_per_s']:12,.0f} ev/s"
            f"  fills {peer['fills']}"
        )
    load = os.getloadavg()
    main_run = runs["pessimistic, every 100 events"]
    out = {
        "replay_events_per_s": main_run["events_per_s"],
        "bar_events_per_s": 200_000,
        "rows": rows,
        "market_events": n,
        "generate_s": gen_s,
        "runs": runs,
        "peer_hftbacktest": peer,
        "load_average_1m_5m_15m": list(load),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "repeats": REPEATS,
    }
    if peer and peer.get("available"):
        out["ratio_vs_hftbacktest_same_interval"] = (
            runs["pessimistic, interval (= hftbacktest)"]["events_per_s"] / peer["events_per_s"]
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "backtest.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        "# Replay throughput (`benchmarks/bench_backtest.py`)",
        "",
        f"L2 stream: {n:,} Poisson market events -> {rows:,} rows (TRADE + DEPTH); strategy "
        "quotes 1 lot at the touch; entry / response latency 10 us; maker rebate 0.2 bp; "
        f"best of {REPEATS}; CPU, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min).",
        "",
        "| run | events/s (wall) | events/s (thread CPU) | decisions | fills |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in runs.items():
        lines.append(
            f"| jaxmm {name} | {r['events_per_s']:,.0f} | {r['events_per_cpu_s']:,.0f} | "
            f"{r['decisions']:,} | {r['fills']:,} |"
        )
    if peer and peer.get("available"):
        lines.append(
            f"| hftbacktest {peer['version']} (Rust + numba), same interval | "
            f"{peer['events_per_s']:,.0f} | - | {peer['decisions']:,} | {peer['fills']:,} |"
        )
        lines += [
            "",
            f"jaxmm / hftbacktest at the same decision interval: "
            f"{out['ratio_vs_hftbacktest_same_interval']:.2f}x. The bar is >= 200,000 events/s "
            f"(jaxmm, pessimistic, every 100 events: {main_run['events_per_s']:,.0f}).",
        ]
    else:
        lines += ["", f"hftbacktest not available: {peer}"]
    (RESULTS / "backtest.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
