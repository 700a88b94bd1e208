"""jaxmm.sim: market models, ladders, latency, pessimistic/partial fills, gradients, tune,
sharding."""

import math
import os
import subprocess
import sys
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from jaxmm.sim import (
    GBM,
    ArithmeticBrownian,
    FairValuePath,
    JumpDiffusion,
    PoissonFills,
    RegimeSwitching,
    mean_variance,
    simulate,
    tune,
)
from jaxmm.strategy import AvellanedaStoikov, Ladder, Quote, QuotePipeline


class FixedSpread(eqx.Module):
    half: jax.Array
    size: jax.Array

    def __init__(self, half, size=1.0):
        self.half = jnp.asarray(half)
        self.size = jnp.asarray(size)

    def quote(self, state):
        mid = jnp.asarray(state.mid)
        h = self.half.astype(mid.dtype)
        s = self.size.astype(mid.dtype)
        return Quote(mid - h, mid + h, s, s)


A, K, DT = 140.0, 1.5, 0.005


def _p(delta, dt=DT):
    return 1.0 - math.exp(-A * math.exp(-K * delta) * dt)


def _band(count, n, p, z=4.0):
    return abs(count - n * p) < z * math.sqrt(n * p * (1 - p))


def test_market_models_moments():
    n, steps, dt = 2000, 50, 0.02
    key = jax.random.key(1)
    T = steps * dt
    kw = dict(n_steps=steps, dt=dt, record=False)
    idle = FixedSpread(50.0)  # never fills: the result's mid is the market model's path
    g = simulate(idle, GBM(100.0, 0.1, 0.3), PoissonFills(A, K), key, n, **kw).mid
    lg = np.log(np.asarray(g) / 100.0)
    assert abs(lg.mean() - (0.1 - 0.045) * T) < 4 * 0.3 * math.sqrt(T / n)
    assert abs(lg.var() / (0.09 * T) - 1) < 0.15
    j = simulate(idle, JumpDiffusion(100.0, 1.0, 3.0, -0.5, 0.5), PoissonFills(A, K), key, n, **kw)
    pj = 1 - math.exp(-3.0 * dt)  # one-jump-per-step discretisation (documented)
    mean = steps * pj * -0.5
    var = T + steps * (pj * (0.25 + 0.25) - (pj * 0.5) ** 2)
    jm = np.asarray(j.mid) - 100.0
    assert abs(jm.mean() - mean) < 4 * math.sqrt(var / n)
    assert abs(jm.var() / var - 1) < 0.15
    # regime switching with symmetric rates: the variance is the average of the two regimes'
    r = simulate(idle, RegimeSwitching(100.0, [1.0, 3.0], [50.0, 50.0]), PoissonFills(A, K),
                 key, n, **kw)  # fmt: skip
    assert abs(np.var(np.asarray(r.mid)) / (T * (1.0 + 9.0) / 2) - 1) < 0.15
    f = simulate(idle, FairValuePath(np.linspace(5.0, 6.0, 11)), PoissonFills(A, K), key, 4,
                 n_steps=10, dt=0.1)  # fmt: skip
    np.testing.assert_allclose(f.mid_path, np.tile(np.linspace(5.0, 6.0, 11), (4, 1)), atol=1e-12)


def test_ladder_levels_fill_comonotone_with_marginal_probabilities():
    lad = QuotePipeline(FixedSpread(0.3), ladder=Ladder(spacing=0.4, levels=3))
    probe = lad.quote(__import__("jaxmm.strategy", fromlist=["MarketState"]).MarketState(100.0))
    deltas = 100.0 - np.asarray(probe.bid)
    sizes = np.asarray(probe.bid_size)
    n, steps = 300, 100
    res = simulate(lad, ArithmeticBrownian(100.0, 0.0), PoissonFills(A, K), jax.random.key(2),
                   n, n_steps=steps, dt=DT)  # fmt: skip
    qty = np.asarray(res.bid_qty)  # total per step; level j trades only if levels < j do
    cum = np.cumsum(sizes)
    levels_hit = (qty[..., None] >= cum - 1e-12).sum(axis=-1)
    assert set(np.unique(qty)) <= {0.0, *np.round(cum, 12)}
    for j, d in enumerate(deltas):
        assert _band((levels_hit > j).sum(), n * steps, _p(d))


def test_latency_delays_quotes():
    res = simulate(FixedSpread(0.5), ArithmeticBrownian(100.0, 2.0), PoissonFills(A, K),
                   jax.random.key(0), 8, n_steps=30, dt=DT, latency_steps=4)  # fmt: skip
    assert np.all(np.asarray(res.bid_quoted) == 26)
    assert np.all(np.asarray(res.bid_qty)[:, :4] == 0)
    # the live quote at step i was decided at step i - 4 (centred on that step's mid)
    mid = np.asarray(res.mid_path)
    np.testing.assert_allclose(np.asarray(res.bid_quote)[:, 4:], mid[:, :-5] - 0.5, atol=1e-12)


def test_pessimistic_fills_use_the_worse_mid():
    # binomial mid: a bid's distance grows by sigma sqrt(dt) after an up-move, so the bid fill
    # probability is (p(d) + p(d + sigma sqrt(dt))) / 2 per step.
    sig, d, n, steps = 2.0, 0.5, 400, 200
    res = simulate(FixedSpread(d), ArithmeticBrownian(100.0, sig, binomial=True),
                   PoissonFills(A, K, pessimistic=True), jax.random.key(6), n, n_steps=steps,
                   dt=DT, record=False)  # fmt: skip
    p = 0.5 * (_p(d) + _p(d + sig * math.sqrt(DT)))
    assert _band(float(res.bid_fills.sum()), n * steps, p)
    assert _band(float(res.ask_fills.sum()), n * steps, p)
    opt = simulate(FixedSpread(d), ArithmeticBrownian(100.0, sig, binomial=True),
                   PoissonFills(A, K), jax.random.key(6), n, n_steps=steps, dt=DT,
                   record=False)  # fmt: skip
    assert np.all(np.asarray(res.bid_fills) <= np.asarray(opt.bid_fills))


