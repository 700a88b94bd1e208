"""Throughput of the Monte-Carlo market-making simulator (jaxmm.sim), in path-steps per second.

Cases (Avellaneda-Stoikov setting: binomial mid, linear Poisson fills, A-S quotes):

1. 100,000 paths x 1,000 steps, float32 and float64, for
   - peer: a straightforward ``lax.scan`` over time with one ``jax.random.split`` per step and
     ``jax.random.uniform`` for all paths (written here, same model);
   - ``jaxmm.sim.simulate(rng="jax")``: one threefry call per block of 50 steps;
   - ``jaxmm.sim.simulate(rng="hash")``: counter-based hash words (two MurmurHash3 finaliser
     rounds per word);
2. a 100-parameter x 1,000-path sweep (1,000 steps), float64, ``rng="jax"`` and ``"hash"``.

Compile time (first call) is reported separately from the steady state (median of ``--repeat``
calls after warm-up, ``block_until_ready``). Writes benchmarks/results/sim.{json,md}.
Run: ``python benchmarks/bench_sim.py`` (several minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import platform
import statistics
import time

import jax
import jax.numpy as jnp

jax.config.update("jax_enable_x64", True)

from jaxmm.sim import ArithmeticBrownian, PoissonFills, simulate, sweep  # noqa: E402
from jaxmm.strategy import AvellanedaStoikov  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent / "results"
GAMMA, K, A, SIGMA, DT = 0.1, 1.5, 140.0, 2.0, 0.001


def peer_scan(n_paths: int, n_steps: int, dtype):
    """The straightforward implementation: one key split and one uniform draw per step."""

    @jax.jit
    def run(key):
        dt = jnp.asarray(DT, dtype)
        T = jnp.asarray(n_steps * DT, dtype)
        liq = jnp.asarray(math.log1p(GAMMA / K) / GAMMA, dtype)

        def step(c, i):
            s, q, x, key = c
            key, sub = jax.random.split(key)
            u = jax.random.uniform(sub, (n_paths, 3), dtype)
            tau = T - i.astype(dtype) * dt
            risk = GAMMA * SIGMA**2 * tau
            bid = s - (1.0 + 2.0 * q) * risk / 2.0 - liq
            ask = s + (1.0 - 2.0 * q) * risk / 2.0 + liq
            pb = jnp.clip(A * jnp.exp(-K * (s - bid)) * dt, 0.0, 1.0)
            pa = jnp.clip(A * jnp.exp(-K * (ask - s)) * dt, 0.0, 1.0)
            fb = (u[:, 0] < pb).astype(dtype)
            fa = (u[:, 1] < pa).astype(dtype)
            x = x - fb * bid + fa * ask
            q = q + fb - fa
            s = s + jnp.where(u[:, 2] < 0.5, -1.0, 1.0).astype(dtype) * SIGMA * jnp.sqrt(dt)
            return (s, q, x, key), None

        z = jnp.zeros((n_paths,), dtype)
        c0 = (z + 100.0, z, z, key)
        (s, q, x, _), _ = jax.lax.scan(step, c0, jnp.arange(n_steps))
        return x + q * s

    return lambda key: run(key)


def timed(fn, repeat):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(jax.random.key(0)))
    first = time.perf_counter() - t0
    ts = []
    for i in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(jax.random.key(i + 1)))
        ts.append(time.perf_counter() - t0)
    med = statistics.median(ts)
    return first - med, med


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--paths", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=1_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    n, T = args.paths, args.steps
    rows = []
    strat = AvellanedaStoikov(GAMMA, K, SIGMA, T * DT)
    fills = PoissonFills(A, K, prob="linear")
    for dtype in (jnp.float32, jnp.float64):
        market = ArithmeticBrownian(jnp.asarray(100.0, dtype), SIGMA, binomial=True)
        cases = [("peer: scan, split per step", peer_scan(n, T, dtype))]
        for rng in ("jax", "hash"):

            def fn(key, rng=rng, market=market):
                return simulate(
                    strat, market, fills, key, n, n_steps=T, dt=DT, record=False, rng=rng
                ).pnl

            cases.append((f"jaxmm.sim.simulate(rng={rng!r})", fn))
        for name, fn in cases:
            compile_s, run_s = timed(fn, args.repeat)
            rows.append(dict(case=f"A-S {n} paths x {T} steps", impl=name,
                             dtype=jnp.dtype(dtype).name, compile_s=compile_s, run_s=run_s,
                             path_steps_per_s=n * T / run_s))  # fmt: skip
            print(rows[-1], flush=True)
    gammas = jnp.exp(jnp.linspace(math.log(0.01), math.log(1.0), 100))
    strats = jax.vmap(lambda g: AvellanedaStoikov(g, K, SIGMA, T * DT))(gammas)
    market = ArithmeticBrownian(100.0, SIGMA, binomial=True)
    for rng in ("jax", "hash"):
        fn = lambda key, rng=rng: sweep(strats, market, fills, key, 1000, n_steps=T, dt=DT,
                                        rng=rng).pnl  # fmt: skip
        compile_s, run_s = timed(fn, args.repeat)
        rows.append(dict(case=f"sweep 100 params x 1000 paths x {T} steps",
                         impl=f"jaxmm.sim.sweep(rng={rng!r})", dtype="float64",
                         compile_s=compile_s, run_s=run_s,
                         path_steps_per_s=100 * 1000 * T / run_s))  # fmt: skip
        print(rows[-1], flush=True)
    peers = {r["dtype"]: r["path_steps_per_s"] for r in rows if r["impl"].startswith("peer")}
    for r in rows:
        r["vs_peer"] = r["path_steps_per_s"] / peers[r["dtype"]]
    device = f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"
    load = os.getloadavg()[0]
    meta = dict(device=device, jax=jax.__version__, backend=jax.default_backend(),
                note=f"1-min load average at the end of the run {load:.2f}")  # fmt: skip
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "sim.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=2) + "\n")
    lines = [
        "# jaxmm.sim throughput",
        "",
        f"Device: {device}, backend {meta['backend']}, jax {meta['jax']}. {meta['note']}.",
        "Steady state = median of repeated calls after warm-up; compile = first call - steady.",
        "",
        "| case | implementation | dtype | compile s | run s | M path-steps/s | vs peer |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['case']} | {r['impl']} | {r['dtype']} | {r['compile_s']:.2f} "
                     f"| {r['run_s']:.3f} | {r['path_steps_per_s'] / 1e6:.1f} "
                     f"| {r['vs_peer']:.2f} |")  # fmt: skip
    (OUT / "sim.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
