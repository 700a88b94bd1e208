"""``make demo``: the whole product on one machine, finishing by itself.

Run with ``python -m jaxmm.demo [--seconds S] [--port P] [--out DIR] ...``. Three parts:

1. **kernels** (a few seconds): a synthetic 5-expiry x 50-strike x call/put chain priced with
   12 autodiff Greeks, its implied vols solved back, a short table and the timings;
2. **live market maker** for a bounded wall-clock time (default 60 s): the options market maker
   (:class:`jaxmm.engine.OptionsMarketMaker`, config :meth:`MarketMakerConfig.demo
   <jaxmm.engine.MarketMakerConfig.demo>`: BTC-like and SPX-like chains) quotes on the in-process
   books of a simulated market (:class:`jaxmm.feeds.SimulatedFeed` paced at
   ``STEPS_PER_SECOND`` steps per wall-clock second, so one simulated second is one real
   second) while :class:`jaxmm.engine.SimulatedTraders` trade against it; every fill is written
   to a fresh SQLite store (``DIR/jaxmm-demo.db``, migrated on open) unless ``--db URL`` names
   another; meanwhile the REST API, WebSocket stream and browser console
   (:func:`jaxmm.api.create_app`) are served by uvicorn in the same event loop on
   ``--host:--port`` (a free port chosen by the system when that one is taken), and the
   console URL with a ``read trade admin`` token in ``?token=`` is printed;
3. **summary and report**: quotes sent, fills (from the engine, and counted back from the
   store), PnL and its attribution, Greeks against limits, refresh latency p50/p95/p99, written
   with plots (PnL and attribution over time, Greeks against limits, fills per instrument,
   latency histogram) and ``summary.json`` under ``DIR`` (default ``demo-output/``).

Settings: flags override the environment (``JAXMM_DEMO_SECONDS``, ``JAXMM_DEMO_PORT``,
``JAXMM_DEMO_HOST``, ``JAXMM_DEMO_OUT``, ``JAXMM_DEMO_DB``, ``JAXMM_DEMO_SEED``,
``JAXMM_DEMO_PRICING=0`` to skip part 1), which override the defaults. The API's signing
secret is ``JAXMM_JWT_SECRET`` when set, else a random one made for this run (never written
anywhere); ``JAXMM_AUTH_DISABLED=1`` runs the API in local mode (no token).

Ctrl-C (or SIGTERM) ends the live part early and cleanly (quotes cancelled, store flushed and
closed, summary and report written; exit status 0); a second Ctrl-C abandons the summary
(status 130). Part 2 is :func:`jaxmm._live.run_live`, the wiring ``jaxmm serve`` runs too.
Without the ``api`` extra (FastAPI, uvicorn) the demo says so and runs without a server;
without the ``store`` extra it runs without a store; without matplotlib the report has no
plots. The demo is an application: it turns on float64 for its own process.
Details: ``docs/demo.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import secrets
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._live import bind_socket

__all__ = [
    "DemoError",
    "DemoOptions",
    "LiveRun",
    "bind_socket",
    "format_summary",
    "main",
    "parse_options",
    "pricing_section",
    "run_live",
    "summary_dict",
    "write_report",
]

DEFAULT_SECONDS = 60.0
DEFAULT_PORT = 8000
DEFAULT_HOST = "127.0.0.1"
DEFAULT_OUT = "demo-output"
DB_NAME = "jaxmm-demo.db"
STEPS_PER_SECOND = 10  # market steps per wall-clock second (1 simulated s = 1 real s)
SURFACE_EVERY = 5  # market steps between surface updates
TAKER_INTENSITY = 0.2  # taker arrivals / s / side / option book at zero distance from fair
SAMPLE_EVERY_S = 0.5  # time-series sampling period of the report
PROGRESS_EVERY_S = 10.0
_SECONDS_PER_YEAR = 365 * 86_400
_GREEKS = ("delta", "gamma", "vega", "theta")
_ATTRIBUTION = ("spread", "delta", "gamma", "vega", "theta", "residual")

# --------------------------------------------------------------------------------- part 1
SPOT = 100.0
RATE = 0.03
DIVIDEND = 0.01
EXPIRY_DAYS = (7, 30, 91, 182, 365)
N_STRIKES = 50


def synthetic_chain():
    """Strikes x expiries x (call, put) with a skewed smile that flattens with maturity.

    Example:
        >>> strike, expiry, vol, is_call = synthetic_chain()
        >>> strike.shape
        (5, 50, 2)
    """
    import jax.numpy as jnp

    import jaxmm.pricing as jp

    expiry = jnp.asarray([jp.year_fraction(d) for d in EXPIRY_DAYS])[:, None, None]
    strike = jnp.linspace(0.6 * SPOT, 1.4 * SPOT, N_STRIKES)[None, :, None]
    is_call = jnp.asarray([True, False])[None, None, :]
    forward = SPOT * jnp.exp((RATE - DIVIDEND) * expiry)
    k = jnp.log(strike / forward) / jnp.sqrt(expiry)  # moneyness per sqrt(year)
    vol = 0.18 + 0.02 * jnp.exp(-4.0 * expiry) - 0.06 * k + 0.05 * k * k
    shape = (len(EXPIRY_DAYS), N_STRIKES, 2)
    return (
        jnp.broadcast_to(strike, shape),
        jnp.broadcast_to(expiry, shape),
        jnp.broadcast_to(vol, shape),
        jnp.broadcast_to(is_call, shape),
    )


def _time(fn, repeats=20):
    import jax

    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        samples.append(time.perf_counter() - t0)
    return first, statistics.median(samples)


def pricing_section(say: Callable[[str], Any] = print) -> dict[str, float]:
    """Part 1: price the synthetic chain with 12 Greeks, solve the IVs back, print a short
    table (ATM +- 3 strikes per expiry) and the timings. Returns the timings (seconds) and the
    largest IV round-trip error where vega is informative.

    Example:
        >>> r = pricing_section(say=lambda s: None)   # doctest: +SKIP
        >>> r["iv_max_error"] < 1e-9                   # doctest: +SKIP
        True
    """
    import jax
    import numpy as np

    import jaxmm.pricing as jp

    strike, expiry, vol, is_call = synthetic_chain()
    n = strike.size
    say(
        f"chain: {len(EXPIRY_DAYS)} expiries x {N_STRIKES} strikes x call/put = {n} options, "
        f"S={SPOT}, r={RATE}, q={DIVIDEND}, {jax.numpy.asarray(0.0).dtype}\n"
    )

    def price_chain():
        return jp.bsm_greeks(SPOT, strike, expiry, RATE, DIVIDEND, vol, is_call)

    first_g, steady_g = _time(price_chain)
    greeks = price_chain()

    def solve_iv():
        return jp.implied_vol(greeks.price, SPOT, strike, expiry, RATE, DIVIDEND, is_call)

    first_iv, steady_iv = _time(solve_iv)
    iv, status = solve_iv()
    desk = jp.to_desk_units(greeks)
    header = (
        f"{'T(d)':>5} {'K':>7} {'vol':>6} {'call':>9} {'put':>9} {'c.delta':>8} "
        f"{'gamma':>8} {'vega/pt':>8} {'theta/d':>8} {'vanna':>8} {'IV back':>8} status"
    )
    say(header)
    say("-" * len(header))
    atm = int(np.argmin(np.abs(np.asarray(strike[0, :, 0]) - SPOT)))
    for e, days in enumerate(EXPIRY_DAYS):
        for j in (atm - 3, atm, atm + 3):
            c, p = (e, j, 0), (e, j, 1)
            say(
                f"{days:>5} {float(strike[c]):>7.2f} {float(vol[c]):>6.3f} "
                f"{float(greeks.price[c]):>9.4f} {float(greeks.price[p]):>9.4f} "
                f"{float(greeks.delta[c]):>8.4f} {float(greeks.gamma[c]):>8.5f} "
                f"{float(desk.vega[c]):>8.4f} {float(desk.theta[c]):>8.4f} "
                f"{float(greeks.vanna[c]):>8.4f} {float(iv[c]):>8.5f} "
                f"{jp.IVStatus(int(status[c])).name}"
            )
    ok = np.asarray(status) == int(jp.IVStatus.OK)
    # vega is informative where vega >= 1e-3 x price (docs/pricing.md): there a price rounded
    # to ~1e-16 relative pins sigma to ~1e-13; elsewhere sigma only reprices the input.
    informative = ok & (np.asarray(greeks.vega) >= 1e-3 * np.asarray(greeks.price))
    err = np.abs(np.asarray(iv) - np.asarray(vol))
    max_err = float(err[informative].max())
    say(
        f"\nimplied vol round trip: max |error| {max_err:.2e} over {int(informative.sum())} "
        f"options with informative vega ({int(ok.sum())}/{n} status OK)"
    )
    say(
        f"price + 12 Greeks, {n} options: first call {first_g * 1e3:.0f} ms (compile), steady "
        f"{steady_g * 1e6:.0f} us; implied vol: first {first_iv * 1e3:.0f} ms, steady "
        f"{steady_iv * 1e6:.0f} us (wall clock, this machine)"
    )
    return {
        "greeks_first_s": first_g,
        "greeks_steady_s": steady_g,
        "iv_first_s": first_iv,
        "iv_steady_s": steady_iv,
        "iv_max_error": max_err,
    }


# --------------------------------------------------------------------------------- options
class DemoError(ValueError):
    """A setting the demo cannot run with (printed as ``jaxmm.demo: error: ...``, status 2)."""


@dataclass(frozen=True)
class DemoOptions:
    """Settings of one demo run (see :func:`parse_options`).

    Attributes:
        seconds: wall-clock length of the live part (> 0, <= 86400).
        port: preferred API port (0..65535; 0 = any free port); a free one if taken.
        host: interface the API listens on (default loopback only).
        out: output folder (report, plots, ``summary.json``, the default SQLite file).
        db: store URL, or None for a fresh ``out/jaxmm-demo.db``.
        seed: seed of the simulated market (traders: ``seed + 1``).
        pricing: run part 1 (the pricing kernels table).
        serve: serve the API and console during the live part.
    """

    seconds: float = DEFAULT_SECONDS
    port: int = DEFAULT_PORT
    host: str = DEFAULT_HOST
    out: Path = Path(DEFAULT_OUT)
    db: str | None = None
    seed: int = 0
    pricing: bool = True
    serve: bool = True

    def __post_init__(self) -> None:
        if not (isinstance(self.seconds, int | float) and math.isfinite(self.seconds)):
            raise ValueError(f"seconds: must be a finite number, got {self.seconds!r}")
        if not 0 < self.seconds <= 86_400:
            raise ValueError(f"seconds: must be in (0, 86400], got {self.seconds!r}")
        if type(self.port) is not int or not 0 <= self.port <= 65_535:
            raise ValueError(f"port: must be an int in [0, 65535], got {self.port!r}")
        if not isinstance(self.host, str) or not self.host:
            raise ValueError(f"host: must be a non-empty string, got {self.host!r}")
        if type(self.seed) is not int or self.seed < 0:
            raise ValueError(f"seed: must be an int >= 0, got {self.seed!r}")


def _env_bool(name: str, value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}: must be 1/0, true/false, yes/no or on/off, got {value!r}")


def _env_number(name: str, value: str, kind: type) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"{name}: must be {kind.__name__}, got {value!r}") from None


def parse_options(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> DemoOptions:
    """Demo settings from command-line flags, then ``JAXMM_DEMO_*`` variables, then defaults.

    Raises ``ValueError`` naming the flag or variable for a bad value.

    Example:
        >>> o = parse_options(["--seconds", "5"], env={"JAXMM_DEMO_PORT": "0"})
        >>> o.seconds, o.port, str(o.out), o.pricing
        (5.0, 0, 'demo-output', True)
        >>> parse_options([], env={"JAXMM_DEMO_SECONDS": "-1"})
        Traceback (most recent call last):
        ...
        ValueError: seconds: must be in (0, 86400], got -1.0
    """
    env = os.environ if env is None else env
    p = argparse.ArgumentParser(prog="python -m jaxmm.demo", description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, help="live part, wall-clock seconds (default 60)")
    p.add_argument("--port", type=int, help="API port (default 8000; a free one if taken)")
    p.add_argument("--host", help="API interface (default 127.0.0.1)")
    p.add_argument("--out", help="output folder (default demo-output)")
    p.add_argument("--db", help="store URL (default: a fresh SQLite file in the output folder)")
    p.add_argument("--seed", type=int, help="seed of the simulated market (default 0)")
    p.add_argument("--no-pricing", action="store_true", help="skip the pricing kernels table")
    p.add_argument("--no-serve", action="store_true", help="do not serve the API and console")
    a = p.parse_args(list(argv) if argv is not None else None)

    def pick(flag: Any, var: str, kind: type, default: Any) -> Any:
        if flag is not None:
            return flag
        if env.get(var, "").strip():
            return _env_number(var, env[var].strip(), kind) if kind is not str else env[var]
        return default

    pricing = not a.no_pricing
    if pricing and env.get("JAXMM_DEMO_PRICING", "").strip():
        pricing = _env_bool("JAXMM_DEMO_PRICING", env["JAXMM_DEMO_PRICING"])
    serve = not a.no_serve
    if serve and env.get("JAXMM_DEMO_SERVE", "").strip():
        serve = _env_bool("JAXMM_DEMO_SERVE", env["JAXMM_DEMO_SERVE"])
    return DemoOptions(
        seconds=float(pick(a.seconds, "JAXMM_DEMO_SECONDS", float, DEFAULT_SECONDS)),
        port=pick(a.port, "JAXMM_DEMO_PORT", int, DEFAULT_PORT),
        host=pick(a.host, "JAXMM_DEMO_HOST", str, DEFAULT_HOST),
        out=Path(pick(a.out, "JAXMM_DEMO_OUT", str, DEFAULT_OUT)),
        db=pick(a.db, "JAXMM_DEMO_DB", str, None),
        seed=pick(a.seed, "JAXMM_DEMO_SEED", int, 0),
        pricing=pricing,
        serve=serve,
    )


# --------------------------------------------------------------------------------- part 2
@dataclass
class LiveRun:
    """What the live part produced: the engine's final views, the time series sampled every
    ``SAMPLE_EVERY_S`` seconds and the refresh latencies (ns) of the engine's window (the
    samples its p50/p95/p99 describe)."""

    seconds_planned: float
    seconds_run: float = 0.0
    interrupted: bool = False
    stats: dict = field(default_factory=dict)
    pnl: dict = field(default_factory=dict)
    greeks: dict = field(default_factory=dict)
    risk: dict = field(default_factory=dict)
    positions: list = field(default_factory=list)
    fills_by_instrument: dict = field(default_factory=dict)
    samples: list = field(default_factory=list)
    latency_ns: list = field(default_factory=list)
    db_url: str | None = None
    db_path: str | None = None
    stored_fills: int | None = None
    url: str | None = None
    token: str | None = None
    api_error: str | None = None
    store_error: str | None = None
    quotes_live_at_end: int = 0


def _sample(mm: Any, t: float, fills: int) -> dict:
    pnl = mm.pnl()
    risk = mm.risk()
    greeks = mm.greeks()
    return {
        "t": t,
        "pnl": {k: pnl[k] for k in ("realised", "unrealised", "fees", "total")},
        "attribution": dict(pnl["attribution"]),
        "greeks": {u: dict(g) for u, g in greeks["by_underlying"].items()},
        "greeks_total": dict(greeks["total"]),
        "utilisation": {k: dict(v) for k, v in risk["utilisation"].items()},
        "fills": fills,
    }


def _api_settings(env: Mapping[str, str] | None = None) -> Any:
    """The API settings of this run (:class:`jaxmm.api.ApiSettings` from the ``JAXMM_*``
    environment, with a random signing secret made for this run when ``JAXMM_JWT_SECRET`` is
    not set), or a string saying why there is no server (the api extra is missing).
    Raises :class:`DemoError` naming a bad setting."""
    try:
        import uvicorn  # noqa: F401

        from jaxmm.api import ApiSettings
    except ImportError as exc:
        return (
            f"the API/console modules are not importable ({exc}); install the api extra "
            "(pip install -e '.[api,store]') to serve them. Continuing without a server."
        )
    env = dict(os.environ if env is None else env)
    if not env.get("JAXMM_JWT_SECRET", "").strip():
        env["JAXMM_JWT_SECRET"] = secrets.token_urlsafe(48)  # this run only, never stored
    try:
        return ApiSettings.load(env=env)
    except ValueError as exc:  # a bad JAXMM_* variable or settings file: name it
        raise DemoError(f"api settings: {exc}") from None


async def run_live(opts: DemoOptions, say: Callable[[str], Any] = print) -> LiveRun:
    """Part 2: the market maker on the simulated market for ``opts.seconds`` wall-clock
    seconds, with the SQLite store and the API/console served meanwhile (module docstring;
    the wiring is :func:`jaxmm._live.run_live`, shared with ``jaxmm serve``).

    Returns the :class:`LiveRun` (the engine's views after it stopped: quotes cancelled, the
    store flushed, the fills counted back from it). The first Ctrl-C (SIGINT) or SIGTERM ends
    the run early and cleanly; a second Ctrl-C abandons it (``asyncio.CancelledError``).

    Example:
        >>> import asyncio, tempfile
        >>> o = DemoOptions(seconds=2.0, out=Path(tempfile.mkdtemp()), pricing=False,
        ...                 serve=False)
        >>> run = asyncio.run(run_live(o, say=lambda s: None))   # doctest: +SKIP
        >>> run.stats["ticks"] > 0, run.stored_fills == run.stats["fills"] + run.stats[
        ...     "hedge_fills"]                                     # doctest: +SKIP
        (True, True)
    """
    from jaxmm._live import run_live as live
    from jaxmm.engine import MarketMakerConfig

    run = LiveRun(seconds_planned=opts.seconds)
    config = MarketMakerConfig.demo()
    # API settings checked before anything starts (a bad one: status 2, no engine)
    settings = None
    if opts.serve:
        got = _api_settings()
        if isinstance(got, str):
            run.api_error = got
            say(f"API/console: {got}")
        else:
            settings = got
    else:
        run.api_error = "not served (--no-serve)"
    opts.out.mkdir(parents=True, exist_ok=True)

    # --- store: a fresh SQLite file in the output folder unless --db names one
    store = None
    try:
        from jaxmm.store import Store
    except ImportError as exc:
        run.store_error = f"store not available ({exc}); install the store extra"
        say(f"store: {run.store_error}; running without a store")
    else:
        if opts.db is None:
            path = (opts.out / DB_NAME).resolve()
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            run.db_path = str(path)
            run.db_url = f"sqlite+aiosqlite:///{path}"
        else:
            run.db_url = opts.db
        try:
            store = await Store.open(run.db_url, migrate=True)
        except Exception as exc:  # a bad URL or an unreachable server: say which, no traceback
            raise DemoError(f"db: cannot open {_redact(run.db_url)}: {exc}") from None
        say(f"store: {_redact(run.db_url)} (migrated to head)")
    t_run0 = time.time_ns()
    n_opt = sum(len(u.symbols()) for u in config.underlyings)
    say(
        f"market maker: {', '.join(u.symbol for u in config.underlyings)} chains, {n_opt} "
        f"option books + {len(config.underlyings)} underlying books; warming up the JIT ..."
    )
    fills_by: Counter[str] = Counter()
    t0 = time.perf_counter()
    next_progress = PROGRESS_EVERY_S

    def on_fill(ev: Any) -> None:
        fills_by[str(ev.instrument)] += 1

    def on_ready(s: Any) -> None:
        s.engine.events.add_callback(on_fill, ("order_filled",))
        say(f"engine started ({time.perf_counter() - t0:.1f} s)")
        if s.port_moved:
            say(f"port {opts.port} on {opts.host} is taken: using free port {s.port}")
        if s.url is not None:
            run.url, run.token = s.url, s.token
            say(f"console: {s.url}")
            if s.token:
                say(f"token (read trade admin, subject 'demo'): {s.token}")
            else:
                say("API: LOCAL MODE, authentication disabled (JAXMM_AUTH_DISABLED)")
            say(f"API docs: {s.base_url}docs   health: {s.base_url}api/v1/health")
        say(f"running for {opts.seconds:g} s (Ctrl-C to stop early) ...")

    def on_sample(s: Any, t: float) -> None:
        nonlocal next_progress
        mm = s.engine
        run.samples.append(_sample(mm, t, sum(fills_by.values())))
        if t >= next_progress:
            st, p = mm.stats(), mm.pnl()
            say(
                f"  t={t:5.1f} s  ticks {st['ticks']:.0f}  orders {st['orders_sent']:.0f}  "
                f"fills {st['fills']:.0f} (+{st['hedge_fills']:.0f} hedge)  PnL "
                f"{p['total']:+.2f}"
            )
            next_progress += PROGRESS_EVERY_S

    def on_signal(s: Any, name: str) -> None:
        what = "Ctrl-C" if name == "SIGINT" else name
        say(f"\n{what}: stopping (quotes cancelled, store flushed); Ctrl-C again to abandon")

    try:
        s = await live(
            config, seconds=opts.seconds, seed=opts.seed, store=store, settings=settings,
            host=opts.host, port=opts.port, port_fallback=True, on_ready=on_ready,
            on_sample=on_sample, sample_every=SAMPLE_EVERY_S, on_signal=on_signal,
            steps_per_second=STEPS_PER_SECOND, surface_every=SURFACE_EVERY,
            taker_intensity=TAKER_INTENSITY, token_subject="demo",
        )  # fmt: skip
        # the engine has stopped and flushed its writer: count this run's fills back
        if store is not None:
            got_fills = await store.get_fills(limit=1_000_000)
            run.stored_fills = sum(1 for f in got_fills if f.local_ts_ns >= t_run0)
    finally:
        if store is not None:
            await store.close()
    mm = s.engine
    run.seconds_run = s.seconds_run
    run.interrupted = s.interrupted
    run.samples.append(_sample(mm, run.seconds_run, sum(fills_by.values())))
    run.stats = mm.stats()
    run.pnl = mm.pnl()
    run.greeks = mm.greeks()
    run.risk = mm.risk()
    run.positions = mm.positions()
    run.quotes_live_at_end = sum(
        1 for q in mm.quotes() if q["bid_size"] > 0 or q["ask_size"] > 0
    )  # fmt: skip
    run.fills_by_instrument = dict(sorted(fills_by.items()))
    run.latency_ns = mm.latency.samples("refresh")
    return run


def _redact(url: str) -> str:
    head, sep, tail = url.partition("@")
    if not sep or "://" not in head:
        return url
    scheme, _, cred = head.partition("://")
    user = cred.split(":", 1)[0]
    return f"{scheme}://{user}:***@{tail}" if ":" in cred else url


# --------------------------------------------------------------------------------- part 3
def _pct(xs: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (the engine's LatencyTracker convention)."""
    s = sorted(xs)
    return float(s[max(math.ceil(p / 100 * len(s)), 1) - 1]) if s else 0.0


