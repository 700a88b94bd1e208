"""jaxmm.sim: the Concrete (relaxed-Bernoulli) fill relaxation, ``relaxed=Concrete(tau)``.

References (independent of the code under test):
- the fill probability ``P = 1 - exp(-A e^{-k delta} dt)`` (closed form);
- small-temperature expansions of the relaxed indicator ``sigmoid((logit P + L) / tau)``,
  ``L`` standard logistic: mean ``P + (pi^2/6) tau^2 P (1-P) (1-2P) + O(tau^4)`` and variance
  ``P (1-P) (1 - tau) + O(tau^2)`` (derived in docs/backtesting.md; checked there against SciPy
  quadrature);
- for a constant symmetric quote on a flat mid, ``q_T`` is a sum of ``2 n`` independent
  +-Bernoulli(P) fills: ``Var q_T = 2 n P (1 - P)``;
- central finite differences of the EXACT simulator's mean-variance objective on common random
  numbers (the issue's gradient check).
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm.sim import (
    ArithmeticBrownian,
    Concrete,
    PoissonFills,
    _engine,
    mean_variance,
    simulate,
    tune,
)
from jaxmm.strategy import AvellanedaStoikov, Quote

A, K, DT = 140.0, 1.5, 0.005


class FixedSpread(eqx.Module):
    half: jax.Array

    def quote(self, state):
        mid = jnp.asarray(state.mid)
        h = jnp.asarray(self.half).astype(mid.dtype)
        one = jnp.ones((), mid.dtype)
        return Quote(mid - h, mid + h, one, one)


def _p(delta, dt=DT):
    return 1.0 - math.exp(-A * math.exp(-K * delta) * dt)


@pytest.mark.parametrize("delta", [0.0, 0.5, 2.0])
def test_relaxed_indicator_moments_match_the_small_tau_expansion(delta):
    fl = PoissonFills(A, K)
    p = _p(delta)
    n = 200_000
    u = (jnp.arange(n, dtype=jnp.float64) + 0.5) / n  # midpoint rule over U ~ U(0, 1)
    one = jnp.ones((), jnp.float64)
    for tau in (0.1, 0.05):
        soft = jax.vmap(lambda x, t=tau: fl.fill_quantity(delta, one, x, DT, 0, "concrete", t))(u)
        mean, var = float(jnp.mean(soft)), float(jnp.var(soft))
        expect = p + math.pi**2 / 6 * tau**2 * p * (1 - p) * (1 - 2 * p)
        assert abs(mean - expect) < 2 * tau**4 + 1e-5, (tau, mean, expect)
        assert abs(var / (p * (1 - p)) - (1 - tau)) < 1.5 * tau**2, (tau, var)
    # tau -> 0: exactly the exact simulator's indicator 1{U < P} on the same uniform
    hard = jax.vmap(lambda x: fl.fill_quantity(delta, one, x, DT, 0, False))(u[::97])
    soft = jax.vmap(lambda x: fl.fill_quantity(delta, one, x, DT, 0, "concrete", 1e-9))(u[::97])
    far = np.abs(np.asarray(u[::97]) - p) > 1e-6
    np.testing.assert_array_equal(np.asarray(soft)[far], np.asarray(hard)[far])


def test_partial_and_ladder_fills_relax_every_indicator():
    fl = PoissonFills(A, K, partial=True, order_size=0.5)
    delta, size = jnp.array([0.0, 0.4, 1.0]), jnp.array([1.0, 2.0, 0.7])
    for u in (0.05, 0.3, 0.6, 0.95):
        hard = fl.fill_quantity(delta, size, jnp.asarray(u), DT, 1, False)
        soft = fl.fill_quantity(delta, size, jnp.asarray(u), DT, 1, "concrete", 1e-9)
        np.testing.assert_allclose(np.asarray(soft), np.asarray(hard), atol=1e-12)


@pytest.mark.parametrize("prob,partial", [("exact", False), ("linear", False), ("exact", True)])
def test_relaxed_fill_gradient_is_finite_at_the_extremes(prob, partial):
    fl = PoissonFills(A, K, prob=prob, partial=partial)
    for delta in (-40.0, -1.0, 0.0, 3.0, 800.0):
        for u in (0.0, 1e-300, 0.5, 1.0 - 1e-16):
            g = jax.grad(
                lambda d, u=u: fl.fill_quantity(
                    d, jnp.ones(()), jnp.asarray(u), DT, 0, "concrete", 0.1
                )  # fmt: skip
            )(jnp.asarray(delta))
            assert np.isfinite(float(g)), (delta, u)


@pytest.mark.parametrize("prob,partial", [("exact", False), ("linear", False), ("exact", True)])
def test_expected_fill_gradient_is_finite_where_the_intensity_underflows(prob, partial):
    """The expectation relaxation (``relaxed=True``) far from the mid: the Poisson intensity
    underflows to 0 and ``d/dmu P(n, mu)`` is NaN there; the gradient must be finite (0), and
    the value exactly what it was (0 fill)."""
    fl = PoissonFills(A, K, prob=prob, partial=partial)
    for delta in (-40.0, 0.0, 3.0, 800.0):
        f = lambda d: fl.fill_quantity(d, jnp.ones(()), jnp.asarray(0.5), DT, 0, True)
        g = jax.grad(f)(jnp.asarray(delta))
        assert np.isfinite(float(g)), (prob, partial, delta)
    assert float(fl.fill_quantity(jnp.asarray(800.0), jnp.ones(()), 0.5, DT, 0, True)) == 0.0


def test_path_converges_to_the_exact_simulator_as_tau_to_zero():
    st = AvellanedaStoikov(0.1, K, 2.0, 0.5)
    mk, fl = ArithmeticBrownian(100.0, 2.0), PoissonFills(A, K)
    kw = dict(n_steps=100, dt=DT, record=False)
    key, n = jax.random.key(3), 400
    ex = simulate(st, mk, fl, key, n, **kw)
    gaps = []
    for tau in (0.3, 0.03, 1e-3, 1e-7):
        r = simulate(st, mk, fl, key, n, relaxed=Concrete(tau), **kw)
        gaps.append(float(np.mean(np.abs(np.asarray(r.pnl) - np.asarray(ex.pnl)))))
    assert all(a > b for a, b in zip(gaps, gaps[1:], strict=False)), gaps
    r = simulate(st, mk, fl, key, n, relaxed=Concrete(1e-7), **kw)
    same = np.abs(np.asarray(r.inventory) - np.asarray(ex.inventory)) < 1e-6
    assert same.mean() >= 0.99
    assert abs(float(r.pnl.mean()) - float(ex.pnl.mean())) < 0.05
    # straight-through: the forward pass IS the exact simulator
    st_res = simulate(st, mk, fl, key, n, relaxed=Concrete(0.1, straight_through=True), **kw)
    np.testing.assert_allclose(np.asarray(st_res.pnl), np.asarray(ex.pnl), atol=1e-9)
    np.testing.assert_allclose(np.asarray(st_res.inventory), np.asarray(ex.inventory), atol=1e-12)


def test_inventory_variance_is_kept_where_the_expectation_loses_it():
    # flat mid, constant half-spread 0.5: q_T = sum of 2n independent +-Bernoulli(P) fills.
    mk, fl, h, n_steps, n = ArithmeticBrownian(100.0, 0.0), PoissonFills(A, K), 0.5, 100, 2000
    kw = dict(n_steps=n_steps, dt=DT, record=False)
    p = _p(h)
    var_ref = 2 * n_steps * p * (1 - p)  # closed form, 40.4
    key, tau = jax.random.key(11), 0.05
    ex = np.asarray(simulate(FixedSpread(h), mk, fl, key, n, **kw).inventory)
    mean_mode = np.asarray(simulate(FixedSpread(h), mk, fl, key, n, relaxed=True, **kw).inventory)
    conc = np.asarray(simulate(FixedSpread(h), mk, fl, key, n, relaxed=Concrete(tau),
                               **kw).inventory)  # fmt: skip
    # sampling s.e. of a variance from 2000 paths: sqrt(2/2000) ~ 3.2 %; tolerance 4 s.e.
    assert abs(ex.var() / var_ref - 1) < 0.13
    assert abs(conc.var() / (var_ref * (1 - tau)) - 1) < 0.13
    assert abs(conc.var() / ex.var() - 1) < 0.1  # same uniforms: close to the exact one
    assert mean_mode.var() == 0.0 and np.all(mean_mode == 0.0)


def test_concrete_gradient_matches_fd_of_the_exact_mean_variance_objective():
    # A-S with a small gamma and a mean-variance objective: the exact objective's slope in
    # log gamma is positive (more inventory control pays); the expectation relaxation keeps
    # q = 0 and sees almost none of it, the Concrete relaxation sees it.
    mk, fl, risk, lg0 = ArithmeticBrownian(100.0, 2.0), PoissonFills(A, K), 0.2, math.log(0.003)
    kw = dict(n_steps=100, dt=DT, record=False)

    def objective(lg, key, n, relaxed):
        st = AvellanedaStoikov(jnp.exp(lg), K, 2.0, 0.5)
        r = simulate(st, mk, fl, key, n, relaxed=relaxed, **kw)
        return mean_variance(r.pnl.reshape(-1, 500), risk)

    eps, key = 0.2, jax.random.key(5)
    hi = np.asarray(objective(jnp.asarray(lg0 + eps), key, 4000, False))  # 8 batches of 500
    lo = np.asarray(objective(jnp.asarray(lg0 - eps), key, 4000, False))  # common randoms
    fd_b = (hi - lo) / (2 * eps)
    fd, fd_se = fd_b.mean(), fd_b.std(ddof=1) / math.sqrt(fd_b.size)
    g_c = float(
        jax.grad(lambda x: jnp.mean(objective(x, jax.random.key(6), 1500, Concrete(0.1))))(
            jnp.asarray(lg0)
        )
    )
    g_m = float(jax.grad(lambda x: jnp.mean(objective(x, jax.random.key(6), 1500,
                                                      True)))(jnp.asarray(lg0)))  # fmt: skip
    tol = 4 * math.hypot(fd_se, 0.02) + 0.1 * abs(fd)  # 0.02: Concrete s.e. at 1500 paths
    assert fd > 4 * fd_se  # the check is not vacuous
    assert abs(g_c - fd) < tol, (g_c, fd, fd_se)
    assert abs(g_m - fd) > tol, (g_m, fd)  # the expectation relaxation is biased here


def test_no_retrace_on_new_tau_and_values_and_validation():
    mk, fl = ArithmeticBrownian(100.0, 2.0), PoissonFills(A, K)
    kw = dict(n_steps=20, dt=DT, record=False)
    simulate(AvellanedaStoikov(0.1, K, 2.0, 1.0), mk, fl, jax.random.key(0), 8,
             relaxed=Concrete(0.1), **kw)  # fmt: skip
    n0 = _engine._core_jit._cache_size()
    simulate(
        AvellanedaStoikov(0.3, 1.2, 1.5, 2.0),
        ArithmeticBrownian(99.0, 1.0),
        PoissonFills(100.0, 1.1),
        jax.random.key(9),
        8,
        relaxed=Concrete(0.02),
        **kw,
    )
    assert _engine._core_jit._cache_size() == n0
    r = simulate(FixedSpread(0.5), mk, fl, jax.random.key(0), 4, relaxed="concrete", **kw)
    assert np.all(np.isfinite(np.asarray(r.pnl)))
    with pytest.raises(ValueError, match="relaxed: must be False, True, 'concrete'"):
        simulate(FixedSpread(0.5), mk, fl, jax.random.key(0), 4, relaxed="gumbel", **kw)
    with pytest.raises(ValueError, match="tau"):
        Concrete(0.0)
    with pytest.raises(ValueError, match="relaxed: tune needs a differentiable mode"):
        tune(FixedSpread(0.5), lambda r: jnp.mean(r.pnl), mk, fl, jax.random.key(0),
             params=lambda s: (s.half,), n_paths=4, n_steps=5, dt=DT, n_iter=1,
             progress=False, relaxed=False)  # fmt: skip


def test_tune_with_concrete_finds_the_known_optimum():
    # sigma = 0, linear fills: mean PnL = 2 n h A e^{-k h} dt, maximised at h* = 1/k; the
    # Concrete mean fill differs from P by O(tau^2), so h* moves by a few tenths of a percent.
    out = tune(
        FixedSpread(jnp.asarray(0.25)), lambda r: jnp.mean(r.pnl), ArithmeticBrownian(100.0, 0.0),
        PoissonFills(A, K, prob="linear"), jax.random.key(0), params=lambda s: (s.half,),
        n_paths=64, n_steps=20, dt=DT, n_iter=150, progress=False, relaxed=Concrete(0.05),
    )  # fmt: skip
    assert abs(float(out.params[0]) - 1.0 / K) < 0.05 / K
