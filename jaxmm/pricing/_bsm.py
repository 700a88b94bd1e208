"""Generalised Black-Scholes-Merton and Black-76: prices and autodiff Greeks for whole chains.

Model (Merton 1973; Black 1976; the "generalised BSM" with cost of carry ``b = r - q`` as in
Haug, *The Complete Guide to Option Pricing Formulas*, 2nd ed., sec. 1.1.6):

    F  = S exp((r - q) T)                  forward
    s  = sigma sqrt(T)                     total standard deviation
    d1 = (ln(F/K) + s^2/2) / s,  d2 = d1 - s
    call = exp(-rT) [F N(d1)  - K N(d2)]
    put  = exp(-rT) [K N(-d2) - F N(-d1)]

Units: spot and strike in the same currency; ``expiry`` in years (ACT/365F, see
:func:`jaxmm.pricing.year_fraction`); ``rate`` and ``dividend`` continuously compounded per
year; ``vol`` annualised as a fraction (0.2 = 20%). ``is_call`` is data (bool array or Python
bool), so one compiled kernel prices calls and puts together.

Singular inputs stay finite in value and gradient (the double-``where``): when ``s`` is zero
(``T = 0`` or ``vol = 0``) the price is the discounted intrinsic value on the forward,
``exp(-rT) max(w (F - K), 0)``, and the masked branch is evaluated at a harmless point so no
NaN leaks into gradients. Tails use ``ndtr(w d)`` with ``w = -1`` for puts, never
``1 - ndtr``, so deep out-of-the-money prices keep full relative precision.

How the kernels are made fast (measured on a 2-core AVX-512 CPU; see
``benchmarks/bench_pricing.py``):

- The price is written in discounted form, ``V = w [a N(w d1) - b N(w d2)]`` with
  ``a = S e^{-qT}`` and ``b = K e^{-rT}``, and ``ln(F/K) = ln(S/K) + (r - q) T``: two
  exponentials and one logarithm per option, no division by the discount factor.
- In float64, XLA:CPU calls a scalar ``log`` and scalarises ``exp`` inside vectorised loops.
  The kernels' normal CDF, exponentials and logarithm are written as plain arithmetic
  (Cody-Waite range reduction plus polynomials) that LLVM vectorises; they are accurate to a few
  ulp. float32 uses XLA's own (already vectorised) functions.
- The normal CDF shares its Gaussian factor ``exp(-x^2/2)`` with the normal density that the
  Greeks need, so the tangent passes reuse the primal's exponentials.
- All Greeks of a batch are produced by one XLA loop fusion instead of ~20 (see
  :func:`jaxmm.pricing._greeks.one_pass`), and the kernels ask XLA for 512-bit vectors.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._dtypes import common_float_dtype
from .._validate import check_broadcast, check_values, is_host_value
from ._greeks import (
    CoreGreeks,
    Greeks,
    autodiff_core_greeks,
    autodiff_greeks,
    one_pass,
)

__all__ = [
    "bsm_price",
    "black76_price",
    "bsm_greeks",
    "bsm_core_greeks",
    "bsm_greeks_packed",
    "bsm_core_greeks_packed",
    "black76_greeks",
    "bsm_greeks_analytic",
    "black_scholes_scalar",
    "ndtr",
    "norm_pdf",
    "PACKED_INPUT_FIELDS",
]

Array = jax.Array
ArrayLike = Any

_INV_SQRT2 = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327

# Per-jit XLA options (they do not touch global flags). 512-bit vectors cut the instruction
# count of the transcendental-heavy loops on AVX-512 CPUs (1M options, price + 5 Greeks: ~27%
# less CPU time); other targets legalise them. Batches below _PARALLEL_MIN options also skip
# XLA:CPU's parallel task assignment: splitting a 100-option loop over two threads saved
# nothing and the hand-off made the median latency 4x worse on a busy 2-core machine (the
# first measured: 17 us min / 83 us median split, 15 / 18 us serial; at 20,000 options the
# split was still no faster there). JAX accepts compiler options on top-level jits only, so
# each kernel keeps a plain twin for calls made under jit / grad / vmap.
_COMPILER_OPTIONS = {"xla_cpu_prefer_vector_width": 512}
_SERIAL_OPTIONS = {**_COMPILER_OPTIONS, "xla_disable_hlo_passes": "cpu-parallel-task-assigner"}
_PARALLEL_MIN = 8192

try:  # private, but the one test JAX itself uses for "not inside any transformation"
    from jax._src.core import trace_state_clean as _top_level
except ImportError:  # pragma: no cover - a future JAX without it: always take the plain jit

    def _top_level() -> bool:
        return False


def _largest_size(*args, **kwargs) -> int:
    n = 1
    for a in args:
        size = getattr(a, "size", None)
        if size is None and isinstance(a, list | tuple):
            size = len(a)
        if size is not None and size > n:
            n = size
    return n


class _Kernel:
    """A jitted kernel with per-jit compiler options.

    At top level it runs a twin compiled with :data:`_COMPILER_OPTIONS` (and without parallel
    task assignment below :data:`_PARALLEL_MIN` options, as counted by ``size_of``); inside a
    transformation (jit, grad, vmap) it runs a plain ``jax.jit`` twin so that it nests.
    """

    def __init__(self, fun, size_of=_largest_size, **jit_kwargs):
        self.fast = jax.jit(fun, compiler_options=_COMPILER_OPTIONS, **jit_kwargs)
        self.serial = jax.jit(fun, compiler_options=_SERIAL_OPTIONS, **jit_kwargs)
        self.nested = jax.jit(fun, **jit_kwargs)
        self.size_of = size_of
        self.__wrapped__ = fun
        self.__name__ = getattr(fun, "__name__", "kernel")
        self.__doc__ = getattr(fun, "__doc__", None)

    def pick(self, *args, **kwargs):
        """The twin that a call with these arguments runs."""
        if not _top_level():
            return self.nested
        if self.size_of(*args, **kwargs) >= _PARALLEL_MIN:
            return self.fast
        return self.serial

    def __call__(self, *args, **kwargs):
        return self.pick(*args, **kwargs)(*args, **kwargs)

    def lower(self, *args, **kwargs):
        return self.pick(*args, **kwargs).lower(*args, **kwargs)

    def _cache_size(self) -> int:
        """Compiled-trace count over the twins (what no-retrace tests watch)."""
        return sum(f._cache_size() for f in (self.fast, self.serial, self.nested))


def _jit(fun=None, **kwargs):
    """Decorator: a :class:`_Kernel` (``jax.jit`` with this module's compiler options)."""
    if fun is None:
        return partial(_jit, **kwargs)
    return _Kernel(fun, **kwargs)


# --- elementary functions: vectorisable float64 exp / log / normal CDF ----------------------
#
# float64 only (float32 keeps XLA's implementations, which are vectorised already).

_LOG2E = 1.4426950408889634
_LN2_HI = 0.693145751953125  # ln 2 rounded to 21 bits: n * _LN2_HI is exact for |n| < 2^32
_LN2_LO = 1.4286068203094173e-06  # ln 2 - _LN2_HI
_EXP_TAYLOR = tuple(1.0 / math.factorial(k) for k in range(14))  # |r| <= ln2/2: error 4e-18
_ATANH_SERIES = tuple(2.0 / (2 * k + 1) for k in range(11))  # 2 atanh(s), s^2 <= 0.0295
_SQRT2 = 1.4142135623730951


def _horner(coefs: tuple[float, ...], x: Array) -> Array:
    acc = jnp.full_like(x, coefs[-1])
    for c in reversed(coefs[:-1]):
        acc = acc * x + c
    return acc


def _pow2(n: Array) -> Array:
    """2**n for integer-valued float64 ``n`` in [-1022, 1023], built from exponent bits."""
    bits = lax.shift_left(n.astype(jnp.int64) + 1023, jnp.int64(52))
    return lax.bitcast_convert_type(bits, jnp.float64)


@jax.jit  # traced once per shape: keeps the Greeks' nested-autodiff graphs small
def _exp64(x: Array) -> Array:
    # Cody-Waite: x = n ln2 + r, |r| <= ln2/2; exp(r) by its Taylor polynomial (degree 13);
    # 2^n applied in two halves so results that underflow to subnormals round once.
    x = jnp.clip(x, -746.0, 710.0)
    n = jnp.floor(x * _LOG2E + 0.5)
    r = (x - n * _LN2_HI) - n * _LN2_LO
    n1 = jnp.floor(n * 0.5)
    return _horner(_EXP_TAYLOR, r) * _pow2(n1) * _pow2(n - n1)


@jax.custom_jvp
def _exp(x: Array) -> Array:
    """``exp`` that LLVM can vectorise in float64 (max error ~2 ulp); ``jnp.exp`` otherwise."""
    if x.dtype != jnp.float64:
        return jnp.exp(x)
    return _exp64(x)


@_exp.defjvp
def _exp_jvp(primals, tangents):
    y = _exp(primals[0])
    return y, y * tangents[0]


@jax.jit  # traced once per shape: keeps the Greeks' nested-autodiff graphs small
def _log64(x: Array) -> Array:
    # x = 2^e m with m in [sqrt(1/2), sqrt(2)); log m = 2 atanh(s), s = (m - 1)/(m + 1).
    # Subnormal inputs read as 0 (XLA:CPU flushes denormals, as for jnp.log): -inf.
    bits = lax.bitcast_convert_type(x, jnp.int64)
    e = lax.shift_right_logical(bits, jnp.int64(52)) - 1023
    m = lax.bitcast_convert_type(
        (bits & jnp.int64(0x000FFFFFFFFFFFFF)) | jnp.int64(0x3FF0000000000000), jnp.float64
    )
    big = m > _SQRT2
    m = jnp.where(big, 0.5 * m, m)
    k = e.astype(jnp.float64) + jnp.where(big, 1.0, 0.0)
    f = m - 1.0
    s = f / (2.0 + f)
    out = k * _LN2_HI + (s * _horner(_ATANH_SERIES, s * s) + k * _LN2_LO)
    out = jnp.where(x > 0, out, jnp.where(x == 0, -jnp.inf, jnp.nan))  # NaN stays NaN
    return jnp.where(x == jnp.inf, jnp.inf, out)


@jax.custom_jvp
def _log(x: Array) -> Array:
    """``log`` that LLVM can vectorise in float64 (max error ~4e-16 relative)."""
    if x.dtype != jnp.float64:
        return jnp.log(x)
    return _log64(x)


@_log.defjvp
def _log_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return _log(x), dx / x


@jax.jit  # traced once per shape: keeps the Greeks' nested-autodiff graphs small
def _gauss64(x: Array) -> Array:
    return _exp64(-0.5 * x * x)


@jax.custom_jvp
def _gauss(x: Array) -> Array:
    """``exp(-x^2/2)``, the factor :func:`_ncdf` shares with the density (derivative ``-x g``)."""
    if x.dtype != jnp.float64:
        return jnp.exp(-0.5 * x * x)
    return _gauss64(x)


@_gauss.defjvp
def _gauss_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    g = _gauss(x)
    return g, -x * g * dx


@jax.custom_jvp
def ndtr(x: Array) -> Array:
    """Standard normal CDF, ``N(x) = erfc(-x / sqrt 2) / 2``.

    One ``erfc`` (XLA's, accurate to a few ulp in both tails) instead of
    ``jax.scipy.special.ndtr``, which evaluates erf and erfc on every element and was 8x slower
    here. ``erfc`` of a positive argument keeps the lower tail's relative precision, so
    ``ndtr(-x)`` is the accurate upper tail. Its derivative is the normal pdf, given exactly by
    a custom JVP (so Greeks never differentiate a polynomial approximation).

    This is the general-purpose CDF (cheap to trace under deep autodiff). The BSM kernels use
    ``_ncdf``, a float64 version that LLVM vectorises and that shares its exponential with
    the density; both agree to ~1e-15 relative.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxmm.pricing._bsm import ndtr
        >>> round(float(ndtr(jnp.asarray(1.0))), 10)
        0.8413447461
    """
    return 0.5 * lax.erfc(-x * _INV_SQRT2)


@ndtr.defjvp
def _ndtr_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return ndtr(x), norm_pdf(x) * dx


def norm_pdf(x: Array) -> Array:
    """Standard normal density ``exp(-x^2/2) / sqrt(2 pi)``.

    Example:
        >>> import jaxmm.pricing._bsm as b
        >>> round(float(b.norm_pdf(0.0)), 6)
        0.398942
    """
    return _INV_SQRT_2PI * jnp.exp(-0.5 * x * x)


# Mills-ratio polynomial for the float64 normal CDF. With z >= 0, t = (z - L)/(z + L):
#     N(-z) = exp(-z^2/2) * P(t) / (z + L),   L = 3.5, P of degree 22.
# The coefficients are a relative-error least-squares fit made for jaxmm in 50-digit arithmetic
# (mpmath) at 106 Chebyshev nodes of t over z in [0, 38.6] (beyond which N(-z) underflows).
# The mapping follows Weideman (1994), "Computation of the complex error function", SIAM J.
# Numer. Anal. 31(5). Measured against scipy.special.ndtr: <= 7e-16 relative on |x| <= 1 and
# x >= 0; in the lower tail the error grows like 2e-16 x^2 (rounding of x^2 inside the exp),
# e.g. 4e-15 at x = -5, 3e-14 at x = -12.
_MILLS_L = 3.5
_MILLS_P = (
    0.74441607543593817176,
    -0.56556181605377883271,
    0.31542496988793811933,
    -0.11605092871408979464,
    0.017407832602813857237,
    0.00647621892014069475,
    -0.003189101064141493095,
    -0.0004450129536683809651,
    0.00047665726934505633888,
    0.00006703326737273232915,
    -0.000075585695269311313181,
    -0.000018789149813861336449,
    0.000011510642502466426556,
    5.6531105269114528309e-6,
    -1.1750689311729776775e-6,
    -1.4828239779907938303e-6,
    -1.2694590769446873297e-7,
    3.0145904758515268741e-7,
    1.0745538904242042297e-7,
    -3.8389317333132340611e-8,
    -2.6867452002044689866e-8,
    1.5226144853695812021e-9,
    2.5428312751937096857e-9,
)


@jax.jit  # traced once per shape: keeps the Greeks' nested-autodiff graphs small
def _ndtr64(x: Array) -> Array:
    z = jnp.minimum(jnp.abs(x), 40.0)
    inv = 1.0 / (z + _MILLS_L)
    lower = _exp64(-0.5 * x * x) * (_horner(_MILLS_P, (z - _MILLS_L) * inv) * inv)  # N(-|x|)
    return jnp.where(x < 0, lower, 1.0 - lower)


@jax.custom_jvp
def _ncdf(x: Array) -> Array:
    """Normal CDF for the BSM kernels; exact derivative (the density) by custom JVP.

    float64: ``N(-|x|) = exp(-x^2/2) M(|x|)`` with the fitted Mills-ratio polynomial above, so
    the lower tail keeps its relative precision, the Gaussian factor is the same expression as
    in the density (XLA computes it once), and nothing calls scalar libm: the loop vectorises.
    ``N(x) = 1 - N(-x)`` for ``x > 0``. float32: :func:`ndtr`.
    """
    if x.dtype != jnp.float64:
        return 0.5 * lax.erfc(-x * _INV_SQRT2)
    return _ndtr64(x)


@_ncdf.defjvp
def _ncdf_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return _ncdf(x), (_INV_SQRT_2PI * _gauss(x)) * dx


# --- the Black value in discounted form ------------------------------------------------------


def _black_parts(x: Array, s: Array, w: Array):
    """Masked total deviation and ``w d1``, ``w d2`` (double-``where`` at ``s`` = 0)."""
    tiny = jnp.asarray(np.finfo(s.dtype).eps, s.dtype) ** 2
    live = ~(s <= tiny)  # NaN stays live, so a NaN input gives a NaN value
    s_ = jnp.where(live, s, jnp.ones_like(s))  # masked input: no 0/0 in either pass
    d1 = x / s_ + 0.5 * s_
    return live, w * d1, w * (d1 - s_)


@jax.custom_jvp
def _black_core(a: Array, b: Array, x: Array, s: Array, w: Array) -> Array:
    """``w [a N(w d1) - b N(w d2)]`` with ``d1 = x/s + s/2``, ``d2 = d1 - s``.

    ``a`` and ``b`` are the discounted forward and strike (``S e^{-qT}``, ``K e^{-rT}`` — or
    ``F``, ``K`` for the undiscounted value), ``x = ln(a/b)`` passed in precomputed (the caller
    forms it as ``ln(S/K) + (r - q) T``, one log of a ratio of strikes), ``s`` the total
    standard deviation, ``w = +1`` call, ``-1`` put. At ``s = 0`` the value is the intrinsic
    ``max(w (a - b), 0)``.

    Derivative rule (Black's exact partials; homogeneous of degree 1 in ``(a, b)``):
    ``dV/da = w N(w d1)``, ``dV/db = -w N(w d2)``, ``dV/ds = a n(d1)`` (``a n(d1) = b n(d2)``).
    ``x`` is ``ln(a/b)``, not an independent input, so it has no term of its own: its tangent
    enters the higher derivatives through ``d1`` and ``d2`` inside the rule. The rule is itself
    differentiable, so every higher Greek is still autodiff of the price.
    """
    live, wd1, wd2 = _black_parts(x, s, w)
    value = w * (a * _ncdf(wd1) - b * _ncdf(wd2))
    return jnp.where(live, value, jnp.maximum(w * (a - b), jnp.zeros_like(a)))


@_black_core.defjvp
def _black_core_jvp(primals, tangents):
    a, b, x, s, w = primals
    da, db, _, ds, _ = tangents
    live, wd1, wd2 = _black_parts(x, s, w)
    n1 = _ncdf(wd1)
    n2 = _ncdf(wd2)
    zero = jnp.zeros_like(a)
    itm = (w * (a - b)) > 0
    value = jnp.where(live, w * (a * n1 - b * n2), jnp.maximum(w * (a - b), zero))
    dv_da = jnp.where(live, w * n1, jnp.where(itm, w, zero))
    dv_db = jnp.where(live, -w * n2, jnp.where(itm, -w, zero))
    dv_ds = jnp.where(live, a * (_INV_SQRT_2PI * _gauss(wd1)), zero)
    return value, dv_da * da + dv_db * db + dv_ds * ds


def _sign(is_call: Array, dtype) -> Array:
    return jnp.where(is_call, jnp.asarray(1.0, dtype), jnp.asarray(-1.0, dtype))


def _black_undiscounted(forward: Array, strike: Array, stdev: Array, is_call: Array) -> Array:
    """Undiscounted Black value ``w [F N(w d1) - K N(w d2)]`` of one option.

    ``stdev`` is the total standard deviation ``sigma sqrt(T)``; when it is 0 the value is the
    intrinsic ``max(w (F - K), 0)``. Exact derivative rule (see :func:`_black_core`).
    """
    w = _sign(is_call, forward.dtype)
    return _black_core(forward, strike, _log(forward / strike), stdev, w)


def _safe_sqrt(t: Array) -> Array:
    """sqrt(t) for t >= 0 whose gradient at t = 0 is 0 instead of inf (double-where)."""
    pos = t > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, t, jnp.ones_like(t))), jnp.zeros_like(t))


