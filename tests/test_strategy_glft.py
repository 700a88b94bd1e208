"""GLFT (2013) / Guéant (2017): closed forms by hand, exact solution vs an independent ODE
integration, asymptotics, bounds."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.optimize import minimize_scalar

from jaxmm.strategy import GLFT, MarketState

# The example scale of GLFT (2013): prices in ticks, time in seconds.
G, K, A, S, Q = 0.05, 0.3, 0.9, 0.3, 10


def hamiltonian_constant(xi, delta, k):
    """C = (1 + xi Delta/k)^-(1 + k/(xi Delta)) (e^-1 at xi = 0) and the static half-spread."""
    if xi == 0:
        return math.exp(-1.0), 1.0 / k
    x = xi * delta / k
    return (1 + x) ** (-(1 + 1 / x)), math.log1p(x) / (xi * delta)


def ode_quotes(gamma, k, A_b, A_a, sigma, mu, Q, D, T, xi=None):
    """Integrate the nonlinear HJB system for theta_q (not the linearised v system) backwards
    from theta(T) = 0 with SciPy and return per-inventory quotes."""
    xi = gamma if xi is None else xi
    C, static = hamiltonian_constant(xi, D, k)
    q = np.arange(-Q, Q + D / 2, D)
    n = len(q)

    def rhs(tau, th):
        hb = np.zeros(n)
        ha = np.zeros(n)
        pb = (th[:-1] - th[1:]) / D  # p^b_q = (theta_q - theta_{q+D}) / D
        pa = (th[1:] - th[:-1]) / D  # p^a_q = (theta_q - theta_{q-D}) / D
        hb[:-1] = D * A_b * C / k * np.exp(-k * pb)
        ha[1:] = D * A_a * C / k * np.exp(-k * pa)
        dtheta_dt = -mu * q + 0.5 * gamma * sigma**2 * q**2 - hb - ha
        return -dtheta_dt  # d/d(tau) with tau = T - t

    sol = solve_ivp(rhs, (0.0, T), np.zeros(n), method="LSODA", rtol=1e-11, atol=1e-12)
    th = sol.y[:, -1]
    return (th[:-1] - th[1:]) / D + static, (th[1:] - th[:-1]) / D + static


@pytest.mark.parametrize("p", [-1.5, 0.0, 2.0])
@pytest.mark.parametrize(("xi", "D"), [(0.05, 1.0), (0.05, 2.0), (0.0, 1.0)])
def test_hamiltonian_closed_form_matches_numerical_sup(p, xi, D):
    """The ODE reference uses H(p) = (A/k) C exp(-k p); check it against a numerical sup of
    the paper's definition H(p) = sup_d A e^{-k d} (1 - e^{-xi D (d - p)}) / (xi D)."""
    C, static = hamiltonian_constant(xi, D, K)

    def neg(d):
        if xi == 0:
            return -(A * math.exp(-K * d) * (d - p))
        return -(A * math.exp(-K * d) / (xi * D)) * (1 - math.exp(-xi * D * (d - p)))

    r = minimize_scalar(neg, bounds=(p, p + 100), method="bounded", options={"xatol": 1e-12})
    assert -r.fun == pytest.approx(A / K * C * math.exp(-K * p), rel=1e-9)
    assert r.x - p == pytest.approx(static, abs=1e-6)


def test_closed_form_glft_2013_hand_values():
    mm = GLFT(G, K, A, S, Q)
    static = math.log(1 + G / K) / G
    omega = math.sqrt(S**2 * G / (2 * K * A) * (1 + G / K) ** (1 + K / G))
    for q in (-3.0, 0.0, 1.0, 4.0):
        d_b, d_a = mm.half_spreads(q)
        assert float(d_b) == pytest.approx(static + (2 * q + 1) / 2 * omega, rel=1e-13)
        assert float(d_a) == pytest.approx(static - (2 * q - 1) / 2 * omega, rel=1e-13)


def test_closed_form_gueant_2017_drift_and_order_size_hand_values():
    mu, D = 0.002, 2.0
    mm = GLFT(G, K, A, S, 10.0, mu=mu, order_size=D)
    static = math.log(1 + G * D / K) / (G * D)
    omega = math.sqrt(G * S**2 / (2 * A * D * K) * (1 + G * D / K) ** (1 + K / (G * D)))
    for q in (-4.0, 0.0, 2.0, 6.0):
        d_b, d_a = mm.half_spreads(q)
        assert float(d_b) == pytest.approx(
            static + (-mu / (G * S**2) + (2 * q + D) / 2) * omega, rel=1e-12
        )
        assert float(d_a) == pytest.approx(
            static + (mu / (G * S**2) - (2 * q - D) / 2) * omega, rel=1e-12
        )


def test_closed_form_model_b_xi_zero_hand_values():
    mm = GLFT(G, K, A, S, Q, xi=0.0)
    omega = math.sqrt(G * S**2 * math.e / (2 * A * K))
    d_b, d_a = mm.half_spreads(2.0)
    assert float(d_b) == pytest.approx(1 / K + 2.5 * omega, rel=1e-13)
    assert float(d_a) == pytest.approx(1 / K - 1.5 * omega, rel=1e-13)


