"""Calibration: censored MLE of (A, k), regression cross-check, empirical curve, gamma from a
half-life, sigma estimators and the regime classifier."""

import math

import jax
import numpy as np
import pytest
import scipy.linalg as sl
from scipy.optimize import brentq, minimize

from jaxmm.strategy import (
    ASK,
    BID,
    GLFT,
    AvellanedaStoikov,
    BinStatus,
    FitStatus,
    VolRegime,
    classify_vol_regime,
    empirical_intensity,
    ewma_sigma,
    fit_intensity,
    fit_intensity_regression,
    gamma_from_half_life,
    mean_reversion_rate,
    realized_sigma,
    simulate_fills,
)
from jaxmm.strategy import calibration as cal

A_TRUE, K_TRUE = 2.0, 1.5


def _np_loglik(theta, d, tau, y):
    """Independent NumPy log-likelihood of (ln A, k) with censoring (Bernoulli form)."""
    lam = np.exp(theta[0] - theta[1] * d)
    x = lam * tau
    return np.sum(np.where(y > 0, np.log(-np.expm1(-x)), -x))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mle_recovers_known_parameters_within_ci(seed):
    d, tau, f = simulate_fills(A=A_TRUE, k=K_TRUE, n=4000, seed=seed)
    fit = fit_intensity(d, tau, f)
    assert int(fit.status) == FitStatus.OK
    assert abs(float(fit.A) - A_TRUE) <= 3 * float(fit.se_A)
    assert abs(float(fit.k) - K_TRUE) <= 3 * float(fit.se_k)
    assert float(fit.A_ci[0]) < float(fit.A) < float(fit.A_ci[1])


def test_mle_matches_scipy_optimum_and_numerical_information():
    d, tau, f = simulate_fills(A=A_TRUE, k=K_TRUE, n=3500, seed=11)
    fit = fit_intensity(d, tau, f)
    res = minimize(
        lambda th: -_np_loglik(th, d, tau, f),
        x0=[0.0, 1.0],
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000},
    )
    assert float(np.log(fit.A)) == pytest.approx(res.x[0], abs=1e-6)
    assert float(fit.k) == pytest.approx(res.x[1], abs=1e-6)
    assert float(fit.loglik) == pytest.approx(-res.fun, abs=1e-8)
    # observed information by central finite differences of the NumPy log-likelihood
    th = np.array([np.log(float(fit.A)), float(fit.k)])
    h = 1e-4
    H = np.zeros((2, 2))
    for i in range(2):
        for j in range(2):
            ei, ej = np.eye(2)[i] * h, np.eye(2)[j] * h
            H[i, j] = (
                _np_loglik(th + ei + ej, d, tau, f)
                - _np_loglik(th + ei - ej, d, tau, f)
                - _np_loglik(th - ei + ej, d, tau, f)
                + _np_loglik(th - ei - ej, d, tau, f)
            ) / (4 * h * h)
    cov = np.linalg.inv(-H)
    np.testing.assert_allclose(np.asarray(fit.cov), cov, rtol=1e-4)
    assert float(fit.se_k) == pytest.approx(math.sqrt(cov[1, 1]), rel=1e-4)
    assert float(fit.se_A) == pytest.approx(float(fit.A) * math.sqrt(cov[0, 0]), rel=1e-4)


def test_confidence_interval_coverage():
    """Over 300 simulated data sets the 95 % intervals cover the truth about 95 % of the time
    (binomial sd 1.3 %)."""
    cover_k = cover_a = 0
    runs = 300
    for seed in range(runs):
        d, tau, f = simulate_fills(A=A_TRUE, k=K_TRUE, n=2500, seed=1000 + seed)
        fit = fit_intensity(d, tau, f)
        cover_k += float(fit.k_ci[0]) <= K_TRUE <= float(fit.k_ci[1])
        cover_a += float(fit.A_ci[0]) <= A_TRUE <= float(fit.A_ci[1])
    assert 0.91 <= cover_k / runs <= 0.99
    assert 0.91 <= cover_a / runs <= 0.99


def test_ignoring_unfilled_quotes_would_be_wrong():
    """Fills alone carry no information on how often quotes were *not* hit: fitting only the
    filled records (all 'filled') is unidentified, and the censored MLE is what recovers k."""
    d, tau, f = simulate_fills(A=A_TRUE, k=K_TRUE, n=4000, seed=5)
    only_fills = fit_intensity(d[f > 0], tau[f > 0], f[f > 0])
    assert int(only_fills.status) == FitStatus.ALL_FILLED
    assert bool(np.isnan(only_fills.k))


