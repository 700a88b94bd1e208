"""Implied volatility: vectorised, fixed-iteration, differentiable, with a per-option status.

Algorithm (Jäckel, "Let's Be Rational", *Wilmott* 2015, pp. 40-53), written for one option and
vectorised at the call site:

1. Normalise on the forward. ``F = S exp((r - q) T)``, undiscounted price ``c = V exp(rT)``,
   log-moneyness ``x = ln(F/K)`` and normalised price ``beta = c / sqrt(F K)``. The bounds are
   checked here, on the forward, so negative rates need no special case: the lower bound is
   the intrinsic value on the forward ``max(w (F - K), 0)``, the upper bound ``F`` (call) or
   ``K`` (put), both undiscounted.
2. Reduce to an out-of-the-money call: subtract the normalised intrinsic value
   ``2 sinh(|x|/2)`` from an in-the-money price (put-call parity on the forward) and reflect
   ``x -> -|x|``. What is left is the time value, where the information about sigma is.
3. Initial guess from four rational-cubic branches (Delbourgo & Gregory 1985, "Shape preserving
   piecewise rational interpolation") between the points where the tangent of ``b(s)`` at its
   inflection point ``s_c = sqrt(2|x|)`` meets 0 and ``exp(x/2)``; the outer two branches
   interpolate in transformed coordinates that carry the exact small- and large-``s``
   asymptotics of the Black function (mapped back with the inverse normal of Abramowitz &
   Stegun 26.2.23: the guess needs ~1e-2, not 1e-16). Relative error of the guess in
   ``s = sigma sqrt(T)``: up to 9% (lower branch), 0.5% (middle), 3% (upper).
4. ``n_iter`` (default 2) steps of Householder's third-order method (convergence order four),
   on ``1/ln b - 1/ln beta`` in the lower branch, on ``b - beta`` in the middle and on
   ``ln((b_max - beta) / (b_max - b))`` in the upper branch, so that every branch is close to
   linear in ``s``. Measured against 50-digit references (6,400 points, ``s`` 1e-3..8,
   ``|x|`` 1e-16..30): the largest relative error in ``s`` is 2e-6 after one step and 2e-12
   after two, where it stays with a third (the rounding floor of the Black function).
   Each step is clamped to the branch's bracket, which holds the root.

The normalised Black function uses the same single-``erfc`` normal CDF as
:func:`jaxmm.pricing.bsm_price` (``_bsm.ndtr``). Differentiation never goes through the
iterations: a custom JVP applies the implicit function theorem at the solution.
"""

from __future__ import annotations

import enum
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._validate import check_broadcast, check_values
from ._bsm import _bool, _cast, black_scholes_scalar, ndtr

__all__ = ["IVStatus", "implied_vol", "implied_vol_black76"]

Array = jax.Array
ArrayLike = Any

_INV_SQRT_2PI = 0.3989422804014327
_SQRT3 = 1.7320508075688772
_SQRT_2PI = 2.5066282746310002
_LN2 = 0.6931471805599453
_LOWER_MAP_SCALE = 2.0 * np.pi / (3.0 * _SQRT3)  # f_lower = scale |x| Phi(x / (sqrt3 s))^3