def black_scholes_scalar(
    spot: Array,
    strike: Array,
    expiry: Array,
    rate: Array,
    dividend: Array,
    vol: Array,
    is_call: Array,
) -> Array:
    """Generalised BSM price of ONE option (scalars in, scalar out); the kernel to vmap.

    Exposed for composition (e.g. ``jax.grad`` with respect to the strike, or use inside a
    user's own ``jit``). Arguments and units as :func:`bsm_price`; no validation. Elementwise,
    so it also accepts equal-shape arrays.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxmm.pricing import black_scholes_scalar
        >>> f = lambda k: black_scholes_scalar(100.0, k, 1.0, 0.05, 0.0, 0.2, True)
        >>> bool(jax.grad(f)(jnp.asarray(100.0)) < 0)   # dV/dK of a call
        True
    """
    spot, strike, expiry, rate, dividend, vol = (
        jnp.asarray(v) for v in (spot, strike, expiry, rate, dividend, vol)
    )
    w = _sign(is_call, spot.dtype)
    a = spot * _exp(-dividend * expiry)
    b = strike * _exp(-rate * expiry)
    x = _log(spot / strike) + (rate - dividend) * expiry
    return _black_core(a, b, x, vol * _safe_sqrt(expiry), w)


def _cast(args: tuple[ArrayLike, ...]) -> tuple[Array, ...]:
    dtype = common_float_dtype(*args)
    return tuple(jnp.asarray(a).astype(dtype) for a in args)


