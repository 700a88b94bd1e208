"""Fill persistence throughput and fill-to-commit latency, SQLite and PostgreSQL.

Measures, in one run on this machine, on SQLite (file, WAL, synchronous=FULL) and PostgreSQL
(127.0.0.1:5432, database ``test``, a scratch schema):

- **sustained latency** (the headline, the issue's bar): fills arrive at 10,000 per second and
  each is acknowledged by ``FillWriter`` after its commit. Three arrival patterns:
  ``uniform`` — 10 fills every 1 ms (the headline ``*_commit_p50_ms`` / ``*_commit_p99_ms``);
  ``poisson`` — exponential inter-arrival times, mean 100 µs; ``burst`` — 500 fills every 50 ms
  (the 500th fill of a burst waits for the whole burst). The latency of a fill runs from its
  **scheduled** arrival time to the moment its acknowledgement callback runs, so any stall of
  the process (event loop, GC, the load generator falling behind) counts against the writer
  (no coordinated omission). Fills are built when they arrive, as an engine builds them.
- **saturated throughput**: ``--fills`` fills submitted as fast as the queue takes them;
  fills/s from the first submit to the last acknowledgement, and the (queueing-dominated)
  latency from submit to acknowledgement (``*_saturated`` keys).
- **baseline**: a plain raw-driver ``executemany`` of the same rows in batches of 2,000, without
  idempotency (no ON CONFLICT, no RETURNING, no per-fill acknowledgement).

Every scenario runs ``--repeats`` times (default 3); the JSON holds the median of each number and
every run, with the load average (``os.getloadavg``) before each run, the process's GC pauses and
the event loop's lag (a 1 ms ticker's overshoot) during each scenario. Writes
benchmarks/results/store.json and benchmarks/results/store.md. Usage:
``python benchmarks/bench_store.py [--fills 50000] [--seconds 5] [--repeats 3]
[--gc default,freeze]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path

import aiosqlite
import asyncpg
import numpy as np

from jaxmm.store import FillRecord, FillWriter, Store

PG_DSN = os.environ.get("JAXMM_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
PG_URL = "postgresql+asyncpg://" + PG_DSN.split("://", 1)[1]
RESULTS = Path(__file__).parent / "results"
RATE = 10_000.0
PATTERNS = ("uniform", "poisson", "burst")
BACKENDS = ("postgres", "sqlite")
NAMES = (("postgres", "PostgreSQL 15"), ("sqlite", "SQLite (WAL, sync=FULL)"))
GC_MODES = ("default", "freeze")


def make_fill(i: int, tag: str) -> FillRecord:
    """Fill ``i`` of a deterministic stream (price 90.00-109.99, 1-9 lots)."""
    h = (i * 2654435761) & 0xFFFFFFFF
    cents = 9_000 + h % 2_000
    return FillRecord(
        trade_id=f"{tag}-{i}",
        order_id=f"O{i // 4}",
        instrument="BTC-20261225-100000-C",
        side="buy" if i % 2 else "sell",
        price=Decimal(cents) / 100,
        quantity=1 + h % 9,
        fee=Decimal("-0.0125"),
        theo=Decimal(cents) / 100,
        exchange_ts_ns=i,
        local_ts_ns=i,
    )


def make_fills(n: int, tag: str) -> list[FillRecord]:
    return [make_fill(i, tag) for i in range(n)]


def schedule(pattern: str, seconds: float, seed: int) -> np.ndarray:
    """Arrival times (s from the start) of ``RATE`` fills/s for ``seconds``."""
    n = int(RATE * seconds)
    if pattern == "uniform":  # 10 fills every 1 ms
        per = int(RATE / 1000)
        return np.repeat(np.arange(n // per) * 1e-3, per)
    if pattern == "poisson":
        return np.cumsum(np.random.default_rng(seed).exponential(1.0 / RATE, n))
    if pattern == "burst":  # 500 fills every 50 ms
        return np.repeat(np.arange(n // 500) * 0.05, 500)
    raise ValueError(f"pattern: must be one of {PATTERNS}, got {pattern!r}")


class Probe:
    """GC pauses (gc.callbacks) and event-loop lag (a 1 ms ticker's overshoot) while active."""

    def __init__(self):
        self.gc: list[tuple[int, float]] = []
        self.lag: list[float] = []
        self._t = 0.0
        self._task: asyncio.Task | None = None

    def _cb(self, phase, info):
        if phase == "start":
            self._t = time.perf_counter()
        else:
            self.gc.append((info["generation"], time.perf_counter() - self._t))

    async def _tick(self):
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            self.lag.append(time.perf_counter() - t - 0.001)

    def __enter__(self):
        gc.callbacks.append(self._cb)
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *exc):
        gc.callbacks.remove(self._cb)
        self._task.cancel()

    def summary(self) -> dict:
        pauses = [p for _, p in self.gc]
        lag = np.array(self.lag or [0.0]) * 1e3
        return {
            "gc_collections": len(self.gc),
            "gc_gen2_collections": sum(1 for g, _ in self.gc if g == 2),
            "gc_max_pause_ms": max(pauses, default=0.0) * 1e3,
            "loop_lag_p99_ms": float(np.percentile(lag, 99)),
            "loop_lag_max_ms": float(lag.max()),
        }


