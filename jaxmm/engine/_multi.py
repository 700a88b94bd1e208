"""Several underlyings: one chain quoter each, a shared risk view, capital allocation.

:class:`UnderlyingManager` holds, per underlying, its :class:`~jaxmm.engine.OptionChain`,
:class:`~jaxmm.engine.QuoteParams`, limits (a :class:`jaxmm.risk.RiskLimits`, from which the
chain's :class:`~jaxmm.engine.QuoteLimits` follow), the latest spot and vols, and a
:class:`jaxmm.risk.LimitChecker` over its options and the underlying itself. On top of them it
keeps one risk view in a COMMON CURRENCY (``fx`` converts each underlying's currency into it):

- **Dollar Greeks** (the convention of :mod:`jaxmm.portfolio`): ``dollar_delta = D S fx``
  (money per 100 % move of ``S``; x 0.01 for a 1 % move), ``dollar_gamma = Gamma S^2 / 100 fx``
  (change of dollar delta for a 1 % move of ``S``), ``vega fx`` (money per 1.00 of vol),
  ``theta fx`` (money per year). Raw delta and gamma are unit counts of different
  underlyings and are never summed across underlyings; the dollar figures are.
- **Total limits** (:class:`TotalLimits`) on those four sums, checked on the POST-trade state
  by :meth:`UnderlyingManager.check_order` together with the underlying's own limits: the
  order passes only if both pass (allow / scale to the largest passing lot multiple / reject),
  with the same rule as :class:`jaxmm.risk.LimitChecker`: each measure ends within its limit
  (with a ``1e-9 x limit`` safety margin), or, if already over, no worse.
- **Portfolio risk across underlyings** (delta-gamma-vega, one horizon ``h``, default one
  calendar day 1/365 year). Per underlying ``i``: spot move ``x_i = dS_i`` with stdev
  ``a_i = S_i sigma_i sqrt(h)`` and implied-vol level move ``y_i`` with stdev
  ``n_i = nu_i sqrt(h)`` (``sigma_i``, ``nu_i``, ``rho_sv,i`` = the quoter's
  ``underlying_vol``, ``vol_of_vol``, ``spot_vol_corr``). ``corr(x_i, x_j) = rho_ij`` (the
  PSD-checked correlation matrix) and ``y_i = rho_sv,i z_i + sqrt(1 - rho_sv,i^2) e_i`` with
  ``z_i = x_i / a_i`` and ``e_i`` independent: vol moves of different underlyings are related
  only through their spots, and the joint covariance is PSD by construction. The book PnL
  ``P_i = fx_i (D_i x_i + Gamma_i x_i^2 / 2 + V_i y_i + Theta_i h)`` then has, exactly for
  these normal factors (third moments vanish, ``Cov(x_i^2, x_j^2) = 2 Cov(x_i, x_j)^2``),

      M_ij = Cov(P_i, P_j) / (fx_i fx_j)
           = rho_ij a_i a_j D_i D_j
             + rho_ij rho_sv,j a_i n_j D_i V_j + rho_ij rho_sv,i n_i a_j V_i D_j
             + c_ij n_i n_j V_i V_j + (rho_ij a_i a_j)^2 Gamma_i Gamma_j / 2
      c_ii = 1,  c_ij = rho_ij rho_sv,i rho_sv,j (i != j)

  The portfolio stdev is ``sqrt(1' M 1)``, the Euler risk contribution of book ``i`` is
  ``(M 1)_i / sqrt(1' M 1)`` (they sum to the stdev), the mean is
  ``sum_i fx_i (Theta_i h + Gamma_i a_i^2 / 2)`` and the reported VaR is the
  delta-gamma-normal approximation ``z_alpha stdev - mean`` (for a pure-delta book it is
  exactly :func:`jaxmm.risk.parametric_var`).
- **Capital allocation** (weights ``w``, ``sum w = 1``): ``"equal"``, ``"target"`` (validated
  weights), ``"volatility"`` (``w ∝ 1 / sigma_i``) and ``"risk_parity"`` (equal risk
  contribution of each underlying's book to the portfolio stdev, :func:`risk_parity_weights`:
  on the book-PnL covariance ``M`` above (``basis="book"``) or on the covariance of the
  underlyings' returns per unit of notional (``basis="notional"``)). An underlying with
  weight ``w_i`` quotes with ``scale_i = w_i / max_j w_j``: its base size and its Greek,
  position and notional limits are multiplied by ``scale_i`` (integer limits rounded down).
  Allocation never raises a limit above its configured value.

Details and a worked example: ``docs/multi_underlying.md``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .._validate import as_host_array, check_values
from ..portfolio import Fill, Instrument, Order, Portfolio, Side
from ..pricing import bsm_core_greeks
from ..risk import (
    Action,
    Decision,
    GreekLimits,
    LimitChecker,
    RiskLimits,
    nearest_correlation,
    normal_quantile,
    validate_correlation,
)
from ..vol import VolSurface
from ._config import option_symbol
from ._quote import (
    ChainMarket,
    ChainQuote,
    OptionChain,
    QuoteLimits,
    QuoteParams,
    QuoteStatus,
    quote_chain,
)

__all__ = [
    "TotalLimits",
    "ALLOCATION_MODES",
    "equal_weights",
    "target_weights",
    "inverse_vol_weights",
    "risk_contributions",
    "risk_parity_weights",
    "pnl_covariance",
    "pnl_risk",
    "UnderlyingManager",
]

_MARGIN_CHECK = 1e-9  # as jaxmm.risk.LimitChecker
_MARGIN_QUOTE = 1e-8  # as the chain-quoting kernel: quoted sizes always pass the check
_TOTALS = ("dollar_delta", "dollar_gamma", "vega", "theta")
_GREEKS = ("delta", "gamma", "vega", "theta")
ALLOCATION_MODES: tuple[str, ...] = ("equal", "target", "risk_parity", "volatility")
"""The capital-allocation modes of :meth:`UnderlyingManager.allocate`."""


# --- limits in the common currency ------------------------------------------------------------


def _check_limit(name: str, x: Any) -> None:
    if x is None:
        return
    if isinstance(x, bool) or not isinstance(x, int | float) or not (math.isfinite(x) and x >= 0):
        raise ValueError(f"{name}: must be a finite number >= 0 or None, got {x!r}")


@dataclass(frozen=True)
class TotalLimits:
    """Limits on the whole book's Greeks in the common currency (``None`` = unlimited).

    Attributes:
        dollar_delta: max ``|sum_i D_i S_i fx_i|`` (money per 100 % move of every spot).
        dollar_gamma: max ``|sum_i Gamma_i S_i^2 / 100 fx_i|`` (money of delta per 1 % move).
        vega: max ``|sum_i V_i fx_i|`` (money per 1.00 of vol).
        theta: max ``|sum_i Theta_i fx_i|`` (money per year).

    Example:
        >>> TotalLimits.from_mapping({"delta": 1e6, "vega": 5e4}).dollar_delta
        1000000.0
    """

    dollar_delta: float | None = None
    dollar_gamma: float | None = None
    vega: float | None = None
    theta: float | None = None

    def __post_init__(self) -> None:
        for name in _TOTALS:
            _check_limit(f"total.{name}", getattr(self, name))

    @classmethod
    def from_mapping(cls, limits: Mapping[str, float]) -> TotalLimits:
        """From the engine config's ``limits["total"]`` dict: keys ``delta`` (read as dollar
        delta), ``gamma`` (dollar gamma), ``vega``, ``theta``; unknown keys raise."""
        names = {"delta": "dollar_delta", "gamma": "dollar_gamma", "vega": "vega", "theta": "theta"}
        out = {}
        for k, v in limits.items():
            if k not in names:
                raise ValueError(f"total.{k}: unknown limit (expected one of {sorted(names)})")
            out[names[k]] = float(v)
        return cls(**out)


# --- allocation -------------------------------------------------------------------------------


def equal_weights(n: int) -> np.ndarray:
    """``w_i = 1 / n``.

    Example:
        >>> equal_weights(4).tolist()
        [0.25, 0.25, 0.25, 0.25]
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: must be an integer >= 1, got {n!r}")
    return np.full(n, 1.0 / n)


