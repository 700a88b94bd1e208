"""Pricing benchmarks: jaxmm side by side with its peers, in one run.

Compared (same inputs, same outputs computed, every peer's values checked against jaxmm's):

- jaxmm: ``bsm_core_greeks_packed`` (one ``(..., 7)`` array in, one ``(..., 6)`` out),
  ``bsm_core_greeks`` (seven arguments, a ``CoreGreeks`` pytree out), ``implied_vol``,
  ``american_price``;
- a hand-written numba closed form (the "how close to the metal" reference), NumPy/SciPy
  closed form, QuantLib (AnalyticEuropeanEngine on reused option objects; binomial CRR and
  finite-difference American engines), py_vollib_vectorized, financepy.

Cases: (1) one option, price + first-order Greeks, called from Python; (2) a 50-strike chain
of calls and puts (100 options) and 5 x 50 x 2 = 500 options; (3) 1,000,000 options, price +
5 Greeks, float64 and float32; (4) implied vol of 100,000 options; (5) 1,000 American options
against a high-accuracy reference. Steady-state times are medians after warm-up; compile (or
first-call) time is reported apart. Device: CPU (the machine's cores, see the output), float64
unless noted. The machine is shared, so the load average is recorded next to the results.

Run: ``make bench`` (or ``.venv/bin/python benchmarks/bench_pricing.py``); ``--quick`` shrinks
every case for a smoke test. Writes ``benchmarks/results/pricing.json`` and ``pricing.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)  # a script, not the library: float64 by default

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import numba_closed_form as nbcf  # noqa: E402
from peers import numpy_closed_form as npcf  # noqa: E402
from peers import quantlib_peer  # noqa: E402

import jaxmm.pricing as jp  # noqa: E402
from jaxmm.pricing._bsm import bsm_core_greeks_packed  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
FIELDS = ("price", "delta", "gamma", "vega", "theta", "rho")


# ---------------------------------------------------------------------------------------------
# timing helpers
# ---------------------------------------------------------------------------------------------


def _ready(x):
    return jax.block_until_ready(x)


def bench(fn: Callable[[], object], *, min_time: float = 0.25, max_calls: int = 3000) -> dict:
    """First call (compile / JIT / cache warm-up) timed apart, then the median of calls made
    until ``min_time`` seconds have passed (at least 3, at most ``max_calls``). Also the median
    process CPU time per call (all threads), which a busy shared machine distorts less."""
    t0 = time.perf_counter()
    _ready(fn())
    first = time.perf_counter() - t0
    for _ in range(2):
        _ready(fn())
    times, cpu = [], []
    start = time.perf_counter()
    while len(times) < max_calls and (len(times) < 3 or time.perf_counter() - start < min_time):
        c0 = time.process_time()
        t0 = time.perf_counter()
        _ready(fn())
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    ts = np.asarray(times)
    return {
        "median_s": float(np.median(ts)),
        "cpu_median_s": float(np.median(cpu)),
        "min_s": float(ts.min()),
        "p90_s": float(np.percentile(ts, 90)),
        "calls": len(ts),
        "first_call_s": first,
    }


def _as6(x) -> np.ndarray:
    """Greeks as a (6, n) float64 array from a CoreGreeks, a (..., 6) array or a (6, ...)."""
    if isinstance(x, jp.CoreGreeks):
        return np.stack([np.ravel(np.asarray(getattr(x, f), np.float64)) for f in FIELDS])
    a = np.asarray(x, np.float64)
    if a.ndim >= 1 and a.shape[-1] == 6 and a.shape[0] != 6:
        return a.reshape(-1, 6).T
    if a.ndim == 1 and a.shape[0] == 6:
        return a.reshape(6, 1)
    return a.reshape(6, -1)


def max_diffs(got, ref) -> dict:
    """Max |got - ref| per Greek, and the worst relative difference (denominator max(1, |ref|))."""
    g, r = _as6(got), _as6(ref)
    out = {}
    for i, f in enumerate(FIELDS):
        d = np.abs(g[i] - r[i])
        out[f] = float(np.nanmax(d)) if np.isfinite(d).any() else float("nan")
    rel = np.abs(g - r) / np.maximum(1.0, np.abs(r))
    out["max_rel"] = float(np.nanmax(rel))
    return out


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------


def chain(n_expiries: int, n_strikes: int = 50):
    """Spot 100, strikes 75..125, calls and puts, expiries in whole days, a smile in vol."""
    days = np.array([30, 61, 91, 182, 365][:n_expiries])
    strikes = np.linspace(75.0, 125.0, n_strikes)
    d, k, c = np.meshgrid(days, strikes, [True, False], indexing="ij")
    d, k, c = d.ravel(), k.ravel(), c.ravel()
    n = d.size
    vol = 0.2 + 0.4 * np.log(k / 100.0) ** 2 + 0.02 * np.sqrt(30.0 / d)
    return {
        "s": np.full(n, 100.0),
        "k": k,
        "days": d,
        "t": d / 365.0,
        "r": np.full(n, 0.03),
        "q": np.full(n, 0.01),
        "v": vol,
        "c": c,
    }


def random_book(n: int, seed: int, *, rates=(-0.01, 0.05), vols=(0.05, 0.8), days=(1, 730)):
    rng = np.random.default_rng(seed)
    d = rng.integers(days[0], days[1] + 1, n)
    return {
        "s": rng.uniform(80.0, 120.0, n),
        "k": rng.uniform(60.0, 140.0, n),
        "days": d,
        "t": d / 365.0,
        "r": rng.uniform(*rates, n),
        "q": rng.uniform(0.0, 0.03, n),
        "v": rng.uniform(*vols, n),
        "c": rng.uniform(size=n) < 0.5,
    }


def seven(b, dtype=np.float64):
    return tuple(np.asarray(b[x], dtype) for x in ("s", "k", "t", "r", "q", "v")) + (b["c"],)


def packed(b, dtype=np.float64):
    return np.stack([*seven(b, dtype)[:6], b["c"].astype(dtype)], axis=-1)


# ---------------------------------------------------------------------------------------------
# peers that may be missing on a machine (they are reported, not silently skipped)
# ---------------------------------------------------------------------------------------------


def _optional(name: str):
    try:
        module = __import__(f"peers.{name}", fromlist=[name])
        return module, None
    except Exception as exc:  # an unavailable peer is a line in the report
        return None, f"{type(exc).__name__}: {exc}"


# ---------------------------------------------------------------------------------------------
# cases
# ---------------------------------------------------------------------------------------------


def _single_inputs():
    b = chain(1, 1)
    b = {key: np.asarray(v[:1]) for key, v in b.items()}
    b.update(k=np.asarray([95.0]), days=np.asarray([182]), t=np.asarray([182 / 365]))
    b["v"] = np.asarray([0.2])
    return b


_REF: list = [None]  # the current latency case's jaxmm result


def _adder(rows, ref, min_time):
    def add(name, fn, note="", check=True, **kw):
        r = bench(fn, min_time=min_time, **kw)
        r.update(impl=name, note=note)
        if check:
            r["max_abs_diff"] = max_diffs(fn(), ref if ref is not None else _REF[0])
        rows.append(r)

    return add


def jaxmm_latency_rows(key: str, quick: bool, suffix: str = "") -> list[dict]:
    """jaxmm's rows of the latency cases (also run in a subprocess with sync dispatch)."""
    b = _single_inputs() if key == "single" else chain(1 if key == "chain100" else 5)
    x_np = packed(b)[0] if key == "single" else packed(b)
    x_jax = jnp.asarray(x_np)
    rows: list[dict] = []
    add = _adder(rows, None, 0.1 if quick else 0.4)  # jaxmm is the reference here
    head = "headline" if not suffix else "jax_cpu_enable_async_dispatch=False (user setting)"
    r = bench(lambda: bsm_core_greeks_packed(x_jax), min_time=0.1 if quick else 0.4)
    _REF[0] = np.asarray(bsm_core_greeks_packed(x_jax))
    r.update(impl=f"jaxmm packed, JAX array in{suffix}", note=head)
    r["max_abs_diff"] = max_diffs(_REF[0], _REF[0])
    rows.append(r)
    add(
        f"jaxmm packed, NumPy array in (validated){suffix}",
        lambda: bsm_core_greeks_packed(x_np),
        "host array: edge check + transfer",
    )
    if key == "single":
        floats = tuple(float(v[0]) for v in seven(b)[:6]) + (True,)
        add(f"jaxmm bsm_core_greeks, 7 Python floats{suffix}", lambda: jp.bsm_core_greeks(*floats))
    else:
        args_jax = tuple(jnp.asarray(a) for a in seven(b))
        add(f"jaxmm bsm_core_greeks, JAX arrays in{suffix}", lambda: jp.bsm_core_greeks(*args_jax))
    return rows