class Acks:
    """Counts acknowledgements (an engine keeps no list of pending futures either) and writes
    each fill's latency into a preallocated array (no per-fill objects kept alive)."""

    def __init__(self, n: int):
        self.n = n
        self.left = n
        self.all = asyncio.Event()

    def callback(self, lat: np.ndarray, k: int, since: float):
        def cb(fut: asyncio.Future) -> None:
            lat[k] = time.perf_counter() - since
            fut.result()  # a failed commit fails the benchmark
            self.left -= 1
            if not self.left:
                self.all.set()

        return cb


async def bench_sustained(store: Store, pattern: str, seconds: float, tag: str) -> dict:
    """Fills arriving on ``schedule(pattern)``; latency from scheduled arrival to the ack."""
    sched = schedule(pattern, seconds, seed=len(tag))
    n = len(sched)
    lat = np.full(n, np.nan)
    done = Acks(n)
    with Probe() as probe:
        async with FillWriter(store, max_queue=n + 1) as writer:
            t0 = time.perf_counter() + 0.01
            due = sched + t0
            i = 0
            while i < n:
                now = time.perf_counter()
                while i < n and due[i] <= now:
                    writer.submit(make_fill(i, tag)).add_done_callback(
                        done.callback(lat, i, due[i])
                    )
                    i += 1
                if i < n:
                    await asyncio.sleep(max(due[i] - time.perf_counter(), 0.0))
            await done.all.wait()
            stats = writer.stats()
    ms = lat * 1e3
    return {
        "pattern": pattern,
        "fills": n,
        "commit_p50_ms": float(np.percentile(ms, 50)),
        "commit_p99_ms": float(np.percentile(ms, 99)),
        "commit_max_ms": float(ms.max()),
        "mean_batch": stats["mean_batch"],
        "max_commit_ms": stats["max_commit_ms"],
        **probe.summary(),
    }


async def bench_saturated(store: Store, fills: list[FillRecord]) -> dict:
    """Submit everything as fast as the queue takes it; fills/s and submit-to-ack latency."""
    n = len(fills)
    lat = np.full(n, np.nan)
    done = Acks(n)
    with Probe() as probe:
        async with FillWriter(store, max_queue=n + 1) as writer:
            t0 = time.perf_counter()
            for start in range(0, n, 1_000):
                for k in range(start, min(n, start + 1_000)):
                    fut = writer.submit(fills[k])
                    fut.add_done_callback(done.callback(lat, k, time.perf_counter()))
                await asyncio.sleep(0)
            await done.all.wait()
            elapsed = time.perf_counter() - t0
            stats = writer.stats()
    ms = lat * 1e3
    return {
        "fills_per_s": n / elapsed,
        "commit_p50_ms_saturated": float(np.percentile(ms, 50)),
        "commit_p99_ms_saturated": float(np.percentile(ms, 99)),
        "mean_batch_saturated": stats["mean_batch"],
        **{f"{k}_saturated": v for k, v in probe.summary().items()},
    }


def _rows(fills):
    return [
        (
            f.trade_id,
            f.order_id,
            f.instrument,
            f.side,
            f.price,
            Decimal(f.quantity),
            f.fee,
            f.theo,
            None,
            f.exchange_ts_ns,
            f.local_ts_ns,
        )
        for f in fills
    ]


_COLS = (
    "trade_id, order_id, instrument, side, price, quantity, fee, theo, edge, "
    "exchange_ts_ns, local_ts_ns"
)


async def baseline_pg(schema: str, fills, batch=2_000) -> float:
    conn = await asyncpg.connect(PG_DSN, server_settings={"search_path": schema})
    rows = _rows(fills)
    t0 = time.perf_counter()
    for i in range(0, len(rows), batch):
        async with conn.transaction():
            await conn.executemany(
                f"INSERT INTO fills ({_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)",
                rows[i : i + batch],
            )
    dt = time.perf_counter() - t0
    await conn.close()
    return len(rows) / dt