def target_weights(weights: Any, tol: float = 1e-9) -> np.ndarray:
    """Validated target weights: finite, ``>= 0`` and summing to 1 within ``tol``.

    Example:
        >>> target_weights([0.7, 0.3]).tolist()
        [0.7, 0.3]
    """
    w = as_host_array("weights", weights).astype(np.float64)
    if w.ndim != 1 or w.size == 0:
        raise ValueError(f"weights: need a non-empty 1-D array, got shape {w.shape}")
    check_values("weights", w, ge=0.0)
    total = float(w.sum())
    if abs(total - 1.0) > tol:
        raise ValueError(f"weights: must sum to 1 (within {tol:g}), got {total!r}")
    return w


def inverse_vol_weights(vols: Any) -> np.ndarray:
    """Volatility-weighted allocation ``w_i ∝ 1 / vol_i`` (``vol_i > 0``).

    Example:
        >>> inverse_vol_weights([0.2, 0.4]).round(12).tolist()
        [0.666666666667, 0.333333333333]
    """
    v = as_host_array("vols", vols).astype(np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"vols: need a non-empty 1-D array, got shape {v.shape}")
    check_values("vols", v, gt=0.0)
    inv = 1.0 / v
    return inv / inv.sum()


def _covariance_matrix(cov: Any) -> np.ndarray:
    c = as_host_array("cov", cov).astype(np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1] or c.shape[0] == 0:
        raise ValueError(f"cov: must be a non-empty square matrix, got shape {c.shape}")
    check_values("cov", c)
    if float(np.abs(c - c.T).max()) > 1e-12 * max(1.0, float(np.abs(c).max())):
        raise ValueError("cov: not symmetric")
    if (np.diag(c) <= 0).any():
        raise ValueError("cov: every diagonal entry (a variance) must be > 0")
    lo = float(np.linalg.eigvalsh(c).min())
    if lo < -1e-10 * float(np.abs(np.diag(c)).max()):
        raise ValueError(f"cov: not positive semi-definite (min eigenvalue {lo:.3g})")
    return c


def risk_contributions(weights: Any, cov: Any) -> np.ndarray:
    """Euler risk contributions ``RC_i = w_i (Sigma w)_i / sqrt(w' Sigma w)`` (sum = stdev).

    Example:
        >>> risk_contributions([0.5, 0.5], [[4.0, 0.0], [0.0, 4.0]]).round(12).tolist()
        [0.707106781187, 0.707106781187]
    """
    c = _covariance_matrix(cov)
    w = as_host_array("weights", weights).astype(np.float64)
    check_values("weights", w)
    if w.shape != (c.shape[0],):
        raise ValueError(f"weights: expected shape ({c.shape[0]},), got {w.shape}")
    cw = c @ w
    sigma = math.sqrt(max(float(w @ cw), 0.0))
    if sigma == 0.0:
        raise ValueError("weights: portfolio variance is 0, contributions undefined")
    return w * cw / sigma


def risk_parity_weights(cov: Any, tol: float = 1e-13, max_iter: int = 100) -> np.ndarray:
    """Equal-risk-contribution (ERC) weights: ``w_i (Sigma w)_i`` equal for every ``i``,
    ``w > 0``, ``sum w = 1``.

    Solved by Newton's method on Spinu's (2013) strictly convex problem
    ``min_y y' Sigma y / 2 - (1/n) sum_i ln y_i`` (its stationary point has
    ``y_i (Sigma y)_i = 1/n`` for every ``i``), with step halving to keep ``y > 0``; then
    ``w = y / sum y``. Needs a PSD ``Sigma`` with positive diagonal (singular is fine). For two
    assets the solution is ``w_i ∝ 1 / sigma_i`` for any correlation (Maillard, Roncalli &
    Teiletche 2010).

    Spinu, F. (2013), "An algorithm for computing risk parity weights", SSRN 2297383.

    Example:
        >>> risk_parity_weights([[0.04, 0.01], [0.01, 0.16]]).round(12).tolist()
        [0.666666666667, 0.333333333333]
    """
    c = _covariance_matrix(cov)
    n = c.shape[0]
    scale = float(np.diag(c).mean())
    s = c / scale  # scale-free: the solution in w does not depend on a common factor
    b = np.full(n, 1.0 / n)
    y = 1.0 / np.sqrt(np.diag(s) * n)  # exact when the assets are uncorrelated

    def f(v: np.ndarray) -> float:
        return 0.5 * float(v @ s @ v) - float(b @ np.log(v))

    def resid(v: np.ndarray) -> float:
        return float(np.abs(v * (s @ v) / b - 1.0).max())

    for _ in range(max_iter):
        sy = s @ y
        r0 = resid(y)
        if r0 <= tol:
            break
        grad = sy - b / y
        hess = s + np.diag(b / (y * y))
        step = np.linalg.solve(hess, grad)
        t, f0 = 1.0, f(y)
        while t >= 1e-12:
            y_new = y - t * step
            # Armijo on f far from the solution; near it f's decrease drowns in rounding, so a
            # step that shrinks the ERC residual is accepted too (Newton's quadratic phase).
            if (y_new > 0).all() and (
                f(y_new) <= f0 - 1e-4 * t * float(grad @ step) or resid(y_new) < r0
            ):
                break
            t *= 0.5
        else:  # no decrease left at floating-point resolution: converged as far as possible
            break
        y = y_new
    if float(np.abs(y * (s @ y) / b - 1.0).max()) > 1e-8:  # pragma: no cover - safeguard
        raise ValueError("cov: risk parity did not converge")
    return y / y.sum()