class IVStatus(enum.IntEnum):
    """Per-option outcome of :func:`implied_vol` (an ``int32`` array next to the vols).

    Each element gets exactly one status; when several apply, the first in this list wins:
    ``INVALID_INPUT``, ``BELOW_INTRINSIC``, ``ABOVE_UPPER_BOUND``, ``ZERO_TIME_VALUE``,
    ``NOT_CONVERGED``, ``OK``. Gradients of ``vol`` are zero for every non-``OK`` element.
    """

    #: Converged; ``vol`` reprices the input to the accuracy its rounding allows.
    OK = 0
    #: The undiscounted price is below the intrinsic value on the forward, ``max(w (F - K), 0)``,
    #: by more than the rounding of that subtraction (a few ulp of ``max(c, F, K)`` in the
    #: money; any amount below 0 out of the money). A negative price lands here. ``vol`` is NaN.
    BELOW_INTRINSIC = 1
    #: The undiscounted price is at or above its limit for infinite volatility, ``F`` for a
    #: call or ``K`` for a put. ``vol`` is NaN.
    ABOVE_UPPER_BOUND = 2
    #: No time value to invert: ``expiry == 0`` (expired), or the time value is within the
    #: rounding of the intrinsic value (in the money), or the normalised out-of-the-money price
    #: ``c / sqrt(F K)`` is below ``tiny / eps`` of its dtype (about 1e-292 in float64, 1e-31
    #: in float32), where its digits would be subnormal. ``vol`` is NaN: any small enough vol
    #: reproduces the price.
    ZERO_TIME_VALUE = 3
    #: The last Householder step was larger than ``eps**(1/3)`` times ``sigma sqrt(T)`` (with
    #: order-four convergence the error after it may exceed ``eps``), or the iterate is not
    #: finite. Seen only with a reduced ``n_iter``. ``vol`` holds the last iterate.
    NOT_CONVERGED = 4
    #: A NaN or infinite input, ``spot <= 0``, ``strike <= 0`` or ``expiry < 0`` inside
    #: ``jit`` (host inputs raise ``ValueError`` instead). ``vol`` is NaN.
    INVALID_INPUT = 5


# --- the normalised problem -------------------------------------------------------------------


def _log_normal(x: Array) -> Array:
    """Natural log of positive *normal* finite floats (no zeros, subnormals, inf or NaN).

    Splits ``x = 2^e m`` with ``m`` in ``[sqrt(1/2), sqrt 2)`` and sums the atanh series of
    ``ln m = 2 atanh((m - 1)/(m + 1))`` (within 1 ulp of float64 on 4e5 samples). XLA:CPU's
    ``log`` measured 3x slower than this on 1e5 float64s; callers clamp arguments to ``>= tiny``.
    """
    dtype = x.dtype
    if dtype == jnp.float64:
        itype, mant_bits, bias, n_terms = jnp.int64, 52, 1023, 10
    elif dtype == jnp.float32:
        itype, mant_bits, bias, n_terms = jnp.int32, 23, 127, 5
    else:
        return jnp.log(x)
    bits = jax.lax.bitcast_convert_type(x, itype)
    one_bits = bias << mant_bits
    mant_mask = (1 << mant_bits) - 1
    e = (bits >> mant_bits) - bias
    m = jax.lax.bitcast_convert_type((bits & mant_mask) | one_bits, dtype)
    big = m > 1.4142135623730951
    m = jnp.where(big, 0.5 * m, m)
    e = jnp.where(big, e + 1, e).astype(dtype)
    f = (m - 1.0) / (m + 1.0)
    f2 = f * f
    poly = jnp.full_like(f, 1.0 / (2 * n_terms + 1))
    for k in range(2 * n_terms - 1, 0, -2):
        poly = poly * f2 + 1.0 / k
    return e * _LN2 + 2.0 * f * poly


def _normalised_call(x: Array, s: Array, ex2: Array, emx2: Array):
    """Normalised out-of-the-money call ``b(x, s) = e^{x/2} N(x/s + s/2) - e^{-x/2} N(x/s - s/2)``.

    For ``x <= 0`` and ``s > 0``; ``ex2 = e^{x/2}``, ``emx2 = e^{-x/2}``. Returns ``b``, its
    complement ``e^{x/2} - b`` (computed without cancellation), ``b' = db/ds`` and the ratios
    ``b''/b'`` and ``b'''/b'``.
    """
    inv_s = 1.0 / s
    h = x * inv_s
    t = 0.5 * s
    y1 = h + t
    q1 = ndtr(-jnp.abs(y1))  # the smaller of N(y1) and N(-y1), to full relative precision
    n1 = jnp.where(y1 < 0, q1, 1.0 - q1)
    m1 = jnp.where(y1 < 0, 1.0 - q1, q1)
    n2 = ndtr(h - t)  # h - t < 0 always
    b = ex2 * n1 - emx2 * n2
    cb = ex2 * m1 + emx2 * n2
    b1 = _INV_SQRT_2PI * jnp.exp(-0.5 * (h * h + t * t))
    b2 = (h * h - t * t) * inv_s
    hs = h * inv_s
    b3 = b2 * b2 - 3.0 * hs * hs - 0.25
    return b, cb, b1, b2, b3