def summary_dict(run: LiveRun) -> dict:
    """The run's numbers as plain JSON (what ``summary.json`` holds and the report shows).

    Example:
        >>> d = summary_dict(LiveRun(seconds_planned=1.0))
        >>> d["fills"]["total"], d["positions"]
        (0.0, [])
    """
    s = run.stats
    lat = s.get("refresh_latency_us", {})
    limits = run.risk.get("limits", {})
    greeks = run.greeks.get("by_underlying", {})
    rows = []
    for u, lim in limits.items():
        if u == "total":  # total limits are in the common currency (docs/multi_underlying.md)
            td = run.risk.get("total_greeks", {})
            g = {"delta": td.get("dollar_delta", 0.0), "gamma": td.get("dollar_gamma", 0.0),
                 "vega": td.get("vega", 0.0), "theta": td.get("theta", 0.0)}  # fmt: skip
        else:
            g = greeks.get(u, {})
        util = run.risk.get("utilisation", {}).get(u, {})
        for k in _GREEKS:
            if k in lim:
                peak = max((x["utilisation"].get(u, {}).get(k, 0.0) for x in run.samples),
                           default=0.0)  # fmt: skip
                rows.append(
                    {"scope": u, "greek": k, "value": float(g.get(k, 0.0)),
                     "limit": float(lim[k]), "utilisation": float(util.get(k, 0.0)),
                     "peak_utilisation": float(peak)}
                )  # fmt: skip
    return {
        "seconds_planned": run.seconds_planned,
        "seconds_run": run.seconds_run,
        "interrupted": run.interrupted,
        "ticks": float(s.get("ticks", 0.0)),
        "quotes": {
            "requotes": float(s.get("requotes", 0.0)),
            "orders_sent": float(s.get("orders_sent", 0.0)),
            "rejects": float(s.get("rejects", 0.0)),
            "live_at_end": run.quotes_live_at_end,
        },
        "fills": {
            "options": float(s.get("fills", 0.0)),
            "hedges": float(s.get("hedge_fills", 0.0)),
            "total": float(s.get("fills", 0.0) + s.get("hedge_fills", 0.0)),
            "stored": run.stored_fills,
            "by_instrument": run.fills_by_instrument,
        },
        "hedge_orders": float(s.get("hedges", 0.0)),
        "pnl": {k: run.pnl.get(k, 0.0) for k in ("realised", "unrealised", "fees", "total")},
        "attribution": dict(run.pnl.get("attribution", {})),
        "greeks": rows,
        "breakers": dict(run.risk.get("breakers", {})),
        "alerts": len(run.risk.get("alerts", [])),
        "refresh_latency_us": {k: float(lat.get(k, 0.0)) for k in ("p50", "p95", "p99")}
        | {"count": float(lat.get("count", 0.0))},
        "positions": run.positions,
        "store": {"url": _redact(run.db_url) if run.db_url else None, "path": run.db_path},
        "api": {"served": run.url is not None, "why_not": run.api_error},
    }