def test_mle_with_fill_times():
    d, tau, f, ft = simulate_fills(A=A_TRUE, k=K_TRUE, n=4000, seed=3, with_fill_times=True)
    fit = fit_intensity(d, tau, f, fill_time=ft)
    assert int(fit.status) == FitStatus.OK
    assert abs(float(fit.k) - K_TRUE) <= 3 * float(fit.se_k)
    # Poisson MLE: the score equations sum(y) = sum(lambda e), sum(y d) = sum(lambda e d)
    e = np.where(f > 0, ft, tau)
    lam = float(fit.A) * np.exp(-float(fit.k) * d)
    assert np.sum(f) == pytest.approx(np.sum(lam * e), rel=1e-10)
    assert np.sum(f * d) == pytest.approx(np.sum(lam * e * d), rel=1e-10)
    # fill times are more informative than the indicator alone
    assert float(fit.se_k) < float(fit_intensity(d, tau, f).se_k)


def test_per_side_fit_equals_separate_fits():
    d, tau, f = simulate_fills(A=A_TRUE, k=K_TRUE, n=2000, seed=4)
    d2, tau2, f2 = simulate_fills(A=0.8, k=3.0, n=2000, seed=5)
    side = np.r_[np.full(2000, BID), np.full(2000, ASK)]
    both = fit_intensity(np.r_[d, d2], np.r_[tau, tau2], np.r_[f, f2], side=side)
    bid, ask = fit_intensity(d, tau, f), fit_intensity(d2, tau2, f2)
    assert both.A.shape == (2,)
    assert float(both.k[BID]) == pytest.approx(float(bid.k), rel=1e-8)
    assert float(both.k[ASK]) == pytest.approx(float(ask.k), rel=1e-8)
    assert float(both.A[ASK]) == pytest.approx(float(ask.A), rel=1e-8)
    assert abs(float(both.k[ASK]) - 3.0) <= 3 * float(both.se_k[ASK])


@pytest.mark.parametrize(
    ("delta", "filled", "status"),
    [
        ([], [], FitStatus.NO_DATA),
        ([0.1, 0.5, 1.0], [0, 0, 0], FitStatus.NO_FILLS),
        ([0.1, 0.5, 1.0], [1, 1, 1], FitStatus.ALL_FILLED),
        ([0.5, 0.5, 0.5], [1, 0, 1], FitStatus.NO_DEPTH_VARIATION),
        ([0.1, 0.2, 1.0, 2.0], [1, 1, 0, 0], FitStatus.SEPARATED),
        ([0.1, 0.2, 1.0, 2.0], [0, 0, 1, 1], FitStatus.SEPARATED),
    ],
)
def test_degenerate_data_returns_status_not_error(delta, filled, status):
    fit = fit_intensity(delta, [1.0] * len(delta), filled)
    assert int(fit.status) == status
    assert bool(np.isnan(fit.A)) and bool(np.isnan(fit.k))


def test_small_overlapping_data_gives_estimate():
    fit = fit_intensity([0.1, 0.5, 0.6, 1.0, 1.5], [1.0] * 5, [1, 0, 1, 1, 0])
    assert int(fit.status) == FitStatus.OK
    assert np.isfinite(float(fit.k)) and np.isfinite(float(fit.se_k))