def _bool(x: ArrayLike) -> Array:
    return jnp.asarray(x).astype(bool)


def _scalar_ok(x: Any, gt: float | None, ge: float | None) -> bool | None:
    """Fast verdict for a Python number (True/False), or None when ``x`` is something else."""
    if type(x) is float or type(x) is int:
        if not math.isfinite(x):
            return False
        return (gt is None or x > gt) and (ge is None or x >= ge)
    return None


def _check(
    spot: ArrayLike,
    strike: ArrayLike,
    expiry: ArrayLike,
    rate: ArrayLike,
    dividend: ArrayLike | None,
    vol: ArrayLike,
    is_call: ArrayLike,
    spot_name: str = "spot",
) -> None:
    """Edge validation of the seven standard arguments (ValueError naming the argument).

    Python numbers are checked with plain comparisons and equal shapes skip the broadcast
    test, so the per-call cost stays a few microseconds; anything else, and any failure, goes
    through :func:`jaxmm._validate.check_values` / ``check_broadcast``, which write the
    messages.
    """
    bounds = (
        (spot_name, spot, 0.0, None),
        ("strike", strike, 0.0, None),
        ("expiry", expiry, None, 0.0),
        ("rate", rate, None, None),
        ("dividend", dividend, None, None),
        ("vol", vol, None, 0.0),
    )
    shapes = set()
    for name, value, gt, ge in bounds:
        if value is None:
            continue
        if _scalar_ok(value, gt, ge):
            continue
        check_values(name, value, gt=gt, ge=ge)
        shapes.add(np.shape(value))
    if type(is_call) is not bool:
        shapes.add(np.shape(is_call))
    shapes.discard(())
    if len(shapes) > 1:  # equal shapes always broadcast; otherwise ask numpy (and name it)
        named = {spot_name: spot, "strike": strike, "expiry": expiry, "rate": rate, "vol": vol}
        if dividend is not None:
            named["dividend"] = dividend
        named["is_call"] = is_call
        check_broadcast(named)