# --- portfolio risk of several books ---------------------------------------------------------


def _risk_inputs(
    greeks: Any, spot: Any, underlying_vol: Any, vol_of_vol: Any, spot_vol_corr: Any,
    corr: Any, horizon: float, fx: Any,
) -> tuple[np.ndarray, ...]:  # fmt: skip
    g = as_host_array("greeks", greeks).astype(np.float64)
    if g.ndim != 2 or g.shape[1] != 4:
        raise ValueError(f"greeks: expected shape (n, 4), got {g.shape}")
    n = g.shape[0]
    check_values("greeks", g)
    check_values("horizon", horizon, gt=0.0)
    out = [g]
    for name, x, kw in (
        ("spot", spot, {"gt": 0.0}),
        ("underlying_vol", underlying_vol, {"ge": 0.0}),
        ("vol_of_vol", vol_of_vol, {"ge": 0.0}),
        ("spot_vol_corr", spot_vol_corr, {"ge": -1.0, "le": 1.0}),
        ("fx", np.ones(n) if fx is None else fx, {"gt": 0.0}),
    ):
        v = as_host_array(name, x).astype(np.float64).reshape(-1)
        if v.shape != (n,):
            raise ValueError(f"{name}: expected shape ({n},), got {v.shape}")
        check_values(name, v, **kw)
        out.append(v)
    c = as_host_array("corr", corr).astype(np.float64)
    if c.shape != (n, n):
        raise ValueError(f"corr: expected shape ({n}, {n}), got {c.shape}")
    out.append(c)
    return tuple(out)


def pnl_covariance(
    greeks: Any, spot: Any, underlying_vol: Any, vol_of_vol: Any, spot_vol_corr: Any,
    corr: Any, horizon: float = 1.0 / 365.0, fx: Any = None,
) -> np.ndarray:  # fmt: skip
    """``(n, n)`` covariance ``M`` of the books' delta-gamma-vega PnL over ``horizon``
    (module docstring; money^2 in the common currency).

    Args:
        greeks: ``(n, 4)`` raw position ``(delta, gamma, vega, theta)`` per book (units of
            its underlying, per unit of spot, per 1.00 of vol, per year).
        spot: ``(n,)`` spots; ``underlying_vol``, ``vol_of_vol``, ``spot_vol_corr``:
            ``(n,)`` the risk factors ``sigma_i`` (relative, annualised), ``nu_i`` (vol units
            per sqrt(year)), ``rho_sv,i``.
        corr: ``(n, n)`` correlation of the spots' returns (validated by the caller).
        horizon: years; ``fx``: ``(n,)`` common-currency value of each book's currency
            (default 1).

    Example:
        >>> m = pnl_covariance([[1.0, 0, 0, 0]], [100.0], [0.2], [0.0], [0.0], [[1.0]], 1.0)
        >>> round(float(m[0, 0]), 9)   # (1 x 100 x 0.2)^2
        400.0
    """
    g, spot, sig, nu, rsv, fx, rho = _risk_inputs(
        greeks, spot, underlying_vol, vol_of_vol, spot_vol_corr, corr, horizon, fx
    )
    if g.shape[0] == 0:
        return np.zeros((0, 0))
    h = float(horizon)
    a = spot * sig * math.sqrt(h)
    nv = nu * math.sqrt(h)
    d, gm, v = g[:, 0], g[:, 1], g[:, 2]
    cxx = rho * np.outer(a, a)
    cxy = rho * np.outer(a, nv * rsv)  # Cov(x_i, y_j)
    cyy = rho * np.outer(nv * rsv, nv * rsv)
    np.fill_diagonal(cyy, nv * nv)
    m = (
        cxx * np.outer(d, d)
        + cxy * np.outer(d, v)
        + cxy.T * np.outer(v, d)
        + cyy * np.outer(v, v)
        + 0.5 * cxx * cxx * np.outer(gm, gm)
    )
    return m * np.outer(fx, fx)


def pnl_risk(
    greeks: Any, spot: Any, underlying_vol: Any, vol_of_vol: Any, spot_vol_corr: Any,
    corr: Any, horizon: float = 1.0 / 365.0, fx: Any = None, confidence: float = 0.99,
) -> dict[str, Any]:  # fmt: skip
    """Delta-gamma-normal risk of several books over ``horizon`` (arguments as
    :func:`pnl_covariance`): ``stdev = sqrt(1' M 1)``, ``mean = sum_i fx_i (Theta_i h +
    Gamma_i a_i^2 / 2)``, ``var = z_alpha stdev - mean``, ``confidence``, ``horizon``,
    ``contribution`` (``(n,)`` Euler contributions ``(M 1)_i / stdev``, summing to the stdev;
    0 when the stdev is 0) and ``own`` (``(n,)`` each book's own stdev).

    Example:
        >>> r = pnl_risk([[1.0, 0, 0, 0]], [100.0], [0.2], [0.0], [0.0], [[1.0]], 1.0)
        >>> round(r["stdev"], 9), round(r["var"], 6)   # z_0.99 = 2.326348 (one-sided)
        (20.0, 46.526957)
    """
    z = normal_quantile(confidence)
    m = pnl_covariance(greeks, spot, underlying_vol, vol_of_vol, spot_vol_corr, corr, horizon, fx)
    g, spot, sig, _, _, fx, _ = _risk_inputs(
        greeks, spot, underlying_vol, vol_of_vol, spot_vol_corr, corr, horizon, fx
    )
    a = spot * sig * math.sqrt(float(horizon))
    th, gm = g[:, 3], g[:, 1]
    mean = float(np.sum(fx * (th * float(horizon) + 0.5 * gm * a * a)))
    m1 = m.sum(axis=1)
    stdev = math.sqrt(max(float(m1.sum()), 0.0))
    contrib = m1 / stdev if stdev > 0 else np.zeros_like(m1)
    own = np.sqrt(np.maximum(np.diag(m), 0.0))
    return {
        "stdev": stdev,
        "mean": mean,
        "var": z * stdev - mean,
        "confidence": float(confidence),
        "horizon": float(horizon),
        "contribution": contrib,
        "own": own,
    }


