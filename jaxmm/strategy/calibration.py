"""Parameter estimation for the market-making models.

- Fill intensity ``lambda(delta) = A exp(-k delta)`` from quote/fill records, **including the
  quotes that were not filled** (right-censored), by maximum likelihood (:func:`fit_intensity`),
  with standard errors from the observed information; the classic regression of the log
  empirical intensity on depth as a cross-check (:func:`fit_intensity_regression`); and the
  empirical, non-parametric intensity curve (:func:`empirical_intensity`).
- Risk aversion ``gamma`` from a target inventory half-life (:func:`gamma_from_half_life`).
- Absolute volatility ``sigma`` from a mid-price series (:func:`realized_sigma`,
  :func:`ewma_sigma`) and a volatility-regime classifier (:func:`classify_vol_regime`).
  The sigma estimators live here until ``jaxmm.vol`` lands; they will move there.

Units: ``delta`` in price units (distance of the quote from the mid when it was placed),
durations and fill times in the model's time unit; ``A`` in fills per time unit, ``k`` per price
unit. Every estimator returns a status code next to its values and never raises inside the
kernel: little or no data gives a status and NaN values, never a hang or a division by zero.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtri
from jaxtyping import Array

from .._validate import as_host_array, check_values, is_host_value
from ._glft import _log1p_over_x
from ._types import as_float, cast, default_float_dtype, float_dtype

__all__ = [
    "BID",
    "ASK",
    "FitStatus",
    "BinStatus",
    "VolRegime",
    "IntensityFit",
    "EmpiricalIntensity",
    "GammaFit",
    "SigmaEstimate",
    "EwmaSigma",
    "fit_intensity",
    "empirical_intensity",
    "fit_intensity_regression",
    "simulate_fills",
    "mean_reversion_rate",
    "gamma_from_half_life",
    "realized_sigma",
    "ewma_sigma",
    "classify_vol_regime",
]

#: Side codes for the ``side`` argument of the intensity estimators.
BID = 0
ASK = 1


class FitStatus(enum.IntEnum):
    """Outcome of an estimator (the ``status`` field; 0 is success)."""

    OK = 0
    NO_DATA = 1  #: no observations (for this side)
    NO_FILLS = 2  #: no quote was filled: A is not identified (MLE at A = 0)
    ALL_FILLED = 3  #: every quote filled, fill times unknown: the intensity is unbounded
    NO_DEPTH_VARIATION = 4  #: all quotes at one depth: k is not identified
    NOT_CONVERGED = 5  #: iteration limit reached (e.g. separated data); values are the last iterate
    SINGULAR_INFORMATION = 6  #: observed information not positive definite: no standard errors
    UNREACHABLE = 7  #: the target cannot be met by any parameter in range
    INSUFFICIENT_BINS = 8  #: fewer than two usable depth bins for the regression
    SEPARATED = 9  #: fills and misses separated by depth: the MLE does not exist (k -> +-inf)


class BinStatus(enum.IntEnum):
    """Status of one bin of :func:`empirical_intensity`."""

    OK = 0
    EMPTY = 1  #: no observation in the bin
    NO_FILLS = 2  #: observations but no fill: intensity estimate 0, log undefined
    ALL_FILLED = 3  #: every quote filled and no fill times: intensity estimate +inf


class VolRegime(enum.IntEnum):
    """Volatility regime codes of :func:`classify_vol_regime`."""

    UNKNOWN = -1
    LOW = 0
    NORMAL = 1
    HIGH = 2
    EXTREME = 3


class IntensityFit(NamedTuple):
    """Fitted ``lambda(delta) = A exp(-k delta)``; per-side fits have a leading axis of 2
    (``[BID, ASK]``).

    Attributes:
        A: fills per time unit at ``delta = 0``.
        k: decay per price unit.
        se_A: standard error of ``A`` (delta method, ``A * se(ln A)``).
        se_k: standard error of ``k``.
        A_ci: ``(..., 2)`` confidence interval for ``A`` (symmetric in ``ln A``).
        k_ci: ``(..., 2)`` confidence interval for ``k``.
        cov: ``(..., 2, 2)`` covariance of ``(ln A, k)`` (inverse observed information).
        loglik: maximised log-likelihood (NaN for the regression).
        n_obs: number of quotes used.
        n_fills: number of filled quotes.
        iterations: Newton iterations taken.
        status: :class:`FitStatus` code.
    """

    A: Array
    k: Array
    se_A: Array
    se_k: Array
    A_ci: Array
    k_ci: Array
    cov: Array
    loglik: Array
    n_obs: Array
    n_fills: Array
    iterations: Array
    status: Array


class EmpiricalIntensity(NamedTuple):
    """Non-parametric intensity per depth bin (see :func:`empirical_intensity`).

    Attributes:
        edges: ``(bins + 1,)`` bin edges (price units).
        centers: ``(bins,)`` mean depth of the observations in each bin (mid-point if empty).
        intensity: ``(bins,)`` estimated fills per time unit for a quote at that depth.
        se: ``(bins,)`` standard error of ``intensity``.
        n_obs: ``(bins,)`` quotes per bin.
        n_fills: ``(bins,)`` fills per bin.
        exposure: ``(bins,)`` total time quoted in the bin (time units).
        status: ``(bins,)`` :class:`BinStatus` codes.
    """

    edges: Array
    centers: Array
    intensity: Array
    se: Array
    n_obs: Array
    n_fills: Array
    exposure: Array
    status: Array


class GammaFit(NamedTuple):
    """Result of :func:`gamma_from_half_life`: ``gamma``, the linearised mean-reversion rate
    ``kappa`` it produces (per time unit) and a :class:`FitStatus` code."""

    gamma: Array
    kappa: Array
    status: Array


class SigmaEstimate(NamedTuple):
    """Realised volatility: ``sigma`` (per sqrt(time unit)), returns used, status."""

    sigma: Array
    n_returns: Array
    status: Array


class EwmaSigma(NamedTuple):
    """EWMA volatility: the path after each return, its last value, and a status."""

    path: Array
    sigma: Array
    status: Array


# --------------------------------------------------------------------------------------------
# host-side helpers
# --------------------------------------------------------------------------------------------
def _host_or_array(name: str, x: Any) -> Array:
    if is_host_value(x):
        arr = as_host_array(name, x)
        if arr.ndim != 1:
            raise ValueError(f"{name}: must be one-dimensional, got shape {arr.shape}")
        return jnp.asarray(arr.astype(np.float64), dtype=default_float_dtype())
    if x.ndim != 1:
        raise ValueError(f"{name}: must be one-dimensional, got shape {x.shape}")
    return as_float(x)


def _check_same_length(**arrays: Any) -> int:
    lengths = {name: np.shape(a)[0] for name, a in arrays.items() if a is not None}
    n = next(iter(lengths.values()))
    for name, m in lengths.items():
        if m != n:
            raise ValueError(f"{name}: length {m} differs from the other arguments {lengths}")
    return n


def _check_binary(name: str, x: Any) -> None:
    if is_host_value(x):
        arr = as_host_array(name, x)
        if not np.all((arr == 0) | (arr == 1)):
            raise ValueError(f"{name}: must contain only 0/1 (or booleans)")


def _check_confidence(confidence: float) -> None:
    if not (0.0 < float(confidence) < 1.0):
        raise ValueError(f"confidence: must be in (0, 1), got {confidence!r}")


# --------------------------------------------------------------------------------------------
# fill-intensity MLE
# --------------------------------------------------------------------------------------------
def _obs_loglik(eta, tau, y, exposure, use_times: bool):
    """One quote's log-likelihood as a function of ``eta = ln A - k delta``.

    Fill times known (``use_times``): the quote is a Poisson process of rate
    ``lambda = exp(eta)`` observed for ``exposure`` (time to fill, or the full duration if
    unfilled): ``y eta - lambda exposure``. Fill indicator only:
    ``P(fill within tau) = 1 - exp(-lambda tau)``, so ``y ln(1 - exp(-lambda tau)) -
    (1 - y) lambda tau``. Both are concave in ``eta``, hence in ``(ln A, k)``.
    """
    lam = jnp.exp(eta)
    if use_times:
        return y * eta - lam * exposure
    x = lam * tau
    tiny = jnp.finfo(x.dtype).tiny
    x_safe = jnp.where(x > tiny, x, tiny)
    return jnp.where(y > 0, jnp.log(-jnp.expm1(-x_safe)), -x)


def _inv2(H: Array) -> tuple[Array, Array]:
    """Inverse of ``-H`` (2x2) and whether ``-H`` is positive definite."""
    a, b, c, d = -H[0, 0], -H[0, 1], -H[1, 0], -H[1, 1]
    det = a * d - b * c
    ok = (a > 0) & (det > 0) & jnp.isfinite(det)
    det_s = jnp.where(ok, det, 1.0)
    inv = jnp.stack([jnp.stack([d, -b]), jnp.stack([-c, a])]) / det_s
    return jnp.where(ok, inv, jnp.nan), ok


def _fit_one(delta, tau, y, exposure, w, z, use_times: bool, max_iter: int) -> IntensityFit:
    dt = delta.dtype
    eps = jnp.finfo(dt).eps
    n_obs = jnp.sum(w)
    n_fills = jnp.sum(w * y)
    n_safe = jnp.maximum(n_obs, 1.0)
    mean_d = jnp.sum(w * delta) / n_safe
    used = w > 0
    d_max = jnp.max(jnp.where(used, delta, -jnp.inf), initial=-jnp.inf)
    d_min = jnp.min(jnp.where(used, delta, jnp.inf), initial=jnp.inf)
    fill = used & (y > 0)
    fill_max = jnp.max(jnp.where(fill, delta, -jnp.inf), initial=-jnp.inf)
    fill_min = jnp.min(jnp.where(fill, delta, jnp.inf), initial=jnp.inf)
    varies = (n_obs > 0) & (d_max > d_min)
    if use_times:
        # Poisson: no MLE when every fill sits at the shallowest or the deepest depth.
        separated = (fill_max <= d_min) | (fill_min >= d_max)
        all_filled = jnp.asarray(False)
    else:
        miss = used & (y <= 0)
        miss_max = jnp.max(jnp.where(miss, delta, -jnp.inf), initial=-jnp.inf)
        miss_min = jnp.min(jnp.where(miss, delta, jnp.inf), initial=jnp.inf)
        # Bernoulli: no MLE when fills and misses are (quasi-)separated by depth.
        separated = (fill_max <= miss_min) | (fill_min >= miss_max)
        all_filled = n_fills == n_obs

    status = jnp.select(
        [n_obs == 0, n_fills == 0, all_filled, ~varies, separated],
        [
            FitStatus.NO_DATA,
            FitStatus.NO_FILLS,
            FitStatus.ALL_FILLED,
            FitStatus.NO_DEPTH_VARIATION,
            FitStatus.SEPARATED,
        ],
        FitStatus.OK,
    ).astype(jnp.int32)
    valid = status == FitStatus.OK

    # Start: k0 = 1 / (depth scale); ln A0 matches the overall fill rate given k0.
    spread_d = jnp.where(varies, jnp.maximum(jnp.abs(mean_d), d_max - d_min), 0.0)
    k0 = jnp.where(spread_d > 0, 1.0 / jnp.where(spread_d > 0, spread_d, 1.0), 1.0)
    held = exposure if use_times else tau
    base = jnp.sum(w * held * jnp.exp(-k0 * (delta - mean_d)))
    if use_times:
        rate_num = jnp.maximum(n_fills, 0.5)
    else:
        p = jnp.clip(n_fills / n_safe, 0.5 / n_safe, 1.0 - 0.5 / n_safe)
        rate_num = -jnp.log1p(-p) * n_safe
    a0 = jnp.log(jnp.maximum(rate_num, eps)) - jnp.log(jnp.maximum(base, eps)) + k0 * mean_d
    theta0 = jnp.stack([a0, k0]).astype(dt)

    def obs(eta, t_, y_, e_):
        return _obs_loglik(eta, t_, y_, e_, use_times)

    d1 = jax.vmap(jax.grad(obs))
    d2 = jax.vmap(jax.grad(jax.grad(obs)))

    def loglik(th):
        v = jnp.sum(w * jax.vmap(obs)(th[0] - th[1] * delta, tau, y, exposure))
        return jnp.where(jnp.isfinite(v), v, -jnp.inf)

    def grad_hess(th):
        # Exact derivatives through eta = ln A - k delta (chain rule on autodiff'd scalars).
        eta = th[0] - th[1] * delta
        g1 = w * d1(eta, tau, y, exposure)
        g2 = w * d2(eta, tau, y, exposure)
        g = jnp.stack([jnp.sum(g1), -jnp.sum(g1 * delta)])
        h01 = -jnp.sum(g2 * delta)
        H = jnp.stack(
            [jnp.stack([jnp.sum(g2), h01]), jnp.stack([h01, jnp.sum(g2 * delta * delta)])]
        )
        return g, H

    def cond(c):
        _, _, it, done = c
        return valid & (~done) & (it < max_iter)

    def body(c):
        th, ll, it, _ = c
        g, H = grad_hess(th)
        # Levenberg shift keeps the step an ascent direction if H is not negative definite.
        tr = jnp.abs(H[0, 0]) + jnp.abs(H[1, 1])
        lam_max = 0.5 * (H[0, 0] + H[1, 1]) + jnp.sqrt(
            0.25 * (H[0, 0] - H[1, 1]) ** 2 + H[0, 1] * H[1, 0]
        )
        mu = jnp.maximum(lam_max, 0.0) * (1.0 + 1e-3) + 1e-12 * tr
        step = -jnp.linalg.solve(H - mu * jnp.eye(2, dtype=dt), g)
        step = jnp.where(jnp.all(jnp.isfinite(step)), step, g / jnp.maximum(tr, 1.0))
        slope = jnp.dot(g, step)  # > 0 for an ascent direction

        def ls_cond(s):
            t, ll_new, k = s
            return (ll_new < ll + 1e-4 * t * slope) & (k < 40)

        def ls_body(s):
            t, _, k = s
            t = 0.5 * t
            return t, loglik(th + t * step), k + 1

        t, ll_new, _ = jax.lax.while_loop(
            ls_cond, ls_body, (jnp.asarray(1.0, dt), loglik(th + step), 0)
        )
        improved = ll_new >= ll
        th_new = jnp.where(improved, th + t * step, th)
        ll_new = jnp.where(improved, ll_new, ll)
        done = (slope <= 16 * eps * (1.0 + jnp.abs(ll))) | (~improved)
        return th_new, ll_new, it + 1, done

    init = (theta0, loglik(theta0), jnp.asarray(0, jnp.int32), jnp.asarray(False))
    theta, ll, it, done = jax.lax.while_loop(cond, body, init)
    g_final, H = grad_hess(theta)
    cov, pd = _inv2(H)
    dec = jnp.dot(g_final, jnp.where(pd, cov @ g_final, jnp.nan))
    converged = done | (dec <= 16 * eps * (1.0 + jnp.abs(ll)))
    status = jnp.where(
        valid & ~converged,
        FitStatus.NOT_CONVERGED,
        jnp.where(valid & ~pd, FitStatus.SINGULAR_INFORMATION, status),
    ).astype(jnp.int32)
    has_est = (
        (status == FitStatus.OK)
        | (status == FitStatus.NOT_CONVERGED)
        | (status == FitStatus.SINGULAR_INFORMATION)
    )
    nan = jnp.asarray(jnp.nan, dt)
    a_hat = jnp.where(has_est, theta[0], nan)
    k_hat = jnp.where(has_est, theta[1], nan)
    cov = jnp.where(has_est & pd, cov, nan)
    se_a = jnp.sqrt(cov[0, 0])
    se_k = jnp.sqrt(cov[1, 1])
    A = jnp.exp(a_hat)
    return IntensityFit(
        A=A,
        k=k_hat,
        se_A=A * se_a,
        se_k=se_k,
        A_ci=jnp.stack([jnp.exp(a_hat - z * se_a), jnp.exp(a_hat + z * se_a)]),
        k_ci=jnp.stack([k_hat - z * se_k, k_hat + z * se_k]),
        cov=cov,
        loglik=jnp.where(has_est, ll, nan),
        n_obs=n_obs,
        n_fills=n_fills,
        iterations=it,
        status=status,
    )


@partial(jax.jit, static_argnames=("use_times", "max_iter"))
def _fit_kernel(delta, tau, y, exposure, w, z, *, use_times: bool, max_iter: int) -> IntensityFit:
    """Fit every row of the weight matrix ``w`` (``(sides, n)``): one compile per shape."""
    return jax.vmap(lambda wi: _fit_one(delta, tau, y, exposure, wi, z, use_times, max_iter))(w)


def _prepare_quotes(delta, duration, filled, fill_time, side):
    """Validate host inputs and return float arrays ``delta, tau, y, exposure, weights``."""
    for name, x in (("delta", delta), ("duration", duration), ("filled", filled)):
        if is_host_value(x) and np.ndim(x) != 1:
            raise ValueError(f"{name}: must be one-dimensional, got shape {np.shape(x)}")
    _check_same_length(
        delta=delta, duration=duration, filled=filled, fill_time=fill_time, side=side
    )
    check_values("delta", delta)
    check_values("duration", duration, gt=0.0)
    _check_binary("filled", filled)
    d = _host_or_array("delta", delta)
    dt = float_dtype(d)
    tau = cast(_host_or_array("duration", duration), dt)
    y = cast(_host_or_array("filled", filled), dt)
    if fill_time is not None:
        check_values("fill_time", fill_time, ge=0.0, finite=False)
        ft = cast(_host_or_array("fill_time", fill_time), dt)
        if all(is_host_value(x) for x in (fill_time, duration, filled)):
            f_np = np.asarray(filled).astype(bool)
            ft_np = np.asarray(fill_time, dtype=float)
            if np.any(~np.isfinite(ft_np[f_np])) or np.any(
                ft_np[f_np] > np.asarray(duration, dtype=float)[f_np]
            ):
                raise ValueError("fill_time: must be finite and <= duration for every filled quote")
        exposure = jnp.where(y > 0, jnp.where(jnp.isfinite(ft), ft, tau), tau)
    else:
        exposure = tau
    if side is None:
        # Same two-row layout as a per-side fit (second row empty): one compilation for both.
        w = jnp.stack([jnp.ones_like(d), jnp.zeros_like(d)])
    else:
        _check_binary("side", side)
        s = cast(_host_or_array("side", side), dt)
        w = jnp.stack([(s == BID).astype(dt), (s == ASK).astype(dt)])
    # Pad to a power-of-two length with zero-weight rows: one compilation serves every data
    # size in the bucket (padded rows have weight 0 and neutral, finite values).
    n = d.shape[0]
    pad = _bucket(n) - n
    if pad:
        d = jnp.concatenate([d, jnp.zeros(pad, dt)])
        tau = jnp.concatenate([tau, jnp.ones(pad, dt)])
        y = jnp.concatenate([y, jnp.zeros(pad, dt)])
        exposure = jnp.concatenate([exposure, jnp.ones(pad, dt)])
        w = jnp.concatenate([w, jnp.zeros((w.shape[0], pad), dt)], axis=1)
    return d, tau, y, exposure, w


def _bucket(n: int) -> int:
    """Padded length: the next power of two, at least 64."""
    return max(64, 1 << max(0, int(n) - 1).bit_length())


def fit_intensity(
    delta: Any,
    duration: Any,
    filled: Any,
    *,
    fill_time: Any = None,
    side: Any = None,
    confidence: float = 0.95,
    max_iter: int = 100,
) -> IntensityFit:
    """Maximum-likelihood ``(A, k)`` of ``lambda(delta) = A exp(-k delta)`` with censoring.

    Each record is one quote resting at distance ``delta`` from the mid for up to
    ``duration``; ``filled`` says whether it was hit. Unfilled quotes are right-censored
    observations and enter the likelihood (ignoring them — the original crate's defect — biases
    ``A`` up and ``k`` down). With the fill indicator only, ``P(fill) = 1 - exp(-lambda tau)``;
    with ``fill_time`` (time from placement to the fill; ignored for unfilled quotes) the exact
    Poisson likelihood ``sum y ln lambda - lambda * exposure`` is used. The log-likelihood is
    concave in ``(ln A, k)`` and is maximised by damped Newton with backtracking; standard
    errors come from the observed information (exact second derivatives by autodiff) at the
    optimum; the CI for ``A`` is symmetric in ``ln A``. When fills and misses are separated
    by depth (every fill shallower than every miss, or deeper) the MLE does not exist and the
    status is ``SEPARATED``.

    Args:
        delta: ``(n,)`` quote distances from the mid (price units).
        duration: ``(n,)`` time each quote was exposed (time units), > 0.
        filled: ``(n,)`` 0/1 or booleans.
        fill_time: optional ``(n,)`` times to fill (<= duration where filled).
        side: optional ``(n,)`` side codes (:data:`BID` = 0, :data:`ASK` = 1); then each side
            is fitted separately and every field has a leading axis ``[BID, ASK]``.
        confidence: level of the confidence intervals, in (0, 1).
        max_iter: Newton iteration limit (static).

    Returns:
        :class:`IntensityFit`; ``status`` is :class:`FitStatus` (NO_DATA, NO_FILLS,
        ALL_FILLED, NO_DEPTH_VARIATION give NaN estimates instead of raising).

    Raises:
        ValueError: bad host input (message names the argument).

    Example:
        >>> import numpy as np
        >>> from jaxmm.strategy import fit_intensity, simulate_fills
        >>> delta, tau, filled = simulate_fills(A=2.0, k=1.5, n=4000, seed=0)
        >>> fit = fit_intensity(delta, tau, filled)
        >>> int(fit.status), bool(abs(fit.k - 1.5) < 4 * fit.se_k)
        (0, True)
    """
    _check_confidence(confidence)
    if int(max_iter) < 1:
        raise ValueError(f"max_iter: must be >= 1, got {max_iter!r}")
    d, tau, y, exposure, w = _prepare_quotes(delta, duration, filled, fill_time, side)
    z = ndtri(jnp.asarray(0.5 + 0.5 * float(confidence), d.dtype))
    fit = _fit_kernel(
        d, tau, y, exposure, w, z, use_times=fill_time is not None, max_iter=int(max_iter)
    )
    if side is None:
        fit = jax.tree_util.tree_map(lambda x: x[0], fit)
    return fit


def simulate_fills(
    A: float,
    k: float,
    n: int,
    *,
    delta_max: float | None = None,
    duration: float = 1.0,
    seed: int = 0,
    with_fill_times: bool = False,
):
    """Synthetic quote/fill records with known ``(A, k)`` (for tests, examples, benchmarks).

    Depths uniform on ``[0, delta_max]`` (default ``3/k``), each quote held ``duration``;
    fills arrive as Poisson with rate ``A exp(-k delta)``. Returns ``(delta, duration,
    filled)`` NumPy arrays, plus ``fill_time`` (``inf`` when unfilled) if
    ``with_fill_times``.

    Example:
        >>> from jaxmm.strategy import simulate_fills
        >>> d, tau, f = simulate_fills(A=1.0, k=2.0, n=5)
        >>> d.shape, tau.shape, f.shape
        ((5,), (5,), (5,))
    """
    rng = np.random.default_rng(seed)
    dmax = 3.0 / k if delta_max is None else delta_max
    delta = rng.uniform(0.0, dmax, size=n)
    lam = A * np.exp(-k * delta)
    first = rng.exponential(1.0 / lam)
    filled = (first <= duration).astype(np.float64)
    tau = np.full(n, float(duration))
    if with_fill_times:
        return delta, tau, filled, np.where(filled > 0, first, np.inf)
    return delta, tau, filled


# --------------------------------------------------------------------------------------------
# empirical intensity and the classic regression
# --------------------------------------------------------------------------------------------
@partial(jax.jit, static_argnames=("bins", "use_times"))
def _empirical_kernel(delta, tau, y, exposure, w, lo, hi, *, bins: int, use_times: bool):
    dt = delta.dtype
    width = jnp.where(hi > lo, (hi - lo) / bins, 1.0)
    edges = lo + width * jnp.arange(bins + 1).astype(dt)
    idx = jnp.clip(jnp.floor((delta - lo) / width), 0, bins - 1).astype(jnp.int32)
    inside = (w > 0) & (delta >= lo) & (delta <= hi)
    wi = jnp.where(inside, w, 0.0)
    one_hot = (idx[:, None] == jnp.arange(bins, dtype=jnp.int32)[None, :]).astype(dt) * wi[:, None]
    n = one_hot.sum(0)
    fills = (one_hot * y[:, None]).sum(0)
    expo = (one_hot * exposure[:, None]).sum(0)
    sum_tau = (one_hot * tau[:, None]).sum(0)
    sum_d = (one_hot * delta[:, None]).sum(0)
    n_safe = jnp.maximum(n, 1.0)
    centers = jnp.where(n > 0, sum_d / n_safe, 0.5 * (edges[:-1] + edges[1:]))
    if use_times:
        e_safe = jnp.where(expo > 0, expo, 1.0)
        lam = fills / e_safe
        se = jnp.sqrt(fills) / e_safe
        status = jnp.where(n == 0, BinStatus.EMPTY, jnp.where(fills == 0, BinStatus.NO_FILLS, 0))
    else:
        p = fills / n_safe
        tbar = sum_tau / n_safe
        all_f = (n > 0) & (fills == n)
        p_s = jnp.where(all_f, 0.5, p)
        lam = jnp.where(all_f, jnp.inf, -jnp.log1p(-p_s) / tbar)
        se = jnp.where(all_f, jnp.inf, jnp.sqrt(p_s * (1.0 - p_s) / n_safe) / ((1.0 - p_s) * tbar))
        status = jnp.where(
            n == 0,
            BinStatus.EMPTY,
            jnp.where(fills == 0, BinStatus.NO_FILLS, jnp.where(all_f, BinStatus.ALL_FILLED, 0)),
        )
    empty = n == 0
    nan = jnp.asarray(jnp.nan, dt)
    return EmpiricalIntensity(
        edges=edges,
        centers=centers,
        intensity=jnp.where(empty, nan, lam),
        se=jnp.where(empty, nan, se),
        n_obs=n,
        n_fills=fills,
        exposure=expo,
        status=status.astype(jnp.int32),
    )


def _bin_range(d: Array, w: Array, delta_min: Any, delta_max: Any) -> tuple[Array, Array]:
    dt = d.dtype
    mask = w[0] > 0 if w.ndim == 2 else w > 0
    has = jnp.any(mask)
    lo_d = jnp.where(has, jnp.min(jnp.where(mask, d, jnp.inf), initial=jnp.inf), 0.0)
    hi_d = jnp.where(has, jnp.max(jnp.where(mask, d, -jnp.inf), initial=-jnp.inf), 0.0)
    lo = lo_d if delta_min is None else cast(delta_min, dt)
    hi = hi_d if delta_max is None else cast(delta_max, dt)
    return lo, hi


def empirical_intensity(
    delta: Any,
    duration: Any,
    filled: Any,
    *,
    fill_time: Any = None,
    bins: int = 10,
    delta_min: Any = None,
    delta_max: Any = None,
) -> EmpiricalIntensity:
    """Non-parametric fill intensity per depth bin (equal-width bins on
    ``[delta_min, delta_max]``, default the data range).

    With ``fill_time``: ``lambda_hat = fills / exposure`` (the Poisson MLE of a constant rate
    in the bin: total hits over total time quoted — the classic "hit-time" estimator), standard
    error ``sqrt(fills) / exposure``. With the fill indicator only:
    ``lambda_hat = -ln(1 - p_hat) / mean(tau)`` (exact when the bin's durations are equal),
    standard error by the delta method. ``centers`` are the mean depth of each bin's quotes.

    Example:
        >>> from jaxmm.strategy import empirical_intensity, simulate_fills
        >>> d, tau, f = simulate_fills(A=2.0, k=1.5, n=20000, seed=1)
        >>> curve = empirical_intensity(d, tau, f, bins=5)
        >>> bool(curve.intensity[0] > curve.intensity[-1])
        True
    """
    if int(bins) != bins or bins < 1:
        raise ValueError(f"bins: must be an integer >= 1, got {bins!r}")
    if delta_min is not None:
        check_values("delta_min", delta_min)
    if delta_max is not None:
        check_values("delta_max", delta_max)
    d, tau, y, exposure, w = _prepare_quotes(delta, duration, filled, fill_time, None)
    lo, hi = _bin_range(d, w[0], delta_min, delta_max)
    return _empirical_kernel(
        d, tau, y, exposure, w[0], lo, hi, bins=int(bins), use_times=fill_time is not None
    )


@jax.jit
def _regression_kernel(curve: EmpiricalIntensity, z: Array) -> IntensityFit:
    dt = curve.centers.dtype
    ok = curve.status == BinStatus.OK
    lam_s = jnp.where(ok, curve.intensity, 1.0)
    se_s = jnp.where(ok, curve.se, 1.0)
    wts = jnp.where(ok, (lam_s / se_s) ** 2, 0.0)  # 1 / Var(ln lambda_hat), delta method
    x = curve.centers
    n_ok = jnp.sum(ok)
    sw = jnp.sum(wts)
    sw_s = jnp.where(sw > 0, sw, 1.0)
    xbar = jnp.sum(wts * x) / sw_s
    ly = jnp.log(lam_s)
    ybar = jnp.sum(wts * ly) / sw_s
    sxx = jnp.sum(wts * (x - xbar) ** 2)
    sxy = jnp.sum(wts * (x - xbar) * (ly - ybar))
    usable = (n_ok >= 2) & (sxx > 0)
    sxx_s = jnp.where(usable, sxx, 1.0)
    slope = sxy / sxx_s
    k = -slope
    a = ybar + k * xbar
    # Known-variance WLS: Var(slope) = 1 / Sxx, Var(intercept) = 1/Sw + xbar^2 / Sxx.
    var_k = 1.0 / sxx_s
    var_a = 1.0 / sw_s + xbar * xbar / sxx_s
    cov_ak = xbar / sxx_s  # Cov(a, k) = -xbar * Cov(.., slope) with k = -slope
    cov = jnp.stack([jnp.stack([var_a, cov_ak]), jnp.stack([cov_ak, var_k])])
    nan = jnp.asarray(jnp.nan, dt)
    a = jnp.where(usable, a, nan)
    k = jnp.where(usable, k, nan)
    cov = jnp.where(usable, cov, nan)
    se_a, se_k = jnp.sqrt(cov[0, 0]), jnp.sqrt(cov[1, 1])
    A = jnp.exp(a)
    return IntensityFit(
        A=A,
        k=k,
        se_A=A * se_a,
        se_k=se_k,
        A_ci=jnp.stack([jnp.exp(a - z * se_a), jnp.exp(a + z * se_a)]),
        k_ci=jnp.stack([k - z * se_k, k + z * se_k]),
        cov=cov,
        loglik=nan,
        n_obs=jnp.sum(curve.n_obs),
        n_fills=jnp.sum(curve.n_fills),
        iterations=jnp.asarray(0, jnp.int32),
        status=jnp.where(usable, FitStatus.OK, FitStatus.INSUFFICIENT_BINS).astype(jnp.int32),
    )


def fit_intensity_regression(
    delta: Any,
    duration: Any,
    filled: Any,
    *,
    fill_time: Any = None,
    bins: int = 10,
    confidence: float = 0.95,
) -> IntensityFit:
    """Classic cross-check: weighted least squares of ``ln lambda_hat`` on depth.

    ``ln lambda_hat_j = ln A - k delta_j`` over the bins of :func:`empirical_intensity` that
    have fills (and are not all filled), weighted by ``1 / Var(ln lambda_hat_j)``. Cheaper and
    cruder than :func:`fit_intensity` (binning, no use of empty bins); a large disagreement
    between the two flags a misspecified exponential shape. ``status`` is
    ``INSUFFICIENT_BINS`` with fewer than two usable bins.

    Example:
        >>> from jaxmm.strategy import fit_intensity_regression, simulate_fills
        >>> d, tau, f = simulate_fills(A=2.0, k=1.5, n=20000, seed=2)
        >>> reg = fit_intensity_regression(d, tau, f, bins=8)
        >>> int(reg.status), bool(abs(reg.k - 1.5) < 0.2)
        (0, True)
    """
    _check_confidence(confidence)
    curve = empirical_intensity(delta, duration, filled, fill_time=fill_time, bins=bins)
    z = ndtri(jnp.asarray(0.5 + 0.5 * float(confidence), curve.centers.dtype))
    return _regression_kernel(curve, z)


# --------------------------------------------------------------------------------------------
# gamma from an inventory half-life
# --------------------------------------------------------------------------------------------
def mean_reversion_rate(
    gamma: Any,
    k: Any,
    A: Any,
    sigma: Any,
    *,
    model: str = "glft",
    order_size: float = 1.0,
    horizon: Any = None,
) -> Array:
    """Linearised inventory mean-reversion rate ``kappa`` (per time unit) at ``q = 0``.

    The expected inventory drifts at ``Delta (lambda^b(delta^b(q)) - lambda^a(delta^a(q)))``;
    linearised at ``q = 0`` this is ``-kappa q``, so ``E[q_t] ~ q_0 exp(-kappa t)`` and the
    half-life is ``ln 2 / kappa``. For the GLFT closed form (symmetric, driftless, ``xi =
    gamma``): ``kappa = 2 Delta A k omega exp(-k (static + omega Delta / 2))`` with ``omega``
    and ``static`` as in :class:`GLFT`. For Avellaneda–Stoikov with ``tau = horizon``
    (rolling): ``kappa = 2 Delta A k gamma sigma^2 tau exp(-k (gamma sigma^2 tau / 2 +
    ln(1 + gamma/k) / gamma))``.

    Example:
        >>> from jaxmm.strategy import mean_reversion_rate
        >>> float(mean_reversion_rate(0.05, 0.3, 0.9, 0.3)) > 0
        True
    """
    if model not in ("glft", "as"):
        raise ValueError(f"model: must be 'glft' or 'as', got {model!r}")
    if model == "as" and horizon is None:
        raise ValueError("horizon: required (the constant T - t) for model='as'")
    g = as_float(gamma)
    dt = g.dtype
    k, A, s = cast(k, dt), cast(A, dt), cast(sigma, dt)
    D = float(order_size)
    if model == "glft":
        x = g * D / k
        r = _log1p_over_x(x)
        static = r / k
        inv_C = jnp.exp(jnp.log1p(x) + r)
        omega = jnp.sqrt(g * s * s * inv_C / (2.0 * A * D * k))
        return 2.0 * D * A * k * omega * jnp.exp(-k * (static + omega * D / 2.0))
    tau = cast(horizon, dt)
    u = g * s * s * tau
    return 2.0 * D * A * k * u * jnp.exp(-k * (u / 2.0 + jnp.log1p(g / k) / g))


@partial(jax.jit, static_argnames=("model", "order_size"))
def _gamma_kernel(kappa_target, k, A, sigma, horizon, *, model: str, order_size: float):
    dt = kappa_target.dtype
    scale = k / order_size
    log_grid = jnp.log(scale) + jnp.linspace(-10.0, 6.0, 321).astype(dt) * jnp.log(10.0)

    def kappa(lg):
        return mean_reversion_rate(
            jnp.exp(lg), k, A, sigma, model=model, order_size=order_size, horizon=horizon
        )

    kap = jax.vmap(kappa)(log_grid)
    kap = jnp.where(jnp.isfinite(kap), kap, -jnp.inf)
    i_max = jnp.argmax(kap)
    idx = jnp.arange(log_grid.shape[0])
    above = (kap >= kappa_target) & (idx <= i_max)
    i_hi = jnp.min(jnp.where(above, idx, log_grid.shape[0]))
    reachable = (i_hi < log_grid.shape[0]) & (i_hi > 0)
    i_hi_c = jnp.clip(i_hi, 1, log_grid.shape[0] - 1)
    lo0, hi0 = log_grid[i_hi_c - 1], log_grid[i_hi_c]

    def bisect(_, c):
        lo, hi = c
        mid = 0.5 * (lo + hi)
        up = kappa(mid) >= kappa_target
        return jnp.where(up, lo, mid), jnp.where(up, mid, hi)

    lo, hi = jax.lax.fori_loop(0, 80, bisect, (lo0, hi0))
    g = jnp.exp(0.5 * (lo + hi))
    status = jnp.where(reachable, FitStatus.OK, FitStatus.UNREACHABLE).astype(jnp.int32)
    g = jnp.where(reachable, g, jnp.nan)
    return GammaFit(gamma=g, kappa=jnp.where(reachable, kappa(jnp.log(g)), jnp.nan), status=status)


def gamma_from_half_life(
    half_life: Any,
    k: Any,
    A: Any,
    sigma: Any,
    *,
    model: str = "glft",
    order_size: float = 1.0,
    horizon: Any = None,
) -> GammaFit:
    """Risk aversion ``gamma`` whose quotes mean-revert the inventory with a given half-life.

    Solves ``ln 2 / mean_reversion_rate(gamma) = half_life`` (see
    :func:`mean_reversion_rate`) by a log-spaced scan of ``gamma in (k/Delta) [1e-10, 1e6]``
    and bisection on the increasing branch. Beyond its maximum the rate falls again (quotes
    skewed so far that fills dry up), so half-lives shorter than ``ln 2 / max kappa`` — or so
    long that ``gamma`` would fall below the scanned range — are ``UNREACHABLE`` (``gamma``
    NaN). The half-life is in the model time unit.

    Example:
        >>> from jaxmm.strategy import gamma_from_half_life, mean_reversion_rate
        >>> fit = gamma_from_half_life(60.0, k=0.3, A=0.9, sigma=0.3)
        >>> int(fit.status), round(0.6931471805599453 / float(fit.kappa), 3)
        (0, 60.0)
    """
    check_values("half_life", half_life, gt=0.0)
    check_values("k", k, gt=0.0)
    check_values("A", A, gt=0.0)
    check_values("sigma", sigma, gt=0.0)
    check_values("order_size", order_size, gt=0.0)
    if model not in ("glft", "as"):
        raise ValueError(f"model: must be 'glft' or 'as', got {model!r}")
    if model == "as":
        if horizon is None:
            raise ValueError("horizon: required (the constant T - t) for model='as'")
        check_values("horizon", horizon, gt=0.0)
    h = as_float(half_life)
    dt = h.dtype
    hz = cast(1.0 if horizon is None else horizon, dt)
    return _gamma_kernel(
        jnp.log(2.0) / h,
        cast(k, dt),
        cast(A, dt),
        cast(sigma, dt),
        hz,
        model=model,
        order_size=float(order_size),
    )


# --------------------------------------------------------------------------------------------
# sigma estimators (move to jaxmm.vol when it lands) and regimes
# --------------------------------------------------------------------------------------------
def _returns(prices: Array, times: Array | None, dt_unit: Array, kind: str):
    if kind == "log":
        r = jnp.diff(jnp.log(prices))
    else:
        r = jnp.diff(prices)
    if times is None:
        dts = jnp.full(r.shape, dt_unit, prices.dtype)
    else:
        dts = jnp.diff(times)
    return r, dts


@partial(jax.jit, static_argnames=("kind",))
def _realized_kernel(prices, times, dt_unit, *, kind: str) -> SigmaEstimate:
    r, dts = _returns(prices, times, dt_unit, kind)
    n = r.shape[0]
    total_t = jnp.sum(dts)
    ok = (n >= 1) & (total_t > 0)
    t_safe = jnp.where(ok, total_t, 1.0)
    sigma = jnp.where(ok, jnp.sqrt(jnp.sum(r * r) / t_safe), jnp.nan)
    status = jnp.where(n < 1, FitStatus.NO_DATA, jnp.where(ok, FitStatus.OK, FitStatus.NO_DATA))
    return SigmaEstimate(sigma=sigma, n_returns=jnp.asarray(n), status=status.astype(jnp.int32))


def _prepare_prices(prices, times, dt, kind):
    if kind not in ("absolute", "log"):
        raise ValueError(f"kind: must be 'absolute' or 'log', got {kind!r}")
    p = _host_or_array("prices", prices)
    if kind == "log":
        check_values("prices", prices, gt=0.0)
    else:
        check_values("prices", prices)
    check_values("dt", dt, gt=0.0)
    t = None
    if times is not None:
        _check_same_length(prices=prices, times=times)
        check_values("times", times)
        t = cast(_host_or_array("times", times), p.dtype)
        if is_host_value(times) and np.any(np.diff(np.asarray(times, dtype=float)) < 0):
            raise ValueError("times: must be non-decreasing")
    return p, t, cast(dt, p.dtype)


def realized_sigma(
    prices: Any, times: Any = None, *, dt: Any = 1.0, kind: str = "absolute"
) -> SigmaEstimate:
    """Realised volatility per sqrt(time unit): ``sqrt(sum r_i^2 / sum dt_i)``.

    ``kind="absolute"`` uses price changes (the A-S/GLFT ``sigma``, price units);
    ``kind="log"`` uses log returns (relative). ``times`` (same length as ``prices``) give
    irregular sampling; otherwise the spacing is ``dt``. This is the MLE for a driftless
    (arithmetic or geometric) Brownian motion. Fewer than two prices give status ``NO_DATA``.
    (Moves to ``jaxmm.vol`` when that lands.)

    Example:
        >>> from jaxmm.strategy import realized_sigma
        >>> round(float(realized_sigma([100.0, 101.0, 100.0, 102.0], dt=1.0).sigma), 6)  # sqrt(2)
        1.414214
    """
    p, t, d = _prepare_prices(prices, times, dt, kind)
    return _realized_kernel(p, t, d, kind=kind)


@partial(jax.jit, static_argnames=("kind",))
def _ewma_kernel(prices, times, dt_unit, decay, *, kind: str) -> EwmaSigma:
    r, dts = _returns(prices, times, dt_unit, kind)
    n = r.shape[0]
    if n == 0:
        nan = jnp.asarray(jnp.nan, prices.dtype)
        return EwmaSigma(path=r, sigma=nan, status=jnp.asarray(FitStatus.NO_DATA, jnp.int32))
    pos = dts > 0
    inst = jnp.where(pos, r * r / jnp.where(pos, dts, 1.0), jnp.nan)
    # Initialise with the first observation with positive time; skip zero-time steps.
    first = jnp.argmax(pos)
    v0 = jnp.where(jnp.any(pos), inst[first], jnp.nan)

    def step(v, x):
        val, ok = x
        v = jnp.where(ok, decay * v + (1.0 - decay) * val, v)
        return v, v

    idx = jnp.arange(n)
    _, path = jax.lax.scan(step, v0, (jnp.where(pos, inst, 0.0), pos & (idx > first)))
    path = jnp.where(idx >= first, path, jnp.nan)
    status = jnp.where(jnp.any(pos), FitStatus.OK, FitStatus.NO_DATA).astype(jnp.int32)
    sig = jnp.sqrt(path)
    return EwmaSigma(path=sig, sigma=sig[-1], status=status)


def ewma_sigma(
    prices: Any,
    times: Any = None,
    *,
    dt: Any = 1.0,
    decay: Any = 0.94,
    kind: str = "absolute",
) -> EwmaSigma:
    """EWMA (RiskMetrics-style) volatility per sqrt(time unit).

    ``v_i = decay v_{i-1} + (1 - decay) r_i^2 / dt_i``, started at the first return's
    ``r^2 / dt``; zero-length steps are skipped. Returns the path ``sqrt(v_i)`` (one entry per
    return), its last value and a status (``NO_DATA`` with fewer than two prices).
    (Moves to ``jaxmm.vol`` when that lands.)

    Example:
        >>> from jaxmm.strategy import ewma_sigma
        >>> e = ewma_sigma([100.0, 101.0, 100.0], decay=0.5)  # v = 1, then 0.5 + 0.5 * 1
        >>> [float(x) for x in e.path]
        [1.0, 1.0]
    """
    check_values("decay", decay, ge=0.0, le=1.0)
    p, t, d = _prepare_prices(prices, times, dt, kind)
    return _ewma_kernel(p, t, d, cast(decay, p.dtype), kind=kind)


def classify_vol_regime(
    sigma: Any, reference_sigma: Any, thresholds: Sequence[float] = (0.75, 1.25, 2.0)
) -> Array:
    """Volatility regime from the ratio ``sigma / reference_sigma`` (e.g. short-window over
    long-window realised vol, same units).

    With the default thresholds ``(0.75, 1.25, 2.0)``: ratio ``< 0.75`` is ``LOW``,
    ``[0.75, 1.25)`` ``NORMAL``, ``[1.25, 2.0)`` ``HIGH``, ``>= 2.0`` ``EXTREME``; a non-finite
    or negative ``sigma`` or a non-positive ``reference_sigma`` gives ``UNKNOWN`` (-1).
    Returns :class:`VolRegime` codes (int32), elementwise.

    Example:
        >>> from jaxmm.strategy import classify_vol_regime, VolRegime
        >>> VolRegime(int(classify_vol_regime(0.3, 0.2))).name
        'HIGH'
    """
    th = [float(x) for x in thresholds]
    if len(th) != 3 or not (0.0 < th[0] < th[1] < th[2]) or not all(np.isfinite(th)):
        raise ValueError(
            f"thresholds: must be three increasing positive numbers, got {tuple(thresholds)!r}"
        )
    s = as_float(sigma)
    ref = cast(reference_sigma, s.dtype)
    ok = jnp.isfinite(s) & (s >= 0) & jnp.isfinite(ref) & (ref > 0)
    ratio = s / jnp.where(ok, ref, 1.0)
    code = sum((ratio >= x).astype(jnp.int32) for x in th)
    return jnp.where(ok, code, VolRegime.UNKNOWN).astype(jnp.int32)