def case_single(peers, quick: bool) -> list[dict]:
    b = _single_inputs()
    floats = tuple(float(v[0]) for v in seven(b)[:6]) + (True,)
    rows = jaxmm_latency_rows("single", quick)  # first: its first call includes the compile
    ref = np.asarray(bsm_core_greeks_packed(jnp.asarray(packed(b)[0])))
    add = _adder(rows, ref, 0.1 if quick else 0.4)
    add(
        "numba scalar closed form",
        lambda: np.asarray(nbcf.core_greeks_scalar(*floats)),
        "hand-written, @njit",
    )
    book = quantlib_peer.EuropeanBook(*(b[x] for x in ("s", "k", "days", "r", "q", "v", "c")))
    add(
        "QuantLib AnalyticEuropeanEngine",
        lambda: book.core_greeks(100.0),
        "reused option; spot quote moved each call",
    )
    args = seven(b)
    add("NumPy/SciPy closed form", lambda: np.stack(npcf.core_greeks(*args)))
    if peers["vollib"][0] is not None:
        add(
            "py_vollib_vectorized",
            lambda: peers["vollib"][0].core_greeks(*args),
            "finite-difference Greeks; rho also bumps q",
        )
    if peers["financepy"][0] is not None:
        add(
            "financepy (numba ufuncs)",
            lambda: peers["financepy"][0].core_greeks(*args),
            "6 separate ufunc passes; approximate N(x)",
        )
    return rows