# --- the manager ------------------------------------------------------------------------------


@dataclass
class _Book:
    symbol: str
    chain: OptionChain
    ids: tuple[str, ...]  # option ids, chain.strike.reshape(-1) order
    params: QuoteParams  # configured (scale 1)
    limits: RiskLimits  # configured (scale 1)
    spot: float
    vol: Any  # VolSurface or host array (chain shape)
    rate: float
    dividend: float
    fx: float
    checker: LimitChecker
    instruments: tuple[Instrument, ...]
    strike: np.ndarray  # flat host copies of the chain
    expiry: np.ndarray
    is_call: np.ndarray
    multiplier: np.ndarray
    lot: int
    scale: float = 1.0
    unit: np.ndarray | None = None  # (n, 4) unit Greeks delta, gamma, vega, theta at the mark
    theo: np.ndarray | None = None  # (n,) model values at the mark
    iv: np.ndarray | None = None  # (n,) vols used at the mark
    last_quote: ChainQuote | None = None


def _scaled_limits(limits: RiskLimits, s: float) -> RiskLimits:
    if s == 1.0:
        return limits
    fl = lambda x: None if x is None else float(x) * s
    il = lambda x: None if x is None else int(math.floor(x * s))
    g = limits.greeks
    return replace(
        limits,
        max_position=il(limits.max_position),
        position_overrides={k: il(v) for k, v in limits.position_overrides.items()},
        max_gross_notional=fl(limits.max_gross_notional),
        max_per_strike=il(limits.max_per_strike),
        max_per_expiry=il(limits.max_per_expiry),
        greeks=GreekLimits(fl(g.delta), fl(g.gamma), fl(g.vega), fl(g.theta)),
    )


def _cap_np(a: np.ndarray, b: np.ndarray, lim: float, margin: float) -> np.ndarray:
    """Largest ``n >= 0`` with ``|a + b n| <= max(lim (1 - margin), |a|)``; inf where b = 0."""
    c = np.maximum(lim * (1.0 - margin), np.abs(a))
    with np.errstate(divide="ignore", invalid="ignore"):
        cap = (c - np.sign(b) * a) / np.abs(b)
    return np.where(b != 0, np.maximum(cap, 0.0), np.inf)


