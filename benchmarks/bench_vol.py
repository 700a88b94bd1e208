"""Volatility-calibration benchmarks: SVI (multi-start), SSVI and Heston vs SciPy least_squares.

Run: ``.venv/bin/python benchmarks/bench_vol.py`` (writes benchmarks/results/vol.json and
vol.md). float64 (x64 enabled here, in the script), CPU. Compile time (first call) is reported
separately from the steady state (median of repeated calls with fresh noise of the same shape);
every JAX result is ``block_until_ready()``-ed.

Data: a synthetic chain of 10 expiries x 50 strikes whose implied vols come from a Heston model
(skew, smile and term structure) plus bid/ask-like noise of 0.3 vol points.

Peers, side by side in the same run, solving *the same problem*:

- SVI: ``scipy.optimize.least_squares`` (method "lm", 2-point Jacobian) on the identical
  residual (same vega weights, same unconstrained parameterisation, the same 32 starts per
  slice), slice by slice, best start kept. Also reported: SciPy from the single classic start.
- SSVI: the same with the joint SSVI parameterisation and the same 8 starts.
- Heston (200 quotes): SciPy "lm" with a 2-point Jacobian whose residuals call jaxmm's jitted
  Heston pricer (128 nodes; there is no faster Python Heston pricer to give it), one start,
  vs jaxmm's vmapped 4-start LM with the autodiff Jacobian, and jaxmm from the same single start.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from scipy.optimize import least_squares  # noqa: E402

import jaxmm.vol as jv  # noqa: E402
from jaxmm.pricing._heston import heston_price  # noqa: E402
from jaxmm.pricing._iv import implied_vol  # noqa: E402
from jaxmm.vol import _svi  # noqa: E402

OUT = Path(__file__).parent / "results"
S, R, Q = 100.0, 0.02, 0.01
HESTON = (0.035, 1.5, 0.06, 0.8, -0.7)
EXPIRIES = np.array([0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0])


def chain_vols(n_strikes=50):
    """Heston implied vols on a k-grid scaled by sqrt(T): (10, n_strikes) arrays."""
    z = np.linspace(-2.2, 1.8, n_strikes)
    k = z[None, :] * 0.22 * np.sqrt(EXPIRIES)[:, None]
    fwd = S * np.exp((R - Q) * EXPIRIES)[:, None]
    strike = fwd * np.exp(k)
    t = np.broadcast_to(EXPIRIES[:, None], k.shape)
    call = k >= 0
    p = heston_price(S, strike, t, R, Q, *HESTON, call, n_nodes=256)
    iv, st = implied_vol(p, S, strike, t, R, Q, call)
    assert bool(jnp.all(st == 0))
    return k, np.asarray(iv)


def median(fn, repeat):
    ts = []
    for i in range(repeat):
        t0 = time.perf_counter()
        fn(i)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def noisy(iv, seed):
    return iv + 0.003 * np.random.default_rng(seed).standard_normal(iv.shape)


# --- numpy twins of the residuals (same parameterisations as jaxmm) ---------------------------
def np_svi_w(z, k):
    rho = 0.999 * np.tanh(z[2])
    b = 2.0 / (1.0 + abs(rho)) / (1.0 + np.exp(-z[1]))
    sig = np.exp(z[4])
    a = np.exp(z[0]) - b * sig * np.sqrt(1 - rho * rho)
    x = k - z[3]
    return a + b * (rho * x + np.sqrt(x * x + sig * sig))


def vega_w(k, iv, t):
    s = iv * np.sqrt(t)
    d1 = -k / s + 0.5 * s
    return np.exp(-0.5 * d1 * d1)


def scipy_svi(k, iv, starts):
    total_loss, rmses = 0.0, []
    for i in range(k.shape[0]):
        t = EXPIRIES[i]
        sw = np.sqrt(vega_w(k[i], iv[i], t))

        def res(z, i=i, t=t, sw=sw):
            return sw * (np.sqrt(np.maximum(np_svi_w(z, k[i]), 1e-12) / t) - iv[i])

        best = None
        for z0 in starts[i]:
            out = least_squares(res, z0, method="lm", xtol=1e-12, ftol=1e-12)
            if best is None or out.cost < best.cost:
                best = out
        total_loss += best.cost
        model = np.sqrt(np.maximum(np_svi_w(best.x, k[i]), 0) / t)
        rmses.append(np.sqrt(np.mean((model - iv[i]) ** 2)))
    return total_loss, float(np.sqrt(np.mean(np.square(rmses))))


def np_ssvi_w(z, k):
    rho = 0.999 * np.tanh(z[0])
    eta = 2.0 / (1.0 + abs(rho)) / (1.0 + np.exp(-z[1]))
    gamma = 0.5 / (1.0 + np.exp(-z[2]))
    theta = np.cumsum(np.exp(z[3:]))[:, None]
    phi = eta * theta ** (-gamma) * (1 + theta) ** (gamma - 1)
    return 0.5 * theta * (1 + rho * phi * k + np.sqrt((phi * k + rho) ** 2 + 1 - rho * rho))


def scipy_ssvi(k, iv, starts):
    sw = np.sqrt(vega_w(k, iv, EXPIRIES[:, None]))

    def res(z):
        w = np.maximum(np_ssvi_w(z, k), 1e-12)
        return (sw * (np.sqrt(w / EXPIRIES[:, None]) - iv)).ravel()

    best = min(
        (least_squares(res, z0, method="lm", xtol=1e-12, ftol=1e-12) for z0 in starts),
        key=lambda o: o.cost,
    )
    w = np_ssvi_w(best.x, k)
    return best.cost, float(np.sqrt(np.mean((np.sqrt(w / EXPIRIES[:, None]) - iv) ** 2)))


def main():
    k, iv_true = chain_vols()
    rows, raw = [], {}

    # --- SVI 10 x 50, 32 starts ---------------------------------------------------------
    t0 = time.perf_counter()
    fit = jv.fit_svi(k, noisy(iv_true, 0), EXPIRIES, n_starts=32)
    fit.rmse.block_until_ready()
    compile_svi = time.perf_counter() - t0

    def run_svi(i):
        f = jv.fit_svi(k, noisy(iv_true, i), EXPIRIES, n_starts=32)
        f.rmse.block_until_ready()
        return f

    t_svi = median(run_svi, 7)
    fit = run_svi(0)
    rmse_svi = float(jnp.sqrt(jnp.mean(fit.rmse**2)))
    iv0 = noisy(iv_true, 0)
    used = jnp.asarray(np.isfinite(iv0))
    starts = np.asarray(
        jax.vmap(lambda a, b, c, d: _svi._starts(a, b, c, d, 32, jnp.float64))(
            jnp.asarray(k), jnp.asarray(iv0), used, jnp.asarray(EXPIRIES)
        )
    )
    t0 = time.perf_counter()
    sp_loss, sp_rmse = scipy_svi(k, iv0, starts)
    t_sp = time.perf_counter() - t0
    t0 = time.perf_counter()
    sp1_loss, sp1_rmse = scipy_svi(k, iv0, starts[:, :1])
    t_sp1 = time.perf_counter() - t0
    raw["svi"] = dict(
        jaxmm_s=t_svi, compile_s=compile_svi, jaxmm_rmse_volpts=100 * rmse_svi,
        jaxmm_loss=float(jnp.sum(fit.loss)), scipy_s=t_sp, scipy_rmse_volpts=100 * sp_rmse,
        scipy_loss=sp_loss, scipy_single_start_s=t_sp1, scipy_single_rmse_volpts=100 * sp1_rmse,
        statuses=np.asarray(fit.status).tolist(),
    )  # fmt: skip
    rows.append(
        (
            "SVI, 10 expiries x 50 strikes, 32 starts/slice",
            f"{t_svi * 1e3:.1f} ms; compile {compile_svi:.1f} s; RMSE {100 * rmse_svi:.3f} vp",
            f"SciPy least_squares lm, same residual and 32 starts: {t_sp:.2f} s, "
            f"RMSE {100 * sp_rmse:.3f} vp (1 start: {t_sp1:.2f} s, {100 * sp1_rmse:.3f} vp)",
            f"{t_sp / t_svi:.0f}x",
            "< 1 s and >= 5x at equal or better RMSE",
        )
    )

    # --- SSVI on the same data, 8 starts ----------------------------------------------------
    t0 = time.perf_counter()
    sfit = jv.fit_ssvi(k, iv0, EXPIRIES, n_starts=8)
    sfit.loss.block_until_ready()
    compile_ssvi = time.perf_counter() - t0

    def run_ssvi(i):
        f = jv.fit_ssvi(k, noisy(iv_true, i), EXPIRIES, n_starts=8)
        f.loss.block_until_ready()
        return f

    t_ssvi = median(run_ssvi, 5)
    sfit = run_ssvi(0)
    rmse_ssvi = float(jnp.sqrt(jnp.mean(sfit.rmse**2)))
    # identical starts: rebuild them the way _ssvi._fit does
    idx = np.argmin(np.abs(k), axis=1)
    th0 = np.maximum.accumulate(np.maximum(iv0[np.arange(10), idx] ** 2 * EXPIRIES, 1e-6))
    inc = np.maximum(np.diff(np.r_[0.0, th0]), 1e-3 * th0[-1] / 10)
    u = np.asarray(jax.random.uniform(jax.random.PRNGKey(1), (8, 3), dtype=jnp.float64))
    rho0, frac, gfrac = -0.9 + 1.4 * u[:, 0], 0.05 + 0.9 * u[:, 1], 0.1 + 0.8 * u[:, 2]
    head = np.stack([np.arctanh(rho0 / 0.999), np.log(frac / (1 - frac)),
                     np.log(gfrac / (1 - gfrac))], 1)  # fmt: skip
    sstarts = np.concatenate([head, np.tile(np.log(inc), (8, 1))], 1)
    t0 = time.perf_counter()
    ss_loss, ss_rmse = scipy_ssvi(k, iv0, sstarts)
    t_ss = time.perf_counter() - t0
    raw["ssvi"] = dict(
        jaxmm_s=t_ssvi, compile_s=compile_ssvi, jaxmm_rmse_volpts=100 * rmse_ssvi,
        jaxmm_loss=float(sfit.loss), scipy_s=t_ss, scipy_rmse_volpts=100 * ss_rmse,
        scipy_loss=ss_loss, status=int(sfit.status),
    )  # fmt: skip
    rows.append(
        (
            "SSVI (power law), same 10 x 50 chain, 8 starts",
            f"{t_ssvi * 1e3:.1f} ms; compile {compile_ssvi:.1f} s; RMSE {100 * rmse_ssvi:.3f} vp",
            f"SciPy lm, same residual and starts: {t_ss:.2f} s, RMSE {100 * ss_rmse:.3f} vp",
            f"{t_ss / t_ssvi:.0f}x",
            "—",
        )
    )

    # --- Heston, 200 quotes ---------------------------------------------------------------
    k20, iv20 = k[:, ::5][:, :20], iv_true[:, ::5][:, :20]
    k20 = np.concatenate([k[:, ::5], k[:, 2::5]], 1)[:, :20]
    iv20 = np.concatenate([iv_true[:, ::5], iv_true[:, 2::5]], 1)[:, :20]
    t = np.broadcast_to(EXPIRIES[:, None], k20.shape).ravel()
    strike = (S * np.exp((R - Q) * t)) * np.exp(k20.ravel())
    call = k20.ravel() >= 0
    ivq = iv20.ravel() + 0.002 * np.random.default_rng(5).standard_normal(t.shape)
    t0 = time.perf_counter()
    hf = jv.fit_heston(S, strike, t, R, Q, call, implied_vol=ivq)
    hf.loss.block_until_ready()
    compile_h = time.perf_counter() - t0

    def run_h(i):
        f = jv.fit_heston(S, strike, t, R, Q, call, implied_vol=ivq + 1e-4 * i)
        f.loss.block_until_ready()
        return f

    t_h = median(run_h, 3)
    hf = run_h(0)
    t0 = time.perf_counter()
    jv.fit_heston(S, strike, t, R, Q, call, implied_vol=ivq, n_starts=1).loss.block_until_ready()
    compile_h1 = time.perf_counter() - t0

    def run_h1(i):
        f = jv.fit_heston(S, strike, t, R, Q, call, implied_vol=ivq + 1e-4 * i, n_starts=1)
        f.loss.block_until_ready()
        return f

    t_h1 = median(run_h1, 3)
    hf1 = run_h1(0)
    # SciPy peer: same vega-scaled residual, jitted jaxmm pricer, FD Jacobian, one start
    from jaxmm.pricing._bsm import bsm_price

    target = np.asarray(bsm_price(S, strike, t, R, Q, ivq, call))
    vega = np.asarray(jax.vmap(jax.grad(lambda v, kk, tt, c: bsm_price(S, kk, tt, R, Q, v, c)))(
        jnp.asarray(ivq), jnp.asarray(strike), jnp.asarray(t), jnp.asarray(call)))  # fmt: skip
    scale = np.maximum(vega, 1e-4 * S * np.sqrt(t))
    price_fn = jax.jit(
        lambda z: heston_price(
            S, strike, t, R, Q, *jnp.exp(z[:4]), 0.999 * jnp.tanh(z[4]), call, n_nodes=128
        )  # fmt: skip
    )
    atm = float(np.mean(ivq))
    z0 = np.r_[np.log([atm**2, 2.0, atm**2, 0.5]), np.arctanh(-0.5 / 0.999)]
    price_fn(jnp.asarray(z0)).block_until_ready()
    t0 = time.perf_counter()
    hs = least_squares(lambda z: (np.asarray(price_fn(jnp.asarray(z))) - target) / scale, z0,
                       method="lm", xtol=1e-12, ftol=1e-12)  # fmt: skip
    t_hs = time.perf_counter() - t0
    pm = np.asarray(price_fn(jnp.asarray(hs.x)))
    ivm, st = implied_vol(pm, S, strike, t, R, Q, call)
    hs_rmse = float(np.sqrt(np.nanmean((np.asarray(ivm) - ivq) ** 2)))
    raw["heston"] = dict(
        jaxmm_s=t_h, compile_s=compile_h, jaxmm_rmse_volpts=100 * float(hf.rmse_vol),
        jaxmm_loss=float(hf.loss), scipy_s=t_hs, scipy_rmse_volpts=100 * hs_rmse,
        scipy_loss=float(hs.cost), status=int(hf.status), iterations=int(hf.iterations),
        params=[float(getattr(hf, n)) for n in ("v0", "kappa", "theta", "xi", "rho")],
        true_params=list(HESTON), jaxmm_1start_s=t_h1, compile_1start_s=compile_h1,
        jaxmm_1start_rmse_volpts=100 * float(hf1.rmse_vol),
    )  # fmt: skip
    rows.append(
        (
            "Heston, 200 quotes (10 expiries), 4 starts",
            f"{t_h:.2f} s; compile {compile_h:.1f} s; RMSE {100 * float(hf.rmse_vol):.3f} vp",
            f"SciPy lm + FD Jacobian over jaxmm's jitted pricer, 1 start: {t_hs:.2f} s, "
            f"RMSE {100 * hs_rmse:.3f} vp",
            f"{t_hs / t_h:.1f}x",
            "—",
        )
    )
    rows.append(
        (
            "Heston, same 200 quotes, 1 start (the peer's setting)",
            f"{t_h1:.2f} s; compile {compile_h1:.1f} s; RMSE {100 * float(hf1.rmse_vol):.3f} vp",
            f"as above: {t_hs:.2f} s",
            f"{t_hs / t_h1:.1f}x",
            "—",
        )
    )

    meta = dict(
        device=f"CPU ({jax.devices()[0].platform}), 2 cores shared", dtype="float64",
        jax=jax.__version__, python=platform.python_version(),
    )  # fmt: skip
    OUT.mkdir(exist_ok=True)
    (OUT / "vol.json").write_text(json.dumps(dict(meta=meta, results=raw), indent=2))
    lines = [
        "# Volatility calibration benchmarks",
        "",
        f"Device: CPU (2 cores, shared); dtype float64; jax {jax.__version__}. Steady state is "
        "the median over fresh noisy data of the same shape; compile time separate. RMSE in "
        "implied-vol points (vp).",
        "",
        "| benchmark | jaxmm | peer | ratio | bar |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows]
    (OUT / "vol.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