def _rational_cubic(v, xl, xr, yl, yr, dl, dr, r):
    """Delbourgo-Gregory rational cubic through (xl, yl), (xr, yr) with end slopes dl, dr.

    ``r = 3`` is the cubic Hermite interpolant; ``r -> inf`` tends to the straight line.
    """
    h = xr - xl
    t = (v - xl) / h
    o = 1.0 - t
    num = yr * t**3 + (r * yr - h * dr) * t * t * o + (r * yl + h * dl) * t * o * o + yl * o**3
    return num / (1.0 + (r - 3.0) * t * o)


def _ratio(num: Array, den: Array) -> Array:
    """``num / den`` that is ``+-huge`` (sign of ``num``), never NaN, when ``den == 0``."""
    tiny = np.finfo(num.dtype).tiny
    return num / jnp.where(den == 0, jnp.where(num < 0, -tiny, tiny), den)


def _control_parameter(xl, xr, yl, yr, dl, dr, y2, at_left, big):
    """The rational cubic's ``r`` that matches ``y''`` at one end, raised to keep its shape.

    With ``h = xr - xl`` and ``dy = yr - yl``, the rational cubic's second derivative at the
    left end is ``2 [r (dy - h dl) + h (dl - dr)] / h^2`` (symmetrically at the right end);
    solving for ``r`` gives the fit. Delbourgo & Gregory's conditions then keep monotone data
    monotone (``r >= h (dl + dr) / dy``) and convex or concave data so
    (``r >= h (dr - dl) / (h dr - dy)`` and ``h (dr - dl) / (dy - h dl)``).
    """
    h = xr - xl
    dy = yr - yl
    hdl = h * dl
    hdr = h * dr
    r_fit = _ratio(0.5 * h * h * y2 + hdr - hdl, jnp.where(at_left, dy - hdl, hdr - dy))
    r_mono = _ratio(hdl + hdr, dy)
    r_conv = jnp.maximum(_ratio(hdr - hdl, hdr - dy), _ratio(hdr - hdl, dy - hdl))
    monotone = (dl * dy >= 0) & (dr * dy >= 0)
    shaped = ((hdl <= dy) & (dy <= hdr)) | ((hdl >= dy) & (dy >= hdr))
    r = jnp.maximum(r_fit, -0.999)
    r = jnp.where(monotone, jnp.maximum(r, r_mono), r)
    r = jnp.where(shaped, jnp.maximum(r, r_conv), r)
    return jnp.minimum(r, big)


def _inverse_normal_tail(log_u: Array) -> Array:
    """``N^{-1}(u)`` for ``0 < u <= 1/2`` from ``ln u``, to 4.5e-4 absolute.

    Abramowitz & Stegun 26.2.23. Only the initial guess uses it: its error is far below that
    of the rational-cubic interpolation (up to ~10% in the lower branch), which the
    Householder steps remove; a full-precision quantile cost 5x more here for nothing.
    """
    t = jnp.sqrt(-2.0 * log_u)
    num = 2.515517 + t * (0.802853 + t * 0.010328)
    den = 1.0 + t * (1.432788 + t * (0.189269 + t * 0.001308))
    return num / den - t


