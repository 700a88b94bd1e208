"""vmap over states and parameter sets, gradients vs finite differences, no retracing,
float32."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm.strategy import (
    GLFT,
    AdaptiveSpread,
    AvellanedaStoikov,
    Grid,
    MarketState,
    QuoteConstraints,
    QuotePipeline,
    quote,
    quote_batch,
)

RNG = np.random.default_rng(7)
N = 1000


def _as_params(n):
    return (
        RNG.uniform(0.01, 1.0, n),
        RNG.uniform(0.5, 5.0, n),
        RNG.uniform(0.1, 3.0, n),
        RNG.uniform(0.5, 2.0, n),
    )


def test_vmap_over_1000_parameter_sets_equals_python_loop_as():
    g, k, s, T = _as_params(N)
    state = MarketState(mid=100.0, inventory=3.0, t=0.25)
    batched = jax.jit(jax.vmap(lambda g, k, s, T: AvellanedaStoikov(g, k, s, T).quote(state)))(
        g, k, s, T
    )
    for i in range(N):
        one = quote(AvellanedaStoikov(g[i], k[i], s[i], T[i]), state)
        # identical formula; vectorised and scalar transcendental kernels may differ by an ulp
        assert float(batched.bid[i]) == pytest.approx(float(one.bid), rel=4e-16, abs=0)
        assert float(batched.ask[i]) == pytest.approx(float(one.ask), rel=4e-16, abs=0)


def test_vmap_over_1000_parameter_sets_equals_python_loop_glft():
    g, k, s, _ = _as_params(N)
    A = RNG.uniform(0.2, 3.0, N)
    state = MarketState(mid=100.0, inventory=-2.0)
    batched = jax.jit(jax.vmap(lambda g, k, A, s: GLFT(g, k, A, s, 10).quote(state)))(g, k, A, s)
    for i in range(N):
        one = quote(GLFT(g[i], k[i], A[i], s[i], 10), state)
        assert float(batched.bid[i]) == pytest.approx(float(one.bid), rel=4e-16, abs=0)
        assert float(batched.ask[i]) == pytest.approx(float(one.ask), rel=4e-16, abs=0)


def test_vmap_exact_glft_over_parameter_sets_equals_loop():
    n = 8
    g, k, s, _ = _as_params(n)
    A = RNG.uniform(0.2, 3.0, n)

    def f(g, k, A, s):
        return GLFT(g, k, A, s, 6).exact_half_spreads(1.0, 2.0, 30.0)

    b_batched, a_batched = jax.jit(jax.vmap(f))(g, k, A, s)
    for i in range(n):
        b, a = GLFT(g[i], k[i], A[i], s[i], 6).exact_half_spreads(1.0, 2.0, 30.0)
        assert float(b_batched[i]) == pytest.approx(float(b), rel=1e-12)
        assert float(a_batched[i]) == pytest.approx(float(a), rel=1e-12)


def test_quote_batch_over_states_equals_loop():
    mm = AvellanedaStoikov(0.1, 1.5, 2.0, 1.0)
    mids = RNG.uniform(50, 150, 64)
    inv = RNG.integers(-5, 6, 64).astype(float)
    ts = RNG.uniform(0, 1, 64)
    states = MarketState(mid=mids, inventory=inv, t=ts)
    out = quote_batch(mm, states)
    assert out.bid.shape == (64,)
    for i in range(64):
        one = quote(mm, MarketState(mid=mids[i], inventory=inv[i], t=ts[i]))
        assert float(out.bid[i]) == float(one.bid) and float(out.ask[i]) == float(one.ask)


def test_quote_and_quote_batch_do_not_retrace_on_new_values():
    mm = AvellanedaStoikov(0.1, 1.5, 2.0, 1.0)
    quote(mm, MarketState(mid=100.0, inventory=1.0, t=0.1))
    n0 = quote._cache_size()
    quote(AvellanedaStoikov(0.3, 2.5, 1.0, 3.0), MarketState(mid=101.0, inventory=-4.0, t=0.7))
    assert quote._cache_size() == n0
    states = MarketState(mid=jnp.linspace(90, 110, 8), inventory=jnp.zeros(8), t=0.0)
    quote_batch(mm, states)
    m0 = quote_batch._cache_size()
    quote_batch(
        AvellanedaStoikov(0.2, 1.0, 1.0, 1.0),
        MarketState(mid=jnp.linspace(1, 2, 8), inventory=jnp.ones(8), t=0.5),
    )
    assert quote_batch._cache_size() == m0


def _fd_check(f, x, h=1e-6, rel=1e-6, abs_=1e-9):
    g = jax.jit(jax.grad(f))(x)
    for i in range(x.shape[0]):
        e = jnp.zeros_like(x).at[i].set(h)
        fd = (f(x + e) - f(x - e)) / (2 * h)
        assert float(g[i]) == pytest.approx(float(fd), rel=rel, abs=abs_)


def test_gradients_avellaneda_stoikov():
    state = MarketState(mid=100.0, inventory=3.0, t=0.25)

    def f(p):
        qt = AvellanedaStoikov(p[0], p[1], p[2], p[3], k_ask=p[4]).quote(state)
        return qt.bid + 2.0 * qt.ask

    _fd_check(jax.jit(f), jnp.asarray([0.1, 1.5, 2.0, 1.0, 2.5]))


def test_gradients_glft_closed_form_and_asymptotic():
    state = MarketState(mid=100.0, inventory=2.0)

    def f(p, sol):
        mm = GLFT(p[0], p[1], p[2], p[3], 8, mu=p[4], A_ask=p[5], solution=sol)
        qt = mm.quote(state)
        return qt.bid + 2.0 * qt.ask

    x = jnp.asarray([0.05, 0.3, 0.9, 0.3, 0.001, 0.7])
    _fd_check(jax.jit(lambda p: f(p, "approx")), x)
    _fd_check(jax.jit(lambda p: f(p, "asymptotic")), x, rel=1e-5)


def test_gradients_grid_and_adaptive():
    state = MarketState(mid=100.0, inventory=2.0, book_imbalance=0.3, flow_imbalance=-0.2)

    def fg(p):
        a = Grid(p[0], 1.0, 3).quote(state)
        g = Grid(p[1], 1.0, 3, geometric=True).quote(state)
        return jnp.sum(a.bid) + jnp.sum(g.ask)

    _fd_check(jax.jit(fg), jnp.asarray([0.5, 0.01]))

    def fa(p):
        q = AdaptiveSpread(
            p[0],
            book_widening=p[1],
            flow_widening=p[2],
            book_skew=p[3],
            flow_skew=p[4],
            inventory_skew=p[5],
        ).quote(state)
        return q.bid + 3.0 * q.ask

    _fd_check(jax.jit(fa), jnp.asarray([0.1, 0.5, 0.7, 0.02, 0.03, 0.01]))


def test_gradient_through_vmapped_pipeline_raw_quotes():
    """The simulator's use: d/dgamma of a batch average of raw quotes, through vmap."""
    states = MarketState(mid=jnp.linspace(99, 101, 16), inventory=jnp.arange(-8.0, 8.0), t=0.3)

    def f(gamma):
        p = QuotePipeline(
            AvellanedaStoikov(gamma, 1.5, 2.0, 1.0), constraints=QuoteConstraints(tick=0.01)
        )
        raw, _ = jax.vmap(p.quote_with_raw)(states)
        return jnp.mean(raw.bid)

    g = jax.jit(jax.grad(f))(0.1)
    # d bid / d gamma = -q sigma^2 tau - sigma^2 tau / 2 - d liq / d gamma (hand, per state)
    q = np.arange(-8.0, 8.0)
    tau, s2, k, gam = 0.7, 4.0, 1.5, 0.1
    dliq = -np.log1p(gam / k) / gam**2 + 1.0 / (gam * (k + gam))
    expected = np.mean(-q * s2 * tau - s2 * tau / 2 - dliq)
    assert float(g) == pytest.approx(expected, rel=1e-12)


def test_float32_states_give_float32_quotes():
    mm = AvellanedaStoikov(0.1, 1.5, 2.0, 1.0)  # float64 parameters (x64 on in tests)
    s32 = MarketState(
        mid=jnp.full(4, 100.0, jnp.float32),
        inventory=jnp.arange(4.0, dtype=jnp.float32),
        t=jnp.float32(0.5),
    )
    s64 = MarketState(mid=jnp.full(4, 100.0), inventory=jnp.arange(4.0), t=0.5)
    q32, q64 = quote_batch(mm, s32), quote_batch(mm, s64)
    assert q32.bid.dtype == jnp.float32 and q32.bid_size.dtype == jnp.float32
    np.testing.assert_allclose(q32.bid, q64.bid, rtol=1e-6)
    g32 = quote_batch(GLFT(0.05, 0.3, 0.9, 0.3, 10), s32)
    assert g32.ask.dtype == jnp.float32