async def baseline_sqlite(path: str, fills, batch=2_000) -> float:
    rows = [tuple(str(x) if isinstance(x, Decimal) else x for x in r) for r in _rows(fills)]
    async with aiosqlite.connect(path) as db:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=FULL")
        t0 = time.perf_counter()
        for i in range(0, len(rows), batch):
            await db.executemany(
                f"INSERT INTO fills ({_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows[i : i + batch]
            )
            await db.commit()
        dt = time.perf_counter() - t0
    return len(rows) / dt


async def one_backend(backend: str, url: str, schema: str | None, args, rep: int) -> dict:
    store = await Store.open(url, migrate=True, schema=schema)
    tag = f"{backend[:2]}{rep}"
    out: dict = {}
    try:
        await bench_saturated(store, make_fills(2_000, f"warm{tag}"))  # connections, caches
        for pattern in PATTERNS:
            r = await bench_sustained(store, pattern, args.seconds, f"{pattern}{tag}")
            out[pattern] = r
        fills = make_fills(args.fills, f"sat{tag}")
        out["saturated"] = await bench_saturated(store, fills)
    finally:
        await store.close()
    return out


async def run_once(args, rep: int) -> dict:
    run: dict = {"load_avg_1_5_15": list(os.getloadavg())}
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    base_schema = f"bench_{uuid.uuid4().hex[:8]}"
    try:
        run["postgres"] = await one_backend("postgres", PG_URL, schema, args, rep)
        s2 = await Store.open(PG_URL, migrate=True, schema=base_schema)
        await s2.close()
        run["postgres"]["baseline_fills_per_s"] = await baseline_pg(
            base_schema, make_fills(args.fills, f"base{rep}")
        )
    finally:
        conn = await asyncpg.connect(PG_DSN)
        for s in (schema, base_schema):
            await conn.execute(f'DROP SCHEMA IF EXISTS "{s}" CASCADE')
        await conn.close()
    with tempfile.TemporaryDirectory() as d:
        run["sqlite"] = await one_backend(
            "sqlite", f"sqlite+aiosqlite:///{d}/b.db", None, args, rep
        )
        s2 = await Store.open(f"sqlite+aiosqlite:///{d}/base.db", migrate=True)
        await s2.close()
        run["sqlite"]["baseline_fills_per_s"] = await baseline_sqlite(
            f"{d}/base.db", make_fills(args.fills, f"base{rep}")
        )
    run["load_avg_after"] = list(os.getloadavg())
    return run


def summarise(runs: list[dict], args, mode: str) -> dict:
    med = statistics.median
    out: dict = {
        "device": f"CPU, {os.cpu_count()} cores ({platform.processor() or platform.machine()})",
        "dtype": "exact decimals (NUMERIC(38,12) / decimal text)",
        "repeats": len(runs),
        "sustained_rate_per_s": RATE,
        "sustained_seconds": args.seconds,
        "headline_pattern": "uniform: 10 fills every 1 ms; latency from scheduled arrival to ack",
        "gc": mode,
        "fills_saturated_run": args.fills,
        "load_avg_1min_before_each_run": [r["load_avg_1_5_15"][0] for r in runs],
    }
    for b in BACKENDS:
        pick = [r[b] for r in runs]
        out[f"{b}_fills_per_s"] = med(p["saturated"]["fills_per_s"] for p in pick)
        out[f"{b}_commit_p50_ms"] = med(p["uniform"]["commit_p50_ms"] for p in pick)
        out[f"{b}_commit_p99_ms"] = med(p["uniform"]["commit_p99_ms"] for p in pick)
        for pattern in ("poisson", "burst"):
            for q in ("p50", "p99"):
                out[f"{b}_commit_{q}_ms_{pattern}"] = med(
                    p[pattern][f"commit_{q}_ms"] for p in pick
                )
        for q in ("p50", "p99"):
            out[f"{b}_commit_{q}_ms_saturated"] = med(
                p["saturated"][f"commit_{q}_ms_saturated"] for p in pick
            )
        out[f"{b}_executemany_baseline_fills_per_s"] = med(p["baseline_fills_per_s"] for p in pick)
    out["runs"] = runs
    return out