def _solve_normalised(x: Array, beta: Array, n_iter: int):
    """Total standard deviation ``s`` with ``b(x, s) = beta``; ``x <= 0``, ``0 < beta < e^{x/2}``.

    Returns ``(s, last_step)``.
    """
    dtype = x.dtype
    big = float(1.0 / np.finfo(dtype).eps) ** 2
    tiny = float(np.finfo(dtype).tiny)
    ax = -x
    ex2 = jnp.exp(0.5 * x)
    emx2 = 1.0 / ex2
    b_max = ex2

    # The inflection point s_c and the tangent there, which meets 0 at s_l and b_max at s_u.
    s_c = jnp.sqrt(2.0 * ax)
    b_c = 0.5 * ex2 - emx2 * ndtr(-s_c)  # N(x/s_c + s_c/2) = N(0) = 1/2
    inv_v_c = _SQRT_2PI * emx2  # 1 / b'(s_c)
    s_l = jnp.maximum(s_c - b_c * inv_v_c, 0.0)
    s_u = s_c + (b_max - b_c) * inv_v_c
    upper_half = beta > b_c
    # Only the node on beta's side of b_c is needed: one Black evaluation, not two.
    s_n = jnp.where(upper_half, s_u, s_l)
    live = s_n > 0
    s_n_safe = jnp.where(live, s_n, 1.0)
    b_n, _, v_n, b2_n, _ = _normalised_call(x, s_n_safe, ex2, emx2)
    b_n = jnp.where(live, b_n, 0.0)
    lower = ~upper_half & (beta < b_n)
    upper = upper_half & (beta > b_n)
    middle = ~(lower | upper)

    # Transformed coordinates of the outer branches and their derivatives at the node.
    # lower: f(s) = scale |x| N(z)^3, z = x / (sqrt3 s)  (same leading asymptotics as b, s -> 0)
    # upper: f(s) = N(-s/2)                             (b_max - b ~ 2 N(-s/2), s -> inf)
    inv_s_n = 1.0 / s_n_safe
    z_n = (x / _SQRT3) * inv_s_n
    arg = jnp.where(lower, z_n, -0.5 * s_n_safe)
    cdf = ndtr(arg)
    pdf = _INV_SQRT_2PI * jnp.exp(-0.5 * arg * arg)
    scale = _LOWER_MAP_SCALE * ax
    dz = -z_n * inv_s_n
    d2z = -2.0 * dz * inv_s_n
    f_lo = scale * cdf**3
    f1_lo = 3.0 * scale * cdf * cdf * pdf * dz
    f2_lo = 3.0 * scale * cdf * pdf * ((2.0 * pdf - cdf * z_n) * dz * dz + cdf * d2z)
    f_n = jnp.where(lower, f_lo, cdf)
    f1 = jnp.where(lower, f1_lo, -0.5 * pdf)
    f2 = jnp.where(lower, f2_lo, 0.125 * s_n_safe * pdf)
    inv_v_n = 1.0 / v_n
    df = f1 * inv_v_n  # df/dbeta
    d2f = (f2 - df * b2_n * v_n) * inv_v_n * inv_v_n  # d2f/dbeta2

    # One rational cubic with per-branch nodes:
    #   lower        f(beta) on [0, b_l],     slopes 1, df;         fit f'' at b_l
    #   middle-lower s(beta) on [b_l, b_c],   slopes 1/v_l, 1/v_c;  fit s'' = 0 at b_c
    #   middle-upper s(beta) on [b_c, b_u],   slopes 1/v_c, 1/v_u;  fit s'' = 0 at b_c
    #   upper        f(beta) on [b_u, b_max], slopes df, -1/2;      fit f'' at b_u
    zero = jnp.zeros_like(x)
    one = jnp.ones_like(x)
    xl = jnp.where(lower, zero, jnp.where(upper_half, b_c, b_n))
    xl = jnp.where(upper, b_n, xl)
    xr = jnp.where(lower, b_n, jnp.where(upper_half, b_n, b_c))
    xr = jnp.where(upper, b_max, xr)
    yl = jnp.where(lower, zero, jnp.where(upper_half, s_c, s_n))
    yl = jnp.where(upper, f_n, yl)
    yr = jnp.where(lower, f_n, jnp.where(upper_half, s_n, s_c))
    yr = jnp.where(upper, zero, yr)
    dl = jnp.where(lower, one, jnp.where(upper_half, inv_v_c, inv_v_n))
    dl = jnp.where(upper, df, dl)
    dr = jnp.where(lower, df, jnp.where(upper_half, inv_v_n, inv_v_c))
    dr = jnp.where(upper, -0.5 * one, dr)
    y2 = jnp.where(middle, zero, d2f)
    r = _control_parameter(xl, xr, yl, yr, dl, dr, y2, upper_half, big)
    y = _rational_cubic(beta, xl, xr, yl, yr, dl, dr, r)
    # Back from f to s: lower s = x / (sqrt3 N^{-1}((f/scale)^{1/3})), upper s = -2 N^{-1}(f).
    log_f = _log_normal(jnp.maximum(jnp.where(lower, y / scale, jnp.minimum(y, 0.5)), tiny))
    log_u = jnp.where(lower, log_f / 3.0, jnp.where(upper, log_f, -1.0))
    z = _inverse_normal_tail(jnp.minimum(log_u, -_LN2))
    s = jnp.where(lower, x / (_SQRT3 * z), jnp.where(upper, -2.0 * z, y))

    # Householder(3) steps; the true root lies in the branch's bracket, so clamp to it.
    lo = jnp.where(lower, zero, jnp.where(upper_half, s_c, s_l))
    lo = jnp.where(upper, s_u, lo)
    hi = jnp.where(lower, s_l, jnp.where(upper_half, s_u, s_c))
    hi = jnp.where(upper, jnp.full_like(x, jnp.inf), hi)
    s = jnp.clip(s, lo, hi)
    s = jnp.where(s > 0, s, 0.5 * hi)
    # Targets of the transformed objectives: ln beta (lower), ln(b_max - beta) (upper).
    half = 0.5 * one  # any value in (0, 1) for the middle branch, whose objective has no log
    target = jnp.where(lower, beta, jnp.where(upper, b_max - beta, half))
    log_target = _log_normal(jnp.maximum(target, tiny))
    inv_log_target = 1.0 / log_target
    step = jnp.zeros_like(s)
    for _ in range(n_iter):
        b, cb, b1, b2, b3 = _normalised_call(x, s, ex2, emx2)
        # Objectives g: lower 1/ln b - 1/ln beta; upper ln(b_max - beta) - ln(b_max - b);
        # middle b - beta. nu = -g/g', eta = g''/g', tau = g'''/g' (derivatives in s).
        side = jnp.maximum(jnp.where(lower, b, jnp.where(upper, cb, half)), tiny)
        log_side = _log_normal(side)
        inv = 1.0 / (side * log_side)
        w = b1 * log_side * inv  # b'/b (lower) or b'/(b_max - b) (upper)
        lam = side * inv  # 1 / ln b (lower)
        num = jnp.where(
            lower,
            (log_target - log_side) * log_side * inv_log_target * b,
            jnp.where(upper, (log_side - log_target) * cb, beta - b),
        )
        nu = num / b1
        k = 1.0 + 2.0 * lam
        eta = jnp.where(lower, b2 - w * k, jnp.where(upper, b2 + w, b2))
        tau_lo = b3 - 3.0 * w * b2 * k + 2.0 * w * w * (1.0 + 3.0 * lam * (1.0 + lam))
        tau_up = b3 + w * (3.0 * b2 + 2.0 * w)
        tau = jnp.where(lower, tau_lo, jnp.where(upper, tau_up, b3))
        step = nu * (1.0 + 0.5 * eta * nu) / (1.0 + nu * (eta + tau * nu / 6.0))
        s_new = jnp.clip(s + step, lo, hi)
        s = jnp.where(s_new > 0, s_new, 0.5 * s)
    return s, step


