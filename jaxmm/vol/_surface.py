"""``VolSurface``: sigma(K, T) and w(k, T) from fitted SVI / SSVI slices or a grid of market IVs,
and static-arbitrage (calendar and butterfly) detection on surfaces and raw chains.

Conventions: expiry ``T`` in years; ``F(T) = S exp((r - q) T)``; ``k = ln(K / F(T))``;
``w(k, T) = sigma(K, T)^2 T``.

Interpolation across expiries is **linear in total variance at fixed k** between the calibrated
expiries: if the slices satisfy ``w(k, T_i) <= w(k, T_{i+1})`` for every ``k`` (no calendar
arbitrage between nodes) then every interpolated ``w(k, T)`` is non-decreasing in ``T`` too, so
the interpolation introduces no calendar arbitrage. Before the first expiry ``w`` is scaled
``w(k, T_1) T / T_1`` (constant implied vol); after the last, ``w(k, T_n) T / T_n``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._validate import check_values
from ..pricing import bsm_greeks
from ..pricing._bsm import black_scholes_scalar
from ._ssvi import SSVI
from ._svi import SVI

__all__ = ["VolSurface", "ArbitrageReport", "detect_arbitrage"]

Array = jax.Array
ArrayLike = Any


def _interp_expiry(w_nodes: Array, expiries: Array, t: Array) -> Array:
    """Linear-in-T total variance at fixed k; ``w_nodes`` shape ``(n_T,)`` at one k."""
    first = w_nodes[0] * t / expiries[0]
    last = w_nodes[-1] * t / expiries[-1]
    inner = jnp.interp(t, expiries, w_nodes)
    return jnp.where(t < expiries[0], first, jnp.where(t > expiries[-1], last, inner))


class VolSurface(eqx.Module):
    """An implied-volatility surface, a pytree differentiable in its parameters and in (K, T).

    Build with :meth:`from_svi`, :meth:`from_ssvi` or :meth:`from_grid`. ``kind`` (static) says
    which: ``"svi"`` (``slices`` is a batched :class:`SVI`), ``"ssvi"`` (``slices`` is an
    :class:`SSVI`), ``"grid"`` (``slices`` is ``(k_nodes, w_nodes)``, total variance on a
    log-moneyness grid per expiry, linear in ``k`` inside and flat in vol outside the grid).

    Delta conventions (:meth:`delta`):

    - ``"sticky_strike"``: sigma(K, T) does not move with spot; delta is the BSM delta.
    - ``"sticky_moneyness"``: sigma depends on ``k = ln(K/F)`` and moves with spot, so
      ``delta = dV/dS`` with ``sigma = sigma(ln(K / F(S)), T)`` differentiated through —
      ``delta_BS + vega * dsigma/dk * (-1/S)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxmm.vol import SVI, VolSurface
        >>> sl = SVI(jnp.array([0.01, 0.03]), 0.1, -0.4, 0.0, 0.2)
        >>> surf = VolSurface.from_svi(sl, jnp.array([0.25, 1.0]), spot=100.0)
        >>> round(float(surf.total_variance(0.0, 1.0)), 6)
        0.05
    """

    expiries: Array
    slices: Any
    spot: Array
    rate: Array
    dividend: Array
    kind: str = eqx.field(static=True)

    # --- constructors -------------------------------------------------------------------
    @classmethod
    def from_svi(cls, slices: SVI, expiries, spot, rate=0.0, dividend=0.0) -> VolSurface:
        """From per-expiry raw SVI slices (fields shape ``(n_T,)``), expiries increasing."""
        _check_expiries(expiries)
        ex = jnp.asarray(expiries)
        sl = jax.tree.map(lambda x: jnp.broadcast_to(jnp.asarray(x), ex.shape), slices)
        return cls(ex, sl, *_market(spot, rate, dividend), kind="svi")

    @classmethod
    def from_ssvi(cls, surface: SSVI, spot, rate=0.0, dividend=0.0) -> VolSurface:
        """From a fitted :class:`SSVI` (its own ATM term structure interpolation is used)."""
        return cls(surface.expiries, surface, *_market(spot, rate, dividend), kind="ssvi")

    @classmethod
    def from_grid(cls, log_moneyness, implied_vol, expiries, spot, rate=0.0, dividend=0.0):
        """From market IVs on a common log-moneyness grid ``(n_k,)`` x expiries ``(n_T,)``.

        ``implied_vol`` shape ``(n_T, n_k)``, finite and > 0; ``log_moneyness`` increasing.
        """
        _check_expiries(expiries)
        check_values("implied_vol", implied_vol, gt=0.0)
        kk = np.asarray(log_moneyness) if not isinstance(log_moneyness, jax.Array) else None
        if kk is not None and (kk.ndim != 1 or kk.size < 2 or (np.diff(kk) <= 0).any()):
            raise ValueError("log_moneyness: need a 1-D strictly increasing grid of >= 2 points")
        ex = jnp.asarray(expiries)
        iv = jnp.asarray(implied_vol)
        if iv.shape != (ex.shape[0], jnp.shape(log_moneyness)[0]):
            raise ValueError(
                f"implied_vol: need shape ({ex.shape[0]}, {jnp.shape(log_moneyness)[0]}), "
                f"got {iv.shape}"
            )
        w = iv * iv * ex[:, None].astype(iv.dtype)
        return cls(ex, (jnp.asarray(log_moneyness), w), *_market(spot, rate, dividend), "grid")

    # --- evaluation ---------------------------------------------------------------------
    def forward(self, expiry: ArrayLike) -> Array:
        """``F(T) = S exp((r - q) T)``."""
        return self.spot * jnp.exp((self.rate - self.dividend) * jnp.asarray(expiry))

    def _w_scalar(self, k: Array, t: Array) -> Array:
        if self.kind == "ssvi":
            return self.slices.total_variance(k, t)
        if self.kind == "svi":
            nodes = self.slices.total_variance(k)
        else:
            kg, wg = self.slices
            # flat vol outside the grid: w scales with the node's own total variance
            nodes = jax.vmap(lambda row: jnp.interp(k, kg, row))(wg)
        return _interp_expiry(nodes, self.expiries, t)

    def total_variance(self, k: ArrayLike, expiry: ArrayLike) -> Array:
        """``w(k, T)`` at log-moneyness ``k = ln(K/F(T))``; broadcasts ``k`` and ``expiry``."""
        return _total_variance_jit(self, k, expiry)

    def implied_vol(self, strike: ArrayLike, expiry: ArrayLike) -> Array:
        """``sigma(K, T) = sqrt(w(ln(K/F(T)), T) / T)``; strike in currency, T in years."""
        return _implied_vol_jit(self, strike, expiry)

    def atm_vol(self, expiry: ArrayLike) -> Array:
        """ATM-forward implied vol term structure ``sqrt(w(0, T) / T)``."""
        t = jnp.asarray(expiry)
        return jnp.sqrt(self.total_variance(jnp.zeros_like(t), t) / t)

    def forward_variance(self, t1: ArrayLike, t2: ArrayLike) -> Array:
        """ATM forward variance ``(w(0, T2) - w(0, T1)) / (T2 - T1)`` (annualised)."""
        t1, t2 = jnp.asarray(t1), jnp.asarray(t2)
        w1 = self.total_variance(jnp.zeros_like(t1), t1)
        w2 = self.total_variance(jnp.zeros_like(t2), t2)
        return (w2 - w1) / (t2 - t1)

    def greeks(self, strike: ArrayLike, expiry: ArrayLike, is_call: ArrayLike):
        """Price and Greeks of a chain in one call: :func:`jaxmm.pricing.bsm_greeks` with
        sigma from the surface (sticky-strike Greeks; see :meth:`delta` for the other)."""
        vol = self.implied_vol(strike, expiry)
        return bsm_greeks(self.spot, strike, expiry, self.rate, self.dividend, vol, is_call)

    def delta(self, strike, expiry, is_call, rule: str = "sticky_strike") -> Array:
        """Spot delta under ``rule`` = ``"sticky_strike"`` or ``"sticky_moneyness"``.

        Sticky-moneyness differentiates the price with the vol read at ``k = ln(K/F(S))``, so
        the smile moves with the spot (class docstring).
        """
        if rule not in ("sticky_strike", "sticky_moneyness"):
            raise ValueError(f"rule: must be 'sticky_strike' or 'sticky_moneyness', got {rule!r}")
        return _delta_jit(self, strike, expiry, is_call, rule)

    def arbitrage(self, k_grid: ArrayLike | None = None, tol: float = 1e-10) -> ArbitrageReport:
        """Calendar and butterfly check of this surface at its expiries on ``k_grid``."""
        k = jnp.linspace(-1.0, 1.0, 201) if k_grid is None else jnp.asarray(k_grid)
        k = k.astype(jnp.result_type(self.expiries))
        w = _grid_jit(self, k)
        kk = np.broadcast_to(np.asarray(k), w.shape)
        return detect_arbitrage(kk, np.asarray(w), np.asarray(self.expiries), total=True, tol=tol)


def _w_vec(surf: VolSurface, k, t):
    k, t = jnp.broadcast_arrays(jnp.asarray(k), jnp.asarray(t))
    dtype = jnp.result_type(surf.expiries)
    return jnp.vectorize(surf._w_scalar)(k.astype(dtype), t.astype(dtype))


@jax.jit
def _total_variance_jit(surf: VolSurface, k, t):
    return _w_vec(surf, k, t)


def _iv(surf: VolSurface, strike, t):
    dtype = jnp.result_type(surf.expiries)
    t = jnp.asarray(t).astype(dtype)
    k = jnp.log(jnp.asarray(strike).astype(dtype) / surf.forward(t))
    return jnp.sqrt(_w_vec(surf, k, t) / t)


_implied_vol_jit = jax.jit(_iv)


@jax.jit
def _grid_jit(surf: VolSurface, k):
    return jax.vmap(lambda t: _w_vec(surf, k, t))(surf.expiries)


@partial(jax.jit, static_argnames=("rule",))
def _delta_jit(surf: VolSurface, strike, expiry, is_call, rule: str):
    strike, expiry, is_call = jnp.broadcast_arrays(
        jnp.asarray(strike), jnp.asarray(expiry), jnp.asarray(is_call)
    )
    dtype = jnp.result_type(surf.expiries)
    strike, expiry = strike.astype(dtype), expiry.astype(dtype)

    def price(s, kk, t, c):
        if rule == "sticky_strike":
            vol = jax.lax.stop_gradient(_iv(surf, kk, t))
        else:
            fwd = s * jnp.exp((surf.rate - surf.dividend) * t)
            vol = jnp.sqrt(_w_vec(surf, jnp.log(kk / fwd), t) / t)
        return black_scholes_scalar(s, kk, t, surf.rate, surf.dividend, vol, c)

    one = lambda kk, t, c: jax.grad(price)(surf.spot.astype(dtype), kk, t, c)
    return jnp.vectorize(one)(strike, expiry, is_call.astype(bool))


def _check_expiries(expiries) -> None:
    if isinstance(expiries, jax.Array):
        return
    t = np.asarray(expiries, dtype=float)
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"expiries: need a non-empty 1-D array, got shape {t.shape}")
    if not np.isfinite(t).all() or (t <= 0).any() or (np.diff(t) <= 0).any():
        raise ValueError("expiries: must be finite, > 0 and strictly increasing")


def _market(spot, rate, dividend):
    check_values("spot", spot, gt=0.0)
    check_values("rate", rate)
    check_values("dividend", dividend)
    return jnp.asarray(spot), jnp.asarray(rate), jnp.asarray(dividend)


# --- arbitrage detection (host-side report for the market maker) -----------------------------


@dataclass(frozen=True)
class ArbitrageReport:
    """Static-arbitrage findings.

    ``calendar``: one dict per offending adjacent expiry pair ``(i, i + 1)``: ``expiries``,
    ``k`` (log-moneyness points where ``w(k, T_{i+1}) < w(k, T_i) - tol``) and ``max_drop``.
    ``butterfly``: one dict per expiry index with a negative density: ``expiry``, ``k`` (centre
    points of the offending strike triples), ``min_second_difference`` of normalised call
    prices in strike.
    """

    calendar: list[dict] = field(default_factory=list)
    butterfly: list[dict] = field(default_factory=list)

    @property
    def has_arbitrage(self) -> bool:
        """True when any calendar or butterfly violation was found."""
        return bool(self.calendar or self.butterfly)


def _norm_call(k: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Undiscounted Black call with ``F = 1``, strike ``e^k``, total variance ``w``."""
    from scipy.special import ndtr

    s = np.sqrt(np.maximum(w, 1e-300))
    d1 = -k / s + 0.5 * s
    return ndtr(d1) - np.exp(k) * ndtr(d1 - s)


