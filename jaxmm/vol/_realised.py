"""Realised-volatility estimators from close prices or OHLC bars, and the RiskMetrics EWMA.

Conventions:

- Prices are positive levels; log returns ``r_t = ln(C_t / C_{t-1})`` are computed inside.
- Every estimator returns an **annualised volatility** (a fraction, 0.2 = 20%): the per-bar
  variance estimate times ``periods_per_year`` (explicit argument, 252 trading days by
  default), then the square root. :func:`ewma_variance` is the exception: it returns the
  per-period *variance*, as RiskMetrics defines it.
- ``window=None`` gives one estimate over the whole sample (a scalar). ``window=n`` gives a
  rolling estimate with the same length as the input bars; the **warm-up** entries (bars for
  which fewer than ``n`` usable observations exist yet) are NaN — never a partial-window value.
  Too few bars for even one estimate raises ``ValueError`` at the edge: an estimator never
  waits for data and never returns garbage silently.

Formulas (per-bar variance, ``n`` observations in the window; ``h = ln(H/O)``,
``l = ln(L/O)``, ``c = ln(C/O)``, ``o = ln(O_t / C_{t-1})``):

- close-to-close: sample variance of log returns, ddof = 1.
- Parkinson (1980): ``mean(ln(H/L)^2) / (4 ln 2)``.
- Garman and Klass (1980): ``mean(0.5 ln(H/L)^2 - (2 ln 2 - 1) c^2)``.
- Rogers and Satchell (1991): ``mean(h (h - c) + l (l - c))``.
- Yang and Zhang (2000): ``V_o + k V_c + (1 - k) V_RS`` with ``V_o``, ``V_c`` the sample
  variances (ddof = 1) of ``o`` and ``c``, ``V_RS`` Rogers-Satchell and
  ``k = 0.34 / (1.34 + (n + 1) / (n - 1))``. It needs the previous close, so its first bar is
  warm-up.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._dtypes import common_float_dtype
from .._validate import as_host_array, check_values

__all__ = [
    "close_to_close",
    "parkinson",
    "garman_klass",
    "rogers_satchell",
    "yang_zhang",
    "ewma_variance",
]

Array = jax.Array
ArrayLike = Any

_LN2 = float(np.log(2.0))


def _windows(x: Array, window: int) -> Array:
    """Sliding windows ``(len(x) - window + 1, window)`` by one static gather."""
    n = x.shape[0]
    idx = jnp.arange(n - window + 1)[:, None] + jnp.arange(window)[None, :]
    return x[idx]


def _pad_front(x: Array, n_total: int) -> Array:
    pad = jnp.full((n_total - x.shape[0],), jnp.nan, dtype=x.dtype)
    return jnp.concatenate([pad, x])


def _sample_var(x: Array, axis: int = -1) -> Array:
    n = x.shape[axis]
    mean = jnp.mean(x, axis=axis, keepdims=True)
    return jnp.sum((x - mean) ** 2, axis=axis) / (n - 1)


def _check_prices(names_values: dict[str, ArrayLike], min_len: int, window: int | None) -> int:
    lengths = set()
    for name, v in names_values.items():
        if v is None:
            raise ValueError(f"{name}: required")
        arr = as_host_array(name, v) if not isinstance(v, jax.Array) else v
        if arr.ndim != 1:
            raise ValueError(f"{name}: must be 1-D (one series of bars), got shape {arr.shape}")
        check_values(name, v, gt=0.0)
        lengths.add(arr.shape[0])
    if len(lengths) != 1:
        raise ValueError(f"bars: open/high/low/close lengths differ {sorted(lengths)}")
    (n,) = lengths
    if window is not None and window < min_len:
        raise ValueError(f"window: must be >= {min_len}, got {window}")
    need = window if window is not None else min_len
    if n < need:
        raise ValueError(f"bars: need at least {need} bars for one estimate, got {n}")
    return n


def _check_ohlc(o, h, l, c) -> None:
    """High must be the top of the bar and low its bottom (host inputs only)."""
    if all(not isinstance(x, jax.Array) for x in (o, h, l, c)):
        o, h, l, c = (np.asarray(x, dtype=float) for x in (o, h, l, c))
        if (h < np.maximum(o, c)).any() or (l > np.minimum(o, c)).any() or (h < l).any():
            raise ValueError("high/low: need low <= min(open, close) <= max(open, close) <= high")


def _cast(*xs):
    dtype = common_float_dtype(*xs)
    return tuple(jnp.asarray(x).astype(dtype) for x in xs)


@partial(jax.jit, static_argnames=("window", "ddof_mean"))
def _rolling(per_bar: Array, window: int | None, ddof_mean: bool, scale: Array) -> Array:
    """Mean (or ddof-1 sample variance if ``ddof_mean``) of ``per_bar`` per window, annualised."""
    stat = _sample_var if ddof_mean else (lambda x, axis=-1: jnp.mean(x, axis=axis))
    if window is None:
        return jnp.sqrt(stat(per_bar) * scale)
    return jnp.sqrt(stat(_windows(per_bar, window), axis=-1) * scale)


def close_to_close(
    close: ArrayLike, window: int | None = None, periods_per_year: float = 252.0
) -> Array:
    """Annualised close-to-close volatility: sample std (ddof = 1) of log returns.

    Args:
        close: 1-D positive close prices, one per bar.
        window: number of *returns* per rolling estimate, or None for the whole sample.
        periods_per_year: bars per year used to annualise (252 for daily bars).

    Returns:
        A scalar (``window=None``) or an array of ``len(close)`` values, NaN at the first
        ``window`` bars (the warm-up: ``window`` returns need ``window + 1`` closes).

    Example:
        >>> import numpy as np, jaxmm.vol as jv
        >>> close = 100 * np.exp(np.cumsum(np.r_[0.0, np.tile([0.01, -0.01], 50)]))
        >>> round(float(jv.close_to_close(close, periods_per_year=252.0)), 4)
        0.1595
    """
    n = _check_prices({"close": close}, 2, window)
    if window is not None and n < window + 1:
        raise ValueError(f"bars: need at least {window + 1} closes for one estimate, got {n}")
    (c,) = _cast(close)
    r = jnp.diff(jnp.log(c))
    out = _rolling(r, window, True, jnp.asarray(periods_per_year, c.dtype))
    return out if window is None else _pad_front(out, n)


def parkinson(
    high: ArrayLike, low: ArrayLike, window: int | None = None, periods_per_year: float = 252.0
) -> Array:
    """Parkinson (1980) range volatility, annualised: ``sqrt(P mean(ln(H/L)^2) / (4 ln 2))``.

    Assumes a driftless diffusion and continuous trading within the bar (it is biased low
    when the bar's true range is not observed). Warm-up: the first ``window - 1`` entries NaN.

    Example:
        >>> import numpy as np, jaxmm.vol as jv
        >>> h, l = np.full(10, 101.0), np.full(10, 99.0)
        >>> round(float(jv.parkinson(h, l)), 4)
        0.1907
    """
    n = _check_prices({"high": high, "low": low}, 1, window)
    if not isinstance(high, jax.Array) and (np.asarray(high) < np.asarray(low)).any():
        raise ValueError("high/low: need low <= high")
    h, l = _cast(high, low)
    per_bar = jnp.log(h / l) ** 2 / (4.0 * _LN2)
    out = _rolling(per_bar, window, False, jnp.asarray(periods_per_year, h.dtype))
    return out if window is None else _pad_front(out, n)


def garman_klass(
    open: ArrayLike,
    high: ArrayLike,
    low: ArrayLike,
    close: ArrayLike,
    window: int | None = None,
    periods_per_year: float = 252.0,
) -> Array:
    """Garman and Klass (1980) OHLC volatility, annualised.

    Per bar ``0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2`` (driftless, no opening jump). Warm-up:
    the first ``window - 1`` entries NaN.

    Example:
        >>> import numpy as np, jaxmm.vol as jv
        >>> o = c = np.full(5, 100.0); h, l = np.full(5, 101.0), np.full(5, 99.0)
        >>> round(float(jv.garman_klass(o, h, l, c)), 4)
        0.2245
    """
    n = _check_prices({"open": open, "high": high, "low": low, "close": close}, 1, window)
    _check_ohlc(open, high, low, close)
    o, h, l, c = _cast(open, high, low, close)
    per_bar = 0.5 * jnp.log(h / l) ** 2 - (2.0 * _LN2 - 1.0) * jnp.log(c / o) ** 2
    out = _rolling(per_bar, window, False, jnp.asarray(periods_per_year, o.dtype))
    return out if window is None else _pad_front(out, n)


def _rs_per_bar(o, h, l, c):
    hh, ll, cc = jnp.log(h / o), jnp.log(l / o), jnp.log(c / o)
    return hh * (hh - cc) + ll * (ll - cc)


def rogers_satchell(
    open: ArrayLike,
    high: ArrayLike,
    low: ArrayLike,
    close: ArrayLike,
    window: int | None = None,
    periods_per_year: float = 252.0,
) -> Array:
    """Rogers and Satchell (1991) drift-independent OHLC volatility, annualised.

    Per bar ``ln(H/C) ln(H/O) + ln(L/C) ln(L/O)``. Warm-up: first ``window - 1`` entries NaN.

    Example:
        >>> import numpy as np, jaxmm.vol as jv
        >>> o = c = np.full(5, 100.0); h, l = np.full(5, 101.0), np.full(5, 99.0)
        >>> round(float(jv.rogers_satchell(o, h, l, c)), 4)
        0.2245
    """
    n = _check_prices({"open": open, "high": high, "low": low, "close": close}, 1, window)
    _check_ohlc(open, high, low, close)
    o, h, l, c = _cast(open, high, low, close)
    out = _rolling(_rs_per_bar(o, h, l, c), window, False, jnp.asarray(periods_per_year, o.dtype))
    return out if window is None else _pad_front(out, n)


@partial(jax.jit, static_argnames=("window",))
def _yang_zhang(o, h, l, c, window: int | None, scale):
    on = jnp.log(o[1:] / c[:-1])  # overnight jump, needs the previous close
    oc = jnp.log(c[1:] / o[1:])
    rs = _rs_per_bar(o[1:], h[1:], l[1:], c[1:])
    if window is None:
        parts = on, oc, rs
        nw = on.shape[0]
    else:
        parts = tuple(_windows(x, window) for x in (on, oc, rs))
        nw = window
    k = 0.34 / (1.34 + (nw + 1) / (nw - 1))
    var = _sample_var(parts[0]) + k * _sample_var(parts[1]) + (1.0 - k) * jnp.mean(parts[2], -1)
    return jnp.sqrt(var * scale)


def yang_zhang(
    open: ArrayLike,
    high: ArrayLike,
    low: ArrayLike,
    close: ArrayLike,
    window: int | None = None,
    periods_per_year: float = 252.0,
) -> Array:
    """Yang and Zhang (2000) volatility with opening jumps and drift, annualised.

    ``V = V_overnight + k V_open-to-close + (1 - k) V_RS``, ``k = 0.34 / (1.34 + (n+1)/(n-1))``
    where ``n`` is the number of bars in the window (each needs the previous close, so the first
    bar of the series only supplies that close). Needs ``n >= 2``. Warm-up: the first
    ``window`` entries NaN.

    Example:
        >>> import numpy as np, jaxmm.vol as jv
        >>> o = c = np.full(5, 100.0); h, l = np.full(5, 101.0), np.full(5, 99.0)
        >>> round(float(jv.yang_zhang(o, h, l, c)), 4)  # (1 - k) V_RS with n = 4 bars
        0.2114
    """
    n = _check_prices({"open": open, "high": high, "low": low, "close": close}, 2, window)
    _check_ohlc(open, high, low, close)
    if n < (window or 2) + 1:
        raise ValueError(f"bars: need at least {(window or 2) + 1} bars for one estimate, got {n}")
    o, h, l, c = _cast(open, high, low, close)
    out = _yang_zhang(o, h, l, c, window, jnp.asarray(periods_per_year, o.dtype))
    return out if window is None else _pad_front(out, n)


@partial(jax.jit, static_argnames=("min_periods",))
def _ewma(r: Array, lam: Array, min_periods: int, init: Array) -> Array:
    seed = jnp.where(jnp.isnan(init), jnp.mean(r[:min_periods] ** 2), init)

    def step(v, x):
        v = lam * v + (1.0 - lam) * x * x
        return v, v

    _, out = jax.lax.scan(step, seed, r)
    warm = jnp.arange(r.shape[0]) < min_periods - 1
    return jnp.where(warm, jnp.nan, out)


def ewma_variance(
    returns: ArrayLike,
    lam: float = 0.94,
    *,
    min_periods: int = 20,
    init: float | None = None,
) -> Array:
    """RiskMetrics (J.P. Morgan, 1996) exponentially weighted variance, per period.

    ``v_t = lam v_{t-1} + (1 - lam) r_t^2``: ``v_t`` uses returns up to and including ``t`` and
    is the forecast of the variance of ``r_{t+1}`` (zero mean, as RiskMetrics assumes).
    Seed ``v_{-1}``: ``init`` if given, else the mean of ``r^2`` over the first ``min_periods``
    returns. Warm-up: entries ``t < min_periods - 1`` are NaN, so no output uses data it could
    not have seen (the default seed only uses returns up to ``min_periods - 1``). Annualise by
    multiplying by the periods per year.

    Args:
        returns: 1-D per-period returns (log or simple), finite.
        lam: decay in (0, 1); 0.94 is RiskMetrics' daily value.
        min_periods: warm-up length (>= 1).
        init: optional seed variance (>= 0); with it, set ``min_periods=1`` for no warm-up.

    Example:
        >>> import numpy as np, jaxmm.vol as jv
        >>> v = jv.ewma_variance(np.full(30, 0.01), lam=0.94)
        >>> bool(np.isnan(v[0])), round(float(v[-1]), 6)
        (True, 0.0001)
    """
    arr = as_host_array("returns", returns) if not isinstance(returns, jax.Array) else returns
    if arr.ndim != 1:
        raise ValueError(f"returns: must be 1-D, got shape {arr.shape}")
    check_values("returns", returns)
    if not 0.0 < lam < 1.0:
        raise ValueError(f"lam: must be in (0, 1), got {lam}")
    if min_periods < 1:
        raise ValueError(f"min_periods: must be >= 1, got {min_periods}")
    if arr.shape[0] < min_periods:
        raise ValueError(
            f"returns: need at least min_periods={min_periods} returns, got {arr.shape[0]}"
        )
    if init is not None:
        check_values("init", init, ge=0.0)
    (r,) = _cast(returns)
    init_v = jnp.asarray(np.nan if init is None else init).astype(r.dtype)
    return _ewma(r, jnp.asarray(lam).astype(r.dtype), min_periods, init_v)