# --- one option: normalise, classify, solve ---------------------------------------------------


def _implied_vol_primal(n_iter, price, spot, strike, expiry, rate, dividend, is_call):
    dtype = price.dtype
    eps = float(np.finfo(dtype).eps)
    tiny = float(np.finfo(dtype).tiny)
    w = jnp.where(is_call, 1.0, -1.0).astype(dtype)
    valid = (
        jnp.isfinite(price)
        & jnp.isfinite(spot)
        & (spot > 0)
        & jnp.isfinite(strike)
        & (strike > 0)
        & jnp.isfinite(expiry)
        & (expiry >= 0)
        & jnp.isfinite(rate)
        & jnp.isfinite(dividend)
    )
    x = jnp.log(spot / strike) + (rate - dividend) * expiry  # ln(F/K)
    beta = price / strike * jnp.exp(rate * expiry - 0.5 * x)  # c / sqrt(F K)
    ax = jnp.abs(x)
    e = jnp.expm1(0.5 * ax)
    b_max = 1.0 / (1.0 + e)  # e^{-|x|/2}: the out-of-the-money call's upper bound
    itm = w * x > 0
    intrinsic = jnp.where(itm, e * (1.0 + b_max), 0.0)  # 2 sinh(|x|/2) in the money
    tv = beta - intrinsic  # normalised time value = out-of-the-money price
    # Rounding of the in-the-money subtraction: a few ulp of beta and of the intrinsic value,
    # whose error is e^{|x|/2} times that of x (itself ~ eps (1 + |x|)).
    rounding = jnp.where(itm, 4.0 * eps * (beta + (1.0 + ax) * (1.0 + e)), 0.0)
    below = tv < -rounding
    above = tv >= b_max
    no_time_value = (expiry == 0) | (tv <= jnp.maximum(rounding, tiny / eps))
    solvable = valid & ~below & ~above & ~no_time_value

    x_s = jnp.where(solvable, -ax, -1.0)
    tv_s = jnp.where(solvable, tv, 0.25)
    s, step = _solve_normalised(x_s, tv_s, n_iter)
    converged = jnp.isfinite(s) & (s > 0) & (jnp.abs(step) <= eps ** (1.0 / 3.0) * s)
    t_s = jnp.where(solvable, expiry, 1.0)
    vol = s / jnp.sqrt(t_s)

    status = jnp.where(converged, jnp.int32(IVStatus.OK), jnp.int32(IVStatus.NOT_CONVERGED))
    status = jnp.where(no_time_value, jnp.int32(IVStatus.ZERO_TIME_VALUE), status)
    status = jnp.where(above, jnp.int32(IVStatus.ABOVE_UPPER_BOUND), status)
    status = jnp.where(below, jnp.int32(IVStatus.BELOW_INTRINSIC), status)
    status = jnp.where(valid, status, jnp.int32(IVStatus.INVALID_INPUT))
    vol = jnp.where(solvable, vol, jnp.nan)
    return vol, status


