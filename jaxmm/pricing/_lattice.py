"""American and European options on binomial lattices, and the fast ALO method they check.

Three methods behind one entry point, :func:`american_price`:

``"crr"``
    Cox, Ross & Rubinstein (1979): ``u = exp(sigma sqrt(dt)) = 1/d``,
    ``p = (exp(b dt) - d) / (u - d)``, discount ``exp(-r dt)`` per step, ``b = r - q``.
    Converges like O(1/n) with an oscillating error. The probability leaves ``[0, 1]`` when
    ``sigma sqrt(dt) < |b| dt`` (tiny vol, large carry); such options return NaN (QuantLib raises
    there) — use ``"leisen_reimer"`` or ``"alo"`` for them.

``"leisen_reimer"``
    Leisen & Reimer (1996), "Binomial models for option valuation — examining and improving
    convergence", Applied Mathematical Finance 3, with the Peizer–Pratt inversion method 2:
    ``h(z) = 1/2 + sign(z)/2 sqrt(1 - exp(-(z / (n + 1/3 + 0.1/(n+1)))^2 (n + 1/6)))``,
    ``p = h(d2)``, ``p' = h(d1)``, ``u = exp(b dt) p'/p``, ``d = exp(b dt) (1 - p')/(1 - p)``
    with the Black–Scholes ``d1, d2``. The step count must be odd (the tree is centred on the
    strike only then); an even ``steps`` raises ``ValueError``. European prices converge like
    O(1/n^2); American prices like O(1/n) (the exercise boundary is not on the nodes). ``h`` is
    evaluated in the log domain (``log h(z)`` and ``log(1 - h(z))`` without cancellation), so
    deep in- or out-of-the-money trees and tiny volatilities stay finite.

``"alo"`` (the default)
    Andersen, Lake & Offengenden (2016), "High-performance American option pricing", Journal of
    Computational Finance 20(1): the price is the European value plus the early-exercise
    premium integral (Kim 1990; Jacka 1991; Carr, Jarrow & Myneni 1992)

        P = p_E + int_0^T [ r K e^{-rt} N(-d_-(t, S/B(T-t)))
                            - q S e^{-qt} N(-d_+(t, S/B(T-t))) ] dt,

    ``d_pm(t, z) = (ln z + (r - q) t) / (sigma sqrt t) +- sigma sqrt(t) / 2``, with the put
    exercise boundary ``B`` solved from the fixed-point system "FP-B" of the paper,

        B(tau) = K e^{-(r-q) tau} N(tau, B) / D(tau, B),
        N = N(d_-(tau, B(tau)/K)) + r int_0^tau e^{ru} N(d_-(tau-u, B(tau)/B(u))) du,
        D = N(d_+(tau, B(tau)/K)) + q int_0^tau e^{qu} N(d_+(tau-u, B(tau)/B(u))) du,

    collocated at Chebyshev–Lobatto nodes in ``sqrt(tau)`` on the smoothed variable
    ``H = ln(B/X)^2``, ``X = B(0+) = K min(1, r/q)``. The boundary is solved for ``K = 1`` (it
    is linear in the strike), so it depends on ``r, q, sigma, T`` only. Both integrals use
    tanh-sinh (double-exponential) rules, whose nodes cluster at the ends where the integrands
    are not smooth (``sqrt(tau - u)`` at ``u = tau``; the ``sqrt(u log u)`` shape of the
    boundary near expiry). The start is Li's (2009) QD+ boundary (a fixed number of Halley steps
    per node), followed by a fixed number of Jacobi–Newton sweeps (ALO sec. 4) — no
    data-dependent loop. Inside the sweeps the normal CDF is the 7.5e-8-accurate Abramowitz &
    Stegun 26.2.17 form (half the cost of ``erfc``); the price and the derivative rule use the
    exact one. Far from the solution (short expiry, high vol, q < 0) a sweep can produce a
    non-positive D or overshoot; it then falls back to the plain fixed-point step, or keeps the
    node. Calls use McDonald–Schroder symmetry ``C(S, K, r, q) = P(K, S, q, r)``.

    Regimes (put form): ``r > 0`` — the ALO solve; ``r <= 0`` with ``q >= r`` — early
    exercise is never optimal and the European value is exact; ``q < r <= 0`` — the exercise
    region is a band between two boundaries (Battauz, De Donno & Sbuelz 2015), which ALO does
    not cover: those options are priced on the Leisen–Reimer lattice with ``steps`` (default
    1001). The lattice runs on those options only (sorted to the front, in blocks), so a chain
    without them pays nothing for it.

    Derivatives: the boundary solve carries a custom JVP from the implicit function theorem —
    ``x = G(x, theta)`` at the fixed point gives ``(I - dG/dx) dx = dG/dtheta dtheta``, an
    (m x m) solve per option — so Greeks are exact derivatives of the converged discrete
    boundary and never differentiate through the iterations; reverse mode (``jax.grad``)
    works too.

Accuracy of ``"alo"`` with the default :class:`AloScheme` (against QuantLib's
``QdFpAmericanEngine`` high-precision scheme): max 6e-5 on 1,000 options (strikes 70–130 on
spot 100, 1 week–2 years, vol 10–60%, r 0.5–6%, q 0–5%); max 7e-4, p99 2e-4 on 2,947 options
with strikes 30–300, 1 day–4 years, vol 3–200%, r and q in [-3%, 12%]. The lattices are the
reference the ALO method is tested against (and QuantLib's trees the reference for them).

Conventions (MISSION.md): ``expiry`` in years ACT/365F, ``rate`` and ``dividend`` continuously
compounded (negative allowed), ``vol`` annualised as a fraction, prices per one unit of
underlying. ``is_call`` is data. ``steps``, ``method``, ``exercise`` and ``scheme`` are static
(changing one compiles a new kernel; new values of the array arguments never do). Batches are
flattened and padded to a bucket size (8, 12, 16, 24, 32, 48, ...) before the kernel, so
chains of different lengths share compiled kernels.

Singular inputs (the double-``where``): when ``sigma sqrt(T)`` is zero (``T = 0`` or
``vol = 0``) every method returns the exact deterministic value — European
``max(w (S e^{-qT} - K e^{-rT}), 0)``; American the largest of that payoff over the exercise
time ``t in [0, T]`` (the maximiser is ``0``, ``T`` or ``ln(rK/(qS))/(r - q)``) — and the
lattice and ALO branches are evaluated at harmless masked inputs, so values and gradients stay
finite.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._dtypes import common_float_dtype
from ._bsm import _check, ndtr, norm_pdf
from ._greeks import CoreGreeks, Greeks

__all__ = [
    "AloScheme",
    "american_price",
    "american_greeks",
    "american_core_greeks",
    "METHODS",
    "EXERCISES",
]

Array = jax.Array
ArrayLike = Any

METHODS = ("alo", "leisen_reimer", "crr")
EXERCISES = ("american", "european")
DEFAULT_STEPS = {"alo": 1001, "leisen_reimer": 201, "crr": 201}  # when ``steps=None``


class AloScheme(NamedTuple):
    """Static discretisation of the ALO solve (hashable: it is a ``jit`` static argument).

    The defaults were chosen on 1,000 random options (strikes 70-130 on spot 100, 1 week to
    2 years, vol 10-60%, r 0.5-6%, q 0-5%) against QuantLib's ``QdFpAmericanEngine``
    high-precision scheme; see docs/pricing.md for the accuracy/speed table.
    """

    nodes: int = 8  # Chebyshev-Lobatto intervals in sqrt(tau) (nodes + 1 collocation points)
    quad: int = 12  # tanh-sinh points (2 * (quad // 2) + 1) of each fixed-point integral
    price_quad: int = 24  # tanh-sinh points (2 * (price_quad // 2) + 1) of the premium integral
    sweeps: int = 5  # Jacobi-Newton sweeps of the FP-B equation after the QD+ start
    halley: int = 3  # Halley steps of the QD+ start at each node

    @classmethod
    def fast(cls) -> AloScheme:
        """About 40% less work than the default; ~3e-4 worst error on ordinary chains."""
        return cls(nodes=6, quad=10, price_quad=20, sweeps=4, halley=3)

    @classmethod
    def accurate(cls) -> AloScheme:
        """About six times the default's work; ~1e-5 worst error, also at the extremes."""
        return cls(nodes=16, quad=24, price_quad=48, sweeps=8, halley=4)