# --- jitted batch kernels ---------------------------------------------------------------------


@_jit
def _bsm_price_jit(spot, strike, expiry, rate, dividend, vol, is_call):
    spot, strike, expiry, rate, dividend, vol = _cast((spot, strike, expiry, rate, dividend, vol))
    return black_scholes_scalar(spot, strike, expiry, rate, dividend, vol, _bool(is_call))


def _greeks_kernel(full: bool, spot, strike, expiry, rate, dividend, vol, is_call):
    def f(s, v, t, r):
        return black_scholes_scalar(s, strike, t, r, dividend, v, is_call)

    fn = autodiff_greeks if full else autodiff_core_greeks
    return fn(f, spot, vol, expiry, rate)


def _greeks_batch(full: bool, small: int, spot, strike, expiry, rate, dividend, vol, is_call):
    """Greeks of a broadcast batch (a pytree of arrays of the broadcast shape).

    Batches of at most ``small`` options evaluate the plain vectorised kernel: XLA then
    recomputes shared intermediates per output, which is cheapest when the outputs are
    stacked into one array afterwards (the packed entry points). Larger batches use
    :func:`one_pass`.
    """
    spot, strike, expiry, rate, dividend, vol = _cast((spot, strike, expiry, rate, dividend, vol))
    args = (spot, strike, expiry, rate, dividend, vol, _bool(is_call))
    kernel = jnp.vectorize(partial(_greeks_kernel, full))
    size = math.prod(jnp.broadcast_shapes(*(a.shape for a in args)))
    return kernel(*args) if size <= small else one_pass(kernel, *args)