def write(out: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "store.json").write_text(json.dumps(out, indent=2))
    loads = ", ".join(f"{x:.2f}" for x in out["load_avg_1min_before_each_run"])
    md = [
        "# Fill persistence (benchmarks/bench_store.py)",
        "",
        f"{out['device']}; median of {out['repeats']} runs (1-min load average before each run:"
        f" {loads}); exact decimals. Sustained load: {out['sustained_rate_per_s']:,.0f} fills/s"
        f" for {out['sustained_seconds']:g} s per pattern; saturated: "
        f"{out['fills_saturated_run']:,} fills. Python's garbage collector as is (rows"
        " 'gc.freeze': the same after `gc.freeze()` of the start-up heap).",
        "",
        "Fill-to-commit latency at 10,000 fills/s (ms, from the fill's scheduled arrival to its"
        " acknowledgement after the commit):",
        "",
        "| backend | uniform p50 | **uniform p99** | Poisson p50 | Poisson p99 | burst p50 |"
        " burst p99 |",
        "|---|---|---|---|---|---|---|",
    ]
    names = [(b, name, "") for b, name in NAMES]
    if "postgres_fills_per_s_gc_freeze" in out:
        names += [(b, f"{name}, gc.freeze", "_gc_freeze") for b, name in NAMES]
    for b, name, sfx in names:
        c = {k: out[f"{b}_commit_{k}_ms{sfx}"] for k in ("p50", "p99")}
        c.update(
            {
                f"{k}_{p}": out[f"{b}_commit_{k}_ms_{p}{sfx}"]
                for k in ("p50", "p99")
                for p in PATTERNS[1:]
            }
        )
        md.append(
            f"| {name} | {c['p50']:.2f} | **{c['p99']:.2f}** | {c['p50_poisson']:.2f} | "
            f"{c['p99_poisson']:.2f} | {c['p50_burst']:.2f} | {c['p99_burst']:.2f} |"
        )
    md += [
        "",
        "Saturated throughput (fills submitted as fast as the queue takes them):",
        "",
        "| backend | jaxmm FillWriter fills/s | executemany baseline fills/s | ratio |"
        " p50 / p99 submit-to-ack (ms) |",
        "|---|---|---|---|---|",
    ]
    for b, name, sfx in names:
        ours = out[f"{b}_fills_per_s{sfx}"]
        base = out[f"{b}_executemany_baseline_fills_per_s{sfx}"]
        md.append(
            f"| {name} | {ours:,.0f} | {base:,.0f} | {ours / base:.2f} | "
            f"{out[f'{b}_commit_p50_ms_saturated{sfx}']:.0f} / "
            f"{out[f'{b}_commit_p99_ms_saturated{sfx}']:.0f} |"
        )
    md += [
        "",
        "Uniform = 10 fills every 1 ms (the headline, `*_commit_p99_ms` in store.json); Poisson ="
        " exponential inter-arrival times; burst = 500 fills every 50 ms, where the 500th fill "
        "of a burst waits for the whole burst. Saturated latency is queueing (a backlog of tens"
        " of thousands of fills). The baseline inserts the same rows with a raw-driver "
        "executemany in batches of 2,000 and no idempotency (no ON CONFLICT, no RETURNING, no "
        "acknowledgement per fill); jaxmm's writer does all three. gc.freeze rows: the same "
        "benchmark after `gc.freeze()` of the start-up heap (~184k objects, JAX included), which"
        " turns the full collections (~70-110 ms pauses here) into a few ms. Per-run numbers, GC"
        " pauses, event-loop lag and load averages: store.json `runs` / `runs_gc_freeze`.",
    ]
    (RESULTS / "store.md").write_text("\n".join(md) + "\n")


async def main(args) -> dict:
    runs: dict[str, list[dict]] = {m: [] for m in args.gc}
    for rep in range(args.repeats):
        for mode in args.gc:
            gc.collect()
            if mode == "freeze":
                gc.freeze()  # the start-up heap (JAX, SQLAlchemy, ...) leaves the GC's scans
            runs[mode].append(await run_once(args, rep))
            gc.unfreeze()
    out = summarise(runs[args.gc[0]], args, args.gc[0])
    for mode in args.gc[1:]:
        extra = summarise(runs[mode], args, mode)
        out.update({f"{k}_gc_{mode}": v for k, v in extra.items() if k.startswith(BACKENDS)})
        out[f"runs_gc_{mode}"] = extra["runs"]
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--fills", type=int, default=50_000, help="fills in the saturated run")
    p.add_argument("--seconds", type=float, default=5.0, help="length of each sustained run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--gc",
        default="default,freeze",
        help="GC modes, comma-separated, the first is the headline: 'default' (Python's GC as"
        " is) and/or 'freeze' (gc.freeze() of the start-up heap, as a latency-sensitive engine"
        " does after start-up)",
    )
    p.add_argument("--no-write", action="store_true", help="print only; keep results/ as is")
    args = p.parse_args()
    args.gc = tuple(args.gc.split(","))
    if not args.gc or any(m not in GC_MODES for m in args.gc):
        p.error(f"--gc: modes must be among {GC_MODES}")
    result = asyncio.run(main(args))
    if not args.no_write:
        write(result)
    brief = {k: v for k, v in result.items() if not k.startswith("runs")}
    print(json.dumps(result if args.no_write else brief, indent=2))
