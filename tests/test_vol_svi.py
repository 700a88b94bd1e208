"""Raw SVI: Gatheral-Jacquier butterfly factor on Vogt's example, calibration and its failure modes.

All fits here share one shape (3 slices x 25 strikes, 8 starts) so the suite compiles once.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.optimize import least_squares
from scipy.special import ndtr

import jaxmm.vol as jv
from jaxmm.vol import _svi

# Gatheral & Jacquier (2014), "Arbitrage-free SVI volatility surfaces", Example 3.1 (Axel Vogt):
# (a, b, m, rho, sigma) = (-0.0410, 0.1331, 0.3586, 0.3060, 0.4153), T = 1.
VOGT = dict(a=-0.0410, b=0.1331, rho=0.3060, m=0.3586, sigma=0.4153)

T = np.array([0.25, 0.5, 1.0])
K = np.tile(np.linspace(-0.5, 0.4, 25), (3, 1))
TRUE = dict(
    a=np.array([0.005, 0.012, 0.03]),
    b=np.array([0.08, 0.1, 0.12]),
    rho=np.array([-0.6, -0.45, -0.3]),
    m=np.array([0.02, 0.05, 0.08]),
    sigma=np.array([0.1, 0.15, 0.25]),
)


def np_w(k, a, b, rho, m, sigma):
    return a + b * (rho * (k - m) + np.sqrt((k - m) ** 2 + sigma**2))


def true_vols():
    return np.sqrt(np_w(K, *(v[:, None] for v in TRUE.values())) / T[:, None])


def fit(iv, **kw):
    kw.setdefault("n_starts", 8)
    return jv.fit_svi(K, iv, T, **kw)


def test_vogt_g_matches_finite_differences_and_is_negative():
    k = np.linspace(-1.5, 1.5, 301)
    h = 1e-4
    w = lambda x: np_w(x, **VOGT)
    w1 = (w(k + h) - w(k - h)) / (2 * h)
    w2 = (w(k + h) - 2 * w(k) + w(k - h)) / h**2
    g_ref = (1 - k * w1 / (2 * w(k))) ** 2 - w1**2 / 4 * (1 / w(k) + 0.25) + w2 / 2
    g = np.asarray(jv.SVI(**VOGT).g(k))
    np.testing.assert_allclose(g, g_ref, atol=1e-6)
    assert g.min() < 0


def test_vogt_butterfly_check_finds_the_arbitrage_where_the_density_is_negative():
    kg, g = jv.butterfly_violations(jv.SVI(**VOGT), -1.5, 1.5, 3001)
    bad = np.asarray(kg)[np.asarray(g) < 0]
    assert bad.size > 0
    # independent: Black call prices from w must be convex in strike; they are not there
    k = np.linspace(-1.5, 1.5, 3001)
    s = np.sqrt(np_w(k, **VOGT))
    d1 = -k / s + s / 2
    c = ndtr(d1) - np.exp(k) * ndtr(d1 - s)
    strikes = np.exp(k)
    conv = np.diff(np.diff(c) / np.diff(strikes))
    neg = k[1:-1][conv < 0]
    assert neg.min() == pytest.approx(bad.min(), abs=0.01)
    assert neg.max() == pytest.approx(bad.max(), abs=0.01)
    rep = jv.detect_arbitrage(k[None, :], np_w(k, **VOGT)[None, :], [1.0], total=True)
    assert rep.butterfly and rep.butterfly[0]["expiry_index"] == 0


@pytest.fixture(scope="module")
def clean_fit():
    return fit(true_vols())


def test_recovers_known_parameters(clean_fit):
    assert (np.asarray(clean_fit.status) == jv.SVIStatus.OK).all()
    for name, val in TRUE.items():
        np.testing.assert_allclose(getattr(clean_fit.params, name), val, atol=1e-5, err_msg=name)
    assert float(jnp.max(clean_fit.rmse)) < 1e-7


def test_noisy_fit_beats_scipy_least_squares_and_respects_lee_bound():
    rng = np.random.default_rng(0)
    iv = true_vols() + 0.003 * rng.standard_normal(K.shape)
    res = fit(iv)
    p = res.params
    assert (np.asarray(p.b * (1 + jnp.abs(p.rho))) <= 2.0).all()
    assert (np.asarray(res.rmse) < 0.0045).all()
    for i in range(3):
        s = iv[i] * np.sqrt(T[i])
        wts = np.exp(-0.5 * (-K[i] / s + s / 2) ** 2)

        def r(x, i=i, wts=wts):
            w = np.maximum(np_w(K[i], *x), 1e-12)
            return np.sqrt(wts) * (np.sqrt(w / T[i]) - iv[i])

        x0 = [0.5 * iv[i].min() ** 2 * T[i], 0.1, -0.5, 0.0, 0.1]
        lb, ub = [-1.0, 0.0, -0.999, -2.0, 1e-4], [1.0, 2.0, 0.999, 2.0, 2.0]
        ref = least_squares(r, x0, bounds=(lb, ub), xtol=1e-14, ftol=1e-14, gtol=1e-14)
        assert float(res.loss[i]) <= ref.cost * (1 + 1e-6)


def test_nan_quotes_are_masked_and_residuals_reported():
    iv = true_vols()
    iv[1, 3] = np.nan
    res = fit(iv)
    assert not bool(res.used[1, 3]) and np.isnan(float(res.residuals[1, 3]))
    assert int(res.status[1]) == jv.SVIStatus.OK
    np.testing.assert_allclose(res.params.rho, TRUE["rho"], atol=1e-5)


def test_too_few_quotes_is_a_status_with_nan_params():
    iv = true_vols()
    mask = np.ones(K.shape, bool)
    mask[2, 4:] = False
    iv[1, :] = np.nan  # an empty slice: every quote missing
    res = fit(iv, mask=mask)
    assert int(res.status[2]) == jv.SVIStatus.TOO_FEW_QUOTES
    assert np.isnan(float(res.params.a[2]))
    assert int(res.status[1]) == jv.SVIStatus.TOO_FEW_QUOTES
    assert np.isnan(float(res.rmse[1]))
    assert int(res.status[0]) == jv.SVIStatus.OK


def test_atm_sanity_check_flags_a_mismatch():
    rng = np.random.default_rng(1)
    res = fit(true_vols() + 0.003 * rng.standard_normal(K.shape), atm_tol=1e-9)
    assert (np.asarray(res.status) == jv.SVIStatus.ATM_MISMATCH).all()


def test_butterfly_status_on_a_vogt_shaped_chain():
    k = np.linspace(-1.5, 1.5, 25)
    iv = np.tile(np.sqrt(np_w(k, **VOGT)), (3, 1))
    res = jv.fit_svi(np.tile(k, (3, 1)), iv, np.ones(3), n_starts=8)
    assert (np.asarray(res.min_g) < 0).all()
    assert (np.asarray(res.status) == jv.SVIStatus.BUTTERFLY_ARBITRAGE).all()


def test_progress_callback_reports():
    calls = []
    fit(true_vols(), progress=lambda it, loss: calls.append((it, loss.shape)))
    assert calls and calls[0] == (50, (3,))


def test_bad_inputs():
    with pytest.raises(ValueError, match="log_moneyness: need shape"):
        jv.fit_svi(np.zeros((3, 0)), np.zeros((3, 0)), T)
    with pytest.raises(ValueError, match="implied_vol: must be >= 0"):
        jv.fit_svi(K, -true_vols(), T)
    with pytest.raises(ValueError, match="expiry: must be finite and > 0"):
        jv.fit_svi(K, true_vols(), np.array([0.0, 0.5, 1.0]))
    with pytest.raises(ValueError, match="implied_vol: shape"):
        jv.fit_svi(K, true_vols()[:, :5], T)


def test_quote_mask():
    bid = np.array([1.0, 0.0, 2.0, 1.0, np.nan, 1.0])
    ask = np.array([1.1, 0.5, 1.9, np.nan, 1.0, 1.0])
    assert jv.quote_mask(bid, ask).tolist() == [True, False, False, False, False, False]


def test_no_retrace_on_new_quotes(clean_fit):
    n_chunk, n_fin = _svi._svi_chunk._cache_size(), _svi._svi_finish._cache_size()
    fit(true_vols() * 1.05)
    assert _svi._svi_chunk._cache_size() == n_chunk
    assert _svi._svi_finish._cache_size() == n_fin


@given(st.lists(st.floats(-4.0, 4.0), min_size=5, max_size=5))
def test_parameterisation_is_always_admissible(z):
    p = _svi._to_svi(jnp.asarray(z))
    assert float(p.b * (1 + jnp.abs(p.rho))) <= 2.0 + 1e-12
    assert float(p.a + p.b * p.sigma * jnp.sqrt(1 - p.rho**2)) > 0
    k = jnp.linspace(-3.0, 3.0, 61)
    assert bool(jnp.all(p.total_variance(k) > 0))


def test_gradient_of_total_variance_in_parameters_matches_finite_difference():
    p0 = np.array([0.02, 0.1, -0.4, 0.05, 0.2])

    def f(x):
        return jv.SVI(*x).total_variance(0.3)

    g = jax.grad(f)(jnp.asarray(p0))
    h = 1e-6
    fd = [(np_w(0.3, *(p0 + h * e)) - np_w(0.3, *(p0 - h * e))) / (2 * h) for e in np.eye(5)]
    np.testing.assert_allclose(g, fd, rtol=1e-7)