def format_summary(d: dict) -> str:
    """The printed summary of :func:`summary_dict`'s numbers.

    Example:
        >>> text = format_summary(summary_dict(LiveRun(seconds_planned=1.0)))
        >>> text.splitlines()[0]
        'summary after 0.0 s: 0 underlying ticks'
    """
    f, q, p, a, lat = d["fills"], d["quotes"], d["pnl"], d["attribution"], d["refresh_latency_us"]
    why = " (stopped by Ctrl-C)" if d["interrupted"] else ""
    lines = [
        f"summary after {d['seconds_run']:.1f} s{why}: {d['ticks']:.0f} underlying ticks",
        f"  quotes sent: {q['orders_sent']:.0f} order actions over {q['requotes']:.0f} "
        f"requotes ({q['rejects']:.0f} rejected); all cancelled at stop "
        f"({q['live_at_end']} left resting)",
    ]
    stored = "no store" if f["stored"] is None else f"{f['stored']} stored in the fill log"
    lines.append(
        f"  fills: {f['options']:.0f} option fills + {f['hedges']:.0f} hedge fills "
        f"({d['hedge_orders']:.0f} hedge orders) = {f['total']:.0f}; {stored}"
    )
    if f["stored"] is not None and f["stored"] != f["total"]:
        lines.append("  WARNING: the store does not hold every fill the engine counted")
    lines.append(
        f"  PnL: total {p['total']:+.2f} = realised {p['realised']:+.2f} + unrealised "
        f"{p['unrealised']:+.2f} - fees {p['fees']:.2f}"
    )
    lines.append("  attribution: " + ", ".join(f"{k} {a.get(k, 0.0):+.2f}" for k in _ATTRIBUTION))
    lines.append("  Greeks against limits (raw units; utilisation now / peak):")
    for r in d["greeks"]:
        lines.append(
            f"    {r['scope']:>5} {r['greek']:<5} {r['value']:>+12.3f}  limit {r['limit']:>9g}"
            f"  {100 * r['utilisation']:5.1f}% / {100 * r['peak_utilisation']:5.1f}%"
        )
    lines.append(
        f"  refresh latency (tick in -> orders at the venue): p50 {lat['p50']:.0f} us, "
        f"p95 {lat['p95']:.0f} us, p99 {lat['p99']:.0f} us over {lat['count']:.0f} refreshes"
    )
    br = ", ".join(f"{u} {s}" for u, s in d["breakers"].items())
    lines.append(f"  breakers: {br or '-'}; alerts: {d['alerts']}")
    return "\n".join(lines)