# --- shared helpers ---------------------------------------------------------------------------


def _safe_sqrt(t: Array) -> Array:
    pos = t > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, t, jnp.ones_like(t))), jnp.zeros_like(t))


def _tiny(dtype) -> Array:
    return jnp.asarray(np.finfo(dtype).eps, dtype) ** 2


def _sign(is_call: Array, dtype) -> Array:
    return jnp.where(is_call, jnp.asarray(1.0, dtype), jnp.asarray(-1.0, dtype))


def _deterministic_value(spot, strike, expiry, rate, dividend, is_call, american: bool):
    """Exact value at ``sigma = 0``: the payoff on the forward path, exercised at the best time.

    ``phi(t) = w (S e^{-qt} - K e^{-rt})`` is the discounted payoff of exercising at ``t``; its
    only stationary point is ``t* = ln(rK / (qS)) / (r - q)``, so the maximum over ``[0, T]`` is
    at ``0``, ``T`` or ``t*`` (clipped to ``[0, T]``).
    """
    dtype = spot.dtype
    w = _sign(is_call, dtype)
    zero = jnp.zeros_like(spot)

    def phi(t):
        return jnp.maximum(w * (spot * jnp.exp(-dividend * t) - strike * jnp.exp(-rate * t)), zero)

    at_expiry = phi(expiry)
    if not american:
        return at_expiry
    ratio = rate * strike / (dividend * spot)
    ok = (ratio > 0) & (rate != dividend) & jnp.isfinite(ratio)
    safe_ratio = jnp.where(ok, ratio, jnp.ones_like(ratio))
    safe_carry = jnp.where(ok, rate - dividend, jnp.ones_like(rate))
    t_star = jnp.clip(jnp.where(ok, jnp.log(safe_ratio) / safe_carry, zero), zero, expiry)
    return jnp.maximum(jnp.maximum(phi(zero), at_expiry), phi(t_star))


# --- binomial lattices ------------------------------------------------------------------------


def _peizer_pratt_logs(z: Array, n: int) -> tuple[Array, Array]:
    """``log h(z)`` and ``log(1 - h(z)) = log h(-z)`` of Peizer–Pratt inversion method 2.

    ``h(z) = 1/2 + 1/2 sign(z) sqrt(1 - e^{-x})`` with ``x = (z/a)^2 b``, ``a = n + 1/3 +
    0.1/(n+1)``, ``b = n + 1/6``. Written as ``h(z) = (1 + z c sqrt(g(x)))/2`` with
    ``c = sqrt(b)/a`` and ``g(x) = (1 - e^{-x})/x`` (smooth, ``g(0) = 1``) near ``z = 0``, and
    through the cancellation-free tail ``1 - h(|z|) = e^{-x} / (2 (1 + sqrt(1 - e^{-x})))`` in
    the log domain away from it, so both logs are accurate and finite for every finite ``z``
    and differentiable at ``z = 0``.
    """
    dtype = z.dtype
    a = n + 1.0 / 3.0 + 0.1 / (n + 1.0)
    b = n + 1.0 / 6.0
    c = float(np.sqrt(b) / a)
    one = jnp.ones_like(z)
    x = (z / a) ** 2 * b
    # near zero: direct form on a masked input
    near = jnp.abs(z) < 0.5
    zn = jnp.where(near, z, jnp.zeros_like(z))
    xn = (zn / a) ** 2 * b
    xpos = xn > _tiny(dtype)
    xs = jnp.where(xpos, xn, one)
    g = jnp.where(xpos, -jnp.expm1(-xs) / xs, one - 0.5 * xn)
    s_signed = zn * c * jnp.sqrt(g)
    log_h_near = jnp.log(0.5 * (1.0 + s_signed))
    log_t_near = jnp.log(0.5 * (1.0 - s_signed))
    # away from zero: tail form on the absolute value (x >= ~0.25 / n there, so expm1 is safe)
    xf = jnp.where(near, one, x)
    sf = jnp.sqrt(-jnp.expm1(-xf))
    log_small = jnp.log(jnp.asarray(0.5, dtype)) - xf - jnp.log1p(sf)
    log_big = jnp.log1p(-0.5 * jnp.exp(-xf) / (1.0 + sf))
    pos = z > 0
    log_h_far = jnp.where(pos, log_big, log_small)
    log_t_far = jnp.where(pos, log_small, log_big)
    return jnp.where(near, log_h_near, log_h_far), jnp.where(near, log_t_near, log_t_far)


class _TreeParams(NamedTuple):
    """Per-option lattice constants (every field has the batch shape)."""

    log_u: Array  # log of the up factor
    log_d: Array  # log of the down factor
    p_up: Array  # discounted up probability exp(-r dt) p
    p_down: Array  # discounted down probability exp(-r dt) (1 - p)
    valid: Array  # bool: the probabilities lie in [0, 1]


def _tree_params(spot, strike, expiry, rate, dividend, vol, n: int, method: str) -> _TreeParams:
    dt = expiry / n
    carry = rate - dividend
    disc = jnp.exp(-rate * dt)
    if method == "crr":
        sig = vol * jnp.sqrt(dt)
        growth_m1 = jnp.expm1(carry * dt)
        up_m1 = jnp.expm1(sig)
        down_m1 = jnp.expm1(-sig)
        p = (growth_m1 - down_m1) / (up_m1 - down_m1)
        valid = (p >= 0) & (p <= 1)
        return _TreeParams(sig, -sig, disc * p, disc * (1.0 - p), valid)
    stdev = vol * jnp.sqrt(expiry)
    d2 = (jnp.log(spot / strike) + carry * expiry) / stdev - 0.5 * stdev
    d1 = d2 + stdev
    log_p, log_1mp = _peizer_pratt_logs(d2, n)
    log_pd, log_1mpd = _peizer_pratt_logs(d1, n)
    log_u = carry * dt + log_pd - log_p
    log_d = carry * dt + log_1mpd - log_1mp
    valid = jnp.ones(jnp.shape(spot), bool)
    return _TreeParams(log_u, log_d, disc * jnp.exp(log_p), disc * jnp.exp(log_1mp), valid)