def detect_arbitrage(
    log_moneyness: ArrayLike,
    values: ArrayLike,
    expiries: ArrayLike,
    *,
    total: bool = False,
    mask: ArrayLike | None = None,
    tol: float = 1e-10,
) -> ArbitrageReport:
    """Flag calendar spreads with decreasing total variance and butterflies with negative density.

    Works on a raw chain: per expiry its own strikes (``(n_T, n_k)`` arrays, padded and masked).

    - Calendar: for adjacent expiries ``T_i < T_{i+1}``, the later slice's total variance is
      interpolated (linearly in ``k``, inside its quoted range only) at the earlier slice's
      ``k``; ``w_{i+1}(k) < w_i(k) - tol`` is a calendar arbitrage (buy the longer, sell the
      shorter at the same forward moneyness).
    - Butterfly: the normalised call ``c(K) = Black(F=1, K=e^k, w)`` must be convex in ``K``;
      a second divided difference below ``-tol`` over consecutive quotes is flagged.

    Args:
        log_moneyness: ``(n_T, n_k)`` ``k = ln(K/F_T)``, increasing along each row.
        values: implied vols (``total=False``) or total variances (``total=True``), same shape.
        expiries: ``(n_T,)`` increasing, years.
        mask: optional bool, True = quote present.

    Example:
        >>> import numpy as np
        >>> from jaxmm.vol import detect_arbitrage
        >>> k = np.tile(np.linspace(-0.2, 0.2, 5), (2, 1))
        >>> iv = np.array([[0.25] * 5, [0.15] * 5])   # vol falls too fast: w decreases
        >>> rep = detect_arbitrage(k, iv, [0.5, 1.0])
        >>> [c["pair"] for c in rep.calendar]
        [(0, 1)]
    """
    k = np.atleast_2d(np.asarray(log_moneyness, dtype=float))
    v = np.atleast_2d(np.asarray(values, dtype=float))
    t = np.atleast_1d(np.asarray(expiries, dtype=float))
    if k.shape != v.shape or k.shape[0] != t.shape[0]:
        raise ValueError(
            f"values: shape {v.shape} must equal log_moneyness {k.shape} with {t.shape[0]} expiries"
        )
    if (t <= 0).any() or (np.diff(t) <= 0).any():
        raise ValueError("expiries: must be > 0 and strictly increasing")
    m = np.isfinite(v) & np.isfinite(k)
    if mask is not None:
        m &= np.asarray(mask, dtype=bool)
    if (v[m] < 0).any():
        raise ValueError("values: negative implied vol / total variance")
    w = v if total else v * v * t[:, None]
    report = ArbitrageReport()
    for i in range(t.shape[0] - 1):
        k0, w0 = k[i][m[i]], w[i][m[i]]
        k1, w1 = k[i + 1][m[i + 1]], w[i + 1][m[i + 1]]
        if k0.size == 0 or k1.size < 2:
            continue
        inside = (k0 >= k1.min()) & (k0 <= k1.max())
        w1_at = np.interp(k0[inside], k1, w1)
        drop = w0[inside] - w1_at
        bad = drop > tol
        if bad.any():
            report.calendar.append(
                {
                    "pair": (i, i + 1),
                    "expiries": (float(t[i]), float(t[i + 1])),
                    "k": k0[inside][bad].tolist(),
                    "max_drop": float(drop[bad].max()),
                }
            )
    for i in range(t.shape[0]):
        ki, wi = k[i][m[i]], w[i][m[i]]
        if ki.size < 3:
            continue
        strikes = np.exp(ki)
        c = _norm_call(ki, wi)
        slope = np.diff(c) / np.diff(strikes)
        second = np.diff(slope) / (0.5 * (strikes[2:] - strikes[:-2]))
        bad = second < -tol
        if bad.any():
            report.butterfly.append(
                {
                    "expiry_index": i,
                    "expiry": float(t[i]),
                    "k": ki[1:-1][bad].tolist(),
                    "min_second_difference": float(second.min()),
                }
            )
    return report