class UnderlyingManager:
    """One chain quoter per underlying with a shared, correlation-aware risk view.

    Args:
        total_limits: :class:`TotalLimits` on the whole book in the common currency.
        horizon: risk horizon in years for :meth:`portfolio_risk` (default one day, 1/365).

    Every method that changes state validates first and raises ``ValueError`` naming the bad
    field, leaving all state unchanged. Units and equations: module docstring.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxmm.engine._quote import OptionChain, QuoteParams
        >>> from jaxmm.risk import GreekLimits, RiskLimits
        >>> mgr = UnderlyingManager(TotalLimits(dollar_delta=2e4))
        >>> for sym, s in (("BTC", 100.0), ("SPX", 5000.0)):
        ...     chain = OptionChain.grid(jnp.array([0.9 * s, s, 1.1 * s]), jnp.array([30 / 365]))
        ...     mgr.add_underlying(sym, chain, QuoteParams(1e-3, 20.0), spot=s, vol=0.3,
        ...                        limits=RiskLimits(greeks=GreekLimits(delta=50.0)))
        >>> _ = mgr.set_correlation([[1.0, 0.4], [0.4, 1.0]])
        >>> q = mgr.quote_all()
        >>> sorted(q), q["SPX"].bid.shape
        (['BTC', 'SPX'], (1, 3, 2))
        >>> mgr.check_order("SPX", "SPX-0030D-5000-C", 20).qty   # 20 x 0.5 x 5000 > 2e4
        7
    """

    def __init__(self, total_limits: TotalLimits | None = None, horizon: float = 1.0 / 365.0):
        total_limits = TotalLimits() if total_limits is None else total_limits
        if not isinstance(total_limits, TotalLimits):
            raise ValueError("total_limits: expected a TotalLimits")
        check_values("horizon", horizon, gt=0.0)
        self.total_limits = total_limits
        self.horizon = float(horizon)
        self._books: dict[str, _Book] = {}
        self._owner: dict[str, str] = {}  # instrument id -> underlying
        self._inst: dict[str, Instrument] = {}
        self._corr = np.zeros((0, 0))
        self.portfolio = Portfolio()
        self._weights: np.ndarray | None = None

    # --- registry -----------------------------------------------------------------------------
    @property
    def underlyings(self) -> tuple[str, ...]:
        """Underlying symbols in registration order (the order of every matrix)."""
        return tuple(self._books)

    def _book(self, underlying: str) -> _Book:
        try:
            return self._books[underlying]
        except KeyError:
            raise ValueError(f"underlying: unknown underlying {underlying!r}") from None

    def add_underlying(
        self,
        symbol: str,
        chain: OptionChain,
        params: QuoteParams,
        *,
        spot: float,
        vol: VolSurface | Any,
        limits: RiskLimits | None = None,
        rate: float = 0.0,
        dividend: float = 0.0,
        fx: float = 1.0,
        ids: Sequence[str] | None = None,
        underlying_lot: int = 1,
    ) -> None:
        """Register an underlying, its chain and quoter, and mark it at ``spot`` / ``vol``.

        Args:
            symbol: the underlying's symbol (also the id of its own book/instrument).
            chain: :class:`OptionChain` (any shape; flattened in C order for ``ids``).
            params: :class:`QuoteParams` (validated); ``params.lot`` must be a whole number.
            spot: price > 0 in the underlying's currency.
            vol: :class:`jaxmm.vol.VolSurface` or implied vols broadcastable to the chain.
            limits: :class:`jaxmm.risk.RiskLimits` for this underlying at full allocation.
            rate, dividend: continuously compounded per year.
            fx: common-currency value of one unit of this underlying's currency, > 0.
            ids: option ids per chain element (default :func:`option_symbol`).
            underlying_lot: lot size of the underlying (hedge) instrument.

        The correlation with earlier underlyings starts at 0 (set it with
        :meth:`set_correlation`).
        """
        if not isinstance(symbol, str) or not symbol:
            raise ValueError(f"symbol: must be a non-empty string, got {symbol!r}")
        if symbol in self._books:
            raise ValueError(f"symbol: underlying {symbol!r} is already registered")
        if not isinstance(chain, OptionChain):
            raise ValueError("chain: expected an OptionChain")
        if not isinstance(params, QuoteParams):
            raise ValueError("params: expected a QuoteParams")
        params.validate()
        limits = RiskLimits() if limits is None else limits
        if not isinstance(limits, RiskLimits):
            raise ValueError("limits: expected a RiskLimits")
        check_values("fx", fx, gt=0.0)
        check_values("rate", rate)
        check_values("dividend", dividend)
        shape = np.shape(chain.strike)
        n = int(np.prod(shape))
        flat = lambda x: np.broadcast_to(np.asarray(x), shape).reshape(-1)
        strike = flat(chain.strike).astype(np.float64)
        expiry = flat(chain.expiry).astype(np.float64)
        is_call = flat(chain.is_call).astype(bool)
        mult = flat(chain.multiplier).astype(np.float64)
        check_values("chain.strike", strike, gt=0.0)
        check_values("chain.expiry", expiry, gt=0.0)
        check_values("chain.multiplier", mult, gt=0.0)
        lot_f = float(np.asarray(params.lot))
        if lot_f != round(lot_f) or lot_f < 1:
            raise ValueError(f"params.lot: must be a whole number >= 1, got {lot_f!r}")
        lot = int(round(lot_f))
        if ids is None:
            ids = [
                option_symbol(symbol, t, k, c)
                for t, k, c in zip(expiry, strike, is_call, strict=True)
            ]
        ids = tuple(ids)
        if len(ids) != n or len(set(ids)) != n:
            raise ValueError(f"ids: need {n} distinct ids (one per chain element)")
        clash = [i for i in (*ids, symbol) if i in self._owner]
        if clash or symbol in ids:
            raise ValueError(f"ids: {(clash or [symbol])[0]!r} is already registered")
        insts = [Instrument.spot(symbol, lot_size=int(underlying_lot))]
        insts += [
            Instrument.option(
                i, symbol, strike=k, expiry=t, is_call=bool(c), multiplier=m, lot_size=lot
            )
            for i, k, t, c, m in zip(ids, strike, expiry, is_call, mult, strict=True)
        ]
        checker = LimitChecker(insts, limits)
        book = _Book(
            symbol, chain, ids, params, limits, 0.0, None, float(rate), float(dividend), float(fx),
            checker, tuple(insts), strike, expiry, is_call, mult, lot,
        )  # fmt: skip
        self._mark(book, spot, vol)  # validates spot and vol before anything is registered
        self._books[symbol] = book
        for inst in insts:
            self._owner[inst.id] = symbol
            self._inst[inst.id] = inst
            self.portfolio.add_instrument(inst)
        n_u = len(self._books)
        corr = np.eye(n_u)
        corr[: n_u - 1, : n_u - 1] = self._corr
        self._corr = corr
        self._weights = None

    # --- market -------------------------------------------------------------------------------
    def _mark(self, book: _Book, spot: float, vol: Any) -> None:
        """Re-mark one book (validated before anything changes)."""
        check_values(f"spot[{book.symbol!r}]", spot, gt=0.0)
        if isinstance(vol, VolSurface):
            iv = np.asarray(vol.implied_vol(book.strike, book.expiry), np.float64)
        else:
            arr = as_host_array(f"vol[{book.symbol!r}]", vol).astype(np.float64)
            try:
                iv = np.broadcast_to(arr, np.shape(book.chain.strike)).reshape(-1)
            except ValueError:
                raise ValueError(
                    f"vol[{book.symbol!r}]: shape {arr.shape} does not broadcast to the chain "
                    f"{np.shape(book.chain.strike)}"
                ) from None
        check_values(f"vol[{book.symbol!r}]", iv, gt=0.0)
        g = bsm_core_greeks(
            float(spot), book.strike, book.expiry, book.rate, book.dividend, iv, book.is_call
        )
        unit = np.stack([np.asarray(x, np.float64) for x in g[1:5]], axis=1)
        if not np.isfinite(unit).all():
            raise ValueError(f"vol[{book.symbol!r}]: Greeks are not finite at this mark")
        book.checker.update_market(
            {book.symbol: float(spot)},
            {i: tuple(row) for i, row in zip(book.ids, unit.tolist(), strict=True)},
        )
        book.spot, book.vol, book.unit, book.iv = float(spot), vol, unit, iv
        book.theo = np.asarray(g.price, np.float64)

    def update_market(self, underlying: str, spot: float | None = None, vol: Any = None) -> None:
        """New spot and/or vols (surface or array) for one underlying; re-marks every option's
        unit Greeks (never frozen at fill time). Bad values raise and change nothing."""
        book = self._book(underlying)
        self._mark(book, book.spot if spot is None else spot, book.vol if vol is None else vol)

    def set_correlation(self, corr: Any, *, repair: bool = False) -> np.ndarray:
        """Set the correlation of the underlyings' returns (order :attr:`underlyings`).

        Validated by :func:`jaxmm.risk.validate_correlation` (square, finite, symmetric, unit
        diagonal, entries in [-1, 1], PSD). A matrix that is only not PSD is replaced by
        :func:`jaxmm.risk.nearest_correlation` (Higham 2002) when ``repair=True``, and rejected
        with ``ValueError("correlation: ... not positive semi-definite ...")`` otherwise.
        Returns the matrix in use.
        """
        n = len(self._books)
        try:
            c = validate_correlation(corr)
        except ValueError as exc:
            if not (repair and "positive semi-definite" in str(exc)):
                raise ValueError(f"correlation: {exc}") from None
            c = validate_correlation(nearest_correlation(corr))
        if c.shape != (n, n):
            raise ValueError(f"correlation: expected shape ({n}, {n}), got {c.shape}")
        self._corr = c
        return c.copy()

    @property
    def correlation(self) -> np.ndarray:
        """The correlation matrix in use (copy)."""
        return self._corr.copy()

    # --- quoting ------------------------------------------------------------------------------
    def quote_params(self, underlying: str) -> QuoteParams:
        """The quoter's parameters after allocation (``base_size x scale``)."""
        book = self._book(underlying)
        if book.scale == 1.0:
            return book.params
        return eqx.tree_at(lambda p: p.base_size, book.params, book.params.base_size * book.scale)

    def limits(self, underlying: str) -> RiskLimits:
        """The underlying's :class:`RiskLimits` after allocation."""
        return self._book(underlying).checker.limits

    def quote_limits(self, underlying: str) -> QuoteLimits:
        """:class:`QuoteLimits` equal to the underlying's (allocated) Greek and position
        limits."""
        lim = self.limits(underlying)
        v = lambda x: math.inf if x is None else float(x)
        g = lim.greeks
        return QuoteLimits(v(g.delta), v(g.gamma), v(g.vega), v(g.theta), v(lim.max_position))

    def chain_market(self, underlying: str, kill: bool = False) -> ChainMarket:
        """The :class:`ChainMarket` to quote against (current position Greeks)."""
        book = self._book(underlying)
        g = book.checker.greeks(underlying)
        return ChainMarket(
            book.spot, book.rate, book.dividend, g["delta"], g["gamma"], g["vega"], g["theta"],
            bool(kill),
        )  # fmt: skip

    def quote_all(self, kill: Mapping[str, bool] | None = None) -> dict[str, ChainQuote]:
        """Quote every underlying's chain (:func:`jaxmm.engine.quote_chain`, one jitted call per
        underlying) at its allocated size and limits, then cap each side's size so that filling
        it in full keeps every :class:`TotalLimits` measure within its limit (or no worse).

        Returns underlying -> :class:`ChainQuote` (host NumPy fields; chain shape).
        """
        kill = dict(kill or {})
        out: dict[str, ChainQuote] = {}
        for u, book in self._books.items():
            chain = eqx.tree_at(
                lambda c: c.position,
                book.chain,
                jnp.asarray(
                    np.array([book.checker.position(i) for i in book.ids], np.float64).reshape(
                        np.shape(book.chain.strike)
                    )
                ),
            )
            vol = (
                book.vol
                if isinstance(book.vol, VolSurface)
                else book.iv.reshape(np.shape(book.chain.strike))
            )
            q = quote_chain(
                self.quote_params(u),
                self.quote_limits(u),
                self.chain_market(u, kill.get(u, False)),
                chain,
                vol,
            )
            q = ChainQuote(*(np.asarray(x) for x in q))
            q = self._cap_totals(book, q)
            book.last_quote = q
            out[u] = q
        return out

    def _cap_totals(self, book: _Book, q: ChainQuote) -> ChainQuote:
        shape = q.bid.shape
        conv = self._conversion(book)
        per = book.unit * (book.multiplier[:, None] * conv[None, :])  # (n, 4) money per contract
        totals = self._total_vector()
        lot = float(book.lot)
        sizes = []
        for side, size in ((1.0, q.bid_size), (-1.0, q.ask_size)):
            cap = np.full(per.shape[0], np.inf)
            for j, name in enumerate(_TOTALS):
                lim = getattr(self.total_limits, name)
                if lim is not None:
                    cap = np.minimum(cap, _cap_np(totals[j], side * per[:, j], lim, _MARGIN_QUOTE))
            cap = np.floor(np.minimum(cap, 1e15) / lot) * lot
            sizes.append(np.minimum(size.reshape(-1), cap).reshape(shape))
        bid_size, ask_size = sizes
        limited = (bid_size <= 0) & (ask_size <= 0) & (q.status == int(QuoteStatus.OK))
        status = np.where(limited, int(QuoteStatus.LIMITED), q.status).astype(q.status.dtype)
        return q._replace(bid_size=bid_size, ask_size=ask_size, status=status)

    # --- Greeks views ---------------------------------------------------------------------------
    def _conversion(self, book: _Book) -> np.ndarray:
        """Raw position Greek -> common currency: (S fx, S^2 / 100 fx, fx, fx)."""
        s, fx = book.spot, book.fx
        return np.array([s * fx, s * s / 100.0 * fx, fx, fx])

    def _total_vector(self) -> np.ndarray:
        tot = [[], [], [], []]
        for book in self._books.values():
            g = book.checker.greeks(book.symbol)
            conv = self._conversion(book)
            for j, name in enumerate(_GREEKS):
                tot[j].append(g[name] * conv[j])
        return np.array([math.fsum(t) for t in tot])

    def greeks(self, underlying: str) -> dict[str, float]:
        """One underlying's position Greeks: raw (``delta`` units of underlying, ``gamma``,
        ``vega`` per 1.00 vol, ``theta`` per year, in its own currency) and in the common
        currency (``dollar_delta``, ``dollar_gamma``, ``vega_ccy``, ``theta_ccy``)."""
        book = self._book(underlying)
        g = book.checker.greeks(underlying)
        conv = self._conversion(book)
        out = dict(g)
        for j, name in enumerate(("dollar_delta", "dollar_gamma", "vega_ccy", "theta_ccy")):
            out[name] = g[_GREEKS[j]] * float(conv[j])
        return out

    def total_greeks(self) -> dict[str, float]:
        """The whole book in the common currency: ``dollar_delta``, ``dollar_gamma``,
        ``vega``, ``theta`` (the measures :class:`TotalLimits` limits)."""
        return dict(zip(_TOTALS, (float(x) for x in self._total_vector()), strict=True))

    # --- orders and fills -----------------------------------------------------------------------
    def _order(self, underlying: str, option: str, qty: int) -> tuple[_Book, Order]:
        book = self._book(underlying)
        if self._owner.get(option) != underlying:
            raise ValueError(f"option: {option!r} is not an instrument of {underlying!r}")
        if isinstance(qty, bool) or not isinstance(qty, int | np.integer) or qty == 0:
            raise ValueError(f"qty: must be a non-zero integer (signed contracts), got {qty!r}")
        side = Side.BUY if qty > 0 else Side.SELL
        return book, Order(option, side, abs(int(qty)))

    def _per_contract(self, book: _Book, option: str) -> np.ndarray:
        """Common-currency (dollar delta, dollar gamma, vega, theta) of one long contract."""
        conv = self._conversion(book)
        if option == book.symbol:
            inst = book.instruments[0]
            return np.array([inst.multiplier * conv[0], 0.0, 0.0, 0.0])
        j = book.ids.index(option)
        return book.unit[j] * book.multiplier[j] * conv

    def check_order(self, underlying: str, option: str, qty: int) -> Decision:
        """Post-trade check of buying (``qty > 0``) or selling (``qty < 0``) ``|qty]`` contracts
        of ``option`` (or of the underlying itself, ``option == underlying``) against BOTH the
        underlying's (allocated) limits and the :class:`TotalLimits`. Never changes state.

        Returns a :class:`jaxmm.risk.Decision`: ALLOW (full size), SCALE (largest passing lot
        multiple, ``binding`` names e.g. ``"greeks.delta:BTC"`` or ``"total.dollar_delta"``) or
        REJECT.
        """
        book, order = self._order(underlying, option, qty)
        dec = book.checker.check_order(order)
        lot = self._inst[option].lot_size
        side = int(order.side)
        per = self._per_contract(book, option)
        totals = self._total_vector()
        n_max = float(dec.qty)
        binding = list(dec.binding)
        cons = []
        for j, name in enumerate(_TOTALS):
            lim = getattr(self.total_limits, name)
            if lim is None:
                continue
            a, b = float(totals[j]), side * float(per[j])
            c = max(lim * (1.0 - _MARGIN_CHECK), abs(a))
            cons.append((a, b, c))
            if b != 0:
                cap = (c - a) / b if b > 0 else (c + a) / -b
                if cap < n_max:
                    n_max = cap
                    binding.append(f"total.{name}")
        k = int(math.floor(max(n_max, 0.0) / lot)) * lot
        while k > 0 and any(abs(a + b * k) > c for a, b, c in cons):
            k -= lot
        if k == order.qty:
            return Decision(Action.ALLOW, k)
        if k <= 0:
            return Decision(Action.REJECT, 0, tuple(dict.fromkeys(binding)))
        return Decision(Action.SCALE, k, tuple(dict.fromkeys(binding)))

    def check_basket(self, legs: Sequence[tuple[str, str, int]]) -> bool:
        """True if a basket of orders ``(underlying, instrument, signed qty)`` passes
        :meth:`check_order` in FULL whatever subset of it fills, in whatever order: every leg
        is checked in every order on the state after the previous legs filled (each subset of
        legs is a prefix of some order). Never changes state. Up to 4 legs.
        """
        from itertools import permutations

        legs = [(u, i, int(q)) for u, i, q in legs]
        if not 1 <= len(legs) <= 4:
            raise ValueError(f"legs: need 1 to 4 legs, got {len(legs)}")
        for u, i, q in legs:
            self._order(u, i, q)
        saved = {u: b.checker for u, b in self._books.items()}
        try:
            for perm in permutations(legs):
                for u, b in self._books.items():
                    b.checker = copy.deepcopy(saved[u])
                for u, i, q in perm:
                    if self.check_order(u, i, q).action is not Action.ALLOW:
                        return False
                    side = Side.BUY if q > 0 else Side.SELL
                    self._books[u].checker.on_fill(Fill(i, side, abs(q), 0))
            return True
        finally:
            for u, b in self._books.items():
                b.checker = saved[u]

    def on_fill(self, fill: Fill) -> None:
        """Apply a received fill (positions, PnL, risk aggregates). Unknown instrument ->
        ``ValueError``, nothing changed."""
        if not isinstance(fill, Fill):
            raise ValueError(f"fill: expected a Fill, got {type(fill).__name__}")
        u = self._owner.get(fill.instrument)
        if u is None:
            raise ValueError(f"instrument: unknown instrument {fill.instrument!r}")
        self.portfolio.apply_fill(fill)
        self._books[u].checker.on_fill(fill)

    def position(self, instrument: str) -> int:
        """Signed position (contracts / units) of one instrument."""
        u = self._owner.get(instrument)
        if u is None:
            raise ValueError(f"instrument: unknown instrument {instrument!r}")
        return self._books[u].checker.position(instrument)

    # --- portfolio risk -------------------------------------------------------------------------
    def _factor_inputs(self) -> dict[str, Any]:
        books = list(self._books.values())
        f = lambda name: np.array([float(np.asarray(getattr(b.params, name))) for b in books])
        g = np.array(
            [[b.checker.greeks(u)[x] for x in _GREEKS] for u, b in self._books.items()]
        ).reshape(-1, 4)
        return dict(
            greeks=g,
            spot=np.array([b.spot for b in books]),
            underlying_vol=f("underlying_vol"),
            vol_of_vol=f("vol_of_vol"),
            spot_vol_corr=f("spot_vol_corr"),
            corr=self._corr,
            horizon=self.horizon,
            fx=np.array([b.fx for b in books]),
        )

    def book_covariance(self) -> np.ndarray:
        """``(n, n)`` covariance of the books' PnL over :attr:`horizon` in the common currency
        (money^2): the matrix ``M`` of the module docstring (times ``fx_i fx_j``),
        :func:`pnl_covariance` of the current books."""
        return pnl_covariance(**self._factor_inputs())

    def portfolio_risk(self, confidence: float = 0.99) -> dict[str, Any]:
        """Delta-gamma-vega risk over :attr:`horizon` across underlyings (module docstring).

        Returns a dict: ``stdev``, ``mean``, ``var`` (``z stdev - mean``) in the common
        currency, ``confidence``, ``horizon``, and ``by_underlying``: ``{u: {"stdev": own
        stdev, "contribution": Euler contribution to the stdev}}`` (:func:`pnl_risk`).
        """
        r = pnl_risk(**self._factor_inputs(), confidence=confidence)
        return {
            "stdev": r["stdev"],
            "mean": r["mean"],
            "var": r["var"],
            "confidence": r["confidence"],
            "horizon": r["horizon"],
            "by_underlying": {
                u: {"stdev": float(r["own"][i]), "contribution": float(r["contribution"][i])}
                for i, u in enumerate(self._books)
            },
        }

    # --- allocation -----------------------------------------------------------------------------
    def allocate(
        self,
        mode: Literal["equal", "target", "risk_parity", "volatility"],
        *,
        weights: Mapping[str, float] | Sequence[float] | None = None,
        basis: Literal["book", "notional"] = "book",
    ) -> dict[str, float]:
        """Set the capital allocation and rescale every underlying's size and limits.

        Args:
            mode: one of :data:`ALLOCATION_MODES`.
            weights: for ``"target"``: per underlying (mapping or sequence in
                :attr:`underlyings` order), ``>= 0``, summing to 1.
            basis: for ``"risk_parity"``: ``"book"`` (the current books' PnL covariance,
                :meth:`book_covariance`; every book must carry risk) or ``"notional"`` (one
                unit of money in each underlying: covariance ``rho_ij sigma_i sigma_j``).

        Returns underlying -> weight. The underlying with the largest weight keeps its
        configured base size and limits; the others are scaled by ``w_i / max w``.
        """
        us = self.underlyings
        if not us:
            raise ValueError("underlyings: none registered")
        if mode == "equal":
            w = equal_weights(len(us))
        elif mode == "target":
            if weights is None:
                raise ValueError("weights: required for mode 'target'")
            if isinstance(weights, Mapping):
                unknown = set(weights) - set(us)
                if unknown or set(weights) != set(us):
                    raise ValueError(f"weights: need exactly the underlyings {list(us)}")
                weights = [weights[u] for u in us]
            w = target_weights(weights)
            if w.shape != (len(us),):
                raise ValueError(f"weights: expected {len(us)} weights, got {w.shape[0]}")
        elif mode == "volatility":
            w = inverse_vol_weights(
                [float(np.asarray(b.params.underlying_vol)) for b in self._books.values()]
            )
        elif mode == "risk_parity":
            if basis == "book":
                cov = self.book_covariance()
                flat = [u for i, u in enumerate(us) if cov[i, i] <= 0]
                if flat:
                    raise ValueError(
                        f"basis: the book of {flat[0]!r} carries no risk; use basis='notional'"
                    )
            elif basis == "notional":
                sig = np.array(
                    [float(np.asarray(b.params.underlying_vol)) for b in self._books.values()]
                )
                cov = self._corr * np.outer(sig, sig)
            else:
                raise ValueError(f"basis: must be 'book' or 'notional', got {basis!r}")
            w = risk_parity_weights(cov)
        else:
            raise ValueError(f"mode: must be one of {ALLOCATION_MODES}, got {mode!r}")
        self._apply_weights(w)
        return dict(zip(us, (float(x) for x in w), strict=True))

    def _apply_weights(self, w: np.ndarray) -> None:
        scales = w / w.max()
        new = {}
        for (u, book), s in zip(self._books.items(), scales, strict=True):
            new[u] = self._rebuilt_checker(book, _scaled_limits(book.limits, float(s)))
        for (u, book), s in zip(self._books.items(), scales, strict=True):
            book.checker, book.scale = new[u], float(s)
        self._weights = w

    @staticmethod
    def _rebuilt_checker(book: _Book, limits: RiskLimits) -> LimitChecker:
        chk = LimitChecker(book.instruments, limits)
        chk.update_market(
            {book.symbol: book.spot},
            {i: tuple(r) for i, r in zip(book.ids, book.unit.tolist(), strict=True)},
        )
        for inst in book.instruments:
            q = book.checker.position(inst.id)
            if q:
                chk.on_fill(Fill(inst.id, Side.BUY if q > 0 else Side.SELL, abs(q), 0))
        return chk

    @property
    def weights(self) -> dict[str, float]:
        """Current allocation (equal until :meth:`allocate` is called)."""
        w = self._weights if self._weights is not None else equal_weights(max(len(self._books), 1))
        return dict(zip(self._books, (float(x) for x in w), strict=False))

    # --- unified view ---------------------------------------------------------------------------
    def marks(self) -> dict[str, float]:
        """Instrument id -> model mark per unit (spot for an underlying, BSM value on the
        current vols for an option)."""
        out: dict[str, float] = {}
        for u, book in self._books.items():
            out[u] = book.spot
            out.update(zip(book.ids, book.theo.tolist(), strict=True))
        return out

    def view(self, confidence: float = 0.99) -> dict[str, Any]:
        """Unified Greeks / PnL / risk view (JSON-ready floats).

        ``{"by_underlying": {u: {spot, weight, scale, delta, gamma, vega, theta,
        dollar_delta, dollar_gamma, vega_ccy, theta_ccy, realised, unrealised, fees, pnl,
        stdev, risk_contribution}}, "total": {dollar_delta, dollar_gamma, vega, theta,
        realised, unrealised, fees, pnl, stdev, mean, var, confidence}}``. Money in the
        common currency (PnL of each underlying converted with its ``fx``).
        """
        marks = self.marks()
        risk = self.portfolio_risk(confidence)
        weights = self.weights
        by: dict[str, dict[str, float]] = {}
        tot = {"realised": 0.0, "unrealised": 0.0, "fees": 0.0}
        positions = self.portfolio.positions
        for u, book in self._books.items():
            realised = unreal = fees = 0.0
            for inst in book.instruments:
                p = positions[inst.id]
                realised += float(p.realised)
                fees += float(p.fees)
                if p.qty:
                    unreal += float(p.unrealised(marks[inst.id]))
            row = {"spot": book.spot, "weight": weights[u], "scale": book.scale}
            row.update(self.greeks(u))
            row.update(
                realised=realised * book.fx,
                unrealised=unreal * book.fx,
                fees=fees * book.fx,
                pnl=(realised + unreal - fees) * book.fx,
                stdev=risk["by_underlying"][u]["stdev"],
                risk_contribution=risk["by_underlying"][u]["contribution"],
            )
            by[u] = row
            for k in tot:
                tot[k] += row[k]
        total: dict[str, float] = dict(self.total_greeks())
        total.update(tot)
        total["pnl"] = tot["realised"] + tot["unrealised"] - tot["fees"]
        total.update(stdev=risk["stdev"], mean=risk["mean"], var=risk["var"])
        total["confidence"] = risk["confidence"]
        return {"by_underlying": by, "total": total}

    def instruments(self, underlying: str) -> tuple[Instrument, ...]:
        """The underlying's instruments: the underlying itself first, then its options in
        chain order."""
        return self._book(underlying).instruments

    def unit_greeks(self, underlying: str) -> dict[str, tuple[float, float, float, float]]:
        """Option id -> unit ``(delta, gamma, vega, theta)`` at the current mark (raw)."""
        book = self._book(underlying)
        return {i: tuple(r) for i, r in zip(book.ids, book.unit.tolist(), strict=True)}
