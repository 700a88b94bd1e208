"""Risk benchmarks: portfolio Greeks, pre-trade check latency, Monte-Carlo VaR.

Run: ``.venv/bin/python benchmarks/bench_risk.py`` (writes benchmarks/results/risk.json and
risk.md). float64 (x64 enabled here, in the script), CPU. Medians after warm-up; compile time
(first call) reported separately; every JAX result is ``block_until_ready()``-ed.

Peers, side by side in the same run:
- portfolio Greeks: vectorised NumPy/SciPy closed-form BSM Greeks + ``np.bincount`` aggregation;
- pre-trade check: a naive checker that recomputes every measure from all positions;
- Monte-Carlo VaR: vectorised NumPy/SciPy BSM revaluation of the same scenarios (in chunks).
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from scipy.special import ndtr  # noqa: E402

from jaxmm.portfolio import (  # noqa: E402
    Fill,
    Instrument,
    Side,
    build_position_arrays,
    portfolio_greeks,
)
from jaxmm.portfolio import _greeks as greeks_mod  # noqa: E402
from jaxmm.risk import GreekLimits, LimitChecker, Order, RiskLimits  # noqa: E402
from jaxmm.risk import _var as var_mod  # noqa: E402

QUICK = "--quick" in sys.argv
OUT = Path(__file__).parent / "results"


def median_time(fn, repeat, inner=1):
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        ts.append((time.perf_counter() - t0) / inner)
    return statistics.median(ts)


def book(n, seed=0):
    rng = np.random.default_rng(seed)
    und = ("AAA", "BBB", "CCC")
    spots = np.array([100.0, 50.0, 4000.0])
    expiries = (0.05, 0.1, 0.25, 0.5, 1.0)
    insts, qty = [], []
    for i in range(n):
        u = i % 3
        k = float(spots[u] * rng.uniform(0.7, 1.3))
        insts.append(
            Instrument.option(
                f"o{i}",
                und[u],
                strike=round(k, 2),
                expiry=expiries[i % 5],
                is_call=bool(rng.integers(2)),
                multiplier=100,
            )
        )
        qty.append(int(rng.integers(-20, 21)) or 1)
    vols = rng.uniform(0.1, 0.6, n)
    return insts, qty, vols, spots, und


def numpy_greeks(pa, spot, vol, r, q):
    s = spot[np.asarray(pa.underlying_index)]
    qq = q[np.asarray(pa.underlying_index)]
    k, t = np.asarray(pa.strike), np.asarray(pa.expiry)
    w = np.where(np.asarray(pa.is_call), 1.0, -1.0)
    units = np.asarray(pa.units)
    sq = np.sqrt(t)
    d1 = (np.log(s / k) + (r - qq + 0.5 * vol * vol) * t) / (vol * sq)
    d2 = d1 - vol * sq
    dq, dr = np.exp(-qq * t), np.exp(-r * t)
    pdf = np.exp(-0.5 * d1 * d1) / math.sqrt(2 * math.pi)
    price = w * (s * dq * ndtr(w * d1) - k * dr * ndtr(w * d2))
    delta = w * dq * ndtr(w * d1)
    gamma = dq * pdf / (s * vol * sq)
    vega = s * dq * pdf * sq
    theta = (
        -s * dq * pdf * vol / (2 * sq)
        + w * qq * s * dq * ndtr(w * d1)
        - w * r * k * dr * ndtr(w * d2)
    )
    rho = w * k * t * dr * ndtr(w * d2)
    idx = np.asarray(pa.underlying_index)
    out = [
        np.bincount(idx, units * x, minlength=3) for x in (price, delta, gamma, vega, theta, rho)
    ]
    out.append(np.bincount(idx, units * delta * s, minlength=3))
    out.append(np.bincount(idx, units * gamma * s * s / 100, minlength=3))
    return out


def bench_greeks():
    n = 10_000
    insts, qty, vols, spots, und = book(n)
    pa = build_position_arrays(insts, qty, underlyings=und)
    q = np.array([0.0, 0.01, 0.02])
    r = 0.03
    t0 = time.perf_counter()
    jax.block_until_ready(portfolio_greeks(pa, spots, vols, r, q))
    compile_s = time.perf_counter() - t0
    # steady state: public API with NumPy inputs (includes validation and host->device)
    api = median_time(lambda: jax.block_until_ready(portfolio_greeks(pa, spots, vols, r, q)), 200)
    # kernel only: device-resident inputs
    d_spots, d_vols, d_q = jnp.asarray(spots), jnp.asarray(vols), jnp.asarray(q)
    kern = median_time(
        lambda: jax.block_until_ready(
            greeks_mod._portfolio_greeks_jit(pa, d_spots, d_vols, r, d_q)
        ),
        200,
    )
    peer = median_time(lambda: numpy_greeks(pa, spots, vols, r, q), 50)
    g = portfolio_greeks(pa, spots, vols, r, q)
    ref = numpy_greeks(pa, spots, vols, r, q)
    err = float(np.max(np.abs(np.asarray(g.by_underlying.delta) - ref[1]) / np.abs(ref[1])))
    return {
        "name": "portfolio Greeks, 10,000 positions x 3 underlyings (+ per-expiry, per-position)",
        "compile_s": compile_s,
        "jaxmm_api_ms": api * 1e3,
        "jaxmm_kernel_ms": kern * 1e3,
        "peer": "NumPy/SciPy closed form + bincount (per-underlying only)",
        "peer_ms": peer * 1e3,
        "speedup_api_vs_peer": peer / api,
        "max_rel_diff_delta_vs_peer": err,
        "bar_ms": 2.0,
    }


class NaiveChecker:
    """Reference peer: recomputes every measure over all positions on each check."""

    def __init__(self, insts, lim, spot, unit):
        self.insts = {i.id: i for i in insts}
        self.lim, self.spot, self.unit = lim, spot, unit
        self.qty = dict.fromkeys(self.insts, 0)

    def ok(self, iid, dq):
        pos = dict(self.qty)
        pos[iid] += dq
        lim = self.lim
        if abs(pos[iid]) > lim.max_position:
            return False
        notional = sum(
            abs(q) * self.insts[i].multiplier * self.spot[self.insts[i].underlying]
            for i, q in pos.items()
        )
        if notional > lim.max_gross_notional:
            return False
        u = self.insts[iid].underlying
        for j, name in enumerate(("delta", "gamma", "vega", "theta")):
            tot = sum(
                q * self.insts[i].multiplier * self.unit[i][j]
                for i, q in pos.items()
                if self.insts[i].underlying == u
            )
            if abs(tot) > getattr(lim.greeks, name):
                return False
        return True


def bench_pretrade():
    n = 2_000
    insts, qty, vols, spots, und = book(n, seed=1)
    spot = dict(zip(und, spots.tolist(), strict=True))
    lim = RiskLimits(
        max_position=500,
        max_gross_notional=5e9,
        max_per_strike=2000,
        max_per_expiry=20000,
        greeks=GreekLimits(delta=1e6, gamma=1e5, vega=1e8, theta=1e8),
    )
    chk = LimitChecker(insts, lim)
    chk.update_market_from_model(
        spot, {i.id: float(v) for i, v in zip(insts, vols, strict=True)}, rate=0.03
    )
    for i, q in zip(insts, qty, strict=True):
        chk.on_fill(Fill(i.id, Side.BUY if q > 0 else Side.SELL, abs(q), 1.0))
    orders = [Order(insts[j].id, Side.BUY if j % 2 else Side.SELL, 1 + j % 7) for j in range(500)]
    for o in orders:
        chk.check_order(o)
    per = median_time(lambda: [chk.check_order(o) for o in orders], 41) / len(orders)
    pre = Order(insts[0].id, Side.BUY, 3)
    single = median_time(lambda: chk.check_order(pre), 2001)
    unit = {i.id: tuple(x / i.multiplier for x in chk._unit[i.id]) for i in insts}
    naive = NaiveChecker(insts, lim, spot, unit)
    naive.qty = {i.id: q for i, q in zip(insts, qty, strict=True)}
    peer = median_time(lambda: naive.ok(pre.instrument, 3), 21)
    return {
        "name": "pre-trade check_order, one order vs a 2,000-position book, all limits on",
        "jaxmm_us_mixed_orders": per * 1e6,
        "jaxmm_us_single_order": single * 1e6,
        "peer": "naive Python recompute of every measure per check",
        "peer_us": peer * 1e6,
        "speedup_vs_peer": peer / per,
        "bar_us": 20.0,
    }


def numpy_reval(pa, spot, vol, r, q, returns, dt, chunk=1000):
    idx = np.asarray(pa.underlying_index)
    k, t0 = np.asarray(pa.strike), np.asarray(pa.expiry)
    w = np.where(np.asarray(pa.is_call), 1.0, -1.0)
    units = np.asarray(pa.units)
    qq = q[idx]

    def price(s, t):
        sq = np.sqrt(t)
        d1 = (np.log(s / k) + (r - qq + 0.5 * vol * vol) * t) / (vol * sq)
        d2 = d1 - vol * sq
        return w * (s * np.exp(-qq * t) * ndtr(w * d1) - k * np.exp(-r * t) * ndtr(w * d2))

    base = (units * price(spot[idx], t0)).sum()
    out = []
    for c in range(0, returns.shape[0], chunk):
        s1 = spot[idx][None, :] * np.exp(returns[c : c + chunk][:, idx])
        out.append((units * price(s1, t0 - dt)).sum(axis=1) - base)
    return np.concatenate(out)


def bench_mc_var():
    n_opt, n_scen = 1_000, (2_000 if QUICK else 10_000)
    insts, qty, vols, spots, und = book(n_opt, seed=2)
    pa = build_position_arrays(insts, qty, underlyings=und)
    q = np.array([0.0, 0.01, 0.02])
    corr = np.array([[1.0, 0.6, 0.4], [0.6, 1.0, 0.5], [0.4, 0.5, 1.0]])
    h = 1 / 252
    rets = var_mod.simulate_factor_returns(jax.random.key(0), n_scen, [0.25, 0.35, 0.2], corr, h)
    shift = jnp.zeros_like(rets)
    d_spots, d_vols, d_q = jnp.asarray(spots), jnp.asarray(vols), jnp.asarray(q)
    t0 = time.perf_counter()
    jax.block_until_ready(var_mod._reval_jit(pa, d_spots, d_vols, 0.03, d_q, rets, shift, h))
    compile_s = time.perf_counter() - t0
    steady = median_time(
        lambda: jax.block_until_ready(
            var_mod._reval_jit(pa, d_spots, d_vols, 0.03, d_q, rets, shift, h)
        ),
        5,
    )
    rets_np = np.asarray(rets)
    t0 = time.perf_counter()
    ref = numpy_reval(pa, spots, vols, 0.03, q, rets_np, h)
    peer = time.perf_counter() - t0
    got = np.asarray(var_mod._reval_jit(pa, d_spots, d_vols, 0.03, d_q, rets, shift, h))
    t0 = time.perf_counter()
    res = var_mod.historical_var(got, 0.99)
    var_s = time.perf_counter() - t0
    return {
        "name": f"Monte-Carlo VaR, full BSM revaluation, {n_scen:,} scenarios x {n_opt:,} options",
        "compile_s": compile_s,
        "jaxmm_s": steady,
        "var_es_from_pnl_s": var_s,
        "peer": "NumPy/SciPy vectorised BSM revaluation (1,000-scenario chunks), one run",
        "peer_s": peer,
        "speedup_vs_peer": peer / steady,
        "max_abs_diff_pnl_vs_peer": float(np.max(np.abs(got - ref))),
        "var_99": res.var,
        "es_99": res.es,
    }


def main():
    env = {
        "device": f"{jax.devices()[0].platform.upper()} ({os.cpu_count()} cores)",
        "dtype": "float64",
        "jax": jax.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "load_average_1_5_15_at_start": list(os.getloadavg()),
    }
    results = {
        "env": env,
        "greeks": bench_greeks(),
        "pretrade": bench_pretrade(),
        "mc_var": bench_mc_var(),
    }
    env["load_average_1_5_15_at_end"] = list(os.getloadavg())
    OUT.mkdir(exist_ok=True)
    (OUT / "risk.json").write_text(json.dumps(results, indent=2))
    g, p, m = results["greeks"], results["pretrade"], results["mc_var"]
    md = [
        "# Risk benchmarks",
        "",
        f"Device: {env['device']}; dtype {env['dtype']}; jax {env['jax']}. Medians after "
        "warm-up; compile time separate. Load average (1 min) at start/end: "
        f"{env['load_average_1_5_15_at_start'][0]:.1f} / "
        f"{env['load_average_1_5_15_at_end'][0]:.1f} (shared machine).",
        "",
        "| benchmark | jaxmm | peer | peer time | ratio | bar |",
        "|---|---|---|---|---|---|",
        f"| {g['name']} | {g['jaxmm_api_ms']:.3f} ms (API), {g['jaxmm_kernel_ms']:.3f} ms "
        f"(kernel); compile {g['compile_s']:.2f} s | {g['peer']} | {g['peer_ms']:.3f} ms | "
        f"{g['speedup_api_vs_peer']:.1f}x | < 2 ms |",
        f"| {p['name']} | {p['jaxmm_us_mixed_orders']:.2f} us (mixed), "
        f"{p['jaxmm_us_single_order']:.2f} us (single) | {p['peer']} | {p['peer_us']:.0f} us | "
        f"{p['speedup_vs_peer']:.0f}x | < 20 us |",
        f"| {m['name']} | {m['jaxmm_s']:.3f} s; compile {m['compile_s']:.2f} s | {m['peer']} | "
        f"{m['peer_s']:.3f} s | {m['speedup_vs_peer']:.1f}x | — |",
        "",
    ]
    (OUT / "risk.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
