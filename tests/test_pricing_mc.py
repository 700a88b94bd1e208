"""Monte Carlo (GBM exact, Heston QE-M) against closed forms, within standard errors.

References:
- GBM: the Black-Scholes-Merton price and Greeks written here with SciPy (Hull, *Options,
  Futures and Other Derivatives*, ch. 15; Haug 2007, ch. 1-2).
- Heston: the semi-analytic :func:`heston_price` / :func:`heston_core_greeks`, themselves checked
  against Lewis's published prices and QuantLib in tests/test_pricing_heston.py.

Each check is "within k standard errors" of the estimator's own reported error, with fixed keys
(deterministic, so the suite cannot flake). Path counts are kept small (20k-50k) for CI.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from jaxmm.pricing._heston import heston_core_greeks, heston_price
from jaxmm.pricing._mc import _mc_greeks_jit, _mc_price_jit, mc_greeks, mc_price

S, R, Q = 100.0, 0.05, 0.02
STRIKES = np.array([70.0, 90.0, 100.0, 115.0, 140.0])
N_GBM = 40_000


def bs_reference(s, k, t, r, q, vol, is_call):
    """Price, delta, gamma, vega of the generalised BSM model (SciPy closed forms)."""
    sd = vol * math.sqrt(t)
    d1 = (np.log(s / k) + (r - q + 0.5 * vol * vol) * t) / sd
    d2 = d1 - sd
    w = 1.0 if is_call else -1.0
    dq, dr = math.exp(-q * t), math.exp(-r * t)
    price = w * (s * dq * norm.cdf(w * d1) - k * dr * norm.cdf(w * d2))
    delta = w * dq * norm.cdf(w * d1)
    gamma = dq * norm.pdf(d1) / (s * sd)
    vega = s * dq * norm.pdf(d1) * math.sqrt(t)
    return price, delta, gamma, vega


# ---------------------------------------------------------------------------------------------
# GBM
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("is_call", [True, False])
def test_gbm_price_within_three_standard_errors(is_call):
    res = mc_price(jax.random.key(11), S, STRIKES, 0.8, R, Q, is_call, vol=0.3, n_paths=N_GBM)
    ref, *_ = bs_reference(S, STRIKES, 0.8, R, Q, 0.3, is_call)
    z = (np.asarray(res.price) - ref) / np.asarray(res.std_err)
    assert np.all(np.abs(z) < 3.0), z
    assert np.all(np.asarray(res.std_err) > 0)


def test_gbm_many_steps_same_law():
    """Exact log-normal increments: 12 steps price the European like 1 step does."""
    res = mc_price(jax.random.key(5), S, 100.0, 1.0, R, Q, True, vol=0.2, n_paths=N_GBM, n_steps=12)
    ref, *_ = bs_reference(S, 100.0, 1.0, R, Q, 0.2, True)
    assert abs(float(res.price) - ref) < 3.0 * float(res.std_err)


def test_antithetic_reduces_standard_error():
    key = jax.random.key(3)
    kw = dict(vol=0.25, n_paths=N_GBM)
    anti = mc_price(key, S, STRIKES, 1.0, R, Q, True, antithetic=True, **kw)
    plain = mc_price(key, S, STRIKES, 1.0, R, Q, True, antithetic=False, **kw)
    ratio = np.asarray(anti.std_err) / np.asarray(plain.std_err)
    # same number of payoff evaluations; the pairs' negative correlation cuts the error most
    # where the payoff is nearly linear in Z (in the money) and little far out of the money
    assert np.all(ratio[STRIKES <= 100.0] < 0.8), ratio
    assert ratio[0] < 0.4, ratio
    assert np.all(ratio < 1.02), ratio  # never worse for a monotone payoff (up to se noise)
    ref, *_ = bs_reference(S, STRIKES, 1.0, R, Q, 0.25, True)
    for res in (anti, plain):
        assert np.all(np.abs(np.asarray(res.price) - ref) < 3.0 * np.asarray(res.std_err))


def test_same_key_same_result_and_new_key_new_result():
    kw = dict(vol=0.2, n_paths=N_GBM)
    a = mc_price(jax.random.key(7), S, STRIKES, 0.5, R, Q, True, **kw)
    b = mc_price(jax.random.key(7), S, STRIKES, 0.5, R, Q, True, **kw)
    c = mc_price(jax.random.key(8), S, STRIKES, 0.5, R, Q, True, **kw)
    assert np.array_equal(np.asarray(a.price), np.asarray(b.price))
    assert np.array_equal(np.asarray(a.std_err), np.asarray(b.std_err))
    assert not np.array_equal(np.asarray(a.price), np.asarray(c.price))
    legacy = mc_price(jax.random.PRNGKey(7), S, STRIKES, 0.5, R, Q, True, **kw)
    assert np.all(np.isfinite(np.asarray(legacy.price)))


@pytest.mark.parametrize("is_call", [True, False])
def test_gbm_pathwise_greeks_within_four_standard_errors(is_call):
    g = mc_greeks(jax.random.key(21), S, STRIKES, 0.6, R, Q, is_call, vol=0.35, n_paths=N_GBM)
    price, delta, gamma, vega = bs_reference(S, STRIKES, 0.6, R, Q, 0.35, is_call)
    for name, ref in (("price", price), ("delta", delta), ("gamma", gamma), ("vega", vega)):
        est = np.asarray(getattr(g, name))
        se = np.asarray(getattr(g, f"{name}_std_err"))
        assert np.all(se > 0), name
        assert np.all(np.abs(est - ref) < 4.0 * se), (name, (est - ref) / se)


def test_expired_option_is_intrinsic_with_zero_error():
    res = mc_price(jax.random.key(0), S, STRIKES, 0.0, R, Q, False, vol=0.2, n_paths=1000)
    np.testing.assert_allclose(np.asarray(res.price), np.maximum(STRIKES - S, 0.0), atol=1e-12)
    np.testing.assert_allclose(np.asarray(res.std_err), 0.0, atol=1e-12)


def test_float32_simulation():
    res = mc_price(
        jax.random.key(2), S, STRIKES, 1.0, R, Q, True, vol=0.2, n_paths=N_GBM, dtype=jnp.float32
    )
    assert res.price.dtype == jnp.float32
    ref, *_ = bs_reference(S, STRIKES, 1.0, R, Q, 0.2, True)
    z = (np.asarray(res.price, dtype=float) - ref) / np.asarray(res.std_err, dtype=float)
    assert np.all(np.abs(z) < 3.0), z


def test_broadcast_shape():
    res = mc_price(
        jax.random.key(0),
        S,
        STRIKES,
        np.array([0.25, 1.0])[:, None],
        R,
        Q,
        True,
        vol=0.2,
        n_paths=2000,
    )
    assert res.price.shape == (2, 5) and res.std_err.shape == (2, 5)


# ---------------------------------------------------------------------------------------------
# Heston (Andersen QE-M)
# ---------------------------------------------------------------------------------------------

HESTON_SETS = [
    dict(v0=0.04, kappa=1.5, theta=0.06, xi=0.7, rho=-0.7),
    dict(v0=0.09, kappa=0.5, theta=0.04, xi=1.2, rho=-0.9),  # Feller violated: QE's exp branch
]
N_HESTON = 50_000


@pytest.mark.parametrize("params", HESTON_SETS)
@pytest.mark.parametrize("expiry", [1.0 / 12.0, 1.0])
def test_heston_price_within_three_standard_errors(params, expiry):
    k = np.array([80.0, 100.0, 120.0])
    call = np.array([False, True, True])
    res = mc_price(
        jax.random.key(31),
        S,
        k,
        expiry,
        R,
        Q,
        call,
        model="heston",
        n_paths=N_HESTON,
        n_steps=32,
        **params,
    )
    ref = np.asarray(heston_price(S, k, expiry, R, Q, is_call=call, **params))
    z = (np.asarray(res.price) - ref) / np.asarray(res.std_err)
    assert np.all(np.abs(z) < 3.0), z


def test_heston_greeks_within_four_standard_errors():
    params = HESTON_SETS[0]
    k = np.array([80.0, 100.0, 120.0])
    g = mc_greeks(
        jax.random.key(41),
        S,
        k,
        1.0,
        R,
        Q,
        True,
        model="heston",
        n_paths=N_HESTON,
        n_steps=32,
        **params,
    )
    ref = heston_core_greeks(S, k, 1.0, R, Q, is_call=True, **params)
    for name in ("price", "delta", "gamma", "vega"):
        est = np.asarray(getattr(g, name))
        se = np.asarray(getattr(g, f"{name}_std_err"))
        assert np.all(np.abs(est - np.asarray(getattr(ref, name))) < 4.0 * se), name


def test_heston_default_steps_and_determinism():
    params = HESTON_SETS[0]
    a = mc_price(
        jax.random.key(1), S, 100.0, 0.5, R, Q, True, model="heston", n_paths=4000, **params
    )
    b = mc_price(
        jax.random.key(1), S, 100.0, 0.5, R, Q, True, model="heston", n_paths=4000, **params
    )
    assert float(a.price) == float(b.price)


# ---------------------------------------------------------------------------------------------
# Retracing and validation
# ---------------------------------------------------------------------------------------------


def test_no_retrace_on_new_values():
    rng = np.random.default_rng(0)

    def call(fn, seed):
        return fn(
            jax.random.key(seed),
            jnp.asarray(rng.uniform(90, 110, 5)),
            jnp.asarray(rng.uniform(80, 120, 5)),
            jnp.asarray(rng.uniform(0.1, 2, 5)),
            jnp.asarray(0.03),
            jnp.asarray(0.01),
            jnp.asarray([True, False, True, False, True]),
            vol=jnp.asarray(rng.uniform(0.1, 0.5, 5)),
            n_paths=1000,
        )

    for fn, jitted in ((mc_price, _mc_price_jit), (mc_greeks, _mc_greeks_jit)):
        jax.block_until_ready(call(fn, 0))
        before = jitted._cache_size()
        jax.block_until_ready(call(fn, 1))
        jax.block_until_ready(call(fn, 2))
        assert jitted._cache_size() == before, fn.__name__


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(model="sabr"), "model: must be 'gbm' or 'heston'"),
        (dict(vol=None), "vol: required for model='gbm'"),
        (dict(n_paths=1001), "n_paths: must be even with antithetic=True"),
        (dict(n_paths=1), "n_paths: must be an integer >= 2"),
        (dict(n_steps=0), "n_steps: must be an integer >= 1"),
        (dict(strike=-5.0), "strike: must be > 0"),
        (dict(vol=-0.2), "vol: must be >= 0"),
        (dict(key=np.array([1, 2, 3])), "key: expected a jax.random key"),
        (dict(model="heston", vol=None, v0=0.04, kappa=1.0, theta=0.04, xi=0.5), "rho: required"),
        (
            dict(model="heston", vol=None, v0=0.04, kappa=1.0, theta=0.04, xi=0.0, rho=-0.5),
            "xi: must be > 0",
        ),
        (dict(dtype=jnp.int32), "dtype: must be a floating dtype"),
    ],
)
def test_bad_inputs_raise_naming_the_argument(kw, match):
    base = dict(
        key=jax.random.key(0),
        spot=S,
        strike=100.0,
        expiry=1.0,
        rate=R,
        dividend=Q,
        is_call=True,
        vol=0.2,
        n_paths=1000,
    )
    base.update(kw)
    with pytest.raises(ValueError, match=match):
        mc_price(**base)