@partial(jax.custom_jvp, nondiff_argnums=(0,))
def _implied_vol_scalar(n_iter, price, spot, strike, expiry, rate, dividend, is_call):
    return _implied_vol_primal(n_iter, price, spot, strike, expiry, rate, dividend, is_call)


@_implied_vol_scalar.defjvp
def _implied_vol_scalar_jvp(n_iter, primals, tangents):
    """Implicit function theorem: ``V(x, vol(x)) = price`` gives
    ``dvol = (dprice - sum_i dV/dx_i dx_i) / vega``; zero for non-OK elements."""
    price, spot, strike, expiry, rate, dividend, is_call = primals
    d_price, d_spot, d_strike, d_expiry, d_rate, d_dividend, _ = tangents
    vol, status = _implied_vol_primal(n_iter, *primals)
    ok = status == IVStatus.OK
    one = jnp.ones_like(price)
    zero = jnp.zeros_like(price)
    # Evaluate the partials at a harmless point where not OK (double-where: no NaN leaks).
    at = (
        jnp.where(ok, spot, one),
        jnp.where(ok, strike, one),
        jnp.where(ok, expiry, one),
        jnp.where(ok, rate, zero),
        jnp.where(ok, dividend, zero),
        jnp.where(ok, vol, 0.2 * one),
    )

    def value(s, k, t, r, q, v):
        return black_scholes_scalar(s, k, t, r, q, v, is_call)

    _, d_value = jax.jvp(value, at, (d_spot, d_strike, d_expiry, d_rate, d_dividend, zero))
    _, vega = jax.jvp(value, at, (zero, zero, zero, zero, zero, one))
    use = ok & (vega > 0)
    inv_vega = jnp.where(use, 1.0 / jnp.where(use, vega, one), zero)
    d_vol = (d_price - d_value) * inv_vega
    return (vol, status), (d_vol, np.zeros(np.shape(status), dtype=jax.dtypes.float0))