def _chunks(n: int, max_chunks: int) -> list[tuple[int, int]]:
    """Split the backward steps ``n-1 .. 0`` into chunks run on shrinking fixed-size arrays.

    A chunk covering steps ``hi .. lo`` works on ``hi + 2`` nodes, so the total work is close
    to the triangle ``n^2 / 2`` instead of the square ``n^2`` of a single fixed-size loop.
    """
    k = max(1, min(max_chunks, n // 24))
    bounds = np.linspace(n, 0, k + 1).round().astype(int)
    return [(int(a) - 1, int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if a > b]


def _induct_one(spot, w, strike, log_u, log_d, p_up, p_down, n: int, american: bool, chunks: int):
    """Backward induction for ONE option (scalars in, scalar out); vmapped over a block."""
    dtype = spot.dtype
    j = jnp.arange(n + 1, dtype=dtype)
    ws = w * spot * jnp.exp(n * log_d + j * (log_u - log_d))  # w * S at the n+1 final nodes
    wk = w * strike
    zero = jnp.zeros((), dtype)
    value = jnp.maximum(ws - wk, zero)
    inv_d = jnp.exp(-log_d)

    def step_american(_, carry):
        v, s = carry
        s_new = s[:-1] * inv_d  # S(i, j) = S(i+1, j) / d
        new = jnp.maximum(p_up * v[1:] + p_down * v[:-1], s_new - wk)
        return jnp.concatenate([new, v[-1:]]), jnp.concatenate([s_new, s[-1:]])

    def step_european(_, v):
        return jnp.concatenate([p_up * v[1:] + p_down * v[:-1], v[-1:]])

    for hi, lo in _chunks(n, chunks):
        m = hi + 2  # level hi+1 has hi+2 nodes; the last slot of each step is padding
        if american:
            value, ws = jax.lax.fori_loop(0, hi - lo + 1, step_american, (value[:m], ws[:m]))
        else:
            value = jax.lax.fori_loop(0, hi - lo + 1, step_european, value[:m])
    return value[0]


_BLOCK = 32  # options per block of the lattice sweep: keeps (block, nodes) in cache


def _lattice_flat(
    spot, strike, expiry, rate, dividend, vol, is_call, n, method, american, chunks=4
):
    """Lattice price of a flat batch (all arrays shape (N,)), including the singular branch."""
    dtype = spot.dtype
    stdev = vol * _safe_sqrt(expiry)
    live = stdev > _tiny(dtype)
    one = jnp.ones_like(spot)
    t_safe = jnp.where(live, expiry, one)
    v_safe = jnp.where(live, vol, one)
    tp = _tree_params(spot, strike, t_safe, rate, dividend, v_safe, n, method)
    w = _sign(is_call, dtype)
    size = spot.shape[0]
    block = min(_BLOCK, max(size, 1))
    pad = (-size) % block
    args = (spot, w, strike, tp.log_u, tp.log_d, tp.p_up, tp.p_down)
    if pad:
        # harmless filler options (a valid ATM tree of the first option) to fill the last block
        args = tuple(jnp.concatenate([a, jnp.broadcast_to(a[:1], (pad,))]) for a in args)
    one_block = jax.vmap(partial(_induct_one, n=n, american=american, chunks=chunks))
    if size + pad == block:  # a single block: no loop around it
        values = one_block(*args)[:size]
    else:
        blocks = tuple(a.reshape(-1, block) for a in args)
        values = jax.lax.map(lambda xs: one_block(*xs), blocks).reshape(-1)[:size]
    values = jnp.where(tp.valid, values, jnp.full_like(values, jnp.nan))
    exact = _deterministic_value(spot, strike, expiry, rate, dividend, is_call, american)
    return jnp.where(live, values, exact)


def _lattice_where(mask, spot, strike, expiry, rate, dividend, vol, is_call, n):
    """American Leisen-Reimer prices where ``mask`` is True (0 elsewhere), at a cost that grows
    with the number of masked options only: they are sorted to the front and only the blocks
    they fill run the lattice (a static loop over blocks with a ``cond`` inside, so forward and
    reverse-mode autodiff both work). Every input must be a valid option, masked or not.
    """
    size = spot.shape[0]
    block = min(_BLOCK, size)
    pad = (-size) % block
    order = jnp.argsort(jnp.logical_not(mask), stable=True)
    args = [a[order] for a in (spot, strike, expiry, rate, dividend, vol, is_call)]
    if pad:
        args = [jnp.concatenate([a, jnp.broadcast_to(a[:1], (pad,))]) for a in args]
    n_needed = (jnp.sum(mask.astype(jnp.int32)) + block - 1) // block

    def run(i, out):
        def price_block(out):
            part = [jax.lax.dynamic_slice_in_dim(a, i * block, block) for a in args]
            values = _lattice_flat(*part, n, "leisen_reimer", True, chunks=1)
            return jax.lax.dynamic_update_slice_in_dim(out, values, i * block, 0)

        return jax.lax.cond(i < n_needed, price_block, lambda o: o, out)

    total = (size + pad) // block
    out = jax.lax.fori_loop(0, total, run, jnp.zeros(size + pad, spot.dtype))[:size]
    return jnp.zeros_like(out).at[order].set(out)


# --- Andersen-Lake-Offengenden ----------------------------------------------------------------


def _cheb_lobatto_matrix(nodes: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Matrix ``M`` with ``p(xs) = M @ y``: the polynomial through ``(nodes, y)``.

    ``nodes = -cos(i pi / m)``, ``i = 0..m`` (Chebyshev–Lobatto, ascending). Built from the
    discrete Chebyshev transform ``a_k = (2/m) sum'' y_i T_k(x_i)``, ``p = sum'' a_k T_k``
    (double prime: first and last terms halved).
    """
    m = len(nodes) - 1
    k = np.arange(m + 1)
    half = np.ones(m + 1)
    half[0] = half[-1] = 0.5
    t_nodes = np.cos(np.outer(k, np.arccos(np.clip(nodes, -1.0, 1.0))))
    to_coef = (2.0 / m) * t_nodes * half[None, :]
    t_x = np.cos(np.outer(np.arccos(np.clip(xs, -1.0, 1.0)), k)) * half[None, :]
    return t_x @ to_coef


def _tanh_sinh(points: int, reach: float = 2.5) -> tuple[np.ndarray, np.ndarray]:
    """Tanh-sinh (double-exponential) nodes and weights on [0, 1], ``2 (points // 2) + 1`` of
    them, ``|k h| <= reach``. The premium integrand varies fastest at both ends (near ``t = 0``
    when the spot is close to the boundary, near ``t = T`` where the boundary has its
    ``sqrt(tau log tau)`` behaviour), where these rules cluster their nodes."""
    n = max(points // 2, 1)
    h = reach / n
    k = np.arange(-n, n + 1) * h
    a = 0.5 * np.pi * np.sinh(k)
    nodes = 1.0 / (1.0 + np.exp(-2.0 * a))  # (1 + tanh a) / 2 without cancellation near 0
    weights = 0.5 * h * 0.5 * np.pi * np.cosh(k) / np.cosh(a) ** 2
    return nodes, weights


@functools.lru_cache(maxsize=16)
def _alo_tables(scheme: AloScheme) -> dict[str, np.ndarray]:
    """Static (option-independent) nodes, weights and interpolation matrices of a scheme.

    Collocation: ``xi_i = -cos(i pi / m)``, ``sqrt(tau_i / T) = (1 + xi_i) / 2``. Every point
    where the boundary is needed lies at a fixed ``xi`` in these units, so interpolation is a
    constant matrix applied to the node values of ``H``.
    """
    m = scheme.nodes
    xi = -np.cos(np.arange(m + 1) * np.pi / m)
    zeta = 0.5 * (1.0 + xi)
    # fixed-point integrals over u in [0, tau_i], in s = tau_i - u: tanh-sinh in s / tau_i,
    # which clusters nodes at s = 0 (the sqrt(tau - u) behaviour of the integrand) and at
    # u = 0 (the sqrt(u log u) behaviour of the boundary near expiry)
    s_frac, s_weight = _tanh_sinh(scheme.quad)
    u_frac = 1.0 - s_frac  # u / tau
    xi_u = 2.0 * np.outer(zeta[1:], np.sqrt(u_frac)) - 1.0  # (m, quad)
    interp_fp = _cheb_lobatto_matrix(xi, xi_u.ravel()).reshape(m, len(s_frac), m + 1)
    z_frac, z_weight = _tanh_sinh(scheme.price_quad)  # z = sqrt(t / T), t = time from now
    xi_p = 2.0 * np.sqrt(1.0 - z_frac**2) - 1.0  # boundary at tau = T - t
    interp_p = _cheb_lobatto_matrix(xi, xi_p)
    return {
        "tau_frac": zeta[1:] ** 2,  # tau_i / T, i = 1..m  (node 0 is tau = 0, H = 0)
        "s_frac": s_frac,
        "u_frac": u_frac,
        "fp_weight": s_weight,  # weights for d(s / tau)
        "interp_fp": interp_fp[:, :, 1:],  # column 0 multiplies H(0) = 0
        "z_frac": z_frac,
        "price_weight": z_weight,
        "interp_p": interp_p[:, 1:],
    }


def _qdplus_boundary(tau, strike, r, q, vol, x_max, iterations: int):
    """Li's (2009) QD+ approximation of the put exercise boundary at time to expiry ``tau``.

    Solves ``(1 - e^{-q tau} N(-d+)) S + (lambda + c0) (K - S - p_E(S)) = 0`` for ``S`` with a
    fixed number of Halley steps from ``X``, clipped to ``[1e-4 X, X]``. Only the starting
    point of the fixed-point iteration: its accuracy matters little. Needs ``r > 0``.
    """
    sig2 = vol * vol
    v = vol * jnp.sqrt(tau)
    dr = jnp.exp(-r * tau)
    dq = jnp.exp(-q * tau)
    omega = 2.0 * (r - q) / sig2
    h = -jnp.expm1(-r * tau)
    root = jnp.sqrt((omega - 1.0) ** 2 + 8.0 * r / (sig2 * h))
    lam = 0.5 * (-(omega - 1.0) - root)
    lam_prime = 2.0 * r / (sig2 * h * h * root)
    # 2 lambda + omega - 1 = -root
    alpha = -2.0 * dr * r / (sig2 * root)
    beta = alpha * (1.0 / h - lam_prime / root) - lam
    log_fwd_k = jnp.log(strike * dr / dq)

    def fns(s):
        dp = (jnp.log(s) - log_fwd_k) / v + 0.5 * v
        dm = dp - v
        n_dp = _ndtr_fast(-dp)
        n_dm = _ndtr_fast(-dm)
        pdf = norm_pdf(dp)
        npv = dr * strike * n_dm - s * dq * n_dp
        theta = r * strike * dr * n_dm - q * s * dq * n_dp - sig2 * s / (2.0 * v) * dq * pdf
        charm = -dq * (pdf * ((r - q) / v - dm / (2.0 * tau)) + q * n_dp)
        c0 = -beta - lam + alpha * theta / (dr * r * (strike - s - npv))
        f = (1.0 - dq * n_dp) * s + (lam + c0) * (strike - s - npv)
        f1 = 1.0 - dq * n_dp + dq / v * pdf + beta * (1.0 - dq * n_dp) + alpha / (r * dr) * charm
        gamma = pdf * dq / (v * s)
        colour = gamma * (q + (r - q) * dp / v + (1.0 - dp * dm) / (2.0 * tau))
        f2 = (
            dq * (pdf / (s * v) - pdf * dp / (s * v * v)) + beta * gamma + alpha / (r * dr) * colour
        )
        return f, f1, f2

    lo = 1e-4 * x_max

    def halley(_, s):
        f, f1, f2 = fns(s)
        step = f / f1 / (1.0 - 0.5 * f * f2 / (f1 * f1))
        step = jnp.where(jnp.isfinite(step), step, jnp.zeros_like(step))
        return jnp.clip(s - step, lo, x_max)

    return jax.lax.fori_loop(0, iterations, halley, x_max * jnp.ones_like(tau))


def _ndtr_fast(x: Array) -> Array:
    """Normal CDF to 7.5e-8 absolute (Abramowitz & Stegun 26.2.17): one exp, no erfc.

    Used only inside the boundary iteration (QD+ start and sweeps), whose fixed point needs
    ~1e-7 relative accuracy; the implicit-derivative rule and the price use the exact
    :func:`~jaxmm.pricing._bsm.ndtr`. Half the cost of XLA's float64 ``erfc``.
    """
    a = jnp.abs(x)
    t = 1.0 / (1.0 + 0.2316419 * a)
    poly = t * (0.319381530 + t * (-0.356563782 + t * (1.781477937 + t * (-1.821255978
                + t * 1.330274429))))  # fmt: skip
    tail = norm_pdf(a) * poly
    return jnp.where(x >= 0, 1.0 - tail, tail)


class _FpSetup(NamedTuple):
    """Option-dependent constants of the FP-B system (strike 1).

    Static axes lead and the option axis N trails; quadrature arrays are quadrature-major
    (quad, m, N) so the integrals are sums of contiguous (m, N) slices.
    """

    log_x: Array  # (N,) log X, X = B(0+) / K = min(1, r/q)
    carry: Array  # (N,) r - q
    r: Array  # (N,)
    q: Array  # (N,)
    tau: Array  # (m, N) collocation times to expiry, node 0 (tau = 0) excluded
    v_tau: Array  # (m, N) sigma sqrt(tau)
    alpha: Array  # (m, N) exp(-(r - q) tau)
    v_s: Array  # (quad, m, N) sigma sqrt(tau - u) at the quadrature points
    inv_v_s: Array  # (quad, m, N) 1 / v_s
    shift: Array  # (quad, m, N) (r - q)(tau - u) / v_s + v_s / 2
    w_r: Array  # (quad, m, N) quadrature weight * exp(r u)
    w_q: Array  # (quad, m, N) quadrature weight * exp(q u)
    interp: Array  # (quad, m, m) boundary interpolation matrix (static)


def _unit_x_max(r, q):
    """``X / K = min(1, r/q)``: the put boundary at expiry per unit of strike (``r > 0``)."""
    ones = jnp.ones_like(q)
    return jnp.where(q > r, r / jnp.where(q > r, q, ones), ones)


def _fp_setup(r, q, vol, expiry, scheme: AloScheme) -> _FpSetup:
    """FP-B constants for a put of strike 1 (the boundary is linear in the strike)."""
    dtype = r.dtype
    tab = _alo_tables(scheme)
    x_max = _unit_x_max(r, q)
    carry = r - q
    tau = expiry * jnp.asarray(tab["tau_frac"], dtype)[:, None]  # (m, N)
    s = jnp.asarray(tab["s_frac"], dtype)[:, None, None] * tau  # (quad, m, N): tau - u
    u = jnp.asarray(tab["u_frac"], dtype)[:, None, None] * tau
    weight = jnp.asarray(tab["fp_weight"], dtype)[:, None, None] * tau
    v_s = vol * jnp.sqrt(s)
    inv_v_s = 1.0 / v_s
    return _FpSetup(
        log_x=jnp.log(x_max),
        carry=carry,
        r=r,
        q=q,
        tau=tau,
        v_tau=vol * jnp.sqrt(tau),
        alpha=jnp.exp(-carry * tau),
        v_s=v_s,
        inv_v_s=inv_v_s,
        shift=carry * s * inv_v_s + 0.5 * v_s,
        w_r=weight * jnp.exp(r * u),
        w_q=weight * jnp.exp(q * u),
        interp=jnp.asarray(np.transpose(tab["interp_fp"], (1, 0, 2)), dtype),
    )


def _log_boundary_from_h(log_x, h):
    """``log B = log X - sqrt(H)`` with a zero-gradient square root at ``H <= 0``."""
    return log_x - _safe_sqrt(jnp.maximum(h, jnp.zeros_like(h)))


def _fp_terms(x, fs: _FpSetup, cdf=ndtr):
    """Numerator and denominator of FP-B at the nodes for node values ``x = log B`` (m, N).

    Quadrature arrays are quadrature-major, so the integrals are reductions over the leading
    axis (contiguous (m, N) slices), which XLA vectorises over the options.
    """
    h = (jnp.minimum(x, fs.log_x) - fs.log_x) ** 2  # (m, N)
    log_bu = _log_boundary_from_h(fs.log_x, jnp.einsum("kij,jn->kin", fs.interp, h))
    dp = (x - log_bu) * fs.inv_v_s + fs.shift  # (quad, m, N)
    dm = dp - fs.v_s
    int_n = jnp.sum(fs.w_r * cdf(dm), axis=0)
    int_d = jnp.sum(fs.w_q * cdf(dp), axis=0)
    dpk = (x + fs.carry * fs.tau) / fs.v_tau + 0.5 * fs.v_tau
    dmk = dpk - fs.v_tau
    num = cdf(dmk) + fs.r * int_n
    den = cdf(dpk) + fs.q * int_d
    return num, den, dpk, dmk


def _fp_map(x, fs: _FpSetup):
    """The FP-B map in log space, ``x -> log(e^{-(r-q) tau} N / D)`` (strike 1); its fixed
    point is the (discretised) exercise boundary."""
    num, den, _, _ = _fp_terms(x, fs)
    return jnp.log(fs.alpha) + jnp.log(num) - jnp.log(den)


@partial(jax.custom_jvp, nondiff_argnums=(4,))
def _alo_boundary(r, q, vol, expiry, scheme: AloScheme):
    """``log(B / K)`` of the put exercise boundary at the collocation nodes ``tau_1..tau_m``.

    Shape (m, N). The boundary is homogeneous of degree one in the strike, so it is solved for
    ``K = 1``: it then depends on ``r, q, vol, expiry`` only, never on spot or strike.

    QD+ start, then ``scheme.sweeps`` Jacobi-Newton sweeps (ALO sec. 4: the derivative of the
    FP-B right-hand side in ``B(tau_i)`` through its non-integral terms). Differentiated by the
    implicit function theorem (the rule below), never through the iterations.
    """
    fs = _fp_setup(r, q, vol, expiry, scheme)

    def sweep(_, x):
        num, den, dpk, dmk = _fp_terms(x, fs, _ndtr_fast)
        b = jnp.exp(x)
        f = fs.alpha * num / den
        dnum = norm_pdf(dmk) / (b * fs.v_tau)
        dden = norm_pdf(dpk) / (b * fs.v_tau)
        f1 = fs.alpha * (dnum / den - dden * num / (den * den))
        b_new = b - (f - b) / (f1 - 1.0)
        # far from the solution D can turn negative (q < 0) or the Newton step overshoot:
        # fall back to the plain fixed-point step, and if that is not a boundary either, stay
        f_ok = jnp.isfinite(f) & (f > 0)
        b_new = jnp.where(jnp.isfinite(b_new) & (b_new > 0), b_new, jnp.where(f_ok, f, b))
        return jnp.minimum(jnp.log(b_new), fs.log_x)

    x_max = jnp.exp(fs.log_x)
    start = _qdplus_boundary(fs.tau, jnp.ones_like(r), r, q, vol, x_max, scheme.halley)
    return jax.lax.fori_loop(0, scheme.sweeps, sweep, jnp.minimum(jnp.log(start), fs.log_x))


@_alo_boundary.defjvp
def _alo_boundary_jvp(scheme, primals, tangents):
    """Implicit derivative of the boundary: ``x = G(x, theta)`` gives
    ``(I - dG/dx) dx = dG/dtheta . dtheta``, one small (m x m) solve per option.

    The rule is itself made of differentiable operations, so higher orders (volga, ...) follow
    by differentiating it again; the fixed-point loops are never differentiated.
    """
    x = _alo_boundary(*primals, scheme)

    def g(x_, *theta):
        return _fp_map(x_, _fp_setup(*theta, scheme))

    _, g_theta = jax.jvp(lambda *th: g(x, *th), primals, tangents)
    m = x.shape[0]
    eye = jnp.eye(m, dtype=x.dtype)
    basis = jnp.broadcast_to(eye[:, :, None], (m, m, *x.shape[1:]))
    jac = jax.vmap(lambda e: jax.jvp(lambda x_: g(x_, *primals), (x,), (e,))[1])(basis)
    # jac[j, i, n] = dG_i / dx_j for option n
    a = eye - jnp.transpose(jac, (2, 1, 0))  # (N, i, j)
    dx = jnp.linalg.solve(a, jnp.transpose(g_theta)[..., None])[..., 0]  # (N, m)
    return x, jnp.transpose(dx)


def _alo_premium(spot, strike, expiry, r, q, vol, scheme: AloScheme):
    """Early-exercise premium of American puts with ``r > 0``, and whether to exercise now.

    Arrays of the batch shape with ``vol sqrt T > 0``. ``t`` is the time from now,
    ``t = T z^2``, and the boundary is needed at ``tau = T - t``. Returns ``(premium,
    exercise_now)``; ``exercise_now`` is True when the spot is at or below ``B(T)``, where the
    value is the intrinsic value exactly.
    """
    dtype = spot.dtype
    tab = _alo_tables(scheme)
    x = _alo_boundary(r, q, vol, expiry, scheme)  # (m, N) log(B/K) at the nodes
    log_x = jnp.log(_unit_x_max(r, q))
    h = (jnp.minimum(x, log_x) - log_x) ** 2
    log_bt = jnp.log(strike) + _log_boundary_from_h(log_x, jnp.asarray(tab["interp_p"], dtype) @ h)
    z = jnp.asarray(tab["z_frac"], dtype)[:, None]
    t = expiry * z * z
    v_t = vol * jnp.sqrt(t)
    carry = r - q
    dp = (jnp.log(spot) - log_bt + carry * t) / v_t + 0.5 * v_t
    dm = dp - v_t
    integrand = z * (
        r * strike * jnp.exp(-r * t) * ndtr(-dm) - q * spot * jnp.exp(-q * t) * ndtr(-dp)
    )
    # int_0^T f dt = 2 T int_0^1 z f dz
    weight = jnp.asarray(2.0 * tab["price_weight"], dtype)[:, None]
    premium = expiry * jnp.sum(weight * integrand, 0)
    # the last node is tau = T: a spot at or below B(T) is in the exercise region
    exercise_now = jnp.log(spot) <= jnp.log(strike) + x[-1]
    return jnp.maximum(premium, jnp.zeros_like(premium)), exercise_now


def _european(spot, strike, expiry, rate, dividend, vol, w):
    """BSM value ``e^{-rT} w [F N(w d1) - K N(w d2)]`` for ``vol sqrt T > 0`` (masked inputs)."""
    fwd = spot * jnp.exp((rate - dividend) * expiry)
    sd = vol * jnp.sqrt(expiry)
    d1 = jnp.log(fwd / strike) / sd + 0.5 * sd
    d2 = d1 - sd
    return jnp.exp(-rate * expiry) * w * (fwd * ndtr(w * d1) - strike * ndtr(w * d2))


def _put_form(spot, strike, rate, dividend, is_call):
    """McDonald-Schroder symmetry ``C(S, K, r, q) = P(K, S, q, r)``: every option as a put."""
    return (
        jnp.where(is_call, strike, spot),
        jnp.where(is_call, spot, strike),
        jnp.where(is_call, dividend, rate),
        jnp.where(is_call, rate, dividend),
    )


def _band_np(expiry, rate, dividend, vol, is_call) -> np.ndarray:
    """Host twin of the two-boundary test in :func:`_alo_flat` (broadcast shape, writable)."""
    call = np.asarray(is_call).astype(bool)
    r_p = np.where(call, np.asarray(dividend, float), np.asarray(rate, float))
    q_p = np.where(call, np.asarray(rate, float), np.asarray(dividend, float))
    live = np.asarray(vol, float) * np.sqrt(np.maximum(np.asarray(expiry, float), 0.0)) > 0
    return np.array((r_p <= 0) & (q_p < r_p) & live)


def _alo_flat(spot, strike, expiry, rate, dividend, vol, is_call, steps, scheme, fallback):
    """ALO American price of a flat batch, with the European, singular and band branches.

    ``fallback`` (static): price two-boundary options on the Leisen-Reimer lattice in this
    graph; when False they come out NaN (the caller fills them in).
    """
    dtype = spot.dtype
    one = jnp.ones_like(spot)
    w = _sign(is_call, dtype)
    stdev = vol * _safe_sqrt(expiry)
    live = stdev > _tiny(dtype)
    t_safe = jnp.where(live, expiry, one)
    v_safe = jnp.where(live, vol, one)
    # put form by McDonald-Schroder symmetry: C(S, K, r, q) = P(K, S, q, r)
    s_p, k_p, r_p, q_p = _put_form(spot, strike, rate, dividend, is_call)
    single = r_p > 0  # one exercise boundary: the ALO solve
    band = (r_p <= 0) & (q_p < r_p)  # two boundaries: lattice fallback
    # masked inputs for the ALO solve (a harmless put elsewhere)
    r_m = jnp.where(single, r_p, jnp.full_like(r_p, 0.05))
    q_m = jnp.where(single, q_p, jnp.zeros_like(q_p))
    premium, exercise_now = _alo_premium(s_p, k_p, t_safe, r_m, q_m, v_safe, scheme)
    european = _european(spot, strike, t_safe, rate, dividend, v_safe, w)
    intrinsic = jnp.maximum(w * (spot - strike), jnp.zeros_like(spot))
    american = jnp.where(exercise_now, intrinsic, jnp.maximum(european + premium, intrinsic))
    value = jnp.where(single, american, european)

    value = jnp.where(band, jnp.full_like(value, jnp.nan), value)
    if fallback:
        value = jnp.where(
            band, _band_lattice(spot, strike, expiry, rate, dividend, vol, is_call, steps), value
        )
    exact = _deterministic_value(spot, strike, expiry, rate, dividend, is_call, True)
    return jnp.where(live, value, exact)


def _band_mask(expiry, rate, dividend, vol, is_call):
    """Options in the two-boundary regime (q < r <= 0 as a put) with ``vol sqrt T > 0``."""
    r_p = jnp.where(is_call, dividend, rate)
    q_p = jnp.where(is_call, rate, dividend)
    live = vol * _safe_sqrt(expiry) > _tiny(vol.dtype)
    return (r_p <= 0) & (q_p < r_p) & live


def _band_lattice(spot, strike, expiry, rate, dividend, vol, is_call, steps):
    """Leisen-Reimer American prices of the two-boundary options (0 elsewhere); the other
    options enter the lattice as a harmless masked put and cost nothing (see
    :func:`_lattice_where`)."""
    band = _band_mask(expiry, rate, dividend, vol, is_call)
    one = jnp.ones_like(spot)
    return _lattice_where(
        band,
        spot,
        strike,
        jnp.where(band, expiry, one),
        jnp.where(band, rate, jnp.zeros_like(rate)),
        jnp.where(band, dividend, jnp.zeros_like(dividend)),
        jnp.where(band, vol, jnp.full_like(vol, 0.2)),
        is_call,
        steps,
    )


# --- dispatch and jitted entry points ---------------------------------------------------------


def _price_flat(
    spot, strike, expiry, rate, dividend, vol, is_call, steps, method, exercise, scheme,
    fallback=True,
):  # fmt: skip
    american = exercise == "american"
    if method == "alo":
        if american:
            return _alo_flat(
                spot, strike, expiry, rate, dividend, vol, is_call, steps, scheme, fallback
            )
        exact = _deterministic_value(spot, strike, expiry, rate, dividend, is_call, False)
        stdev = vol * _safe_sqrt(expiry)
        live = stdev > _tiny(spot.dtype)
        one = jnp.ones_like(spot)
        eu = _european(
            spot,
            strike,
            jnp.where(live, expiry, one),
            rate,
            dividend,
            jnp.where(live, vol, one),
            _sign(is_call, spot.dtype),
        )
        return jnp.where(live, eu, exact)
    return _lattice_flat(
        spot, strike, expiry, rate, dividend, vol, is_call, steps, method, american
    )


def _prepare(spot, strike, expiry, rate, dividend, vol, is_call):
    dtype = common_float_dtype(spot, strike, expiry, rate, dividend, vol)
    floats = [jnp.asarray(a).astype(dtype) for a in (spot, strike, expiry, rate, dividend, vol)]
    flag = jnp.asarray(is_call).astype(bool)
    shape = jnp.broadcast_shapes(*(a.shape for a in floats), flag.shape)
    flat = [jnp.broadcast_to(a, shape).reshape(-1) for a in (*floats, flag)]
    return shape, flat


_STATIC = ("steps", "method", "exercise", "scheme")


@partial(jax.jit, static_argnames=_STATIC)
def _american_price_jit(
    spot, strike, expiry, rate, dividend, vol, is_call, steps, method, exercise, scheme
):
    shape, flat = _prepare(spot, strike, expiry, rate, dividend, vol, is_call)
    return _price_flat(*flat, steps, method, exercise, scheme).reshape(shape)


def _jvp_tower(
    f: Callable[..., Any], tangents: tuple[tuple[Array, ...], ...]
) -> Callable[..., Any]:
    """Nested forward-mode derivatives of ``f(*args)`` along the given tangent tuples.

    With tangents ``(t1, t2, t3)`` the result is the nested pair tree of ``jax.jvp`` applied
    three times: ``(((f, f1), (f2, f12)), ((f3, f13), (f23, f123)))`` where ``f12`` is the
    second directional derivative along ``t1`` then ``t2`` and so on.
    """
    g: Callable[..., Any] = f
    for t in tangents:
        g = partial(lambda inner, t_, *args: jax.jvp(inner, args, t_), g, t)
    return g


def _taylor_greeks(f, spot, vol, expiry, rate, full: bool):
    """All Greeks of ``f(spot, vol, expiry, rate)`` from ONE trace of a nested ``jvp``.

    :func:`jaxmm.pricing.autodiff_greeks` traces one ``jvp`` per Greek (twelve traces, up to
    third order); for a kernel with loops (a lattice, the ALO fixed point) XLA cannot share work
    between them and compiling twelve copies took minutes. Here the tangent directions are data
    and are ``vmap``-ped: one third-order tower with four direction triples gives every Greek
    (the primal and the lower orders are shared inside the tower). Same units and signs as
    ``autodiff_greeks`` (theta = -dV/dT, charm = -d2V/dS dT, color = -d3V/dS2 dT); the tests
    check the two agree.
    """
    args = (spot, vol, expiry, rate)
    one, zero = jnp.ones_like(spot), jnp.zeros_like(spot)

    def e(i):
        return tuple(one if j == i else zero for j in range(4))

    s_, v_, t_, r_ = (e(i) for i in range(4))
    triples: list[tuple[tuple[Array, ...], ...]]
    if full:
        triples = [(s_, s_, s_), (s_, s_, v_), (s_, s_, t_), (v_, v_, r_)]
    else:
        triples = [(s_, s_), (v_, t_), (r_, s_)]
    stacked = tuple(
        tuple(jnp.stack([tri[k][j] for tri in triples]) for j in range(4))
        for k in range(len(triples[0]))
    )
    out = jax.vmap(lambda *tt: _jvp_tower(f, tt)(*args))(*stacked)
    if not full:
        (f0, f1), (f2, f12) = out
        return CoreGreeks(
            price=f0[0], delta=f1[0], gamma=f12[0], vega=f1[1], theta=-f2[1], rho=f1[2]
        )
    ((f0, f1), (f2, f12)), ((f3, f13), (_, f123)) = out
    a, b, c, d = 0, 1, 2, 3  # the four triples above
    return Greeks(
        price=f0[a],
        delta=f1[a],
        gamma=f12[a],
        vega=f3[b],
        theta=-f3[c],
        rho=f3[d],
        vanna=f13[b],
        volga=f12[d],
        charm=-f13[c],
        speed=f123[a],
        zomma=f123[b],
        color=-f123[c],
    )


def _split_greeks(f, spot, vol, expiry, rate, full: bool):
    """Greeks of ``f(spot, vol, expiry, rate)`` as a spot tower inside a parameter ``jvp``.

    For ``"alo"``: the exercise boundary depends on ``vol, expiry, rate`` but not on the spot,
    so the spot derivatives (delta, gamma, speed) are taken with the parameters closed over —
    the boundary solve and its implicit-derivative rule never see a spot tangent — and one
    first-order ``jvp`` along ``vol``, ``expiry``, ``rate`` (``vmap``-ped) of that tower gives
    vega, theta, rho, vanna, charm, zomma and color. Only volga differentiates the boundary
    twice. Units and signs as :func:`jaxmm.pricing.autodiff_greeks`.
    """
    one = jnp.ones_like(spot)
    zero = jnp.zeros_like(spot)
    order = 3 if full else 2

    def spot_tower(v_, t_, r_):
        g = partial(lambda s_: f(s_, v_, t_, r_))
        derivs = []
        fn = g
        for _ in range(order):
            fn = partial(lambda inner, s_: jax.jvp(inner, (s_,), (one,)), fn)
        out = fn(spot)
        # the tower's leaves: the k-th derivative sits at index path (1, 1, ..., 0, 0)
        for k in range(order + 1):
            node = out
            for level in range(order):
                node = node[1 if level < k else 0]
            derivs.append(node)
        return tuple(derivs)

    basis = [(one, zero, zero), (zero, one, zero), (zero, zero, one)]
    dirs = tuple(jnp.stack([b[i] for b in basis]) for i in range(3))
    primal, tangent = jax.vmap(
        lambda dv, dt, dr: jax.jvp(spot_tower, (vol, expiry, rate), (dv, dt, dr))
    )(*dirs)
    price, delta, gamma = primal[0][0], primal[1][0], primal[2][0]
    vega, theta, rho = tangent[0][0], -tangent[0][1], tangent[0][2]
    if not full:
        return CoreGreeks(price, delta, gamma, vega, theta, rho)

    def vega_of(v_):
        return jax.jvp(lambda vv: f(spot, vv, expiry, rate), (v_,), (one,))[1]

    volga = jax.jvp(vega_of, (vol,), (one,))[1]
    return Greeks(
        price=price,
        delta=delta,
        gamma=gamma,
        vega=vega,
        theta=theta,
        rho=rho,
        vanna=tangent[1][0],
        volga=volga,
        charm=-tangent[1][1],
        speed=primal[3][0],
        zomma=tangent[2][0],
        color=-tangent[2][1],
    )


@partial(jax.jit, static_argnames=(*_STATIC, "full", "fallback"))
def _american_greeks_jit(
    spot, strike, expiry, rate, dividend, vol, is_call, steps, method, exercise, scheme, full,
    fallback,
):  # fmt: skip
    shape, (s, k, t, r, q, v, c) = _prepare(spot, strike, expiry, rate, dividend, vol, is_call)

    def f(s_, v_, t_, r_):
        return _price_flat(s_, k, t_, r_, q, v_, c, steps, method, exercise, scheme, fallback)

    # Options are independent, so a tangent of ones gives every option its own derivative.
    if method != "alo" or exercise != "american":
        g = _taylor_greeks(f, s, v, t, r, full)
        return type(g)(*(x.reshape(shape) for x in g))

    def f_alo(s_, v_, t_, r_):
        return _price_flat(s_, k, t_, r_, q, v_, c, steps, method, exercise, scheme, False)

    g = _split_greeks(f_alo, s, v, t, r, full)  # two-boundary options come out NaN here
    if fallback:  # ... and get their Greeks from the lattice, differentiated on its own

        def f_band(s_, v_, t_, r_):
            return _band_lattice(s_, k, t_, r_, q, v_, c, steps)

        band = _band_mask(t, r, q, v, c)
        g_band = _taylor_greeks(f_band, s, v, t, r, full)
        g = type(g)(*(jnp.where(band, b, a) for a, b in zip(g, g_band, strict=True)))
    return type(g)(*(x.reshape(shape) for x in g))


def _check_static(steps: Any, method: Any, exercise: Any, scheme: Any) -> int:
    """Validate the static arguments; return the step count (the method's default for None)."""
    if method not in METHODS:
        raise ValueError(f"method: must be one of {METHODS}, got {method!r}")
    if steps is None:
        steps = DEFAULT_STEPS[method]
    if exercise not in EXERCISES:
        raise ValueError(f"exercise: must be one of {EXERCISES}, got {exercise!r}")
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
        raise ValueError(f"steps: must be a positive int, got {steps!r}")
    if method == "leisen_reimer" and steps % 2 == 0:
        raise ValueError(f"steps: leisen_reimer needs an odd number of steps, got {steps}")
    if method == "alo" and steps % 2 == 0:
        raise ValueError(
            f"steps: the alo method's Leisen-Reimer fallback needs an odd number of steps, "
            f"got {steps}"
        )
    if not isinstance(scheme, AloScheme) or min(scheme) < 0 or scheme.nodes < 2:
        raise ValueError(f"scheme: must be an AloScheme with nodes >= 2, got {scheme!r}")
    if min(scheme.quad, scheme.price_quad) < 1:
        raise ValueError(f"scheme: quadrature sizes must be >= 1, got {scheme!r}")
    return int(steps)


def _host_arrays(*xs: Any) -> tuple[Any, ...]:
    """Lists and tuples become NumPy arrays (one jit argument each, not a pytree of scalars)."""
    return tuple(np.asarray(x) if isinstance(x, list | tuple) else x for x in xs)


def _is_traced(*xs: Any) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in xs)


def _bucket(n: int) -> int:
    """Smallest of 8, 12, 16, 24, 32, 48, ... that holds ``n`` options."""
    size = 8
    while size < n:
        size = size * 3 // 2 if size & (size - 1) == 0 else size * 4 // 3
    return size


class _Batch(NamedTuple):
    """Arguments flattened and padded to a bucket size, so that batch sizes share kernels."""

    args: tuple[Any, ...]  # the seven pricing arguments, each a (size,) array
    shape: tuple[int, ...]  # broadcast shape of the inputs
    n: int | None  # number of real options; None when traced (nothing padded then)


@partial(jax.jit, static_argnames=("shape", "size", "dtype"))
def _flatten_device(args, shape, size, dtype):
    n = int(np.prod(shape, dtype=np.int64))
    out = []
    for i, a in enumerate(args):
        flat = jnp.broadcast_to(jnp.asarray(a), shape).reshape(-1)
        flat = flat.astype(bool) if i == 6 else flat.astype(dtype)
        out.append(jnp.pad(flat, (0, size - n), mode="edge") if size > n else flat)
    return tuple(out)


def _batch(args: tuple[Any, ...]) -> _Batch:
    """Broadcast, flatten and edge-pad every argument to a (size,) array, ``size`` a bucket.

    The kernels are then compiled once per (bucket, dtype) whatever the mix of scalars, NumPy
    and JAX arrays and whatever the chain's shape: chains of 50 and 60 strikes share a kernel.
    The float dtype is decided as inside the kernels (:func:`common_float_dtype`: Python
    numbers are weak and follow the arrays). Under an outer trace nothing is padded.
    """
    args = _host_arrays(*args)
    shape = tuple(np.broadcast_shapes(*(np.shape(a) for a in args)))
    n = int(np.prod(shape, dtype=np.int64))
    if _is_traced(*args):
        return _Batch(args, shape, None)
    if n == 0:
        return _Batch(args, shape, 0)
    size = _bucket(n)
    dtype = common_float_dtype(*args[:6])
    if any(isinstance(a, jax.Array) for a in args):
        flat = _flatten_device(args, shape=shape, size=size, dtype=dtype)
    else:
        flat = []
        for i, a in enumerate(args):
            x = np.broadcast_to(np.asarray(a, dtype=bool if i == 6 else dtype), shape).reshape(-1)
            flat.append(np.pad(x, (0, size - n), mode="edge") if size > n else x)
    return _Batch(tuple(flat), shape, n)


def _unbatch(x: Array, batch: _Batch) -> Array:
    if batch.n is None or x.shape == batch.shape:
        return x
    return x[: batch.n].reshape(batch.shape)


def _greeks(
    spot, strike, expiry, rate, dividend, vol, is_call, steps, method, exercise, scheme, full
):
    """Greeks with the two-boundary ALO fallback done outside the main graph when possible.

    Differentiating the lattice fallback inside the ALO graph costs tens of seconds of
    compilation for every caller, although few options ever need it. With concrete inputs the
    two-boundary options are found on the host, the ALO kernel is compiled without the lattice,
    and only if such options exist are their Greeks taken from the Leisen-Reimer lattice kernel
    (on a bucket-sized sub-batch, so their count does not trigger recompiles). Under an outer
    ``jit``/``grad`` (tracers) the fallback stays in the graph.
    """
    batch = _batch((spot, strike, expiry, rate, dividend, vol, is_call))
    if batch.n == 0:
        empty = jnp.zeros(batch.shape, common_float_dtype(*batch.args[:6]))
        return (Greeks if full else CoreGreeks)(*([empty] * (12 if full else 6)))
    static = dict(steps=int(steps), exercise=exercise, scheme=scheme, full=full)
    if method != "alo" or exercise != "american" or batch.n is None:
        g = _american_greeks_jit(*batch.args, method=method, fallback=batch.n is None, **static)
        return type(g)(*(_unbatch(x, batch) for x in g))
    g = _american_greeks_jit(*batch.args, method=method, fallback=False, **static)
    size = g.price.shape[0]
    flat = [np.asarray(a) for a in batch.args]
    band = _band_np(*flat[2:])
    band[batch.n :] = False
    if band.any():
        idx = np.flatnonzero(band)
        sub_size = _bucket(len(idx))
        take = np.concatenate([idx, np.full(sub_size - len(idx), idx[0])])
        sub = [a[take] for a in flat]
        lattice = _american_greeks_jit(*sub, method="leisen_reimer", fallback=True, **static)
        g = type(g)(
            *(
                jnp.broadcast_to(a, (size,)).at[idx].set(b[: len(idx)].astype(a.dtype))
                for a, b in zip(g, lattice, strict=True)
            )
        )
    return type(g)(*(_unbatch(x, batch) for x in g))


def american_price(
    spot: ArrayLike,
    strike: ArrayLike,
    expiry: ArrayLike,
    rate: ArrayLike,
    dividend: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
    *,
    method: str = "alo",
    steps: int | None = None,
    exercise: str = "american",
    scheme: AloScheme = AloScheme(),  # noqa: B008 - an immutable NamedTuple
) -> Array:
    """Price American (or European) options, broadcasting over every array argument.

    Args:
        spot: underlying price S > 0.
        strike: strike K > 0.
        expiry: time to expiry T >= 0 in years (ACT/365F).
        rate: continuously compounded risk-free rate r (may be negative).
        dividend: continuously compounded dividend / borrow / foreign yield q.
        vol: annualised volatility sigma >= 0 (0.2 = 20%).
        is_call: True for calls, False for puts (data, bool array allowed).
        method: ``"alo"`` (default; Andersen–Lake–Offengenden, ~1e-4 accurate, fastest),
            ``"leisen_reimer"`` or ``"crr"`` (binomial lattices, the references). Static.
        steps: lattice time steps (static); ``None`` takes ``DEFAULT_STEPS[method]`` (201 for
            the lattices). Odd for ``"leisen_reimer"``. For ``"alo"`` it is the step count of
            the Leisen–Reimer lattice that prices the two-boundary regime q < r <= 0 (puts) /
            r < q <= 0 (calls), default 1001.
        exercise: ``"american"`` (default) or ``"european"`` (static). European with
            ``"alo"`` is the Black–Scholes–Merton closed form; with a lattice it is the
            lattice's own European value (it converges to BSM, see the tests).
        scheme: :class:`AloScheme` discretisation of the ALO solve (static).

    Returns:
        Prices per unit of underlying, broadcast shape of the inputs, in their float dtype.
        NaN for ``"crr"`` options whose up-probability leaves [0, 1] (``sigma sqrt(dt) <
        |r - q| dt``).

    Raises:
        ValueError: naming the argument, for out-of-bound or NaN host inputs, shapes that do
            not broadcast, an unknown ``method``/``exercise``, or a bad ``steps``/``scheme``.

    Example:
        >>> import jaxmm.pricing._lattice as jl
        >>> p = jl.american_price(100.0, [90.0, 100.0, 110.0], 1.0, 0.05, 0.0, 0.2, False)
        >>> [round(float(x), 2) for x in p]
        [2.47, 6.09, 11.97]
        >>> lr = jl.american_price(100.0, 100.0, 1.0, 0.05, 0.0, 0.2, False,
        ...                        method="leisen_reimer", steps=501)
        >>> round(float(lr), 2)
        6.09
    """
    _check(spot, strike, expiry, rate, dividend, vol, is_call)
    steps = _check_static(steps, method, exercise, scheme)
    batch = _batch((spot, strike, expiry, rate, dividend, vol, is_call))
    if batch.n == 0:
        return jnp.zeros(batch.shape, common_float_dtype(*batch.args[:6]))
    price = _american_price_jit(
        *batch.args, steps=steps, method=method, exercise=exercise, scheme=scheme
    )
    return _unbatch(price, batch)


def american_greeks(
    spot: ArrayLike,
    strike: ArrayLike,
    expiry: ArrayLike,
    rate: ArrayLike,
    dividend: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
    *,
    method: str = "alo",
    steps: int | None = None,
    exercise: str = "american",
    scheme: AloScheme = AloScheme(),  # noqa: B008
) -> Greeks:
    """Price and all twelve Greeks of :func:`american_price` by forward-mode autodiff.

    Same arguments as :func:`american_price`; returns :class:`~jaxmm.pricing.Greeks` with raw
    derivatives (vega per 1.00 vol, theta = dV/dt per calendar year, rho per 1.00 rate with q
    fixed). Nothing is finite-differenced: the Greeks are nested ``jax.jvp`` towers of the
    price, traced once (not once per Greek, see ``_taylor_greeks``). For ``"alo"`` the spot
    tower runs with the exercise boundary fixed (it does not depend on the spot) and the
    boundary's sensitivity to vol, expiry and rate comes from the implicit function theorem
    at the converged fixed point — exact derivatives of the discretised solution, agreeing
    with finite differences of QuantLib's QdFp prices to ~1e-4 relative (tests).

    Which method for Greeks: ``"alo"`` is smooth in its inputs, so every order is meaningful.
    A lattice price is only piecewise smooth — a node crossing the strike or the exercise
    boundary as an input moves puts a kink in it — so autodiff returns the derivative of the
    smooth piece you are on: delta and vega carry the lattice's O(1/n) error, gamma misses the
    kinks (Leisen-Reimer 201: a few % low on American options), and the higher orders inherit
    the lattice noise. ``"crr"`` is worse: its nodes scale with the spot while ``u``, ``d``,
    ``p`` do not depend on it, so the price is piecewise *linear* in spot and its autodiff
    gamma, speed, zomma and color are zero almost everywhere. :func:`american_core_greeks` is
    the cheaper second-order path when the higher orders are not needed.

    Options in the two-boundary regime (``"alo"`` with q < r <= 0 as a put) take their Greeks
    from the Leisen-Reimer lattice with ``steps``; with concrete inputs that lattice kernel is
    compiled and run only when such options are present.

    Example:
        >>> import jaxmm.pricing._lattice as jl
        >>> g = jl.american_greeks(100.0, 100.0, 1.0, 0.05, 0.0, 0.2, False)
        >>> round(float(g.delta), 3), bool(g.gamma > 0)
        (-0.411, True)
    """
    _check(spot, strike, expiry, rate, dividend, vol, is_call)
    steps = _check_static(steps, method, exercise, scheme)
    return _greeks(
        spot, strike, expiry, rate, dividend, vol, is_call, steps, method, exercise, scheme, True
    )


def american_core_greeks(
    spot: ArrayLike,
    strike: ArrayLike,
    expiry: ArrayLike,
    rate: ArrayLike,
    dividend: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
    *,
    method: str = "alo",
    steps: int | None = None,
    exercise: str = "american",
    scheme: AloScheme = AloScheme(),  # noqa: B008
) -> CoreGreeks:
    """Price, delta, gamma, vega, theta, rho of :func:`american_price` (the fast path).

    Same arguments and units as :func:`american_greeks`, which explains how lattice noise
    enters the derivatives.

    Example:
        >>> import jaxmm.pricing._lattice as jl
        >>> g = jl.american_core_greeks(100.0, 110.0, 0.5, 0.03, 0.06, 0.3, True)
        >>> bool(0 < g.delta < 1) and bool(g.vega > 0)
        True
    """
    _check(spot, strike, expiry, rate, dividend, vol, is_call)
    steps = _check_static(steps, method, exercise, scheme)
    return _greeks(
        spot, strike, expiry, rate, dividend, vol, is_call, steps, method, exercise, scheme, False
    )
