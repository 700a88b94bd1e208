"""Strategy throughput and latency: jaxmm.strategy vs a straightforward NumPy implementation.

What is measured (same run, same machine, peers side by side):

1. Batched quotes: Avellaneda–Stoikov and the GLFT closed form over a batch of 1,000,000
   market states (mid, inventory, t), ``jaxmm.strategy.quote_batch`` (jit + vmap) against the
   same formula written in vectorised NumPy, in float32 and float64. Compile time (first call)
   is reported separately from the steady state (median of repeated calls after warm-up,
   ``block_until_ready``). Bar: >= 50 M quotes/s for one strategy in float32.
2. Single-quote latency from Python: ``jaxmm.strategy.quote(strategy, state)`` on one state
   (state built once; and including building the ``MarketState``), against the same formula
   in plain Python floats and in NumPy scalars.

Run: ``python benchmarks/bench_strategy.py`` (writes benchmarks/results/strategy.json and
strategy.md). ``--n`` changes the batch size, ``--repeats`` the number of timed calls.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from functools import partial
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)  # a script, not the library: float64 available

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxmm.strategy import GLFT, AvellanedaStoikov, MarketState, quote, quote_batch  # noqa: E402

GAMMA, K, SIGMA, T, A, QMAX = 0.1, 1.5, 2.0, 1.0, 0.9, 50


def numpy_as(mid, q, t, gamma=GAMMA, k=K, sigma=SIGMA, horizon=T):
    """Avellaneda–Stoikov in vectorised NumPy (same formula and validity masking)."""
    dt = mid.dtype.type
    tau = np.maximum(dt(horizon) - t, dt(0))
    risk = dt(gamma) * dt(sigma) ** 2 * tau
    liq = dt(math.log1p(gamma / k) / gamma)
    bid = mid - ((dt(1) + dt(2) * q) * risk / dt(2) + liq)
    ask = mid + ((dt(1) - dt(2) * q) * risk / dt(2) + liq)
    bid_ok = np.isfinite(bid) & (bid > 0)
    ask_ok = np.isfinite(ask) & (ask > 0)
    one = np.ones_like(mid)
    return (
        np.where(bid_ok, bid, mid),
        np.where(ask_ok, ask, mid),
        np.where(bid_ok, one, 0 * one),
        np.where(ask_ok, one, 0 * one),
    )


def numpy_glft(mid, q, gamma=GAMMA, k=K, a=A, sigma=SIGMA, qmax=QMAX):
    """GLFT closed form (GLFT 2013, symmetric, driftless) in vectorised NumPy."""
    dt = mid.dtype.type
    static = dt(math.log1p(gamma / k) / gamma)
    omega = dt(math.sqrt(sigma**2 * gamma / (2 * k * a) * (1 + gamma / k) ** (1 + k / gamma)))
    d_b = static + (dt(2) * q + dt(1)) / dt(2) * omega
    d_a = static - (dt(2) * q - dt(1)) / dt(2) * omega
    bid_ok = q + dt(1) <= dt(qmax)
    ask_ok = q - dt(1) >= dt(-qmax)
    bid = np.where(bid_ok, mid - d_b, mid)
    ask = np.where(ask_ok, mid + d_a, mid)
    one = np.ones_like(mid)
    return bid, ask, np.where(bid_ok, one, 0 * one), np.where(ask_ok, one, 0 * one)


def python_as(mid, q, t):
    tau = max(T - t, 0.0)
    risk = GAMMA * SIGMA * SIGMA * tau
    liq = math.log1p(GAMMA / K) / GAMMA
    bid = mid - ((1 + 2 * q) * risk / 2 + liq)
    ask = mid + ((1 - 2 * q) * risk / 2 + liq)
    return (bid if bid > 0 else mid), (ask if ask > 0 else mid), 1.0, 1.0


def timed(fn, repeats, warmup=3):
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def block(x):
    return jax.block_until_ready(x)


def bench_batch(n, repeats, dtype):
    rng = np.random.default_rng(0)
    mid_np = (100 + rng.standard_normal(n)).astype(dtype)
    q_np = rng.integers(-QMAX, QMAX + 1, n).astype(dtype)
    t_np = rng.uniform(0, T, n).astype(dtype)
    states = MarketState(mid=jnp.asarray(mid_np), inventory=jnp.asarray(q_np), t=jnp.asarray(t_np))
    rows = []
    cases = (
        (
            "avellaneda_stoikov",
            AvellanedaStoikov(GAMMA, K, SIGMA, T),
            numpy_as,
            (mid_np, q_np, t_np),
        ),
        ("glft_closed_form", GLFT(GAMMA, K, A, SIGMA, QMAX), numpy_glft, (mid_np, q_np)),
    )
    for name, strategy, peer_fn, peer_args in cases:
        peer = partial(peer_fn, *peer_args)
        t0 = time.perf_counter()
        out = block(quote_batch(strategy, states))
        first = time.perf_counter() - t0
        assert out.bid.dtype == np.dtype(dtype)
        # correctness against the NumPy twin before timing anything
        ref = peer()
        tol = 1e-4 if dtype == np.float32 else 1e-10
        np.testing.assert_allclose(np.asarray(out.bid), ref[0], rtol=tol, atol=tol)
        np.testing.assert_allclose(np.asarray(out.ask), ref[1], rtol=tol, atol=tol)
        steady = timed(lambda s=strategy: block(quote_batch(s, states)), repeats)
        t_np_run = timed(peer, max(3, repeats // 3), warmup=1)
        rows.append(
            dict(
                benchmark=f"batch_{name}",
                dtype=np.dtype(dtype).name,
                n_states=n,
                jaxmm_compile_plus_first_call_s=first,
                jaxmm_steady_s=steady,
                jaxmm_quotes_per_s=n / steady,
                numpy_steady_s=t_np_run,
                numpy_quotes_per_s=n / t_np_run,
                speedup_vs_numpy=t_np_run / steady,
            )
        )
    return rows


def bench_latency(repeats):
    mm = AvellanedaStoikov(GAMMA, K, SIGMA, T)
    state = MarketState(mid=100.0, inventory=3.0, t=0.25)
    t0 = time.perf_counter()
    block(quote(mm, state))
    first = time.perf_counter() - t0
    jax_lat = timed(lambda: block(quote(mm, state)), repeats, warmup=50)
    jax_lat_state = timed(
        lambda: block(quote(mm, MarketState(mid=100.0, inventory=3.0, t=0.25))), repeats, 50
    )
    py_lat = timed(lambda: python_as(100.0, 3.0, 0.25), repeats, warmup=50)
    mid, q, t = np.float64(100.0), np.float64(3.0), np.float64(0.25)
    np_lat = timed(
        lambda: numpy_as(np.atleast_1d(mid), np.atleast_1d(q), np.atleast_1d(t)), repeats, 50
    )
    return [
        dict(
            benchmark="single_quote_latency_avellaneda_stoikov",
            dtype="float64",
            jaxmm_compile_plus_first_call_s=first,
            jaxmm_quote_us=jax_lat * 1e6,
            jaxmm_quote_incl_state_construction_us=jax_lat_state * 1e6,
            python_floats_us=py_lat * 1e6,
            numpy_scalar_us=np_lat * 1e6,
        )
    ]


def device_info():
    d = jax.devices()[0]
    return dict(
        platform=d.platform,
        device=str(d.device_kind),
        cpu_count=os.cpu_count(),
        machine=platform.machine(),
        python=platform.python_version(),
        jax=jax.__version__,
        numpy=np.__version__,
        load_average_1m_at_start=os.getloadavg()[0],
    )


def to_markdown(result):
    info = result["device"]
    lines = [
        "# Strategy benchmarks",
        "",
        f"Device: {info['platform']} ({info['device']}), {info['cpu_count']} cores, "
        f"{info['machine']}; jax {info['jax']}, numpy {info['numpy']}, Python {info['python']}; "
        f"1-minute load average at start {info['load_average_1m_at_start']:.1f} (shared machine). "
        f"Batch of {result['n_states']:,} states; steady state = median of "
        f"{result['repeats']} calls after warm-up; compile reported separately.",
        "",
        "## Batched quotes (quote_batch = jit(vmap(strategy.quote)))",
        "",
        "| strategy | dtype | jaxmm Mquotes/s | NumPy Mquotes/s | speed-up | jaxmm ms/batch | "
        "compile + first call s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        if not r["benchmark"].startswith("batch_"):
            continue
        lines.append(
            f"| {r['benchmark'][6:]} | {r['dtype']} | {r['jaxmm_quotes_per_s'] / 1e6:,.1f} | "
            f"{r['numpy_quotes_per_s'] / 1e6:,.1f} | {r['speedup_vs_numpy']:.1f}x | "
            f"{r['jaxmm_steady_s'] * 1e3:.2f} | {r['jaxmm_compile_plus_first_call_s']:.2f} |"
        )
    lines += [
        "",
        f"Bar: >= 50 M quotes/s batched (float32): {'met' if result['bar_met'] else 'NOT met'}.",
        "",
        "## Single quote from Python (Avellaneda–Stoikov, float64)",
        "",
        "| jaxmm quote() µs | incl. MarketState construction µs | plain Python floats µs | "
        "NumPy (1-element arrays) µs |",
        "|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        if r["benchmark"].startswith("single_quote"):
            lines.append(
                f"| {r['jaxmm_quote_us']:.1f} | "
                f"{r['jaxmm_quote_incl_state_construction_us']:.1f} | "
                f"{r['python_floats_us']:.2f} | {r['numpy_scalar_us']:.1f} |"
            )
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    rows = []
    for dtype in (np.float32, np.float64):
        rows += bench_batch(args.n, args.repeats, dtype)
    rows += bench_latency(max(1000, args.repeats * 100))
    best32 = max(
        r["jaxmm_quotes_per_s"] for r in rows if r.get("dtype") == "float32" and "n_states" in r
    )
    result = dict(
        device=device_info(),
        n_states=args.n,
        repeats=args.repeats,
        rows=rows,
        bar_quotes_per_s_float32=50e6,
        bar_met=bool(best32 >= 50e6),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "strategy.json").write_text(json.dumps(result, indent=2) + "\n")
    md = to_markdown(result)
    (args.out / "strategy.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