def test_partial_fills_by_market_order_size():
    # size-3 quote, unit market orders: E[filled per step] = sum_{n=1..3} P(N >= n)
    d, n, steps = 0.2, 400, 100
    fl = PoissonFills(A, K, partial=True, order_size=1.0)
    res = simulate(FixedSpread(d, size=3.0), ArithmeticBrownian(100.0, 0.0), fl,
                   jax.random.key(7), n, n_steps=steps, dt=DT)  # fmt: skip
    mu = A * math.exp(-K * d) * DT
    dist = stats.poisson(mu)
    expect = sum(dist.sf(k - 1) for k in (1, 2, 3))
    var = sum(min(k, 3) ** 2 * dist.pmf(k) for k in range(0, 40)) + 9 * dist.sf(39) - expect**2
    qty = np.asarray(res.bid_qty)
    assert set(np.unique(qty)) <= {0.0, 1.0, 2.0, 3.0}
    assert abs(qty.mean() - expect) < 4 * math.sqrt(var / qty.size)


def test_relaxed_gradient_matches_fd_of_exact_simulator():
    # inventory-independent quotes: the relaxed mean PnL has the same expectation as the exact
    # one; compare d/d(half) of the relaxed mean with a central finite difference of the exact
    # simulator's mean on common random numbers, and with the closed form
    # d/dh [2 n h p(h)] (sigma = 0: PnL = spread captured).
    n, steps, h, eps = 2000, 50, 0.5, 0.05
    mk, fl = ArithmeticBrownian(100.0, 0.0), PoissonFills(A, K, prob="linear")
    kw = dict(n_steps=steps, dt=DT, record=False)

    def relaxed_mean(half):
        return jnp.mean(simulate(FixedSpread(half), mk, fl, jax.random.key(4), 8, relaxed=True,
                                 **kw).pnl)  # fmt: skip

    g = float(jax.grad(relaxed_mean)(jnp.asarray(h)))
    hi = simulate(FixedSpread(h + eps), mk, fl, jax.random.key(5), n, **kw).pnl
    lo = simulate(FixedSpread(h - eps), mk, fl, jax.random.key(5), n, **kw).pnl
    diff = (np.asarray(hi) - np.asarray(lo)) / (2 * eps)
    closed = 2 * steps * A * DT * math.exp(-K * h) * (1 - K * h)
    assert abs(g - closed) < 1e-8 * abs(closed) + 1e-8
    assert abs(diff.mean() - g) < 4 * diff.std(ddof=1) / math.sqrt(n) + abs(closed) * 0.02


def test_relaxed_gradient_is_finite_for_avellaneda_stoikov():
    def obj(gamma):
        r = simulate(AvellanedaStoikov(gamma, K, 2.0, 0.25), ArithmeticBrownian(100.0, 2.0),
                     PoissonFills(A, K), jax.random.key(1), 16, n_steps=50, dt=DT,
                     relaxed=True, record=False, max_position=4.0)  # fmt: skip
        return mean_variance(r.pnl, 0.1)

    gv = jax.grad(obj)(jnp.asarray(0.1))
    assert np.isfinite(float(gv)) and float(gv) != 0.0


def test_tune_finds_the_known_optimum():
    # sigma = 0, linear fills: mean PnL = 2 n h A e^{-k h} dt, maximised at h* = 1/k.
    out = tune(
        FixedSpread(0.25), lambda r: jnp.mean(r.pnl), ArithmeticBrownian(100.0, 0.0),
        PoissonFills(A, K, prob="linear"), jax.random.key(0), params=lambda s: (s.half,),
        n_paths=4, n_steps=20, dt=DT, n_iter=150, progress=False,
    )  # fmt: skip
    assert abs(float(out.params[0]) - 1.0 / K) < 0.02 / K
    assert out.history[-1] > out.history[0]


def test_sharded_paths_equal_single_device_run():
    code = textwrap.dedent(
        """
        import jax, numpy as np
        jax.config.update("jax_enable_x64", True)
        from jaxmm.sim import ArithmeticBrownian, PoissonFills, simulate, sweep
        from jaxmm.strategy import AvellanedaStoikov
        assert len(jax.devices()) == 4
        args = (ArithmeticBrownian(100.0, 2.0), PoissonFills(140.0, 1.5), jax.random.key(3), 16)
        kw = dict(n_steps=40, dt=0.005, record=False)
        one = simulate(AvellanedaStoikov(0.1, 1.5, 2.0, 1.0), *args, **kw)
        four = simulate(AvellanedaStoikov(0.1, 1.5, 2.0, 1.0), *args, devices="all", **kw)
        assert len(four.pnl.sharding.device_set) == 4
        np.testing.assert_allclose(np.asarray(four.pnl), np.asarray(one.pnl), atol=1e-9)
        st = jax.vmap(lambda g: AvellanedaStoikov(g, 1.5, 2.0, 1.0))(jax.numpy.array([0.1, 0.5]))
        a = sweep(st, *args, **kw)
        b = sweep(st, *args, devices="all", **kw)
        np.testing.assert_allclose(np.asarray(a.pnl), np.asarray(b.pnl), atol=1e-9)
        print("OK")
        """
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("OK")
