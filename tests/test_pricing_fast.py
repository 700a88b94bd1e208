"""The fast paths of the BSM kernels: packed entry points, vectorisable float64 elementary
functions, the one-fusion Greeks evaluation and the per-jit compiler-option twins.

References are independent of the code under test: NumPy's ``exp``/``log``, SciPy's ``ndtr``
(Cephes), QuantLib's ``AnalyticEuropeanEngine`` and Haug's closed forms evaluated with SciPy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import QuantLib as ql
import scipy.special as sc

import jaxmm.pricing as jp
import jaxmm.pricing._bsm as bsm
from jaxmm.pricing._bsm import (
    PACKED_INPUT_FIELDS,
    bsm_core_greeks_packed,
    bsm_greeks_packed,
)
from jaxmm.pricing._greeks import CoreGreeks, Greeks, one_pass

# ---------------------------------------------------------------------------------------------
# elementary functions (float64)
# ---------------------------------------------------------------------------------------------

_EPS = np.finfo(np.float64).eps


def test_exp64_matches_numpy_to_a_few_ulp():
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.uniform(-708, 709, 20000), rng.uniform(-2, 2, 20000), [0.0, -0.0]])
    got = np.asarray(bsm._exp(jnp.asarray(x)))
    want = np.exp(x)
    assert np.max(np.abs(got - want) / want) < 3 * _EPS


def test_exp64_edges_underflow_overflow_nan():
    x = jnp.asarray([-745.0, -746.0, -1e4, -np.inf, 709.7, 710.0, 1e4, np.inf, np.nan])
    got = np.asarray(bsm._exp(x))
    with np.errstate(over="ignore"):
        want = np.exp(np.asarray(x))
    assert got[0] == pytest.approx(want[0], rel=0.5)  # subnormal: a few ulp of the subnormal
    np.testing.assert_array_equal(got[1:4], 0.0)
    assert got[4] == pytest.approx(want[4], rel=3 * _EPS)
    assert np.all(np.isposinf(got[5:8]))
    assert np.isnan(got[8])


def test_log64_matches_numpy_including_subnormals_and_specials():
    rng = np.random.default_rng(8)
    x = np.concatenate(
        [
            np.exp(rng.uniform(-700, 700, 20000)),
            rng.uniform(0.5, 2.0, 20000),
            [1.0, 2.0, np.sqrt(2.0), 1 + 1e-15, 1 - 1e-15, 2.2250738585072014e-308],
        ]
    )
    got = np.asarray(bsm._log(jnp.asarray(x)))
    want = np.log(x)
    err = np.abs(got - want) / np.maximum(np.abs(want), 1e-300)
    assert err.max() < 5 * _EPS
    # XLA:CPU reads subnormals as zero (denormals-are-zero), like its own log
    special = np.asarray(bsm._log(jnp.asarray([0.0, 5e-324, -1.0, np.inf, np.nan])))
    assert special[0] == -np.inf and special[1] == -np.inf and np.isnan(special[2])
    assert special[3] == np.inf and np.isnan(special[4])


@pytest.mark.parametrize(
    "lo, hi, rtol",
    [(-1.0, 1.0, 1e-15), (0.0, 9.0, 1e-15), (-5.0, 0.0, 1e-14), (-12.0, -5.0, 1e-13)],
)
def test_ncdf_matches_scipy(lo, hi, rtol):
    x = np.linspace(lo, hi, 20001)
    got = np.asarray(bsm._ncdf(jnp.asarray(x)))
    want = sc.ndtr(x)
    assert np.max(np.abs(got - want) / want) < rtol


def test_ncdf_deep_tail_and_limits():
    x = np.array([-30.0, -37.5, -38.6, -40.0, -1e3, -np.inf, np.inf, 40.0])
    got = np.asarray(bsm._ncdf(jnp.asarray(x)))
    want = sc.ndtr(x)
    np.testing.assert_allclose(got[:2], want[:2], rtol=1e-12)  # x^2 rounding in the exp
    assert np.all(got[2:6] <= 1e-320) and np.all(got[2:6] >= 0.0)
    np.testing.assert_array_equal(got[6:], 1.0)
    assert np.isnan(np.asarray(bsm._ncdf(jnp.asarray(np.nan))))


def test_ncdf_derivatives_are_the_density_and_its_slope():
    x = jnp.linspace(-6.0, 6.0, 41)
    d1 = jax.vmap(jax.grad(bsm._ncdf))(x)
    d2 = jax.vmap(jax.grad(jax.grad(bsm._ncdf)))(x)
    pdf = np.exp(-0.5 * np.asarray(x) ** 2) / np.sqrt(2 * np.pi)
    np.testing.assert_allclose(np.asarray(d1), pdf, rtol=1e-15, atol=1e-300)
    np.testing.assert_allclose(np.asarray(d2), -np.asarray(x) * pdf, rtol=1e-14, atol=1e-17)


def test_float32_elementary_functions_fall_back_to_xla():
    x = jnp.asarray([-3.0, -0.5, 0.0, 2.0], dtype=jnp.float32)
    for fn, ref in ((bsm._exp, np.exp), (bsm._ncdf, sc.ndtr)):
        out = fn(x)
        assert out.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(out), ref(np.asarray(x, np.float64)), rtol=2e-6)
    pos = jnp.asarray([0.5, 1.0, 3.0], dtype=jnp.float32)
    assert bsm._log(pos).dtype == jnp.float32


# ---------------------------------------------------------------------------------------------
# one_pass: one fusion, same values, differentiable
# ---------------------------------------------------------------------------------------------


def _toy(x, y):
    e = jnp.exp(-x * y)
    return e * x, e / (1.0 + y), jnp.log1p(e) * y


def test_one_pass_equals_direct_evaluation_and_broadcasts():
    x = jnp.linspace(0.1, 2.0, 24).reshape(4, 6)
    y = jnp.linspace(0.5, 1.5, 6)
    got = jax.jit(lambda a, b: one_pass(_toy, a, b))(x, y)
    want = _toy(x, jnp.broadcast_to(y, x.shape))
    for g, w in zip(got, want, strict=True):
        assert g.shape == (4, 6)
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=4 * _EPS)
    scalar = one_pass(_toy, jnp.asarray(0.3), jnp.asarray(0.7))
    assert all(s.shape == () for s in scalar)


def _fusions(fn, *args) -> int:
    txt = jax.jit(fn).lower(*args).compile().as_text()
    return txt[txt.index("ENTRY") :].count(" fusion(")


def test_one_pass_fuses_the_greeks_into_few_loops():
    args = tuple(jnp.linspace(1.0, 2.0, 4096) for _ in range(6)) + (jnp.ones(4096, bool),)

    def kernel(*a):
        return jnp.vectorize(lambda *b: bsm._greeks_kernel(False, *b))(*a)

    plain = _fusions(kernel, *args)
    fused = _fusions(lambda *a: one_pass(kernel, *a), *args)
    # measured: 23 loop fusions plain; one_pass leaves the outputs' loop plus a few producers
    assert fused <= 5 < plain


def test_one_pass_gradient_and_vmap_match_direct():
    x = jnp.linspace(0.1, 2.0, 7)

    def loss(fn):
        return lambda a: sum(jnp.sum(o) for o in fn(a, 2.0 * a))

    g_fast = jax.grad(loss(lambda a, b: one_pass(_toy, a, b)))(x)
    g_ref = jax.grad(loss(_toy))(x)
    np.testing.assert_allclose(np.asarray(g_fast), np.asarray(g_ref), rtol=1e-14)
    batched = jax.vmap(lambda a: one_pass(_toy, a, a))(x.reshape(7, 1))
    np.testing.assert_allclose(np.asarray(batched[0])[:, 0], np.asarray(_toy(x, x)[0]))


# ---------------------------------------------------------------------------------------------
# packed entry points vs QuantLib and the closed forms
# ---------------------------------------------------------------------------------------------

_TODAY = ql.Date(15, 1, 2026)
_DC = ql.Actual365Fixed()

# spot, strike, days, rate, dividend, vol, is_call: deep ITM/OTM, 1 day to 3 years, r < 0
_ROWS = [
    (100.0, 100.0, 365, 0.05, 0.0, 0.2, 1.0),
    (100.0, 80.0, 30, -0.01, 0.02, 0.35, 0.0),
    (100.0, 125.0, 182, 0.03, 0.08, 1.5, 1.0),
    (100.0, 40.0, 1095, 0.02, 0.01, 0.05, 1.0),
    (100.0, 250.0, 7, 0.04, 0.0, 0.8, 0.0),
    (100.0, 97.5, 1, 0.01, 0.03, 0.25, 0.0),
    (50.0, 40.0, 730, 0.03, 0.0, 0.9, 1.0),
]


def _quantlib_row(s, k, days, r, q, v, c):
    ql.Settings.instance().evaluationDate = _TODAY
    payoff = ql.PlainVanillaPayoff(ql.Option.Call if c else ql.Option.Put, k)
    option = ql.EuropeanOption(payoff, ql.EuropeanExercise(_TODAY + days))
    process = ql.BlackScholesMertonProcess(
        ql.QuoteHandle(ql.SimpleQuote(s)),
        ql.YieldTermStructureHandle(ql.FlatForward(_TODAY, q, _DC)),
        ql.YieldTermStructureHandle(ql.FlatForward(_TODAY, r, _DC)),
        ql.BlackVolTermStructureHandle(ql.BlackConstantVol(_TODAY, ql.NullCalendar(), v, _DC)),
    )
    option.setPricingEngine(ql.AnalyticEuropeanEngine(process))
    return [option.NPV(), option.delta(), option.gamma(), option.vega(), option.theta()]


def _packed_rows() -> np.ndarray:
    x = np.array(_ROWS, dtype=np.float64)
    x[:, 2] /= 365.0
    return x


def _close(got, want, atol=1e-9, rtol=1e-7):
    return np.all(np.abs(got - want) <= np.maximum(atol, rtol * np.abs(want)))


@pytest.mark.parametrize("batch", [1, 2, 7])  # 1-2 rows: recomputing path; 7: one_pass
def test_core_packed_matches_quantlib(batch):
    x = _packed_rows()[:batch]
    out = np.asarray(bsm_core_greeks_packed(x))
    assert out.shape == (batch, 6)
    want = np.array([_quantlib_row(*row) for row in _ROWS[:batch]])
    assert _close(out[:, :5], want), np.abs(out[:, :5] - want).max(axis=0)
    # rho: QuantLib's rho() for this process is dV/dr with q fixed (its 5th first-order Greek)
    assert out.shape[-1] == len(CoreGreeks._fields)


def test_full_packed_matches_closed_forms_and_bsm_greeks():
    x = _packed_rows()
    out = np.asarray(bsm_greeks_packed(x))
    assert out.shape == (len(_ROWS), len(Greeks._fields))
    cols = [x[:, i] for i in range(6)] + [x[:, 6] > 0]
    analytic = jp.bsm_greeks_analytic(*cols)
    reference = jp.bsm_greeks(*cols)
    for j, name in enumerate(Greeks._fields):
        want = np.asarray(getattr(analytic, name))
        scale = np.maximum(1.0, np.abs(want))
        assert np.max(np.abs(out[:, j] - want) / scale) < 1e-7, name
        np.testing.assert_allclose(out[:, j], np.asarray(getattr(reference, name)), rtol=1e-12)


def test_packed_single_option_and_batch_shapes():
    row = _packed_rows()[0]
    one = bsm_core_greeks_packed(jnp.asarray(row))
    assert one.shape == (6,)
    assert float(one[1]) == pytest.approx(0.6368306511756191, rel=1e-12)  # N(d1), Hull-style
    grid = np.broadcast_to(_packed_rows()[:3], (2, 3, 7))
    assert bsm_core_greeks_packed(grid).shape == (2, 3, 6)
    assert PACKED_INPUT_FIELDS[-1] == "is_call" and len(PACKED_INPUT_FIELDS) == 7


def test_packed_matches_seven_argument_api_on_a_chain():
    strikes = np.linspace(70.0, 130.0, 50)
    x = np.stack(
        np.broadcast_arrays(100.0, np.repeat(strikes, 2), 0.25, 0.03, 0.01, 0.22, 0.0), -1
    ).copy()
    x[::2, 6] = 1.0
    out = np.asarray(bsm_core_greeks_packed(jnp.asarray(x)))
    ref = jp.bsm_core_greeks(*(x[:, i] for i in range(6)), x[:, 6] > 0)
    for j, name in enumerate(CoreGreeks._fields):
        np.testing.assert_allclose(out[:, j], np.asarray(getattr(ref, name)), rtol=1e-13)


def test_packed_float32_stays_float32():
    x = _packed_rows().astype(np.float32)
    out = bsm_core_greeks_packed(jnp.asarray(x))
    assert out.dtype == jnp.float32
    ref = np.asarray(bsm_core_greeks_packed(_packed_rows()))
    np.testing.assert_allclose(np.asarray(out), ref, rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize(
    "col, value, match",
    [
        (0, np.nan, r"x\[\.\.\., 0\] \(spot\): contains NaN"),
        (1, -5.0, r"x\[\.\.\., 1\] \(strike\): must be > 0"),
        (2, -0.1, r"x\[\.\.\., 2\] \(expiry\): must be >= 0"),
        (3, np.inf, r"x\[\.\.\., 3\] \(rate\): must be finite"),
        (5, -0.2, r"x\[\.\.\., 5\] \(vol\): must be >= 0"),
    ],
)
@pytest.mark.parametrize("rows", [1, 12])  # the pure-Python and the NumPy check paths
def test_packed_bad_host_input_names_the_column(col, value, match, rows):
    x = np.repeat(_packed_rows()[:1], rows, axis=0)
    x[-1, col] = value
    with pytest.raises(ValueError, match=match):
        bsm_core_greeks_packed(x)
    with pytest.raises(ValueError, match=match):
        bsm_greeks_packed(x)


def test_packed_shape_errors_and_unchecked_paths():
    with pytest.raises(ValueError, match="x: last axis must hold the 7 fields"):
        bsm_core_greeks_packed(np.ones((3, 6)))
    bad = _packed_rows()[:1].copy()
    bad[0, 5] = np.nan
    out = np.asarray(bsm_core_greeks_packed(bad, check=False))  # no check: NaN is data
    assert np.isnan(out).all()
    assert np.isnan(np.asarray(bsm_core_greeks_packed(jnp.asarray(bad)))).all()


def test_packed_entry_points_do_not_retrace():
    rng = np.random.default_rng(3)

    def rows(n):
        x = _packed_rows()[rng.integers(0, len(_ROWS), n)].copy()
        x[:, 0] *= rng.uniform(0.9, 1.1, n)
        return jnp.asarray(x)

    for fn, jitted in (
        (bsm_core_greeks_packed, bsm._bsm_core_greeks_packed_jit),
        (bsm_greeks_packed, bsm._bsm_greeks_packed_jit),
    ):
        jax.block_until_ready(fn(rows(5)))
        before = jitted._cache_size()
        jax.block_until_ready(fn(rows(5)))
        jax.block_until_ready(fn(rows(5)))
        assert jitted._cache_size() == before, fn.__name__


# ---------------------------------------------------------------------------------------------
# compiler-option twins: nesting, and the parallel twin agrees with the serial one
# ---------------------------------------------------------------------------------------------


def test_public_kernels_nest_inside_jit_grad_and_vmap():
    strikes = jnp.linspace(90.0, 110.0, 5)

    @jax.jit
    def deltas(vol):
        return jp.bsm_core_greeks(100.0, strikes, 0.5, 0.02, 0.01, vol, True).delta

    vanna = jax.jacfwd(deltas)(jnp.asarray(0.25))
    ref = jp.bsm_greeks(100.0, strikes, 0.5, 0.02, 0.01, 0.25, True).vanna
    np.testing.assert_allclose(np.asarray(vanna), np.asarray(ref), rtol=1e-10)
    g = jax.grad(lambda v: jnp.sum(jp.bsm_price(100.0, strikes, 0.5, 0.02, 0.01, v, False)))
    vega = jp.bsm_core_greeks(100.0, strikes, 0.5, 0.02, 0.01, 0.25, False).vega
    assert float(g(jnp.asarray(0.25))) == pytest.approx(float(jnp.sum(vega)), rel=1e-12)
    batched = jax.vmap(lambda s: jp.bsm_core_greeks(s, strikes, 0.5, 0.02, 0.01, 0.25, True))
    out = batched(jnp.asarray([95.0, 105.0]))
    assert out.price.shape == (2, 5)


def test_parallel_twin_matches_serial_twin(monkeypatch):
    x = jnp.asarray(np.repeat(_packed_rows(), 3, axis=0))
    serial = np.asarray(bsm_core_greeks_packed(x))
    monkeypatch.setattr(bsm, "_PARALLEL_MIN", 1)
    assert bsm._bsm_core_greeks_packed_jit.pick(x) is bsm._bsm_core_greeks_packed_jit.fast
    parallel = np.asarray(bsm_core_greeks_packed(x))
    np.testing.assert_array_equal(parallel, serial)


def test_deep_otm_tail_relative_precision_against_scipy_closed_form():
    # put far out of the money: value ~1e-30; compare with the closed form on SciPy's ndtr
    s, k, t, r, q, v = 100.0, 40.0, 30 / 365, 0.01, 0.0, 0.25
    sd = v * np.sqrt(t)
    d1 = (np.log(s / k) + (r - q) * t) / sd + 0.5 * sd
    d2 = d1 - sd
    want = k * np.exp(-r * t) * sc.ndtr(-d2) - s * np.exp(-q * t) * sc.ndtr(-d1)
    got = float(bsm_core_greeks_packed(jnp.asarray([s, k, t, r, q, v, 0.0]))[0])
    assert want > 0 and got == pytest.approx(want, rel=1e-10)
