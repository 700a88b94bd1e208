"""VolSurface, SSVI and static-arbitrage detection."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import jaxmm.pricing as jp
import jaxmm.vol as jv
from jaxmm.vol import _ssvi

EXP = np.array([0.25, 0.5, 1.0])
SPOT, R, Q = 100.0, 0.03, 0.01


def svi_slices():
    return jv.SVI(
        a=jnp.array([0.005, 0.012, 0.03]),
        b=jnp.array([0.08, 0.1, 0.12]),
        rho=jnp.array([-0.6, -0.45, -0.3]),
        m=jnp.array([0.02, 0.05, 0.08]),
        sigma=jnp.array([0.1, 0.15, 0.25]),
    )


def np_w(k, a, b, rho, m, sigma):
    return a + b * (rho * (k - m) + np.sqrt((k - m) ** 2 + sigma**2))


@pytest.fixture(scope="module")
def surf():
    return jv.VolSurface.from_svi(svi_slices(), EXP, SPOT, R, Q)


def test_nodes_and_linear_total_variance_interpolation(surf):
    p = {n: np.asarray(getattr(svi_slices(), n)) for n in ("a", "b", "rho", "m", "sigma")}
    k = 0.1
    w_nodes = np_w(k, *(p[n] for n in ("a", "b", "rho", "m", "sigma")))
    for i, t in enumerate(EXP):
        np.testing.assert_allclose(surf.total_variance(k, t), w_nodes[i], rtol=1e-14)
    t = 0.4  # between 0.25 and 0.5: linear in T
    ref = w_nodes[0] + (w_nodes[1] - w_nodes[0]) * (t - 0.25) / 0.25
    np.testing.assert_allclose(surf.total_variance(k, t), ref, rtol=1e-14)
    np.testing.assert_allclose(surf.total_variance(k, 0.1), w_nodes[0] * 0.1 / 0.25, rtol=1e-14)
    np.testing.assert_allclose(surf.total_variance(k, 2.0), w_nodes[2] * 2.0, rtol=1e-14)
    # sigma(K, T) reads the slice at k = ln(K / F(T))
    strike, t = 110.0, 0.5
    kk = np.log(strike / (SPOT * np.exp((R - Q) * t)))
    ref_vol = np.sqrt(np_w(kk, *(p[n][1] for n in ("a", "b", "rho", "m", "sigma"))) / t)
    np.testing.assert_allclose(surf.implied_vol(strike, t), ref_vol, rtol=1e-14)


def test_atm_term_structure_and_forward_variance(surf):
    w = np.array([float(surf.total_variance(0.0, t)) for t in EXP])
    np.testing.assert_allclose(surf.atm_vol(jnp.asarray(EXP)), np.sqrt(w / EXP), rtol=1e-14)
    np.testing.assert_allclose(surf.forward_variance(0.5, 1.0), (w[2] - w[1]) / 0.5, rtol=1e-12)


@given(
    st.lists(st.floats(0.001, 0.05), min_size=3, max_size=3),
    st.floats(-0.9, 0.9),
    st.floats(-1.5, 1.5),
    st.floats(0.01, 2.9),
)
def test_interpolation_introduces_no_calendar_arbitrage(increments, rho, k, t):
    a = jnp.asarray(np.cumsum(increments))  # nodes increasing in T at every k
    s = jv.VolSurface.from_svi(jv.SVI(a, 0.1, rho, 0.0, 0.2), EXP, SPOT)
    ts = jnp.linspace(0.01, 3.0, 60)
    w = s.total_variance(jnp.full_like(ts, k), ts)
    assert bool(jnp.all(jnp.diff(w) >= -1e-15))
    del t


def test_gradients_in_strike_expiry_and_parameters_match_finite_differences(surf):
    h = 1e-5
    f_k = lambda strike: surf.implied_vol(strike, 0.7)
    fd = (f_k(105.0 + h) - f_k(105.0 - h)) / (2 * h)
    np.testing.assert_allclose(jax.grad(f_k)(105.0), fd, rtol=1e-7)
    f_t = lambda t: surf.implied_vol(105.0, t)
    fd = (f_t(0.7 + h) - f_t(0.7 - h)) / (2 * h)
    np.testing.assert_allclose(jax.grad(f_t)(0.7), fd, rtol=1e-6)

    def f_p(rho_vec):
        s = jv.VolSurface.from_svi(
            jv.SVI(svi_slices().a, svi_slices().b, rho_vec, svi_slices().m, svi_slices().sigma),
            EXP, SPOT, R, Q,
        )  # fmt: skip
        return s.implied_vol(95.0, 0.7)

    rho0 = svi_slices().rho
    g = jax.grad(f_p)(rho0)
    for i in range(3):
        e = jnp.zeros(3).at[i].set(h)
        np.testing.assert_allclose(g[i], (f_p(rho0 + e) - f_p(rho0 - e)) / (2 * h), atol=1e-8)


def test_chain_greeks_in_one_call_and_deltas(surf):
    strikes = jnp.array([90.0, 100.0, 110.0])
    t = jnp.array([0.5, 0.5, 1.0])
    calls = jnp.array([True, False, True])
    g = surf.greeks(strikes, t, calls)
    vol = surf.implied_vol(strikes, t)
    ref = jp.bsm_greeks(SPOT, strikes, t, R, Q, vol, calls)
    np.testing.assert_allclose(g.price, ref.price, rtol=1e-14)
    np.testing.assert_allclose(surf.delta(strikes, t, calls), ref.delta, rtol=1e-12)
    # sticky moneyness: bump spot, the smile moves with the forward
    h = 1e-3

    def price_at(spot):
        s = jv.VolSurface.from_svi(svi_slices(), EXP, spot, R, Q)
        return jp.bsm_price(spot, strikes, t, R, Q, s.implied_vol(strikes, t), calls)

    fd = (price_at(SPOT + h) - price_at(SPOT - h)) / (2 * h)
    np.testing.assert_allclose(surf.delta(strikes, t, calls, "sticky_moneyness"), fd, rtol=1e-6)
    with pytest.raises(ValueError, match="rule: must be"):
        surf.delta(strikes, t, calls, "sticky_delta")


def test_surface_is_a_pytree_and_jit_does_not_retrace(surf):
    @jax.jit
    def vols(s, strikes):
        return s.implied_vol(strikes, 0.5)

    vols(surf, jnp.array([95.0, 105.0]))
    n = vols._cache_size()
    other = jv.VolSurface.from_svi(
        jax.tree.map(lambda x: x * 1.01, svi_slices()), EXP, SPOT + 1.0, R, Q
    )
    vols(other, jnp.array([90.0, 101.0]))
    assert vols._cache_size() == n


def test_calendar_arbitrage_detected_on_a_constructed_bad_surface():
    k = np.linspace(-0.3, 0.3, 13)
    iv = np.array([np.full(13, 0.30), np.full(13, 0.20), np.full(13, 0.20)])
    # w = 0.0225, 0.02, 0.04: the 0.25y -> 0.5y calendar spread has decreasing total variance
    s = jv.VolSurface.from_grid(k, iv, EXP, SPOT)
    rep = s.arbitrage(jnp.asarray(k))
    assert [c["pair"] for c in rep.calendar] == [(0, 1)]
    assert rep.calendar[0]["expiries"] == (0.25, 0.5)
    np.testing.assert_allclose(rep.calendar[0]["max_drop"], 0.09 * 0.25 - 0.04 * 0.5)
    good = jv.VolSurface.from_svi(svi_slices(), EXP, SPOT).arbitrage()
    assert not good.has_arbitrage


def test_raw_chain_detection_with_ragged_quotes():
    k = np.tile(np.linspace(-0.3, 0.3, 7), (2, 1))
    iv = np.array([np.full(7, 0.2), np.full(7, 0.2)])
    iv[1, 5] = 0.10  # one long-dated quote far below the short-dated slice
    mask = np.ones_like(k, bool)
    mask[0, 0] = False
    rep = jv.detect_arbitrage(k, iv, [0.5, 0.6], mask=mask)
    assert rep.calendar and rep.calendar[0]["pair"] == (0, 1)
    assert any(abs(x - k[0, 5]) < 1e-12 for x in rep.calendar[0]["k"])
    with pytest.raises(ValueError, match="expiries: must be > 0 and strictly increasing"):
        jv.detect_arbitrage(k, iv, [0.6, 0.5])


def test_surface_bad_inputs():
    with pytest.raises(ValueError, match="expiries: must be finite, > 0 and strictly increasing"):
        jv.VolSurface.from_svi(svi_slices(), [0.5, 0.25, 1.0], SPOT)
    with pytest.raises(ValueError, match="implied_vol: must be > 0"):
        jv.VolSurface.from_grid([-0.1, 0.0, 0.1], -np.ones((3, 3)), EXP, SPOT)
    with pytest.raises(ValueError, match="spot: must be > 0"):
        jv.VolSurface.from_svi(svi_slices(), EXP, -1.0)


# --- SSVI ---------------------------------------------------------------------------------------

SS_T = np.array([0.1, 0.25, 0.5, 1.0])
SS_K = np.tile(np.linspace(-0.4, 0.3, 15), (4, 1))
SS_TRUE = dict(rho=-0.55, eta=1.1, gamma=0.35, theta=np.array([0.005, 0.012, 0.022, 0.045]))


def ssvi_np(k, theta, rho, eta, gamma):
    phi = eta / (theta**gamma * (1 + theta) ** (1 - gamma))
    return theta / 2 * (1 + rho * phi * k + np.sqrt((phi * k + rho) ** 2 + 1 - rho**2))


def test_ssvi_formula_and_recovery():
    w = ssvi_np(SS_K, SS_TRUE["theta"][:, None], SS_TRUE["rho"], SS_TRUE["eta"], SS_TRUE["gamma"])
    iv = np.sqrt(w / SS_T[:, None])
    s = jv.SSVI(SS_TRUE["rho"], SS_TRUE["eta"], SS_TRUE["gamma"], SS_TRUE["theta"], SS_T)
    np.testing.assert_allclose(s.implied_vol(SS_K, SS_T[:, None]), iv, rtol=1e-13)
    fit = jv.fit_ssvi(SS_K, iv, SS_T, n_starts=4)
    assert int(fit.status) == 0
    surf = fit.surface
    for name in ("rho", "eta", "gamma"):
        np.testing.assert_allclose(getattr(surf, name), SS_TRUE[name], atol=1e-5, err_msg=name)
    np.testing.assert_allclose(surf.theta, SS_TRUE["theta"], rtol=1e-5)
    n = _ssvi._fit._cache_size()
    jv.fit_ssvi(SS_K, iv * 1.02, SS_T, n_starts=4)
    assert _ssvi._fit._cache_size() == n
    # a VolSurface built from it prices off the same total variance
    vs = jv.VolSurface.from_ssvi(surf, SPOT)
    np.testing.assert_allclose(vs.total_variance(0.1, 0.5), surf.total_variance(0.1, 0.5))


@given(st.lists(st.floats(-3.0, 3.0), min_size=7, max_size=7))
def test_ssvi_parameterisation_is_free_of_static_arbitrage(z):
    s = _ssvi._to_ssvi(jnp.asarray(z), jnp.asarray(SS_T))
    k = np.linspace(-2.0, 2.0, 801)
    h = k[1] - k[0]
    w = np.asarray(s.total_variance_theta(k[None, :], s.theta[:, None]))
    assert (np.diff(w, axis=0) >= -1e-14).all()  # calendar: w non-decreasing in theta
    w1 = np.gradient(w, h, axis=1)
    w2 = np.gradient(w1, h, axis=1)
    g = (1 - k * w1 / (2 * w)) ** 2 - w1**2 / 4 * (1 / w + 0.25) + w2 / 2
    assert g[:, 2:-2].min() > -1e-6  # butterfly (Gatheral-Jacquier g >= 0, FD derivatives)


def test_ssvi_bad_inputs():
    with pytest.raises(ValueError, match="expiries: must be > 0 and strictly increasing"):
        jv.fit_ssvi(SS_K, np.full(SS_K.shape, 0.2), SS_T[::-1])
    with pytest.raises(ValueError, match="log_moneyness: need shape"):
        jv.fit_ssvi(np.zeros((4, 0)), np.zeros((4, 0)), SS_T)
    with pytest.raises(ValueError, match="implied_vol: must be >= 0"):
        jv.fit_ssvi(SS_K, np.full(SS_K.shape, -0.2), SS_T)
