"""American / European lattice pricing and the ALO method, against independent references.

References (none of them is jaxmm code):
- QuantLib 1.4x ``BinomialVanillaEngine(process, "lr", n)`` — the same Leisen-Reimer tree, so
  the lattice must agree to rounding. QuantLib's binomial engines build their time grid as
  ``i * (T/n)``; when ``(T/n) * n < T`` in floating point the last grid time falls short of the
  American exercise window's end and the maturity payoff is silently dropped (prices off by
  ~1e-2). :func:`_safe_days` picks expiries (whole days, ACT/365F) for which
  ``(T/n) * n >= T`` holds exactly, and the test asserts it, so every QuantLib binomial value
  used here is a correct one.
- QuantLib ``QdFpAmericanEngine`` with its high-precision scheme (Andersen-Lake-Offengenden,
  tanh-sinh quadrature; ~1e-8 accurate) as the high-accuracy American reference wherever
  QuantLib supports it, and ``FdBlackScholesVanillaEngine`` (Crank-Nicolson, 1500 x 1500
  grid; ~3e-4 accurate) for the two-boundary regime q < r < 0 that QdFp rejects and for
  delta/gamma/theta.
- ``bsm_price`` (the closed form, itself tested against QuantLib in test_pricing_bsm.py) for
  the European convergence of the lattices.
- A plain NumPy Cox-Ross-Rubinstein backward induction written here (textbook probability
  ``(e^{b dt} - d)/(u - d)``; QuantLib's "crr" tree uses the first-order ``1/2 + drift/(2 dx)``
  instead, so the two trees differ at finite n).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import QuantLib as ql
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxmm.pricing._bsm import black_scholes_scalar, bsm_greeks, bsm_price
from jaxmm.pricing._greeks import autodiff_core_greeks, autodiff_greeks
from jaxmm.pricing._lattice import (
    AloScheme,
    _american_greeks_jit,
    _american_price_jit,
    _split_greeks,
    _taylor_greeks,
    american_core_greeks,
    american_greeks,
    american_price,
)

_TODAY = ql.Date(15, 1, 2026)
_SMALL = 41  # the step count of the quick lattice tests (one compiled kernel shared by them)
_DC = ql.Actual365Fixed()

# ---------------------------------------------------------------------------------------------
# QuantLib helpers
# ---------------------------------------------------------------------------------------------


def _ql_option(s, k, days, r, q, v, is_call, american=True):
    ql.Settings.instance().evaluationDate = _TODAY
    maturity = _TODAY + int(days)
    payoff = ql.PlainVanillaPayoff(ql.Option.Call if is_call else ql.Option.Put, k)
    exercise = ql.AmericanExercise(_TODAY, maturity) if american else ql.EuropeanExercise(maturity)
    option = ql.VanillaOption(payoff, exercise)
    spot = ql.QuoteHandle(ql.SimpleQuote(s))
    rts = ql.YieldTermStructureHandle(ql.FlatForward(_TODAY, r, _DC, ql.Continuous))
    qts = ql.YieldTermStructureHandle(ql.FlatForward(_TODAY, q, _DC, ql.Continuous))
    vts = ql.BlackVolTermStructureHandle(ql.BlackConstantVol(_TODAY, ql.NullCalendar(), v, _DC))
    return option, ql.BlackScholesMertonProcess(spot, qts, rts, vts)


def _ql_binomial(case, tree, steps, american=True):
    option, process = _ql_option(*case, american=american)
    option.setPricingEngine(ql.BinomialVanillaEngine(process, tree, steps))
    return option.NPV()


def _ql_qdfp(case):
    option, process = _ql_option(*case)
    option.setPricingEngine(
        ql.QdFpAmericanEngine(process, ql.QdFpAmericanEngine.highPrecisionScheme())
    )
    return option.NPV()


def _ql_fd(case, grid=1500):
    option, process = _ql_option(*case)
    option.setPricingEngine(
        ql.FdBlackScholesVanillaEngine(process, grid, grid, 0, ql.FdmSchemeDesc.CrankNicolson())
    )
    return {"price": option.NPV(), "delta": option.delta(), "gamma": option.gamma(),
            "theta": option.theta()}  # fmt: skip


def _safe_days(days: int, steps: int) -> int:
    """The first whole-day expiry >= ``days`` whose QuantLib binomial time grid reaches T."""
    while (days / 365.0 / steps) * steps < days / 365.0:
        days += 1
    return days


def _arrays(cases):
    a = np.array([c[:6] for c in cases], dtype=float)
    return (a[:, 0], a[:, 1], a[:, 2] / 365.0, a[:, 3], a[:, 4], a[:, 5],
            np.array([c[6] for c in cases]))  # fmt: skip


def _is_band(r, q, is_call):
    """Two exercise boundaries (q < r <= 0 for puts, r < q <= 0 for calls): QdFp rejects it."""
    r_p, q_p = (q, r) if is_call else (r, q)
    return r_p <= 0 and q_p < r_p


# ---------------------------------------------------------------------------------------------
# Grids
# ---------------------------------------------------------------------------------------------


def _alo_grid():
    """Calls and puts, 1 day .. 3 years, vol 5% .. 150%, q > 0 (American calls matter), r < 0,
    q < 0, deep ITM/OTM; the two-boundary regime is tested separately."""
    strikes = [40.0, 80.0, 95.0, 100.0, 106.0, 125.0, 250.0]
    days = [1, 7, 30, 182, 365, 1095]
    carry = [(0.05, 0.0), (0.03, 0.08), (-0.01, 0.02), (0.02, -0.01), (0.0, 0.03), (0.06, 0.04)]
    vols = [0.05, 0.25, 0.8, 1.5]
    cases = [
        (100.0, k, d, r, q, v, c)
        for k, d, (r, q), v, c in itertools.product(strikes, days, carry, vols, [True, False])
    ]
    rng = np.random.default_rng(20261124)
    return [cases[i] for i in sorted(rng.choice(len(cases), size=260, replace=False))]


@pytest.fixture(scope="module")
def alo_grid():
    cases = _alo_grid()
    assert not any(_is_band(c[3], c[4], c[6]) for c in cases)
    return cases, np.array([_ql_qdfp(c) for c in cases])


def test_alo_grid_covers_the_extremes(alo_grid):
    cases, ref = alo_grid
    s, k, t, r, q, v, c = _arrays(cases)
    assert len(cases) >= 200 and c.any() and (~c).any()
    assert t.min() <= 1 / 365 and t.max() >= 3.0 and v.min() <= 0.05 and v.max() >= 1.5
    assert (r < 0).any() and (q > 0).any() and (q < 0).any()
    assert (k / s).min() <= 0.4 and (k / s).max() >= 2.5
    # early exercise matters on this grid: American above European somewhere by > 0.1
    assert (ref - np.asarray(bsm_price(s, k, t, r, q, v, c))).max() > 0.1


# ---------------------------------------------------------------------------------------------
# ALO (the default method) against QuantLib's high-accuracy engines
# ---------------------------------------------------------------------------------------------


def test_alo_matches_quantlib_qdfp_within_1e_3(alo_grid):
    cases, ref = alo_grid
    out = np.asarray(american_price(*_arrays(cases)))
    err = np.abs(out - ref)
    assert np.isfinite(out).all()
    assert err.max() < 1e-3, (err.max(), cases[int(err.argmax())])
    assert np.median(err) < 1e-5  # typical accuracy is far better than the bar


def test_alo_finer_scheme_converges_to_quantlib(alo_grid):
    cases, ref = alo_grid
    fast = np.asarray(american_price(*_arrays(cases), scheme=AloScheme.fast()))
    fine = np.asarray(american_price(*_arrays(cases), scheme=AloScheme.accurate()))
    e_fast, e_fine = (np.abs(x - ref).max() for x in (fast, fine))
    assert e_fast < 1e-3 and e_fine < 5e-5 and e_fine < e_fast / 10, (e_fast, e_fine)


_BAND = [
    (100.0, 100.0, 365, -0.005, -0.02, 0.3, False),
    (100.0, 90.0, 730, -0.01, -0.03, 0.2, False),
    (100.0, 110.0, 182, -0.02, -0.005, 0.25, True),
    (100.0, 120.0, 91, -0.015, -0.04, 0.35, False),
]


def test_two_boundary_regime_uses_the_lattice_and_matches_quantlib_fd():
    ref = np.array([_ql_fd(c)["price"] for c in _BAND])
    out = np.asarray(american_price(*_arrays(_BAND)))
    euro = np.asarray(bsm_price(*_arrays(_BAND)))
    assert (ref - euro).min() > 1e-3  # early exercise matters in every case
    assert np.abs(out - ref).max() < 1e-3


# ---------------------------------------------------------------------------------------------
# The lattices against QuantLib's trees, a NumPy twin and the closed form
# ---------------------------------------------------------------------------------------------

_LR_STEPS = 101


def _lattice_cases(steps):
    base = [
        (100.0, 100.0, 182, 0.05, 0.02, 0.25, False),
        (100.0, 110.0, 365, 0.03, 0.07, 0.3, True),
        (100.0, 60.0, 730, 0.04, 0.0, 0.4, False),  # deep OTM put
        (100.0, 150.0, 730, 0.04, 0.01, 0.4, False),  # deep ITM put
        (100.0, 70.0, 30, 0.02, 0.05, 0.2, True),  # deep ITM call, q > r
        (100.0, 140.0, 30, 0.02, 0.05, 0.2, True),  # deep OTM call
        (100.0, 95.0, 1095, -0.01, 0.02, 0.35, False),  # r < 0
        (100.0, 105.0, 91, -0.01, -0.03, 0.2, False),  # r < 0, q < r: two boundaries
        (100.0, 100.0, 7, 0.01, 0.0, 0.8, True),  # one week, high vol
    ]
    out = []
    for s, k, d, r, q, v, c in base:
        d = _safe_days(d, steps)
        t = d / 365.0
        assert (t / steps) * steps >= t  # QuantLib's grid reaches maturity (see module doc)
        out.append((s, k, d, r, q, v, c))
    return out


@pytest.mark.parametrize("american", [True, False])
def test_leisen_reimer_equals_quantlib_lr_tree(american):
    cases = _lattice_cases(_LR_STEPS)
    ref = np.array([_ql_binomial(c, "lr", _LR_STEPS, american) for c in cases])
    exercise = "american" if american else "european"
    out = american_price(*_arrays(cases), method="leisen_reimer", steps=_LR_STEPS,
                         exercise=exercise)  # fmt: skip
    np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-10, atol=1e-10)


def _crr_numpy(s, k, t, r, q, v, is_call, n, american):
    """Textbook CRR, one option, plain NumPy (the independent twin of the JAX lattice)."""
    dt = t / n
    u = np.exp(v * np.sqrt(dt))
    d = 1.0 / u
    p = (np.exp((r - q) * dt) - d) / (u - d)
    disc = np.exp(-r * dt)
    w = 1.0 if is_call else -1.0
    nodes = s * u ** np.arange(n + 1) * d ** (n - np.arange(n + 1))
    value = np.maximum(w * (nodes - k), 0.0)
    for i in range(n - 1, -1, -1):
        nodes = s * u ** np.arange(i + 1) * d ** (i - np.arange(i + 1))
        value = disc * (p * value[1:] + (1 - p) * value[:-1])
        if american:
            value = np.maximum(value, w * (nodes - k))
    return value[0]


@pytest.mark.parametrize("american", [True, False])
def test_crr_equals_a_numpy_twin(american):
    n = 60
    cases = _lattice_cases(n)
    ref = [_crr_numpy(c[0], c[1], c[2] / 365, *c[3:6], c[6], n, american) for c in cases]
    exercise = "american" if american else "european"
    out = american_price(*_arrays(cases), method="crr", steps=n, exercise=exercise)
    np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-11, atol=1e-11)


def test_crr_and_quantlib_crr_approach_the_same_limit():
    # Different up-probabilities at finite n, same limit: both within 1e-2 of QdFp at n = 400.
    n = 400
    cases = [c for c in _lattice_cases(n) if not _is_band(c[3], c[4], c[6])][:5]
    exact = np.array([_ql_qdfp(c) for c in cases])
    mine = np.asarray(american_price(*_arrays(cases), method="crr", steps=n))
    theirs = np.array([_ql_binomial(c, "crr", n) for c in cases])
    assert np.abs(mine - exact).max() < 1e-2
    assert np.abs(theirs - exact).max() < 1e-2


def test_european_lattices_converge_to_bsm():
    cases = _lattice_cases(1)
    args = _arrays(cases)
    exact = np.asarray(bsm_price(*args))
    lr = [np.abs(np.asarray(american_price(*args, method="leisen_reimer", steps=n,
                                           exercise="european")) - exact).max()
          for n in (25, 101, 401)]  # fmt: skip
    # Leisen-Reimer: O(1/n^2) for Europeans, so x16 per x4 steps (allow x10)
    assert lr[0] > lr[1] > lr[2] and lr[1] < lr[0] / 10 and lr[2] < lr[1] / 10, lr
    assert lr[2] < 2e-5
    crr = [np.abs(np.asarray(american_price(*args, method="crr", steps=n,
                                            exercise="european")) - exact).mean()
           for n in (50, 200, 800)]  # fmt: skip
    assert crr[0] > crr[1] > crr[2] and crr[2] < 5e-3, crr  # O(1/n), oscillating


def test_american_lattice_error_shrinks_with_steps():
    cases = [c for c in _lattice_cases(1) if not _is_band(c[3], c[4], c[6])]
    args = _arrays(cases)
    exact = np.array([_ql_qdfp(c) for c in cases])
    errs = [np.abs(np.asarray(american_price(*args, method="leisen_reimer", steps=n))
                   - exact).max() for n in (25, 101, 401)]  # fmt: skip
    # American Leisen-Reimer converges like O(1/n) (the exercise boundary is not on the
    # nodes): x4 steps divide the worst error by about 4.
    assert errs[0] / errs[1] > 3 and errs[1] / errs[2] > 3 and errs[2] < 1e-2, errs


# ---------------------------------------------------------------------------------------------
# Greeks by autodiff
# ---------------------------------------------------------------------------------------------

_GREEK_CASES = [
    (100.0, 100.0, 182, 0.05, 0.02, 0.25, False),
    (100.0, 110.0, 365, 0.03, 0.06, 0.3, True),
    (100.0, 90.0, 730, 0.04, 0.0, 0.4, False),
    (100.0, 80.0, 91, 0.02, 0.01, 0.2, True),
    (100.0, 120.0, 365, -0.01, 0.02, 0.3, False),
]


def _bump(case, i, h):
    c = list(case)
    c[i] = c[i] + h
    return tuple(c)


def _qdfp_fd(case):
    """Central differences of QdFp prices (vega, rho per 1.00; theta = -dV/dT per year)."""
    # Expiries are whole days in QuantLib, so the time derivative uses a +-1 day difference
    hv, hr = 1e-4, 1e-4
    vega = (_ql_qdfp(_bump(case, 5, hv)) - _ql_qdfp(_bump(case, 5, -hv))) / (2 * hv)
    rho = (_ql_qdfp(_bump(case, 3, hr)) - _ql_qdfp(_bump(case, 3, -hr))) / (2 * hr)
    theta = -(_ql_qdfp(_bump(case, 2, 1)) - _ql_qdfp(_bump(case, 2, -1))) / (2 / 365)
    return {"vega": vega, "rho": rho, "theta": theta}


@pytest.fixture(scope="module")
def greek_refs():
    return [(_ql_fd(c), _qdfp_fd(c)) for c in _GREEK_CASES]


def test_alo_core_greeks_match_quantlib(greek_refs):
    g = american_core_greeks(*_arrays(_GREEK_CASES))
    for i, (fd, bumped) in enumerate(greek_refs):
        assert abs(float(g.delta[i]) - fd["delta"]) < 1e-4
        assert abs(float(g.gamma[i]) - fd["gamma"]) < 1e-5 + 1e-3 * abs(fd["gamma"])
        # QuantLib's FD theta comes from the time grid: compare it loosely, and tightly to a
        # +-1 day difference of QdFp prices
        assert abs(float(g.theta[i]) - fd["theta"]) < 2e-2 * abs(fd["theta"]) + 1e-3
        assert abs(float(g.theta[i]) - bumped["theta"]) < 2e-3 * abs(bumped["theta"]) + 1e-3
        assert abs(float(g.vega[i]) - bumped["vega"]) < 1e-3 * abs(bumped["vega"]) + 1e-3
        assert abs(float(g.rho[i]) - bumped["rho"]) < 1e-3 * abs(bumped["rho"]) + 1e-3


def test_alo_higher_greeks_match_finite_differences_of_quantlib():
    case = (100.0, 105.0, 365, 0.04, 0.01, 0.3, False)
    g = american_greeks(*_arrays([case]))
    p = _ql_qdfp
    hs, hv, ht = 0.5, 1e-3, 2
    up_s, dn_s = _bump(case, 0, hs), _bump(case, 0, -hs)
    vanna = (p(_bump(up_s, 5, hv)) - p(_bump(up_s, 5, -hv)) - p(_bump(dn_s, 5, hv))
             + p(_bump(dn_s, 5, -hv))) / (4 * hs * hv)  # fmt: skip
    volga = (p(_bump(case, 5, hv)) - 2 * p(case) + p(_bump(case, 5, -hv))) / hv**2
    charm = -(p(_bump(up_s, 2, ht)) - p(_bump(up_s, 2, -ht)) - p(_bump(dn_s, 2, ht))
              + p(_bump(dn_s, 2, -ht))) / (4 * hs * ht / 365)  # fmt: skip
    speed = (p(_bump(case, 0, 2 * hs)) - 2 * p(up_s) + 2 * p(dn_s) - p(_bump(case, 0, -2 * hs))
             ) / (2 * hs**3)  # fmt: skip

    def gamma_at(c):
        return (p(_bump(c, 0, hs)) - 2 * p(c) + p(_bump(c, 0, -hs))) / hs**2

    zomma = (gamma_at(_bump(case, 5, hv)) - gamma_at(_bump(case, 5, -hv))) / (2 * hv)
    color = -(gamma_at(_bump(case, 2, ht)) - gamma_at(_bump(case, 2, -ht))) / (2 * ht / 365)
    for name, ref, tol in [("vanna", vanna, 2e-3), ("volga", volga, 1e-2), ("charm", charm, 2e-3),
                           ("speed", speed, 2e-5), ("zomma", zomma, 2e-3),
                           ("color", color, 2e-3)]:  # fmt: skip
        got = float(getattr(g, name)[0])
        assert abs(got - ref) < tol + 1e-2 * abs(ref), (name, got, ref)


def test_leisen_reimer_greeks_match_quantlib_loosely(greek_refs):
    # A lattice price is only piecewise smooth in its inputs; autodiff gives the derivative of
    # the piece, so compare at lattice accuracy (gamma misses the exercise-kink contributions).
    g = american_core_greeks(*_arrays(_GREEK_CASES), method="leisen_reimer", steps=_SMALL)
    for i, (fd, bumped) in enumerate(greek_refs):
        assert abs(float(g.delta[i]) - fd["delta"]) < 5e-3
        assert abs(float(g.gamma[i]) - fd["gamma"]) < 0.1 * fd["gamma"]
        assert abs(float(g.vega[i]) - bumped["vega"]) < 2e-2 * bumped["vega"]
        assert abs(float(g.rho[i]) - bumped["rho"]) < 2e-2 * abs(bumped["rho"]) + 1e-2


def test_crr_autodiff_gamma_is_zero_as_documented():
    # u, d, p do not depend on the spot and the nodes scale with it: piecewise linear in spot.
    g = american_core_greeks(*_arrays(_GREEK_CASES[:2]), method="crr", steps=_SMALL)
    assert np.all(np.asarray(g.gamma) == 0.0)
    assert np.all(np.abs(np.asarray(g.delta)) > 0.1)


@pytest.mark.parametrize("full", [True, False])
def test_greek_assembly_matches_autodiff_greeks_on_bsm(full):
    # The one-trace towers used here must reproduce jaxmm.pricing.autodiff_greeks exactly.
    s, k, t, r, q, v, c = (jnp.asarray(a) for a in _arrays(_GREEK_CASES))

    def f(s_, v_, t_, r_):
        return black_scholes_scalar(s_, k, t_, r_, q, v_, c)

    ref = jax.jit(lambda *a: (autodiff_greeks if full else autodiff_core_greeks)(f, *a))(s, v, t, r)
    taylor = jax.jit(lambda *a: _taylor_greeks(f, *a, full))(s, v, t, r)
    split = jax.jit(lambda *a: _split_greeks(f, *a, full))(s, v, t, r)
    for got in (taylor, split):
        for a, b in zip(got, ref, strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-12)


@pytest.mark.slow  # compiles the in-graph fallback (ALO and lattice Greeks in one kernel)
def test_two_boundary_greeks_host_path_equals_in_graph_path():
    args = _arrays(_BAND)
    host = american_core_greeks(*args, steps=_SMALL)
    traced = jax.jit(lambda *a: american_core_greeks(*a, steps=_SMALL))(*args)
    lattice = american_core_greeks(*args, method="leisen_reimer", steps=_SMALL)
    for a, b, c in zip(host, traced, lattice, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(np.asarray(a), np.asarray(c), rtol=1e-9, atol=1e-10)


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------

_mny = st.floats(0.6, 1.6)
_t = st.floats(0.02, 2.0)
_r = st.floats(-0.02, 0.08)
_q = st.floats(-0.02, 0.08)
_v = st.floats(0.08, 0.9)


@settings(max_examples=40)
@given(m=_mny, t=_t, r=_r, q=_q, v=_v, c=st.booleans())
def test_american_dominates_european_and_intrinsic(m, t, r, q, v, c):
    k = 100.0 * m
    am = float(american_price(100.0, k, t, r, q, v, c, method="leisen_reimer", steps=_SMALL))
    eu = float(american_price(100.0, k, t, r, q, v, c, method="leisen_reimer", steps=_SMALL,
                              exercise="european"))  # fmt: skip
    intrinsic = max((100.0 - k) if c else (k - 100.0), 0.0)
    assert am >= eu - 1e-12 and am >= intrinsic - 1e-12
    alo = float(american_price(100.0, k, t, r, q, v, c, steps=_SMALL))
    assert alo >= intrinsic - 1e-12
    if _is_band(r, q, c):  # priced on the lattice: its premium over its own European is >= 0
        assert alo == am
    else:  # early-exercise premium over the closed-form European >= 0
        assert alo - float(bsm_price(100.0, k, t, r, q, v, c)) >= -1e-9


@settings(max_examples=40)
@given(m=_mny, t=_t, r=st.floats(0.0, 0.08), v=_v)
def test_american_call_without_dividend_is_european(m, t, r, v):
    k = 100.0 * m
    am = float(american_price(100.0, k, t, r, 0.0, v, True, method="leisen_reimer", steps=_SMALL))
    eu = float(american_price(100.0, k, t, r, 0.0, v, True, method="leisen_reimer", steps=_SMALL,
                              exercise="european"))  # fmt: skip
    assert abs(am - eu) < 1e-11
    alo = float(american_price(100.0, k, t, r, 0.0, v, True, steps=_SMALL))
    assert abs(alo - float(bsm_price(100.0, k, t, r, 0.0, v, True))) < 1e-11


@settings(max_examples=40)
@given(m=_mny, t=_t, r=st.floats(0.0, 0.08), q=st.floats(0.0, 0.08), v=st.floats(0.08, 0.8),
       c=st.booleans())  # fmt: skip
def test_alo_price_increases_with_vol(m, t, r, q, v, c):
    k = 100.0 * m
    vols = np.array([v, v + 0.02])
    p = np.asarray(american_price(100.0, k, t, r, q, vols, c, steps=_SMALL))
    assert p[1] >= p[0] - 1e-7


# ---------------------------------------------------------------------------------------------
# Singular inputs, dtypes, retracing, validation
# ---------------------------------------------------------------------------------------------


def _deterministic_by_brute_force(s, k, t, r, q, is_call, american):
    """sigma = 0: the payoff on the forward path at the best exercise time (grid search)."""
    w = 1.0 if is_call else -1.0
    times = np.linspace(0.0, t, 200001) if american else np.array([t])
    return max(np.max(w * (s * np.exp(-q * times) - k * np.exp(-r * times))), 0.0)


@pytest.mark.parametrize("method", ["alo", "leisen_reimer", "crr"])
def test_singular_inputs_are_exact_and_finite(method):
    steps = _SMALL
    s = np.full(6, 100.0)
    k = np.array([90.0, 110.0, 95.0, 120.0, 100.0, 80.0])
    t = np.array([0.0, 0.0, 1.0, 1.0, 2.0, 0.5])
    v = np.array([0.3, 0.3, 0.0, 0.0, 0.0, 0.0])
    r, q = (
        np.array([0.05, 0.05, 0.06, 0.01, 0.05, -0.01]),
        np.array([0.0, 0.02, 0.01, 0.04, 0.0, 0.02]),
    )
    for c in (True, False):
        p = np.asarray(american_price(s, k, t, r, q, v, c, method=method, steps=steps))
        ref = [_deterministic_by_brute_force(*x, c, True) for x in zip(s, k, t, r, q, strict=True)]
        np.testing.assert_allclose(p, ref, atol=1e-7)
        g = american_core_greeks(s, k, t, r, q, v, c, method=method, steps=steps)
        assert all(np.isfinite(np.asarray(x)).all() for x in g)


def test_tiny_vol_and_tiny_expiry_stay_finite():
    s, k = 100.0, np.array([90.0, 100.0, 110.0])
    for t, v in [(1e-10, 0.2), (1.0, 1e-9), (0.5, 1e-5), (2.0, 1e-3)]:
        for method in ("alo", "leisen_reimer"):
            g = american_core_greeks(s, k, t, 0.05, 0.02, v, False, method=method, steps=_SMALL)
            assert all(np.isfinite(np.asarray(x)).all() for x in g), (t, v, method)
    # CRR's probability leaves [0, 1] when sigma sqrt(dt) < |r - q| dt: NaN, as documented
    p = american_price(s, k, 1.0, 0.05, 0.0, 1e-4, False, method="crr", steps=_SMALL)
    assert np.isnan(np.asarray(p)).all()


def test_tiny_vol_alo_matches_quantlib():
    case = (100.0, 100.0, 730, 0.05, 0.02, 0.001, False)  # premium from the first ~1e-3 years
    assert abs(float(american_price(*_arrays([case]))[0]) - _ql_qdfp(case)) < 1e-4


def test_float32_inputs_stay_float32():
    args = [np.float32(x) for x in (100.0, 95.0, 0.5, 0.03, 0.01, 0.3)]
    ref = float(american_price(100.0, 95.0, 0.5, 0.03, 0.01, 0.3, False))
    for method, tol in (("alo", 1e-4), ("leisen_reimer", 2e-2)):
        p = american_price(*args, False, method=method, steps=_SMALL)
        assert p.dtype == jnp.float32
        assert abs(float(p) - ref) < tol


def test_broadcasts_over_a_chain():
    strikes = np.linspace(80.0, 120.0, 4)[:, None]
    is_call = np.array([True, False])[None, :]
    p = american_price(100.0, strikes, 0.5, 0.03, 0.01, 0.25, is_call)
    g = american_greeks(100.0, strikes, 0.5, 0.03, 0.01, 0.25, is_call)
    assert p.shape == (4, 2) and all(x.shape == (4, 2) for x in g)
    np.testing.assert_allclose(np.asarray(g.price), np.asarray(p), rtol=1e-13)
    one = american_price(100.0, 80.0, 0.5, 0.03, 0.01, 0.25, False)
    assert float(one) == pytest.approx(float(p[0, 1]), abs=1e-13)


def test_no_retrace_on_new_values():
    def call(fn, scale, **kw):
        return fn(100.0 * scale, np.array([95.0, 105.0]) * scale, 0.5 * scale, 0.03, 0.01,
                  0.25 * scale, np.array([True, False]), **kw)  # fmt: skip

    cases = [
        (american_price, _american_price_jit, {}),
        (american_price, _american_price_jit, {"method": "leisen_reimer", "steps": _SMALL}),
        (american_core_greeks, _american_greeks_jit, {}),
        (american_greeks, _american_greeks_jit, {}),
    ]
    for fn, jitted, kw in cases:
        call(fn, 1.0, **kw)
        before = jitted._cache_size()
        call(fn, 1.1, **kw)
        call(fn, 0.9, **kw)
        assert jitted._cache_size() == before, (fn.__name__, kw)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"strike": -1.0}, "strike"),
        ({"spot": float("nan")}, "spot"),
        ({"vol": -0.1}, "vol"),
        ({"expiry": -1.0}, "expiry"),
        ({"strike": np.ones(3), "spot": np.ones(2)}, "does not broadcast"),
        ({"method": "trinomial"}, "method"),
        ({"exercise": "bermudan"}, "exercise"),
        ({"method": "leisen_reimer", "steps": 100}, "steps: leisen_reimer needs an odd"),
        ({"method": "crr", "steps": 0}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"scheme": AloScheme(nodes=1)}, "scheme"),
    ],
)
def test_bad_host_input_raises_naming_the_argument(kw, match):
    args = {"spot": 100.0, "strike": 100.0, "expiry": 1.0, "rate": 0.01, "dividend": 0.0,
            "vol": 0.2, "is_call": True}  # fmt: skip
    statics = {k: kw.pop(k) for k in list(kw) if k in ("method", "steps", "exercise", "scheme")}
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        american_price(**args, **statics)


def test_bsm_greeks_reference_is_consistent():
    # The European limit of the Greeks: an American call with q = 0, r >= 0 is European, so
    # its ALO Greeks are the BSM ones.
    args = (100.0, np.array([90.0, 100.0, 115.0]), 0.75, 0.03, 0.0, 0.35, True)
    a, b = american_greeks(*args), bsm_greeks(*args)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", ["alo", "leisen_reimer"])
def test_reverse_mode_gradient_equals_forward_greeks(method):
    # jax.grad (reverse mode) through the fixed-point solve's implicit rule and the lattices
    kw = {"method": method, "steps": _SMALL}

    def price(s, v):
        return american_price(s, 100.0, 0.5, 0.03, 0.01, v, False, **kw)

    delta, vega = jax.grad(price, argnums=(0, 1))(100.0, 0.3)
    g = american_core_greeks(100.0, 100.0, 0.5, 0.03, 0.01, 0.3, False, **kw)
    assert float(delta) == pytest.approx(float(g.delta), rel=1e-10)
    assert float(vega) == pytest.approx(float(g.vega), rel=1e-10)


def test_bucketed_batches_share_one_kernel():
    american_price(100.0, np.linspace(80.0, 120.0, 50), 0.5, 0.03, 0.01, 0.25, True)
    before = _american_price_jit._cache_size()
    p60 = american_price(100.0, np.linspace(80.0, 120.0, 60), 0.5, 0.03, 0.01, 0.25, True)
    assert _american_price_jit._cache_size() == before  # 50 and 60 both run in the 64 bucket
    assert p60.shape == (60,)
    one = american_price(100.0, 120.0, 0.5, 0.03, 0.01, 0.25, True)
    assert float(one) == pytest.approx(float(p60[-1]), abs=1e-13)