@partial(_jit, static_argnames=("full",))
def _bsm_greeks_jit(spot, strike, expiry, rate, dividend, vol, is_call, full):
    return _greeks_batch(full, 0, spot, strike, expiry, rate, dividend, vol, is_call)


@_jit
def _black76_price_jit(forward, strike, expiry, rate, vol, is_call):
    forward, strike, expiry, rate, vol = _cast((forward, strike, expiry, rate, vol))
    stdev = vol * _safe_sqrt(expiry)
    df = _exp(-rate * expiry)
    return df * _black_undiscounted(forward, strike, stdev, _bool(is_call))


def _black76_kernel(forward, strike, expiry, rate, vol, is_call):
    # Black-76 is BSM with carry b = 0: dividend = rate, spot = forward.
    def f(fw, v, t, r):
        return black_scholes_scalar(fw, strike, t, r, r, v, is_call)

    return autodiff_greeks(f, forward, vol, expiry, rate)


@_jit
def _black76_greeks_jit(forward, strike, expiry, rate, vol, is_call):
    forward, strike, expiry, rate, vol = _cast((forward, strike, expiry, rate, vol))
    args = (forward, strike, expiry, rate, vol, _bool(is_call))
    return one_pass(jnp.vectorize(_black76_kernel), *args)


# --- packed entry points: one array in, one array out -----------------------------------------

