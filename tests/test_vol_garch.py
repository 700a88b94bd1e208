"""GARCH(1,1) MLE cross-checked against the ``arch`` package (Kevin Sheppard), version 8.0.

arch's conventions are matched exactly: backcast initialisation (0.94-weighted first 75
squared residuals at the starting mean), Gaussian log-likelihood with the 2 pi constant,
robust (Bollerslev-Wooldridge) standard errors.
"""

import numpy as np
import pytest
from arch import arch_model

import jaxmm.vol as jv
from jaxmm.vol import _garch


def _simulate(n=1200, omega=0.05, alpha=0.08, beta=0.9, mu=0.03, seed=42):
    rng = np.random.default_rng(seed)
    e = np.zeros(n)
    s2 = omega / (1 - alpha - beta)
    for t in range(n):
        e[t] = np.sqrt(s2) * rng.standard_normal()
        s2 = omega + alpha * e[t] ** 2 + beta * s2
    return mu + e


@pytest.fixture(scope="module")
def series():
    return _simulate()


@pytest.mark.parametrize("mean", ["constant", "zero"])
def test_matches_arch(series, mean):
    am = arch_model(
        series,
        mean="Constant" if mean == "constant" else "Zero",
        vol="GARCH",
        p=1,
        q=1,
        dist="normal",
        rescale=False,
    )
    ref = am.fit(disp="off", tol=1e-14, options={"maxiter": 2000})
    res = jv.fit_garch(series, mean=mean)
    assert int(res.status) == jv.GarchStatus.OK
    ours = [res.omega, res.alpha, res.beta]
    names = ["omega", "alpha[1]", "beta[1]"]
    if mean == "constant":
        ours = [res.mu] + ours
        names = ["mu"] + names
    np.testing.assert_allclose(np.asarray(ours), ref.params[names].to_numpy(), atol=1e-4)
    np.testing.assert_allclose(float(res.loglik), ref.loglikelihood, rtol=1e-6)
    # arch differentiates numerically; robust standard errors agree to ~1e-3 relative
    np.testing.assert_allclose(np.asarray(res.std_err), ref.std_err[names].to_numpy(), rtol=5e-3)
    np.testing.assert_allclose(float(res.backcast), float(am._backcast), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(res.sigma2), ref.conditional_volatility**2, rtol=1e-4)


def test_loglik_at_fixed_params_equals_hand_recursion(series):
    # the likelihood written out by hand (independent of the fitted values)
    y = series[:200]
    mu, om, al, be = 0.02, 0.1, 0.1, 0.8
    e = y - mu
    e0 = y - y.mean()
    w = 0.94 ** np.arange(75)
    bc = np.sum(e0[:75] ** 2 * w) / w.sum()
    s2 = np.empty_like(e)
    prev_e2, prev_s = bc, bc
    for t in range(len(e)):
        s2[t] = om + al * prev_e2 + be * prev_s
        prev_e2, prev_s = e[t] ** 2, s2[t]
    ll = -0.5 * np.sum(np.log(2 * np.pi) + np.log(s2) + e**2 / s2)
    import jax.numpy as jnp

    terms = _garch._loglik_terms(jnp.asarray([mu, om, al, be]), jnp.asarray(y), bc, True)
    np.testing.assert_allclose(float(jnp.sum(terms)), ll, rtol=1e-13)


def test_forecast_term_structure(series):
    res = jv.fit_garch(series)
    f = np.asarray(res.forecast(50))
    om, al, be = float(res.omega), float(res.alpha), float(res.beta)
    e_last = series[-1] - float(res.mu)
    one = om + al * e_last**2 + be * float(res.sigma2[-1])
    ref = [one]
    for _ in range(49):
        ref.append(om + (al + be) * ref[-1])  # E[s2_{t+1}] = omega + (a+b) E[s2_t]
    np.testing.assert_allclose(f, ref, rtol=1e-10)
    assert abs(f[-1] - float(res.long_run_variance)) < abs(f[0] - float(res.long_run_variance))


def test_stationarity_always_holds(series):
    res = jv.fit_garch(series[::-1] * 3.0, mean="zero")
    assert float(res.alpha) >= 0 and float(res.beta) >= 0 and float(res.persistence) < 1


def test_failure_is_status_not_exception(series):
    res = jv.fit_garch(series, max_iter=1)
    assert int(res.status) == jv.GarchStatus.MAX_ITER


def test_bad_inputs():
    with pytest.raises(ValueError, match="mean: must be"):
        jv.fit_garch(np.ones(50), mean="ar")
    with pytest.raises(ValueError, match="at least 10 observations"):
        jv.fit_garch(np.arange(5.0))
    with pytest.raises(ValueError, match="returns: contains NaN"):
        jv.fit_garch(np.r_[np.arange(20.0), np.nan])
    with pytest.raises(ValueError, match="constant series"):
        jv.fit_garch(np.ones(50))


def test_no_retrace_on_new_data(series):
    jv.fit_garch(series)
    n = _garch._fit._cache_size()
    jv.fit_garch(_simulate(seed=7), max_iter=50)
    assert _garch._fit._cache_size() == n