@partial(jax.jit, static_argnames=("n_iter",))
def _implied_vol_jit(price, spot, strike, expiry, rate, dividend, is_call, n_iter):
    price, spot, strike, expiry, rate, dividend = _cast(
        (price, spot, strike, expiry, rate, dividend)
    )
    kernel = jnp.vectorize(partial(_implied_vol_scalar, n_iter))
    return kernel(price, spot, strike, expiry, rate, dividend, _bool(is_call))


def _check_iv(price, spot, strike, expiry, rate, dividend, is_call, n_iter, spot_name="spot"):
    if isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter < 1:
        raise ValueError(f"n_iter: must be an int >= 1, got {n_iter!r}")
    check_values("price", price)
    check_values(spot_name, spot, gt=0.0)
    check_values("strike", strike, gt=0.0)
    check_values("expiry", expiry, ge=0.0)
    check_values("rate", rate)
    named = {"price": price, spot_name: spot, "strike": strike, "expiry": expiry, "rate": rate}
    if dividend is not None:
        check_values("dividend", dividend)
        named["dividend"] = dividend
    named["is_call"] = is_call
    check_broadcast(named)


# --- public API -------------------------------------------------------------------------------


def implied_vol(
    price: ArrayLike,
    spot: ArrayLike,
    strike: ArrayLike,
    expiry: ArrayLike,
    rate: ArrayLike,
    dividend: ArrayLike,
    is_call: ArrayLike,
    *,
    n_iter: int = 2,
) -> tuple[Array, Array]:
    """Black-Scholes-Merton implied volatility of European option prices, with a status each.

    Inverts :func:`jaxmm.pricing.bsm_price` element by element, broadcasting over every
    argument, with a fixed amount of work per option (no data-dependent loop): a rational
    initial guess and ``n_iter`` Householder(3) steps (Jäckel 2015, "Let's Be Rational";
    see the module docstring and docs/pricing.md).

    Args:
        price: option value ``V`` (discounted, per unit of underlying). Any finite number; a
            price outside the no-arbitrage bounds is a status, not an exception.
        spot: underlying price ``S > 0``.
        strike: strike ``K > 0``.
        expiry: time to expiry ``T >= 0`` in years (ACT/365F).
        rate: continuously compounded risk-free rate ``r`` (may be negative).
        dividend: continuously compounded dividend / borrow yield ``q``.
        is_call: True for calls, False for puts.
        n_iter: Householder steps (static, one compilation per value). 2 reaches the accuracy
            floor in float64 and float32; with 1, options whose last step was not tiny are
            reported ``NOT_CONVERGED``.

    Returns:
        ``(vol, status)``: the annualised volatility (a fraction) in the inputs' float dtype and
        an ``int32`` :class:`IVStatus` per option, both of the broadcast shape. ``vol`` is NaN
        where the status is not ``OK`` (the last iterate for ``NOT_CONVERGED``).

    Bounds are checked on the forward, so negative rates need no special case:
    ``max(w (F - K), 0) <= V e^{rT} <= F`` (call) or ``K`` (put), ``F = S e^{(r - q) T}``.

    Accuracy. Vega is *informative* where ``vega >= 1e-3 * price`` (vega per 1.00 vol: a
    relative price error of 1e-13, about 450 ulp, then moves sigma by at most 1e-10) and the
    normalised price ``V e^{rT} / sqrt(F K)`` is above ``tiny / eps``. There a float64 price
    from :func:`bsm_price` gives back sigma within 1e-10 absolute (tested on the issue's grid:
    1 day..3 years, sigma 5%..150%, deep ITM/OTM, q > 0, r < 0; measured <= 3e-12). Elsewhere
    the status is ``OK`` (the vol reprices the input to ~1e-15 (S + K)) or
    ``ZERO_TIME_VALUE``, but the price pins sigma down only to ``|price error| / vega``. Floor
    of the Black function (a difference of two normal CDFs): near the money with
    ``sigma sqrt(T) < 1e-6`` the relative accuracy of sigma is about ``eps / (sigma sqrt T)``.

    Differentiable: ``jax.grad``/``jax.jvp`` use the implicit function theorem,
    ``dvol = (dprice - sum_x dV/dx dx) / vega`` for every input ``x``, so the iterations are
    never differentiated; gradients are 0 for non-``OK`` elements (never NaN).

    Raises:
        ValueError: naming the argument, for host inputs that are not finite, ``spot`` or
            ``strike`` not > 0, ``expiry`` < 0, shapes that do not broadcast, or a bad
            ``n_iter``. JAX arrays are not checked: bad values become ``INVALID_INPUT``.

    Example:
        >>> import jax.numpy as jnp, jaxmm.pricing as jp
        >>> from jaxmm.pricing._iv import implied_vol, IVStatus
        >>> k = jnp.array([80.0, 100.0, 120.0])
        >>> p = jp.bsm_price(100.0, k, 0.5, 0.03, 0.01, 0.25, True)
        >>> vol, status = implied_vol(p, 100.0, k, 0.5, 0.03, 0.01, True)
        >>> bool(jnp.all(jnp.abs(vol - 0.25) < 1e-12)), bool(jnp.all(status == IVStatus.OK))
        (True, True)
    """
    _check_iv(price, spot, strike, expiry, rate, dividend, is_call, n_iter)
    return _implied_vol_jit(price, spot, strike, expiry, rate, dividend, is_call, n_iter=n_iter)


def implied_vol_black76(
    price: ArrayLike,
    forward: ArrayLike,
    strike: ArrayLike,
    expiry: ArrayLike,
    rate: ArrayLike,
    is_call: ArrayLike,
    *,
    n_iter: int = 2,
) -> tuple[Array, Array]:
    """Black (1976) implied volatility: inverts :func:`jaxmm.pricing.black76_price`.

    Same algorithm, statuses, accuracy and differentiability as :func:`implied_vol`, with the
    forward ``F`` given (carry 0): the price is ``e^{-rT}`` times the undiscounted Black value,
    and gradients with respect to ``rate`` move only the discount factor.

    Example:
        >>> import jaxmm.pricing as jp
        >>> from jaxmm.pricing._iv import implied_vol_black76
        >>> p = jp.black76_price(100.0, 105.0, 0.25, -0.005, 0.3, False)
        >>> vol, status = implied_vol_black76(p, 100.0, 105.0, 0.25, -0.005, False)
        >>> round(float(vol), 12), int(status)
        (0.3, 0)
    """
    _check_iv(price, forward, strike, expiry, rate, None, is_call, n_iter, spot_name="forward")
    return _implied_vol_jit(price, forward, strike, expiry, rate, rate, is_call, n_iter=n_iter)