PACKED_INPUT_FIELDS = ("spot", "strike", "expiry", "rate", "dividend", "vol", "is_call")
"""Column order of the ``(..., 7)`` input of :func:`bsm_core_greeks_packed`."""

# Up to this many options the packed kernels recompute instead of using one_pass (measured:
# 7.5 vs 9.4 us for one option, break-even at about 3).
_PACKED_SMALL = 2


def _packed_kernel(full: bool, x: Array) -> Array:
    (x,) = _cast((x,))
    cols = tuple(x[..., i] for i in range(6)) + (x[..., 6] != 0,)
    return jnp.stack(_greeks_batch(full, _PACKED_SMALL, *cols), axis=-1)


def _packed_size(x) -> int:
    return int(getattr(x, "size", 7)) // 7


def _run_packed(kernel: _Kernel, x):
    """``kernel.pick(x)(x)`` inlined: this path is measured in microseconds."""
    if not _top_level():
        return kernel.nested(x)
    if getattr(x, "size", 7) < 7 * _PARALLEL_MIN:
        return kernel.serial(x)
    return kernel.fast(x)


@partial(_jit, size_of=_packed_size)
def _bsm_core_greeks_packed_jit(x):
    return _packed_kernel(False, x)


@partial(_jit, size_of=_packed_size)
def _bsm_greeks_packed_jit(x):
    return _packed_kernel(True, x)


_PACKED_GT = np.array([0.0, 0.0, -np.inf, -np.inf, -np.inf, -np.inf, -np.inf])
_PACKED_GE = np.array([-np.inf, -np.inf, 0.0, -np.inf, -np.inf, 0.0, -np.inf])
_PACKED_BOUNDS = ((0.0, None), (0.0, None), (None, 0.0), (None, None), (None, None))
_PACKED_BOUNDS += ((None, 0.0), (None, None))


def _check_packed(x: ArrayLike) -> None:
    """Edge validation of a host ``(..., 7)`` array; ValueError naming the column."""
    if not is_host_value(x):
        return
    arr = np.asarray(x)
    if arr.ndim == 0 or arr.shape[-1] != 7:
        raise ValueError(
            f"x: last axis must hold the 7 fields {PACKED_INPUT_FIELDS}, got shape {arr.shape}"
        )
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"x: expected numbers, got dtype {arr.dtype}")
    if arr.size <= 70:  # up to 10 options: plain Python beats numpy's per-call overhead
        vals = arr.reshape(-1, 7).tolist()
        if all(
            row[0] > 0.0
            and row[1] > 0.0
            and row[2] >= 0.0
            and row[5] >= 0.0
            and all(math.isfinite(v) for v in row)
            for row in vals
        ):
            return
    # one vectorised pass: NaN fails ">", infinities fail the range test
    elif ((arr > _PACKED_GT) & (arr >= _PACKED_GE) & (arr < np.inf)).all():
        return
    flat = arr.reshape(-1, 7)
    for j, (gt, ge) in enumerate(_PACKED_BOUNDS):  # find the column; check_values words it
        check_values(f"x[..., {j}] ({PACKED_INPUT_FIELDS[j]})", flat[:, j], gt=gt, ge=ge)


def bsm_core_greeks_packed(x: ArrayLike, *, check: bool = True) -> Array:
    """Price and five Greeks from ONE ``(..., 7)`` array to ONE ``(..., 6)`` array.

    The low-latency entry point for a single option or a chain quoted from Python: JAX's
    per-call cost grows with the number of arguments and results, so packing them is what
    takes one option below 10 us on a 2-core CPU (pass a JAX array; a NumPy array adds the
    host-to-device copy and the edge check).

    Args:
        x: ``(..., 7)`` array, columns :data:`PACKED_INPUT_FIELDS` =
            ``(spot, strike, expiry, rate, dividend, vol, is_call)``, units as
            :func:`bsm_price`; ``is_call`` is 1.0 for a call and 0.0 for a put (any non-zero
            value is a call).
        check: validate host (Python/NumPy) input and raise ``ValueError`` naming the column.
            JAX arrays are never checked (bad values give NaN).

    Returns:
        ``(..., 6)`` array, columns ``CoreGreeks._fields`` = ``(price, delta, gamma, vega,
        theta, rho)``, raw units as :func:`bsm_greeks`, same values as
        :func:`bsm_core_greeks`.

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxmm.pricing as jp
        >>> from jaxmm.pricing._bsm import bsm_core_greeks_packed
        >>> x = jnp.array([100.0, 100.0, 1.0, 0.05, 0.0, 0.2, 1.0])
        >>> g = bsm_core_greeks_packed(x)
        >>> g.shape, round(float(g[1]), 4)          # delta
        ((6,), 0.6368)
        >>> chain = jnp.array([[100.0, k, 0.5, 0.03, 0.01, 0.25, c]
        ...                    for k in (90.0, 100.0, 110.0) for c in (1.0, 0.0)])
        >>> bsm_core_greeks_packed(chain).shape
        (6, 6)
    """
    if check and not isinstance(x, jax.Array):
        _check_packed(x)
    return _run_packed(_bsm_core_greeks_packed_jit, x)