def case_chain(peers, n_expiries: int, quick: bool) -> list[dict]:
    b = chain(n_expiries)
    args = seven(b)
    rows = jaxmm_latency_rows("chain100" if n_expiries == 1 else "chain500", quick)
    ref = np.asarray(bsm_core_greeks_packed(jnp.asarray(packed(b))))
    add = _adder(rows, ref, 0.1 if quick else 0.4)
    add("numba closed form (serial loop)", lambda: nbcf.core_greeks(*args, parallel=False))
    book = quantlib_peer.EuropeanBook(*(b[x] for x in ("s", "k", "days", "r", "q", "v", "c")))
    add("QuantLib AnalyticEuropeanEngine", lambda: book.core_greeks(100.0), "reused options")
    add("NumPy/SciPy closed form", lambda: np.stack(npcf.core_greeks(*args)))
    if peers["vollib"][0] is not None:
        add("py_vollib_vectorized", lambda: peers["vollib"][0].core_greeks(*args), "FD Greeks")
    if peers["financepy"][0] is not None:
        add("financepy (numba ufuncs)", lambda: peers["financepy"][0].core_greeks(*args))
    return rows


def sync_dispatch_rows(quick: bool) -> dict:
    """jaxmm's latency rows again in a fresh process with ``jax_cpu_enable_async_dispatch``
    off (a process-wide JAX setting the library never changes; see the notes)."""
    cmd = [sys.executable, __file__, "--sync-latency-json"] + (["--quick"] if quick else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def case_million(peers, quick: bool) -> list[dict]:
    n = 20_000 if quick else 1_000_000
    b = random_book(n, seed=1)
    rows: list[dict] = []

    def add(name, fn, n_opts, dname, ref, note="", slicer=slice(None), min_time=1.0):
        r = bench(fn, min_time=0.2 if quick else min_time, max_calls=50)
        r.update(impl=name, note=note, dtype=dname, n_options=n_opts)
        r["options_per_s"] = n_opts / r["median_s"]
        r["max_abs_diff"] = max_diffs(_as6(fn()), _as6(ref)[:, slicer])
        rows.append(r)

    ref64 = None
    for dtype, dname in ((np.float64, "float64"), (np.float32, "float32")):
        args = seven(b, dtype)
        args_jax = tuple(jnp.asarray(a) for a in args)
        first = bench(lambda a=args_jax: jp.bsm_core_greeks(*a), min_time=0.0, max_calls=3)
        ref = jp.bsm_core_greeks(*args_jax)
        ref64 = ref if ref64 is None else ref64
        add(
            f"jaxmm bsm_core_greeks ({dname})",
            lambda a=args_jax: jp.bsm_core_greeks(*a),
            n,
            dname,
            ref64,
            "headline" if dtype is np.float64 else "headline; diff vs float64 jaxmm",
        )
        rows[-1]["first_call_s"] = first["first_call_s"]
        add(
            f"numba closed form, prange ({nbcf.NUMBA_THREADS} threads)",
            lambda a=args: nbcf.core_greeks(*a, parallel=True),
            n,
            dname,
            ref,
            "float32 in/out, float64 math" if dtype is np.float32 else "",
        )
        add(
            "NumPy/SciPy closed form",
            lambda a=args: np.stack(npcf.core_greeks(*a)),
            n,
            dname,
            ref,
        )
    args = seven(b)
    if peers["financepy"][0] is not None:
        add(
            "financepy (numba ufuncs)",
            lambda: peers["financepy"][0].core_greeks(*args),
            n,
            "float64",
            ref64,
            "6 single-threaded passes",
        )
    m = min(n, 100_000)
    if peers["vollib"][0] is not None:
        sub = tuple(a[:m] for a in args)
        add(
            "py_vollib_vectorized",
            lambda: peers["vollib"][0].core_greeks(*sub),
            m,
            "float64",
            ref64,
            f"measured on {m:,} options; FD Greeks",
            slicer=slice(0, m),
        )
    mq = min(n, 5_000 if quick else 20_000)
    book = quantlib_peer.EuropeanBook(*(b[x][:mq] for x in ("s", "k", "days", "r", "q", "v", "c")))
    s0 = float(b["s"][0])  # QuantLib's book shares one spot quote: compare at that spot
    ref_q = jp.bsm_core_greeks(np.full(mq, s0), *(a[:mq] for a in args[1:]))
    add(
        "QuantLib AnalyticEuropeanEngine",
        lambda: book.core_greeks(s0),
        mq,
        "float64",
        ref_q,
        f"measured on {mq:,} reused options",
        min_time=0.5,
    )
    # table order: float64 rows first
    return sorted(rows, key=lambda r: r["dtype"] != "float64")


def case_implied_vol(peers, quick: bool) -> list[dict]:
    n = 5_000 if quick else 100_000
    b = random_book(n, seed=2, vols=(0.05, 1.0), days=(7, 730))
    args = seven(b)
    s, k, t, r, q, v, c = args
    # prices from the independent NumPy/SciPy closed form, vols to recover known
    prices = npcf.price(s, k, t, r, q, v, c)
    vega = npcf.core_greeks(s, k, t, r, q, v, c)[3]
    informative = (vega >= 1e-3 * prices) & (prices > 1e-12 * s)
    rows = []

    def add(name, fn, m, note="", min_time=0.5):
        res = bench(fn, min_time=0.1 if quick else min_time, max_calls=20)
        vols = np.asarray(fn(), np.float64)
        mask = informative[:m]
        err = np.abs(vols - v[:m])
        res.update(
            impl=name,
            note=note,
            n_options=m,
            options_per_s=m / res["median_s"],
            informative=int(mask.sum()),
            failed_on_informative=int((~np.isfinite(vols[mask])).sum()),
            max_abs_error=float(np.nanmax(err[mask])),
            p99_abs_error=float(np.nanpercentile(err[mask], 99)),
        )
        rows.append(res)

    try:
        from jaxmm.pricing._iv import implied_vol
    except ImportError as exc:  # the section must not be skipped silently
        raise RuntimeError(
            "jaxmm.pricing._iv.implied_vol is missing: case 4 (implied vol) cannot run"
        ) from exc
    pj = tuple(jnp.asarray(a) for a in (prices, s, k, t, r, q, c))
    add("jaxmm implied_vol", lambda: implied_vol(*pj)[0], n, "headline; 2 Householder steps")
    out = np.empty(n)
    add(
        f"numba Newton + bisection ({nbcf.NUMBA_THREADS} threads)",
        lambda: (nbcf.implied_vol(prices, s, k, t, r, q, c, out), out)[1],
        n,
        "hand-written; to |step| < 1e-15",
    )
    if peers["vollib"][0] is not None:
        add(
            "py_vollib_vectorized",
            lambda: peers["vollib"][0].implied_vols(prices, s, k, t, r, q, c),
            n,
            "Let's Be Rational",
        )
    m = min(n, 20_000)
    add(
        "NumPy vectorised Newton (40 steps)",
        lambda: npcf.implied_vol_newton(prices[:m], s[:m], k[:m], t[:m], r[:m], q[:m], c[:m]),
        m,
        f"measured on {m:,}",
    )
    m = min(n, 1_000 if quick else 3_000)
    add(
        "QuantLib impliedVolatility",
        lambda: quantlib_peer.implied_vols(
            prices[:m], s[:m], k[:m], b["days"][:m], r[:m], q[:m], c[:m]
        ),
        m,
        f"measured on {m:,}; accuracy 1e-12",
        min_time=0.0,
    )
    if peers["financepy"][0] is not None:
        add(
            "financepy implied_volatility",
            lambda: peers["financepy"][0].implied_vols(
                prices[:m], s[:m], k[:m], t[:m], r[:m], q[:m], c[:m]
            ),
            m,
            f"measured on {m:,}; scalar solver; its own approximate N(x)",
            min_time=0.0,
        )
    return rows


def case_american(peers, quick: bool) -> tuple[list[dict], dict]:
    n = 100 if quick else 1000
    b = random_book(n, seed=3, rates=(0.0, 0.06), vols=(0.15, 0.5), days=(30, 730))
    b["s"] = np.full(n, 100.0)
    b["k"] = np.random.default_rng(4).uniform(80.0, 120.0, n)
    b["q"] = np.random.default_rng(5).uniform(0.0, 0.04, n)
    s, k, t, r, q, v, c = seven(b)

    # reference: binomial Black-Scholes with Richardson extrapolation (Broadie & Detemple
    # 1996), 2 P(2000) - P(1000); self-check against 2 P(1000) - P(500)
    def bbs(steps):
        out = np.empty(n)
        nbcf.american_bbs(s, k, t, r, q, v, c, steps, out)
        return out

    t0 = time.perf_counter()
    p500, p1000, p2000 = bbs(500), bbs(1000), bbs(2000)
    ref_time = time.perf_counter() - t0
    ref = 2.0 * p2000 - p1000
    coarse = 2.0 * p1000 - p500
    reference = {
        "method": "binomial Black-Scholes + Richardson, 2 P(2000) - P(1000) (numba)",
        "seconds": ref_time,
        "self_check_max": float(np.max(np.abs(ref - coarse))),
        "self_check_p99": float(np.percentile(np.abs(ref - coarse), 99)),
    }
    rows = []

    def add(name, fn, m, note="", min_time=0.5, max_calls=20):
        res = bench(fn, min_time=0.1 if quick else min_time, max_calls=max_calls)
        vals = np.asarray(fn(), np.float64)
        err = np.abs(vals - ref[:m])
        res.update(
            impl=name,
            note=note,
            n_options=m,
            time_per_1000_s=res["median_s"] * 1000.0 / m,
            max_abs_error=float(np.nanmax(err)),
            p99_abs_error=float(np.nanpercentile(err, 99)),
            n_nan=int(np.isnan(vals).sum()),
        )
        rows.append(res)

    try:
        from jaxmm.pricing._lattice import american_price
    except ImportError as exc:
        raise RuntimeError(
            "jaxmm.pricing._lattice.american_price is missing: case 5 (American) cannot run"
        ) from exc
    aj = tuple(jnp.asarray(a) for a in (s, k, t, r, q, v, c))
    add("jaxmm american_price (default method)", lambda: american_price(*aj), n, "headline")
    add(
        "jaxmm american_price, Leisen-Reimer 201 steps",
        lambda: american_price(*aj, method="leisen_reimer", steps=201),
        n,
    )
    out = np.empty(n)
    add(
        f"numba CRR-500 ({nbcf.NUMBA_THREADS} threads)",
        lambda: (nbcf.american_crr(s, k, t, r, q, v, c, 500, out), out)[1],
        n,
        "hand-written",
    )
    m = min(n, 200)
    days = b["days"]
    add(
        "QuantLib binomial CRR-500",
        lambda: quantlib_peer.american_prices(
            s[:m], k[:m], days[:m], r[:m], q[:m], v[:m], c[:m], "crr"
        ),
        m,
        f"measured on {m}",
        min_time=0.0,
        max_calls=3,
    )
    add(
        "QuantLib FdBlackScholesVanillaEngine (default grid)",
        lambda: quantlib_peer.american_prices(
            s[:m], k[:m], days[:m], r[:m], q[:m], v[:m], c[:m], "fd"
        ),
        m,
        f"measured on {m}",
        min_time=0.0,
        max_calls=3,
    )
    return rows, reference


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------


def _fmt_time(sec: float) -> str:
    if sec < 1e-3:
        return f"{sec * 1e6:.1f} µs"
    if sec < 1.0:
        return f"{sec * 1e3:.2f} ms"
    return f"{sec:.2f} s"


def _fmt_rate(x: float) -> str:
    return f"{x / 1e6:.2f} M/s" if x >= 1e5 else f"{x / 1e3:.1f} k/s"


def _worst(d: dict) -> str:
    if not d:
        return ""
    f = max(FIELDS, key=lambda k: -1 if np.isnan(d[k]) else d[k])
    return f"{d[f]:.1e} ({f})"


def markdown(res: dict) -> str:
    m = res["meta"]
    lines = [
        "# Pricing benchmarks: jaxmm vs peers",
        "",
        f"Device: {m['device']}; dtype float64 unless noted; {m['date']}. Load average "
        f"(1 min) at start / end: {m['load_start']:.1f} / {m['load_end']:.1f} on "
        f"{m['cpus']} cores (shared machine: absolute times vary run to run).",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".",
        "",
        "Times are medians after warm-up; *first call* (compile / JIT / cache) is separate. "
        "*Ratio* = peer time / jaxmm headline time (> 1: jaxmm faster). *Max |Δ|* is the "
        "largest absolute difference from jaxmm's value over price and the five Greeks "
        "(raw units: vega per 1.00 vol, theta per year, rho per 1.00), worst field named.",
        "",
    ]
    for key, title in (
        ("single", "1. One option, price + 5 Greeks, called from Python"),
        ("chain100", "2a. 50-strike chain, calls and puts (100 options)"),
        ("chain500", "2b. 5 expiries x 50 strikes x call/put (500 options)"),
    ):
        rows = res[key]
        base = rows[0]["median_s"]
        lines += [
            f"## {title}",
            "",
            "| implementation | median (min) | ratio | first call | max abs diff | note |",
        ]
        lines += ["|---|---:|---:|---:|---|---|"]
        for r in rows:
            lines.append(
                f"| {r['impl']} | {_fmt_time(r['median_s'])} ({_fmt_time(r['min_s'])}) | "
                f"{r['median_s'] / base:.1f}x | "
                f"{_fmt_time(r['first_call_s'])} | {_worst(r.get('max_abs_diff', {}))} | "
                f"{r['note']} |"
            )
        lines.append("")
    rows = res["million"]
    lines += ["## 3. 1,000,000 options, price + 5 Greeks (throughput)", ""]
    lines += [
        "*options/s*: median (best) wall-clock rate; *options/CPU-s*: options per second of "
        "process CPU time summed over threads (less sensitive to other processes on this "
        "shared machine than wall time).",
        "",
        "| implementation | dtype | options/s (best) | options/CPU-s | median | ratio "
        "| first call | max abs diff | note |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for dname in ("float64", "float32"):
        sel = [r for r in rows if r["dtype"] == dname]
        base = sel[0]["options_per_s"]
        for r in sel:
            lines.append(
                f"| {r['impl']} | {dname} | {_fmt_rate(r['options_per_s'])} "
                f"({_fmt_rate(r['n_options'] / r['min_s'])}) | "
                f"{_fmt_rate(r['n_options'] / max(r['cpu_median_s'], 1e-9))} | "
                f"{_fmt_time(r['median_s'])} ({r['n_options']:,}) | "
                f"{base / r['options_per_s']:.1f}x | {_fmt_time(r['first_call_s'])} | "
                f"{_worst(r['max_abs_diff'])} | {r['note']} |"
            )
    lines.append("")
    rows = res["implied_vol"]
    base = rows[0]["options_per_s"]
    lines += ["## 4. Implied vol, 100,000 options (prices from the SciPy closed form)", ""]
    lines += [
        "Error = |recovered vol - true vol| over options whose vega is informative "
        "(vega >= 1e-3 x price); *failed* counts NaN results among those.",
        "",
        "| implementation | options/s | ratio | max error | p99 error | failed | first call "
        "| note |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['impl']} | {_fmt_rate(r['options_per_s'])} | "
            f"{base / r['options_per_s']:.1f}x | {r['max_abs_error']:.1e} | "
            f"{r['p99_abs_error']:.1e} | {r['failed_on_informative']} / {r['informative']} | "
            f"{_fmt_time(r['first_call_s'])} | {r['note']} |"
        )
    lines.append("")
    rows, ref = res["american"], res["american_reference"]
    base = rows[0]["time_per_1000_s"]
    lines += ["## 5. 1,000 American options vs a high-accuracy reference", ""]
    lines += [
        f"Reference: {ref['method']} ({ref['seconds']:.1f} s); its self-check against "
        f"2 P(1000) - P(500): max {ref['self_check_max']:.1e}, p99 {ref['self_check_p99']:.1e} "
        "(the worst cases are deep in-the-money options at the exercise boundary).",
        "",
        "| implementation | time per 1,000 | ratio | max error | p99 error | first call | note |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['impl']} | {_fmt_time(r['time_per_1000_s'])} | "
            f"{r['time_per_1000_s'] / base:.1f}x | {r['max_abs_error']:.1e} | "
            f"{r['p99_abs_error']:.1e} | {_fmt_time(r['first_call_s'])} | {r['note']} |"
        )
    lines.append("")
    if res["meta"]["unavailable"]:
        lines += [
            "Unavailable peers: "
            + "; ".join(f"{k}: {v}" for k, v in res["meta"]["unavailable"].items()),
            "",
        ]
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--sync-latency-json", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.sync_latency_json:  # child process of sync_dispatch_rows
        jax.config.update("jax_cpu_enable_async_dispatch", False)
        keys = ("single", "chain100", "chain500")
        rows = {k: jaxmm_latency_rows(k, args.quick, " [sync dispatch]") for k in keys}
        print(json.dumps(rows))
        return rows
    t_start = time.perf_counter()
    load_start = os.getloadavg()[0]
    peers = {name: _optional(f"{name}_peer") for name in ("vollib", "financepy")}
    versions = {
        "jax": jax.__version__,
        "jaxlib": version("jaxlib"),
        "numpy": np.__version__,
        "scipy": version("scipy"),
        "numba": version("numba"),
        "QuantLib": quantlib_peer.VERSION,
    }
    for module, _ in peers.values():
        if module is not None:
            versions.update(module.VERSIONS)
    res: dict = {}
    steps = [
        ("single", lambda: case_single(peers, args.quick)),
        ("chain100", lambda: case_chain(peers, 1, args.quick)),
        ("chain500", lambda: case_chain(peers, 5, args.quick)),
        ("million", lambda: case_million(peers, args.quick)),
        ("implied_vol", lambda: case_implied_vol(peers, args.quick)),
    ]
    for key, fn in steps:
        t0 = time.perf_counter()
        res[key] = fn()
        print(f"[bench] {key}: {time.perf_counter() - t0:.1f} s", flush=True)
    t0 = time.perf_counter()
    for key, rows in sync_dispatch_rows(args.quick).items():
        res[key][3:3] = rows  # after jaxmm's default-dispatch rows
    print(f"[bench] sync-dispatch rows: {time.perf_counter() - t0:.1f} s", flush=True)
    t0 = time.perf_counter()
    res["american"], res["american_reference"] = case_american(peers, args.quick)
    print(f"[bench] american: {time.perf_counter() - t0:.1f} s", flush=True)
    res["meta"] = {
        "device": f"CPU ({platform.processor() or platform.machine()}), "
        f"{os.cpu_count()} cores, JAX backend {jax.default_backend()}",
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "load_start": load_start,
        "load_end": os.getloadavg()[0],
        "versions": versions,
        "unavailable": {k: err for k, (mod, err) in peers.items() if mod is None},
        "quick": args.quick,
        "total_seconds": time.perf_counter() - t_start,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    (args.out / f"pricing{suffix}.json").write_text(json.dumps(res, indent=1))
    (args.out / f"pricing{suffix}.md").write_text(markdown(res))
    print(markdown(res))
    print(f"[bench] total {res['meta']['total_seconds']:.1f} s")
    return res


if __name__ == "__main__":
    main()