def test_side_with_no_data_reports_status():
    fit = fit_intensity([0.1, 0.5, 1.0, 0.3], [1.0] * 4, [1, 0, 1, 0], side=[BID] * 4)
    assert int(fit.status[ASK]) == FitStatus.NO_DATA
    assert int(fit.n_obs[ASK]) == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(delta=[0.1, 0.2], duration=[1.0, 0.0], filled=[1, 0]), "duration: must be > 0.0"),
        (dict(delta=[0.1, 0.2], duration=[1.0, 1.0], filled=[1, 2]), "filled: must contain only"),
        (dict(delta=[0.1, 0.2], duration=[1.0], filled=[1, 0]), "duration: length 1 differs"),
        (dict(delta=[0.1, np.nan], duration=[1.0, 1.0], filled=[1, 0]), "delta: contains NaN"),
        (
            dict(delta=[0.1, 0.2], duration=[1.0, 1.0], filled=[1, 0], fill_time=[2.0, 0.0]),
            "fill_time: must be finite and <= duration",
        ),
        (dict(delta=[0.1], duration=[1.0], filled=[1], confidence=1.0), "confidence: must be"),
        (dict(delta=[0.1], duration=[1.0], filled=[1], side=[3]), "side: must contain only"),
    ],
)
def test_fit_validation_messages(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_intensity(**kwargs)


def test_no_retrace_on_new_values():
    d, tau, f = simulate_fills(A=A_TRUE, k=K_TRUE, n=4000, seed=8)
    fit_intensity(d, tau, f)
    n0 = cal._fit_kernel._cache_size()
    d2, tau2, f2 = simulate_fills(A=1.0, k=0.7, n=3000, seed=9)  # same power-of-two bucket
    fit_intensity(d2, tau2, f2)
    assert cal._fit_kernel._cache_size() == n0

    empirical_intensity(d, tau, f, bins=10)
    fit_intensity_regression(d, tau, f, bins=10)
    e0, r0 = cal._empirical_kernel._cache_size(), cal._regression_kernel._cache_size()
    empirical_intensity(d2, tau2, f2, bins=10)
    fit_intensity_regression(d2, tau2, f2, bins=10)
    assert cal._empirical_kernel._cache_size() == e0
    assert cal._regression_kernel._cache_size() == r0

    gamma_from_half_life(60.0, k=0.3, A=0.9, sigma=0.3)
    g0 = cal._gamma_kernel._cache_size()
    gamma_from_half_life(120.0, k=0.5, A=1.9, sigma=0.2)
    assert cal._gamma_kernel._cache_size() == g0

    realized_sigma([1.0, 2.0, 3.0])
    ewma_sigma([1.0, 2.0, 3.0])
    s0, w0 = cal._realized_kernel._cache_size(), cal._ewma_kernel._cache_size()
    realized_sigma([5.0, 2.0, 1.0])
    ewma_sigma([5.0, 2.0, 1.0])
    assert cal._realized_kernel._cache_size() == s0
    assert cal._ewma_kernel._cache_size() == w0


# --------------------------------------------------------------- empirical + regression


def test_empirical_intensity_hand_counts():
    d = np.array([0.05, 0.1, 0.3, 0.35, 0.6, 0.9, 0.95, 1.0])
    f = np.array([1, 1, 1, 0, 0, 1, 0, 0])
    tau = np.full(8, 2.0)
    c = empirical_intensity(d, tau, f, bins=2, delta_min=0.0, delta_max=1.0)
    np.testing.assert_allclose(c.edges, [0.0, 0.5, 1.0])
    np.testing.assert_allclose(c.n_obs, [4, 4])
    np.testing.assert_allclose(c.n_fills, [3, 1])
    np.testing.assert_allclose(c.centers, [d[:4].mean(), d[4:].mean()])
    np.testing.assert_allclose(c.intensity, [-np.log(1 - 0.75) / 2, -np.log(1 - 0.25) / 2])
    assert list(np.asarray(c.status)) == [BinStatus.OK, BinStatus.OK]
    ft = np.where(f > 0, 0.5, np.inf)
    ct = empirical_intensity(d, tau, f, fill_time=ft, bins=2, delta_min=0.0, delta_max=1.0)
    # hits / time quoted: bin 0: 3 fills over 3 * 0.5 + 2 = 3.5; bin 1: 1 over 0.5 + 6
    np.testing.assert_allclose(ct.intensity, [3 / 3.5, 1 / 6.5])
    np.testing.assert_allclose(ct.se, [math.sqrt(3) / 3.5, 1 / 6.5])


def test_empirical_intensity_statuses():
    c = empirical_intensity(
        [0.1, 0.2, 0.9], [1.0] * 3, [1, 1, 0], bins=3, delta_min=0.0, delta_max=0.9
    )
    assert list(np.asarray(c.status)) == [BinStatus.ALL_FILLED, BinStatus.EMPTY, BinStatus.NO_FILLS]
    assert np.isinf(float(c.intensity[0])) and np.isnan(float(c.intensity[1]))
    assert float(c.intensity[2]) == 0.0


def test_regression_cross_check_agrees_with_mle():
    d, tau, f = simulate_fills(A=A_TRUE, k=K_TRUE, n=16000, seed=21)
    reg = fit_intensity_regression(d, tau, f, bins=10)
    mle = fit_intensity(d, tau, f)
    assert int(reg.status) == FitStatus.OK
    assert abs(float(reg.k) - K_TRUE) < 0.1 * K_TRUE
    assert abs(float(reg.A) - A_TRUE) < 0.1 * A_TRUE
    assert abs(float(reg.k) - float(mle.k)) < 3 * float(reg.se_k)
    d, tau, f, ft = simulate_fills(A=A_TRUE, k=K_TRUE, n=16000, seed=22, with_fill_times=True)
    reg_t = fit_intensity_regression(d, tau, f, fill_time=ft, bins=10)
    assert abs(float(reg_t.k) - K_TRUE) < 0.1 * K_TRUE


def test_regression_insufficient_bins():
    reg = fit_intensity_regression([0.1, 0.2, 0.3], [1.0] * 3, [0, 0, 1], bins=2)
    assert int(reg.status) == FitStatus.INSUFFICIENT_BINS
    assert bool(np.isnan(reg.k))


# --------------------------------------------------------------------- gamma from half-life


def test_gamma_from_half_life_matches_finite_difference_of_quotes():
    k, A, s = 0.3, 0.9, 0.3
    fit = gamma_from_half_life(60.0, k=k, A=A, sigma=s)
    assert int(fit.status) == FitStatus.OK
    mm = GLFT(float(fit.gamma), k, A, s, 100)

    def drift(q):
        b, a = mm.half_spreads(q)
        return A * math.exp(-k * float(b)) - A * math.exp(-k * float(a))

    h = 1e-4
    kappa = -(drift(h) - drift(-h)) / (2 * h)
    assert math.log(2) / kappa == pytest.approx(60.0, rel=1e-6)


def test_gamma_from_half_life_avellaneda_stoikov():
    k, A, s, tau = 1.5, 5.0, 0.5, 10.0
    fit = gamma_from_half_life(20.0, k=k, A=A, sigma=s, model="as", horizon=tau)
    assert int(fit.status) == FitStatus.OK
    mm = AvellanedaStoikov(float(fit.gamma), k, s, tau, rolling=True)

    def drift(q):
        b, a = mm.half_spread_bid(q, 0.0), mm.half_spread_ask(q, 0.0)
        return A * math.exp(-k * float(b)) - A * math.exp(-k * float(a))

    h = 1e-4
    kappa = -(drift(h) - drift(-h)) / (2 * h)
    assert math.log(2) / kappa == pytest.approx(20.0, rel=1e-6)


def test_half_life_of_expected_inventory_in_the_markov_chain():
    """Independent check: the inventory is a birth-death chain with rates A exp(-k delta);
    E[q_t] from the chain's transition matrix (SciPy expm) halves in about the target time."""
    k, A, s, Q, target = 0.3, 0.9, 0.3, 30, 60.0
    fit = gamma_from_half_life(target, k=k, A=A, sigma=s)
    mm = GLFT(float(fit.gamma), k, A, s, Q)
    qs = np.arange(-Q, Q + 1.0)
    db, da = (np.asarray(x) for x in jax.vmap(mm.half_spreads)(qs))
    lb = np.where(np.isfinite(db), A * np.exp(-k * np.where(np.isfinite(db), db, 0.0)), 0.0)
    la = np.where(np.isfinite(da), A * np.exp(-k * np.where(np.isfinite(da), da, 0.0)), 0.0)
    n = len(qs)
    G = np.diag(lb[:-1], 1) + np.diag(la[1:], -1)
    G -= np.diag(G.sum(1))
    p0 = np.zeros(n)
    p0[Q + 1] = 1.0  # start long one unit
    t_half = brentq(lambda t: (p0 @ sl.expm(G * t)) @ qs - 0.5, 1.0, 10 * target)
    assert t_half == pytest.approx(target, rel=0.03)


def test_gamma_from_half_life_unreachable():
    short = gamma_from_half_life(1e-3, k=0.3, A=0.9, sigma=0.3)
    long = gamma_from_half_life(1e15, k=0.3, A=0.9, sigma=0.3)
    for f in (short, long):
        assert int(f.status) == FitStatus.UNREACHABLE and bool(np.isnan(f.gamma))
    with pytest.raises(ValueError, match="half_life: must be > 0.0"):
        gamma_from_half_life(0.0, k=0.3, A=0.9, sigma=0.3)
    with pytest.raises(ValueError, match="horizon: required"):
        gamma_from_half_life(10.0, k=0.3, A=0.9, sigma=0.3, model="as")


def test_mean_reversion_rate_increases_with_gamma_at_small_gamma():
    r = [float(mean_reversion_rate(g, 0.3, 0.9, 0.3)) for g in (1e-4, 1e-3, 1e-2)]
    assert r[0] < r[1] < r[2]


# ------------------------------------------------------------------------------- sigma


def test_realized_sigma_absolute_log_and_irregular_times():
    p = np.array([100.0, 100.5, 99.8, 100.1, 100.9])
    r = np.diff(p)
    assert float(realized_sigma(p, dt=2.0).sigma) == pytest.approx(
        math.sqrt(np.sum(r**2) / (4 * 2.0)), rel=1e-14
    )
    t = np.array([0.0, 1.0, 3.0, 3.5, 6.0])
    assert float(realized_sigma(p, t).sigma) == pytest.approx(
        math.sqrt(np.sum(r**2) / 6.0), rel=1e-14
    )
    lr = np.diff(np.log(p))
    assert float(realized_sigma(p, kind="log").sigma) == pytest.approx(
        math.sqrt(np.mean(lr**2)), rel=1e-14
    )
    one = realized_sigma([100.0])
    assert int(one.status) == FitStatus.NO_DATA and bool(np.isnan(one.sigma))
    zero_t = realized_sigma([1.0, 2.0], [5.0, 5.0])
    assert int(zero_t.status) == FitStatus.NO_DATA
    with pytest.raises(ValueError, match="times: must be non-decreasing"):
        realized_sigma([1.0, 2.0, 3.0], [0.0, 2.0, 1.0])
    with pytest.raises(ValueError, match="prices: must be > 0.0"):
        realized_sigma([1.0, -2.0], kind="log")


def test_realized_sigma_recovers_simulated_abm():
    rng = np.random.default_rng(3)
    sigma, dt, n = 0.35, 0.5, 20000
    p = 100 + np.cumsum(sigma * math.sqrt(dt) * rng.standard_normal(n))
    est = realized_sigma(p, dt=dt)
    assert float(est.sigma) == pytest.approx(sigma, rel=3 / math.sqrt(2 * n))


def test_ewma_matches_reference_loop():
    p = np.array([100.0, 100.4, 100.1, 100.9, 100.2, 99.5])
    t = np.array([0.0, 1.0, 1.0, 2.5, 3.0, 5.0])  # one zero-length step (skipped)
    lam = 0.9
    ref, v = [], None
    for i in range(1, len(p)):
        dti = t[i] - t[i - 1]
        if dti > 0:
            x = (p[i] - p[i - 1]) ** 2 / dti
            v = x if v is None else lam * v + (1 - lam) * x
        ref.append(math.sqrt(v))
    e = ewma_sigma(p, t, decay=lam)
    np.testing.assert_allclose(np.asarray(e.path), ref, rtol=1e-14)
    assert float(e.sigma) == pytest.approx(ref[-1])
    assert int(ewma_sigma([1.0]).status) == FitStatus.NO_DATA


def test_vol_regime_thresholds():
    codes = classify_vol_regime(
        np.array([0.0, 0.149, 0.151, 0.2, 0.249, 0.251, 0.399, 0.401, 1.0, np.nan, -1.0]), 0.2
    )
    assert list(np.asarray(codes)) == [
        VolRegime.LOW,
        VolRegime.LOW,
        VolRegime.NORMAL,
        VolRegime.NORMAL,
        VolRegime.NORMAL,
        VolRegime.HIGH,
        VolRegime.HIGH,
        VolRegime.EXTREME,
        VolRegime.EXTREME,
        VolRegime.UNKNOWN,
        VolRegime.UNKNOWN,
    ]
    assert int(classify_vol_regime(0.3, 0.0)) == VolRegime.UNKNOWN
    assert int(classify_vol_regime(0.3, 0.2, thresholds=(1.0, 2.0, 3.0))) == VolRegime.NORMAL
    with pytest.raises(ValueError, match="thresholds: must be three increasing"):
        classify_vol_regime(0.3, 0.2, thresholds=(2.0, 1.0, 3.0))