def test_generator_matrix_glft_2013_constants():
    M = np.asarray(GLFT(G, K, A, S, 3).generator_matrix())
    alpha = K / 2 * G * S**2
    eta = A * (1 + G / K) ** (-(1 + K / G))
    q = np.arange(-3, 4)
    expected = np.diag(alpha * q**2) - eta * (np.eye(7, k=1) + np.eye(7, k=-1))
    np.testing.assert_allclose(M, expected, rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize(
    "case",
    [
        dict(gamma=G, k=K, A=A, sigma=S, Q=10, T=60.0),
        dict(gamma=0.02, k=0.5, A=1.2, sigma=0.4, Q=12, T=30.0, D=2.0, mu=0.01, A_ask=0.5),
        dict(gamma=G, k=K, A=A, sigma=S, Q=10, T=45.0, xi=0.0),
    ],
)
def test_exact_solution_matches_ode_integration(case):
    c = dict(case)
    mu, D, xi = c.pop("mu", 0.0), c.pop("D", 1.0), c.pop("xi", None)
    A_a = c.pop("A_ask", c["A"])
    mm = GLFT(
        c["gamma"],
        c["k"],
        c["A"],
        c["sigma"],
        c["Q"],
        mu=mu,
        order_size=D,
        xi=xi,
        A_ask=None if A_a == c["A"] else A_a,
    )
    ref_b, ref_a = ode_quotes(
        c["gamma"], c["k"], c["A"], A_a, c["sigma"], mu, c["Q"], D, c["T"], xi
    )
    e_b, e_a = mm.exact_table(0.0, c["T"])
    np.testing.assert_allclose(np.asarray(e_b[:-1]), ref_b, atol=1e-7)
    np.testing.assert_allclose(np.asarray(e_a[1:]), ref_a, atol=1e-7)
    assert bool(jnp.isinf(e_b[-1])) and bool(jnp.isinf(e_a[0]))


def test_exact_at_horizon_is_static_and_method_agrees_with_table():
    mm = GLFT(G, K, A, S, Q)
    d_b, d_a = mm.exact_half_spreads(2.0, t=100.0, horizon=100.0)
    static = math.log(1 + G / K) / G
    assert float(d_b) == pytest.approx(static) and float(d_a) == pytest.approx(static)
    tb, ta = mm.exact_table(10.0, 100.0)
    for q in (-10.0, -3.0, 0.0, 7.0, 9.0):
        b, a = mm.exact_half_spreads(q, 10.0, 100.0)
        assert float(b) == float(tb[int(q) + Q]) and float(a) == float(ta[int(q) + Q])


def test_exact_converges_to_asymptotic_for_long_horizons():
    mm = GLFT(G, K, A, S, Q)
    e_b, e_a = mm.exact_table(0.0, 5000.0)
    a_b, a_a = mm.asymptotic_table()
    np.testing.assert_allclose(np.asarray(e_b[:-1]), np.asarray(a_b[:-1]), rtol=1e-9)
    np.testing.assert_allclose(np.asarray(e_a[1:]), np.asarray(a_a[1:]), rtol=1e-9)
    # and long horizons do not overflow (lambda_0 shift): T - t = 1e6 seconds
    f_b, _ = mm.exact_table(0.0, 1e6)
    assert bool(jnp.all(jnp.isfinite(f_b[:-1])))


@pytest.mark.parametrize(
    ("gamma", "k", "A", "sigma"),
    [(0.01, 0.3, 0.9, 0.3), (0.05, 0.3, 0.9, 0.3), (0.5, 0.3, 0.9, 0.3), (0.01, 1.0, 1.0, 1.0)],
)
def test_closed_form_vs_asymptotic_for_small_inventory(gamma, k, A, sigma):
    """The closed form replaces the second difference of the ground-state eigenvector by a
    second derivative (Gaussian ansatz exp(-c j^2/2)); the discrete problem has c^2 =
    (alpha/eta) e^{c/2}, so to first order c = r (1 + r/4) with r = sqrt(alpha/eta), and each
    quote's error is about (r/4) * omega * |j + 1/2| (j = q/Delta). For small |q| the closed form
    must be within that first-order error and not wildly below it."""
    Qb = 30
    mm = GLFT(gamma, k, A, sigma, Qb)
    C = (1 + gamma / k) ** (-(1 + k / gamma))
    r = math.sqrt((k * gamma * sigma**2 / 2) / (A * C))
    omega = r / k
    a_b, a_a = mm.asymptotic_table()
    for j in (-2, -1, 0, 1, 2):
        c_b, c_a = mm.half_spreads(float(j))
        err_b = abs(float(c_b - a_b[j + Qb]))
        err_a = abs(float(c_a - a_a[j + Qb]))
        pred_b = r / 4 * omega * abs(j + 0.5)
        pred_a = r / 4 * omega * abs(j - 0.5)
        assert 0.3 * pred_b <= err_b <= pred_b
        assert 0.3 * pred_a <= err_a <= pred_a


def test_per_side_intensity_closed_form_and_direction():
    A_b, A_a = 1.2, 0.6
    mm = GLFT(G, K, A_b, S, 30, A_ask=A_a)
    C = (1 + G / K) ** (-(1 + K / G))
    static = math.log(1 + G / K) / G
    h2 = K * A_b * C + K * A_a * C
    a = math.sqrt(G * S**2 / h2)
    b = (A_a * C - A_b * C) / h2
    d_b, d_a = mm.half_spreads(0.0)
    assert float(d_b) == pytest.approx(static + a / 2 - b, rel=1e-13)
    assert float(d_a) == pytest.approx(static + a / 2 + b, rel=1e-13)
    # More sell flow hitting the bid: the bid is quoted wider than the ask at q = 0 ...
    assert float(d_b) > float(d_a)
    # ... and the exact asymptotic solution agrees in sign and size.
    x_b, x_a = mm.asymptotic_half_spreads(0.0)
    assert float(x_b) > float(x_a)
    assert float(d_b - d_a) == pytest.approx(float(x_b - x_a), rel=0.05)


def test_long_inventory_lowers_both_quotes_all_solutions():
    for sol in ("approx", "asymptotic", "exact"):
        mm = GLFT(G, K, A, S, Q, horizon=60.0, solution=sol)
        flat = mm.quote(MarketState(mid=1000.0, inventory=0.0, t=0.0))
        long = mm.quote(MarketState(mid=1000.0, inventory=3.0, t=0.0))
        assert float(long.bid) < float(flat.bid)
        assert float(long.ask) < float(flat.ask)


@pytest.mark.parametrize("solution", ["approx", "asymptotic", "exact"])
def test_one_sided_at_inventory_bound(solution):
    mm = GLFT(G, K, A, S, 4.0, order_size=2.0, horizon=60.0, solution=solution)
    top = mm.quote(MarketState(mid=1000.0, inventory=4.0, t=0.0))
    bottom = mm.quote(MarketState(mid=1000.0, inventory=-4.0, t=0.0))
    inside = mm.quote(MarketState(mid=1000.0, inventory=2.0, t=0.0))
    assert float(top.bid_size) == 0.0 and float(top.ask_size) == 2.0
    assert float(bottom.ask_size) == 0.0 and float(bottom.bid_size) == 2.0
    assert float(inside.bid_size) == 2.0 and float(inside.ask_size) == 2.0
    assert float(top.bid) == 1000.0  # placeholder


def test_float32_close_to_float64():
    m = GLFT(G, K, A, S, Q)
    for q in (-9.0, -3.0, 0.0, 5.0):
        b64, a64 = m.exact_table(0.0, 60.0)
        b32, a32 = m.exact_table(np.float32(0.0), np.float32(60.0))
        assert b32.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(b32[:-1]), np.asarray(b64[:-1]), rtol=2e-5)
        np.testing.assert_allclose(np.asarray(a32[1:]), np.asarray(a64[1:]), rtol=2e-5)
        c64 = m.half_spreads(q)
        c32 = m.half_spreads(np.float32(q))
        assert c32[0].dtype == jnp.float32
        assert float(c32[0]) == pytest.approx(float(c64[0]), rel=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(max_inventory=5.0, order_size=2.0), "max_inventory: must be a positive integer"),
        (dict(max_inventory=4, solution="magic"), "solution: must be one of"),
        (dict(max_inventory=4, solution="exact"), "horizon: required"),
        (dict(max_inventory=4, solution="exact", horizon=1.0, k_ask=0.5), "k_ask: the exact"),
        (dict(max_inventory=4, xi=-1.0), "xi: must be >= 0.0"),
        (dict(max_inventory=-1), "max_inventory: must be > 0.0"),
    ],
)
def test_validation_messages(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GLFT(G, K, A, S, **kwargs)


def test_exact_gradient_matches_finite_difference():
    @jax.jit
    def f(params):
        gamma, sigma = params
        mm = GLFT(gamma, K, A, sigma, 6)
        b, a = mm.exact_half_spreads(2.0, 0.0, 30.0)
        return b + 2.0 * a

    x = jnp.asarray([G, S])
    g = jax.jit(jax.grad(f))(x)
    h = 1e-6
    for i in range(2):
        e = jnp.zeros(2).at[i].set(h)
        fd = (f(x + e) - f(x - e)) / (2 * h)
        assert float(g[i]) == pytest.approx(float(fd), rel=1e-6)


def test_exact_and_asymptotic_tables_do_not_retrace_on_new_values():
    from jaxmm.strategy import _glft

    GLFT(G, K, A, S, Q).exact_table(0.0, 60.0)
    GLFT(G, K, A, S, Q).asymptotic_table()
    e0, a0 = _glft._exact_table._cache_size(), _glft._asymptotic_table._cache_size()
    other = GLFT(0.07, 0.4, 1.3, 0.2, Q, mu=0.01, solution="exact", horizon=30.0)
    other.exact_table(5.0)
    other.asymptotic_table()
    assert _glft._exact_table._cache_size() == e0
    assert _glft._asymptotic_table._cache_size() == a0