def bsm_greeks_packed(x: ArrayLike, *, check: bool = True) -> Array:
    """All twelve Greeks from ONE ``(..., 7)`` array to ONE ``(..., 12)`` array.

    Columns in and out as :func:`bsm_core_greeks_packed`, with the output columns
    ``Greeks._fields`` = ``(price, delta, gamma, vega, theta, rho, vanna, volga, charm, speed,
    zomma, color)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxmm.pricing._bsm import bsm_greeks_packed
        >>> g = bsm_greeks_packed(jnp.array([100.0, 100.0, 1.0, 0.05, 0.0, 0.2, 1.0]))
        >>> g.shape
        (12,)
    """
    if check and not isinstance(x, jax.Array):
        _check_packed(x)
    return _run_packed(_bsm_greeks_packed_jit, x)


# --- public API -------------------------------------------------------------------------------


def bsm_price(
    spot: ArrayLike,
    strike: ArrayLike,
    expiry: ArrayLike,
    rate: ArrayLike,
    dividend: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
) -> Array:
    """Generalised Black-Scholes-Merton price, broadcasting over every argument.

    Args:
        spot: underlying price S > 0.
        strike: strike K > 0, same currency as ``spot``.
        expiry: time to expiry T >= 0 in years (ACT/365F).
        rate: continuously compounded risk-free rate r (may be negative).
        dividend: continuously compounded dividend / foreign-rate / borrow yield q.
        vol: annualised volatility sigma >= 0 as a fraction (0.2 = 20%).
        is_call: True for a call, False for a put (bool or bool array).

    Returns:
        The option value per one unit of underlying, broadcast shape of the inputs, in the
        float dtype of the inputs (float64 when JAX 64-bit mode is on).

    Raises:
        ValueError: naming the argument, for host (Python/NumPy) inputs out of bounds, NaN, or
            shapes that do not broadcast. JAX arrays are not checked (bad values give NaN).

    Example:
        >>> import jax.numpy as jnp, jaxmm.pricing as jp
        >>> p = jp.bsm_price(spot=100.0, strike=jnp.array([90.0, 100.0, 110.0]), expiry=0.5,
        ...                  rate=0.03, dividend=0.01, vol=0.25, is_call=True)
        >>> p.shape
        (3,)
    """
    _check(spot, strike, expiry, rate, dividend, vol, is_call)
    return _bsm_price_jit(spot, strike, expiry, rate, dividend, vol, is_call)


def bsm_greeks(
    spot: ArrayLike,
    strike: ArrayLike,
    expiry: ArrayLike,
    rate: ArrayLike,
    dividend: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
) -> Greeks:
    """Price and all twelve Greeks by forward-mode autodiff of :func:`bsm_price`.

    Arguments, units and errors as :func:`bsm_price`. Returns :class:`Greeks` with raw
    derivatives: delta, gamma, vega (per 1.00 vol), theta (dV/dt per calendar year), rho (per
    1.00 rate, q fixed), vanna, volga, charm, speed, zomma, color. Use
    :func:`to_desk_units` for per-vol-point / per-day / per-1% figures. For the lowest
    per-call latency on one option or a small chain use :func:`bsm_greeks_packed`.

    Example:
        >>> import jaxmm.pricing as jp
        >>> g = jp.bsm_greeks(spot=100.0, strike=100.0, expiry=1.0, rate=0.05,
        ...                   dividend=0.0, vol=0.2, is_call=True)
        >>> round(float(g.delta), 4)
        0.6368
    """
    _check(spot, strike, expiry, rate, dividend, vol, is_call)
    return _bsm_greeks_jit(spot, strike, expiry, rate, dividend, vol, is_call, full=True)


def bsm_core_greeks(
    spot: ArrayLike,
    strike: ArrayLike,
    expiry: ArrayLike,
    rate: ArrayLike,
    dividend: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
) -> CoreGreeks:
    """Price, delta, gamma, vega, theta and rho only — the fast path for big batches.

    Same arguments, units and errors as :func:`bsm_greeks`; skips the six higher-order Greeks.
    For one option or a small chain, :func:`bsm_core_greeks_packed` has lower latency.

    Example:
        >>> import jaxmm.pricing as jp
        >>> g = jp.bsm_core_greeks(100.0, 95.0, 0.25, 0.02, 0.0, 0.3, False)
        >>> bool(g.delta < 0)
        True
    """
    _check(spot, strike, expiry, rate, dividend, vol, is_call)
    return _bsm_greeks_jit(spot, strike, expiry, rate, dividend, vol, is_call, full=False)