def _plots(run: LiveRun, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    made = []
    t = np.array([s["t"] for s in run.samples])
    # PnL over time and its attribution
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    for k in ("total", "realised", "unrealised"):
        ax1.plot(t, [s["pnl"][k] for s in run.samples], label=k)
    ax1.set_ylabel("PnL (currency)")
    ax1.set_title("PnL over time")
    ax1.legend(loc="best")
    ax1.grid(alpha=0.3)
    for k in _ATTRIBUTION:
        ax2.plot(t, [s["attribution"].get(k, 0.0) for s in run.samples], label=k)
    ax2.set_xlabel("seconds since start")
    ax2.set_ylabel("cumulative (currency)")
    ax2.set_title("PnL attribution")
    ax2.legend(loc="best", ncol=3)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    made.append(out / "pnl.png")
    fig.savefig(made[-1], dpi=90)
    plt.close(fig)
    # Greeks against limits: |Greek| / limit over time, per underlying and total
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
    scopes = list(run.risk.get("limits", {}))
    for ax, g in zip(axes.ravel(), _GREEKS, strict=True):
        for u in scopes:
            if g in run.risk["limits"][u]:
                ys = [100 * s["utilisation"].get(u, {}).get(g, 0.0) for s in run.samples]
                ax.plot(t, ys, label=u)
        ax.axhline(100.0, color="red", linestyle="--", linewidth=1, label="limit")
        ax.set_title(f"|{g}| / limit")
        ax.set_ylabel("% of limit")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    for ax in axes[1]:
        ax.set_xlabel("seconds since start")
    fig.tight_layout()
    made.append(out / "greeks.png")
    fig.savefig(made[-1], dpi=90)
    plt.close(fig)
    # fills per instrument
    items = sorted(run.fills_by_instrument.items(), key=lambda kv: (-kv[1], kv[0]))[:40]
    fig, ax = plt.subplots(figsize=(9, max(3.0, 0.22 * len(items) + 1.2)))
    if items:
        names = [k for k, _ in items][::-1]
        ax.barh(names, [v for _, v in items][::-1], color="tab:blue")
        ax.tick_params(axis="y", labelsize=7)
    else:
        ax.text(0.5, 0.5, "no fills", ha="center", va="center", transform=ax.transAxes)
    n_inst = len(run.fills_by_instrument)
    ax.set_title(f"fills per instrument (top {len(items)} of {n_inst}; hedges = underlyings)")
    ax.set_xlabel("fills")
    fig.tight_layout()
    made.append(out / "fills.png")
    fig.savefig(made[-1], dpi=90)
    plt.close(fig)
    # refresh latency histogram
    fig, ax = plt.subplots(figsize=(8, 4))
    us = np.asarray(run.latency_ns, np.float64) / 1e3
    if us.size:
        bins = np.geomspace(max(us.min(), 1.0), max(us.max(), 2.0), 40)
        ax.hist(us, bins=bins, color="tab:gray")
        ax.set_xscale("log")
        for p, c in ((50, "tab:green"), (95, "tab:orange"), (99, "tab:red")):
            x = _pct(us.tolist(), p)
            ax.axvline(x, color=c, linestyle="--", label=f"p{p} {x:.0f} us")
        ax.legend(loc="best")
    else:
        ax.text(0.5, 0.5, "no refreshes", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(f"chain refresh latency, tick in -> orders at the venue ({us.size} refreshes)")
    ax.set_xlabel("microseconds")
    ax.set_ylabel("refreshes")
    fig.tight_layout()
    made.append(out / "latency.png")
    fig.savefig(made[-1], dpi=90)
    plt.close(fig)
    return made


def write_report(run: LiveRun, out: Path, pricing: dict | None = None) -> list[Path]:
    """Write ``summary.json``, ``report.md`` and (with matplotlib) ``pnl.png``,
    ``greeks.png``, ``fills.png``, ``latency.png`` under ``out``; returns the paths written.

    Example:
        >>> import tempfile
        >>> paths = write_report(LiveRun(seconds_planned=1.0), Path(tempfile.mkdtemp()))
        >>> sorted(p.name for p in paths)[-2:]
        ['report.md', 'summary.json']
    """
    out.mkdir(parents=True, exist_ok=True)
    d = summary_dict(run)
    if pricing is not None:
        d["pricing"] = pricing
    written = []
    (out / "summary.json").write_text(json.dumps(d, indent=2, sort_keys=True) + "\n")
    written.append(out / "summary.json")
    plot_note = ""
    try:
        written += _plots(run, out)
    except ImportError as exc:
        plot_note = f"\n_No plots: matplotlib is not installed ({exc})._\n"
    md = ["# jaxmm demo report", ""]
    md.append(
        f"The options market maker ran {d['seconds_run']:.1f} s of wall-clock time "
        f"({STEPS_PER_SECOND} market steps per second, one simulated second per second) on "
        "the demo configuration (`MarketMakerConfig.demo()`: BTC-like and SPX-like chains) "
        "against simulated traders. "
        + ("It was stopped early with Ctrl-C. " if d["interrupted"] else "")
        + f"Store: `{d['store']['url'] or 'none'}`."
    )
    md += ["", "```", format_summary(d), "```", plot_note]
    captions = {
        "pnl.png": "PnL over time (total, realised, unrealised at model theo) and its "
        "attribution (spread capture at fill, then delta, gamma, vega, theta between "
        "re-marks, residual).",
        "greeks.png": "Position Greeks against their limits (|Greek| / limit) per underlying "
        "and in total; the dashed line is the limit.",
        "fills.png": "Fills per instrument (option books; the underlyings' rows are the delta "
        "hedges).",
        "latency.png": "Chain refresh latency: underlying tick in -> orders handed to the venue.",
    }
    for p in written:
        if p.suffix == ".png":
            md += [f"## {p.stem}", "", captions[p.name], "", f"![{p.stem}]({p.name})", ""]
    md += ["## Positions at the end", ""]
    if d["positions"]:
        md += [
            "| instrument | quantity | avg price | realised | unrealised |",
            "|---|---:|---:|---:|---:|",
        ]
        for r in d["positions"]:
            md.append(
                f"| {r['symbol']} | {r['quantity']:g} | {r['avg_price']:.4f} | "
                f"{r['realised']:+.2f} | {r['unrealised']:+.2f} |"
            )
    else:
        md.append("No positions.")
    md.append("")
    if pricing:
        md += [
            "## Pricing kernels",
            "",
            f"500-option chain, price + 12 Greeks: first call {pricing['greeks_first_s'] * 1e3:.0f}"
            f" ms (compile), steady {pricing['greeks_steady_s'] * 1e6:.0f} us; implied vols: "
            f"first {pricing['iv_first_s'] * 1e3:.0f} ms, steady "
            f"{pricing['iv_steady_s'] * 1e6:.0f} us; IV round-trip max error "
            f"{pricing['iv_max_error']:.1e}.",
            "",
        ]
    md.append("Numbers: `summary.json` (same folder). How to read them: `docs/demo.md`.")
    (out / "report.md").write_text("\n".join(md) + "\n")
    written.append(out / "report.md")
    return written


# --------------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m jaxmm.demo``: parts 1-3 (module docstring). Returns the exit status: 0 on
    a finished or Ctrl-C-stopped run, 2 for bad settings, 130 when abandoned (second Ctrl-C).
    """

    def say(msg: str) -> None:
        print(msg, flush=True)

    try:
        opts = parse_options(argv)
    except ValueError as exc:
        print(f"jaxmm.demo: error: {exc}", file=sys.stderr)
        return 2
    try:
        import jax

        import jaxmm

        jaxmm.enable_float64()
        say(f"jaxmm {jaxmm.__version__} demo — JAX {jax.__version__} on {jax.devices()[0]}")
        pricing = None
        if opts.pricing:
            say("\n== 1. pricing kernels ==")
            pricing = pricing_section(say)
        say("\n== 2. the options market maker, live ==")
        run = asyncio.run(run_live(opts, say))
        say("\n== 3. summary ==")
        paths = write_report(run, opts.out, pricing)
        say(format_summary(summary_dict(run)))
        say(f"report: {opts.out / 'report.md'} ({len(paths)} files in {opts.out}/)")
        return 0
    except DemoError as exc:
        print(f"jaxmm.demo: error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\njaxmm.demo: abandoned (Ctrl-C)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
