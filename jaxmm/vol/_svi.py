"""Raw SVI slices (Gatheral 2004), butterfly diagnostics and vmapped multi-start calibration.

Convention: the raw parameters model **total implied variance** ``w(k) = sigma_BS(k)^2 T`` as a
function of log-moneyness ``k = ln(K / F_T)`` (not the variance ``sigma^2``):

    w(k) = a + b (rho (k - m) + sqrt((k - m)^2 + sigma^2))

Butterfly (density) condition, Gatheral and Jacquier (2014), "Arbitrage-free SVI volatility
surfaces", Quantitative Finance 14(1), eq. (2.1):

    g(k) = (1 - k w'/(2 w))^2 - (w'^2 / 4) (1/w + 1/4) + w''/2 >= 0

(``g < 0`` somewhere means the risk-neutral density is negative there: butterfly arbitrage).
Roger Lee's moment formula bounds the wings: ``b (1 + |rho|) <= 2`` for total variance.

Calibration (:func:`fit_svi`): vega-weighted least squares on implied vols, every slice and every
start solved at once by one ``vmap`` of a Levenberg-Marquardt kernel. The parameterisation makes
every iterate admissible: ``rho = 0.999 tanh(z)``, ``b = 2/(1+|rho|) sigmoid(z)`` (Lee bound),
``sigma = exp(z)``, ``m = z`` and ``a = exp(z) - b sigma sqrt(1 - rho^2)`` (minimum total
variance ``a + b sigma sqrt(1-rho^2) > 0``). Butterfly freedom is *checked*, not imposed: a
slice that fits only with ``g < 0`` comes back with status ``BUTTERFLY_ARBITRAGE``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from functools import partial
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._validate import as_host_array
from ._lm import LMState, lm_init, lm_run

__all__ = ["SVI", "SVIStatus", "SVIFit", "fit_svi", "butterfly_violations", "quote_mask"]

Array = jax.Array
ArrayLike = Any


class SVI(eqx.Module):
    """Raw SVI slice(s) in total variance; fields may carry a batch of slices (shape ``(n,)``).

    ``a`` (level), ``b`` (wing slope, >= 0), ``rho`` (skew, |rho| < 1), ``m`` (shift),
    ``sigma`` (ATM curvature, > 0). Methods broadcast ``k`` against the parameters: with
    batched parameters pass ``k[..., None]``-shaped or matching arrays.

    Example (Gatheral-Jacquier 2014, Example 3.1, Axel Vogt's slice with butterfly arbitrage):
        >>> import jax.numpy as jnp
        >>> from jaxmm.vol import SVI
        >>> s = SVI(a=-0.0410, b=0.1331, rho=0.3060, m=0.3586, sigma=0.4153)
        >>> bool(jnp.min(s.g(jnp.linspace(-1.5, 1.5, 301))) < 0)
        True
    """

    a: Array
    b: Array
    rho: Array
    m: Array
    sigma: Array

    def __init__(self, a, b, rho, m, sigma):
        self.a, self.b, self.rho, self.m, self.sigma = (
            jnp.asarray(x) for x in (a, b, rho, m, sigma)
        )

    def total_variance(self, k: ArrayLike) -> Array:
        """``w(k)``: total implied variance at log-moneyness ``k = ln(K/F)``."""
        x = jnp.asarray(k) - self.m
        return self.a + self.b * (self.rho * x + jnp.sqrt(x * x + self.sigma**2))

    def dw(self, k: ArrayLike) -> Array:
        """``w'(k)``."""
        x = jnp.asarray(k) - self.m
        return self.b * (self.rho + x / jnp.sqrt(x * x + self.sigma**2))

    def d2w(self, k: ArrayLike) -> Array:
        """``w''(k) = b sigma^2 / ((k-m)^2 + sigma^2)^(3/2)``."""
        x = jnp.asarray(k) - self.m
        s2 = self.sigma**2
        return self.b * s2 / (x * x + s2) ** 1.5

    def implied_vol(self, k: ArrayLike, expiry: ArrayLike) -> Array:
        """Black-Scholes implied vol ``sqrt(w(k) / T)`` (annualised; NaN where ``w < 0``)."""
        return jnp.sqrt(self.total_variance(k) / jnp.asarray(expiry))

    def g(self, k: ArrayLike) -> Array:
        """Gatheral-Jacquier density factor ``g(k)``; negative means butterfly arbitrage."""
        k = jnp.asarray(k)
        w, w1, w2 = self.total_variance(k), self.dw(k), self.d2w(k)
        return (1.0 - k * w1 / (2.0 * w)) ** 2 - 0.25 * w1 * w1 * (1.0 / w + 0.25) + 0.5 * w2


class SVIStatus(enum.IntEnum):
    """Per-slice outcome of :func:`fit_svi` (int in :attr:`SVIFit.status`), worst first.

    OK: converged, ATM level matches, ``g >= 0`` on the check grid.
    MAX_ITER: the best start had not met the convergence test within ``max_iter``.
    TOO_FEW_QUOTES: fewer than 5 usable quotes (after NaN/mask filtering); parameters NaN.
    ATM_MISMATCH: fitted vol at the quote nearest ``k = 0`` is off by more than ``atm_tol``.
    BUTTERFLY_ARBITRAGE: the fitted slice has ``g(k) < 0`` on the check grid.
    NON_FINITE: the fit produced NaN/inf.
    """

    OK = 0
    MAX_ITER = 1
    TOO_FEW_QUOTES = 2
    ATM_MISMATCH = 3
    BUTTERFLY_ARBITRAGE = 4
    NON_FINITE = 5


class SVIFit(eqx.Module):
    """Result of :func:`fit_svi`; leading axis = slice.

    ``params`` (:class:`SVI`, batched), ``status`` (:class:`SVIStatus` ints), ``iterations``
    (LM iterations of the best start), ``loss`` (0.5 sum of weighted squared vol residuals),
    ``rmse`` (unweighted RMSE of implied vol over used quotes, fraction: x100 for vol points),
    ``residuals`` (model - market vol per quote, NaN where unused), ``used`` (quote mask
    actually fitted), ``atm_error`` (model - market vol at the quote nearest ``k = 0``),
    ``min_g`` (minimum of ``g`` on the check grid), ``expiry``.
    """

    params: SVI
    status: Array
    iterations: Array
    loss: Array
    rmse: Array
    residuals: Array
    used: Array
    atm_error: Array
    min_g: Array
    expiry: Array


def quote_mask(bid: ArrayLike, ask: ArrayLike) -> Array:
    """Usable two-sided quotes: finite, ``bid > 0`` and ``ask > bid`` (not crossed or locked).

    Drops one-sided quotes (NaN or zero bid / ask), crossed and locked markets. Works on prices
    or on implied vols.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxmm.vol import quote_mask
        >>> bid, ask = jnp.array([1.0, 0.0, 2.0, 1.0]), jnp.array([1.2, 0.5, 1.9, jnp.nan])
        >>> quote_mask(bid, ask).tolist()
        [True, False, False, False]
    """
    bid, ask = jnp.asarray(bid), jnp.asarray(ask)
    return jnp.isfinite(bid) & jnp.isfinite(ask) & (bid > 0) & (ask > bid)


def butterfly_violations(
    svi: SVI, k_min: float = -2.0, k_max: float = 2.0, n: int = 2001
) -> tuple[Array, Array]:
    """Evaluate ``g`` on a fine grid; return ``(k_grid, g)`` with ``g < 0`` marking arbitrage.

    ``svi`` may be batched (fields of shape ``(s,)``): then ``g`` has shape ``(s, n)``.
    ``k_grid[g < 0]`` lists where the density is negative.

    Example:
        >>> from jaxmm.vol import SVI, butterfly_violations
        >>> k, g = butterfly_violations(SVI(-0.0410, 0.1331, 0.3060, 0.3586, 0.4153))
        >>> bool((g < 0).any()), round(float(k[g < 0].min()), 1)
        (True, 0.6)
    """
    dtype = jnp.result_type(svi.a)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.asarray(0.0).dtype
    k = jnp.linspace(k_min, k_max, n).astype(dtype)
    kk = k if jnp.ndim(svi.a) == 0 else k[None, :]
    s = svi if jnp.ndim(svi.a) == 0 else jax.tree.map(lambda x: x[:, None], svi)
    return k, s.g(kk)


# --- calibration --------------------------------------------------------------------------------


def _to_svi(z: Array) -> SVI:
    rho = 0.999 * jnp.tanh(z[2])
    b = 2.0 / (1.0 + jnp.abs(rho)) * jax.nn.sigmoid(z[1])
    sigma = jnp.exp(z[4])
    a = jnp.exp(z[0]) - b * sigma * jnp.sqrt(1.0 - rho * rho)
    return SVI(a, b, rho, z[3], sigma)


def _starts(k, vol, used, expiry, n_starts: int, dtype) -> Array:
    """Deterministic spread of starting points in z-space, scaled by the slice's data."""
    big = jnp.asarray(1e30, dtype)
    w_mkt = vol * vol * expiry
    wmin = jnp.min(jnp.where(used, w_mkt, big))
    wmin = jnp.where(jnp.isfinite(wmin) & (wmin < big), wmin, jnp.asarray(0.01, dtype))
    any_used = jnp.any(used)
    kmin = jnp.where(any_used, jnp.min(jnp.where(used, k, big)), jnp.min(k))
    kmax = jnp.where(any_used, jnp.max(jnp.where(used, k, -big)), jnp.max(k))
    span = jnp.where(kmax > kmin, kmax - kmin, jnp.asarray(1.0, dtype))
    u = jax.random.uniform(jax.random.PRNGKey(0), (n_starts, 5), dtype=dtype)
    level = wmin * (0.2 + 0.8 * u[:, 0])
    bfrac = 0.02 + 0.6 * u[:, 1]
    rho = -0.9 + 1.5 * u[:, 2]
    m = kmin + span * (0.2 + 0.6 * u[:, 3])
    sig = span * jnp.exp(jnp.log(0.01) + (jnp.log(0.8) - jnp.log(0.01)) * u[:, 4])
    z = jnp.stack(
        [
            jnp.log(level),
            jnp.log(bfrac / (1.0 - bfrac)),
            jnp.arctanh(rho / 0.999),
            m,
            jnp.log(sig),
        ],
        axis=1,
    )
    # start 0: a near-flat smile through the ATM level, the classic single start
    z0 = jnp.stack(
        [
            jnp.log(wmin),
            jnp.asarray(np.log(0.05 / 0.95), dtype),
            jnp.asarray(-0.3, dtype),
            jnp.asarray(0.0, dtype),
            jnp.log(0.2 * span),
        ]
    )
    return z.at[0].set(z0)


def _residual_fn(k, vol, wts, expiry) -> Callable[[Array], Array]:
    def residual(z):
        w = _to_svi(z).total_variance(k)
        tiny = jnp.asarray(1e-12, k.dtype)
        model = jnp.sqrt(jnp.maximum(w, tiny) / expiry)
        return jnp.sqrt(wts) * (model - vol)

    return residual


def _vega_weights(k, vol, expiry, used):
    s = vol * jnp.sqrt(expiry)
    s = jnp.where(used & (s > 0), s, jnp.ones_like(s))
    d1 = -k / s + 0.5 * s
    vega = jnp.exp(-0.5 * d1 * d1)  # forward vega / (F sqrt(T) / sqrt(2 pi)), in (0, 1]
    return jnp.where(used, vega, jnp.zeros_like(vega))


@partial(jax.jit, static_argnames=("n_starts",))
def _svi_init(k, vol, wts, used, expiry, n_starts: int):
    def per_slice(k1, v1, w1, u1, t1):
        v1 = jnp.where(u1, v1, jnp.zeros_like(v1))
        res = _residual_fn(k1, v1, w1, t1)
        z0 = _starts(k1, v1, u1, t1, n_starts, k1.dtype)
        return jax.vmap(lambda z: lm_init(res, z))(z0)

    return jax.vmap(per_slice)(k, vol, wts, used, expiry)


@partial(jax.jit, static_argnames=("n_steps",))
def _svi_chunk(state: LMState, k, vol, wts, used, expiry, n_steps: int) -> LMState:
    def per_slice(st, k1, v1, w1, u1, t1):
        v1 = jnp.where(u1, v1, jnp.zeros_like(v1))
        res = _residual_fn(k1, v1, w1, t1)
        return jax.vmap(lambda s: lm_run(res, s, n_steps))(st)

    return jax.vmap(per_slice)(state, k, vol, wts, used, expiry)


@jax.jit
def _svi_finish(state: LMState, k, vol, used, expiry, atm_tol):
    dtype = k.dtype
    best = jnp.argmin(jnp.where(jnp.isfinite(state.loss), state.loss, jnp.inf), axis=1)
    take = lambda x: jnp.take_along_axis(x, best.reshape((-1,) + (1,) * (x.ndim - 1)), axis=1)[:, 0]
    z = take(state.z)
    loss, iters, conv = take(state.loss), take(state.iterations), take(state.converged)
    params = jax.vmap(_to_svi)(z)
    t = expiry[:, None]
    s2 = jax.tree.map(lambda x: x[:, None], params)
    model = jnp.sqrt(jnp.maximum(s2.total_variance(k), 0.0) / t)
    resid = jnp.where(used, model - vol, jnp.nan)
    n_used = jnp.sum(used, axis=1)
    sq = jnp.where(used, (model - vol) ** 2, jnp.zeros_like(model))
    rmse = jnp.sqrt(jnp.sum(sq, axis=1) / jnp.maximum(n_used, 1).astype(dtype))
    big = jnp.asarray(1e30, dtype)
    atm_idx = jnp.argmin(jnp.where(used, jnp.abs(k), big), axis=1)
    atm_err = jnp.take_along_axis(jnp.where(used, model - vol, 0.0), atm_idx[:, None], 1)[:, 0]
    any_used = jnp.any(used, axis=1)
    kmin = jnp.where(any_used, jnp.min(jnp.where(used, k, big), axis=1), jnp.min(k, axis=1))
    kmax = jnp.where(any_used, jnp.max(jnp.where(used, k, -big), axis=1), jnp.max(k, axis=1))
    grid = jnp.linspace(0.0, 1.0, 401).astype(dtype)
    kg = (kmin - 0.5)[:, None] + (kmax - kmin + 1.0)[:, None] * grid[None, :]
    min_g = jnp.min(s2.g(kg), axis=1)
    finite = jnp.isfinite(loss) & jnp.all(jnp.isfinite(z), axis=1)
    few = n_used < 5
    status = jnp.where(
        ~finite,
        SVIStatus.NON_FINITE,
        jnp.where(
            few,
            SVIStatus.TOO_FEW_QUOTES,
            jnp.where(
                jnp.abs(atm_err) > atm_tol,
                SVIStatus.ATM_MISMATCH,
                jnp.where(
                    min_g < 0,
                    SVIStatus.BUTTERFLY_ARBITRAGE,
                    jnp.where(conv, SVIStatus.OK, SVIStatus.MAX_ITER),
                ),
            ),
        ),
    ).astype(jnp.int32)
    nanify = lambda x: jnp.where(few, jnp.nan, x)
    params = jax.tree.map(nanify, params)
    return params, status, iters, loss, nanify(rmse), resid, atm_err, min_g


def fit_svi(
    log_moneyness: ArrayLike,
    implied_vol: ArrayLike,
    expiry: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    weights: ArrayLike | None = None,
    n_starts: int = 32,
    max_iter: int = 150,
    atm_tol: float = 0.01,
    progress: bool | Callable[[int, Array], None] = False,
    chunk: int = 50,
) -> SVIFit:
    """Calibrate raw SVI to implied vols, every slice and every start in one vmapped batch.

    Args:
        log_moneyness: ``k = ln(K / F_T)``, shape ``(n_strikes,)`` for one slice or
            ``(n_slices, n_strikes)`` (pad ragged slices and mask the padding).
        implied_vol: market implied vols (annualised fractions), same shape. NaN entries are
            treated as missing quotes (masked), not errors.
        expiry: years to expiry per slice, shape ``()`` or ``(n_slices,)``, > 0.
        mask: optional bool array, True = use the quote (e.g. :func:`quote_mask` of bid/ask).
        weights: optional non-negative weights; default Black vega
            ``exp(-d1^2 / 2)`` (forward vega up to a per-slice constant): vega-weighted least
            squares in vol, ``sum_i vega_i (sigma_model - sigma_i)^2``.
        n_starts: starts per slice (static); start 0 is the classic flat-smile start, the rest
            a fixed pseudo-random spread scaled by the slice's data (deterministic).
        max_iter: Levenberg-Marquardt iterations per start (rounded up to a multiple of
            ``chunk``).
        atm_tol: ATM sanity bound on |model - market| vol at the quote nearest ``k = 0``.
        progress: True for a tqdm bar (if tqdm is installed), or ``callback(iteration,
            best_loss_per_slice)`` called after every ``chunk`` iterations.
        chunk: iterations per compiled chunk (static).

    Returns:
        :class:`SVIFit` with a per-slice :class:`SVIStatus`; ``params`` are NaN for slices with
        fewer than 5 usable quotes.

    Raises:
        ValueError: naming the argument for empty or mismatched shapes, negative vols,
            non-positive expiries or negative weights (host inputs).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxmm.vol import SVI, fit_svi
        >>> k = jnp.linspace(-0.4, 0.4, 21)
        >>> true = SVI(0.02, 0.1, -0.4, 0.05, 0.2)
        >>> fit = fit_svi(k, true.implied_vol(k, 0.5), 0.5, n_starts=8)
        >>> int(fit.status[0]), float(fit.rmse[0]) < 1e-6
        (0, True)
    """
    k_h = (
        as_host_array("log_moneyness", log_moneyness)
        if not isinstance(log_moneyness, jax.Array)
        else log_moneyness
    )
    v_h = (
        as_host_array("implied_vol", implied_vol)
        if not isinstance(implied_vol, jax.Array)
        else implied_vol
    )
    if k_h.ndim not in (1, 2) or k_h.shape[-1] == 0 or k_h.size == 0:
        raise ValueError(
            f"log_moneyness: need shape (n_strikes,) or (n_slices, n_strikes) "
            f"with n_strikes >= 1, got {k_h.shape}"
        )
    if v_h.shape != k_h.shape:
        raise ValueError(f"implied_vol: shape {v_h.shape} differs from log_moneyness {k_h.shape}")
    if not isinstance(implied_vol, jax.Array):
        v_np = np.asarray(implied_vol, dtype=float)
        if (v_np[np.isfinite(v_np)] < 0).any():
            raise ValueError("implied_vol: must be >= 0 (NaN marks a missing quote)")
    if not isinstance(log_moneyness, jax.Array) and not np.isfinite(np.asarray(k_h)).all():
        raise ValueError("log_moneyness: must be finite")
    k = jnp.atleast_2d(jnp.asarray(log_moneyness))
    if not jnp.issubdtype(k.dtype, jnp.floating):
        k = k.astype(jnp.asarray(0.0).dtype)
    dtype = k.dtype
    vol = jnp.atleast_2d(jnp.asarray(implied_vol)).astype(dtype)
    n_slices = k.shape[0]
    t_h = np.asarray(expiry) if not isinstance(expiry, jax.Array) else None
    if t_h is not None:
        if not np.isfinite(t_h).all() or (t_h <= 0).any():
            raise ValueError(f"expiry: must be finite and > 0, got {t_h}")
        if t_h.ndim > 1 or (t_h.ndim == 1 and t_h.shape[0] != n_slices):
            raise ValueError(f"expiry: need shape () or ({n_slices},), got {t_h.shape}")
    t = jnp.broadcast_to(jnp.asarray(expiry).astype(dtype), (n_slices,))
    used = jnp.isfinite(vol) & (vol > 0)
    if mask is not None:
        mk = jnp.atleast_2d(jnp.asarray(mask)).astype(bool)
        if mk.shape != k.shape:
            raise ValueError(f"mask: shape {mk.shape} differs from log_moneyness {k.shape}")
        used = used & mk
    vol = jnp.where(used, vol, jnp.zeros_like(vol))
    if weights is None:
        wts = _vega_weights(k, vol, t[:, None], used)
    else:
        if not isinstance(weights, jax.Array) and (np.asarray(weights) < 0).any():
            raise ValueError("weights: must be >= 0")
        wts = jnp.where(used, jnp.atleast_2d(jnp.asarray(weights)).astype(dtype), 0.0)
    state = _svi_init(k, vol, wts, used, t, n_starts)
    n_chunks = max(1, -(-max_iter // chunk))
    bar = None
    if progress is True:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=n_chunks * chunk, desc="fit_svi", leave=False)
        except ImportError:  # pragma: no cover - tqdm is optional
            bar = None
    for i in range(n_chunks):
        state = _svi_chunk(state, k, vol, wts, used, t, chunk)
        if bar is not None:
            bar.update(chunk)
        elif callable(progress):
            progress((i + 1) * chunk, jnp.min(state.loss, axis=1))
        if bool(jnp.all(state.converged)):
            break
    if bar is not None:
        bar.close()
    params, status, iters, loss, rmse, resid, atm_err, min_g = _svi_finish(
        state, k, vol, used, t, jnp.asarray(atm_tol, dtype)
    )
    fit = SVIFit(params, status, iters, loss, rmse, resid, used, atm_err, min_g, t)
    return fit
