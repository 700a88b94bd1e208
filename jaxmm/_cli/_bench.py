"""``jaxmm bench``: the chain-refresh benchmark.

Times :func:`jaxmm.engine.quote_chain` (price, autodiff Greeks, Greek-space reservation price,
half-spread, adjustments, rounding and limit caps, one jitted call) on a chain of 100 options
(1 expiry x 50 strikes x call/put) and 500 options (5 expiries x 50 strikes x call/put),
float64 on the default JAX device, and prints the compile time and the p50/p99 of
``repeats`` steady-state calls (each ends with ``block_until_ready``). Each call gets a new
spot so nothing is cached between calls (the jitted function does not recompile on new
values); the timed call includes building the tick's ``ChainMarket``, as a live refresh
does. ``benchmarks/bench_engine.py`` is the side-by-side version with a NumPy peer.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from ._common import CliError, enable_float64

__all__ = ["CASES", "chain_refresh_bench", "run_bench"]

CASES = {"chain_100": (1, 50), "chain_500": (5, 50)}
"""Benchmark cases: name -> (expiries, strikes); each strike has a call and a put."""


def chain_refresh_bench(repeats: int = 200, progress: bool = False) -> dict[str, dict[str, float]]:
    """Per case: ``options``, ``compile_s``, ``p50_us``, ``p99_us``, ``mean_us``."""
    import jax
    import jax.numpy as jnp

    from jaxmm.engine import ChainMarket, OptionChain, QuoteLimits, QuoteParams, quote_chain

    if repeats < 10:
        raise CliError(f"repeats: must be >= 10, got {repeats}")
    params = QuoteParams(
        risk_aversion=1e-4, fill_k=20.0, gamma_widening=0.5, vega_widening=0.2,
        expiry_weight=1.0, base_size=10.0,
    )  # fmt: skip
    limits = QuoteLimits(delta=5e3, gamma=500.0, vega=5e4, theta=1e6, max_position=500.0)
    spots = 100.0 + 0.01 * np.arange(repeats + 1, dtype=np.float64)
    out: dict[str, dict[str, float]] = {}
    for name, (n_exp, n_strike) in CASES.items():
        chain = OptionChain.grid(
            jnp.linspace(75.0, 125.0, n_strike), jnp.linspace(0.05, 1.0, n_exp), multiplier=100.0
        )
        vols = 0.2 + 0.1 * (chain.strike / 100.0 - 1.0) ** 2

        def call(s, chain=chain, vols=vols):
            market = ChainMarket(s, 0.03, 0.01, delta=120.0, gamma=-3.0, vega=800.0, theta=-50.0)
            return jax.block_until_ready(quote_chain(params, limits, market, chain, vols))

        t0 = time.perf_counter()
        call(float(spots[0]))
        compile_s = time.perf_counter() - t0
        for s in spots[1:6]:  # warm caches
            call(float(s))
        ts = np.empty(repeats)
        it = range(repeats)
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(it, desc=name, unit="call", leave=False)
        for i in it:
            s = float(spots[i + 1])
            t0 = time.perf_counter()
            call(s)
            ts[i] = time.perf_counter() - t0
        us = ts * 1e6
        out[name] = {
            "options": int(np.prod(chain.strike.shape)),
            "compile_s": compile_s,
            "p50_us": float(np.percentile(us, 50)),
            "p99_us": float(np.percentile(us, 99)),
            "mean_us": float(us.mean()),
        }
    return out


def run_bench(args: argparse.Namespace) -> int:
    """``jaxmm bench``: see the module docstring."""
    enable_float64()
    import jax

    res = chain_refresh_bench(args.repeats, progress=True)
    load = os.getloadavg()
    dev = jax.devices()[0]
    print(
        f"chain refresh (quote_chain), float64, {dev.platform.upper()} {dev.device_kind}, "
        f"{args.repeats} calls per case, load average {load[0]:.2f}"
    )
    print(f"{'case':<10} {'options':>7} {'compile s':>10} {'p50 us':>9} {'p99 us':>9}")
    for name, r in res.items():
        print(
            f"{name:<10} {r['options']:>7d} {r['compile_s']:>10.2f} {r['p50_us']:>9.1f} "
            f"{r['p99_us']:>9.1f}"
        )
    if args.json:
        meta = {"dtype": "float64", "device": str(dev), "repeats": args.repeats,
                "load_average": load, "jax": jax.__version__}  # fmt: skip
        Path(args.json).write_text(json.dumps({**res, "meta": meta}, indent=2) + "\n")
    return 0
