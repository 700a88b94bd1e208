"""Realised-volatility estimators and EWMA vs naive NumPy references written from the papers."""

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import jaxmm.vol as jv
from jaxmm.vol import _realised

P = 252.0


def _bars(n=60, seed=0):
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(0.01 * rng.standard_normal(n)))
    open_ = close * np.exp(0.003 * rng.standard_normal(n))
    high = np.maximum(open_, close) * np.exp(np.abs(0.005 * rng.standard_normal(n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(0.005 * rng.standard_normal(n)))
    return open_, high, low, close


# naive references (loops, straight from the formulas)
def ref_c2c(c):
    r = np.diff(np.log(c))
    return np.sqrt(np.var(r, ddof=1) * P)


def ref_parkinson(h, l):
    return np.sqrt(P * np.mean(np.log(h / l) ** 2) / (4 * np.log(2)))


def ref_gk(o, h, l, c):
    x = 0.5 * np.log(h / l) ** 2 - (2 * np.log(2) - 1) * np.log(c / o) ** 2
    return np.sqrt(P * np.mean(x))


def ref_rs(o, h, l, c):
    x = np.log(h / c) * np.log(h / o) + np.log(l / c) * np.log(l / o)
    return np.sqrt(P * np.mean(x))


def ref_yz(o, h, l, c):
    n = len(c) - 1
    on = np.log(o[1:] / c[:-1])
    oc = np.log(c[1:] / o[1:])
    k = 0.34 / (1.34 + (n + 1) / (n - 1))
    rs = ref_rs(o[1:], h[1:], l[1:], c[1:]) ** 2 / P
    return np.sqrt(P * (np.var(on, ddof=1) + k * np.var(oc, ddof=1) + (1 - k) * rs))


def test_whole_sample_estimators_match_references():
    o, h, l, c = _bars()
    np.testing.assert_allclose(jv.close_to_close(c), ref_c2c(c), rtol=1e-12)
    np.testing.assert_allclose(jv.parkinson(h, l), ref_parkinson(h, l), rtol=1e-12)
    np.testing.assert_allclose(jv.garman_klass(o, h, l, c), ref_gk(o, h, l, c), rtol=1e-12)
    np.testing.assert_allclose(jv.rogers_satchell(o, h, l, c), ref_rs(o, h, l, c), rtol=1e-12)
    np.testing.assert_allclose(jv.yang_zhang(o, h, l, c), ref_yz(o, h, l, c), rtol=1e-12)


def test_annualisation_is_explicit():
    _, _, _, c = _bars()
    daily = jv.close_to_close(c, periods_per_year=1.0)
    np.testing.assert_allclose(jv.close_to_close(c, periods_per_year=365.0), daily * np.sqrt(365))


def test_rolling_warm_up_is_nan_and_windows_match_references():
    o, h, l, c = _bars(40)
    w = 10
    cc = np.asarray(jv.close_to_close(c, window=w))
    assert cc.shape == (40,) and np.isnan(cc[:w]).all() and np.isfinite(cc[w:]).all()
    np.testing.assert_allclose(cc[25], ref_c2c(c[25 - w : 26]), rtol=1e-12)
    pk = np.asarray(jv.parkinson(h, l, window=w))
    assert np.isnan(pk[: w - 1]).all() and np.isfinite(pk[w - 1 :]).all()
    np.testing.assert_allclose(pk[30], ref_parkinson(h[21:31], l[21:31]), rtol=1e-12)
    gk = np.asarray(jv.garman_klass(o, h, l, c, window=w))
    np.testing.assert_allclose(gk[30], ref_gk(o[21:31], h[21:31], l[21:31], c[21:31]))
    rs = np.asarray(jv.rogers_satchell(o, h, l, c, window=w))
    np.testing.assert_allclose(rs[30], ref_rs(o[21:31], h[21:31], l[21:31], c[21:31]))
    yz = np.asarray(jv.yang_zhang(o, h, l, c, window=w))
    assert np.isnan(yz[:w]).all() and np.isfinite(yz[w:]).all()
    np.testing.assert_allclose(yz[30], ref_yz(o[20:31], h[20:31], l[20:31], c[20:31]))


def test_estimators_agree_on_simulated_gbm_bars():
    # 5000 bars of 100 sub-steps at 20% vol: every range estimator lands near 0.20
    rng = np.random.default_rng(3)
    steps = 0.2 / np.sqrt(252 * 100) * rng.standard_normal((5000, 100))
    path = 100 * np.exp(np.cumsum(steps.ravel())).reshape(5000, 100)
    o, c = path[:, 0], path[:, -1]
    h, l = path.max(1), path.min(1)
    for est in (jv.garman_klass, jv.rogers_satchell, jv.yang_zhang):
        assert abs(float(est(o, h, l, c)) - 0.2) < 0.02


def test_bad_inputs_raise_clear_errors():
    o, h, l, c = _bars(20)
    with pytest.raises(ValueError, match="close: must be > 0"):
        jv.close_to_close(np.r_[c[:-1], -1.0])
    with pytest.raises(ValueError, match="need at least 11 closes"):
        jv.close_to_close(c[:10], window=10)
    with pytest.raises(ValueError, match="window: must be >= 2"):
        jv.close_to_close(c, window=1)
    with pytest.raises(ValueError, match="high/low"):
        jv.garman_klass(o, l, h, c)
    with pytest.raises(ValueError, match="lengths differ"):
        jv.rogers_satchell(o, h, l, c[:-1])
    with pytest.raises(ValueError, match="close: contains NaN"):
        jv.close_to_close(np.r_[c[:-1], np.nan])


def ref_ewma(r, lam, seed):
    out, v = [], seed
    for x in r:
        v = lam * v + (1 - lam) * x * x
        out.append(v)
    return np.array(out)


def test_ewma_matches_loop_and_warm_up():
    r = np.random.default_rng(5).standard_normal(100) * 0.01
    v = np.asarray(jv.ewma_variance(r))
    seed = np.mean(r[:20] ** 2)
    ref = ref_ewma(r, 0.94, seed)
    assert np.isnan(v[:19]).all()
    np.testing.assert_allclose(v[19:], ref[19:], rtol=1e-12)
    v2 = np.asarray(jv.ewma_variance(r, lam=0.97, init=1e-4, min_periods=1))
    np.testing.assert_allclose(v2, ref_ewma(r, 0.97, 1e-4), rtol=1e-12)


@given(
    st.lists(st.floats(-0.1, 0.1), min_size=30, max_size=30),
    st.floats(0.5, 0.99),
)
def test_ewma_stays_between_seed_and_squared_returns(rs, lam):
    r = np.asarray(rs)
    v = np.asarray(jv.ewma_variance(r, lam=lam, init=1e-3, min_periods=1))
    lo = min(1e-3, (r**2).min())
    hi = max(1e-3, (r**2).max())
    assert (v >= lo - 1e-15).all() and (v <= hi + 1e-15).all()


def test_ewma_bad_inputs():
    with pytest.raises(ValueError, match="lam: must be in"):
        jv.ewma_variance(np.ones(30), lam=1.0)
    with pytest.raises(ValueError, match="need at least min_periods=20"):
        jv.ewma_variance(np.ones(5))
    with pytest.raises(ValueError, match="returns: must be 1-D"):
        jv.ewma_variance(np.ones((5, 5)))


def test_no_retrace_on_new_values():
    r = np.random.default_rng(0).standard_normal(50) * 0.01
    jv.ewma_variance(r)
    n_ewma = _realised._ewma._cache_size()
    jv.ewma_variance(r * 2)
    assert _realised._ewma._cache_size() == n_ewma
    _, h, l, c = _bars(30)
    jv.parkinson(h, l, window=5)
    n_roll = _realised._rolling._cache_size()
    jv.parkinson(h * 1.01, l, window=5)
    assert _realised._rolling._cache_size() == n_roll


def test_float32_inputs_stay_float32():
    _, _, _, c = _bars(30)
    out = jv.close_to_close(jnp.asarray(c, jnp.float32))
    assert out.dtype == jnp.float32