def black76_price(
    forward: ArrayLike,
    strike: ArrayLike,
    expiry: ArrayLike,
    rate: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
) -> Array:
    """Black (1976) price of an option on a forward or future ``F``, discounted at ``rate``.

    ``exp(-rT) [F N(d1) - K N(d2)]`` (call); units as :func:`bsm_price` with ``forward``
    replacing ``spot``.

    Example:
        >>> import jaxmm.pricing as jp
        >>> float(jp.black76_price(100.0, 100.0, 1.0, 0.0, 0.2, True)) > 7.96
        True
    """
    _check(forward, strike, expiry, rate, None, vol, is_call, spot_name="forward")
    return _black76_price_jit(forward, strike, expiry, rate, vol, is_call)


def black76_greeks(
    forward: ArrayLike,
    strike: ArrayLike,
    expiry: ArrayLike,
    rate: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
) -> Greeks:
    """Black-76 price and Greeks by autodiff; delta/gamma/... are with respect to the forward.

    theta is dV/dt at a fixed forward; rho is dV/dr at a fixed forward (only the discount
    factor moves: rho = -T V).

    Example:
        >>> import jaxmm.pricing as jp
        >>> g = jp.black76_greeks(100.0, 100.0, 1.0, 0.0, 0.2, True)
        >>> round(float(g.delta), 4)
        0.5398
    """
    _check(forward, strike, expiry, rate, None, vol, is_call, spot_name="forward")
    return _black76_greeks_jit(forward, strike, expiry, rate, vol, is_call)


# --- analytic closed forms: the cross-check for the autodiff Greeks --------------------------


@jax.jit
def _bsm_greeks_analytic_jit(spot, strike, expiry, rate, dividend, vol, is_call):
    S, K, T, r, q, v = _cast((spot, strike, expiry, rate, dividend, vol))
    w = jnp.where(_bool(is_call), 1.0, -1.0).astype(S.dtype)
    sqrt_t = jnp.sqrt(T)
    s = v * sqrt_t
    d1 = (jnp.log(S / K) + (r - q + 0.5 * v * v) * T) / s
    d2 = d1 - s
    dq = jnp.exp(-q * T)
    dr = jnp.exp(-r * T)
    pdf = jnp.exp(-0.5 * d1 * d1) / jnp.sqrt(2.0 * jnp.pi)
    price = w * (S * dq * ndtr(w * d1) - K * dr * ndtr(w * d2))
    delta = w * dq * ndtr(w * d1)
    gamma = dq * pdf / (S * s)
    vega = S * dq * pdf * sqrt_t
    theta = (
        -S * dq * pdf * v / (2.0 * sqrt_t)
        + w * q * S * dq * ndtr(w * d1)
        - w * r * K * dr * ndtr(w * d2)
    )
    rho = w * K * T * dr * ndtr(w * d2)
    vanna = -dq * pdf * d2 / v
    volga = vega * d1 * d2 / v
    charm = w * q * dq * ndtr(w * d1) - dq * pdf * (2.0 * (r - q) * T - d2 * s) / (2.0 * T * s)
    speed = -gamma / S * (d1 / s + 1.0)
    zomma = gamma * (d1 * d2 - 1.0) / v
    # Haug's formula is dGamma/dT; color here is dGamma/dt = -dGamma/dT.
    color = (
        dq * pdf / (2.0 * S * T * s) * (2.0 * q * T + 1.0 + (2.0 * (r - q) * T - d2 * s) / s * d1)
    )
    return Greeks(price, delta, gamma, vega, theta, rho, vanna, volga, charm, speed, zomma, color)


def bsm_greeks_analytic(
    spot: ArrayLike,
    strike: ArrayLike,
    expiry: ArrayLike,
    rate: ArrayLike,
    dividend: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
) -> Greeks:
    """Closed-form BSM Greeks (Haug 2007, ch. 2), kept as a cross-check of :func:`bsm_greeks`.

    Same arguments, units and result type; valid for ``expiry > 0`` and ``vol > 0`` only (no
    singular-point handling — use :func:`bsm_greeks` in production).

    Example:
        >>> import jaxmm.pricing as jp
        >>> a = jp.bsm_greeks_analytic(100.0, 100.0, 1.0, 0.05, 0.0, 0.2, True)
        >>> g = jp.bsm_greeks(100.0, 100.0, 1.0, 0.05, 0.0, 0.2, True)
        >>> bool(abs(a.gamma - g.gamma) < 1e-12)
        True
    """
    _check(spot, strike, expiry, rate, dividend, vol, is_call)
    return _bsm_greeks_analytic_jit(spot, strike, expiry, rate, dividend, vol, is_call)
