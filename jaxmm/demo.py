"""``make demo``: price a synthetic 5-expiry x 50-strike x call/put chain with full Greeks, solve
the implied vols back from the prices, and print a compact table with the timings.

Run with ``python -m jaxmm.demo``. The demo is an application, so it turns on float64 for its
own process (the library itself never does).
"""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxmm
import jaxmm.pricing as jp

SPOT = 100.0
RATE = 0.03
DIVIDEND = 0.01
EXPIRY_DAYS = (7, 30, 91, 182, 365)
N_STRIKES = 50


def synthetic_chain():
    """Strikes x expiries x (call, put) with a skewed smile that flattens with maturity."""
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


def _time(fn, repeats=50):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        samples.append(time.perf_counter() - t0)
    return first, statistics.median(samples)


def main() -> None:
    jaxmm.enable_float64()
    strike, expiry, vol, is_call = synthetic_chain()
    n = strike.size
    print(f"jaxmm {jaxmm.__version__} demo — JAX {jax.__version__} on {jax.devices()[0]}, float64")
    print(
        f"chain: {len(EXPIRY_DAYS)} expiries x {N_STRIKES} strikes x call/put = {n} options, "
        f"S={SPOT}, r={RATE}, q={DIVIDEND}\n"
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
    print(header)
    print("-" * len(header))
    atm = int(np.argmin(np.abs(np.asarray(strike[0, :, 0]) - SPOT)))
    for e, days in enumerate(EXPIRY_DAYS):
        for j in (atm - 12, atm - 3, atm, atm + 3, atm + 12):
            c, p = (e, j, 0), (e, j, 1)
            print(
                f"{days:>5} {float(strike[c]):>7.2f} {float(vol[c]):>6.3f} "
                f"{float(greeks.price[c]):>9.4f} {float(greeks.price[p]):>9.4f} "
                f"{float(greeks.delta[c]):>8.4f} {float(greeks.gamma[c]):>8.5f} "
                f"{float(desk.vega[c]):>8.4f} {float(desk.theta[c]):>8.4f} "
                f"{float(greeks.vanna[c]):>8.4f} {float(iv[c]):>8.5f} "
                f"{jp.IVStatus(int(status[c])).name}"
            )
        print()

    ok = np.asarray(status) == int(jp.IVStatus.OK)
    # vega is informative where vega >= 1e-3 * price (docs/pricing.md): there a price rounded
    # to ~1e-16 relative pins sigma to ~1e-13. Elsewhere sigma only reprices the input.
    informative = ok & (np.asarray(greeks.vega) >= 1e-3 * np.asarray(greeks.price))
    err = np.abs(np.asarray(iv) - np.asarray(vol))
    counts = {s.name: int((np.asarray(status) == int(s)).sum()) for s in jp.IVStatus}
    print(
        f"implied vol round trip: max |error| {err[informative].max():.2e} over "
        f"{informative.sum()} options with informative vega; "
        f"{int(ok.sum() - informative.sum())} deep-ITM/OTM options with vega < 1e-3 x price "
        f"reprice exactly (sigma not pinned there: max |error| "
        f"{err[ok & ~informative].max():.1e})"
    )
    print("  statuses: " + ", ".join(f"{k}={v}" for k, v in counts.items() if v))
    print("\ntimings (wall clock, this machine):")
    print(
        f"  price + 12 Greeks, {n} options: first call {first_g * 1e3:8.1f} ms (compile), "
        f"steady {steady_g * 1e6:8.1f} us"
    )
    print(
        f"  implied vol,       {n} options: first call {first_iv * 1e3:8.1f} ms (compile), "
        f"steady {steady_iv * 1e6:8.1f} us"
    )


if __name__ == "__main__":
    main()
